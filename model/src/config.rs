//! Model shape.

use serde::Deserialize;

use crate::{ModelError, Result};

/// Shape of the decoder-only policy. Parameters grow with `n_layers * d_model^2`;
/// step time on CPU grows about linearly in parameters times tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Vocabulary size (the byte tokenizer needs at least 264).
    pub vocab: usize,
    /// Residual width.
    pub d_model: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Hidden width of each MLP.
    pub d_ff: usize,
    /// Longest sequence (prompt + completion) in tokens.
    pub max_seq: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            vocab: crate::tokenizer::VOCAB_SIZE,
            d_model: 128,
            n_layers: 2,
            n_heads: 4,
            d_ff: 512,
            max_seq: 64,
        }
    }
}

impl ModelConfig {
    /// Checks the shape is buildable.
    pub fn validate(&self) -> Result<()> {
        if self.vocab < crate::tokenizer::VOCAB_SIZE {
            return Err(ModelError::Config(format!(
                "vocab = {} is smaller than the tokenizer's {}",
                self.vocab,
                crate::tokenizer::VOCAB_SIZE
            )));
        }
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return Err(ModelError::Config(format!(
                "n_heads = {} must divide d_model = {}",
                self.n_heads, self.d_model
            )));
        }
        if self.n_layers == 0 || self.d_ff == 0 || self.max_seq < 8 {
            return Err(ModelError::Config(
                "n_layers, d_ff must be > 0 and max_seq >= 8".into(),
            ));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        let d = self.d_model;
        let per_layer = 4 * d * d + 2 * d * self.d_ff + 2 * d;
        self.vocab * d * 2 + self.max_seq * d + self.n_layers * per_layer + d
    }
}
