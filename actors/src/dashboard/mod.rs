//! The dashboard served by the head node: a live status of the cluster (nodes, actors,
//! policy version, trajectory accounting, per-step metrics, recent trajectories), over
//! HTTP.
//!
//! - [`status`] — the pure model and its renderings (`/api/status` JSON, Prometheus).
//! - [`heldout`] — held-out pass@1 points, stamped with the run's wall clock.
//! - [`trajectories`] — the trajectory viewer's renderings and their ring.
//! - [`server`] — the axum server: `/`, `/api/status`, `/api/steps`,
//!   `/api/trajectories`, `/api/events` (server-sent events, one per learner step),
//!   `/metrics`.
//!
//! The coordinator feeds a [`Dashboard`] handle; the server reads it. The URL and a
//! bearer token are written to the run directory (`dashboard.url`, `dashboard.token`)
//! for `troupe status --run-dir`.

pub mod control;
pub mod heldout;
pub mod server;
pub mod status;
pub mod trajectories;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ractor::ActorCell;
use serde_json::Value;
use tokio::sync::broadcast;
use troupe_core::ScoredTrajectory;
use troupe_model::tokenizer::ChatTokenizer;

use crate::progress::Progress;
use crate::remote::group;
use crate::summary::RunState;
pub use status::{ActorRow, NodeRow, StatusModel};

/// The shared, live status and the channel that announces each learner step.
#[derive(Debug, Clone)]
pub struct Dashboard {
    model: Arc<Mutex<StatusModel>>,
    events: broadcast::Sender<Value>,
    /// The node hosting this process's actors.
    node: String,
    /// Every node of the cluster, from `cluster.toml`.
    nodes: Vec<String>,
    /// Connected peers: ractor's node id of each actor session and the node's name.
    peers: Arc<Mutex<BTreeMap<u64, String>>>,
    /// Nodes that host samplers in `cluster.toml` (where `scale` without a node goes).
    sampler_nodes: Vec<String>,
    /// Renders the viewer's token pieces.
    tokenizer: ChatTokenizer,
    /// The run's wall clock: when this session began and the seconds of earlier ones.
    clock: (Instant, f64),
}

impl Dashboard {
    /// A dashboard for the head node `node` of a cluster with `nodes`.
    pub fn new(node: String, nodes: Vec<String>) -> Self {
        Self {
            model: Arc::default(),
            events: broadcast::channel(64).0,
            node,
            nodes,
            peers: Arc::default(),
            sampler_nodes: Vec::new(),
            tokenizer: ChatTokenizer::default(),
            clock: (Instant::now(), 0.0),
        }
    }

    /// This dashboard, with the nodes a `scale` without a node name spreads samplers over.
    pub fn with_sampler_nodes(mut self, nodes: Vec<String>) -> Self {
        self.sampler_nodes = nodes;
        self
    }

    /// The node this dashboard's process hosts (the head).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The nodes a `scale` without a node name spreads samplers over.
    pub fn sampler_nodes(&self) -> &[String] {
        &self.sampler_nodes
    }

    /// This dashboard for a run that starts from `state` (a resumed run's counters and
    /// evaluations), its trajectories rendered with `tokenizer`. The run's wall clock
    /// starts now, after `state.wall_seconds` of earlier sessions.
    pub fn for_run(mut self, state: &RunState, tokenizer: ChatTokenizer) -> Self {
        self.model().heldout = heldout::points(state);
        self.tokenizer = tokenizer;
        self.clock = (Instant::now(), state.wall_seconds);
        self
    }

    /// The run's wall-clock seconds now (earlier sessions included).
    fn wall_seconds(&self) -> f64 {
        self.clock.1 + self.clock.0.elapsed().as_secs_f64()
    }

    fn model(&self) -> MutexGuard<'_, StatusModel> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the coordinator's counters (after a sampler report or a learner step).
    pub fn counters(&self, state: &RunState, policy_version: u64, rl_step: u64) {
        let mut m = self.model();
        m.trajectories = state.trajectories;
        m.sampled_tokens = state.sampled_tokens;
        m.trained_tokens = state.trained_tokens;
        m.policy_version = m.policy_version.max(policy_version);
        m.rl_step = m.rl_step.max(rl_step);
        m.heldout = heldout::stamp(&m.heldout, heldout::points(state), self.wall_seconds());
    }

    /// Keeps a scored trajectory for the viewer: an evaluation episode, or the one a
    /// learner step reported (`rl_step`: the step that trained on it).
    pub fn trajectory(&self, scored: &ScoredTrajectory, rl_step: Option<u64>) {
        let rendered = trajectories::render(scored, rl_step, |id| {
            let piece = self.tokenizer.decode(&[id]);
            (!piece.is_empty() && !piece.contains('\u{FFFD}')).then_some(piece)
        });
        self.model().recent_trajectories.push(rendered);
    }

    /// The viewer's trajectories, newest first.
    pub fn trajectories(&self) -> Vec<Value> {
        self.model().recent_trajectories.newest_first()
    }

    /// Records one learner step (its `metrics.jsonl` line) and announces it.
    pub fn step(&self, line: &Value) {
        self.model().push_step(line.clone());
        let _ = self
            .events
            .send(serde_json::json!({"step": line, "status": self.status()}));
    }

    /// Sets the connected peers (ractor node id → node name), as `troupe node` learns
    /// them from its actor sessions.
    /// A node that connects or goes away is recorded as an event.
    pub fn set_peers(&self, peers: BTreeMap<u64, String>) {
        let names = |m: &BTreeMap<u64, String>| -> std::collections::BTreeSet<String> {
            m.values().cloned().collect()
        };
        let before = {
            let mut held = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *held, peers.clone())
        };
        let (was, now) = (names(&before), names(&peers));
        for lost in was.difference(&now) {
            self.event(format!("node {lost} lost"));
        }
        for joined in now.difference(&was) {
            self.event(format!("node {joined} connected"));
        }
    }

    /// Records an actor failure.
    pub fn failed(&self, actor: String, error: String) {
        self.model().failures.push((actor, error));
    }

    /// Records that `node`'s supervisor restarted `actor` (`restarts` so far).
    pub fn restarted(&self, node: &str, actor: &str, restarts: u32) {
        self.model()
            .restarts
            .insert((node.to_string(), actor.to_string()), u64::from(restarts));
    }

    /// Records a cluster event.
    pub fn event(&self, line: String) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.model().push_event(at, line);
    }

    /// The `/api/status` document now.
    pub fn status(&self) -> Value {
        let nodes = self.nodes();
        self.model().to_json(&nodes)
    }

    /// Prometheus text now.
    pub fn prometheus(&self) -> String {
        let nodes = self.nodes();
        self.model().to_prometheus(&nodes)
    }

    /// The step ring, oldest first.
    pub fn steps(&self) -> Vec<Value> {
        self.model().steps.iter().cloned().collect()
    }

    /// A receiver of step events.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.events.subscribe()
    }

    /// Nodes and their actors, from the role process groups. This process's actors
    /// belong to `node`, a peer's to the node its actor session names (`remote-N`, N
    /// ractor's node id, while the name is not known). A node is up while this process
    /// hosts it or holds an actor session with it.
    pub fn nodes(&self) -> Vec<NodeRow> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut rows: Vec<NodeRow> = self
            .nodes
            .iter()
            .map(|n| NodeRow {
                name: n.clone(),
                up: *n == self.node || peers.values().any(|p| p == n),
                actors: Vec::new(),
            })
            .collect();
        let (failures, restarts): (Vec<String>, _) = {
            let m = self.model();
            (
                m.failures.iter().map(|(n, _)| n.clone()).collect(),
                m.restarts.clone(),
            )
        };
        for (g, role) in [
            (group::COORDINATOR, "coordinator"),
            (group::LEARNER, "learner"),
            (group::BUFFER, "buffer"),
            (group::SAMPLER, "sampler"),
            (group::ENV_HOST, "env_host"),
            (group::JUDGE, "judge"),
        ] {
            let mut cells: Vec<ActorCell> = ractor::pg::get_members(&g.to_string());
            cells.sort_by_key(|c| (c.get_id().node(), c.get_id().pid()));
            for cell in cells {
                let id = cell.get_id();
                let node = if id.is_local() {
                    self.node.clone()
                } else {
                    peers
                        .get(&id.node())
                        .cloned()
                        .unwrap_or_else(|| format!("remote-{}", id.node()))
                };
                let name = cell.get_name().unwrap_or_else(|| id.to_string());
                let state = if failures.contains(&name) {
                    "failed".to_string()
                } else {
                    format!("{:?}", cell.get_status()).to_lowercase()
                };
                let row = ActorRow {
                    role: role.into(),
                    restarts: restarts
                        .get(&(node.clone(), name.clone()))
                        .copied()
                        .unwrap_or(0),
                    name,
                    state,
                    mailbox: None,
                };
                match rows.iter_mut().find(|r| r.name == node) {
                    Some(r) => {
                        r.up = true;
                        r.actors.push(row);
                    }
                    None => rows.push(NodeRow {
                        name: node,
                        up: true,
                        actors: vec![row],
                    }),
                }
            }
        }
        rows
    }
}

/// A [`Progress`] that also records the current phase on the dashboard.
#[derive(Debug)]
pub struct DashboardProgress {
    /// Where progress goes otherwise.
    pub inner: Arc<dyn Progress>,
    /// The dashboard.
    pub dashboard: Dashboard,
}

impl Progress for DashboardProgress {
    fn phase(&self, name: &str, total: u64) {
        self.dashboard.model().phase = name.to_string();
        self.inner.phase(name, total);
    }
    fn advance(&self, done: u64, msg: &str) {
        self.inner.advance(done, msg);
    }
    fn finish_phase(&self, msg: &str) {
        self.inner.finish_phase(msg);
    }
    fn note(&self, line: &str) {
        self.inner.note(line);
    }
}
