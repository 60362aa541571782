//! The expert: a scripted solver standing in for a stronger model. It reads the issue and
//! the observations — never the hidden fix — and takes the shortest path: find the faulty
//! line with `git grep -n`, edit it, submit. (It does not run the visible tests: each
//! turn costs the small policy a generation over its whole context, and the edit's
//! observation already shows the corrected line. The tests are there for any policy
//! that wants them: `<sh>python3 -m unittest -q</sh>`.) Its episodes run against a real
//! [`CodefixHost`], so seed trajectories hold real observations.

use std::io::Write;
use std::path::Path;

use super::action::Action;
use super::host::CodefixHost;
use crate::{EnvError, Role, TaskSource};

/// Which step the expert is at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Locate,
    Edit,
    Submit,
}

/// The scripted expert for one episode.
#[derive(Debug, Clone)]
pub struct Expert {
    fix: Option<(String, String)>,
    stage: Stage,
}

impl Expert {
    /// An expert for the episode whose issue is `issue`.
    pub fn new(issue: &str) -> Self {
        let fix = issue.lines().find_map(|l| {
            let rest = l.strip_prefix("Fix: `")?;
            let (buggy, rest) = rest.split_once("` should be `")?;
            Some((buggy.to_string(), rest.strip_suffix("`.")?.to_string()))
        });
        Self {
            fix,
            stage: Stage::Locate,
        }
    }

    /// The next action, given the last observation.
    pub fn act(&mut self, observation: &str) -> String {
        let action = match (&self.stage, &self.fix) {
            (Stage::Locate, Some((buggy, _))) => {
                self.stage = Stage::Edit;
                Action::Shell(format!("git grep -nF '{buggy}'"))
            }
            (Stage::Edit, Some((buggy, correct))) => match grep_hit(observation) {
                Some((file, line)) => {
                    self.stage = Stage::Submit;
                    Action::Edit {
                        file,
                        line,
                        old: buggy.clone(),
                        new: correct.clone(),
                    }
                }
                None => Action::Submit,
            },
            _ => Action::Submit,
        };
        action.to_string()
    }
}

/// `FILE:LINE` of the first line of `git grep -n` output.
fn grep_hit(observation: &str) -> Option<(String, usize)> {
    let first = observation.lines().next()?;
    let (file, rest) = first.split_once(':')?;
    let (line, _) = rest.split_once(':')?;
    Some((file.to_string(), line.parse().ok()?))
}

/// Runs the expert on `task` as episode `episode` of `host`; returns the conversation
/// (observations as user turns, the way samplers feed them to the policy) and the diff.
pub async fn expert_episode(
    host: &CodefixHost,
    episode: u64,
    task: &troupe_core::TaskSpec,
) -> Result<(Vec<(Role, String)>, String), EnvError> {
    let issue = host.reset(episode, task).await?;
    let mut expert = Expert::new(&issue);
    let mut turns = vec![(Role::User, issue)];
    let mut observation = String::new();
    loop {
        let action = expert.act(&observation);
        turns.push((Role::Assistant, action.clone()));
        let out = host.step(episode, &action).await?;
        match out.observation {
            Some(o) if !out.done => {
                turns.push((Role::User, o.text.clone()));
                observation = o.text;
            }
            _ => return Ok((turns, out.submission.unwrap_or_default())),
        }
    }
}

/// Writes `n` expert episodes on training tasks from `source` to `path` as chat JSONL,
/// running up to `parallel` episodes at once on `host`.
pub async fn write_expert_seeds(
    path: &Path,
    source: &mut TaskSource,
    n: usize,
    host: &CodefixHost,
    parallel: usize,
) -> Result<(), EnvError> {
    let io = |source| EnvError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    let tasks: Vec<_> = (0..n).map(|_| source.next_train()).collect();
    for (c, chunk) in tasks.chunks(parallel.max(1)).enumerate() {
        let mut set = tokio::task::JoinSet::new();
        for (i, task) in chunk.iter().enumerate() {
            let (host, task) = (host.clone(), task.clone());
            let episode = (1 << 63) | (c * parallel + i) as u64;
            set.spawn(async move { (i, expert_episode(&host, episode, &task).await) });
        }
        let mut done = Vec::with_capacity(chunk.len());
        while let Some(joined) = set.join_next().await {
            let (i, result) = joined.map_err(|e| EnvError::Setup {
                what: "expert episode task",
                output: e.to_string(),
            })?;
            done.push((i, result?.0));
        }
        done.sort_by_key(|(i, _)| *i);
        for (_, turns) in done {
            let messages: Vec<_> = turns
                .iter()
                .map(|(role, content)| serde_json::json!({"role": role.as_str(), "content": content}))
                .collect();
            writeln!(w, "{}", serde_json::json!({ "messages": messages })).map_err(io)?;
        }
    }
    w.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expert_follows_the_issue_and_the_grep_output() {
        let issue = "Bug: area(3, 4) returns 7, expected 12.\nFix: `w + h` should be `w * h`.";
        let mut e = Expert::new(issue);
        assert_eq!(e.act(""), "<sh>git grep -nF 'w + h'</sh>");
        assert_eq!(
            e.act("geometry.py:2:    return w + h\n[exit 0]"),
            "<edit geometry.py:2>w + h => w * h</edit>"
        );
        assert_eq!(e.act("geometry.py:2:    return w * h"), "<submit/>");
        // Nothing found, or an issue it cannot read: it submits.
        let mut lost = Expert::new(issue);
        lost.act("");
        assert_eq!(lost.act("[exit 1]"), "<submit/>");
        assert_eq!(Expert::new("no fix line").act(""), "<submit/>");
    }
}
