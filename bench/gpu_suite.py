"""GPU benchmark suite: autograd_gpu against PyTorch (and hand-written CuPy) on one GPU.

    PYTHONPATH=. python3 bench/gpu_suite.py --out gpu_bench.json [--quick]

Parts (each runs in its own child process with its own time limit, so a crash or a hang loses
only that part; the parent writes the JSON after every part):

* ``mlp_fp32`` / ``mlp_tf32``: one training step of an MLP, batch 8192, width 4096, 6 layers,
  ReLU, MSE, SGD. fp32: CuPy without TF32 and PyTorch with TF32 off; tf32: the child starts with
  ``CUPY_TF32=1`` (CuPy reads it when it initialises) and PyTorch with TF32 allowed. Peers:
  PyTorch, and the same step hand-written in CuPy. Target: autograd_gpu <= 1.05x PyTorch.
* ``chain``: 1,000 tiny ops (scalar mul/add/sub and tanh on 16 floats), forward + backward, in
  microseconds per op: eager against PyTorch eager (target <= 15 us/op), and through
  ``ag.cuda.graphed`` against a PyTorch CUDA graph (target <= 3 us/op); with the small-array
  kernels (kernels/small.cu) on and off, the host time of one launch by each route, and where
  the eager time goes: host time per op, the same chain on the NumPy backend (Python per op),
  and kernel launches per op (PyTorch's CUPTI profiler).
* ``checkpoint``: a 48-layer tanh MLP under ``ag.CheckpointConfig`` strategies (if the library
  has checkpointing): step time and the memory pool's high-water mark, PyTorch with and without
  ``checkpoint_sequential`` as peers.
* ``kernels``: softmax, log_softmax, layer_norm and cross_entropy forward + backward at
  8192 x 4096 in float32 and bfloat16: with the fused kernels, without them, and PyTorch.
* ``amp_bf16``: the MLP step under ``ag.AmpConfig(precision_mode="bfloat16")`` (if the library
  has AMP) against PyTorch autocast to bfloat16.
* ``distributed``: ``autograd_gpu.distributed`` on one GPU: the NCCL path with a world of one
  (collectives' values, a DataParallel MLP step's gradients equal to the tape's bit for bit, its
  step time against the plain step and against PyTorch DDP on NCCL with a world of one), and the
  host-staged MPI path with two ranks sharing the GPU (``mpiexec -n 2``; gradients against the
  average of each rank's own, step time). NCCL refuses two ranks on one GPU: multi-GPU figures
  wait for a machine with several GPUs.
* ``per_sample_grads``: per-example gradients (``ag.vmap(ag.grad(loss))`` over
  ``nn.functional_call``) of an MLP 64-256-256-10, cross-entropy, batch 4,096, float32 without
  TF32, against ``torch.func.vmap(torch.func.grad(...))`` (target <= 1.1x) and the same
  gradients written by hand in CuPy; the three agree first (batch 256). The model and the sides
  are bench/test_vmap_bench.py's (the CPU benchmark).

Times are medians of CUDA-event timings after warm-up; ratios are autograd_gpu / peer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (part, precision, time limit in seconds), in the order they run: the targets of open issues
# first (the suite's budget may run out before the last parts)
PARTS = [("chain", "fp32", 50), ("mlp_fp32", "fp32", 50), ("mlp_tf32", "tf32", 40),
         ("checkpoint", "fp32", 120), ("kernels", "fp32", 40), ("amp_bf16", "fp32", 40),
         ("distributed", "fp32", 150), ("per_sample_grads", "fp32", 60)]


# ---------------------------------------------------------------------------------------------
# timing


def host_us_per_call(fn, calls=3000, warmup=100):
    """Wall-clock microseconds per call of a launch-bound ``fn`` (the device is synchronised
    before and after the timed calls, so queued work is counted once)."""
    import cupy as cp

    for _ in range(warmup):
        fn()
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    cp.cuda.Device().synchronize()
    return (time.perf_counter() - t0) / calls * 1e6


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def time_cupy(fn, warmup, iters):
    """Median milliseconds of fn() between two CuPy events on the current stream."""
    import cupy as cp

    for _ in range(warmup):
        fn()
    cp.cuda.Device().synchronize()
    ts = []
    for _ in range(iters):
        s, e = cp.cuda.Event(), cp.cuda.Event()
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(cp.cuda.get_elapsed_time(s, e))
    return _median(ts)


def time_torch(fn, warmup, iters):
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    return _median(ts)


def _free():
    import gc

    gc.collect()
    try:
        import cupy as cp

        cp.get_default_memory_pool().free_all_blocks()
    except Exception:
        pass
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:
        pass


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


# ---------------------------------------------------------------------------------------------
# MLP step


def _mlp_data(B, W, L, seed=0):
    import cupy as cp

    rs = cp.random.RandomState(seed)
    x = rs.standard_normal((B, W), dtype=cp.float32)
    y = rs.standard_normal((B, W), dtype=cp.float32) * 0.1
    ws = [rs.standard_normal((W, W), dtype=cp.float32) * (1.0 / math.sqrt(W)) for _ in range(L)]
    bs = [cp.zeros((W,), dtype=cp.float32) for _ in range(L)]
    return x, y, ws, bs


def _ag_mlp(x, y, ws, bs, lr, amp=None):
    import autograd_gpu as ag

    X, Y = ag.Tensor.from_array(x), ag.Tensor.from_array(y)
    Ws = [ag.Variable(ag.Tensor.from_array(w)) for w in ws]
    Bs = [ag.Variable(ag.Tensor.from_array(b)) for b in bs]
    params = [p for pair in zip(Ws, Bs) for p in pair]
    opt = ag.optim.SGD(params, lr=lr) if hasattr(ag, "optim") else None
    L = len(ws)

    def step():
        tape = ag.GradientTape(amp=amp) if amp is not None else ag.GradientTape()
        with tape:
            h = X
            for i in range(L):
                h = h @ Ws[i] + Bs[i]
                if i < L - 1:
                    h = ag.relu(h)
            loss = ((h - Y) ** 2).mean()
        grads = tape.gradient(loss, params)
        if opt is not None:
            opt.step(grads)
        else:
            for p, g in zip(params, grads):
                p.data[...] -= lr * g.data
        return loss

    return step


def _cupy_mlp(x, y, ws, bs, lr):
    """The same step hand-written in CuPy (forward, backward, SGD)."""
    import cupy as cp

    ws = [w.copy() for w in ws]
    bs = [b.copy() for b in bs]
    L = len(ws)

    def step():
        hs = [x]
        h = x
        for i in range(L):
            z = h @ ws[i] + bs[i]
            h = cp.maximum(z, 0) if i < L - 1 else z
            hs.append(h)
        diff = h - y
        loss = (diff * diff).mean()
        d = diff * (2.0 / diff.size)
        for i in reversed(range(L)):
            hin = hs[i]
            dw = hin.T @ d
            db = d.sum(axis=0)
            if i > 0:
                d = d @ ws[i].T
                d *= hin > 0
            ws[i] -= lr * dw
            bs[i] -= lr * db
        return loss

    return step


def _torch_mlp(x, y, ws, bs, lr, autocast=None):
    import torch

    tx, ty = torch.from_dlpack(x).clone(), torch.from_dlpack(y).clone()
    tw = [torch.from_dlpack(w).clone().requires_grad_() for w in ws]
    tb = [torch.from_dlpack(b).clone().requires_grad_() for b in bs]
    params = [p for pair in zip(tw, tb) for p in pair]
    opt = torch.optim.SGD(params, lr=lr)
    L = len(ws)

    def fwd():
        h = tx
        for i in range(L):
            h = h @ tw[i] + tb[i]
            if i < L - 1:
                h = torch.relu(h)
        return ((h.float() - ty) ** 2).mean()

    def step():
        if autocast is not None:
            with torch.autocast("cuda", dtype=autocast):
                loss = fwd()
        else:
            loss = fwd()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def part_mlp(res, quick, precision):
    import torch

    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    res["CUPY_TF32"] = os.environ.get("CUPY_TF32", "")
    B, W, L = (1024, 1024, 6) if quick else (8192, 4096, 6)
    res["shape"] = {"batch": B, "width": W, "layers": L}
    lr = 1e-3
    iters = 5 if quick else 10
    x, y, ws, bs = _mlp_data(B, W, L)
    # first-step losses agree (the three compute the same function)
    ag_step = _ag_mlp(x, y, ws, bs, lr)
    res["loss_autograd_gpu"] = float(ag_step().numpy())
    res["autograd_gpu_ms"] = time_cupy(ag_step, 2, iters)
    del ag_step
    _free()
    cp_step = _cupy_mlp(x, y, ws, bs, lr)
    res["loss_cupy"] = float(cp_step())
    res["cupy_handwritten_ms"] = time_cupy(cp_step, 2, iters)
    del cp_step
    _free()
    t_step = _torch_mlp(x, y, ws, bs, lr)
    res["loss_torch"] = float(t_step().item())
    res["torch_ms"] = time_torch(t_step, 2, iters)
    del t_step
    _free()
    flops = 3 * 2 * B * W * W * L
    res["autograd_gpu_tflops"] = flops / (res["autograd_gpu_ms"] * 1e-3) / 1e12
    res["ratio_vs_torch"] = _ratio(res["autograd_gpu_ms"], res["torch_ms"])
    res["ratio_vs_cupy"] = _ratio(res["autograd_gpu_ms"], res["cupy_handwritten_ms"])
    res["target_ratio"] = 1.05
    res["meets_target"] = res["ratio_vs_torch"] is not None and res["ratio_vs_torch"] <= 1.05
    res["loss_rel_diff_vs_torch"] = abs(res["loss_autograd_gpu"] - res["loss_torch"]) / max(
        abs(res["loss_torch"]), 1e-30)


def part_amp(res, quick, precision):
    import torch

    import autograd_gpu as ag

    if not hasattr(ag, "AmpConfig"):
        res["skipped"] = "autograd_gpu has no AmpConfig"
        return
    B, W, L = (1024, 1024, 6) if quick else (8192, 4096, 6)
    res["shape"] = {"batch": B, "width": W, "layers": L}
    iters = 5 if quick else 10
    x, y, ws, bs = _mlp_data(B, W, L)
    cfg = ag.AmpConfig(enabled=True, precision_mode=ag.PrecisionMode.BFLOAT16,
                       loss_scaler=ag.LossScaler.none())
    ag_step = _ag_mlp(x, y, ws, bs, 1e-3, amp=cfg)
    res["loss_autograd_gpu"] = float(ag_step().numpy())
    res["autograd_gpu_ms"] = time_cupy(ag_step, 2, iters)
    del ag_step
    _free()
    t_step = _torch_mlp(x, y, ws, bs, 1e-3, autocast=torch.bfloat16)
    res["loss_torch"] = float(t_step().item())
    res["torch_ms"] = time_torch(t_step, 2, iters)
    del t_step
    _free()
    res["ratio_vs_torch"] = _ratio(res["autograd_gpu_ms"], res["torch_ms"])


# ---------------------------------------------------------------------------------------------
# chain of tiny ops


def _chain_op(y, i, tanh):
    """Op i of the chain (the same sequence for every framework)."""
    k = i % 4
    if k == 0:
        return y * 1.01
    if k == 1:
        return y + 0.01
    return tanh(y) if k == 2 else y - 0.005


def _ag_chain(n_ops):
    import autograd_gpu as ag

    def chain(x):
        with ag.GradientTape() as tape:
            tape.watch(x)
            y = x
            for i in range(n_ops):
                y = _chain_op(y, i, ag.tanh)
            s = y.sum()
        (gx,) = tape.gradient(s, [x])
        return s, gx

    return chain


def _chain_floor(res, chain, x, x0, n):
    """Where the eager chain's time goes, for the case 15 us/op is not met: host time per op
    (the call without waiting for the GPU), the same chain on the NumPy backend (Python and
    dispatch per op, no launches), and GPU work items per op (kernels, copies and sets, counted
    by PyTorch's CUPTI profiler, which sees every launch in the process, CuPy's included)."""
    import time

    import cupy as cp

    import autograd_gpu as ag

    def host_time(fn):
        best = math.inf
        for _ in range(5):
            cp.cuda.Device().synchronize()
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        cp.cuda.Device().synchronize()
        return best

    res["host_us_per_op"] = host_time(lambda: chain(x)) * 1e6 / n
    xc = ag.Tensor.from_array(x0)
    res["numpy_backend_us_per_op"] = host_time(lambda: chain(xc)) * 1e6 / n
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile

        cp.cuda.Device().synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            chain(x)
            cp.cuda.Device().synchronize()
        work = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        kernels = [e for e in work if not e.name.lower().startswith(("memcpy", "memset"))]
        res["gpu_work_items_per_op"] = len(work) / n
        res["kernel_launches_per_op"] = len(kernels) / n
    except Exception as exc:
        res["launch_count_error"] = f"{type(exc).__name__}: {exc}"[:500]
    _write_partial(res)


def _torch_chain_fn(n_ops):
    import torch

    def chain(x):
        y = x
        for i in range(n_ops):
            y = _chain_op(y, i, torch.tanh)
        return y.sum()

    return chain


def part_chain(res, quick, precision):
    import cupy as cp
    import numpy as np
    import torch

    import autograd_gpu as ag
    from autograd_gpu.backend.cupy_backend import _elementwise
    from autograd_gpu.backend.kernels import small as small_kernels

    n = 1000
    iters = 10 if quick else 20
    res["n_ops"] = n
    x0 = np.linspace(-1, 1, 16).astype(np.float32)
    chain = _ag_chain(n)
    x = ag.Tensor.from_array(x0, device="cuda:0")
    s_eager, g_eager = chain(x)
    g_ref = g_eager.numpy()
    ms = time_cupy(lambda: chain(x), 3, iters)
    res["autograd_gpu_eager_us_per_op"] = ms * 1e3 / n
    _write_partial(res)
    # the same chain with CuPy's kernels for every size (kernels/small.cu off): the A/B of the
    # small-array launch path, same process, same card
    from autograd_gpu.backend import backend_for

    gbk = backend_for("cuda:0")
    small_scalar = small_kernels.bind_scalar(gbk)
    gbk.small_kernels = False
    try:
        s_off, g_off = chain(x)
        res["small_path_grad_bitwise_equal"] = bool(np.array_equal(g_off.numpy(), g_ref))
        res["autograd_gpu_eager_us_per_op_without_small_kernels"] = time_cupy(
            lambda: chain(x), 3, iters) * 1e3 / n
    finally:
        gbk.small_kernels = True

    tchain = _torch_chain_fn(n)
    tx = torch.from_dlpack(cp.asarray(x0)).clone().requires_grad_()

    def t_step():
        s = tchain(tx)
        s.backward()
        tx.grad = None

    res["torch_eager_us_per_op"] = time_torch(t_step, 3, iters) * 1e3 / n
    s = tchain(tx)
    s.backward()
    res["grad_max_abs_diff_vs_torch"] = float(np.abs(tx.grad.cpu().numpy() - g_ref).max())
    tx.grad = None
    res["eager_ratio_vs_torch"] = _ratio(res["autograd_gpu_eager_us_per_op"],
                                         res["torch_eager_us_per_op"])
    res["eager_target_us_per_op"] = 15.0
    _write_partial(res)
    _chain_floor(res, chain, x, x0, n)

    # host cost of one launch (16 elements: launch bound), for the eager numbers above
    a = cp.asarray(x0)
    ta = torch.from_dlpack(a)
    launches = {"cupy_a_times_python_float": lambda: a * 1.01,
                "cupy_a_plus_a": lambda: a + a,
                "autograd_gpu_scalar_op": lambda: gbk.scalar_op("mul", a, 1.01),
                "autograd_gpu_small_kernel": lambda: small_scalar(
                    "mul", a, np.float32(1.01)),
                "autograd_gpu_elementwise_kernel": lambda: _elementwise("mul")(
                    a, np.float32(1.01)),
                "torch_a_times_python_float": lambda: ta * 1.01}
    # what a launch through RawKernel would cost instead (the floor a hand-rolled dispatch of
    # tiny elementwise ops could reach): with its output allocated per call, and without
    raw = cp.RawKernel(r"""extern "C" __global__ void scale(const float* x, float* y, float s,
        long long n) { long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
        if (i < n) y[i] = x[i] * s; }""", "scale")
    if a.dtype == cp.float32:
        out = cp.empty_like(a)
        n_el = np.int64(a.size)
        s32 = np.float32(1.01)
        launches["rawkernel_preallocated"] = lambda: raw((1,), (128,), (a, out, s32, n_el))
        launches["rawkernel_with_empty_like"] = lambda: raw(
            (1,), (128,), (a, cp.empty_like(a), s32, n_el))
    for name, fn in launches.items():
        res[f"launch_us_{name}"] = host_us_per_call(fn)
    _write_partial(res)

    # CUDA graph: autograd_gpu
    try:
        gstep = ag.cuda.graphed(chain, warmup=2)
        for _ in range(3):
            out = gstep(x)
        res["graph_grad_max_abs_diff_vs_eager"] = float(np.abs(out[1].numpy() - g_ref).max())
        res["autograd_gpu_graph_us_per_op"] = time_cupy(lambda: gstep(x), 3, iters) * 1e3 / n
        res["graph_target_us_per_op"] = 3.0
    except Exception as exc:
        res["autograd_gpu_graph_error"] = f"{type(exc).__name__}: {exc}"[:2000]
    _write_partial(res)

    # CUDA graph: PyTorch
    try:
        sx = torch.from_dlpack(cp.asarray(x0)).clone().requires_grad_()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                tchain(sx).backward()
                sx.grad = None
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            tchain(sx).backward()
        res["torch_graph_us_per_op"] = time_torch(graph.replay, 3, iters) * 1e3 / n
    except Exception as exc:
        res["torch_graph_error"] = f"{type(exc).__name__}: {exc}"[:2000]
    res["graph_ratio_vs_torch"] = _ratio(res.get("autograd_gpu_graph_us_per_op"),
                                         res.get("torch_graph_us_per_op"))


# ---------------------------------------------------------------------------------------------
# fused kernels against the xp paths and PyTorch


def part_kernels(res, quick, precision):
    """softmax, log_softmax, layer_norm and cross_entropy, forward + backward through the public
    API (8192 x 4096), with the fused kernels, without them (AUTOGRAD_GPU_KERNELS off for the
    backend), and in PyTorch."""
    import cupy as cp
    import torch
    import torch.nn.functional as tF

    import autograd_gpu as ag
    from autograd_gpu import dtypes as _dt
    from autograd_gpu.backend.kernels import loader
    N, C = (1024, 1024) if quick else (8192, 4096)
    res["shape"] = [N, C]
    iters = 10
    rs = cp.random.RandomState(2)
    x32 = rs.standard_normal((N, C), dtype=cp.float32)
    g32 = rs.standard_normal((N, C), dtype=cp.float32)
    labels = rs.randint(0, C, size=N).astype(cp.int64)
    L = ag.Tensor.from_array(labels)
    ops = {
        "softmax": (lambda X: ag.softmax(X, axis=-1), lambda t: torch.softmax(t, -1), True),
        "log_softmax": (lambda X: ag.log_softmax(X, axis=-1),
                        lambda t: torch.log_softmax(t, -1), True),
        "layer_norm": (lambda X: ag.layer_norm(X, C), lambda t: tF.layer_norm(t, (C,)), True),
        "cross_entropy": (lambda X: ag.cross_entropy(X, L, reduction="none"),
                          None, False),
    }
    tl = torch.from_dlpack(labels).clone()
    for dname, dt, tdt in (("float32", cp.float32, torch.float32),
                           ("bfloat16", _dt.bfloat16, torch.bfloat16)):
        xa = x32.astype(dt)
        X = ag.Tensor.from_array(xa)
        for name, (fn, tfn, full_g) in ops.items():
            key = f"{name}_{dname}"
            G = ag.Tensor.from_array(g32.astype(dt) if full_g else
                                     cp.ones((N,), dtype=cp.float32).astype(dt))

            def step(fn=fn, G=G):
                with ag.GradientTape() as tape:
                    tape.watch(X)
                    y = fn(X)
                return tape.gradient(y, [X], output_gradients=G)

            try:
                for flag, tag in ((True, "fused"), (False, "xp")):
                    loader.set_enabled(flag)
                    res[f"{key}_{tag}_ms"] = time_cupy(step, 2, iters)
            except Exception as exc:
                res[f"{key}_error"] = f"{type(exc).__name__}: {exc}"[:500]
            finally:
                loader.set_enabled(None)
            try:
                xt = torch.from_dlpack(xa.astype(cp.float32)).to(tdt).requires_grad_()
                if name == "cross_entropy":
                    gt = torch.ones(N, device="cuda", dtype=tdt)

                    def tstep(xt=xt, gt=gt):
                        tF.cross_entropy(xt, tl, reduction="none").backward(gt)
                        xt.grad = None
                else:
                    gt = torch.from_dlpack(g32).to(tdt)

                    def tstep(xt=xt, gt=gt, tfn=tfn):
                        tfn(xt).backward(gt)
                        xt.grad = None

                res[f"{key}_torch_ms"] = time_torch(tstep, 2, iters)
            except Exception as exc:
                res[f"{key}_torch_error"] = f"{type(exc).__name__}: {exc}"[:500]
            res[f"{key}_fused_vs_torch"] = _ratio(res.get(f"{key}_fused_ms"),
                                                  res.get(f"{key}_torch_ms"))
            res[f"{key}_fused_vs_xp"] = _ratio(res.get(f"{key}_fused_ms"),
                                               res.get(f"{key}_xp_ms"))
            _write_partial(res)


# ---------------------------------------------------------------------------------------------
# checkpointing


def part_checkpoint(res, quick, precision):
    """Issue 5's model on the GPU: 48 tanh layers (Linear with bias), batch 8192, width 2048.
    autograd_gpu rows come from bench/test_checkpoint_bench.checkpoint_suite (peak activation
    memory = peak pool use of a step at batch 2B minus the same step's peak at batch B, from a
    CuPy memory hook, so weights and weight gradients cancel; time = best of 3 steps). PyTorch
    eager with and without checkpoint_sequential is measured the same way
    (max_memory_allocated), in the same process."""
    import cupy as cp
    import torch

    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    from test_checkpoint_bench import checkpoint_suite, make_model

    B, W, L = (1024, 512, 48) if quick else (8192, 2048, 48)
    res["shape"] = {"batch": B, "width": W, "layers": L}
    rows = checkpoint_suite(depth=L, width=W, batch=B, device="cuda:0", reps=3)
    res["autograd_gpu"] = rows
    _write_partial(res)
    Ws, bs = make_model(L, W, "float32", "cuda:0")
    tws = [torch.from_dlpack(w.data).clone().requires_grad_() for w in Ws]
    tbs = [torch.from_dlpack(b.data).clone().requires_grad_() for b in bs]
    del Ws, bs
    _free()
    rs = cp.random.RandomState(1)
    x2 = torch.from_dlpack(rs.standard_normal((2 * B, W), dtype=cp.float32))
    x = x2[:B]

    class Layer(torch.nn.Module):
        def __init__(self, w, b):
            super().__init__()
            self.w, self.b = w, b

        def forward(self, h):
            return torch.tanh(h @ self.w + self.b)

    from torch.utils.checkpoint import checkpoint_sequential

    seq = torch.nn.Sequential(*[Layer(w, b) for w, b in zip(tws, tbs)])
    params = tws + tbs

    def make(xin, segs):
        def tstep():
            h = seq(xin) if segs is None else checkpoint_sequential(seq, segs, xin,
                                                                    use_reentrant=False)
            return torch.autograd.grad((h * h).sum(), params)
        return tstep

    def peak(step):
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        g = step()
        torch.cuda.synchronize()
        del g
        return (torch.cuda.max_memory_allocated() - base) / 2**20

    trows = []
    for name, segs in (("none", None), ("checkpoint_sequential_7", 7),
                       ("checkpoint_sequential_12", 12)):
        try:
            act = peak(make(x2, segs)) - peak(make(x, segs))
            step = make(x, segs)
            ms = time_torch(step, 1, 3)
            trows.append({"name": name, "act_mb": act, "ms": ms})
        except Exception as exc:
            trows.append({"name": name, "error": f"{type(exc).__name__}: {exc}"[:500]})
    if trows and "act_mb" in trows[0]:
        for r in trows:
            if "act_mb" in r:
                r["saved_pct"] = 100.0 * (1.0 - r["act_mb"] / trows[0]["act_mb"])
                r["overhead_pct"] = 100.0 * (r["ms"] / trows[0]["ms"] - 1.0)
    res["torch"] = trows


# ---------------------------------------------------------------------------------------------
# distributed (autograd_gpu.distributed on one GPU)


def _dist_mlp(ag, B, W, L, device, seed=0):
    """(params, x, y, loss_of): an MLP on ``device`` with its batch."""
    import numpy as np

    rng = np.random.default_rng(seed)
    params = []
    for _ in range(L):
        params.append(ag.Variable((rng.standard_normal((W, W)) / np.sqrt(W)).astype(np.float32),
                                  device=device))
        params.append(ag.Variable(np.zeros(W, np.float32), device=device))
    x = ag.Tensor.from_array(rng.standard_normal((B, W)).astype(np.float32), device=device)
    y = ag.Tensor.from_array(rng.standard_normal((B, W)).astype(np.float32), device=device)

    def loss_of(xb, yb):
        h = xb
        for i in range(L):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < L - 1:
                h = ag.relu(h)
        d = h - yb
        return (d * d).mean()

    return params, x, y, loss_of


def part_distributed(res, quick, precision):
    import cupy as cp
    import numpy as np

    import autograd_gpu as ag
    import autograd_gpu.distributed as dist
    from autograd_gpu.distributed.nccl import nccl_status

    ok, why = nccl_status()
    res["nccl_status"] = why
    B, W, L = (512, 1024, 4) if quick else (4096, 4096, 6)
    res["shape"] = {"batch": B, "width": W, "layers": L}
    if ok:
        dist.init(backend="nccl", timeout_s=60)
        try:
            t = ag.Tensor.from_array(np.arange(1 << 20, dtype=np.float32), device="cuda")
            checks = {
                "sum": dist.all_reduce(t), "mean": dist.all_reduce(t, "mean"),
                "max": dist.all_reduce(t, "max"), "fixed": dist.all_reduce(t, deterministic=True),
                "bcast": dist.broadcast(t), "gather": dist.all_gather(t)[0],
            }
            want = t.numpy()
            res["nccl_collectives_equal"] = {k: bool(np.array_equal(v.numpy(), want))
                                             for k, v in checks.items()}
            params, x, y, loss_of = _dist_mlp(ag, B, W, L, "cuda")
            dp = dist.DataParallel(params)
            res["nccl_transport"] = type(dist.group.world("bench").comm_for(
                params[0]._data, "bench")).__name__

            def plain():
                with ag.GradientTape() as tape:
                    loss = loss_of(x, y)
                return tape.gradient(loss, params)

            def dp_step():
                with ag.GradientTape() as tape:
                    loss = loss_of(x, y)
                return dp.gradient(tape, loss)

            same = all(bool(cp.array_equal(a._data, b._data)) for a, b in zip(plain(),
                                                                               dp_step()))
            res["nccl_dp_grads_bitwise_equal_tape"] = same
            iters = 5 if quick else 20
            res["plain_step_ms"] = time_cupy(plain, 3, iters)
            res["nccl_dp_step_ms"] = time_cupy(dp_step, 3, iters)
            res["nccl_dp_overhead"] = _ratio(res["nccl_dp_step_ms"], res["plain_step_ms"])
            res["nccl_dp_buckets"] = len(dp.buckets)
            res["nccl_dp_exposed_ms"] = 1e3 * dp.last_step["exposed_s"]
        finally:
            dist.shutdown()
        try:
            res["torch_ddp_nccl_step_ms"] = _torch_ddp_one(B, W, L, quick)
            res["ratio_vs_torch_ddp"] = _ratio(res["nccl_dp_step_ms"],
                                               res["torch_ddp_nccl_step_ms"])
        except Exception as exc:
            res["torch_ddp_error"] = f"{type(exc).__name__}: {exc}"[:500]
    _write_partial(res)
    # two ranks sharing the GPU: MPI staged through the host
    # next to this Python (pip install mpich), else on PATH (tools/gpu_check.sh unpacks a
    # carried MPICH wheel there)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = shutil.which("mpiexec") or mpiexec
    if not os.path.exists(mpiexec):
        res["mpi_staged"] = "skipped: mpiexec not installed (pip install autograd_gpu[distributed])"
        return
    out = os.path.join(os.path.dirname(os.path.abspath(_PARTIAL_PATH or "x")), ".dist_ranks.json")
    cmd = [mpiexec, "-n", "2", sys.executable, os.path.abspath(__file__), "--dist-worker", out]
    cmd += ["--quick"] if quick else []
    env = dict(os.environ, UCX_LOG_LEVEL="error")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=100)
    res["mpi_staged_rc"] = r.returncode
    if r.returncode != 0 or not os.path.exists(out):
        res["mpi_staged_tail"] = (r.stdout + r.stderr)[-3000:]
        return
    with open(out) as f:
        res["mpi_staged"] = json.load(f)
    os.remove(out)


def _torch_ddp_one(B, W, L, quick):
    """PyTorch DDP on NCCL with a world of one: its step time (ms)."""
    import torch
    import torch.distributed as td
    from torch.nn.parallel import DistributedDataParallel as DDP

    td.init_process_group("nccl", init_method="tcp://127.0.0.1:29533", rank=0, world_size=1)
    try:
        layers = []
        for i in range(L):
            layers.append(torch.nn.Linear(W, W))
            if i < L - 1:
                layers.append(torch.nn.ReLU())
        model = DDP(torch.nn.Sequential(*layers).cuda(), device_ids=[0])
        x = torch.randn(B, W, device="cuda")
        y = torch.randn(B, W, device="cuda")

        def step():
            model.zero_grad(set_to_none=True)
            ((model(x) - y) ** 2).mean().backward()

        return time_torch(step, 3, 5 if quick else 20)
    finally:
        td.destroy_process_group()


def dist_worker(out, quick):
    """One of two ranks on the same GPU (part_distributed): MPI staged through the host."""
    import cupy as cp
    import numpy as np

    import autograd_gpu as ag
    import autograd_gpu.distributed as dist

    g = dist.init(backend="mpi", timeout_s=60)
    B, W, L = (256, 1024, 4) if quick else (1024, 4096, 4)
    params, x, y, loss_of = _dist_mlp(ag, B, W, L, "cuda", seed=0)
    xr = x + g.rank  # each rank its own batch
    dp = dist.DataParallel(params)

    def local():
        with ag.GradientTape() as tape:
            loss = loss_of(xr, y)
        return tape.gradient(loss, params)

    def dp_step():
        with ag.GradientTape() as tape:
            loss = loss_of(xr, y)
        return dp.gradient(tape, loss)

    mine = [a.numpy().astype(np.float64) for a in local()]
    every = dist.all_gather(ag.Tensor(np.concatenate([m.ravel() for m in mine])))
    want = every.numpy().mean(axis=0)
    got = np.concatenate([a.numpy().astype(np.float64).ravel() for a in dp_step()])
    err = float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-30))
    iters = 3 if quick else 10
    t_local = time_cupy(local, 2, iters)
    dist.barrier()
    t_dp = time_cupy(dp_step, 2, iters)
    if g.rank == 0:
        with open(out, "w") as f:
            json.dump({"ranks": g.size, "transport": type(g.comm_for(params[0]._data,
                                                                     "bench")).__name__,
                       "grad_rel_error_vs_average": err, "local_step_ms": t_local,
                       "dp_step_ms": t_dp, "buckets": len(dp.buckets),
                       "exposed_ms": 1e3 * dp.last_step["exposed_s"],
                       "batch": B, "width": W, "layers": L, "cupy": cp.__version__}, f)
    dist.barrier()
    return 0


# ---------------------------------------------------------------------------------------------
# per-sample gradients (ag.vmap)


def part_per_sample_grads(res, quick, precision):
    import cupy as cp
    import numpy as np
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    from test_vmap_bench import SIZES, by_hand, ours, per_sample_data, torch_func

    def sync():
        cp.cuda.Device().synchronize()

    # the sides agree first, on a batch small enough to compare on the host
    small = per_sample_data(256)
    ref = ours(small, "cuda", sync)[1]()
    for name, side in (("torch", torch_func(small, "cuda")), ("cupy", by_hand(small, cp))):
        got = side[1]()
        res[f"max_abs_diff_vs_{name}"] = float(np.abs(got - ref).max())
        res[f"agrees_with_{name}"] = bool(np.allclose(got, ref, rtol=2e-4, atol=2e-6))
    B = 512 if quick else 4096
    iters = 5 if quick else 20
    res["shape"] = {"batch": B, "sizes": list(SIZES), "dtype": "float32"}
    data = per_sample_data(B)
    step = ours(data, "cuda")[0]
    res["autograd_gpu_ms"] = time_cupy(step, 3, iters)
    del step
    _free()
    step = by_hand(data, cp)[0]
    res["cupy_handwritten_ms"] = time_cupy(step, 3, iters)
    del step
    _free()
    step = torch_func(data, "cuda")[0]
    res["torch_ms"] = time_torch(step, 3, iters)
    del step
    _free()
    res["ratio_vs_torch"] = _ratio(res["autograd_gpu_ms"], res["torch_ms"])
    res["ratio_vs_cupy"] = _ratio(res["autograd_gpu_ms"], res["cupy_handwritten_ms"])
    res["target_ratio"] = 1.1
    res["meets_target"] = res["ratio_vs_torch"] is not None and res["ratio_vs_torch"] <= 1.1


# ---------------------------------------------------------------------------------------------
# driver

_PARTIAL_PATH = None


def _write_partial(res):
    if _PARTIAL_PATH:
        with open(_PARTIAL_PATH, "w") as f:
            json.dump(res, f, indent=1, default=str)


def run_child(part, precision, quick, out_path):
    global _PARTIAL_PATH
    _PARTIAL_PATH = out_path
    res = {"part": part, "precision": precision, "ok": False}
    t0 = time.time()
    try:
        fn = {"mlp_fp32": part_mlp, "mlp_tf32": part_mlp, "chain": part_chain,
              "kernels": part_kernels, "checkpoint": part_checkpoint, "amp_bf16": part_amp,
              "distributed": part_distributed, "per_sample_grads": part_per_sample_grads}[part]
        fn(res, quick, precision)
        res["ok"] = True
    except Exception as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        res["traceback"] = traceback.format_exc()[-4000:]
    res["wall_s"] = time.time() - t0
    _write_partial(res)
    print(json.dumps({k: v for k, v in res.items() if k != "traceback"}, default=str),
          flush=True)
    return 0 if res["ok"] else 1


def device_info():
    info = {}
    try:
        import cupy as cp

        props = cp.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["cupy"] = cp.__version__
        info["cuda_runtime"] = cp.cuda.runtime.runtimeGetVersion()
    except Exception as exc:
        info["cupy_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import torch

        info["torch"] = torch.__version__
    except Exception as exc:
        info["torch_error"] = f"{type(exc).__name__}: {exc}"
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_bench.json")
    ap.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    ap.add_argument("--parts", default=",".join(p for p, _, _ in PARTS))
    ap.add_argument("--part", help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--dist-worker", help=argparse.SUPPRESS)  # a rank of part_distributed
    ap.add_argument("--budget", type=float, default=190.0,
                    help="seconds for the whole suite; parts that would not fit are skipped")
    args = ap.parse_args(argv)
    if args.dist_worker:
        return dist_worker(args.dist_worker, args.quick)
    if args.part:
        return run_child(args.part, args.precision, args.quick, args.out)

    t_start = time.time()
    report = {"suite": "autograd_gpu GPU benchmark", "quick": args.quick,
              "device": device_info(), "parts": {}}
    wanted = set(args.parts.split(","))
    out_dir = os.path.dirname(os.path.abspath(args.out))
    for part, precision, limit in PARTS:
        if part not in wanted:
            continue
        left = args.budget - (time.time() - t_start)
        if left < 20:
            report["parts"][part] = {"skipped": f"suite budget spent ({left:.0f} s left)"}
            continue
        limit = min(limit, left)
        child_out = os.path.join(out_dir, f".gpu_suite_{part}.json")
        if os.path.exists(child_out):
            os.remove(child_out)
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                    else "")
        env.pop("CUPY_TF32", None)
        if precision == "tf32":
            env["CUPY_TF32"] = "1"
        cmd = [sys.executable, os.path.abspath(__file__), "--part", part, "--precision",
               precision, "--out", child_out] + (["--quick"] if args.quick else [])
        t0 = time.time()
        try:
            r = subprocess.run(cmd, env=env, timeout=limit, capture_output=True, text=True)
            rc, tail = r.returncode, (r.stdout + r.stderr)[-3000:]
        except subprocess.TimeoutExpired as exc:
            rc = "timeout"
            out = (exc.stdout or b"") + (exc.stderr or b"")
            tail = (out.decode(errors="replace") if isinstance(out, bytes) else out)[-3000:]
        res = {}
        if os.path.exists(child_out):
            try:
                with open(child_out) as f:
                    res = json.load(f)
            except Exception as exc:
                res = {"read_error": str(exc)}
            os.remove(child_out)
        res["returncode"] = rc
        res["seconds"] = round(time.time() - t0, 1)
        if rc != 0:
            res["output_tail"] = tail
        report["parts"][part] = res
        report["elapsed_s"] = round(time.time() - t_start, 1)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"[gpu_suite] {part}: rc={rc} in {res['seconds']} s", flush=True)
    print(summary(report), flush=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1, default=str)
    return 0


def _fmt(v, nd=2):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def summary(report) -> str:
    p = report["parts"]
    lines = [f"device: {report['device'].get('gpu', '?')}"]
    for k in ("mlp_fp32", "mlp_tf32", "amp_bf16"):
        r = p.get(k, {})
        lines.append(f"{k:10s} autograd_gpu {_fmt(r.get('autograd_gpu_ms'))} ms  torch "
                     f"{_fmt(r.get('torch_ms'))} ms  cupy {_fmt(r.get('cupy_handwritten_ms'))} ms"
                     f"  ratio {_fmt(r.get('ratio_vs_torch'), 3)}"
                     + (f"  ERROR {r.get('error')}" if r.get("error") else ""))
    c = p.get("chain", {})
    lines.append(f"chain eager {_fmt(c.get('autograd_gpu_eager_us_per_op'))} us/op (without "
                 f"small.cu {_fmt(c.get('autograd_gpu_eager_us_per_op_without_small_kernels'))})"
                 f"  torch "
                 f"{_fmt(c.get('torch_eager_us_per_op'))} us/op; graph "
                 f"{_fmt(c.get('autograd_gpu_graph_us_per_op'))} us/op  torch graph "
                 f"{_fmt(c.get('torch_graph_us_per_op'))} us/op"
                 + (f"  ERROR {c.get('error') or c.get('autograd_gpu_graph_error')}"
                    if c.get("error") or c.get("autograd_gpu_graph_error") else ""))
    lines.append(f"chain floor: host {_fmt(c.get('host_us_per_op'))} us/op, NumPy backend "
                 f"{_fmt(c.get('numpy_backend_us_per_op'))} us/op, kernel launches/op "
                 f"{_fmt(c.get('kernel_launches_per_op'))}"
                 + (f"  ERROR {c.get('launch_count_error')}" if c.get("launch_count_error")
                    else ""))
    lines.append("launch us: " + ", ".join(f"{n[10:]}={_fmt(v)}" for n, v in c.items()
                                           if n.startswith("launch_us_")))
    kk = p.get("kernels", {})
    lines.append("kernels (fused/xp/torch ms) " + ", ".join(
        f"{n[:-9]}={_fmt(kk.get(n))}/{_fmt(kk.get(n[:-9] + '_xp_ms'))}/"
        f"{_fmt(kk.get(n[:-9] + '_torch_ms'))}" for n in kk if n.endswith("_fused_ms")))
    k = p.get("checkpoint", {})
    for side in ("autograd_gpu", "torch"):
        lines.append(f"checkpoint {side} (saved% / time+%): " + ", ".join(
            f"{r['name']}={_fmt(r.get('saved_pct'), 0)}/{_fmt(r.get('overhead_pct'), 0)}"
            if "error" not in r else f"{r['name']}=ERROR" for r in k.get(side, [])))
    d = p.get("distributed", {})
    m = d.get("mpi_staged") if isinstance(d.get("mpi_staged"), dict) else {}
    lines.append(f"distributed: NCCL world of 1 DP step {_fmt(d.get('nccl_dp_step_ms'))} ms vs "
                 f"plain {_fmt(d.get('plain_step_ms'))} ms (x{_fmt(d.get('nccl_dp_overhead'), 3)})"
                 f", torch DDP {_fmt(d.get('torch_ddp_nccl_step_ms'))} ms; grads equal "
                 f"{d.get('nccl_dp_grads_bitwise_equal_tape')}; MPI staged 2 ranks DP "
                 f"{_fmt(m.get('dp_step_ms'))} ms vs local {_fmt(m.get('local_step_ms'))} ms, "
                 f"error {_fmt(m.get('grad_rel_error_vs_average'), 8)}"
                 + (f"  ERROR {d.get('error')}" if d.get("error") else ""))
    v = p.get("per_sample_grads", {})
    lines.append(f"per-sample grads (vmap) batch {v.get('shape', {}).get('batch', '?')}: "
                 f"autograd_gpu {_fmt(v.get('autograd_gpu_ms'))} ms  torch.func "
                 f"{_fmt(v.get('torch_ms'))} ms  cupy {_fmt(v.get('cupy_handwritten_ms'))} ms"
                 f"  ratio {_fmt(v.get('ratio_vs_torch'), 3)} (target 1.1); agree torch "
                 f"{v.get('agrees_with_torch')} cupy {v.get('agrees_with_cupy')}"
                 + (f"  ERROR {v.get('error')}" if v.get("error") else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
