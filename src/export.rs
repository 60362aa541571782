//! `troupe export`: a policy (GGUF, Hugging Face directory, troupe checkpoint or run
//! directory) written as a Hugging Face directory that `transformers` loads.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{D, Device, Tensor};
use serde_json::json;
use troupe_model::{Transformer, pretrained::load_policy, tokenizer::ChatTokenizer};

/// Arguments of `troupe export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A GGUF file, Hugging Face directory, checkpoint directory or run directory.
    #[arg(long)]
    model: PathBuf,
    /// The Hugging Face directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Longest sequence for a pretrained file (a checkpoint keeps its own).
    #[arg(long, default_value_t = 2048)]
    max_seq: usize,
    /// Also write `troupe_reference.json`: this prompt's chat-templated token ids and
    /// troupe's next-token log-probs, for checking the export with another framework
    /// (scripts/check-hf-export.py).
    #[arg(long, value_name = "TEXT")]
    reference_prompt: Option<String>,
}

/// Runs `troupe export`.
pub fn main(args: ExportArgs) -> anyhow::Result<()> {
    let policy = load_policy(&args.model, args.max_seq)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let ChatTokenizer::ChatMl(chat) = &policy.tokenizer else {
        bail!(
            "{} uses troupe's byte-level tokenizer, which Hugging Face tools do not know; only pretrained (Llama-architecture) policies export",
            args.model.display()
        );
    };
    troupe_model::hf::export(&args.out, &policy.config, &policy.weights, chat)?;
    println!(
        "wrote {} ({} parameters) as a Hugging Face directory: {}",
        args.model.display(),
        policy.config.parameter_count(),
        args.out.display()
    );
    if let Some(prompt) = &args.reference_prompt {
        write_reference(&args.out, &policy, prompt)?;
    }
    Ok(())
}

fn write_reference(
    dir: &Path,
    policy: &troupe_model::pretrained::Policy,
    prompt: &str,
) -> anyhow::Result<()> {
    let model = Transformer::new(&policy.config, &policy.weights.to_map())?;
    let ids = policy.tokenizer.generation_prompt(prompt);
    let n = ids.len();
    let x = Tensor::from_vec(ids.clone(), (1, n), &Device::Cpu)?;
    let pos = Tensor::arange(0u32, n as u32, &Device::Cpu)?.reshape((1, n))?;
    let logits = model.forward(&x, &pos, &Transformer::causal_bias(n)?, None)?;
    let last = logits.squeeze(0)?.get(n - 1)?;
    let logprobs: Vec<f32> = candle_nn_log_softmax(&last)?.to_vec1()?;
    let path = dir.join("troupe_reference.json");
    let text = serde_json::to_string(&json!({
        "prompt": prompt,
        "input_ids": ids,
        "next_token_logprobs": logprobs,
    }))?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn candle_nn_log_softmax(x: &Tensor) -> anyhow::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}
