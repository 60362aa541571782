//! The crate's one error type. A command that fails, is killed or times out is not an error: that is a
//! [`CommandOutput`](crate::CommandOutput) with its [`Outcome`](crate::Outcome). Errors are the cases where the
//! sandbox itself could not be set up or could not prove it cleaned up.

use std::path::PathBuf;

/// Why a sandbox could not be prepared, run or cleaned up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A field of the [`SandboxPolicy`](crate::SandboxPolicy) is out of range or inconsistent with another.
    #[error("invalid sandbox policy: {field}: {reason}")]
    InvalidPolicy {
        /// The offending field, as written in the struct.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The sandbox needs root on the host: it runs each command as a leased unprivileged host uid.
    #[error("the sandbox must be started as root (effective uid is {euid})")]
    NotRoot {
        /// The effective uid this process has.
        euid: u32,
    },
    /// The `bwrap` executable (Debian package `bubblewrap`) was not found.
    #[error("bubblewrap not found at {path} (install it: apt-get install -y bubblewrap)")]
    BwrapNotFound {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The command to run was empty.
    #[error("empty command")]
    EmptyCommand,
    /// The repository path does not exist or is not a directory.
    #[error("repository {path} is not a directory")]
    RepoNotDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A directory above the repository is not searchable by other users, so the unprivileged sandbox user
    /// cannot reach the repository to bind it.
    #[error(
        "repository {repo} is unreachable for the sandbox user: {blocked} is not searchable by others (chmod o+x)"
    )]
    RepoNotReachable {
        /// The repository.
        repo: PathBuf,
        /// The ancestor directory lacking the others-execute bit.
        blocked: PathBuf,
    },
    /// Every host uid of the policy's range is leased by a running sandbox (in this or another process).
    #[error("all {count} sandbox host uids from {first} are in use")]
    NoFreeUid {
        /// First uid of the range.
        first: u32,
        /// Size of the range.
        count: u32,
    },
    /// A slot's trial command (`true`) failed: bubblewrap cannot set this policy up on this host.
    #[error("sandbox probe failed: {stderr}")]
    ProbeFailed {
        /// What bubblewrap or the command printed.
        stderr: String,
    },
    /// Processes of the sandbox's host uid were still alive after the sandbox was torn down and re-killed.
    #[error("sandbox uid {uid}: processes {pids:?} survived the kill")]
    Survivors {
        /// The leased host uid.
        uid: u32,
        /// Host pids still alive.
        pids: Vec<i32>,
    },
    /// A filesystem or process operation of the host side failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
        let what = what.into();
        move |source| SandboxError::Io { what, source }
    }

    pub(crate) fn policy(field: &'static str, reason: impl Into<String>) -> SandboxError {
        SandboxError::InvalidPolicy {
            field,
            reason: reason.into(),
        }
    }
}
