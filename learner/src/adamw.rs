//! AdamW with global-norm gradient clipping and state that checkpoints exactly.

use std::collections::HashMap;

use candle_core::{Tensor, Var, backprop::GradStore};

use crate::Result;

/// Optimizer hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (not applied to norm gains).
    pub weight_decay: f64,
    /// Largest global gradient norm; larger gradients are scaled down to it.
    pub max_grad_norm: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
        }
    }
}

/// AdamW over a fixed list of named variables.
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    names: Vec<String>,
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: u64,
}

/// What one optimizer step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Whether the gradient was scaled down.
    pub clipped: bool,
}

impl AdamW {
    /// An optimizer with zero moments for `vars`.
    pub fn new(cfg: AdamWConfig, names: &[String], vars: &[Var]) -> Result<Self> {
        let m = vars
            .iter()
            .map(|v| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = vars
            .iter()
            .map(|v| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            cfg,
            names: names.to_vec(),
            vars: vars.to_vec(),
            m,
            v,
            t: 0,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// Clips the gradients in `grads` to `max_grad_norm` and applies one update at `lr`.
    /// Variables without a gradient are left unchanged.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<StepReport> {
        let mut sq = 0f64;
        for var in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        let norm = sq.sqrt();
        let scale = if norm > self.cfg.max_grad_norm {
            self.cfg.max_grad_norm / (norm + 1e-12)
        } else {
            1.0
        };
        self.t += 1;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        for i in 0..self.vars.len() {
            let Some(g) = grads.get(self.vars[i].as_tensor()) else {
                continue;
            };
            let g = (g * scale)?;
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&self.m[i] / bc1)? / ((&self.v[i] / bc2)?.sqrt()? + self.cfg.eps)?)?;
            let decay = if self.names[i].ends_with("norm") {
                0.0
            } else {
                self.cfg.weight_decay
            };
            let p = self.vars[i].as_tensor();
            let next = ((p * (1.0 - lr * decay))? - (update * lr)?)?;
            self.vars[i].set(&next)?;
        }
        Ok(StepReport {
            grad_norm: norm as f32,
            clipped: scale < 1.0,
        })
    }

    /// The moments as named tensors (`m.NAME`, `v.NAME`) for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, n) in self.names.iter().enumerate() {
            out.insert(format!("m.{n}"), self.m[i].clone());
            out.insert(format!("v.{n}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments and step count saved by [`AdamW::state_tensors`].
    pub fn restore(&mut self, state: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        for (i, n) in self.names.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}.{n}");
                let t = state
                    .get(&key)
                    .ok_or_else(|| crate::LearnerError::BadCheckpoint {
                        path: "optimizer.safetensors".into(),
                        reason: format!("missing {key}"),
                    })?;
                *slot = t.clone();
            }
        }
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn first_step_moves_each_weight_by_lr_against_the_gradient_sign() {
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let cfg = AdamWConfig {
            weight_decay: 0.0,
            max_grad_norm: 100.0,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(cfg, &["w".into()], std::slice::from_ref(&var)).unwrap();
        // loss = 3 w0 - 0.5 w1 -> grad (3, -0.5); Adam's first step is lr * sign(g).
        let loss = (var.as_tensor() * &Tensor::new(&[3.0f32, -0.5], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let report = opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        let w: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        assert!(
            (w[0] - 0.9).abs() < 1e-5 && (w[1] + 1.9).abs() < 1e-5,
            "{w:?}"
        );
        assert!((report.grad_norm - (9.25f32).sqrt()).abs() < 1e-4);
        assert!(!report.clipped);
    }

    #[test]
    fn large_gradients_are_clipped_to_max_norm() {
        let var = Var::from_tensor(&Tensor::new(&[0.0f32], &Device::Cpu).unwrap()).unwrap();
        let cfg = AdamWConfig {
            max_grad_norm: 1.0,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(cfg, &["w".into()], std::slice::from_ref(&var)).unwrap();
        let loss = (var.as_tensor() * 50.0).unwrap().sum_all().unwrap();
        let report = opt.step(&loss.backward().unwrap(), 0.01).unwrap();
        assert!(report.clipped);
        assert!((report.grad_norm - 50.0).abs() < 1e-3);
    }
}
