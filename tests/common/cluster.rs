//! Helpers for tests that run real `troupe node` processes on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{stdout_ok, troupe};

/// A free UDP port on loopback (for a node's QUIC address).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `examples/cluster-3node.toml` with free ports, `tls_dir` and `cookie`, and each
/// `(from, to)` swap applied once (each must match).
pub fn three_node_config(
    dir: &Path,
    cookie: &str,
    tls_dir: &str,
    swaps: &[(&str, &str)],
) -> PathBuf {
    let mut text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/cluster-3node.toml"
    ))
    .unwrap();
    for port in ["7411", "7412", "7413"] {
        text = text.replace(
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{}", free_udp_port()),
        );
    }
    let cookie = format!("cookie = \"{cookie}\"");
    let tls = format!("tls_dir = \"{tls_dir}\"");
    let mut all = vec![
        ("cookie = \"change-me\"", cookie.as_str()),
        ("tls_dir = \"certs-3node\"", tls.as_str()),
    ];
    all.extend_from_slice(swaps);
    for (from, to) in all {
        assert!(text.contains(from), "{from} not in the example");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join(format!("cluster-{}.toml", tls_dir));
    std::fs::write(&path, text).unwrap();
    path
}

/// Makes the cluster CA and node certificates for `config` in `out`.
pub fn certs(config: &Path, out: &Path) {
    stdout_ok(
        troupe()
            .arg("certs")
            .arg("--config")
            .arg(config)
            .arg("--out")
            .arg(out),
    );
}

/// A `troupe node` process, killed when dropped.
pub struct Node(pub Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Node {
    /// SIGKILL: the process gets no chance to say goodbye.
    pub fn sigkill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// Waits for the process to exit by itself; its status.
    pub fn wait_exit(&mut self, deadline: Duration, name: &str) -> std::process::ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < end, "{name} did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts node `name` of `config`, stderr to `log` (appended) and stdout beside it.
pub fn start(config: &Path, name: &str, log: &Path, extra: &[&str]) -> Node {
    let append = |p: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
    };
    let child = troupe()
        .args(["node", "--config"])
        .arg(config)
        .args(["--name", name])
        .args(extra)
        .env("TROUPE_LOG", "warn")
        .stdout(Stdio::from(append(&log.with_extension("out"))))
        .stderr(Stdio::from(append(log)))
        .spawn()
        .unwrap();
    Node(child)
}

/// Polls `f` every 50 ms until it holds, failing after `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The head's live status (`troupe status --json --run-dir`).
pub fn status(run_dir: &Path) -> Value {
    let out = stdout_ok(
        troupe()
            .args(["status", "--json", "--run-dir"])
            .arg(run_dir),
    );
    serde_json::from_str(&out).unwrap()
}

/// Learner steps recorded so far in `run_dir/metrics.jsonl` (complete lines only).
pub fn steps_done(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join("metrics.jsonl")).map_or(0, |m| m.matches('\n').count())
}
