//! The vocabulary every troupe role shares: policy versions, tasks, token-exact
//! trajectories and their rewards.
//!
//! Every type here is a message payload that crosses actor boundaries, in process
//! today and over the network later, so each derives bincode's `Encode`/`Decode`
//! and uses fixed-width integers only. [`wire`] holds the framing helpers.
//!
//! ```
//! use troupe_core::{PolicyVersion, Trajectory, Purpose, TaskSpec};
//! let task = TaskSpec { id: 7, prompt: "sort 3 1 2".into(), answer: "123".into(), difficulty: 3 };
//! let mut t = Trajectory::new(1, task, Purpose::Eval { round: 0 });
//! t.push_context(&[5, 6]);
//! t.push_policy(9, -0.5, PolicyVersion(3));
//! assert_eq!(t.policy_token_count(), 1);
//! assert_eq!(t.oldest_version(), Some(PolicyVersion(3)));
//! ```

pub mod protocol;
pub mod trajectory;
pub mod wire;

pub use trajectory::{
    Author, Purpose, Reward, ScoredTrajectory, TaskSpec, TokenId, Trajectory, Turn,
};

use bincode::{Decode, Encode};

/// A counter owned by the learner: version `n` is the policy after `n` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct PolicyVersion(pub u64);

impl PolicyVersion {
    /// How many versions `self` lags behind `current` (zero when it is not behind).
    pub fn staleness(self, current: PolicyVersion) -> u64 {
        current.0.saturating_sub(self.0)
    }

    /// The next version.
    pub fn next(self) -> PolicyVersion {
        PolicyVersion(self.0 + 1)
    }
}

impl std::fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Errors from decoding troupe's wire payloads.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The frame declared more bytes than the limit allows.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Declared length.
        len: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The frame was written by an incompatible protocol version.
    #[error("protocol version {found} is not supported (expected {expected})")]
    ProtocolVersion {
        /// Version in the frame header.
        found: u16,
        /// Version this build speaks.
        expected: u16,
    },
    /// The frame ended before its header or body was complete.
    #[error("frame truncated: needed {needed} bytes, had {had}")]
    Truncated {
        /// Bytes required.
        needed: u64,
        /// Bytes present.
        had: u64,
    },
    /// The body did not decode as the expected message.
    #[error("malformed message body: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The message could not be encoded.
    #[error("message could not be encoded: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}
