// Dropout from a counter-based generator (Philox4x32-10), so that the same (seed, offset)
// always gives the same mask, on replay, under recomputation and in a captured CUDA graph.
// Element i uses word (i % 4) of philox(counter = (i / 4 as 64 bits, offset as 64 bits),
// key = seed as 64 bits); u = (word >> 8) * 2^-24 is uniform in [0, 1); keep = (u >= p).
//   dropout_fwd:  y = keep ? x * scale : 0,  mask = keep      (scale = 1 / (1 - p))
//   dropout_mask: m = keep ? scale : 0      (dx = g * m; regenerates the mask from the seed)
// The numpy twin (backend/kernels/dropout.py: philox_uniform) produces bit-identical words.
#include "common.cuh"

struct U4 { unsigned int x, y, z, w; };

__device__ __forceinline__ U4 philox4x32_10(U4 c, unsigned int k0, unsigned int k1) {
    const unsigned int M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const unsigned int W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r > 0) { k0 += W0; k1 += W1; }
        unsigned int hi0 = __umulhi(M0, c.x), lo0 = M0 * c.x;
        unsigned int hi1 = __umulhi(M1, c.z), lo1 = M1 * c.z;
        U4 n;
        n.x = hi1 ^ c.y ^ k0;
        n.y = lo1;
        n.z = hi0 ^ c.w ^ k1;
        n.w = lo0;
        c = n;
    }
    return c;
}

// the four words of group gi (elements 4 gi .. 4 gi + 3) for (seed, offset)
__device__ __forceinline__ U4 philox_group(long long gi, unsigned long long seed,
                                           unsigned long long offset) {
    U4 c;
    c.x = (unsigned int)gi;
    c.y = (unsigned int)((unsigned long long)gi >> 32);
    c.z = (unsigned int)offset;
    c.w = (unsigned int)(offset >> 32);
    return philox4x32_10(c, (unsigned int)seed, (unsigned int)(seed >> 32));
}

__device__ __forceinline__ unsigned int pick(U4 r, int j) {
    return j == 0 ? r.x : j == 1 ? r.y : j == 2 ? r.z : r.w;
}

template <typename T>
__global__ void dropout_fwd(const T* __restrict__ x, T* __restrict__ y,
                            unsigned char* __restrict__ mask, long long n, double p,
                            unsigned long long seed, unsigned long long offset, int mode) {
    // mode 0: y = x * keep * scale and mask = keep;  mode 1: y = keep * scale (x unused)
    typedef typename Acc<T>::t A;
    long long groups = (n + 3) / 4;
    A scale = p < 1.0 ? A(1) / (A(1) - (A)p) : A(0);
    float pf = (float)p;  // the threshold is compared in float32 (as the numpy twin does)
    for (long long gi = blockIdx.x * (long long)blockDim.x + threadIdx.x; gi < groups;
         gi += (long long)gridDim.x * blockDim.x) {
        U4 r = philox_group(gi, seed, offset);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            long long i = gi * 4 + j;
            if (i >= n) break;
            float u = (float)(pick(r, j) >> 8) * (1.0f / 16777216.0f);
            bool keep = u >= pf;
            if (mode == 0) {
                y[i] = st<T>(keep ? (A)ld(x[i]) * scale : A(0));
                mask[i] = keep ? 1 : 0;
            } else {
                y[i] = st<T>(keep ? scale : A(0));
            }
        }
    }
}

// raw Philox words, for the parity test against the numpy twin
extern "C" __global__ void philox_words(unsigned int* __restrict__ out, long long groups,
                                        unsigned long long seed, unsigned long long offset) {
    for (long long gi = blockIdx.x * (long long)blockDim.x + threadIdx.x; gi < groups;
         gi += (long long)gridDim.x * blockDim.x) {
        U4 r = philox_group(gi, seed, offset);
        out[4 * gi] = r.x;
        out[4 * gi + 1] = r.y;
        out[4 * gi + 2] = r.z;
        out[4 * gi + 3] = r.w;
    }
}

#ifdef AG_COMPILE_CHECK
#define INST(T) \
    template __global__ void dropout_fwd<T>(const T*, T*, unsigned char*, long long, double, \
                                            unsigned long long, unsigned long long, int);
INST(float) INST(double) INST(__half) INST(__nv_bfloat16)
#endif
