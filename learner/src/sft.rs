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

/// How the learning rate moves over the warm start.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LrSchedule {
    /// The base rate at every step.
    #[default]
    Constant,
    /// A linear rise over `warmup` steps, then a cosine decay to
    /// [`COSINE_FLOOR`] of the base rate at step `total`.
    Cosine {
        /// Steps of the linear rise.
        warmup: u64,
        /// The step the decay ends at (the warm start's last).
        total: u64,
    },
}

/// Where a cosine schedule ends, as a fraction of the base rate.
pub const COSINE_FLOOR: f64 = 0.1;

impl LrSchedule {
    /// The learning rate of step `step` (0-based) for base rate `base`.
    pub fn lr(self, base: f64, step: u64) -> f64 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine { warmup, total } => {
                if step < warmup {
                    return base * (step + 1) as f64 / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((step - warmup) as f64 / span).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                base * (COSINE_FLOOR + (1.0 - COSINE_FLOOR) * cosine)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_flat_and_cosine_rises_then_decays_to_its_floor() {
        assert_eq!(LrSchedule::Constant.lr(1e-3, 0), 1e-3);
        assert_eq!(LrSchedule::Constant.lr(1e-3, 500), 1e-3);
        let s = LrSchedule::Cosine {
            warmup: 10,
            total: 110,
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(s.lr(1.0, 0), 0.1));
        assert!(close(s.lr(1.0, 9), 1.0));
        assert!(close(s.lr(1.0, 10), 1.0));
        assert!(close(s.lr(1.0, 60), 0.55));
        assert!(close(s.lr(1.0, 110), COSINE_FLOOR));
        assert!(close(s.lr(1.0, 500), COSINE_FLOOR));
        let lrs: Vec<f64> = (10..=110).map(|t| s.lr(1.0, t)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
        // No warm-up: full rate at once.
        let s = LrSchedule::Cosine {
            warmup: 0,
            total: 100,
        };
        assert!(close(s.lr(2.0, 0), 2.0));
    }
}
