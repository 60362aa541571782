//! The trajectory viewer's data: recent scored trajectories rendered for
//! `/api/trajectories` (turns, and per policy token its id, text piece, behaviour
//! log-prob and policy version), kept in a small ring. Pure: the tokenizer comes in as
//! a function.

use std::collections::VecDeque;

use serde_json::{Value, json};
use troupe_core::{Author, Purpose, ScoredTrajectory, TokenId};

/// Trajectories kept per purpose (training, evaluation), so an evaluation round does
/// not push every training trajectory out.
pub const PER_PURPOSE: usize = 16;

/// The newest rendered trajectories of each purpose.
#[derive(Debug, Clone, Default)]
pub struct TrajectoryRing {
    /// Training trajectories: (sequence number, rendering), oldest first.
    train: VecDeque<(u64, Value)>,
    /// Evaluation trajectories, likewise.
    eval: VecDeque<(u64, Value)>,
    /// Trajectories recorded so far.
    seen: u64,
}

impl TrajectoryRing {
    /// Keeps `rendered` (from [`render`]) with its sequence number as `seq`, dropping
    /// the oldest of its purpose when full.
    pub fn push(&mut self, mut rendered: Value) {
        rendered["seq"] = json!(self.seen);
        let ring = if rendered["purpose"] == "eval" {
            &mut self.eval
        } else {
            &mut self.train
        };
        if ring.len() == PER_PURPOSE {
            ring.pop_front();
        }
        ring.push_back((self.seen, rendered));
        self.seen += 1;
    }

    /// Trajectories recorded so far (the page refetches when this grows).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Every kept trajectory, newest first.
    pub fn newest_first(&self) -> Vec<Value> {
        let mut all: Vec<&(u64, Value)> = self.train.iter().chain(&self.eval).collect();
        all.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        all.into_iter().map(|(_, v)| v.clone()).collect()
    }
}

/// The role name of a turn's author.
fn role(author: Author) -> &'static str {
    match author {
        Author::User => "user",
        Author::Tool => "tool",
        Author::Policy => "policy",
    }
}

/// One trajectory for the viewer:
///
/// `{"id", "id_str", "purpose": "train"|"eval", "batch"/"group" or "round", "rl_step",
/// "task": {"id", "prompt"}, "reward": {"total", "breakdown": [{"name", "value"}]},
/// "response", "tokens", "policy_tokens", "versions": [oldest, newest],
/// "turns": [{"role", "text", "token_count", "tokens": [{"id", "text", "logprob",
/// "version"}]}]}`
///
/// `id_str` is the id as a string (ids pass 2^53, which JavaScript numbers do not
/// hold exactly); [`TrajectoryRing::push`] adds `seq`, unique in the ring.
/// `rl_step` is the RL step that trained on it (`null` for evaluation). A turn's
/// `tokens` lists the policy tokens in its span; `text` is `piece(id)`, `null` where
/// the tokenizer cannot render the token alone (a special token, part of a character).
/// A trajectory recorded without turns shows as the prompt and one policy turn.
pub fn render(
    scored: &ScoredTrajectory,
    rl_step: Option<u64>,
    piece: impl Fn(TokenId) -> Option<String>,
) -> Value {
    let t = &scored.trajectory;
    let policy_tokens = |from: usize, to: usize| -> Vec<Value> {
        (from..to.min(t.tokens.len()))
            .filter(|&i| t.policy.get(i) == Some(&1))
            .map(|i| {
                json!({
                    "id": t.tokens[i],
                    "text": piece(t.tokens[i]),
                    "logprob": t.logprobs.get(i),
                    "version": t.versions.get(i),
                })
            })
            .collect()
    };
    let turn = |role: &str, text: &str, from: usize, to: usize| {
        json!({
            "role": role,
            "text": text,
            "token_count": to.min(t.tokens.len()).saturating_sub(from),
            "tokens": policy_tokens(from, to),
        })
    };
    let turns: Vec<Value> = if t.turns.is_empty() {
        let first = t
            .policy
            .iter()
            .position(|&p| p == 1)
            .unwrap_or(t.tokens.len());
        vec![
            turn("user", &t.task.prompt, 0, first),
            turn("policy", &t.response, first, t.tokens.len()),
        ]
    } else {
        t.turns
            .iter()
            .enumerate()
            .map(|(i, tn)| {
                let end = t
                    .turns
                    .get(i + 1)
                    .map_or(t.tokens.len(), |n| n.start as usize);
                turn(role(tn.author), &tn.text, tn.start as usize, end)
            })
            .collect()
    };
    let versions = t
        .policy
        .iter()
        .zip(&t.versions)
        .filter(|(p, _)| **p == 1)
        .map(|(_, v)| *v);
    let mut out = json!({
        "id": t.id,
        "id_str": t.id.to_string(),
        "rl_step": rl_step,
        "task": {"id": t.task.id, "prompt": t.task.prompt},
        "reward": {
            "total": scored.reward.total,
            "breakdown": scored
                .reward
                .breakdown
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect::<Vec<_>>(),
        },
        "response": t.response,
        "tokens": t.tokens.len(),
        "policy_tokens": t.policy_token_count(),
        "versions": [versions.clone().min(), versions.max()],
        "turns": turns,
    });
    match t.purpose {
        Purpose::Train { batch, group } => {
            out["purpose"] = json!("train");
            out["batch"] = json!(batch);
            out["group"] = json!(group);
        }
        Purpose::Eval { round } => {
            out["purpose"] = json!("eval");
            out["round"] = json!(round);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use troupe_core::{PolicyVersion, Reward, TaskSpec, Trajectory};

    use super::*;

    fn episode(id: u64, purpose: Purpose) -> ScoredTrajectory {
        let task = TaskSpec {
            id: 7,
            prompt: "sort 21".into(),
            answer: "12".into(),
            difficulty: 2,
        };
        let mut t = Trajectory::new(id, task, purpose);
        t.begin_turn(Author::User, "sort 21");
        t.push_context(&[300, 115, 50]);
        t.begin_turn(Author::Policy, "12");
        t.push_policy(49, -0.5, PolicyVersion(3));
        t.push_policy(50, -0.25, PolicyVersion(4));
        t.push_policy(999, -1.0, PolicyVersion(4));
        t.response = "12".into();
        ScoredTrajectory {
            trajectory: t,
            reward: Reward {
                total: 1.0,
                breakdown: vec![("correct".into(), 1.0), ("format".into(), 0.5)],
            },
        }
    }

    fn piece(id: TokenId) -> Option<String> {
        (id < 128).then(|| char::from(id as u8).to_string())
    }

    #[test]
    fn a_rendering_has_turns_and_per_token_versions() {
        let v = render(
            &episode(5, Purpose::Train { batch: 2, group: 1 }),
            Some(3),
            piece,
        );
        assert_eq!(
            (v["id"].as_u64(), v["purpose"].as_str()),
            (Some(5), Some("train"))
        );
        assert_eq!(
            (v["batch"].as_u64(), v["rl_step"].as_u64()),
            (Some(2), Some(3))
        );
        assert_eq!(v["task"]["prompt"], "sort 21");
        assert_eq!(v["reward"]["breakdown"][1]["name"], "format");
        assert_eq!(v["versions"], json!([3, 4]));
        let turns = v["turns"].as_array().unwrap();
        assert_eq!(turns.len(), 2);
        assert_eq!(
            (turns[0]["role"].as_str(), turns[0]["token_count"].as_u64()),
            (Some("user"), Some(3))
        );
        assert!(turns[0]["tokens"].as_array().unwrap().is_empty());
        let tokens = turns[1]["tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(
            tokens[0],
            json!({"id": 49, "text": "1", "logprob": -0.5, "version": 3})
        );
        assert_eq!(tokens[2]["text"], Value::Null, "an unrenderable token");
        assert_eq!(tokens[2]["version"], 4);
    }

    #[test]
    fn a_trajectory_without_turns_shows_its_prompt_and_policy_tokens() {
        let mut s = episode(1, Purpose::Eval { round: 4 });
        s.trajectory.turns.clear();
        let v = render(&s, None, piece);
        assert_eq!(
            (v["purpose"].as_str(), v["round"].as_u64()),
            (Some("eval"), Some(4))
        );
        assert!(v["rl_step"].is_null());
        assert_eq!(v["turns"][0]["text"], "sort 21");
        assert_eq!(v["turns"][1]["text"], "12");
        assert_eq!(v["turns"][1]["tokens"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn the_ring_keeps_the_newest_of_each_purpose_newest_first() {
        let mut ring = TrajectoryRing::default();
        for id in 0..PER_PURPOSE as u64 + 3 {
            ring.push(render(
                &episode(id, Purpose::Train { batch: 0, group: 0 }),
                None,
                piece,
            ));
        }
        ring.push(render(
            &episode(100, Purpose::Eval { round: 0 }),
            None,
            piece,
        ));
        assert_eq!(ring.seen(), PER_PURPOSE as u64 + 4);
        let ids: Vec<u64> = ring
            .newest_first()
            .iter()
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), PER_PURPOSE + 1);
        assert_eq!(
            &ids[..3],
            &[100, PER_PURPOSE as u64 + 2, PER_PURPOSE as u64 + 1]
        );
        assert_eq!(
            *ids.last().unwrap(),
            3,
            "the oldest training ones were dropped"
        );
    }
}
