//! Sampler: a policy replica. Pulls work from the coordinator, runs episodes against
//! env hosts (one message round per turn, so multi-turn environments fit), generates
//! all episodes of a work unit as one batch, and sends finished trajectories to judges.
//!
//! A unit that cannot finish (its env host or judge went away, the coordinator is
//! unreachable) is reported failed and handed out again by the coordinator; the sampler
//! itself carries on. `Retire` stops it after the unit in hand.

use std::time::Duration;

use futures_util::future::join_all;
use ractor::{Actor, ActorProcessingErr, ActorRef, call_t};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use troupe_core::{PolicyVersion, Purpose, TaskSpec};
use troupe_model::{ModelConfig, Transformer, config::SamplerWeights, tokenizer::ChatTokenizer};
use troupe_sampler::{
    SamplingParams,
    episode::{Appended, Episode},
    generate,
};

use crate::messages::{CoordinatorMsg, EnvHostMsg, JudgeMsg, SamplerMsg, Work};
use crate::remote::{group, members};
use crate::roles::{one, pick};
use crate::schedule::{EVAL_ID_BIT, mix};
use crate::weights::WeightStore;

/// Longest wait for an env host's reply to one call (a code-fixing step runs commands
/// in a sandbox, bounded by the sandbox's own time limit well below this).
const ENV_CALL_MS: u64 = 300_000;
/// Longest wait for the coordinator's reply to a request for work.
const COORDINATOR_CALL_MS: u64 = 10_000;
/// Pause before asking again after a unit failed or the coordinator was unreachable.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The sampler actor.
#[derive(Debug)]
pub struct Sampler;

/// What a sampler needs.
#[derive(Debug, Clone)]
pub struct SamplerArgs {
    /// Index among samplers.
    pub index: u32,
    /// Model shape.
    pub model: ModelConfig,
    /// The model's tokenizer and chat template.
    pub tokenizer: ChatTokenizer,
    /// Training sampling parameters (evaluation is greedy with the same token budget).
    pub params: SamplingParams,
    /// Most policy turns per episode (`task.max_turns`).
    pub max_turns: u32,
    /// Published weights.
    pub weights: WeightStore,
    /// Where the replica decodes (`run.sampler_device`); a GPU replica keeps f32 weights.
    pub device: candle_core::Device,
}

/// A sampler's state: its arguments and the replica it holds.
#[derive(Debug)]
pub struct SamplerState {
    args: SamplerArgs,
    replica: Option<(u64, PolicyVersion, Transformer)>,
}

struct Job {
    id: u64,
    task: TaskSpec,
    purpose: Purpose,
}

impl SamplerState {
    /// Makes the replica hold publication `index`, waiting briefly if it is not out yet.
    async fn load(&mut self, index: u64) -> Result<PolicyVersion, ActorProcessingErr> {
        if let Some((held, version, _)) = &self.replica
            && *held == index
        {
            return Ok(*version);
        }
        // Wait for the exact publication (reproducibility); if it was missed while newer
        // ones arrived, generate with the newest instead: trajectories record the version
        // they were generated with, so staleness accounting stays right.
        let store = &self.args.weights;
        for attempt in 0..6000 {
            let pick = match store.get(index) {
                Some(p) => Some((index, p)),
                None if attempt >= 1000 => store
                    .latest()
                    .filter(|&l| l > index)
                    .and_then(|l| store.get(l).map(|p| (l, p))),
                None => None,
            };
            if let Some((held, p)) = pick {
                if held != index {
                    tracing::warn!(
                        wanted = index,
                        used = held,
                        "weights publication missed; using a newer one"
                    );
                }
                // On the learner's GPU the publication is already there: loaded in place.
                let dev = &self.args.device;
                let format = if dev.is_cpu() {
                    self.args.model.sampler_weights
                } else {
                    SamplerWeights::F32
                };
                let model = Transformer::with_weights(
                    &self.args.model,
                    &p.weights.to_device(dev)?.to_map(),
                    format,
                )?;
                self.replica = Some((held, p.version, model));
                return Ok(p.version);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(format!("weights publication {index} never appeared").into())
    }

    /// Runs `jobs` to completion as one batch and hands the trajectories to judges.
    /// Returns the policy tokens generated.
    /// `sampling_seed: None` decodes greedily.
    ///
    /// Each turn generates for every live episode at once, then steps them all against
    /// their env hosts at once. An episode ends when its environment says so (with the
    /// environment's submission, if any, as the response the judge scores), when its
    /// next observation would leave less than `max_new_tokens` of context, or after
    /// `task.max_turns` turns; the last two are ended on the env host with `Finish`.
    async fn run(
        &mut self,
        jobs: Vec<Job>,
        sampling_seed: Option<u64>,
    ) -> Result<u64, ActorProcessingErr> {
        let a = &self.args;
        let env_hosts = members::<EnvHostMsg>(group::ENV_HOST);
        let judges = members::<JudgeMsg>(group::JUDGE);
        if env_hosts.is_empty() || judges.is_empty() {
            return Err("no env host or judge has joined".into());
        }
        let firsts = join_all(jobs.iter().map(|job| {
            let (host, id, task) = (pick(&env_hosts, job.id).clone(), job.id, job.task.clone());
            async move { call_t!(host, EnvHostMsg::Reset, ENV_CALL_MS, id, Box::new(task)) }
        }))
        .await;
        let mut episodes = Vec::with_capacity(jobs.len());
        for (job, first) in jobs.into_iter().zip(firsts) {
            let first = first?.map_err(|e| format!("env host refused episode {}: {e}", job.id))?;
            episodes.push((
                Episode::start(job.id, job.task, job.purpose, &first, a.tokenizer.clone()),
                false,
            ));
        }
        let params = if sampling_seed.is_none() {
            SamplingParams::greedy(a.params.max_new_tokens)
        } else {
            a.params
        };
        let mut rngs: Vec<ChaCha8Rng> = episodes
            .iter()
            .map(|(e, _)| ChaCha8Rng::seed_from_u64(mix(sampling_seed.unwrap_or(0), e.id())))
            .collect();
        let Some((_, version, model)) = &self.replica else {
            return Err("sampler has no weights".into());
        };
        let max_seq = a.model.max_seq;
        let mut tokens = 0u64;
        for _ in 0..a.max_turns {
            let live: Vec<usize> = (0..episodes.len()).filter(|&i| !episodes[i].1).collect();
            if live.is_empty() {
                break;
            }
            let prompts: Vec<Vec<u32>> = live
                .iter()
                .map(|&i| episodes[i].0.context().to_vec())
                .collect();
            let mut live_rngs: Vec<ChaCha8Rng> = live.iter().map(|&i| rngs[i].clone()).collect();
            let gens =
                tokio::task::block_in_place(|| generate(model, &prompts, &params, &mut live_rngs))?;
            let mut actions = Vec::with_capacity(live.len());
            for ((&i, g), r) in live.iter().zip(gens).zip(live_rngs) {
                rngs[i] = r;
                tokens += g.tokens.len() as u64;
                actions.push(episodes[i].0.push_generation(&g, *version));
            }
            let replies = join_all(live.iter().zip(actions).map(|(&i, action)| {
                let id = episodes[i].0.id();
                let host = pick(&env_hosts, id).clone();
                async move { call_t!(host, EnvHostMsg::Step, ENV_CALL_MS, id, action) }
            }))
            .await;
            let mut cut_off = Vec::new();
            for (&i, reply) in live.iter().zip(replies) {
                let (episode, done) = &mut episodes[i];
                let (observation, finished, submission) = reply?.map_err(|e| {
                    format!("env host step failed for episode {}: {e}", episode.id())
                })?;
                match observation {
                    Some((author, text)) if !finished => {
                        // Room for the observation and a whole next action, or the
                        // episode ends here (its environment still makes its submission).
                        let fits =
                            episode.observation_fits(author, &text, max_seq, params.max_new_tokens);
                        if !fits
                            || episode.push_observation(author, &text, max_seq)? == Appended::NoRoom
                        {
                            cut_off.push(i);
                        }
                    }
                    _ => {
                        *done = true;
                        if let Some(s) = submission {
                            episode.set_response(s);
                        }
                    }
                }
            }
            self.finish(&env_hosts, &mut episodes, &cut_off).await?;
        }
        let unfinished: Vec<usize> = (0..episodes.len()).filter(|&i| !episodes[i].1).collect();
        self.finish(&env_hosts, &mut episodes, &unfinished).await?;
        for (episode, _) in episodes {
            let trajectory = episode.finish();
            pick(&judges, trajectory.id).cast(JudgeMsg::Score(Box::new(trajectory)))?;
        }
        Ok(tokens)
    }

    /// Ends `which` episodes on their env hosts (the policy can act no more) and records
    /// the submissions the hosts make.
    async fn finish(
        &self,
        env_hosts: &[ActorRef<EnvHostMsg>],
        episodes: &mut [(Episode, bool)],
        which: &[usize],
    ) -> Result<(), ActorProcessingErr> {
        let replies = join_all(which.iter().map(|&i| {
            let id = episodes[i].0.id();
            let host = pick(env_hosts, id).clone();
            async move { call_t!(host, EnvHostMsg::Finish, ENV_CALL_MS, id) }
        }))
        .await;
        for (&i, reply) in which.iter().zip(replies) {
            let (episode, done) = &mut episodes[i];
            let submission = reply?
                .map_err(|e| format!("env host could not end episode {}: {e}", episode.id()))?;
            if let Some(s) = submission {
                episode.set_response(s);
            }
            *done = true;
        }
        Ok(())
    }
}

impl Actor for Sampler {
    type Msg = SamplerMsg;
    type State = SamplerState;
    type Arguments = SamplerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SamplerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        crate::remote::join(group::SAMPLER, myself.get_cell());
        // Whatever an earlier incarnation of this sampler held is handed out again.
        if let Ok(coordinator) = one::<CoordinatorMsg>(group::COORDINATOR) {
            let _ = coordinator.cast(CoordinatorMsg::SamplerUp(args.index));
        }
        myself.cast(SamplerMsg::Pull)?;
        Ok(SamplerState {
            args,
            replica: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SamplerMsg::Retire = msg {
            tracing::info!(sampler = state.args.index, "retiring");
            myself.stop(Some("retired".into()));
            return Ok(());
        }
        let Ok(coordinator) = one::<CoordinatorMsg>(group::COORDINATOR) else {
            myself.send_after(Duration::from_millis(50), || SamplerMsg::Pull);
            return Ok(());
        };
        let index = state.args.index;
        let work = match call_t!(
            coordinator,
            CoordinatorMsg::RequestWork,
            COORDINATOR_CALL_MS,
            index
        ) {
            Ok(work) => work,
            Err(e) => {
                tracing::warn!(sampler = index, error = %e, "no answer from the coordinator");
                myself.send_after(RETRY_AFTER, || SamplerMsg::Pull);
                return Ok(());
            }
        };
        let unit = match &work {
            Work::Train(u) => u.unit,
            Work::Eval(u) => u.unit,
            Work::Wait => {
                myself.send_after(Duration::from_millis(3), || SamplerMsg::Pull);
                return Ok(());
            }
            Work::Stop => return Ok(()),
        };
        match state.work(work).await {
            Ok(report) => {
                coordinator.cast(report)?;
                myself.cast(SamplerMsg::Pull)?;
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(sampler = index, unit, error = %reason, "unit failed; handed back");
                let _ = coordinator.cast(CoordinatorMsg::WorkFailed {
                    sampler: index,
                    unit,
                    reason,
                });
                myself.send_after(RETRY_AFTER, || SamplerMsg::Pull);
            }
        }
        Ok(())
    }
}

impl SamplerState {
    /// [`SamplerState::run`]; when it fails, the episodes it started are ended on their
    /// env hosts (best effort, before the failure is reported, so a retry starts clean).
    async fn run_or_abandon(
        &mut self,
        jobs: Vec<Job>,
        sampling_seed: Option<u64>,
    ) -> Result<u64, ActorProcessingErr> {
        let ids: Vec<u64> = jobs.iter().map(|j| j.id).collect();
        let out = self.run(jobs, sampling_seed).await;
        if out.is_err() {
            let hosts = members::<EnvHostMsg>(group::ENV_HOST);
            if !hosts.is_empty() {
                join_all(ids.into_iter().map(|id| {
                    let host = pick(&hosts, id).clone();
                    async move { call_t!(host, EnvHostMsg::Finish, 5_000, id) }
                }))
                .await;
            }
        }
        out
    }

    /// Does one unit of work; returns the report that says it is done.
    async fn work(&mut self, work: Work) -> Result<CoordinatorMsg, ActorProcessingErr> {
        let index = self.args.index;
        match work {
            Work::Train(unit) => {
                self.load(unit.publication).await?;
                let jobs: Vec<Job> = unit
                    .groups
                    .iter()
                    .flat_map(|(g, task)| {
                        (0..unit.group_size).map(move |k| Job {
                            id: task.id * 256 + u64::from(k),
                            task: task.clone(),
                            purpose: Purpose::Train {
                                batch: unit.batch,
                                group: *g,
                            },
                        })
                    })
                    .collect();
                let trajectories = jobs.len() as u64;
                let tokens = self.run_or_abandon(jobs, Some(unit.sampling_seed)).await?;
                Ok(CoordinatorMsg::Sampled {
                    sampler: index,
                    unit: unit.unit,
                    publication: unit.publication,
                    tokens,
                    trajectories,
                })
            }
            Work::Eval(unit) => {
                self.load(unit.publication).await?;
                let jobs = unit
                    .tasks
                    .into_iter()
                    .map(|task| Job {
                        id: EVAL_ID_BIT | (u64::from(unit.round) << 32) | task.id,
                        task,
                        purpose: Purpose::Eval { round: unit.round },
                    })
                    .collect();
                self.run_or_abandon(jobs, None).await?;
                Ok(CoordinatorMsg::EvalDone {
                    sampler: index,
                    unit: unit.unit,
                })
            }
            Work::Wait | Work::Stop => Err("nothing to do".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_model::Params;

    #[tokio::test]
    async fn a_missed_publication_falls_back_to_a_newer_one() {
        let model = ModelConfig {
            d_model: 16,
            n_layers: 1,
            n_heads: 2,
            d_ff: 32,
            max_seq: 16,
            ..ModelConfig::default()
        };
        let weights = WeightStore::new(4);
        let snapshot = Params::init(&model, 1).unwrap().snapshot().unwrap();
        weights.publish(5, PolicyVersion(9), snapshot.clone());
        let args = SamplerArgs {
            index: 0,
            model,
            tokenizer: ChatTokenizer::new(),
            params: SamplingParams::default(),
            max_turns: 8,
            weights: weights.clone(),
            device: candle_core::Device::Cpu,
        };
        let mut state = SamplerState {
            args,
            replica: None,
        };
        // Publication 5 is there: used at once.
        assert_eq!(state.load(5).await.unwrap(), PolicyVersion(9));
        // Publication 3 never arrives; after the grace period the newest one is used.
        let started = std::time::Instant::now();
        assert_eq!(state.load(3).await.unwrap(), PolicyVersion(9));
        assert!(started.elapsed() >= Duration::from_secs(4));
        // Publication 7 arrives late: waited for, then used exactly.
        let late = weights.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            late.publish(7, PolicyVersion(11), snapshot);
        });
        assert_eq!(state.load(7).await.unwrap(), PolicyVersion(11));
    }
}
