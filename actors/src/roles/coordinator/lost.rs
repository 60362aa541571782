//! Finding lost work: units whose sampler left, and results that never arrived (a
//! judge or env host went down with them), handed out again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use troupe_core::TaskSpec;

use super::CoordinatorState;
use crate::messages::BufferMsg;
use crate::remote::group;
use crate::roles::one;

/// How often the coordinator looks for lost work.
pub(super) const TICK: Duration = Duration::from_secs(1);

/// Sampler indices from the sampler group's actor names (`sampler-N`).
fn live_samplers() -> BTreeSet<u32> {
    ractor::pg::get_members(&group::SAMPLER.to_string())
        .iter()
        .filter_map(|c| c.get_name()?.strip_prefix("sampler-")?.parse().ok())
        .collect()
}

impl CoordinatorState {
    /// Hands out again the work of samplers that left, and what never arrived of the
    /// batch the learner waits for and of each evaluation round.
    pub(super) async fn find_lost_work(&mut self) {
        let live = live_samplers();
        let gone = self.schedule.requeue_absent(&live);
        if !gone.is_empty() {
            self.event(format!(
                "sampler(s) {gone:?} left with work in hand; it is handed out again"
            ));
        }
        // Version lag is reported for the samplers there are.
        self.sampler_publication.retain(|s, _| live.contains(s));
        let now = Instant::now();
        let lost_after = self.args.lost_after;
        // The batch the learner needs next.
        if self.rl_started.is_some() {
            let batch = self.rl_steps;
            if self.schedule.batch_outstanding(batch) {
                self.batch_quiet = None;
            } else {
                let since = match self.batch_quiet {
                    Some((b, t)) if b == batch => t,
                    _ => {
                        self.batch_quiet = Some((batch, now));
                        now
                    }
                };
                if now.duration_since(since) >= lost_after {
                    self.batch_quiet = Some((batch, now));
                    let missing = match one::<BufferMsg>(group::BUFFER) {
                        Ok(b) => {
                            ractor::call_t!(b, BufferMsg::Missing, 5_000, batch).unwrap_or_default()
                        }
                        Err(_) => Vec::new(),
                    };
                    if !missing.is_empty() {
                        self.event(format!(
                            "batch {batch}: {} group(s) never reached the buffer; handed out again",
                            missing.len()
                        ));
                        self.schedule.reissue_groups(batch, &missing);
                    }
                }
            }
        }
        // Evaluation rounds.
        let mut reissue = Vec::new();
        for (&round, r) in &mut self.rounds {
            if self.schedule.round_outstanding(round) {
                r.quiet_since = None;
                continue;
            }
            let since = *r.quiet_since.get_or_insert(now);
            if now.duration_since(since) >= lost_after {
                r.quiet_since = Some(now);
                let missing: Vec<TaskSpec> = self
                    .args
                    .heldout
                    .iter()
                    .filter(|t| !r.seen.contains(&t.id))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    reissue.push((round, r.publication, missing));
                }
            }
        }
        for (round, publication, tasks) in reissue {
            self.event(format!(
                "evaluation round {round}: {} result(s) never arrived; handed out again",
                tasks.len()
            ));
            self.schedule.reissue_eval(round, publication, &tasks);
        }
    }
}
