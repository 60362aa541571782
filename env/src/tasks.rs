//! Built-in verifiable digit tasks and the seeded source that draws them.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use troupe_core::TaskSpec;

use crate::EnvError;
use crate::split::{Split, split_of};

/// Largest digit count a task may use (keeps every sum inside `u64`).
pub const MAX_DIGITS: u32 = 12;

/// Largest held-out share, in per mille.
pub const MAX_HELDOUT_PER_MILLE: u32 = 500;

/// First id handed out by [`TaskSource::next_train`]; ids below it belong to held-out tasks.
pub const FIRST_TRAIN_ID: u64 = 1 << 32;

/// Fixed seed of the held-out generator: the held-out set depends on the config only.
const HELDOUT_SEED: u64 = 0x7472_6f75_7065_4845;

/// Draws before concluding a config has no training (or no more held-out) problems.
const PROBE_DRAWS: usize = 100_000;

/// Which built-in task family to pose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskFamily {
    /// `sort 3914` -> `1349`: sort `n` random digits ascending.
    #[default]
    Sort,
    /// `347+589` -> `936`: add two decimal numbers of `min..=max` digits each.
    Add,
    /// Fix a planted bug in a small git repository (multi-turn, sandboxed, judged by
    /// hidden tests; see [`crate::codefix`]). Split by bug family, not by hash: the
    /// digit keys and `heldout_per_mille` do not apply.
    Codefix,
    /// `347*589+1234` -> `205617`: a product, sometimes plus a third number, solved by
    /// calling the calculator tool once per operation (multi-turn; see [`crate::tools`]).
    Calc,
}

/// The task section of the run config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// Task family to draw from.
    pub family: TaskFamily,
    /// Fewest digits per list / operand (at least 1). Longer problems cost more tokens per episode.
    pub min_digits: u32,
    /// Most digits per list / operand (at most 12).
    pub max_digits: u32,
    /// Share of problems, in per mille (1..=500), reserved for held-out evaluation.
    pub heldout_per_mille: u32,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            family: TaskFamily::Sort,
            min_digits: 3,
            max_digits: 6,
            heldout_per_mille: 100,
        }
    }
}

impl TaskConfig {
    /// The split of a problem with this prompt: a hash of the text for the digit tasks,
    /// the bug family (read from the issue) for code fixing.
    pub fn split_of(&self, prompt: &str) -> Split {
        match self.family {
            TaskFamily::Codefix => crate::codefix::split_of_issue(prompt),
            _ => split_of(prompt, self.heldout_per_mille),
        }
    }

    /// Checks `1 <= min_digits <= max_digits <= 12` and `1 <= heldout_per_mille <= 500`.
    pub fn validate(&self) -> Result<(), EnvError> {
        if !(1..=MAX_DIGITS).contains(&self.min_digits) {
            return Err(EnvError::Config {
                key: "min_digits",
                reason: format!("{} is outside 1..={MAX_DIGITS}", self.min_digits),
            });
        }
        if !(1..=MAX_DIGITS).contains(&self.max_digits) {
            return Err(EnvError::Config {
                key: "max_digits",
                reason: format!("{} is outside 1..={MAX_DIGITS}", self.max_digits),
            });
        }
        if self.max_digits < self.min_digits {
            return Err(EnvError::Config {
                key: "max_digits",
                reason: format!(
                    "{} is below min_digits = {}",
                    self.max_digits, self.min_digits
                ),
            });
        }
        if !(1..=MAX_HELDOUT_PER_MILLE).contains(&self.heldout_per_mille) {
            return Err(EnvError::Config {
                key: "heldout_per_mille",
                reason: format!(
                    "{} is outside 1..={MAX_HELDOUT_PER_MILLE}",
                    self.heldout_per_mille
                ),
            });
        }
        Ok(())
    }
}

/// A drawn problem before it is given an id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    prompt: String,
    answer: String,
    difficulty: u32,
    split: Split,
}

impl Problem {
    fn into_task(self, id: u64) -> TaskSpec {
        TaskSpec {
            id,
            prompt: self.prompt,
            answer: self.answer,
            difficulty: self.difficulty,
        }
    }
}

/// A random number of `digits` digits without a leading zero (0 itself allowed at one digit).
fn random_number(rng: &mut impl Rng, digits: u32) -> u64 {
    let lo = if digits == 1 {
        0
    } else {
        10u64.pow(digits - 1)
    };
    rng.random_range(lo..10u64.pow(digits))
}

/// Draws one problem of `cfg.family` from `rng`.
fn draw(cfg: &TaskConfig, rng: &mut impl Rng) -> Problem {
    let (min, max) = (cfg.min_digits, cfg.max_digits);
    match cfg.family {
        TaskFamily::Sort => {
            let n = rng.random_range(min..=max);
            let mut digits: Vec<u8> = (0..n).map(|_| b'0' + rng.random_range(0..10u8)).collect();
            let prompt = format!("sort {}", String::from_utf8_lossy(&digits));
            digits.sort_unstable();
            Problem {
                split: split_of(&prompt, cfg.heldout_per_mille),
                prompt,
                answer: String::from_utf8_lossy(&digits).into_owned(),
                difficulty: n,
            }
        }
        TaskFamily::Add => {
            let (da, db) = (rng.random_range(min..=max), rng.random_range(min..=max));
            let (a, b) = (random_number(rng, da), random_number(rng, db));
            let prompt = format!("{a}+{b}");
            Problem {
                split: split_of(&prompt, cfg.heldout_per_mille),
                prompt,
                answer: (a + b).to_string(),
                difficulty: da.max(db),
            }
        }
        TaskFamily::Codefix => {
            let families = crate::codefix::BugFamily::ALL;
            let key = crate::codefix::TaskKey {
                family: families[rng.random_range(0..families.len())],
                seed: u64::from(rng.random::<u32>()),
            };
            let task = crate::codefix::generate(key).spec(0);
            Problem {
                prompt: task.prompt,
                answer: task.answer,
                difficulty: task.difficulty,
                split: key.family.split(),
            }
        }
        TaskFamily::Calc => {
            let (prompt, answer, difficulty) = crate::tools::draw(rng, min, max);
            Problem {
                split: split_of(&prompt, cfg.heldout_per_mille),
                prompt,
                answer,
                difficulty,
            }
        }
    }
}

/// The resumable part of a [`TaskSource`]: its RNG position and id counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSourceState {
    /// The training stream's generator, at its current position.
    pub rng: ChaCha8Rng,
    /// The id the next training task will get.
    pub next_id: u64,
}

/// A seeded stream of training tasks plus the fixed held-out set of a [`TaskConfig`].
#[derive(Debug, Clone)]
pub struct TaskSource {
    cfg: TaskConfig,
    rng: ChaCha8Rng,
    next_id: u64,
}

impl TaskSource {
    /// A source drawing training tasks from a generator seeded with the run `seed`.
    pub fn new(cfg: TaskConfig, seed: u64) -> Result<Self, EnvError> {
        Self::restore(
            cfg,
            TaskSourceState {
                rng: ChaCha8Rng::seed_from_u64(seed),
                next_id: FIRST_TRAIN_ID,
            },
        )
    }

    /// Resumes a source from a [`TaskSource::state`] snapshot.
    pub fn restore(cfg: TaskConfig, state: TaskSourceState) -> Result<Self, EnvError> {
        cfg.validate()?;
        // With tiny digit ranges every problem might hash into the held-out split;
        // refuse such a config rather than loop forever in `next_train`.
        let mut probe = ChaCha8Rng::seed_from_u64(HELDOUT_SEED);
        let trainable = (0..PROBE_DRAWS).any(|_| draw(&cfg, &mut probe).split == Split::Train);
        if !trainable {
            return Err(EnvError::Config {
                key: "heldout_per_mille",
                reason: "every problem of this digit range falls in the held-out split".into(),
            });
        }
        Ok(Self {
            cfg,
            rng: state.rng,
            next_id: state.next_id,
        })
    }

    /// A snapshot from which [`TaskSource::restore`] continues the same stream.
    pub fn state(&self) -> TaskSourceState {
        TaskSourceState {
            rng: self.rng.clone(),
            next_id: self.next_id,
        }
    }

    /// The config this source draws from.
    pub fn config(&self) -> &TaskConfig {
        &self.cfg
    }

    /// The next training task: never in the held-out split; ids increase from `1 << 32`.
    pub fn next_train(&mut self) -> TaskSpec {
        loop {
            let p = draw(&self.cfg, &mut self.rng);
            if p.split == Split::Train {
                let id = self.next_id;
                self.next_id += 1;
                return p.into_task(id);
            }
        }
    }

    /// The first `n` held-out tasks of this config, with ids `0..n`.
    ///
    /// Depends on the [`TaskConfig`] only, never on the run seed. Prompts are distinct and
    /// all in the held-out split. Fewer than `n` come back only when the digit range holds
    /// fewer held-out problems than that.
    pub fn heldout(&self, n: usize) -> Vec<TaskSpec> {
        let mut rng = ChaCha8Rng::seed_from_u64(HELDOUT_SEED);
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(n);
        let mut misses = 0;
        while out.len() < n && misses < PROBE_DRAWS {
            let p = draw(&self.cfg, &mut rng);
            if p.split == Split::Heldout && seen.insert(p.prompt.clone()) {
                out.push(p.into_task(out.len() as u64));
                misses = 0;
            } else {
                misses += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
