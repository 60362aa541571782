//! Messages between roles. Payloads are the bincode-encodable types of `troupe-core`
//! and the plain structs below (fixed-width integers), so every message can cross
//! the network unchanged; reply ports are ractor's and become remote replies there.

use ractor::RpcReplyPort;
use troupe_core::{ScoredTrajectory, TaskSpec, Trajectory};

pub use troupe_core::protocol::{EvalUnit, StepReport, TrainUnit, Work};

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

// With ractor's `cluster` feature every message type states how it crosses the
// network. These inboxes are local today (payloads are wire-ready, reply ports are
// not yet); remote variants arrive with node sessions over QUIC.
impl ractor::Message for CoordinatorMsg {}
impl ractor::Message for SamplerMsg {}
impl ractor::Message for EnvHostMsg {}
impl ractor::Message for JudgeMsg {}
impl ractor::Message for BufferMsg {}
impl ractor::Message for LearnerMsg {}

#[cfg(test)]
mod tests {
    use super::*;
    use bincode::{Decode, Encode};
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
