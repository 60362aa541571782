//! `troupe-judge`: turns a finished trajectory into a [`Reward`](troupe_core::Reward)
//! from weighted components — hidden tests, a rule, an LLM judge's verdict.
//!
//! The parts, pure cores first:
//!
//! - [`reward`] — [`RewardSpec`]: components and weights, and how their scores combine
//!   into a reward with a per-component breakdown (or [`Unscored`] when one fails).
//! - [`verdict`] — the verdict line a judge model must end with (`VERDICT: PASS` /
//!   `VERDICT: FAIL`, or `SCORE: x`) and its strict parser.
//! - [`template`] — the judge prompt template (`{task}`, `{response}`, `{reference}`).
//! - [`retry`] — what is retried (network errors, timeouts, 429, 5xx) and the backoff.
//! - [`budget`] — the call and token budget.
//! - [`openai`] — the chat-completions request and a strict reader of replies.
//! - [`stats`] — [`JudgeStats`]: every outcome counted, latency histogram, budget use.
//! - [`config`] — the `[judge]` table of `cluster.toml`.
//! - [`client`] — [`ChatClient`]: the HTTP client (reqwest) that puts them together.
//! - [`scorer`] — [`LlmJudge`] and [`Scorer`], what the judge actor calls.
//! - [`llama_server`] — starts llama.cpp's OpenAI-compatible server on a local GGUF.
//!
//! **Failure policy.** A component that fails — a malformed verdict, a budget refusal,
//! a timeout or HTTP error after retries, a missing test result — never becomes a zero.
//! The scorer returns [`Unscored`], counts it ([`JudgeStats::unscored`], plus the
//! specific counter), and the judge actor marks the trajectory with
//! [`Reward::judge_error`](troupe_core::Reward::judge_error): the replay buffer drops its
//! group (`dropped_judge_error`) instead of training on a made-up reward, and a held-out
//! evaluation leaves it out of pass@1.
//!
//! ```
//! use troupe_core::TaskSpec;
//! use troupe_judge::{ComponentScores, JudgeConfig, JudgeError, VerdictFormat, parse_verdict};
//!
//! let cfg: JudgeConfig = toml::from_str(r#"
//!     components = { rules = 0.5, llm = 0.5 }
//!     [llm]
//!     base_url = "http://127.0.0.1:8080/v1"
//!     model = "judge"
//! "#)?;
//! let spec = cfg.reward_spec()?;
//! let task = TaskSpec { id: 1, prompt: "sort 31".into(), answer: "13".into(), difficulty: 2 };
//!
//! let verdict = parse_verdict("Digits are in order.\nVERDICT: PASS", VerdictFormat::PassFail);
//! let scores = ComponentScores { llm: Some(verdict), ..Default::default() };
//! let reward = spec.combine(&task, "13", scores).unwrap();
//! assert_eq!(reward.total, 1.0);
//!
//! let bad = parse_verdict("Looks right to me!", VerdictFormat::PassFail);
//! assert!(matches!(bad, Err(JudgeError::MalformedVerdict { .. })));
//! let scores = ComponentScores { llm: Some(bad), ..Default::default() };
//! assert!(spec.combine(&task, "13", scores).is_err()); // unscored, not zero
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod budget;
pub mod client;
pub mod config;
mod error;
pub mod llama_server;
pub mod openai;
pub mod retry;
pub mod reward;
pub mod scorer;
pub mod stats;
pub mod template;
pub mod verdict;

pub use budget::{Budget, BudgetLimit};
pub use client::ChatClient;
pub use config::{Components, JudgeConfig, LlmConfig, RuleKind};
pub use error::JudgeError;
pub use openai::{ChatMessage, ChatRole, Completion};
pub use reward::{Component, ComponentScores, RewardSpec, Rule, TestOutcome, Unscored};
pub use scorer::{LlmJudge, Scorer};
pub use stats::{JudgeReport, JudgeStats, LatencyHistogram};
pub use verdict::{VerdictFormat, parse_verdict};
