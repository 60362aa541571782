//! A decoder-only transformer built from differentiable candle ops only.
//!
//! candle's fused `rms_norm`/`softmax_last_dim`/`rope` cut gradients, so this model
//! writes RMSNorm and RoPE out and uses the generic softmax. One code path serves the
//! small default policy (learned positions, plain MLP) and Llama-architecture models
//! (rotary positions, grouped-query attention, SwiGLU, tied embeddings).

use std::collections::HashMap;

use candle_core::quantized::GgmlDType;
use candle_core::{D, Device, Tensor};
use troupe_core::TokenId;

use crate::config::{Positions, SamplerWeights};
use crate::layers::{LinearWeight, Rope, log_softmax, repeat_kv, rms_norm};
use crate::{ModelConfig, ModelError, Result};

/// Additive attention bias for positions that must not be attended to. Finite, so a
/// fully-masked padding row stays finite instead of turning into NaN.
pub const MASKED: f32 = -1e9;

struct Layer {
    attn_norm: Tensor,
    wq: LinearWeight,
    wk: LinearWeight,
    wv: LinearWeight,
    wo: LinearWeight,
    mlp_norm: Tensor,
    w_gate: Option<LinearWeight>,
    w_up: LinearWeight,
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

/// Per-layer cached keys and values, `[B, KV, T_past, head_dim]`.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        match self.layers.first() {
            Some(Some((k, _))) => k.dims()[2],
            _ => 0,
        }
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let linear = |name: &str| -> Result<LinearWeight> {
            let w = get(name)?;
            match weights {
                SamplerWeights::F32 => Ok(LinearWeight::Dense(w)),
                SamplerWeights::Q8_0 => LinearWeight::quantize(&w, GgmlDType::Q8_0),
            }
        };
        let layers = (0..cfg.n_layers)
            .map(|l| {
                let p = |n: &str| format!("layers.{l}.{n}");
                Ok(Layer {
                    attn_norm: get(&p("attn_norm"))?,
                    wq: linear(&p("wq"))?,
                    wk: linear(&p("wk"))?,
                    wv: linear(&p("wv"))?,
                    wo: linear(&p("wo"))?,
                    mlp_norm: get(&p("mlp_norm"))?,
                    w_gate: if cfg.gated_mlp {
                        Some(linear(&p("w_gate"))?)
                    } else {
                        None
                    },
                    w_up: linear(&p("w_up"))?,
                    w_down: linear(&p("w_down"))?,
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
            lm_head: linear(if cfg.tied_embeddings {
                "tok_emb"
            } else {
                "lm_head"
            })?,
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
    /// cache, keys and values of earlier calls are attended to and this call's appended.
    pub fn forward(
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
        let eps = self.cfg.rms_eps;
        let mut x = self.tok_emb.embedding(&ids.flatten_all()?)?;
        if let Some(pos_emb) = &self.pos_emb {
            x = (x + pos_emb.embedding(&positions.flatten_all()?)?)?;
        }
        let mut x = x.reshape((b, t, self.cfg.d_model))?;
        if let Some(c) = cache.as_deref_mut() {
            c.layers.resize_with(self.layers.len(), || None);
        }
        let scale = 1.0 / (hd as f64).sqrt();
        for (i, layer) in self.layers.iter().enumerate() {
            let hdn = rms_norm(&x, &layer.attn_norm, eps)?;
            let split = |w: &LinearWeight, heads: usize| -> Result<Tensor> {
                Ok(w.forward(&hdn)?
                    .reshape((b, t, heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (mut q, mut k, mut v) = (
                split(&layer.wq, h)?,
                split(&layer.wk, kv)?,
                split(&layer.wv, kv)?,
            );
            if let Some(rope) = &self.rope {
                q = rope.apply(&q, positions)?;
                k = rope.apply(&k, positions)?;
            }
            if let Some(c) = cache.as_deref_mut() {
                if let Some((pk, pv)) = &c.layers[i] {
                    k = Tensor::cat(&[pk, &k], 2)?;
                    v = Tensor::cat(&[pv, &v], 2)?;
                }
                c.layers[i] = Some((k.clone(), v.clone()));
            }
            let (k, v) = (repeat_kv(&k, h / kv)?, repeat_kv(&v, h / kv)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(bias)?;
            let attn = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let out = attn
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, t, self.cfg.d_model))?;
            x = (x + layer.wo.forward(&out)?)?;
            let hdn = rms_norm(&x, &layer.mlp_norm, eps)?;
            let hidden = match &layer.w_gate {
                Some(gate) => (gate.forward(&hdn)?.silu()? * layer.w_up.forward(&hdn)?)?,
                None => layer.w_up.forward(&hdn)?.silu()?,
            };
            x = (x + layer.w_down.forward(&hidden)?)?;
        }
        let x = rms_norm(&x, &self.final_norm, eps)?;
        self.lm_head.forward(&x)
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
