//! `troupe sandbox [--repo DIR] -- CMD...`: runs one command in exactly the sandbox an env host uses (the
//! default [`SandboxPolicy`]), prints its output and how it ended, and returns the exit code to leave with.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use troupe_sandbox::{ExitStatus, Outcome, Sandbox, SandboxPolicy};

/// Runs `command` with `repo` (or a fresh temporary directory, removed afterwards) as `/repo`. Returns the
/// command's exit code; a signal `N` gives `128 + N`, a timeout 124 (as `timeout(1)` does).
pub fn main(repo: Option<PathBuf>, command: Vec<String>) -> anyhow::Result<i32> {
    let temp = match repo {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("cannot create a temporary repository")?),
    };
    let repo = match (&temp, repo) {
        (Some(dir), _) => dir.path().to_path_buf(),
        (None, Some(repo)) => repo,
        (None, None) => unreachable!("one of the two is set"),
    };
    let sandbox = Sandbox::new(SandboxPolicy::default())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = runtime.block_on(sandbox.run(&command, &repo))?;

    std::io::stdout().write_all(&out.stdout)?;
    std::io::stdout().flush()?;
    std::io::stderr().write_all(&out.stderr)?;
    let mut notes = Vec::new();
    if out.stdout_truncated {
        notes.push("stdout truncated");
    }
    if out.stderr_truncated {
        notes.push("stderr truncated");
    }
    if temp.is_some() {
        notes.push("temporary repo removed");
    }
    let status = match out.status {
        ExitStatus::Code(code) => format!("exit code {code}"),
        ExitStatus::Signal(signal) => format!("signal {signal}"),
    };
    eprintln!(
        "troupe sandbox: {:?}, {status}, {:.1} ms, repo {}{}{}",
        out.outcome,
        out.wall.as_secs_f64() * 1e3,
        repo.display(),
        if notes.is_empty() { "" } else { "; " },
        notes.join(", ")
    );
    Ok(match (out.outcome, out.status) {
        (Outcome::TimedOut, _) => 124,
        (_, ExitStatus::Code(code)) => code,
        (_, ExitStatus::Signal(signal)) => 128 + signal,
    })
}
