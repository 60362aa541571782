//! The LLM judge against a real OpenAI-compatible server: llama.cpp's server from PyPI's
//! `llama-cpp-python[server]`, serving SmolLM2-135M-Instruct (`scripts/fetch-smollm2.sh
//! models`). The test fails when the server cannot start; set
//! `TROUPE_SKIP_LLAMA_SERVER=1` to skip it deliberately (CI never does).
//!
//! A 135M model rarely follows the verdict format when asked to grade, so each real
//! grading reply is checked to be *counted correctly* whichever way it goes: a parsed
//! verdict, or a malformed one counted with its raw text — decided by parsing the same
//! (greedy, repeatable) reply independently. A prompt the model does follow (repeating a
//! line) puts real replies in the format through the parser as well.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use troupe_core::TaskSpec;
use troupe_judge::llama_server::LlamaServer;
use troupe_judge::{
    BudgetLimit, ChatClient, Component, JudgeConfig, JudgeError, LlmConfig, LlmJudge, Scorer,
    VerdictFormat, parse_verdict,
};

fn model() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/SmolLM2-135M-Instruct.Q4_1.gguf"
    ))
}

async fn start_server() -> Option<LlamaServer> {
    if std::env::var("TROUPE_SKIP_LLAMA_SERVER").is_ok_and(|v| v == "1") {
        eprintln!("TROUPE_SKIP_LLAMA_SERVER=1: the llama.cpp judge test is skipped");
        return None;
    }
    let python = std::env::var("TROUPE_PYTHON").unwrap_or_else(|_| "python3".into());
    match LlamaServer::start(&python, &model(), Duration::from_secs(180)).await {
        Ok(s) => Some(s),
        Err(e) => panic!(
            "{e}\n(install it with `pip install 'llama-cpp-python[server]==0.3.36'`, or set \
             TROUPE_SKIP_LLAMA_SERVER=1 to skip this test on purpose)"
        ),
    }
}

fn llm_config(base_url: &str) -> LlmConfig {
    LlmConfig {
        base_url: base_url.into(),
        model: "SmolLM2-135M-Instruct".into(),
        max_tokens_per_call: 48,
        timeout_ms: 60_000,
        system: Some("You are a strict grader.".into()),
        ..LlmConfig::default()
    }
}

/// A judge with its own client (no API key, its own budget counters).
fn llm_judge(cfg: &LlmConfig) -> LlmJudge {
    LlmJudge::new(
        cfg,
        ChatClient::with_api_key(cfg, None, Arc::default()).unwrap(),
    )
    .unwrap()
}

fn task(id: u64, digits: &str) -> TaskSpec {
    let mut sorted: Vec<char> = digits.chars().collect();
    sorted.sort();
    TaskSpec {
        id,
        prompt: format!("sort {digits}"),
        answer: sorted.into_iter().collect(),
        difficulty: digits.len() as u32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judges_real_replies_from_a_llama_cpp_server() {
    let Some(server) = start_server().await else {
        return;
    };
    let url = server.base_url().to_owned();
    real_verdicts_are_parsed_or_counted_as_malformed(&url).await;
    replies_in_the_verdict_format_are_parsed(&url).await;
    the_score_format_is_parsed_or_counted(&url).await;
    the_concurrency_limit_holds(&url).await;
    the_call_and_token_budgets_refuse_calls(&url).await;
    drop(server);
}

/// Four responses (two right, two wrong) judged through the full scorer; each outcome
/// is checked against an independent parse of the same greedy reply.
async fn real_verdicts_are_parsed_or_counted_as_malformed(url: &str) {
    let cfg: JudgeConfig = toml::from_str(&format!(
        "components = {{ llm = 1.0 }}\n[llm]\nbase_url = \"{url}\"\nmodel = \"smol\"\n\
         max_tokens_per_call = 48\nsystem = \"You are a strict grader.\"\n"
    ))
    .unwrap();
    let scorer = Scorer::new(&cfg).unwrap();
    let cases = [
        (task(1, "3914"), "1349"),
        (task(2, "3914"), "9431"),
        (task(3, "52"), "25"),
        (task(4, "807"), "87"),
    ];
    // The same judge prompt, sent again through a second client: at temperature 0 the
    // reply repeats, so its independent parse says what the scorer must have seen.
    let llm = cfg.llm.clone().unwrap();
    let probe = llm_judge(&llm);
    let (mut parsed, mut malformed) = (0, 0);
    for (t, response) in &cases {
        let outcome = scorer.score(t, response, None).await;
        let again = probe
            .client()
            .complete(&probe.messages(t, response))
            .await
            .unwrap();
        assert!(
            again.prompt_tokens > 0 && again.completion_tokens > 0,
            "{again:?}"
        );
        match (
            outcome,
            parse_verdict(&again.content, VerdictFormat::PassFail),
        ) {
            (Ok(reward), Ok(score)) => {
                parsed += 1;
                assert_eq!(reward.total, score);
                assert_eq!(reward.breakdown, [("llm".to_owned(), score)]);
            }
            (Err(u), Err(expected)) => {
                malformed += 1;
                assert_eq!(u.component, Component::Llm);
                assert_eq!(u.error, expected);
                assert!(
                    matches!(&u.error, JudgeError::MalformedVerdict { raw, .. } if *raw == again.content),
                    "{u}"
                );
            }
            (a, b) => panic!("the scorer and the repeat disagree: {a:?} vs {b:?}"),
        }
    }
    let s = scorer.stats();
    eprintln!(
        "real verdicts: {parsed} parsed, {malformed} malformed (last: {:?}); tokens {} + {}",
        s.last_malformed, s.prompt_tokens, s.completion_tokens
    );
    assert_eq!((s.calls, s.successes, s.failures), (4, 4, 0));
    assert_eq!((s.verdicts, s.malformed_verdicts), (parsed, malformed));
    assert_eq!((s.scored, s.unscored), (parsed, malformed));
    assert_eq!((s.requests, s.retries, s.http_errors), (4, 0, 0));
    assert!(
        s.prompt_tokens >= 4 * 50,
        "the judge prompt is longer: {s:?}"
    );
    assert!(s.completion_tokens >= 4);
    assert_eq!(s.latency.count, 4);
    assert!(s.latency.sum_us > 0 && s.latency.max_us > 0);
    if malformed > 0 {
        assert!(!s.last_malformed.is_empty());
    }
}

/// A prompt the small model does follow — it repeats a line — so real replies in the
/// verdict format reach the parser: `VERDICT: PASS` scores 1, `VERDICT: FAIL` scores 0.
async fn replies_in_the_verdict_format_are_parsed(url: &str) {
    let cfg = LlmConfig {
        prompt: Some("Repeat after me: VERDICT: {response}".into()),
        system: None,
        max_tokens_per_call: 16,
        ..llm_config(url)
    };
    let judge = llm_judge(&cfg);
    let spec = troupe_judge::RewardSpec {
        rules: None,
        llm: Some(1.0),
        tests: None,
    };
    let scorer = Scorer::with_judge(spec, Some(judge));
    let t = task(30, "21");
    for (word, want) in [("PASS", 1.0), ("FAIL", 0.0)] {
        match scorer.score(&t, word, None).await {
            Ok(r) => assert_eq!(r.breakdown, [("llm".to_owned(), want)], "{word}"),
            Err(u) => panic!(
                "SmolLM2 did not repeat `VERDICT: {word}` at temperature 0 ({u}); the parser \
                 needs one real reply in the format to be tested on"
            ),
        }
    }
    let s = scorer.stats();
    assert_eq!((s.verdicts, s.malformed_verdicts, s.scored), (2, 0, 2));
}

/// `SCORE: x` replies: parsed into [0, 1] or counted as malformed.
async fn the_score_format_is_parsed_or_counted(url: &str) {
    let cfg = LlmConfig {
        verdict: VerdictFormat::Score,
        ..llm_config(url)
    };
    let judge = llm_judge(&cfg);
    let outcome = judge.judge(&task(5, "41"), "14").await;
    let s = judge.client().stats();
    match outcome {
        Ok(x) => {
            assert!((0.0..=1.0).contains(&x));
            assert_eq!((s.verdicts, s.malformed_verdicts), (1, 0));
        }
        Err(JudgeError::MalformedVerdict { raw, .. }) => {
            assert_eq!((s.verdicts, s.malformed_verdicts), (0, 1));
            assert_eq!(s.last_malformed, raw.chars().take(500).collect::<String>());
        }
        Err(e) => panic!("the call itself failed: {e}"),
    }
}

/// Six concurrent calls through a client allowed two at a time.
async fn the_concurrency_limit_holds(url: &str) {
    let cfg = LlmConfig {
        max_concurrency: 2,
        max_tokens_per_call: 8,
        ..llm_config(url)
    };
    let judge = Arc::new(llm_judge(&cfg));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..6 {
        let judge = judge.clone();
        set.spawn(async move {
            let t = task(10 + i, "321");
            judge.client().complete(&judge.messages(&t, "123")).await
        });
    }
    while let Some(r) = set.join_next().await {
        let c = r.unwrap().unwrap();
        assert!(c.completion_tokens <= 8, "max_tokens not honoured: {c:?}");
    }
    let s = judge.client().stats();
    assert_eq!((s.calls, s.successes), (6, 6));
    assert_eq!(s.peak_in_flight, 2);
}

/// A call budget refuses the call after the last; a token budget refuses the first call
/// whose completion cap no longer fits, charging what the server reported.
async fn the_call_and_token_budgets_refuse_calls(url: &str) {
    let t = task(20, "4312");
    let cfg = LlmConfig {
        max_calls: 2,
        max_tokens_per_call: 8,
        ..llm_config(url)
    };
    let judge = llm_judge(&cfg);
    let messages = judge.messages(&t, "1234");
    for _ in 0..2 {
        judge.client().complete(&messages).await.unwrap();
    }
    for _ in 0..2 {
        assert_eq!(
            judge.client().complete(&messages).await.unwrap_err(),
            JudgeError::BudgetExhausted(BudgetLimit::Calls)
        );
    }
    let s = judge.client().stats();
    assert_eq!((s.requests, s.successes, s.budget_refusals), (2, 2, 2));

    let cap = 8u64;
    let max_tokens = 400;
    let cfg = LlmConfig {
        max_tokens,
        max_tokens_per_call: cap as u32,
        ..llm_config(url)
    };
    let judge = llm_judge(&cfg);
    let messages = judge.messages(&t, "1234");
    let mut charged = 0;
    let mut refused = false;
    for _ in 0..20 {
        match judge.client().complete(&messages).await {
            Ok(c) => {
                assert!(charged + cap <= max_tokens, "admitted past the budget");
                charged += c.prompt_tokens + c.completion_tokens;
            }
            Err(e) => {
                assert_eq!(e, JudgeError::BudgetExhausted(BudgetLimit::Tokens));
                assert!(
                    charged + cap > max_tokens,
                    "refused with room left: {charged}"
                );
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "20 calls fitted in {max_tokens} tokens");
    assert_eq!(judge.client().budget_used().1, charged);
    let report = judge.client().stats().report();
    assert_eq!(
        (report.budget.tokens, report.budget.max_tokens),
        (charged, max_tokens)
    );
    assert_eq!(report.budget.refusals, 1);
}
