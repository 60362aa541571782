// troupe-kernels: CUDA C compiled at run time by NVRTC (see src/cuda/mod.rs), which
// concatenates this header with logprob.cu, sampling.cu and pg_loss.cu. Every kernel has a CPU
// reference in src/cpu/ that tests/gpu.rs compares it against.
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
