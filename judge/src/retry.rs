//! Which failures are retried, and how long to wait before each retry: pure functions,
//! the randomness passed in.
//!
//! Retried: network failures (connect errors, broken connections), timeouts, HTTP 429
//! and 5xx. Never retried: any other status (4xx: the request itself is wrong, and
//! sending it again costs money for the same answer) and malformed replies.
//!
//! Waits grow exponentially with "equal jitter": before retry `n` (1-based) the cap is
//! `min(backoff_max, backoff_base * 2^(n-1))` and the wait is uniform in `[cap/2, cap]`,
//! so retries of many concurrent calls spread out but never come back sooner than half
//! the cap. A `Retry-After` header (delta-seconds) raises the wait to what the server
//! asked for; when it asks for more than `backoff_max`, the call stops retrying and
//! reports the error instead of sleeping for longer than configured.

use std::time::Duration;

/// How an HTTP status is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx: parse the reply.
    Success,
    /// 429 or 5xx: worth another attempt.
    Retryable,
    /// Anything else: fail now.
    Fatal,
}

/// Classifies an HTTP status code.
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        429 | 500..=599 => StatusClass::Retryable,
        _ => StatusClass::Fatal,
    }
}

/// Parses a `Retry-After` value given in seconds (`"2"`, `" 10 "`). An HTTP-date or
/// anything else gives `None`, and the computed backoff applies.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than u64 holds is "a very long time".
    Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)))
}

/// Retry count and backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: one attempt only).
    pub max_retries: u32,
    /// Backoff cap before the first retry.
    pub base: Duration,
    /// Largest wait before any retry.
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 = the first retry), given the server's
    /// `Retry-After` and `jitter` drawn uniformly from `[0, 1)`; `None` when no retry
    /// is left or the server asks for a longer wait than `max`.
    pub fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        let factor = 1u32.checked_shl(retry - 1).unwrap_or(u32::MAX);
        let cap = self.base.saturating_mul(factor).min(self.max);
        let wait = cap / 2 + cap.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
        match retry_after {
            Some(asked) if asked > self.max => None,
            Some(asked) => Some(wait.max(asked)),
            None => Some(wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            base: 100 * MS,
            max: 1000 * MS,
        }
    }

    #[test]
    fn statuses_are_classified() {
        for (status, class) in [
            (200, StatusClass::Success),
            (204, StatusClass::Success),
            (429, StatusClass::Retryable),
            (500, StatusClass::Retryable),
            (503, StatusClass::Retryable),
            (599, StatusClass::Retryable),
            (400, StatusClass::Fatal),
            (401, StatusClass::Fatal),
            (404, StatusClass::Fatal),
            (422, StatusClass::Fatal),
            (301, StatusClass::Fatal),
            (600, StatusClass::Fatal),
        ] {
            assert_eq!(classify_status(status), class, "{status}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_only() {
        assert_eq!(parse_retry_after("3"), Some(3000 * MS));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn waits_double_up_to_the_cap() {
        let p = policy();
        // jitter 0 gives half the cap, jitter ~1 the whole cap.
        let lows: Vec<_> = (1..=5).map(|n| p.delay(n, None, 0.0).unwrap()).collect();
        assert_eq!(lows, [50 * MS, 100 * MS, 200 * MS, 400 * MS, 500 * MS]);
        assert_eq!(p.delay(3, None, 1.0), Some(400 * MS));
        assert_eq!(p.delay(6, None, 0.5), None);
        assert_eq!(p.delay(0, None, 0.5), None);
        let none = RetryPolicy {
            max_retries: 0,
            ..p
        };
        assert_eq!(none.delay(1, None, 0.5), None);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.delay(1, Some(700 * MS), 0.0), Some(700 * MS));
        // A shorter Retry-After does not shorten the backoff.
        assert_eq!(p.delay(4, Some(10 * MS), 0.0), Some(400 * MS));
        assert_eq!(p.delay(1, Some(1000 * MS), 0.0), Some(1000 * MS));
        assert_eq!(p.delay(1, Some(1001 * MS), 0.0), None);
    }

    proptest! {
        #[test]
        fn waits_stay_in_bounds(
            base_ms in 0u64..10_000,
            max_ms in 0u64..60_000,
            retry in 1u32..200,
            jitter in 0.0f64..1.0,
        ) {
            let p = RetryPolicy { max_retries: 200, base: MS * base_ms as u32, max: MS * max_ms as u32 };
            let d = p.delay(retry, None, jitter).unwrap();
            prop_assert!(d <= p.max);
            let cap = p.base.saturating_mul(1u32.checked_shl(retry - 1).unwrap_or(u32::MAX)).min(p.max);
            prop_assert!(d >= cap / 2);
        }
    }
}
