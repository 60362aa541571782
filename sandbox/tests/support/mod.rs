//! Helpers for the sandbox integration tests: they need root and bubblewrap, like an env host.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use troupe_sandbox::{CommandOutput, Sandbox, SandboxPolicy};

/// The default policy with a short wall-clock timeout, so a failed containment fails the test quickly.
pub fn policy() -> SandboxPolicy {
    let mut policy = SandboxPolicy::default();
    policy.limits.wall_timeout = Duration::from_secs(20);
    policy
}

pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

pub fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Runs one command cold under `policy`.
pub async fn run(policy: SandboxPolicy, cmd: &[String], repo: &Path) -> CommandOutput {
    let sandbox = Sandbox::new(policy).expect("sandbox host check (root, bubblewrap)");
    let out = sandbox.run(cmd, repo).await.expect("sandbox run");
    eprintln!(
        "--- {:?} {:?} in {:?}\n--- stdout:\n{}--- stderr:\n{}",
        out.outcome,
        out.status,
        out.wall,
        head(&out.stdout_text()),
        head(&out.stderr_text())
    );
    out
}

fn head(text: &str) -> String {
    match text.char_indices().nth(1500) {
        Some((cut, _)) => format!("{}...\n", &text[..cut]),
        None => text.to_string(),
    }
}

/// A fresh repository directory (mode 0700 in the host's /tmp, like an env host's).
pub fn repo() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A string no other process on the host has in its command line.
pub fn marker() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}{:03}", std::process::id(), n)
}

/// Host pids whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Zombies of sandbox host uids (the default range) handed to the host's init: a sandbox's pid 1 that
/// bubblewrap did not reap. They would hold pids and count against the uid's process limit.
pub fn orphaned_sandbox_zombies() -> Vec<i32> {
    let range = SandboxPolicy::default().host_uids;
    let uids = range.first..range.first + range.count;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let uid: u32 = field("Uid:")
                .split_whitespace()
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            field("State:").starts_with('Z') && field("PPid:") == "1" && uids.contains(&uid)
        })
        .collect()
}

/// Polls `cond` until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// The env host (this test process) is unharmed: it can still start processes and read its own files.
pub fn assert_host_fine() {
    let status = std::process::Command::new("true")
        .status()
        .expect("host can fork");
    assert!(status.success());
    assert!(Path::new(&format!("/proc/{}", std::process::id())).exists());
}
