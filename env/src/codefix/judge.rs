//! The hidden-test judge: after the episode, outside the agent's view, the task's
//! repository is regenerated from its key, the submitted diff is applied and the hidden
//! tests run, all in a sandbox with a time limit.

use std::sync::Arc;

use tempfile::TempDir;
use troupe_core::{Reward, TaskSpec};
use troupe_sandbox::SandboxPool;

use super::CodefixConfig;
use super::commands::{self, DIFF_FILE};
use super::host::{work_root, write_files};
use super::task::{TaskKey, generate};
use super::verdict::{Verdict, judge_run, touches_tests};
use crate::EnvError;

/// Scores code-fixing episodes with their hidden tests, with its own warm sandboxes.
#[derive(Debug, Clone)]
pub struct CodefixJudge {
    pool: SandboxPool,
    root: Arc<TempDir>,
}

impl CodefixJudge {
    /// A judge with `cfg.sandboxes` warm sandboxes under `cfg.judge_policy()`.
    pub async fn new(cfg: &CodefixConfig) -> Result<Self, EnvError> {
        cfg.validate()?;
        Ok(Self {
            pool: SandboxPool::new(cfg.judge_policy(), cfg.sandboxes).await?,
            root: Arc::new(work_root("troupe-judge-")?),
        })
    }

    /// The reward of `submission` (the episode's diff) for `task`.
    pub async fn judge(&self, task: &TaskSpec, submission: &str) -> Result<Reward, EnvError> {
        Ok(self.verdict(task, submission).await?.reward())
    }

    /// What the hidden tests say of `submission` (a diff) for `task`.
    pub async fn verdict(&self, task: &TaskSpec, submission: &str) -> Result<Verdict, EnvError> {
        judge(&self.pool, &self.root, task, submission).await
    }
}

/// Judges `submission` for `task` with sandboxes from `pool`, working under `root`:
///
/// 1. a submission that is not a diff (the episode was cut off before the env host
///    produced one) is [`Verdict::NoSubmission`];
/// 2. a diff touching a test file is [`Verdict::TestsModified`], nothing is run;
/// 3. the repository is regenerated from the task key and the diff applied with
///    `git apply` in the sandbox; a diff that does not apply is [`Verdict::BadDiff`];
/// 4. the hidden tests run in the sandbox ([`judge_run`]): solved, failed, no tests
///    reported, or timed out.
///
/// Errors are the judge's own failures (the sandbox could not run), never the agent's.
pub async fn judge(
    pool: &SandboxPool,
    root: &TempDir,
    task: &TaskSpec,
    submission: &str,
) -> Result<Verdict, EnvError> {
    let key = TaskKey::parse(&task.answer)?;
    let generated = generate(key);
    if !submission.is_empty() && !submission.starts_with("diff --git ") {
        return Ok(Verdict::NoSubmission);
    }
    if touches_tests(submission, &generated.visible_tests) {
        return Ok(Verdict::TestsModified);
    }
    let repo = tempfile::Builder::new()
        .prefix("judged-")
        .tempdir_in(root.path())
        .map_err(|source| EnvError::Io {
            path: root.path().to_path_buf(),
            source,
        })?;
    write_files(repo.path(), &generated.files)?;
    let mut sandbox = pool.take().await;
    if !submission.is_empty() {
        let path = repo.path().join(DIFF_FILE);
        std::fs::write(&path, submission).map_err(|source| EnvError::Io { path, source })?;
        let applied = sandbox.run(&commands::apply(), repo.path()).await?;
        if !applied.success() {
            return Ok(Verdict::BadDiff);
        }
    }
    let mount = pool_mount();
    let out = sandbox
        .run(
            &commands::hidden(&mount, &generated.hidden_tests),
            repo.path(),
        )
        .await?;
    Ok(judge_run(&out, generated.hidden_test_count as u32))
}

/// Where the repository appears inside the sandbox (the codefix policies keep the default).
fn pool_mount() -> String {
    troupe_sandbox::SandboxPolicy::default()
        .repo_mount
        .display()
        .to_string()
}
