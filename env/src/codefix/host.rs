//! The env-host side of code fixing: each live episode owns a task repository on disk;
//! every command of every episode runs in a sandbox taken from a warm pool. Episodes
//! are independent, so an env host may drive many at once (`&self` methods, shared
//! state behind locks).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use troupe_core::{Author, TaskSpec};
use troupe_sandbox::{CommandOutput, SandboxPool};

use super::episode::{EpisodeCore, Next};
use super::task::{CodefixTask, RepoFile, TaskKey, generate};
use super::{CodefixConfig, commands};
use crate::{EnvError, Observation, StepOutcome};

/// Runs code-fixing episodes for an env host.
#[derive(Debug, Clone)]
pub struct CodefixHost {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: SandboxPool,
    cfg: CodefixConfig,
    capacity: usize,
    /// Parent of the episodes' repositories (searchable by the sandbox uids).
    root: TempDir,
    episodes: Mutex<HashMap<u64, Entry>>,
}

#[derive(Debug)]
enum Entry {
    /// Reserved while its repository is being set up.
    Starting,
    Live(Arc<tokio::sync::Mutex<Live>>),
}

#[derive(Debug)]
struct Live {
    repo: TempDir,
    core: EpisodeCore,
}

impl CodefixHost {
    /// A host running at most `capacity` episodes, with `cfg.sandboxes` warm sandboxes.
    pub async fn new(cfg: CodefixConfig, capacity: usize) -> Result<Self, EnvError> {
        cfg.validate()?;
        let pool = SandboxPool::new(cfg.agent_policy(), cfg.sandboxes).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                cfg,
                capacity,
                root: work_root("troupe-codefix-")?,
                episodes: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Whether `episode` is one of this host's (live or starting).
    pub fn has(&self, episode: u64) -> bool {
        self.episodes().contains_key(&episode)
    }

    /// Episodes live or starting.
    pub fn live(&self) -> usize {
        self.episodes().len()
    }

    fn episodes(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.inner
            .episodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts `episode` on `task`: writes its repository, commits it, and returns the
    /// issue text. Fails with [`EnvError::Full`] at capacity (back-pressure).
    pub async fn reset(&self, episode: u64, task: &TaskSpec) -> Result<String, EnvError> {
        let key = TaskKey::of_task(task).unwrap_or_else(|| {
            Err(EnvError::TaskKey {
                key: task.answer.chars().take(80).collect(),
                reason: "not a code-fixing task".into(),
            })
        })?;
        {
            let mut eps = self.episodes();
            if eps.contains_key(&episode) {
                return Err(EnvError::DuplicateEpisode { episode });
            }
            if eps.len() >= self.inner.capacity {
                return Err(EnvError::Full {
                    capacity: self.inner.capacity,
                });
            }
            eps.insert(episode, Entry::Starting);
        }
        match self.start(episode, key, task).await {
            Ok((live, issue)) => {
                self.episodes().insert(
                    episode,
                    Entry::Live(Arc::new(tokio::sync::Mutex::new(live))),
                );
                Ok(issue)
            }
            Err(e) => {
                self.episodes().remove(&episode);
                Err(e)
            }
        }
    }

    async fn start(
        &self,
        episode: u64,
        key: TaskKey,
        spec: &TaskSpec,
    ) -> Result<(Live, String), EnvError> {
        let task: CodefixTask = generate(key);
        if task.issue != spec.prompt {
            return Err(EnvError::TaskKey {
                key: spec.answer.clone(),
                reason: "the prompt is not this key's issue (generator versions differ?)".into(),
            });
        }
        let repo = tempfile::Builder::new()
            .prefix(&format!("ep{episode}-"))
            .tempdir_in(self.inner.root.path())
            .map_err(io(self.inner.root.path()))?;
        write_files(repo.path(), &task.files)?;
        let out = self.run(&commands::init_repo(), repo.path()).await?;
        if !out.success() {
            return Err(EnvError::Setup {
                what: "git init of the task repository",
                output: out.stderr_text(),
            });
        }
        let cfg = &self.inner.cfg;
        let core = EpisodeCore::new(
            cfg.max_turns,
            cfg.observation_bytes,
            Duration::from_millis(cfg.command_timeout_ms),
        );
        Ok((Live { repo, core }, task.issue))
    }

    /// Applies the policy's turn. When the episode ends (submitted, or out of turns) the
    /// outcome carries the repository's diff as the submission to judge.
    pub async fn step(&self, episode: u64, action: &str) -> Result<StepOutcome, EnvError> {
        let live = match self.episodes().get(&episode) {
            Some(Entry::Live(l)) => l.clone(),
            _ => return Err(EnvError::UnknownEpisode { episode }),
        };
        let mut ep = live.lock().await;
        let observation = match ep.core.act(action) {
            Next::Submit => None,
            Next::Observe(o) => Some(o),
            Next::Run { argv, kind } => match self.run(&argv, ep.repo.path()).await {
                Ok(out) => Some(ep.core.observe(kind, &out)),
                // The command could not be run (not: it failed, timed out or was
                // killed, which are outputs). The episode goes on; the host too.
                Err(e) => {
                    tracing::warn!(episode, error = %e, "sandbox error on an agent command");
                    Some(format!("[sandbox error: {e}]"))
                }
            },
        };
        match observation {
            Some(o) if !ep.core.out_of_turns() => Ok(StepOutcome {
                observation: Some(Observation {
                    author: Author::User,
                    text: o,
                }),
                done: false,
                submission: None,
            }),
            _ => {
                let diff = self.diff(episode, &ep.repo).await;
                drop(ep);
                self.episodes().remove(&episode);
                Ok(StepOutcome {
                    observation: None,
                    done: true,
                    submission: Some(diff?),
                })
            }
        }
    }

    /// Ends `episode` before the policy submitted (its context or turn budget is spent)
    /// and returns its diff, the submission to judge.
    pub async fn finish(&self, episode: u64) -> Result<String, EnvError> {
        let live = {
            let mut eps = self.episodes();
            match eps.get(&episode) {
                Some(Entry::Live(l)) => {
                    let l = l.clone();
                    eps.remove(&episode);
                    l
                }
                _ => return Err(EnvError::UnknownEpisode { episode }),
            }
        };
        let ep = live.lock().await;
        self.diff(episode, &ep.repo).await
    }

    /// The repository's changes as one diff (empty when git fails, e.g. the agent
    /// removed `.git`: nothing can be submitted then).
    async fn diff(&self, episode: u64, repo: &TempDir) -> Result<String, EnvError> {
        let out = self.run(&commands::diff(), repo.path()).await?;
        if !out.success() {
            tracing::debug!(episode, stderr = %out.stderr_text(), "git diff failed");
            return Ok(String::new());
        }
        Ok(out.stdout_text())
    }

    async fn run(&self, argv: &[String], repo: &Path) -> Result<CommandOutput, EnvError> {
        let mut sandbox = self.inner.pool.take().await;
        Ok(sandbox.run(argv, repo).await?)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EnvError + '_ {
    move |source| EnvError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A directory for task repositories that the unprivileged sandbox uids can traverse
/// (mode 0711: they can reach their own repository, not list the others).
pub(crate) fn work_root(prefix: &str) -> Result<TempDir, EnvError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(io(&std::env::temp_dir()))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
        .map_err(io(dir.path()))?;
    Ok(dir)
}

/// Writes the task's files (trusted content, generated here) under `dir`.
pub(crate) fn write_files(dir: &Path, files: &[RepoFile]) -> Result<(), EnvError> {
    for f in files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, &f.contents).map_err(io(&path))?;
    }
    Ok(())
}
