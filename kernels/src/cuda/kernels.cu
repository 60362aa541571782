// troupe-kernels: CUDA C compiled at run time by NVRTC (see src/cuda/mod.rs).
// Every kernel has a CPU reference in src/cpu/ that tests/gpu.rs compares it against.
//
// Row kernels run one block per row of logits; blockDim.x is a multiple of 32, at most 1024.
// Reductions are warp shuffles, then one shared-memory slot per warp.

#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)
#define QNAN __int_as_float(0x7fffffff)
#define INT_BIG 0x7fffffff

typedef unsigned long long u64;

// ---------------------------------------------------------------------------------------------
// Row iteration: each thread visits its elements in increasing index order, four at a time
// when the row is 16-byte aligned.

template <typename F>
__device__ __forceinline__ void for_row(const float* x, int vocab, F f) {
    if ((vocab & 3) == 0 && (((u64)x) & 15) == 0) {
        const float4* x4 = reinterpret_cast<const float4*>(x);
        for (int k = threadIdx.x; k < (vocab >> 2); k += blockDim.x) {
            float4 v = x4[k];
            int j = k << 2;
            f(j, v.x);
            f(j + 1, v.y);
            f(j + 2, v.z);
            f(j + 3, v.w);
        }
    } else {
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) f(j, x[j]);
    }
}

// ---------------------------------------------------------------------------------------------
// Online softmax statistics: (m, s) with s = sum exp((x - m) * inv_t) over the values seen.

__device__ __forceinline__ void ms_merge(float& m, float& s, float m2, float s2, float inv_t) {
    if (m2 > m) {
        s = s * expf((m - m2) * inv_t) + s2;
        m = m2;
    } else if (m2 > NEG_INF) {
        s += s2 * expf((m2 - m) * inv_t);
    }
}

__device__ __forceinline__ void warp_ms(float& m, float& s, float inv_t) {
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(FULL_MASK, m, o);
        float s2 = __shfl_xor_sync(FULL_MASK, s, o);
        ms_merge(m, s, m2, s2, inv_t);
    }
}

// Every thread returns the block's (m, s).
__device__ void block_ms(float& m, float& s, float inv_t) {
    __shared__ float sm[32];
    __shared__ float ss[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    warp_ms(m, s, inv_t);
    if (lane == 0) {
        sm[warp] = m;
        ss[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
        m = lane < nw ? sm[lane] : NEG_INF;
        s = lane < nw ? ss[lane] : 0.f;
        warp_ms(m, s, inv_t);
        if (lane == 0) {
            sm[0] = m;
            ss[0] = s;
        }
    }
    __syncthreads();
    m = sm[0];
    s = ss[0];
    __syncthreads();
}

// Every thread returns the block's largest value and its first index.
__device__ __forceinline__ void warp_argmax(float& v, int& i) {
    for (int o = 16; o > 0; o >>= 1) {
        const float v2 = __shfl_xor_sync(FULL_MASK, v, o);
        const int i2 = __shfl_xor_sync(FULL_MASK, i, o);
        if (v2 > v || (v2 == v && i2 < i)) {
            v = v2;
            i = i2;
        }
    }
}

__device__ void block_argmax(float& v, int& i) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    warp_argmax(v, i);
    if (lane == 0) {
        sv[warp] = v;
        si[warp] = i;
    }
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? sv[lane] : NEG_INF;
        i = lane < nw ? si[lane] : INT_BIG;
        warp_argmax(v, i);
        if (lane == 0) {
            sv[0] = v;
            si[0] = i;
        }
    }
    __syncthreads();
    v = sv[0];
    i = si[0];
    __syncthreads();
}

// Every thread returns the block's largest int.
__device__ int block_max_int(int v) {
    __shared__ int sv[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(FULL_MASK, v, o));
    if (lane == 0) sv[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < nw; ++w) v = max(v, sv[w]);
        sv[0] = v;
    }
    __syncthreads();
    v = sv[0];
    __syncthreads();
    return v;
}

// Every thread returns the block's sums of a, b, c.
__device__ void block_sum3(float& a, float& b, float& c) {
    __shared__ float sa[32];
    __shared__ float sb[32];
    __shared__ float sc[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        a += __shfl_xor_sync(FULL_MASK, a, o);
        b += __shfl_xor_sync(FULL_MASK, b, o);
        c += __shfl_xor_sync(FULL_MASK, c, o);
    }
    if (lane == 0) {
        sa[warp] = a;
        sb[warp] = b;
        sc[warp] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < nw; ++w) {
            a += sa[w];
            b += sb[w];
            c += sc[w];
        }
        sa[0] = a;
        sb[0] = b;
        sc[0] = c;
    }
    __syncthreads();
    a = sa[0];
    b = sb[0];
    c = sc[0];
    __syncthreads();
}

// Inclusive block scan of (a, c) in thread order; also returns the block totals.
__device__ void block_scan2(float& a, int& c, float& a_tot, int& c_tot) {
    __shared__ float wa[32];
    __shared__ int wc[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 1; o < 32; o <<= 1) {
        float ya = __shfl_up_sync(FULL_MASK, a, o);
        int yc = __shfl_up_sync(FULL_MASK, c, o);
        if (lane >= o) {
            a += ya;
            c += yc;
        }
    }
    if (lane == 31) {
        wa[warp] = a;
        wc[warp] = c;
    }
    __syncthreads();
    if (warp == 0) {
        float va = lane < nw ? wa[lane] : 0.f;
        int vc = lane < nw ? wc[lane] : 0;
        for (int o = 1; o < 32; o <<= 1) {
            float ya = __shfl_up_sync(FULL_MASK, va, o);
            int yc = __shfl_up_sync(FULL_MASK, vc, o);
            if (lane >= o) {
                va += ya;
                vc += yc;
            }
        }
        if (lane < nw) {
            wa[lane] = va;
            wc[lane] = vc;
        }
    }
    __syncthreads();
    if (warp > 0) {
        a += wa[warp - 1];
        c += wc[warp - 1];
    }
    a_tot = wa[nw - 1];
    c_tot = wc[nw - 1];
    __syncthreads();
}

// ---------------------------------------------------------------------------------------------
// Fused token log-prob. lse[r] = log sum_j exp(l[r, j] * inv_t).

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

// ---------------------------------------------------------------------------------------------
// Temperature / top-p sampling; the rule is documented in src/cpu/sampling.rs.
//
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

// ---------------------------------------------------------------------------------------------
// PPO clipped policy-gradient loss, token mean over a mask.

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
