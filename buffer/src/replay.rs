//! The replay buffer state machine.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use troupe_core::protocol::BufferFill;
use troupe_core::{PolicyVersion, Purpose, ScoredTrajectory};

use crate::BufferError;
use crate::types::{
    Batch, BufferConfig, Closes, Counts, DropReason, Fate, Group, GroupKey, InsertOutcome, Take,
    TakenGroup, ZERO_SIGNAL_EPSILON,
};

mod durable;

pub use durable::RestoredState;

/// A group's key: `(batch, group index)`, ordered oldest first.
type Key = GroupKey;

/// A held group: its members and what serving it needs to know, kept up to date on
/// insert so that taking a group never reads its trajectories' tokens.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    /// Members sorted by trajectory id.
    members: Vec<ScoredTrajectory>,
    /// Oldest policy version among the members' policy tokens.
    oldest: Option<PolicyVersion>,
    /// Smallest and largest `reward.total` among the members that have a reward.
    reward_lo: f32,
    reward_hi: f32,
    /// Sum of the members' `reward.total` in id order (judge errors excluded); set when
    /// the group completes.
    reward_sum: f64,
    /// Members without a reward ([`troupe_core::Reward::is_judge_error`]).
    unscored: u64,
}

impl Held {
    fn new() -> Self {
        Self {
            members: Vec::new(),
            oldest: None,
            reward_lo: f32::INFINITY,
            reward_hi: f32::NEG_INFINITY,
            reward_sum: 0.0,
            unscored: 0,
        }
    }

    /// Adds `t` in id order and folds it into the summaries.
    fn add(&mut self, t: ScoredTrajectory) {
        let oldest = t.trajectory.oldest_version();
        self.oldest = match (self.oldest, oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if t.reward.is_judge_error() {
            self.unscored += 1;
        } else {
            self.reward_lo = self.reward_lo.min(t.reward.total);
            self.reward_hi = self.reward_hi.max(t.reward.total);
        }
        let id = t.trajectory.id;
        let at = self.members.partition_point(|m| m.trajectory.id < id);
        self.members.insert(at, t);
    }

    /// Fixes the reward sum once the membership is final (summed in id order, so the
    /// result does not depend on arrival order).
    fn complete(&mut self) {
        self.reward_sum = self
            .members
            .iter()
            .filter(|m| !m.reward.is_judge_error())
            .map(|m| f64::from(m.reward.total))
            .sum::<f64>();
    }
}

/// Gathers scored trajectories into groups and serves complete groups; see the crate docs.
///
/// Two buffers compare equal when they hold the same state: the same groups and
/// members, the same closed batches and groups, the same ids seen and the same counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBuffer {
    cfg: BufferConfig,
    /// Held groups (incomplete and complete).
    groups: BTreeMap<Key, Held>,
    /// Keys of held groups that are complete.
    complete: BTreeSet<Key>,
    /// Every trajectory id ever accepted.
    seen: HashSet<u64>,
    /// Batches served whole by `take_batch`.
    closed_batches: HashSet<u64>,
    /// Groups served one by one by `take_ready`.
    closed_groups: HashSet<Key>,
    counts: Counts,
}

impl ReplayBuffer {
    /// An empty buffer; fails unless `group_size >= 2`, `groups_per_batch >= 1` and
    /// `capacity_groups >= groups_per_batch`.
    pub fn new(cfg: BufferConfig) -> Result<Self, BufferError> {
        if cfg.group_size < 2 {
            return Err(BufferError::InvalidConfig("group_size must be at least 2"));
        }
        if cfg.groups_per_batch < 1 {
            return Err(BufferError::InvalidConfig(
                "groups_per_batch must be at least 1",
            ));
        }
        if cfg.capacity_groups < cfg.groups_per_batch as usize {
            return Err(BufferError::InvalidConfig(
                "capacity_groups must be at least groups_per_batch",
            ));
        }
        Ok(Self {
            cfg,
            groups: BTreeMap::new(),
            complete: BTreeSet::new(),
            seen: HashSet::new(),
            closed_batches: HashSet::new(),
            closed_groups: HashSet::new(),
            counts: Counts::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &BufferConfig {
        &self.cfg
    }

    /// Stores `t` in its group. Checks, in order: training purpose, duplicate id,
    /// group index in range, batch (or group) not yet taken, room in the group, and —
    /// for a trajectory that opens a new group — room in the buffer.
    pub fn insert(&mut self, t: ScoredTrajectory) -> Result<InsertOutcome, BufferError> {
        self.insert_checked(t, true)
    }

    /// [`ReplayBuffer::insert`], with the capacity check only when `bounded`.
    fn insert_checked(
        &mut self,
        t: ScoredTrajectory,
        bounded: bool,
    ) -> Result<InsertOutcome, BufferError> {
        let id = t.trajectory.id;
        let Purpose::Train { batch, group } = t.trajectory.purpose else {
            return Err(BufferError::NotTraining { id });
        };
        if self.seen.contains(&id) {
            self.counts.duplicates += 1;
            return Ok(InsertOutcome::Duplicate);
        }
        if group >= self.cfg.groups_per_batch {
            return Err(BufferError::GroupOutOfRange {
                id,
                group,
                groups_per_batch: self.cfg.groups_per_batch,
            });
        }
        let key = (batch, group);
        if self.closed_batches.contains(&batch) || self.closed_groups.contains(&key) {
            return Err(BufferError::BatchClosed { id, batch, group });
        }
        let group_size = self.cfg.group_size as usize;
        match self.groups.get(&key) {
            Some(held) if held.members.len() >= group_size => {
                return Err(BufferError::GroupOverfull {
                    id,
                    batch,
                    group,
                    group_size: self.cfg.group_size,
                });
            }
            Some(_) => {}
            None if bounded && self.is_full() => {
                return Err(BufferError::Full {
                    id,
                    capacity_groups: self.cfg.capacity_groups,
                });
            }
            None => {}
        }
        let held = self.groups.entry(key).or_insert_with(Held::new);
        held.add(t);
        let now_complete = held.members.len() == group_size;
        self.seen.insert(id);
        self.counts.inserted += 1;
        self.counts.pending += 1;
        if now_complete {
            held.complete();
            self.complete.insert(key);
            Ok(InsertOutcome::GroupComplete { batch, group })
        } else {
            Ok(InsertOutcome::Accepted)
        }
    }

    /// Pipelined mode: serves batch `batch` once all of its `groups_per_batch` groups are
    /// complete (`None` until then, and for a batch already taken). Each group is
    /// dropped if stale at `current`, dropped if a member has no reward (a judge
    /// error), filtered if its rewards are all equal, else kept.
    pub fn take_batch(&mut self, batch: u64, current: PolicyVersion) -> Option<Batch> {
        self.take_batch_with_record(batch, current).map(|(b, _)| b)
    }

    /// [`ReplayBuffer::take_batch`], also returning what it did as a [`Take`] record:
    /// replaying that record on the state before the take reproduces the state after it.
    pub fn take_batch_with_record(
        &mut self,
        batch: u64,
        current: PolicyVersion,
    ) -> Option<(Batch, Take)> {
        // A batch's keys are adjacent in the ordered set: one range scan, not one
        // lookup per group.
        let gpb = self.cfg.groups_per_batch;
        if self.complete.range((batch, 0)..=(batch, gpb - 1)).count() != gpb as usize {
            return None;
        }
        let keys: Vec<Key> = (0..gpb).map(|g| (batch, g)).collect();
        self.closed_batches.insert(batch);
        Some(self.serve(batch, &keys, current, Closes::Batch))
    }

    /// Free-running mode: serves up to `max_groups` complete groups, oldest
    /// `(batch, group)` first, from any batch; `None` when no group is complete or
    /// `max_groups` is zero. Classification is as in [`ReplayBuffer::take_batch`].
    pub fn take_ready(&mut self, max_groups: usize, current: PolicyVersion) -> Option<Batch> {
        self.take_ready_with_record(max_groups, current)
            .map(|(b, _)| b)
    }

    /// [`ReplayBuffer::take_ready`], also returning its [`Take`] record.
    pub fn take_ready_with_record(
        &mut self,
        max_groups: usize,
        current: PolicyVersion,
    ) -> Option<(Batch, Take)> {
        let keys: Vec<Key> = self.complete.iter().take(max_groups).copied().collect();
        let first = keys.first()?.0;
        self.closed_groups.extend(keys.iter().copied());
        Some(self.serve(first, &keys, current, Closes::Groups))
    }

    /// Removes the complete groups `keys` and classifies each one.
    fn serve(
        &mut self,
        batch: u64,
        keys: &[Key],
        current: PolicyVersion,
        closes: Closes,
    ) -> (Batch, Take) {
        let fill = self.fill();
        let mut out = Batch {
            batch,
            groups: Vec::with_capacity(keys.len()),
            dropped_stale: 0,
            filtered_zero_signal: 0,
            dropped_judge_error: 0,
            dropped_stale_groups: 0,
            filtered_groups: 0,
            judge_error_groups: 0,
            reward_sum: 0.0,
            taken: 0,
            reward_parts: Vec::new(),
            unscored: 0,
            fill,
        };
        let mut record = Take {
            batch,
            closes,
            groups: Vec::with_capacity(keys.len()),
        };
        for &key in keys {
            let fate = self.verdict_of(key, current);
            let held = self.remove_complete(key, fate);
            let n = held.members.len() as u64;
            out.taken += n;
            out.unscored += held.unscored;
            out.reward_sum += held.reward_sum;
            for m in &held.members {
                out.add_reward_parts(&m.reward);
            }
            match fate {
                Fate::Dropped(DropReason::Stale) => {
                    out.dropped_stale += n;
                    out.dropped_stale_groups += 1;
                }
                Fate::Dropped(DropReason::ZeroSignal) => {
                    out.filtered_zero_signal += n;
                    out.filtered_groups += 1;
                }
                Fate::Dropped(DropReason::JudgeError) => {
                    out.dropped_judge_error += n;
                    out.judge_error_groups += 1;
                }
                Fate::Served => out.groups.push(Group {
                    batch: key.0,
                    group: key.1,
                    members: held.members,
                }),
            }
            record.groups.push(TakenGroup {
                batch: key.0,
                group: key.1,
                fate,
            });
        }
        (out, record)
    }

    /// How the complete group `key` fares if taken at `current`.
    fn verdict_of(&self, key: Key, current: PolicyVersion) -> Fate {
        let held = &self.groups[&key];
        if held
            .oldest
            .is_some_and(|v| v.staleness(current) > self.cfg.max_staleness)
        {
            Fate::Dropped(DropReason::Stale)
        } else if held.unscored > 0 {
            Fate::Dropped(DropReason::JudgeError)
        } else if held.reward_hi - held.reward_lo <= ZERO_SIGNAL_EPSILON {
            Fate::Dropped(DropReason::ZeroSignal)
        } else {
            Fate::Served
        }
    }

    /// Removes the complete group `key` with `fate`, updating the counts.
    fn remove_complete(&mut self, key: Key, fate: Fate) -> Held {
        // The learner takes the oldest groups: popping the first entry walks the
        // left edge of each tree, which stays in cache, where a lookup would not.
        if self.complete.first() == Some(&key) {
            self.complete.pop_first();
        } else {
            self.complete.remove(&key);
        }
        let held = match self.groups.first_key_value() {
            Some((first, _)) if *first == key => self.groups.pop_first().map(|(_, h)| h),
            _ => self.groups.remove(&key),
        }
        .expect("a complete group is held");
        let n = held.members.len() as u64;
        self.counts.pending -= n;
        match fate {
            Fate::Dropped(DropReason::Stale) => {
                self.counts.dropped_stale += n;
                self.counts.dropped_stale_groups += 1;
            }
            Fate::Dropped(DropReason::ZeroSignal) => {
                self.counts.filtered_zero_signal += n;
                self.counts.filtered_groups += 1;
            }
            Fate::Dropped(DropReason::JudgeError) => {
                self.counts.dropped_judge_error += n;
                self.counts.judge_error_groups += 1;
            }
            Fate::Served => {
                self.counts.served += n;
                self.counts.served_groups += 1;
            }
        }
        held
    }

    /// Running totals (see [`Counts`]).
    pub fn counts(&self) -> Counts {
        Counts {
            held_groups: self.groups.len() as u64,
            complete_groups: self.complete.len() as u64,
            ..self.counts
        }
    }

    /// Groups of batch `batch` still waiting for trajectories: neither complete nor
    /// served (none once the batch is served whole).
    pub fn missing_groups(&self, batch: u64) -> Vec<u32> {
        if self.closed_batches.contains(&batch) {
            return Vec::new();
        }
        (0..self.cfg.groups_per_batch)
            .filter(|&g| {
                let key = (batch, g);
                !self.complete.contains(&key) && !self.closed_groups.contains(&key)
            })
            .collect()
    }

    /// How full the buffer is now: trajectories and groups held against its capacity.
    pub fn fill(&self) -> BufferFill {
        BufferFill {
            pending: self.counts.pending,
            groups: self.groups.len() as u64,
            capacity_groups: self.cfg.capacity_groups as u64,
            capacity: self.cfg.capacity_groups as u64 * u64::from(self.cfg.group_size),
        }
    }

    /// Groups held now, incomplete or complete.
    pub fn held_groups(&self) -> usize {
        self.groups.len()
    }

    /// Whether a trajectory opening a new group would be refused with
    /// [`BufferError::Full`].
    pub fn is_full(&self) -> bool {
        self.groups.len() >= self.cfg.capacity_groups
    }

    /// Held trajectories by staleness at `current` (a trajectory without policy tokens
    /// counts as staleness 0): staleness -> trajectory count.
    pub fn staleness_histogram(&self, current: PolicyVersion) -> BTreeMap<u64, u64> {
        let mut hist = BTreeMap::new();
        for m in self.groups.values().flat_map(|h| &h.members) {
            let s = m
                .trajectory
                .oldest_version()
                .map_or(0, |v| v.staleness(current));
            *hist.entry(s).or_insert(0) += 1;
        }
        hist
    }
}

#[cfg(test)]
mod tests;
