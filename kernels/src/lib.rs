//! Reference implementations of troupe's hot kernels, on the CPU.
//!
//! Each function here is the ground truth a CUDA kernel (behind the `cuda` feature)
//! is tested against, and the CPU path the sampler and learner use today:
//! - [`token_logprob`] — fused log-softmax + gather of one token;
//! - [`sample_top_p`] — temperature / nucleus sampling from one row of logits;
//! - [`clipped_pg_loss`] — the per-token PPO clipped policy-gradient objective.
//!
//! ```
//! let logits = [2.0f32, 1.0, 0.0];
//! let (tok, lp) = troupe_kernels::sample_top_p(&logits, 1.0, 1.0, 0.0);
//! assert_eq!(tok, 0);
//! assert!((lp - troupe_kernels::token_logprob(&logits, 0, 1.0)).abs() < 1e-6);
//! ```

/// `log softmax(logits / temperature)[token]`, computed stably.
pub fn token_logprob(logits: &[f32], token: usize, temperature: f32) -> f32 {
    let t = temperature.max(1e-6);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = logits
        .iter()
        .map(|&l| ((l - max) / t).exp())
        .sum::<f32>()
        .ln();
    (logits[token] - max) / t - lse
}

/// Index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

/// Draws a token from `softmax(logits / temperature)` restricted to the smallest set
/// of most likely tokens whose mass reaches `top_p`, using the uniform draw `u` in
/// `[0, 1)`. `temperature <= 0` means greedy. Returns the token and its log-prob under
/// the untruncated tempered distribution (what the learner recomputes; with
/// `top_p < 1` the true behaviour distribution is the truncated one).
pub fn sample_top_p(logits: &[f32], temperature: f32, top_p: f32, u: f32) -> (usize, f32) {
    if temperature <= 0.0 {
        let tok = argmax(logits);
        return (tok, token_logprob(logits, tok, 1.0));
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let probs: Vec<f32> = logits
        .iter()
        .map(|&l| ((l - max) / temperature).exp())
        .collect();
    let total: f32 = probs.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    if top_p < 1.0 {
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    }
    let mut kept = 0.0f32;
    let mut cut = order.len();
    if top_p < 1.0 {
        for (k, &i) in order.iter().enumerate() {
            kept += probs[i];
            if kept >= top_p * total {
                cut = k + 1;
                break;
            }
        }
    } else {
        kept = total;
    }
    let target = u.clamp(0.0, 1.0) * kept;
    let mut acc = 0.0f32;
    let mut tok = order[cut - 1];
    for &i in &order[..cut] {
        acc += probs[i];
        if acc > target {
            tok = i;
            break;
        }
    }
    (tok, token_logprob(logits, tok, temperature))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn logprob_matches_hand_computation() {
        // softmax([0, ln 3]) = [0.25, 0.75]
        let l = [0.0, 3f32.ln()];
        assert!((token_logprob(&l, 1, 1.0) - 0.75f32.ln()).abs() < 1e-6);
        assert!((token_logprob(&l, 0, 1.0) - 0.25f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // probs 0.7, 0.2, 0.1: top_p 0.6 keeps only token 0 whatever u is.
        let l = [0.7f32.ln(), 0.2f32.ln(), 0.1f32.ln()];
        for u in [0.0, 0.5, 0.99] {
            assert_eq!(sample_top_p(&l, 1.0, 0.6, u).0, 0);
        }
        // top_p 1.0 reaches the tail for u near 1.
        assert_eq!(sample_top_p(&l, 1.0, 1.0, 0.95).0, 2);
        assert_eq!(sample_top_p(&l, 0.0, 1.0, 0.95).0, 0);
    }

    #[test]
    fn clipped_loss_pins_hand_examples() {
        // r = 1.5, A = 1, clip 0.2 -> min(1.5, 1.2) = 1.2
        let lp_old = 0.0f32;
        let lp_new = 1.5f32.ln();
        assert!((clipped_pg_loss(lp_new, lp_old, 1.0, 0.2, 0.2) + 1.2).abs() < 1e-6);
        // A = -1: min(-1.5, -1.2) = -1.5 -> loss 1.5 (no clipping of a worsening move)
        assert!((clipped_pg_loss(lp_new, lp_old, -1.0, 0.2, 0.2) - 1.5).abs() < 1e-6);
        // r = 0.5, A = 1: min(0.5, 0.8) = 0.5
        assert!((clipped_pg_loss(0.5f32.ln(), 0.0, 1.0, 0.2, 0.2) + 0.5).abs() < 1e-6);
    }

    proptest! {
        #[test]
        fn sampling_frequencies_follow_probabilities(seed in 0u64..4) {
            let l = [1.0f32, 0.0, -1.0, 0.5];
            let mut counts = [0usize; 4];
            let n = 4000;
            for i in 0..n {
                let u = ((i as u64 * 2654435761 + seed) % n as u64) as f32 / n as f32;
                counts[sample_top_p(&l, 1.0, 1.0, u).0] += 1;
            }
            for (k, &c) in counts.iter().enumerate() {
                let p = token_logprob(&l, k, 1.0).exp();
                prop_assert!((c as f32 / n as f32 - p).abs() < 0.01);
            }
        }
    }
}
