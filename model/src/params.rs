//! Named trainable parameters: seeded initialisation, snapshots and safetensors I/O.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{ModelConfig, ModelError, Result, config::Positions};

/// Names and shapes of every parameter of a model with config `cfg`, in a fixed order.
/// Linear weights are `[out, in]`.
pub fn parameter_shapes(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (d, f) = (cfg.d_model, cfg.d_ff);
    let kv = cfg.kv_heads() * cfg.head_dim();
    let mut out = vec![("tok_emb".to_string(), vec![cfg.vocab, d])];
    if cfg.positions == Positions::Learned {
        out.push(("pos_emb".to_string(), vec![cfg.max_seq, d]));
    }
    for l in 0..cfg.n_layers {
        let mut layer = vec![
            ("attn_norm", vec![d]),
            ("wq", vec![d, d]),
            ("wk", vec![kv, d]),
            ("wv", vec![kv, d]),
            ("wo", vec![d, d]),
            ("mlp_norm", vec![d]),
        ];
        if cfg.gated_mlp {
            layer.push(("w_gate", vec![f, d]));
        }
        layer.push(("w_up", vec![f, d]));
        layer.push(("w_down", vec![d, f]));
        for (n, s) in layer {
            out.push((format!("layers.{l}.{n}"), s));
        }
    }
    out.push(("final_norm".to_string(), vec![d]));
    if !cfg.tied_embeddings {
        out.push(("lm_head".to_string(), vec![cfg.vocab, d]));
    }
    out
}

/// The learner's trainable parameters, in [`parameter_shapes`] order.
#[derive(Debug)]
pub struct Params {
    names: Vec<String>,
    vars: Vec<Var>,
}

fn normal(rng: &mut ChaCha8Rng, std: f32) -> f32 {
    // Box-Muller; u1 in (0, 1] so the log is finite.
    let u1: f32 = 1.0 - rng.random::<f32>();
    let u2: f32 = rng.random::<f32>();
    std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

impl Params {
    /// Fresh parameters drawn from a seeded RNG: N(0, 0.02) weights, residual output
    /// projections scaled by `1/sqrt(2 n_layers)`, norms at one.
    pub fn init(cfg: &ModelConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let resid_std = 0.02 / (2.0 * cfg.n_layers as f32).sqrt();
        let mut names = Vec::new();
        let mut vars = Vec::new();
        for (name, shape) in parameter_shapes(cfg) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm") {
                vec![1.0; n]
            } else {
                let std = if name.ends_with("wo") || name.ends_with("w_down") {
                    resid_std
                } else {
                    0.02
                };
                (0..n).map(|_| normal(&mut rng, std)).collect()
            };
            vars.push(Var::from_tensor(&Tensor::from_vec(
                data,
                shape,
                &Device::Cpu,
            )?)?);
            names.push(name);
        }
        Ok(Self { names, vars })
    }

    /// Parameters holding the tensors of `snapshot` (copied, so training does not alter it).
    pub fn from_snapshot(cfg: &ModelConfig, snapshot: &WeightSnapshot) -> Result<Self> {
        let map = snapshot.map();
        let mut names = Vec::new();
        let mut vars = Vec::new();
        for (name, shape) in parameter_shapes(cfg) {
            let t = checked(&map, &name, &shape)?;
            vars.push(Var::from_tensor(&t.copy()?)?);
            names.push(name);
        }
        Ok(Self { names, vars })
    }

    /// The same parameters as new variables on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let vars = self
            .vars
            .iter()
            .map(|v| Ok(Var::from_tensor(&v.as_tensor().to_device(device)?)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            names: self.names.clone(),
            vars,
        })
    }

    /// Where the variables live.
    pub fn device(&self) -> Device {
        self.vars
            .first()
            .map_or(Device::Cpu, |v| v.as_tensor().device().clone())
    }

    /// The trainable variables, in order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Parameter names, in the order of [`Params::vars`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The live tensors (sharing storage with the variables, so gradients reach them).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.names
            .iter()
            .cloned()
            .zip(self.vars.iter().map(|v| v.as_tensor().clone()))
            .collect()
    }

    /// A frozen copy of the current values in host memory, for publication to samplers
    /// and checkpoints.
    pub fn snapshot(&self) -> Result<WeightSnapshot> {
        self.snapshot_on(&Device::Cpu)
    }

    /// A frozen copy of the current values on `device`: on the variables' own GPU a
    /// device-to-device copy (how a learner hands weights to a sampler sharing its GPU),
    /// elsewhere a transfer.
    pub fn snapshot_on(&self, device: &Device) -> Result<WeightSnapshot> {
        // Detached: a copy of a variable would otherwise record the copy op, and every
        // computation a sampler ran on it would build (and hold) an autograd graph.
        let copy = |t: &Tensor| -> Result<Tensor> {
            Ok(if t.device().same_device(device) {
                t.copy()?.detach()
            } else {
                t.to_device(device)?.detach()
            })
        };
        let tensors = self
            .names
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| Ok((n.clone(), copy(v.as_tensor())?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(WeightSnapshot {
            tensors: Arc::new(tensors),
        })
    }

    /// Overwrites the values with those of `snapshot`.
    pub fn load(&self, snapshot: &WeightSnapshot) -> Result<()> {
        let map = snapshot.map();
        for (name, var) in self.names.iter().zip(&self.vars) {
            let t = checked(&map, name, var.dims())?;
            var.set(&t.to_device(var.device())?)?;
        }
        Ok(())
    }
}

fn checked<'a>(
    map: &HashMap<&'a str, &'a Tensor>,
    name: &str,
    shape: &[usize],
) -> Result<&'a Tensor> {
    let t = map.get(name).ok_or_else(|| ModelError::Weight {
        name: name.into(),
        reason: "missing".into(),
    })?;
    if t.dims() != shape {
        return Err(ModelError::Weight {
            name: name.into(),
            reason: format!("shape {:?}, expected {:?}", t.dims(), shape),
        });
    }
    Ok(*t)
}

/// An immutable set of named weights: what the learner publishes and samplers load.
/// Cloning is cheap (shared).
#[derive(Debug, Clone)]
pub struct WeightSnapshot {
    tensors: Arc<Vec<(String, Tensor)>>,
}

impl WeightSnapshot {
    /// Named tensors by name.
    pub fn map(&self) -> HashMap<&str, &Tensor> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect()
    }

    /// Named tensors, owned handles.
    pub fn to_map(&self) -> HashMap<String, Tensor> {
        self.tensors.iter().cloned().collect()
    }

    /// Total bytes of the weights.
    pub fn byte_len(&self) -> usize {
        self.tensors
            .iter()
            .map(|(_, t)| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Where the weights live.
    pub fn device(&self) -> Device {
        self.tensors
            .first()
            .map_or(Device::Cpu, |(_, t)| t.device().clone())
    }

    /// The same weights on `device` (shared, not copied, when already there).
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        if self.device().same_device(device) {
            return Ok(self.clone());
        }
        let tensors = self
            .tensors
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.to_device(device)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            tensors: Arc::new(tensors),
        })
    }

    /// The weights as safetensors bytes (what crosses the network on a weight sync).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let host = self.to_device(&Device::Cpu)?;
        let views = host.tensors.iter().map(|(n, t)| (n.as_str(), t));
        safetensors::serialize(views, None).map_err(|e| ModelError::Weight {
            name: "<snapshot>".into(),
            reason: e.to_string(),
        })
    }

    /// Weights from safetensors bytes; malformed bytes are an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_tensors(candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?)
    }

    /// A snapshot of named tensors (converted to f32, kept in name order).
    pub fn from_tensors(map: HashMap<String, Tensor>) -> Result<Self> {
        let mut tensors: Vec<(String, Tensor)> = map
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_dtype(DType::F32)?)))
            .collect::<Result<_>>()?;
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            tensors: Arc::new(tensors),
        })
    }

    /// Writes the weights as a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.to_device(&Device::Cpu)?.to_map(), path)?;
        Ok(())
    }

    /// Reads weights from a safetensors file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_tensors(candle_core::safetensors::load(path, &Device::Cpu)?)
    }

    /// Largest absolute difference between two snapshots with the same names.
    ///
    /// ```
    /// # use troupe_model::{ModelConfig, Params, WeightSnapshot};
    /// let cfg = ModelConfig { d_model: 16, n_layers: 1, n_heads: 2, d_ff: 32, max_seq: 16, ..ModelConfig::default() };
    /// let w = Params::init(&cfg, 3).unwrap().snapshot().unwrap();
    /// let back = WeightSnapshot::from_bytes(&w.to_bytes().unwrap()).unwrap();
    /// assert_eq!(w.max_abs_diff(&back).unwrap(), 0.0);
    /// assert!(WeightSnapshot::from_bytes(b"not safetensors").is_err());
    /// ```
    pub fn max_abs_diff(&self, other: &WeightSnapshot) -> Result<f32> {
        let theirs = other.map();
        let mut worst = 0f32;
        for (name, t) in self.tensors.iter() {
            let o = theirs
                .get(name.as_str())
                .ok_or_else(|| ModelError::Weight {
                    name: name.clone(),
                    reason: "missing".into(),
                })?;
            let d = (t - *o)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            worst = worst.max(d);
        }
        Ok(worst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot is a plain copy: it records no autograd history (a sampler decoding
    /// with it would otherwise build and hold a graph of everything it computes), and
    /// later updates of the variables do not reach it.
    #[test]
    fn snapshot_is_detached_and_frozen() {
        let cfg = ModelConfig {
            d_model: 16,
            n_layers: 1,
            n_heads: 2,
            d_ff: 32,
            max_seq: 16,
            ..ModelConfig::default()
        };
        let params = Params::init(&cfg, 3).unwrap();
        let snap = params.snapshot().unwrap();
        for (name, t) in snap.tensors.iter() {
            assert!(!t.track_op(), "{name} records autograd history");
            let y = (t * 2.0).unwrap();
            assert!(!y.track_op(), "computing on {name} records history");
        }
        let other = Params::init(&cfg, 4).unwrap().snapshot().unwrap();
        params.load(&other).unwrap();
        assert!(snap.max_abs_diff(&other).unwrap() > 0.0);
        assert_eq!(
            params.snapshot().unwrap().max_abs_diff(&other).unwrap(),
            0.0
        );
    }
}
