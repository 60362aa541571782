//! Payloads of the coordinator's protocol: work for samplers and learner step reports.

use bincode::{Decode, Encode};

use crate::{ScoredTrajectory, TaskSpec};

/// A slice of RL batch `batch`: tasks to run `group_size` episodes each.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct TrainUnit {
    /// The coordinator's id of this unit (its lease): a sampler reports the unit done or
    /// failed by it, and a re-issued unit keeps it.
    pub unit: u64,
    /// RL batch sequence number.
    pub batch: u64,
    /// `(group index, task)` pairs.
    pub groups: Vec<(u32, TaskSpec)>,
    /// Episodes per task.
    pub group_size: u32,
    /// Weight publication to generate with (exactly this one, for reproducibility).
    pub publication: u64,
    /// Seed of the unit\'s sampling randomness (each episode mixes in its own id), set
    /// by the coordinator so sampling does not depend on which node runs the unit.
    pub sampling_seed: u64,
}

/// Held-out tasks to run greedily for evaluation round `round`.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct EvalUnit {
    /// The coordinator's id of this unit (its lease).
    pub unit: u64,
    /// Evaluation round.
    pub round: u32,
    /// Tasks.
    pub tasks: Vec<TaskSpec>,
    /// Weight publication to evaluate.
    pub publication: u64,
}

/// What a sampler should do next.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Work {
    /// Generate training episodes.
    Train(TrainUnit),
    /// Generate evaluation episodes.
    Eval(EvalUnit),
    /// Nothing now; ask again shortly.
    Wait,
    /// The run is over.
    Stop,
}

/// A finished learner step, as reported to the coordinator.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct StepReport {
    /// RL steps done (this one included).
    pub rl_step: u64,
    /// Policy version after the step.
    pub version: u64,
    /// Publication index of the new weights.
    pub publication: u64,
    /// Surrogate loss (0 when the batch had no signal).
    pub loss: f32,
    /// Mean reward over the batch's trajectories that have one (all groups, filtered
    /// ones included; judge errors have none; 0 when no trajectory has one).
    pub mean_reward: f32,
    /// Trajectories trained on.
    pub trained: u64,
    /// Policy tokens trained on.
    pub trained_tokens: u64,
    /// Trajectories dropped as too stale.
    pub dropped_stale: u64,
    /// Trajectories in zero-signal groups, filtered.
    pub filtered_zero_signal: u64,
    /// Trajectories in groups with a member the judge could not score, dropped.
    pub dropped_judge_error: u64,
    /// Trajectories per staleness (index = versions behind, capped at the last bucket).
    pub staleness_histogram: Vec<u64>,
    /// Seconds the learner waited for the batch.
    pub wait_seconds: f64,
    /// Seconds spent in forward, backward and the optimizer.
    pub train_seconds: f64,
    /// Global gradient norm.
    pub grad_norm: f32,
    /// Fraction of tokens whose ratio was clipped.
    pub clip_fraction: f32,
    /// KL estimate between behaviour and current policy.
    pub approx_kl: f32,
    /// Mean |log-prob under the learner - behaviour log-prob| over policy tokens: the
    /// sampler/learner mismatch (quantised sampler weights, staleness).
    pub logprob_gap: f32,
    /// Fraction of policy tokens whose truncated importance weight hit its cap.
    pub tis_truncated: f32,
    /// Sum of each named reward component over the batch's trajectories (all groups,
    /// filtered ones included): with 0/1 components, how often each case occurred.
    pub reward_parts: Vec<(String, f64)>,
    /// How full the replay buffer was when the learner took the batch.
    pub buffer: BufferFill,
    /// Seconds spent publishing the new weights into the weight store (snapshot and
    /// hand-over; streaming them to other nodes happens after, elsewhere).
    pub publish_seconds: f64,
    /// The highest-reward trajectory trained on in this step (the first of equals;
    /// `None` when every group was dropped), for the dashboard's trajectory viewer.
    pub best_trajectory: Option<ScoredTrajectory>,
}

/// How full the replay buffer was when the learner came for a batch: what it held
/// then, the batch taken included, against what it can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode)]
pub struct BufferFill {
    /// Trajectories held (in complete and incomplete groups).
    pub pending: u64,
    /// Groups held (complete and incomplete).
    pub groups: u64,
    /// Groups the buffer holds at most; a trajectory opening one more is refused.
    pub capacity_groups: u64,
    /// Trajectories the buffer holds at most: `capacity_groups × group_size`.
    pub capacity: u64,
}
