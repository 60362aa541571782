//! `troupe node`: one machine of a cluster. Nodes meet over QUIC with mutual TLS (one
//! connection per node pair, dialled by the node whose name sorts first); each
//! connection carries a ractor_cluster session on its first bidirectional stream and
//! weight publications on unidirectional streams. Roles find each other through
//! process groups, so the same actors run here as in `troupe run`.
//!
//! Nodes come and go: a lost connection is dialled again (by the node whose name sorts
//! first) until the run completes, a node that loses the head waits for it to return,
//! and a head started again on its run directory resumes the run from its last
//! checkpoint and the replay buffer's log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::{NodeServer, NodeServerMessage, node::NodeConnectionMode};
use troupe_core::PolicyVersion;
use troupe_model::WeightSnapshot;
use troupe_transport::{Node as Quic, NodeIdentity, QuicBidi, bulk};

use crate::config::{ClusterConfig, NodeConfig};
use crate::progress::Progress;
use crate::run::{
    RoleContext, RunOptions, prepare_head, spawn_coordinator, spawn_roles, wait_for_summary,
};
use crate::weights::WeightStore;
use crate::{ActorError, Summary};

/// What `troupe node` was asked to do.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The cluster configuration file.
    pub config: PathBuf,
    /// This node's name in it.
    pub name: String,
    /// Run seed (head node only).
    pub seed: Option<u64>,
    /// Run directory (head node only). One that already holds this run is resumed.
    pub out: Option<PathBuf>,
}

/// Close code the head sends when the run is complete.
const RUN_COMPLETE: u32 = 0;
/// Largest weight publication accepted from a peer.
const WEIGHTS_LIMIT: u64 = 4 << 30;

type Peers = Arc<Mutex<HashMap<String, quinn::Connection>>>;

fn fail(e: impl std::fmt::Display) -> ActorError {
    ActorError::Failed(e.to_string())
}

fn lock(peers: &Peers) -> std::sync::MutexGuard<'_, HashMap<String, quinn::Connection>> {
    peers.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs this node until the run completes (head) or the head reports completion.
/// The head returns the run's summary.
pub async fn node(
    opts: NodeOptions,
    progress: Arc<dyn Progress>,
) -> Result<Option<Summary>, ActorError> {
    let text = std::fs::read_to_string(&opts.config).map_err(|e| ActorError::Config {
        path: opts.config.clone(),
        message: e.to_string(),
    })?;
    let cfg = ClusterConfig::parse(&text, &opts.config)?;
    let nodes = cfg.nodes();
    let config_err = |message: String| ActorError::Config {
        path: opts.config.clone(),
        message,
    };
    let me = nodes
        .iter()
        .find(|n| n.name == opts.name)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
            config_err(format!(
                "no node named {:?}; the nodes are {}",
                opts.name,
                names.join(", ")
            ))
        })?;
    let addr = node_addr(&me).map_err(config_err)?;
    // A head restarted on its run directory continues the run.
    let resume = opts
        .out
        .clone()
        .filter(|dir| me.roles.coordinator && dir.join("run_state.json").exists());
    if let Some(dir) = resume.as_ref().filter(|d| d.join("summary.json").exists()) {
        return Err(ActorError::RunDir {
            path: dir.clone(),
            reason: "holds a run that is complete; pick another --out for a new run".into(),
        });
    }
    if let Some(dir) = &resume {
        progress.note(&format!(
            "{} holds this run: resuming it from its last checkpoint",
            dir.display()
        ));
    }

    let tls = opts
        .config
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(&cfg.cluster.tls_dir);
    let identity = NodeIdentity::load(
        tls.join("ca.pem"),
        tls.join(format!("{}.pem", me.name)),
        tls.join(format!("{}.key", me.name)),
        &me.name,
    )
    .map_err(|e| {
        fail(format!(
            "{e} (make certificates with `troupe certs --config {}`)",
            opts.config.display()
        ))
    })?;
    troupe_transport::tls::install_crypto_provider();
    let quic = Quic::bind(addr, &identity).map_err(fail)?;
    progress.note(&format!("node {} listening on {} (QUIC)", me.name, addr));

    let server = NodeServer::new(
        0,
        cfg.cluster.cookie.clone(),
        me.name.clone(),
        "127.0.0.1".into(),
        None,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(std::net::IpAddr::from([127, 0, 0, 1]));
    let (node_server, _) = Actor::spawn(None, server, ()).await.map_err(fail)?;

    let head = if me.roles.coordinator {
        let run_opts = RunOptions {
            config: (text, opts.config.clone()),
            seed: opts.seed,
            out: opts.out.clone(),
            resume,
            seed_trajectories: None,
        };
        Some(prepare_head(&run_opts, progress.as_ref())?)
    } else {
        None
    };
    let weights = WeightStore::new(cfg.rl.async_lag as usize + 3);
    let peers: Peers = Arc::default();
    let link = Link {
        quic: quic.clone(),
        node_server: node_server.clone(),
        weights: weights.clone(),
        peers: peers.clone(),
        learner_here: me.roles.learner,
        sync_log: head
            .as_ref()
            .filter(|_| me.roles.learner)
            .map(|h| h.run_dir.join("weight_sync.jsonl")),
        sampler_nodes: nodes
            .iter()
            .filter(|n| n.roles.samplers > 0)
            .map(|n| n.name.clone())
            .collect(),
    };
    tokio::spawn(link.clone().accept_loop());
    for peer in nodes.iter().filter(|n| n.name > me.name) {
        let peer_addr = node_addr(peer).map_err(config_err)?;
        tokio::spawn(link.clone().dial_loop(peer.name.clone(), peer_addr));
    }
    if me.roles.learner {
        tokio::spawn(link.clone().publish_loop());
    }

    let first_sampler = nodes
        .iter()
        .take_while(|n| n.name != me.name)
        .map(|n| n.roles.samplers)
        .sum();
    let ordinal = nodes.iter().position(|n| n.name == me.name).unwrap_or(0) as u32;
    let outcome = if let Some(head) = head {
        let (coordinator, done, dashboard) = spawn_coordinator(&head, progress.clone()).await?;
        if let Some(dashboard) = dashboard {
            tokio::spawn(name_peers(node_server.clone(), dashboard));
        }
        let ctx = RoleContext {
            cfg: &cfg,
            seed: head.seed,
            weights,
            head: Some(head.context()),
            first_sampler,
            node: (me.name.clone(), ordinal),
        };
        spawn_roles(&ctx, &me.roles, Some(coordinator.get_cell())).await?;
        let summary = wait_for_summary(coordinator, done).await;
        quic.endpoint().close(RUN_COMPLETE.into(), b"run complete");
        let _ = tokio::time::timeout(Duration::from_secs(2), quic.wait_idle()).await;
        summary.map(Some)
    } else {
        let head = nodes
            .iter()
            .find(|n| n.roles.coordinator)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let ctx = RoleContext {
            cfg: &cfg,
            seed: cfg.run.seed,
            weights,
            head: None,
            first_sampler,
            node: (me.name.clone(), ordinal),
        };
        spawn_roles(&ctx, &me.roles, None).await?;
        wait_for_head(&peers, &head).await.map(|()| None)
    };
    node_server.stop(None);
    outcome
}

/// Tells the dashboard, every second, which peers hold an actor session with this node
/// and their ractor node ids; ends when the node server stops.
async fn name_peers(
    node_server: ActorRef<NodeServerMessage>,
    dashboard: crate::dashboard::Dashboard,
) {
    while let Ok(sessions) = ractor::call_t!(node_server, NodeServerMessage::GetSessions, 1_000) {
        let peers = sessions
            .into_iter()
            .filter_map(|(id, s)| {
                let name = s.peer_name?.name;
                // `node_name@host`
                let node = name.split('@').next().unwrap_or(&name).to_string();
                Some((id, node))
            })
            .collect();
        dashboard.set_peers(peers);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn node_addr(node: &NodeConfig) -> Result<SocketAddr, String> {
    let addr = node.addr.as_deref().ok_or_else(|| {
        format!(
            "[[nodes]] {}: addr is required for `troupe node`",
            node.name
        )
    })?;
    addr.parse()
        .map_err(|_| format!("[[nodes]] {}: addr {addr:?} is not host:port", node.name))
}

/// Waits until the head closes its connection because the run is complete. A head lost
/// any other way is waited for: started again, it resumes the run.
async fn wait_for_head(peers: &Peers, head: &str) -> Result<(), ActorError> {
    loop {
        let conn = lock(peers).get(head).cloned();
        let Some(conn) = conn else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let reason = conn.closed().await;
        if run_complete(&reason) {
            return Ok(());
        }
        tracing::warn!(%head, %reason, "lost the head node; waiting for it to return");
        forget(peers, head, &conn);
    }
}

/// Drops `conn` from the peers unless a newer connection to `name` replaced it.
fn forget(peers: &Peers, name: &str, conn: &quinn::Connection) {
    let mut held = lock(peers);
    if held
        .get(name)
        .is_some_and(|c| c.stable_id() == conn.stable_id())
    {
        held.remove(name);
    }
}

/// Whether a connection ended because the run is complete.
fn run_complete(reason: &quinn::ConnectionError) -> bool {
    matches!(reason, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == RUN_COMPLETE.into())
        || matches!(reason, quinn::ConnectionError::LocallyClosed)
}

/// Serialises a publication: `[version u64 LE][safetensors]`.
fn encode_weights(version: PolicyVersion, weights: &WeightSnapshot) -> Result<Vec<u8>, ActorError> {
    let mut out = version.0.to_le_bytes().to_vec();
    out.extend(weights.to_bytes().map_err(fail)?);
    Ok(out)
}

fn decode_weights(bytes: &[u8]) -> Result<(PolicyVersion, WeightSnapshot), String> {
    let (version, body) = bytes
        .split_at_checked(8)
        .ok_or("weights blob shorter than its header")?;
    let version = u64::from_le_bytes(version.try_into().map_err(|_| "bad version")?);
    let weights = WeightSnapshot::from_bytes(body).map_err(|e| e.to_string())?;
    Ok((PolicyVersion(version), weights))
}

/// This node's side of its connections.
#[derive(Clone)]
struct Link {
    quic: Quic,
    node_server: ActorRef<NodeServerMessage>,
    weights: WeightStore,
    peers: Peers,
    learner_here: bool,
    sampler_nodes: std::collections::HashSet<String>,
    /// Where the learner's node records each weight sync (`weight_sync.jsonl`).
    sync_log: Option<PathBuf>,
}

impl Link {
    async fn accept_loop(self) {
        while let Some(incoming) = self.quic.accept().await {
            let Ok(conn) =
                incoming.inspect_err(|e| tracing::warn!(error = %e, "refused a connection"))
            else {
                continue;
            };
            let link = self.clone();
            tokio::spawn(async move {
                match QuicBidi::accept(&conn).await {
                    Ok(stream) => {
                        let msg = NodeServerMessage::ConnectionOpenedExternal {
                            stream: Box::new(stream),
                            is_server: true,
                        };
                        if link.node_server.cast(msg).is_ok() {
                            link.connected(conn).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "peer opened no session stream"),
                }
            });
        }
    }

    /// Dials `peer` until connected, and again each time the connection is lost, until
    /// the run is complete.
    async fn dial_loop(self, peer: String, addr: SocketAddr) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.quic.connect(addr, &peer).await {
                Ok(conn) => match QuicBidi::open(&conn).await {
                    Ok(stream) => {
                        if ractor_cluster::client_connect_external(
                            &self.node_server,
                            Box::new(stream),
                        )
                        .await
                        .is_ok()
                        {
                            self.connected(conn.clone()).await;
                            let reason = conn.closed().await;
                            if run_complete(&reason) {
                                return;
                            }
                            tracing::warn!(%peer, %reason, "lost a peer; dialling it again");
                            forget(&self.peers, &peer, &conn);
                            backoff = Duration::from_millis(100);
                            continue;
                        }
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "no session stream"),
                },
                Err(e) => tracing::debug!(%peer, error = %e, "peer not up yet"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Registers a connection, receives its weight publications, and sends the newest
    /// publication to a sampler node that just joined.
    async fn connected(&self, conn: quinn::Connection) {
        let Some(name) = troupe_transport::peer_name(&conn) else {
            return;
        };
        lock(&self.peers).insert(name.clone(), conn.clone());
        tracing::info!(peer = %name, "connected");
        if self.learner_here
            && self.sampler_nodes.contains(&name)
            && let Some(index) = self.weights.latest()
        {
            self.send(index, std::slice::from_ref(&conn)).await;
        }
        let weights = self.weights.clone();
        let peers = self.peers.clone();
        tokio::spawn(async move {
            while let Ok(recv) = conn.accept_uni().await {
                match bulk::recv_blob(recv, WEIGHTS_LIMIT)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|(index, bytes)| {
                        decode_weights(&bytes).map(|(version, snapshot)| (index, version, snapshot))
                    }) {
                    Ok((index, version, snapshot)) => weights.publish(index, version, snapshot),
                    Err(e) => {
                        tracing::warn!(peer = %name, error = %e, "refused a weights publication")
                    }
                }
            }
            forget(&peers, &name, &conn);
        });
    }

    async fn send(&self, index: u64, conns: &[quinn::Connection]) {
        let Some(p) = self.weights.get(index).filter(|_| !conns.is_empty()) else {
            return;
        };
        let Ok(bytes) = encode_weights(p.version, &p.weights) else {
            return;
        };
        let started = std::time::Instant::now();
        let mut failed = 0;
        for r in bulk::broadcast_blob(conns, index, &bytes, bulk::DEFAULT_CHUNK).await {
            if let Err(e) = r {
                failed += 1;
                tracing::warn!(publication = index, error = %e, "weight sync failed");
            }
        }
        let Some(path) = &self.sync_log else {
            return;
        };
        let line = serde_json::json!({
            "publication": index,
            "version": p.version.0,
            "bytes": bytes.len(),
            "peers": conns.len(),
            "failed": failed,
            "seconds": started.elapsed().as_secs_f64(),
        });
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot record a weight sync");
        }
    }

    /// Sends every new publication to every connected sampler node: one stream each.
    async fn publish_loop(self) {
        let mut latest = self.weights.subscribe();
        while latest.changed().await.is_ok() {
            let Some(index) = *latest.borrow_and_update() else {
                continue;
            };
            let conns: Vec<quinn::Connection> = lock(&self.peers)
                .iter()
                .filter(|(n, _)| self.sampler_nodes.contains(*n))
                .map(|(_, c)| c.clone())
                .collect();
            self.send(index, &conns).await;
        }
    }
}
