//! The live status a dashboard shows: a pure model (no tokio, no ractor) fed by the
//! coordinator, rendered as the `/api/status` JSON and as Prometheus text.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use serde::Serialize;
use serde_json::{Value, json};

use super::heldout::HeldoutPoint;
use super::trajectories::TrajectoryRing;
use crate::summary::TrajectoryCounts;

/// Per-learner-step metrics kept for charts (the newest this many steps).
pub const STEP_RING: usize = 4096;
/// Cluster events kept (the newest this many).
pub const EVENT_RING: usize = 200;

/// One actor as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorRow {
    /// Role (`coordinator`, `learner`, `buffer`, `sampler`, `env_host`, `judge`).
    pub role: String,
    /// The actor's registered name (`sampler-0`, ...).
    pub name: String,
    /// ractor's lifecycle status, lower case (`running`, `stopping`, ...).
    pub state: String,
    /// Messages waiting in its mailbox. ractor does not expose queue length, so this is
    /// `null` (unknown) for every actor today.
    pub mailbox: Option<u64>,
    /// Restarts by its node's supervisor (samplers, env hosts and judges are restarted;
    /// a failed coordinator, learner or buffer ends the run instead).
    pub restarts: u64,
}

/// One node and the actors it hosts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRow {
    /// Node name from `cluster.toml` (or `remote-N` for a peer's actors the head cannot
    /// name yet).
    pub name: String,
    /// Whether the node is connected (the head always is).
    pub up: bool,
    /// Its actors.
    pub actors: Vec<ActorRow>,
}

/// What the coordinator has told the dashboard so far.
#[derive(Debug, Clone, Default)]
pub struct StatusModel {
    /// Latest published policy version.
    pub policy_version: u64,
    /// RL steps done.
    pub rl_step: u64,
    /// The run's phase (`SFT warm start`, `RL (async GRPO)`, ...).
    pub phase: String,
    /// Trajectory accounting so far (`in_flight` derived from the others).
    pub trajectories: TrajectoryCounts,
    /// Policy tokens sampled for training.
    pub sampled_tokens: u64,
    /// Policy tokens trained on.
    pub trained_tokens: u64,
    /// Held-out pass@1 points, phase boundaries included.
    pub heldout: Vec<HeldoutPoint>,
    /// Recent scored trajectories for the trajectory viewer.
    pub recent_trajectories: TrajectoryRing,
    /// Actors that failed: (name, error).
    pub failures: Vec<(String, String)>,
    /// Restarts by (node, actor name).
    pub restarts: BTreeMap<(String, String), u64>,
    /// Cluster events, newest last: (seconds since the Unix epoch, what happened).
    pub events: VecDeque<(f64, String)>,
    /// The newest `STEP_RING` `metrics.jsonl` lines.
    pub steps: VecDeque<Value>,
}

impl StatusModel {
    /// Records one learner step (its `metrics.jsonl` line).
    pub fn push_step(&mut self, line: Value) {
        if self.steps.len() == STEP_RING {
            self.steps.pop_front();
        }
        self.steps.push_back(line);
    }

    /// Records a cluster event (a node lost or back, work handed out again, a restart).
    pub fn push_event(&mut self, at: f64, line: String) {
        if self.events.len() == EVENT_RING {
            self.events.pop_front();
        }
        self.events.push_back((at, line));
    }

    /// Trajectory accounting with `in_flight` = generated minus every outcome.
    pub fn counts(&self) -> TrajectoryCounts {
        let mut t = self.trajectories;
        t.in_flight = t.generated.saturating_sub(
            t.trained + t.dropped_stale + t.filtered_zero_signal + t.dropped_judge_error,
        );
        t
    }

    /// The `/api/status` document.
    pub fn to_json(&self, nodes: &[NodeRow]) -> Value {
        json!({
            "nodes": nodes,
            "policy_version": self.policy_version,
            "rl_step": self.rl_step,
            "phase": self.phase,
            "trajectories": self.counts(),
            "sampled_tokens": self.sampled_tokens,
            "trained_tokens": self.trained_tokens,
            "heldout": self.heldout,
            "trajectory_seq": self.recent_trajectories.seen(),
            "failures": self.failures.iter().map(|(n, e)| json!({"actor": n, "error": e})).collect::<Vec<_>>(),
            "events": self.events.iter().map(|(t, e)| json!({"at": t, "event": e})).collect::<Vec<_>>(),
            "last_step": self.steps.back(),
        })
    }

    /// Prometheus text exposition (version 0.0.4), every name prefixed `troupe_`.
    pub fn to_prometheus(&self, nodes: &[NodeRow]) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP troupe_{name} {help}");
            let _ = writeln!(out, "# TYPE troupe_{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "troupe_{name}{labels} {}", number(*v));
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        metric(
            "policy_version",
            "gauge",
            "Latest published policy version.",
            &one(self.policy_version as f64),
        );
        metric(
            "rl_steps",
            "counter",
            "RL steps the learner finished.",
            &one(self.rl_step as f64),
        );
        let t = self.counts();
        metric(
            "trajectories",
            "counter",
            "Training trajectories by outcome.",
            &[
                ("generated", t.generated),
                ("trained", t.trained),
                ("dropped_stale", t.dropped_stale),
                ("filtered_zero_signal", t.filtered_zero_signal),
                ("dropped_judge_error", t.dropped_judge_error),
            ]
            .map(|(o, n)| (format!("{{outcome=\"{o}\"}}"), n as f64)),
        );
        metric(
            "trajectories_in_flight",
            "gauge",
            "Trajectories generated but not yet trained on or dropped.",
            &one(t.in_flight as f64),
        );
        metric(
            "sampled_tokens",
            "counter",
            "Policy tokens sampled for training.",
            &one(self.sampled_tokens as f64),
        );
        metric(
            "trained_tokens",
            "counter",
            "Policy tokens trained on.",
            &one(self.trained_tokens as f64),
        );
        if let Some(last) = self.steps.back() {
            for (key, name, help) in [
                ("loss", "learner_loss", "Loss of the latest RL step."),
                (
                    "mean_reward",
                    "train_reward",
                    "Mean reward of the latest RL batch.",
                ),
                (
                    "train_seconds",
                    "learner_step_seconds",
                    "Seconds the latest RL step trained.",
                ),
                (
                    "wait_seconds",
                    "learner_wait_seconds",
                    "Seconds the latest RL step waited for a batch.",
                ),
                (
                    "publish_seconds",
                    "weight_publish_seconds",
                    "Seconds the latest RL step took to publish its weights.",
                ),
                (
                    "buffer_pending",
                    "buffer_pending_trajectories",
                    "Trajectories the replay buffer held at the latest take.",
                ),
                (
                    "buffer_capacity",
                    "buffer_capacity_trajectories",
                    "Trajectories the replay buffer can hold.",
                ),
            ] {
                if let Some(v) = last[key].as_f64() {
                    metric(name, "gauge", help, &one(v));
                }
            }
        }
        if let Some(p) = self.heldout.last() {
            metric(
                "heldout_pass_at_1",
                "gauge",
                "Latest held-out greedy pass@1.",
                &one(f64::from(p.pass_at_1)),
            );
        }
        let per_actor = |value: &dyn Fn(&ActorRow) -> f64| -> Vec<(String, f64)> {
            nodes
                .iter()
                .flat_map(|n| {
                    n.actors.iter().map(move |a| {
                        (
                            format!(
                                "{{node=\"{}\",role=\"{}\",actor=\"{}\"}}",
                                label(&n.name),
                                label(&a.role),
                                label(&a.name)
                            ),
                            value(a),
                        )
                    })
                })
                .collect()
        };
        metric(
            "actor_up",
            "gauge",
            "1 while the actor is running.",
            &per_actor(&|a| f64::from(u8::from(a.state == "running"))),
        );
        metric(
            "actor_restarts",
            "counter",
            "Restarts of the actor by its node's supervisor.",
            &per_actor(&|a| a.restarts as f64),
        );
        metric(
            "node_up",
            "gauge",
            "1 while the head holds a session with the node.",
            &nodes
                .iter()
                .map(|n| {
                    (
                        format!("{{node=\"{}\"}}", label(&n.name)),
                        f64::from(u8::from(n.up)),
                    )
                })
                .collect::<Vec<_>>(),
        );
        metric(
            "actor_failures",
            "counter",
            "Actors that failed.",
            &one(self.failures.len() as f64),
        );
        out
    }
}

/// A sample value as Prometheus writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<NodeRow> {
        vec![NodeRow {
            name: "head".into(),
            up: true,
            actors: vec![ActorRow {
                role: "sampler".into(),
                name: "sampler-\"0\"".into(),
                state: "running".into(),
                mailbox: None,
                restarts: 0,
            }],
        }]
    }

    #[test]
    fn status_json_follows_the_schema_and_derives_in_flight() {
        let mut m = StatusModel {
            policy_version: 3,
            ..Default::default()
        };
        m.trajectories.generated = 10;
        m.trajectories.trained = 6;
        m.trajectories.dropped_stale = 1;
        m.push_step(json!({"step": 1, "loss": 0.5}));
        let v = m.to_json(&nodes());
        assert_eq!(v["policy_version"], 3);
        assert_eq!(v["nodes"][0]["name"], "head");
        assert_eq!(v["nodes"][0]["up"], true);
        assert_eq!(v["nodes"][0]["actors"][0]["role"], "sampler");
        assert_eq!(v["nodes"][0]["actors"][0]["restarts"], 0);
        assert_eq!(v["trajectories"]["in_flight"], 3);
        assert_eq!(v["last_step"]["loss"], 0.5);
    }

    #[test]
    fn step_ring_keeps_the_newest_steps() {
        let mut m = StatusModel::default();
        for step in 0..STEP_RING as u64 + 5 {
            m.push_step(json!({ "step": step }));
        }
        assert_eq!(m.steps.len(), STEP_RING);
        assert_eq!(m.steps.front().unwrap()["step"], 5);
    }

    #[test]
    fn prometheus_text_has_help_type_and_escaped_labels() {
        let mut m = StatusModel {
            policy_version: 7,
            ..Default::default()
        };
        m.push_step(json!({"loss": f64::NAN, "mean_reward": 0.25, "buffer_pending": 12}));
        let text = m.to_prometheus(&nodes());
        assert!(text.contains("troupe_buffer_pending_trajectories 12\n"));
        assert!(text.contains("# TYPE troupe_policy_version gauge\ntroupe_policy_version 7\n"));
        assert!(text.contains("troupe_train_reward 0.25\n"));
        assert!(text.contains("troupe_trajectories{outcome=\"generated\"} 0\n"));
        assert!(text.contains(r#"actor="sampler-\"0\"""#));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("troupe_"), "{line}");
        }
    }
}
