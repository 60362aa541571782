//! The replay buffer state machine.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use troupe_core::{PolicyVersion, Purpose, ScoredTrajectory};

use crate::BufferError;
use crate::types::{Batch, BufferConfig, Counts, Group, InsertOutcome, ZERO_SIGNAL_EPSILON};

/// A group's key: `(batch, group index)`, ordered oldest first.
type Key = (u64, u32);

/// Gathers scored trajectories into groups and serves complete groups; see the crate docs.
#[derive(Debug)]
pub struct ReplayBuffer {
    cfg: BufferConfig,
    /// Held groups (incomplete and complete), members sorted by id.
    groups: BTreeMap<Key, Vec<ScoredTrajectory>>,
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

/// How a complete group fares when it is taken.
enum Verdict {
    Stale,
    ZeroSignal,
    Keep,
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
            Some(members) if members.len() >= group_size => {
                return Err(BufferError::GroupOverfull {
                    id,
                    batch,
                    group,
                    group_size: self.cfg.group_size,
                });
            }
            Some(_) => {}
            None if self.is_full() => {
                return Err(BufferError::Full {
                    id,
                    capacity_groups: self.cfg.capacity_groups,
                });
            }
            None => {}
        }
        let members = self.groups.entry(key).or_default();
        let at = members.partition_point(|m| m.trajectory.id < id);
        members.insert(at, t);
        let now_complete = members.len() == group_size;
        self.seen.insert(id);
        self.counts.inserted += 1;
        self.counts.pending += 1;
        if now_complete {
            self.complete.insert(key);
            Ok(InsertOutcome::GroupComplete { batch, group })
        } else {
            Ok(InsertOutcome::Accepted)
        }
    }

    /// Pipelined mode: serves batch `batch` once all of its `groups_per_batch` groups are
    /// complete (`None` until then, and for a batch already taken). Each group is
    /// dropped if stale at `current`, filtered if its rewards are all equal, else kept.
    pub fn take_batch(&mut self, batch: u64, current: PolicyVersion) -> Option<Batch> {
        let keys: Vec<Key> = (0..self.cfg.groups_per_batch).map(|g| (batch, g)).collect();
        if !keys.iter().all(|k| self.complete.contains(k)) {
            return None;
        }
        self.closed_batches.insert(batch);
        Some(self.serve(batch, &keys, current))
    }

    /// Free-running mode: serves up to `max_groups` complete groups, oldest
    /// `(batch, group)` first, from any batch; `None` when no group is complete or
    /// `max_groups` is zero. Classification is as in [`ReplayBuffer::take_batch`].
    pub fn take_ready(&mut self, max_groups: usize, current: PolicyVersion) -> Option<Batch> {
        let keys: Vec<Key> = self.complete.iter().take(max_groups).copied().collect();
        let first = keys.first()?.0;
        self.closed_groups.extend(keys.iter().copied());
        Some(self.serve(first, &keys, current))
    }

    /// Removes the complete groups `keys` and classifies each one.
    fn serve(&mut self, batch: u64, keys: &[Key], current: PolicyVersion) -> Batch {
        let mut out = Batch {
            batch,
            groups: Vec::new(),
            dropped_stale: 0,
            filtered_zero_signal: 0,
            dropped_stale_groups: 0,
            filtered_groups: 0,
            reward_sum: 0.0,
            taken: 0,
        };
        for &key in keys {
            self.complete.remove(&key);
            let members = self.groups.remove(&key).expect("a complete group is held");
            let n = members.len() as u64;
            self.counts.pending -= n;
            out.taken += n;
            out.reward_sum += members
                .iter()
                .map(|m| f64::from(m.reward.total))
                .sum::<f64>();
            match self.verdict(&members, current) {
                Verdict::Stale => {
                    out.dropped_stale += n;
                    out.dropped_stale_groups += 1;
                    self.counts.dropped_stale += n;
                    self.counts.dropped_stale_groups += 1;
                }
                Verdict::ZeroSignal => {
                    out.filtered_zero_signal += n;
                    out.filtered_groups += 1;
                    self.counts.filtered_zero_signal += n;
                    self.counts.filtered_groups += 1;
                }
                Verdict::Keep => {
                    self.counts.served += n;
                    self.counts.served_groups += 1;
                    out.groups.push(Group {
                        batch: key.0,
                        group: key.1,
                        members,
                    });
                }
            }
        }
        out
    }

    fn verdict(&self, members: &[ScoredTrajectory], current: PolicyVersion) -> Verdict {
        let stale = members.iter().any(|m| {
            m.trajectory
                .oldest_version()
                .is_some_and(|v| v.staleness(current) > self.cfg.max_staleness)
        });
        if stale {
            return Verdict::Stale;
        }
        let (lo, hi) = members
            .iter()
            .map(|m| m.reward.total)
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), r| {
                (lo.min(r), hi.max(r))
            });
        if hi - lo <= ZERO_SIGNAL_EPSILON {
            Verdict::ZeroSignal
        } else {
            Verdict::Keep
        }
    }

    /// Running totals (see [`Counts`]).
    pub fn counts(&self) -> Counts {
        Counts {
            held_groups: self.groups.len() as u64,
            complete_groups: self.complete.len() as u64,
            ..self.counts
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
        for m in self.groups.values().flatten() {
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
