//! `troupe serve` end to end: the real binary on 127.0.0.1 (port 0) with SmolLM2-135M
//! (`scripts/fetch-smollm2.sh models`), spoken to over plain HTTP/1.1: greedy chat with
//! consistent usage, the same answer streamed as Server-Sent Events, text completions,
//! stop sequences, OpenAI error objects for bad requests, and concurrent requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use troupe_model::ModelConfig;
use troupe_model::pretrained::resolve;
use troupe_model::tokenizer::{ChatTokenizer, TurnRole};

/// Loading the model (dequantise, requantise to Q8_0) on a busy machine.
const START_DEADLINE: Duration = Duration::from_secs(300);
/// One request, decoding included.
const REQUEST_DEADLINE: Duration = Duration::from_secs(300);
const QUESTION: &str = "What is the capital of France? Answer in one word.";

fn gguf_path() -> PathBuf {
    let path = std::env::var_os("TROUPE_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "{} is missing: run `scripts/fetch-smollm2.sh models` (or set TROUPE_SMOLLM2_GGUF)",
        path.display()
    );
    path
}

fn tokenizer() -> ChatTokenizer {
    resolve(&ModelConfig {
        pretrained: Some(gguf_path()),
        max_seq: 256,
        ..ModelConfig::default()
    })
    .unwrap()
    .tokenizer
}

/// A `troupe serve` process, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_troupe"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--max-seq",
                "256",
                "--model",
            ])
            .arg(gguf_path())
            // One compute thread: candle's matmul threads spin-wait, which on a machine
            // busy with other tests makes decoding several times slower.
            .env("CANDLE_NUM_THREADS", "1")
            .env("RAYON_NUM_THREADS", "1")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start troupe serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            addr: String::new(),
        };
        let line = rx
            .recv_timeout(START_DEADLINE)
            .expect("troupe serve printed no address");
        // "serving MODEL on http://ADDR/v1"
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("/v1"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        assert!(
            line.starts_with("serving SmolLM2-135M-Instruct.Q4_1 on "),
            "{line}"
        );
        server.addr = addr.to_string();
        server
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        http(&self.addr, method, path, body)
    }

    fn post(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path, Some(&body.to_string()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    content_type: String,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `data:` payloads of a Server-Sent Events body.
    fn events(&self) -> Vec<String> {
        self.body
            .split("\n\n")
            .filter_map(|event| {
                event
                    .lines()
                    .find_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.trim_start().to_string())
            })
            .collect()
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(REQUEST_DEADLINE)).unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let payload = &raw[head_end + 4..];
    let payload = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(payload)
    } else {
        payload.to_vec()
    };
    Response {
        status,
        content_type: header("content-type").unwrap_or_default(),
        body: String::from_utf8(payload).expect("UTF-8 body"),
    }
}

fn chat_body(question: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "SmolLM2-135M-Instruct.Q4_1",
        "messages": [{ "role": "user", "content": question }],
        "temperature": 0,
        "max_tokens": 16,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn greedy_chat_streams_the_same_answer_with_consistent_usage() {
    let server = Server::start();
    let tok = tokenizer();

    let r = server.post("/v1/chat/completions", &chat_body(QUESTION, json!({})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.content_type.starts_with("application/json"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "SmolLM2-135M-Instruct.Q4_1");
    assert!(v["created"].as_u64().unwrap() > 0);
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    let answer = choice["message"]["content"].as_str().unwrap().to_string();
    println!("greedy answer: {answer:?}");
    assert!(answer.contains("Paris"), "{answer:?}");
    assert_eq!(choice["finish_reason"], "stop");
    // Usage: the chat template's prompt, the answer's tokens and the end-of-turn token.
    let usage = &v["usage"];
    let prompt_tokens = tok.chat_prompt(&[(TurnRole::User, QUESTION)]).len();
    assert_eq!(usage["prompt_tokens"], prompt_tokens);
    assert_eq!(
        usage["completion_tokens"],
        tok.encode_text(&answer).len() + 1
    );
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );

    // Streamed: a role chunk, content deltas that add up to the same answer, the
    // finish chunk, a usage chunk (asked for), then [DONE].
    let r = server.post(
        "/v1/chat/completions",
        &chat_body(
            QUESTION,
            json!({ "stream": true, "stream_options": { "include_usage": true } }),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.content_type.starts_with("text/event-stream"),
        "{}",
        r.content_type
    );
    let events = r.events();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = &chunks[0]["id"];
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && &c["id"] == id)
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], *usage);
    let (finish, deltas) = rest.split_last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let streamed: String = deltas
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(streamed, answer);
    assert!(deltas.len() > 2, "token by token: {deltas:?}");
    assert!(
        deltas
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );

    // A stop sequence cuts the answer before it and still finishes with "stop".
    let r = server.post(
        "/v1/chat/completions",
        &chat_body(QUESTION, json!({ "stop": ["Paris"] })),
    );
    let v = r.json();
    let cut = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(cut, &answer[..answer.find("Paris").unwrap()]);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[test]
fn text_completions_errors_and_discovery() {
    let server = Server::start();
    let tok = tokenizer();

    let health = server.request("GET", "/health", None);
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, json!("ok"))
    );
    let models = server.request("GET", "/v1/models", None).json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1");
    assert_eq!(models["data"][0]["object"], "model");

    let prompt = "The capital of France is";
    let body = json!({ "model": "x", "prompt": prompt, "max_tokens": 4, "temperature": 0 });
    let r = server.post("/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let text = v["choices"][0]["text"].as_str().unwrap();
    println!("completion: {prompt:?} + {text:?}");
    assert!(!text.is_empty());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], tok.encode_text(prompt).len());
    assert_eq!(v["usage"]["completion_tokens"], 4);
    // Streamed text completions: text chunks, the finish chunk, [DONE].
    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    let events = server.post("/v1/completions", &streamed_body).events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );

    // Bad requests: 400 with an OpenAI error object that names the problem.
    let error = |r: Response, status: u16| -> Value {
        assert_eq!(r.status, status, "{}", r.body);
        let v = r.json();
        let e = &v["error"];
        assert!(e["message"].is_string() && e.get("type").is_some(), "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
        e.clone()
    };
    let e = error(
        server.request("POST", "/v1/chat/completions", Some("{\"messages\": [")),
        400,
    );
    assert!(
        e["message"].as_str().unwrap().contains("malformed JSON"),
        "{e}"
    );
    assert_eq!(e["type"], "invalid_request_error");
    let e = error(
        server.post(
            "/v1/chat/completions",
            &chat_body(QUESTION, json!({ "temperature": "hot" })),
        ),
        400,
    );
    assert_eq!(e["param"], "temperature");
    assert!(
        e["message"].as_str().unwrap().contains("temperature"),
        "{e}"
    );
    let e = error(
        server.post(
            "/v1/chat/completions",
            &chat_body(QUESTION, json!({ "n": 3 })),
        ),
        400,
    );
    assert_eq!(e["param"], "n");
    let e = error(
        server.post(
            "/v1/chat/completions",
            &json!({ "messages": [{ "role": "wizard", "content": "hi" }] }),
        ),
        400,
    );
    assert_eq!(e["param"], "messages[0].role");
    let e = error(
        server.post("/v1/completions", &json!({ "max_tokens": 3 })),
        400,
    );
    assert_eq!(e["param"], "prompt");
    let long = "word ".repeat(300);
    let e = error(
        server.post("/v1/completions", &json!({ "prompt": long })),
        400,
    );
    assert_eq!(e["code"], "context_length_exceeded");
    error(server.request("GET", "/v1/nothing", None), 404);
    error(server.request("GET", "/v1/chat/completions", None), 405);

    // And it keeps serving.
    let r = server.post("/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["choices"][0]["text"].as_str(), Some(text));
}

#[test]
fn concurrent_requests_both_complete() {
    let server = Server::start();
    let questions = [QUESTION, "Name one primary colour."];
    let answers: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = questions
            .iter()
            .map(|q| {
                let server = &server;
                s.spawn(move || {
                    let body =
                        chat_body(q, json!({ "max_tokens": 8, "temperature": 0.7, "seed": 7 }));
                    server.post("/v1/chat/completions", &body)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let r = h.join().unwrap();
                assert_eq!(r.status, 200, "{}", r.body);
                r.json()
            })
            .collect()
    });
    for (q, v) in questions.iter().zip(&answers) {
        println!("{q:?} -> {:?}", v["choices"][0]["message"]["content"]);
        assert_eq!(v["object"], "chat.completion");
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 8);
        let reason = v["choices"][0]["finish_reason"].as_str().unwrap();
        assert!(reason == "stop" || reason == "length", "{reason}");
    }
    assert_ne!(answers[0]["id"], answers[1]["id"]);
}
