//! The judge model's verdict: the format it must end its reply with, and a strict parser.
//!
//! The **last non-blank line** of the reply decides; everything before it is the
//! model's reasoning and is ignored. Leading and trailing whitespace on that line is
//! ignored; nothing else is forgiven (no Markdown, no quotes, no lower case):
//!
//! | format | the last line must be | score |
//! |---|---|---|
//! | `pass_fail` | `VERDICT: PASS` or `VERDICT: FAIL` | 1 or 0 |
//! | `score` | `SCORE: <x>` with `x` a decimal (`0`, `0.75`, `1.0`) in `[0, 1]` | `x` |
//!
//! Spaces or tabs between the colon and the value are optional. Any other reply is a
//! [`JudgeError::MalformedVerdict`] carrying the reason and the raw reply: it is counted,
//! and the trajectory is left unscored — never scored zero.

use serde::Deserialize;

use crate::JudgeError;

/// The verdict line the judge prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictFormat {
    /// `VERDICT: PASS` (1) or `VERDICT: FAIL` (0).
    #[default]
    PassFail,
    /// `SCORE: <x>`, `x` in `[0, 1]`.
    Score,
}

impl VerdictFormat {
    /// The instruction that tells a model how to end its reply (the default prompt
    /// template ends with it).
    pub fn instruction(self) -> &'static str {
        match self {
            VerdictFormat::PassFail => {
                "End your reply with one line that is exactly `VERDICT: PASS` if the response is correct, or `VERDICT: FAIL` if it is not."
            }
            VerdictFormat::Score => {
                "End your reply with one line `SCORE: x`, where x is a number from 0 to 1 (1 = fully correct), written like 0, 0.5 or 1."
            }
        }
    }
}

/// Parses `reply` in `format` into a score in `[0, 1]`.
pub fn parse_verdict(reply: &str, format: VerdictFormat) -> Result<f32, JudgeError> {
    let malformed = |reason: String| JudgeError::MalformedVerdict {
        reason,
        raw: reply.to_owned(),
    };
    let Some(line) = reply
        .lines()
        .map(|l| l.trim_matches(|c: char| c.is_ascii_whitespace()))
        .rfind(|l| !l.is_empty())
    else {
        return Err(malformed("the reply is empty".into()));
    };
    match format {
        VerdictFormat::PassFail => match value_after(line, "VERDICT:") {
            Some("PASS") => Ok(1.0),
            Some("FAIL") => Ok(0.0),
            _ => Err(malformed(format!(
                "last line {line:?} is not `VERDICT: PASS` or `VERDICT: FAIL`"
            ))),
        },
        VerdictFormat::Score => {
            let Some(value) = value_after(line, "SCORE:") else {
                return Err(malformed(format!("last line {line:?} is not `SCORE: <x>`")));
            };
            if !is_decimal(value) {
                return Err(malformed(format!(
                    "score {value:?} is not a decimal like 0, 0.5 or 1"
                )));
            }
            let x: f32 = value
                .parse()
                .map_err(|_| malformed(format!("score {value:?} does not parse")))?;
            if !(0.0..=1.0).contains(&x) {
                return Err(malformed(format!("score {value} is outside [0, 1]")));
            }
            Ok(x)
        }
    }
}

/// The text after `key` and optional spaces or tabs, when `line` starts with `key`.
fn value_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.strip_prefix(key)
        .map(|rest| rest.trim_start_matches([' ', '\t']))
}

/// `digits` or `digits.digits`.
fn is_decimal(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, "1"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(int) && digits(frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pf(reply: &str) -> Result<f32, String> {
        parse_verdict(reply, VerdictFormat::PassFail).map_err(|e| match e {
            JudgeError::MalformedVerdict { reason, raw } => {
                assert_eq!(raw, reply);
                reason
            }
            other => panic!("unexpected error {other}"),
        })
    }

    fn score(reply: &str) -> Result<f32, String> {
        parse_verdict(reply, VerdictFormat::Score).map_err(|e| e.to_string())
    }

    #[test]
    fn pass_fail_table() {
        let ok = [
            ("VERDICT: PASS", 1.0),
            ("VERDICT: FAIL", 0.0),
            ("VERDICT:PASS", 1.0),
            ("VERDICT:\tFAIL", 0.0),
            ("  VERDICT: PASS  \n\n  \n", 1.0),
            ("The answer sorts the digits.\nVERDICT: PASS", 1.0),
            // Only the last line counts.
            ("VERDICT: PASS\nOn reflection:\nVERDICT: FAIL", 0.0),
            ("reasoning\r\nVERDICT: PASS\r\n", 1.0),
        ];
        for (reply, want) in ok {
            assert_eq!(pf(reply), Ok(want), "{reply:?}");
        }
        let bad = [
            "",
            "  \n\t\n",
            "PASS",
            "verdict: pass",
            "VERDICT: pass",
            "Verdict: PASS",
            "**VERDICT: PASS**",
            "`VERDICT: PASS`",
            "VERDICT: PASS.",
            "VERDICT: PASSED",
            "VERDICT: PASS FAIL",
            "VERDICT: PASS\nThanks!",
            "VERDICT : PASS",
            "SCORE: 1",
        ];
        for reply in bad {
            assert!(pf(reply).is_err(), "{reply:?} was accepted");
        }
        assert!(pf("").unwrap_err().contains("empty"));
        assert!(pf("x\nPASS").unwrap_err().contains("\"PASS\""));
    }

    #[test]
    fn score_table() {
        for (reply, want) in [
            ("SCORE: 0", 0.0),
            ("SCORE: 1", 1.0),
            ("SCORE: 1.0", 1.0),
            ("SCORE:0.25", 0.25),
            ("good enough\nSCORE: 0.75\n", 0.75),
            ("SCORE: 000.5", 0.5),
        ] {
            assert_eq!(score(reply), Ok(want), "{reply:?}");
        }
        for (reply, why) in [
            ("SCORE: 1.5", "outside"),
            ("SCORE: 2", "outside"),
            ("SCORE: -0.5", "decimal"),
            ("SCORE: .5", "decimal"),
            ("SCORE: 5.", "decimal"),
            ("SCORE: 1e-1", "decimal"),
            ("SCORE: NaN", "decimal"),
            ("SCORE: inf", "decimal"),
            ("SCORE: 0.5/1", "decimal"),
            ("SCORE: ", "decimal"),
            ("VERDICT: PASS", "SCORE"),
            ("score: 0.5", "SCORE"),
        ] {
            let err = score(reply).unwrap_err();
            assert!(err.contains(why), "{reply:?}: {err}");
        }
    }

    proptest! {
        /// Any text followed by a well-formed verdict line parses to that verdict.
        #[test]
        fn reasoning_before_the_last_line_is_ignored(prefix in "\\PC{0,200}", pass: bool) {
            let line = if pass { "VERDICT: PASS" } else { "VERDICT: FAIL" };
            let reply = format!("{prefix}\n{line}\n");
            prop_assert_eq!(pf(&reply), Ok(if pass { 1.0 } else { 0.0 }));
        }

        /// The parser never panics, and whatever it accepts is in [0, 1].
        #[test]
        fn arbitrary_replies_never_panic(reply in "\\PC{0,80}(\nSCORE: [0-9.]{0,6})?") {
            for format in [VerdictFormat::PassFail, VerdictFormat::Score] {
                if let Ok(x) = parse_verdict(&reply, format) {
                    prop_assert!((0.0..=1.0).contains(&x));
                }
            }
        }

        #[test]
        fn scores_round_trip(x in 0u32..=1000) {
            let v = x as f32 / 1000.0;
            let reply = format!("SCORE: {}", if x == 1000 { "1".to_string() } else { format!("0.{x:03}") });
            prop_assert!((score(&reply).unwrap() - v).abs() < 1e-6);
        }
    }
}
