//! Hugging Face Llama directories: `config.json`, `model.safetensors`, `tokenizer.json`
//! and `tokenizer_config.json` (with the chat template). troupe reads them as a starting
//! point and writes them as its export format, so `transformers` and other tools load a
//! trained policy directly.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::{Value, json};

use crate::chatml::ChatMl;
use crate::config::Positions;
use crate::names::{Scheme, external, internal};
use crate::{ModelConfig, ModelError, Result, WeightSnapshot};

fn bad(path: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Pretrained {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e))?;
    serde_json::from_str(&text).map_err(|e| bad(path, e))
}

/// The model shape from `dir/config.json`, with sequences up to `max_seq` tokens.
pub fn config(dir: &Path, max_seq: usize) -> Result<ModelConfig> {
    let path = dir.join("config.json");
    let j = read_json(&path)?;
    let arch = j["model_type"].as_str().unwrap_or_default();
    if arch != "llama" {
        return Err(bad(
            &path,
            format!("model_type `{arch}` is not supported (llama is)"),
        ));
    }
    let n = |key: &str| -> Result<usize> {
        j[key]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| bad(&path, format!("`{key}` is missing or not an integer")))
    };
    let context = n("max_position_embeddings")?;
    if max_seq > context {
        return Err(bad(
            &path,
            format!("max_seq = {max_seq} exceeds max_position_embeddings = {context}"),
        ));
    }
    let eos = j["eos_token_id"].as_u64().unwrap_or(0) as u32;
    let cfg = ModelConfig {
        pretrained: Some(dir.to_path_buf()),
        vocab: n("vocab_size")?,
        d_model: n("hidden_size")?,
        n_layers: n("num_hidden_layers")?,
        n_heads: n("num_attention_heads")?,
        n_kv_heads: j["num_key_value_heads"].as_u64().unwrap_or(0) as usize,
        d_ff: n("intermediate_size")?,
        max_seq,
        positions: Positions::Rope,
        rope_theta: j["rope_theta"].as_f64().unwrap_or(10_000.0) as f32,
        gated_mlp: true,
        tied_embeddings: j["tie_word_embeddings"].as_bool().unwrap_or(false),
        rms_eps: j["rms_norm_eps"].as_f64().unwrap_or(1e-6),
        pad_token: j["pad_token_id"].as_u64().map_or(eos, |v| v as u32),
        end_token: eos,
        ..ModelConfig::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The tokenizer and chat template of `dir`.
pub fn tokenizer(dir: &Path) -> Result<ChatMl> {
    let tc = dir.join("tokenizer_config.json");
    let template = if tc.exists() {
        read_json(&tc)?["chat_template"]
            .as_str()
            .map(str::to_string)
    } else {
        None
    };
    ChatMl::from_file(&dir.join("tokenizer.json"), template.as_deref())
}

/// Every weight of `dir/model.safetensors` under troupe's names, as f32.
pub fn weights(dir: &Path) -> Result<HashMap<String, Tensor>> {
    let path = dir.join("model.safetensors");
    let raw = candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| bad(&path, e))?;
    let mut out = HashMap::new();
    for (name, t) in raw {
        if let Some(ours) = internal(&name, Scheme::HuggingFace) {
            out.insert(ours, t.to_dtype(DType::F32)?);
        }
    }
    Ok(out)
}

/// Writes `weights` of a Llama-shaped `cfg` with `tokenizer` as a Hugging Face directory.
pub fn export(
    dir: &Path,
    cfg: &ModelConfig,
    weights: &WeightSnapshot,
    tokenizer: &ChatMl,
) -> Result<()> {
    if cfg.positions != Positions::Rope || !cfg.gated_mlp {
        return Err(ModelError::Config(
            "only Llama-shaped models (rotary positions, gated MLP) export to Hugging Face".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| bad(dir, e))?;
    let mut tensors = HashMap::new();
    for (name, t) in weights.map() {
        let hf = external(name, Scheme::HuggingFace).ok_or_else(|| ModelError::Weight {
            name: name.to_string(),
            reason: "has no Hugging Face name".into(),
        })?;
        tensors.insert(hf, t.clone());
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    let write = |file: &str, v: Value| -> Result<()> {
        let path = dir.join(file);
        let text = serde_json::to_string_pretty(&v).map_err(|e| bad(&path, e))?;
        std::fs::write(&path, text).map_err(|e| bad(&path, e))
    };
    let end = cfg.end_token;
    write(
        "config.json",
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": cfg.d_model,
            "intermediate_size": cfg.d_ff,
            "num_hidden_layers": cfg.n_layers,
            "num_attention_heads": cfg.n_heads,
            "num_key_value_heads": cfg.kv_heads(),
            "head_dim": cfg.head_dim(),
            "hidden_act": "silu",
            "max_position_embeddings": cfg.max_seq.max(2048),
            "rms_norm_eps": cfg.rms_eps,
            "rope_theta": cfg.rope_theta,
            "tie_word_embeddings": cfg.tied_embeddings,
            "vocab_size": cfg.vocab,
            "bos_token_id": tokenizer.tokenizer().token_to_id("<|im_start|>"),
            "eos_token_id": end,
            "pad_token_id": cfg.pad_token,
            "attention_bias": false,
            "mlp_bias": false,
            "torch_dtype": "float32",
        }),
    )?;
    write(
        "generation_config.json",
        json!({ "eos_token_id": end, "pad_token_id": cfg.pad_token }),
    )?;
    let tok_path = dir.join("tokenizer.json");
    tokenizer
        .tokenizer()
        .save(&tok_path, false)
        .map_err(|e| bad(&tok_path, e))?;
    let token = |id: u32| tokenizer.tokenizer().id_to_token(id).unwrap_or_default();
    write(
        "tokenizer_config.json",
        json!({
            "tokenizer_class": "GPT2Tokenizer",
            "add_prefix_space": false,
            "bos_token": "<|im_start|>",
            "eos_token": token(end),
            "pad_token": token(cfg.pad_token),
            "unk_token": token(0),
            "model_max_length": cfg.max_seq.max(2048),
            "chat_template": chat_template(tokenizer.default_system()),
        }),
    )?;
    write(
        "special_tokens_map.json",
        json!({ "bos_token": "<|im_start|>", "eos_token": token(end), "pad_token": token(cfg.pad_token) }),
    )
}

/// ChatML template text (the SmolLM2 form when there is a default system prompt).
fn chat_template(default_system: Option<&str>) -> String {
    let system = default_system
        .map(|s| {
            format!(
                "{{% if loop.first and messages[0]['role'] != 'system' %}}{{{{ '<|im_start|>system\\n{s}<|im_end|>\\n' }}}}{{% endif %}}"
            )
        })
        .unwrap_or_default();
    format!(
        "{{% for message in messages %}}{system}{{{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}}}{{% endfor %}}{{% if add_generation_prompt %}}{{{{ '<|im_start|>assistant\\n' }}}}{{% endif %}}"
    )
}
