// troupe-kernels, pg_loss.cu: PPO clipped policy-gradient loss, token mean over a mask
// (src/cpu/pg_loss.rs).
// Compiled by NVRTC after common.cuh (src/cuda/mod.rs concatenates the files).

__device__ __forceinline__ void pg_token(float lp, float old, float a, float lo, float hi,
                                         float& loss, float& grad, float& clipped) {
    const float r = expf(lp - old);
    const float c = fminf(fmaxf(r, 1.f - lo), 1.f + hi);
    const float u = r * a, v = c * a;
    loss = -fminf(u, v);
    grad = u <= v ? -a * r : 0.f;
    clipped = (r < 1.f - lo || r > 1.f + hi) ? 1.f : 0.f;
}

// partial[3 b + {0, 1, 2}] = this block's sums of mask * loss, mask, mask * clipped.
extern "C" __global__ void pg_loss_partial(const float* __restrict__ logp,
                                           const float* __restrict__ old_logp,
                                           const float* __restrict__ adv,
                                           const float* __restrict__ mask, int n, float lo,
                                           float hi, float* __restrict__ partial) {
    float num = 0.f, den = 0.f, clip = 0.f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float loss, grad, clipped;
        pg_token(logp[i], old_logp[i], adv[i], lo, hi, loss, grad, clipped);
        const float mk = mask[i];
        num += mk * loss;
        den += mk;
        clip += mk * clipped;
    }
    block_sum3(num, den, clip);
    if (threadIdx.x == 0) {
        partial[3 * blockIdx.x] = num;
        partial[3 * blockIdx.x + 1] = den;
        partial[3 * blockIdx.x + 2] = clip;
    }
}

// One block: out = [loss, mask_sum, clip_fraction].
extern "C" __global__ void pg_loss_finish(const float* __restrict__ partial, int blocks,
                                          float* __restrict__ out) {
    float num = 0.f, den = 0.f, clip = 0.f;
    for (int b = threadIdx.x; b < blocks; b += blockDim.x) {
        num += partial[3 * b];
        den += partial[3 * b + 1];
        clip += partial[3 * b + 2];
    }
    block_sum3(num, den, clip);
    if (threadIdx.x == 0) {
        const float inv = den > 0.f ? 1.f / den : 0.f;
        out[0] = num * inv;
        out[1] = den;
        out[2] = clip * inv;
    }
}

// dlogp[i] = grad / mask_sum * mask[i] * d loss_i / d logp_i, mask_sum = stats[1].
extern "C" __global__ void pg_loss_bwd(const float* __restrict__ logp,
                                       const float* __restrict__ old_logp,
                                       const float* __restrict__ adv,
                                       const float* __restrict__ mask,
                                       const float* __restrict__ stats, int n, float lo, float hi,
                                       float grad, float* __restrict__ dlogp) {
    const float den = stats[1];
    const float scale = den > 0.f ? grad / den : 0.f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float loss, g, clipped;
        pg_token(logp[i], old_logp[i], adv[i], lo, hi, loss, g, clipped);
        dlogp[i] = scale * mask[i] * g;
    }
}
