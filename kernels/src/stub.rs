//! What callers see without the `cuda` feature: the same host-slice API, never constructible.

use crate::{
    ClipRange, KernelError, NucleusSampling, PgLossInputs, PgLossStats, RowLogprobs, Sampled,
    TemperedSoftmax,
};

/// Whether a CUDA driver and at least one device are present: never, in this build.
pub fn cuda_available() -> bool {
    false
}

/// The number of CUDA devices: an error, in this build.
pub fn device_count() -> Result<usize, KernelError> {
    Err(KernelError::NotCompiledWithCuda)
}

/// Stand-in for the CUDA kernels; [`GpuKernels::new`] always fails in this build.
#[derive(Debug)]
pub struct GpuKernels {
    never: std::convert::Infallible,
}

impl GpuKernels {
    /// Always [`KernelError::NotCompiledWithCuda`].
    pub fn new(_device_ordinal: usize) -> Result<Self, KernelError> {
        Err(KernelError::NotCompiledWithCuda)
    }

    /// See the `cuda` build.
    pub fn token_logprob_fwd(
        &self,
        _logits: &[f32],
        _targets: &[u32],
        _softmax: TemperedSoftmax,
    ) -> Result<RowLogprobs, KernelError> {
        match self.never {}
    }

    /// See the `cuda` build.
    pub fn token_logprob_bwd(
        &self,
        _logits: &[f32],
        _targets: &[u32],
        _lse: &[f32],
        _grad: &[f32],
        _softmax: TemperedSoftmax,
    ) -> Result<Vec<f32>, KernelError> {
        match self.never {}
    }

    /// See the `cuda` build.
    pub fn sample_top_p(
        &self,
        _logits: &[f32],
        _uniforms: &[f32],
        _params: NucleusSampling,
    ) -> Result<Sampled, KernelError> {
        match self.never {}
    }

    /// See the `cuda` build.
    pub fn pg_loss_fwd(
        &self,
        _inputs: PgLossInputs<'_>,
        _clip: ClipRange,
    ) -> Result<PgLossStats, KernelError> {
        match self.never {}
    }

    /// See the `cuda` build.
    pub fn pg_loss_bwd(
        &self,
        _inputs: PgLossInputs<'_>,
        _clip: ClipRange,
        _grad: f32,
    ) -> Result<Vec<f32>, KernelError> {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stub_reports_no_cuda() {
        assert!(!super::cuda_available());
        assert!(matches!(
            super::GpuKernels::new(0),
            Err(crate::KernelError::NotCompiledWithCuda)
        ));
    }
}
