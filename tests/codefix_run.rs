//! End to end: `troupe run` on the code-fixing environment with a tiny policy — the
//! expert's seeds written by real sandboxed episodes, SFT, held-out evaluations and RL
//! steps whose trajectories are judged by hidden tests — and every judged case counted
//! in `metrics.jsonl` and `summary.json`. Needs root, bubblewrap and python3.

use std::path::Path;

use serde_json::Value;
use troupe_env::codefix::REASONS;

mod common;
use common::{metrics, run_ok, troupe};

const CONFIG: &str = r#"
[[nodes]]
name = "local"
roles = { coordinator = true, buffer = true, learner = true, samplers = 1, env_hosts = 1, judges = 1 }

[model]
d_model = 32
n_layers = 1
n_heads = 2
d_ff = 64
max_seq = 320

[task]
family = "codefix"
heldout_size = 6

[codefix]
max_turns = 3
sandboxes = 2
judge_timeout_ms = 10000

[sft]
seed_trajectories = 12
steps = 4
batch_size = 4

[rl]
steps = 2
group_size = 2
groups_per_batch = 2
groups_per_sampler = 2
max_new_tokens = 24
eval_every = 0
checkpoint_every = 0

[optim]
micro_batch = 2
"#;

fn counted(parts: &Value) -> f64 {
    REASONS
        .iter()
        .map(|r| {
            parts[*r]
                .as_f64()
                .unwrap_or_else(|| panic!("{r} not counted in {parts}"))
        })
        .sum()
}

#[test]
fn a_short_codefix_run_judges_and_counts_every_episode() {
    let dir = std::env::temp_dir().join(format!("troupe-test-codefix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("codefix.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let out = dir.join("run");
    let (summary, _) = run_ok(
        troupe()
            .args(["run", "--seed", "3", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out),
    );

    // The expert's seeds are real multi-turn episodes: grep, edit, submit.
    let seeds = std::fs::read_to_string(out.join("seed_trajectories.jsonl")).unwrap();
    assert_eq!(seeds.lines().count(), 12);
    for line in seeds.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let m = v["messages"].as_array().unwrap();
        assert_eq!(m.len(), 6, "{line}");
        assert!(
            m[1]["content"]
                .as_str()
                .unwrap()
                .starts_with("<sh>git grep -nF")
        );
        assert!(
            m[2]["content"].as_str().unwrap().ends_with("[exit 0]"),
            "{line}"
        );
        assert!(m[3]["content"].as_str().unwrap().starts_with("<edit "));
        assert_eq!(m[5]["content"], "<submit/>");
    }

    // Every held-out episode and every RL trajectory is judged and counted once.
    let parts = &summary["reward_parts"];
    for label in ["initial", "after_sft", "after_rl"] {
        assert_eq!(counted(&parts["heldout"][label]), 6.0, "{label}: {parts}");
    }
    let rl = &parts["rl"];
    assert_eq!(counted(rl), 2.0 * 2.0 * 2.0, "{rl}");
    assert_eq!(summary["trajectories"]["generated"], 8);
    let per_step: f64 = metrics(&out)
        .iter()
        .map(|step| counted(&step["reward_parts"]))
        .sum();
    assert_eq!(per_step, counted(rl));
    let accuracy = summary["heldout"]["after_rl"].as_f64().unwrap();
    let solved = parts["heldout"]["after_rl"]["solved"].as_f64().unwrap();
    assert!((accuracy - solved / 6.0).abs() < 1e-6, "{summary}");
    remove(&dir);
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
