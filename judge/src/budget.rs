//! The judge's call and token budget: pure accounting, no clock and no I/O.
//!
//! Every HTTP request (first attempt or retry) is one call. Before a request is sent it
//! reserves one call and its completion cap (`max_tokens_per_call`) of tokens; when the
//! reply arrives the reservation is released and the tokens the server reports in
//! `usage` (prompt + completion) are charged. A request is refused when the calls
//! made would exceed `max_calls`, or when the tokens charged plus those reserved by
//! requests in flight plus its own cap would exceed `max_tokens`. Prompt tokens are
//! only known once charged, so the total can pass `max_tokens` by at most the prompt
//! tokens of the requests that were in flight when it was reached.

use std::fmt;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetLimit {
    /// `max_calls`.
    Calls,
    /// `max_tokens`.
    Tokens,
}

impl fmt::Display for BudgetLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetLimit::Calls => "max_calls reached",
            BudgetLimit::Tokens => "max_tokens reached",
        })
    }
}

/// A request's claim on the budget, returned by [`Budget::reserve`] and given back to
/// [`Budget::settle`] exactly once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a reservation must be settled"]
pub struct Reservation {
    tokens: u64,
}

/// Calls and tokens used so far against their limits (0 = unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budget {
    max_calls: u64,
    max_tokens: u64,
    calls: u64,
    tokens: u64,
    reserved: u64,
}

impl Budget {
    /// A budget of `max_calls` requests and `max_tokens` tokens; 0 means no limit.
    pub fn new(max_calls: u64, max_tokens: u64) -> Self {
        Self {
            max_calls,
            max_tokens,
            ..Self::default()
        }
    }

    /// Claims one call and `tokens` (the request's completion cap), or says which
    /// limit refuses it. A refused request claims nothing.
    pub fn reserve(&mut self, tokens: u64) -> Result<Reservation, BudgetLimit> {
        if self.max_calls > 0 && self.calls >= self.max_calls {
            return Err(BudgetLimit::Calls);
        }
        if self.max_tokens > 0
            && self
                .tokens
                .saturating_add(self.reserved)
                .saturating_add(tokens)
                > self.max_tokens
        {
            return Err(BudgetLimit::Tokens);
        }
        self.calls += 1;
        self.reserved += tokens;
        Ok(Reservation { tokens })
    }

    /// Releases `reservation` and charges `used` tokens (what the server reported; 0
    /// when the request failed before a usable reply).
    pub fn settle(&mut self, reservation: Reservation, used: u64) {
        self.reserved -= reservation.tokens;
        self.tokens = self.tokens.saturating_add(used);
    }

    /// Requests made (reserved) so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Tokens charged so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Tokens reserved by requests in flight.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// The limits, `(max_calls, max_tokens)`.
    pub fn limits(&self) -> (u64, u64) {
        (self.max_calls, self.max_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn call_limit_refuses_the_call_after_the_last() {
        let mut b = Budget::new(2, 0);
        let r1 = b.reserve(10).unwrap();
        let r2 = b.reserve(10).unwrap();
        assert_eq!(b.reserve(10), Err(BudgetLimit::Calls));
        b.settle(r1, 7);
        b.settle(r2, 0);
        // Settling gives back tokens, never calls.
        assert_eq!(b.reserve(1), Err(BudgetLimit::Calls));
        assert_eq!((b.calls(), b.tokens(), b.reserved()), (2, 7, 0));
    }

    #[test]
    fn token_limit_counts_reservations_in_flight() {
        let mut b = Budget::new(0, 100);
        let r1 = b.reserve(40).unwrap();
        let r2 = b.reserve(40).unwrap();
        // 80 reserved: a third cap of 40 would exceed 100.
        assert_eq!(b.reserve(40), Err(BudgetLimit::Tokens));
        assert!(b.reserve(20).is_ok_and(|r| {
            b.settle(r, 0);
            true
        }));
        b.settle(r1, 30);
        b.settle(r2, 25);
        assert_eq!((b.tokens(), b.reserved()), (55, 0));
        let r = b.reserve(45).unwrap();
        b.settle(r, 45);
        assert_eq!(b.reserve(1), Err(BudgetLimit::Tokens));
        assert_eq!(b.tokens(), 100);
    }

    #[test]
    fn zero_means_unlimited() {
        let mut b = Budget::new(0, 0);
        for _ in 0..1000 {
            let r = b.reserve(u64::MAX / 2).unwrap();
            b.settle(r, 1 << 40);
        }
        assert_eq!(b.calls(), 1000);
    }

    proptest! {
        /// Against a naive model: calls never exceed max_calls, reservations balance, and
        /// every accepted reservation fitted the token limit when it was made.
        #[test]
        fn budget_matches_a_naive_model(
            max_calls in 0u64..20,
            max_tokens in 0u64..500,
            ops in proptest::collection::vec((0u64..120, 0u64..150, any::<bool>()), 0..60),
        ) {
            let mut b = Budget::new(max_calls, max_tokens);
            let mut open: Vec<(Reservation, u64)> = Vec::new();
            let (mut calls, mut charged, mut reserved) = (0u64, 0u64, 0u64);
            for (cap, used, settle_now) in ops {
                let calls_ok = max_calls == 0 || calls < max_calls;
                let tokens_ok = max_tokens == 0 || charged + reserved + cap <= max_tokens;
                match b.reserve(cap) {
                    Ok(r) => {
                        prop_assert!(calls_ok && tokens_ok);
                        calls += 1;
                        reserved += cap;
                        open.push((r, cap));
                    }
                    Err(BudgetLimit::Calls) => prop_assert!(!calls_ok),
                    Err(BudgetLimit::Tokens) => prop_assert!(calls_ok && !tokens_ok),
                }
                if settle_now && let Some((r, cap)) = open.pop() {
                    b.settle(r, used);
                    reserved -= cap;
                    charged += used;
                }
                prop_assert_eq!((b.calls(), b.tokens(), b.reserved()), (calls, charged, reserved));
            }
        }
    }
}
