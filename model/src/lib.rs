//! The policy model shared by samplers and the learner.
//!
//! - [`tokenizer`] — a byte-level tokenizer with chat-template special tokens, so any
//!   UTF-8 conversation (seed trajectories a user brings) encodes losslessly.
//! - [`transformer`] — a small decoder-only transformer in candle built only from
//!   differentiable ops (own RMSNorm, plain softmax, learned positions), with a KV cache
//!   for generation and an attention bias for left-padded batches.
//! - [`device`] — `cpu` / `cuda` / `cuda:N` names and the devices they open.
//! - [`params`] — named parameters, seeded initialisation, snapshots for weight publication.
//! - [`pretrained`] — Llama-architecture models from GGUF ([`gguf`]) or Hugging Face
//!   directories ([`hf`], also the export format), with their BPE tokenizer and ChatML
//!   template ([`chatml`]).
//! - [`layers`] — differentiable RMSNorm and RoPE, and dense or quantised linear weights;
//!   [`q8`] and [`q4`] — the sampler's Q8_0 and Q4_1 matmuls on AVX2.
//! - [`logprob`] — per-token log-probs of chosen tokens, the quantity sampler and learner
//!   must agree on.
//!
//! ```
//! use troupe_model::{ModelConfig, Params, Transformer, tokenizer::ChatTokenizer};
//! let cfg = ModelConfig { d_model: 32, n_layers: 1, n_heads: 2, d_ff: 64, max_seq: 32, ..ModelConfig::default() };
//! let params = Params::init(&cfg, 7).unwrap();
//! let model = Transformer::new(&cfg, &params.tensors()).unwrap();
//! let tok = ChatTokenizer::new();
//! let prompt = tok.generation_prompt("sort 21");
//! let lp = model.sequence_logprobs(&prompt, &[tok.end_id()]).unwrap();
//! assert!(lp[0] < 0.0);
//! ```

pub mod chatml;
pub mod config;
pub mod device;
pub mod gguf;
pub mod hf;
pub mod layers;
pub mod logprob;
pub mod names;
pub mod params;
pub mod pretrained;
pub mod q4;
pub mod q8;
pub mod tokenizer;
pub mod transformer;

pub use config::ModelConfig;
pub use params::{Params, WeightSnapshot};
pub use transformer::{KvCache, Transformer};

/// Errors from building or running the policy model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed.
    #[error("tensor op failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A weight was missing from a snapshot or had the wrong shape.
    #[error("weight `{name}`: {reason}")]
    Weight {
        /// Parameter name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// The model configuration is unusable.
    #[error("model config: {0}")]
    Config(String),
    /// A device name is malformed or the device cannot be opened.
    #[error("{0}")]
    Device(String),
    /// A tokenizer could not be built or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A pretrained model file or directory is unreadable or unsupported.
    #[error("{}: {reason}", path.display())]
    Pretrained {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A sequence exceeded the model's context length.
    #[error("sequence of {len} tokens exceeds max_seq = {max}")]
    TooLong {
        /// Sequence length requested.
        len: usize,
        /// The model's `max_seq`.
        max: usize,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
