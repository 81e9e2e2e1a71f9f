"""ag.linalg benchmarks against PyTorch (CPU, float64, one thread each), value and gradient
together, interleaved in rounds (see bench/conftest.py). Run:
pytest bench/test_linalg_bench.py --benchmark-only -s

* gp_nll: the negative log likelihood of a Gaussian process, n = 512 points in 2-d, squared-
  exponential kernel with log length scale, log signal variance and log noise as parameters:
  K = s2 exp(-D / (2 l^2)) + noise I, L = cholesky(K), alpha = cho_solve((L, lower), y),
  nll = y.alpha / 2 + sum(log diag L) + n log(2 pi) / 2, and its gradient in the three
  parameters (ag.linalg.cholesky + cho_solve against torch.linalg.cholesky + cholesky_solve).
* eigh: f(X) = sum(c * w) + sum(C * V * V) for (w, V) = eigh(X + X^T), n = 256, and its
  gradient in X (sign-invariant in the eigenvectors, so both libraries' eigenvectors agree).
Both check that the two sides' values and gradients agree before timing. The printed ratios are
ours / PyTorch's per-round process CPU times (median, 25th-75th percentile), with the load
average.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import autograd_gpu as ag

N_GP = 512
N_EIG = 256


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def _gp_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (N_GP, 2))
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    y = np.sin(x[:, 0]) * np.cos(x[:, 1]) + 0.1 * rng.standard_normal(N_GP)
    theta = np.array([math.log(0.8), math.log(1.3), math.log(0.05)])
    return d, y, theta


def _gp_ours(d0, y0):
    d = ag.Tensor.from_array(d0)
    y = ag.Tensor.from_array(y0[:, None])
    eye = ag.Tensor.from_array(np.eye(N_GP))
    const = 0.5 * N_GP * math.log(2 * math.pi)

    def run(theta0):
        theta = ag.Tensor.from_array(theta0)
        with ag.GradientTape() as tape:
            tape.watch(theta)
            k = ag.exp(theta[1] - 0.5 * d * ag.exp(-2.0 * theta[0])) + ag.exp(theta[2]) * eye
            low = ag.linalg.cholesky(k)
            alpha = ag.linalg.cho_solve((low, True), y)
            nll = 0.5 * (y * alpha).sum() + ag.log(ag.einsum("ii->i", low)).sum() + const
        (g,) = tape.gradient(nll, [theta])
        return nll.to_scalar(), g.numpy()

    return run


def _gp_torch(torch, d0, y0):
    d = torch.from_numpy(d0)
    y = torch.from_numpy(y0[:, None])
    eye = torch.eye(N_GP, dtype=torch.float64)
    const = 0.5 * N_GP * math.log(2 * math.pi)

    def run(theta0):
        theta = torch.tensor(theta0, requires_grad=True)
        k = torch.exp(theta[1] - 0.5 * d * torch.exp(-2.0 * theta[0])) + torch.exp(theta[2]) * eye
        low = torch.linalg.cholesky(k)
        alpha = torch.cholesky_solve(y, low)
        nll = 0.5 * (y * alpha).sum() + torch.log(torch.diagonal(low)).sum() + const
        (g,) = torch.autograd.grad(nll, [theta])
        return nll.item(), g.numpy()

    return run


def _eig_data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N_EIG, N_EIG))
    c = rng.standard_normal(N_EIG)
    cm = rng.standard_normal((N_EIG, N_EIG))
    return x, c, cm


def _eig_ours(c0, cm0):
    c, cm = ag.Tensor.from_array(c0), ag.Tensor.from_array(cm0)

    def run(x0):
        x = ag.Tensor.from_array(x0)
        with ag.GradientTape() as tape:
            tape.watch(x)
            w, v = ag.linalg.eigh(x + x.swapaxes(-1, -2))
            f = (c * w).sum() + (cm * v * v).sum()
        (g,) = tape.gradient(f, [x])
        return f.to_scalar(), g.numpy()

    return run


def _eig_torch(torch, c0, cm0):
    c, cm = torch.from_numpy(c0), torch.from_numpy(cm0)

    def run(x0):
        x = torch.tensor(x0, requires_grad=True)
        w, v = torch.linalg.eigh(x + x.T)
        f = (c * w).sum() + (cm * v * v).sum()
        (g,) = torch.autograd.grad(f, [x])
        return f.item(), g.numpy()

    return run


def _compare(benchmark, interleaved, name, ours, theirs, arg, rounds, calls):
    v1, g1 = ours(arg)
    v2, g2 = theirs(arg)
    assert v1 == pytest.approx(v2, rel=1e-9)
    np.testing.assert_allclose(g1, g2, rtol=1e-6, atol=1e-9 * np.abs(g2).max())
    info = interleaved(benchmark, {"autograd_gpu": lambda: ours(arg),
                                   "torch": lambda: theirs(arg)}, rounds=rounds, calls=calls)
    print(f"\n{name} (value and gradient, float64, 1 thread, process CPU time): ours "
          f"{info['ours_best_s'] * 1e3:.2f} ms, torch {info['torch_best_s'] * 1e3:.2f} ms "
          f"(bests); ratio median {info['ratio_torch_median']:.3f}x "
          f"(p25 {info['ratio_torch_p25']:.3f}, p75 {info['ratio_torch_p75']:.3f}); {_load()}")
    return info


def test_gp_nll_interleaved(benchmark, interleaved):
    """Gaussian-process NLL, n = 512: cholesky + cho_solve + log-determinant and the gradient
    in three kernel parameters, against PyTorch (target: at most 1.2x)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    d, y, theta = _gp_data()
    with ag.blas_threads(1):
        _compare(benchmark, interleaved, "gp_nll n=512", _gp_ours(d, y), _gp_torch(torch, d, y),
                 theta, rounds=15, calls=3)


def test_eigh_backward_interleaved(benchmark, interleaved):
    """eigh, n = 256, value and gradient through eigenvalues and eigenvectors, against
    PyTorch (target: at most 1.2x)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    x, c, cm = _eig_data()
    with ag.blas_threads(1):
        _compare(benchmark, interleaved, "eigh n=256", _eig_ours(c, cm), _eig_torch(torch, c, cm),
                 x, rounds=15, calls=3)
