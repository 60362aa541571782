//! The verifier: exact-match reward for the built-in tasks, with diagnostics.

use troupe_core::{Reward, TaskSpec, Trajectory};

use crate::tools::{Action, parse_action};

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

/// Scores a finished episode: [`verify`] on its final answer (the policy's last turn),
/// plus diagnostics that do not count towards the total: `turns` (policy turns),
/// `tool_calls` (well-formed calls) and `malformed_calls` (turns that tried to call a
/// tool and broke the format). An episode that ends on a call has no answer: 0.
pub fn score(trajectory: &Trajectory) -> Reward {
    let mut reward = verify(&trajectory.task, &trajectory.response);
    let (mut turns, mut calls, mut malformed) = (0u32, 0u32, 0u32);
    for action in trajectory.actions() {
        turns += 1;
        match parse_action(action) {
            Action::Answer(_) => {}
            Action::Call(_) => calls += 1,
            Action::Malformed(_) => malformed += 1,
        }
    }
    reward.breakdown.extend([
        ("turns".to_owned(), turns as f32),
        ("tool_calls".to_owned(), calls as f32),
        ("malformed_calls".to_owned(), malformed as f32),
    ]);
    reward
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_core::{Author, Purpose};

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

    fn episode(actions: &[&str]) -> Trajectory {
        let task = TaskSpec {
            id: 1,
            prompt: "6*7".into(),
            answer: "42".into(),
            difficulty: 1,
        };
        let mut t = Trajectory::new(1, task, Purpose::Eval { round: 0 });
        t.begin_turn(Author::User, "6*7");
        for (i, a) in actions.iter().enumerate() {
            if i > 0 {
                t.begin_turn(Author::Tool, "42");
            }
            t.begin_turn(Author::Policy, a);
            t.response = (*a).to_owned();
        }
        t
    }

    fn breakdown(r: &Reward) -> Vec<(&str, f32)> {
        r.breakdown.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }

    #[test]
    fn episodes_are_scored_on_the_last_turn_with_tool_diagnostics() {
        let r = score(&episode(&["<call>calc 6*7", "<call>calc 6*7</call>", "42"]));
        assert_eq!(r.total, 1.0);
        assert_eq!(
            breakdown(&r),
            [
                ("correct", 1.0),
                ("format", 1.0),
                ("turns", 3.0),
                ("tool_calls", 1.0),
                ("malformed_calls", 1.0)
            ]
        );
        // Out of turns while still calling: no answer, no reward.
        let r = score(&episode(&[
            "<call>calc 6*7</call>",
            "<call>calc 6*7</call>",
        ]));
        assert_eq!(r.total, 0.0);
        assert_eq!(
            breakdown(&r)[2..],
            [
                ("turns", 2.0),
                ("tool_calls", 2.0),
                ("malformed_calls", 0.0)
            ]
        );
        // A single-turn answer.
        let r = score(&episode(&["41"]));
        assert_eq!((r.total, breakdown(&r)[3].1), (0.0, 0.0));
    }
}
