//! End-to-end test of a tool-use run: the real binary on `examples/tools.toml`, cut
//! short — expert multi-turn seeds, SFT, GRPO on the calculator environment, held-out
//! evaluations — checking that episodes really go policy → tool → policy.

use serde_json::Value;

mod common;
use common::{config_from, jsonl, run_ok, troupe};

#[test]
fn tool_run_completes_with_multi_turn_episodes_and_heldout_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_from(
        "examples/tools.toml",
        dir.path(),
        &[
            ("task", "heldout_size", "16"),
            ("sft", "seed_trajectories", "256"),
            ("sft", "steps", "60"),
            ("sft", "batch_size", "16"),
            ("rl", "steps", "4"),
            ("rl", "groups_per_batch", "4"),
            ("rl", "groups_per_sampler", "4"),
            ("rl", "eval_every", "0"),
            ("rl", "checkpoint_every", "0"),
        ],
    );
    let out = dir.path().join("run");
    let (summary, _) = run_ok(
        troupe()
            .args(["run", "--seed", "3", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out),
    );

    // Held-out accuracy is reported at every phase, with the tool-use diagnostics.
    for phase in ["initial", "after_sft", "after_rl"] {
        let acc = summary["heldout"][phase].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{phase}: {acc}");
        let means = &summary["heldout"]["breakdown"][phase];
        for key in ["correct", "turns", "tool_calls", "malformed_calls"] {
            assert!(means[key].is_number(), "{phase} lacks {key}: {summary}");
        }
    }
    assert_eq!(summary["rl_steps"], 4);

    // The expert's seeds are multi-turn conversations with tool calls and results.
    let seeds = jsonl(&out.join("seed_trajectories.jsonl"));
    assert_eq!(seeds.len(), 256);
    let roles: Vec<&str> = seeds[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(&roles[..3], ["user", "assistant", "tool"]);
    assert_eq!(roles.last(), Some(&"assistant"));

    // After the warm start the policy calls the calculator: held-out episodes run
    // policy -> tool -> policy, the tool turn holding the calculator's answer (or its
    // error message) to the call before it.
    let samples = jsonl(&out.join("eval_samples.jsonl"));
    let trained: Vec<&Value> = samples.iter().filter(|s| s["eval"] != "initial").collect();
    assert_eq!(trained.len(), 32, "16 samples after SFT and 16 after RL");
    let mut tool_turns = 0;
    for s in &trained {
        let turns = s["turns"].as_array().unwrap();
        assert_eq!(turns[0]["author"], "user");
        assert_eq!(turns[0]["text"], s["prompt"]);
        for (i, t) in turns.iter().enumerate() {
            if t["author"] != "tool" {
                continue;
            }
            tool_turns += 1;
            let call = turns[i - 1]["text"].as_str().unwrap();
            assert_eq!(turns[i - 1]["author"], "policy");
            assert!(
                call.contains("<call>") || call.contains("</call>"),
                "{call}"
            );
            assert_eq!(turns[i + 1]["author"], "policy", "{s}");
            // A result (not an error) is the arithmetic of the call's input.
            let result = t["text"].as_str().unwrap();
            if !result.starts_with("error: ") {
                let input = call
                    .trim_end()
                    .split_once("<call>calc ")
                    .and_then(|(_, r)| r.strip_suffix("</call>"))
                    .unwrap_or_else(|| panic!("{call} got {result}"));
                let at = input.find(['*', '+', '-']).unwrap();
                let a: i128 = input[..at].trim().parse().unwrap();
                let b: i128 = input[at + 1..].trim().parse().unwrap();
                let want = match &input[at..=at] {
                    "*" => a * b,
                    "+" => a + b,
                    _ => a - b,
                };
                assert_eq!(result, want.to_string(), "{s}");
            }
        }
        let calls = s["breakdown"]["tool_calls"].as_f64().unwrap()
            + s["breakdown"]["malformed_calls"].as_f64().unwrap();
        let policy_turns = turns.iter().filter(|t| t["author"] == "policy").count();
        assert_eq!(
            s["breakdown"]["turns"].as_f64().unwrap(),
            policy_turns as f64
        );
        assert!(calls <= policy_turns as f64);
    }
    eprintln!(
        "{tool_turns} tool turns in {} held-out episodes",
        trained.len()
    );
    assert!(
        tool_turns >= 16,
        "only {tool_turns} tool turns in {trained:?}"
    );

    // Training steps were recorded with the reward components of what they trained on.
    let metrics = jsonl(&out.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 4);
    assert!(metrics.iter().all(|m| m["reward_parts"].is_object()));
}
