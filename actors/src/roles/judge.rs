//! Judge: scores finished trajectories with the reward `[judge]` configures and routes
//! them: training episodes to the replay buffer, evaluation episodes to the coordinator.
//!
//! Without an LLM component the reward is computed in the handler (the verifier takes
//! microseconds), exactly as before judges could call models. With one, each trajectory
//! is scored in a task of its own so the mailbox never waits on the network: the LLM
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
use troupe_judge::{JudgeConfig, Scorer, Unscored};

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
}

/// A judge's state.
#[derive(Debug)]
pub struct JudgeState {
    scorer: Arc<Scorer>,
    /// Random per start: tells this judge's counters from other judges' (and from an
    /// earlier incarnation's) at the coordinator.
    instance: u64,
    /// Trajectories being scored by the LLM judge.
    scoring: JoinSet<()>,
    last_report: Option<Instant>,
}

/// The trajectory with its reward, or marked as a judge error.
fn scored(trajectory: Trajectory, reward: Result<Reward, Unscored>) -> ScoredTrajectory {
    let reward = reward.unwrap_or_else(|u| Reward::judge_error(&u.component.to_string()));
    ScoredTrajectory { trajectory, reward }
}

impl JudgeState {
    fn forward(&mut self, scored: Box<ScoredTrajectory>) -> Result<(), ActorProcessingErr> {
        match scored.trajectory.purpose {
            Purpose::Train { .. } => {
                one::<BufferMsg>(group::BUFFER)?.cast(BufferMsg::Insert(scored))?
            }
            Purpose::Eval { .. } => one::<CoordinatorMsg>(group::COORDINATOR)?
                .cast(CoordinatorMsg::EvalResult(scored))?,
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
        remote::join(group::JUDGE, myself.get_cell());
        Ok(JudgeState {
            scorer,
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
                match state.scorer.score_now(&t.task, &t.response, None) {
                    Some(reward) => state.forward(Box::new(scored(t, reward)))?,
                    None => {
                        let scorer = state.scorer.clone();
                        state.scoring.spawn(async move {
                            let reward = scorer.score(&t.task, &t.response, None).await;
                            // Fails only when the judge has stopped (end of the run).
                            let _ = myself.cast(JudgeMsg::Scored(Box::new(scored(t, reward))));
                        });
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
