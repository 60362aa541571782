//! Coordinator: drives the phases (evaluate → SFT → evaluate → RL with periodic
//! evaluation → evaluate), hands out work, records metrics and supervises the roles.
//!
//! Work is never lost for good: a unit whose sampler failed, restarted or vanished is
//! handed out again at once, and every second the coordinator checks that the batch
//! the learner waits for, and each evaluation round, is still out with some sampler;
//! when none of it has been for `lost_work_seconds`, what never arrived (a judge or env
//! host went down with it) is handed out again. Results are idempotent by trajectory
//! id: the buffer drops duplicate trajectories, an evaluation round each task's second
//! result.
//!
//! `eval` holds the held-out rounds and their tally, `lost` the search for lost work.

mod eval;
mod lost;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use troupe_core::{Purpose, TaskSpec};
use troupe_learner::SftExample;

use self::eval::{Label, Round, SAMPLES_PER_EVAL};
use self::lost::TICK;
use crate::config::Roles;
use crate::messages::{BufferMsg, CoordinatorMsg, JudgeMsg, LearnerMsg, StepReport};
use crate::progress::Progress;
use crate::remote::group;
use crate::roles::one;
use crate::schedule::{Schedule, ScheduleConfig};
use crate::summary::{
    HeldoutSummary, RunState, Summary, Throughput, add_parts, eval_sample, write_json,
};

/// Where the run resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPoint {
    /// From scratch.
    Fresh,
    /// SFT is done; evaluate it, then RL.
    AfterSft,
    /// RL at this step, with the current weights published as `publication`.
    Rl {
        /// RL steps done.
        step: u64,
        /// The learner's publication index.
        publication: u64,
    },
}

/// How the caller learns the outcome.
pub type DoneSender = Arc<Mutex<Option<oneshot::Sender<Result<Summary, String>>>>>;

/// What the coordinator needs.
#[derive(Debug)]
pub struct CoordinatorArgs {
    /// Scheduler settings.
    pub schedule: ScheduleConfig,
    /// Run directory.
    pub run_dir: PathBuf,
    /// Held-out tasks.
    pub heldout: Vec<TaskSpec>,
    /// SFT warm-start examples.
    pub seed_examples: Vec<SftExample>,
    /// SFT steps (for progress).
    pub sft_steps: u64,
    /// Evaluate every this many RL steps (0: only at the end).
    pub eval_every: u64,
    /// Learner checkpoint cadence (run state is saved alongside).
    pub checkpoint_every: u64,
    /// Counters carried over from an earlier session.
    pub state: RunState,
    /// Where to start.
    pub start: StartPoint,
    /// Progress sink.
    pub progress: Arc<dyn Progress>,
    /// Completion channel.
    pub done: DoneSender,
    /// Roles that must have joined before the run starts.
    pub required: Roles,
    /// Whether the buffer's counts cover the whole run (it logs durably, or the run was
    /// never resumed); then the summary's trajectory accounting is the buffer's.
    pub buffer_accounting: bool,
    /// Whether judges call an LLM: then their counters go into every `metrics.jsonl`
    /// line and the summary.
    pub judge_metrics: bool,
    /// The live status the dashboard serves, when it is enabled.
    pub dashboard: Option<crate::dashboard::Dashboard>,
    /// Work out of sight this long is handed out again (`rl.lost_work_seconds`).
    pub lost_after: Duration,
}

/// What is still missing of `required`, in words, or `None` when every role is present.
fn missing_roles(required: &Roles) -> Option<String> {
    let count = |g: &str| ractor::pg::get_members(&g.to_string()).len() as u32;
    let need = [
        (
            "learner",
            count(group::LEARNER),
            u32::from(required.learner),
        ),
        (
            "replay buffer",
            count(group::BUFFER),
            u32::from(required.buffer),
        ),
        ("samplers", count(group::SAMPLER), required.samplers),
        ("env hosts", count(group::ENV_HOST), required.env_hosts),
        ("judges", count(group::JUDGE), required.judges),
    ];
    let missing: Vec<String> = need
        .iter()
        .filter(|(_, have, want)| have < want)
        .map(|(n, have, want)| format!("{n} ({have}/{want})"))
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Coordinator state.
#[derive(Debug)]
pub struct CoordinatorState {
    args: CoordinatorArgs,
    waiting_since: Option<Instant>,
    /// The publication each sampler last generated with.
    sampler_publication: std::collections::BTreeMap<u32, u64>,
    schedule: Schedule,
    rounds: HashMap<u32, Round>,
    next_round: u32,
    metrics: File,
    samples: File,
    started: Instant,
    rl_started: Option<(Instant, f64)>,
    last_version: u64,
    rl_steps: u64,
    /// The latest counters of each judge (by instance).
    judge_stats: std::collections::BTreeMap<u64, troupe_judge::JudgeStats>,
    /// The batch the learner waits for and since when none of it has been out with a
    /// sampler.
    batch_quiet: Option<(u64, Instant)>,
}

/// The coordinator actor.
#[derive(Debug)]
pub struct Coordinator;

impl CoordinatorState {
    /// A note for the log and the dashboard's event list.
    fn event(&self, line: String) {
        self.args.progress.note(&line);
        if let Some(d) = &self.args.dashboard {
            d.event(line);
        }
    }

    fn start_sft(&mut self) -> Result<(), ActorProcessingErr> {
        self.args
            .progress
            .phase("SFT warm start", self.args.sft_steps);
        let examples = std::mem::take(&mut self.args.seed_examples);
        one::<LearnerMsg>(group::LEARNER)?.cast(LearnerMsg::RunSft(examples))?;
        Ok(())
    }

    fn start_rl(&mut self, step: u64, publication: u64) -> Result<(), ActorProcessingErr> {
        let total = self.args.schedule.total_steps;
        self.rl_steps = step;
        if step >= total {
            self.evaluate(Label::Final, publication);
            return Ok(());
        }
        self.args.progress.phase("RL (async GRPO)", total);
        self.args.progress.advance(step, "");
        self.schedule.open_rl(step, publication);
        self.rl_started = Some((Instant::now(), self.args.state.rl_seconds));
        one::<LearnerMsg>(group::LEARNER)?.cast(LearnerMsg::RunRl { steps: total })?;
        Ok(())
    }

    fn rl_seconds(&self) -> f64 {
        self.rl_started
            .map_or(self.args.state.rl_seconds, |(t, before)| {
                before + t.elapsed().as_secs_f64()
            })
    }

    fn save_state(&mut self) -> Result<(), ActorProcessingErr> {
        let mut state = self.args.state.clone();
        state.rl_seconds = self.rl_seconds();
        write_json(&self.args.run_dir.join("run_state.json"), &state)?;
        Ok(())
    }

    fn on_step(&mut self, r: &StepReport) -> Result<(), ActorProcessingErr> {
        self.schedule.steps_done(r.rl_step);
        self.rl_steps = r.rl_step;
        self.last_version = r.version;
        let st = &mut self.args.state;
        st.trained_tokens += r.trained_tokens;
        st.trajectories.trained += r.trained;
        st.trajectories.dropped_stale += r.dropped_stale;
        st.trajectories.filtered_zero_signal += r.filtered_zero_signal;
        st.trajectories.dropped_judge_error += r.dropped_judge_error;
        add_parts(
            &mut st.reward_parts.rl,
            r.reward_parts.iter().map(|(k, v)| (k.as_str(), *v)),
        );
        let mut line = serde_json::json!({
            "step": r.rl_step,
            "version": r.version,
            "loss": r.loss,
            "mean_reward": r.mean_reward,
            "trained": r.trained,
            "trained_tokens": r.trained_tokens,
            "dropped_stale": r.dropped_stale,
            "filtered_zero_signal": r.filtered_zero_signal,
            "dropped_judge_error": r.dropped_judge_error,
            "staleness_histogram": r.staleness_histogram,
            "wait_seconds": r.wait_seconds,
            "train_seconds": r.train_seconds,
            "grad_norm": r.grad_norm,
            "clip_fraction": r.clip_fraction,
            "approx_kl": r.approx_kl,
            "logprob_gap": r.logprob_gap,
            "tis_truncated": r.tis_truncated,
            "buffer_pending": r.buffer.pending,
            "buffer_groups": r.buffer.groups,
            "buffer_capacity": r.buffer.capacity,
            "buffer_capacity_groups": r.buffer.capacity_groups,
            "publish_seconds": r.publish_seconds,
            "reward_parts": r
                .reward_parts
                .iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>(),
            "sampler_version_lag": self
                .sampler_publication
                .iter()
                .map(|(s, p)| (s.to_string(), r.publication.saturating_sub(*p)))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "wall_seconds": self.args.state.wall_seconds + self.started.elapsed().as_secs_f64(),
        });
        if self.args.judge_metrics {
            line["judge"] = serde_json::to_value(self.judge_totals().report())?;
        }
        writeln!(self.metrics, "{line}")?;
        if let Some(d) = &self.args.dashboard {
            d.counters(&self.args.state, r.version, r.rl_step);
            d.step(&line);
            if let Some(t) = &r.best_trajectory {
                d.trajectory(t, Some(r.rl_step));
            }
        }
        self.args.progress.advance(
            r.rl_step,
            &format!("reward {:.3} loss {:+.4}", r.mean_reward, r.loss),
        );
        let total = self.args.schedule.total_steps;
        let every = self.args.checkpoint_every;
        if r.rl_step == total || (every > 0 && r.rl_step.is_multiple_of(every)) {
            self.save_state()?;
        }
        if r.rl_step == total {
            self.args.state.rl_seconds = self.rl_seconds();
            self.rl_started = None;
            self.args
                .progress
                .finish_phase(&format!("{total} steps, policy {}", r.version));
            self.evaluate(Label::Final, r.publication);
        } else if self.args.eval_every > 0 && r.rl_step.is_multiple_of(self.args.eval_every) {
            self.evaluate(Label::During(r.rl_step), r.publication);
        }
        Ok(())
    }

    /// Every judge's latest counters, added up.
    fn judge_totals(&self) -> troupe_judge::JudgeStats {
        let mut total = troupe_judge::JudgeStats::default();
        for s in self.judge_stats.values() {
            total.merge(s);
        }
        total
    }

    /// Asks every judge for its counters now (a judge that does not answer within a
    /// few seconds keeps its last report).
    async fn refresh_judge_stats(&mut self) {
        for judge in crate::remote::members::<JudgeMsg>(group::JUDGE) {
            match ractor::call_t!(judge, JudgeMsg::Stats, 5_000) {
                Ok((instance, stats)) => {
                    self.judge_stats.insert(instance, stats);
                }
                Err(e) => tracing::warn!(error = %e, "a judge did not report its counters"),
            }
        }
    }

    /// The buffer's counts, once everything it was sent is durable.
    async fn buffer_counts(&self) -> Result<troupe_buffer::Counts, ActorProcessingErr> {
        Ok(ractor::call_t!(
            one::<BufferMsg>(group::BUFFER)?,
            BufferMsg::Counts,
            30_000
        )?)
    }

    async fn finish(&mut self) -> Result<(), ActorProcessingErr> {
        self.schedule.stop();
        let counts = if self.args.buffer_accounting {
            Some(self.buffer_counts().await?)
        } else {
            None
        };
        let st = &mut self.args.state;
        let t = &mut st.trajectories;
        match counts {
            // The buffer's counts are exact across resumes: a resend is a duplicate, and a
            // resumed buffer is rewound to the learner's checkpoint.
            Some(c) => {
                t.generated = c.inserted;
                t.trained = c.served;
                t.dropped_stale = c.dropped_stale;
                t.filtered_zero_signal = c.filtered_zero_signal;
                t.dropped_judge_error = c.dropped_judge_error;
                t.in_flight = c.pending;
                t.duplicates = c.duplicates;
            }
            None => {
                t.in_flight = t.generated.saturating_sub(
                    t.trained + t.dropped_stale + t.filtered_zero_signal + t.dropped_judge_error,
                );
            }
        }
        let judge = if self.args.judge_metrics {
            self.refresh_judge_stats().await;
            Some(self.judge_totals().report())
        } else {
            None
        };
        let st = &mut self.args.state;
        let wall = st.wall_seconds + self.started.elapsed().as_secs_f64();
        let rl = st.rl_seconds.max(1e-9);
        let h = &st.heldout;
        let summary = Summary {
            heldout: HeldoutSummary {
                initial: h.initial.unwrap_or(f32::NAN),
                after_sft: h.after_sft.unwrap_or(f32::NAN),
                after_rl: h.after_rl.unwrap_or(f32::NAN),
                during_rl: h.during_rl.clone(),
                breakdown: h.breakdown.clone(),
            },
            wall_seconds: wall,
            policy_version: self.last_version,
            rl_steps: self.rl_steps,
            trajectories: st.trajectories,
            throughput: Throughput {
                sampled_tokens_per_s: st.sampled_tokens as f64 / rl,
                trained_tokens_per_s: st.trained_tokens as f64 / rl,
            },
            rl_seconds: st.rl_seconds,
            seed: st.seed,
            run_dir: self.args.run_dir.display().to_string(),
            reward_parts: st.reward_parts.clone(),
            judge,
        };
        st.wall_seconds = wall;
        write_json(&self.args.run_dir.join("run_state.json"), &*st)?;
        write_json(&self.args.run_dir.join("summary.json"), &summary)?;
        self.complete(Ok(summary));
        Ok(())
    }

    fn complete(&self, outcome: Result<Summary, String>) {
        let sender = self
            .args
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(tx) = sender {
            let _ = tx.send(outcome);
        }
    }
}

impl Actor for Coordinator {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState;
    type Arguments = CoordinatorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: CoordinatorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        crate::remote::join(group::COORDINATOR, myself.get_cell());
        myself.send_after(TICK, || CoordinatorMsg::Tick);
        let path = args.run_dir.join("metrics.jsonl");
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let path = args.run_dir.join("eval_samples.jsonl");
        let samples = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(CoordinatorState {
            schedule: Schedule::new(args.schedule.clone()),
            args,
            waiting_since: None,
            sampler_publication: Default::default(),
            rounds: HashMap::new(),
            next_round: 0,
            metrics,
            samples,
            started: Instant::now(),
            rl_started: None,
            last_version: 0,
            rl_steps: 0,
            judge_stats: Default::default(),
            batch_quiet: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CoordinatorMsg::Start => {
                if let Some(missing) = missing_roles(&state.args.required) {
                    let since = *state.waiting_since.get_or_insert_with(Instant::now);
                    if since.elapsed().as_secs() >= 5 {
                        state.args.progress.note(&format!("waiting for {missing}"));
                        state.waiting_since = Some(Instant::now());
                    }
                    myself.send_after(std::time::Duration::from_millis(50), || {
                        CoordinatorMsg::Start
                    });
                    return Ok(());
                }
                match state.args.start {
                    StartPoint::Fresh => state.evaluate(Label::Initial, 0),
                    StartPoint::AfterSft => state.evaluate(Label::AfterSft, 1),
                    StartPoint::Rl { step, publication } => state.start_rl(step, publication)?,
                }
            }
            CoordinatorMsg::RequestWork(sampler, reply) => {
                let _ = reply.send(state.schedule.next_work(sampler));
            }
            CoordinatorMsg::Sampled {
                sampler,
                unit,
                publication,
                tokens,
                trajectories,
            } => {
                state.sampler_publication.insert(sampler, publication);
                // A unit is counted once, by whichever of its holders finishes it first.
                if state.schedule.done(unit) {
                    state.args.state.sampled_tokens += tokens;
                    state.args.state.trajectories.generated += trajectories;
                }
                if let Some(d) = &state.args.dashboard {
                    d.counters(&state.args.state, state.last_version, state.rl_steps);
                }
            }
            CoordinatorMsg::EvalResult(s) => {
                if let Some(d) = &state.args.dashboard {
                    d.trajectory(&s, None);
                }
                if let Purpose::Eval { round } = s.trajectory.purpose {
                    let task = s.trajectory.task.id;
                    if task < SAMPLES_PER_EVAL
                        && let Some(r) = state.rounds.get(&round)
                        && !r.seen.contains(&task)
                    {
                        writeln!(state.samples, "{}", eval_sample(&r.label.name(), &s))?;
                    }
                    state.on_eval(round, task, &s.reward).await?;
                }
            }
            CoordinatorMsg::EvalDone { unit, .. } => {
                state.schedule.done(unit);
            }
            CoordinatorMsg::WorkFailed {
                sampler,
                unit,
                reason,
            } => {
                if state.schedule.requeue(unit) {
                    state.event(format!(
                        "sampler {sampler} could not finish a unit ({reason}); handed out again"
                    ));
                }
            }
            CoordinatorMsg::SamplerUp(sampler) => {
                let n = state.schedule.requeue_sampler(sampler);
                if n > 0 {
                    state.event(format!(
                        "sampler {sampler} restarted; its {n} unit(s) handed out again"
                    ));
                }
            }
            CoordinatorMsg::Restarted {
                node,
                actor,
                restarts,
            } => {
                if let Some(d) = &state.args.dashboard {
                    d.restarted(&node, &actor, restarts);
                }
                state.event(format!("{node}: restarted {actor} (restart {restarts})"));
            }
            CoordinatorMsg::Tick => {
                state.find_lost_work().await;
                myself.send_after(TICK, || CoordinatorMsg::Tick);
            }
            CoordinatorMsg::SftProgress { step, loss } => {
                state
                    .args
                    .progress
                    .advance(step, &format!("loss {loss:.4}"));
            }
            CoordinatorMsg::SftDone { publication } => {
                state.args.progress.finish_phase("warm start done");
                state.evaluate(Label::AfterSft, publication);
            }
            CoordinatorMsg::Stepped(report) => state.on_step(&report)?,
            CoordinatorMsg::JudgeStats { judge, stats } => {
                state.judge_stats.insert(judge, *stats);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(who, err) = event {
            let name = who
                .get_name()
                .unwrap_or_else(|| format!("{:?}", who.get_id()));
            if let Some(d) = &state.args.dashboard {
                d.failed(name.clone(), err.to_string());
            }
            state.complete(Err(format!("actor {name} failed: {err}")));
        }
        Ok(())
    }
}
