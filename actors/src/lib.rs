//! The actor system: one thin ractor actor per role, the coordinator's scheduler, the
//! configuration and the embedded run.
//!
//! - [`config`] — `cluster.toml`.
//! - [`dashboard`] — the head node's live status over HTTP (page, JSON, SSE, Prometheus).
//! - [`messages`] — what roles say to each other (payloads are wire-ready).
//! - [`schedule`] — the coordinator's pure, deterministic work scheduler.
//! - [`remote`] — process groups and how messages cross the network.
//! - [`weights`] — the bulk weight channel (in-process store; QUIC streams later).
//! - [`roles`] — Coordinator, Sampler, EnvHost, Judge, ReplayBuffer, Learner.
//! - [`node`] — `troupe node`: one machine of a cluster, over QUIC.
//! - [`run`] — spawns every role in one process and drives a run to its summary.
//!
//! ```
//! use troupe_actors::config::{ClusterConfig, EMBEDDED_DEFAULT};
//! let cfg = ClusterConfig::parse(EMBEDDED_DEFAULT, "cluster.toml".as_ref()).unwrap();
//! assert_eq!(cfg.nodes().len(), 1);
//! ```

pub mod config;
pub mod dashboard;
pub mod messages;
pub mod node;
pub mod progress;
pub mod remote;
pub mod roles;
pub mod run;
pub mod schedule;
pub mod summary;
pub mod weights;

pub use node::{NodeOptions, node};
pub use progress::Progress;
pub use run::{RunOptions, run};
pub use summary::Summary;

/// Errors from configuring or running troupe's actors.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// The configuration file is unreadable or invalid.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong (with line and key where known).
        message: String,
    },
    /// A file of the run could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Seed trajectories could not be used.
    #[error("seed trajectories: {0}")]
    Seeds(String),
    /// The run directory cannot be used as asked.
    #[error("run directory {}: {reason}", path.display())]
    RunDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// An actor could not be started.
    #[error("could not start the {role}: {reason}")]
    Spawn {
        /// Role.
        role: &'static str,
        /// Why.
        reason: String,
    },
    /// The run failed.
    #[error("run failed: {0}")]
    Failed(String),
}
