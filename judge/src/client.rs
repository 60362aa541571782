//! The OpenAI-compatible chat-completions client: per-request timeout, retries with
//! backoff ([`crate::retry`]), a concurrency limit, a call and token budget
//! ([`crate::budget`]), strict reply validation ([`crate::openai`]) and counters
//! ([`JudgeStats`]) for everything that happens.

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::Semaphore;

use crate::budget::Budget;
use crate::config::LlmConfig;
use crate::openai::{ChatMessage, ChatRequest, Completion, parse_reply};
use crate::retry::{RetryPolicy, StatusClass, classify_status, parse_retry_after};
use crate::{JudgeError, JudgeStats};

/// Largest reply body read, in bytes; a longer one is a malformed reply.
pub const MAX_REPLY_BYTES: usize = 4 << 20;
/// Bytes of an error reply's body kept in [`JudgeError::Http`].
const ERROR_BODY_BYTES: usize = 300;

/// Locks `m`, shrugging off poisoning (counters stay usable after a panic elsewhere).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How one request ended when it did not produce a completion.
struct Failed {
    error: JudgeError,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Failed {
    fn fatal(error: JudgeError) -> Self {
        Self {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    fn retryable(error: JudgeError, retry_after: Option<Duration>) -> Self {
        Self {
            error,
            retryable: true,
            retry_after,
        }
    }
}

/// An OpenAI-compatible chat-completions client with a budget; share it behind an `Arc`.
#[derive(Debug)]
pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
    max_tokens_per_call: u32,
    temperature: f32,
    seed: Option<u64>,
    permits: Semaphore,
    in_flight: AtomicU64,
    budget: Mutex<Budget>,
    pub(crate) stats: Arc<Mutex<JudgeStats>>,
}

impl ChatClient {
    /// A client for `cfg`, reading the API key from the variable `cfg.api_key_env`
    /// names; counts go to `stats`.
    pub fn new(cfg: &LlmConfig, stats: Arc<Mutex<JudgeStats>>) -> Result<Self, JudgeError> {
        let api_key = match &cfg.api_key_env {
            None => None,
            Some(var) => Some(
                std::env::var(var).map_err(|_| JudgeError::MissingApiKey { var: var.clone() })?,
            ),
        };
        Self::with_api_key(cfg, api_key, stats)
    }

    /// A client for `cfg` with `api_key` given directly (`cfg.api_key_env` is ignored).
    pub fn with_api_key(
        cfg: &LlmConfig,
        api_key: Option<String>,
        stats: Arc<Mutex<JudgeStats>>,
    ) -> Result<Self, JudgeError> {
        cfg.validate()?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_max_idle_per_host(cfg.max_concurrency as usize)
            .build()
            .map_err(|e| JudgeError::Client(error_chain(&e)))?;
        {
            let mut s = lock(&stats);
            s.max_calls = cfg.max_calls;
            s.max_tokens = cfg.max_tokens;
        }
        Ok(Self {
            http,
            url: format!("{}/chat/completions", cfg.base_url.trim_end_matches('/')),
            model: cfg.model.clone(),
            api_key,
            timeout,
            retry: RetryPolicy {
                max_retries: cfg.max_retries,
                base: Duration::from_millis(cfg.backoff_base_ms),
                max: Duration::from_millis(cfg.backoff_max_ms),
            },
            max_tokens_per_call: cfg.max_tokens_per_call,
            temperature: cfg.temperature,
            seed: cfg.seed,
            permits: Semaphore::new(cfg.max_concurrency as usize),
            in_flight: AtomicU64::new(0),
            budget: Mutex::new(Budget::new(cfg.max_calls, cfg.max_tokens)),
            stats,
        })
    }

    /// The endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> JudgeStats {
        lock(&self.stats).clone()
    }

    /// Calls and tokens charged to the budget so far.
    pub fn budget_used(&self) -> (u64, u64) {
        let b = lock(&self.budget);
        (b.calls(), b.tokens())
    }

    /// One judge call: waits for a concurrency slot, then sends the request, retrying
    /// what is retryable, until a well-formed completion or a final error.
    pub async fn complete(&self, messages: &[ChatMessage]) -> Result<Completion, JudgeError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| JudgeError::Client("the client was shut down".into()))?;
        let started = Instant::now();
        let now_in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        // Decrements even when the caller drops this future mid-call.
        let _in_flight = InFlight(&self.in_flight);
        {
            let mut s = lock(&self.stats);
            s.calls += 1;
            s.peak_in_flight = s.peak_in_flight.max(now_in_flight);
        }
        let outcome = self.attempts(messages).await;
        let mut s = lock(&self.stats);
        s.latency.record(started.elapsed());
        match &outcome {
            Ok(_) => s.successes += 1,
            Err(_) => s.failures += 1,
        }
        outcome
    }

    async fn attempts(&self, messages: &[ChatMessage]) -> Result<Completion, JudgeError> {
        let body = serde_json::to_vec(&ChatRequest {
            model: &self.model,
            messages,
            max_tokens: self.max_tokens_per_call,
            temperature: self.temperature,
            seed: self.seed,
            stream: false,
        })
        .map_err(|e| JudgeError::Client(format!("request body: {e}")))?;
        let mut retry = 0;
        loop {
            let reservation = lock(&self.budget).reserve(u64::from(self.max_tokens_per_call));
            let reservation = match reservation {
                Ok(r) => r,
                Err(limit) => {
                    lock(&self.stats).budget_refusals += 1;
                    return Err(JudgeError::BudgetExhausted(limit));
                }
            };
            lock(&self.stats).requests += 1;
            let outcome = self.send(&body).await;
            let used = outcome
                .as_ref()
                .map_or(0, |c| c.prompt_tokens + c.completion_tokens);
            lock(&self.budget).settle(reservation, used);
            let failed = match outcome {
                Ok(c) => {
                    let mut s = lock(&self.stats);
                    s.prompt_tokens += c.prompt_tokens;
                    s.completion_tokens += c.completion_tokens;
                    return Ok(c);
                }
                Err(f) => f,
            };
            if !failed.retryable {
                return Err(failed.error);
            }
            retry += 1;
            let jitter: f64 = rand::random();
            let Some(wait) = self.retry.delay(retry, failed.retry_after, jitter) else {
                return Err(failed.error);
            };
            tracing::debug!(url = %self.url, retry, ?wait, error = %failed.error, "judge request retried");
            lock(&self.stats).retries += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends one request and reads its reply.
    async fn send(&self, body: &[u8]) -> Result<Completion, Failed> {
        let mut req = self
            .http
            .post(&self.url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let mut resp = req.send().await.map_err(|e| self.transport(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut bytes = Vec::new();
        let mut too_long = false;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(&e))? {
            if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                too_long = true;
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        match classify_status(status) {
            StatusClass::Success => {
                let parsed = if too_long {
                    Err(format!("the reply exceeds {MAX_REPLY_BYTES} bytes"))
                } else {
                    parse_reply(&bytes)
                };
                parsed.map_err(|reason| {
                    lock(&self.stats).malformed_replies += 1;
                    Failed::fatal(JudgeError::MalformedReply { reason })
                })
            }
            class => {
                lock(&self.stats).http_errors += 1;
                let end = bytes.len().min(ERROR_BODY_BYTES);
                let error = JudgeError::Http {
                    status,
                    body: String::from_utf8_lossy(&bytes[..end]).into_owned(),
                };
                Err(if class == StatusClass::Retryable {
                    Failed::retryable(error, retry_after)
                } else {
                    Failed::fatal(error)
                })
            }
        }
    }

    /// Classifies a transport error: timeouts and connection failures are retryable.
    fn transport(&self, e: &reqwest::Error) -> Failed {
        if e.is_timeout() {
            lock(&self.stats).timeouts += 1;
            return Failed::retryable(
                JudgeError::Timeout {
                    timeout_ms: self.timeout.as_millis() as u64,
                },
                None,
            );
        }
        if e.is_builder() {
            return Failed::fatal(JudgeError::Client(error_chain(e)));
        }
        lock(&self.stats).connect_errors += 1;
        Failed::retryable(
            JudgeError::Connect {
                url: self.url.clone(),
                reason: error_chain(e),
            },
            None,
        )
    }
}

/// Counts a call out of flight when dropped.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An error and its sources, `: `-separated (reqwest's own message names only the URL).
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
