//! Differentiable building blocks (candle's fused RMSNorm, softmax and RoPE cut gradients),
//! and linear weights that are either dense or GGML-quantised for decoding.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{D, DType, Device, Module, Tensor};

use crate::Result;
use crate::q4::Q4Matrix;
use crate::q8::Q8Matrix;

/// A linear layer's weight `[out, in]`: dense (trainable, or a frozen f32 snapshot) or
/// quantised (a sampler's decode copy).
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// f32 weight, differentiable when it is a variable.
    Dense(Tensor),
    /// GGML-quantised weight run by candle; forward only.
    Quantized(QMatMul),
    /// Q8_0 weight run by troupe's AVX2 kernel (same results as candle's); forward only.
    Q8(Q8Matrix),
    /// Q4_1 weight run by troupe's AVX2 kernel (same results as candle's); forward only.
    Q4(Q4Matrix),
}

impl LinearWeight {
    /// Quantises `w` to `dtype`, keeping it dense when its inner dimension does not fit
    /// the quantisation block. Q8_0 runs on [`Q8Matrix`] and Q4_1 on [`Q4Matrix`] where
    /// the CPU allows.
    pub fn quantize(w: &Tensor, dtype: GgmlDType) -> Result<Self> {
        if !w.dim(1)?.is_multiple_of(dtype.block_size()) {
            return Ok(Self::Dense(w.clone()));
        }
        if dtype == GgmlDType::Q8_0
            && let Some(q) = Q8Matrix::quantize(w)?
        {
            return Ok(Self::Q8(q));
        }
        if dtype == GgmlDType::Q4_1
            && let Some(q) = Q4Matrix::quantize(w)?
        {
            return Ok(Self::Q4(q));
        }
        let q = QTensor::quantize(w, dtype)?;
        Ok(Self::Quantized(QMatMul::from_qtensor(q)?))
    }

    /// `x @ w^T` for `x` of shape `[.., in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Dense(w) => x.broadcast_matmul(&w.t()?)?,
            Self::Quantized(q) => q.forward(x)?,
            Self::Q8(q) => q.forward(x)?,
            Self::Q4(q) => q.forward(x)?,
        })
    }
}

/// Linear layers that read the same input (q, k, v; or an MLP's gate and up). Quantised
/// ones are stacked into one weight `[sum of outs, in]`, so the input is quantised once
/// and one parallel matmul runs instead of several; GGML blocks run along a row, so the
/// stacked weight holds exactly the blocks of the parts. Dense ones stay separate, so a
/// learner's variables are used as they are.
#[derive(Debug, Clone)]
pub enum LinearGroup {
    /// One weight per output.
    Separate(Vec<LinearWeight>),
    /// The parts' rows stacked; `widths` splits the output back.
    Stacked {
        /// `[sum of widths, in]`.
        weight: LinearWeight,
        /// Output width of each part, in order.
        widths: Vec<usize>,
    },
}

impl LinearGroup {
    /// The group of `weights` (each `[out_i, in]`): dense with `None`, else stacked and
    /// quantised to `dtype` (separate and dense when the inner dimension does not fit
    /// the quantisation block).
    pub fn new(weights: &[Tensor], dtype: Option<GgmlDType>) -> Result<Self> {
        let dense = || Self::Separate(weights.iter().cloned().map(LinearWeight::Dense).collect());
        let Some(dtype) = dtype else {
            return Ok(dense());
        };
        let Some(first) = weights.first() else {
            return Ok(Self::Separate(Vec::new()));
        };
        if !first.dim(1)?.is_multiple_of(dtype.block_size()) {
            return Ok(dense());
        }
        let widths = weights
            .iter()
            .map(|w| w.dim(0))
            .collect::<candle_core::Result<_>>()?;
        let weight = LinearWeight::quantize(&Tensor::cat(weights, 0)?, dtype)?;
        Ok(Self::Stacked { weight, widths })
    }

    /// Each part's `x @ w^T`, in order (views into one output when stacked).
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Self::Separate(parts) => parts.iter().map(|w| w.forward(x)).collect(),
            Self::Stacked { weight, widths } => {
                let y = weight.forward(x)?;
                let mut start = 0;
                widths
                    .iter()
                    .map(|&w| {
                        let part = y.narrow(D::Minus1, start, w)?;
                        start += w;
                        Ok(part)
                    })
                    .collect()
            }
        }
    }
}

/// RMSNorm written out so gradients flow.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = x.broadcast_div(&(ms + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(w)?)
}

/// Rotary tables: `cos`, `sin` of shape `[max_seq, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Tables for positions `0..max_seq` with base `theta`, on `device`.
    pub fn new(head_dim: usize, max_seq: usize, theta: f32, device: &Device) -> Result<Self> {
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let angles: Vec<f32> = (0..max_seq)
            .flat_map(|p| inv.iter().map(move |f| p as f32 * f))
            .collect();
        let a = Tensor::from_vec(angles, (max_seq, half), device)?;
        Ok(Self {
            cos: a.cos()?,
            sin: a.sin()?,
        })
    }

    /// `cos` and `sin` at `positions` `[B, T]` (u32), each `[B, T, head_dim / 2]`: looked
    /// up once per forward pass and shared by every layer.
    pub fn tables(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t) = positions.dims2()?;
        let half = self.cos.dim(1)?;
        let idx = positions.flatten_all()?;
        Ok((
            self.cos.index_select(&idx, 0)?.reshape((b, t, half))?,
            self.sin.index_select(&idx, 0)?.reshape((b, t, half))?,
        ))
    }

    /// Rotates `x` `[B, H, T, hd]` by the angles of `positions` `[B, T]` (rotate-half
    /// layout: dimension `i` pairs with `i + hd/2`, as in Hugging Face Llama).
    pub fn apply(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let (cos, sin) = self.tables(positions)?;
        rotate(x, &cos, &sin)
    }
}

/// Rotates `x` `[B, H, T, hd]` by the [`Rope::tables`] `cos`, `sin` `[B, T, hd/2]`,
/// differentiably.
pub fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, _h, t, hd) = x.dims4()?;
    let half = hd / 2;
    let cos = cos.reshape((b, 1, t, half))?;
    let sin = sin.reshape((b, 1, t, half))?;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let r1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let r2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Ok(Tensor::cat(&[r1, r2], D::Minus1)?)
}

/// Repeats key/value heads `[B, KV, T, hd]` to `[B, KV * rep, T, hd]` for grouped-query
/// attention.
pub fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, hd) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, kv, rep, t, hd))?
        .contiguous()?
        .reshape((b, kv * rep, t, hd))?)
}

/// Log-softmax over the last dimension in f32.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(
        &x.to_dtype(DType::F32)?,
        D::Minus1,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let rope = Rope::new(8, 16, 10_000.0, &Device::Cpu).unwrap();
        let x = Tensor::arange(0f32, 32.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 4, 8))
            .unwrap();
        let zeros = Tensor::zeros((1, 4), DType::U32, &Device::Cpu).unwrap();
        let same = rope.apply(&x, &zeros).unwrap();
        let diff = (same - &x).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        let pos = Tensor::new(&[[3u32, 5, 7, 9]], &Device::Cpu).unwrap();
        let rotated = rope.apply(&x, &pos).unwrap();
        let n = |t: &Tensor| {
            t.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!((n(&rotated) - n(&x)).abs() / n(&x) < 1e-5);
    }

    #[test]
    fn stacked_group_equals_its_quantised_parts() {
        let parts: Vec<Tensor> = [16, 8, 8]
            .iter()
            .map(|&out| Tensor::randn(0f32, 0.05, (out, 64), &Device::Cpu).unwrap())
            .collect();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 64), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_1] {
            let group = LinearGroup::new(&parts, Some(dtype)).unwrap();
            assert!(matches!(group, LinearGroup::Stacked { .. }));
            for (w, y) in parts.iter().zip(group.forward(&x).unwrap()) {
                let alone = LinearWeight::quantize(w, dtype)
                    .unwrap()
                    .forward(&x)
                    .unwrap();
                let diff = (alone - y).unwrap().abs().unwrap().max_all().unwrap();
                assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "{dtype:?}");
            }
        }
        let dense = LinearGroup::new(&parts, None).unwrap();
        assert!(matches!(dense, LinearGroup::Separate(ref p) if p.len() == 3));
    }

    #[test]
    fn fused_rope_matches_the_differentiable_one() {
        let rope = Rope::new(8, 16, 10_000.0, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 8), &Device::Cpu).unwrap();
        let pos = Tensor::new(&[[0u32, 1, 2, 3], [0, 0, 5, 9]], &Device::Cpu).unwrap();
        let (cos, sin) = rope.tables(&pos).unwrap();
        let fused = candle_nn::rotary_emb::rope(&x, &cos, &sin).unwrap();
        let slow = rope.apply(&x, &pos).unwrap();
        let diff = (fused - slow).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn quantized_linear_is_close_to_dense() {
        let w = Tensor::randn(0f32, 0.05, (16, 64), &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 64), &Device::Cpu).unwrap();
        let dense = LinearWeight::Dense(w.clone()).forward(&x).unwrap();
        // Four-bit steps are about 0.015 here, so sums of 64 products drift further.
        for (dtype, tolerance) in [(GgmlDType::Q8_0, 0.02), (GgmlDType::Q4_1, 0.25)] {
            let q = LinearWeight::quantize(&w, dtype).unwrap();
            assert!(matches!(
                (dtype, &q),
                (_, LinearWeight::Quantized(_))
                    | (GgmlDType::Q8_0, LinearWeight::Q8(_))
                    | (GgmlDType::Q4_1, LinearWeight::Q4(_))
            ));
            let quant = q.forward(&x).unwrap();
            let err = (&dense - quant).unwrap().abs().unwrap().max_all().unwrap();
            let err = err.to_scalar::<f32>().unwrap();
            assert!(err < tolerance, "{dtype:?}: {err}");
        }
    }
}
