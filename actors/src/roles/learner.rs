//! Learner: runs the SFT warm start, then pulls RL batches from the replay buffer,
//! trains, publishes each new version and checkpoints on schedule.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, call};
use troupe_learner::{Learner, LearnerConfig, SftExample, checkpoint};
use troupe_model::ModelConfig;
use troupe_model::device::DeviceName;

use crate::messages::{BufferMsg, CoordinatorMsg, LearnerMsg, StepReport};
use crate::remote::group;
use crate::roles::one;
use crate::weights::WeightStore;

/// The learner actor.
#[derive(Debug)]
pub struct LearnerActor;

/// What the learner needs.
#[derive(Debug, Clone)]
pub struct LearnerArgs {
    /// Model shape.
    pub model: ModelConfig,
    /// Optimizer and loss settings.
    pub learner: LearnerConfig,
    /// Seed for initial weights and SFT batch order.
    pub seed: u64,
    /// Run directory (checkpoints go under `checkpoints/`).
    pub run_dir: PathBuf,
    /// Resume from this checkpoint directory.
    pub resume: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Where samplers decode (`run.sampler_device`): publications are made there when it
    /// is the learner's own GPU, in host memory otherwise.
    pub sampler_device: String,
    /// SFT steps and batch size.
    pub sft_steps: u64,
    /// Conversations per SFT step.
    pub sft_batch: usize,
    /// Checkpoint every this many RL steps (0: only at phase ends).
    pub checkpoint_every: u64,
    /// Staleness histogram buckets (the last one collects everything older).
    pub staleness_buckets: usize,
    /// Where new weights go.
    pub weights: WeightStore,
}

/// Learner state.
#[derive(Debug)]
pub struct LearnerActorState {
    args: LearnerArgs,
    learner: Learner,
    /// Where publications are made.
    publish_on: candle_core::Device,
    target_steps: u64,
    waiting_since: Option<Instant>,
}

impl LearnerActorState {
    fn publish(&self) -> Result<(), ActorProcessingErr> {
        self.args.weights.publish(
            self.learner.publication(),
            self.learner.version(),
            self.learner.snapshot_on(&self.publish_on)?,
        );
        Ok(())
    }

    fn checkpoint(&self) -> Result<PathBuf, ActorProcessingErr> {
        let dir = checkpoint::checkpoint_dir(&self.args.run_dir, self.learner.steps());
        std::fs::create_dir_all(dir.parent().unwrap_or(&self.args.run_dir))?;
        self.learner.save(&dir)?;
        checkpoint::mark_latest(&self.args.run_dir, &dir)?;
        Ok(dir)
    }

    fn sft(&mut self, examples: &[SftExample]) -> Result<(), ActorProcessingErr> {
        if examples.is_empty() {
            return Err("no seed trajectories to warm-start on".into());
        }
        for step in 0..self.args.sft_steps {
            let batch = self.learner.draw(examples, self.args.sft_batch);
            let loss = self.learner.sft_step(&batch)?;
            if step % 5 == 4 || step + 1 == self.args.sft_steps {
                one::<CoordinatorMsg>(group::COORDINATOR)?.cast(CoordinatorMsg::SftProgress {
                    step: step + 1,
                    loss,
                })?;
            }
        }
        self.learner.finish_sft();
        self.checkpoint()?;
        self.publish()?;
        one::<CoordinatorMsg>(group::COORDINATOR)?.cast(CoordinatorMsg::SftDone {
            publication: self.learner.publication(),
        })?;
        Ok(())
    }

    async fn next(&mut self, myself: &ActorRef<LearnerMsg>) -> Result<(), ActorProcessingErr> {
        let step = self.learner.rl_steps();
        if step >= self.target_steps {
            return Ok(());
        }
        let version = self.learner.version();
        let waiting = *self.waiting_since.get_or_insert_with(Instant::now);
        let Some(batch) = call!(
            one::<BufferMsg>(group::BUFFER)?,
            BufferMsg::TakeBatch,
            step,
            version.0
        )?
        else {
            myself.send_after(Duration::from_millis(2), || LearnerMsg::Next);
            return Ok(());
        };
        let wait_seconds = waiting.elapsed().as_secs_f64();
        self.waiting_since = None;
        let started = Instant::now();
        let buckets = self.args.staleness_buckets.max(1);
        let mut hist = vec![0u64; buckets];
        for g in &batch.groups {
            for m in &g.members {
                let s = m
                    .trajectory
                    .oldest_version()
                    .map_or(0, |v| v.staleness(version)) as usize;
                hist[s.min(buckets - 1)] += 1;
            }
        }
        let best_trajectory = batch.best_trajectory().cloned();
        let fill = batch.fill;
        let groups: Vec<_> = batch.groups.into_iter().map(|g| g.members).collect();
        let mut report = StepReport {
            rl_step: step + 1,
            version: version.0,
            publication: 0,
            loss: 0.0,
            // Over the trajectories that have a reward (judge errors have none).
            mean_reward: if batch.taken > batch.unscored {
                (batch.reward_sum / (batch.taken - batch.unscored) as f64) as f32
            } else {
                0.0
            },
            trained: 0,
            trained_tokens: 0,
            dropped_stale: batch.dropped_stale,
            filtered_zero_signal: batch.filtered_zero_signal,
            dropped_judge_error: batch.dropped_judge_error,
            staleness_histogram: hist,
            wait_seconds,
            train_seconds: 0.0,
            grad_norm: 0.0,
            clip_fraction: 0.0,
            approx_kl: 0.0,
            logprob_gap: 0.0,
            tis_truncated: 0.0,
            reward_parts: batch.reward_parts,
            buffer: fill,
            publish_seconds: 0.0,
            best_trajectory,
        };
        if groups.is_empty() {
            self.learner.skip_rl_step();
        } else {
            let stats = tokio::task::block_in_place(|| self.learner.rl_step(&groups))?;
            report.loss = stats.loss;
            report.trained = stats.trajectories as u64;
            report.trained_tokens = stats.tokens as u64;
            report.grad_norm = stats.grad_norm;
            report.clip_fraction = stats.pg.clip_fraction;
            report.approx_kl = stats.pg.approx_kl;
            report.logprob_gap = stats.pg.logprob_gap;
            report.tis_truncated = stats.pg.tis_truncated;
        }
        report.train_seconds = started.elapsed().as_secs_f64();
        report.version = self.learner.version().0;
        report.publication = self.learner.publication();
        let publishing = Instant::now();
        self.publish()?;
        report.publish_seconds = publishing.elapsed().as_secs_f64();
        let done = self.learner.rl_steps();
        let every = self.args.checkpoint_every;
        if done == self.target_steps || (every > 0 && done.is_multiple_of(every)) {
            self.checkpoint()?;
            // The buffer may compact its log now: a resume from this checkpoint will
            // not need the takes before it undone.
            one::<BufferMsg>(group::BUFFER)?.cast(BufferMsg::Checkpointed(done))?;
        }
        one::<CoordinatorMsg>(group::COORDINATOR)?
            .cast(CoordinatorMsg::Stepped(Box::new(report)))?;
        myself.cast(LearnerMsg::Next)?;
        Ok(())
    }
}

impl Actor for LearnerActor {
    type Msg = LearnerMsg;
    type State = LearnerActorState;
    type Arguments = LearnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: LearnerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        crate::remote::join(group::LEARNER, myself.get_cell());
        let learner = match &args.resume {
            Some(dir) => Learner::load(&args.model, args.learner.clone(), dir)?,
            None => Learner::new(&args.model, args.learner.clone(), args.seed)?,
        };
        let device = DeviceName::parse(&args.device)?;
        let learner = match device {
            DeviceName::Cpu => learner,
            gpu => learner.to_device(&gpu.open()?)?,
        };
        // Publications go where the samplers decode when that is this GPU; else to host.
        let publish_on =
            if device != DeviceName::Cpu && DeviceName::parse(&args.sampler_device)? == device {
                learner.device()
            } else {
                candle_core::Device::Cpu
            };
        let state = LearnerActorState {
            args,
            learner,
            publish_on,
            target_steps: 0,
            waiting_since: None,
        };
        state.publish()?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LearnerMsg::RunSft(examples) => tokio::task::block_in_place(|| state.sft(&examples))?,
            LearnerMsg::RunRl { steps } => {
                state.target_steps = steps;
                myself.cast(LearnerMsg::Next)?;
            }
            LearnerMsg::Next => state.next(&myself).await?,
        }
        Ok(())
    }
}
