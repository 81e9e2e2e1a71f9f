"""ag.integrate.odeint against JAX's jax.experimental.ode.odeint (CPU, float64): the adjoint
gradient of a Lotka-Volterra fit, value and gradient together, interleaved in rounds (see
bench/conftest.py). Run: pytest bench/test_odeint_bench.py --benchmark-only -s

The model: three species, dy/dt = y * (r + A y) (r (3,), A (3, 3)), fitted to data at the
output times; the loss is the sum of squared residuals and the gradient is taken in r, A and
y0 (ag.value_and_grad through odeint's adjoint; jax.value_and_grad through JAX's).

* lv_1000: 1,000 output times on [0, 30], rtol = atol = 1.4e-8 (the defaults): the forward
  solve takes about 130 steps (outputs come from the interpolant) and the adjoint solve one or
  more steps in each of the 999 intervals (JAX's reverse pass restarts at every output time).
* lv_steps: 50 output times on [0, 30], rtol = atol = 1e-13: about 1,000 forward steps.

JAX's odeint jit-compiles its solver internally (jax.experimental.ode wraps it in jax.jit), so
"eager JAX" here is jax.value_and_grad without an outer jit: the step loops run compiled
(XLA while loops), the Python around them eagerly. jit of the whole value_and_grad is reported
for information. Ours runs its stepping loop in Python over NumPy arrays, with func traced once
per call and replayed (autograd_gpu/_odetrace.py); the adjoint's batched right-hand side is
traced on the first call and its program reused by the later ones (as JAX reuses its
compiled solver), so the warm-up round pays that trace. The printed ratios are ours / JAX's
per-round process CPU times (median, 25th-75th percentile), with the load average.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import autograd_gpu as ag

R = np.array([1.0, -0.5, -0.8])
A = np.array([[-0.1, -0.4, 0.0], [0.3, -0.05, -0.2], [0.0, 0.25, -0.05]])
Y0 = np.array([1.0, 0.8, 0.5])


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def _lv(y, t, r, a):
    return y * (r + a @ y)


def _data(ts, tol):
    t = ag.Tensor.from_array(ts)
    ys = ag.integrate.odeint(_lv, ag.Tensor.from_array(Y0), t, ag.Tensor.from_array(R),
                             ag.Tensor.from_array(A), rtol=tol, atol=tol)
    rng = np.random.default_rng(0)
    return ys.numpy() * (1.0 + 0.01 * rng.standard_normal(ys.shape))


def _ours(ts, data, tol):
    t, d = ag.Tensor.from_array(ts), ag.Tensor.from_array(data)

    def loss(r, a, y0):
        ys = ag.integrate.odeint(_lv, y0, t, r, a, rtol=tol, atol=tol)
        return ag.sum(ag.square(ys - d))

    vg = ag.value_and_grad(loss, argnums=(0, 1, 2))

    def run(p):
        v, g = vg(*(ag.Tensor.from_array(x) for x in p))
        return v.to_scalar(), [x.numpy() for x in g]

    return run


def _jax(ts, data, tol, jit):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from jax.experimental.ode import odeint  # (optional: only this benchmark needs JAX)

    jnp = jax.numpy
    t, d = jnp.asarray(ts), jnp.asarray(data)

    def lv(y, tt, r, a):
        return y * (r + a @ y)

    def loss(r, a, y0):
        return jnp.sum(jnp.square(odeint(lv, y0, t, r, a, rtol=tol, atol=tol) - d))

    vg = jax.value_and_grad(loss, argnums=(0, 1, 2))
    if jit:
        vg = jax.jit(vg)

    def run(p):
        v, g = vg(*(jnp.asarray(x) for x in p))
        return float(v), [np.asarray(x) for x in g]

    return run


def _compare(benchmark, interleaved, name, ts, tol, rounds):
    data = _data(ts, tol)
    params = (R * 1.05, A * 0.97, Y0 * 1.02)
    ours, eager, jitted = _ours(ts, data, tol), _jax(ts, data, tol, False), _jax(ts, data,
                                                                                  tol, True)
    v1, g1 = ours(params)
    for other in (eager, jitted):
        v2, g2 = other(params)
        assert v1 == pytest.approx(v2, rel=1e-6)
        for a, b in zip(g1, g2):  # both are the exact solution's gradient to the tolerances
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max())
    info = interleaved(benchmark, {"autograd_gpu": lambda: ours(params),
                                   "jax_eager": lambda: eager(params),
                                   "jax_jit": lambda: jitted(params)}, rounds=rounds, calls=1)
    print(f"\n{name} (value and adjoint gradient, float64, process CPU time): ours "
          f"{info['ours_best_s'] * 1e3:.1f} ms, JAX eager {info['jax_eager_best_s'] * 1e3:.1f} "
          f"ms, JAX jit {info['jax_jit_best_s'] * 1e3:.1f} ms (bests); ratio to eager JAX "
          f"median {info['ratio_jax_eager_median']:.2f}x (p25 {info['ratio_jax_eager_p25']:.2f}, "
          f"p75 {info['ratio_jax_eager_p75']:.2f}); to jit JAX {info['ratio_jax_jit_median']:.2f}x;"
          f" {_load()}")
    return info


def test_lv_1000_outputs_interleaved(benchmark, interleaved):
    """1,000 output times: the adjoint solve restarts in each of 999 intervals (target: at most
    1.5x eager JAX)."""
    _compare(benchmark, interleaved, "lv_1000", np.linspace(0.0, 30.0, 1000), 1.4e-8, rounds=7)


def test_lv_1000_steps_interleaved(benchmark, interleaved):
    """About 1,000 forward steps between 50 output times (rtol = atol = 1e-13)."""
    _compare(benchmark, interleaved, "lv_steps", np.linspace(0.0, 30.0, 50), 1e-13, rounds=7)
