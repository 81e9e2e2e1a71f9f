"""FFT convolution benchmark against PyTorch (CPU, float64, one thread each), value and gradient
together, interleaved in rounds (see bench/conftest.py). Run:
pytest bench/test_fft_bench.py --benchmark-only -s

* fft_convolve: two signals of 2^16 samples, y = ag.signal.convolve(a, b, method="fft") (full
  mode: rfftn of both zero-padded to 2^17 = next_fast_len(2^17 - 1), their product, irfftn,
  cropped to 2^17 - 1), the loss sum(w * y), and its gradient in both signals. PyTorch's side
  is the same computation written with torch.fft.rfft/irfft (it has no fftconvolve).
Checks that both sides' values and gradients agree before timing. The printed ratio is ours /
PyTorch's per-round process CPU time (median, 25th-75th percentile), with the load average.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import autograd_gpu as ag

N = 2 ** 16


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal(N), rng.standard_normal(N), rng.standard_normal(2 * N - 1)


def _ours(w0):
    w = ag.Tensor.from_array(w0)

    def run(a0, b0):
        a, b = ag.Tensor.from_array(a0), ag.Tensor.from_array(b0)
        with ag.GradientTape() as tape:
            tape.watch([a, b])
            y = ag.signal.convolve(a, b, method="fft")
            loss = (w * y).sum()
        ga, gb = tape.gradient(loss, [a, b])
        return loss.to_scalar(), ga.numpy(), gb.numpy()

    return run


def _torch(torch, w0):
    w = torch.from_numpy(w0)
    full = 2 * N - 1
    size = 2 * N  # next_fast_len(2^17 - 1) = 2^17

    def run(a0, b0):
        a = torch.tensor(a0, requires_grad=True)
        b = torch.tensor(b0, requires_grad=True)
        y = torch.fft.irfft(torch.fft.rfft(a, n=size) * torch.fft.rfft(b, n=size), n=size)[:full]
        loss = (w * y).sum()
        ga, gb = torch.autograd.grad(loss, [a, b])
        return loss.item(), ga.numpy(), gb.numpy()

    return run


def test_fft_convolve_interleaved(benchmark, interleaved):
    """FFT convolution of two 2^16 signals, value and gradient, against PyTorch (target: at
    most 1.2x)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    a, b, w = _data()
    ours, theirs = _ours(w), _torch(torch, w)
    v1, ga1, gb1 = ours(a, b)
    v2, ga2, gb2 = theirs(a, b)
    assert v1 == pytest.approx(v2, rel=1e-9)
    np.testing.assert_allclose(ga1, ga2, rtol=1e-7, atol=1e-9 * np.abs(ga2).max())
    np.testing.assert_allclose(gb1, gb2, rtol=1e-7, atol=1e-9 * np.abs(gb2).max())
    info = interleaved(benchmark, {"autograd_gpu": lambda: ours(a, b),
                                   "torch": lambda: theirs(a, b)}, rounds=15, calls=3)
    print(f"\nfft_convolve 2x2^16 (value and gradient, float64, 1 thread, process CPU time): "
          f"ours {info['ours_best_s'] * 1e3:.2f} ms, torch {info['torch_best_s'] * 1e3:.2f} ms "
          f"(bests); ratio median {info['ratio_torch_median']:.3f}x "
          f"(p25 {info['ratio_torch_p25']:.3f}, p75 {info['ratio_torch_p75']:.3f}); {_load()}")
