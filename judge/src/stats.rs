//! What a judge counts: trajectories scored and left unscored, LLM calls and how they
//! ended, tokens against the budget, and call latency. Plain values that merge across
//! judges and cross the network (bincode), plus the JSON view written to `metrics.jsonl`
//! and `summary.json`.

use std::time::Duration;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// Upper bounds, in milliseconds, of the latency histogram's buckets; one more bucket
/// holds everything slower.
pub const LATENCY_BOUNDS_MS: [u64; 17] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    200_000,
];

/// Call latencies: exact count, sum and max, and a fixed log-scale histogram from which
/// quantiles are estimated (each estimate is its bucket's upper bound, capped at the
/// max: never below the true quantile, at most 2.5x above it).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct LatencyHistogram {
    /// Per bucket of [`LATENCY_BOUNDS_MS`], plus the overflow bucket.
    pub buckets: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Sum, in microseconds.
    pub sum_us: u64,
    /// Largest, in microseconds.
    pub max_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; LATENCY_BOUNDS_MS.len() + 1],
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_MS.partition_point(|&b| b * 1000 < us);
        if self.buckets.len() != LATENCY_BOUNDS_MS.len() + 1 {
            self.buckets.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
        }
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// Adds `other`'s observations.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        let n = self.buckets.len().max(other.buckets.len());
        self.buckets.resize(n, 0);
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Estimated `q`-quantile in milliseconds (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let max_ms = self.max_us as f64 / 1000.0;
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return LATENCY_BOUNDS_MS
                    .get(i)
                    .map_or(max_ms, |&b| (b as f64).min(max_ms));
            }
        }
        max_ms
    }

    /// The JSON view.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count,
            mean_ms: if self.count == 0 {
                0.0
            } else {
                self.sum_us as f64 / 1000.0 / self.count as f64
            },
            sum_ms: self.sum_us as f64 / 1000.0,
            max_ms: self.max_us as f64 / 1000.0,
            p50_ms: self.quantile_ms(0.5),
            p99_ms: self.quantile_ms(0.99),
        }
    }
}

/// Latency as written to metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Calls measured.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Sum.
    pub sum_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Median estimate (bucket upper bound).
    pub p50_ms: f64,
    /// 99th percentile estimate (bucket upper bound).
    pub p99_ms: f64,
}

/// Cumulative counters of one judge (or, merged, of many).
///
/// Levels: a *trajectory* is scored or left unscored; scoring it may make one LLM
/// *call*; a call sends one or more HTTP *requests* (retries); a call's reply holds a
/// *verdict* or a malformed one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct JudgeStats {
    /// Trajectories given a reward.
    pub scored: u64,
    /// Trajectories left unscored because a component failed (never scored zero).
    pub unscored: u64,
    /// LLM judge calls (one per trajectory with an `llm` component).
    pub calls: u64,
    /// Calls that returned a well-formed completion.
    pub successes: u64,
    /// Calls that ended in an error (after retries, or refused by the budget).
    pub failures: u64,
    /// Requests sent again after a retryable failure.
    pub retries: u64,
    /// HTTP requests sent (first attempts and retries).
    pub requests: u64,
    /// Requests that got no reply within the per-request timeout.
    pub timeouts: u64,
    /// Requests that could not connect, or whose connection broke.
    pub connect_errors: u64,
    /// Requests answered with a status other than 2xx.
    pub http_errors: u64,
    /// 2xx replies that were not well-formed chat completions.
    pub malformed_replies: u64,
    /// Completions whose verdict parsed.
    pub verdicts: u64,
    /// Completions whose verdict did not parse.
    pub malformed_verdicts: u64,
    /// The last malformed verdict's raw text (at most 500 bytes), for the operator.
    pub last_malformed: String,
    /// Requests the budget refused.
    pub budget_refusals: u64,
    /// Most calls in flight at once (bounded by `max_concurrency`).
    pub peak_in_flight: u64,
    /// `usage.prompt_tokens`, summed.
    pub prompt_tokens: u64,
    /// `usage.completion_tokens`, summed.
    pub completion_tokens: u64,
    /// The budget's `max_calls` (0 = unlimited).
    pub max_calls: u64,
    /// The budget's `max_tokens` (0 = unlimited).
    pub max_tokens: u64,
    /// Latency of each call, from its first request to its outcome (retries and
    /// backoff included, waiting for a concurrency slot excluded).
    pub latency: LatencyHistogram,
}

/// Longest raw text kept in [`JudgeStats::last_malformed`].
const LAST_MALFORMED_BYTES: usize = 500;

impl JudgeStats {
    /// Remembers `raw` as the last malformed verdict (cut at a char boundary).
    pub fn note_malformed(&mut self, raw: &str) {
        self.malformed_verdicts += 1;
        let mut end = raw.len().min(LAST_MALFORMED_BYTES);
        while !raw.is_char_boundary(end) {
            end -= 1;
        }
        self.last_malformed = raw[..end].to_owned();
    }

    /// Adds `other`'s counts (limits add too: two judges with 100 calls each may make 200).
    pub fn merge(&mut self, other: &JudgeStats) {
        self.scored += other.scored;
        self.unscored += other.unscored;
        self.calls += other.calls;
        self.successes += other.successes;
        self.failures += other.failures;
        self.retries += other.retries;
        self.requests += other.requests;
        self.timeouts += other.timeouts;
        self.connect_errors += other.connect_errors;
        self.http_errors += other.http_errors;
        self.malformed_replies += other.malformed_replies;
        self.verdicts += other.verdicts;
        self.malformed_verdicts += other.malformed_verdicts;
        if !other.last_malformed.is_empty() {
            self.last_malformed.clone_from(&other.last_malformed);
        }
        self.budget_refusals += other.budget_refusals;
        self.peak_in_flight = self.peak_in_flight.max(other.peak_in_flight);
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.max_calls += other.max_calls;
        self.max_tokens += other.max_tokens;
        self.latency.merge(&other.latency);
    }

    /// The JSON view for `metrics.jsonl` and `summary.json`.
    pub fn report(&self) -> JudgeReport {
        JudgeReport {
            scored: self.scored,
            unscored: self.unscored,
            calls: self.calls,
            successes: self.successes,
            failures: self.failures,
            retries: self.retries,
            requests: self.requests,
            timeouts: self.timeouts,
            connect_errors: self.connect_errors,
            http_errors: self.http_errors,
            malformed_replies: self.malformed_replies,
            verdicts: self.verdicts,
            malformed_verdicts: self.malformed_verdicts,
            last_malformed: self.last_malformed.clone(),
            peak_in_flight: self.peak_in_flight,
            budget: BudgetReport {
                requests: self.requests,
                max_calls: self.max_calls,
                tokens: self.prompt_tokens + self.completion_tokens,
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.completion_tokens,
                max_tokens: self.max_tokens,
                refusals: self.budget_refusals,
            },
            latency: self.latency.summary(),
        }
    }
}

/// Budget use as written to metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetReport {
    /// Requests made (each counts against `max_calls`).
    pub requests: u64,
    /// Limit on requests (0 = unlimited).
    pub max_calls: u64,
    /// Tokens charged (prompt + completion).
    pub tokens: u64,
    /// Prompt tokens charged.
    pub prompt_tokens: u64,
    /// Completion tokens charged.
    pub completion_tokens: u64,
    /// Limit on tokens (0 = unlimited).
    pub max_tokens: u64,
    /// Requests refused.
    pub refusals: u64,
}

/// [`JudgeStats`] as written to `metrics.jsonl` (`"judge"`) and `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeReport {
    /// See [`JudgeStats::scored`].
    pub scored: u64,
    /// See [`JudgeStats::unscored`].
    pub unscored: u64,
    /// See [`JudgeStats::calls`].
    pub calls: u64,
    /// See [`JudgeStats::successes`].
    pub successes: u64,
    /// See [`JudgeStats::failures`].
    pub failures: u64,
    /// See [`JudgeStats::retries`].
    pub retries: u64,
    /// See [`JudgeStats::requests`].
    pub requests: u64,
    /// See [`JudgeStats::timeouts`].
    pub timeouts: u64,
    /// See [`JudgeStats::connect_errors`].
    pub connect_errors: u64,
    /// See [`JudgeStats::http_errors`].
    pub http_errors: u64,
    /// See [`JudgeStats::malformed_replies`].
    pub malformed_replies: u64,
    /// See [`JudgeStats::verdicts`].
    pub verdicts: u64,
    /// See [`JudgeStats::malformed_verdicts`].
    pub malformed_verdicts: u64,
    /// See [`JudgeStats::last_malformed`].
    pub last_malformed: String,
    /// See [`JudgeStats::peak_in_flight`].
    pub peak_in_flight: u64,
    /// Budget use.
    pub budget: BudgetReport,
    /// Call latency.
    pub latency: LatencySummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn histogram_estimates_quantiles_from_above() {
        let mut h = LatencyHistogram::default();
        for _ in 0..98 {
            h.record(ms(30));
        }
        h.record(ms(700));
        h.record(ms(4000));
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.max_ms, 4000.0);
        assert_eq!(s.p50_ms, 50.0); // 30 ms lies in (20, 50]
        assert_eq!(s.p99_ms, 1000.0); // the 99th of 100 is the 700 ms one
        assert!((s.mean_ms - (98.0 * 30.0 + 4700.0) / 100.0).abs() < 1e-9);
        assert_eq!(h.quantile_ms(1.0), 4000.0); // capped at the max, not 5000
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn bucket_edges_and_overflow() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::ZERO);
        h.record(ms(1));
        h.record(Duration::from_micros(1001));
        h.record(Duration::from_secs(10_000));
        assert_eq!(&h.buckets[..2], &[2, 1]);
        assert_eq!(h.buckets[LATENCY_BOUNDS_MS.len()], 1);
        assert_eq!(h.quantile_ms(1.0), 10_000_000.0);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = JudgeStats {
            calls: 2,
            max_calls: 10,
            ..JudgeStats::default()
        };
        a.latency.record(ms(3));
        let mut b = JudgeStats {
            calls: 5,
            prompt_tokens: 7,
            max_calls: 10,
            ..JudgeStats::default()
        };
        b.note_malformed("nope");
        b.latency.record(ms(300));
        a.merge(&b);
        assert_eq!((a.calls, a.prompt_tokens, a.max_calls), (7, 7, 20));
        assert_eq!(
            (a.malformed_verdicts, a.last_malformed.as_str()),
            (1, "nope")
        );
        assert_eq!(a.latency.count, 2);
        assert_eq!(a.report().latency.max_ms, 300.0);
    }

    #[test]
    fn last_malformed_is_cut_at_a_char_boundary() {
        let mut s = JudgeStats::default();
        s.note_malformed(&"é".repeat(400));
        assert!(s.last_malformed.len() <= LAST_MALFORMED_BYTES);
        assert!(s.last_malformed.chars().all(|c| c == 'é'));
    }
}
