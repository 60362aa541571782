//! Starting bubblewrap as the leased uid under the rlimits, and supervising it: capture both streams, stop
//! a flood, enforce the wall-clock timeout, kill the whole tree and check that nothing survived.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::pin::pin;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, setrlimit};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::outcome::{Capture, KillReason, classify};
use crate::policy::{Limits, OutputLimits};
use crate::{CommandOutput, ExitStatus, SandboxError, procs};

/// How long a killed sandbox gets to be torn down by the kernel before the host kills what is left.
const TEARDOWN_GRACE: Duration = Duration::from_secs(2);

/// One bubblewrap invocation, fully decided.
#[derive(Debug)]
pub(crate) struct Launch<'a> {
    pub(crate) bwrap: &'a Path,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: &'a [(String, String)],
    pub(crate) uid: u32,
    pub(crate) limits: Limits,
    pub(crate) output: OutputLimits,
}

/// Runs it to the end. The sandbox's pid 1 ([`plan::INIT`](crate::plan::INIT)) is bubblewrap's only child;
/// when the command exits, pid 1 exits, and the kernel kills whatever else is in the pid namespace before
/// bubblewrap can reap pid 1 and exit. So a normal exit leaves nothing behind; a kill goes through
/// [`kill_tree`] and a sweep of the uid.
pub(crate) async fn run(launch: Launch<'_>) -> Result<CommandOutput, SandboxError> {
    let mut command = Command::new(launch.bwrap);
    command
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .uid(launch.uid)
        .gid(launch.uid)
        .process_group(0)
        .kill_on_drop(true);
    set_rlimits_before_exec(&mut command, &launch.limits);

    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SandboxError::BwrapNotFound {
            path: launch.bwrap.to_path_buf(),
        },
        _ => SandboxError::io("cannot start bubblewrap")(e),
    })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        unreachable!("both streams are piped");
    };
    let flood = Flood {
        written: AtomicU64::new(0),
        limit: launch.output.kill_after_bytes,
        exceeded: Notify::new(),
    };
    let out = Mutex::new(Capture::new(launch.output.stdout_bytes));
    let err = Mutex::new(Capture::new(launch.output.stderr_bytes));
    let status = {
        let mut supervised = pin!(supervise(&mut child, launch.limits.wall_timeout, &flood));
        let mut drains = pin!(async {
            tokio::join!(drain(stdout, &out, &flood), drain(stderr, &err, &flood));
        });
        let mut drained = false;
        let status = loop {
            tokio::select! {
                status = &mut supervised => break status,
                () = &mut drains, if !drained => drained = true,
            }
        };
        // Every writer is dead once bubblewrap has exited, so the pipes are at their end; an unkillable
        // process holding one must not hang the env host.
        if !drained && tokio::time::timeout(TEARDOWN_GRACE, drains).await.is_err() {
            tracing::warn!("sandbox output still open after it ended; keeping what was read");
        }
        status
    };
    let (status, killed) = status?;
    let wall = started.elapsed();
    if let Some(reason) = killed {
        let uid = launch.uid;
        tracing::debug!(uid, ?reason, "sandbox killed; sweeping its uid");
        tokio::task::spawn_blocking(move || procs::sweep(uid, TEARDOWN_GRACE))
            .await
            .map_err(|e| SandboxError::io("sweep task")(std::io::Error::other(e)))??;
    }
    let raw = match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(signal)) => ExitStatus::Signal(signal),
        (None, None) => ExitStatus::Code(-1),
    };
    let (outcome, status) = classify(raw, killed);
    let unpoisoned = |m: Mutex<Capture>| m.into_inner().unwrap_or_else(|p| p.into_inner());
    let (stdout, stdout_truncated) = unpoisoned(out).finish();
    let (stderr, stderr_truncated) = unpoisoned(err).finish();
    Ok(CommandOutput {
        outcome,
        status,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        wall,
    })
}

/// Waits for bubblewrap, or kills the sandbox when the timeout passes or the output floods.
async fn supervise(
    child: &mut Child,
    timeout: Duration,
    flood: &Flood,
) -> Result<(std::process::ExitStatus, Option<KillReason>), SandboxError> {
    let reason = tokio::select! {
        status = child.wait() => {
            return status.map(|s| (s, None)).map_err(SandboxError::io("cannot wait for bubblewrap"));
        }
        () = tokio::time::sleep(timeout) => KillReason::Timeout,
        () = flood.exceeded.notified() => KillReason::Output,
    };
    kill_tree(child).await;
    let status = child
        .wait()
        .await
        .map_err(SandboxError::io("cannot wait for bubblewrap"))?;
    Ok((status, Some(reason)))
}

/// SIGKILLs the sandbox's pid 1 (the kernel then kills everything in the pid namespace, however it was
/// detached: `setsid`, `nohup`, double fork), lets bubblewrap report it and exit, and kills bubblewrap too
/// if it does not.
async fn kill_tree(child: &mut Child) {
    let Some(bwrap) = child.id() else { return };
    let inits = procs::children_of(bwrap as i32);
    inits.iter().copied().for_each(procs::kill_now);
    if inits.is_empty()
        || tokio::time::timeout(TEARDOWN_GRACE, child.wait())
            .await
            .is_err()
    {
        let _ = child.start_kill();
    }
}

/// Total output so far, and the signal to kill once it passes the limit.
struct Flood {
    written: AtomicU64,
    limit: u64,
    exceeded: Notify,
}

/// Reads a stream to its end into `capture` (shared so that what was read survives a drain given up on);
/// reports the bytes to the flood guard.
async fn drain(mut stream: impl AsyncRead + Unpin, capture: &Mutex<Capture>, flood: &Flood) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                capture
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(&buf[..n]);
                let before = flood.written.fetch_add(n as u64, Ordering::Relaxed);
                if before <= flood.limit && before + n as u64 > flood.limit {
                    flood.exceeded.notify_one();
                }
            }
        }
    }
}

/// The rlimit table `(resource, soft, hard)`; hard limits are equal to soft ones (CPU: one second more, so
/// SIGXCPU comes first) and cannot be raised again: the leased uid has no `CAP_SYS_RESOURCE`.
fn rlimit_table(limits: &Limits) -> [(Resource, u64, u64); 6] {
    let same = |resource, value| (resource, value, value);
    [
        (
            Resource::RLIMIT_CPU,
            limits.cpu_seconds,
            limits.cpu_seconds + 1,
        ),
        same(Resource::RLIMIT_AS, limits.address_space_bytes),
        same(Resource::RLIMIT_NPROC, limits.processes),
        same(Resource::RLIMIT_FSIZE, limits.file_size_bytes),
        same(Resource::RLIMIT_NOFILE, limits.open_files),
        same(Resource::RLIMIT_CORE, 0),
    ]
}

/// Applies the rlimits in the child after it has switched to the leased uid and before it execs
/// bubblewrap, so bubblewrap and every process of the command inherit them.
#[allow(unsafe_code)]
fn set_rlimits_before_exec(command: &mut Command, limits: &Limits) {
    let table = rlimit_table(limits);
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe work is
    // allowed. It captures a plain `Copy` array by value and only calls setrlimit(2) (nix's wrapper fills a
    // struct and reads errno); building the error from a raw errno does not allocate. No locks, no heap.
    unsafe {
        command.pre_exec(move || {
            for (resource, soft, hard) in table {
                setrlimit(resource, soft, hard)
                    .map_err(|errno| std::io::Error::from_raw_os_error(errno as i32))?;
            }
            Ok(())
        });
    }
}
