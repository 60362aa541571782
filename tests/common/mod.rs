//! Helpers shared by the end-to-end tests: the binary under test, scratch directories and
//! configs written from a repo file with some keys overridden.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod cdp;
pub mod cluster;

/// The `troupe` binary under test.
pub fn troupe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_troupe"))
}

/// A fresh scratch directory for test `name` of this process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("troupe-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The repo's `source` config (e.g. `cluster.toml`, `examples/tools.toml`) with some keys
/// overridden (`[section] key = value`), written into `dir` under the source's file name.
pub fn config_from(source: &str, dir: &Path, overrides: &[(&str, &str, &str)]) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(repo.join(source)).unwrap();
    for (section, key, value) in overrides {
        // The header line, which may carry a comment after the brackets.
        let header = format!("[{section}]");
        let at = text
            .match_indices(&header)
            .map(|(i, _)| i)
            .find(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
            .unwrap_or_else(|| panic!("{source}: no [{section}]"));
        let start = at + text[at..].find('\n').unwrap() + 1;
        let end = text[start..]
            .find("\n[")
            .map_or(text.len(), |e| start + e + 1);
        let body: String = text[start..end]
            .lines()
            .filter(|l| !l.trim_start().starts_with(&format!("{key} ")))
            .map(|l| format!("{l}\n"))
            .collect();
        text.replace_range(start..end, &format!("{key} = {value}\n{body}"));
    }
    let name = Path::new(source).file_name().unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The repo's `cluster.toml` with some keys overridden.
pub fn config(dir: &Path, overrides: &[(&str, &str, &str)]) -> PathBuf {
    config_from("cluster.toml", dir, overrides)
}

/// Runs `cmd`, which must succeed (else the test fails with its stderr); its stdout.
pub fn stdout_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cmd` (a `troupe run ...`) with `--json`: its summary and its stderr. Fails the
/// test, with stderr, if the run fails or prints something other than JSON.
pub fn run_ok(cmd: &mut Command) -> (Value, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(status.success(), "troupe run failed: {stderr}");
    (
        serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stderr}")),
        stderr,
    )
}

/// The JSON lines of `path`.
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A run directory's `metrics.jsonl`, one value per learner step.
pub fn metrics(run_dir: &Path) -> Vec<Value> {
    jsonl(&run_dir.join("metrics.jsonl"))
}
