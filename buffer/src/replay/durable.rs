//! What the replay log needs from the buffer: applying logged facts (inserts without the
//! capacity check, duplicate counts, takes with their recorded fates) and taking the
//! state apart and back together for snapshots. Every check that fails is a
//! [`LogError::Inconsistent`]: the log does not describe a state this buffer can hold.

use troupe_core::{Purpose, ScoredTrajectory};

use super::{Held, ReplayBuffer};
use crate::LogError;
use crate::types::{Closes, Counts, GroupKey, InsertOutcome, Take};

/// A buffer's state taken apart: what a snapshot holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestoredState {
    /// Running totals (`held_groups` and `complete_groups` are recomputed).
    pub counts: Counts,
    /// Every trajectory id ever accepted.
    pub seen: Vec<u64>,
    /// Batches served whole.
    pub closed_batches: Vec<u64>,
    /// Groups served one by one.
    pub closed_groups: Vec<GroupKey>,
    /// Held groups with their members.
    pub groups: Vec<(GroupKey, Vec<ScoredTrajectory>)>,
}

fn inconsistent(reason: String) -> LogError {
    LogError::Inconsistent { reason }
}

impl ReplayBuffer {
    /// Applies a logged insert: as [`ReplayBuffer::insert`] but without the capacity
    /// check (a rewound log may hold more groups than the capacity; new groups are
    /// refused until the learner has taken enough). Anything but acceptance means the
    /// log does not fit this state.
    pub fn replay_insert(&mut self, t: ScoredTrajectory) -> Result<(), LogError> {
        let id = t.trajectory.id;
        match self.insert_checked(t, false) {
            Ok(InsertOutcome::Accepted | InsertOutcome::GroupComplete { .. }) => Ok(()),
            Ok(InsertOutcome::Duplicate) => {
                self.counts.duplicates -= 1;
                Err(inconsistent(format!(
                    "logged insert of trajectory {id}, which is already held or served"
                )))
            }
            Err(e) => Err(inconsistent(format!("logged insert does not apply: {e}"))),
        }
    }

    /// Applies a logged count of duplicate inserts.
    pub fn replay_duplicates(&mut self, n: u64) {
        self.counts.duplicates += n;
    }

    /// Applies a logged take: removes each group with its recorded fate and closes the
    /// batch or the groups. Checks every group first, so a take that does not apply
    /// changes nothing.
    pub fn replay_take(&mut self, take: &Take) -> Result<(), LogError> {
        for (i, key) in take.keys().enumerate() {
            if !self.complete.contains(&key) {
                return Err(inconsistent(format!(
                    "logged take of batch {} group {}, which is not held complete",
                    key.0, key.1
                )));
            }
            if take.keys().take(i).any(|k| k == key) {
                return Err(inconsistent(format!(
                    "logged take names batch {} group {} twice",
                    key.0, key.1
                )));
            }
        }
        for g in &take.groups {
            self.remove_complete((g.batch, g.group), g.fate);
        }
        match take.closes {
            Closes::Batch => {
                self.closed_batches.insert(take.batch);
            }
            Closes::Groups => self.closed_groups.extend(take.keys()),
        }
        Ok(())
    }

    /// Every trajectory id ever accepted (in no particular order).
    pub fn seen_ids(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.seen.iter().copied()
    }

    /// Batches served whole (in no particular order).
    pub fn closed_batches(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.closed_batches.iter().copied()
    }

    /// Groups served one by one (in no particular order).
    pub fn closed_groups(&self) -> impl ExactSizeIterator<Item = GroupKey> + '_ {
        self.closed_groups.iter().copied()
    }

    /// Held groups, oldest first, with their members sorted by id.
    pub fn held(&self) -> impl ExactSizeIterator<Item = (GroupKey, &[ScoredTrajectory])> + '_ {
        self.groups.iter().map(|(k, h)| (*k, h.members.as_slice()))
    }

    /// Takes the state apart (a copy), as a snapshot stores it.
    pub fn to_restored(&self) -> RestoredState {
        RestoredState {
            counts: self.counts(),
            seen: self.seen_ids().collect(),
            closed_batches: self.closed_batches().collect(),
            closed_groups: self.closed_groups().collect(),
            groups: self.held().map(|(k, m)| (k, m.to_vec())).collect(),
        }
    }

    /// Puts a state taken apart back into this empty buffer, checking that its parts
    /// agree with each other and with the configuration.
    pub fn restore(&mut self, state: RestoredState) -> Result<(), LogError> {
        if self.counts != Counts::default() || !self.seen.is_empty() {
            return Err(inconsistent(
                "restore into a buffer that is not empty".into(),
            ));
        }
        let RestoredState {
            counts,
            seen,
            closed_batches,
            closed_groups,
            groups,
        } = state;
        self.seen.extend(seen);
        if self.seen.len() as u64 != counts.inserted {
            return Err(inconsistent(format!(
                "{} ids seen but {} trajectories inserted",
                self.seen.len(),
                counts.inserted
            )));
        }
        self.closed_batches.extend(closed_batches);
        self.closed_groups.extend(closed_groups);
        let group_size = self.cfg.group_size as usize;
        let mut pending = 0u64;
        for (key, members) in groups {
            let (batch, group) = key;
            if group >= self.cfg.groups_per_batch || members.len() > group_size {
                return Err(inconsistent(format!(
                    "group {group} of batch {batch} with {} members does not fit \
                     groups_per_batch {} and group_size {group_size}",
                    members.len(),
                    self.cfg.groups_per_batch
                )));
            }
            if members.is_empty() || self.groups.contains_key(&key) {
                return Err(inconsistent(format!(
                    "group {group} of batch {batch} is empty or listed twice"
                )));
            }
            let mut held = Held::new();
            for m in members {
                let id = m.trajectory.id;
                if m.trajectory.purpose != (Purpose::Train { batch, group }) {
                    return Err(inconsistent(format!(
                        "trajectory {id} is held in group {group} of batch {batch} but names {:?}",
                        m.trajectory.purpose
                    )));
                }
                if !self.seen.contains(&id) || held.members.iter().any(|x| x.trajectory.id == id) {
                    return Err(inconsistent(format!(
                        "trajectory {id} is held but not seen, or held twice"
                    )));
                }
                held.add(m);
            }
            pending += held.members.len() as u64;
            if held.members.len() == group_size {
                held.complete();
                self.complete.insert(key);
            }
            self.groups.insert(key, held);
        }
        if pending != counts.pending || !counts.is_consistent() {
            return Err(inconsistent(format!(
                "{pending} trajectories held but the counts say {counts:?}"
            )));
        }
        self.counts = Counts {
            held_groups: 0,
            complete_groups: 0,
            ..counts
        };
        Ok(())
    }
}
