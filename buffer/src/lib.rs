//! The replay buffer core: gathers scored trajectories into GRPO groups, and serves
//! complete groups to the learner after dropping stale ones and filtering those
//! without learning signal.
//!
//! The parts:
//! - [`BufferConfig`] — group size, groups per batch, staleness bound and capacity.
//! - [`ReplayBuffer`] — the pure, deterministic state machine: [`ReplayBuffer::insert`]
//!   accepts trajectories (idempotent by trajectory id, with back-pressure through
//!   [`BufferError::Full`]); [`ReplayBuffer::take_batch`] serves one whole RL batch
//!   (pipelined mode); [`ReplayBuffer::take_ready`] serves whichever groups are
//!   complete, oldest first (free-running mode).
//! - [`Group`], [`Batch`], [`InsertOutcome`], [`Counts`] — what it hands back.
//!
//! There is no async and no clock in here; the buffer actor is a thin shell around it.
//!
//! ```
//! use troupe_buffer::{BufferConfig, InsertOutcome, ReplayBuffer};
//! use troupe_core::{PolicyVersion, Purpose, Reward, ScoredTrajectory, TaskSpec, Trajectory};
//!
//! fn scored(id: u64, group: u32, reward: f32) -> ScoredTrajectory {
//!     let task = TaskSpec { id: 1, prompt: "2+2".into(), answer: "4".into(), difficulty: 1 };
//!     let mut t = Trajectory::new(id, task, Purpose::Train { batch: 0, group });
//!     t.push_policy(7, -0.1, PolicyVersion(0));
//!     ScoredTrajectory { trajectory: t, reward: Reward { total: reward, breakdown: vec![] } }
//! }
//!
//! let cfg = BufferConfig { group_size: 2, groups_per_batch: 1, max_staleness: 1, capacity_groups: 4 };
//! let mut buf = ReplayBuffer::new(cfg).unwrap();
//! assert_eq!(buf.insert(scored(1, 0, 1.0)).unwrap(), InsertOutcome::Accepted);
//! assert_eq!(buf.insert(scored(1, 0, 1.0)).unwrap(), InsertOutcome::Duplicate);
//! assert_eq!(
//!     buf.insert(scored(2, 0, 0.0)).unwrap(),
//!     InsertOutcome::GroupComplete { batch: 0, group: 0 }
//! );
//! let batch = buf.take_batch(0, PolicyVersion(1)).unwrap();
//! assert_eq!(batch.groups.len(), 1);
//! assert_eq!(batch.groups[0].members.len(), 2);
//! let c = buf.counts();
//! assert_eq!((c.inserted, c.served, c.duplicates, c.pending), (2, 2, 1, 0));
//! ```

mod replay;
mod types;

pub use replay::ReplayBuffer;
pub use types::{Batch, BufferConfig, Counts, Group, InsertOutcome, ZERO_SIGNAL_EPSILON};

/// Errors from configuring the replay buffer or inserting into it. None of them loses
/// data silently: a rejected trajectory was not stored and the caller decides what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    /// The configuration is unusable (e.g. a group of one has no relative advantage).
    #[error("invalid buffer config: {0}")]
    InvalidConfig(&'static str),
    /// The trajectory is an evaluation episode; only training trajectories are buffered.
    #[error("trajectory {id} is not a training trajectory")]
    NotTraining {
        /// Trajectory id.
        id: u64,
    },
    /// The trajectory names a group index outside `0..groups_per_batch`.
    #[error("trajectory {id} names group {group}, but batches have {groups_per_batch} groups")]
    GroupOutOfRange {
        /// Trajectory id.
        id: u64,
        /// Group index it named.
        group: u32,
        /// Configured groups per batch.
        groups_per_batch: u32,
    },
    /// The group already holds `group_size` distinct members.
    #[error("group {group} of batch {batch} already has {group_size} members (trajectory {id})")]
    GroupOverfull {
        /// Trajectory id.
        id: u64,
        /// RL batch.
        batch: u64,
        /// Group index.
        group: u32,
        /// Configured group size.
        group_size: u32,
    },
    /// The trajectory's batch (or, in free-running mode, its group) was already served.
    #[error("batch {batch} group {group} was already taken (trajectory {id})")]
    BatchClosed {
        /// Trajectory id.
        id: u64,
        /// RL batch.
        batch: u64,
        /// Group index.
        group: u32,
    },
    /// The trajectory would open a new group while `capacity_groups` groups are held;
    /// retry after the learner takes a batch.
    #[error("buffer full: {capacity_groups} groups held (trajectory {id})")]
    Full {
        /// Trajectory id.
        id: u64,
        /// Configured capacity in groups.
        capacity_groups: usize,
    },
}
