//! Checkpoints: `model.safetensors`, `optimizer.safetensors` and `learner.json`
//! (step, version, RNG, optimizer step) in one directory, written atomically (into a
//! temporary sibling, then renamed) so a crash never leaves a half-written checkpoint.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{LearnerError, Result};

/// The learner's scalar state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LearnerState {
    /// Optimizer steps taken (SFT and RL).
    pub step: u64,
    /// Published policy version.
    pub version: u64,
    /// RL steps taken (an RL step whose batch had no signal changes no weight).
    pub rl_steps: u64,
    /// Whether the SFT warm start has finished.
    pub sft_done: bool,
    /// The learner's RNG.
    pub rng: rand_chacha::ChaCha8Rng,
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LearnerError + '_ {
    move |source| LearnerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Directory names inside `RUN_DIR/checkpoints`.
pub fn checkpoint_dir(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join("checkpoints").join(format!("step-{step:06}"))
}

/// Writes `LATEST` to point at `dir` (atomically).
pub fn mark_latest(run_dir: &Path, dir: &Path) -> Result<()> {
    let root = run_dir.join("checkpoints");
    let tmp = root.join("LATEST.tmp");
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    std::fs::write(&tmp, name).map_err(io(&tmp))?;
    std::fs::rename(&tmp, root.join("LATEST")).map_err(io(&root))?;
    Ok(())
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let marker = run_dir.join("checkpoints").join("LATEST");
    match std::fs::read_to_string(&marker) {
        Ok(name) => Ok(Some(run_dir.join("checkpoints").join(name.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&marker)(e)),
    }
}

/// Reads a JSON file into `T`, naming the file in any error.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| LearnerError::BadCheckpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes `value` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| LearnerError::BadCheckpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::write(path, text).map_err(io(path))
}
