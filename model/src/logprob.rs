//! Log-probs of chosen tokens, batched and differentiable: the learner's side of the
//! sampler/learner agreement.

use candle_core::{D, Device, Tensor};
use troupe_core::TokenId;

use crate::{ModelError, Result, Transformer, tokenizer::PAD};

/// A right-padded batch of token sequences ready for a training forward pass.
#[derive(Debug)]
pub struct PackedBatch {
    /// `[B, T]` input ids (sequence without its last token).
    pub inputs: Tensor,
    /// `[B, T]` target ids (sequence shifted by one).
    pub targets: Tensor,
    /// `[B, T]` 1.0 where the target is a trained (policy) token.
    pub mask: Tensor,
    /// Rows, columns.
    pub shape: (usize, usize),
}

/// Packs sequences and their per-token train masks (`mask[i] == 1`: token `i` is
/// predicted and trained) into right-padded input/target tensors.
pub fn pack(seqs: &[(&[TokenId], &[u8])], max_seq: usize) -> Result<PackedBatch> {
    let t = seqs
        .iter()
        .map(|(s, _)| s.len().saturating_sub(1))
        .max()
        .unwrap_or(0)
        .max(1);
    if t + 1 > max_seq {
        return Err(ModelError::TooLong {
            len: t + 1,
            max: max_seq,
        });
    }
    let b = seqs.len();
    let mut inputs = vec![PAD; b * t];
    let mut targets = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t];
    for (r, (seq, m)) in seqs.iter().enumerate() {
        for i in 1..seq.len() {
            inputs[r * t + i - 1] = seq[i - 1];
            targets[r * t + i - 1] = seq[i];
            mask[r * t + i - 1] = f32::from(m[i]);
        }
    }
    let dev = &Device::Cpu;
    Ok(PackedBatch {
        inputs: Tensor::from_vec(inputs, (b, t), dev)?,
        targets: Tensor::from_vec(targets, (b, t), dev)?,
        mask: Tensor::from_vec(mask, (b, t), dev)?,
        shape: (b, t),
    })
}

impl PackedBatch {
    /// The same batch on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            inputs: self.inputs.to_device(device)?,
            targets: self.targets.to_device(device)?,
            mask: self.mask.to_device(device)?,
            shape: self.shape,
        })
    }
}

/// Per-position log-probs `[B, T]` of the targets under `model` (differentiable), on
/// the model's device.
pub fn target_logprobs(model: &Transformer, batch: &PackedBatch) -> Result<Tensor> {
    let (b, t) = batch.shape;
    let pos = Tensor::arange(0u32, t as u32, model.device())?
        .reshape((1, t))?
        .repeat((b, 1))?;
    let logits = model.forward(&batch.inputs, &pos, &Transformer::causal_bias(t)?, None)?;
    let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = batch.targets.to_device(model.device())?;
    Ok(lp
        .gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?
        .squeeze(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelConfig, Params, tokenizer::ChatTokenizer};

    fn small() -> ModelConfig {
        ModelConfig {
            d_model: 32,
            n_layers: 2,
            n_heads: 4,
            d_ff: 64,
            max_seq: 32,
            ..ModelConfig::default()
        }
    }

    #[test]
    fn batched_logprobs_match_unbatched_reference() {
        let cfg = small();
        let params = Params::init(&cfg, 1).unwrap();
        let model = Transformer::new(&cfg, &params.tensors()).unwrap();
        let tok = ChatTokenizer::new();
        let (a, ma) = tok.encode_conversation(&[
            (crate::tokenizer::TurnRole::User, "sort 312"),
            (crate::tokenizer::TurnRole::Assistant, "123"),
        ]);
        let (bq, mb) = tok.encode_conversation(&[
            (crate::tokenizer::TurnRole::User, "7+5"),
            (crate::tokenizer::TurnRole::Assistant, "12"),
        ]);
        let packed = pack(&[(&a, &ma), (&bq, &mb)], cfg.max_seq).unwrap();
        let lp: Vec<Vec<f32>> = target_logprobs(&model, &packed).unwrap().to_vec2().unwrap();
        for (row, (seq, mask)) in [(&a, &ma), (&bq, &mb)].iter().enumerate() {
            let start = mask.iter().position(|&m| m == 1).unwrap();
            let reference = model
                .sequence_logprobs(&seq[..start], &seq[start..])
                .unwrap();
            for (k, r) in reference.iter().enumerate() {
                assert!((lp[row][start + k - 1] - r).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn every_trainable_tensor_gets_a_nonzero_gradient() {
        let cfg = small();
        let params = Params::init(&cfg, 2).unwrap();
        let model = Transformer::new(&cfg, &params.tensors()).unwrap();
        let tok = ChatTokenizer::new();
        let (s, m) = tok.encode_conversation(&[
            (crate::tokenizer::TurnRole::User, "sort 95421"),
            (crate::tokenizer::TurnRole::Assistant, "12459"),
        ]);
        let packed = pack(&[(&s, &m)], cfg.max_seq).unwrap();
        let loss = (target_logprobs(&model, &packed).unwrap() * &packed.mask)
            .unwrap()
            .sum_all()
            .unwrap()
            .neg()
            .unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in params.names().iter().zip(params.vars()) {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name} has no gradient"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{name} has a zero gradient");
        }
    }
}
