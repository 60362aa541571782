//! Operating a live cluster with real `troupe node` processes on loopback: scaling
//! samplers at run time, killing an actor, SIGKILL of the env node and of the sampler
//! node (the run goes on, their work is handed out again, they rejoin), and SIGKILL of
//! the head (started again, it resumes from its checkpoint and the buffer's log). Each
//! run must end with its trajectory accounting whole: every trajectory generated once,
//! and trained, dropped, filtered or in flight.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use common::cluster::{certs, start, status, steps_done, three_node_config, wait_until};
use common::{temp_dir, troupe};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

/// Trajectories per RL batch in these configs (16 groups of 8).
const PER_BATCH: u64 = 128;

/// The three-node example with the head also running a sampler, an env host and a
/// judge (so the run goes on while either worker node is down), an optional fourth node
/// `gen2` with one sampler (not waited for: it may join at any time), a short SFT,
/// `rl_steps` RL steps, and lost work presumed after 3 s.
fn config(dir: &Path, rl_steps: u32, checkpoint_every: u32) -> PathBuf {
    let steps = format!("steps = {rl_steps}");
    let ckpt = format!("checkpoint_every = {checkpoint_every}");
    let env_roles = "learner = false, samplers = 0, env_hosts = 1, judges = 1 }";
    let gen2 = format!(
        "{env_roles}\n\n[[nodes]]\nname = \"gen2\"\naddr = \"127.0.0.1:{}\"\noptional = true\n\
         roles = {{ coordinator = false, buffer = false, learner = false, samplers = 1, env_hosts = 0, judges = 0 }}",
        common::cluster::free_udp_port()
    );
    three_node_config(
        dir,
        "faults",
        "certs",
        &[
            (
                "learner = true, samplers = 0, env_hosts = 0, judges = 0",
                "learner = true, samplers = 1, env_hosts = 1, judges = 1",
            ),
            ("heldout_size = 400", "heldout_size = 100"),
            ("steps = 200", "steps = 40"),
            ("steps = 300", &steps),
            ("groups_per_batch = 32", "groups_per_batch = 16"),
            ("eval_every = 50", "eval_every = 0\nlost_work_seconds = 3"),
            ("checkpoint_every = 100", &ckpt),
            (env_roles, &gen2),
        ],
    )
}

/// `troupe ARGS --run-dir RUN`, which must succeed; its stdout.
fn control(run: &Path, args: &[&str]) -> String {
    common::stdout_ok(troupe().args(args).arg("--run-dir").arg(run))
}

/// The node `name` in a status document.
fn node<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {s}"))
}

/// Running actors of `role` on node `name`: their names.
fn running(s: &Value, name: &str, role: &str) -> Vec<String> {
    node(s, name)["actors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["role"] == role && a["state"] == "running")
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

fn events(s: &Value) -> Vec<String> {
    s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

/// The complete lines of a running run's `metrics.jsonl` (the coordinator may be halfway
/// through writing the last one).
fn live_metrics(run: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Samplers that reported work in metrics lines after step `after`.
fn samplers_at_work(run: &Path, after: u64) -> BTreeSet<String> {
    live_metrics(run)
        .iter()
        .filter(|l| l["step"].as_u64().unwrap() > after)
        .flat_map(|l| {
            l["sampler_version_lag"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits for `steps` more learner steps than `from`.
fn progress(run: &Path, from: usize, steps: usize, what: &str) {
    wait_until(Duration::from_secs(120), what, || {
        steps_done(run) >= from + steps
    });
}

/// The run's summary: every trajectory accounted for once, `rl_steps` steps trained
/// each exactly once.
fn check_accounting(run: &Path, rl_steps: u64) -> Value {
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let t = &summary["trajectories"];
    let n = |k: &str| t[k].as_u64().unwrap();
    assert_eq!(n("generated"), rl_steps * PER_BATCH, "{summary}");
    assert_eq!(
        n("generated"),
        n("trained")
            + n("dropped_stale")
            + n("filtered_zero_signal")
            + n("dropped_judge_error")
            + n("in_flight"),
        "{summary}"
    );
    assert_eq!(summary["rl_steps"], rl_steps, "{summary}");
    let steps: Vec<u64> = common::metrics(run)
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(
        steps,
        (1..=rl_steps).collect::<Vec<_>>(),
        "one line per step"
    );
    assert!(
        summary["heldout"]["after_rl"].as_f64().is_some(),
        "{summary}"
    );
    summary
}

#[test]
fn scale_kill_an_actor_lose_and_regain_the_env_and_sampler_nodes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("faults-operate");
    // Every phase below happens mid-run: they take about 30 steps here (a lost node's
    // wait is wall-clock time, with few steps), so 150 leaves a wide margin.
    let rl_steps = 150;
    let config = config(&dir, rl_steps, 50);
    certs(&config, &dir.join("certs"));
    let run = dir.join("run");
    let log = |n: &str| dir.join(format!("{n}.log"));
    let env = start(&config, "env", &log("env"), &[]);
    let gen_ = start(&config, "gen", &log("gen"), &[]);
    let mut head = start(
        &config,
        "head",
        &log("head"),
        &["--out", run.to_str().unwrap()],
    );
    progress(&run, 0, 5, "RL to start");

    // Scale up: the new sampler pulls the current weights and does work.
    let out = control(&run, &["scale", "samplers=3", "--node", "gen"]);
    assert!(out.contains("gen: 3 samplers"), "{out}");
    wait_until(Duration::from_secs(30), "3 samplers on gen", || {
        running(&status(&run), "gen", "sampler").len() == 3
    });
    let at = steps_done(&run) as u64;
    wait_until(Duration::from_secs(60), "the added sampler to work", || {
        samplers_at_work(&run, at).contains("2000")
    });

    // Scale down: the newest samplers finish their unit and leave.
    control(&run, &["scale", "samplers=1", "--node", "gen"]);
    wait_until(Duration::from_secs(30), "1 sampler on gen", || {
        running(&status(&run), "gen", "sampler") == ["sampler-1"]
    });

    // Weights are streamed to sampler nodes only: samplers elsewhere are refused.
    let refused = troupe()
        .args(["scale", "samplers=1", "--node", "env", "--run-dir"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("hosts no samplers"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Kill one actor: its node restarts it and the dashboard counts the restart.
    control(&run, &["kill", "sampler-1", "--node", "gen"]);
    wait_until(Duration::from_secs(30), "sampler-1 restarted", || {
        let s = status(&run);
        node(&s, "gen")["actors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "sampler-1" && a["restarts"] == 1 && a["state"] == "running")
    });
    let refused = troupe()
        .args(["kill", "no-such-actor", "--node", "gen", "--run-dir"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no actor"));

    // SIGKILL the env node: the run goes on with the head's env host and judge; work
    // caught on the lost node is handed out again; the node rejoins when started again.
    env.sigkill();
    wait_until(Duration::from_secs(60), "the head to see env lost", || {
        let s = status(&run);
        node(&s, "env")["up"] == false && events(&s).iter().any(|e| e == "node env lost")
    });
    progress(&run, steps_done(&run), 3, "steps without the env node");
    let env = start(&config, "env", &log("env"), &[]);
    wait_until(Duration::from_secs(60), "env to rejoin", || {
        let s = status(&run);
        node(&s, "env")["up"] == true
            && running(&s, "env", "env_host").len() == 1
            && running(&s, "env", "judge").len() == 1
    });

    // SIGKILL the sampler node: the same, and its samplers work again after it rejoins.
    gen_.sigkill();
    wait_until(Duration::from_secs(60), "the head to see gen lost", || {
        let s = status(&run);
        node(&s, "gen")["up"] == false && events(&s).iter().any(|e| e == "node gen lost")
    });
    progress(&run, steps_done(&run), 3, "steps without the sampler node");
    let mut gen_ = start(&config, "gen", &log("gen"), &[]);
    wait_until(Duration::from_secs(60), "gen to rejoin", || {
        running(&status(&run), "gen", "sampler").len() == 2
    });
    let at = steps_done(&run) as u64;
    wait_until(
        Duration::from_secs(120),
        "gen's samplers to work again",
        || {
            let working = samplers_at_work(&run, at);
            working.contains("1") || working.contains("2")
        },
    );

    // A node the run did not wait for joins now and is put to work.
    let mut gen2 = start(&config, "gen2", &log("gen2"), &[]);
    wait_until(Duration::from_secs(60), "gen2 to join", || {
        running(&status(&run), "gen2", "sampler") == ["sampler-3"]
    });
    let at = steps_done(&run) as u64;
    wait_until(Duration::from_secs(120), "gen2's sampler to work", || {
        samplers_at_work(&run, at).contains("3")
    });

    let left = rl_steps as usize - steps_done(&run);
    eprintln!("every phase done with {left} of {rl_steps} steps left");
    let s = status(&run);
    let seen = events(&s);
    for e in [
        "node env connected",
        "node gen connected",
        "node gen2 connected",
    ] {
        assert!(seen.iter().any(|x| x == e), "no event {e:?}: {seen:?}");
    }

    let st = head.wait_exit(Duration::from_secs(600), "head");
    assert!(
        st.success(),
        "head failed: {}",
        std::fs::read_to_string(log("head")).unwrap()
    );
    let mut env = env;
    for (name, n) in [("gen", &mut gen_), ("env", &mut env), ("gen2", &mut gen2)] {
        let st = n.wait_exit(Duration::from_secs(30), name);
        assert!(st.success(), "{name} exited with {st}");
    }
    let summary = check_accounting(&run, u64::from(rl_steps));
    eprintln!("accounting: {}", summary["trajectories"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_head_started_again_resumes_the_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("faults-head");
    let rl_steps = 40;
    let config = config(&dir, rl_steps, 10);
    certs(&config, &dir.join("certs"));
    let run = dir.join("run");
    let log = |n: &str| dir.join(format!("{n}.log"));
    let out = ["--out", run.to_str().unwrap()];
    let mut env = start(&config, "env", &log("env"), &[]);
    let mut gen_ = start(&config, "gen", &log("gen"), &[]);
    let head = start(&config, "head", &log("head"), &out);
    // Past the checkpoint at step 10, before the one at 20.
    progress(&run, 0, 14, "RL past the first checkpoint");
    head.sigkill();
    let before = steps_done(&run);
    assert!(
        before < rl_steps as usize,
        "the run finished before the kill"
    );

    // The same command again: the head resumes from its checkpoint and the buffer's
    // log, the worker nodes (which waited) reconnect, and the run finishes.
    let mut head = start(&config, "head", &log("head"), &out);
    let st = head.wait_exit(Duration::from_secs(600), "head");
    let head_log = std::fs::read_to_string(log("head")).unwrap();
    assert!(st.success(), "head failed: {head_log}");
    let resumed = std::fs::read_to_string(log("head").with_extension("out")).unwrap();
    assert!(
        head_log.contains("resuming it from its last checkpoint")
            || resumed.contains("resuming it from its last checkpoint"),
        "{head_log}"
    );
    for (name, n) in [("gen", &mut gen_), ("env", &mut env)] {
        let st = n.wait_exit(Duration::from_secs(30), name);
        assert!(st.success(), "{name} exited with {st}");
    }
    let summary = check_accounting(&run, u64::from(rl_steps));
    // The same command once more: the run there is complete, so nothing is resumed.
    let again = troupe()
        .args(["node", "--config"])
        .arg(&config)
        .args(["--name", "head"])
        .args(out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("holds a run that is complete"), "{why}");
    eprintln!(
        "killed at step {before}; accounting after the resume: {}",
        summary["trajectories"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
