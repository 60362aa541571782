//! Supervised warm start: mean negative log-likelihood of the assistant's tokens.

use candle_core::Tensor;
use troupe_model::{
    Transformer,
    logprob::{PackedBatch, target_logprobs},
};

use crate::Result;

/// Token-mean negative log-likelihood over the masked (assistant) positions.
pub fn sft_loss(model: &Transformer, batch: &PackedBatch) -> Result<Tensor> {
    let lp = target_logprobs(model, batch)?;
    let n = batch.mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
    Ok(((lp * &batch.mask)?.sum_all()?.neg()? / n)?)
}

/// The negative log-likelihood summed over the masked positions of `batch`, divided by
/// `tokens`, the masked positions of the whole batch `batch` is a part of: micro-batch
/// losses then add up to the whole batch's [`sft_loss`].
pub fn sft_loss_over(model: &Transformer, batch: &PackedBatch, tokens: usize) -> Result<Tensor> {
    let lp = target_logprobs(model, batch)?;
    Ok(((lp * &batch.mask)?.sum_all()?.neg()? / tokens.max(1) as f64)?)
}
