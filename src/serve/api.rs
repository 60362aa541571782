//! The OpenAI wire format, without I/O: request bodies to prompts and sampling
//! parameters, generated text to response and stream-chunk objects, failures to OpenAI
//! error objects.

use serde::Deserialize;
use serde_json::{Value, json};
use troupe_core::TokenId;
use troupe_model::tokenizer::{ChatTokenizer, TurnRole};
use troupe_sampler::SamplingParams;

/// Completion length when a request names none (still bounded by the context left).
pub const DEFAULT_MAX_TOKENS: usize = 256;
/// Most stop sequences a request may give (OpenAI's limit).
const MAX_STOP: usize = 4;

/// A request the server refuses or could not serve, as an OpenAI error object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub message: String,
    /// OpenAI's error `type`.
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code, if there is one.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request (or its field `param`) is unusable.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// 404: no such route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("not_found"),
        }
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self {
            status: 405,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("method_not_allowed"),
        }
    }

    /// 500: the model failed or the engine is gone.
    pub fn server(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> Value {
        json!({ "error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Which endpoint a request came in on; it decides the prompt and the response shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`: messages through the chat template.
    Chat,
    /// `/v1/completions`: raw prompt text.
    Text,
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The policy closed its turn or a stop sequence matched.
    Stop,
    /// `max_tokens` (or the context) ran out.
    Length,
}

impl FinishReason {
    /// OpenAI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// How a finished completion ended and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finish {
    /// Why it ended.
    pub reason: FinishReason,
    /// Prompt length in tokens (template tokens included).
    pub prompt_tokens: usize,
    /// Generated tokens, the end-of-turn token included.
    pub completion_tokens: usize,
}

/// A validated request, ready for the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The prompt's token ids.
    pub prompt: Vec<TokenId>,
    /// How to draw tokens (`max_new_tokens` already bounded by the context left).
    pub params: SamplingParams,
    /// Text that ends the completion where it first appears (it is not returned).
    pub stop: Vec<String>,
    /// Seed of the request's sampler, if the caller fixed one.
    pub seed: Option<u64>,
    /// Answer with Server-Sent Events.
    pub stream: bool,
    /// Close a stream with a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RoleWire {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ContentWire {
    Text(String),
    Parts(Vec<PartWire>),
}

#[derive(Debug, Deserialize)]
struct PartWire {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageWire {
    role: RoleWire,
    #[serde(default)]
    content: Option<ContentWire>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TextsWire {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptionsWire {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Both endpoints' request bodies; fields this server does not use are ignored, as
/// OpenAI clients send many.
#[derive(Debug, Deserialize)]
struct RequestWire {
    #[serde(default)]
    messages: Option<Vec<MessageWire>>,
    #[serde(default)]
    prompt: Option<TextsWire>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stop: Option<TextsWire>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptionsWire>,
}

fn parse_body(body: &[u8]) -> Result<RequestWire, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, format!("malformed JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid(None, "the body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(Some(&path), format!("`{path}`: {}", e.inner()))
    })
}

fn message_text(i: usize, content: Option<ContentWire>) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(ContentWire::Text(t)) => Ok(t),
        Some(ContentWire::Parts(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.into_iter().enumerate() {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    ("text", None) => {
                        let param = format!("messages[{i}].content[{j}].text");
                        return Err(ApiError::invalid(
                            Some(&param),
                            format!("`{param}` is missing"),
                        ));
                    }
                    (other, _) => {
                        let param = format!("messages[{i}].content[{j}].type");
                        return Err(ApiError::invalid(
                            Some(&param),
                            format!("`{param}`: only text parts are supported, not `{other}`"),
                        ));
                    }
                }
            }
            Ok(text)
        }
    }
}

fn chat_prompt(tok: &ChatTokenizer, messages: Vec<MessageWire>) -> Result<Vec<TokenId>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "`messages` must hold at least one message",
        ));
    }
    let mut turns = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let role = match m.role {
            RoleWire::System | RoleWire::Developer => TurnRole::System,
            RoleWire::User => TurnRole::User,
            RoleWire::Assistant => TurnRole::Assistant,
            RoleWire::Tool => TurnRole::Tool,
        };
        turns.push((role, message_text(i, m.content)?));
    }
    let refs: Vec<(TurnRole, &str)> = turns.iter().map(|(r, t)| (*r, t.as_str())).collect();
    Ok(tok.chat_prompt(&refs))
}

fn text_prompt(tok: &ChatTokenizer, prompt: TextsWire) -> Result<Vec<TokenId>, ApiError> {
    let text = match prompt {
        TextsWire::One(t) => t,
        TextsWire::Many(mut ts) if ts.len() == 1 => ts.remove(0),
        TextsWire::Many(_) => {
            return Err(ApiError::invalid(
                Some("prompt"),
                "`prompt`: give one string (batches of prompts are not supported)",
            ));
        }
    };
    let ids = tok.encode_text(&text);
    if ids.is_empty() {
        return Err(ApiError::invalid(
            Some("prompt"),
            "`prompt` must not be empty",
        ));
    }
    Ok(ids)
}

/// Parses and validates a request body for `endpoint`: the prompt through `tok` (the
/// chat template for [`Endpoint::Chat`]), sampling parameters, stop sequences.
/// `max_tokens` defaults to [`DEFAULT_MAX_TOKENS`] and is cut to what `max_seq` leaves
/// after the prompt.
pub fn parse_request(
    endpoint: Endpoint,
    body: &[u8],
    tok: &ChatTokenizer,
    max_seq: usize,
) -> Result<Completion, ApiError> {
    let wire = parse_body(body)?;
    if let Some(n) = wire.n
        && n != 1
    {
        return Err(ApiError::invalid(
            Some("n"),
            format!("`n` = {n} is not supported: this server returns one choice (n = 1)"),
        ));
    }
    let temperature = wire.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            Some("temperature"),
            format!("`temperature` = {temperature} must be between 0 and 2"),
        ));
    }
    let top_p = wire.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            Some("top_p"),
            format!("`top_p` = {top_p} must be in (0, 1]"),
        ));
    }
    let (max_name, max_tokens) = match (wire.max_completion_tokens, wire.max_tokens) {
        (Some(m), _) => ("max_completion_tokens", Some(m)),
        (None, m) => ("max_tokens", m),
    };
    if max_tokens == Some(0) {
        return Err(ApiError::invalid(
            Some(max_name),
            format!("`{max_name}` must be at least 1"),
        ));
    }
    let stop: Vec<String> = match wire.stop {
        None => Vec::new(),
        Some(TextsWire::One(s)) => vec![s],
        Some(TextsWire::Many(v)) => v,
    };
    if stop.len() > MAX_STOP {
        return Err(ApiError::invalid(
            Some("stop"),
            format!("`stop` has {} sequences; at most {MAX_STOP}", stop.len()),
        ));
    }
    let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
    let (prompt, prompt_field) = match endpoint {
        Endpoint::Chat => {
            let messages = wire
                .messages
                .ok_or_else(|| ApiError::invalid(Some("messages"), "`messages` is required"))?;
            (chat_prompt(tok, messages)?, "messages")
        }
        Endpoint::Text => {
            let prompt = wire
                .prompt
                .ok_or_else(|| ApiError::invalid(Some("prompt"), "`prompt` is required"))?;
            (text_prompt(tok, prompt)?, "prompt")
        }
    };
    if prompt.len() >= max_seq {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::invalid(
                Some(prompt_field),
                format!(
                    "the prompt is {} tokens; this server's context is {max_seq} tokens (--max-seq), which leaves no room to answer",
                    prompt.len()
                ),
            )
        });
    }
    let room = max_seq - prompt.len();
    let max_new_tokens = max_tokens
        .map_or(DEFAULT_MAX_TOKENS, |m| {
            usize::try_from(m).unwrap_or(usize::MAX)
        })
        .min(room);
    Ok(Completion {
        prompt,
        params: SamplingParams {
            temperature: temperature as f32,
            top_p: top_p as f32,
            max_new_tokens,
        },
        stop,
        seed: wire.seed.map(|s| s as u64),
        stream: wire.stream.unwrap_or(false),
        include_usage: wire
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

/// Identity of one response: every object and chunk of it carries these.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Which endpoint (response shape).
    pub endpoint: Endpoint,
    /// `chatcmpl-...` or `cmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model's id.
    pub model: String,
}

fn usage(f: &Finish) -> Value {
    json!({
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
    })
}

impl Reply {
    /// A reply to a request on `endpoint`; `nonce` makes the id unique.
    pub fn new(endpoint: Endpoint, nonce: u64, created: u64, model: &str) -> Self {
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Text => "cmpl",
        };
        Self {
            endpoint,
            id: format!("{prefix}-{nonce:016x}"),
            created,
            model: model.to_string(),
        }
    }

    fn object(&self, choice: Value, streamed: bool) -> Value {
        let object = match (self.endpoint, streamed) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Text, _) => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }

    /// The whole (non-streamed) response.
    pub fn complete(&self, text: &str, finish: &Finish) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "logprobs": null,
                "finish_reason": finish.reason.as_str(),
            }),
            Endpoint::Text => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": finish.reason.as_str(),
            }),
        };
        let mut out = self.object(choice, false);
        out["usage"] = usage(finish);
        out
    }

    /// A stream's first chunk: the assistant role (chat only).
    pub fn role_chunk(&self) -> Option<Value> {
        (self.endpoint == Endpoint::Chat).then(|| {
            self.object(
                json!({
                    "index": 0,
                    "delta": { "role": "assistant", "content": "" },
                    "logprobs": null,
                    "finish_reason": null,
                }),
                true,
            )
        })
    }

    fn text_choice(&self, text: &str, finish: Option<FinishReason>) -> Value {
        let reason = finish.map(FinishReason::as_str);
        match self.endpoint {
            Endpoint::Chat => {
                let delta = if finish.is_some() {
                    json!({})
                } else {
                    json!({ "content": text })
                };
                json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": reason })
            }
            Endpoint::Text => {
                json!({ "index": 0, "text": text, "logprobs": null, "finish_reason": reason })
            }
        }
    }

    /// A chunk with the next piece of text.
    pub fn delta_chunk(&self, text: &str) -> Value {
        self.object(self.text_choice(text, None), true)
    }

    /// The chunk that says why the completion ended.
    pub fn finish_chunk(&self, reason: FinishReason) -> Value {
        self.object(self.text_choice("", Some(reason)), true)
    }

    /// The closing usage chunk (`stream_options.include_usage`): no choices.
    pub fn usage_chunk(&self, finish: &Finish) -> Value {
        let mut out = self.object(Value::Null, true);
        out["choices"] = json!([]);
        out["usage"] = usage(finish);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(endpoint: Endpoint, body: &str) -> Result<Completion, ApiError> {
        parse_request(endpoint, body.as_bytes(), &ChatTokenizer::new(), 64)
    }

    fn param_of(body: &str) -> Option<String> {
        parse(Endpoint::Chat, body).unwrap_err().param
    }

    #[test]
    fn chat_messages_go_through_the_template() {
        let c = parse(
            Endpoint::Chat,
            r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"u"}]}],"temperature":0,"max_tokens":5,"stop":"\n","seed":-3,"stream":true,"logit_bias":{}}"#,
        )
        .unwrap();
        let tok = ChatTokenizer::new();
        assert_eq!(
            c.prompt,
            tok.chat_prompt(&[(TurnRole::System, "s"), (TurnRole::User, "u")])
        );
        assert_eq!(c.params, SamplingParams::greedy(5));
        assert_eq!(c.stop, ["\n"]);
        assert_eq!(c.seed, Some(-3i64 as u64));
        assert!(c.stream && !c.include_usage);
    }

    #[test]
    fn defaults_and_the_context_bound() {
        let c = parse(Endpoint::Text, r#"{"prompt":"abc","stop":null}"#).unwrap();
        assert_eq!(c.prompt, vec![97, 98, 99]);
        assert_eq!(c.params.temperature, 1.0);
        assert_eq!(c.params.max_new_tokens, 64 - 3, "cut to the context left");
        let c = parse(Endpoint::Text, r#"{"prompt":["abc"],"max_tokens":4}"#).unwrap();
        assert_eq!(c.params.max_new_tokens, 4);
        let long = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(64));
        let e = parse(Endpoint::Text, &long).unwrap_err();
        assert_eq!(
            (e.status, e.code, e.param.as_deref()),
            (400, Some("context_length_exceeded"), Some("prompt"))
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let e = parse(Endpoint::Chat, "{not json").unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, None));
        assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
        assert_eq!(param_of("[1]"), None);
        assert_eq!(param_of("{}").as_deref(), Some("messages"));
        assert_eq!(param_of(r#"{"messages":[]}"#).as_deref(), Some("messages"));
        let m = r#""messages":[{"role":"user","content":"hi"}]"#;
        for (field, value) in [
            ("temperature", r#""hot""#),
            ("temperature", "3"),
            ("top_p", "0"),
            ("max_tokens", "-1"),
            ("max_tokens", "0"),
            ("n", "2"),
            ("stop", r#"["a","b","c","d","e"]"#),
            ("stream", "1"),
        ] {
            let p = param_of(&format!("{{{m},\"{field}\":{value}}}"));
            assert_eq!(p.as_deref(), Some(field), "{field} = {value}");
        }
        assert_eq!(
            param_of(r#"{"messages":[{"role":"wizard","content":"hi"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param_of(r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#)
                .as_deref(),
            Some("messages[0].content[0].type")
        );
        let e = parse(Endpoint::Text, r#"{"prompt":["a","b"]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
        let body = ApiError::invalid(Some("n"), "bad").body();
        assert_eq!(
            body,
            json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "n", "code": null}})
        );
    }

    #[test]
    fn responses_follow_the_openai_schema() {
        let f = Finish {
            reason: FinishReason::Length,
            prompt_tokens: 7,
            completion_tokens: 3,
        };
        let chat = Reply::new(Endpoint::Chat, 1, 100, "m");
        let r = chat.complete("hi", &f);
        assert_eq!(r["object"], "chat.completion");
        assert_eq!(r["id"], "chatcmpl-0000000000000001");
        assert_eq!(r["choices"][0]["message"]["content"], "hi");
        assert_eq!(r["choices"][0]["finish_reason"], "length");
        assert_eq!(r["usage"]["total_tokens"], 10);
        assert_eq!(
            chat.role_chunk().unwrap()["choices"][0]["delta"]["role"],
            "assistant"
        );
        assert_eq!(chat.delta_chunk("x")["choices"][0]["delta"]["content"], "x");
        let end = chat.finish_chunk(FinishReason::Stop);
        assert_eq!(end["object"], "chat.completion.chunk");
        assert_eq!(end["choices"][0]["delta"], json!({}));
        assert_eq!(end["choices"][0]["finish_reason"], "stop");
        assert_eq!(chat.usage_chunk(&f)["choices"], json!([]));

        let text = Reply::new(Endpoint::Text, 2, 100, "m");
        assert!(text.role_chunk().is_none());
        let r = text.complete("hi", &f);
        assert_eq!(
            (r["object"].as_str(), r["choices"][0]["text"].as_str()),
            (Some("text_completion"), Some("hi"))
        );
        assert_eq!(
            text.delta_chunk("x")["choices"][0]["finish_reason"],
            Value::Null
        );
    }
}
