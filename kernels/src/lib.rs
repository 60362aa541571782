//! troupe's hot kernels: CPU references always, CUDA versions behind the `cuda` feature.
//!
//! - [`cpu`] — the ground truth, and the path the sampler and learner take without a GPU:
//!   - [`cpu::logprob`]: fused log-softmax + gather of one target per row, forward and backward;
//!   - [`cpu::sampling`]: temperature / nucleus (top-p) sampling from one uniform draw per row;
//!   - [`cpu::pg_loss`]: the PPO clipped policy-gradient loss, masked token mean, forward and
//!     backward.
//! - [`GpuKernels`] — the same kernels as CUDA C compiled once by NVRTC at start-up, with
//!   host-slice methods that mirror the CPU functions and device-buffer variants (`*_dev`).
//!   Without the `cuda` feature it is a stub whose constructor returns
//!   [`KernelError::NotCompiledWithCuda`], so callers need no `#[cfg]`.
//! - `nccl` (feature `cuda`) — `WeightBroadcast`, the learner-to-sampler weight push over NCCL,
//!   and `copy_weights` for a learner and sampler that share one GPU.
//!
//! With `cuda`, nothing CUDA is needed to build: cudarc loads `libcuda`, `libnvrtc` and
//! `libnccl` at run time (CUDA 13 names, e.g. `libnvrtc.so.13`; NCCL as `libnccl.so`) from the
//! loader's search path, `LD_LIBRARY_PATH` included (`. kernels/gpu-env.sh` sets it up from
//! PyTorch's pip wheels). [`cuda_available`] says whether a driver and a device are there.
//! `tests/gpu.rs` and `examples/gpu_check.rs` compare every kernel with its CPU reference.
//!
//! ```
//! use troupe_kernels::{TemperedSoftmax, token_logprob_fwd, GpuKernels, cuda_available};
//!
//! let logits = [2.0f32, 1.0, 0.0];
//! let (tok, lp) = troupe_kernels::sample_top_p(&logits, 1.0, 1.0, 0.0);
//! assert_eq!(tok, 0);
//! assert!((lp - troupe_kernels::token_logprob(&logits, 0, 1.0)).abs() < 1e-6);
//!
//! let soft = TemperedSoftmax { vocab: 3, temperature: 1.0 };
//! let cpu = token_logprob_fwd(&logits, &[0], soft);
//! if cuda_available() {
//!     let gpu = GpuKernels::new(0).unwrap().token_logprob_fwd(&logits, &[0], soft).unwrap();
//!     assert!((gpu.logprob[0] - cpu.logprob[0]).abs() < 1e-5);
//! }
//! ```

pub mod cpu;
mod error;

#[cfg(feature = "cuda-kernels")]
mod cuda;
#[cfg(not(feature = "cuda-kernels"))]
mod stub;

pub use cpu::{
    ClipRange, NucleusSampling, PgLossInputs, PgLossStats, RowLogprobs, Sampled, TemperedSoftmax,
    argmax, clipped_pg_grad, clipped_pg_loss, pg_loss_bwd, pg_loss_fwd, sample_rows, sample_top_p,
    token_logprob, token_logprob_bwd, token_logprob_fwd,
};
pub use error::KernelError;

#[cfg(feature = "cuda-kernels")]
pub use cuda::{GpuKernels, PgLossViews, cuda_available, device_count, nccl};
/// The cudarc this crate was built against, for device buffers and streams.
#[cfg(feature = "cuda-kernels")]
pub use cudarc;
#[cfg(not(feature = "cuda-kernels"))]
pub use stub::{GpuKernels, cuda_available, device_count};
