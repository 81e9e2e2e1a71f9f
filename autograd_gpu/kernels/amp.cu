// The loss scaler's unscale-and-check over up to MT_SLOTS tensors per launch (blockIdx.y =
// tensor), one pass over the gradients:
//   unscale_check:   x_t *= inv_scale[0] in place; found_inf[0] = 1 if any x_t was not finite
#include "common.cuh"

template <typename T>
__global__ void unscale_check(MT_DECL(x), MT_DECL(n), const float* __restrict__ inv_scale,
                              float* __restrict__ found_inf) {
    typedef typename Acc<T>::t A;
    int t = blockIdx.y;
    T* xt = (T*)MT_PICK(x, t);
    long long nt = (long long)MT_PICK(n, t);
    A inv = (A)inv_scale[0];
    bool bad = false;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < nt;
         i += (long long)gridDim.x * blockDim.x) {
        A v = ld(xt[i]);
        bad |= !is_finite_f(v);
        xt[i] = st<T>(v * inv);
    }
    if (bad) found_inf[0] = 1.0f;  // every writer stores the same value
}

#ifdef AG_COMPILE_CHECK
#define INST(T) \
    template __global__ void unscale_check<T>(MT_DECL(x), MT_DECL(n), const float*, float*);
INST(float) INST(double) INST(__half) INST(__nv_bfloat16)
#endif
