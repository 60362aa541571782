//! CPU reference kernels: the ground truth every CUDA kernel is tested against, and the
//! path the sampler and learner take without a GPU.

pub mod logprob;
pub mod pg_loss;
pub mod sampling;

pub use logprob::{
    RowLogprobs, TemperedSoftmax, clamp_temperature, token_logprob, token_logprob_bwd,
    token_logprob_fwd,
};
pub use pg_loss::{
    ClipRange, PgLossInputs, PgLossStats, clipped_pg_grad, clipped_pg_loss, pg_loss_bwd,
    pg_loss_fwd,
};
pub use sampling::{NucleusSampling, Sampled, argmax, sample_rows, sample_top_p};
