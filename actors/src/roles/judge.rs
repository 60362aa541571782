//! Judge: scores finished trajectories with the task's verifier and routes them:
//! training episodes to the replay buffer, evaluation episodes to the coordinator.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use troupe_core::{Purpose, ScoredTrajectory};

use crate::messages::{BufferMsg, CoordinatorMsg, JudgeMsg};
use crate::remote::{self, group};
use crate::roles::one;

/// The judge actor.
#[derive(Debug)]
pub struct Judge;

impl Actor for Judge {
    type Msg = JudgeMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        remote::join(group::JUDGE, myself.get_cell());
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let JudgeMsg::Score(trajectory) = msg;
        let reward = troupe_env::score(&trajectory);
        let scored = Box::new(ScoredTrajectory {
            trajectory: *trajectory,
            reward,
        });
        match scored.trajectory.purpose {
            Purpose::Train { .. } => {
                one::<BufferMsg>(group::BUFFER)?.cast(BufferMsg::Insert(scored))?
            }
            Purpose::Eval { .. } => one::<CoordinatorMsg>(group::COORDINATOR)?
                .cast(CoordinatorMsg::EvalResult(scored))?,
        }
        Ok(())
    }
}
