//! The `[judge]` table of `cluster.toml`: components and weights, the rule, and the LLM
//! judge's client settings. Unknown keys are rejected by serde (with line and key);
//! [`JudgeConfig::reward_spec`] and [`LlmConfig::validate`] check the values and name
//! the key at fault.

use serde::Deserialize;

use crate::JudgeError;
use crate::reward::{RewardSpec, Rule};
use crate::template::PromptTemplate;
use crate::verdict::VerdictFormat;

/// `[judge]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    /// Components and their weights. Default: `{ rules = 1.0 }`.
    pub components: Components,
    /// The rule of the `rules` component.
    pub rule: RuleKind,
    /// The regular expression of `rule = "regex"`.
    pub pattern: Option<String>,
    /// The LLM judge (required iff `components.llm` is set).
    pub llm: Option<LlmConfig>,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            components: Components {
                tests: None,
                rules: Some(1.0),
                llm: None,
            },
            rule: RuleKind::Exact,
            pattern: None,
            llm: None,
        }
    }
}

/// `[judge] components`: the weight of each component used; leave one out to not use it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Components {
    /// Hidden tests' pass fraction (supplied by environments that run tests).
    pub tests: Option<f32>,
    /// The rule.
    pub rules: Option<f32>,
    /// The LLM verdict.
    pub llm: Option<f32>,
}

/// `[judge] rule`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// The response equals the reference answer (troupe-env's verifier).
    #[default]
    Exact,
    /// The response is all digits (the verifier's format check).
    Format,
    /// The response matches `pattern`.
    Regex,
}

/// `[judge.llm]`: an OpenAI-compatible chat-completions endpoint and how to use it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Base URL of the API, up to and including `/v1` (requests go to
    /// `{base_url}/chat/completions`).
    pub base_url: String,
    /// Model name sent with each request.
    pub model: String,
    /// Name of the environment variable holding the API key (sent as a bearer token).
    /// The key itself never appears in the config. None: no key is sent.
    pub api_key_env: Option<String>,
    /// The verdict line the model must end with.
    pub verdict: VerdictFormat,
    /// User-turn template with `{task}`, `{response}`, `{reference}`; None: the default,
    /// which ends with the verdict format's instruction.
    pub prompt: Option<String>,
    /// System message, if any.
    pub system: Option<String>,
    /// Per-request timeout (connect to last byte), in milliseconds.
    pub timeout_ms: u64,
    /// Retries after a failed first request (network errors, timeouts, 429, 5xx).
    pub max_retries: u32,
    /// Backoff cap before the first retry, doubled for each further one, in ms.
    pub backoff_base_ms: u64,
    /// Longest wait before any retry, in ms; a `Retry-After` above it ends the call.
    pub backoff_max_ms: u64,
    /// Requests in flight at once, per judge actor.
    pub max_concurrency: u32,
    /// Budget: HTTP requests (retries included) per judge actor; 0 = unlimited.
    pub max_calls: u64,
    /// Budget: prompt + completion tokens per judge actor; 0 = unlimited.
    pub max_tokens: u64,
    /// Completion cap per request (`max_tokens` in the request).
    pub max_tokens_per_call: u32,
    /// Sampling temperature; 0 is greedy, so verdicts repeat.
    pub temperature: f32,
    /// Sampling seed sent with each request, for servers that honour it.
    pub seed: Option<u64>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            model: String::new(),
            api_key_env: None,
            verdict: VerdictFormat::PassFail,
            prompt: None,
            system: None,
            timeout_ms: 30_000,
            max_retries: 3,
            backoff_base_ms: 250,
            backoff_max_ms: 8_000,
            max_concurrency: 4,
            max_calls: 0,
            max_tokens: 0,
            max_tokens_per_call: 256,
            temperature: 0.0,
            seed: None,
        }
    }
}

fn bad(key: &str, reason: impl Into<String>) -> JudgeError {
    JudgeError::Config {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

impl LlmConfig {
    /// Checks every value; returns the parsed prompt template.
    pub fn validate(&self) -> Result<PromptTemplate, JudgeError> {
        let url = reqwest::Url::parse(&self.base_url).map_err(|e| {
            bad(
                "judge.llm.base_url",
                format!(
                    "{:?} is not a URL ({e}); e.g. \"http://127.0.0.1:8080/v1\"",
                    self.base_url
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(
                "judge.llm.base_url",
                "must start with http:// or https://",
            ));
        }
        if self.model.is_empty() {
            return Err(bad("judge.llm.model", "required"));
        }
        if self
            .api_key_env
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.contains(['=', '\0']))
        {
            return Err(bad(
                "judge.llm.api_key_env",
                "must name an environment variable",
            ));
        }
        let checks = [
            (
                "judge.llm.timeout_ms",
                "must be at least 1",
                self.timeout_ms >= 1,
            ),
            (
                "judge.llm.backoff_max_ms",
                "must be at least backoff_base_ms",
                self.backoff_max_ms >= self.backoff_base_ms,
            ),
            (
                "judge.llm.max_concurrency",
                "must be at least 1",
                self.max_concurrency >= 1,
            ),
            (
                "judge.llm.max_tokens_per_call",
                "must be at least 1",
                self.max_tokens_per_call >= 1,
            ),
            (
                "judge.llm.max_tokens",
                "must be 0 (unlimited) or at least max_tokens_per_call",
                self.max_tokens == 0 || self.max_tokens >= u64::from(self.max_tokens_per_call),
            ),
            (
                "judge.llm.temperature",
                "must be a number >= 0",
                self.temperature.is_finite() && self.temperature >= 0.0,
            ),
        ];
        for (key, reason, ok) in checks {
            if !ok {
                return Err(bad(key, reason));
            }
        }
        match &self.prompt {
            Some(text) => PromptTemplate::parse(text).map_err(|e| bad("judge.llm.prompt", e)),
            None => Ok(PromptTemplate::default_for(self.verdict)),
        }
    }
}

impl JudgeConfig {
    /// Validates the table and builds the reward it describes.
    pub fn reward_spec(&self) -> Result<RewardSpec, JudgeError> {
        let c = self.components;
        for (name, w) in [("tests", c.tests), ("rules", c.rules), ("llm", c.llm)] {
            if let Some(w) = w
                && !(w.is_finite() && w >= 0.0)
            {
                return Err(bad(
                    &format!("judge.components.{name}"),
                    format!("weight {w} must be a number >= 0"),
                ));
            }
        }
        if c == Components::default() {
            return Err(bad(
                "judge.components",
                "name at least one of tests, rules, llm with its weight",
            ));
        }
        match (c.llm.is_some(), &self.llm) {
            (true, None) => {
                return Err(bad(
                    "judge.components.llm",
                    "needs a [judge.llm] table (base_url, model, ...)",
                ));
            }
            (false, Some(_)) => {
                return Err(bad(
                    "judge.llm",
                    "set components.llm to a weight to use the LLM judge",
                ));
            }
            (true, Some(llm)) => {
                llm.validate()?;
            }
            (false, None) => {}
        }
        let rule = match (self.rule, &self.pattern) {
            (RuleKind::Regex, None) => {
                return Err(bad("judge.pattern", "rule = \"regex\" needs a pattern"));
            }
            (RuleKind::Regex, Some(p)) => {
                Rule::Regex(regex::Regex::new(p).map_err(|e| bad("judge.pattern", e.to_string()))?)
            }
            (_, Some(_)) => {
                return Err(bad("judge.pattern", "only used with rule = \"regex\""));
            }
            (RuleKind::Exact, None) => Rule::Exact,
            (RuleKind::Format, None) => Rule::Format,
        };
        Ok(RewardSpec {
            tests: c.tests,
            rules: c.rules.map(|w| (w, rule)),
            llm: c.llm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JudgeConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn spec_err(text: &str) -> String {
        parse(text).unwrap().reward_spec().unwrap_err().to_string()
    }

    const LLM: &str = "[llm]\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n";

    #[test]
    fn the_default_is_the_verifier() {
        let spec = parse("").unwrap().reward_spec().unwrap();
        assert!(matches!(spec.rules, Some((w, Rule::Exact)) if w == 1.0));
        assert!(spec.tests.is_none() && spec.llm.is_none());
    }

    #[test]
    fn a_composed_reward_parses() {
        let text = format!("components = {{ rules = 0.5, llm = 0.5 }}\n{LLM}max_calls = 10\n");
        let cfg = parse(&text).unwrap();
        let spec = cfg.reward_spec().unwrap();
        assert_eq!((spec.llm, spec.rules.map(|r| r.0)), (Some(0.5), Some(0.5)));
        let llm = cfg.llm.unwrap();
        assert_eq!(
            (llm.max_calls, llm.max_concurrency, llm.temperature),
            (10, 4, 0.0)
        );
    }

    #[test]
    fn unknown_keys_name_their_line() {
        let err = parse("components = { rules = 1.0, lm = 0.5 }\n").unwrap_err();
        assert!(err.contains("line 1") && err.contains("lm"), "{err}");
        let err = parse(&format!("components = {{ llm = 1.0 }}\n{LLM}timeout = 5\n")).unwrap_err();
        assert!(err.contains("line 5") && err.contains("timeout"), "{err}");
        let err = parse("[llm]\nverdict = \"maybe\"\n").unwrap_err();
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("components = {}\n", "judge.components"),
            ("components = { rules = -1.0 }\n", "judge.components.rules"),
            ("components = { llm = 1.0 }\n", "judge.components.llm"),
            (LLM, "judge.llm"),
            ("rule = \"regex\"\n", "judge.pattern"),
            ("rule = \"regex\"\npattern = \"(\"\n", "judge.pattern"),
            ("pattern = \"x\"\n", "judge.pattern"),
        ] {
            let err = spec_err(text);
            assert!(err.starts_with(&format!("{key}:")), "{text:?}: {err}");
        }
        let llm = |extra: &str| format!("components = {{ llm = 1.0 }}\n{LLM}{extra}\n");
        for (extra, key) in [
            ("base_url = \"localhost:8080\"", "judge.llm.base_url"),
            ("base_url = \"ftp://x/v1\"", "judge.llm.base_url"),
            ("model = \"\"", "judge.llm.model"),
            ("api_key_env = \"\"", "judge.llm.api_key_env"),
            ("timeout_ms = 0", "judge.llm.timeout_ms"),
            (
                "backoff_base_ms = 10\nbackoff_max_ms = 5",
                "judge.llm.backoff_max_ms",
            ),
            ("max_concurrency = 0", "judge.llm.max_concurrency"),
            ("max_tokens_per_call = 0", "judge.llm.max_tokens_per_call"),
            ("max_tokens = 10", "judge.llm.max_tokens"),
            ("temperature = -1.0", "judge.llm.temperature"),
            ("temperature = nan", "judge.llm.temperature"),
            ("prompt = \"grade {answer}\"", "judge.llm.prompt"),
        ] {
            // `base_url` and `model` appear twice when overridden: replace them instead.
            let text = llm(extra);
            let text = if extra.starts_with("base_url") || extra.starts_with("model") {
                let key = extra.split(' ').next().unwrap();
                text.lines()
                    .filter(|l| !l.starts_with(&format!("{key} =")) || l.contains(extra))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                text
            };
            let err = spec_err(&text);
            assert!(err.starts_with(&format!("{key}:")), "{extra}: {err}");
        }
    }
}
