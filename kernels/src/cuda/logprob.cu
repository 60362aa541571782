// troupe-kernels, logprob.cu: fused token log-prob, forward and backward (src/cpu/logprob.rs).
// Compiled by NVRTC after common.cuh (src/cuda/mod.rs concatenates the files).
//
// lse[r] = log sum_j exp(l[r, j] * inv_t), which the backward pass reuses.

extern "C" __global__ void token_logprob_fwd(const float* __restrict__ logits,
                                             const unsigned* __restrict__ targets,
                                             float* __restrict__ logprob, float* __restrict__ lse,
                                             int vocab, float inv_t) {
    const int row = blockIdx.x;
    const float* x = logits + (u64)row * vocab;
    float m = NEG_INF, s = 0.f;
    for_row(x, vocab, [&](int, float v) { ms_merge(m, s, v, 1.f, inv_t); });
    block_ms(m, s, inv_t);
    if (threadIdx.x == 0) {
        const float log_sum = logf(s);
        const unsigned t = targets[row];
        lse[row] = m * inv_t + log_sum;
        logprob[row] = t < (unsigned)vocab ? (x[t] - m) * inv_t - log_sum : QNAN;
    }
}

// d l[r, j] = g[r] * inv_t * (onehot(t_r)[j] - exp(l[r, j] * inv_t - lse[r])).
extern "C" __global__ void token_logprob_bwd(const float* __restrict__ logits,
                                             const unsigned* __restrict__ targets,
                                             const float* __restrict__ lse,
                                             const float* __restrict__ grad,
                                             float* __restrict__ dlogits, int vocab, float inv_t) {
    const int row = blockIdx.x;
    const float* x = logits + (u64)row * vocab;
    float* d = dlogits + (u64)row * vocab;
    const float g = grad[row] * inv_t, l = lse[row];
    const int t = (int)targets[row];
    if ((vocab & 3) == 0 && ((((u64)x) | ((u64)d)) & 15) == 0) {
        const float4* x4 = reinterpret_cast<const float4*>(x);
        float4* d4 = reinterpret_cast<float4*>(d);
        for (int k = threadIdx.x; k < (vocab >> 2); k += blockDim.x) {
            float4 v = x4[k];
            float4 o;
            o.x = -g * expf(v.x * inv_t - l);
            o.y = -g * expf(v.y * inv_t - l);
            o.z = -g * expf(v.z * inv_t - l);
            o.w = -g * expf(v.w * inv_t - l);
            const int j = k << 2;
            if (t == j) o.x += g;
            if (t == j + 1) o.y += g;
            if (t == j + 2) o.z += g;
            if (t == j + 3) o.w += g;
            d4[k] = o;
        }
    } else {
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
            float o = -g * expf(x[j] * inv_t - l);
            if (j == t) o += g;
            d[j] = o;
        }
    }
}
