// layer_norm over the last axis (rows x C), forward and backward. One block per row.
//   mean = sum(x) / C,  var = sum((x - mean)^2) / C,  rstd = 1 / sqrt(var + eps)
//   xhat = (x - mean) * rstd,  y = xhat * gamma + beta        (gamma, beta optional)
// backward, with gh = g * gamma:
//   dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))
//   dgamma = sum_rows(g * xhat),  dbeta = sum_rows(g)  (per-chunk partials, summed afterwards
//   in a fixed order, so the result is deterministic)
#include "common.cuh"

template <typename T>
__global__ void ln_fwd(const T* __restrict__ x, const T* __restrict__ gamma,
                       const T* __restrict__ beta, T* __restrict__ y,
                       typename Acc<T>::t* __restrict__ mean_out,
                       typename Acc<T>::t* __restrict__ rstd_out, long long rows, int C,
                       double eps, int has_gamma, int has_beta) {
    typedef typename Acc<T>::t A;
    __shared__ A sh[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * (long long)C;
        T* yr = y + r * (long long)C;
        A s = 0;
        for (int c = threadIdx.x; c < C; c += blockDim.x) s += (A)ld(xr[c]);
        A mean = block_sum(s, sh) / (A)C;
        A v = 0;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            A d = (A)ld(xr[c]) - mean;
            v += d * d;
        }
        A var = block_sum(v, sh) / (A)C;
        A rstd = A(1) / ag_sqrt(var + (A)eps);
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            A o = ((A)ld(xr[c]) - mean) * rstd;
            if (has_gamma) o *= (A)ld(gamma[c]);
            if (has_beta) o += (A)ld(beta[c]);
            yr[c] = st<T>(o);
        }
        if (threadIdx.x == 0) {
            mean_out[r] = mean;
            rstd_out[r] = rstd;
        }
    }
}

template <typename T>
__global__ void ln_bwd_dx(const T* __restrict__ g, const T* __restrict__ x,
                          const T* __restrict__ gamma, const typename Acc<T>::t* __restrict__ mean,
                          const typename Acc<T>::t* __restrict__ rstd, T* __restrict__ dx,
                          long long rows, int C, int has_gamma) {
    typedef typename Acc<T>::t A;
    __shared__ A sh[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * (long long)C;
        const T* gr = g + r * (long long)C;
        T* dr = dx + r * (long long)C;
        A mu = mean[r], rs = rstd[r];
        A s1 = 0, s2 = 0;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            A gh = (A)ld(gr[c]);
            if (has_gamma) gh *= (A)ld(gamma[c]);
            A xh = ((A)ld(xr[c]) - mu) * rs;
            s1 += gh;
            s2 += gh * xh;
        }
        s1 = block_sum(s1, sh) / (A)C;
        s2 = block_sum(s2, sh) / (A)C;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            A gh = (A)ld(gr[c]);
            if (has_gamma) gh *= (A)ld(gamma[c]);
            A xh = ((A)ld(xr[c]) - mu) * rs;
            dr[c] = st<T>(rs * (gh - s1 - xh * s2));
        }
    }
}

// The backward from the saved output when there is no affine part (y = xhat):
//   dx = rstd * (g - mean(g) - y * mean(g * y))
template <typename T>
__global__ void ln_bwd_y(const T* __restrict__ g, const T* __restrict__ y,
                         const T* __restrict__ rstd, T* __restrict__ dx, long long rows, int C) {
    typedef typename Acc<T>::t A;
    __shared__ A sh[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* gr = g + r * (long long)C;
        const T* yr = y + r * (long long)C;
        T* dr = dx + r * (long long)C;
        A s1 = 0, s2 = 0;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            A gv = ld(gr[c]);
            s1 += gv;
            s2 += gv * (A)ld(yr[c]);
        }
        s1 = block_sum(s1, sh) / (A)C;
        s2 = block_sum(s2, sh) / (A)C;
        A rs = ld(rstd[r]);
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            dr[c] = st<T>(rs * ((A)ld(gr[c]) - s1 - (A)ld(yr[c]) * s2));
    }
}

// grid (ceil(C / blockDim.x), nchunks): column c sums rows [chunk * rpc, (chunk+1) * rpc)
template <typename T>
__global__ void ln_bwd_params(const T* __restrict__ g, const T* __restrict__ x,
                              const typename Acc<T>::t* __restrict__ mean,
                              const typename Acc<T>::t* __restrict__ rstd,
                              typename Acc<T>::t* __restrict__ dgamma_part,
                              typename Acc<T>::t* __restrict__ dbeta_part, long long rows, int C,
                              long long rows_per_chunk) {
    typedef typename Acc<T>::t A;
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    long long r0 = blockIdx.y * rows_per_chunk;
    long long r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    A sg = 0, sb = 0;
    for (long long r = r0; r < r1; ++r) {
        A gv = ld(g[r * C + c]);
        sg += gv * ((A)ld(x[r * C + c]) - mean[r]) * rstd[r];
        sb += gv;
    }
    dgamma_part[(long long)blockIdx.y * C + c] = sg;
    dbeta_part[(long long)blockIdx.y * C + c] = sb;
}

#ifdef AG_COMPILE_CHECK
#define INST(T) \
    template __global__ void ln_fwd<T>(const T*, const T*, const T*, T*, Acc<T>::t*, \
                                       Acc<T>::t*, long long, int, double, int, int); \
    template __global__ void ln_bwd_dx<T>(const T*, const T*, const T*, const Acc<T>::t*, \
                                          const Acc<T>::t*, T*, long long, int, int); \
    template __global__ void ln_bwd_y<T>(const T*, const T*, const T*, T*, long long, int); \
    template __global__ void ln_bwd_params<T>(const T*, const T*, const Acc<T>::t*, \
                                              const Acc<T>::t*, Acc<T>::t*, Acc<T>::t*, \
                                              long long, int, long long);
INST(float) INST(double) INST(__half) INST(__nv_bfloat16)
#endif
