//! One code-fixing episode's decisions, free of I/O: which command an action asks for,
//! how a command's output reads as an observation, and when the episode is over.

use std::time::Duration;

use troupe_sandbox::{CommandOutput, ExitStatus, Outcome};

use super::action::Action;
use super::commands;

/// What the env host should do with the policy's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Run this command in the sandbox, then show [`EpisodeCore::observe`] of its output.
    Run {
        /// The command.
        argv: Vec<String>,
        /// How its output is shown.
        kind: CommandKind,
    },
    /// Show this observation; nothing runs (an invalid action).
    Observe(String),
    /// The policy submitted: take the diff and end the episode.
    Submit,
}

/// Which action a command carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// `<sh>`: output, then `[exit N]`.
    Shell,
    /// `<edit>`: the edited line, or the error.
    Edit,
}

/// Turn counting and observation shaping for one episode.
#[derive(Debug, Clone)]
pub struct EpisodeCore {
    max_turns: u32,
    turns: u32,
    observation_bytes: usize,
    timeout: Duration,
}

impl EpisodeCore {
    /// An episode of at most `max_turns` policy turns whose observations keep at most
    /// `observation_bytes` of output; `timeout` is the sandbox's, for the message.
    pub fn new(max_turns: u32, observation_bytes: usize, timeout: Duration) -> Self {
        Self {
            max_turns,
            turns: 0,
            observation_bytes,
            timeout,
        }
    }

    /// Takes the policy's turn.
    pub fn act(&mut self, text: &str) -> Next {
        self.turns += 1;
        match Action::parse(text) {
            Ok(Action::Submit) => Next::Submit,
            Ok(Action::Shell(cmd)) => Next::Run {
                argv: commands::shell(&cmd),
                kind: CommandKind::Shell,
            },
            Ok(Action::Edit {
                file,
                line,
                old,
                new,
            }) => Next::Run {
                argv: commands::edit(&file, line, &old, &new),
                kind: CommandKind::Edit,
            },
            Err(observation) => Next::Observe(observation),
        }
    }

    /// Whether the policy has used all its turns (the episode then ends and is judged).
    pub fn out_of_turns(&self) -> bool {
        self.turns >= self.max_turns
    }

    /// Turns taken so far.
    pub fn turns(&self) -> u32 {
        self.turns
    }

    /// The observation for `out`, the output of a command of `kind`.
    pub fn observe(&self, kind: CommandKind, out: &CommandOutput) -> String {
        let mut text = out.stdout_text();
        text.push_str(&out.stderr_text());
        let mut text = clip(&text, self.observation_bytes);
        let status = self.status(out);
        match kind {
            CommandKind::Edit if out.outcome == Outcome::Exited => {
                text.truncate(text.trim_end().len());
                text
            }
            _ => {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text + &status
            }
        }
    }

    fn status(&self, out: &CommandOutput) -> String {
        match (out.outcome, out.status) {
            (Outcome::Exited, ExitStatus::Code(c)) => format!("[exit {c}]"),
            (Outcome::TimedOut, _) => format!("[timed out after {} s]", self.timeout.as_secs()),
            (Outcome::CpuLimit, _) => "[cpu time limit]".into(),
            (Outcome::OutputLimit, _) => "[output limit]".into(),
            (Outcome::FileSizeLimit, _) => "[file size limit]".into(),
            (_, ExitStatus::Signal(s) | ExitStatus::Code(s)) => format!("[killed by signal {s}]"),
        }
    }
}

/// `text` cut to about `max` bytes: its head and its tail around a `[...]` line.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let head = floor_boundary(text, max * 2 / 3);
    let tail_start = ceil_boundary(text, text.len() - max / 3);
    format!("{}\n[...]\n{}", &text[..head], &text[tail_start..])
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(outcome: Outcome, status: ExitStatus, stdout: &str, stderr: &str) -> CommandOutput {
        CommandOutput {
            outcome,
            status,
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            stdout_truncated: false,
            stderr_truncated: false,
            wall: Duration::from_millis(5),
        }
    }

    #[test]
    fn actions_become_commands_and_turns_run_out() {
        let mut ep = EpisodeCore::new(3, 100, Duration::from_secs(10));
        assert!(matches!(
            ep.act("<sh>ls</sh>"),
            Next::Run { kind: CommandKind::Shell, ref argv } if argv[2] == "ls"
        ));
        assert!(matches!(
            ep.act("<edit a.py:2>x => y</edit>"),
            Next::Run {
                kind: CommandKind::Edit,
                ..
            }
        ));
        assert!(!ep.out_of_turns());
        assert!(matches!(ep.act("hello"), Next::Observe(o) if o.starts_with("error:")));
        assert!(ep.out_of_turns());
        assert_eq!(ep.turns(), 3);
        assert_eq!(
            EpisodeCore::new(3, 100, Duration::ZERO).act("<submit/>"),
            Next::Submit
        );
    }

    #[test]
    fn observations_show_output_and_status() {
        let ep = EpisodeCore::new(5, 40, Duration::from_secs(10));
        let code = |c| ExitStatus::Code(c);
        assert_eq!(
            ep.observe(
                CommandKind::Shell,
                &output(Outcome::Exited, code(0), "a.py:2:x\n", "")
            ),
            "a.py:2:x\n[exit 0]"
        );
        assert_eq!(
            ep.observe(
                CommandKind::Shell,
                &output(Outcome::Exited, code(1), "", "")
            ),
            "[exit 1]"
        );
        assert_eq!(
            ep.observe(
                CommandKind::Shell,
                &output(Outcome::TimedOut, code(137), "x", "")
            ),
            "x\n[timed out after 10 s]"
        );
        assert_eq!(
            ep.observe(
                CommandKind::Shell,
                &output(Outcome::Signalled, ExitStatus::Signal(9), "", "")
            ),
            "[killed by signal 9]"
        );
        assert_eq!(
            ep.observe(
                CommandKind::Edit,
                &output(Outcome::Exited, code(0), "a.py:2:y\n", "")
            ),
            "a.py:2:y"
        );
        let long = "x".repeat(100);
        let seen = ep.observe(
            CommandKind::Shell,
            &output(Outcome::Exited, code(0), &long, ""),
        );
        assert!(seen.contains("[...]") && seen.len() < 70, "{seen}");
    }

    #[test]
    fn clipping_respects_utf8() {
        let s = "é".repeat(50);
        let c = clip(&s, 11);
        assert!(c.contains("[...]"));
        assert!(c.len() <= 11 + 2 + 7);
    }
}
