use proptest::prelude::*;

use super::*;

/// Writes `text` to a unique temp file, reads it back, removes it.
fn read_text(name: &str, text: &[u8]) -> SeedSet {
    let path = std::env::temp_dir().join(format!("troupe-env-{}-{name}.jsonl", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let set = read_seed_trajectories(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    set
}

/// The rejection reason for a single line, asserting it was rejected.
fn reason(line: &str) -> String {
    match parse_line(line.as_bytes()) {
        Err(r) => r,
        Ok(c) => panic!("line accepted: {line} -> {c:?}"),
    }
}

const GOOD: &str =
    r#"{"messages":[{"role":"user","content":"sort 3914"},{"role":"assistant","content":"1349"}]}"#;

#[test]
fn accepts_a_good_line() {
    let c = parse_line(GOOD.as_bytes()).unwrap().unwrap();
    assert_eq!(c.prompt(), Some("sort 3914"));
    assert_eq!(
        c.messages[1],
        ChatMessage {
            role: Role::Assistant,
            content: "1349".into(),
            tool_calls: None,
            call: None,
        }
    );
}

#[test]
fn keeps_good_lines_rejects_bad_ones_and_skips_blanks() {
    let text = format!("{GOOD}\n\n   \t\n{{oops\r\n{GOOD}\r\n[1]\n");
    let set = read_text("mixed", text.as_bytes());
    assert_eq!(set.conversations.len(), 2);
    let lines: Vec<usize> = set.rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, [4, 6]);
    let shown = set.rejected[1].to_string();
    assert!(
        shown.ends_with(":6: top level is an array, expected an object"),
        "{shown}"
    );
    assert!(shown.contains("troupe-env-"), "{shown}");
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let path = std::env::temp_dir().join("troupe-env-definitely-missing.jsonl");
    let err = read_seed_trajectories(&path).unwrap_err();
    assert!(matches!(err, EnvError::Io { .. }));
    assert!(
        err.to_string()
            .contains("troupe-env-definitely-missing.jsonl"),
        "{err}"
    );
}

#[test]
fn invalid_utf8() {
    let mut bytes = GOOD.as_bytes().to_vec();
    bytes[10] = 0xff;
    let set = read_text("utf8", &bytes);
    assert_eq!(set.rejected.len(), 1);
    assert_eq!(set.rejected[0].reason, "invalid UTF-8 at byte 11");
}

#[test]
fn not_json_reports_message_and_column() {
    let r = reason(r#"{"messages": [}"#);
    assert!(r.starts_with("not valid JSON at column 15: "), "{r}");
    assert!(!r.contains("line 1"), "{r}");
    let r = reason("hello");
    assert!(
        r.starts_with("not valid JSON at column 1: expected value"),
        "{r}"
    );
}

#[test]
fn top_level_not_an_object() {
    assert_eq!(reason("42"), "top level is a number, expected an object");
    assert_eq!(
        reason(r#""x""#),
        "top level is a string, expected an object"
    );
}

#[test]
fn missing_messages() {
    assert_eq!(reason(r#"{"conversation":[]}"#), "missing \"messages\"");
}

#[test]
fn messages_not_a_non_empty_array() {
    assert_eq!(
        reason(r#"{"messages":[]}"#),
        "\"messages\" is an empty array"
    );
    assert_eq!(
        reason(r#"{"messages":{}}"#),
        "\"messages\" is an object, expected a non-empty array"
    );
}

#[test]
fn message_not_an_object() {
    assert_eq!(
        reason(r#"{"messages":["hi"]}"#),
        "messages[0]: message is a string, expected an object"
    );
}

#[test]
fn missing_role() {
    assert_eq!(
        reason(r#"{"messages":[{"content":"hi"}]}"#),
        "messages[0]: missing \"role\""
    );
    assert_eq!(
        reason(r#"{"messages":[{"role":1,"content":"hi"}]}"#),
        "messages[0]: \"role\" is a number, expected a string"
    );
}

#[test]
fn unknown_role_is_named() {
    let r = reason(r#"{"messages":[{"role":"user","content":"a"},{"role":"bot","content":"b"}]}"#);
    assert_eq!(
        r,
        r#"messages[1]: unknown role "bot" (expected system, user, assistant or tool)"#
    );
}

#[test]
fn content_not_a_string() {
    assert_eq!(
        reason(
            r#"{"messages":[{"role":"user","content":[1]},{"role":"assistant","content":"b"}]}"#
        ),
        "messages[0]: user message \"content\" is an array, expected a string"
    );
    assert_eq!(
        reason(
            r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":null}]}"#
        ),
        "messages[1]: assistant message \"content\" is null, expected a string"
    );
    assert_eq!(
        reason(r#"{"messages":[{"role":"user"},{"role":"assistant","content":"b"}]}"#),
        "messages[0]: user message is missing \"content\""
    );
    // Null content is allowed only on an assistant message that calls tools.
    assert_eq!(
        reason(
            r#"{"messages":[{"role":"user","content":null,"tool_calls":[]},{"role":"assistant","content":"b"}]}"#
        ),
        "messages[0]: user message \"content\" is null, expected a string"
    );
}

#[test]
fn assistant_tool_calls_with_null_content_are_kept_and_rendered() {
    let calls = r#"[{"id":"1","type":"function","function":{"name":"calc","arguments":"{\"expression\":\"6*7\"}"}}]"#;
    let line = format!(
        r#"{{"messages":[{{"role":"user","content":"a"}},{{"role":"assistant","content":null,"tool_calls":{calls}}},{{"role":"tool","tool_call_id":"1","content":"42"}},{{"role":"assistant","content":"done"}}]}}"#
    );
    let c = parse_line(line.as_bytes()).unwrap().unwrap();
    assert_eq!(c.messages.len(), 4);
    assert_eq!(c.messages[1].content, "");
    let kept: Value = serde_json::from_str(c.messages[1].tool_calls.as_deref().unwrap()).unwrap();
    assert_eq!(kept, serde_json::from_str::<Value>(calls).unwrap());
    assert_eq!(c.messages[1].call.as_deref(), Some("<call>calc 6*7</call>"));
    assert_eq!(c.messages[1].policy_text(), "<call>calc 6*7</call>");
    assert_eq!(c.messages[2].role, Role::Tool);
    assert_eq!(c.messages[2].policy_text(), "42");
    // Content and a call: the call follows the content on its own line.
    let both = line.replace(r#""content":null"#, r#""content":"let me see""#);
    let c = parse_line(both.as_bytes()).unwrap().unwrap();
    assert_eq!(
        c.messages[1].policy_text(),
        "let me see\n<call>calc 6*7</call>"
    );
    // Calls written as content in the policy's own format are plain content.
    let inline = r#"{"messages":[{"role":"user","content":"6*7"},{"role":"assistant","content":"<call>calc 6*7</call>"},{"role":"tool","content":"42"},{"role":"assistant","content":"42"}]}"#;
    let c = parse_line(inline.as_bytes()).unwrap().unwrap();
    assert_eq!(c.messages[1].policy_text(), "<call>calc 6*7</call>");
}

#[test]
fn tool_calls_the_format_cannot_express_reject_the_line() {
    let with = |calls: &str| {
        format!(
            r#"{{"messages":[{{"role":"user","content":"a"}},{{"role":"assistant","content":null,"tool_calls":{calls}}},{{"role":"tool","content":"r"}},{{"role":"assistant","content":"done"}}]}}"#
        )
    };
    assert_eq!(
        reason(&with(r#"[{"id":"1"}]"#)),
        "messages[1]: assistant \"tool_calls\": tool_calls[0].function is missing or not an object"
    );
    let one = r#"{"function":{"name":"calc","arguments":"{\"e\":\"1+2\"}"}}"#;
    assert!(reason(&with(&format!("[{one},{one}]"))).contains("2 tool calls in one message"));
    assert!(
        reason(&with(
            r#"[{"function":{"name":"calc","arguments":"{\"e\":\"1/2\"}"}}]"#
        ))
        .contains("unsupported operator")
    );
    // An empty array is no call: the message then needs content.
    assert_eq!(
        reason(&with("[]")),
        "messages[1]: assistant message \"content\" is null, expected a string"
    );
}

#[test]
fn extra_message_keys_are_ignored() {
    let line = r#"{"messages":[{"role":"system","content":"s","name":"x"},{"role":"user","content":"a"},{"role":"assistant","content":"b","weight":1}],"id":7}"#;
    let c = parse_line(line.as_bytes()).unwrap().unwrap();
    assert_eq!(c.messages[0].role, Role::System);
    assert_eq!(c.prompt(), Some("a"));
}

#[test]
fn no_assistant_message() {
    assert_eq!(
        reason(r#"{"messages":[{"role":"user","content":"a"}]}"#),
        "no assistant message"
    );
}

#[test]
fn last_message_not_from_the_assistant() {
    assert_eq!(
        reason(
            r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}"#
        ),
        "last message is from the user, expected the assistant"
    );
}

#[test]
fn drop_heldout_removes_exactly_the_heldout_prompts() {
    let conv = |p: &str| Conversation {
        messages: vec![
            ChatMessage {
                role: Role::User,
                content: p.into(),
                tool_calls: None,
                call: None,
            },
            ChatMessage {
                role: Role::Assistant,
                content: "x".into(),
                tool_calls: None,
                call: None,
            },
        ],
    };
    let prompts: Vec<String> = (0..2000).map(|i| format!("sort {i}")).collect();
    let mut set = SeedSet {
        conversations: prompts.iter().map(|p| conv(p)).collect(),
        rejected: vec![],
    };
    let held = prompts
        .iter()
        .filter(|p| split_of(p, 100) == Split::Heldout)
        .count();
    assert!(held > 0);
    assert_eq!(drop_heldout(&mut set, 100), held);
    assert_eq!(set.conversations.len(), 2000 - held);
    assert!(
        set.conversations
            .iter()
            .all(|c| split_of(c.prompt().unwrap(), 100) == Split::Train)
    );
}

proptest! {
    #[test]
    fn arbitrary_lines_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_line(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(s in r#"\{"messages":\[(\{"role":"(user|assistant|x)","content":("a"|null|1)\},?){0,3}\]\}"#) {
        let _ = parse_line(s.as_bytes());
    }
}
