// Deterministic scatter-add by sorted segments (no atomics):
//   target[idx[k], j] += values[k, j]   for k in [0, K), j in [0, D)
// The caller sorts the K indices by the unique key (idx[k], k), which fixes the order in which
// duplicates are summed. Here thread (p, j) owns output row sorted_idx[p] when p starts a
// segment, sums that segment's values in sorted order, and adds the sum once to the target:
// each target element has exactly one writer and a fixed summation order.
#include "common.cuh"

template <typename T>
__global__ void segment_sum(const long long* __restrict__ sorted_idx,
                            const long long* __restrict__ order, const T* __restrict__ values,
                            T* __restrict__ target, long long K, long long D, long long M) {
    typedef typename Acc<T>::t A;
    long long total = K * D;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        long long p = t / D, j = t - p * D;
        long long row = sorted_idx[p];
        if (p > 0 && sorted_idx[p - 1] == row) continue;  // not the start of a segment
        if (row < 0 || row >= M) continue;  // indices were validated by the forward
        A acc = 0;
        for (long long q = p; q < K && sorted_idx[q] == row; ++q)
            acc += (A)ld(values[order[q] * D + j]);
        T* dst = target + row * D + j;
        *dst = st<T>((A)ld(*dst) + acc);
    }
}

#ifdef AG_COMPILE_CHECK
#define INST(T) \
    template __global__ void segment_sum<T>(const long long*, const long long*, const T*, T*, \
                                            long long, long long, long long);
INST(float) INST(double) INST(__half) INST(__nv_bfloat16)
#endif
