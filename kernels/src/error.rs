//! The crate's one error type.

/// What can go wrong setting up or running the GPU kernels. The CPU references do not fail:
/// they panic on mismatched lengths, like slice indexing.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// This build has no `cuda` feature; use the CPU references.
    #[error("troupe-kernels was built without the `cuda` feature")]
    NotCompiledWithCuda,
    /// A CUDA library could not be loaded at run time (see the crate docs for where it is looked for).
    #[error("could not load {library}: put its directory on LD_LIBRARY_PATH")]
    LibraryMissing {
        /// The library, e.g. `libcuda`, `libnvrtc` or `libnccl`.
        library: &'static str,
    },
    /// Loading a library or creating the context panicked inside cudarc.
    #[error("CUDA initialisation panicked: {0}")]
    InitPanicked(String),
    /// The requested device does not exist.
    #[error("no CUDA device {ordinal} (found {count})")]
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many devices the driver reports.
        count: usize,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// NVRTC rejected the kernel source.
    #[error("NVRTC compile: {0}")]
    Compile(String),
    /// An NCCL call failed.
    #[error("NCCL: {0}")]
    Nccl(String),
    /// Inputs of inconsistent lengths.
    #[error("shape: {0}")]
    Shape(String),
}

#[cfg(feature = "cuda-kernels")]
impl From<cudarc::driver::DriverError> for KernelError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        KernelError::Driver(e.to_string())
    }
}

#[cfg(feature = "cuda-kernels")]
impl From<cudarc::nvrtc::CompileError> for KernelError {
    fn from(e: cudarc::nvrtc::CompileError) -> Self {
        match e {
            cudarc::nvrtc::CompileError::CompileError { nvrtc, log, .. } => {
                KernelError::Compile(format!("{nvrtc:?}\n{}", log.to_string_lossy()))
            }
            other => KernelError::Compile(format!("{other:?}")),
        }
    }
}

#[cfg(feature = "cuda-kernels")]
impl From<cudarc::nccl::result::NcclError> for KernelError {
    fn from(e: cudarc::nccl::result::NcclError) -> Self {
        KernelError::Nccl(format!("{:?}", e.0))
    }
}
