//! The crate's one error type.

use crate::budget::BudgetLimit;

/// Everything that can go wrong while configuring a judge or scoring with it.
///
/// The variants from [`JudgeError::Connect`] down are what one judge call can end in;
/// each is counted in [`crate::JudgeStats`] and none is ever turned into a zero reward.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeError {
    /// A configuration value is unusable; `key` names the setting.
    #[error("{key}: {reason}")]
    Config {
        /// The setting at fault, as written in `cluster.toml` (`judge.llm.base_url`).
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// The environment variable that should hold the API key is not set (or not UTF-8).
    #[error("environment variable {var} (judge.llm.api_key_env) is not set")]
    MissingApiKey {
        /// The variable's name.
        var: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("HTTP client: {0}")]
    Client(String),
    /// The server could not be reached, or the connection broke, on the last attempt.
    #[error("cannot reach {url}: {reason}")]
    Connect {
        /// The endpoint.
        url: String,
        /// The transport's message.
        reason: String,
    },
    /// The last attempt got no complete reply within the per-request timeout.
    #[error("no reply within {timeout_ms} ms")]
    Timeout {
        /// The per-request timeout in force.
        timeout_ms: u64,
    },
    /// The server answered with a status that is not success (after retries for 429
    /// and 5xx; a 4xx other than 429 is never retried).
    #[error("HTTP {status}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The start of the reply body, for the operator.
        body: String,
    },
    /// A success reply that is not a well-formed chat completion.
    #[error("malformed chat completion: {reason}")]
    MalformedReply {
        /// What is wrong with it.
        reason: String,
    },
    /// The judge model's reply does not end in a verdict line of the configured format.
    #[error("malformed verdict ({reason}): {raw:?}")]
    MalformedVerdict {
        /// What is wrong with it.
        reason: String,
        /// The model's reply as received.
        raw: String,
    },
    /// The call or token budget does not allow another request.
    #[error("judge budget exhausted: {0}")]
    BudgetExhausted(BudgetLimit),
    /// A local judge server ([`crate::llama_server::LlamaServer`]) could not be started.
    #[error("local judge server: {0}")]
    LocalServer(String),
    /// The reward has a `tests` component but the environment supplied no test result.
    #[error("the reward has a tests component, but the environment reported no test result")]
    MissingTestResult,
}
