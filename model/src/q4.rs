//! The sampler's Q4_1 matmul on x86 with AVX2.
//!
//! It computes what candle's Q4_1 `QMatMul` (ggml's `vec_dot_q4_1_q8_1`) computes: the
//! same weights, quantised by candle to blocks of 32 four-bit values `q` with a scale
//! `d` and a minimum `m` (`w = d * q + m`), and activations quantised to Q8_1 blocks
//! (32 int8 `q_x`, a scale `d_x` and `s_x = d_x * sum(q_x)`, both rounded to f16 as
//! candle stores them). Per block the result is `d * d_x * dot(q, q_x) + m * s_x`.
//!
//! Decoding one row at a time is bound by reading the weights, so they stay as small as
//! in a GGUF file: 20 bytes per 32 weights (Q8_0 takes 36 in [`crate::q8`]), the f16
//! scales and minimums turned into f32 in the kernel by a shift (exact; see
//! `f16_bits_to_f32`). Two blocks are unpacked at once, each pair for up to four
//! activation rows, and rows are split over rayon's pool. Without AVX2 (or off x86-64)
//! [`Q4Matrix::quantize`] declines and candle's kernels run instead.
//!
//! A GGUF's own Q4_1 weights, dequantised to f32 for the learner and quantised again
//! here, come back as the same blocks.

#[cfg(target_arch = "x86_64")]
pub use avx2::Q4Matrix;

#[cfg(not(target_arch = "x86_64"))]
pub use stub::Q4Matrix;

#[cfg(not(target_arch = "x86_64"))]
mod stub {
    use candle_core::Tensor;

    use crate::Result;

    /// Stand-in off x86-64: never built.
    #[derive(Debug, Clone)]
    pub struct Q4Matrix(());

    impl Q4Matrix {
        /// Always `None` off x86-64: candle's kernels run there.
        pub fn quantize(_w: &Tensor) -> Result<Option<Self>> {
            Ok(None)
        }

        /// Unreachable: no value of this type exists.
        pub fn forward(&self, _x: &Tensor) -> Result<Tensor> {
            unreachable!("Q4Matrix is never built off x86-64")
        }
    }
}

/// Activation rows quantised to Q8_1 blocks as candle's `BlockQ8_1::from_float` does
/// them: int8 values, the f16-rounded scale, and `s = f16(f16(sum q) * scale)`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Debug, Clone)]
struct Q8_1Rows {
    qs: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<f32>,
}

/// Quantises `xs` (rows of a whole number of blocks) to Q8_1.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn quantize_rows(xs: &[f32]) -> Q8_1Rows {
    use half::f16;
    // Q8_1's values and scales are Q8_0's.
    let (qs, scales) = crate::q8::quantize_rows(xs);
    let sums = qs
        .chunks_exact(crate::q8::BLOCK)
        .zip(&scales)
        .map(|(q, &d)| {
            let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
            (f16::from_f32(sum as f32) * f16::from_f32(d)).to_f32()
        })
        .collect();
    Q8_1Rows { qs, scales, sums }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{__m128, __m128i, __m256, __m256i};

    use candle_core::quantized::GgmlDType;
    use candle_core::{Device, Tensor};
    use pulp::x86::V3;

    use super::quantize_rows;
    use crate::q8::{BLOCK, ggml_blocks, hsum, load, par_rows_transposed};
    use crate::{ModelError, Result};

    /// Bytes of the nibbles of one block.
    const NIBBLES: usize = BLOCK / 2;
    /// Bytes of one GGML `block_q4_1`: f16 scale, f16 minimum, 16 bytes of nibbles.
    const BLOCK_BYTES: usize = 4 + NIBBLES;
    /// `2^112`: an f16's bits shifted into an f32's place (see [`f16_bits_to_f32`]) read
    /// as an f32 are the f16's value over this.
    const F16_SHIFT: f32 = f32::from_bits((127 + 112) << 23);

    /// A Q4_1 weight `[out, in]`: per block 16 bytes of nibbles as GGML packs them (value
    /// `j < 16` in the low nibble of byte `j`, value `j + 16` in its high nibble), and
    /// its f16 scale and minimum: 20 bytes per 32 weights, as in a GGUF file, since
    /// decoding one row at a time is bound by reading the weights.
    #[derive(Debug, Clone)]
    pub struct Q4Matrix {
        pub(super) rows: usize,
        pub(super) cols: usize,
        pub(super) nibbles: Vec<u8>,
        /// f16 bits.
        pub(super) scales: Vec<u16>,
        /// f16 bits.
        pub(super) mins: Vec<u16>,
        simd: V3,
    }

    impl Q4Matrix {
        /// `w` `[out, in]` quantised to Q4_1 by candle; `None` without AVX2, when `in` is
        /// not a whole number of blocks, or when a scale or minimum overflows f16.
        pub fn quantize(w: &Tensor) -> Result<Option<Self>> {
            let Some((simd, rows, cols, data)) = ggml_blocks(w, GgmlDType::Q4_1, BLOCK_BYTES)?
            else {
                return Ok(None);
            };
            let blocks = rows * cols / BLOCK;
            let mut nibbles = Vec::with_capacity(blocks * NIBBLES);
            let mut scales = Vec::with_capacity(blocks);
            let mut mins = Vec::with_capacity(blocks);
            for block in data.chunks_exact(BLOCK_BYTES) {
                scales.push(u16::from_le_bytes([block[0], block[1]]));
                mins.push(u16::from_le_bytes([block[2], block[3]]));
                nibbles.extend_from_slice(&block[4..]);
            }
            let finite = |h: &u16| h & 0x7c00 != 0x7c00;
            if !(scales.iter().all(finite) && mins.iter().all(finite)) {
                return Ok(None);
            }
            Ok(Some(Self {
                rows,
                cols,
                nibbles,
                scales,
                mins,
                simd,
            }))
        }

        /// `x @ w^T` for `x` of shape `[.., in]`.
        pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
            let mut shape = x.dims().to_vec();
            let k = shape.last().copied().unwrap_or(0);
            if k != self.cols {
                return Err(ModelError::Config(format!(
                    "input width {k} for a Q4_1 weight of {} columns",
                    self.cols
                )));
            }
            let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let m = xs.len() / k;
            let xq = Activations::new(&xs, k);
            let rows: Vec<Row<'_>> = (0..m).map(|r| xq.row(r)).collect();
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
    }

    /// An f16's bits as an f32 `2^112` times smaller (exact for every finite f16,
    /// subnormals included): what the kernel multiplies by activation scales and sums
    /// stored `2^112` times larger.
    #[inline(always)]
    fn f16_bits_to_f32(h: u16) -> f32 {
        f32::from_bits(u32::from(h & 0x8000) << 16 | u32::from(h & 0x7fff) << 13)
    }

    /// Activation rows quantised to Q8_1, laid out for the kernel. It unpacks two weight
    /// blocks at once into their low nibbles (values 0..16 of both) and their high ones
    /// (values 16..32), so per pair of blocks `a`, `b` the values are in the order
    /// `a[..16]`, `b[..16]`, `a[16..]`, `b[16..]` (an odd last block stays as it is),
    /// and the pair's scales are `[d_a, d_b, 0, 0]`. Scales and sums are `2^112` times
    /// larger (see [`f16_bits_to_f32`]).
    struct Activations {
        k: usize,
        qs: Vec<i8>,
        pair_scales: Vec<[f32; 4]>,
        scales: Vec<f32>,
        sums: Vec<f32>,
    }

    impl Activations {
        fn new(xs: &[f32], k: usize) -> Self {
            let q = quantize_rows(xs);
            let h = NIBBLES;
            let mut qs = Vec::with_capacity(q.qs.len());
            for row in q.qs.chunks_exact(k) {
                let (pairs, tail) = row.as_chunks::<{ 2 * BLOCK }>();
                for p in pairs {
                    let (a, b) = p.split_at(BLOCK);
                    for part in [&a[..h], &b[..h], &a[h..], &b[h..]] {
                        qs.extend_from_slice(part);
                    }
                }
                qs.extend_from_slice(tail);
            }
            let scales: Vec<f32> = q.scales.iter().map(|d| d * F16_SHIFT).collect();
            let pair_scales = scales
                .chunks_exact(k / BLOCK)
                .flat_map(|row| {
                    row.as_chunks::<2>()
                        .0
                        .iter()
                        .map(|&[a, b]| [a, b, 0.0, 0.0])
                })
                .collect();
            let sums = q.sums.iter().map(|s| s * F16_SHIFT).collect();
            Self {
                k,
                qs,
                pair_scales,
                scales,
                sums,
            }
        }

        fn row(&self, r: usize) -> Row<'_> {
            let (k, kb) = (self.k, self.k / BLOCK);
            let (pairs, tail) = self.qs[r * k..(r + 1) * k].as_chunks();
            Row {
                pairs,
                tail,
                pair_scales: &self.pair_scales[r * (kb / 2)..(r + 1) * (kb / 2)],
                tail_scale: self.scales[(r + 1) * kb - 1],
                sums: &self.sums[r * kb..(r + 1) * kb],
            }
        }
    }

    /// One parallel task's output rows, computed inside pulp's AVX2 function: a type
    /// with an `#[inline(always)]` `call`, not a closure, and only `#[inline(always)]`
    /// helpers below it, so every intrinsic is inlined (see `Task` in [`crate::q8`]).
    struct Task<'a> {
        matrix: &'a Q4Matrix,
        rows: &'a [Row<'a>],
        first: usize,
        out: &'a mut [f32],
    }

    impl pulp::NullaryFnOnce for Task<'_> {
        type Output = ();

        #[inline(always)]
        fn call(self) {
            let q = self.matrix;
            let (kb, m) = (q.cols / BLOCK, self.rows.len());
            let simd = q.simd;
            for (i, out) in self.out.chunks_exact_mut(m).enumerate() {
                let n = self.first + i;
                let w = Weights {
                    nibbles: &q.nibbles[n * kb * NIBBLES..(n + 1) * kb * NIBBLES],
                    scales: &q.scales[n * kb..(n + 1) * kb],
                    mins: &q.mins[n * kb..(n + 1) * kb],
                };
                let rows = self.rows;
                let mut r = 0;
                while r < m {
                    match m - r {
                        1 => out[r] = dots::<1>(simd, &w, [&rows[r]])[0],
                        2 => out[r..r + 2].copy_from_slice(&dots::<2>(
                            simd,
                            &w,
                            [&rows[r], &rows[r + 1]],
                        )),
                        3 => out[r..r + 3].copy_from_slice(&dots::<3>(
                            simd,
                            &w,
                            [&rows[r], &rows[r + 1], &rows[r + 2]],
                        )),
                        _ => out[r..r + 4].copy_from_slice(&dots::<4>(
                            simd,
                            &w,
                            [&rows[r], &rows[r + 1], &rows[r + 2], &rows[r + 3]],
                        )),
                    }
                    r += 4;
                }
            }
        }
    }

    /// One weight row: nibbles, f16 scales and minimums of its blocks.
    #[derive(Debug, Clone, Copy)]
    struct Weights<'a> {
        nibbles: &'a [u8],
        scales: &'a [u16],
        mins: &'a [u16],
    }

    /// One activation row of [`Activations`].
    #[derive(Debug, Clone, Copy)]
    struct Row<'a> {
        /// Pairs of blocks.
        pairs: &'a [[i8; 2 * BLOCK]],
        /// An odd last block, or nothing.
        tail: &'a [i8],
        pair_scales: &'a [[f32; 4]],
        tail_scale: f32,
        sums: &'a [f32],
    }

    /// The Q4_1 x Q8_1 dot products of weight row `w` with `R` activation rows: per
    /// block `d * d_x * dot(q, q_x)` accumulated in eight lanes, two blocks at a time,
    /// each pair of weight blocks unpacked once for all `R` rows; then `sum m * s_x`.
    #[inline(always)]
    fn dots<const R: usize>(simd: V3, w: &Weights<'_>, xs: [&Row<'_>; R]) -> [f32; R] {
        let low = simd.avx._mm256_set1_epi8(0x0F);
        let ones = simd.avx._mm256_set1_epi16(1);
        // Lanes 0..4 take the first block's scale, 4..8 the second's.
        let spread = simd.avx._mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
        let mut acc = [simd.avx._mm256_setzero_ps(); R];
        let (wpairs, wtail) = w.nibbles.as_chunks::<{ 2 * NIBBLES }>();
        let (dpairs, _) = w.scales.as_chunks::<2>();
        for (p, (wq, &dp)) in wpairs.iter().zip(dpairs).enumerate() {
            let v: __m256i = pulp::cast(*wq);
            let lo = simd.avx2._mm256_and_si256(v, low);
            let hi = simd
                .avx2
                ._mm256_and_si256(simd.avx2._mm256_srli_epi16::<4>(v), low);
            // Both scales as f32 (over 2^112), from their f16 bits.
            let bits: u32 = pulp::cast(dp);
            let dh = simd
                .sse4_1
                ._mm_cvtepu16_epi32(simd.sse2._mm_cvtsi32_si128(bits as i32));
            let d = simd
                .sse2
                ._mm_castsi128_ps(simd.sse2._mm_slli_epi32::<13>(dh));
            for (a, x) in acc.iter_mut().zip(&xs) {
                let (xa, xb) = x.pairs[p].split_at(BLOCK);
                let prod = simd.avx2._mm256_add_epi16(
                    simd.avx2._mm256_maddubs_epi16(lo, load(xa)),
                    simd.avx2._mm256_maddubs_epi16(hi, load(xb)),
                );
                let sums = simd
                    .avx
                    ._mm256_cvtepi32_ps(simd.avx2._mm256_madd_epi16(ones, prod));
                let dx: __m128 = pulp::cast(x.pair_scales[p]);
                let dd = simd.sse._mm_mul_ps(d, dx);
                let dd = simd
                    .avx2
                    ._mm256_permutevar8x32_ps(simd.avx._mm256_castps128_ps256(dd), spread);
                *a = simd.fma._mm256_fmadd_ps(dd, sums, *a);
            }
        }
        if let (Some(&dh), false) = (w.scales.last(), wtail.is_empty()) {
            let bytes: [u8; NIBBLES] = wtail.try_into().expect("one block");
            let lo: __m128i = pulp::cast(bytes);
            let hi = simd.sse2._mm_srli_epi16::<4>(lo);
            let v = simd
                .avx2
                ._mm256_and_si256(simd.avx._mm256_set_m128i(hi, lo), low);
            let d = f16_bits_to_f32(dh);
            for (a, x) in acc.iter_mut().zip(&xs) {
                let prod = simd.avx2._mm256_maddubs_epi16(v, load(x.tail));
                let sums = simd
                    .avx
                    ._mm256_cvtepi32_ps(simd.avx2._mm256_madd_epi16(ones, prod));
                let dd = simd.avx._mm256_set1_ps(d * x.tail_scale);
                *a = simd.fma._mm256_fmadd_ps(dd, sums, *a);
            }
        }
        // Loops, not `acc.map(..)`: a closure would keep `hsum` out of the AVX2 context.
        let mut out = [0f32; R];
        for ((o, a), x) in out.iter_mut().zip(acc).zip(&xs) {
            *o = hsum(simd, a) + mins_dot(simd, w.mins, x.sums);
        }
        out
    }

    /// `sum m_i * s_i` for f16 minimums (bits) and sums `2^112` times larger, eight at a
    /// time.
    #[inline(always)]
    fn mins_dot(simd: V3, mins: &[u16], sums: &[f32]) -> f32 {
        let (m8, m_tail) = mins.as_chunks::<8>();
        let (s8, s_tail) = sums.as_chunks::<8>();
        let magnitude = simd.avx._mm256_set1_epi32(0x7fff);
        let sign = simd.avx._mm256_set1_epi32(0x8000);
        let mut acc = simd.avx._mm256_setzero_ps();
        for (&m, &s) in m8.iter().zip(s8) {
            let h = simd
                .avx2
                ._mm256_cvtepu16_epi32(pulp::cast::<[u16; 8], __m128i>(m));
            let bits = simd.avx2._mm256_or_si256(
                simd.avx2
                    ._mm256_slli_epi32::<16>(simd.avx2._mm256_and_si256(h, sign)),
                simd.avx2
                    ._mm256_slli_epi32::<13>(simd.avx2._mm256_and_si256(h, magnitude)),
            );
            let m = simd.avx._mm256_castsi256_ps(bits);
            acc = simd
                .fma
                ._mm256_fmadd_ps(m, pulp::cast::<[f32; 8], __m256>(s), acc);
        }
        let mut sum = hsum(simd, acc);
        for (&m, &s) in m_tail.iter().zip(s_tail) {
            sum += f16_bits_to_f32(m) * s;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::q8::BLOCK;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    #[test]
    fn activation_quantisation_keeps_the_block_sums() {
        let xs: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 20.5) / 7.0)
            .collect();
        let q = quantize_rows(&xs);
        assert_eq!((q.qs.len(), q.scales.len(), q.sums.len()), (64, 2, 2));
        for (b, block) in xs.chunks_exact(BLOCK).enumerate() {
            let d = q.scales[b];
            let qs = &q.qs[b * BLOCK..(b + 1) * BLOCK];
            for (&v, &x) in qs.iter().zip(block) {
                assert!((v as f32 * d - x).abs() <= 0.5 * d + 1e-3 * x.abs());
            }
            // `s` is `d * sum(q)`, both in f16, so within f16's relative step.
            let exact = d * qs.iter().map(|&v| v as f32).sum::<f32>();
            assert!((q.sums[b] - exact).abs() <= 2e-3 * exact.abs(), "{b}");
            let sum: f32 = block.iter().sum();
            assert!((q.sums[b] - sum).abs() <= 0.5 * d * BLOCK as f32, "{b}");
        }
        let zero = quantize_rows(&[0.0; BLOCK]);
        assert!(zero.qs.iter().all(|&v| v == 0) && zero.scales == [0.0] && zero.sums == [0.0]);
    }

    /// Same results as candle's Q4_1 matmul (Q4_1 weights, Q8_1 activations), for one
    /// row (decode) and for several (prefill, batches), with rows not a multiple of four.
    #[test]
    fn matches_candle_q4_1_matmul() {
        // Not centred on zero, so the minimums' term matters.
        let w = (Tensor::randn(0f32, 0.05, (70, 128), &Device::Cpu).unwrap() + 0.01).unwrap();
        let Some(ours) = Q4Matrix::quantize(&w).unwrap() else {
            return; // no AVX2 here: candle's kernel is used instead
        };
        let theirs =
            QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap();
        for rows in [1, 3, 8, 13] {
            let x =
                (Tensor::randn(0f32, 1.0, (1, rows, 128), &Device::Cpu).unwrap() + 0.2).unwrap();
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

    /// An odd number of blocks (the kernel takes them two at a time): the sum of the
    /// products over the first two blocks and over the third, since blocks of weights
    /// and activations are quantised on their own. (candle's Q4_1 kernel asks for an
    /// even number.)
    #[test]
    fn odd_block_counts_add_up() {
        let w = (Tensor::randn(0f32, 0.05, (67, 96), &Device::Cpu).unwrap() - 0.01).unwrap();
        let x = Tensor::randn(0f32, 1.0, (5, 96), &Device::Cpu).unwrap();
        let part = |from: usize, len: usize| {
            let q = Q4Matrix::quantize(&w.narrow(1, from, len).unwrap()).unwrap()?;
            Some(q.forward(&x.narrow(1, from, len).unwrap()).unwrap())
        };
        let (Some(whole), Some(a), Some(b)) = (part(0, 96), part(0, 64), part(64, 32)) else {
            return; // no AVX2 here
        };
        let diff = (whole - (a + b).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "differs by {diff}");
    }

    /// Weights dequantised from Q4_1 (what the learner holds of a Q4_1 GGUF) quantise
    /// back to the very same blocks.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn requantising_q4_1_weights_is_lossless() {
        let w = Tensor::randn(0f32, 0.05, (33, 192), &Device::Cpu).unwrap();
        let Some(first) = Q4Matrix::quantize(&w).unwrap() else {
            return;
        };
        let dequantised = QTensor::quantize(&w, GgmlDType::Q4_1)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let again = Q4Matrix::quantize(&dequantised).unwrap().unwrap();
        assert_eq!((again.rows, again.cols), (first.rows, first.cols));
        assert_eq!(again.scales, first.scales);
        assert_eq!(again.mins, first.mins);
        assert_eq!(again.nibbles, first.nibbles);
    }
}
