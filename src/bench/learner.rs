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
use troupe_learner::{
    Learner, LearnerConfig, SftExample, adamw::AdamWConfig, grpo::Clip, sft::LrSchedule,
};
use troupe_model::{ModelConfig, Transformer, config::SamplerWeights, pretrained};
use troupe_sampler::{SamplingParams, generate};

/// Arguments of `troupe bench learner`.
#[derive(Debug, clap::Args)]
pub struct LearnerArgs {
    /// A GGUF file or Hugging Face directory; without it, the built-in small policy.
    #[arg(long, conflicts_with = "shape")]
    model: Option<PathBuf>,
    /// A named model shape with freshly initialised weights, for timing without the
    /// file: `smollm2-135m` (SmolLM2-135M's 134.5 M parameters).
    #[arg(long)]
    shape: Option<String>,
    /// Let cuBLAS use TF32 tensor cores for f32 matmuls (GPU only).
    #[arg(long)]
    tf32: bool,
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

fn sync(dev: &Device) -> anyhow::Result<()> {
    dev.synchronize().context("device synchronize")
}

/// Runs the bench and prints its report.
pub fn main(args: LearnerArgs) -> anyhow::Result<()> {
    let dev = troupe_model::device::open(&args.device).context("--device")?;
    if args.tf32 {
        candle_core::cuda::set_gemm_reduced_precision_f32(true);
    }
    let shape = match args.shape.as_deref() {
        None => None,
        Some("smollm2-135m") => Some(ModelConfig::smollm2_135m_shape()),
        Some(other) => anyhow::bail!("--shape {other:?}: the known shape is smollm2-135m"),
    };
    let with_seq = |max_seq: usize| {
        pretrained::resolve(&ModelConfig {
            pretrained: args.model.clone(),
            max_seq,
            ..shape.clone().unwrap_or_default()
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
        sft_schedule: LrSchedule::Constant,
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

    // A publication for a sampler sharing the learner's device (on a GPU a
    // device-to-device copy), then the sampler's load of it: the same-GPU weight sync.
    let sampler_weights = if dev.is_cpu() {
        SamplerWeights::Q8_0
    } else {
        SamplerWeights::F32
    };
    let mut publish_s = Vec::new();
    let mut load_s_sampler = Vec::new();
    let mut sampler = None;
    for _ in 0..5 {
        sync(&dev)?;
        let t = Instant::now();
        let published = learner.snapshot_on(&dev)?;
        sync(&dev)?;
        publish_s.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        sampler = Some(Transformer::with_weights(
            &model_cfg,
            &published.to_map(),
            sampler_weights,
        )?);
        sync(&dev)?;
        load_s_sampler.push(t.elapsed().as_secs_f64());
    }
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (publish_s, load_s_sampler) = (mid(&mut publish_s), mid(&mut load_s_sampler));
    let sampler = sampler.context("no sampler built")?;
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

    // The device against the CPU on the same weights: log-probs of the first row's
    // generated tokens, one forward pass each.
    let vs_cpu = if dev.is_cpu() {
        None
    } else {
        let cpu = Transformer::with_weights(&model_cfg, &snapshot.to_map(), SamplerWeights::F32)?;
        let completion = &out[0].tokens;
        let on_dev = sampler.sequence_logprobs(&prompts[0], completion)?;
        let on_cpu = cpu.sequence_logprobs(&prompts[0], completion)?;
        Some(
            on_dev
                .iter()
                .zip(&on_cpu)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max),
        )
    };

    let report = json!({
        "device": format!("{dev:?}"),
        "model": match (&args.model, &args.shape) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(shape)) => format!("{shape} shape, fresh weights"),
            (None, None) => "built-in small policy".to_string(),
        },
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
        "tf32": args.tf32,
        "device_vs_cpu_logprob_max_abs": vs_cpu,
        "same_device_publish_seconds": publish_s,
        "sampler_load_seconds": load_s_sampler,
        "same_device_weight_sync_seconds": publish_s + load_s_sampler,
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
    println!(
        "  same-device sync      {:.1} ms (publish {:.1} ms + sampler load {:.1} ms)",
        1e3 * f("same_device_weight_sync_seconds"),
        1e3 * f("same_device_publish_seconds"),
        1e3 * f("sampler_load_seconds")
    );
}
