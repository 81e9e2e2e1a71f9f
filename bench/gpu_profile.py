"""Where the GPU time of the benchmark MLP step goes: kernel tables for autograd_gpu and PyTorch.

PyTorch's profiler records every CUDA kernel of the process through CUPTI, CuPy's too, so one
tool gives comparable kernel-level tables for the autograd_gpu step and the PyTorch step (same
model as ``bench/gpu_suite.py``: batch 8192, width 4096, 6 layers, ReLU, MSE, SGD), in float32
and under bfloat16 autocast; plus ``ag.profiler`` per-op tables (synchronised) and timings of
the GEMM paths (``cupy.matmul`` against direct cuBLAS calls, ``backend/cublas.py``).

Run: ``python bench/gpu_profile.py --out DIR`` (writes DIR/gpu_profile.txt; about a minute).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def _kernel_table(fn, steps=3, rows=25):
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    ka = prof.key_averages()
    try:
        return ka.table(sort_by="device_time_total", row_limit=rows, max_name_column_width=70)
    except Exception:
        return ka.table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=70)


def _section(out, title, fn):
    out.append(f"\n===== {title}")
    t = time.time()
    try:
        out.append(fn())
    except Exception:
        out.append(traceback.format_exc()[-3000:])
    out.append(f"[{time.time() - t:.1f} s]")
    print(f"{title}: {out[-1]}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    import cupy as cp
    import gpu_suite as S
    import torch
    from cupyx.profiler import benchmark

    import autograd_gpu as ag
    from autograd_gpu.backend import cublas

    B, W, L = (1024, 1024, 6) if args.quick else (8192, 4096, 6)
    x, y, ws, bs = S._mlp_data(B, W, L)
    from autograd_gpu.backend import backend_for
    from autograd_gpu.backend.kernels import cast as cast_kernels
    from autograd_gpu.dtypes import bfloat16

    gbk = backend_for("cuda:0")
    out = [f"model: batch {B}, width {W}, layers {L}; device {S.device_info()}; CuPy ufuncs take "
           f"bfloat16 with float32 directly: {gbk.mixed_floats_ok({bfloat16, cp.dtype('f4')})}; "
           f"cast kernel: {cast_kernels.FAMILY.ready(gbk)}"]
    amp = ag.AmpConfig(enabled=True, precision_mode=ag.PrecisionMode.BFLOAT16,
                       loss_scaler=ag.LossScaler.none())

    def ag_table(amp_cfg):
        step = S._ag_mlp(x, y, ws, bs, 1e-3, amp=amp_cfg)
        return _kernel_table(step)

    def torch_table(autocast):
        step = S._torch_mlp(x, y, ws, bs, 1e-3, autocast=autocast)
        return _kernel_table(step)

    def ag_ops(amp_cfg):
        step = S._ag_mlp(x, y, ws, bs, 1e-3, amp=amp_cfg)
        step()
        cp.cuda.Device().synchronize()
        with ag.profiler.profile(sync=True) as prof:
            step()
        return prof.table(limit=30)

    _section(out, "autograd_gpu fp32 step: CUDA kernels (3 steps)", lambda: ag_table(None))
    _section(out, "torch fp32 step: CUDA kernels (3 steps)", lambda: torch_table(None))
    _section(out, "autograd_gpu bf16 AMP step: CUDA kernels (3 steps)", lambda: ag_table(amp))
    _section(out, "torch bf16 autocast step: CUDA kernels (3 steps)",
             lambda: torch_table(torch.bfloat16))
    _section(out, "autograd_gpu fp32 step: ops (sync)", lambda: ag_ops(None))
    _section(out, "autograd_gpu bf16 AMP step: ops (sync)", lambda: ag_ops(amp))

    def gemms():
        from autograd_gpu.dtypes import bfloat16

        lines = []
        for dt in (cp.float32, bfloat16):
            a = cp.asarray(x).astype(dt)
            w = cp.asarray(ws[0]).astype(dt)
            cases = {"x@w": (a, w), "x.T@g": (a.T, a), "g@w.T": (a, w.T)}
            for name, (p, q) in cases.items():
                tc = benchmark(cp.matmul, (p, q), n_repeat=10, n_warmup=2).gpu_times.mean()
                td = benchmark(cublas.matmul, (p, q), n_repeat=10, n_warmup=2).gpu_times.mean()
                tp, tq = torch.from_dlpack(p), torch.from_dlpack(q)
                tt = benchmark(torch.matmul, (tp, tq), n_repeat=10, n_warmup=2).gpu_times.mean()
                lines.append(f"{str(cp.dtype(dt)):<9} {name:<6} cupy {tc * 1e3:8.3f} ms  "
                             f"cublas-direct {td * 1e3:8.3f} ms  torch {tt * 1e3:8.3f} ms")
        return "\n".join(lines)

    _section(out, "GEMM paths (gpu time per call)", gemms)

    def elementwise():
        a = cp.asarray(x)
        b = cp.asarray(bs[0])
        ta, tb = torch.from_dlpack(a), torch.from_dlpack(b)
        from autograd_gpu.dtypes import bfloat16

        cases = [
            ("relu", lambda: cp.maximum(a, 0), lambda: torch.relu(ta)),
            ("x+b", lambda: a + b, lambda: ta + tb),
            ("g*(y>0)", lambda: a * (a > 0), lambda: torch.threshold_backward(ta, ta, 0)),
            ("sum(axis=0)", lambda: a.sum(axis=0), lambda: ta.sum(0)),
            ("ones@g", lambda: cp.ones((1, a.shape[0]), a.dtype) @ a, lambda: ta.sum(0)),
            ("astype bf16", lambda: a.astype(bfloat16), lambda: ta.to(torch.bfloat16)),
            ("mean((h-y)**2)", lambda: ((a - a) ** 2).mean(), lambda: ((ta - ta) ** 2).mean()),
        ]
        lines = []
        for name, fc, ft in cases:
            try:
                tc = benchmark(fc, n_repeat=20, n_warmup=3).gpu_times.mean()
                tt = benchmark(ft, n_repeat=20, n_warmup=3).gpu_times.mean()
                lines.append(f"{name:<16} cupy {tc * 1e3:7.3f} ms  torch {tt * 1e3:7.3f} ms")
            except Exception as exc:
                lines.append(f"{name:<16} failed: {type(exc).__name__}: {exc}"[:300])
        return "\n".join(lines)

    _section(out, "elementwise and reductions on (batch, width) float32", elementwise)

    def chain_host():
        """Where the host time of the eager 1,000-op chain goes (16-element arrays: launch
        bound), and what one CuPy launch costs on this host."""
        import cProfile
        import io
        import pstats

        import numpy as np

        n = 1000
        chain = S._ag_chain(n)
        xx = ag.Tensor.from_array(np.linspace(-1, 1, 16).astype(np.float32), device="cuda:0")
        for _ in range(3):
            chain(xx)
        cp.cuda.Device().synchronize()
        t = time.perf_counter()
        for _ in range(5):
            chain(xx)
        cp.cuda.Device().synchronize()
        lines = [f"eager chain: {(time.perf_counter() - t) / 5 / n * 1e6:.2f} us/op (host clock)"]
        a = cp.asarray(np.ones(16, np.float32))
        ta = torch.from_dlpack(a)
        ek = cp.ElementwiseKernel("T g, T t", "T y", "y = g - g * t * t", "prof_ek")
        for name, fn in [("cupy a * 1.01", lambda: a * 1.01), ("cupy a + a", lambda: a + a),
                         ("cupy tanh(a)", lambda: cp.tanh(a)),
                         ("ElementwiseKernel(a, a)", lambda: ek(a, a)),
                         ("cupy.empty(16)", lambda: cp.empty(16, cp.float32)),
                         ("torch a * 1.01", lambda: ta * 1.01)]:
            lines.append(f"{name:<26} {S.host_us_per_call(fn, 5000, 200):6.2f} us/call")
        pr = cProfile.Profile()
        pr.enable()
        chain(xx)
        pr.disable()
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(30)
        return "\n".join(lines) + "\n" + buf.getvalue()[-6000:]

    _section(out, "eager chain: host time", chain_host)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_profile.txt"), "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
