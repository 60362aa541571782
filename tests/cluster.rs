//! Multi-process cluster tests: real `troupe node` processes on loopback, real QUIC
//! with mutual TLS, real ractor sessions.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::cluster::{certs, start, wait_until};
use common::{temp_dir, troupe};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

/// The three-node example with a small budget.
fn three_node_config(dir: &Path, cookie: &str, tls_dir: &str) -> std::path::PathBuf {
    common::cluster::three_node_config(
        dir,
        cookie,
        tls_dir,
        &[
            ("heldout_size = 400", "heldout_size = 200"),
            ("steps = 200", "steps = 150"),
            ("steps = 300", "steps = 60"),
            ("groups_per_batch = 32", "groups_per_batch = 16"),
            ("eval_every = 50", "eval_every = 30"),
        ],
    )
}

/// Socket inodes of `pid`'s open file descriptors.
fn socket_inodes(pid: u32) -> HashSet<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect()
}

/// Established TCP connections held by `pid` (listening sockets are allowed).
fn established_tcp(pid: u32) -> usize {
    let inodes = socket_inodes(pid);
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[3] == "01" && inodes.contains(cols[9]) {
                n += 1;
            }
        }
    }
    n
}

fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn three_nodes_learn_exactly_like_the_embedded_run_and_hold_no_tcp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("3node");
    let config = three_node_config(&dir, "c00kie", "certs");
    certs(&config, &dir.join("certs"));
    let out = dir.join("run");
    // Nodes start in any order: the workers first, the head last.
    let mut env = start(&config, "env", &dir.join("env.log"), &[]);
    let mut gen_ = start(&config, "gen", &dir.join("gen.log"), &[]);
    std::thread::sleep(Duration::from_millis(500));
    let mut head = start(
        &config,
        "head",
        &dir.join("head.log"),
        &["--out", out.to_str().unwrap(), "--seed", "3"],
    );

    // Mid-run, no node holds an established TCP connection: sessions ride on QUIC.
    wait_until(Duration::from_secs(300), "RL to start", || {
        std::fs::read_to_string(out.join("metrics.jsonl")).is_ok_and(|m| m.lines().count() >= 2)
    });
    for (name, node) in [("head", &head), ("gen", &gen_), ("env", &env)] {
        assert_eq!(
            established_tcp(node.0.id()),
            0,
            "{name} holds a TCP connection"
        );
    }
    // The head's dashboard names every node and puts each actor on its node.
    let live = common::cluster::status(&out);
    let placed: Vec<(String, bool, Vec<String>)> = live["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let mut roles: Vec<String> = n["actors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["role"].as_str().unwrap().to_string())
                .collect();
            roles.sort();
            (
                n["name"].as_str().unwrap().to_string(),
                n["up"] == true,
                roles,
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    let mut want = vec![
        ("env".to_string(), true, s(&["env_host", "judge"])),
        ("gen".to_string(), true, s(&["sampler", "sampler"])),
        (
            "head".to_string(),
            true,
            s(&["buffer", "coordinator", "learner"]),
        ),
    ];
    let mut got = placed.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{live}");
    let status = head.0.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("head.log")).unwrap();
    assert!(status.success(), "head failed: {log}");
    for (name, node) in [("gen", &mut gen_), ("env", &mut env)] {
        let end = Instant::now() + Duration::from_secs(20);
        let st = loop {
            if let Some(st) = node.0.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < end, "{name} did not exit after the run");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(st.success(), "{name} exited with {st}");
    }
    let cluster = summary(&out.join("summary.json"));

    // Every publication after the initial weights went to the sampler node on its own
    // stream, and each step's metrics show the samplers' version lag.
    let syncs: Vec<Value> = std::fs::read_to_string(out.join("weight_sync.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(syncs.len() >= 60, "only {} weight syncs", syncs.len());
    for s in &syncs {
        assert_eq!(
            (s["peers"].as_u64(), s["failed"].as_u64()),
            (Some(1), Some(0)),
            "{s}"
        );
        assert!(s["bytes"].as_u64().unwrap() > 1_000_000 && s["seconds"].as_f64().unwrap() > 0.0);
    }
    let last: Value = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    let lag = last["sampler_version_lag"].as_object().unwrap();
    assert_eq!(lag.len(), 2, "{last}");
    assert!(
        lag.values().all(|v| v.as_u64().is_some_and(|l| l <= 2)),
        "{last}"
    );

    // The same job in one process gives the same numbers: the schedule is deterministic.
    let embedded = troupe()
        .args(["run", "--json", "--seed", "3", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(dir.join("embedded"))
        .output()
        .unwrap();
    assert!(
        embedded.status.success(),
        "{}",
        String::from_utf8_lossy(&embedded.stderr)
    );
    let embedded: Value = serde_json::from_slice(&embedded.stdout).unwrap();
    assert_eq!(cluster["heldout"], embedded["heldout"]);
    assert_eq!(cluster["trajectories"], embedded["trajectories"]);
    let h = &cluster["heldout"];
    let (sft, rl) = (
        h["after_sft"].as_f64().unwrap(),
        h["after_rl"].as_f64().unwrap(),
    );
    assert!(
        rl >= sft + 0.05,
        "RL did not improve held-out accuracy: {sft} -> {rl}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts the head and an impostor `gen` node, and checks the run never starts.
fn impostor_is_refused(impostor_config: &Path, config: &Path, dir: &Path) {
    let out = dir.join("run");
    let _head = start(
        config,
        "head",
        &dir.join("head.log"),
        &["--out", out.to_str().unwrap()],
    );
    let _env = start(config, "env", &dir.join("env.log"), &[]);
    let _impostor = start(impostor_config, "gen", &dir.join("impostor.log"), &[]);
    // The head waits for samplers and says so every 5 s; after two notices it still has none.
    wait_until(Duration::from_secs(60), "the head to wait twice", || {
        std::fs::read_to_string(dir.join("head.log"))
            .is_ok_and(|l| l.matches("waiting for samplers (0/2)").count() >= 2)
    });
    let state = summary(&out.join("run_state.json"));
    assert!(
        state["heldout"]["initial"].is_null(),
        "the run started with an impostor"
    );
    assert!(!out.join("summary.json").exists());
}

#[test]
fn node_with_a_foreign_certificate_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("foreign");
    let config = three_node_config(&dir, "c00kie", "certs");
    certs(&config, &dir.join("certs"));
    // Same names and cookie, but certificates from another cluster CA.
    let impostor = three_node_config(&dir, "c00kie", "other");
    let ports = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &impostor,
        ports.replace("tls_dir = \"certs\"", "tls_dir = \"other\""),
    )
    .unwrap();
    certs(&impostor, &dir.join("other"));
    impostor_is_refused(&impostor, &config, &dir);
    let head = std::fs::read_to_string(dir.join("head.log")).unwrap();
    assert!(
        head.contains("refused a connection") || head.contains("certificate"),
        "{head}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn node_with_the_wrong_cookie_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("cookie");
    let config = three_node_config(&dir, "c00kie", "certs");
    certs(&config, &dir.join("certs"));
    // Valid certificates, wrong cookie.
    let impostor = dir.join("impostor.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &impostor,
        text.replace("cookie = \"c00kie\"", "cookie = \"wrong\""),
    )
    .unwrap();
    impostor_is_refused(&impostor, &config, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}
