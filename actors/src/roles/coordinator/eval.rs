//! Held-out evaluations: rounds, their labels, and how their results are tallied (each
//! task once, however often it is handed out).

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use ractor::ActorProcessingErr;
use troupe_core::Reward;

use super::CoordinatorState;
use crate::summary::{BreakdownMeans, EvalPoint, add_parts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Label {
    Initial,
    AfterSft,
    During(u64),
    Final,
}

impl Label {
    /// The evaluation's name in `eval_samples.jsonl` and `summary.json`'s
    /// `reward_parts.heldout`.
    pub(super) fn name(self) -> String {
        match self {
            Label::Initial => "initial".into(),
            Label::AfterSft => "after_sft".into(),
            Label::During(step) => format!("step_{step}"),
            Label::Final => "after_rl".into(),
        }
    }
}

/// Held-out episodes of each evaluation written to `eval_samples.jsonl` (the tasks with
/// the lowest ids, so every evaluation shows the same problems).
pub(super) const SAMPLES_PER_EVAL: u64 = 16;

#[derive(Debug)]
pub(super) struct Round {
    pub(super) label: Label,
    /// The publication evaluated.
    pub(super) publication: u64,
    /// Held-out task ids with a result (a re-issued task's second result is ignored).
    pub(super) seen: HashSet<u64>,
    /// Since when no unit of the round has been out with a sampler.
    pub(super) quiet_since: Option<Instant>,
    pub(super) correct: usize,
    /// Reward component sums over the round's episodes.
    pub(super) parts: BTreeMap<String, f64>,
    /// Reward component means over the round's episodes.
    pub(super) breakdown: BreakdownMeans,
    /// Episodes the judge could not score: left out of pass@1.
    pub(super) unscored: usize,
}

/// `held-out pass@1 0.560`, plus the tool-use means when the episodes called tools.
fn eval_note(acc: f32, means: &BTreeMap<String, f32>) -> String {
    let mut note = format!("held-out pass@1 {acc:.3}");
    if let (Some(calls), Some(bad)) = (means.get("tool_calls"), means.get("malformed_calls"))
        && calls + bad > 0.0
    {
        note.push_str(&format!(
            ", {calls:.2} tool calls and {bad:.2} malformed per episode"
        ));
    }
    note
}

impl CoordinatorState {
    pub(super) fn evaluate(&mut self, label: Label, publication: u64) {
        let round = self.next_round;
        self.next_round += 1;
        self.rounds.insert(
            round,
            Round {
                label,
                publication,
                seen: HashSet::new(),
                quiet_since: None,
                correct: 0,
                parts: Default::default(),
                breakdown: BreakdownMeans::default(),
                unscored: 0,
            },
        );
        self.schedule
            .queue_eval(round, publication, &self.args.heldout);
        let name = match label {
            Label::Initial => Some("evaluate (initial)"),
            Label::AfterSft => Some("evaluate (after SFT)"),
            Label::Final => Some("evaluate (after RL)"),
            Label::During(_) => None,
        };
        if let Some(name) = name {
            self.args
                .progress
                .phase(name, self.args.heldout.len() as u64);
        }
    }

    /// Records one evaluation episode: correct, wrong, or unscored (a judge error: left
    /// out of pass@1 rather than counted as wrong).
    pub(super) async fn on_eval(
        &mut self,
        round: u32,
        task: u64,
        reward: &Reward,
    ) -> Result<(), ActorProcessingErr> {
        let n = self.args.heldout.len();
        let Some(r) = self.rounds.get_mut(&round) else {
            return Ok(());
        };
        if !r.seen.insert(task) {
            return Ok(());
        }
        if reward.is_judge_error() {
            r.unscored += 1;
        } else {
            r.correct += usize::from(reward.total >= 1.0);
            r.breakdown.add(reward);
        }
        add_parts(
            &mut r.parts,
            reward
                .breakdown
                .iter()
                .map(|(k, v)| (k.as_str(), f64::from(*v))),
        );
        let (label, received, hits, unscored) = (r.label, r.seen.len(), r.correct, r.unscored);
        let scored = received - unscored;
        if !matches!(label, Label::During(_)) {
            self.args.progress.advance(
                received as u64,
                &format!("pass@1 so far {:.3}", hits as f32 / scored as f32),
            );
        }
        if received < n {
            return Ok(());
        }
        let (parts, means) = self
            .rounds
            .remove(&round)
            .map(|r| (r.parts, r.breakdown.means().into_iter().collect()))
            .unwrap_or_default();
        self.args
            .state
            .reward_parts
            .heldout
            .insert(label.name(), parts);
        let means: BTreeMap<String, f32> = means;
        if unscored > 0 {
            self.args.progress.note(&format!(
                "held-out evaluation: the judge could not score {unscored} of {n} episodes; pass@1 is over the other {scored}"
            ));
        }
        // NaN (null in summary.json) when the judge scored no episode at all.
        let acc = hits as f32 / scored as f32;
        let note = eval_note(acc, &means);
        let heldout = &mut self.args.state.heldout;
        match label {
            Label::Initial => {
                heldout.initial = Some(acc);
                heldout.breakdown.initial = means;
                self.args.progress.finish_phase(&note);
                self.save_state()?;
                self.start_sft()?;
            }
            Label::AfterSft => {
                heldout.after_sft = Some(acc);
                heldout.breakdown.after_sft = means;
                self.args.progress.finish_phase(&note);
                self.save_state()?;
                // Publication 1 is the SFT result (see `Learner::publication`).
                self.start_rl(0, 1)?;
            }
            Label::During(step) => {
                heldout.during_rl.push(EvalPoint {
                    step,
                    pass_at_1: acc,
                });
                heldout.during_rl.sort_by_key(|p| p.step);
                self.args.progress.note(&format!("RL step {step}: {note}"));
            }
            Label::Final => {
                heldout.after_rl = Some(acc);
                heldout.breakdown.after_rl = means;
                self.args.progress.finish_phase(&note);
                self.finish().await?;
            }
        }
        if let Some(d) = &self.args.dashboard {
            d.counters(&self.args.state, self.last_version, self.rl_steps);
        }
        Ok(())
    }
}
