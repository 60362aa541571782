//! The expert: a stand-in for a stronger model that writes seed trajectories.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};
use troupe_core::TaskSpec;

use crate::tools::{Action, Chain, ToolEnv, expert_action, parse_action};
use crate::{EnvError, Environment, Role, TaskFamily, TaskSource};

/// Solves a task from its prompt text alone (it never reads `task.answer`).
///
/// `sort <digits>` gives the digits ascending; `<a>+<b>` gives the decimal sum, of any
/// length; a calc chain such as `347*589+1234` gives its value. A prompt of none of
/// these shapes gets an empty answer.
pub fn expert_solve(task: &TaskSpec) -> String {
    let prompt = task.prompt.trim();
    if let Some(digits) = prompt.strip_prefix("sort ") {
        let mut d: Vec<char> = digits.chars().filter(char::is_ascii_digit).collect();
        d.sort_unstable();
        return d.into_iter().collect();
    }
    if let Some((a, b)) = prompt.split_once('+')
        && let Some(sum) = add_decimal(a.trim(), b.trim())
    {
        return sum;
    }
    Chain::parse(prompt)
        .and_then(|c| c.value())
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// The expert's whole conversation on `task` of `family`, as `(role, text)` turns:
/// the prompt and the answer for the single-turn families; for `calc`, the episode it
/// plays against [`ToolEnv`]: a calculator call per operation, each followed by the
/// tool's result, then the answer (calls in the `<call>` format).
pub fn expert_conversation(family: TaskFamily, task: &TaskSpec) -> Vec<(Role, String)> {
    let prompt = task.prompt.trim();
    let Some(ops) = Chain::parse(prompt)
        .map(|c| c.rest.len())
        .filter(|_| family == TaskFamily::Calc)
    else {
        return vec![
            (Role::User, task.prompt.clone()),
            (Role::Assistant, expert_solve(task)),
        ];
    };
    let mut env = ToolEnv::new(task, ops as u32 + 1);
    let mut turns = vec![(Role::User, env.reset())];
    let mut results: Vec<String> = Vec::new();
    for _ in 0..=ops {
        let refs: Vec<&str> = results.iter().map(String::as_str).collect();
        let Some(action) = expert_action(prompt, &refs) else {
            break;
        };
        let outcome = env.step(&action);
        turns.push((Role::Assistant, action));
        match outcome.observation {
            Some(obs) => {
                results.push(obs.text.clone());
                turns.push((Role::Tool, obs.text));
            }
            None => break,
        }
    }
    turns
}

/// One chat-JSON message; a call turn becomes an OpenAI-style `tool_calls` entry with
/// id `call_N` and the tool's result a `tool` message answering it.
fn message(role: Role, text: &str, calls: &mut usize) -> Value {
    match (role, parse_action(text)) {
        (Role::Assistant, Action::Call(call)) => {
            *calls += 1;
            let arguments = json!({ call.tool.argument(): call.input }).to_string();
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": format!("call_{calls}"),
                    "type": "function",
                    "function": {"name": call.tool.name(), "arguments": arguments},
                }],
            })
        }
        (Role::Tool, _) => json!({
            "role": "tool",
            "tool_call_id": format!("call_{calls}"),
            "content": text,
        }),
        _ => json!({"role": role.as_str(), "content": text}),
    }
}

/// Schoolbook addition of two non-empty decimal strings; `None` if either is not one.
fn add_decimal(a: &str, b: &str) -> Option<String> {
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !is_number(a) || !is_number(b) {
        return None;
    }
    let (mut a, mut b) = (a.bytes().rev(), b.bytes().rev());
    let mut out = Vec::new();
    let mut carry = 0;
    loop {
        let (x, y) = (a.next(), b.next());
        if x.is_none() && y.is_none() {
            break;
        }
        let s = x.map_or(0, |c| c - b'0') + y.map_or(0, |c| c - b'0') + carry;
        out.push(b'0' + s % 10);
        carry = s / 10;
    }
    if carry > 0 {
        out.push(b'0' + carry);
    }
    while out.len() > 1 && out.last() == Some(&b'0') {
        out.pop();
    }
    out.reverse();
    String::from_utf8(out).ok()
}

/// Writes `n` expert-solved training tasks from `source` to `path` as chat JSONL:
/// `{"messages":[{"role":"user","content":…},{"role":"assistant","content":…}]}`, with
/// the calc family's calls as OpenAI-style `tool_calls` and `tool` result messages.
pub fn write_seed_trajectories(
    path: &Path,
    source: &mut TaskSource,
    n: usize,
) -> Result<(), EnvError> {
    let io = |source| EnvError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    let family = source.config().family;
    for _ in 0..n {
        let task = source.next_train();
        let mut calls = 0;
        let messages: Vec<Value> = expert_conversation(family, &task)
            .iter()
            .map(|(role, text)| message(*role, text, &mut calls))
            .collect();
        let line = json!({ "messages": messages });
        writeln!(w, "{line}").map_err(io)?;
    }
    w.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TaskConfig, read_seed_trajectories, verify};

    #[test]
    fn expert_matches_the_reference_answer() {
        for family in [TaskFamily::Sort, TaskFamily::Add, TaskFamily::Calc] {
            let cfg = TaskConfig {
                family,
                min_digits: 1,
                max_digits: 12,
                heldout_per_mille: 100,
            };
            let mut s = TaskSource::new(cfg, 17).unwrap();
            for _ in 0..1000 {
                let t = s.next_train();
                let blind = TaskSpec {
                    answer: String::new(),
                    ..t.clone()
                };
                let got = expert_solve(&blind);
                assert_eq!(got, t.answer, "{}", t.prompt);
                assert_eq!(verify(&t, &got).total, 1.0);
            }
        }
    }

    #[test]
    fn decimal_addition_edge_cases() {
        assert_eq!(add_decimal("0", "0").as_deref(), Some("0"));
        assert_eq!(
            add_decimal("999999999999", "1").as_deref(),
            Some("1000000000000")
        );
        assert_eq!(
            add_decimal("99999999999999999999999", "1").as_deref(),
            Some("100000000000000000000000")
        );
        assert_eq!(add_decimal("", "1"), None);
        assert_eq!(add_decimal("1a", "1"), None);
    }

    #[test]
    fn unknown_prompts_get_an_empty_answer() {
        let t = TaskSpec {
            id: 0,
            prompt: "hello".into(),
            answer: "x".into(),
            difficulty: 0,
        };
        assert_eq!(expert_solve(&t), "");
    }

    #[test]
    fn written_seeds_parse_back() {
        let path =
            std::env::temp_dir().join(format!("troupe-env-seeds-{}.jsonl", std::process::id()));
        let mut s = TaskSource::new(TaskConfig::default(), 3).unwrap();
        write_seed_trajectories(&path, &mut s, 50).unwrap();
        let set = read_seed_trajectories(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(set.rejected.is_empty(), "{:?}", set.rejected);
        assert_eq!(set.conversations.len(), 50);
        let first = &set.conversations[0];
        assert!(first.prompt().unwrap().starts_with("sort "));
        assert_eq!(first.messages.len(), 2);
    }

    #[test]
    fn calc_seeds_are_multi_turn_conversations_with_openai_tool_calls() {
        let path = std::env::temp_dir().join(format!(
            "troupe-env-calc-seeds-{}.jsonl",
            std::process::id()
        ));
        let cfg = TaskConfig {
            family: TaskFamily::Calc,
            ..TaskConfig::default()
        };
        let mut s = TaskSource::new(cfg.clone(), 3).unwrap();
        write_seed_trajectories(&path, &mut s, 40).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let set = read_seed_trajectories(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(set.rejected.is_empty(), "{:?}", set.rejected);
        assert_eq!(set.conversations.len(), 40);
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let call = &first["messages"][1]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "calc");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(args["expression"].as_str().unwrap().contains('*'), "{args}");
        assert_eq!(first["messages"][2]["tool_call_id"], call["id"]);
        let mut again = TaskSource::new(cfg, 3).unwrap();
        for c in &set.conversations {
            let task = again.next_train();
            let ops = Chain::parse(&task.prompt).unwrap().rest.len();
            // user, (call, result) per operation, answer.
            let roles: Vec<Role> = c.messages.iter().map(|m| m.role).collect();
            let mut want = vec![Role::User];
            for _ in 0..ops {
                want.extend([Role::Assistant, Role::Tool]);
            }
            want.push(Role::Assistant);
            assert_eq!(roles, want, "{}", task.prompt);
            let first_call = c.messages[1].policy_text();
            assert!(
                matches!(parse_action(&first_call), Action::Call(_)),
                "{first_call}"
            );
            let answer = c.messages.last().unwrap().policy_text();
            assert_eq!(answer, task.answer);
            assert_eq!(c.messages[c.messages.len() - 2].content, task.answer);
        }
    }

    #[test]
    fn unwritable_path_is_an_io_error_naming_it() {
        let path = std::env::temp_dir()
            .join("troupe-env-no-such-dir")
            .join("x")
            .join("seeds.jsonl");
        let mut s = TaskSource::new(TaskConfig::default(), 3).unwrap();
        let err = write_seed_trajectories(&path, &mut s, 1).unwrap_err();
        assert!(matches!(err, EnvError::Io { .. }));
        assert!(err.to_string().contains("seeds.jsonl"), "{err}");
    }
}
