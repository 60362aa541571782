//! PPO clipped policy-gradient loss, token-mean over a mask, forward and backward.
//!
//! Per token: `r = exp(logp - old_logp)`, `loss = -min(r A, clip(r, 1 - low, 1 + high) A)`.
//! The batch loss is `sum(mask * loss) / sum(mask)` (0 when the mask is empty), as in the
//! learner's `pg_loss`. The gradient flows through the unclipped term wherever it is the
//! minimum (`r A <= clip(r) A`): `d loss / d logp = -A r mask / sum(mask)`; elsewhere it is 0.

/// PPO clipping range for the importance ratio `pi / pi_behaviour`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipRange {
    /// Lower margin: the ratio is clipped at `1 - low`.
    pub low: f32,
    /// Upper margin: the ratio is clipped at `1 + high`.
    pub high: f32,
}

/// The per-token inputs of the loss, all of one length.
#[derive(Debug, Clone, Copy)]
pub struct PgLossInputs<'a> {
    /// Log-probs of the sampled tokens under the policy being trained.
    pub logp: &'a [f32],
    /// Log-probs of the same tokens under the behaviour policy that sampled them.
    pub old_logp: &'a [f32],
    /// Advantage of each token (its sequence's, in GRPO).
    pub advantages: &'a [f32],
    /// 1 for policy tokens that count, 0 for prompt and padding.
    pub mask: &'a [f32],
}

impl PgLossInputs<'_> {
    /// The number of tokens.
    ///
    /// # Panics
    /// If the four slices differ in length.
    pub fn len(&self) -> usize {
        let n = self.logp.len();
        assert!(
            self.old_logp.len() == n && self.advantages.len() == n && self.mask.len() == n,
            "pg loss inputs differ in length"
        );
        n
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The forward pass's results.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PgLossStats {
    /// Token-mean clipped surrogate loss over the mask.
    pub loss: f32,
    /// `sum(mask)`: the denominator of the mean.
    pub mask_sum: f32,
    /// Masked fraction of tokens whose ratio lies outside `[1 - low, 1 + high]`.
    pub clip_fraction: f32,
}

/// PPO clipped surrogate loss for one token: `-min(r A, clip(r, 1-lo, 1+hi) A)` with
/// `r = exp(logp_new - logp_old)`.
pub fn clipped_pg_loss(
    logp_new: f32,
    logp_old: f32,
    advantage: f32,
    clip_low: f32,
    clip_high: f32,
) -> f32 {
    let r = (logp_new - logp_old).exp();
    let clipped = r.clamp(1.0 - clip_low, 1.0 + clip_high);
    -(r * advantage).min(clipped * advantage)
}

/// `d clipped_pg_loss / d logp_new` for one token: `-A r` where the unclipped term is the
/// minimum, else 0.
pub fn clipped_pg_grad(
    logp_new: f32,
    logp_old: f32,
    advantage: f32,
    clip_low: f32,
    clip_high: f32,
) -> f32 {
    let r = (logp_new - logp_old).exp();
    let clipped = r.clamp(1.0 - clip_low, 1.0 + clip_high);
    if r * advantage <= clipped * advantage {
        -advantage * r
    } else {
        0.0
    }
}

/// Forward pass: the token-mean loss over the mask, its denominator and the clip fraction.
pub fn pg_loss_fwd(inputs: PgLossInputs<'_>, clip: ClipRange) -> PgLossStats {
    inputs.len();
    // Sums in f64, so the reference is more accurate than any f32 reduction order.
    let (mut loss, mut mask_sum, mut clipped) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..inputs.logp.len() {
        let m = f64::from(inputs.mask[i]);
        let (lp, old, a) = (inputs.logp[i], inputs.old_logp[i], inputs.advantages[i]);
        loss += m * f64::from(clipped_pg_loss(lp, old, a, clip.low, clip.high));
        mask_sum += m;
        let r = (lp - old).exp();
        if r < 1.0 - clip.low || r > 1.0 + clip.high {
            clipped += m;
        }
    }
    let inv = if mask_sum > 0.0 { 1.0 / mask_sum } else { 0.0 };
    PgLossStats {
        loss: (loss * inv) as f32,
        mask_sum: mask_sum as f32,
        clip_fraction: (clipped * inv) as f32,
    }
}

/// Backward pass: `d loss / d logp` per token, scaled by the upstream gradient `grad`.
pub fn pg_loss_bwd(inputs: PgLossInputs<'_>, clip: ClipRange, grad: f32) -> Vec<f32> {
    inputs.len();
    let mask_sum = inputs.mask.iter().map(|&m| f64::from(m)).sum::<f64>() as f32;
    let scale = if mask_sum > 0.0 { grad / mask_sum } else { 0.0 };
    (0..inputs.logp.len())
        .map(|i| {
            let g = clipped_pg_grad(
                inputs.logp[i],
                inputs.old_logp[i],
                inputs.advantages[i],
                clip.low,
                clip.high,
            );
            scale * inputs.mask[i] * g
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLIP: ClipRange = ClipRange {
        low: 0.2,
        high: 0.28,
    };

    #[test]
    fn clipped_loss_pins_hand_examples() {
        // r = 1.5, A = 1, clip 0.2 -> min(1.5, 1.2) = 1.2
        let lp_old = 0.0f32;
        let lp_new = 1.5f32.ln();
        assert!((clipped_pg_loss(lp_new, lp_old, 1.0, 0.2, 0.2) + 1.2).abs() < 1e-6);
        assert_eq!(clipped_pg_grad(lp_new, lp_old, 1.0, 0.2, 0.2), 0.0);
        // A = -1: min(-1.5, -1.2) = -1.5 -> loss 1.5 (no clipping of a worsening move)
        assert!((clipped_pg_loss(lp_new, lp_old, -1.0, 0.2, 0.2) - 1.5).abs() < 1e-6);
        assert!((clipped_pg_grad(lp_new, lp_old, -1.0, 0.2, 0.2) - 1.5).abs() < 1e-6);
        // r = 0.5, A = 1: min(0.5, 0.8) = 0.5
        assert!((clipped_pg_loss(0.5f32.ln(), 0.0, 1.0, 0.2, 0.2) + 0.5).abs() < 1e-6);
        assert!((clipped_pg_grad(0.5f32.ln(), 0.0, 1.0, 0.2, 0.2) + 0.5).abs() < 1e-6);
    }

    #[test]
    fn batch_loss_is_the_masked_token_mean() {
        let logp = [0.0, 1.5f32.ln(), 0.5f32.ln(), 3.0];
        let old = [0.0; 4];
        let adv = [2.0, 1.0, 1.0, 5.0];
        let mask = [1.0, 1.0, 1.0, 0.0];
        let inputs = PgLossInputs {
            logp: &logp,
            old_logp: &old,
            advantages: &adv,
            mask: &mask,
        };
        let clip = ClipRange {
            low: 0.2,
            high: 0.2,
        };
        let s = pg_loss_fwd(inputs, clip);
        assert!((s.loss - (-2.0 - 1.2 - 0.5) / 3.0).abs() < 1e-6);
        assert_eq!(s.mask_sum, 3.0);
        assert!((s.clip_fraction - 2.0 / 3.0).abs() < 1e-6);
        let d = pg_loss_bwd(inputs, clip, 1.0);
        let want = [-2.0 / 3.0, 0.0, -0.5 / 3.0, 0.0];
        for (g, w) in d.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{d:?}");
        }
    }

    #[test]
    fn empty_mask_gives_zero_loss_and_gradient() {
        let x = [0.3f32; 3];
        let inputs = PgLossInputs {
            logp: &x,
            old_logp: &x,
            advantages: &x,
            mask: &[0.0; 3],
        };
        assert_eq!(pg_loss_fwd(inputs, CLIP), PgLossStats::default());
        assert_eq!(pg_loss_bwd(inputs, CLIP, 1.0), vec![0.0; 3]);
    }

    proptest! {
        #[test]
        fn forward_matches_the_naive_formula(
            tokens in proptest::collection::vec((-2.0f32..2.0, -2.0f32..2.0, -3.0f32..3.0, 0u8..2), 1..50),
        ) {
            let logp: Vec<f32> = tokens.iter().map(|t| t.0).collect();
            let old: Vec<f32> = tokens.iter().map(|t| t.1).collect();
            let adv: Vec<f32> = tokens.iter().map(|t| t.2).collect();
            let mask: Vec<f32> = tokens.iter().map(|t| t.3 as f32).collect();
            let s = pg_loss_fwd(PgLossInputs { logp: &logp, old_logp: &old, advantages: &adv, mask: &mask }, CLIP);
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for i in 0..logp.len() {
                let r = ((logp[i] - old[i]) as f64).exp();
                let a = adv[i] as f64;
                let c = r.clamp(1.0 - CLIP.low as f64, 1.0 + CLIP.high as f64);
                num += mask[i] as f64 * -(r * a).min(c * a);
                den += mask[i] as f64;
            }
            let want = if den > 0.0 { num / den } else { 0.0 };
            prop_assert!((s.loss as f64 - want).abs() < 1e-4 * (1.0 + want.abs()));
        }

        #[test]
        fn backward_matches_finite_differences(
            tokens in proptest::collection::vec((-2.0f32..2.0, -2.0f32..2.0, -3.0f32..3.0, 0u8..2), 1..30),
            grad in -2.0f32..2.0,
        ) {
            let logp: Vec<f32> = tokens.iter().map(|t| t.0).collect();
            let old: Vec<f32> = tokens.iter().map(|t| t.1).collect();
            let adv: Vec<f32> = tokens.iter().map(|t| t.2).collect();
            let mask: Vec<f32> = tokens.iter().map(|t| t.3 as f32).collect();
            let inputs = PgLossInputs { logp: &logp, old_logp: &old, advantages: &adv, mask: &mask };
            let d = pg_loss_bwd(inputs, CLIP, grad);
            let loss = |lp: &[f64]| -> f64 {
                let den: f64 = mask.iter().map(|&m| m as f64).sum();
                let num: f64 = (0..lp.len()).map(|i| {
                    let r = (lp[i] - old[i] as f64).exp();
                    let a = adv[i] as f64;
                    let c = r.clamp(1.0 - CLIP.low as f64, 1.0 + CLIP.high as f64);
                    mask[i] as f64 * -(r * a).min(c * a)
                }).sum();
                if den > 0.0 { grad as f64 * num / den } else { 0.0 }
            };
            let mut lp: Vec<f64> = logp.iter().map(|&x| x as f64).collect();
            let h = 1e-6;
            for i in 0..lp.len() {
                // The loss has kinks at the clip edges; central differences are meaningless there.
                let r = ((logp[i] - old[i]) as f64).exp();
                let edges = [1.0 - CLIP.low as f64, 1.0 + CLIP.high as f64];
                if edges.iter().any(|e| (r - e).abs() < 1e-4) {
                    continue;
                }
                let x = lp[i];
                lp[i] = x + h;
                let up = loss(&lp);
                lp[i] = x - h;
                let down = loss(&lp);
                lp[i] = x;
                let fd = (up - down) / (2.0 * h);
                prop_assert!((d[i] as f64 - fd).abs() < 1e-3 * (1.0 + fd.abs()), "i {i}: {} vs {fd}", d[i]);
            }
        }
    }
}
