//! Temperature / nucleus (top-p) sampling, deterministic given one uniform draw per row.
//!
//! The rule, which the CUDA kernel follows too:
//! 1. `p_j = exp((l_j - max) / T)`, `total = sum_j p_j`;
//! 2. the nucleus is the shortest prefix of the tokens ordered by `(p desc, index asc)` whose
//!    mass reaches `top_p * total` (every token when `top_p >= 1`);
//! 3. the token is the first one, walking the nucleus **in vocabulary order**, at which the
//!    running mass exceeds `u * nucleus_mass` (if rounding leaves none, the last nucleus token
//!    with `p > 0`).
//!
//! `T` is clamped to at least `1e-6` like every log-prob here; sums run in f64.
//!
//! Walking in vocabulary order rather than by probability gives the same distribution and
//! lets the GPU replace a sort by a threshold search and a prefix sum.
//! `temperature <= 0` means greedy: the first maximal logit.

use super::logprob::{clamp_temperature, token_logprob};

/// One batch of rows to sample from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NucleusSampling {
    /// Logits per row.
    pub vocab: usize,
    /// Softmax temperature; `<= 0` is greedy decoding.
    pub temperature: f32,
    /// Nucleus mass in `(0, 1]`; `1` keeps every token.
    pub top_p: f32,
}

/// Tokens drawn from a batch of rows, with their log-probs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sampled {
    /// The drawn token of each row.
    pub tokens: Vec<u32>,
    /// Each token's log-prob under the untruncated tempered softmax (log-softmax at
    /// `T = 1` for greedy rows): what the learner recomputes.
    pub logprobs: Vec<f32>,
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
/// `[0, 1)` (see the module docs for the exact rule). `temperature <= 0` means greedy.
/// Returns the token and its log-prob under the untruncated tempered distribution (what
/// the learner recomputes; with `top_p < 1` the true behaviour distribution is the
/// truncated one).
pub fn sample_top_p(logits: &[f32], temperature: f32, top_p: f32, u: f32) -> (usize, f32) {
    if temperature <= 0.0 {
        let tok = argmax(logits);
        return (tok, token_logprob(logits, tok, 1.0));
    }
    let t = clamp_temperature(temperature);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let probs: Vec<f32> = logits.iter().map(|&l| ((l - max) / t).exp()).collect();
    let (kept, kept_mass) = nucleus(&probs, top_p);
    let target = f64::from(u.clamp(0.0, 1.0)) * kept_mass;
    let mut acc = 0.0f64;
    let mut tok = 0;
    for (i, &p) in probs.iter().enumerate() {
        if kept[i] && p > 0.0 {
            acc += f64::from(p);
            tok = i;
            if acc > target {
                break;
            }
        }
    }
    (tok, token_logprob(logits, tok, temperature))
}

/// Samples every row of `[rows, vocab]` logits with its own uniform draw.
///
/// # Panics
/// If `logits.len() != uniforms.len() * vocab`.
pub fn sample_rows(logits: &[f32], uniforms: &[f32], params: NucleusSampling) -> Sampled {
    assert!(params.vocab > 0, "vocab must be positive");
    assert_eq!(
        logits.len(),
        uniforms.len() * params.vocab,
        "logits must be [rows, vocab]"
    );
    let mut out = Sampled::default();
    for (row, &u) in logits.chunks_exact(params.vocab).zip(uniforms) {
        let (tok, lp) = sample_top_p(row, params.temperature, params.top_p, u);
        out.tokens.push(tok as u32);
        out.logprobs.push(lp);
    }
    out
}

/// Which tokens form the nucleus, and its mass.
fn nucleus(probs: &[f32], top_p: f32) -> (Vec<bool>, f64) {
    let total: f64 = probs.iter().map(|&p| f64::from(p)).sum();
    if top_p >= 1.0 {
        return (vec![true; probs.len()], total);
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut kept = vec![false; probs.len()];
    let mut mass = 0.0f64;
    for &i in &order {
        kept[i] = true;
        mass += f64::from(probs[i]);
        if mass >= f64::from(top_p) * total {
            break;
        }
    }
    (kept, mass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    fn nucleus_is_walked_in_vocabulary_order() {
        // probs 0.1, 0.2, 0.7 with top_p 0.8: nucleus {1, 2}, mass 0.9, walked 1 then 2.
        let l = [0.1f32.ln(), 0.2f32.ln(), 0.7f32.ln()];
        assert_eq!(sample_top_p(&l, 1.0, 0.8, 0.0).0, 1);
        assert_eq!(sample_top_p(&l, 1.0, 0.8, 0.2).0, 1); // 0.2 * 0.9 < 0.2
        assert_eq!(sample_top_p(&l, 1.0, 0.8, 0.3).0, 2);
        assert_eq!(sample_top_p(&l, 1.0, 0.8, 1.0).0, 2);
    }

    #[test]
    fn ties_at_the_cut_go_to_the_lower_index() {
        // Four equal tokens, top_p 0.5: the nucleus is tokens 0 and 1.
        let l = [0.0f32; 4];
        for u in [0.0, 0.3, 0.6, 0.99] {
            assert!(sample_top_p(&l, 1.0, 0.5, u).0 < 2);
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let l = [1.0f32, 3.0, 3.0, -2.0];
        let out = sample_rows(
            &l,
            &[0.9],
            NucleusSampling {
                vocab: 4,
                temperature: 0.0,
                top_p: 0.5,
            },
        );
        assert_eq!(out.tokens, vec![1]);
        assert!((out.logprobs[0] - token_logprob(&l, 1, 1.0)).abs() < 1e-6);
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

        #[test]
        fn top_p_frequencies_follow_the_renormalised_nucleus(
            logits in proptest::collection::vec(-4.0f32..4.0, 2..12),
            temperature in 0.3f32..2.0,
            top_p in 0.05f32..1.0,
        ) {
            // Naive model in f64: sort, cut, renormalise.
            let probs: Vec<f64> = logits.iter().map(|&l| (l as f64 / temperature as f64).exp()).collect();
            let total: f64 = probs.iter().sum();
            let mut order: Vec<usize> = (0..probs.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            let mut want = vec![0.0f64; probs.len()];
            let mut mass = 0.0;
            for &i in &order {
                want[i] = probs[i];
                mass += probs[i];
                if mass >= top_p as f64 * total {
                    break;
                }
            }
            // A mass within rounding of the cut makes the nucleus ambiguous; skip those cases.
            let near_cut = order.iter().scan(0.0, |m, &i| { *m += probs[i]; Some(*m) })
                .any(|m| (m - top_p as f64 * total).abs() < 1e-4 * total);
            prop_assume!(!near_cut);
            let n = 2000;
            let mut counts = vec![0usize; probs.len()];
            for i in 0..n {
                let (tok, lp) = sample_top_p(&logits, temperature, top_p, (i as f32 + 0.5) / n as f32);
                counts[tok] += 1;
                prop_assert!((lp - token_logprob(&logits, tok, temperature)).abs() < 1e-6);
            }
            for (k, &c) in counts.iter().enumerate() {
                prop_assert!((c as f64 / n as f64 - want[k] / mass).abs() < 2.0 / n as f64);
            }
        }

        #[test]
        fn rows_sample_like_single_rows(
            logits in proptest::collection::vec(-4.0f32..4.0, 3 * 7),
            uniforms in proptest::collection::vec(0.0f32..1.0, 3),
            top_p in 0.1f32..1.0,
        ) {
            let out = sample_rows(&logits, &uniforms, NucleusSampling { vocab: 7, temperature: 0.8, top_p });
            for (r, row) in logits.chunks_exact(7).enumerate() {
                let (tok, lp) = sample_top_p(row, 0.8, top_p, uniforms[r]);
                prop_assert_eq!(out.tokens[r] as usize, tok);
                prop_assert_eq!(out.logprobs[r], lp);
            }
        }
    }
}
