//! The coordinator's work scheduler: which tasks go to which sampler with which
//! weights. Pure and deterministic: batch `b`'s tasks and the publication it is
//! generated with depend only on the seed, `b` and the config, never on timing,
//! so a run with the same seed is reproducible.
//!
//! Every unit handed out is leased to its sampler until the sampler reports it done.
//! A unit whose sampler failed, restarted, retired or vanished with its node is handed
//! out again unchanged (same tasks, publication, sampling seed and so trajectory ids):
//! whatever of it already reached the buffer is then a duplicate, counted and dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use troupe_core::TaskSpec;
use troupe_env::{TaskConfig, TaskSource};

use crate::messages::{EvalUnit, TrainUnit, Work};

/// First id of RL task ids: `RL_TASK_BASE + batch * 65536 + group`.
pub const RL_TASK_BASE: u64 = 1 << 40;
/// Eval trajectory ids have this bit set.
pub const EVAL_ID_BIT: u64 = 1 << 62;

/// Mixes a seed and a counter into a new seed (splitmix64).
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The tasks of RL batch `batch` (deterministic in `seed` and `batch`).
pub fn batch_tasks(task: &TaskConfig, seed: u64, batch: u64, groups: u32) -> Vec<TaskSpec> {
    // The config was validated at start-up, so construction cannot fail here.
    let mut source =
        TaskSource::new(task.clone(), mix(seed, batch)).expect("validated task config");
    (0..groups)
        .map(|g| {
            let mut t = source.next_train();
            t.id = RL_TASK_BASE + batch * 65536 + u64::from(g);
            t
        })
        .collect()
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Task generator.
    pub task: TaskConfig,
    /// Run seed.
    pub seed: u64,
    /// Samples per task.
    pub group_size: u32,
    /// Tasks per RL batch.
    pub groups_per_batch: u32,
    /// Tasks per sampler work unit.
    pub groups_per_unit: u32,
    /// Learner steps samplers may run ahead.
    pub async_lag: u64,
    /// Total RL steps.
    pub total_steps: u64,
    /// Held-out tasks per evaluation work unit.
    pub eval_chunk: usize,
}

/// A unit handed to a sampler and not reported done yet.
#[derive(Debug, Clone)]
struct Lease {
    sampler: u32,
    work: Work,
}

/// The unit id of leasable work.
fn unit_of(work: &Work) -> Option<u64> {
    match work {
        Work::Train(u) => Some(u.unit),
        Work::Eval(u) => Some(u.unit),
        Work::Wait | Work::Stop => None,
    }
}

/// Hands out work in a fixed order: re-issued units first, then evaluation, then RL
/// batches as far as the lag allows.
#[derive(Debug)]
pub struct Schedule {
    cfg: ScheduleConfig,
    /// Units to hand out again, before anything new.
    reissue: VecDeque<Work>,
    /// Units out with a sampler, by unit id.
    leases: BTreeMap<u64, Lease>,
    next_unit: u64,
    evals: VecDeque<EvalUnit>,
    rl_open: bool,
    stopped: bool,
    next_batch: u64,
    next_group: u32,
    current: Vec<TaskSpec>,
    steps_done: u64,
    /// Publication of the weights after `steps_done == first_step`.
    first_publication: u64,
    first_step: u64,
}

impl Schedule {
    /// A scheduler with nothing to hand out yet.
    pub fn new(cfg: ScheduleConfig) -> Self {
        Self {
            cfg,
            reissue: VecDeque::new(),
            leases: BTreeMap::new(),
            next_unit: 0,
            evals: VecDeque::new(),
            rl_open: false,
            stopped: false,
            next_batch: 0,
            next_group: 0,
            current: Vec::new(),
            steps_done: 0,
            first_publication: 0,
            first_step: 0,
        }
    }

    fn new_unit(&mut self) -> u64 {
        self.next_unit += 1;
        self.next_unit
    }

    /// Queues a greedy evaluation of `tasks` with `publication`.
    pub fn queue_eval(&mut self, round: u32, publication: u64, tasks: &[TaskSpec]) {
        for chunk in tasks.chunks(self.cfg.eval_chunk.max(1)) {
            let unit = self.new_unit();
            self.evals.push_back(EvalUnit {
                unit,
                round,
                tasks: chunk.to_vec(),
                publication,
            });
        }
    }

    /// Opens RL at learner step `step`, whose current weights are `publication`.
    pub fn open_rl(&mut self, step: u64, publication: u64) {
        self.rl_open = true;
        self.next_batch = step;
        self.next_group = 0;
        self.current.clear();
        self.steps_done = step;
        self.first_step = step;
        self.first_publication = publication;
    }

    /// Records that the learner finished `steps` RL steps.
    pub fn steps_done(&mut self, steps: u64) {
        self.steps_done = self.steps_done.max(steps);
    }

    /// No more work: samplers are told to stop.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.leases.clear();
        self.reissue.clear();
    }

    /// Sampler reported `unit` done; false when it was not leased (a unit re-issued
    /// meanwhile, or finished twice).
    pub fn done(&mut self, unit: u64) -> bool {
        self.leases.remove(&unit).is_some()
    }

    /// Hands `unit` out again (its sampler failed it); false when it was not leased.
    pub fn requeue(&mut self, unit: u64) -> bool {
        match self.leases.remove(&unit) {
            Some(lease) => {
                self.reissue.push_back(lease.work);
                true
            }
            None => false,
        }
    }

    /// Hands out again every unit leased to `sampler` (it restarted or retired);
    /// returns how many.
    pub fn requeue_sampler(&mut self, sampler: u32) -> usize {
        let units: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.sampler == sampler)
            .map(|(u, _)| *u)
            .collect();
        units.iter().filter(|u| self.requeue(**u)).count()
    }

    /// Hands out again every unit leased to a sampler not in `live`; returns those
    /// samplers.
    pub fn requeue_absent(&mut self, live: &BTreeSet<u32>) -> BTreeSet<u32> {
        let gone: BTreeSet<u32> = self
            .leases
            .values()
            .map(|l| l.sampler)
            .filter(|s| !live.contains(s))
            .collect();
        for s in &gone {
            self.requeue_sampler(*s);
        }
        gone
    }

    /// Units out with samplers.
    pub fn leased(&self) -> usize {
        self.leases.len()
    }

    /// Units of `pred` still to hand out or out with a sampler.
    fn any_unit(&self, pred: impl Fn(&Work) -> bool) -> bool {
        self.reissue.iter().any(&pred) || self.leases.values().any(|l| pred(&l.work))
    }

    /// Whether some of batch `batch` is still to be handed out or out with a sampler:
    /// while it is, its missing groups are not lost.
    pub fn batch_outstanding(&self, batch: u64) -> bool {
        batch >= self.next_batch
            || self.any_unit(|w| matches!(w, Work::Train(u) if u.batch == batch))
    }

    /// Whether some of evaluation round `round` is still to be handed out or out with a
    /// sampler.
    pub fn round_outstanding(&self, round: u32) -> bool {
        self.evals.iter().any(|e| e.round == round)
            || self.any_unit(|w| matches!(w, Work::Eval(u) if u.round == round))
    }

    /// Hands out again `groups` of batch `batch`, whose trajectories never reached the
    /// buffer (a judge or env host lost them): the same tasks, publication and seed.
    pub fn reissue_groups(&mut self, batch: u64, groups: &[u32]) {
        let tasks = batch_tasks(
            &self.cfg.task,
            self.cfg.seed,
            batch,
            self.cfg.groups_per_batch,
        );
        for chunk in groups.chunks(self.cfg.groups_per_unit.max(1) as usize) {
            let unit = self.new_unit();
            self.reissue.push_back(Work::Train(TrainUnit {
                unit,
                batch,
                groups: chunk
                    .iter()
                    .filter_map(|&g| tasks.get(g as usize).map(|t| (g, t.clone())))
                    .collect(),
                group_size: self.cfg.group_size,
                publication: self.publication_for(batch),
                sampling_seed: mix(self.cfg.seed, u64::MAX - batch),
            }));
        }
    }

    /// Hands out again the evaluation of `tasks` in round `round` (their results never
    /// arrived).
    pub fn reissue_eval(&mut self, round: u32, publication: u64, tasks: &[TaskSpec]) {
        for chunk in tasks.chunks(self.cfg.eval_chunk.max(1)) {
            let unit = self.new_unit();
            self.reissue.push_back(Work::Eval(EvalUnit {
                unit,
                round,
                tasks: chunk.to_vec(),
                publication,
            }));
        }
    }

    /// The publication batch `b` is generated with: the weights after learner step
    /// `b - async_lag` (never older than those RL started from).
    pub fn publication_for(&self, batch: u64) -> u64 {
        let step = batch
            .saturating_sub(self.cfg.async_lag)
            .max(self.first_step);
        self.first_publication + (step - self.first_step)
    }

    /// The next piece of work for `sampler`, leased to it until it reports it done.
    pub fn next_work(&mut self, sampler: u32) -> Work {
        let work = self.next_unleased();
        if let Some(unit) = unit_of(&work) {
            self.leases.insert(
                unit,
                Lease {
                    sampler,
                    work: work.clone(),
                },
            );
        }
        work
    }

    fn next_unleased(&mut self) -> Work {
        if self.stopped {
            return Work::Stop;
        }
        if let Some(w) = self.reissue.pop_front() {
            return w;
        }
        if let Some(e) = self.evals.pop_front() {
            return Work::Eval(e);
        }
        let b = self.next_batch;
        if !self.rl_open || b >= self.cfg.total_steps || self.steps_done + self.cfg.async_lag < b {
            return Work::Wait;
        }
        if self.current.is_empty() {
            self.current = batch_tasks(&self.cfg.task, self.cfg.seed, b, self.cfg.groups_per_batch);
        }
        let start = self.next_group;
        let end = (start + self.cfg.groups_per_unit).min(self.cfg.groups_per_batch);
        let groups = (start..end)
            .map(|g| (g, self.current[g as usize].clone()))
            .collect();
        let unit = TrainUnit {
            unit: self.new_unit(),
            batch: b,
            groups,
            group_size: self.cfg.group_size,
            publication: self.publication_for(b),
            sampling_seed: mix(self.cfg.seed, u64::MAX - b),
        };
        if end == self.cfg.groups_per_batch {
            self.next_batch += 1;
            self.next_group = 0;
            self.current.clear();
        } else {
            self.next_group = end;
        }
        Work::Train(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lag: u64) -> ScheduleConfig {
        ScheduleConfig {
            task: TaskConfig::default(),
            seed: 3,
            group_size: 4,
            groups_per_batch: 3,
            groups_per_unit: 2,
            async_lag: lag,
            total_steps: 4,
            eval_chunk: 2,
        }
    }

    fn train(w: Work) -> TrainUnit {
        match w {
            Work::Train(u) => u,
            other => panic!("expected train work, got {other:?}"),
        }
    }

    #[test]
    fn eval_first_then_batches_within_lag() {
        let mut s = Schedule::new(cfg(1));
        assert_eq!(s.next_work(0), Work::Wait);
        let tasks = batch_tasks(&TaskConfig::default(), 9, 0, 3);
        s.queue_eval(0, 0, &tasks);
        assert!(matches!(
            s.next_work(0),
            Work::Eval(EvalUnit { round: 0, .. })
        ));
        assert!(matches!(s.next_work(0), Work::Eval(_)));
        s.open_rl(0, 1);
        // Batch 0 and 1 may be generated before any step (lag 1), both from publication 1.
        let a = train(s.next_work(0));
        assert_eq!((a.batch, a.groups.len(), a.publication), (0, 2, 1));
        let b = train(s.next_work(0));
        assert_eq!((b.batch, b.groups.len()), (0, 1));
        let c = train(s.next_work(0));
        assert_eq!((c.batch, c.publication), (1, 1));
        train(s.next_work(0));
        assert_eq!(s.next_work(0), Work::Wait);
        s.steps_done(1);
        let d = train(s.next_work(0));
        assert_eq!((d.batch, d.publication), (2, 2));
        s.stop();
        assert_eq!(s.next_work(0), Work::Stop);
    }

    #[test]
    fn a_lost_unit_is_handed_out_again_unchanged() {
        let mut s = Schedule::new(cfg(1));
        s.open_rl(0, 1);
        let a = train(s.next_work(7));
        let b = train(s.next_work(8));
        assert_eq!(s.leased(), 2);
        // Sampler 7 vanishes: its unit goes out first, identical, to whoever asks next.
        let live = BTreeSet::from([8]);
        assert_eq!(s.requeue_absent(&live), BTreeSet::from([7]));
        assert_eq!(train(s.next_work(8)), a);
        assert!(s.done(a.unit) && s.done(b.unit));
        assert!(!s.done(a.unit), "a unit is done once");
        // A failed unit comes back; a finished one does not.
        let c = train(s.next_work(8));
        assert!(s.requeue(c.unit));
        assert!(!s.requeue(a.unit));
        assert_eq!(train(s.next_work(9)), c);
        assert_eq!(s.requeue_sampler(9), 1);
        assert!(s.batch_outstanding(1));
        assert_eq!(train(s.next_work(9)), c);
        s.done(c.unit);
        // Batch 0 is all handed out and done: nothing outstanding, so groups missing
        // from the buffer are re-issued with the same tasks, publication and seed.
        assert!(!s.batch_outstanding(0));
        s.reissue_groups(0, &[1, 2]);
        assert!(s.batch_outstanding(0));
        let r = train(s.next_work(9));
        assert_eq!(
            (r.batch, r.publication, r.sampling_seed),
            (0, a.publication, a.sampling_seed)
        );
        let all = batch_tasks(&TaskConfig::default(), 3, 0, 3);
        // Two groups per unit, as configured.
        assert_eq!(r.groups, vec![(1, all[1].clone()), (2, all[2].clone())]);
        assert_eq!(train(s.next_work(9)).batch, 1, "then new work as before");
    }

    #[test]
    fn evaluation_rounds_are_outstanding_until_done() {
        let mut s = Schedule::new(cfg(1));
        let tasks = batch_tasks(&TaskConfig::default(), 9, 0, 3);
        s.queue_eval(4, 2, &tasks);
        assert!(s.round_outstanding(4));
        let Work::Eval(first) = s.next_work(1) else {
            panic!("expected evaluation")
        };
        let Work::Eval(second) = s.next_work(1) else {
            panic!("expected evaluation")
        };
        assert!(s.done(first.unit));
        assert!(s.round_outstanding(4));
        assert!(s.done(second.unit));
        assert!(!s.round_outstanding(4));
        s.reissue_eval(4, 2, &tasks[..1]);
        let Work::Eval(again) = s.next_work(3) else {
            panic!("expected evaluation")
        };
        assert_eq!(
            (again.round, again.tasks.len(), again.publication),
            (4, 1, 2)
        );
        s.stop();
        assert_eq!((s.next_work(3), s.leased()), (Work::Stop, 0));
    }

    #[test]
    fn batches_are_reproducible_and_unique() {
        let t = TaskConfig::default();
        assert_eq!(batch_tasks(&t, 5, 7, 16), batch_tasks(&t, 5, 7, 16));
        assert_ne!(batch_tasks(&t, 5, 7, 16), batch_tasks(&t, 5, 8, 16));
        let ids: std::collections::HashSet<u64> = (0..4)
            .flat_map(|b| batch_tasks(&t, 5, b, 16))
            .map(|t| t.id)
            .collect();
        assert_eq!(ids.len(), 64);
    }

    #[test]
    fn rl_batches_never_pose_heldout_problems() {
        let t = TaskConfig::default();
        for b in 0..200 {
            for task in batch_tasks(&t, 11, b, 32) {
                assert_eq!(
                    troupe_env::split_of(&task.prompt, t.heldout_per_mille),
                    troupe_env::Split::Train
                );
            }
        }
    }

    #[test]
    fn resumed_schedule_starts_at_the_learner_step() {
        let mut s = Schedule::new(cfg(2));
        s.open_rl(2, 7);
        let u = train(s.next_work(0));
        assert_eq!((u.batch, u.publication), (2, 7));
        assert_eq!(s.publication_for(5), 7 + 1);
    }
}
