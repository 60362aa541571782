//! `troupe bench sampler`: how fast troupe's sampler decodes and prefills a GGUF model,
//! next to llama.cpp (its Python binding, `llama_cpp`) on the same file, prompt and
//! thread count, measured in the same run. No thresholds are enforced; targets are
//! reported.
//!
//! troupe runs [`troupe_sampler::generate_timed`] with each of the sampler's quantised
//! weight formats (Q8_0 and Q4_1, troupe's AVX2 kernels) and, for reference, f32: greedy,
//! as llama.cpp's side is. The headline figures are those of the format that decodes
//! fastest at batch 1 (named in `sampler_weights`). llama.cpp decodes the file's own
//! quantisation (Q4_1 for SmolLM2's GGUF). Both sides count only the forward passes in
//! their decode rate (one token per row per step) and time a whole prompt's pass for
//! prefill.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use troupe_model::Transformer;
use troupe_model::config::SamplerWeights;
use troupe_model::pretrained::{Policy, load_policy};
use troupe_sampler::{DecodeTiming, SamplingParams, generate_timed};

use super::median;

/// The model measured when `--model` is not given (`scripts/fetch-smollm2.sh models`).
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// Tokens in the prefill prompt.
const PREFILL_TOKENS: usize = 128;
/// Rows of the batched decode.
const BATCH: usize = 8;
/// Context the model is loaded with (prompt plus completion fit well inside).
const MAX_SEQ: usize = 512;
/// Set in the measuring process's environment to the thread count it runs with.
const THREADS_ENV: &str = "TROUPE_BENCH_SAMPLER_THREADS";

/// Targets from the sampler issue; reported, never asserted.
const TARGET_DECODE_VS_LLAMACPP: f64 = 0.9;

/// The llama.cpp side: reads `{prefill, decode_prompt, decode_tokens, n_ctx}` as JSON on
/// stdin, prints one JSON object (an `error` key when `llama_cpp` cannot be imported).
const LLAMACPP_SCRIPT: &str = r#"
import json, sys, time
try:
    import llama_cpp
    import numpy as np
except Exception as e:
    print(json.dumps({"error": "cannot import llama_cpp: %s" % e}))
    sys.exit(0)
path, threads, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
req = json.load(sys.stdin)
llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads,
                      n_ctx=req["n_ctx"], n_batch=512, verbose=False)

def prefill(ids):
    llm.reset()
    t = time.perf_counter()
    llm.eval(ids)
    return time.perf_counter() - t

def last_logits():
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))

def decode(prompt, n):
    llm.reset()
    llm.eval(prompt)
    t = time.perf_counter()
    for _ in range(n):
        llm.eval([int(np.argmax(last_logits()))])
    return time.perf_counter() - t

def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2

prefill(req["prefill"])
decode(req["decode_prompt"], 4)
n = req["decode_tokens"]
print(json.dumps({
    "prefill_tok_s": med([len(req["prefill"]) / prefill(req["prefill"]) for _ in range(reps)]),
    "decode_tok_s_b1": med([n / decode(req["decode_prompt"], n) for _ in range(reps)]),
    "version": llama_cpp.__version__,
}))
"#;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Print one JSON object instead of the table.
    pub json: bool,
    /// Fewer tokens and repetitions.
    pub quick: bool,
    /// The GGUF file.
    pub model: PathBuf,
    /// Threads for candle and for llama.cpp.
    pub threads: usize,
}

/// Sizes of one bench run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Tokens generated per row in the decode runs.
    decode_tokens: usize,
    /// Timed repetitions of each figure (the median is reported).
    reps: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                decode_tokens: 16,
                reps: 1,
            }
        } else {
            Self {
                decode_tokens: 64,
                reps: 3,
            }
        }
    }
}

/// The prompts both sides run.
#[derive(Debug)]
struct Prompts {
    /// Exactly [`PREFILL_TOKENS`] tokens of prose.
    prefill: Vec<u32>,
    /// A chat prompt that asks for a long answer.
    decode: Vec<u32>,
}

impl Prompts {
    fn new(policy: &Policy) -> anyhow::Result<Self> {
        let tok = &policy.tokenizer;
        let prose = "The sampler turns prompts into completions, one token at a time, and \
                     records the log-probability of every token it draws so that the \
                     learner can correct for the policy having moved on since. ";
        let mut prefill = tok.encode_text(&prose.repeat(8));
        if prefill.len() < PREFILL_TOKENS {
            bail!("the prefill text is only {} tokens long", prefill.len());
        }
        prefill.truncate(PREFILL_TOKENS);
        let decode = tok.generation_prompt("Write a long story about a robot who learns to paint.");
        Ok(Self { prefill, decode })
    }
}

/// troupe's figures for one weight format, in tokens per second.
#[derive(Debug, Clone, Copy)]
struct Figures {
    prefill: f64,
    decode_b1: f64,
    decode_b8: f64,
}

/// Runs the bench. candle sizes its thread pools from the environment once per process,
/// so the measurement runs in a child process whose environment asks for `threads`.
pub fn main(opts: Options) -> anyhow::Result<()> {
    let threads = opts.threads.to_string();
    if std::env::var(THREADS_ENV).ok().as_deref() != Some(threads.as_str()) {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let status = Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(THREADS_ENV, &threads)
            .env("RAYON_NUM_THREADS", &threads)
            .env("CANDLE_NUM_THREADS", &threads)
            .status()
            .context("cannot start the measuring process")?;
        if !status.success() {
            bail!("the sampler bench failed ({status})");
        }
        return Ok(());
    }
    let report = run(&opts)?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn run(opts: &Options) -> anyhow::Result<Value> {
    let started = Instant::now();
    let sizes = Sizes::new(opts.quick);
    if !opts.model.exists() {
        bail!(
            "{} is missing: run `scripts/fetch-smollm2.sh models` or pass --model",
            opts.model.display()
        );
    }
    let policy = load_policy(&opts.model, MAX_SEQ)
        .with_context(|| format!("cannot load {}", opts.model.display()))?;
    let prompts = Prompts::new(&policy)?;

    let q8 = troupe_figures(&policy, SamplerWeights::Q8_0, &prompts, sizes).context("Q8_0")?;
    let q4 = troupe_figures(&policy, SamplerWeights::Q4_1, &prompts, sizes).context("Q4_1")?;
    let f32 = troupe_figures(&policy, SamplerWeights::F32, &prompts, sizes).context("f32")?;
    let (best_name, best) = if q4.decode_b1 >= q8.decode_b1 {
        ("q4_1", q4)
    } else {
        ("q8_0", q8)
    };
    let llama = llamacpp(&opts.model, opts.threads, &prompts, sizes);
    let (llama_decode, llama_prefill, llama_version, llama_error) = match &llama {
        Ok(v) => (
            v["decode_tok_s_b1"].as_f64(),
            v["prefill_tok_s"].as_f64(),
            v["version"].as_str().map(str::to_owned),
            None,
        ),
        Err(e) => (None, None, None, Some(format!("{e:#}"))),
    };
    let ratio_decode = llama_decode.map(|l| best.decode_b1 / l);
    let ratio_prefill = llama_prefill.map(|l| best.prefill / l);
    let b8_over_b1 = best.decode_b8 / best.decode_b1;
    Ok(json!({
        "decode_tok_s_b1": best.decode_b1,
        "decode_tok_s_b8": best.decode_b8,
        "prefill_tok_s": best.prefill,
        "sampler_weights": best_name,
        "llamacpp_decode_tok_s_b1": llama_decode,
        "llamacpp_prefill_tok_s": llama_prefill,
        "ratio_decode_b1_vs_llamacpp": ratio_decode,
        "ratio_prefill_vs_llamacpp": ratio_prefill,
        "ratio_decode_b8_over_b1": b8_over_b1,
        "q8_0_decode_tok_s_b1": q8.decode_b1,
        "q8_0_decode_tok_s_b8": q8.decode_b8,
        "q8_0_prefill_tok_s": q8.prefill,
        "q4_1_decode_tok_s_b1": q4.decode_b1,
        "q4_1_decode_tok_s_b8": q4.decode_b8,
        "q4_1_prefill_tok_s": q4.prefill,
        "f32_decode_tok_s_b1": f32.decode_b1,
        "f32_decode_tok_s_b8": f32.decode_b8,
        "f32_prefill_tok_s": f32.prefill,
        "llamacpp_version": llama_version,
        "llamacpp_error": llama_error,
        "model": opts.model.display().to_string(),
        "threads": opts.threads,
        "batch": BATCH,
        "prefill_tokens": PREFILL_TOKENS,
        "decode_prompt_tokens": prompts.decode.len(),
        "decode_tokens": sizes.decode_tokens,
        "reps": sizes.reps,
        "targets_met": {
            "decode_b1_vs_llamacpp": ratio_decode.map(|r| r >= TARGET_DECODE_VS_LLAMACPP),
            "decode_b8_over_b1": b8_over_b1 > 1.0,
        },
        "cpus": std::thread::available_parallelism().map_or(0, usize::from),
        "quick": opts.quick,
        "wall_seconds": started.elapsed().as_secs_f64(),
    }))
}

/// Prefill and decode rates of troupe's sampler with `weights`.
fn troupe_figures(
    policy: &Policy,
    weights: SamplerWeights,
    prompts: &Prompts,
    sizes: Sizes,
) -> anyhow::Result<Figures> {
    let model = Transformer::with_weights(&policy.config, &policy.weights.to_map(), weights)?;
    let run = |prompt: &[u32], batch: usize, budget: usize| -> anyhow::Result<DecodeTiming> {
        let prompts = vec![prompt.to_vec(); batch];
        let mut rngs: Vec<ChaCha8Rng> = (0..batch as u64).map(ChaCha8Rng::seed_from_u64).collect();
        let params = SamplingParams::greedy(budget);
        Ok(generate_timed(&model, &prompts, &params, &mut rngs)?.1)
    };
    // Warm-up: thread pools, the allocator, the KV cache's first growth.
    run(&prompts.decode, 1, 4)?;
    let mut prefill = (0..sizes.reps)
        .map(|_| {
            let t = run(&prompts.prefill, 1, 1)?;
            Ok(PREFILL_TOKENS as f64 / t.prefill.as_secs_f64())
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let decode = |batch: usize| -> anyhow::Result<f64> {
        let mut rates = (0..sizes.reps)
            .map(|_| {
                let t = run(&prompts.decode, batch, sizes.decode_tokens)?;
                if t.decode_steps == 0 {
                    bail!("the model ended its turn before a single decode step");
                }
                Ok((batch * t.decode_steps) as f64 / t.decode.as_secs_f64())
            })
            .collect::<anyhow::Result<Vec<f64>>>()?;
        Ok(median(&mut rates))
    };
    let decode_b1 = decode(1)?;
    let decode_b8 = decode(BATCH)?;
    Ok(Figures {
        prefill: median(&mut prefill),
        decode_b1,
        decode_b8,
    })
}

/// llama.cpp's prefill and batch-1 decode rates on `model`, from a `python3` child.
fn llamacpp(
    model: &Path,
    threads: usize,
    prompts: &Prompts,
    sizes: Sizes,
) -> anyhow::Result<Value> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(LLAMACPP_SCRIPT)
        .arg(model)
        .arg(threads.to_string())
        .arg(sizes.reps.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start python3")?;
    let request = json!({
        "prefill": prompts.prefill,
        "decode_prompt": prompts.decode,
        "decode_tokens": sizes.decode_tokens,
        "n_ctx": MAX_SEQ,
    });
    child
        .stdin
        .take()
        .context("python3 has no stdin")?
        .write_all(request.to_string().as_bytes())
        .context("cannot write to python3")?;
    let out = child.wait_with_output().context("python3 failed")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the llama.cpp script printed no result ({}): {}",
            out.status,
            stderr.trim()
        )
    })?;
    if let Some(e) = report["error"].as_str() {
        bail!("{e}");
    }
    Ok(report)
}

fn print_table(r: &Value) {
    let f = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    let met = |key: &str| match r["targets_met"][key].as_bool() {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    let rate = |key: &str| match r[key].as_f64() {
        Some(v) => format!("{v:.1} tok/s"),
        None => "-".to_owned(),
    };
    let ratio = |key: &str| match r[key].as_f64() {
        Some(v) => format!("{v:.3}"),
        None => "-".to_owned(),
    };
    println!();
    println!(
        "  troupe bench sampler   {}, {} threads, {} CPUs{}",
        Path::new(r["model"].as_str().unwrap_or("?"))
            .file_name()
            .map_or_else(|| "?".into(), |n| n.to_string_lossy()),
        r["threads"],
        r["cpus"],
        if r["quick"] == true { ", quick" } else { "" }
    );
    let best = format!("{}/l.cpp", r["sampler_weights"].as_str().unwrap_or("?"));
    println!(
        "  {:<30} {:>14} {:>14} {:>14} {:>14} {:>11}",
        "", "troupe Q8_0", "troupe Q4_1", "troupe f32", "llama.cpp", best
    );
    println!(
        "  {:<30} {:>14} {:>14} {:>14} {:>14} {:>11}   target >= {TARGET_DECODE_VS_LLAMACPP}: {}",
        "decode, batch 1",
        rate("q8_0_decode_tok_s_b1"),
        rate("q4_1_decode_tok_s_b1"),
        rate("f32_decode_tok_s_b1"),
        rate("llamacpp_decode_tok_s_b1"),
        ratio("ratio_decode_b1_vs_llamacpp"),
        met("decode_b1_vs_llamacpp"),
    );
    println!(
        "  {:<30} {:>14} {:>14} {:>14} {:>14} {:>11}",
        format!("prefill, {}-token prompt", r["prefill_tokens"]),
        rate("q8_0_prefill_tok_s"),
        rate("q4_1_prefill_tok_s"),
        rate("f32_prefill_tok_s"),
        rate("llamacpp_prefill_tok_s"),
        ratio("ratio_prefill_vs_llamacpp"),
    );
    println!(
        "  {:<30} {:>14} {:>14} {:>14}   batch 8 / batch 1: {:.2}   target > 1: {}",
        format!("decode, batch {} (aggregate)", r["batch"]),
        rate("q8_0_decode_tok_s_b8"),
        rate("q4_1_decode_tok_s_b8"),
        rate("f32_decode_tok_s_b8"),
        f("ratio_decode_b8_over_b1"),
        met("decode_b8_over_b1"),
    );
    match (r["llamacpp_version"].as_str(), r["llamacpp_error"].as_str()) {
        (Some(v), _) => println!(
            "  llama.cpp: llama-cpp-python {v}, the file's own quantisation; both sides greedy"
        ),
        (None, Some(e)) => println!("  llama.cpp not measured: {e}"),
        _ => {}
    }
    println!(
        "  headline (ratios, targets): {}, the fastest at batch 1",
        r["sampler_weights"].as_str().unwrap_or("?")
    );
    println!(
        "  decode: {} tokens after a {}-token chat prompt, median of {}; wall {:.1} s",
        r["decode_tokens"],
        r["decode_prompt_tokens"],
        r["reps"],
        f("wall_seconds")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_is_smaller() {
        let (full, quick) = (Sizes::new(false), Sizes::new(true));
        assert!(quick.decode_tokens < full.decode_tokens);
        assert!(quick.reps <= full.reps);
    }
}
