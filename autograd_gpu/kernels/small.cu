// Elementwise ops on small arrays (fewer than 65,536 elements), where the host cost of a launch
// is the whole cost: CuPy's ufuncs and ElementwiseKernels spend about 10 us of host time per
// call resolving types, broadcasting and building an indexer, while a plain RawModule function
// with a contiguous array, its length and an op code needs a fraction of that. One thread per
// element; float32 and float64 only (the caller checks C-contiguity and the size; float16 and
// bfloat16 keep CuPy's kernels, which round through float the way NumPy does). Each op is the
// same expression as its reference, and the Python side checks every (op, dtype) against it on a
// probe before first use (backend/kernels/small.py: bind_*).
//   small_scalar_<t>(x, y, s, n, op)    y = x + s, x - s, s - x, x * s, x / s, s / x (op 0..5)
//   small_unary_<t>(x, y, n, op)        y = -x, exp, expm1, log, log1p, sqrt, abs, sin, cos,
//                                           tan, tanh of x (op 0..10)
//   small_act_grad_<t>(g, t, y, n, op)  y = g - g t t (tanh), g (t - t t) (sigmoid) (op 0, 1)
#include "common.cuh"

__device__ __forceinline__ float ag_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double ag_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float ag_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double ag_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float ag_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double ag_abs(double x) { return fabs(x); }
__device__ __forceinline__ float ag_sin(float x) { return sinf(x); }
__device__ __forceinline__ double ag_sin(double x) { return sin(x); }
__device__ __forceinline__ float ag_cos(float x) { return cosf(x); }
__device__ __forceinline__ double ag_cos(double x) { return cos(x); }
__device__ __forceinline__ float ag_tan(float x) { return tanf(x); }
__device__ __forceinline__ double ag_tan(double x) { return tan(x); }

template <typename T> __device__ __forceinline__ T scalar_op(T v, T s, int op) {
    switch (op) {
        case 0: return v + s;
        case 1: return v - s;
        case 2: return s - v;
        case 3: return v * s;
        case 4: return v / s;
        default: return s / v;
    }
}

template <typename T> __device__ __forceinline__ T unary_op(T v, int op) {
    switch (op) {
        case 0: return -v;
        case 1: return ag_exp(v);
        case 2: return ag_expm1(v);
        case 3: return ag_log(v);
        case 4: return ag_log1p(v);
        case 5: return ag_sqrt(v);
        case 6: return ag_abs(v);
        case 7: return ag_sin(v);
        case 8: return ag_cos(v);
        case 9: return ag_tan(v);
        default: return ag_tanh(v);
    }
}

template <typename T> __device__ __forceinline__ T act_grad_op(T a, T b, int op) {
    return op == 0 ? a - a * b * b : a * (b - b * b);
}

// one thread per element
#define AG_SMALL_INDEX(i, n)                                                                 \
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;                    \
    if (i >= (n)) return;

// extern "C" entry points, one per storage type
extern "C" __global__ void small_scalar_f32(const float* x, float* y, float s, long long n,
                                            int op) {
    AG_SMALL_INDEX(i, n) y[i] = scalar_op(x[i], s, op);
}
extern "C" __global__ void small_scalar_f64(const double* x, double* y, double s, long long n,
                                            int op) {
    AG_SMALL_INDEX(i, n) y[i] = scalar_op(x[i], s, op);
}
extern "C" __global__ void small_unary_f32(const float* x, float* y, long long n, int op) {
    AG_SMALL_INDEX(i, n) y[i] = unary_op(x[i], op);
}
extern "C" __global__ void small_unary_f64(const double* x, double* y, long long n, int op) {
    AG_SMALL_INDEX(i, n) y[i] = unary_op(x[i], op);
}
extern "C" __global__ void small_act_grad_f32(const float* g, const float* t, float* y,
                                              long long n, int op) {
    AG_SMALL_INDEX(i, n) y[i] = act_grad_op(g[i], t[i], op);
}
extern "C" __global__ void small_act_grad_f64(const double* g, const double* t, double* y,
                                              long long n, int op) {
    AG_SMALL_INDEX(i, n) y[i] = act_grad_op(g[i], t[i], op);
}
