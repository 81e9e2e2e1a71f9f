"""The registry-wide rules test (DESIGN.md section 6).

For every differentiable primitive, on inputs drawn by its own sampler, in float64:
  * vjp and jvp against central differences along random directions,
  * the adjoint identity <u, J v> = <J^T u, v>,
  * batched tangents/cotangents against one-at-a-time sweeps,
  * a second-order check: the gradient of <vjp(u), w> against central differences of it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autograd_gpu as ag
from autograd_gpu.ops.registry import REGISTRY, apply, call_jvp, raw

DIFF_OPS = sorted(n for n, op in REGISTRY.items() if op.differentiable)
EPS = 1e-6


def _is_diff_input(a):
    return isinstance(a, np.ndarray) and a.dtype == np.float64


def _tensors(inputs):
    return [ag.Tensor.from_array(a, device="cpu") if isinstance(a, np.ndarray) else a
            for a in inputs]


def _forward(op, inputs, params):
    return apply(op, *_tensors(inputs), **params).numpy()


def _shift(inputs, dirs, h):
    return [np.asarray(a + h * d) if d is not None else a for a, d in zip(inputs, dirs)]


def _fd(fn, inputs, dirs):
    return (fn(_shift(inputs, dirs, EPS)) - fn(_shift(inputs, dirs, -EPS))) / (2 * EPS)


def _vjp(op, inputs, params, u, persistent=False):
    ts = _tensors(inputs)
    tape = ag.GradientTape(persistent=persistent)
    diff = [t for t, a in zip(ts, inputs) if _is_diff_input(a)]
    tape.watch(diff)
    y = apply(op, *ts, **params)
    grads = tape.gradient(y, diff, output_gradients=ag.Tensor.from_array(u, device="cpu"),
                          unconnected_gradients="zero")
    return [g.numpy() for g in grads]


def _jvp(op, inputs, params, tangents):
    bk = ag.backend.backend_for("cpu")
    out, saved = op.forward(bk, *inputs, **params)
    out = np.asarray(out)
    metas = [(np.shape(a), getattr(a, "dtype", None)) for a in inputs]
    t = call_jvp(op, raw(bk), tuple(tangents), saved, params, metas, out.ndim)
    return np.broadcast_to(np.asarray(t), t.shape[: t.ndim - out.ndim] + out.shape) \
        if t is not None else None


def _close(a, b, scale):
    return abs(a - b) <= 1e-6 * (1.0 + scale)


@pytest.mark.parametrize("name", DIFF_OPS)
def test_op_declares_rules_sampler_and_cost(name):
    op = REGISTRY[name]
    missing = [k for k in ("forward", "vjp", "jvp", "sample", "cost") if getattr(op, k) is None]
    assert not missing, f"op {name!r} lacks {missing}"
    assert op.doc, f"op {name!r} has no docstring with its formula"


@pytest.mark.parametrize("name", DIFF_OPS)
@given(data=st.data())
def test_rules_match_central_differences(name, data):
    op = REGISTRY[name]
    inputs, params = op.sample(data.draw)
    inputs = list(inputs)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    y = _forward(op, inputs, params)
    assume_float = y.dtype == np.float64
    assert assume_float, f"{name}: sampler must produce float64 outputs, got {y.dtype}"
    u = rng.standard_normal(y.shape)
    dirs = [rng.standard_normal(np.shape(a)) if _is_diff_input(a) else None for a in inputs]
    diff_idx = [i for i, d in enumerate(dirs) if d is not None]
    if not diff_idx:
        pytest.skip("sampler drew no differentiable input")

    fd = _fd(lambda xs: _forward(op, xs, params), inputs, dirs)
    ref = float(np.sum(u * fd))
    scale = float(np.sum(np.abs(u * fd))) + 1.0

    # reverse mode
    grads = _vjp(op, inputs, params, u)
    for i, g in zip(diff_idx, grads):
        assert g.shape == np.shape(inputs[i]), f"{name}: vjp shape {g.shape} for input {i}"
    vjp_val = sum(float(np.sum(g * dirs[i])) for i, g in zip(diff_idx, grads))
    assert _close(vjp_val, ref, scale), f"{name}: vjp {vjp_val} vs central differences {ref}"

    # forward mode
    tan = _jvp(op, inputs, params, dirs)
    jvp_val = float(np.sum(u * tan))
    assert tan.shape == y.shape, f"{name}: jvp shape {tan.shape}, output {y.shape}"
    assert _close(jvp_val, ref, scale), f"{name}: jvp {jvp_val} vs central differences {ref}"
    assert _close(jvp_val, vjp_val, scale), f"{name}: adjoint identity {jvp_val} vs {vjp_val}"

    # batched tangents and cotangents
    dirs2 = [None if d is None else rng.standard_normal(d.shape) for d in dirs]
    batch_t = [None if d is None else np.stack([d, d2]) for d, d2 in zip(dirs, dirs2)]
    tb = _jvp(op, inputs, params, batch_t)
    assert np.allclose(tb[0], tan, atol=1e-9), f"{name}: batched jvp[0] differs"
    assert np.allclose(tb[1], _jvp(op, inputs, params, dirs2), atol=1e-9), f"{name}: jvp[1]"
    u2 = rng.standard_normal(y.shape)
    ts = _tensors(inputs)
    tape = ag.GradientTape()
    diff = [ts[i] for i in diff_idx]
    tape.watch(diff)
    yt = apply(op, *ts, **params)
    seeds = [(yt, np.stack([u, u2]))]
    gb = tape.backward(seeds, [t._node for t in diff], batch_nd=1)
    g2 = _vjp(op, inputs, params, u2)
    for k, g in enumerate(gb):
        # None: a structurally zero gradient (relu_grad's in x)
        g = np.zeros((2,) + grads[k].shape) if g is None else g.numpy()
        assert np.allclose(g[0], grads[k], atol=1e-9), f"{name}: batched vjp[0]"
        assert np.allclose(g[1], g2[k], atol=1e-9), f"{name}: batched vjp[1]"

    # second order: d/dx <vjp_x(u), w> along v
    ws = [rng.standard_normal(np.shape(inputs[i])) for i in diff_idx]

    def h_of(xs):
        gs = _vjp(op, xs, params, u)
        return np.asarray(sum(float(np.sum(g * w)) for g, w in zip(gs, ws)))

    fd2 = float(_fd(h_of, inputs, dirs))
    ts = _tensors(inputs)
    diff = [ts[i] for i in diff_idx]
    with ag.GradientTape() as outer:
        outer.watch(diff)
        with ag.GradientTape() as inner:
            inner.watch(diff)
            yt = apply(op, *ts, **params)
        gs = inner.gradient(yt, diff, output_gradients=ag.Tensor.from_array(u, device="cpu"),
                            unconnected_gradients="zero")
        h = None
        for g, w in zip(gs, ws):
            term = (g * ag.Tensor.from_array(w, device="cpu")).sum()
            h = term if h is None else h + term
    hs = outer.gradient(h, diff, unconnected_gradients="zero")
    so = sum(float(np.sum(g.numpy() * dirs[i])) for i, g in zip(diff_idx, hs))
    scale2 = abs(fd2) + sum(float(np.sum(np.abs(g.numpy() * dirs[i])))
                            for i, g in zip(diff_idx, hs)) + 1.0
    assert abs(so - fd2) <= 1e-5 * scale2, f"{name}: second order {so} vs {fd2}"
