//! Token-exact episodes: the sampler appends the tokens it was given (prompt,
//! observations) and the tokens it generated, never re-tokenising earlier turns.

use troupe_core::{PolicyVersion, Purpose, TaskSpec, TokenId, Trajectory};
use troupe_model::tokenizer::ChatTokenizer;

use crate::Generation;

/// An episode in progress.
#[derive(Debug, Clone)]
pub struct Episode {
    trajectory: Trajectory,
    tokenizer: ChatTokenizer,
}

impl Episode {
    /// Starts an episode whose first observation is `observation`, in `tokenizer`'s
    /// chat template.
    pub fn start(
        id: u64,
        task: TaskSpec,
        purpose: Purpose,
        observation: &str,
        tokenizer: ChatTokenizer,
    ) -> Self {
        let mut trajectory = Trajectory::new(id, task, purpose);
        trajectory.push_context(&tokenizer.generation_prompt(observation));
        Self {
            trajectory,
            tokenizer,
        }
    }

    /// The episode's trajectory id.
    pub fn id(&self) -> u64 {
        self.trajectory.id
    }

    /// The full context the policy conditions on next.
    pub fn context(&self) -> &[TokenId] {
        &self.trajectory.tokens
    }

    /// Appends the policy's turn, generated at `version`; returns its text.
    pub fn push_generation(&mut self, generation: &Generation, version: PolicyVersion) -> String {
        for (&t, &lp) in generation.tokens.iter().zip(&generation.logprobs) {
            self.trajectory.push_policy(t, lp, version);
        }
        let text = self.tokenizer.decode(&generation.tokens);
        self.trajectory.response = text.clone();
        text
    }

    /// Appends an environment observation as a user turn, ready for the next action.
    pub fn push_observation(&mut self, observation: &str) {
        let tokens = self.tokenizer.observation(observation);
        self.trajectory.push_context(&tokens);
    }

    /// Whether `observation` fits: after it, `room` tokens are still free for the next
    /// action within `max_seq`. An episode whose observation does not fit ends there.
    pub fn observation_fits(&self, observation: &str, max_seq: usize, room: usize) -> bool {
        self.trajectory.tokens.len() + self.tokenizer.observation(observation).len() + room
            <= max_seq
    }

    /// Records what the judge scores in place of the policy's last action: the
    /// environment's submission (a code-fixing episode's diff).
    pub fn set_response(&mut self, submission: String) {
        self.trajectory.response = submission;
    }

    /// The finished trajectory.
    pub fn finish(self) -> Trajectory {
        self.trajectory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episode_keeps_tokens_exact_and_marks_policy_tokens() {
        let task = TaskSpec {
            id: 1,
            prompt: "sort 21".into(),
            answer: "12".into(),
            difficulty: 2,
        };
        let mut ep = Episode::start(
            5,
            task,
            Purpose::Eval { round: 0 },
            "sort 21",
            ChatTokenizer::new(),
        );
        let before = ep.context().to_vec();
        let g = Generation {
            tokens: vec![49, 50, troupe_model::tokenizer::END],
            logprobs: vec![-0.1, -0.2, -0.3],
            finished: true,
        };
        assert_eq!(ep.push_generation(&g, PolicyVersion(2)), "12");
        let len = ep.context().len();
        // "again" takes a user turn (opener, 5 bytes, end) and the assistant opener.
        assert!(ep.observation_fits("again", len + 8 + 4, 4));
        assert!(!ep.observation_fits("again", len + 8 + 3, 4));
        ep.push_observation("again");
        let t = ep.finish();
        assert_eq!(&t.tokens[..before.len()], before.as_slice());
        assert_eq!(t.policy_token_count(), 3);
        assert_eq!(t.oldest_version(), Some(PolicyVersion(2)));
        assert_eq!(t.logprobs[before.len() + 1], -0.2);
        assert_eq!(t.response, "12");
    }

    #[test]
    fn a_submission_replaces_the_response() {
        let task = TaskSpec {
            id: 1,
            prompt: "fix it".into(),
            answer: "codefix/off_by_one/1".into(),
            difficulty: 0,
        };
        let mut ep = Episode::start(
            1,
            task,
            Purpose::Eval { round: 0 },
            "fix it",
            ChatTokenizer::new(),
        );
        let g = Generation {
            tokens: vec![60, troupe_model::tokenizer::END],
            logprobs: vec![-0.1, -0.2],
            finished: true,
        };
        ep.push_generation(&g, PolicyVersion(1));
        ep.set_response("diff --git a/x b/x".into());
        assert_eq!(ep.finish().response, "diff --git a/x b/x");
    }
}
