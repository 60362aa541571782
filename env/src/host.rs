//! Environments and the env host's pure core: live episodes keyed by id, with a capacity.

use std::collections::HashMap;
use std::fmt;

use troupe_core::{Author, TaskSpec};

use crate::tools::ToolEnv;
use crate::{EnvError, TaskFamily};

/// A turn the environment shows the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Who speaks: [`Author::User`], or [`Author::Tool`] for a tool's result.
    pub author: Author,
    /// What it says.
    pub text: String,
}

/// What an environment returns after the policy acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// The next observation to show the policy, if the episode continues with one.
    pub observation: Option<Observation>,
    /// Whether the episode has ended.
    pub done: bool,
    /// When the episode has ended: what the judge scores in place of the policy's last
    /// action, if the environment decides it (a code-fixing episode's final diff).
    pub submission: Option<String>,
}

/// An episode's environment: it poses the first observation and reacts to each action.
pub trait Environment: Send {
    /// Starts the episode and returns the first observation (a user turn).
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

/// Which environment an env host makes for each task, and its episode limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvSpec {
    /// The run's task family (`sort` and `add` are single-turn; `calc` uses tools;
    /// `codefix` runs on a sandboxed [`CodefixHost`](crate::codefix::CodefixHost)).
    pub family: TaskFamily,
    /// Most policy turns per episode; a multi-turn environment ends its episode after
    /// this many, whatever the last turn was.
    pub max_turns: u32,
}

impl Default for EnvSpec {
    fn default() -> Self {
        Self {
            family: TaskFamily::default(),
            max_turns: 8,
        }
    }
}

/// The environment for `task` in a run of `spec.family`. Code-fixing tasks have none
/// here: they run sandboxed commands, on a [`CodefixHost`](crate::codefix::CodefixHost).
pub fn make_environment(spec: &EnvSpec, task: &TaskSpec) -> Result<Box<dyn Environment>, EnvError> {
    match spec.family {
        TaskFamily::Sort | TaskFamily::Add => Ok(Box::new(SingleTurn::new(task))),
        TaskFamily::Calc => Ok(Box::new(ToolEnv::new(task, spec.max_turns))),
        TaskFamily::Codefix => Err(EnvError::TaskKey {
            key: task.answer.chars().take(80).collect(),
            reason: "a code-fixing task runs on a sandboxed code-fixing host, not in memory".into(),
        }),
    }
}

/// The env host's decisions, free of any actor or I/O: which episodes are live and
/// whether another fits. Each live episode holds one boxed environment.
pub struct EnvHostCore {
    capacity: usize,
    spec: EnvSpec,
    episodes: HashMap<u64, Box<dyn Environment>>,
}

impl fmt::Debug for EnvHostCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut live: Vec<_> = self.episodes.keys().collect();
        live.sort();
        f.debug_struct("EnvHostCore")
            .field("capacity", &self.capacity)
            .field("spec", &self.spec)
            .field("live", &live)
            .finish()
    }
}

impl EnvHostCore {
    /// A host that runs at most `capacity` episodes at once, each in the environment
    /// `spec` makes.
    pub fn new(capacity: usize, spec: EnvSpec) -> Self {
        Self {
            capacity,
            spec,
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
        let mut env = make_environment(&self.spec, task)?;
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
        let mut env = make_environment(&EnvSpec::default(), &task(3)).unwrap();
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
        let mut host = EnvHostCore::new(2, EnvSpec::default());
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
        let mut host = EnvHostCore::new(1, EnvSpec::default());
        host.reset(1, &task(1)).unwrap();
        let err = host.reset(2, &task(2)).unwrap_err();
        assert!(matches!(err, EnvError::Full { capacity: 1 }), "{err}");
        assert_eq!(host.live(), 1);
        host.step(1, "x").unwrap();
        host.reset(2, &task(2)).unwrap();
        assert!(matches!(
            EnvHostCore::new(0, EnvSpec::default()).reset(1, &task(1)),
            Err(EnvError::Full { capacity: 0 })
        ));
    }

    #[test]
    fn duplicate_and_unknown_episodes_are_errors() {
        let mut host = EnvHostCore::new(4, EnvSpec::default());
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

    #[test]
    fn calc_runs_host_tool_episodes_and_abandon_frees_a_slot() {
        let spec = EnvSpec {
            family: TaskFamily::Calc,
            max_turns: 3,
        };
        let calc = TaskSpec {
            id: 1,
            prompt: "6*7".into(),
            answer: "42".into(),
            difficulty: 1,
        };
        let mut host = EnvHostCore::new(2, spec);
        assert_eq!(host.reset(1, &calc).unwrap(), "6*7");
        let out = host.step(1, "<call>calc 6*7</call>").unwrap();
        assert_eq!(
            out.observation,
            Some(Observation {
                author: Author::Tool,
                text: "42".into()
            })
        );
        assert!(!out.done);
        assert!(host.step(1, "42").unwrap().done);
        assert_eq!(host.live(), 0);
        // A sampler that stops an episode early abandons it.
        host.reset(2, &calc).unwrap();
        host.step(2, "<call>calc 6*7").unwrap();
        assert_eq!(host.abandon(2).unwrap(), None);
        assert!(host.abandon(2).is_err());
        assert_eq!(host.live(), 0);
    }
}
