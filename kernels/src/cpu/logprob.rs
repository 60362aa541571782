//! Fused token log-prob: log-softmax of tempered logits, gathered at one target per row.
//!
//! Forward: `logprob[r] = l[r, t_r] / T - lse[r]` with `lse[r] = log sum_j exp(l[r, j] / T)`.
//! Backward: `d l[r, j] = g[r] * (onehot(t_r)[j] - softmax(l[r] / T)[j]) / T`, which at
//! `T = 1` is the familiar `g * (onehot - softmax)`.

/// The distribution a row of logits stands for: `softmax(logits / temperature)` over `vocab`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemperedSoftmax {
    /// Logits per row.
    pub vocab: usize,
    /// Softmax temperature; clamped to at least `1e-6` (see [`clamp_temperature`]).
    pub temperature: f32,
}

/// `log softmax(logits / temperature)[token]`, computed stably.
pub fn token_logprob(logits: &[f32], token: usize, temperature: f32) -> f32 {
    let t = clamp_temperature(temperature);
    let (max, log_sum) = row_stats(logits, t);
    (logits[token] - max) / t - log_sum
}

/// The temperature every log-prob kernel divides by: `temperature`, but never below `1e-6`.
pub fn clamp_temperature(temperature: f32) -> f32 {
    temperature.max(1e-6)
}

/// Per-row log-probs of the targets and the log-sum-exp that the backward pass reuses.
#[derive(Debug, Clone, PartialEq)]
pub struct RowLogprobs {
    /// `log softmax(logits[r] / T)[targets[r]]`, one per row.
    pub logprob: Vec<f32>,
    /// `log sum_j exp(logits[r, j] / T)`, one per row (of the tempered logits).
    pub lse: Vec<f32>,
}

/// Forward pass over `[rows, vocab]` logits and `[rows]` targets.
///
/// # Panics
/// If `logits.len() != targets.len() * vocab` or a target is not below `vocab`.
pub fn token_logprob_fwd(logits: &[f32], targets: &[u32], softmax: TemperedSoftmax) -> RowLogprobs {
    let rows = check_rows(logits, targets.len(), softmax.vocab);
    let t = clamp_temperature(softmax.temperature);
    let mut out = RowLogprobs {
        logprob: Vec::with_capacity(rows),
        lse: Vec::with_capacity(rows),
    };
    for (row, &target) in logits.chunks_exact(softmax.vocab).zip(targets) {
        let target = target as usize;
        assert!(target < softmax.vocab, "target {target} >= vocab");
        let (max, log_sum) = row_stats(row, t);
        out.lse.push(max / t + log_sum);
        out.logprob.push((row[target] - max) / t - log_sum);
    }
    out
}

/// Backward pass: `d logits` given the upstream gradient `grad[r]` of each row's log-prob
/// and the `lse` the forward pass returned.
///
/// # Panics
/// On mismatched lengths or a target not below `vocab`.
pub fn token_logprob_bwd(
    logits: &[f32],
    targets: &[u32],
    lse: &[f32],
    grad: &[f32],
    softmax: TemperedSoftmax,
) -> Vec<f32> {
    let rows = check_rows(logits, targets.len(), softmax.vocab);
    assert_eq!(lse.len(), rows, "lse length");
    assert_eq!(grad.len(), rows, "grad length");
    let t = clamp_temperature(softmax.temperature);
    let mut d = vec![0.0f32; logits.len()];
    for (r, (row, d_row)) in logits
        .chunks_exact(softmax.vocab)
        .zip(d.chunks_exact_mut(softmax.vocab))
        .enumerate()
    {
        let target = targets[r] as usize;
        assert!(target < softmax.vocab, "target {target} >= vocab");
        let g = grad[r] / t;
        for (dj, &l) in d_row.iter_mut().zip(row) {
            *dj = -g * (l / t - lse[r]).exp();
        }
        d_row[target] += g;
    }
    d
}

/// The row's max logit and `log sum_j exp((row[j] - max) / t)`: `lse = max / t + log_sum`.
/// Sums in f64, so the reference is more accurate than any f32 reduction order.
fn row_stats(row: &[f32], t: f32) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&l| f64::from(((l - max) / t).exp())).sum();
    (max, sum.ln() as f32)
}

/// The number of rows, checking that `logits` is `[rows, vocab]`.
fn check_rows(logits: &[f32], rows: usize, vocab: usize) -> usize {
    assert!(vocab > 0, "vocab must be positive");
    assert_eq!(logits.len(), rows * vocab, "logits must be [rows, vocab]");
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn soft(vocab: usize, temperature: f32) -> TemperedSoftmax {
        TemperedSoftmax { vocab, temperature }
    }

    #[test]
    fn logprob_matches_hand_computation() {
        // softmax([0, ln 3]) = [0.25, 0.75]
        let l = [0.0, 3f32.ln()];
        assert!((token_logprob(&l, 1, 1.0) - 0.75f32.ln()).abs() < 1e-6);
        assert!((token_logprob(&l, 0, 1.0) - 0.25f32.ln()).abs() < 1e-6);
        let out = token_logprob_fwd(&[0.0, 3f32.ln(), 0.0, 3f32.ln()], &[1, 0], soft(2, 1.0));
        assert!((out.logprob[0] - 0.75f32.ln()).abs() < 1e-6);
        assert!((out.logprob[1] - 0.25f32.ln()).abs() < 1e-6);
        assert!((out.lse[0] - 4f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn huge_logits_stay_finite() {
        let l = [1e30f32, 0.0, -1e30];
        let out = token_logprob_fwd(&l, &[0], soft(3, 1.0));
        assert_eq!(out.logprob[0], 0.0);
        let d = token_logprob_bwd(&l, &[1], &out.lse, &[1.0], soft(3, 1.0));
        assert!(d.iter().all(|x| x.is_finite()));
        assert_eq!(d, vec![-1.0, 1.0, 0.0]);
    }

    #[test]
    fn backward_rows_sum_to_zero_and_match_onehot_minus_softmax() {
        let l = [0.5f32, -1.0, 2.0, 0.0];
        let out = token_logprob_fwd(&l, &[2], soft(4, 1.0));
        let d = token_logprob_bwd(&l, &[2], &out.lse, &[1.0], soft(4, 1.0));
        let z: f32 = l.iter().map(|x| x.exp()).sum();
        for (j, &dj) in d.iter().enumerate() {
            let onehot = if j == 2 { 1.0 } else { 0.0 };
            assert!((dj - (onehot - l[j].exp() / z)).abs() < 1e-6);
        }
        assert!(d.iter().sum::<f32>().abs() < 1e-6);
    }

    fn rows_strategy() -> impl Strategy<Value = (usize, Vec<f32>, Vec<u32>, f32)> {
        (1usize..5, 1usize..40, 0.3f32..3.0).prop_flat_map(|(rows, vocab, t)| {
            (
                Just(vocab),
                proptest::collection::vec(-8.0f32..8.0, rows * vocab),
                proptest::collection::vec(0u32..vocab as u32, rows),
                Just(t),
            )
        })
    }

    proptest! {
        #[test]
        fn forward_matches_the_naive_formula((vocab, logits, targets, t) in rows_strategy()) {
            let out = token_logprob_fwd(&logits, &targets, soft(vocab, t));
            for (r, row) in logits.chunks_exact(vocab).enumerate() {
                // Naive in f64: log(exp(l_t / T) / sum exp(l_j / T)).
                let z: f64 = row.iter().map(|&l| (l as f64 / t as f64).exp()).sum();
                let want = (row[targets[r] as usize] as f64 / t as f64).exp() / z;
                prop_assert!((out.logprob[r] as f64 - want.ln()).abs() < 1e-4);
                prop_assert!((token_logprob(row, targets[r] as usize, t) - out.logprob[r]).abs() < 1e-4);
            }
        }

        #[test]
        fn backward_matches_finite_differences((vocab, logits, targets, t) in rows_strategy()) {
            let rows = targets.len();
            let grad: Vec<f32> = (0..rows).map(|r| 0.5 + r as f32).collect();
            let s = soft(vocab, t);
            let out = token_logprob_fwd(&logits, &targets, s);
            let d = token_logprob_bwd(&logits, &targets, &out.lse, &grad, s);
            // Objective sum_r grad[r] * logprob[r], differentiated in f64 by central differences.
            let objective = |l: &[f64]| -> f64 {
                l.chunks_exact(vocab).zip(&targets).zip(&grad).map(|((row, &tg), &g)| {
                    let z: f64 = row.iter().map(|&x| (x / t as f64).exp()).sum();
                    g as f64 * (row[tg as usize] / t as f64 - z.ln())
                }).sum()
            };
            let mut l64: Vec<f64> = logits.iter().map(|&x| x as f64).collect();
            let h = 1e-5;
            for i in 0..l64.len() {
                let x = l64[i];
                l64[i] = x + h;
                let up = objective(&l64);
                l64[i] = x - h;
                let down = objective(&l64);
                l64[i] = x;
                let fd = (up - down) / (2.0 * h);
                prop_assert!((d[i] as f64 - fd).abs() < 1e-3 * (1.0 + fd.abs()), "i {i}: {} vs {fd}", d[i]);
            }
        }
    }
}
