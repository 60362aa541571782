//! Environments and the env host's pure core: live episodes keyed by id, with a capacity.

use std::collections::HashMap;
use std::fmt;

use troupe_core::TaskSpec;

use crate::EnvError;

/// What an environment returns after the policy acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// The next observation to show the policy, if the episode continues with one.
    pub observation: Option<String>,
    /// Whether the episode has ended.
    pub done: bool,
    /// When the episode has ended: what the judge scores in place of the policy's last
    /// action, if the environment decides it (a code-fixing episode's final diff).
    pub submission: Option<String>,
}

/// An episode's environment: it poses the first observation and reacts to each action.
pub trait Environment: Send {
    /// Starts the episode and returns the first observation.
    fn reset(&mut self) -> String;
    /// Applies the policy's `action` and returns what happens next.
    fn step(&mut self, action: &str) -> StepOutcome;
}

/// A one-turn environment: shows the prompt, ends after the first answer.
#[derive(Debug, Clone)]
pub struct SingleTurn {
    task: TaskSpec,
}

impl SingleTurn {
    /// The environment posing `task`.
    pub fn new(task: &TaskSpec) -> Self {
        Self { task: task.clone() }
    }

    /// The task it poses.
    pub fn task(&self) -> &TaskSpec {
        &self.task
    }
}

impl Environment for SingleTurn {
    fn reset(&mut self) -> String {
        self.task.prompt.clone()
    }

    fn step(&mut self, _action: &str) -> StepOutcome {
        StepOutcome {
            observation: None,
            done: true,
            submission: None,
        }
    }
}

/// The environment for `task`: every built-in digit task is single-turn. (Code-fixing
/// tasks run on a [`CodefixHost`](crate::codefix::CodefixHost), which does I/O.)
pub fn make_environment(task: &TaskSpec) -> Box<dyn Environment> {
    Box::new(SingleTurn::new(task))
}

/// The env host's decisions, free of any actor or I/O: which episodes are live and
/// whether another fits. Each live episode holds one boxed environment.
pub struct EnvHostCore {
    capacity: usize,
    episodes: HashMap<u64, Box<dyn Environment>>,
}

impl fmt::Debug for EnvHostCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut live: Vec<_> = self.episodes.keys().collect();
        live.sort();
        f.debug_struct("EnvHostCore")
            .field("capacity", &self.capacity)
            .field("live", &live)
            .finish()
    }
}

impl EnvHostCore {
    /// A host that runs at most `capacity` episodes at once.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            episodes: HashMap::new(),
        }
    }

    /// The most episodes it runs at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Starts `episode` on `task` and returns its first observation.
    ///
    /// Fails with [`EnvError::DuplicateEpisode`] if the id is live, and with
    /// [`EnvError::Full`] when `capacity` episodes are live (back-pressure: retry later).
    pub fn reset(&mut self, episode: u64, task: &TaskSpec) -> Result<String, EnvError> {
        if self.episodes.contains_key(&episode) {
            return Err(EnvError::DuplicateEpisode { episode });
        }
        if self.episodes.len() >= self.capacity {
            return Err(EnvError::Full {
                capacity: self.capacity,
            });
        }
        let mut env = make_environment(task);
        let observation = env.reset();
        self.episodes.insert(episode, env);
        Ok(observation)
    }

    /// Applies `action` to `episode`; a finished episode is removed and frees its slot.
    pub fn step(&mut self, episode: u64, action: &str) -> Result<StepOutcome, EnvError> {
        let env = self
            .episodes
            .get_mut(&episode)
            .ok_or(EnvError::UnknownEpisode { episode })?;
        let outcome = env.step(action);
        if outcome.done {
            self.episodes.remove(&episode);
        }
        Ok(outcome)
    }

    /// Ends `episode` before the environment did (the policy's budget is spent); it
    /// frees its slot. The built-in single-turn environments make no submission.
    pub fn abandon(&mut self, episode: u64) -> Result<Option<String>, EnvError> {
        self.episodes
            .remove(&episode)
            .map(|_| None)
            .ok_or(EnvError::UnknownEpisode { episode })
    }

    /// Number of live episodes.
    pub fn live(&self) -> usize {
        self.episodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64) -> TaskSpec {
        TaskSpec {
            id,
            prompt: format!("sort {id}21"),
            answer: format!("12{id}"),
            difficulty: 3,
        }
    }

    #[test]
    fn single_turn_shows_the_prompt_and_ends() {
        let mut env = make_environment(&task(3));
        assert_eq!(env.reset(), "sort 321");
        assert_eq!(
            env.step("123"),
            StepOutcome {
                observation: None,
                done: true,
                submission: None,
            }
        );
    }

    #[test]
    fn lifecycle_frees_the_slot_when_done() {
        let mut host = EnvHostCore::new(2);
        assert_eq!(host.reset(10, &task(3)).unwrap(), "sort 321");
        assert_eq!(host.reset(11, &task(4)).unwrap(), "sort 421");
        assert_eq!(host.live(), 2);
        let out = host.step(10, "123").unwrap();
        assert!(out.done);
        assert_eq!(host.live(), 1);
        assert!(matches!(
            host.step(10, "123"),
            Err(EnvError::UnknownEpisode { episode: 10 })
        ));
        // The id may be reused once its episode has ended.
        host.reset(10, &task(5)).unwrap();
        assert_eq!(host.live(), 2);
        // An episode cut off by the sampler frees its slot too.
        assert_eq!(host.abandon(10).unwrap(), None);
        assert!(host.abandon(10).is_err());
        assert_eq!(host.live(), 1);
    }

    #[test]
    fn full_host_pushes_back() {
        let mut host = EnvHostCore::new(1);
        host.reset(1, &task(1)).unwrap();
        let err = host.reset(2, &task(2)).unwrap_err();
        assert!(matches!(err, EnvError::Full { capacity: 1 }), "{err}");
        assert_eq!(host.live(), 1);
        host.step(1, "x").unwrap();
        host.reset(2, &task(2)).unwrap();
        assert!(matches!(
            EnvHostCore::new(0).reset(1, &task(1)),
            Err(EnvError::Full { capacity: 0 })
        ));
    }

    #[test]
    fn duplicate_and_unknown_episodes_are_errors() {
        let mut host = EnvHostCore::new(4);
        host.reset(7, &task(1)).unwrap();
        assert!(matches!(
            host.reset(7, &task(2)),
            Err(EnvError::DuplicateEpisode { episode: 7 })
        ));
        assert!(matches!(
            host.step(8, "x"),
            Err(EnvError::UnknownEpisode { episode: 8 })
        ));
        assert_eq!(host.live(), 1);
        assert!(format!("{host:?}").contains("live: [7]"));
    }
}
