//! EnvHost: owns environment instances; `reset`, `step` and `finish` over messages.
//! Built-in digit tasks are answered inline by [`EnvHostCore`]; code-fixing episodes run
//! sandboxed commands, so each of their requests is served by a task of its own (the
//! actor stays responsive and many episodes' commands run at once, up to the warm pool).

use ractor::{Actor, ActorProcessingErr, ActorRef};
use troupe_env::codefix::{CodefixConfig, CodefixHost, TaskKey};
use troupe_env::{EnvError, EnvHostCore, EnvSpec};

use crate::messages::{EnvHostMsg, StepReply};

/// The env host actor.
#[derive(Debug)]
pub struct EnvHost;

/// What an env host needs.
#[derive(Debug, Clone)]
pub struct EnvHostArgs {
    /// Most live episodes (back-pressure beyond).
    pub capacity: usize,
    /// The environment to make for each task (the in-memory families).
    pub spec: EnvSpec,
    /// The code-fixing environment's settings, when the run poses code-fixing tasks.
    pub codefix: Option<CodefixConfig>,
}

/// The env host's environments.
#[derive(Debug)]
pub struct EnvHostState {
    core: EnvHostCore,
    codefix: Option<CodefixHost>,
}

impl EnvHostState {
    /// The code-fixing host that owns `episode`, if any.
    fn codefix_for(&self, episode: u64) -> Option<CodefixHost> {
        self.codefix.as_ref().filter(|h| h.has(episode)).cloned()
    }
}

impl Actor for EnvHost {
    type Msg = EnvHostMsg;
    type State = EnvHostState;
    type Arguments = EnvHostArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: EnvHostArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let codefix = match args.codefix {
            Some(cfg) => Some(CodefixHost::new(cfg, args.capacity).await?),
            None => None,
        };
        crate::remote::join(crate::remote::group::ENV_HOST, myself.get_cell());
        Ok(EnvHostState {
            core: EnvHostCore::new(args.capacity, args.spec),
            codefix,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // An episode reset again is a retry of work whose earlier attempt failed (a
            // sampler, env host or judge went away): what that attempt left is dropped.
            EnvHostMsg::Reset(episode, task, reply) => match TaskKey::of_task(&task) {
                None => {
                    let mut out = state.core.reset(episode, &task);
                    if let Err(EnvError::DuplicateEpisode { .. }) = out {
                        retried(episode);
                        let _ = state.core.abandon(episode);
                        out = state.core.reset(episode, &task);
                    }
                    let _ = reply.send(out.map_err(|e| e.to_string()));
                }
                Some(_) => match state.codefix.clone() {
                    Some(host) => {
                        tokio::spawn(async move {
                            let mut out = host.reset(episode, &task).await;
                            if let Err(EnvError::DuplicateEpisode { .. }) = out {
                                retried(episode);
                                let _ = host.finish(episode).await;
                                out = host.reset(episode, &task).await;
                            }
                            let _ = reply.send(out.map_err(|e| e.to_string()));
                        });
                    }
                    None => {
                        let _ = reply.send(Err(
                            "a code-fixing task, but this run's [task] family is not \"codefix\""
                                .into(),
                        ));
                    }
                },
            },
            EnvHostMsg::Step(episode, action, reply) => match state.codefix_for(episode) {
                Some(host) => {
                    tokio::spawn(async move {
                        let _ = reply.send(step_reply(host.step(episode, &action).await));
                    });
                }
                None => {
                    let _ = reply.send(step_reply(state.core.step(episode, &action)));
                }
            },
            EnvHostMsg::Finish(episode, reply) => match state.codefix_for(episode) {
                Some(host) => {
                    tokio::spawn(async move {
                        let out = host.finish(episode).await.map(Some);
                        let _ = reply.send(out.map_err(|e| e.to_string()));
                    });
                }
                None => {
                    let _ = reply.send(state.core.abandon(episode).map_err(|e| e.to_string()));
                }
            },
        }
        Ok(())
    }
}

fn retried(episode: u64) {
    tracing::warn!(
        episode,
        "episode started again (a retry after a fault); the earlier attempt is dropped"
    );
}

/// A step's outcome as the wire reply: (observation with its author, done, submission).
fn step_reply(
    outcome: Result<troupe_env::StepOutcome, troupe_env::EnvError>,
) -> Result<StepReply, String> {
    outcome
        .map(|s| {
            (
                s.observation.map(|o| (o.author, o.text)),
                s.done,
                s.submission,
            )
        })
        .map_err(|e| e.to_string())
}
