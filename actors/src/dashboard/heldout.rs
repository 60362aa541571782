//! Held-out pass@1 points for the dashboard's charts, each stamped with the run's
//! wall-clock seconds when the dashboard first learned of it (pure: the time is passed
//! in).

use serde::Serialize;

use crate::summary::RunState;

/// One held-out evaluation as the charts draw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldoutPoint {
    /// `initial`, `after_sft`, `during_rl` or `after_rl`.
    pub label: &'static str,
    /// RL steps done when the evaluated weights were published (0 before RL).
    pub step: u64,
    /// Greedy pass@1 (NaN, serialised as null, when the judge scored nothing).
    pub pass_at_1: f32,
    /// The run's wall-clock seconds (earlier sessions included) when the evaluation
    /// finished; `None` for an evaluation from an earlier session of a resumed run.
    pub wall_seconds: Option<f64>,
}

/// Held-out points of `state`, unstamped: initial and after SFT at step 0, during RL at
/// their step, after RL at the last step.
pub fn points(state: &RunState) -> Vec<HeldoutPoint> {
    let h = &state.heldout;
    let point = |label, step, pass_at_1| HeldoutPoint {
        label,
        step,
        pass_at_1,
        wall_seconds: None,
    };
    let mut out: Vec<HeldoutPoint> = [("initial", h.initial), ("after_sft", h.after_sft)]
        .into_iter()
        .filter_map(|(label, a)| a.map(|a| point(label, 0, a)))
        .collect();
    out.extend(
        h.during_rl
            .iter()
            .map(|p| point("during_rl", p.step, p.pass_at_1)),
    );
    if let (Some(a), Some(last)) = (h.after_rl, out.last().map(|p| p.step)) {
        out.push(point("after_rl", last, a));
    }
    out
}

/// `fresh` with the wall-clock stamps of `known` kept (a point is the same evaluation
/// when its label and step match) and new points stamped `now`.
pub fn stamp(known: &[HeldoutPoint], fresh: Vec<HeldoutPoint>, now: f64) -> Vec<HeldoutPoint> {
    fresh
        .into_iter()
        .map(|mut p| {
            p.wall_seconds = match known
                .iter()
                .find(|k| k.label == p.label && k.step == p.step)
            {
                Some(k) => k.wall_seconds,
                None => Some(now),
            };
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::EvalPoint;

    #[test]
    fn new_points_are_stamped_once_and_earlier_ones_keep_their_time() {
        let mut state = RunState::default();
        state.heldout.initial = Some(0.25);
        // Known when the dashboard started: an earlier session's, with no time.
        let known = points(&state);
        assert_eq!(known[0].wall_seconds, None);

        state.heldout.after_sft = Some(0.5);
        let seen = stamp(&known, points(&state), 10.0);
        assert_eq!(seen[0].wall_seconds, None);
        assert_eq!(
            (seen[1].label, seen[1].wall_seconds),
            ("after_sft", Some(10.0))
        );

        state.heldout.during_rl.push(EvalPoint {
            step: 50,
            pass_at_1: 0.6,
        });
        state.heldout.after_rl = Some(0.7);
        let seen = stamp(&seen, points(&state), 99.0);
        let stamps: Vec<_> = seen
            .iter()
            .map(|p| (p.label, p.step, p.wall_seconds))
            .collect();
        assert_eq!(
            stamps,
            [
                ("initial", 0, None),
                ("after_sft", 0, Some(10.0)),
                ("during_rl", 50, Some(99.0)),
                ("after_rl", 50, Some(99.0)),
            ]
        );
    }
}
