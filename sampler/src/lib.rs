//! Batched generation with a KV cache and exact behaviour log-probs.
//!
//! [`generate`] runs many episodes' prompts as one left-padded batch: one prefill,
//! then one cached decode step per token. Every generated token comes back with the
//! log-prob the learner will recompute for it (see the agreement test). [`episode`]
//! turns prompts, observations and generations into token-exact trajectories.
//!
//! ```
//! use rand::SeedableRng;
//! use troupe_model::{ModelConfig, Params, Transformer, tokenizer::ChatTokenizer};
//! use troupe_sampler::{generate, SamplingParams};
//! let cfg = ModelConfig { d_model: 32, n_layers: 1, n_heads: 2, d_ff: 64, max_seq: 32, ..ModelConfig::default() };
//! let model = Transformer::new(&cfg, &Params::init(&cfg, 1).unwrap().tensors()).unwrap();
//! let prompt = ChatTokenizer::new().generation_prompt("sort 21");
//! let mut rngs = vec![rand_chacha::ChaCha8Rng::seed_from_u64(0)];
//! let out = generate(&model, &[prompt], &SamplingParams::default(), &mut rngs).unwrap();
//! assert_eq!(out[0].tokens.len(), out[0].logprobs.len());
//! ```

pub mod episode;
mod generate;

pub use generate::{
    DecodeTiming, Flow, Generation, SamplingParams, generate, generate_streaming, generate_timed,
};

/// Errors from generation.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] troupe_model::ModelError),
    /// A tensor operation failed.
    #[error("tensor op failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A prompt does not leave room for a single generated token.
    #[error("prompt of {len} tokens leaves no room to generate (max_seq = {max})")]
    PromptTooLong {
        /// Prompt length.
        len: usize,
        /// Context length.
        max: usize,
    },
    /// The caller passed a different number of sampling parameters than prompts.
    #[error("{prompts} prompts but {params} sampling parameters")]
    ParamsCount {
        /// Prompts given.
        prompts: usize,
        /// Parameters given.
        params: usize,
    },
    /// An environment sent an observation authored by the policy; only the policy's own
    /// generations are its turns.
    #[error("an observation cannot be authored by the policy")]
    PolicyObservation,
    /// The caller passed a different number of RNGs than prompts.
    #[error("{prompts} prompts but {rngs} random generators")]
    RngCount {
        /// Prompts given.
        prompts: usize,
        /// RNGs given.
        rngs: usize,
    },
}
