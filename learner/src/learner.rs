//! The stateful learner: parameters, optimizer, version counter and RNG.

use std::path::Path;

use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use troupe_core::{PolicyVersion, ScoredTrajectory};
use troupe_model::{ModelConfig, Params, Transformer, WeightSnapshot, logprob::pack};

use crate::{
    LearnerError, Result,
    adamw::{AdamW, AdamWConfig},
    checkpoint::{self, LearnerState, io},
    grpo::{Clip, PgStats, build_batch, pg_loss},
    sft::{LrSchedule, sft_loss_over},
};

/// Gradients of the trainable variables summed over micro-batches. Only the variables'
/// gradients are kept: each pass's store (which also holds every intermediate's
/// gradient) is dropped as soon as it is added.
#[derive(Default)]
struct Grads {
    sums: Vec<(candle_core::Var, candle_core::Tensor)>,
}

impl Grads {
    fn add(
        &mut self,
        vars: &[candle_core::Var],
        store: candle_core::backprop::GradStore,
    ) -> Result<()> {
        for var in vars {
            let Some(g) = store.get(var.as_tensor()) else {
                continue;
            };
            match self
                .sums
                .iter_mut()
                .find(|(v, _)| v.as_tensor().id() == var.as_tensor().id())
            {
                Some((_, sum)) => *sum = (&*sum + g)?,
                None => self.sums.push((var.clone(), g.clone())),
            }
        }
        Ok(())
    }

    fn into_store(self) -> candle_core::backprop::GradStore {
        let mut store = candle_core::backprop::GradStore::default();
        for (var, g) in self.sums {
            store.insert(var.as_tensor(), g);
        }
        store
    }
}

/// Learner hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerConfig {
    /// Learning rate during the SFT warm start (its base, for a schedule).
    pub sft_lr: f64,
    /// How the SFT learning rate moves over the warm start's steps.
    pub sft_schedule: LrSchedule,
    /// Learning rate during RL.
    pub rl_lr: f64,
    /// PPO clip range.
    pub clip: Clip,
    /// Optimizer settings.
    pub adamw: AdamWConfig,
    /// Most sequences per forward/backward pass (0: the whole batch at once). A larger
    /// batch is split and its gradients summed: the same update, with activation memory
    /// (which grows with sequences x length^2 through attention) bounded by the chunk.
    pub micro_batch: usize,
}

/// One supervised example: tokens and the mask of positions to learn.
#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct SftExample {
    /// The whole conversation, chat-templated.
    pub tokens: Vec<u32>,
    /// 1 on assistant tokens.
    pub mask: Vec<u8>,
}

/// What one RL step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RlStats {
    /// Surrogate loss.
    pub loss: f32,
    /// Policy tokens trained on.
    pub tokens: usize,
    /// Trajectories trained on.
    pub trajectories: usize,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Ratio / clipping / KL diagnostics.
    pub pg: PgStats,
}

/// The learner.
#[derive(Debug)]
pub struct Learner {
    model_cfg: ModelConfig,
    cfg: LearnerConfig,
    params: Params,
    opt: AdamW,
    state: LearnerState,
}

impl Learner {
    /// A learner starting from the pretrained weights `model_cfg` names, or with
    /// freshly initialised weights drawn from `seed`.
    pub fn new(model_cfg: &ModelConfig, cfg: LearnerConfig, seed: u64) -> Result<Self> {
        let params = match &model_cfg.pretrained {
            Some(_) => Params::from_snapshot(
                model_cfg,
                &troupe_model::pretrained::initial_weights(model_cfg)?,
            )?,
            None => Params::init(model_cfg, seed)?,
        };
        let opt = AdamW::new(cfg.adamw, params.names(), params.vars())?;
        let state = LearnerState {
            step: 0,
            version: 0,
            rl_steps: 0,
            sft_done: false,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
        };
        Ok(Self {
            model_cfg: model_cfg.clone(),
            cfg,
            params,
            opt,
            state,
        })
    }

    /// The learner with its weights and optimizer state moved to `device` (a GPU with
    /// the `cuda` feature). Steps then run there; snapshots still come back to host memory.
    pub fn to_device(self, device: &candle_core::Device) -> Result<Self> {
        let params = self.params.to_device(device)?;
        let state: std::collections::HashMap<String, candle_core::Tensor> = self
            .opt
            .state_tensors()
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_device(device)?)))
            .collect::<Result<_>>()?;
        let mut opt = AdamW::new(self.cfg.adamw, params.names(), params.vars())?;
        opt.restore(&state, self.opt.steps())?;
        Ok(Self {
            params,
            opt,
            ..self
        })
    }

    /// Where the learner computes.
    pub fn device(&self) -> candle_core::Device {
        self.params.device()
    }

    /// The current policy version.
    pub fn version(&self) -> PolicyVersion {
        PolicyVersion(self.state.version)
    }

    /// RL steps taken so far.
    pub fn rl_steps(&self) -> u64 {
        self.state.rl_steps
    }

    /// Whether the SFT warm start has finished.
    pub fn sft_done(&self) -> bool {
        self.state.sft_done
    }

    /// Records the end of the SFT warm start.
    pub fn finish_sft(&mut self) {
        self.state.sft_done = true;
    }

    /// Counts an RL step whose batch carried no signal: no weights change.
    pub fn skip_rl_step(&mut self) {
        self.state.rl_steps += 1;
    }

    /// Index of the current weights' publication: 0 for the initial weights, 1 after
    /// SFT, `1 + s` after RL step `s`.
    pub fn publication(&self) -> u64 {
        if self.state.sft_done {
            1 + self.state.rl_steps
        } else {
            0
        }
    }

    /// Optimizer steps taken so far (SFT and RL).
    pub fn steps(&self) -> u64 {
        self.state.step
    }

    /// A frozen copy of the weights in host memory, for publication and checkpoints.
    pub fn snapshot(&self) -> Result<WeightSnapshot> {
        Ok(self.params.snapshot()?)
    }

    /// A frozen copy of the weights on `device`: a device-to-device copy when it is the
    /// learner's own GPU (a sampler sharing the GPU then loads them without a host trip).
    pub fn snapshot_on(&self, device: &candle_core::Device) -> Result<WeightSnapshot> {
        Ok(self.params.snapshot_on(device)?)
    }

    fn model(&self) -> Result<Transformer> {
        Ok(Transformer::new(&self.model_cfg, &self.params.tensors())?)
    }

    fn finish_step(&mut self) {
        self.state.step += 1;
        self.state.version += 1;
    }

    /// Draws `n` examples from `pool` with the learner's RNG (an epoch-free shuffle).
    pub fn draw<'a>(&mut self, pool: &'a [SftExample], n: usize) -> Vec<&'a SftExample> {
        let mut idx: Vec<usize> = (0..pool.len()).collect();
        idx.shuffle(&mut self.state.rng);
        idx.into_iter().take(n).map(|i| &pool[i]).collect()
    }

    /// One supervised step on `batch`; returns the loss.
    pub fn sft_step(&mut self, batch: &[&SftExample]) -> Result<f32> {
        let total: usize = batch
            .iter()
            .map(|e| e.mask.iter().skip(1).filter(|&&m| m == 1).count())
            .sum();
        let model = self.model()?;
        let mut grads = Grads::default();
        let mut value = 0f32;
        for chunk in batch.chunks(self.chunk_len(batch.len())) {
            let refs: Vec<(&[u32], &[u8])> = chunk
                .iter()
                .map(|e| (e.tokens.as_slice(), e.mask.as_slice()))
                .collect();
            let packed = pack(&refs, self.model_cfg.max_seq)?.to_device(&self.device())?;
            let loss = sft_loss_over(&model, &packed, total)?;
            value += loss.to_scalar::<f32>()?;
            grads.add(self.params.vars(), loss.backward()?)?;
        }
        if !value.is_finite() {
            return Err(LearnerError::NonFinite {
                step: self.state.step,
            });
        }
        let lr = self.cfg.sft_schedule.lr(self.cfg.sft_lr, self.state.step);
        self.opt.step(&grads.into_store(), lr)?;
        self.finish_step();
        Ok(value)
    }

    /// Sequences per pass for a batch of `n`.
    fn chunk_len(&self, n: usize) -> usize {
        match self.cfg.micro_batch {
            0 => n.max(1),
            m => m,
        }
    }

    /// One GRPO step on `groups` (each group: all samples of one task).
    pub fn rl_step(&mut self, groups: &[Vec<ScoredTrajectory>]) -> Result<RlStats> {
        // Groups stay whole (advantages are computed within a group); a chunk holds as
        // many as fit in `micro_batch` sequences, at least one. Every chunk's loss is
        // divided by the whole batch's token count, so the summed gradients and
        // statistics are exactly the whole batch's.
        let total = build_batch(groups, self.model_cfg.max_seq)?.tokens;
        let model = self.model()?;
        let mut chunks: Vec<&[Vec<ScoredTrajectory>]> = Vec::new();
        let (mut start, mut rows) = (0, 0);
        let micro = self.chunk_len(usize::MAX);
        for (i, g) in groups.iter().enumerate() {
            if i > start && rows + g.len() > micro {
                chunks.push(&groups[start..i]);
                (start, rows) = (i, 0);
            }
            rows += g.len();
        }
        chunks.push(&groups[start..]);
        let mut grads = Grads::default();
        let (mut value, mut pg) = (0f32, PgStats::default());
        for chunk in chunks {
            let mut batch =
                build_batch(chunk, self.model_cfg.max_seq)?.to_device(&self.device())?;
            batch.tokens = total;
            let (loss, stats) = pg_loss(&model, &batch, self.cfg.clip)?;
            value += loss.to_scalar::<f32>()?;
            pg.mean_ratio += stats.mean_ratio;
            pg.clip_fraction += stats.clip_fraction;
            pg.approx_kl += stats.approx_kl;
            pg.logprob_gap += stats.logprob_gap;
            pg.tis_truncated += stats.tis_truncated;
            grads.add(self.params.vars(), loss.backward()?)?;
        }
        if !value.is_finite() {
            return Err(LearnerError::NonFinite {
                step: self.state.step,
            });
        }
        let report = self.opt.step(&grads.into_store(), self.cfg.rl_lr)?;
        self.finish_step();
        self.state.rl_steps += 1;
        Ok(RlStats {
            loss: value,
            tokens: total,
            trajectories: groups.iter().map(Vec::len).sum(),
            grad_norm: report.grad_norm,
            pg,
        })
    }

    /// Saves weights, optimizer state and learner state into `dir` (atomically).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        self.params
            .snapshot()?
            .save(&tmp.join("model.safetensors"))?;
        checkpoint::write_json(
            &tmp.join(troupe_model::pretrained::CHECKPOINT_CONFIG),
            &self.model_cfg,
        )?;
        candle_core::safetensors::save(
            &self.opt.state_tensors(),
            tmp.join("optimizer.safetensors"),
        )?;
        checkpoint::write_json(&tmp.join("learner.json"), &self.state)?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&tmp, dir).map_err(io(dir))?;
        Ok(())
    }

    /// Restores a learner saved by [`Learner::save`].
    pub fn load(model_cfg: &ModelConfig, cfg: LearnerConfig, dir: &Path) -> Result<Self> {
        let state: LearnerState = checkpoint::read_json(&dir.join("learner.json"))?;
        let weights = WeightSnapshot::load(&dir.join("model.safetensors"))?;
        let params = Params::from_snapshot(model_cfg, &weights)?;
        let mut opt = AdamW::new(cfg.adamw, params.names(), params.vars())?;
        let opt_state = candle_core::safetensors::load(
            dir.join("optimizer.safetensors"),
            &candle_core::Device::Cpu,
        )?;
        opt.restore(&opt_state, state.step)?;
        Ok(Self {
            model_cfg: model_cfg.clone(),
            cfg,
            params,
            opt,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_model::tokenizer::{ChatTokenizer, TurnRole};

    fn setup() -> (ModelConfig, LearnerConfig, Vec<SftExample>) {
        let mc = ModelConfig {
            d_model: 32,
            n_layers: 1,
            n_heads: 2,
            d_ff: 64,
            max_seq: 32,
            ..ModelConfig::default()
        };
        let lc = LearnerConfig {
            sft_lr: 3e-3,
            sft_schedule: LrSchedule::Constant,
            rl_lr: 1e-3,
            clip: Clip {
                low: 0.2,
                high: 0.2,
                tis_cap: 0.0,
            },
            adamw: AdamWConfig::default(),
            micro_batch: 0,
        };
        let tok = ChatTokenizer::new();
        let pool = ["sort 21", "sort 312", "sort 9"]
            .iter()
            .zip(["12", "123", "9"])
            .map(|(p, a)| {
                let (tokens, mask) =
                    tok.encode_conversation(&[(TurnRole::User, p), (TurnRole::Assistant, a)]);
                SftExample { tokens, mask }
            })
            .collect();
        (mc, lc, pool)
    }

    #[test]
    fn sft_reduces_loss() {
        let (mc, lc, pool) = setup();
        let mut l = Learner::new(&mc, lc, 1).unwrap();
        let all: Vec<&SftExample> = pool.iter().collect();
        let first = l.sft_step(&all).unwrap();
        let mut last = first;
        for _ in 0..60 {
            last = l.sft_step(&all).unwrap();
        }
        assert!(last < first * 0.5, "{first} -> {last}");
        assert_eq!(l.version(), PolicyVersion(61));
    }

    #[test]
    fn sft_steps_follow_the_schedule() {
        let (mc, lc, pool) = setup();
        let all: Vec<&SftExample> = pool.iter().collect();
        // Adam's first step moves each weight by about lr: the largest move is the rate.
        let first_move = |schedule| {
            let cfg = LearnerConfig {
                sft_schedule: schedule,
                ..lc.clone()
            };
            let mut l = Learner::new(&mc, cfg, 5).unwrap();
            let before = l.snapshot().unwrap();
            l.sft_step(&all).unwrap();
            l.snapshot().unwrap().max_abs_diff(&before).unwrap()
        };
        let full = first_move(LrSchedule::Constant);
        let warming = first_move(LrSchedule::Cosine {
            warmup: 10,
            total: 20,
        });
        assert!(full > 0.0);
        let ratio = warming / full;
        assert!((ratio - 0.1).abs() < 0.01, "{warming} / {full} = {ratio}");
    }

    #[test]
    fn micro_batches_give_the_whole_batch_update() {
        let (mc, lc, pool) = setup();
        let micro = LearnerConfig {
            micro_batch: 1,
            ..lc.clone()
        };
        let (mut a, mut b) = (
            Learner::new(&mc, lc, 3).unwrap(),
            Learner::new(&mc, micro, 3).unwrap(),
        );
        let all: Vec<&SftExample> = pool.iter().collect();
        let (la, lb) = (a.sft_step(&all).unwrap(), b.sft_step(&all).unwrap());
        assert!((la - lb).abs() < 1e-5, "{la} vs {lb}");
        let groups: Vec<Vec<ScoredTrajectory>> = (0..2u32)
            .map(|g| {
                (0..2u64)
                    .map(|k| {
                        let e = &pool[(g as usize + k as usize) % pool.len()];
                        let task = troupe_core::TaskSpec {
                            id: u64::from(g),
                            prompt: String::new(),
                            answer: String::new(),
                            difficulty: 0,
                        };
                        let purpose = troupe_core::Purpose::Train { batch: 0, group: g };
                        let mut t =
                            troupe_core::Trajectory::new(u64::from(g) * 2 + k, task, purpose);
                        for (&tok, &m) in e.tokens.iter().zip(&e.mask) {
                            if m == 1 {
                                t.push_policy(tok, -1.0, PolicyVersion(0));
                            } else {
                                t.push_context(&[tok]);
                            }
                        }
                        ScoredTrajectory {
                            trajectory: t,
                            reward: troupe_core::Reward {
                                total: k as f32,
                                breakdown: vec![],
                            },
                        }
                    })
                    .collect()
            })
            .collect();
        let (ra, rb) = (a.rl_step(&groups).unwrap(), b.rl_step(&groups).unwrap());
        assert!((ra.loss - rb.loss).abs() < 1e-5, "{ra:?} vs {rb:?}");
        assert!((ra.pg.mean_ratio - rb.pg.mean_ratio).abs() < 1e-5);
        assert!((ra.grad_norm - rb.grad_norm).abs() < 1e-4);
        assert_eq!(ra.tokens, rb.tokens);
        let diff = a
            .snapshot()
            .unwrap()
            .max_abs_diff(&b.snapshot().unwrap())
            .unwrap();
        assert!(diff < 1e-5, "weights differ by {diff}");
    }

    #[test]
    fn checkpoint_resumes_exactly() {
        let (mc, lc, pool) = setup();
        let dir = std::env::temp_dir().join(format!("troupe-ckpt-{}", std::process::id()));
        let mut a = Learner::new(&mc, lc.clone(), 2).unwrap();
        for _ in 0..3 {
            let b = a.draw(&pool, 2);
            a.sft_step(&b).unwrap();
        }
        a.save(&dir).unwrap();
        let mut b = Learner::load(&mc, lc, &dir).unwrap();
        for _ in 0..3 {
            let ba = a.draw(&pool, 2);
            a.sft_step(&ba).unwrap();
            let bb = b.draw(&pool, 2);
            b.sft_step(&bb).unwrap();
        }
        assert_eq!(
            a.snapshot()
                .unwrap()
                .max_abs_diff(&b.snapshot().unwrap())
                .unwrap(),
            0.0
        );
        assert_eq!(a.version(), b.version());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
