// Cross entropy with integer labels over the last axis (rows x C), with label smoothing s:
//   q      = (1 - s) onehot(label) + s / C
//   lse[r] = logsumexp(x[r])
//   loss[r] = lse[r] - (1 - s) x[r, label] - s mean(x[r])
//   dlog[r] = softmax(x[r]) - q                                 (d loss[r] / d x[r])
// ce_fwd computes loss and lse in one pass over the row and, when want_dlog, dlog as well
// (forward and backward in one pass) as exp(x - max) / sum; ce_dlogits computes dlog from a saved
// lse (the backward of the op) as e / sum(e) with e = exp(x - lse): two passes over the row, since
// exp(x - lse) alone carries lse's rounding as a relative error of every entry (about 3e-5 for
// float32 logits near 1000, whose ulp is 6e-5), which the division by sum(e) cancels (softmax does
// not change when its argument is shifted). A label outside [0, C) gives NaN loss, lse and dlog
// for its row (never a silent zero); with has_ignore, rows whose label == ignore_index get loss 0
// and dlog 0.
#include "common.cuh"

template <typename T>
__global__ void ce_fwd(const T* __restrict__ x, const long long* __restrict__ labels,
                       typename Acc<T>::t* __restrict__ loss, typename Acc<T>::t* __restrict__ lse,
                       T* __restrict__ dlog, long long rows, int C, long long ignore_index,
                       int has_ignore, double smoothing, int want_dlog) {
    typedef typename Acc<T>::t A;
    __shared__ A sh[32];
    const A s_ = (A)smoothing;
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * (long long)C;
        long long lab = labels[r];
        bool ignored = has_ignore && lab == ignore_index;
        bool valid = lab >= 0 && lab < C;
        A m = neg_inf(A(0));
        for (int c = threadIdx.x; c < C; c += blockDim.x) m = ag_max(m, (A)ld(xr[c]));
        m = block_max(m, sh);
        A se = 0, sx = 0;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            A v = ld(xr[c]);
            se += ag_exp(v - m);
            sx += v;
        }
        se = block_sum(se, sh);
        if (s_ != A(0)) sx = block_sum(sx, sh);
        A l = m + ag_log(se);
        if (threadIdx.x == 0) {
            A nan = quiet_nan(A(0));
            if (ignored) {
                loss[r] = A(0);
                lse[r] = l;
            } else if (valid) {
                loss[r] = l - (A(1) - s_) * (A)ld(xr[lab]) - s_ * sx / (A)C;
                lse[r] = l;
            } else {
                loss[r] = nan;
                lse[r] = nan;
            }
        }
        if (want_dlog) {
            T* dr = dlog + r * (long long)C;
            A inv = A(1) / se, u = s_ / (A)C;
            for (int c = threadIdx.x; c < C; c += blockDim.x) {
                A d;
                if (ignored) d = A(0);
                else if (!valid) d = quiet_nan(A(0));
                else d = ag_exp((A)ld(xr[c]) - m) * inv - (c == lab ? A(1) - s_ + u : u);
                dr[c] = st<T>(d);
            }
        }
    }
}

template <typename T>
__global__ void ce_dlogits(const T* __restrict__ x, const long long* __restrict__ labels,
                           const typename Acc<T>::t* __restrict__ lse, T* __restrict__ dlog,
                           long long rows, int C, long long ignore_index, int has_ignore,
                           double smoothing) {
    typedef typename Acc<T>::t A;
    __shared__ A sh[32];
    const A s_ = (A)smoothing, u = (A)smoothing / (A)C;
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * (long long)C;
        T* dr = dlog + r * (long long)C;
        long long lab = labels[r];
        bool ignored = has_ignore && lab == ignore_index;
        bool valid = lab >= 0 && lab < C;
        A l = lse[r];
        A se = 0;  // 1 up to lse's rounding (every thread of the block reaches the sum)
        for (int c = threadIdx.x; c < C; c += blockDim.x) se += ag_exp((A)ld(xr[c]) - l);
        const A inv = A(1) / block_sum(se, sh);
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            A d;
            if (ignored) d = A(0);
            else if (!valid) d = quiet_nan(A(0));
            else d = ag_exp((A)ld(xr[c]) - l) * inv - (c == lab ? A(1) - s_ + u : u);
            dr[c] = st<T>(d);
        }
    }
}

// dx[i] = dlog[i] * g[i / C]
template <typename T>
__global__ void ce_bwd(const T* __restrict__ dlog, const typename Acc<T>::t* __restrict__ g,
                       T* __restrict__ dx, long long n, int C) {
    typedef typename Acc<T>::t A;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        dx[i] = st<T>((A)ld(dlog[i]) * g[i / C]);
}

#ifdef AG_COMPILE_CHECK
#define INST(T) \
    template __global__ void ce_fwd<T>(const T*, const long long*, Acc<T>::t*, Acc<T>::t*, T*, \
                                       long long, int, long long, int, double, int); \
    template __global__ void ce_dlogits<T>(const T*, const long long*, const Acc<T>::t*, T*, \
                                           long long, int, long long, int, double); \
    template __global__ void ce_bwd<T>(const T*, const Acc<T>::t*, T*, long long, int);
INST(float) INST(double) INST(__half) INST(__nv_bfloat16)
#endif
