// softmax and log_softmax over the last axis, forward and backward. One block per row.
//   softmax:      y = exp(x - max) / sum(exp(x - max))
//   log_softmax:  y = x - max - log(sum(exp(x - max)))
//   softmax bwd:      dx = y * (g - sum(g * y))
//   log_softmax bwd:  dx = g - exp(y) * sum(g)
// Reference: the numpy path of ops.nn.softmax / log_softmax.
#include "common.cuh"

template <typename T>
__global__ void softmax_fwd(const T* __restrict__ x, T* __restrict__ y, long long rows, int C,
                            int log_out) {
    typedef typename Acc<T>::t A;
    __shared__ A sh[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * (long long)C;
        T* yr = y + r * (long long)C;
        A m = neg_inf(A(0));
        for (int c = threadIdx.x; c < C; c += blockDim.x) m = ag_max(m, (A)ld(xr[c]));
        m = block_max(m, sh);
        A s = 0;
        for (int c = threadIdx.x; c < C; c += blockDim.x) s += ag_exp((A)ld(xr[c]) - m);
        s = block_sum(s, sh);
        if (log_out) {
            A lse = m + ag_log(s);
            for (int c = threadIdx.x; c < C; c += blockDim.x) yr[c] = st<T>((A)ld(xr[c]) - lse);
        } else {
            A inv = A(1) / s;
            for (int c = threadIdx.x; c < C; c += blockDim.x)
                yr[c] = st<T>(ag_exp((A)ld(xr[c]) - m) * inv);
        }
    }
}

template <typename T>
__global__ void softmax_bwd(const T* __restrict__ g, const T* __restrict__ y,
                            T* __restrict__ dx, long long rows, int C, int log_out) {
    typedef typename Acc<T>::t A;
    __shared__ A sh[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* gr = g + r * (long long)C;
        const T* yr = y + r * (long long)C;
        T* dr = dx + r * (long long)C;
        A s = 0;
        if (log_out) {
            for (int c = threadIdx.x; c < C; c += blockDim.x) s += (A)ld(gr[c]);
        } else {
            for (int c = threadIdx.x; c < C; c += blockDim.x) s += (A)ld(gr[c]) * (A)ld(yr[c]);
        }
        s = block_sum(s, sh);
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            A gv = ld(gr[c]), yv = ld(yr[c]);
            dr[c] = st<T>(log_out ? gv - ag_exp(yv) * s : yv * (gv - s));
        }
    }
}

#ifdef AG_COMPILE_CHECK
#define INST(T) \
    template __global__ void softmax_fwd<T>(const T*, T*, long long, int, int); \
    template __global__ void softmax_bwd<T>(const T*, const T*, T*, long long, int, int);
INST(float) INST(double) INST(__half) INST(__nv_bfloat16)
#endif
