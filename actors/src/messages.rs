//! Messages between roles. Payloads are the bincode-encodable types of `troupe-core`
//! and the plain structs below (fixed-width integers), so every message can cross
//! the network unchanged; reply ports are ractor's and become remote replies there.

use bincode::{Decode, Encode};
use ractor::RpcReplyPort;
use troupe_core::{ScoredTrajectory, TaskSpec, Trajectory};

/// A slice of RL batch `batch`: tasks to run `group_size` episodes each.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct TrainUnit {
    /// RL batch sequence number.
    pub batch: u64,
    /// `(group index, task)` pairs.
    pub groups: Vec<(u32, TaskSpec)>,
    /// Episodes per task.
    pub group_size: u32,
    /// Weight publication to generate with (exactly this one, for reproducibility).
    pub publication: u64,
}

/// Held-out tasks to run greedily for evaluation round `round`.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct EvalUnit {
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
    /// Mean reward over the batch's trajectories (all groups, filtered ones included).
    pub mean_reward: f32,
    /// Trajectories trained on.
    pub trained: u64,
    /// Policy tokens trained on.
    pub trained_tokens: u64,
    /// Trajectories dropped as too stale.
    pub dropped_stale: u64,
    /// Trajectories in zero-signal groups, filtered.
    pub filtered_zero_signal: u64,
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
}

/// Coordinator inbox.
#[derive(Debug)]
pub enum CoordinatorMsg {
    /// Begin the run, driving these peers.
    Start(crate::roles::coordinator::Peers),
    /// A sampler asks for work.
    RequestWork(u32, RpcReplyPort<Work>),
    /// A sampler reports policy tokens it generated for training.
    Sampled {
        /// Policy tokens.
        tokens: u64,
        /// Trajectories.
        trajectories: u64,
    },
    /// A judge returns a scored evaluation episode.
    EvalResult(Box<ScoredTrajectory>),
    /// SFT progress from the learner.
    SftProgress {
        /// Steps done.
        step: u64,
        /// Loss of the last step.
        loss: f32,
    },
    /// SFT finished; weights published as `publication`.
    SftDone {
        /// Publication index.
        publication: u64,
    },
    /// An RL step finished.
    Stepped(Box<StepReport>),
}

/// Sampler inbox.
#[derive(Debug)]
pub enum SamplerMsg {
    /// Ask the coordinator for work and do it.
    Pull,
}

/// Env host inbox.
#[derive(Debug)]
pub enum EnvHostMsg {
    /// Start episode `episode` on `task`; reply with the first observation.
    Reset(u64, Box<TaskSpec>, RpcReplyPort<Result<String, String>>),
    /// Apply the policy's action; reply with `(observation, done)`.
    Step(
        u64,
        String,
        RpcReplyPort<Result<(Option<String>, bool), String>>,
    ),
}

/// Judge inbox.
#[derive(Debug)]
pub enum JudgeMsg {
    /// Score a finished trajectory and forward it (buffer for training, coordinator
    /// for evaluation).
    Score(Box<Trajectory>),
}

/// Replay buffer inbox.
#[derive(Debug)]
pub enum BufferMsg {
    /// Store a scored training trajectory.
    Insert(Box<ScoredTrajectory>),
    /// Take RL batch `batch` if complete, classifying staleness against `version`.
    TakeBatch(u64, u64, RpcReplyPort<Option<troupe_buffer::Batch>>),
}

/// Learner inbox.
#[derive(Debug)]
pub enum LearnerMsg {
    /// Run the SFT warm start on `examples`.
    RunSft(Vec<troupe_learner::SftExample>),
    /// Run RL until `steps` total RL steps are done.
    RunRl {
        /// Target RL step count.
        steps: u64,
    },
    /// Try to train on the next batch.
    Next,
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_core::wire::{DEFAULT_FRAME_LIMIT, decode_frame, encode_frame};

    fn round_trip<T: Encode + Decode<()> + PartialEq + std::fmt::Debug>(value: T) {
        let bytes = encode_frame(&value).unwrap();
        assert_eq!(
            decode_frame::<T>(&bytes, DEFAULT_FRAME_LIMIT).unwrap(),
            value
        );
    }

    #[test]
    fn payloads_cross_the_wire_unchanged() {
        let task = TaskSpec {
            id: 1 << 40,
            prompt: "sort 321".into(),
            answer: "123".into(),
            difficulty: 3,
        };
        round_trip(Work::Train(TrainUnit {
            batch: 3,
            groups: vec![(0, task.clone())],
            group_size: 8,
            publication: 2,
        }));
        round_trip(Work::Eval(EvalUnit {
            round: 1,
            tasks: vec![task],
            publication: 1,
        }));
        round_trip(Work::Wait);
        round_trip(StepReport {
            rl_step: 1,
            version: 201,
            publication: 2,
            loss: 0.5,
            mean_reward: 0.25,
            trained: 8,
            trained_tokens: 40,
            dropped_stale: 0,
            filtered_zero_signal: 8,
            staleness_histogram: vec![0, 8, 0],
            wait_seconds: 0.1,
            train_seconds: 0.2,
            grad_norm: 1.5,
            clip_fraction: 0.0,
            approx_kl: 0.001,
        });
        round_trip(troupe_learner::SftExample {
            tokens: vec![257, 258, 49],
            mask: vec![0, 0, 1],
        });
        round_trip(troupe_buffer::Counts::default());
    }
}
