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
    sft::sft_loss,
};

/// Learner hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerConfig {
    /// Learning rate during the SFT warm start.
    pub sft_lr: f64,
    /// Learning rate during RL.
    pub rl_lr: f64,
    /// PPO clip range.
    pub clip: Clip,
    /// Optimizer settings.
    pub adamw: AdamWConfig,
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

    /// A frozen copy of the weights for publication.
    pub fn snapshot(&self) -> Result<WeightSnapshot> {
        Ok(self.params.snapshot()?)
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
        let refs: Vec<(&[u32], &[u8])> = batch
            .iter()
            .map(|e| (e.tokens.as_slice(), e.mask.as_slice()))
            .collect();
        let packed = pack(&refs, self.model_cfg.max_seq)?.to_device(&self.device())?;
        let loss = sft_loss(&self.model()?, &packed)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(LearnerError::NonFinite {
                step: self.state.step,
            });
        }
        self.opt.step(&loss.backward()?, self.cfg.sft_lr)?;
        self.finish_step();
        Ok(value)
    }

    /// One GRPO step on `groups` (each group: all samples of one task).
    pub fn rl_step(&mut self, groups: &[Vec<ScoredTrajectory>]) -> Result<RlStats> {
        let batch = build_batch(groups, self.model_cfg.max_seq)?.to_device(&self.device())?;
        let (loss, pg) = pg_loss(&self.model()?, &batch, self.cfg.clip)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(LearnerError::NonFinite {
                step: self.state.step,
            });
        }
        let report = self.opt.step(&loss.backward()?, self.cfg.rl_lr)?;
        self.finish_step();
        self.state.rl_steps += 1;
        Ok(RlStats {
            loss: value,
            tokens: batch.tokens,
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
            rl_lr: 1e-3,
            clip: Clip {
                low: 0.2,
                high: 0.2,
                tis_cap: 0.0,
            },
            adamw: AdamWConfig::default(),
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
