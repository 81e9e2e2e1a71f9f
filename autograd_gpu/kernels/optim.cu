// Fused optimizer updates, in place, up to MT_SLOTS tensors per launch (blockIdx.y = tensor).
// Parameters, gradients and state are float32.
//   SGD (PyTorch convention):  d = g + wd * p
//       momentum != 0:  buf = first ? d : momentum * buf + (1 - dampening) * d
//                       d = nesterov ? d + momentum * buf : buf
//       p -= lr * d
//   Adam / AdamW:  (Adam) g += wd * p;  (AdamW) p *= 1 - lr * wd
//       m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//       p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
//   `step` is read from device memory so that a captured CUDA graph sees the current count.
#include "common.cuh"

extern "C" __global__ void sgd_momentum(MT_DECL(p), MT_DECL(g), MT_DECL(buf), MT_DECL(n), float lr,
                             float momentum, float dampening, float wd, int nesterov,
                             int first) {
    int t = blockIdx.y;
    float* pt = (float*)MT_PICK(p, t);
    const float* gt = (const float*)MT_PICK(g, t);
    float* bt = (float*)MT_PICK(buf, t);
    long long nt = (long long)MT_PICK(n, t);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < nt;
         i += (long long)gridDim.x * blockDim.x) {
        float pv = pt[i];
        float d = gt[i];
        if (wd != 0.0f) d += wd * pv;
        if (momentum != 0.0f) {
            float b = first ? d : momentum * bt[i] + (1.0f - dampening) * d;
            bt[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        pt[i] = pv - lr * d;
    }
}

extern "C" __global__ void adam(MT_DECL(p), MT_DECL(g), MT_DECL(m), MT_DECL(v), MT_DECL(n), float lr,
                     float b1, float b2, float eps, float wd, int adamw,
                     const float* __restrict__ step) {
    int t = blockIdx.y;
    float* pt = (float*)MT_PICK(p, t);
    const float* gt = (const float*)MT_PICK(g, t);
    float* mt = (float*)MT_PICK(m, t);
    float* vt = (float*)MT_PICK(v, t);
    long long nt = (long long)MT_PICK(n, t);
    float s = step[0];
    float bc1 = 1.0f - powf(b1, s);
    float bc2 = 1.0f - powf(b2, s);
    float step_size = lr / bc1;
    float rbc2 = 1.0f / sqrtf(bc2);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < nt;
         i += (long long)gridDim.x * blockDim.x) {
        float pv = pt[i];
        float gv = gt[i];
        if (adamw) {
            pv *= 1.0f - lr * wd;
        } else if (wd != 0.0f) {
            gv += wd * pv;
        }
        float mv = b1 * mt[i] + (1.0f - b1) * gv;
        float vv = b2 * vt[i] + (1.0f - b2) * gv * gv;
        mt[i] = mv;
        vt[i] = vv;
        pt[i] = pv - step_size * mv / (sqrtf(vv) * rbc2 + eps);
    }
}
