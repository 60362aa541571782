//! End-to-end tests of `troupe run`: the real binary, real actors, real training.

use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{config, metrics, run_ok, temp_dir, troupe};

/// Runs share two cores; one at a time keeps each test's budget predictable.
static SERIAL: Mutex<()> = Mutex::new(());

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

#[test]
fn short_run_learns_and_accounts_for_every_trajectory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("learns");
    let cfg = config(
        &dir,
        &[
            ("task", "heldout_size", "200"),
            ("sft", "steps", "150"),
            ("rl", "steps", "80"),
            ("rl", "groups_per_batch", "16"),
            ("rl", "eval_every", "40"),
            ("rl", "checkpoint_every", "40"),
        ],
    );
    let out = dir.join("run");
    let (summary, _) = run_ok(
        troupe()
            .args(["run", "--seed", "1", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(
        summary,
        serde_json::from_str::<Value>(&std::fs::read_to_string(out.join("summary.json")).unwrap())
            .unwrap()
    );

    // Learning happened: SFT lifts held-out accuracy off zero, RL lifts it further,
    // and the training reward rises over the RL steps.
    let (initial, sft, rl) = (
        f(&summary, &["heldout", "initial"]),
        f(&summary, &["heldout", "after_sft"]),
        f(&summary, &["heldout", "after_rl"]),
    );
    assert!(sft > initial + 0.2, "SFT did not learn: {initial} -> {sft}");
    assert!(
        rl >= sft + 0.05,
        "RL did not improve held-out accuracy: {sft} -> {rl}"
    );
    let lines = metrics(&out);
    assert_eq!(lines.len(), 80);
    let mean =
        |ls: &[Value]| ls.iter().map(|l| f(l, &["mean_reward"])).sum::<f64>() / ls.len() as f64;
    assert!(
        mean(&lines[60..]) > mean(&lines[..20]) + 0.03,
        "reward did not rise"
    );
    for key in [
        "step",
        "version",
        "loss",
        "mean_reward",
        "staleness_histogram",
        "wait_seconds",
        "train_seconds",
    ] {
        assert!(lines[0].get(key).is_some(), "metrics line lacks {key}");
    }

    // Every generated trajectory is accounted for, none twice.
    let t = &summary["trajectories"];
    let generated = f(t, &["generated"]);
    assert_eq!(generated, 80.0 * 16.0 * 8.0);
    let accounted = f(t, &["trained"])
        + f(t, &["dropped_stale"])
        + f(t, &["filtered_zero_signal"])
        + f(t, &["in_flight"]);
    assert_eq!(generated, accounted);
    assert!(f(&summary, &["throughput", "sampled_tokens_per_s"]) > 0.0);
    assert!(f(&summary, &["throughput", "trained_tokens_per_s"]) > 0.0);
    assert_eq!(
        f(&summary, &["policy_version"]),
        150.0 + 80.0 - lines.iter().filter(|l| f(l, &["trained"]) == 0.0).count() as f64
    );
    assert!(f(&summary, &["wall_seconds"]) > 0.0);

    // Checkpoints hold weights, optimizer state and learner state.
    let latest = std::fs::read_to_string(out.join("checkpoints/LATEST")).unwrap();
    for file in ["model.safetensors", "optimizer.safetensors", "learner.json"] {
        assert!(
            out.join("checkpoints")
                .join(latest.trim())
                .join(file)
                .exists(),
            "{file} missing"
        );
    }
    // The run directory refuses to be reused without --resume.
    let again = troupe()
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn user_seed_file_keeps_good_lines_and_names_bad_ones() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("seeds");
    let seeds = dir.join("seeds.jsonl");
    let mut lines = Vec::new();
    let mut expected = 0;
    for i in 0..120u32 {
        let digits = format!("{:04}", (i * 7919) % 10000);
        let prompt = format!("sort {digits}");
        let mut sorted: Vec<char> = digits.chars().collect();
        sorted.sort();
        let answer: String = sorted.into_iter().collect();
        if troupe_env::split_of(&prompt, 100) == troupe_env::Split::Train {
            expected += 1;
        }
        lines.push(
            serde_json::json!({"messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer}
            ]})
            .to_string(),
        );
    }
    lines.insert(2, "{\"messages\": [".to_string());
    lines.insert(
        6,
        r#"{"messages":[{"role":"robot","content":"x"},{"role":"assistant","content":"1"}]}"#
            .to_string(),
    );
    std::fs::write(&seeds, lines.join("\n") + "\n").unwrap();
    let cfg = config(
        &dir,
        &[
            ("task", "heldout_size", "50"),
            ("sft", "steps", "20"),
            ("rl", "steps", "2"),
            ("rl", "eval_every", "0"),
        ],
    );
    let (summary, stderr) = run_ok(
        troupe()
            .args(["run", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(dir.join("run"))
            .arg("--seed-trajectories")
            .arg(&seeds),
    );
    let name = seeds.display().to_string();
    assert!(
        stderr.contains(&format!("{name}:3: ")),
        "line 3 not reported: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:7: ")) && stderr.contains("robot"),
        "line 7 not reported: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{expected} seed trajectories from")),
        "expected {expected} kept: {stderr}"
    );
    assert_eq!(f(&summary, &["rl_steps"]), 2.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn killed_run_resumes_from_its_checkpoint() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("resume");
    let cfg = config(
        &dir,
        &[
            ("task", "heldout_size", "100"),
            ("sft", "steps", "60"),
            ("rl", "steps", "40"),
            ("rl", "groups_per_batch", "8"),
            ("rl", "eval_every", "0"),
            ("rl", "checkpoint_every", "10"),
        ],
    );
    let out = dir.join("run");
    let mut child = troupe()
        .args(["run", "--json", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a checkpoint inside RL exists, then kill the process outright.
    let deadline = Instant::now() + Duration::from_secs(300);
    let killed_at = loop {
        assert!(Instant::now() < deadline, "no RL checkpoint appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it could be killed"
        );
        let learner = std::fs::read_to_string(out.join("checkpoints/LATEST"))
            .ok()
            .and_then(|l| {
                std::fs::read_to_string(out.join("checkpoints").join(l.trim()).join("learner.json"))
                    .ok()
            })
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        if let Some(rl) = learner
            .and_then(|v| v["rl_steps"].as_u64())
            .filter(|&s| s >= 10)
        {
            break rl;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("summary.json").exists());

    let (summary, stderr) = run_ok(troupe().arg("run").arg("--resume").arg(&out));
    assert_eq!(f(&summary, &["rl_steps"]), 40.0, "{stderr}");
    assert!(f(&summary, &["heldout", "after_sft"]) > 0.0);
    let steps: std::collections::BTreeSet<u64> = metrics(&out)
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(
        steps,
        (1..=40).collect(),
        "killed after RL step {killed_at}"
    );
    // The buffer recovered from its log, rewound to the checkpoint: every trajectory of
    // the 40 batches is counted once (resends are duplicates), and what the learner
    // trained on in each step (metrics, both sessions) adds up to the summary.
    let t = &summary["trajectories"];
    assert_eq!(f(t, &["generated"]), 40.0 * 8.0 * 8.0, "{t}");
    let accounted = f(t, &["trained"])
        + f(t, &["dropped_stale"])
        + f(t, &["filtered_zero_signal"])
        + f(t, &["in_flight"]);
    assert_eq!(f(t, &["generated"]), accounted, "{t}");
    let lines = metrics(&out);
    for key in ["trained", "dropped_stale", "filtered_zero_signal"] {
        let per_step: f64 = lines.iter().map(|l| f(l, &[key])).sum();
        assert_eq!(per_step, f(t, &[key]), "{key}: {t}");
    }
    assert!(
        out.join("buffer").is_dir(),
        "no replay log in the run directory"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn same_seed_reproduces_the_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("repro");
    let cfg = config(
        &dir,
        &[
            ("task", "heldout_size", "60"),
            ("sft", "steps", "30"),
            ("rl", "steps", "6"),
            ("rl", "groups_per_batch", "8"),
            ("rl", "groups_per_sampler", "2"),
            ("rl", "eval_every", "3"),
        ],
    );
    let mut runs = Vec::new();
    for name in ["a", "b"] {
        let out = dir.join(name);
        let (summary, _) = run_ok(
            troupe()
                .args(["run", "--seed", "7", "--config"])
                .arg(&cfg)
                .arg("--out")
                .arg(&out),
        );
        let losses: Vec<String> = metrics(&out)
            .iter()
            .map(|l| format!("{} {}", l["loss"], l["mean_reward"]))
            .collect();
        runs.push((
            summary["heldout"].clone(),
            summary["trajectories"].clone(),
            losses,
        ));
    }
    assert_eq!(runs[0], runs[1]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn samples_older_than_max_staleness_are_dropped_and_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("stale");
    // Samplers run 3 learner steps ahead but only 1 version of staleness is tolerated.
    let cfg = config(
        &dir,
        &[
            ("task", "heldout_size", "40"),
            ("sft", "steps", "120"),
            ("rl", "steps", "10"),
            ("rl", "groups_per_batch", "8"),
            ("rl", "async_lag", "3"),
            ("rl", "max_staleness", "1"),
            ("rl", "eval_every", "0"),
        ],
    );
    let out = dir.join("run");
    let (summary, _) = run_ok(
        troupe()
            .args(["run", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out),
    );
    let t = &summary["trajectories"];
    assert!(f(t, &["dropped_stale"]) > 0.0, "nothing was dropped: {t}");
    let accounted = f(t, &["trained"])
        + f(t, &["dropped_stale"])
        + f(t, &["filtered_zero_signal"])
        + f(t, &["in_flight"]);
    assert_eq!(f(t, &["generated"]), accounted);
    let lines = metrics(&out);
    let dropped: f64 = lines.iter().map(|l| f(l, &["dropped_stale"])).sum();
    assert_eq!(dropped, f(t, &["dropped_stale"]));
    // Nothing trained on was older than max_staleness.
    for l in &lines {
        let hist = l["staleness_histogram"].as_array().unwrap();
        assert!(
            hist.iter().skip(2).all(|c| c.as_u64() == Some(0)),
            "stale data trained on: {l}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `troupe run` with an LLM in the reward, judged by a real llama.cpp server (SmolLM2):
/// the judges' counters reach every metrics line and the summary, and trajectories the
/// judge could not score are dropped and counted, never trained on with a made-up reward.
/// A second run with a one-call budget shows the failure path end to end: every group
/// with an unscored member is dropped and the run still completes.
#[test]
fn llm_judge_counters_reach_metrics_and_failures_are_dropped_not_trained() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if std::env::var("TROUPE_SKIP_LLAMA_SERVER").is_ok_and(|v| v == "1") {
        eprintln!("TROUPE_SKIP_LLAMA_SERVER=1: the llama.cpp judge run is skipped");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let python = std::env::var("TROUPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let model = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    ));
    let server = rt
        .block_on(troupe_judge::llama_server::LlamaServer::start(
            &python,
            model,
            Duration::from_secs(180),
        ))
        .unwrap_or_else(|e| panic!("{e} (TROUPE_SKIP_LLAMA_SERVER=1 skips this on purpose)"));
    let dir = temp_dir("judge");
    let run = |name: &str, budget: &str| {
        let cfg = config(
            &dir,
            &[
                ("task", "heldout_size", "4"),
                ("sft", "steps", "30"),
                ("rl", "steps", "3"),
                ("rl", "group_size", "2"),
                ("rl", "groups_per_batch", "2"),
                ("rl", "groups_per_sampler", "1"),
                ("rl", "eval_every", "0"),
            ],
        );
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(&format!(
            "\n[judge]\ncomponents = {{ rules = 0.5, llm = 0.5 }}\n[judge.llm]\n\
             base_url = \"{}\"\nmodel = \"smol\"\nmax_tokens_per_call = 24\n\
             max_concurrency = 2\n{budget}\n",
            server.base_url()
        ));
        std::fs::write(&cfg, text).unwrap();
        let out = dir.join(name);
        let (summary, stderr) = run_ok(
            troupe()
                .args(["run", "--config"])
                .arg(&cfg)
                .arg("--out")
                .arg(&out),
        );
        (summary, metrics(&out), stderr)
    };

    // An unlimited budget: every trajectory of the 3 trained batches (2 x 2 each) and
    // of the 3 evaluations (4 each) was judged before the run ended.
    let (summary, lines, stderr) = run("open", "");
    let j = &summary["judge"];
    // The scheduler never issues a batch past the last step, so no call is in flight
    // when the run ends: one call per judged trajectory, every one accounted for.
    let judged = f(j, &["scored"]) + f(j, &["unscored"]);
    assert_eq!(judged, 3.0 * 4.0 + 3.0 * 4.0, "{j}\n{stderr}");
    assert_eq!(f(j, &["calls"]), judged);
    assert_eq!(
        f(j, &["verdicts"]) + f(j, &["malformed_verdicts"]),
        f(j, &["successes"])
    );
    assert_eq!(
        f(j, &["failures"]),
        f(j, &["unscored"]) - f(j, &["malformed_verdicts"])
    );
    assert!(f(j, &["budget", "prompt_tokens"]) > 0.0 && f(j, &["latency", "p50_ms"]) > 0.0);
    assert!(f(j, &["peak_in_flight"]) <= 2.0);
    assert_eq!(lines.len(), 3);
    let mut calls = 0.0;
    for l in &lines {
        let c = f(l, &["judge", "calls"]);
        assert!(c >= calls, "judge calls went down: {l}");
        calls = c;
        for key in [
            &["judge", "latency", "p99_ms"][..],
            &["judge", "budget", "tokens"],
        ] {
            f(l, key);
        }
    }
    let t = &summary["trajectories"];
    let accounted = f(t, &["trained"])
        + f(t, &["dropped_stale"])
        + f(t, &["filtered_zero_signal"])
        + f(t, &["dropped_judge_error"])
        + f(t, &["in_flight"]);
    assert_eq!(f(t, &["generated"]), accounted, "{t}");
    let per_step: f64 = lines.iter().map(|l| f(l, &["dropped_judge_error"])).sum();
    assert_eq!(per_step, f(t, &["dropped_judge_error"]));
    if f(j, &["unscored"]) == 0.0 {
        assert_eq!(f(t, &["dropped_judge_error"]), 0.0);
    }

    // One request for the whole run: every later trajectory is refused by the budget,
    // so every trained batch is dropped for judge errors and nothing is trained.
    let (summary, lines, stderr) = run("budget", "max_calls = 1");
    let j = &summary["judge"];
    assert_eq!(f(j, &["requests"]), 1.0, "{j}\n{stderr}");
    assert_eq!(f(j, &["calls"]), 24.0, "{j}");
    assert_eq!(f(j, &["budget", "refusals"]), 23.0, "{j}");
    assert!(f(j, &["unscored"]) >= 23.0, "{j}");
    let t = &summary["trajectories"];
    assert_eq!(f(t, &["trained"]), 0.0, "{t}");
    assert_eq!(f(t, &["dropped_judge_error"]), 3.0 * 4.0, "{t}");
    assert!(lines.iter().all(|l| f(l, &["trained"]) == 0.0));
    assert!(summary["heldout"]["after_rl"].is_null(), "{summary}");
    assert!(stderr.contains("could not score"), "{stderr}");
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}
