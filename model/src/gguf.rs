//! Llama-architecture GGUF files: shape, tokenizer and weights (dequantised to f32 for
//! the learner; samplers re-quantise as configured).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};

use crate::chatml::ChatMl;
use crate::config::Positions;
use crate::names::{Scheme, internal};
use crate::{ModelConfig, ModelError, Result};

/// A GGUF file's header, read without its tensor data.
#[derive(Debug)]
pub struct GgufFile {
    content: Content,
    path: std::path::PathBuf,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Pretrained {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl GgufFile {
    /// Reads the header of `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut reader = BufReader::new(File::open(path).map_err(|e| bad(path, e))?);
        let content = Content::read(&mut reader).map_err(|e| bad(path, e))?;
        Ok(Self {
            content,
            path: path.to_path_buf(),
        })
    }

    fn value(&self, key: &str) -> Result<&Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| bad(&self.path, format!("metadata key `{key}` is missing")))
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.value(key)?;
        v.to_u32()
            .map(|x| x as usize)
            .or_else(|_| v.to_u64().map(|x| x as usize))
            .map_err(|e| bad(&self.path, format!("`{key}`: {e}")))
    }

    fn f64(&self, key: &str) -> Result<f64> {
        let v = self.value(key)?;
        v.to_f32()
            .map(f64::from)
            .or_else(|_| v.to_f64())
            .map_err(|e| bad(&self.path, format!("`{key}`: {e}")))
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.value(key)?
            .to_vec()
            .and_then(|v| v.iter().map(|s| s.to_string().cloned()).collect())
            .map_err(|e| bad(&self.path, format!("`{key}`: {e}")))
    }

    /// The model shape, with sequences up to `max_seq` tokens.
    pub fn config(&self, max_seq: usize) -> Result<ModelConfig> {
        let arch = self
            .value("general.architecture")?
            .to_string()
            .map_err(|e| bad(&self.path, e))?;
        if arch != "llama" {
            return Err(bad(
                &self.path,
                format!("architecture `{arch}` is not supported (llama is)"),
            ));
        }
        let context = self.usize("llama.context_length")?;
        if max_seq > context {
            return Err(bad(
                &self.path,
                format!("max_seq = {max_seq} exceeds the model's context length {context}"),
            ));
        }
        let vocab = self.strings("tokenizer.ggml.tokens")?.len();
        let eos = self.usize("tokenizer.ggml.eos_token_id")? as u32;
        let cfg = ModelConfig {
            pretrained: Some(self.path.clone()),
            vocab,
            d_model: self.usize("llama.embedding_length")?,
            n_layers: self.usize("llama.block_count")?,
            n_heads: self.usize("llama.attention.head_count")?,
            n_kv_heads: self.usize("llama.attention.head_count_kv")?,
            d_ff: self.usize("llama.feed_forward_length")?,
            max_seq,
            positions: Positions::Rope,
            rope_theta: self.f64("llama.rope.freq_base").unwrap_or(10_000.0) as f32,
            gated_mlp: true,
            tied_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            rms_eps: self.f64("llama.attention.layer_norm_rms_epsilon")?,
            pad_token: eos,
            end_token: eos,
            ..ModelConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The tokenizer and chat template.
    pub fn tokenizer(&self) -> Result<ChatMl> {
        let model = self
            .value("tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| bad(&self.path, e))?;
        if model != "gpt2" {
            return Err(bad(
                &self.path,
                format!("tokenizer `{model}` is not supported (byte-level BPE `gpt2` is)"),
            ));
        }
        let types: Vec<i32> = self
            .value("tokenizer.ggml.token_type")?
            .to_vec()
            .and_then(|v| v.iter().map(Value::to_i32).collect())
            .map_err(|e| bad(&self.path, e))?;
        let template = self
            .content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok());
        ChatMl::from_gguf_parts(
            &self.strings("tokenizer.ggml.tokens")?,
            &self.strings("tokenizer.ggml.merges")?,
            &types,
            template.map(String::as_str),
        )
    }

    /// Every weight, dequantised to f32, under troupe's names, with q and k projections
    /// turned back from llama.cpp's interleaved rotary layout to Hugging Face's.
    pub fn weights(&self, cfg: &ModelConfig) -> Result<HashMap<String, Tensor>> {
        let mut reader = BufReader::new(File::open(&self.path).map_err(|e| bad(&self.path, e))?);
        let mut out = HashMap::new();
        let mut names: Vec<&String> = self.content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let Some(ours) = internal(name, Scheme::Gguf) else {
                continue;
            };
            let q = self
                .content
                .tensor(&mut reader, name, &Device::Cpu)
                .map_err(|e| bad(&self.path, format!("tensor `{name}`: {e}")))?;
            let mut t = q.dequantize(&Device::Cpu)?;
            if ours.ends_with(".wq") {
                t = unpermute_rotary(&t, cfg.n_heads)?;
            } else if ours.ends_with(".wk") {
                t = unpermute_rotary(&t, cfg.kv_heads())?;
            }
            out.insert(ours, t);
        }
        Ok(out)
    }
}

/// Inverse of llama.cpp's conversion permutation of a q/k projection `[heads * hd, d]`:
/// GGUF rows of each head are `(hd/2, 2)`-interleaved; Hugging Face's are `(2, hd/2)`.
pub fn unpermute_rotary(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, d) = w.dims2()?;
    let hd = rows / heads;
    Ok(w.reshape((heads, hd / 2, 2, d))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, d))?)
}

/// llama.cpp's permutation (Hugging Face layout to GGUF layout), for writing GGUF.
pub fn permute_rotary(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, d) = w.dims2()?;
    let hd = rows / heads;
    Ok(w.reshape((heads, 2, hd / 2, d))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, d))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_permutation_round_trips() {
        let w = Tensor::arange(0f32, 48.0, &Device::Cpu)
            .unwrap()
            .reshape((12, 4))
            .unwrap();
        let back = unpermute_rotary(&permute_rotary(&w, 3).unwrap(), 3).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        // Row pairs (i, i + hd/2) of a head become neighbours in GGUF layout.
        let p = permute_rotary(&w, 3).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(p[1], w.to_vec2::<f32>().unwrap()[2]);
    }
}
