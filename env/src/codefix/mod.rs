//! The code-fixing environment: the policy fixes a planted bug in a small git repository
//! over several turns of shell commands and edits, and is rewarded by hidden tests that
//! run after the episode, outside its view.
//!
//! Pure parts (no I/O): [`family`](BugFamily) and the task generator ([`generate`]: a
//! [`TaskKey`] `(family, seed)` gives a repository, an issue and hidden tests; each
//! function's variables are renamed per task, and half of the training tasks' buggy
//! functions are generated formulas, so fragments must be copied, not recalled), the
//! [`Action`] format, the per-episode [`EpisodeCore`], and the reward
//! rules ([`Verdict`], [`touches_tests`], [`judge_run`]).
//! I/O parts: [`CodefixHost`] (the env host's episodes, each command in a sandbox from a
//! warm [`SandboxPool`](troupe_sandbox::SandboxPool)), [`judge`] / [`CodefixJudge`]
//! (hidden tests), and the scripted [`Expert`] that writes seed trajectories by running
//! real episodes.
//!
//! An episode, as the policy sees it:
//!
//! ```text
//! user       Bug: area(3, 4) returns 7, expected 12.
//!            Fix: `w + h` should be `w * h`.
//! assistant  <sh>git grep -nF 'w + h'</sh>
//! user       geometry.py:2:    return w + h
//!            [exit 0]
//! assistant  <edit geometry.py:2>w + h => w * h</edit>
//! user       geometry.py:2:    return w * h
//! assistant  <submit/>
//! ```
//!
//! ```
//! use troupe_env::codefix::{BugFamily, TaskKey, generate, Expert};
//! let task = generate(TaskKey { family: BugFamily::WrongOperator, seed: 7 });
//! assert!(task.issue.starts_with("Bug: "));
//! assert_eq!(generate(task.key), task); // deterministic: the judge regenerates it
//! assert!(Expert::new(&task.issue).act("").starts_with("<sh>git grep"));
//! ```

mod action;
mod commands;
mod config;
mod episode;
mod expert;
mod family;
mod formula;
mod host;
mod judge;
mod rename;
mod task;
mod templates;
mod value;
mod verdict;

pub use action::{Action, USAGE};
pub use config::CodefixConfig;
pub use episode::{CommandKind, EpisodeCore, Next};
pub use expert::{Expert, expert_episode, write_expert_seeds};
pub use family::BugFamily;
pub use host::CodefixHost;
pub use judge::{CodefixJudge, judge};
pub use task::{CodefixTask, Fix, KEY_PREFIX, RepoFile, TaskKey, generate, split_of_issue};
pub use verdict::{
    HiddenReport, REASONS, Verdict, is_test_path, judge_run, parse_report, touched_paths,
    touches_tests,
};
