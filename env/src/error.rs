//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `troupe-env`.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A task-configuration value is out of range; `key` names the offending setting.
    #[error("task config `{key}`: {reason}")]
    Config {
        /// The configuration key at fault (`min_digits`, `max_digits`, `heldout_per_mille`).
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The env host already runs `capacity` episodes; retry after one finishes (back-pressure).
    #[error("env host is full ({capacity} live episodes)")]
    Full {
        /// The host's episode capacity.
        capacity: usize,
    },
    /// An episode with this id is already live on the host.
    #[error("episode {episode} is already live")]
    DuplicateEpisode {
        /// The episode id.
        episode: u64,
    },
    /// No live episode has this id (never reset, or already done).
    #[error("episode {episode} is not live")]
    UnknownEpisode {
        /// The episode id.
        episode: u64,
    },
    /// A code-fixing task key (`codefix/<family>/<seed>`) is malformed or does not match
    /// its task.
    #[error("code-fixing task {key:?}: {reason}")]
    TaskKey {
        /// The key as given (cut to 80 characters).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The sandbox could not run a command (set-up, leases, cleanup; not a command that
    /// failed or timed out, which is an output).
    #[error(transparent)]
    Sandbox(#[from] troupe_sandbox::SandboxError),
    /// A step the environment itself needs (not the agent's) failed.
    #[error("{what} failed: {output}")]
    Setup {
        /// What was being done.
        what: &'static str,
        /// What it printed.
        output: String,
    },
}
