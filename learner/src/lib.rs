//! The learner: losses, optimizer and checkpoints.
//!
//! - [`grpo`] — group-relative advantages and the PPO-clipped policy-gradient loss
//!   against behaviour log-probs (off-policy correction for stale samples);
//! - [`sft`] — the supervised warm-start loss on seed trajectories;
//! - [`adamw`] — AdamW with global-norm gradient clipping and saveable state;
//! - [`checkpoint`] — weights + optimizer state + step + RNG in a run directory;
//! - [`learner`] — the stateful learner that ties them together.
//!
//! ```
//! let adv = troupe_learner::grpo::group_advantages(&[1.0, 0.0, 0.0, 1.0]);
//! assert!((adv[0] - 1.0).abs() < 1e-3 && (adv[1] + 1.0).abs() < 1e-3);
//! ```

pub mod adamw;
pub mod checkpoint;
pub mod grpo;
pub mod learner;
pub mod sft;

pub use learner::{Learner, LearnerConfig, RlStats, SftExample};

/// Errors from training and checkpointing.
#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] troupe_model::ModelError),
    /// A tensor operation failed.
    #[error("tensor op failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a checkpoint failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// File involved.
        path: std::path::PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A checkpoint's metadata was malformed.
    #[error("checkpoint {path}: {reason}")]
    BadCheckpoint {
        /// File involved.
        path: std::path::PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A training batch was empty or inconsistent.
    #[error("bad batch: {0}")]
    BadBatch(String),
    /// The loss became NaN or infinite.
    #[error("loss is not finite at step {step}")]
    NonFinite {
        /// Optimizer step.
        step: u64,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, LearnerError>;
