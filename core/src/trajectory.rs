//! Tasks, trajectories and rewards.

use bincode::{Decode, Encode};

use crate::PolicyVersion;

/// A token id in the policy's vocabulary.
pub type TokenId = u32;

/// One problem an environment can pose. `answer` is the verifier's reference and is
/// never shown to the policy.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TaskSpec {
    /// Unique id within a run.
    pub id: u64,
    /// The user turn the policy sees.
    pub prompt: String,
    /// The reference the verifier checks against.
    pub answer: String,
    /// The difficulty knob the task was drawn with (task-specific meaning).
    pub difficulty: u32,
}

/// Why an episode was run; decides where its scored trajectory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Purpose {
    /// A training sample: member of group `group` in RL batch `batch`.
    Train {
        /// RL batch sequence number.
        batch: u64,
        /// Group index within the batch.
        group: u32,
    },
    /// A held-out evaluation episode of evaluation round `round` (greedy decoding).
    Eval {
        /// Evaluation round.
        round: u32,
    },
}

/// Who wrote one turn of an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Author {
    /// The user: the task prompt, or an environment message in the user role.
    User,
    /// A tool's result, returned by the environment after a tool call.
    Tool,
    /// The policy: an action.
    Policy,
}

/// One turn of an episode: who wrote it, where its tokens start and its text.
///
/// A turn's tokens run from `start` to the next turn's `start` (or the end of the
/// trajectory); a context turn's span includes the chat template's tokens around it
/// (role headers, end tokens), a policy turn's span is exactly what the policy generated.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Turn {
    /// Its author.
    pub author: Author,
    /// Index in [`Trajectory::tokens`] of its first token.
    pub start: u32,
    /// Its text: the observation as the environment sent it, or the policy's decoded
    /// tokens (for the judge and the trajectory viewer; the tokens are what count).
    pub text: String,
}

/// A token-exact episode: one flat token sequence with, per token, whether the
/// policy produced it, its behaviour log-prob and the policy version that produced it.
/// Context tokens (prompt, observations, template) have `policy == false`,
/// `logprob == 0` and no version. `turns` records the episode's turn structure.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Trajectory {
    /// Unique, idempotent id: a resend never counts twice.
    pub id: u64,
    /// The task this episode attempted.
    pub task: TaskSpec,
    /// Training or evaluation.
    pub purpose: Purpose,
    /// Every token of the episode, in order.
    pub tokens: Vec<TokenId>,
    /// `1` where the policy generated the token.
    pub policy: Vec<u8>,
    /// Behaviour log-prob of each policy token (0 elsewhere).
    pub logprobs: Vec<f32>,
    /// Version that generated each policy token (`u64::MAX` for context tokens).
    pub versions: Vec<u64>,
    /// The policy's final answer as text, for the judge and the trajectory viewer.
    pub response: String,
    /// The turns, in order (empty for a trajectory built without an episode).
    pub turns: Vec<Turn>,
}

impl Trajectory {
    /// An empty trajectory for `task`.
    pub fn new(id: u64, task: TaskSpec, purpose: Purpose) -> Self {
        Self {
            id,
            task,
            purpose,
            tokens: Vec::new(),
            policy: Vec::new(),
            logprobs: Vec::new(),
            versions: Vec::new(),
            response: String::new(),
            turns: Vec::new(),
        }
    }

    /// Opens a turn by `author` at the current end of `tokens`; append its tokens next.
    pub fn begin_turn(&mut self, author: Author, text: &str) {
        self.turns.push(Turn {
            author,
            start: self.tokens.len() as u32,
            text: text.to_owned(),
        });
    }

    /// The texts of the policy's turns (its actions), in order.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.turns
            .iter()
            .filter(|t| t.author == Author::Policy)
            .map(|t| t.text.as_str())
    }

    /// The tokens of turn `i`: from its start to the next turn's (clamped to `tokens`).
    pub fn turn_tokens(&self, i: usize) -> &[TokenId] {
        let Some(turn) = self.turns.get(i) else {
            return &[];
        };
        let end = self
            .turns
            .get(i + 1)
            .map_or(self.tokens.len(), |n| n.start as usize);
        let end = end.min(self.tokens.len());
        &self.tokens[(turn.start as usize).min(end)..end]
    }

    /// Appends tokens the policy did not generate.
    pub fn push_context(&mut self, tokens: &[TokenId]) {
        self.tokens.extend_from_slice(tokens);
        self.policy.extend(std::iter::repeat_n(0, tokens.len()));
        self.logprobs.extend(std::iter::repeat_n(0.0, tokens.len()));
        self.versions
            .extend(std::iter::repeat_n(u64::MAX, tokens.len()));
    }

    /// Appends one token generated by the policy at `version`.
    pub fn push_policy(&mut self, token: TokenId, logprob: f32, version: PolicyVersion) {
        self.tokens.push(token);
        self.policy.push(1);
        self.logprobs.push(logprob);
        self.versions.push(version.0);
    }

    /// Number of tokens the policy generated.
    pub fn policy_token_count(&self) -> usize {
        self.policy.iter().filter(|&&p| p == 1).count()
    }

    /// The oldest version among the policy's tokens, which bounds the episode's staleness.
    pub fn oldest_version(&self) -> Option<PolicyVersion> {
        self.policy
            .iter()
            .zip(&self.versions)
            .filter(|(p, _)| **p == 1)
            .map(|(_, v)| PolicyVersion(*v))
            .min()
    }
}

/// A judge's verdict with its breakdown (`("correct", 1.0)`, `("format", 0.0)`, ...).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Reward {
    /// The scalar the learner optimises.
    pub total: f32,
    /// Named components, for metrics and the trajectory viewer.
    pub breakdown: Vec<(String, f32)>,
}

impl Reward {
    /// The breakdown entry that marks a reward a judge could not compute.
    pub const JUDGE_ERROR: &'static str = "judge_error";

    /// A trajectory the judge could not score because `component` failed (LLM call,
    /// malformed verdict, budget, missing test result). It carries no reward: `total` is
    /// 0 only as a placeholder, and the replay buffer drops the trajectory's group
    /// rather than train on it. The breakdown is `[("judge_error", 1), ("<component>_failed", 1)]`.
    pub fn judge_error(component: &str) -> Self {
        Self {
            total: 0.0,
            breakdown: vec![
                (Self::JUDGE_ERROR.to_owned(), 1.0),
                (format!("{component}_failed"), 1.0),
            ],
        }
    }

    /// Whether this is a [`Reward::judge_error`] marker rather than a reward.
    pub fn is_judge_error(&self) -> bool {
        self.breakdown
            .first()
            .is_some_and(|(name, v)| name == Self::JUDGE_ERROR && *v == 1.0)
    }
}

/// A trajectory with its reward: what the judge sends to the replay buffer.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct ScoredTrajectory {
    /// The episode.
    pub trajectory: Trajectory,
    /// Its reward.
    pub reward: Reward,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_error_marks_only_itself() {
        let e = Reward::judge_error("llm");
        assert!(e.is_judge_error());
        assert_eq!(e.breakdown[1], ("llm_failed".to_owned(), 1.0));
        let zero = Reward {
            total: 0.0,
            breakdown: vec![("correct".into(), 0.0), ("judge_error".into(), 1.0)],
        };
        assert!(!zero.is_judge_error());
        let off = Reward {
            total: 0.0,
            breakdown: vec![("judge_error".into(), 0.0)],
        };
        assert!(!off.is_judge_error());
        assert!(
            !Reward {
                total: 1.0,
                breakdown: vec![]
            }
            .is_judge_error()
        );
    }
}
