//! `troupe serve`: an OpenAI-compatible HTTP server for a policy, so trained policies can
//! be evaluated with standard tools and used as judges.
//!
//! - [`api`]: the OpenAI wire format without I/O (request bodies to prompts and
//!   sampling parameters, text to response and chunk objects, OpenAI error objects).
//! - [`engine`]: the inference thread that owns the model, batches requests that arrive
//!   together and streams each row's text as it is decoded.
//! - this module: the axum routes (`POST /v1/chat/completions`, `POST /v1/completions`,
//!   `GET /v1/models`, `GET /health`) and Server-Sent Events.

pub mod api;
pub mod engine;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use troupe_model::Transformer;
use troupe_model::config::SamplerWeights;
use troupe_model::tokenizer::ChatTokenizer;

use api::{ApiError, Endpoint, Reply};
use engine::{Engine, EngineOptions, Event, Job};

/// How long the first request of a batch waits for others to join it.
const GATHER: Duration = Duration::from_millis(5);

/// Weights the served model decodes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    /// The checkpoint's f32 weights: exactly the learner's log-probs; batches of
    /// concurrent requests decode several times faster than one at a time.
    #[value(name = "f32")]
    F32,
    /// Linear layers in GGML Q8_0 (log-probs within ~0.1 of f32): a quarter of the
    /// memory and faster decoding on x86 with AVX2 (troupe's kernel), one request or a
    /// batch.
    #[value(name = "q8_0")]
    Q8_0,
    /// Linear layers in GGML Q4_1, the output projection in Q8_0: two thirds of Q8_0's
    /// bytes and the fastest decoding on x86 with AVX2. A Q4_1 GGUF's own weights come
    /// back unchanged (log-probs within ~0.04 of f32 on SmolLM2).
    #[value(name = "q4_1")]
    Q4_1,
}

/// `troupe serve` options.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The policy: a GGUF file, a Hugging Face directory, a troupe checkpoint directory,
    /// or a run directory (its latest checkpoint).
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Address to listen on; port 0 picks a free one (the bound address is printed).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8000")]
    pub addr: String,
    /// Context length in tokens, prompt and completion together (a troupe checkpoint
    /// keeps its own). Prefill attention memory grows with its square.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub max_seq: usize,
    /// Weights to decode with.
    #[arg(long, value_enum, default_value = "f32")]
    pub weights: Weights,
    /// Most requests decoded together in one batch (those that arrive within a few
    /// milliseconds of each other and fit the context side by side).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_batch: u16,
}

/// What every handler shares.
#[derive(Debug)]
struct AppState {
    engine: Engine,
    tokenizer: ChatTokenizer,
    model_id: String,
    max_seq: usize,
    created: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The id clients name the model by: the GGUF file's stem or the directory's name.
fn model_id(path: &Path) -> String {
    let gguf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let name = if gguf {
        path.file_stem()
    } else {
        path.file_name()
    };
    name.map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Loads the policy, starts the engine and serves until Ctrl-C.
pub fn main(args: ServeArgs) -> anyhow::Result<()> {
    let policy = troupe_model::pretrained::load_policy(&args.model, args.max_seq)
        .with_context(|| format!("cannot load a policy from {}", args.model.display()))?;
    let weights = match args.weights {
        Weights::F32 => SamplerWeights::F32,
        Weights::Q8_0 => SamplerWeights::Q8_0,
        Weights::Q4_1 => SamplerWeights::Q4_1,
    };
    let model = Transformer::with_weights(&policy.config, &policy.weights.to_map(), weights)
        .context("cannot build the model")?;
    let max_seq = policy.config.max_seq;
    let engine = Engine::start(
        model,
        policy.tokenizer.clone(),
        EngineOptions {
            max_batch: usize::from(args.max_batch),
            gather: GATHER,
        },
    )
    .context("cannot start the inference thread")?;
    let state = Arc::new(AppState {
        engine,
        tokenizer: policy.tokenizer,
        model_id: model_id(&args.model),
        max_seq,
        created: unix_now(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        println!("serving {} on http://{addr}/v1", state.model_id);
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server failed")
    })
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::method_not_allowed(format!("{method} is not allowed on {}", uri.path()))
}

async fn health() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

async fn models(State(s): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": s.model_id,
            "object": "model",
            "created": s.created,
            "owned_by": "troupe",
            "max_model_len": s.max_seq,
        }],
    }))
}

async fn chat_completions(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    complete(&s, Endpoint::Chat, &body).await
}

async fn completions(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    complete(&s, Endpoint::Text, &body).await
}

async fn complete(s: &AppState, endpoint: Endpoint, body: &[u8]) -> Response {
    let req = match api::parse_request(endpoint, body, &s.tokenizer, s.max_seq) {
        Ok(req) => req,
        Err(e) => return e.into_response(),
    };
    let (events, rx) = unbounded_channel();
    let rng = match req.seed {
        Some(seed) => ChaCha8Rng::seed_from_u64(seed),
        None => ChaCha8Rng::from_os_rng(),
    };
    let job = Job {
        prompt: req.prompt,
        params: req.params,
        stop: req.stop,
        rng,
        events,
    };
    if s.engine.submit(job).is_err() {
        return ApiError::server("the inference engine has stopped").into_response();
    }
    let reply = Reply::new(endpoint, rand::random(), unix_now(), &s.model_id);
    if req.stream {
        sse(reply, req.include_usage, rx).into_response()
    } else {
        collect(reply, rx).await
    }
}

async fn collect(reply: Reply, mut rx: UnboundedReceiver<Event>) -> Response {
    let mut text = String::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Text(piece) => text.push_str(&piece),
            Event::Done(finish) => {
                return axum::Json(reply.complete(&text, &finish)).into_response();
            }
            Event::Failed(message) => return ApiError::server(message).into_response(),
        }
    }
    ApiError::server("the inference engine stopped mid-request").into_response()
}

/// The `data:` payloads one engine event becomes in a stream, and whether the stream
/// ends after them (`None`: the engine went away).
fn stream_data(reply: &Reply, include_usage: bool, event: Option<Event>) -> (Vec<String>, bool) {
    match event {
        Some(Event::Text(piece)) => (vec![reply.delta_chunk(&piece).to_string()], false),
        Some(Event::Done(finish)) => {
            let mut out = vec![reply.finish_chunk(finish.reason).to_string()];
            if include_usage {
                out.push(reply.usage_chunk(&finish).to_string());
            }
            out.push("[DONE]".into());
            (out, true)
        }
        Some(Event::Failed(message)) => (vec![ApiError::server(message).body().to_string()], true),
        None => (
            vec![
                ApiError::server("the inference engine stopped mid-request")
                    .body()
                    .to_string(),
            ],
            true,
        ),
    }
}

fn sse(
    reply: Reply,
    include_usage: bool,
    rx: UnboundedReceiver<Event>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let queue: VecDeque<String> = reply
        .role_chunk()
        .map(|c| c.to_string())
        .into_iter()
        .collect();
    let stream =
        futures_util::stream::unfold((rx, queue, false), move |(mut rx, mut queue, mut done)| {
            let reply = reply.clone();
            async move {
                loop {
                    if let Some(data) = queue.pop_front() {
                        return Some((Ok(SseEvent::default().data(data)), (rx, queue, done)));
                    }
                    if done {
                        return None;
                    }
                    let (data, end) = stream_data(&reply, include_usage, rx.recv().await);
                    queue.extend(data);
                    done = end;
                }
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::api::{Finish, FinishReason};
    use super::*;

    #[test]
    fn a_stream_ends_with_the_finish_chunk_usage_and_done() {
        let reply = Reply::new(Endpoint::Chat, 0, 0, "m");
        let (data, end) = stream_data(&reply, false, Some(Event::Text("Hi".into())));
        assert!(!end);
        let chunk: Value = serde_json::from_str(&data[0]).unwrap();
        assert_eq!(chunk["choices"][0]["delta"]["content"], "Hi");
        let finish = Finish {
            reason: FinishReason::Stop,
            prompt_tokens: 3,
            completion_tokens: 2,
        };
        let (data, end) = stream_data(&reply, true, Some(Event::Done(finish)));
        assert!(end);
        assert_eq!(data.len(), 3);
        assert_eq!(data[2], "[DONE]");
        let usage: Value = serde_json::from_str(&data[1]).unwrap();
        assert_eq!(usage["usage"]["total_tokens"], 5);
        let (data, end) = stream_data(&reply, false, None);
        assert!(end && data[0].contains("\"error\""));
    }

    #[test]
    fn model_ids_are_file_or_directory_names() {
        assert_eq!(model_id(Path::new("runs/r1")), "r1");
        assert_eq!(model_id(Path::new("models/m.Q4_1.gguf")), "m.Q4_1");
    }
}
