//! Property test: the replay buffer against a deliberately naive model that keeps every
//! accepted trajectory in a flat list and recomputes everything by brute-force scans.

use std::collections::BTreeSet;

use proptest::prelude::*;
use troupe_buffer::{
    Batch, BufferConfig, BufferError, BufferFill, Counts, Group, InsertOutcome, ReplayBuffer,
};
use troupe_core::{PolicyVersion, Purpose, Reward, ScoredTrajectory, TaskSpec, Trajectory};

#[derive(Debug, Clone)]
enum Op {
    Insert {
        id: u64,
        batch: u64,
        group: u32,
        version: u64,
        reward: u8,
        eval: bool,
    },
    TakeBatch {
        batch: u64,
        current: u64,
    },
    TakeReady {
        max_groups: usize,
        current: u64,
    },
}

/// A trajectory whose oldest policy token is at `version`, with reward 0 or 1, or (2)
/// a judge error.
fn scored(id: u64, purpose: Purpose, version: u64, reward: u8) -> ScoredTrajectory {
    let task = TaskSpec {
        id: 0,
        prompt: String::new(),
        answer: String::new(),
        difficulty: 0,
    };
    let mut t = Trajectory::new(id, task, purpose);
    t.push_context(&[1]);
    t.push_policy(2, -1.0, PolicyVersion(version + 2));
    t.push_policy(3, -1.0, PolicyVersion(version));
    ScoredTrajectory {
        trajectory: t,
        reward: if reward == 2 {
            Reward::judge_error("llm")
        } else {
            Reward {
                total: f32::from(reward),
                breakdown: vec![("correct".into(), f32::from(reward)), ("seen".into(), 1.0)],
            }
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Held,
    Served,
    Stale,
    Filtered,
    JudgeError,
}

#[derive(Debug)]
struct Entry {
    key: (u64, u32),
    version: u64,
    fate: Fate,
    t: ScoredTrajectory,
}

#[derive(Debug)]
struct Model {
    cfg: BufferConfig,
    entries: Vec<Entry>,
    duplicates: u64,
    closed_batches: BTreeSet<u64>,
    closed_groups: BTreeSet<(u64, u32)>,
}

impl Model {
    fn held(&self, key: (u64, u32)) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.fate == Fate::Held && e.key == key)
            .collect();
        v.sort_by_key(|e| e.t.trajectory.id);
        v
    }

    fn held_keys(&self) -> BTreeSet<(u64, u32)> {
        self.entries
            .iter()
            .filter(|e| e.fate == Fate::Held)
            .map(|e| e.key)
            .collect()
    }

    fn is_complete(&self, key: (u64, u32)) -> bool {
        self.held(key).len() == self.cfg.group_size as usize
    }

    fn insert(&mut self, t: ScoredTrajectory, version: u64) -> Result<InsertOutcome, BufferError> {
        let id = t.trajectory.id;
        let Purpose::Train { batch, group } = t.trajectory.purpose else {
            return Err(BufferError::NotTraining { id });
        };
        if self.entries.iter().any(|e| e.t.trajectory.id == id) {
            self.duplicates += 1;
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
        let n = self.held(key).len();
        if n >= self.cfg.group_size as usize {
            return Err(BufferError::GroupOverfull {
                id,
                batch,
                group,
                group_size: self.cfg.group_size,
            });
        }
        if n == 0 && self.held_keys().len() >= self.cfg.capacity_groups {
            return Err(BufferError::Full {
                id,
                capacity_groups: self.cfg.capacity_groups,
            });
        }
        self.entries.push(Entry {
            key,
            version,
            fate: Fate::Held,
            t,
        });
        if n + 1 == self.cfg.group_size as usize {
            Ok(InsertOutcome::GroupComplete { batch, group })
        } else {
            Ok(InsertOutcome::Accepted)
        }
    }

    fn serve(&mut self, batch: u64, keys: &[(u64, u32)], current: u64) -> Batch {
        let counts = self.counts();
        let fill = BufferFill {
            pending: counts.pending,
            groups: counts.held_groups,
            capacity_groups: self.cfg.capacity_groups as u64,
            capacity: self.cfg.capacity_groups as u64 * u64::from(self.cfg.group_size),
        };
        let mut out = Batch {
            batch,
            groups: vec![],
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
        for &key in keys {
            let members = self.held(key);
            let n = members.len() as u64;
            out.taken += n;
            for e in &members {
                out.add_reward_parts(&e.t.reward);
            }
            let rewarded: Vec<&&Entry> = members
                .iter()
                .filter(|e| !e.t.reward.is_judge_error())
                .collect();
            out.unscored += n - rewarded.len() as u64;
            out.reward_sum += rewarded
                .iter()
                .map(|e| f64::from(e.t.reward.total))
                .sum::<f64>();
            let stale = members
                .iter()
                .any(|e| current.saturating_sub(e.version) > self.cfg.max_staleness);
            let flat = rewarded.iter().all(|a| {
                rewarded
                    .iter()
                    .all(|b| (a.t.reward.total - b.t.reward.total).abs() <= 1e-6)
            });
            let fate = if stale {
                out.dropped_stale += n;
                out.dropped_stale_groups += 1;
                Fate::Stale
            } else if rewarded.len() < members.len() {
                out.dropped_judge_error += n;
                out.judge_error_groups += 1;
                Fate::JudgeError
            } else if flat {
                out.filtered_zero_signal += n;
                out.filtered_groups += 1;
                Fate::Filtered
            } else {
                out.groups.push(Group {
                    batch: key.0,
                    group: key.1,
                    members: members.iter().map(|e| e.t.clone()).collect(),
                });
                Fate::Served
            };
            for e in self.entries.iter_mut() {
                if e.fate == Fate::Held && e.key == key {
                    e.fate = fate;
                }
            }
        }
        out
    }

    fn take_batch(&mut self, batch: u64, current: u64) -> Option<Batch> {
        let keys: Vec<(u64, u32)> = (0..self.cfg.groups_per_batch).map(|g| (batch, g)).collect();
        if self.closed_batches.contains(&batch) || !keys.iter().all(|&k| self.is_complete(k)) {
            return None;
        }
        self.closed_batches.insert(batch);
        Some(self.serve(batch, &keys, current))
    }

    fn take_ready(&mut self, max_groups: usize, current: u64) -> Option<Batch> {
        let keys: Vec<(u64, u32)> = self
            .held_keys()
            .into_iter()
            .filter(|&k| self.is_complete(k))
            .take(max_groups)
            .collect();
        let first = keys.first()?.0;
        self.closed_groups.extend(keys.iter().copied());
        Some(self.serve(first, &keys, current))
    }

    fn counts(&self) -> Counts {
        let traj = |f: Fate| self.entries.iter().filter(|e| e.fate == f).count() as u64;
        let groups = |f: Fate| {
            self.entries
                .iter()
                .filter(|e| e.fate == f)
                .map(|e| e.key)
                .collect::<BTreeSet<_>>()
                .len() as u64
        };
        let held = self.held_keys();
        Counts {
            inserted: self.entries.len() as u64,
            duplicates: self.duplicates,
            served: traj(Fate::Served),
            dropped_stale: traj(Fate::Stale),
            filtered_zero_signal: traj(Fate::Filtered),
            dropped_judge_error: traj(Fate::JudgeError),
            pending: traj(Fate::Held),
            served_groups: groups(Fate::Served),
            dropped_stale_groups: groups(Fate::Stale),
            filtered_groups: groups(Fate::Filtered),
            judge_error_groups: groups(Fate::JudgeError),
            held_groups: held.len() as u64,
            complete_groups: held.iter().filter(|&&k| self.is_complete(k)).count() as u64,
        }
    }
}

fn config() -> impl Strategy<Value = BufferConfig> {
    (2u32..=4, 1u32..=3, 0u64..=4, 0usize..=4).prop_map(|(gs, gpb, stale, extra)| BufferConfig {
        group_size: gs,
        groups_per_batch: gpb,
        max_staleness: stale,
        capacity_groups: gpb as usize + extra,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Rewards 0 and 1 three times as often as a judge error (2) each.
        8 => (0u64..40, 0u64..4, 0u32..4, 0u64..10, (0u8..7).prop_map(|r| r / 3), prop::bool::weighted(0.05)).prop_map(
            |(id, batch, group, version, reward, eval)| Op::Insert { id, batch, group, version, reward, eval }
        ),
        1 => (0u64..5, 0u64..12).prop_map(|(batch, current)| Op::TakeBatch { batch, current }),
        1 => (0usize..4, 0u64..12).prop_map(|(max_groups, current)| Op::TakeReady { max_groups, current }),
    ]
}

/// Runs `ops` on the buffer and the model, comparing every result and the counts after
/// each op; takes of a disallowed kind are skipped.
fn check(
    cfg: BufferConfig,
    ops: Vec<Op>,
    allow_batch: bool,
    allow_ready: bool,
) -> Result<(), TestCaseError> {
    let mut real = ReplayBuffer::new(cfg).unwrap();
    let mut model = Model {
        cfg,
        entries: vec![],
        duplicates: 0,
        closed_batches: BTreeSet::new(),
        closed_groups: BTreeSet::new(),
    };
    for op in ops {
        match op {
            Op::Insert {
                id,
                batch,
                group,
                version,
                reward,
                eval,
            } => {
                let purpose = if eval {
                    Purpose::Eval { round: 0 }
                } else {
                    Purpose::Train { batch, group }
                };
                let t = scored(id, purpose, version, reward);
                prop_assert_eq!(real.insert(t.clone()), model.insert(t, version));
            }
            Op::TakeBatch { batch, current } if allow_batch => {
                prop_assert_eq!(
                    real.take_batch(batch, PolicyVersion(current)),
                    model.take_batch(batch, current)
                );
            }
            Op::TakeReady {
                max_groups,
                current,
            } if allow_ready => {
                prop_assert_eq!(
                    real.take_ready(max_groups, PolicyVersion(current)),
                    model.take_ready(max_groups, current)
                );
            }
            _ => {}
        }
        let c = real.counts();
        prop_assert!(c.is_consistent(), "{:?}", c);
        prop_assert_eq!(c, model.counts());
        prop_assert_eq!(real.held_groups() as u64, c.held_groups);
        prop_assert_eq!(real.is_full(), real.held_groups() >= cfg.capacity_groups);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn pipelined_matches_model(cfg in config(), ops in prop::collection::vec(op(), 0..120)) {
        check(cfg, ops, true, false)?;
    }

    #[test]
    fn free_running_matches_model(cfg in config(), ops in prop::collection::vec(op(), 0..120)) {
        check(cfg, ops, false, true)?;
    }

    #[test]
    fn mixed_modes_match_model(cfg in config(), ops in prop::collection::vec(op(), 0..120)) {
        check(cfg, ops, true, true)?;
    }
}
