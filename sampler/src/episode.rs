//! Token-exact episodes: the sampler appends the tokens it was given (prompt,
//! observations) and the tokens it generated, never re-tokenising earlier turns.
//!
//! Each turn is tokenised once, when it arrives: the prompt and every observation
//! alone (with the chat template's tokens around them), the policy's turns exactly as
//! generated. The trajectory's tokens are the concatenation of those pieces, and only
//! the policy's tokens are marked `policy` (what the RL loss trains on).

use troupe_core::{Author, PolicyVersion, Purpose, TaskSpec, TokenId, Trajectory};
use troupe_model::tokenizer::{ChatTokenizer, TurnRole};

use crate::{Generation, SamplerError};

/// An episode in progress.
#[derive(Debug, Clone)]
pub struct Episode {
    trajectory: Trajectory,
    tokenizer: ChatTokenizer,
}

/// What became of an observation offered to [`Episode::push_observation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// It was appended; the policy acts next.
    Yes,
    /// It would leave no room for the policy's next token within `max_seq`: the episode
    /// ends here, unchanged (so its trajectory still fits the learner's context).
    NoRoom,
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
        trajectory.begin_turn(Author::User, observation);
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

    /// Policy turns so far.
    pub fn policy_turns(&self) -> usize {
        self.trajectory.actions().count()
    }

    /// Appends the policy's turn, generated at `version`; returns its text.
    pub fn push_generation(&mut self, generation: &Generation, version: PolicyVersion) -> String {
        let text = self.tokenizer.decode(&generation.tokens);
        self.trajectory.begin_turn(Author::Policy, &text);
        for (&t, &lp) in generation.tokens.iter().zip(&generation.logprobs) {
            self.trajectory.push_policy(t, lp, version);
        }
        self.trajectory.response = text.clone();
        text
    }

    /// Appends an environment observation written by `author` (the user, or a tool's
    /// result in the template's tool role), ready for the next action, if the context
    /// then still leaves room for at least one generated token within `max_seq`.
    ///
    /// Fails only for an observation claiming to be the policy's.
    pub fn push_observation(
        &mut self,
        author: Author,
        observation: &str,
        max_seq: usize,
    ) -> Result<Appended, SamplerError> {
        let role = match author {
            Author::User => TurnRole::User,
            Author::Tool => TurnRole::Tool,
            Author::Policy => return Err(SamplerError::PolicyObservation),
        };
        let tokens = self.tokenizer.observation_as(role, observation);
        if self.trajectory.tokens.len() + tokens.len() + 1 > max_seq {
            return Ok(Appended::NoRoom);
        }
        self.trajectory.begin_turn(author, observation);
        self.trajectory.push_context(&tokens);
        Ok(Appended::Yes)
    }

    /// Whether `observation` by `author` fits: after it, `room` tokens are still free for
    /// the next action within `max_seq`. An episode whose observation does not fit ends
    /// there.
    pub fn observation_fits(
        &self,
        author: Author,
        observation: &str,
        max_seq: usize,
        room: usize,
    ) -> bool {
        let role = match author {
            Author::Tool => TurnRole::Tool,
            Author::User | Author::Policy => TurnRole::User,
        };
        self.trajectory.tokens.len() + self.tokenizer.observation_as(role, observation).len() + room
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
mod tests;
