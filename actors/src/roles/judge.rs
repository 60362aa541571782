//! Judge: scores finished trajectories with the task's verifier and routes them:
//! training episodes to the replay buffer, evaluation episodes to the coordinator.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use troupe_core::{Purpose, ScoredTrajectory};

use crate::messages::{BufferMsg, CoordinatorMsg, JudgeMsg};

/// The judge actor.
#[derive(Debug)]
pub struct Judge;

/// Where scored trajectories go.
#[derive(Debug, Clone)]
pub struct JudgeArgs {
    /// Receives training trajectories.
    pub buffer: ActorRef<BufferMsg>,
    /// Receives evaluation trajectories.
    pub coordinator: ActorRef<CoordinatorMsg>,
}

impl Actor for Judge {
    type Msg = JudgeMsg;
    type State = JudgeArgs;
    type Arguments = JudgeArgs;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        args: JudgeArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        peers: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let JudgeMsg::Score(trajectory) = msg;
        let reward = troupe_env::verify(&trajectory.task, &trajectory.response);
        let scored = Box::new(ScoredTrajectory {
            trajectory: *trajectory,
            reward,
        });
        match scored.trajectory.purpose {
            Purpose::Train { .. } => peers.buffer.cast(BufferMsg::Insert(scored))?,
            Purpose::Eval { .. } => peers.coordinator.cast(CoordinatorMsg::EvalResult(scored))?,
        }
        Ok(())
    }
}
