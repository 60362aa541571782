//! The client's error paths against a local HTTP server that fails on purpose: 500s,
//! 429 with Retry-After, 4xx, slow replies, malformed bodies and verdicts, refused
//! connections, budgets and the concurrency limit. (The happy path is tested against a
//! real llama.cpp server in `llama_server.rs`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use troupe_core::TaskSpec;
use troupe_judge::{
    BudgetLimit, ChatClient, ChatMessage, ChatRole, Component, JudgeError, JudgeStats, LlmConfig,
    LlmJudge, RewardSpec, Scorer,
};

/// What the server does with request number `n` (0-based).
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

/// A well-formed chat completion whose message is `content`.
fn completion(content: &str) -> String {
    serde_json::json!({
        "id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    })
    .to_string()
}

type Script = dyn Fn(usize, &HeaderMap, &[u8]) -> Reply + Send + Sync;

struct Server {
    script: Box<Script>,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    bodies: Mutex<Vec<serde_json::Value>>,
}

async fn handle(State(s): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = s.requests.fetch_add(1, Ordering::SeqCst);
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.peak.fetch_max(now, Ordering::SeqCst);
    if let Ok(v) = serde_json::from_slice(&body) {
        s.bodies.lock().unwrap().push(v);
    }
    let r = (s.script)(n, &headers, &body);
    tokio::time::sleep(r.delay).await;
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut resp = (StatusCode::from_u16(r.status).unwrap(), r.body).into_response();
    for (k, v) in r.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

/// Starts the server on 127.0.0.1:0; returns its base URL and state.
async fn serve(
    script: impl Fn(usize, &HeaderMap, &[u8]) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Server>) {
    let state = Arc::new(Server {
        script: Box::new(script),
        requests: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        bodies: Mutex::new(vec![]),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), state)
}

fn config(base_url: &str) -> LlmConfig {
    LlmConfig {
        base_url: base_url.into(),
        model: "judge".into(),
        timeout_ms: 2_000,
        max_retries: 2,
        backoff_base_ms: 10,
        backoff_max_ms: 2_000,
        max_tokens_per_call: 16,
        ..LlmConfig::default()
    }
}

fn client(cfg: &LlmConfig) -> ChatClient {
    ChatClient::with_api_key(cfg, None, Arc::default()).unwrap()
}

fn messages() -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: ChatRole::User,
        content: "Is 13 sorted? End with VERDICT: PASS or VERDICT: FAIL".into(),
    }]
}

/// `(calls, successes, failures, requests, retries)`.
fn calls(s: &JudgeStats) -> (u64, u64, u64, u64, u64) {
    (s.calls, s.successes, s.failures, s.requests, s.retries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_reported() {
    let (url, server) = serve(|_, _, _| reply(503, "overloaded")).await;
    let c = client(&config(&url));
    let err = c.complete(&messages()).await.unwrap_err();
    assert_eq!(
        err,
        JudgeError::Http {
            status: 503,
            body: "overloaded".into()
        }
    );
    // One first attempt and max_retries = 2 retries.
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
    let s = c.stats();
    assert_eq!(calls(&s), (1, 0, 1, 3, 2));
    assert_eq!(s.http_errors, 3);
    assert_eq!(s.latency.count, 1);
    // Nothing was charged: no reply had usage.
    assert_eq!(c.budget_used(), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_recovers_after_a_server_error() {
    let (url, _server) = serve(|n, _, _| {
        if n == 0 {
            reply(500, "boom")
        } else {
            reply(200, &completion("VERDICT: FAIL"))
        }
    })
    .await;
    let c = client(&config(&url));
    let done = c.complete(&messages()).await.unwrap();
    assert_eq!(done.content, "VERDICT: FAIL");
    let s = c.stats();
    assert_eq!(calls(&s), (1, 1, 0, 2, 1));
    assert_eq!((s.prompt_tokens, s.completion_tokens), (11, 3));
    assert_eq!(c.budget_used(), (2, 14));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried() {
    let (url, server) = serve(|_, _, _| reply(400, r#"{"error":"bad model"}"#)).await;
    let c = client(&config(&url));
    let err = c.complete(&messages()).await.unwrap_err();
    assert!(matches!(err, JudgeError::Http { status: 400, .. }), "{err}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert_eq!(calls(&c.stats()), (1, 0, 1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_a_long_one_ends_the_call() {
    let (url, _server) = serve(|n, _, _| {
        if n == 0 {
            Reply {
                headers: vec![("retry-after", "1".into())],
                ..reply(429, "slow down")
            }
        } else {
            reply(200, &completion("VERDICT: PASS"))
        }
    })
    .await;
    let c = client(&config(&url));
    let started = Instant::now();
    c.complete(&messages()).await.unwrap();
    // backoff_base_ms is 10: only Retry-After explains a wait of a second.
    assert!(
        started.elapsed() >= Duration::from_millis(990),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(calls(&c.stats()), (1, 1, 0, 2, 1));

    let (url, server) = serve(|_, _, _| Reply {
        headers: vec![("retry-after", "120".into())],
        ..reply(429, "come back in two minutes")
    })
    .await;
    let c = client(&config(&url));
    let started = Instant::now();
    let err = c.complete(&messages()).await.unwrap_err();
    assert!(matches!(err, JudgeError::Http { status: 429, .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_replies_time_out_and_are_retried() {
    let (url, server) = serve(|_, _, _| Reply {
        delay: Duration::from_secs(3),
        ..reply(200, &completion("VERDICT: PASS"))
    })
    .await;
    let cfg = LlmConfig {
        timeout_ms: 200,
        max_retries: 1,
        ..config(&url)
    };
    let c = client(&cfg);
    let started = Instant::now();
    let err = c.complete(&messages()).await.unwrap_err();
    assert_eq!(err, JudgeError::Timeout { timeout_ms: 200 });
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    let s = c.stats();
    assert_eq!((s.timeouts, s.failures, s.retries), (2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_retried_then_reported() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = client(&config(&format!("http://127.0.0.1:{port}/v1")));
    let err = c.complete(&messages()).await.unwrap_err();
    assert!(
        matches!(&err, JudgeError::Connect { url, .. } if url.contains(&port.to_string())),
        "{err}"
    );
    let s = c.stats();
    assert_eq!((s.connect_errors, s.retries, s.failures), (3, 2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_replies_are_typed_errors_and_not_retried() {
    let bodies = [
        ("<html>gateway</html>", "not JSON"),
        (r#"{"choices":[]}"#, "`choices` is empty"),
        (
            r#"{"choices":[{"message":{"content":"VERDICT: PASS"}}]}"#,
            "no `usage`",
        ),
    ];
    for (body, why) in bodies {
        let (url, server) = serve(move |_, _, _| reply(200, body)).await;
        let c = client(&config(&url));
        let err = c.complete(&messages()).await.unwrap_err();
        assert!(
            matches!(&err, JudgeError::MalformedReply { reason } if reason.contains(why)),
            "{body}: {err}"
        );
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
        let s = c.stats();
        assert_eq!((s.malformed_replies, s.failures), (1, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_verdict_is_counted_with_its_text_and_leaves_the_trajectory_unscored() {
    let (url, _server) = serve(|_, _, _| reply(200, &completion("Looks right to me!"))).await;
    let cfg = config(&url);
    let judge = LlmJudge::new(&cfg, client(&cfg)).unwrap();
    let spec = RewardSpec {
        llm: Some(0.5),
        ..RewardSpec::default()
    };
    let scorer = Scorer::with_judge(spec, Some(judge));
    let task = TaskSpec {
        id: 1,
        prompt: "sort 31".into(),
        answer: "13".into(),
        difficulty: 2,
    };
    let u = scorer.score(&task, "13", None).await.unwrap_err();
    assert_eq!(u.component, Component::Llm);
    assert_eq!(
        u.error,
        JudgeError::MalformedVerdict {
            reason: "last line \"Looks right to me!\" is not `VERDICT: PASS` or `VERDICT: FAIL`"
                .into(),
            raw: "Looks right to me!".into()
        }
    );
    let s = scorer.stats();
    assert_eq!(
        (s.scored, s.unscored, s.verdicts, s.malformed_verdicts),
        (0, 1, 0, 1)
    );
    assert_eq!(s.last_malformed, "Looks right to me!");
    // The call itself succeeded and its tokens were charged.
    assert_eq!(
        (s.successes, s.prompt_tokens, s.completion_tokens),
        (1, 11, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_stops_retries_and_calls() {
    let (url, server) = serve(|_, _, _| reply(500, "down")).await;
    let cfg = LlmConfig {
        max_retries: 10,
        max_calls: 2,
        ..config(&url)
    };
    let c = client(&cfg);
    let err = c.complete(&messages()).await.unwrap_err();
    assert_eq!(err, JudgeError::BudgetExhausted(BudgetLimit::Calls));
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    let err = c.complete(&messages()).await.unwrap_err();
    assert_eq!(err, JudgeError::BudgetExhausted(BudgetLimit::Calls));
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    let s = c.stats();
    assert_eq!((s.budget_refusals, s.calls, s.failures), (2, 2, 2));
    assert_eq!(s.report().budget.max_calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_concurrency_requests_are_in_flight() {
    let (url, server) = serve(|_, _, _| Reply {
        delay: Duration::from_millis(150),
        ..reply(200, &completion("VERDICT: PASS"))
    })
    .await;
    let cfg = LlmConfig {
        max_concurrency: 2,
        ..config(&url)
    };
    let c = Arc::new(client(&cfg));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let c = c.clone();
        set.spawn(async move { c.complete(&messages()).await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 6);
    assert_eq!(server.peak.load(Ordering::SeqCst), 2);
    assert_eq!(c.stats().peak_in_flight, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_the_key_model_and_limits() {
    let (url, server) =
        serve(
            |_, headers, _| match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                Some("Bearer sk-test") => reply(200, &completion("VERDICT: PASS")),
                _ => reply(401, "no key"),
            },
        )
        .await;
    let cfg = LlmConfig {
        seed: Some(7),
        ..config(&url)
    };
    let with_key = ChatClient::with_api_key(&cfg, Some("sk-test".into()), Arc::default()).unwrap();
    with_key.complete(&messages()).await.unwrap();
    let err = client(&cfg).complete(&messages()).await.unwrap_err();
    assert!(matches!(err, JudgeError::Http { status: 401, .. }), "{err}");
    let body = server.bodies.lock().unwrap()[0].clone();
    assert_eq!(body["model"], "judge");
    assert_eq!(body["max_tokens"], 16);
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["stream"], false);
    assert_eq!(body["messages"][0]["role"], "user");

    // The key is read from the variable api_key_env names, never from the config.
    let missing = LlmConfig {
        api_key_env: Some("TROUPE_TEST_SURELY_UNSET_KEY".into()),
        ..cfg
    };
    assert_eq!(
        ChatClient::new(&missing, Arc::default()).unwrap_err(),
        JudgeError::MissingApiKey {
            var: "TROUPE_TEST_SURELY_UNSET_KEY".into()
        }
    );
}
