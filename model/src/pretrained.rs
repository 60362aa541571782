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

/// A policy ready to run: shape, weights and tokenizer.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The shape.
    pub config: ModelConfig,
    /// The weights.
    pub weights: WeightSnapshot,
    /// Its tokenizer and chat template.
    pub tokenizer: ChatTokenizer,
}

/// Name of the model shape file in a troupe checkpoint directory.
pub const CHECKPOINT_CONFIG: &str = "model.json";

/// Loads the policy at `path`: a GGUF file, a Hugging Face directory, a troupe
/// checkpoint directory (`model.json` + `model.safetensors`), or a run directory (its
/// latest checkpoint). `max_seq` bounds sequence lengths for pretrained files; a
/// checkpoint keeps its own.
pub fn load_policy(path: &Path, max_seq: usize) -> Result<Policy> {
    let bad = |reason: String| ModelError::Pretrained {
        path: path.to_path_buf(),
        reason,
    };
    let latest = path.join("checkpoints").join("LATEST");
    if latest.exists() {
        let name = std::fs::read_to_string(&latest).map_err(|e| bad(e.to_string()))?;
        return load_policy(&path.join("checkpoints").join(name.trim()), max_seq);
    }
    let own = path.join(CHECKPOINT_CONFIG);
    if own.exists() {
        let text = std::fs::read_to_string(&own).map_err(|e| bad(e.to_string()))?;
        let config: ModelConfig =
            serde_json::from_str(&text).map_err(|e| bad(format!("{CHECKPOINT_CONFIG}: {e}")))?;
        let tokenizer = match &config.pretrained {
            Some(_) => {
                let shape_only = ModelConfig {
                    pretrained: config.pretrained.clone(),
                    max_seq: config.max_seq,
                    ..ModelConfig::default()
                };
                resolve(&shape_only)?.tokenizer
            }
            None => ChatTokenizer::new(),
        };
        config.validate()?;
        let weights = WeightSnapshot::load(&path.join("model.safetensors"))?;
        return Ok(Policy {
            config,
            weights,
            tokenizer,
        });
    }
    let spec = resolve(&ModelConfig {
        pretrained: Some(path.to_path_buf()),
        max_seq,
        ..ModelConfig::default()
    })?;
    let weights = initial_weights(&spec.config)?;
    Ok(Policy {
        config: spec.config,
        weights,
        tokenizer: spec.tokenizer,
    })
}
