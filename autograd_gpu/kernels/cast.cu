// Dtype conversion of contiguous arrays between float32 and float16/bfloat16 (the casts mixed
// precision makes around every autocast op), four elements per thread with one vector load and
// one vector store each: CuPy's astype reads and writes one element at a time and reaches about
// half of the memory bandwidth. Rounding is to nearest even (__float2half_rn,
// __float2bfloat16_rn), NaN stays NaN, as in NumPy/ml_dtypes.
//   extern "C" kernels: cast_<src>_<dst>(const src* x, dst* y, long long n)
//   x and y must be 16-byte aligned (the caller checks); the n % 4 tail is done element-wise.
#include "common.cuh"

template <typename T> struct alignas(4 * sizeof(T)) Vec4 { T v0, v1, v2, v3; };

template <typename S, typename D> __device__ __forceinline__ D conv(S v);
template <> __device__ __forceinline__ __nv_bfloat16 conv<float, __nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half conv<float, __half>(float v) {
    return __float2half_rn(v);
}
template <> __device__ __forceinline__ float conv<__nv_bfloat16, float>(__nv_bfloat16 v) {
    return __bfloat162float(v);
}
template <> __device__ __forceinline__ float conv<__half, float>(__half v) {
    return __half2float(v);
}

template <typename S, typename D>
__device__ __forceinline__ void cast_body(const S* __restrict__ x, D* __restrict__ y,
                                          long long n) {
    const long long n4 = n / 4;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    const Vec4<S>* xv = reinterpret_cast<const Vec4<S>*>(x);
    Vec4<D>* yv = reinterpret_cast<Vec4<D>*>(y);
    for (long long i = first; i < n4; i += stride) {
        Vec4<S> a = xv[i];
        Vec4<D> b;
        b.v0 = conv<S, D>(a.v0);
        b.v1 = conv<S, D>(a.v1);
        b.v2 = conv<S, D>(a.v2);
        b.v3 = conv<S, D>(a.v3);
        yv[i] = b;
    }
    for (long long i = n4 * 4 + first; i < n; i += stride) y[i] = conv<S, D>(x[i]);
}

extern "C" __global__ void cast_f32_bf16(const float* __restrict__ x,
                                         __nv_bfloat16* __restrict__ y, long long n) {
    cast_body<float, __nv_bfloat16>(x, y, n);
}
extern "C" __global__ void cast_bf16_f32(const __nv_bfloat16* __restrict__ x,
                                         float* __restrict__ y, long long n) {
    cast_body<__nv_bfloat16, float>(x, y, n);
}
extern "C" __global__ void cast_f32_f16(const float* __restrict__ x, __half* __restrict__ y,
                                        long long n) {
    cast_body<float, __half>(x, y, n);
}
extern "C" __global__ void cast_f16_f32(const __half* __restrict__ x, float* __restrict__ y,
                                        long long n) {
    cast_body<__half, float>(x, y, n);
}
