//! Composed rewards: weighted components — hidden tests, a rule, an LLM verdict — and
//! how their scores combine into one [`Reward`] with a breakdown. Pure.
//!
//! `total = Σ weight × score` over the configured components (weights are taken as
//! written; weights that sum to 1 keep the reward in `[0, 1]`). The breakdown lists the
//! rule's own entries first (`correct` and `format` for `exact`, `format` for `format`,
//! `regex` for `regex`; its first entry is the rule's score), then `tests` and `llm`.
//! So the default spec, `rules` alone with weight 1 and rule `exact`, gives exactly the
//! verifier's reward.
//!
//! A component that fails (no test result, LLM call failed, malformed verdict, budget
//! exhausted) makes the whole reward fail with [`Unscored`]: the trajectory is not given
//! a number at all. See the crate docs for what the judge actor does with it.

use std::fmt;

use troupe_core::{Reward, TaskSpec};

use crate::JudgeError;

/// A rule checked on the response text.
#[derive(Debug, Clone)]
pub enum Rule {
    /// troupe-env's verifier: 1 iff the trimmed response equals the task's answer.
    Exact,
    /// troupe-env's verifier's format check: 1 iff the trimmed response is all digits.
    Format,
    /// 1 iff the regular expression matches the trimmed response (unanchored: use `^`
    /// and `$` to match all of it).
    Regex(regex::Regex),
}

impl Rule {
    /// The rule's breakdown entries; the first is its score.
    pub fn check(&self, task: &TaskSpec, response: &str) -> Vec<(String, f32)> {
        match self {
            Rule::Exact => troupe_env::verify(task, response).breakdown,
            Rule::Format => {
                let mut b = troupe_env::verify(task, response).breakdown;
                b.retain(|(name, _)| name == "format");
                b
            }
            Rule::Regex(re) => {
                let hit = re.is_match(response.trim_matches(|c: char| c.is_ascii_whitespace()));
                vec![("regex".to_owned(), if hit { 1.0 } else { 0.0 })]
            }
        }
    }
}

/// Hidden-test result reported by an environment that runs tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestOutcome {
    /// Tests that passed.
    pub passed: u32,
    /// Tests run.
    pub total: u32,
}

/// A reward component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Hidden tests.
    Tests,
    /// The rule.
    Rules,
    /// The LLM verdict.
    Llm,
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::Tests => "tests",
            Component::Rules => "rules",
            Component::Llm => "llm",
        })
    }
}

/// A reward that could not be computed: which component failed, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Unscored {
    /// The failed component.
    pub component: Component,
    /// Its error.
    pub error: JudgeError,
}

impl fmt::Display for Unscored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} component failed: {}", self.component, self.error)
    }
}

/// The components of a reward and their weights; a component is evaluated iff present.
#[derive(Debug, Clone)]
pub struct RewardSpec {
    /// Weight of the hidden-test pass fraction.
    pub tests: Option<f32>,
    /// Weight of the rule, and the rule.
    pub rules: Option<(f32, Rule)>,
    /// Weight of the LLM verdict.
    pub llm: Option<f32>,
}

impl Default for RewardSpec {
    /// The verifier alone: `rules` with weight 1 and rule `exact`.
    fn default() -> Self {
        Self {
            tests: None,
            rules: Some((1.0, Rule::Exact)),
            llm: None,
        }
    }
}

/// What each component produced; `None` for a component the spec does not have.
#[derive(Debug, Clone, Default)]
pub struct ComponentScores {
    /// The hidden tests' result (`Some(None)`: the spec wants tests, none were reported).
    pub tests: Option<Option<TestOutcome>>,
    /// The LLM verdict, or why there is none.
    pub llm: Option<Result<f32, JudgeError>>,
}

impl RewardSpec {
    /// Whether scoring needs an LLM call.
    pub fn needs_llm(&self) -> bool {
        self.llm.is_some()
    }

    /// Whether scoring needs a hidden-test result.
    pub fn needs_tests(&self) -> bool {
        self.tests.is_some()
    }

    /// Combines the rule (checked here) with the other components' results.
    pub fn combine(
        &self,
        task: &TaskSpec,
        response: &str,
        scores: ComponentScores,
    ) -> Result<Reward, Unscored> {
        let mut total = 0.0f32;
        let mut breakdown = Vec::new();
        if let Some((w, rule)) = &self.rules {
            let entries = rule.check(task, response);
            total += w * entries.first().map_or(0.0, |e| e.1);
            breakdown.extend(entries);
        }
        if let Some(w) = self.tests {
            let score = match scores.tests.flatten() {
                Some(t) if t.total > 0 => t.passed.min(t.total) as f32 / t.total as f32,
                _ => {
                    return Err(Unscored {
                        component: Component::Tests,
                        error: JudgeError::MissingTestResult,
                    });
                }
            };
            total += w * score;
            breakdown.push(("tests".to_owned(), score));
        }
        if let Some(w) = self.llm {
            let score = match scores.llm {
                Some(Ok(s)) => s,
                Some(Err(error)) => {
                    return Err(Unscored {
                        component: Component::Llm,
                        error,
                    });
                }
                None => {
                    return Err(Unscored {
                        component: Component::Llm,
                        error: JudgeError::Config {
                            key: "judge.llm".into(),
                            reason: "the reward has an llm component but no LLM judge".into(),
                        },
                    });
                }
            };
            total += w * score;
            breakdown.push(("llm".to_owned(), score));
        }
        Ok(Reward { total, breakdown })
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

    fn spec(tests: Option<f32>, rules: Option<(f32, Rule)>, llm: Option<f32>) -> RewardSpec {
        RewardSpec { tests, rules, llm }
    }

    #[test]
    fn the_default_is_exactly_the_verifier() {
        for response in ["1349", " 1349\n", "1394", "", "answer: 1349"] {
            let r = RewardSpec::default()
                .combine(&task(), response, ComponentScores::default())
                .unwrap();
            assert_eq!(r, troupe_env::verify(&task(), response), "{response:?}");
        }
    }

    #[test]
    fn weights_combine_and_the_breakdown_names_each_component() {
        let s = spec(Some(0.5), Some((0.25, Rule::Exact)), Some(0.25));
        let r = s
            .combine(
                &task(),
                "1349",
                ComponentScores {
                    tests: Some(Some(TestOutcome {
                        passed: 3,
                        total: 4,
                    })),
                    llm: Some(Ok(0.0)),
                },
            )
            .unwrap();
        assert_eq!(r.total, 0.5 * 0.75 + 0.25);
        let names: Vec<_> = r.breakdown.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert_eq!(
            names,
            [
                ("correct", 1.0),
                ("format", 1.0),
                ("tests", 0.75),
                ("llm", 0.0)
            ]
        );
    }

    #[test]
    fn rules_format_and_regex() {
        let f = spec(None, Some((1.0, Rule::Format)), None);
        let r = f
            .combine(&task(), "9999", ComponentScores::default())
            .unwrap();
        assert_eq!((r.total, r.breakdown.len()), (1.0, 1));
        let re = Rule::Regex(regex::Regex::new(r"^\d{4}$").unwrap());
        let g = spec(None, Some((2.0, re)), None);
        let hit = g
            .combine(&task(), " 1234 ", ComponentScores::default())
            .unwrap();
        let miss = g
            .combine(&task(), "12345", ComponentScores::default())
            .unwrap();
        assert_eq!((hit.total, miss.total), (2.0, 0.0));
        assert_eq!(hit.breakdown, [("regex".to_owned(), 1.0)]);
    }

    #[test]
    fn a_failed_component_leaves_the_trajectory_unscored() {
        let s = spec(Some(0.5), Some((0.5, Rule::Exact)), Some(0.5));
        let err = JudgeError::MalformedVerdict {
            reason: "r".into(),
            raw: "hmm".into(),
        };
        let tests = Some(Some(TestOutcome {
            passed: 1,
            total: 1,
        }));
        let u = s
            .combine(
                &task(),
                "1349",
                ComponentScores {
                    tests,
                    llm: Some(Err(err.clone())),
                },
            )
            .unwrap_err();
        assert_eq!(u.component, Component::Llm);
        assert_eq!(u.error, err);
        assert!(
            u.to_string()
                .starts_with("llm component failed: malformed verdict")
        );
        for missing in [
            None,
            Some(None),
            Some(Some(TestOutcome {
                passed: 0,
                total: 0,
            })),
        ] {
            let u = s
                .combine(
                    &task(),
                    "1349",
                    ComponentScores {
                        tests: missing,
                        llm: Some(Ok(1.0)),
                    },
                )
                .unwrap_err();
            assert_eq!(
                (u.component, u.error),
                (Component::Tests, JudgeError::MissingTestResult)
            );
        }
        let no_judge = spec(None, None, Some(1.0))
            .combine(&task(), "x", ComponentScores::default())
            .unwrap_err();
        assert_eq!(no_judge.component, Component::Llm);
    }
}
