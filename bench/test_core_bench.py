"""Core-engine benchmarks (issue 2), CPU. Run: pytest bench/test_core_bench.py --benchmark-only

* chain: 1,000 tiny elementwise ops on 8 float32 values, forward + backward: 250 repeats of
  y = y + tanh(sin(y)) * c (sin, tanh, mul, add; a residual chain, so the gradient neither
  vanishes nor explodes and can be checked). Peers in the same run: the same chain written by
  hand in NumPy (forward and the matching backward: the floor for any NumPy-based engine) and
  PyTorch eager when installed.
* mlp: one training step, batch 256, width 1024, 4 layers, ReLU, MSE, SGD, float32, against the
  same step written by hand in NumPy.
The comparisons are ``test_chain_interleaved`` and ``test_mlp_step_interleaved``: they alternate
the sides in rounds and store the median and spread of the per-round ratios in their
``extra_info`` (``-s`` prints them). The other benchmarks time one side each, one after another:
their absolute times are for pytest-benchmark's own comparisons between runs on a quiet machine.
"""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.bench import make_ag_mlp_step, mlp_data, mlp_sizes, mlp_step_by_hand

N_OPS = 1000
REPS = N_OPS // 4
RESULTS: dict = {}


def _report(name, benchmark, per=1.0):
    if benchmark.stats is None:  # --benchmark-disable: the body ran once as a test
        return
    RESULTS[name] = benchmark.stats.stats.min / per
    benchmark.extra_info["min_s"] = RESULTS[name]


@pytest.fixture(scope="module", autouse=True)
def _print_times():
    yield
    lines = []
    for key, unit, scale in (("chain_ag", "us/op", 1e6), ("chain_numpy", "us/op", 1e6),
                             ("chain_torch", "us/op", 1e6), ("mlp_ag", "ms", 1e3),
                             ("mlp_numpy", "ms", 1e3)):
        if key in RESULTS:
            lines.append(f"{key}: {RESULTS[key] * scale:.2f} {unit} (best, sequential)")
    if lines:
        print("\n" + "\n".join(lines) + "\n(sequential bests are not comparable on a busy "
              "machine: see the *_interleaved benchmarks' ratios)")


def _chain_inputs():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, 8).astype(np.float32)
    c = np.full(8, 0.1, np.float32)
    return x, c


def test_chain_autograd_gpu(benchmark):
    x0, c0 = _chain_inputs()
    c = ag.Tensor.from_array(c0)

    def step():
        tape = ag.GradientTape()
        x = tape.watch(ag.Tensor.from_array(x0))
        y = x
        for _ in range(REPS):
            y = y + ag.tanh(ag.sin(y)) * c
        (g,) = tape.gradient(y, [x])
        return g

    g = benchmark(step)
    _report("chain_ag", benchmark, N_OPS)
    ref = _numpy_chain(x0, c0)
    assert np.all(np.abs(ref) > 1e-30)  # a gradient that can be compared
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-4)


def _numpy_chain(x, c):
    """The chain's forward and hand-written backward in NumPy."""
    ys = []
    y = x
    for _ in range(REPS):
        t = np.tanh(np.sin(y))
        ys.append((y, t))
        y = y + t * c
    g = np.ones_like(x)
    for y, t in reversed(ys):
        g = g + g * c * (1 - t * t) * np.cos(y)
    return g


def test_chain_numpy(benchmark):
    x0, c0 = _chain_inputs()
    benchmark(_numpy_chain, x0, c0)
    _report("chain_numpy", benchmark, N_OPS)


def test_chain_torch(benchmark):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    x0, c0 = _chain_inputs()
    c = torch.from_numpy(c0)

    def step():
        x = torch.from_numpy(x0).requires_grad_(True)
        y = x
        for _ in range(REPS):
            y = y + torch.tanh(torch.sin(y)) * c
        (g,) = torch.autograd.grad(y, [x], torch.ones_like(y))
        return g

    g = benchmark(step)
    _report("chain_torch", benchmark, N_OPS)
    np.testing.assert_allclose(g.numpy(), _numpy_chain(x0, c0), rtol=1e-4)


# ---- MLP training step --------------------------------------------------------------------

# the model, its data and both sides are autograd_gpu.bench's (the `python -m autograd_gpu.bench`
# case), so this benchmark and the CLI time the same step
B, W, L = mlp_sizes(gpu=False)


def test_mlp_step_autograd_gpu(benchmark):
    step, _ = make_ag_mlp_step(B, W, L)
    benchmark(step)
    _report("mlp_ag", benchmark)


def test_mlp_step_numpy(benchmark):
    x0, y0, ws, bs = mlp_data(B, W, L)
    benchmark(mlp_step_by_hand, np, x0, y0, ws, bs)
    _report("mlp_numpy", benchmark)


def test_mlp_step_matches_numpy():
    """Same numbers: one step of each from the same start."""
    step, params = make_ag_mlp_step(B, W, L)
    loss = step()
    x0, y0, ws0, bs0 = mlp_data(B, W, L)
    ref_loss = float(mlp_step_by_hand(np, x0, y0, ws0, bs0))
    assert loss.to_scalar() == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(params[0].numpy(), ws0[0], rtol=1e-4, atol=1e-6)


def test_mlp_step_interleaved(benchmark, interleaved):
    """autograd_gpu's MLP step against the same step written by hand in NumPy (and PyTorch when
    installed), one BLAS / PyTorch thread, 30 interleaved rounds (three warm-up steps first: the
    first steps fault in every array). Prints the ratios (-s)."""
    step, _ = make_ag_mlp_step(B, W, L)
    x0, y0, ws, bs = mlp_data(B, W, L)
    sides = {"autograd_gpu": step, "numpy": lambda: mlp_step_by_hand(np, x0, y0, ws, bs)}
    try:
        import torch

        torch.set_num_threads(1)
        from autograd_gpu.bench import _case_mlp, _Env

        sides["torch"] = _case_mlp(_Env(ag.Device("cpu"), ("torch",), 1)).peers["torch"][0]
    except ImportError:
        pass
    with ag.blas_threads(1):
        for fn in sides.values():
            fn()
            fn()
        info = interleaved(benchmark, sides, rounds=30, calls=1)
    print("\ninterleaved mlp step (process CPU time, 1 thread): "
          + "; ".join(f"{k[6:-7]} median ratio {v:.3f}x" for k, v in info.items()
                      if k.endswith("_median"))
          + f" (autograd_gpu best {info['ours_best_s'] * 1e3:.1f} ms; {ag.host_memory_pool()})")


def test_chain_interleaved(benchmark, interleaved):
    """The 1,000-op chain against PyTorch eager (1 thread) when installed and the same chain
    written by hand in NumPy: 12 rounds, each the best of 5 calls of every side. Prints the
    median ratios (-s)."""
    x0, c0 = _chain_inputs()
    c = ag.Tensor.from_array(c0)

    def ours():
        tape = ag.GradientTape()
        x = tape.watch(ag.Tensor.from_array(x0))
        y = x
        for _ in range(REPS):
            y = y + ag.tanh(ag.sin(y)) * c
        return tape.gradient(y, [x])[0].numpy()

    sides = {"autograd_gpu": ours, "numpy": lambda: _numpy_chain(x0, c0)}
    try:
        import torch

        torch.set_num_threads(1)
        ct = torch.from_numpy(c0)

        def theirs():
            x = torch.from_numpy(x0).requires_grad_(True)
            y = x
            for _ in range(REPS):
                y = y + torch.tanh(torch.sin(y)) * ct
            return torch.autograd.grad(y, [x], torch.ones_like(y))[0].numpy()

        np.testing.assert_allclose(ours(), theirs(), rtol=1e-4)
        sides["torch"] = theirs
    except ImportError:
        pass
    info = interleaved(benchmark, sides, rounds=12, calls=5, per=N_OPS)
    print(f"\ninterleaved chain (process CPU time): autograd_gpu {info['ours_best_s'] * 1e6:.2f} "
          "us/op (best); " + "; ".join(
              f"{k[6:-7]} median ratio {v:.2f}x" for k, v in info.items()
              if k.endswith("_median")))
