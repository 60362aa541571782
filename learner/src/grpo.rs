//! GRPO: group-relative advantages and the clipped policy-gradient loss.

use candle_core::{Device, Tensor};
use troupe_core::ScoredTrajectory;
use troupe_model::{
    Transformer,
    logprob::{PackedBatch, pack, target_logprobs},
};

use crate::{LearnerError, Result};

/// `(r - mean) / (std + 1e-6)` within one group (population std). A group whose
/// rewards are all equal gets zero advantages: it carries no signal.
pub fn group_advantages(rewards: &[f32]) -> Vec<f32> {
    let n = rewards.len().max(1) as f32;
    let mean = rewards.iter().sum::<f32>() / n;
    let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / n;
    let std = var.sqrt();
    if std < 1e-6 {
        return vec![0.0; rewards.len()];
    }
    rewards.iter().map(|r| (r - mean) / (std + 1e-6)).collect()
}

/// PPO clipping range, and the optional truncated importance weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    /// Lower margin: ratio is clipped at `1 - low`.
    pub low: f32,
    /// Upper margin: ratio is clipped at `1 + high`.
    pub high: f32,
    /// Truncated importance sampling. `0`: the PPO ratio is taken against the behaviour
    /// log-probs. `C > 0`: the ratio is taken against the learner's own current log-probs
    /// (the proximal policy) and each token is weighted by `min(pi_learner / pi_behaviour,
    /// C)`, which corrects for samplers that decode with different weights (quantised)
    /// or older ones, without letting one token's weight explode.
    pub tis_cap: f32,
}

/// Tensors for one RL step: packed sequences plus per-position behaviour log-probs
/// and advantages (zero off the policy's tokens).
#[derive(Debug)]
pub struct RlBatch {
    /// Inputs, targets and the policy-token mask.
    pub packed: PackedBatch,
    /// `[B, T]` behaviour log-probs aligned with the targets.
    pub behaviour: Tensor,
    /// `[B, T]` advantages aligned with the targets.
    pub advantages: Tensor,
    /// Number of policy tokens (the loss's denominator).
    pub tokens: usize,
}

impl RlBatch {
    /// The same batch on `device`.
    pub fn to_device(self, device: &Device) -> Result<Self> {
        Ok(Self {
            packed: self.packed.to_device(device)?,
            behaviour: self.behaviour.to_device(device)?,
            advantages: self.advantages.to_device(device)?,
            tokens: self.tokens,
        })
    }
}

/// Builds an [`RlBatch`] from groups of scored trajectories; advantages are computed
/// within each group.
pub fn build_batch(groups: &[Vec<ScoredTrajectory>], max_seq: usize) -> Result<RlBatch> {
    let mut seqs = Vec::new();
    let mut advs = Vec::new();
    for g in groups {
        let rewards: Vec<f32> = g.iter().map(|s| s.reward.total).collect();
        for (s, a) in g.iter().zip(group_advantages(&rewards)) {
            seqs.push(&s.trajectory);
            advs.push(a);
        }
    }
    if seqs.is_empty() {
        return Err(LearnerError::BadBatch("no trajectories".into()));
    }
    let refs: Vec<(&[u32], &[u8])> = seqs
        .iter()
        .map(|t| (t.tokens.as_slice(), t.policy.as_slice()))
        .collect();
    let packed = pack(&refs, max_seq)?;
    let (b, t) = packed.shape;
    let mut behaviour = vec![0f32; b * t];
    let mut advantages = vec![0f32; b * t];
    let mut tokens = 0;
    for (r, (traj, a)) in seqs.iter().zip(&advs).enumerate() {
        for i in 1..traj.tokens.len() {
            if traj.policy[i] == 1 {
                behaviour[r * t + i - 1] = traj.logprobs[i];
                advantages[r * t + i - 1] = *a;
                tokens += 1;
            }
        }
    }
    let dev = &Device::Cpu;
    Ok(RlBatch {
        packed,
        behaviour: Tensor::from_vec(behaviour, (b, t), dev)?,
        advantages: Tensor::from_vec(advantages, (b, t), dev)?,
        tokens,
    })
}

/// Diagnostics of one loss evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PgStats {
    /// Mean importance ratio over policy tokens.
    pub mean_ratio: f32,
    /// Fraction of policy tokens whose ratio was clipped.
    pub clip_fraction: f32,
    /// Mean `logp_behaviour - logp_current` (a KL estimate).
    pub approx_kl: f32,
    /// Mean `|logp_current - logp_behaviour|`.
    pub logprob_gap: f32,
    /// Fraction of tokens whose importance weight was truncated at the cap.
    pub tis_truncated: f32,
}

/// Token-mean PPO clipped surrogate loss (`-min(r A, clip(r) A)` per policy token).
pub fn pg_loss(model: &Transformer, batch: &RlBatch, clip: Clip) -> Result<(Tensor, PgStats)> {
    let logp = target_logprobs(model, &batch.packed)?;
    let mask = &batch.packed.mask;
    let (ratio, weight) = if clip.tis_cap > 0.0 {
        let proximal = logp.detach();
        let weight = (&proximal - &batch.behaviour)?
            .exp()?
            .clamp(0.0, clip.tis_cap)?;
        ((&logp - &proximal)?.exp()?, Some(weight))
    } else {
        ((&logp - &batch.behaviour)?.exp()?, None)
    };
    let unclipped = (&ratio * &batch.advantages)?;
    let clipped = (ratio.clamp(1.0 - clip.low, 1.0 + clip.high)? * &batch.advantages)?;
    let mut surrogate = unclipped.minimum(&clipped)?;
    if let Some(w) = &weight {
        surrogate = (surrogate * w)?;
    }
    let n = batch.tokens.max(1) as f64;
    let loss = ((surrogate * mask)?.sum_all()?.neg()? / n)?;

    let r: Vec<f32> = (ratio.detach() * mask)?.flatten_all()?.to_vec1()?;
    let m: Vec<f32> = mask.flatten_all()?.to_vec1()?;
    let lp: Vec<f32> = logp.detach().flatten_all()?.to_vec1()?;
    let bl: Vec<f32> = batch.behaviour.flatten_all()?.to_vec1()?;
    let mut stats = PgStats::default();
    for i in 0..m.len() {
        if m[i] > 0.0 {
            stats.mean_ratio += r[i];
            stats.clip_fraction += f32::from(r[i] < 1.0 - clip.low || r[i] > 1.0 + clip.high);
            stats.approx_kl += bl[i] - lp[i];
            stats.logprob_gap += (lp[i] - bl[i]).abs();
            stats.tis_truncated +=
                f32::from(clip.tis_cap > 0.0 && (lp[i] - bl[i]).exp() > clip.tis_cap);
        }
    }
    let n = n as f32;
    stats.mean_ratio /= n;
    stats.clip_fraction /= n;
    stats.approx_kl /= n;
    stats.logprob_gap /= n;
    stats.tis_truncated /= n;
    Ok((loss, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_core::{PolicyVersion, Purpose, Reward, TaskSpec, Trajectory};
    use troupe_model::{ModelConfig, Params};

    #[test]
    fn advantages_pin_hand_computed_values() {
        // mean 0.25, std sqrt(0.1875) = 0.4330
        let a = group_advantages(&[1.0, 0.0, 0.0, 0.0]);
        assert!((a[0] - 1.7320).abs() < 1e-3);
        assert!((a[1] + 0.5773).abs() < 1e-3);
        assert_eq!(group_advantages(&[1.0, 1.0, 1.0]), vec![0.0; 3]);
        let sum: f32 = group_advantages(&[0.2, 0.9, 0.4]).iter().sum();
        assert!(sum.abs() < 1e-5);
    }

    fn traj(id: u64, completion: &[u32], logprobs: &[f32], reward: f32) -> ScoredTrajectory {
        let task = TaskSpec {
            id: 0,
            prompt: "x".into(),
            answer: "1".into(),
            difficulty: 1,
        };
        let mut t = Trajectory::new(id, task, Purpose::Train { batch: 0, group: 0 });
        t.push_context(&[257, 258, 120, 260, 259]);
        for (&tok, &lp) in completion.iter().zip(logprobs) {
            t.push_policy(tok, lp, PolicyVersion(0));
        }
        ScoredTrajectory {
            trajectory: t,
            reward: Reward {
                total: reward,
                breakdown: vec![],
            },
        }
    }

    #[test]
    fn loss_equals_reference_kernel_average() {
        let cfg = ModelConfig {
            d_model: 32,
            n_layers: 1,
            n_heads: 2,
            d_ff: 64,
            max_seq: 32,
            ..ModelConfig::default()
        };
        let params = Params::init(&cfg, 9).unwrap();
        let model = Transformer::new(&cfg, &params.tensors()).unwrap();
        // Behaviour log-probs deliberately off so ratios differ from 1 and some clip.
        let group = vec![
            traj(1, &[49, 260], &[-5.0, -6.5], 1.0),
            traj(2, &[50, 51, 260], &[-5.9, -5.2, -5.6], 0.0),
            traj(3, &[52, 260], &[-5.5, -5.6], 0.0),
        ];
        let batch = build_batch(std::slice::from_ref(&group), cfg.max_seq).unwrap();
        let clip = Clip {
            low: 0.2,
            high: 0.28,
            tis_cap: 0.0,
        };
        let (loss, stats) = pg_loss(&model, &batch, clip).unwrap();
        let adv = group_advantages(&[1.0, 0.0, 0.0]);
        let mut expected = 0.0;
        let mut n = 0;
        for (s, a) in group.iter().zip(&adv) {
            let t = &s.trajectory;
            let start = t.policy.iter().position(|&p| p == 1).unwrap();
            let now = model
                .sequence_logprobs(&t.tokens[..start], &t.tokens[start..])
                .unwrap();
            for (k, lp) in now.iter().enumerate() {
                expected += troupe_kernels::clipped_pg_loss(
                    *lp,
                    t.logprobs[start + k],
                    *a,
                    clip.low,
                    clip.high,
                );
                n += 1;
            }
        }
        expected /= n as f32;
        let got = loss.to_scalar::<f32>().unwrap();
        assert!(
            (got - expected).abs() < 1e-4,
            "loss {got} vs reference {expected}"
        );
        assert_eq!(batch.tokens, n);
        assert!(stats.mean_ratio > 0.0);
    }

    #[test]
    fn truncated_importance_weights_value_and_gradient() {
        let cfg = ModelConfig {
            d_model: 32,
            n_layers: 1,
            n_heads: 2,
            d_ff: 64,
            max_seq: 32,
            ..ModelConfig::default()
        };
        let params = Params::init(&cfg, 4).unwrap();
        let model = Transformer::new(&cfg, &params.tensors()).unwrap();
        let group = vec![
            traj(1, &[49, 260], &[-5.0, -9.0], 1.0),
            traj(2, &[50, 260], &[-5.9, -5.2], 0.0),
        ];
        let batch = build_batch(std::slice::from_ref(&group), cfg.max_seq).unwrap();
        let tis = |cap: f32| Clip {
            low: 0.2,
            high: 0.28,
            tis_cap: cap,
        };
        // The value: -mean(A * min(pi / mu, C)) at ratio 1 against the proximal policy.
        let adv = group_advantages(&[1.0, 0.0]);
        let (loss, stats) = pg_loss(&model, &batch, tis(2.0)).unwrap();
        let mut expected = 0.0;
        let mut truncated = 0;
        for (s, a) in group.iter().zip(&adv) {
            let t = &s.trajectory;
            let now = model
                .sequence_logprobs(&t.tokens[..5], &t.tokens[5..])
                .unwrap();
            for (k, lp) in now.iter().enumerate() {
                let w = (lp - t.logprobs[5 + k]).exp();
                truncated += usize::from(w > 2.0);
                expected -= a * w.min(2.0);
            }
        }
        expected /= 4.0;
        let got = loss.to_scalar::<f32>().unwrap();
        assert!((got - expected).abs() < 1e-4, "loss {got} vs {expected}");
        assert!((stats.tis_truncated - truncated as f32 / 4.0).abs() < 1e-6);
        assert!(
            truncated > 0,
            "the -9.0 behaviour log-prob must hit the cap"
        );
        assert!(stats.logprob_gap > 0.0);
        // Gradients flow through the ratio (the weight is a constant).
        let grads = loss.backward().unwrap();
        let g = grads.get(params.vars()[0].as_tensor()).unwrap();
        assert!(
            g.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        );
    }

    #[test]
    fn multi_turn_loss_covers_only_the_policy_turns_not_tool_observations() {
        use troupe_core::Author;
        use troupe_model::tokenizer::{ASSISTANT, END, TOOL};
        let cfg = ModelConfig {
            d_model: 32,
            n_layers: 1,
            n_heads: 2,
            d_ff: 64,
            max_seq: 48,
            ..ModelConfig::default()
        };
        let params = Params::init(&cfg, 5).unwrap();
        let model = Transformer::new(&cfg, &params.tensors()).unwrap();
        // prompt | call (policy) | tool result (context) | answer (policy)
        let episode = |id: u64, answer: &[u32], reward: f32| {
            let task = TaskSpec {
                id: 0,
                prompt: "6*7".into(),
                answer: "42".into(),
                difficulty: 1,
            };
            let mut t = Trajectory::new(id, task, Purpose::Train { batch: 0, group: 0 });
            t.begin_turn(Author::User, "6*7");
            t.push_context(&[257, 258, 54, 42, 55, 260, 259]);
            t.begin_turn(Author::Policy, "c 6*7");
            for (k, &tok) in [99, 32, 54, 42, 55, END].iter().enumerate() {
                t.push_policy(tok, -1.0 - 0.1 * k as f32, PolicyVersion(0));
            }
            t.begin_turn(Author::Tool, "42");
            t.push_context(&[TOOL, 52, 50, END, ASSISTANT]);
            t.begin_turn(Author::Policy, "answer");
            for &tok in answer {
                t.push_policy(tok, -1.5, PolicyVersion(0));
            }
            ScoredTrajectory {
                trajectory: t,
                reward: Reward {
                    total: reward,
                    breakdown: vec![],
                },
            }
        };
        let group = vec![episode(1, &[52, 50, END], 1.0), episode(2, &[52, END], 0.0)];
        let batch = build_batch(std::slice::from_ref(&group), cfg.max_seq).unwrap();

        // The mask, behaviour log-probs and advantages sit exactly on the positions that
        // predict a policy token; the tool observation's positions are all zero.
        let (b, t) = batch.packed.shape;
        let mask: Vec<f32> = batch.packed.mask.flatten_all().unwrap().to_vec1().unwrap();
        let adv: Vec<f32> = batch.advantages.flatten_all().unwrap().to_vec1().unwrap();
        let beh: Vec<f32> = batch.behaviour.flatten_all().unwrap().to_vec1().unwrap();
        for (r, s) in group.iter().enumerate() {
            let tr = &s.trajectory;
            let tool = tr.turns[2].start as usize;
            for i in 1..t + 1 {
                let policy = tr.policy.get(i).copied().unwrap_or(0) == 1;
                let at = r * t + i - 1;
                assert_eq!(mask[at], f32::from(u8::from(policy)), "row {r} token {i}");
                assert_eq!(adv[at] != 0.0, policy, "row {r} token {i}");
                assert_eq!(beh[at] != 0.0, policy, "row {r} token {i}");
                if (tool..tool + 5).contains(&i) {
                    assert_eq!(mask[at], 0.0, "tool token {i} is trained");
                }
            }
        }
        assert_eq!(b, 2);
        assert_eq!(batch.tokens, 9 + 8);

        // The loss is the reference kernel averaged over policy tokens only.
        let clip = Clip {
            low: 0.2,
            high: 0.28,
            tis_cap: 0.0,
        };
        let (loss, _) = pg_loss(&model, &batch, clip).unwrap();
        let adv = group_advantages(&[1.0, 0.0]);
        let (mut expected, mut n) = (0.0, 0);
        for (s, a) in group.iter().zip(&adv) {
            let tr = &s.trajectory;
            for i in 1..tr.tokens.len() {
                if tr.policy[i] == 1 {
                    let now = model
                        .sequence_logprobs(&tr.tokens[..i], &tr.tokens[i..=i])
                        .unwrap();
                    expected += troupe_kernels::clipped_pg_loss(
                        now[0],
                        tr.logprobs[i],
                        *a,
                        clip.low,
                        clip.high,
                    );
                    n += 1;
                }
            }
        }
        expected /= n as f32;
        let got = loss.to_scalar::<f32>().unwrap();
        assert!((got - expected).abs() < 1e-4, "loss {got} vs {expected}");
    }
}
