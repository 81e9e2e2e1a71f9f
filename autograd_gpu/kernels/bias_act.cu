// Fused bias + activation over the last axis: z = x + b[c], y = act(z).
//   act 0 relu:  y = max(z, 0),                    dy/dz = (z > 0)
//   act 1 gelu (tanh form): y = 0.5 z (1 + tanh(k (z + 0.044715 z^3))), k = sqrt(2 / pi)
//          dy/dz = 0.5 (1 + t) + 0.5 z (1 - t^2) k (1 + 3 * 0.044715 z^2)
//   act 2 tanh:  y = tanh(z),                      dy/dz = 1 - y^2
// The backward recomputes z from x and b (nothing but the inputs is saved) and writes
// dz = g * dy/dz; db is the sum of dz over the leading axes (a deterministic reduction).
#include "common.cuh"

template <typename A> __device__ __forceinline__ A act_fwd(A z, int act) {
    if (act == 0) return z > A(0) ? z : A(0);
    if (act == 1) {
        const A k = A(0.7978845608028654);
        A t = ag_tanh(k * (z + A(0.044715) * z * z * z));
        return A(0.5) * z * (A(1) + t);
    }
    return ag_tanh(z);
}

template <typename A> __device__ __forceinline__ A act_grad(A z, int act) {
    if (act == 0) return z > A(0) ? A(1) : A(0);
    if (act == 1) {
        const A k = A(0.7978845608028654);
        A t = ag_tanh(k * (z + A(0.044715) * z * z * z));
        return A(0.5) * (A(1) + t) +
               A(0.5) * z * (A(1) - t * t) * k * (A(1) + A(3) * A(0.044715) * z * z);
    }
    A t = ag_tanh(z);
    return A(1) - t * t;
}

template <typename T>
__global__ void bias_act_fwd(const T* __restrict__ x, const T* __restrict__ b,
                             T* __restrict__ y, long long n, int C, int act, int has_bias) {
    typedef typename Acc<T>::t A;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        A z = ld(x[i]);
        if (has_bias) z += (A)ld(b[i % C]);
        y[i] = st<T>(act_fwd(z, act));
    }
}

template <typename T>
__global__ void bias_act_bwd(const T* __restrict__ g, const T* __restrict__ x,
                             const T* __restrict__ b, T* __restrict__ dz, long long n, int C,
                             int act, int has_bias) {
    typedef typename Acc<T>::t A;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        A z = ld(x[i]);
        if (has_bias) z += (A)ld(b[i % C]);
        dz[i] = st<T>((A)ld(g[i]) * act_grad(z, act));
    }
}

#ifdef AG_COMPILE_CHECK
#define INST(T) \
    template __global__ void bias_act_fwd<T>(const T*, const T*, T*, long long, int, int, int); \
    template __global__ void bias_act_bwd<T>(const T*, const T*, const T*, T*, long long, int, \
                                             int, int);
INST(float) INST(double) INST(__half) INST(__nv_bfloat16)
#endif
