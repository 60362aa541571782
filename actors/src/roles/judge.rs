//! Judge: scores finished trajectories with the reward `[judge]` configures and routes
//! them: training episodes to the replay buffer, evaluation episodes to the coordinator.
//!
//! Code-fixing episodes are judged by their hidden tests ([`troupe_env::codefix`]), run in
//! a sandbox: the `tests` component is 1 when every hidden test passes, else 0, and the
//! reward's breakdown carries the verdict (`solved`, `failed`, `no_tests`,
//! `tests_modified`, `timeout`, ...). The digit and tool tasks are checked by the rule, and
//! their breakdown adds the tool-use diagnostics of [`troupe_env::score`].
//!
//! Without an LLM component or hidden tests the reward is computed in the handler (the
//! verifier takes microseconds). With either, each trajectory is scored in a task of its
//! own so the mailbox never waits on the network: the LLM
//! client's `max_concurrency` bounds the calls in flight, and a finished task sends its
//! result back as [`JudgeMsg::Scored`], so forwarding — and any failure to forward —
//! happens in the actor, under its supervisor.
//!
//! A trajectory that cannot be scored (a malformed verdict, the budget, a timeout or
//! HTTP error after retries) is forwarded with [`Reward::judge_error`]: the buffer drops
//! its group and counts it, evaluation leaves it out of pass@1, and the judge's counters
//! (sent to the coordinator for `metrics.jsonl` and the summary) say what went wrong.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinSet;
use troupe_core::{Purpose, Reward, ScoredTrajectory, Trajectory};
use troupe_env::codefix::{CodefixConfig, CodefixJudge, TaskKey, Verdict};
use troupe_judge::{JudgeConfig, Scorer, TestOutcome, Unscored};

use crate::messages::{BufferMsg, CoordinatorMsg, JudgeMsg};
use crate::remote::{self, group};
use crate::roles::one;

/// Shortest interval between two counter reports to the coordinator.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// The judge actor.
#[derive(Debug)]
pub struct Judge;

/// What a judge is started with.
#[derive(Debug, Clone)]
pub struct JudgeArgs {
    /// The `[judge]` table.
    pub config: JudgeConfig,
    /// The code-fixing environment's settings, when the run poses code-fixing tasks.
    pub codefix: Option<CodefixConfig>,
}

/// A judge's state.
#[derive(Debug)]
pub struct JudgeState {
    scorer: Arc<Scorer>,
    /// The hidden-test runner (a warm sandbox pool), in a code-fixing run.
    codefix: Option<Arc<CodefixJudge>>,
    /// Random per start: tells this judge's counters from other judges' (and from an
    /// earlier incarnation's) at the coordinator.
    instance: u64,
    /// Trajectories being scored by the LLM judge.
    scoring: JoinSet<()>,
    last_report: Option<Instant>,
}

/// The trajectory with its reward, or marked as a judge error. A scored reward gets
/// `extra` breakdown entries it does not already have (diagnostics, the hidden tests'
/// verdict): they never change the total.
fn scored(
    trajectory: Trajectory,
    reward: Result<Reward, Unscored>,
    extra: Vec<(String, f32)>,
) -> ScoredTrajectory {
    let reward = match reward {
        Ok(mut r) => {
            for (name, value) in extra {
                if !r.breakdown.iter().any(|(n, _)| *n == name) {
                    r.breakdown.push((name, value));
                }
            }
            r
        }
        Err(u) => Reward::judge_error(&u.component.to_string()),
    };
    ScoredTrajectory { trajectory, reward }
}

/// The `tests` component of a code-fixing verdict: all or nothing (a repository whose
/// bug is left alone still passes most of its hidden tests, so a pass fraction would
/// pay for doing nothing); the integrity cases earn 0.
fn test_outcome(verdict: Verdict) -> TestOutcome {
    TestOutcome {
        passed: u32::from(verdict == Verdict::Solved),
        total: 1,
    }
}

/// Judges a code-fixing trajectory: hidden tests in a sandbox, then the reward's
/// components. A sandbox that cannot run the tests is a judge error (the group is
/// dropped and counted), never a zero.
async fn score_codefix(
    scorer: &Scorer,
    tests: &CodefixJudge,
    trajectory: Trajectory,
) -> ScoredTrajectory {
    match tests.verdict(&trajectory.task, &trajectory.response).await {
        Ok(verdict) => {
            let reward = scorer
                .score(
                    &trajectory.task,
                    &trajectory.response,
                    Some(test_outcome(verdict)),
                )
                .await;
            scored(trajectory, reward, verdict.reward().breakdown)
        }
        Err(e) => {
            tracing::warn!(trajectory = trajectory.id, error = %e, "hidden tests could not run");
            ScoredTrajectory {
                trajectory,
                reward: Reward::judge_error("tests"),
            }
        }
    }
}

impl JudgeState {
    /// Sends a scored trajectory on. Without a buffer or coordinator (the head is away)
    /// it is dropped with a warning: the coordinator hands its unit out again.
    fn forward(&mut self, scored: Box<ScoredTrajectory>) -> Result<(), ActorProcessingErr> {
        let id = scored.trajectory.id;
        let sent = match scored.trajectory.purpose {
            Purpose::Train { .. } => {
                one::<BufferMsg>(group::BUFFER).and_then(|b| Ok(b.cast(BufferMsg::Insert(scored))?))
            }
            Purpose::Eval { .. } => one::<CoordinatorMsg>(group::COORDINATOR)
                .and_then(|c| Ok(c.cast(CoordinatorMsg::EvalResult(scored))?)),
        };
        if let Err(e) = sent {
            tracing::warn!(trajectory = id, error = %e, "scored trajectory dropped");
        }
        Ok(())
    }

    /// Sends the counters to the coordinator, at most every [`REPORT_EVERY`].
    fn report(&mut self) {
        if self.last_report.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.last_report = Some(Instant::now());
        if let Some(c) = remote::members::<CoordinatorMsg>(group::COORDINATOR).first() {
            let _ = c.cast(CoordinatorMsg::JudgeStats {
                judge: self.instance,
                stats: Box::new(self.scorer.stats()),
            });
        }
    }

    /// Collects finished scoring tasks; a task that panicked fails the actor.
    fn reap(&mut self) -> Result<(), ActorProcessingErr> {
        while let Some(done) = self.scoring.try_join_next() {
            done?;
        }
        Ok(())
    }
}

impl Actor for Judge {
    type Msg = JudgeMsg;
    type State = JudgeState;
    type Arguments = JudgeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: JudgeArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Reads the API key from its environment variable: a missing key stops the
        // judge here, with the variable's name, before any trajectory is lost.
        let scorer = Arc::new(Scorer::new(&args.config)?);
        let codefix = match &args.codefix {
            Some(cfg) => Some(Arc::new(CodefixJudge::new(cfg).await?)),
            None => None,
        };
        remote::join(group::JUDGE, myself.get_cell());
        Ok(JudgeState {
            scorer,
            codefix,
            instance: rand::random(),
            scoring: JoinSet::new(),
            last_report: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            JudgeMsg::Score(trajectory) => {
                let t = *trajectory;
                if TaskKey::of_task(&t.task).is_some() {
                    let tests = state.codefix.clone().ok_or(
                        "a code-fixing trajectory, but this run's [task] family is not \"codefix\"",
                    )?;
                    let scorer = state.scorer.clone();
                    state.scoring.spawn(async move {
                        let s = score_codefix(&scorer, &tests, t).await;
                        // Fails only when the judge has stopped (end of the run).
                        let _ = myself.cast(JudgeMsg::Scored(Box::new(s)));
                    });
                } else {
                    let diagnostics = troupe_env::score(&t).breakdown;
                    match state.scorer.score_now(&t.task, &t.response, None) {
                        Some(reward) => state.forward(Box::new(scored(t, reward, diagnostics)))?,
                        None => {
                            let scorer = state.scorer.clone();
                            state.scoring.spawn(async move {
                                let reward = scorer.score(&t.task, &t.response, None).await;
                                let s = scored(t, reward, diagnostics);
                                let _ = myself.cast(JudgeMsg::Scored(Box::new(s)));
                            });
                        }
                    }
                }
                state.reap()?;
            }
            JudgeMsg::Scored(s) => {
                state.forward(s)?;
                state.report();
                state.reap()?;
            }
            JudgeMsg::Stats(reply) => {
                let _ = reply.send((state.instance, state.scorer.stats()));
            }
        }
        Ok(())
    }
}
