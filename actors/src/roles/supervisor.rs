//! Node supervisor: one per node. Starts the node's samplers, env hosts and judges,
//! restarts any that fails or is killed (with back-off), and scales the samplers at run
//! time. A retired sampler finishes the unit in hand first; a restarted one tells the
//! coordinator, which hands out again whatever its earlier incarnation held.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::messages::{CoordinatorMsg, NodeMsg, SamplerMsg};
use crate::remote::{self, group};
use crate::roles::{
    envhost::{EnvHost, EnvHostArgs},
    judge::{Judge, JudgeArgs},
    sampler::{Sampler, SamplerArgs},
};

/// First index of the samplers a node adds at run time: `SCALED_BASE * (ordinal + 1)`,
/// so indices stay unique across nodes.
pub const SCALED_BASE: u32 = 1000;
/// Longest pause before a restart (the pause doubles with each restart of an actor).
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What a node supervisor starts.
#[derive(Debug, Clone)]
pub struct NodeSupervisorArgs {
    /// The node's name.
    pub node: String,
    /// Its position in `cluster.toml` (for sampler indices added at run time).
    pub ordinal: u32,
    /// Env hosts to run.
    pub env_hosts: u32,
    /// Judges to run.
    pub judges: u32,
    /// Samplers to run at start, indexed from `sampler.index`.
    pub samplers: u32,
    /// Env host arguments.
    pub env_host: EnvHostArgs,
    /// Judge arguments.
    pub judge: JudgeArgs,
    /// Sampler arguments; each sampler gets its own `index`.
    pub sampler: SamplerArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    EnvHost,
    Judge,
    Sampler(u32),
}

/// A node supervisor's state.
#[derive(Debug)]
pub struct NodeSupervisorState {
    args: NodeSupervisorArgs,
    /// Children by name.
    children: BTreeMap<String, Kind>,
    /// Restarts so far, by name.
    restarts: BTreeMap<String, u32>,
    /// Samplers told to retire: their exit is expected.
    retiring: BTreeSet<String>,
    /// Next index for a sampler added at run time.
    next_sampler: u32,
}

/// The node supervisor actor.
#[derive(Debug)]
pub struct NodeSupervisor;

fn name_of(kind: Kind, i: u32) -> String {
    match kind {
        Kind::EnvHost => format!("env_host-{i}"),
        Kind::Judge => format!("judge-{i}"),
        Kind::Sampler(index) => format!("sampler-{index}"),
    }
}

impl NodeSupervisorState {
    async fn start(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        name: String,
        kind: Kind,
    ) -> Result<(), ActorProcessingErr> {
        let parent: ActorCell = myself.get_cell();
        let a = &self.args;
        match kind {
            Kind::EnvHost => {
                Actor::spawn_linked(Some(name.clone()), EnvHost, a.env_host.clone(), parent)
                    .await?;
            }
            Kind::Judge => {
                Actor::spawn_linked(Some(name.clone()), Judge, a.judge.clone(), parent).await?;
            }
            Kind::Sampler(index) => {
                let args = SamplerArgs {
                    index,
                    ..a.sampler.clone()
                };
                Actor::spawn_linked(Some(name.clone()), Sampler, args, parent).await?;
            }
        }
        self.children.insert(name, kind);
        Ok(())
    }

    /// Samplers running and not retiring, by index.
    fn active_samplers(&self) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = self
            .children
            .iter()
            .filter(|(n, _)| !self.retiring.contains(*n))
            .filter_map(|(n, k)| match k {
                Kind::Sampler(i) => Some((*i, n.clone())),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    async fn scale(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        want: u32,
    ) -> Result<u32, ActorProcessingErr> {
        let active = self.active_samplers();
        let have = active.len() as u32;
        if want > have {
            for _ in have..want {
                let index = self.next_sampler;
                self.next_sampler += 1;
                let kind = Kind::Sampler(index);
                self.start(myself, name_of(kind, 0), kind).await?;
            }
        } else {
            // The newest go first; each finishes the unit in hand.
            for (_, name) in active.iter().rev().take((have - want) as usize) {
                if let Some(cell) = ractor::registry::where_is(name.clone()) {
                    ActorRef::<SamplerMsg>::from(cell).cast(SamplerMsg::Retire)?;
                    self.retiring.insert(name.clone());
                }
            }
        }
        tracing::info!(node = %self.args.node, samplers = want, "scaled");
        Ok(want)
    }

    /// Schedules a restart of `name` after a pause that doubles with each restart.
    fn restart_later(&mut self, myself: &ActorRef<NodeMsg>, name: String) {
        let n = self.restarts.entry(name.clone()).or_insert(0);
        *n += 1;
        let restarts = *n;
        let pause = Duration::from_millis(250)
            .saturating_mul(1 << (restarts - 1).min(8))
            .min(MAX_BACKOFF);
        if let Some(c) = remote::members::<CoordinatorMsg>(group::COORDINATOR).first() {
            let _ = c.cast(CoordinatorMsg::Restarted {
                node: self.args.node.clone(),
                actor: name.clone(),
                restarts,
            });
        }
        myself.send_after(pause, move || NodeMsg::Restart(name));
    }
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeSupervisorState;
    type Arguments = NodeSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: NodeSupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let first = args.sampler.index;
        let mut state = NodeSupervisorState {
            next_sampler: SCALED_BASE * (args.ordinal + 1),
            children: BTreeMap::new(),
            restarts: BTreeMap::new(),
            retiring: BTreeSet::new(),
            args,
        };
        let a = state.args.clone();
        for i in 0..a.env_hosts {
            state
                .start(&myself, name_of(Kind::EnvHost, i), Kind::EnvHost)
                .await?;
        }
        for i in 0..a.judges {
            state
                .start(&myself, name_of(Kind::Judge, i), Kind::Judge)
                .await?;
        }
        for i in 0..a.samplers {
            let kind = Kind::Sampler(first + i);
            state.start(&myself, name_of(kind, 0), kind).await?;
        }
        remote::join(group::NODE, myself.get_cell());
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children(None);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Scale(want, reply) => {
                let now = state.scale(&myself, want).await?;
                let _ = reply.send(now);
            }
            NodeMsg::Kill(name, reply) => {
                let found = state.children.contains_key(&name);
                if let Some(cell) = ractor::registry::where_is(name.clone()).filter(|_| found) {
                    tracing::warn!(actor = %name, "killing on request (fault injection)");
                    cell.kill();
                }
                let _ = reply.send(found);
            }
            NodeMsg::Restart(name) => {
                let Some(&kind) = state.children.get(&name) else {
                    return Ok(());
                };
                if ractor::registry::where_is(name.clone()).is_some() {
                    // The old one is not gone from the registry yet.
                    myself.send_after(Duration::from_millis(100), move || NodeMsg::Restart(name));
                    return Ok(());
                }
                if let Err(e) = state.start(&myself, name.clone(), kind).await {
                    tracing::warn!(actor = %name, error = %e, "restart failed; trying again");
                    state.restart_later(&myself, name);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match &event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.clone().unwrap_or_else(|| "stopped".into()))
            }
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            _ => return Ok(()),
        };
        let Some(name) = cell.get_name() else {
            return Ok(());
        };
        if state.retiring.remove(&name) {
            state.children.remove(&name);
            tracing::info!(actor = %name, "retired");
            return Ok(());
        }
        if !state.children.contains_key(&name) {
            return Ok(());
        }
        tracing::warn!(node = %state.args.node, actor = %name, reason = %why, "actor down; restarting");
        state.restart_later(&myself, name);
        Ok(())
    }
}
