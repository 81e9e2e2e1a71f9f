// Shared helpers for the autograd_gpu kernels. Each .cu file includes this header; the Python
// loader (backend/kernels/loader.py) splices it in before NVRTC sees the source, and the nvcc
// compile check (tests/test_kernels_compile.py) finds it with -I.
//
// Storage types: float, double, __half, __nv_bfloat16. Arithmetic runs in Acc<T>::t, which is
// float for the 16- and 32-bit types and double for double.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>

template <typename T> struct Acc { typedef float t; };
template <> struct Acc<double> { typedef double t; };

__device__ __forceinline__ float ld(float x) { return x; }
__device__ __forceinline__ double ld(double x) { return x; }
__device__ __forceinline__ float ld(__half x) { return __half2float(x); }
__device__ __forceinline__ float ld(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T st(typename Acc<T>::t x);
template <> __device__ __forceinline__ float st<float>(float x) { return x; }
template <> __device__ __forceinline__ double st<double>(double x) { return x; }
template <> __device__ __forceinline__ __half st<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 st<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// Math overloads for the two accumulator types (NVRTC sees no <cmath>).
__device__ __forceinline__ float ag_exp(float x) { return expf(x); }
__device__ __forceinline__ double ag_exp(double x) { return exp(x); }
__device__ __forceinline__ float ag_log(float x) { return logf(x); }
__device__ __forceinline__ double ag_log(double x) { return log(x); }
__device__ __forceinline__ float ag_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double ag_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float ag_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double ag_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float ag_rsqrt(float x) { return rsqrtf(x); }
__device__ __forceinline__ double ag_rsqrt(double x) { return rsqrt(x); }
__device__ __forceinline__ float ag_max(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double ag_max(double a, double b) { return fmax(a, b); }

__device__ __forceinline__ float neg_inf(float) { return __int_as_float(0xff800000); }
__device__ __forceinline__ double neg_inf(double) { return __longlong_as_double(0xfff0000000000000ULL); }
__device__ __forceinline__ float quiet_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double quiet_nan(double) { return __longlong_as_double(0x7ff8000000000000ULL); }

// finite test on the bits (NaN and +-inf have an all-ones exponent)
__device__ __forceinline__ bool is_finite_f(float x) {
    return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u;
}
__device__ __forceinline__ bool is_finite_f(double x) {
    return (__double_as_longlong(x) & 0x7ff0000000000000LL) != 0x7ff0000000000000LL;
}

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename A> __device__ __forceinline__ A warp_max(A v) {
    for (int o = 16; o > 0; o >>= 1) v = ag_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reductions in a fixed order (deterministic for a given blockDim). blockDim.x must
// be a multiple of 32. `sh` is a 32-entry shared scratch; calls may follow each other directly.
template <typename A> __device__ __forceinline__ A block_sum(A v, A* sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = (threadIdx.x < nw) ? sh[threadIdx.x] : A(0);
    if (w == 0) v = warp_sum(v);
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    return sh[0];
}
template <typename A> __device__ __forceinline__ A block_max(A v, A* sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = (threadIdx.x < nw) ? sh[threadIdx.x] : neg_inf(A(0));
    if (w == 0) v = warp_max(v);
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    return sh[0];
}

// Multi-tensor launches pass up to MT_SLOTS raw device pointers (and sizes) as plain 64-bit
// kernel arguments: no pointer table in device memory, so nothing is copied from the host and the
// launch can be captured into a CUDA graph. blockIdx.y selects the tensor.
#define MT_SLOTS 8
#define MT_DECL(n) unsigned long long n##0, unsigned long long n##1, unsigned long long n##2, \
    unsigned long long n##3, unsigned long long n##4, unsigned long long n##5, \
    unsigned long long n##6, unsigned long long n##7
#define MT_PICK(n, i) ((i) == 0 ? n##0 : (i) == 1 ? n##1 : (i) == 2 ? n##2 : (i) == 3 ? n##3 : \
    (i) == 4 ? n##4 : (i) == 5 ? n##5 : (i) == 6 ? n##6 : n##7)
