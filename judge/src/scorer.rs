//! The judge itself: the LLM judge (prompt, call, verdict) and the [`Scorer`] that
//! evaluates a [`RewardSpec`]'s components for one trajectory and counts the outcome.

use std::sync::{Arc, Mutex};

use troupe_core::{Reward, TaskSpec};

use crate::client::{ChatClient, lock};
use crate::config::{JudgeConfig, LlmConfig};
use crate::openai::{ChatMessage, ChatRole};
use crate::reward::{ComponentScores, RewardSpec, TestOutcome, Unscored};
use crate::template::PromptTemplate;
use crate::verdict::{VerdictFormat, parse_verdict};
use crate::{JudgeError, JudgeStats};

/// An LLM judge: renders the prompt, calls the model, parses the verdict strictly.
#[derive(Debug)]
pub struct LlmJudge {
    client: ChatClient,
    template: PromptTemplate,
    system: Option<String>,
    format: VerdictFormat,
}

impl LlmJudge {
    /// A judge for `cfg` around `client` (built from the same config).
    pub fn new(cfg: &LlmConfig, client: ChatClient) -> Result<Self, JudgeError> {
        Ok(Self {
            template: cfg.validate()?,
            client,
            system: cfg.system.clone(),
            format: cfg.verdict,
        })
    }

    /// The client (for its counters and budget).
    pub fn client(&self) -> &ChatClient {
        &self.client
    }

    /// The chat messages that judge `response` to `task`.
    pub fn messages(&self, task: &TaskSpec, response: &str) -> Vec<ChatMessage> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.system {
            messages.push(ChatMessage {
                role: ChatRole::System,
                content: system.clone(),
            });
        }
        messages.push(ChatMessage {
            role: ChatRole::User,
            content: self.template.render(&task.prompt, response, &task.answer),
        });
        messages
    }

    /// Judges `response`: the verdict's score in `[0, 1]`, or why there is none. A
    /// malformed verdict is counted (with its raw text) before it is returned.
    pub async fn judge(&self, task: &TaskSpec, response: &str) -> Result<f32, JudgeError> {
        let completion = self.client.complete(&self.messages(task, response)).await?;
        let verdict = parse_verdict(&completion.content, self.format);
        let mut s = lock(&self.client.stats);
        match &verdict {
            Ok(_) => s.verdicts += 1,
            Err(_) => s.note_malformed(&completion.content),
        }
        verdict
    }
}

/// Scores trajectories with a [`RewardSpec`]; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Scorer {
    spec: RewardSpec,
    llm: Option<LlmJudge>,
    stats: Arc<Mutex<JudgeStats>>,
}

impl Scorer {
    /// The scorer `[judge]` describes; reads the LLM API key from its variable.
    pub fn new(cfg: &JudgeConfig) -> Result<Self, JudgeError> {
        let spec = cfg.reward_spec()?;
        let stats = Arc::new(Mutex::new(JudgeStats::default()));
        let llm = match (&cfg.llm, spec.needs_llm()) {
            (Some(llm), true) => Some(LlmJudge::new(llm, ChatClient::new(llm, stats.clone())?)?),
            _ => None,
        };
        Ok(Self { spec, llm, stats })
    }

    /// A scorer for `spec` with an already built LLM judge (whose counters it shares).
    pub fn with_judge(spec: RewardSpec, llm: Option<LlmJudge>) -> Self {
        let stats = llm
            .as_ref()
            .map_or_else(Default::default, |j| j.client.stats.clone());
        Self { spec, llm, stats }
    }

    /// The reward's components.
    pub fn spec(&self) -> &RewardSpec {
        &self.spec
    }

    /// Whether scoring makes an LLM call (then use [`Scorer::score`] off the caller's
    /// critical path; otherwise [`Scorer::score_now`] answers at once).
    pub fn needs_llm(&self) -> bool {
        self.spec.needs_llm()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> JudgeStats {
        lock(&self.stats).clone()
    }

    /// Scores without waiting; `None` when the spec needs an LLM call.
    pub fn score_now(
        &self,
        task: &TaskSpec,
        response: &str,
        tests: Option<TestOutcome>,
    ) -> Option<Result<Reward, Unscored>> {
        if self.needs_llm() {
            return None;
        }
        Some(self.finish(task, response, tests, None))
    }

    /// Scores `response` to `task`, calling the LLM judge when the spec has one.
    pub async fn score(
        &self,
        task: &TaskSpec,
        response: &str,
        tests: Option<TestOutcome>,
    ) -> Result<Reward, Unscored> {
        let llm = match (&self.llm, self.spec.needs_llm()) {
            (Some(j), true) => Some(j.judge(task, response).await),
            _ => None,
        };
        self.finish(task, response, tests, llm)
    }

    fn finish(
        &self,
        task: &TaskSpec,
        response: &str,
        tests: Option<TestOutcome>,
        llm: Option<Result<f32, JudgeError>>,
    ) -> Result<Reward, Unscored> {
        let scores = ComponentScores {
            tests: self.spec.needs_tests().then_some(tests),
            llm,
        };
        let reward = self.spec.combine(task, response, scores);
        let first_unscored = {
            let mut s = lock(&self.stats);
            match &reward {
                Ok(_) => {
                    s.scored += 1;
                    false
                }
                Err(_) => {
                    s.unscored += 1;
                    s.unscored == 1
                }
            }
        };
        // Once per judge at warn level; every one is counted in the metrics.
        if let Err(u) = &reward {
            if first_unscored {
                tracing::warn!(task = task.id, error = %u,
                    "a trajectory was left unscored (further ones are counted in metrics, logged at debug)");
            } else {
                tracing::debug!(task = task.id, error = %u, "trajectory left unscored");
            }
        }
        reward
    }
}
