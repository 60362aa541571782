//! A decoder-only transformer in candle: differentiable for the learner, fused for a
//! sampler's cached decode.
//!
//! candle's fused `rms_norm`/`softmax_last_dim`/`rope` cut gradients, so the learner's
//! pass (no cache) writes RMSNorm and RoPE out and uses the generic softmax; a pass with
//! a [`KvCache`] is a sampler's, and uses the fused kernels (same results up to float
//! rounding). One code path serves the small default policy (learned positions, plain
//! MLP) and Llama-architecture models (rotary positions, grouped-query attention,
//! SwiGLU, tied embeddings).

use std::collections::HashMap;

use candle_core::quantized::GgmlDType;
use candle_core::{D, Device, Tensor};
use troupe_core::TokenId;

use crate::config::{Positions, SamplerWeights};
use crate::layers::{LinearGroup, LinearWeight, Rope, log_softmax, rms_norm, rotate};
use crate::{ModelConfig, ModelError, Result};

/// Additive attention bias for positions that must not be attended to. Finite, so a
/// fully-masked padding row stays finite instead of turning into NaN.
pub const MASKED: f32 = -1e9;

struct Layer {
    attn_norm: Tensor,
    /// q, k, v.
    qkv: LinearGroup,
    wo: LinearWeight,
    mlp_norm: Tensor,
    /// gate, up (gated MLP) or up alone.
    mlp_in: LinearGroup,
    w_down: LinearWeight,
}

/// The policy network. Built over tensors that are either trainable variables (the
/// learner) or a frozen snapshot (a sampler); the code path is the same.
pub struct Transformer {
    cfg: ModelConfig,
    tok_emb: Tensor,
    pos_emb: Option<Tensor>,
    rope: Option<Rope>,
    layers: Vec<Layer>,
    final_norm: Tensor,
    lm_head: LinearWeight,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Per-layer keys and values of the positions seen so far, each `[B, KV, capacity,
/// head_dim]` and filled up to [`KvCache::len`]. Capacity grows by doubling, so a decode
/// step writes its own position in place instead of copying the whole cache.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions that fit before the buffers must grow.
    fn capacity(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.dims()[2])
    }

    /// Makes room for `extra` more positions in each of `n_layers` layers of keys and
    /// values `[b, kv, _, hd]` on `dev`, growing to at most `max` positions (unless more
    /// are needed).
    fn reserve(
        &mut self,
        dev: &Device,
        n_layers: usize,
        (b, kv, hd): (usize, usize, usize),
        extra: usize,
        max: usize,
    ) -> Result<()> {
        let need = self.len + extra;
        if need <= self.capacity() && self.layers.len() == n_layers {
            return Ok(());
        }
        let cap = need
            .next_power_of_two()
            .max(2 * self.capacity())
            .max(64)
            .min(max.max(need));
        let grow = |old: Option<&Tensor>| -> Result<Tensor> {
            let new = Tensor::zeros((b, kv, cap, hd), candle_core::DType::F32, dev)?;
            if let Some(old) = old
                && self.len > 0
            {
                new.slice_set(&old.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
            }
            Ok(new)
        };
        let layers = (0..n_layers)
            .map(|i| {
                let old = self.layers.get(i);
                Ok((grow(old.map(|(k, _)| k))?, grow(old.map(|(_, v)| v))?))
            })
            .collect::<Result<Vec<_>>>()?;
        self.layers = layers;
        Ok(())
    }

    /// Writes `k`, `v` `[B, KV, T, hd]` of `layer` after the cached positions (room was
    /// reserved) and returns the keys and values of all `len + T` positions (views).
    fn append(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (kc, vc) = &self.layers[layer];
        kc.slice_set(&k.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.contiguous()?, 2, self.len)?;
        let n = self.len + k.dim(2)?;
        Ok((kc.narrow(2, 0, n)?, vc.narrow(2, 0, n)?))
    }
}

impl Transformer {
    /// Builds the model over `tensors` (names from [`crate::params::parameter_shapes`]),
    /// all dense: the learner's model, and the reference path.
    pub fn new(cfg: &ModelConfig, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        Self::with_weights(cfg, tensors, SamplerWeights::F32)
    }

    /// Builds the model a sampler decodes with: linear layers in `weights`' format.
    pub fn with_weights(
        cfg: &ModelConfig,
        tensors: &HashMap<String, Tensor>,
        weights: SamplerWeights,
    ) -> Result<Self> {
        cfg.validate()?;
        let shapes: HashMap<String, Vec<usize>> =
            crate::params::parameter_shapes(cfg).into_iter().collect();
        let get = |name: &str| -> Result<Tensor> {
            let t = tensors.get(name).ok_or_else(|| ModelError::Weight {
                name: name.into(),
                reason: "missing".into(),
            })?;
            if Some(&t.dims().to_vec()) != shapes.get(name) {
                return Err(ModelError::Weight {
                    name: name.into(),
                    reason: format!("shape {:?}, expected {:?}", t.dims(), shapes.get(name)),
                });
            }
            Ok(t.clone())
        };
        let dtype = match weights {
            SamplerWeights::F32 => None,
            SamplerWeights::Q8_0 => Some(GgmlDType::Q8_0),
            SamplerWeights::Q4_1 => Some(GgmlDType::Q4_1),
        };
        // Under Q4_1 the output projection keeps eight bits, as llama.cpp's quantisations
        // keep it (a Q4_1 GGUF stores it in Q8_0): on SmolLM2 four bits there would make
        // most of the log-prob gap to the learner (0.29 instead of 0.036), for about 8%
        // faster decoding.
        let head_dtype = match weights {
            SamplerWeights::Q4_1 => Some(GgmlDType::Q8_0),
            _ => dtype,
        };
        let linear = |name: &str, dtype: Option<GgmlDType>| -> Result<LinearWeight> {
            let w = get(name)?;
            match dtype {
                None => Ok(LinearWeight::Dense(w)),
                Some(dtype) => LinearWeight::quantize(&w, dtype),
            }
        };
        let group = |names: &[String]| -> Result<LinearGroup> {
            let ws = names.iter().map(|n| get(n)).collect::<Result<Vec<_>>>()?;
            LinearGroup::new(&ws, dtype)
        };
        let layers = (0..cfg.n_layers)
            .map(|l| {
                let p = |n: &str| format!("layers.{l}.{n}");
                let mlp_in = if cfg.gated_mlp {
                    vec![p("w_gate"), p("w_up")]
                } else {
                    vec![p("w_up")]
                };
                Ok(Layer {
                    attn_norm: get(&p("attn_norm"))?,
                    qkv: group(&[p("wq"), p("wk"), p("wv")])?,
                    wo: linear(&p("wo"), dtype)?,
                    mlp_norm: get(&p("mlp_norm"))?,
                    mlp_in: group(&mlp_in)?,
                    w_down: linear(&p("w_down"), dtype)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (pos_emb, rope) = match cfg.positions {
            Positions::Learned => (Some(get("pos_emb")?), None),
            Positions::Rope => (
                None,
                Some(Rope::new(
                    cfg.head_dim(),
                    cfg.max_seq,
                    cfg.rope_theta,
                    get("tok_emb")?.device(),
                )?),
            ),
        };
        Ok(Self {
            cfg: cfg.clone(),
            tok_emb: get("tok_emb")?,
            pos_emb,
            rope,
            layers,
            final_norm: get("final_norm")?,
            lm_head: linear(
                if cfg.tied_embeddings {
                    "tok_emb"
                } else {
                    "lm_head"
                },
                head_dtype,
            )?,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Where the weights live (inputs on another device are moved there).
    pub fn device(&self) -> &Device {
        self.tok_emb.device()
    }

    /// Logits `[B, T, V]` for token ids `[B, T]` at `positions` `[B, T]` (both u32),
    /// with additive attention `bias` broadcastable to `[B, 1, T, T_past + T]`. With a
    /// cache, keys and values of earlier calls are attended to and this call's appended;
    /// such a pass is a sampler's and records no gradient (fused kernels).
    pub fn forward(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        bias: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let fused = cache.is_some();
        let x = self.blocks(ids, positions, bias, cache)?;
        self.lm_head
            .forward(&self.norm(&x, &self.final_norm, fused)?)
    }

    /// Logits `[B, V]` of the last position only, what a sampler draws the next token
    /// from: the output projection of the other positions is never computed. Arguments
    /// as for [`Transformer::forward`].
    ///
    /// A cached pass on CPU runs on a thread of rayon's pool, so each of its matmuls
    /// shares rows with the pool's other threads from there, instead of being handed to
    /// the pool from outside and sleeping until it is done: one wake-up per pass instead
    /// of one per matmul (121 per SmolLM2 token, about a sixth of batch-1 decoding).
    pub fn forward_last(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        bias: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        if cache.is_some() && self.device().is_cpu() && rayon::current_thread_index().is_none() {
            return rayon::scope(|_| self.forward_last_here(ids, positions, bias, cache));
        }
        self.forward_last_here(ids, positions, bias, cache)
    }

    /// [`Transformer::forward_last`] on the calling thread.
    fn forward_last_here(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        bias: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let fused = cache.is_some();
        let x = self.blocks(ids, positions, bias, cache)?;
        let t = x.dim(1)?;
        let x = x.narrow(1, t - 1, 1)?.squeeze(1)?.contiguous()?;
        self.lm_head
            .forward(&self.norm(&x, &self.final_norm, fused)?)
    }

    /// RMSNorm: candle's fused kernel when `fused`, else the differentiable one.
    fn norm(&self, x: &Tensor, w: &Tensor, fused: bool) -> Result<Tensor> {
        if fused {
            Ok(candle_nn::ops::rms_norm(
                &x.contiguous()?,
                w,
                self.cfg.rms_eps as f32,
            )?)
        } else {
            rms_norm(x, w, self.cfg.rms_eps)
        }
    }

    /// The residual stream `[B, T, d_model]` after the last block.
    fn blocks(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        bias: &Tensor,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let dev = self.tok_emb.device();
        let (ids, positions, bias) = (
            &ids.to_device(dev)?,
            &positions.to_device(dev)?,
            &bias.to_device(dev)?,
        );
        let (b, t) = ids.dims2()?;
        let (h, kv, hd) = (self.cfg.n_heads, self.cfg.kv_heads(), self.cfg.head_dim());
        let (rep, d) = (h / kv, self.cfg.d_model);
        let fused = cache.is_some();
        let mut x = self.tok_emb.embedding(&ids.flatten_all()?)?;
        if let Some(pos_emb) = &self.pos_emb {
            x = (x + pos_emb.embedding(&positions.flatten_all()?)?)?;
        }
        let mut x = x.reshape((b, t, d))?;
        if let Some(c) = cache.as_deref_mut() {
            c.reserve(dev, self.layers.len(), (b, kv, hd), t, self.cfg.max_seq)?;
        }
        let tables = match &self.rope {
            Some(rope) => Some(rope.tables(positions)?),
            None => None,
        };
        let scale = 1.0 / (hd as f64).sqrt();
        for (i, layer) in self.layers.iter().enumerate() {
            let hdn = self.norm(&x, &layer.attn_norm, fused)?;
            let heads = |y: &Tensor, n: usize| -> Result<Tensor> {
                Ok(y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
            };
            let qkv = layer.qkv.forward(&hdn)?;
            let (mut q, mut k, v) = (heads(&qkv[0], h)?, heads(&qkv[1], kv)?, heads(&qkv[2], kv)?);
            if let Some((cos, sin)) = &tables {
                if fused {
                    q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
                    k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
                } else {
                    q = rotate(&q, cos, sin)?;
                    k = rotate(&k, cos, sin)?;
                }
            }
            let (k, v) = match cache.as_deref() {
                Some(c) => c.append(i, &k, &v)?,
                None => (k, v),
            };
            let s = k.dim(2)?;
            // Grouped-query attention without copying keys and values per query head:
            // the `rep` query heads that share a kv head become `rep * T` rows.
            let scores = (q.reshape((b, kv, rep * t, hd))?.matmul(&k.t()?)? * scale)?
                .reshape((b, h, t, s))?
                .broadcast_add(bias)?;
            let attn = if fused {
                candle_nn::ops::softmax_last_dim(&scores)?
            } else {
                candle_nn::ops::softmax(&scores, D::Minus1)?
            };
            let out = attn
                .reshape((b, kv, rep * t, s))?
                .matmul(&v)?
                .reshape((b, h, t, hd))?
                .transpose(1, 2)?
                .reshape((b, t, d))?;
            x = (x + layer.wo.forward(&out)?)?;
            let hdn = self.norm(&x, &layer.mlp_norm, fused)?;
            let hidden = match layer.mlp_in.forward(&hdn)?.as_slice() {
                [gate, up] => (gate.silu()? * up)?,
                [up] => up.silu()?,
                parts => {
                    return Err(ModelError::Config(format!(
                        "an MLP input has {} parts",
                        parts.len()
                    )));
                }
            };
            x = (x + layer.w_down.forward(&hidden)?)?;
        }
        if let Some(c) = cache {
            c.len += t;
        }
        Ok(x)
    }

    /// Causal bias `[1, 1, T, T]` for unpadded (or right-padded) sequences.
    pub fn causal_bias(t: usize) -> Result<Tensor> {
        let data: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { MASKED }))
            .collect();
        Ok(Tensor::from_vec(data, (1, 1, t, t), &Device::Cpu)?)
    }

    /// Log-probs of `completion` following `prompt`, one per completion token, by a
    /// single unbatched forward pass (a reference path for tests and evaluation).
    pub fn sequence_logprobs(
        &self,
        prompt: &[TokenId],
        completion: &[TokenId],
    ) -> Result<Vec<f32>> {
        let all: Vec<u32> = prompt.iter().chain(completion).copied().collect();
        let n = all.len();
        if n > self.cfg.max_seq {
            return Err(ModelError::TooLong {
                len: n,
                max: self.cfg.max_seq,
            });
        }
        let ids = Tensor::from_vec(all.clone(), (1, n), &Device::Cpu)?;
        let pos = Tensor::arange(0u32, n as u32, &Device::Cpu)?.reshape((1, n))?;
        let logits = self.forward(&ids, &pos, &Self::causal_bias(n)?, None)?;
        let lp = log_softmax(&logits)?.squeeze(0)?;
        let rows: Vec<Vec<f32>> = lp.to_vec2()?;
        Ok((prompt.len()..n)
            .map(|i| rows[i - 1][all[i] as usize])
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Params;
    use crate::config::Positions;
    use candle_core::DType;

    /// Llama-shaped: rotary positions, grouped-query attention, SwiGLU, tied embeddings.
    fn llama_config() -> ModelConfig {
        ModelConfig {
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            d_ff: 96,
            max_seq: 160,
            positions: Positions::Rope,
            gated_mlp: true,
            tied_embeddings: true,
            ..ModelConfig::default()
        }
    }

    fn ids(tokens: &[u32]) -> Tensor {
        Tensor::from_vec(tokens.to_vec(), (1, tokens.len()), &Device::Cpu).unwrap()
    }

    fn positions(start: usize, n: usize) -> Tensor {
        Tensor::arange(start as u32, (start + n) as u32, &Device::Cpu)
            .unwrap()
            .reshape((1, n))
            .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// A prompt pass then one token at a time through the cache (fused kernels, buffers
    /// grown twice) gives the logits of one uncached, differentiable pass.
    #[test]
    fn cached_decode_matches_one_full_pass() {
        let cfg = llama_config();
        let params = Params::init(&cfg, 11).unwrap();
        let tokens: Vec<u32> = (0..150u32).map(|i| 3 + i * 37 % 250).collect();
        let (n, prompt) = (tokens.len(), 20);
        for weights in [
            SamplerWeights::F32,
            SamplerWeights::Q8_0,
            SamplerWeights::Q4_1,
        ] {
            let m = Transformer::with_weights(&cfg, &params.tensors(), weights).unwrap();
            let full = m
                .forward(
                    &ids(&tokens),
                    &positions(0, n),
                    &Transformer::causal_bias(n).unwrap(),
                    None,
                )
                .unwrap()
                .squeeze(0)
                .unwrap();
            let mut cache = KvCache::new();
            let first = m
                .forward_last(
                    &ids(&tokens[..prompt]),
                    &positions(0, prompt),
                    &Transformer::causal_bias(prompt).unwrap(),
                    Some(&mut cache),
                )
                .unwrap();
            let mut worst = max_diff(&first, &full.narrow(0, prompt - 1, 1).unwrap());
            for i in prompt..n {
                let bias = Tensor::zeros((1, 1, 1, i + 1), DType::F32, &Device::Cpu).unwrap();
                let step = m
                    .forward_last(
                        &ids(&tokens[i..=i]),
                        &positions(i, 1),
                        &bias,
                        Some(&mut cache),
                    )
                    .unwrap();
                worst = worst.max(max_diff(&step, &full.narrow(0, i, 1).unwrap()));
            }
            assert_eq!(cache.len(), n);
            // Quantised weights come with int8 activations: a rounding difference of
            // 1e-7 between the two passes can move one of them by a step (seen with
            // some seeds for Q8_0 and Q4_1 alike, candle's kernels included), which
            // moves a logit by about 1e-3. Without such a step they agree exactly.
            let tolerance = if weights == SamplerWeights::F32 {
                1e-4
            } else {
                1e-2
            };
            assert!(
                worst < tolerance,
                "{weights:?}: cached logits differ by {worst}"
            );
        }
    }
}
