//! The CUDA kernels: C source in `common.cuh`, `logprob.cu`, `sampling.cu` and `pg_loss.cu`,
//! compiled once per [`GpuKernels`] by NVRTC for the device's compute capability, launched
//! through cudarc.
//!
//! This file holds set-up and the host-slice methods (copy in, launch, copy out), which mirror
//! the CPU references one for one. `launch.rs` holds the device-buffer methods (`*_dev`), the
//! only place that launches kernels, and the library probes.

mod launch;
pub mod nccl;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, CudaView};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

use crate::{
    ClipRange, KernelError, NucleusSampling, PgLossInputs, PgLossStats, RowLogprobs, Sampled,
    TemperedSoftmax,
};

pub use launch::PgLossViews;

/// The kernels' CUDA C source: the shared helpers, then one file per concern.
const SOURCE: &str = concat!(
    include_str!("common.cuh"),
    include_str!("logprob.cu"),
    include_str!("sampling.cu"),
    include_str!("pg_loss.cu"),
);

/// Whether a CUDA driver can be loaded and reports at least one device.
pub fn cuda_available() -> bool {
    device_count().is_ok_and(|n| n > 0)
}

/// The number of CUDA devices the driver reports.
pub fn device_count() -> Result<usize, KernelError> {
    launch::require(launch::Library::Cuda)?;
    let n = caught(CudaContext::device_count)??;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Compiles [`SOURCE`] with NVRTC to PTX, for `arch` (e.g. `compute_90`) or NVRTC's default.
fn compile(arch: Option<String>) -> Result<Ptx, KernelError> {
    launch::require(launch::Library::Nvrtc)?;
    let opts = CompileOptions {
        name: Some("troupe_kernels.cu".into()),
        options: arch
            .map(|a| format!("--gpu-architecture={a}"))
            .into_iter()
            .collect(),
        ..Default::default()
    };
    caught(|| compile_ptx_with_opts(SOURCE, opts))?.map_err(KernelError::from)
}

/// Runs `f`, turning a panic (cudarc panics when a library or symbol is missing) into an error.
fn caught<T>(f: impl FnOnce() -> T) -> Result<T, KernelError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        KernelError::InitPanicked(msg)
    })
}

/// troupe's kernels on one GPU: compiled once, launched on one stream.
///
/// Host-slice methods copy their inputs to the device, launch, and copy the results back
/// (synchronising); the `*_dev` methods take device buffers, only enqueue work on
/// [`GpuKernels::stream`], and are what a GPU learner or sampler calls in its loop.
#[derive(Debug)]
pub struct GpuKernels {
    stream: Arc<CudaStream>,
    f: Functions,
}

#[derive(Debug)]
struct Functions {
    logprob_fwd: CudaFunction,
    logprob_bwd: CudaFunction,
    sample: CudaFunction,
    pg_partial: CudaFunction,
    pg_finish: CudaFunction,
    pg_bwd: CudaFunction,
}

impl GpuKernels {
    /// Opens device `device_ordinal`, compiles the kernels with NVRTC and loads them.
    ///
    /// Fails (never panics) when libcuda or libnvrtc cannot be loaded, the device does not
    /// exist, or NVRTC rejects the source.
    pub fn new(device_ordinal: usize) -> Result<Self, KernelError> {
        let count = device_count()?;
        if device_ordinal >= count {
            return Err(KernelError::NoDevice {
                ordinal: device_ordinal,
                count,
            });
        }
        let ctx = caught(|| CudaContext::new(device_ordinal))??;
        let (major, minor) = ctx.compute_capability()?;
        // Target the device's own architecture; an NVRTC older than the device does not know
        // it, so fall back to NVRTC's default (PTX the driver JIT-compiles).
        let ptx = compile(Some(format!("compute_{major}{minor}"))).or_else(|_| compile(None))?;
        let module = ctx.load_module(ptx)?;
        let f = Functions {
            logprob_fwd: module.load_function("token_logprob_fwd")?,
            logprob_bwd: module.load_function("token_logprob_bwd")?,
            sample: module.load_function("sample_top_p")?,
            pg_partial: module.load_function("pg_loss_partial")?,
            pg_finish: module.load_function("pg_loss_finish")?,
            pg_bwd: module.load_function("pg_loss_bwd")?,
        };
        Ok(Self {
            stream: ctx.new_stream()?,
            f,
        })
    }

    /// The stream every kernel runs on; allocate and copy device buffers with it.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn device_name(&self) -> Result<String, KernelError> {
        Ok(self.stream.context().name()?)
    }

    /// [`crate::token_logprob_fwd`] on the GPU.
    pub fn token_logprob_fwd(
        &self,
        logits: &[f32],
        targets: &[u32],
        softmax: TemperedSoftmax,
    ) -> Result<RowLogprobs, KernelError> {
        check_targets(logits, targets, softmax.vocab)?;
        let rows = targets.len();
        if rows == 0 {
            return Ok(RowLogprobs {
                logprob: vec![],
                lse: vec![],
            });
        }
        let s = &self.stream;
        let (d_logits, d_targets) = (s.clone_htod(logits)?, s.clone_htod(targets)?);
        let mut logprob = s.alloc_zeros::<f32>(rows)?;
        let mut lse = s.alloc_zeros::<f32>(rows)?;
        self.token_logprob_fwd_dev(
            &d_logits.as_view(),
            &d_targets.as_view(),
            softmax,
            &mut logprob.as_view_mut(),
            &mut lse.as_view_mut(),
        )?;
        Ok(RowLogprobs {
            logprob: s.clone_dtoh(&logprob)?,
            lse: s.clone_dtoh(&lse)?,
        })
    }

    /// [`crate::token_logprob_bwd`] on the GPU.
    pub fn token_logprob_bwd(
        &self,
        logits: &[f32],
        targets: &[u32],
        lse: &[f32],
        grad: &[f32],
        softmax: TemperedSoftmax,
    ) -> Result<Vec<f32>, KernelError> {
        check_targets(logits, targets, softmax.vocab)?;
        if targets.is_empty() {
            return Ok(vec![]);
        }
        let s = &self.stream;
        let d_logits = s.clone_htod(logits)?;
        let d_targets = s.clone_htod(targets)?;
        let (d_lse, d_grad) = (s.clone_htod(lse)?, s.clone_htod(grad)?);
        let mut d = s.alloc_zeros::<f32>(logits.len())?;
        self.token_logprob_bwd_dev(
            &d_logits.as_view(),
            &d_targets.as_view(),
            &d_lse.as_view(),
            &d_grad.as_view(),
            softmax,
            &mut d.as_view_mut(),
        )?;
        Ok(s.clone_dtoh(&d)?)
    }

    /// [`crate::sample_rows`] on the GPU: one uniform draw per row.
    pub fn sample_top_p(
        &self,
        logits: &[f32],
        uniforms: &[f32],
        params: NucleusSampling,
    ) -> Result<Sampled, KernelError> {
        if params.vocab == 0 || logits.len() != uniforms.len() * params.vocab {
            return Err(shape("logits must be [uniforms.len(), vocab]"));
        }
        let rows = uniforms.len();
        if rows == 0 {
            return Ok(Sampled::default());
        }
        let s = &self.stream;
        let (d_logits, d_u) = (s.clone_htod(logits)?, s.clone_htod(uniforms)?);
        let mut tokens = s.alloc_zeros::<u32>(rows)?;
        let mut logprobs = s.alloc_zeros::<f32>(rows)?;
        self.sample_top_p_dev(
            &d_logits.as_view(),
            &d_u.as_view(),
            params,
            &mut tokens.as_view_mut(),
            &mut logprobs.as_view_mut(),
        )?;
        Ok(Sampled {
            tokens: s.clone_dtoh(&tokens)?,
            logprobs: s.clone_dtoh(&logprobs)?,
        })
    }

    /// [`crate::pg_loss_fwd`] on the GPU.
    pub fn pg_loss_fwd(
        &self,
        inputs: PgLossInputs<'_>,
        clip: ClipRange,
    ) -> Result<PgLossStats, KernelError> {
        let n = checked_len(&inputs)?;
        if n == 0 {
            return Ok(PgLossStats::default());
        }
        let s = &self.stream;
        let d = [inputs.logp, inputs.old_logp, inputs.advantages, inputs.mask]
            .map(|x| s.clone_htod(x))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let views = PgLossViews::from_slices(&d);
        let mut stats = s.alloc_zeros::<f32>(3)?;
        self.pg_loss_fwd_dev(&views, clip, &mut stats.as_view_mut())?;
        let out = s.clone_dtoh(&stats)?;
        Ok(PgLossStats {
            loss: out[0],
            mask_sum: out[1],
            clip_fraction: out[2],
        })
    }

    /// [`crate::pg_loss_bwd`] on the GPU.
    pub fn pg_loss_bwd(
        &self,
        inputs: PgLossInputs<'_>,
        clip: ClipRange,
        grad: f32,
    ) -> Result<Vec<f32>, KernelError> {
        let n = checked_len(&inputs)?;
        if n == 0 {
            return Ok(vec![]);
        }
        let s = &self.stream;
        let d = [inputs.logp, inputs.old_logp, inputs.advantages, inputs.mask]
            .map(|x| s.clone_htod(x))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let views = PgLossViews::from_slices(&d);
        let mut d_logp = s.alloc_zeros::<f32>(n)?;
        self.pg_loss_bwd_dev(&views, clip, grad, &mut d_logp.as_view_mut())?;
        Ok(s.clone_dtoh(&d_logp)?)
    }
}

impl<'a> PgLossViews<'a> {
    /// Views of four device buffers in the order logp, old_logp, advantages, mask.
    fn from_slices(d: &'a [cudarc::driver::CudaSlice<f32>]) -> Self {
        let v = |i: usize| -> CudaView<'a, f32> { d[i].as_view() };
        PgLossViews {
            logp: v(0),
            old_logp: v(1),
            advantages: v(2),
            mask: v(3),
        }
    }
}

fn shape(msg: &str) -> KernelError {
    KernelError::Shape(msg.into())
}

/// Checks `[rows, vocab]` logits against `rows` targets, each below `vocab`.
fn check_targets(logits: &[f32], targets: &[u32], vocab: usize) -> Result<(), KernelError> {
    if vocab == 0 || logits.len() != targets.len() * vocab {
        return Err(shape("logits must be [targets.len(), vocab]"));
    }
    if targets.iter().any(|&t| t as usize >= vocab) {
        return Err(shape("a target is not below vocab"));
    }
    Ok(())
}

fn checked_len(inputs: &PgLossInputs<'_>) -> Result<usize, KernelError> {
    let n = inputs.logp.len();
    if [inputs.old_logp, inputs.advantages, inputs.mask]
        .iter()
        .any(|x| x.len() != n)
    {
        return Err(shape("pg loss inputs differ in length"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NVRTC needs no GPU, so this runs wherever libnvrtc loads (and skips elsewhere).
    #[test]
    fn source_compiles_with_nvrtc() {
        if launch::require(launch::Library::Nvrtc).is_err() {
            println!("no libnvrtc: skipped");
            return;
        }
        for arch in [Some("compute_90".to_string()), None] {
            let ptx = compile(arch).unwrap_or_else(|e| panic!("{e}")).to_src();
            for name in [
                "token_logprob_fwd",
                "token_logprob_bwd",
                "sample_top_p",
                "pg_loss_partial",
                "pg_loss_finish",
                "pg_loss_bwd",
            ] {
                assert!(ptx.contains(&format!(".entry {name}(")), "{name} missing");
            }
        }
    }

    #[test]
    fn no_device_is_an_error_not_a_panic() {
        if !cuda_available() {
            assert!(GpuKernels::new(0).is_err());
        }
    }
}
