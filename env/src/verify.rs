//! The verifier: exact-match reward for the digit tasks.

use troupe_core::{Reward, TaskSpec};

/// Scores `response` against `task.answer`.
///
/// Surrounding ASCII whitespace is ignored. `correct` is 1 iff the trimmed response
/// equals the answer; `format` is 1 iff it is non-empty and all ASCII digits.
/// The total is `correct`; `format` is reported for diagnostics only.
pub fn verify(task: &TaskSpec, response: &str) -> Reward {
    let r = response.trim_matches(|c: char| c.is_ascii_whitespace());
    let correct = if r == task.answer { 1.0 } else { 0.0 };
    let format = if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) {
        1.0
    } else {
        0.0
    };
    Reward {
        total: correct,
        breakdown: vec![
            ("correct".to_owned(), correct),
            ("format".to_owned(), format),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> TaskSpec {
        TaskSpec {
            id: 1,
            prompt: "sort 3914".into(),
            answer: "1349".into(),
            difficulty: 4,
        }
    }

    fn scores(response: &str) -> (f32, f32, f32) {
        let r = verify(&task(), response);
        assert_eq!(r.breakdown[0].0, "correct");
        assert_eq!(r.breakdown[1].0, "format");
        (r.total, r.breakdown[0].1, r.breakdown[1].1)
    }

    #[test]
    fn pinned_cases() {
        assert_eq!(scores("1349"), (1.0, 1.0, 1.0));
        assert_eq!(scores("  1349\n\t"), (1.0, 1.0, 1.0));
        assert_eq!(scores("1394"), (0.0, 0.0, 1.0));
        assert_eq!(scores(""), (0.0, 0.0, 0.0));
        assert_eq!(scores("   "), (0.0, 0.0, 0.0));
        assert_eq!(scores("1 3 4 9"), (0.0, 0.0, 0.0));
        assert_eq!(scores("answer: 1349"), (0.0, 0.0, 0.0));
        // Non-ASCII whitespace is not trimmed.
        assert_eq!(scores("1349\u{a0}"), (0.0, 0.0, 0.0));
    }
}
