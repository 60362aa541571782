//! Unit tests: one per rule, on hand-built trajectories.

use troupe_core::{PolicyVersion, Purpose, Reward, ScoredTrajectory, TaskSpec, Trajectory};

use super::ReplayBuffer;
use crate::{BufferConfig, BufferError, InsertOutcome};

fn scored(id: u64, batch: u64, group: u32, version: u64, reward: f32) -> ScoredTrajectory {
    let task = TaskSpec {
        id,
        prompt: "p".into(),
        answer: "a".into(),
        difficulty: 0,
    };
    let mut t = Trajectory::new(id, task, Purpose::Train { batch, group });
    t.push_context(&[1, 2]);
    t.push_policy(3, -0.5, PolicyVersion(version));
    t.push_policy(4, -0.5, PolicyVersion(version + 1));
    ScoredTrajectory {
        trajectory: t,
        reward: Reward {
            total: reward,
            breakdown: vec![],
        },
    }
}

fn cfg(group_size: u32, groups_per_batch: u32, capacity_groups: usize) -> BufferConfig {
    BufferConfig {
        group_size,
        groups_per_batch,
        max_staleness: 2,
        capacity_groups,
    }
}

fn buf(group_size: u32, groups_per_batch: u32) -> ReplayBuffer {
    ReplayBuffer::new(cfg(group_size, groups_per_batch, 16)).unwrap()
}

/// Fills group `(batch, group)` with ids `first..first+rewards.len()`.
fn fill(b: &mut ReplayBuffer, first: u64, batch: u64, group: u32, version: u64, rewards: &[f32]) {
    for (i, &r) in rewards.iter().enumerate() {
        b.insert(scored(first + i as u64, batch, group, version, r))
            .unwrap();
    }
}

fn v(n: u64) -> PolicyVersion {
    PolicyVersion(n)
}

#[test]
fn config_is_validated() {
    assert!(matches!(
        ReplayBuffer::new(cfg(1, 1, 4)),
        Err(BufferError::InvalidConfig(_))
    ));
    assert!(matches!(
        ReplayBuffer::new(cfg(2, 0, 4)),
        Err(BufferError::InvalidConfig(_))
    ));
    assert!(matches!(
        ReplayBuffer::new(cfg(2, 3, 2)),
        Err(BufferError::InvalidConfig(_))
    ));
    assert!(ReplayBuffer::new(cfg(2, 3, 3)).is_ok());
}

#[test]
fn eval_trajectories_are_refused() {
    let mut b = buf(2, 1);
    let mut t = scored(1, 0, 0, 0, 1.0);
    t.trajectory.purpose = Purpose::Eval { round: 0 };
    assert_eq!(b.insert(t), Err(BufferError::NotTraining { id: 1 }));
    assert_eq!(b.counts().inserted, 0);
}

#[test]
fn group_completes_at_group_size() {
    let mut b = buf(3, 1);
    assert_eq!(
        b.insert(scored(1, 0, 0, 0, 1.0)),
        Ok(InsertOutcome::Accepted)
    );
    assert_eq!(
        b.insert(scored(2, 0, 0, 0, 0.0)),
        Ok(InsertOutcome::Accepted)
    );
    assert_eq!(
        b.insert(scored(3, 0, 0, 0, 0.0)),
        Ok(InsertOutcome::GroupComplete { batch: 0, group: 0 })
    );
    assert_eq!(b.counts().complete_groups, 1);
}

#[test]
fn duplicates_are_ignored_even_after_serving() {
    let mut b = buf(2, 1);
    fill(&mut b, 1, 0, 0, 0, &[1.0, 0.0]);
    assert_eq!(
        b.insert(scored(1, 0, 0, 0, 1.0)),
        Ok(InsertOutcome::Duplicate)
    );
    assert!(b.take_batch(0, v(0)).is_some());
    // A resend after serving is still a duplicate, not a BatchClosed error.
    assert_eq!(
        b.insert(scored(2, 0, 0, 0, 0.0)),
        Ok(InsertOutcome::Duplicate)
    );
    let c = b.counts();
    assert_eq!((c.inserted, c.duplicates, c.served), (2, 2, 2));
}

#[test]
fn overfull_group_is_refused() {
    let mut b = buf(2, 1);
    fill(&mut b, 1, 0, 0, 0, &[1.0, 0.0]);
    assert_eq!(
        b.insert(scored(3, 0, 0, 0, 1.0)),
        Err(BufferError::GroupOverfull {
            id: 3,
            batch: 0,
            group: 0,
            group_size: 2
        })
    );
    assert_eq!(b.counts().pending, 2);
    // The refused id was not recorded: it is not a duplicate later.
    assert_eq!(
        b.insert(scored(3, 1, 0, 0, 1.0)),
        Ok(InsertOutcome::Accepted)
    );
}

#[test]
fn group_out_of_range_is_refused() {
    let mut b = buf(2, 2);
    assert!(matches!(
        b.insert(scored(1, 0, 2, 0, 1.0)),
        Err(BufferError::GroupOutOfRange { group: 2, .. })
    ));
}

#[test]
fn closed_batch_is_refused() {
    let mut b = buf(2, 1);
    fill(&mut b, 1, 0, 0, 0, &[1.0, 0.0]);
    assert!(b.take_batch(0, v(0)).is_some());
    assert_eq!(
        b.insert(scored(9, 0, 0, 0, 1.0)),
        Err(BufferError::BatchClosed {
            id: 9,
            batch: 0,
            group: 0
        })
    );
    assert!(b.take_batch(0, v(0)).is_none());
}

#[test]
fn full_buffer_refuses_new_groups_only() {
    let mut b = ReplayBuffer::new(cfg(2, 1, 2)).unwrap();
    b.insert(scored(1, 0, 0, 0, 1.0)).unwrap();
    b.insert(scored(2, 1, 0, 0, 1.0)).unwrap();
    assert!(b.is_full());
    assert_eq!(b.held_groups(), 2);
    assert_eq!(
        b.insert(scored(3, 2, 0, 0, 1.0)),
        Err(BufferError::Full {
            id: 3,
            capacity_groups: 2
        })
    );
    // Existing groups still take members.
    assert!(matches!(
        b.insert(scored(4, 0, 0, 0, 0.0)),
        Ok(InsertOutcome::GroupComplete { .. })
    ));
    assert!(b.take_batch(0, v(0)).is_some());
    assert!(!b.is_full());
    assert_eq!(
        b.insert(scored(3, 2, 0, 0, 1.0)),
        Ok(InsertOutcome::Accepted)
    );
}

#[test]
fn take_batch_waits_for_every_group() {
    let mut b = buf(2, 2);
    fill(&mut b, 1, 0, 0, 0, &[1.0, 0.0]);
    assert!(b.take_batch(0, v(0)).is_none());
    b.insert(scored(3, 0, 1, 0, 1.0)).unwrap();
    assert!(b.take_batch(0, v(0)).is_none());
    b.insert(scored(4, 0, 1, 0, 0.0)).unwrap();
    let batch = b.take_batch(0, v(0)).unwrap();
    assert_eq!(batch.batch, 0);
    let ids: Vec<(u32, Vec<u64>)> = batch
        .groups
        .iter()
        .map(|g| (g.group, g.members.iter().map(|m| m.trajectory.id).collect()))
        .collect();
    assert_eq!(ids, vec![(0, vec![1, 2]), (1, vec![3, 4])]);
    assert_eq!(b.counts().pending, 0);
}

#[test]
fn members_are_sorted_by_id() {
    let mut b = buf(3, 1);
    for id in [30, 10, 20] {
        b.insert(scored(id, 0, 0, 0, id as f32)).unwrap();
    }
    let batch = b.take_batch(0, v(0)).unwrap();
    let ids: Vec<u64> = batch.groups[0]
        .members
        .iter()
        .map(|m| m.trajectory.id)
        .collect();
    assert_eq!(ids, vec![10, 20, 30]);
}

#[test]
fn stale_groups_are_dropped_whole() {
    let mut b = buf(2, 2);
    // Group 0: one member generated at v0 (oldest token v0) — stale at v3 with bound 2.
    b.insert(scored(1, 0, 0, 0, 1.0)).unwrap();
    b.insert(scored(2, 0, 0, 5, 0.0)).unwrap();
    // Group 1: oldest token v1 — staleness 2 at v3, within the bound.
    fill(&mut b, 3, 0, 1, 1, &[1.0, 0.0]);
    let batch = b.take_batch(0, v(3)).unwrap();
    assert_eq!(batch.dropped_stale, 2);
    assert_eq!(batch.dropped_stale_groups, 1);
    assert_eq!(batch.groups.len(), 1);
    assert_eq!(batch.groups[0].group, 1);
    let c = b.counts();
    assert_eq!((c.dropped_stale, c.served), (2, 2));
    assert!(c.is_consistent());
}

#[test]
fn stale_wins_over_zero_signal() {
    let mut b = buf(2, 1);
    fill(&mut b, 1, 0, 0, 0, &[1.0, 1.0]);
    let batch = b.take_batch(0, v(10)).unwrap();
    assert_eq!((batch.dropped_stale, batch.filtered_zero_signal), (2, 0));
}

#[test]
fn zero_signal_groups_are_filtered() {
    let mut b = buf(3, 2);
    fill(&mut b, 1, 0, 0, 0, &[0.5, 0.5, 0.5 + 1e-7]);
    fill(&mut b, 4, 0, 1, 0, &[0.5, 0.5, 0.5 + 1e-3]);
    let batch = b.take_batch(0, v(0)).unwrap();
    assert_eq!(batch.filtered_zero_signal, 3);
    assert_eq!(batch.filtered_groups, 1);
    assert_eq!(batch.groups.len(), 1);
    assert_eq!(batch.groups[0].group, 1);
    assert_eq!(b.counts().filtered_zero_signal, 3);
}

#[test]
fn groups_with_an_unscored_member_are_dropped_not_trained() {
    let mut b = buf(3, 2);
    // Group 0: two real rewards with spread and one trajectory the judge failed on.
    fill(&mut b, 1, 0, 0, 0, &[1.0, 0.0]);
    let mut failed = scored(3, 0, 0, 0, 0.0);
    failed.reward = Reward::judge_error("llm");
    b.insert(failed).unwrap();
    // Group 1: ordinary, with signal.
    fill(&mut b, 4, 0, 1, 0, &[1.0, 0.0, 0.5]);
    let batch = b.take_batch(0, v(0)).unwrap();
    assert_eq!(
        (batch.dropped_judge_error, batch.judge_error_groups),
        (3, 1)
    );
    assert_eq!(batch.groups.len(), 1);
    assert_eq!(batch.groups[0].group, 1);
    // The placeholder total of the unscored member is not part of the reward sum.
    assert_eq!((batch.taken, batch.unscored), (6, 1));
    assert_eq!(batch.reward_sum, 1.0 + 0.0 + 1.0 + 0.0 + 0.5);
    let c = b.counts();
    assert_eq!(
        (c.dropped_judge_error, c.judge_error_groups, c.served),
        (3, 1, 3)
    );
    assert!(c.is_consistent());
    // Stale still wins: a stale group with an unscored member counts as stale.
    let mut b = buf(2, 1);
    let mut failed = scored(1, 0, 0, 0, 0.0);
    failed.reward = Reward::judge_error("llm");
    b.insert(failed).unwrap();
    b.insert(scored(2, 0, 0, 0, 1.0)).unwrap();
    let batch = b.take_batch(0, v(10)).unwrap();
    assert_eq!((batch.dropped_stale, batch.dropped_judge_error), (2, 0));
}

#[test]
fn take_ready_serves_oldest_first_across_batches() {
    let mut b = buf(2, 2);
    fill(&mut b, 1, 1, 0, 0, &[1.0, 0.0]);
    fill(&mut b, 3, 0, 1, 0, &[1.0, 0.0]);
    fill(&mut b, 5, 2, 1, 0, &[1.0, 0.0]);
    b.insert(scored(7, 0, 0, 0, 1.0)).unwrap(); // incomplete: never served
    let batch = b.take_ready(2, v(0)).unwrap();
    let keys: Vec<(u64, u32)> = batch.groups.iter().map(|g| (g.batch, g.group)).collect();
    assert_eq!(keys, vec![(0, 1), (1, 0)]);
    assert_eq!(batch.batch, 0);
    let batch = b.take_ready(5, v(0)).unwrap();
    assert_eq!(batch.groups.len(), 1);
    assert_eq!((batch.groups[0].batch, batch.groups[0].group), (2, 1));
    assert!(b.take_ready(5, v(0)).is_none());
    assert!(b.take_ready(0, v(0)).is_none());
    // A served group is closed, its batch's other groups are not.
    assert!(matches!(
        b.insert(scored(8, 1, 0, 0, 1.0)),
        Err(BufferError::BatchClosed { .. })
    ));
    assert_eq!(
        b.insert(scored(9, 1, 1, 0, 1.0)),
        Ok(InsertOutcome::Accepted)
    );
}

#[test]
fn mixing_modes_does_not_panic() {
    let mut b = buf(2, 2);
    fill(&mut b, 1, 0, 0, 0, &[1.0, 0.0]);
    assert!(b.take_ready(1, v(0)).is_some());
    fill(&mut b, 3, 0, 1, 0, &[1.0, 0.0]);
    assert!(b.take_batch(0, v(0)).is_none());
    assert!(b.take_ready(1, v(0)).is_some());
    assert!(b.counts().is_consistent());
}

#[test]
fn counts_invariant_and_histogram() {
    let mut b = buf(2, 1);
    b.insert(scored(1, 0, 0, 0, 1.0)).unwrap();
    b.insert(scored(2, 1, 0, 3, 1.0)).unwrap();
    b.insert(scored(2, 1, 0, 3, 1.0)).unwrap();
    let hist = b.staleness_histogram(v(4));
    assert_eq!(hist.into_iter().collect::<Vec<_>>(), vec![(1, 1), (4, 1)]);
    let c = b.counts();
    assert_eq!(
        (c.inserted, c.duplicates, c.pending, c.held_groups),
        (2, 1, 2, 2)
    );
    assert!(c.is_consistent());
}

#[test]
fn missing_groups_are_those_neither_complete_nor_served() {
    let mut b = buf(2, 3);
    assert_eq!(b.missing_groups(0), vec![0, 1, 2]);
    fill(&mut b, 0, 0, 0, 0, &[0.0, 1.0]);
    fill(&mut b, 10, 0, 2, 0, &[1.0]);
    // Group 2 holds one of its two members: still missing.
    assert_eq!(b.missing_groups(0), vec![1, 2]);
    fill(&mut b, 20, 0, 1, 0, &[0.0, 1.0]);
    fill(&mut b, 30, 0, 2, 0, &[0.0]);
    assert_eq!(b.missing_groups(0), Vec::<u32>::new());
    assert!(b.take_batch(0, v(0)).is_some());
    assert_eq!(
        b.missing_groups(0),
        Vec::<u32>::new(),
        "a served batch misses nothing"
    );
    assert_eq!(b.missing_groups(1), vec![0, 1, 2]);
}

#[test]
fn a_take_reports_the_fill_it_found() {
    let mut b = ReplayBuffer::new(cfg(2, 1, 4)).unwrap();
    fill(&mut b, 0, 0, 0, 0, &[1.0, 0.0]);
    fill(&mut b, 10, 1, 0, 0, &[1.0]);
    let batch = b.take_batch(0, v(0)).unwrap();
    let f = batch.fill;
    assert_eq!((f.pending, f.groups), (3, 2), "the batch taken counts");
    assert_eq!((f.capacity_groups, f.capacity), (4, 8));
    let now = b.fill();
    assert_eq!((now.pending, now.groups), (1, 1));
}

#[test]
fn the_best_trajectory_is_the_first_kept_one_of_highest_reward() {
    let mut b = buf(2, 2);
    fill(&mut b, 0, 0, 0, 0, &[0.5, 0.0]);
    fill(&mut b, 10, 0, 1, 0, &[0.0, 0.5]);
    let batch = b.take_batch(0, v(0)).unwrap();
    assert_eq!(batch.best_trajectory().unwrap().trajectory.id, 0);
    let mut b = buf(2, 1);
    fill(&mut b, 0, 0, 0, 0, &[1.0, 1.0]);
    let filtered = b.take_batch(0, v(0)).unwrap();
    assert!(filtered.best_trajectory().is_none(), "no group was kept");
}
