"""Per-sample gradients benchmark (ag.vmap), CPU: an MLP 64-256-256-10 with ReLU, cross-entropy,
batch 256, float32; the gradient of each example's loss with respect to every parameter
(``vmap(grad(loss), in_axes=(None, 0, 0))`` over ``nn.functional_call``), in one run against:

* ``torch.func.vmap(torch.func.grad(...))`` over ``torch.func.functional_call`` (target: ours
  <= 1.0x);
* JAX's ``jax.vmap(jax.grad(...))``, eager and ``jax.jit``-compiled (reported, no target);
* the same gradients written by hand in NumPy (one GEMM per layer forward and backward, the
  per-example weight gradients as one broadcast outer product per layer): the floor for any
  NumPy-based engine.

Run: ``pytest bench/test_vmap_bench.py --benchmark-only -s`` (peers are optional: ``pip install
torch jax jaxlib``). ``test_per_sample_gradients_interleaved`` alternates the sides in rounds,
one thread each (BLAS, PyTorch intra-op, XLA), process CPU time, and stores the median and
spread of the per-round ratios ours / peer in its extra_info (printed with -s). Every peer's
gradients are checked against ours before timing. ``per_sample_sides`` is shared with the GPU
suite (bench/gpu_suite.py, part ``per_sample_grads``: batch 4,096 against torch.func).
"""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag

SIZES = (64, 256, 256, 10)
BATCH = 256
NAMES = ("0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias")


def per_sample_data(batch, sizes=SIZES, seed=0):
    """Inputs, labels and (in, out) weights / biases as float32 NumPy arrays."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params.append((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32))
        params.append((rng.standard_normal(b) * 0.1).astype(np.float32))
    return x, y, params


def _flat(grads) -> np.ndarray:
    """(batch, total) per-example gradients, parameters in NAMES order, (in, out) weights."""
    return np.concatenate([np.asarray(g, dtype=np.float64).reshape(g.shape[0], -1)
                           for g in grads], axis=1)


def ours(data, device="cpu", sync=lambda: None):
    """(step, result) for autograd_gpu: vmap(grad) over nn.functional_call."""
    x0, y0, ps = data
    dev = ag.Device(device)
    model = ag.nn.Sequential(*[m for a, b in zip(SIZES[:-1], SIZES[1:])
                               for m in (ag.nn.Linear(a, b, device=dev), ag.nn.ReLU())][:-1])
    params = {n: ag.Tensor.from_array(p, device=dev) for n, p in zip(NAMES, ps)}
    x, y = ag.Tensor.from_array(x0, device=dev), ag.Tensor.from_array(y0, device=dev)

    def loss(p, xb, yb):
        return ag.cross_entropy(ag.nn.functional_call(model, p, xb[None]), yb[None])

    per_example = ag.vmap(ag.grad(loss), in_axes=(None, 0, 0))

    def step():
        g = per_example(params, x, y)
        sync()
        return g

    def result():
        g = per_example(params, x, y)
        return _flat([g[n].numpy() for n in NAMES])

    return step, result


def by_hand(data, xp=np):
    """(step, result): the same per-example gradients written by hand (NumPy or CuPy)."""
    x0, y0, ps = data
    x, y = xp.asarray(x0), xp.asarray(y0)
    ps = [xp.asarray(p) for p in ps]
    n = x.shape[0]

    def grads():
        hs, h = [x], x
        for i in range(0, len(ps), 2):
            h = h @ ps[i] + ps[i + 1]
            if i + 2 < len(ps):
                h = xp.maximum(h, 0)
            hs.append(h)
        z = h - h.max(axis=1, keepdims=True)
        e = xp.exp(z)
        g = e / e.sum(axis=1, keepdims=True)
        g[xp.arange(n), y] -= 1.0  # each example's own loss: no 1/batch
        out = [None] * len(ps)
        for i in range(len(ps) - 2, -1, -2):
            a = hs[i // 2]
            out[i] = a[:, :, None] * g[:, None, :]  # per-example outer products
            out[i + 1] = g
            if i:
                g = (g @ ps[i].T) * (a > 0)
        return out

    return grads, lambda: _flat([_host(g) for g in grads()])


def _host(a):
    return a.get() if hasattr(a, "get") else a


def torch_func(data, device="cpu", sync=lambda: None):
    """(step, result) for torch.func.vmap(torch.func.grad(...)) over functional_call."""
    import torch
    from torch import func

    x0, y0, ps = data
    layers = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(device)
    # torch's Linear keeps (out, in) weights
    params = {n: torch.from_numpy(p.T.copy() if p.ndim == 2 else p).to(device)
              for n, p in zip(NAMES, ps)}
    x, y = torch.from_numpy(x0).to(device), torch.from_numpy(y0).to(device)

    def loss(p, xb, yb):
        out = func.functional_call(model, p, (xb[None],))
        return torch.nn.functional.cross_entropy(out, yb[None])

    per_example = func.vmap(func.grad(loss), in_dims=(None, 0, 0))

    def step():
        g = per_example(params, x, y)
        sync()
        return g

    def result():
        g = per_example(params, x, y)
        return _flat([g[n].transpose(1, 2).cpu().numpy() if g[n].ndim == 3 else
                      g[n].cpu().numpy() for n in NAMES])

    return step, result


def jax_grads(data, jit):
    """(step, result) for jax.vmap(jax.grad(...)), eager or jit-compiled."""
    import jax
    import jax.numpy as jnp

    x0, y0, ps = data
    x, y = jnp.asarray(x0), jnp.asarray(y0)
    params = [jnp.asarray(p) for p in ps]

    def loss(p, xb, yb):
        h = xb
        for i in range(0, len(p), 2):
            h = h @ p[i] + p[i + 1]
            if i + 2 < len(p):
                h = jax.nn.relu(h)
        return -jax.nn.log_softmax(h)[yb]

    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))
    if jit:
        per_example = jax.jit(per_example)

    def step():
        return jax.block_until_ready(per_example(params, x, y))

    return step, lambda: _flat([np.asarray(g) for g in per_example(params, x, y)])


def per_sample_sides(batch, peers=("numpy", "torch", "jax"), device="cpu"):
    """{name: (step, result)}: autograd_gpu and each installed peer on the same data."""
    data = per_sample_data(batch)
    sides = {"autograd_gpu": ours(data, device)}
    if "numpy" in peers and device == "cpu":
        sides["numpy"] = by_hand(data)
    if "torch" in peers:
        try:
            sides["torch.func"] = torch_func(data, device)
        except ImportError:
            pass
    if "jax" in peers and device == "cpu":
        try:
            sides["jax"] = jax_grads(data, jit=False)
            sides["jax.jit"] = jax_grads(data, jit=True)
        except ImportError:
            pass
    return sides


def _threads_one():
    """One thread for every side (XLA reads its flags when it starts)."""
    import os
    import sys

    if "jax" not in sys.modules:
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                           "intra_op_parallelism_threads=1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def test_per_sample_gradients_agree():
    """Every side computes the same per-example gradients (float32 tolerance), and they sum to
    the gradient of the summed loss."""
    _threads_one()
    sides = per_sample_sides(32)
    ref = sides["autograd_gpu"][1]()
    assert ref.shape == (32, sum(a * b + b for a, b in zip(SIZES[:-1], SIZES[1:])))
    for name, (_, result) in sides.items():
        np.testing.assert_allclose(result(), ref, rtol=2e-4, atol=2e-6, err_msg=name)
    x0, y0, ps = per_sample_data(32)
    params = [ag.Tensor.from_array(p) for p in ps]

    def total(*p):
        h = ag.Tensor.from_array(x0)
        for i in range(0, len(p), 2):
            h = h @ p[i] + p[i + 1]
            if i + 2 < len(p):
                h = ag.relu(h)
        return ag.cross_entropy(h, ag.Tensor.from_array(y0), reduction="sum")

    g = ag.grad(total, argnums=tuple(range(len(params))))(*params)
    np.testing.assert_allclose(ref.sum(0), _flat([a.numpy()[None] for a in g])[0], rtol=1e-3,
                               atol=1e-4)


def test_per_sample_gradients_interleaved(benchmark, interleaved):
    """autograd_gpu against every installed peer, 20 interleaved rounds of 3 calls each, one
    thread per side, process CPU time. Prints the median ratios (-s)."""
    _threads_one()
    sides = per_sample_sides(BATCH)
    ref = sides["autograd_gpu"][1]()
    for name, (_, result) in sides.items():
        np.testing.assert_allclose(result(), ref, rtol=2e-4, atol=2e-6, err_msg=name)
    with ag.blas_threads(1):
        for _, (step, _) in sides.items():
            step()  # warm-up (JAX compiles here)
        info = interleaved(benchmark, {k: v[0] for k, v in sides.items()}, rounds=20, calls=3)
    benchmark.extra_info.update(batch=BATCH, sizes=list(SIZES), dtype="float32")
    print(f"\ninterleaved per-sample gradients, MLP {'-'.join(map(str, SIZES))}, batch "
          f"{BATCH} (process CPU time, 1 thread): autograd_gpu best "
          f"{info['ours_best_s'] * 1e3:.2f} ms; " + "; ".join(
              f"{k[6:-7]} {v:.3f}x (p25 {info[k[:-7] + '_p25']:.3f}, p75 "
              f"{info[k[:-7] + '_p75']:.3f}; best {info[k[6:-7] + '_best_s'] * 1e3:.2f} ms)"
              for k, v in info.items() if k.endswith("_median")))


@pytest.mark.parametrize("side", ["autograd_gpu", "torch.func", "jax", "jax.jit", "numpy"])
def test_per_sample_gradients(benchmark, side):
    """Each side alone (sequential: for pytest-benchmark's comparisons between runs)."""
    _threads_one()
    sides = per_sample_sides(BATCH)
    if side not in sides:
        pytest.skip(f"{side} is not installed")
    step = sides[side][0]
    with ag.blas_threads(1):
        step()
        benchmark(step)
