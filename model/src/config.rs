//! Model shape.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use troupe_core::TokenId;

use crate::{ModelError, Result};

/// How the model knows where a token sits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// A learned absolute embedding per position (`max_seq` rows of `d_model`).
    #[default]
    Learned,
    /// Rotary embeddings (Llama's, in Hugging Face's rotate-half layout).
    Rope,
}

/// How samplers hold the weights they decode with. Quantised weights make decoding
/// faster on CPU; the log-prob gap to the f32 learner is measured and corrected by a
/// truncated importance ratio in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SamplerWeights {
    /// The learner's f32 weights as published.
    #[default]
    F32,
    /// Linear layers re-quantised to GGML Q8_0 after each weight sync.
    Q8_0,
    /// Linear layers re-quantised to GGML Q4_1 after each weight sync, the output
    /// projection to Q8_0 (as llama.cpp's Q4_1 files hold it): two thirds of Q8_0's
    /// bytes, so faster CPU decoding. A Q4_1 GGUF's own weights come back unchanged, so
    /// the log-prob gap starts below Q8_0's and grows as training moves the weights off
    /// the four-bit grid.
    Q4_1,
}

/// Shape of the decoder-only policy. Parameters grow with `n_layers * d_model^2`;
/// step time on CPU grows about linearly in parameters times tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// A pretrained model to start from: a GGUF file or a Hugging Face directory
    /// (safetensors + config.json + tokenizer.json). Its shape and tokenizer replace the
    /// shape keys below, which must then be left out; only `max_seq` and
    /// `sampler_weights` still apply.
    pub pretrained: Option<PathBuf>,
    /// Vocabulary size (the byte tokenizer needs at least 264).
    pub vocab: usize,
    /// Residual width.
    pub d_model: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Attention (query) heads (must divide `d_model`).
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention); `0` means `n_heads`.
    pub n_kv_heads: usize,
    /// Hidden width of each MLP.
    pub d_ff: usize,
    /// Longest sequence (prompt + completion) in tokens. Attention memory grows with
    /// its square; with learned positions it is also a parameter shape.
    pub max_seq: usize,
    /// Position encoding.
    pub positions: Positions,
    /// Rotary base frequency (with `positions = "rope"`).
    pub rope_theta: f32,
    /// Gated (SwiGLU) MLP: `down(silu(gate x) * up x)` instead of `down(silu(up x))`.
    pub gated_mlp: bool,
    /// The output projection reuses the token embedding.
    pub tied_embeddings: bool,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Token id used to pad batches (never attended to, never trained on).
    pub pad_token: TokenId,
    /// Token id that closes the policy's turn.
    pub end_token: TokenId,
    /// Weights samplers decode with.
    pub sampler_weights: SamplerWeights,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            pretrained: None,
            vocab: crate::tokenizer::VOCAB_SIZE,
            d_model: 128,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 0,
            d_ff: 512,
            max_seq: 64,
            positions: Positions::Learned,
            rope_theta: 10_000.0,
            gated_mlp: false,
            tied_embeddings: false,
            rms_eps: 1e-6,
            pad_token: crate::tokenizer::PAD,
            end_token: crate::tokenizer::END,
            sampler_weights: SamplerWeights::F32,
        }
    }
}

impl ModelConfig {
    /// SmolLM2-135M's shape (134.5 M parameters, Llama architecture), for timing and
    /// memory checks with fresh weights where the model file is not at hand. The byte
    /// tokenizer's ids all fall inside its vocabulary.
    pub fn smollm2_135m_shape() -> Self {
        Self {
            vocab: 49_152,
            d_model: 576,
            n_layers: 30,
            n_heads: 9,
            n_kv_heads: 3,
            d_ff: 1536,
            max_seq: 2048,
            positions: Positions::Rope,
            rope_theta: 100_000.0,
            gated_mlp: true,
            tied_embeddings: true,
            rms_eps: 1e-5,
            ..Self::default()
        }
    }

    /// Checks the shape is buildable.
    pub fn validate(&self) -> Result<()> {
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return Err(ModelError::Config(format!(
                "n_heads = {} must divide d_model = {}",
                self.n_heads, self.d_model
            )));
        }
        if !self.n_heads.is_multiple_of(self.kv_heads()) {
            return Err(ModelError::Config(format!(
                "n_kv_heads = {} must divide n_heads = {}",
                self.n_kv_heads, self.n_heads
            )));
        }
        if self.n_layers == 0 || self.d_ff == 0 || self.max_seq < 8 {
            return Err(ModelError::Config(
                "n_layers, d_ff must be > 0 and max_seq >= 8".into(),
            ));
        }
        if self.positions == Positions::Rope && !self.head_dim().is_multiple_of(2) {
            return Err(ModelError::Config(format!(
                "rotary positions need an even head width, got {}",
                self.head_dim()
            )));
        }
        for (what, id) in [("pad_token", self.pad_token), ("end_token", self.end_token)] {
            if id as usize >= self.vocab {
                return Err(ModelError::Config(format!(
                    "{what} = {id} is outside the vocabulary of {}",
                    self.vocab
                )));
            }
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Key/value heads actually used.
    pub fn kv_heads(&self) -> usize {
        if self.n_kv_heads == 0 {
            self.n_heads
        } else {
            self.n_kv_heads
        }
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        crate::params::parameter_shapes(self)
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// True when the shape keys are all at their defaults (what a config naming a
    /// `pretrained` model must leave them at).
    pub fn shape_is_default(&self) -> bool {
        let d = Self::default();
        let shape = |c: &Self| {
            (
                c.vocab,
                c.d_model,
                c.n_layers,
                c.n_heads,
                c.n_kv_heads,
                c.d_ff,
                c.positions,
                c.gated_mlp,
                c.tied_embeddings,
                (c.pad_token, c.end_token),
            )
        };
        shape(self) == shape(&d) && self.rope_theta == d.rope_theta && self.rms_eps == d.rms_eps
    }
}
