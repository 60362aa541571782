//! Pretrained starting points: a GGUF file or a Hugging Face directory, resolved into a
//! model shape, a tokenizer and (for the learner) initial weights.

use std::path::Path;
use std::sync::Arc;

use crate::gguf::GgufFile;
use crate::tokenizer::ChatTokenizer;
use crate::{ModelConfig, ModelError, Result, WeightSnapshot, hf};

/// A pretrained model's shape and tokenizer.
#[derive(Debug, Clone)]
pub struct PretrainedSpec {
    /// The shape (with the caller's `max_seq`).
    pub config: ModelConfig,
    /// Its tokenizer and chat template.
    pub tokenizer: ChatTokenizer,
}

fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Resolves `cfg`: with `pretrained` set, the file's shape and tokenizer (keeping
/// `cfg.max_seq` and `cfg.sampler_weights`); otherwise `cfg` itself with the byte tokenizer.
pub fn resolve(cfg: &ModelConfig) -> Result<PretrainedSpec> {
    let Some(path) = &cfg.pretrained else {
        cfg.validate()?;
        if cfg.vocab < crate::tokenizer::VOCAB_SIZE {
            return Err(ModelError::Config(format!(
                "vocab = {} is smaller than the byte tokenizer's {}",
                cfg.vocab,
                crate::tokenizer::VOCAB_SIZE
            )));
        }
        return Ok(PretrainedSpec {
            config: cfg.clone(),
            tokenizer: ChatTokenizer::new(),
        });
    };
    if !cfg.shape_is_default() {
        return Err(ModelError::Config(format!(
            "`pretrained = {}` sets the model's shape; leave out the shape keys (only max_seq and sampler_weights apply)",
            path.display()
        )));
    }
    let (mut config, chat) = if is_gguf(path) {
        let file = GgufFile::open(path)?;
        (file.config(cfg.max_seq)?, file.tokenizer()?)
    } else {
        (hf::config(path, cfg.max_seq)?, hf::tokenizer(path)?)
    };
    config.sampler_weights = cfg.sampler_weights;
    Ok(PretrainedSpec {
        config,
        tokenizer: ChatTokenizer::ChatMl(Arc::new(chat)),
    })
}

/// The initial weights of a resolved pretrained `cfg` (whose `pretrained` is set).
pub fn initial_weights(cfg: &ModelConfig) -> Result<WeightSnapshot> {
    let path = cfg
        .pretrained
        .as_ref()
        .ok_or_else(|| ModelError::Config("no pretrained model named".into()))?;
    let mut tensors = if is_gguf(path) {
        GgufFile::open(path)?.weights(cfg)?
    } else {
        hf::weights(path)?
    };
    if cfg.tied_embeddings {
        tensors.remove("lm_head");
    }
    WeightSnapshot::from_tensors(tensors)
}
