// troupe-kernels, sampling.cu: temperature / top-p sampling (src/cpu/sampling.rs).
// Compiled by NVRTC after common.cuh (src/cuda/mod.rs concatenates the files).

// The nucleus is found without sorting: the probabilities p = exp((x - m) / T) are positive
// floats, so their bit patterns order like their values. A 4-pass radix select (8 bits per
// pass, histograms of probability mass) finds the bit pattern tau of the smallest nucleus
// member; the nucleus is every p > tau plus the first `ties` tokens with p == tau. The draw
// then walks the row in vocabulary order with block prefix sums.

extern "C" __global__ void sample_top_p(const float* __restrict__ logits,
                                        const float* __restrict__ uniforms,
                                        unsigned* __restrict__ tokens,
                                        float* __restrict__ logprobs, int vocab,
                                        float temperature, float top_p) {
    const int row = blockIdx.x;
    const float* x = logits + (u64)row * vocab;
    __shared__ float hist[256];
    __shared__ float s_mass;
    __shared__ int s_digit;
    __shared__ int s_found;

    if (!(temperature > 0.f)) {
        // Greedy: the first maximal logit, with its log-prob at T = 1.
        float m = NEG_INF, s = 0.f, bv = NEG_INF;
        int bi = INT_BIG;
        for_row(x, vocab, [&](int j, float v) {
            ms_merge(m, s, v, 1.f, 1.f);
            if (v > bv) {
                bv = v;
                bi = j;
            }
        });
        block_ms(m, s, 1.f);
        block_argmax(bv, bi);
        if (threadIdx.x == 0) {
            const int tok = bi == INT_BIG ? 0 : bi;
            tokens[row] = (unsigned)tok;
            logprobs[row] = (x[tok] - m) - logf(s);
        }
        return;
    }

    const float inv_t = 1.f / fmaxf(temperature, 1e-6f);
    float m = NEG_INF, s = 0.f;
    for_row(x, vocab, [&](int, float v) { ms_merge(m, s, v, 1.f, inv_t); });
    block_ms(m, s, inv_t);

    unsigned tau = 0u;   // threshold bit pattern
    int ties = INT_BIG;  // how many tokens with p == tau belong to the nucleus
    float kept_mass = s;
    if (top_p < 1.f) {
        const float target = top_p * s;
        unsigned prefix = 0u, mask = 0u;
        float above = 0.f;  // mass of the tokens above the current bit range
        float eq_mass = 0.f;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int k = threadIdx.x; k < 256; k += blockDim.x) hist[k] = 0.f;
            __syncthreads();
            for_row(x, vocab, [&](int, float v) {
                const float p = expf((v - m) * inv_t);
                const unsigned b = __float_as_uint(p);
                if ((b & mask) == prefix) atomicAdd(&hist[(b >> shift) & 255u], p);
            });
            __syncthreads();
            if (threadIdx.x < 32) {
                // Lane l holds digits 255 - 8l down to 248 - 8l; scan lanes from the top digit.
                const int lane = threadIdx.x;
                float part = 0.f;
                for (int k = 0; k < 8; ++k) part += hist[255 - 8 * lane - k];
                float incl = part;
                for (int o = 1; o < 32; o <<= 1) {
                    const float y = __shfl_up_sync(FULL_MASK, incl, o);
                    if (lane >= o) incl += y;
                }
                float excl = __shfl_up_sync(FULL_MASK, incl, 1);
                if (lane == 0) excl = 0.f;
                const unsigned hit = __ballot_sync(FULL_MASK, part > 0.f && above + incl >= target);
                const unsigned nonempty = __ballot_sync(FULL_MASK, part > 0.f);
                // The first lane that reaches the target; if rounding reaches it nowhere, the
                // last non-empty lane (keep the most).
                const int chosen = hit ? __ffs(hit) - 1 : (nonempty ? 31 - __clz(nonempty) : 0);
                if (lane == chosen) {
                    float cum = above + excl;
                    int digit = 255 - 8 * lane;
                    float cum_at = cum;
                    for (int k = 0; k < 8; ++k) {
                        const int d = 255 - 8 * lane - k;
                        const float h = hist[d];
                        if (h > 0.f) {
                            digit = d;
                            cum_at = cum;
                            if (cum + h >= target) break;
                        }
                        cum += h;
                    }
                    s_digit = digit;
                    s_mass = cum_at;
                }
            }
            __syncthreads();
            const int digit = s_digit;
            above = s_mass;
            prefix |= (unsigned)digit << shift;
            mask |= 255u << shift;
            if (shift == 0) eq_mass = hist[digit];
            __syncthreads();
        }
        tau = prefix;
        const float tv = __uint_as_float(tau);
        if (tv > 0.f) {
            const float need = ceilf((target - above) / tv);
            ties = need < 1.f ? 1 : (need > 1e9f ? 1000000000 : (int)need);
            kept_mass = above + fminf((float)ties * tv, eq_mass);
        }
    }

    // Walk the nucleus in vocabulary order until the running mass passes u * kept_mass.
    const float tv = __uint_as_float(tau);
    const float goal = fminf(fmaxf(uniforms[row], 0.f), 1.f) * kept_mass;
    if (threadIdx.x == 0) s_found = INT_BIG;
    __syncthreads();
    float run_above = 0.f;
    int run_ties = 0, last_kept = -1;
    for (int base = 0; base < vocab; base += blockDim.x) {
        const int j = base + threadIdx.x;
        float p = 0.f;
        bool is_above = false, is_tie = false;
        if (j < vocab) {
            p = expf((x[j] - m) * inv_t);
            const unsigned b = __float_as_uint(p);
            is_above = b > tau;
            is_tie = b == tau;
        }
        float a = is_above ? p : 0.f;
        int c = is_tie ? 1 : 0;
        float a_tot;
        int c_tot;
        block_scan2(a, c, a_tot, c_tot);
        const int tie_rank = run_ties + c;  // 1-based among ties, for a tie
        const bool kept = p > 0.f && (is_above || (is_tie && tie_rank <= ties));
        const float cum = run_above + a + tv * (float)min(tie_rank, ties);
        if (kept) last_kept = j;
        const unsigned hit = __ballot_sync(FULL_MASK, kept && cum > goal);
        if (hit && (threadIdx.x & 31) == 0) atomicMin(&s_found, base + (threadIdx.x & ~31) + __ffs(hit) - 1);
        __syncthreads();
        if (s_found != INT_BIG) break;
        run_above += a_tot;
        run_ties += c_tot;
    }
    int tok = s_found;
    if (tok == INT_BIG) {
        tok = block_max_int(last_kept);
        if (tok < 0) tok = 0;
    }
    if (threadIdx.x == 0) {
        tokens[row] = (unsigned)tok;
        logprobs[row] = (x[tok] - m) * inv_t - logf(s);
    }
}
