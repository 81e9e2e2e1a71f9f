// Vectorised passes for the hottest elementwise steps of an MLP: relu, relu's backward and the
// bias add (a row vector over the last axis). Four elements per thread through one vector load
// and store each; CuPy's generic kernels move one element at a time and reached about 60% of the
// bandwidth these do on an H100. Contiguous, 16-byte-aligned arrays only (the caller checks);
// the n % 4 tail is done element by element.
//   relu_fwd<T>(x, y, n)              y = x < 0 ? 0 : x   (NaN and -0.0 pass, as maximum(x, 0))
//   relu_bwd<T>(g, x, y, n)           y = x <= 0 ? 0 : g  (a select: NaN x passes g, an inf g
//                                     where x <= 0 gives 0; PyTorch's threshold_backward)
//   add_rowvec<T>(x, b, y, n, C)      y[i] = x[i] + b[i % C], C % 4 == 0
#include "common.cuh"

template <typename T> struct alignas(4 * sizeof(T)) V4 { T v[4]; };

#define AG_GRID_LOOP(i, n4)                                                               \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n4);       \
         i += (long long)gridDim.x * blockDim.x)

template <typename T> __device__ __forceinline__ T relu_one(T x) {
    typedef typename Acc<T>::t A;
    return ld(x) < A(0) ? st<T>(A(0)) : x;
}

template <typename T>
__global__ void relu_fwd(const T* __restrict__ x, T* __restrict__ y, long long n) {
    const long long n4 = n / 4;
    const V4<T>* xv = reinterpret_cast<const V4<T>*>(x);
    V4<T>* yv = reinterpret_cast<V4<T>*>(y);
    AG_GRID_LOOP(i, n4) {
        V4<T> a = xv[i];
#pragma unroll
        for (int k = 0; k < 4; ++k) a.v[k] = relu_one(a.v[k]);
        yv[i] = a;
    }
    AG_GRID_LOOP(j, n - n4 * 4) y[n4 * 4 + j] = relu_one(x[n4 * 4 + j]);
}

template <typename T> __device__ __forceinline__ T relu_grad_one(T g, T x) {
    typedef typename Acc<T>::t A;
    return ld(x) <= A(0) ? st<T>(A(0)) : g;
}

template <typename T>
__global__ void relu_bwd(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ y,
                         long long n) {
    const long long n4 = n / 4;
    const V4<T>* gv = reinterpret_cast<const V4<T>*>(g);
    const V4<T>* xv = reinterpret_cast<const V4<T>*>(x);
    V4<T>* yv = reinterpret_cast<V4<T>*>(y);
    AG_GRID_LOOP(i, n4) {
        V4<T> a = gv[i];
        V4<T> b = xv[i];
#pragma unroll
        for (int k = 0; k < 4; ++k) a.v[k] = relu_grad_one(a.v[k], b.v[k]);
        yv[i] = a;
    }
    AG_GRID_LOOP(j, n - n4 * 4) {
        const long long i = n4 * 4 + j;
        y[i] = relu_grad_one(g[i], x[i]);
    }
}

template <typename T>
__global__ void add_rowvec(const T* __restrict__ x, const T* __restrict__ b, T* __restrict__ y,
                           long long n, long long C) {
    typedef typename Acc<T>::t A;
    const long long n4 = n / 4;  // C % 4 == 0, so n % 4 == 0 and a vector never spans two rows
    const V4<T>* xv = reinterpret_cast<const V4<T>*>(x);
    const V4<T>* bv = reinterpret_cast<const V4<T>*>(b);
    V4<T>* yv = reinterpret_cast<V4<T>*>(y);
    const long long c4 = C / 4;
    AG_GRID_LOOP(i, n4) {
        V4<T> a = xv[i];
        V4<T> c = bv[i % c4];
#pragma unroll
        for (int k = 0; k < 4; ++k) a.v[k] = st<T>(ld(a.v[k]) + ld(c.v[k]));
        yv[i] = a;
    }
}

#ifdef AG_COMPILE_CHECK
#define INST(T)                                                                           \
    template __global__ void relu_fwd<T>(const T*, T*, long long);                        \
    template __global__ void relu_bwd<T>(const T*, const T*, T*, long long);              \
    template __global__ void add_rowvec<T>(const T*, const T*, T*, long long, long long);
INST(float) INST(double) INST(__half) INST(__nv_bfloat16)
#endif
