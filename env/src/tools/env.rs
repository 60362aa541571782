//! The tool-use environment: the policy answers, or calls a tool and sees its result.

use troupe_core::{Author, TaskSpec};

use super::calc;
use super::call::{Action, Tool, parse_action};
use crate::host::{Environment, Observation, StepOutcome};

/// Prefix of the tool turn that answers a malformed or failed call.
pub const ERROR_PREFIX: &str = "error: ";

/// A tool-use episode on one task. Each policy turn is read with
/// [`parse_action`](super::parse_action): an answer ends the episode; a call gets the
/// tool's result as a tool-role observation; a malformed call gets an `error: …`
/// tool-role observation saying what was wrong, and the episode goes on. After
/// `max_turns` policy turns the episode ends whatever the last turn was.
#[derive(Debug, Clone)]
pub struct ToolEnv {
    task: TaskSpec,
    max_turns: u32,
    turns: u32,
    calls: u32,
    malformed: u32,
}

impl ToolEnv {
    /// The environment posing `task`, for at most `max_turns` policy turns (at least 1).
    pub fn new(task: &TaskSpec, max_turns: u32) -> Self {
        Self {
            task: task.clone(),
            max_turns: max_turns.max(1),
            turns: 0,
            calls: 0,
            malformed: 0,
        }
    }

    /// Policy turns so far.
    pub fn turns(&self) -> u32 {
        self.turns
    }

    /// Well-formed tool calls so far.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// Malformed tool calls so far.
    pub fn malformed(&self) -> u32 {
        self.malformed
    }

    /// What the tool turn says after `action` (`None`: the action was an answer).
    fn reply(&mut self, action: &str) -> Option<String> {
        match parse_action(action) {
            Action::Answer(_) => None,
            Action::Malformed(reason) => {
                self.malformed += 1;
                Some(format!("{ERROR_PREFIX}{reason}"))
            }
            Action::Call(call) => {
                self.calls += 1;
                let result = match call.tool {
                    Tool::Calc => calc::run(&call.input).map_err(|e| format!("calc: {e}")),
                };
                Some(result.unwrap_or_else(|e| format!("{ERROR_PREFIX}{e}")))
            }
        }
    }
}

impl Environment for ToolEnv {
    fn reset(&mut self) -> String {
        self.task.prompt.clone()
    }

    fn step(&mut self, action: &str) -> StepOutcome {
        self.turns += 1;
        match self.reply(action) {
            Some(text) if self.turns < self.max_turns => StepOutcome {
                observation: Some(Observation {
                    author: Author::Tool,
                    text,
                }),
                done: false,
                submission: None,
            },
            _ => StepOutcome {
                observation: None,
                done: true,
                submission: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::expert_action;

    fn task(prompt: &str) -> TaskSpec {
        TaskSpec {
            id: 1,
            prompt: prompt.into(),
            answer: String::new(),
            difficulty: 3,
        }
    }

    fn tool(text: &str) -> StepOutcome {
        StepOutcome {
            observation: Some(Observation {
                author: Author::Tool,
                text: text.into(),
            }),
            done: false,
            submission: None,
        }
    }

    const DONE: StepOutcome = StepOutcome {
        observation: None,
        done: true,
        submission: None,
    };

    #[test]
    fn the_expert_solves_a_two_step_problem_through_the_tool() {
        let mut env = ToolEnv::new(&task("347*589+1234"), 4);
        let prompt = env.reset();
        assert_eq!(prompt, "347*589+1234");
        let mut results: Vec<String> = Vec::new();
        loop {
            let refs: Vec<&str> = results.iter().map(String::as_str).collect();
            let action = expert_action(&prompt, &refs).unwrap();
            let out = env.step(&action);
            match out.observation {
                Some(obs) => {
                    assert_eq!(obs.author, Author::Tool);
                    results.push(obs.text);
                }
                None => {
                    assert!(out.done);
                    assert_eq!(action, "205617");
                    break;
                }
            }
        }
        assert_eq!(results, ["204383", "205617"]);
        assert_eq!((env.turns(), env.calls(), env.malformed()), (3, 2, 0));
    }

    #[test]
    fn malformed_and_failing_calls_get_errors_and_the_episode_goes_on() {
        let mut env = ToolEnv::new(&task("6*7"), 5);
        env.reset();
        assert_eq!(
            env.step("<call>calc 6*7"),
            tool("error: <call> is not closed by </call>")
        );
        assert_eq!(
            env.step("<call>abacus 6*7</call>"),
            tool("error: unknown tool \"abacus\" (tools: calc)")
        );
        let failed = env.step(&format!("<call>calc {0}*{0}</call>", "9".repeat(30)));
        let text = failed.observation.unwrap().text;
        assert!(
            text.starts_with("error: calc: ") && text.contains("overflows"),
            "{text}"
        );
        assert_eq!(env.step("<call>calc 6*7</call>"), tool("42"));
        assert_eq!(env.step("42"), DONE);
        assert_eq!((env.turns(), env.calls(), env.malformed()), (5, 2, 2));
    }

    #[test]
    fn the_turn_limit_ends_the_episode() {
        let mut env = ToolEnv::new(&task("6*7"), 2);
        env.reset();
        assert_eq!(env.step("<call>calc 6*7</call>"), tool("42"));
        // The second turn is the last: a call gets no result and the episode ends.
        assert_eq!(env.step("<call>calc 6*7</call>"), DONE);
        let mut one = ToolEnv::new(&task("6*7"), 0);
        assert_eq!(one.step("<call>calc 6*7</call>"), DONE);
    }
}
