//! Configuration and the values the replay buffer hands back.

use bincode::{Decode, Encode};
use troupe_core::ScoredTrajectory;
use troupe_core::protocol::BufferFill;

/// Rewards within this distance of each other count as equal: a group whose rewards
/// are all equal has zero advantage everywhere and teaches the learner nothing.
pub const ZERO_SIGNAL_EPSILON: f32 = 1e-6;

/// How the replay buffer groups, bounds and filters trajectories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    /// Members per GRPO group (at least 2). Memory: one group holds this many trajectories.
    pub group_size: u32,
    /// Groups per RL batch (at least 1); group indices run over `0..groups_per_batch`.
    pub groups_per_batch: u32,
    /// The largest accepted lag, in policy versions, between the oldest token of any
    /// member and the learner's current version. Larger admits more off-policy data.
    pub max_staleness: u64,
    /// Groups (incomplete or complete but unserved) held at once before new groups are
    /// refused with [`crate::BufferError::Full`]; at least `groups_per_batch`.
    pub capacity_groups: usize,
}

/// A group's key: `(RL batch, group index)`; ordered oldest batch first.
pub type GroupKey = (u64, u32);

/// Why a taken group was not handed to the learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum DropReason {
    /// A member was older than `max_staleness` versions.
    Stale,
    /// All rewards were equal: no advantage, nothing to learn.
    ZeroSignal,
    /// A member has no reward: its judge failed
    /// ([`Reward::judge_error`](troupe_core::Reward::judge_error)), so the group's
    /// advantages cannot be computed.
    JudgeError,
}

/// What became of a taken group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Fate {
    /// Handed to the learner.
    Served,
    /// Dropped, for this reason.
    Dropped(DropReason),
}

/// What a take closes against later inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Closes {
    /// The whole batch ([`crate::ReplayBuffer::take_batch`], pipelined mode).
    Batch,
    /// Only the groups taken ([`crate::ReplayBuffer::take_ready`], free-running mode).
    Groups,
}

/// One group consumed by a take, and its fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct TakenGroup {
    /// RL batch.
    pub batch: u64,
    /// Group index.
    pub group: u32,
    /// Served, or dropped and why.
    pub fate: Fate,
}

/// The record of one take: which groups were consumed and what became of each. It
/// records the outcome, not the request, so replaying it does not depend on the
/// staleness bound or the policy version in force when it is replayed.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Take {
    /// [`Batch::batch`] of the take.
    pub batch: u64,
    /// What the take closed.
    pub closes: Closes,
    /// The groups consumed, in the order they were taken.
    pub groups: Vec<TakenGroup>,
}

impl Take {
    /// Trajectory ids are not listed: a group's members are exactly those inserted for
    /// it, so `(batch, group)` names them.
    pub fn keys(&self) -> impl Iterator<Item = GroupKey> + '_ {
        self.groups.iter().map(|g| (g.batch, g.group))
    }
}

/// One GRPO group: trajectories for the same prompt, sorted by trajectory id.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Group {
    /// RL batch sequence number.
    pub batch: u64,
    /// Group index within the batch.
    pub group: u32,
    /// The members, sorted by trajectory id.
    pub members: Vec<ScoredTrajectory>,
}

/// What the learner gets: the groups worth training on, plus what was thrown away.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Batch {
    /// The RL batch served (in free-running mode: the batch of the oldest group taken).
    pub batch: u64,
    /// Groups kept, in `(batch, group)` order.
    pub groups: Vec<Group>,
    /// Trajectories dropped because their group was too stale.
    pub dropped_stale: u64,
    /// Trajectories filtered because their group had no reward spread.
    pub filtered_zero_signal: u64,
    /// Trajectories dropped because a member of their group has no reward.
    pub dropped_judge_error: u64,
    /// Groups dropped as stale.
    pub dropped_stale_groups: u32,
    /// Groups filtered for zero signal.
    pub filtered_groups: u32,
    /// Groups dropped for a judge error.
    pub judge_error_groups: u32,
    /// Sum of `reward.total` over every trajectory taken (kept or dropped) that has a
    /// reward (judge errors excluded).
    pub reward_sum: f64,
    /// Trajectories taken (kept or dropped).
    pub taken: u64,
    /// Sum of each named reward component (`reward.breakdown`) over every trajectory
    /// taken, in order of first appearance: with 0/1 components, the count of each case
    /// (e.g. a code-fixing judge's `solved`, `no_tests`, `timeout`).
    pub reward_parts: Vec<(String, f64)>,
    /// Trajectories taken without a reward (judge errors); `reward_sum` averages
    /// over `taken - unscored`.
    pub unscored: u64,
    /// What the buffer held when the take began (the groups taken included).
    pub fill: BufferFill,
}

impl Batch {
    /// The kept member with the highest reward (the first of equals, in group order),
    /// or `None` when no group was kept.
    pub fn best_trajectory(&self) -> Option<&ScoredTrajectory> {
        self.groups
            .iter()
            .flat_map(|g| &g.members)
            .reduce(|best, m| {
                if m.reward.total > best.reward.total {
                    m
                } else {
                    best
                }
            })
    }

    /// Adds `reward`'s components to [`Batch::reward_parts`].
    pub fn add_reward_parts(&mut self, reward: &troupe_core::Reward) {
        for (name, value) in &reward.breakdown {
            match self.reward_parts.iter_mut().find(|(n, _)| n == name) {
                Some((_, sum)) => *sum += f64::from(*value),
                None => self.reward_parts.push((name.clone(), f64::from(*value))),
            }
        }
    }
}

/// The result of a successful insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored; its group is still incomplete.
    Accepted,
    /// Stored, and it completed its group.
    GroupComplete {
        /// RL batch.
        batch: u64,
        /// Group index.
        group: u32,
    },
    /// The trajectory id was seen before; ignored.
    Duplicate,
}

/// Running totals. Trajectory counts satisfy
/// `inserted == served + dropped_stale + filtered_zero_signal + dropped_judge_error + pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode)]
pub struct Counts {
    /// Trajectories accepted (duplicates excluded).
    pub inserted: u64,
    /// Inserts ignored as duplicates.
    pub duplicates: u64,
    /// Trajectories handed to the learner.
    pub served: u64,
    /// Trajectories dropped as stale.
    pub dropped_stale: u64,
    /// Trajectories filtered for zero signal.
    pub filtered_zero_signal: u64,
    /// Trajectories dropped because a member of their group has no reward.
    pub dropped_judge_error: u64,
    /// Trajectories held now.
    pub pending: u64,
    /// Groups handed to the learner.
    pub served_groups: u64,
    /// Groups dropped as stale.
    pub dropped_stale_groups: u64,
    /// Groups filtered for zero signal.
    pub filtered_groups: u64,
    /// Groups dropped for a judge error.
    pub judge_error_groups: u64,
    /// Groups held now (incomplete or complete).
    pub held_groups: u64,
    /// Complete groups held now.
    pub complete_groups: u64,
}

impl Counts {
    /// Whether the trajectory conservation law holds.
    pub fn is_consistent(&self) -> bool {
        self.inserted
            == self.served
                + self.dropped_stale
                + self.filtered_zero_signal
                + self.dropped_judge_error
                + self.pending
    }
}
