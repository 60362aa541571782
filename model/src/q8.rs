//! The sampler's Q8_0 matmul on x86 with AVX2.
//!
//! It computes what candle's Q8_0 `QMatMul` computes: the same quantised weights (made by
//! candle), activations quantised the same way (blocks of 32 int8 with one f16 scale),
//! and per block the integer dot product times the product of the two scales, summed in
//! eight lanes and reduced in the same order. What differs is speed: the block scales
//! are kept as f32 instead of converted from f16 for every block, each weight block is
//! loaded once for up to four activation rows, and rows are split over rayon's pool.
//! The SIMD goes through pulp's safe wrappers, so the CPU is checked at run time and no
//! `unsafe` is needed here; without AVX2 (or off x86-64) [`Q8Matrix::quantize`] declines
//! and candle's kernels run instead.

/// Values per GGML Q8_0 block (and Q8_1's and Q4_1's).
pub(crate) const BLOCK: usize = 32;
/// Weight rows per parallel task.
#[cfg(target_arch = "x86_64")]
const ROWS_PER_TASK: usize = 64;

#[cfg(target_arch = "x86_64")]
pub use avx2::Q8Matrix;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::{ggml_blocks, hsum, load};

#[cfg(not(target_arch = "x86_64"))]
pub use stub::Q8Matrix;

#[cfg(not(target_arch = "x86_64"))]
mod stub {
    use candle_core::Tensor;

    use crate::Result;

    /// Stand-in off x86-64: never built.
    #[derive(Debug, Clone)]
    pub struct Q8Matrix(());

    impl Q8Matrix {
        /// Always `None` off x86-64: candle's kernels run there.
        pub fn quantize(_w: &Tensor) -> Result<Option<Self>> {
            Ok(None)
        }

        /// Unreachable: no value of this type exists.
        pub fn forward(&self, _x: &Tensor) -> Result<Tensor> {
            unreachable!("Q8Matrix is never built off x86-64")
        }
    }
}

/// Quantises each row of `xs` (`m` rows of `k`) to Q8_0 exactly as candle's
/// `BlockQ8_0::from_float` does: scale `max|x| / 127` stored as f16, values
/// `round(x / scale)` with the unrounded scale. Returns the int8 values and the scales
/// (f16-rounded, as f32).
pub(crate) fn quantize_rows(xs: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let mut qs = Vec::with_capacity(xs.len());
    let mut scales = Vec::with_capacity(xs.len() / BLOCK);
    for block in xs.chunks_exact(BLOCK) {
        let amax = block.iter().fold(0f32, |a, x| a.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        scales.push(half::f16::from_f32(d).to_f32());
        qs.extend(block.iter().map(|&x| (x * id).round() as i8));
    }
    (qs, scales)
}

/// `[m, out]` outputs of a matmul with `out` weight rows and `m` activation rows,
/// computed on rayon's pool as `[out][m]` so each task owns a contiguous range:
/// `task(first, out)` writes the outputs of weight rows `first..` (as many as `out`
/// holds, `m` values each).
#[cfg(target_arch = "x86_64")]
pub(crate) fn par_rows_transposed(
    rows: usize,
    m: usize,
    task: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out_t = vec![0f32; rows * m];
    out_t
        .par_chunks_mut(ROWS_PER_TASK * m)
        .enumerate()
        .for_each(|(i, out)| task(i * ROWS_PER_TASK, out));
    if m == 1 {
        return out_t;
    }
    let mut out = vec![0f32; m * rows];
    for (n, col) in out_t.chunks_exact(m).enumerate() {
        for (r, &v) in col.iter().enumerate() {
            out[r * rows + n] = v;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{__m256, __m256i};

    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use pulp::x86::V3;

    use super::{BLOCK, par_rows_transposed, quantize_rows};
    use crate::{ModelError, Result};

    /// Bytes of one GGML `block_q8_0`: an f16 scale, then 32 int8.
    const BLOCK_BYTES: usize = 2 + BLOCK;

    /// The CPU's AVX2 token, `rows`, `cols` and the raw GGML blocks of a weight.
    pub(crate) type GgmlBlocks = (V3, usize, usize, Vec<u8>);

    /// `w` `[out, in]` quantised by candle to `dtype`, as raw GGML blocks of
    /// `block_bytes` each, with AVX2 and the shape: `None` without AVX2 or when `in` is
    /// not a whole number of blocks (candle's kernels run then).
    pub(crate) fn ggml_blocks(
        w: &Tensor,
        dtype: GgmlDType,
        block_bytes: usize,
    ) -> Result<Option<GgmlBlocks>> {
        let Some(simd) = V3::try_new() else {
            return Ok(None);
        };
        let (rows, cols) = w.dims2()?;
        if !cols.is_multiple_of(BLOCK) {
            return Ok(None);
        }
        let data = QTensor::quantize(w, dtype)?.data()?.into_owned();
        let blocks = rows * cols / BLOCK;
        if data.len() != blocks * block_bytes {
            return Err(ModelError::Config(format!(
                "a {dtype:?} tensor of {blocks} blocks has {} bytes",
                data.len()
            )));
        }
        Ok(Some((simd, rows, cols, data)))
    }

    /// A Q8_0 weight `[out, in]`: int8 values row-major, one f32 scale per block.
    #[derive(Debug, Clone)]
    pub struct Q8Matrix {
        rows: usize,
        cols: usize,
        qs: Vec<i8>,
        scales: Vec<f32>,
        simd: V3,
    }

    impl Q8Matrix {
        /// `w` `[out, in]` quantised to Q8_0 by candle; `None` without AVX2 or when `in`
        /// is not a whole number of blocks.
        pub fn quantize(w: &Tensor) -> Result<Option<Self>> {
            let Some((simd, rows, cols, data)) = ggml_blocks(w, GgmlDType::Q8_0, BLOCK_BYTES)?
            else {
                return Ok(None);
            };
            let blocks = rows * cols / BLOCK;
            let mut qs = Vec::with_capacity(rows * cols);
            let mut scales = Vec::with_capacity(blocks);
            for block in data.chunks_exact(BLOCK_BYTES) {
                scales.push(half::f16::from_le_bytes([block[0], block[1]]).to_f32());
                qs.extend(block[2..].iter().map(|&b| b as i8));
            }
            Ok(Some(Self {
                rows,
                cols,
                qs,
                scales,
                simd,
            }))
        }

        /// `x @ w^T` for `x` of shape `[.., in]`.
        pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
            let mut shape = x.dims().to_vec();
            let k = shape.last().copied().unwrap_or(0);
            if k != self.cols {
                return Err(ModelError::Config(format!(
                    "input width {k} for a Q8_0 weight of {} columns",
                    self.cols
                )));
            }
            let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let m = xs.len() / k;
            let (xq, xd) = quantize_rows(&xs);
            let kb = k / BLOCK;
            let rows: Vec<Row<'_>> = (0..m)
                .map(|r| Row {
                    qs: &xq[r * k..(r + 1) * k],
                    scales: &xd[r * kb..(r + 1) * kb],
                })
                .collect();
            let out = par_rows_transposed(self.rows, m, |first, out| {
                self.simd.vectorize(Task {
                    matrix: self,
                    rows: &rows,
                    first,
                    out,
                })
            });
            if let Some(last) = shape.last_mut() {
                *last = self.rows;
            }
            Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
        }

        /// `out[r] = w · rows[r]` for every activation row, four at a time.
        #[inline(always)]
        fn row_dots(&self, w: &Row<'_>, rows: &[Row<'_>], out: &mut [f32]) {
            let simd = self.simd;
            let mut r = 0;
            while r < rows.len() {
                match rows.len() - r {
                    1 => out[r] = dots::<1>(simd, w, [&rows[r]])[0],
                    2 => {
                        out[r..r + 2].copy_from_slice(&dots::<2>(simd, w, [&rows[r], &rows[r + 1]]))
                    }
                    3 => out[r..r + 3].copy_from_slice(&dots::<3>(
                        simd,
                        w,
                        [&rows[r], &rows[r + 1], &rows[r + 2]],
                    )),
                    _ => out[r..r + 4].copy_from_slice(&dots::<4>(
                        simd,
                        w,
                        [&rows[r], &rows[r + 1], &rows[r + 2], &rows[r + 3]],
                    )),
                }
                r += 4;
            }
        }
    }

    /// One parallel task's output rows, computed inside pulp's AVX2 function.
    ///
    /// This is a type with an `#[inline(always)]` [`call`](pulp::NullaryFnOnce::call), not
    /// a closure, because only then is the kernel (and every intrinsic in it) inlined
    /// into the `target_feature` function pulp runs it in. Passed a closure, the
    /// intrinsics stayed out-of-line: a function call, with its operands through memory,
    /// per instruction, and this kernel ran at a quarter of candle's f32 matmul.
    struct Task<'a> {
        matrix: &'a Q8Matrix,
        rows: &'a [Row<'a>],
        first: usize,
        out: &'a mut [f32],
    }

    impl pulp::NullaryFnOnce for Task<'_> {
        type Output = ();

        #[inline(always)]
        fn call(self) {
            let q = self.matrix;
            let (k, kb, m) = (q.cols, q.cols / BLOCK, self.rows.len());
            for (i, out) in self.out.chunks_exact_mut(m).enumerate() {
                let n = self.first + i;
                let w = Row {
                    qs: &q.qs[n * k..(n + 1) * k],
                    scales: &q.scales[n * kb..(n + 1) * kb],
                };
                q.row_dots(&w, self.rows, out);
            }
        }
    }

    /// One quantised row: int8 values and a scale per block.
    #[derive(Debug, Clone, Copy)]
    struct Row<'a> {
        qs: &'a [i8],
        scales: &'a [f32],
    }

    /// One block of int8 values.
    #[inline(always)]
    pub(crate) fn load(qs: &[i8]) -> __m256i {
        let block: [i8; BLOCK] = qs.try_into().expect("a whole block");
        pulp::cast(block)
    }

    /// The Q8_0 dot products of weight row `w` with `R` activation rows: per block,
    /// `scale_w * scale_x * sum(w_i * x_i)` accumulated in eight lanes (candle's
    /// `vec_dot_q8_0_q8_0`), each weight block loaded once for all `R` rows.
    #[inline(always)]
    fn dots<const R: usize>(simd: V3, w: &Row<'_>, xs: [&Row<'_>; R]) -> [f32; R] {
        let ones = simd.avx._mm256_set1_epi16(1);
        let mut acc = [simd.avx._mm256_setzero_ps(); R];
        for (b, (wq, &wd)) in w.qs.chunks_exact(BLOCK).zip(w.scales).enumerate() {
            let wv = load(wq);
            let aw = simd.avx2._mm256_sign_epi8(wv, wv);
            for (a, x) in acc.iter_mut().zip(&xs) {
                let xv = load(&x.qs[b * BLOCK..(b + 1) * BLOCK]);
                let sx = simd.avx2._mm256_sign_epi8(xv, wv);
                let pairs = simd.avx2._mm256_maddubs_epi16(aw, sx);
                let sums = simd
                    .avx
                    ._mm256_cvtepi32_ps(simd.avx2._mm256_madd_epi16(ones, pairs));
                let d = simd.avx._mm256_set1_ps(wd * x.scales[b]);
                *a = simd.fma._mm256_fmadd_ps(d, sums, *a);
            }
        }
        // A loop, not `acc.map(..)`: a closure would keep `hsum` out of the AVX2 context.
        let mut out = [0f32; R];
        for (o, a) in out.iter_mut().zip(acc) {
            *o = hsum(simd, a);
        }
        out
    }

    /// Sum of the eight lanes, in the order of candle's `hsum_float_8`.
    #[inline(always)]
    pub(crate) fn hsum(simd: V3, x: __m256) -> f32 {
        let hi = simd.avx._mm256_extractf128_ps::<1>(x);
        let s = simd.sse._mm_add_ps(hi, simd.avx._mm256_castps256_ps128(x));
        let s = simd.sse._mm_add_ps(s, simd.sse._mm_movehl_ps(s, s));
        let s = simd.sse._mm_add_ss(s, simd.sse3._mm_movehdup_ps(s));
        simd.sse._mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    #[test]
    fn activation_quantisation_round_trips_within_half_a_step() {
        let xs: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 31.5) / 7.0)
            .collect();
        let (qs, scales) = quantize_rows(&xs);
        for (i, (&q, &x)) in qs.iter().zip(&xs).enumerate() {
            let d = scales[i / BLOCK];
            assert!((q as f32 * d - x).abs() <= 0.5 * d + 1e-3 * x.abs(), "{i}");
        }
        let (zq, zd) = quantize_rows(&[0.0; BLOCK]);
        assert!(zq.iter().all(|&q| q == 0) && zd == [0.0]);
    }

    /// Same results as candle's Q8_0 matmul, for one row (decode) and for several
    /// (prefill, batches), with rows not a multiple of four.
    #[test]
    fn matches_candle_q8_0_matmul() {
        let w = Tensor::randn(0f32, 0.05, (70, 96), &Device::Cpu).unwrap();
        let Some(ours) = Q8Matrix::quantize(&w).unwrap() else {
            return; // no AVX2 here: candle's kernel is used instead
        };
        let theirs =
            QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        for rows in [1, 3, 8, 13] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, 96), &Device::Cpu).unwrap();
            let a = ours.forward(&x).unwrap();
            let b = theirs.forward(&x).unwrap();
            assert_eq!(a.dims(), b.dims());
            let diff = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "{rows} rows: differs by {diff}");
        }
    }
}
