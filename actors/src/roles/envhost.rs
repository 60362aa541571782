//! EnvHost: owns environment instances; `reset` and `step` over messages.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use troupe_env::{EnvHostCore, EnvSpec};

use crate::messages::EnvHostMsg;

/// The env host actor.
#[derive(Debug)]
pub struct EnvHost;

impl Actor for EnvHost {
    type Msg = EnvHostMsg;
    type State = EnvHostCore;
    /// Episode capacity, and the environment to make for each task.
    type Arguments = (usize, EnvSpec);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (capacity, spec): (usize, EnvSpec),
    ) -> Result<Self::State, ActorProcessingErr> {
        crate::remote::join(crate::remote::group::ENV_HOST, myself.get_cell());
        Ok(EnvHostCore::new(capacity, spec))
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        core: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EnvHostMsg::Reset(episode, task, reply) => {
                let _ = reply.send(core.reset(episode, &task).map_err(|e| e.to_string()));
            }
            EnvHostMsg::Step(episode, action, reply) => {
                let out = core
                    .step(episode, &action)
                    .map(|s| (s.observation.map(|o| (o.author, o.text)), s.done))
                    .map_err(|e| e.to_string());
                let _ = reply.send(out);
            }
            EnvHostMsg::Close(episode) => {
                core.close(episode);
            }
        }
        Ok(())
    }
}
