// Multi-tensor kernels of gradient clipping over up to MT_SLOTS tensors per launch
// (blockIdx.y = tensor):
//   l2norm_partial:  part[slot_base + t * bpt + bx] = sum of x_t^2 over block bx's elements
//                    (per-block partials, summed by the caller in a fixed order: deterministic)
//   mt_scale:        out_t = x_t * factor, factor = coef[0]              (mode 0)
//                                           factor = min(1, max_norm / (coef[0] + 1e-6)) (mode 1,
//                                           coef[0] the global norm: clipping, no host sync)
#include "common.cuh"

template <typename T>
__global__ void l2norm_partial(MT_DECL(x), MT_DECL(n), typename Acc<T>::t* __restrict__ part,
                               long long slot_base) {
    typedef typename Acc<T>::t A;
    __shared__ A sh[32];
    int t = blockIdx.y;
    const T* xt = (const T*)MT_PICK(x, t);
    long long nt = (long long)MT_PICK(n, t);
    A s = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < nt;
         i += (long long)gridDim.x * blockDim.x) {
        A v = ld(xt[i]);
        s += v * v;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[slot_base + (long long)t * gridDim.x + blockIdx.x] = s;
}

template <typename T>
__global__ void mt_scale(MT_DECL(x), MT_DECL(out), MT_DECL(n), const double* __restrict__ coef,
                         double max_norm, int mode) {
    typedef typename Acc<T>::t A;
    int t = blockIdx.y;
    const T* xt = (const T*)MT_PICK(x, t);
    T* ot = (T*)MT_PICK(out, t);
    long long nt = (long long)MT_PICK(n, t);
    // the factor in double: float64 tensors get a float64-exact factor, the others round once
    double f = coef[0];
    if (mode == 1) {
        f = max_norm / (f + 1e-6);
        f = f < 1.0 ? f : 1.0;
    }
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < nt;
         i += (long long)gridDim.x * blockDim.x)
        ot[i] = st<T>((A)ld(xt[i]) * (A)f);
}

#ifdef AG_COMPILE_CHECK
#define INST(T) \
    template __global__ void l2norm_partial<T>(MT_DECL(x), MT_DECL(n), Acc<T>::t*, long long); \
    template __global__ void mt_scale<T>(MT_DECL(x), MT_DECL(o), MT_DECL(n), const double*, \
                                         double, int);
INST(float) INST(double) INST(__half) INST(__nv_bfloat16)
#endif
