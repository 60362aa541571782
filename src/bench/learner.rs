//! `troupe bench learner`: learner step time, tokens/s and MFU, sampler decode tokens/s,
//! and the device-to-host snapshot a weight publication costs, for one model on one
//! device (CPU, or a GPU with the `cuda` feature).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use troupe_learner::{Learner, LearnerConfig, SftExample, adamw::AdamWConfig, grpo::Clip};
use troupe_model::{ModelConfig, Transformer, config::SamplerWeights, pretrained};
use troupe_sampler::{SamplingParams, generate};

/// Arguments of `troupe bench learner`.
#[derive(Debug, clap::Args)]
pub struct LearnerArgs {
    /// A GGUF file or Hugging Face directory; without it, the built-in small policy.
    #[arg(long)]
    model: Option<PathBuf>,
    /// `cpu`, or `cuda` / `cuda:N` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Sequences per learner step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Timed learner steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Rows decoded together when measuring the sampler.
    #[arg(long, default_value_t = 8)]
    sampler_batch: usize,
    /// Tokens decoded per row when measuring the sampler.
    #[arg(long, default_value_t = 32)]
    decode_tokens: usize,
    /// The device's peak dense f32 throughput in TFLOP/s, for MFU (H100 SXM: 67).
    #[arg(long, default_value_t = 67.0)]
    peak_tflops: f64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn device(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = name
                .strip_prefix("cuda")
                .map(|r| r.trim_start_matches(':'))
                .filter(|r| r.is_empty() || r.parse::<usize>().is_ok())
                .with_context(|| format!("--device {name}: expected cpu, cuda or cuda:N"))?;
            Device::new_cuda(ordinal.parse().unwrap_or(0)).with_context(|| {
                format!("--device {name}: no CUDA device (is this a `--features cuda` build?)")
            })
        }
    }
}

fn sync(dev: &Device) -> anyhow::Result<()> {
    dev.synchronize().context("device synchronize")
}

/// Runs the bench and prints its report.
pub fn main(args: LearnerArgs) -> anyhow::Result<()> {
    let dev = device(&args.device)?;
    let with_seq = |max_seq: usize| {
        pretrained::resolve(&ModelConfig {
            pretrained: args.model.clone(),
            max_seq,
            ..ModelConfig::default()
        })
    };
    let tokenizer = with_seq(args.seq.max(16))?.tokenizer;
    let prompts: Vec<Vec<u32>> = (0..args.sampler_batch)
        .map(|i| tokenizer.generation_prompt(&format!("Count from {i} to {}", i + 50)))
        .collect();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let model_cfg = with_seq(args.seq.max(longest + args.decode_tokens + 1))?.config;
    let learner_cfg = LearnerConfig {
        sft_lr: 1e-5,
        rl_lr: 1e-5,
        clip: Clip {
            low: 0.2,
            high: 0.28,
            tis_cap: 0.0,
        },
        adamw: AdamWConfig::default(),
        micro_batch: 0,
    };
    let loaded = Instant::now();
    let mut learner = Learner::new(&model_cfg, learner_cfg, 1)?.to_device(&dev)?;
    let load_s = loaded.elapsed().as_secs_f64();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let vocab = model_cfg.vocab as u32;
    let examples: Vec<SftExample> = (0..args.batch)
        .map(|_| SftExample {
            tokens: (0..args.seq).map(|_| rng.random_range(0..vocab)).collect(),
            mask: vec![1; args.seq],
        })
        .collect();
    let batch: Vec<&SftExample> = examples.iter().collect();
    learner.sft_step(&batch)?;
    sync(&dev)?;
    let mut step_s = Vec::new();
    for _ in 0..args.steps.max(1) {
        let t = Instant::now();
        learner.sft_step(&batch)?;
        sync(&dev)?;
        step_s.push(t.elapsed().as_secs_f64());
    }
    step_s.sort_by(f64::total_cmp);
    let median = step_s[step_s.len() / 2];
    let params = model_cfg.parameter_count() as f64;
    let tokens = (args.batch * (args.seq - 1)) as f64;
    let learner_tok_s = tokens / median;
    let mfu = 6.0 * params * learner_tok_s / (args.peak_tflops * 1e12);

    let t = Instant::now();
    let snapshot = learner.snapshot()?;
    let snapshot_s = t.elapsed().as_secs_f64();
    let bytes = snapshot.byte_len();

    // Sampler: the published weights back on the device, greedy decode of a batch.
    let weights: std::collections::HashMap<_, _> = snapshot
        .to_map()
        .into_iter()
        .map(|(n, w)| Ok((n, w.to_device(&dev)?)))
        .collect::<anyhow::Result<_>>()?;
    let sampler_weights = if dev.is_cpu() {
        SamplerWeights::Q8_0
    } else {
        SamplerWeights::F32
    };
    let sampler = Transformer::with_weights(&model_cfg, &weights, sampler_weights)?;
    let mut rngs: Vec<ChaCha8Rng> = (0..args.sampler_batch as u64)
        .map(ChaCha8Rng::seed_from_u64)
        .collect();
    let params_sampling = SamplingParams {
        temperature: 1.0,
        top_p: 1.0,
        max_new_tokens: args.decode_tokens,
    };
    let t = Instant::now();
    let out = generate(&sampler, &prompts, &params_sampling, &mut rngs)?;
    sync(&dev)?;
    let decode_s = t.elapsed().as_secs_f64();
    let generated: usize = out.iter().map(|g| g.tokens.len()).sum();

    let report = json!({
        "device": format!("{dev:?}"),
        "model": args.model.as_ref().map_or("built-in small policy".to_string(), |p| p.display().to_string()),
        "parameters": params,
        "load_seconds": load_s,
        "learner_batch": [args.batch, args.seq],
        "learner_step_seconds_median": median,
        "learner_tokens_per_s": learner_tok_s,
        "learner_mfu": mfu,
        "peak_tflops": args.peak_tflops,
        "sampler_weights": format!("{sampler_weights:?}"),
        "sampler_batch": args.sampler_batch,
        "sampler_tokens": generated,
        "sampler_tokens_per_s": generated as f64 / decode_s,
        "snapshot_bytes": bytes,
        "snapshot_to_host_seconds": snapshot_s,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Value) {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "troupe bench learner — {} on {}",
        r["model"].as_str().unwrap_or("?"),
        r["device"]
    );
    println!(
        "  parameters            {:.1} M (loaded in {:.1} s)",
        f("parameters") / 1e6,
        f("load_seconds")
    );
    println!(
        "  learner step          {:.3} s median at {} x {} tokens: {:.0} tok/s, MFU {:.1}% of {} TFLOP/s",
        f("learner_step_seconds_median"),
        r["learner_batch"][0],
        r["learner_batch"][1],
        f("learner_tokens_per_s"),
        100.0 * f("learner_mfu"),
        f("peak_tflops")
    );
    println!(
        "  sampler decode        {:.0} tok/s ({} rows, {} weights)",
        f("sampler_tokens_per_s"),
        r["sampler_batch"],
        r["sampler_weights"].as_str().unwrap_or("?")
    );
    println!(
        "  weights to host       {:.1} MB in {:.1} ms",
        f("snapshot_bytes") / 1e6,
        1e3 * f("snapshot_to_host_seconds")
    );
}
