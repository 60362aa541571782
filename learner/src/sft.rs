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
