//! Device-buffer entry points: the one module that launches kernels (and probes libraries),
//! hence the crate's only `unsafe`. Every launch checks the lengths its kernel relies on first.
#![allow(unsafe_code)]

use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

use super::GpuKernels;
use crate::cpu::clamp_temperature;
use crate::{ClipRange, KernelError, NucleusSampling, TemperedSoftmax};

/// Threads per block for the elementwise PG-loss kernels.
const PG_THREADS: u32 = 256;
/// Blocks of partial sums the PG-loss forward reduces over (a fixed grid keeps the sum's
/// order, and so its rounding, the same from run to run).
const PG_BLOCKS: usize = 264;

/// The shared libraries cudarc loads at run time.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Library {
    /// The driver, `libcuda.so.1`.
    Cuda,
    /// The run-time compiler, `libnvrtc.so.13`.
    Nvrtc,
    /// The collectives, `libnccl.so`.
    Nccl,
}

/// An error unless `lib` can be loaded (asking first spares us cudarc's panic).
pub(crate) fn require(lib: Library) -> Result<(), KernelError> {
    // SAFETY: each probe only tries `dlopen` on the candidate names and closes what it opened;
    // loading these libraries runs no initialisers that depend on our state.
    #[cfg(feature = "cuda")]
    let present = unsafe {
        match lib {
            Library::Cuda => cudarc::driver::sys::is_culib_present(),
            Library::Nvrtc => cudarc::nvrtc::sys::is_culib_present(),
            Library::Nccl => cudarc::nccl::sys::is_culib_present(),
        }
    };
    // Under candle's CUDA backend cudarc links the libraries (`dynamic-linking`): the
    // program could not have started without them.
    #[cfg(not(feature = "cuda"))]
    let present = true;
    if present {
        Ok(())
    } else {
        Err(KernelError::LibraryMissing {
            library: match lib {
                Library::Cuda => "libcuda",
                Library::Nvrtc => "libnvrtc",
                Library::Nccl => "libnccl",
            },
        })
    }
}

/// Device views of the PG-loss inputs, all of one length.
#[derive(Debug)]
pub struct PgLossViews<'a> {
    /// Log-probs under the policy being trained.
    pub logp: CudaView<'a, f32>,
    /// Log-probs under the behaviour policy.
    pub old_logp: CudaView<'a, f32>,
    /// Per-token advantages.
    pub advantages: CudaView<'a, f32>,
    /// 1 for tokens that count, 0 otherwise.
    pub mask: CudaView<'a, f32>,
}

/// One block per row; enough threads to cover wide rows, a multiple of 32, at most 1024.
fn row_config(rows: usize, vocab: usize) -> Result<LaunchConfig, KernelError> {
    let threads = match vocab {
        v if v >= 8192 => 1024,
        v if v >= 2048 => 512,
        _ => 256,
    };
    let rows = u32::try_from(rows).map_err(|_| KernelError::Shape("too many rows".into()))?;
    Ok(LaunchConfig {
        grid_dim: (rows, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    })
}

fn vocab_i32(vocab: usize) -> Result<i32, KernelError> {
    i32::try_from(vocab).map_err(|_| KernelError::Shape("vocab does not fit in i32".into()))
}

fn expect_len(what: &str, got: usize, want: usize) -> Result<(), KernelError> {
    if got == want {
        Ok(())
    } else {
        Err(KernelError::Shape(format!(
            "{what}: length {got}, expected {want}"
        )))
    }
}

/// The number of rows of `[rows, vocab]` logits.
fn rows_of(logits: &CudaView<'_, f32>, vocab: usize) -> Result<usize, KernelError> {
    if vocab == 0 || logits.len() % vocab != 0 {
        return Err(KernelError::Shape("logits must be [rows, vocab]".into()));
    }
    Ok(logits.len() / vocab)
}

impl GpuKernels {
    /// Enqueues the fused log-prob forward: `logprob[r]`, `lse[r]` for `[rows, vocab]` logits.
    /// A target not below `vocab` gives a NaN log-prob.
    pub fn token_logprob_fwd_dev(
        &self,
        logits: &CudaView<'_, f32>,
        targets: &CudaView<'_, u32>,
        softmax: TemperedSoftmax,
        logprob: &mut CudaViewMut<'_, f32>,
        lse: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), KernelError> {
        let rows = rows_of(logits, softmax.vocab)?;
        expect_len("targets", targets.len(), rows)?;
        expect_len("logprob", logprob.len(), rows)?;
        expect_len("lse", lse.len(), rows)?;
        if rows == 0 {
            return Ok(());
        }
        let cfg = row_config(rows, softmax.vocab)?;
        let vocab = vocab_i32(softmax.vocab)?;
        let inv_t = 1.0 / clamp_temperature(softmax.temperature);
        let mut b = self.stream.launch_builder(&self.f.logprob_fwd);
        b.arg(logits).arg(targets).arg(logprob).arg(lse);
        b.arg(&vocab).arg(&inv_t);
        // SAFETY: the arguments match `token_logprob_fwd` (logprob.cu) in order and type;
        // block `r < rows` reads logits[r * vocab .. (r + 1) * vocab], targets[r] (and one
        // logit at it, only if below vocab) and writes logprob[r], lse[r], all in bounds by the
        // length checks above; the block size is a multiple of 32 as the reductions require.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }

    /// Enqueues the fused log-prob backward: `d_logits = g (onehot - softmax) / T`, using the
    /// `lse` the forward wrote. Overwrites `d_logits`.
    pub fn token_logprob_bwd_dev(
        &self,
        logits: &CudaView<'_, f32>,
        targets: &CudaView<'_, u32>,
        lse: &CudaView<'_, f32>,
        grad: &CudaView<'_, f32>,
        softmax: TemperedSoftmax,
        d_logits: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), KernelError> {
        let rows = rows_of(logits, softmax.vocab)?;
        expect_len("targets", targets.len(), rows)?;
        expect_len("lse", lse.len(), rows)?;
        expect_len("grad", grad.len(), rows)?;
        expect_len("d_logits", d_logits.len(), logits.len())?;
        if rows == 0 {
            return Ok(());
        }
        let cfg = row_config(rows, softmax.vocab)?;
        let vocab = vocab_i32(softmax.vocab)?;
        let inv_t = 1.0 / clamp_temperature(softmax.temperature);
        let mut b = self.stream.launch_builder(&self.f.logprob_bwd);
        b.arg(logits).arg(targets).arg(lse).arg(grad).arg(d_logits);
        b.arg(&vocab).arg(&inv_t);
        // SAFETY: the arguments match `token_logprob_bwd` in order and type; block r reads
        // row r of logits and element r of targets, lse, grad, and writes row r of d_logits,
        // all in bounds by the checks above (d_logits is as long as logits).
        unsafe { b.launch(cfg) }?;
        Ok(())
    }

    /// Enqueues temperature / top-p sampling of each row with its uniform draw.
    pub fn sample_top_p_dev(
        &self,
        logits: &CudaView<'_, f32>,
        uniforms: &CudaView<'_, f32>,
        params: NucleusSampling,
        tokens: &mut CudaViewMut<'_, u32>,
        logprobs: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), KernelError> {
        let rows = rows_of(logits, params.vocab)?;
        expect_len("uniforms", uniforms.len(), rows)?;
        expect_len("tokens", tokens.len(), rows)?;
        expect_len("logprobs", logprobs.len(), rows)?;
        if rows == 0 {
            return Ok(());
        }
        let cfg = row_config(rows, params.vocab)?;
        let vocab = vocab_i32(params.vocab)?;
        let mut b = self.stream.launch_builder(&self.f.sample);
        b.arg(logits).arg(uniforms).arg(tokens).arg(logprobs);
        b.arg(&vocab).arg(&params.temperature).arg(&params.top_p);
        // SAFETY: the arguments match `sample_top_p` in order and type; block r reads row r of
        // logits and uniforms[r] and writes tokens[r], logprobs[r], in bounds by the checks
        // above; the token it writes is an index below vocab.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }

    /// Enqueues the PG-loss forward; writes `[loss, mask_sum, clip_fraction]` to `stats[..3]`.
    pub fn pg_loss_fwd_dev(
        &self,
        inputs: &PgLossViews<'_>,
        clip: ClipRange,
        stats: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), KernelError> {
        let n = inputs_len(inputs)?;
        if stats.len() < 3 {
            return Err(KernelError::Shape("stats needs 3 floats".into()));
        }
        let mut partial = self.stream.alloc_zeros::<f32>(3 * PG_BLOCKS)?;
        let n_i32 = i32::try_from(n).map_err(|_| KernelError::Shape("too many tokens".into()))?;
        let blocks = PG_BLOCKS as i32;
        let mut b = self.stream.launch_builder(&self.f.pg_partial);
        b.arg(&inputs.logp).arg(&inputs.old_logp);
        b.arg(&inputs.advantages).arg(&inputs.mask);
        b.arg(&n_i32)
            .arg(&clip.low)
            .arg(&clip.high)
            .arg(&mut partial);
        let cfg = LaunchConfig {
            grid_dim: (PG_BLOCKS as u32, 1, 1),
            block_dim: (PG_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match `pg_loss_partial`; its grid-stride loop reads indices
        // below n of four inputs of length n, and block b writes partial[3b..3b+3], inside
        // the 3 * PG_BLOCKS floats allocated above.
        unsafe { b.launch(cfg) }?;
        let mut b = self.stream.launch_builder(&self.f.pg_finish);
        b.arg(&partial).arg(&blocks).arg(stats);
        let one_block = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (PG_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: `pg_loss_finish` reads the 3 * blocks partial sums written above and writes
        // stats[0..3], which the check above guarantees exist.
        unsafe { b.launch(one_block) }?;
        Ok(())
    }

    /// Enqueues the PG-loss backward: `d_logp[i] = grad * d loss / d logp[i]`.
    pub fn pg_loss_bwd_dev(
        &self,
        inputs: &PgLossViews<'_>,
        clip: ClipRange,
        grad: f32,
        d_logp: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), KernelError> {
        let n = inputs_len(inputs)?;
        expect_len("d_logp", d_logp.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        // The denominator sum(mask) comes from the forward's reduction, kept on the device.
        let mut stats = self.stream.alloc_zeros::<f32>(3)?;
        self.pg_loss_fwd_dev(inputs, clip, &mut stats.as_view_mut())?;
        let n_i32 = i32::try_from(n).map_err(|_| KernelError::Shape("too many tokens".into()))?;
        let blocks = n.div_ceil(PG_THREADS as usize).min(65_535) as u32;
        let mut b = self.stream.launch_builder(&self.f.pg_bwd);
        b.arg(&inputs.logp).arg(&inputs.old_logp);
        b.arg(&inputs.advantages).arg(&inputs.mask);
        b.arg(&stats).arg(&n_i32).arg(&clip.low).arg(&clip.high);
        b.arg(&grad).arg(d_logp);
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (PG_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match `pg_loss_bwd`; its grid-stride loop touches indices
        // below n of four inputs and of d_logp, all of length n, and reads stats[1].
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}

fn inputs_len(inputs: &PgLossViews<'_>) -> Result<usize, KernelError> {
    let n = inputs.logp.len();
    expect_len("old_logp", inputs.old_logp.len(), n)?;
    expect_len("advantages", inputs.advantages.len(), n)?;
    expect_len("mask", inputs.mask.len(), n)?;
    Ok(n)
}
