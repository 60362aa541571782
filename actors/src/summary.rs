//! What a run leaves behind: `summary.json`, `run_state.json` and `metrics.jsonl`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use troupe_core::{Author, ScoredTrajectory};

use crate::ActorError;

/// Held-out greedy pass@1 at each phase boundary, and during RL.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Heldout {
    /// Before any training.
    pub initial: Option<f32>,
    /// After the SFT warm start.
    pub after_sft: Option<f32>,
    /// After RL.
    pub after_rl: Option<f32>,
    /// Measured during RL.
    pub during_rl: Vec<EvalPoint>,
    /// Reward-component means of the phase-boundary evaluations.
    #[serde(default)]
    pub breakdown: HeldoutBreakdown,
}

/// Running means of named reward components (`correct`, `tool_calls`, ...) over many
/// rewards, in first-seen order; a reward without a component counts 0 for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BreakdownMeans {
    sums: Vec<(String, f64)>,
    count: u64,
}

impl BreakdownMeans {
    /// Adds one reward.
    pub fn add(&mut self, reward: &troupe_core::Reward) {
        self.count += 1;
        for (name, value) in &reward.breakdown {
            match self.sums.iter_mut().find(|(k, _)| k == name) {
                Some((_, sum)) => *sum += f64::from(*value),
                None => self.sums.push((name.clone(), f64::from(*value))),
            }
        }
    }

    /// The means so far (empty before the first reward).
    pub fn means(&self) -> Vec<(String, f32)> {
        let n = self.count.max(1) as f64;
        self.sums
            .iter()
            .map(|(k, sum)| (k.clone(), (sum / n) as f32))
            .collect()
    }
}

/// One line of `eval_samples.jsonl`: an evaluated held-out episode turn by turn.
///
/// `{"eval": "after_sft", "task": 3, "prompt": …, "answer": …, "reward": 1.0,
/// "breakdown": {…}, "turns": [{"author": "user", "text": …}, {"author": "policy", …}]}`
pub fn eval_sample(eval: &str, scored: &ScoredTrajectory) -> serde_json::Value {
    let t = &scored.trajectory;
    let turns: Vec<serde_json::Value> = t
        .turns
        .iter()
        .map(|turn| {
            let author = match turn.author {
                Author::User => "user",
                Author::Tool => "tool",
                Author::Policy => "policy",
            };
            serde_json::json!({"author": author, "text": turn.text})
        })
        .collect();
    serde_json::json!({
        "eval": eval,
        "task": t.task.id,
        "prompt": t.task.prompt,
        "answer": t.task.answer,
        "reward": scored.reward.total,
        "breakdown": scored
            .reward
            .breakdown
            .iter()
            .cloned()
            .collect::<BTreeMap<String, f32>>(),
        "turns": turns,
    })
}

/// Held-out reward-component means of each phase's evaluation (`correct`, `format`,
/// `turns`, `tool_calls`, `malformed_calls`), keyed by component.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HeldoutBreakdown {
    /// Before any training.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub initial: BTreeMap<String, f32>,
    /// After the SFT warm start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub after_sft: BTreeMap<String, f32>,
    /// After RL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub after_rl: BTreeMap<String, f32>,
}

/// One held-out evaluation during RL.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct EvalPoint {
    /// RL steps done when the evaluated weights were published.
    pub step: u64,
    /// Greedy pass@1.
    pub pass_at_1: f32,
}

/// Trajectory accounting:
/// `generated = trained + dropped_stale + filtered_zero_signal + dropped_judge_error + in_flight`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct TrajectoryCounts {
    /// Training trajectories the samplers produced and the buffer accepted.
    pub generated: u64,
    /// Trajectories the learner trained on.
    pub trained: u64,
    /// Dropped for exceeding `max_staleness`.
    pub dropped_stale: u64,
    /// In groups whose rewards were all equal.
    pub filtered_zero_signal: u64,
    /// In groups with a member the judge could not score (see `[judge]`).
    #[serde(default)]
    pub dropped_judge_error: u64,
    /// Still held by the buffer when the run ended.
    pub in_flight: u64,
    /// Resent trajectories the buffer ignored (a resumed run regenerates batches the
    /// buffer's log already holds); not part of `generated`.
    #[serde(default)]
    pub duplicates: u64,
}

/// Token throughput over the RL phase.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Throughput {
    /// Policy tokens sampled for training per second of RL.
    pub sampled_tokens_per_s: f64,
    /// Policy tokens trained on per second of RL.
    pub trained_tokens_per_s: f64,
}

/// Sums of the named reward components (`Reward::breakdown`): with 0/1 components, how
/// often each case occurred (a code-fixing judge's `solved`, `no_tests`,
/// `tests_modified`, `timeout`, ...; the digit verifier's `correct` and `format`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RewardParts {
    /// Over every RL trajectory the learner took (trained, stale or filtered).
    pub rl: BTreeMap<String, f64>,
    /// Over each held-out evaluation: `initial`, `after_sft`, `step_N`, `after_rl`.
    pub heldout: BTreeMap<String, BTreeMap<String, f64>>,
}

/// Adds `parts` into `into`.
pub fn add_parts<'a>(
    into: &mut BTreeMap<String, f64>,
    parts: impl IntoIterator<Item = (&'a str, f64)>,
) {
    for (name, value) in parts {
        *into.entry(name.to_string()).or_insert(0.0) += value;
    }
}

/// Counters that survive a resume (saved with each checkpoint).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// Run seed.
    pub seed: u64,
    /// Held-out results so far.
    pub heldout: Heldout,
    /// Trajectory counts so far.
    pub trajectories: TrajectoryCounts,
    /// Policy tokens sampled for training so far.
    pub sampled_tokens: u64,
    /// Policy tokens trained on so far.
    pub trained_tokens: u64,
    /// Seconds spent in RL so far.
    pub rl_seconds: f64,
    /// Wall seconds of earlier sessions of this run.
    pub wall_seconds: f64,
    /// Reward component sums so far.
    #[serde(default)]
    pub reward_parts: RewardParts,
}

/// `RUN_DIR/summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Held-out accuracies.
    pub heldout: HeldoutSummary,
    /// Wall-clock seconds of the whole run (all sessions of a resumed run).
    pub wall_seconds: f64,
    /// Final policy version.
    pub policy_version: u64,
    /// RL steps done.
    pub rl_steps: u64,
    /// Trajectory accounting.
    pub trajectories: TrajectoryCounts,
    /// Throughput.
    pub throughput: Throughput,
    /// Seconds of RL.
    pub rl_seconds: f64,
    /// Run seed.
    pub seed: u64,
    /// Run directory.
    pub run_dir: String,
    /// Reward component sums: every integrity case counted.
    #[serde(default)]
    pub reward_parts: RewardParts,
    /// The judges' counters (this session's), when a judge calls an LLM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<troupe_judge::JudgeReport>,
}

/// Held-out accuracies in the summary (all phases finished).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldoutSummary {
    /// Before training.
    pub initial: f32,
    /// After SFT.
    pub after_sft: f32,
    /// After RL.
    pub after_rl: f32,
    /// During RL.
    pub during_rl: Vec<EvalPoint>,
    /// Reward-component means of the phase-boundary evaluations (tool-use diagnostics).
    #[serde(default)]
    pub breakdown: HeldoutBreakdown,
}

/// Writes `value` as pretty JSON to `path` (via a temporary file and a rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ActorError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ActorError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text + "\n").map_err(|source| ActorError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| ActorError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a JSON file written by [`write_json`].
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ActorError> {
    let text = std::fs::read_to_string(path).map_err(|source| ActorError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ActorError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_core::Reward;

    fn reward(parts: &[(&str, f32)]) -> Reward {
        Reward {
            total: 0.0,
            breakdown: parts.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    #[test]
    fn breakdown_means_average_every_component_over_every_reward() {
        let mut m = BreakdownMeans::default();
        assert!(m.means().is_empty());
        m.add(&reward(&[("correct", 1.0), ("tool_calls", 2.0)]));
        m.add(&reward(&[("correct", 0.0), ("tool_calls", 1.0)]));
        // A reward lacking a component counts 0 for it.
        m.add(&reward(&[("malformed_calls", 3.0)]));
        assert_eq!(
            m.means(),
            vec![
                ("correct".to_owned(), 1.0 / 3.0),
                ("tool_calls".to_owned(), 1.0),
                ("malformed_calls".to_owned(), 1.0),
            ]
        );
    }

    #[test]
    fn eval_samples_show_every_turn() {
        let task = troupe_core::TaskSpec {
            id: 2,
            prompt: "6*7".into(),
            answer: "42".into(),
            difficulty: 1,
        };
        let mut t = troupe_core::Trajectory::new(9, task, troupe_core::Purpose::Eval { round: 1 });
        t.begin_turn(Author::User, "6*7");
        t.begin_turn(Author::Policy, "<call>calc 6*7</call>");
        t.begin_turn(Author::Tool, "42");
        t.begin_turn(Author::Policy, "42");
        let s = ScoredTrajectory {
            trajectory: t,
            reward: reward(&[("correct", 1.0), ("tool_calls", 1.0)]),
        };
        let v = eval_sample("after_rl", &s);
        assert_eq!(v["eval"], "after_rl");
        assert_eq!(v["task"], 2);
        assert_eq!(v["breakdown"]["tool_calls"], 1.0);
        let authors: Vec<&str> = v["turns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["author"].as_str().unwrap())
            .collect();
        assert_eq!(authors, ["user", "policy", "tool", "policy"]);
        assert_eq!(v["turns"][2]["text"], "42");
    }

    #[test]
    fn run_state_without_a_breakdown_still_reads() {
        let old = r#"{"initial":0.1,"after_sft":null,"after_rl":null,"during_rl":[]}"#;
        let h: Heldout = serde_json::from_str(old).unwrap();
        assert_eq!(h.initial, Some(0.1));
        assert_eq!(h.breakdown, HeldoutBreakdown::default());
    }
}
