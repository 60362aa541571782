//! Runs one agent command isolated, for environment hosts: model output is untrusted code.
//!
//! A command runs under [bubblewrap](https://github.com/containers/bubblewrap) (`bwrap`, Debian package
//! `bubblewrap`), started as an unprivileged host uid leased to this sandbox alone, with rlimits set before
//! `exec`. The parts:
//! - [`SandboxPolicy`] (pure data, [`SandboxPolicy::validate`]): which host paths are visible, the limits,
//!   the output caps, the environment. `plan` turns it into the bubblewrap command line (pure as well).
//! - [`Sandbox`]: runs a command "cold" (lease, scratch files, command line, run, release).
//! - [`SandboxPool`]: keeps slots prepared; an env host takes a [`PooledSandbox`] per episode.
//! - [`CommandOutput`]: captured stdout/stderr (capped, truncation flagged), [`ExitStatus`], wall time and an
//!   [`Outcome`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), troupe_sandbox::SandboxError> {
//! use troupe_sandbox::{SandboxPolicy, SandboxPool};
//! let pool = SandboxPool::new(SandboxPolicy::default(), 4).await?;
//! let mut sandbox = pool.take().await; // one per episode
//! let repo = std::path::Path::new("/srv/episodes/42/repo");
//! let cmd = ["python3", "-m", "pytest", "-q"].map(String::from);
//! let out = sandbox.run(&cmd, repo).await?;
//! println!("{:?} {:?}\n{}", out.outcome, out.status, out.stdout_text());
//! # Ok(()) }
//! ```
//!
//! # What the command gets
//! - **Filesystem**: a fresh root (tmpfs, then remounted read-only) holding only the policy's read-only binds
//!   (by default `/usr` and its merged-`/usr` links, and a handful of `/etc` files such as `ld.so.cache`),
//!   synthetic `/etc/{passwd,group,hostname,hosts}`, a new `/proc` of its own pid namespace, a minimal `/dev`
//!   (null, zero, full, random, urandom, tty, pts), size-limited tmpfs `/tmp` and `/dev/shm` fresh for every
//!   command, and the repository read-write at `/repo`, the working directory. `/root`, `/home`, `/run`,
//!   `/var`, `/sys`, the rest of `/etc` and everything else are absent.
//! - **Namespaces**: user (uid 1000 inside, mapped to the leased host uid; no capabilities; creating further
//!   user namespaces is disabled), mount, pid (host processes are invisible and unsignallable), network
//!   (a private loopback only: no route out, the host's 127.0.0.1 unreachable, no DNS), IPC, UTS, cgroup.
//!   `no_new_privs` is set and a new session is started (no controlling terminal). Pid 1 is a `/bin/sh`
//!   that runs the command in the foreground and reaps orphans; bubblewrap waits for it, so when a command
//!   ends, everything it left running in the background is gone before [`Sandbox::run`] returns.
//! - **Limits**: `RLIMIT_CPU`, `RLIMIT_AS`, `RLIMIT_NPROC`, `RLIMIT_FSIZE`, `RLIMIT_NOFILE`, no core dumps,
//!   a wall-clock timeout, and an output-flood limit. On timeout or flood the namespace's init is killed, so
//!   the kernel kills every process of the namespace however it detached; then the leased uid is swept for
//!   survivors ([`SandboxError::Survivors`] if any cannot be killed).
//!
//! # Limits of the isolation, honestly
//! - The kernel is shared and no seccomp filter is installed: a kernel exploit escapes. This is namespace
//!   isolation, not a VM.
//! - Memory is bounded per process (`RLIMIT_AS`), not per sandbox: up to `processes x address_space_bytes`
//!   of virtual memory, plus the two tmpfs sizes of host RAM. No cgroup is used (none is assumed available).
//! - `RLIMIT_CPU` is per process; the wall-clock timeout is what bounds the tree.
//! - Disk use in the repository is bounded per file (`RLIMIT_FSIZE`), not in total: many files can still
//!   fill the host disk. Use a size-limited filesystem for repositories if that matters.
//! - The repository is chowned to the leased uid before every command; host-side `git` as root in it then
//!   needs `-c safe.directory=*`. The host must never execute repository content outside the sandbox.
//! - Commands exiting by themselves with codes 129..=192 are reported as signals (bubblewrap reports a
//!   signal death as 128 + N); the pid 1 shell then also prints e.g. `Segmentation fault` on stderr. A
//!   command that is not found is `Exited` with code 127. The read-only binds must provide `/bin/sh`.
//! - Dropping a running [`Sandbox::run`] or [`PooledSandbox::run`] future kills bubblewrap, and with it the
//!   namespace (`--die-with-parent`), but skips the survivor sweep.
//! - The host must run this as root, with bubblewrap installed and unprivileged user namespaces allowed.

mod error;
mod exec;
mod lease;
mod outcome;
mod plan;
mod policy;
mod pool;
mod procs;
mod repo;
mod slot;

use std::path::Path;
use std::sync::Arc;

pub use error::SandboxError;
pub use outcome::{CommandOutput, ExitStatus, Outcome};
pub use policy::{HostUids, Limits, OutputLimits, SandboxPolicy};
pub use pool::{PooledSandbox, SandboxPool};

/// Runs commands "cold": every [`run`](Sandbox::run) prepares a slot (uid lease, scratch files, command
/// line), runs, and releases it. Use a [`SandboxPool`] to keep slots prepared.
#[derive(Debug, Clone)]
pub struct Sandbox {
    policy: Arc<SandboxPolicy>,
}

impl Sandbox {
    /// A sandbox under `policy`, after validating it and checking the host (root, bubblewrap present).
    pub fn new(policy: SandboxPolicy) -> Result<Sandbox, SandboxError> {
        check_host(&policy)?;
        Ok(Sandbox {
            policy: Arc::new(policy),
        })
    }

    /// Runs `cmd` (program and arguments, no shell) with `repo` as the writable `/repo`. Not concurrently
    /// with another command on the same repository.
    pub async fn run(&self, cmd: &[String], repo: &Path) -> Result<CommandOutput, SandboxError> {
        let slot = slot::Slot::prepare(self.policy.clone())?;
        slot.run(cmd, repo).await
    }

    /// The policy it runs under.
    pub fn policy(&self) -> &SandboxPolicy {
        &self.policy
    }
}

fn check_host(policy: &SandboxPolicy) -> Result<(), SandboxError> {
    policy.validate()?;
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Err(SandboxError::NotRoot {
            euid: euid.as_raw(),
        });
    }
    if !policy.bwrap.is_file() {
        return Err(SandboxError::BwrapNotFound {
            path: policy.bwrap.clone(),
        });
    }
    Ok(())
}
