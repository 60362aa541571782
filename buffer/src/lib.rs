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
//! - [`Group`], [`Batch`], [`InsertOutcome`], [`Counts`], [`BufferFill`] — what it hands
//!   back; [`Take`] — the record of a take (groups consumed, each served or dropped
//!   with a reason).
//! - [`DurableBuffer`] — the buffer with its log: every change logged in order, synced
//!   before it is acknowledged.
//! - [`log`] — the durable replay log: checksummed records appended before a change is
//!   acknowledged, recovery that cuts a torn tail, snapshots that bound recovery time.
//!
//! There is no async and no clock in here (the log's group commit is told the time);
//! the buffer actor is a thin shell around it.
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

mod durable;
pub mod log;
mod replay;
mod types;

pub use durable::{DurableBuffer, Inserted};
pub use log::{LogConfig, Recovery, RecoveryReport, ReplayLog, SyncPolicy};
pub use replay::{ReplayBuffer, RestoredState};
pub use troupe_core::protocol::BufferFill;
pub use types::{
    Batch, BufferConfig, Closes, Counts, DropReason, Fate, Group, GroupKey, InsertOutcome, Take,
    TakenGroup, ZERO_SIGNAL_EPSILON,
};

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

/// Errors from the replay log. A damaged tail is not an error (recovery cuts it off and
/// reports it); these are the conditions recovery cannot repair on its own.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file of the log could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Another buffer (process) has the log directory open.
    #[error("{}: the replay log is in use by another buffer", path.display())]
    Locked {
        /// The log directory.
        path: std::path::PathBuf,
    },
    /// A header or snapshot is damaged, of another format version, or out of place.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A record with a good checksum does not decode (written by an incompatible build).
    #[error("{}: record at byte {offset} does not decode: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// Byte offset of the record's frame.
        offset: u64,
        /// Decoder message.
        reason: String,
    },
    /// The log was written by a buffer with another group shape.
    #[error(
        "{}: written for group_size {} x groups_per_batch {}, configured {} x {}",
        path.display(), found.0, found.1, expected.0, expected.1
    )]
    ConfigChanged {
        /// The file.
        path: std::path::PathBuf,
        /// `(group_size, groups_per_batch)` in the file.
        found: (u32, u32),
        /// `(group_size, groups_per_batch)` configured.
        expected: (u32, u32),
    },
    /// The records do not describe a state this buffer can hold.
    #[error("replay log does not apply: {reason}")]
    Inconsistent {
        /// What did not fit.
        reason: String,
    },
    /// A new run found records in the log directory.
    #[error("{}: the replay log already holds records (resume that run, or remove the directory)", path.display())]
    NotEmpty {
        /// The log directory.
        path: std::path::PathBuf,
    },
    /// Rewinding to a learner step needs takes that a compaction folded into a snapshot.
    #[error(
        "cannot rewind the replay log to step {step}: batch {batch} was taken before the last compaction"
    )]
    RewindPastSnapshot {
        /// The step asked for.
        step: u64,
        /// A batch the snapshot records as taken.
        batch: u64,
    },
    /// A record would exceed [`log::MAX_RECORD`] bytes.
    #[error(
        "a log record of {len} bytes exceeds the limit of {} bytes",
        log::MAX_RECORD
    )]
    TooLarge {
        /// Payload bytes.
        len: u64,
    },
    /// A record could not be encoded.
    #[error("a log record could not be encoded: {0}")]
    Encode(String),
    /// An earlier write or sync failed; nothing more is appended until the log is
    /// reopened (recovery cuts whatever the failed write left).
    #[error("the replay log failed earlier and must be reopened")]
    Poisoned,
    /// The buffer configuration is invalid.
    #[error(transparent)]
    Config(#[from] BufferError),
}
