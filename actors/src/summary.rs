//! What a run leaves behind: `summary.json`, `run_state.json` and `metrics.jsonl`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ActorError;

/// Held-out greedy pass@1 at each phase boundary, and during RL.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Heldout {
    /// Before any training.
    pub initial: Option<f32>,
    /// After the SFT warm start.
    pub after_sft: Option<f32>,
    /// After RL.
    pub after_rl: Option<f32>,
    /// Measured during RL.
    pub during_rl: Vec<EvalPoint>,
}

/// One held-out evaluation during RL.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct EvalPoint {
    /// RL steps done when the evaluated weights were published.
    pub step: u64,
    /// Greedy pass@1.
    pub pass_at_1: f32,
}

/// Trajectory accounting:
/// `generated = trained + dropped_stale + filtered_zero_signal + dropped_judge_error + in_flight`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct TrajectoryCounts {
    /// Training trajectories the samplers produced and the buffer accepted.
    pub generated: u64,
    /// Trajectories the learner trained on.
    pub trained: u64,
    /// Dropped for exceeding `max_staleness`.
    pub dropped_stale: u64,
    /// In groups whose rewards were all equal.
    pub filtered_zero_signal: u64,
    /// In groups with a member the judge could not score (see `[judge]`).
    #[serde(default)]
    pub dropped_judge_error: u64,
    /// Still held by the buffer when the run ended.
    pub in_flight: u64,
    /// Resent trajectories the buffer ignored (a resumed run regenerates batches the
    /// buffer's log already holds); not part of `generated`.
    #[serde(default)]
    pub duplicates: u64,
}

/// Token throughput over the RL phase.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Throughput {
    /// Policy tokens sampled for training per second of RL.
    pub sampled_tokens_per_s: f64,
    /// Policy tokens trained on per second of RL.
    pub trained_tokens_per_s: f64,
}

/// Counters that survive a resume (saved with each checkpoint).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// Run seed.
    pub seed: u64,
    /// Held-out results so far.
    pub heldout: Heldout,
    /// Trajectory counts so far.
    pub trajectories: TrajectoryCounts,
    /// Policy tokens sampled for training so far.
    pub sampled_tokens: u64,
    /// Policy tokens trained on so far.
    pub trained_tokens: u64,
    /// Seconds spent in RL so far.
    pub rl_seconds: f64,
    /// Wall seconds of earlier sessions of this run.
    pub wall_seconds: f64,
}

/// `RUN_DIR/summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Held-out accuracies.
    pub heldout: HeldoutSummary,
    /// Wall-clock seconds of the whole run (all sessions of a resumed run).
    pub wall_seconds: f64,
    /// Final policy version.
    pub policy_version: u64,
    /// RL steps done.
    pub rl_steps: u64,
    /// Trajectory accounting.
    pub trajectories: TrajectoryCounts,
    /// Throughput.
    pub throughput: Throughput,
    /// Seconds of RL.
    pub rl_seconds: f64,
    /// Run seed.
    pub seed: u64,
    /// Run directory.
    pub run_dir: String,
    /// The judges' counters (this session's), when a judge calls an LLM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<troupe_judge::JudgeReport>,
}

/// Held-out accuracies in the summary (all phases finished).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldoutSummary {
    /// Before training.
    pub initial: f32,
    /// After SFT.
    pub after_sft: f32,
    /// After RL.
    pub after_rl: f32,
    /// During RL.
    pub during_rl: Vec<EvalPoint>,
}

/// Writes `value` as pretty JSON to `path` (via a temporary file and a rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ActorError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ActorError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text + "\n").map_err(|source| ActorError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| ActorError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a JSON file written by [`write_json`].
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ActorError> {
    let text = std::fs::read_to_string(path).map_err(|source| ActorError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ActorError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}
