//! OpenAI-style `tool_calls` in seed files, rendered in troupe's call format.

use serde_json::Value;

use super::call::{Action, CALL_CLOSE, CALL_OPEN, parse_action};

/// Renders an assistant message's `tool_calls` as the policy's call text.
///
/// Accepts what OpenAI-compatible APIs return:
/// `[{"id": …, "type": "function", "function": {"name": "calc", "arguments":
/// "{\"expression\": \"347*589\"}"}}]` (`arguments` may also be an object). The array
/// must hold at most one call (the format has one call per turn), its function exactly
/// one string argument (any name), and the rendered `<call>NAME INPUT</call>` must be a
/// well-formed call. An empty array is no call (`Ok(None)`).
pub fn render_tool_calls(tool_calls: &Value) -> Result<Option<String>, String> {
    let Value::Array(calls) = tool_calls else {
        return Err("\"tool_calls\" is not an array".into());
    };
    let call = match calls.as_slice() {
        [] => return Ok(None),
        [call] => call,
        more => {
            return Err(format!(
                "{} tool calls in one message; the call format has one per assistant turn",
                more.len()
            ));
        }
    };
    let Value::Object(call) = call else {
        return Err("tool_calls[0] is not an object".into());
    };
    if let Some(kind) = call.get("type")
        && kind != "function"
    {
        return Err(format!(
            "tool_calls[0].type is {kind}, expected \"function\""
        ));
    }
    let Some(Value::Object(function)) = call.get("function") else {
        return Err("tool_calls[0].function is missing or not an object".into());
    };
    let Some(Value::String(name)) = function.get("name") else {
        return Err("tool_calls[0].function.name is missing or not a string".into());
    };
    let arguments = match function.get("arguments") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .map_err(|e| format!("tool_calls[0].function.arguments is not JSON: {e}"))?,
        Some(v @ Value::Object(_)) => v.clone(),
        _ => {
            return Err("tool_calls[0].function.arguments is missing or not a JSON object".into());
        }
    };
    let input = match &arguments {
        Value::Object(args) if args.len() == 1 => match args.values().next() {
            Some(Value::String(input)) => input.clone(),
            _ => return Err(format!("the {name} argument is not a string")),
        },
        _ => {
            return Err(format!(
                "{name} must take exactly one string argument, got {arguments}"
            ));
        }
    };
    let text = format!("{CALL_OPEN}{name} {input}{CALL_CLOSE}");
    match parse_action(&text) {
        Action::Call(_) => Ok(Some(text)),
        Action::Malformed(reason) => Err(format!("tool call {text:?}: {reason}")),
        Action::Answer(_) => Err(format!("tool call {text:?} is not a call")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn calls(function: Value) -> Value {
        json!([{"id": "call_1", "type": "function", "function": function}])
    }

    #[test]
    fn renders_one_function_call() {
        let v = calls(json!({"name": "calc", "arguments": "{\"expression\": \"347*589\"}"}));
        assert_eq!(
            render_tool_calls(&v).unwrap().as_deref(),
            Some("<call>calc 347*589</call>")
        );
        let v = json!([{"function": {"name": "calc", "arguments": {"input": "1 + 2"}}}]);
        assert_eq!(
            render_tool_calls(&v).unwrap().as_deref(),
            Some("<call>calc 1 + 2</call>")
        );
        assert_eq!(render_tool_calls(&json!([])).unwrap(), None);
    }

    #[test]
    fn refuses_what_the_format_cannot_say() {
        let err = |v: Value| render_tool_calls(&v).unwrap_err();
        assert!(err(json!({})).contains("not an array"));
        let one = json!({"function": {"name": "calc", "arguments": "{\"e\":\"1+2\"}"}});
        assert!(err(json!([one.clone(), one])).contains("2 tool calls"));
        assert!(err(json!([1])).contains("not an object"));
        assert!(err(json!([{"type": "code", "function": {}}])).contains("expected \"function\""));
        assert!(err(json!([{"id": "x"}])).contains("function is missing"));
        assert!(err(calls(json!({"arguments": "{}"}))).contains("name is missing"));
        assert!(err(calls(json!({"name": "calc", "arguments": "{"}))).contains("not JSON"));
        assert!(err(calls(json!({"name": "calc"}))).contains("arguments is missing"));
        assert!(
            err(calls(
                json!({"name": "calc", "arguments": "{\"a\":\"1\",\"b\":\"2\"}"})
            ))
            .contains("exactly one string argument")
        );
        assert!(
            err(calls(json!({"name": "calc", "arguments": "{\"a\":3}"}))).contains("not a string")
        );
        assert!(
            err(calls(
                json!({"name": "abacus", "arguments": "{\"a\":\"1+2\"}"})
            ))
            .contains("unknown tool")
        );
        assert!(
            err(calls(
                json!({"name": "calc", "arguments": "{\"a\":\"1+2*3\"}"})
            ))
            .contains("one operation per call")
        );
    }
}
