//! Judge: scores finished trajectories and routes them: training episodes to the replay
//! buffer, evaluation episodes to the coordinator. Digit tasks are scored inline by their
//! verifier; code-fixing episodes by their hidden tests ([`troupe_env::codefix::judge`]),
//! which run in a sandbox, so each is scored by a task of its own that sends the result
//! back to this actor.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use troupe_core::{Purpose, ScoredTrajectory};
use troupe_env::codefix::{CodefixConfig, CodefixJudge, TaskKey};

use crate::messages::{BufferMsg, CoordinatorMsg, JudgeMsg};
use crate::remote::{self, group};
use crate::roles::one;

/// The judge actor.
#[derive(Debug)]
pub struct Judge;

/// What a judge needs.
#[derive(Debug, Clone, Default)]
pub struct JudgeArgs {
    /// The code-fixing environment's settings, when the run poses code-fixing tasks.
    pub codefix: Option<CodefixConfig>,
}

/// The judge's hidden-test runner, when it has one.
#[derive(Debug)]
pub struct JudgeState {
    codefix: Option<CodefixJudge>,
}

fn route(scored: Box<ScoredTrajectory>) -> Result<(), ActorProcessingErr> {
    match scored.trajectory.purpose {
        Purpose::Train { .. } => {
            one::<BufferMsg>(group::BUFFER)?.cast(BufferMsg::Insert(scored))?
        }
        Purpose::Eval { .. } => {
            one::<CoordinatorMsg>(group::COORDINATOR)?.cast(CoordinatorMsg::EvalResult(scored))?
        }
    }
    Ok(())
}

impl Actor for Judge {
    type Msg = JudgeMsg;
    type State = JudgeState;
    type Arguments = JudgeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: JudgeArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let codefix = match &args.codefix {
            Some(cfg) => Some(CodefixJudge::new(cfg).await?),
            None => None,
        };
        remote::join(group::JUDGE, myself.get_cell());
        Ok(JudgeState { codefix })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            JudgeMsg::Score(trajectory) => match TaskKey::of_task(&trajectory.task) {
                None => {
                    let reward = troupe_env::score(&trajectory);
                    route(Box::new(ScoredTrajectory {
                        trajectory: *trajectory,
                        reward,
                    }))?;
                }
                Some(_) => {
                    let judge = state.codefix.clone().ok_or(
                        "a code-fixing trajectory, but this run's [task] family is not \"codefix\"",
                    )?;
                    tokio::spawn(async move {
                        let msg = match judge.judge(&trajectory.task, &trajectory.response).await {
                            Ok(reward) => JudgeMsg::Scored(Box::new(ScoredTrajectory {
                                trajectory: *trajectory,
                                reward,
                            })),
                            Err(e) => JudgeMsg::Failed(format!(
                                "hidden tests of trajectory {}: {e}",
                                trajectory.id
                            )),
                        };
                        let _ = myself.cast(msg);
                    });
                }
            },
            JudgeMsg::Scored(scored) => route(scored)?,
            JudgeMsg::Failed(reason) => return Err(reason.into()),
        }
        Ok(())
    }
}
