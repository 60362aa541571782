//! `troupe-env`: the tasks, environments and verifier the rollout side of troupe runs.
//!
//! The parts:
//!
//! - **Tasks** ([`TaskConfig`], [`TaskSource`]): built-in verifiable digit problems,
//!   `sort 3914` -> `1349`, `347+589` -> `936` and the tool-use family `347*589+1234`
//!   -> `205617`, drawn from a seeded, resumable generator ([`TaskSourceState`]).
//! - **Split** ([`split_of`]): a stable hash of the problem text puts each problem in the
//!   train or held-out split, the same for every run seed, so training never sees the
//!   problems [`TaskSource::heldout`] evaluates on.
//! - **Verifier** ([`verify`], [`score`]): exact-match [`Reward`](troupe_core::Reward)
//!   with `format` and tool-use diagnostics (turns, tool calls, malformed calls).
//! - **Tools** ([`tools`]): the tool-call format, the calculator, and [`tools::ToolEnv`],
//!   the multi-turn environment of the `calc` family.
//! - **Expert** ([`expert_solve`], [`write_seed_trajectories`]): a stand-in for a stronger
//!   model that writes chat-format seed trajectories.
//! - **Seed files** ([`read_seed_trajectories`], [`drop_heldout`]): a strict chat-JSONL
//!   reader that keeps good lines and reports each bad one with its line and reason.
//! - **Environments** ([`Environment`], [`SingleTurn`], [`EnvHostCore`]): the pure core of
//!   an env host, with a capacity for back-pressure; [`EnvSpec`] picks the environment.
//! - **Code fixing** ([`codefix`]): multi-turn episodes in sandboxed git repositories with
//!   planted bugs, judged by hidden tests; split by bug family.
//!
//! ```
//! use troupe_env::{TaskConfig, TaskSource, expert_solve, verify, EnvHostCore, EnvSpec};
//!
//! let mut source = TaskSource::new(TaskConfig::default(), 42)?;
//! let task = source.next_train();
//! let mut host = EnvHostCore::new(8, EnvSpec::default());
//! let prompt = host.reset(1, &task)?;
//! assert!(prompt.starts_with("sort "));
//! let answer = expert_solve(&task);
//! assert!(host.step(1, &answer)?.done);
//! assert_eq!(verify(&task, &answer).total, 1.0);
//! # Ok::<(), troupe_env::EnvError>(())
//! ```

pub mod codefix;
mod error;
mod expert;
mod host;
mod seeds;
mod split;
mod tasks;
pub mod tools;
mod verify;

pub use error::EnvError;
pub use expert::{expert_conversation, expert_solve, write_seed_trajectories};
pub use host::{
    EnvHostCore, EnvSpec, Environment, Observation, SingleTurn, StepOutcome, make_environment,
};
pub use seeds::{
    ChatMessage, Conversation, RejectedLine, Role, SeedSet, drop_heldout, drop_heldout_of,
    read_seed_trajectories,
};
pub use split::{Split, split_of};
pub use tasks::{
    FIRST_TRAIN_ID, MAX_DIGITS, MAX_HELDOUT_PER_MILLE, TaskConfig, TaskFamily, TaskSource,
    TaskSourceState,
};
pub use verify::{score, verify};
