//! The OpenAI chat-completions wire format: the request body and a strict reader of
//! the reply. Pure: bytes in, values or a reason out.

use serde::Serialize;
use serde_json::Value;

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions.
    System,
    /// The judge prompt.
    User,
}

/// One message of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// Speaker.
    pub role: ChatRole,
    /// Text.
    pub content: String,
}

/// The JSON body of `POST {base_url}/chat/completions`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatRequest<'a> {
    /// Model name.
    pub model: &'a str,
    /// The conversation.
    pub messages: &'a [ChatMessage],
    /// Completion cap.
    pub max_tokens: u32,
    /// Sampling temperature (0: greedy).
    pub temperature: f32,
    /// Sampling seed, for servers that honour it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Always `false`: one JSON reply.
    pub stream: bool,
}

/// What a well-formed reply holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The first choice's message text.
    pub content: String,
    /// The first choice's `finish_reason` (`stop`, `length`, ...), when given.
    pub finish_reason: Option<String>,
    /// `usage.prompt_tokens`.
    pub prompt_tokens: u64,
    /// `usage.completion_tokens`.
    pub completion_tokens: u64,
}

/// Reads a success reply. Requires a JSON object with a non-empty `choices` array
/// whose first element has `message.content` as a string, and a `usage` object with
/// integer `prompt_tokens` and `completion_tokens` (the budget is charged from them).
/// An `error` object in the body is reported as such.
pub fn parse_reply(body: &[u8]) -> Result<Completion, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("the body is a JSON {}, not an object", kind(&v)))?;
    if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
        let msg = err.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(format!("the server reported an error: {msg} ({err})"));
    }
    let choices = obj
        .get("choices")
        .ok_or("no `choices`")?
        .as_array()
        .ok_or("`choices` is not an array")?;
    let first = choices.first().ok_or("`choices` is empty")?;
    let message = first
        .get("message")
        .ok_or("`choices[0]` has no `message`")?;
    let content = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => {
            return Err("`choices[0].message.content` is missing or null".into());
        }
        Some(other) => {
            return Err(format!(
                "`choices[0].message.content` is a JSON {}, not a string",
                kind(other)
            ));
        }
    };
    let finish_reason = first
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let usage = obj
        .get("usage")
        .filter(|u| u.is_object())
        .ok_or("no `usage` object (the token budget cannot be charged)")?;
    let count = |key: &str| {
        usage
            .get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("`usage.{key}` is missing or not a non-negative integer"))
    };
    Ok(Completion {
        content,
        finish_reason,
        prompt_tokens: count("prompt_tokens")?,
        completion_tokens: count("completion_tokens")?,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"VERDICT: PASS"},"finish_reason":"stop"}],"usage":{"prompt_tokens":60,"completion_tokens":7,"total_tokens":67}}"#;

    #[test]
    fn a_well_formed_reply_is_read() {
        assert_eq!(
            parse_reply(GOOD.as_bytes()),
            Ok(Completion {
                content: "VERDICT: PASS".into(),
                finish_reason: Some("stop".into()),
                prompt_tokens: 60,
                completion_tokens: 7,
            })
        );
    }

    #[test]
    fn malformed_replies_say_why() {
        for (body, why) in [
            ("", "not JSON"),
            ("<html>busy</html>", "not JSON"),
            ("[1]", "array, not an object"),
            (
                r#"{"error":{"message":"model not loaded"}}"#,
                "model not loaded",
            ),
            (r#"{"usage":{}}"#, "no `choices`"),
            (r#"{"choices":{}}"#, "not an array"),
            (r#"{"choices":[]}"#, "empty"),
            (r#"{"choices":[{"text":"hi"}]}"#, "no `message`"),
            (r#"{"choices":[{"message":{"content":null}}]}"#, "null"),
            (
                r#"{"choices":[{"message":{"content":7}}]}"#,
                "number, not a string",
            ),
            (r#"{"choices":[{"message":{"content":"x"}}]}"#, "no `usage`"),
            (
                r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":-1,"completion_tokens":1}}"#,
                "usage.prompt_tokens",
            ),
            (
                r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":3}}"#,
                "usage.completion_tokens",
            ),
        ] {
            let err = parse_reply(body.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{body}: {err}");
        }
    }

    #[test]
    fn request_body_is_openai_shaped() {
        let messages = [ChatMessage {
            role: ChatRole::User,
            content: "hi".into(),
        }];
        let body = serde_json::to_value(ChatRequest {
            model: "m",
            messages: &messages,
            max_tokens: 16,
            temperature: 0.0,
            seed: None,
            stream: false,
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model":"m","messages":[{"role":"user","content":"hi"}],
                               "max_tokens":16,"temperature":0.0,"stream":false})
        );
    }
}
