"""GPU parity of every fused kernel against its numpy reference (float64 math on the same,
dtype-rounded inputs). Tolerances per dtype; skipped without a usable GPU (conftest)."""

from __future__ import annotations

import numpy as np
import pytest

from autograd_gpu import dtypes as _dt

pytestmark = pytest.mark.gpu

FLOATS = [np.float32, np.float16, _dt.bfloat16]
ALL = FLOATS + [np.float64]
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-5,
        np.dtype(np.float16): 4e-3, _dt.bfloat16: 3e-2}


@pytest.fixture(scope="module")
def bk():
    from autograd_gpu.backend import backend_for

    return backend_for("cuda:0")


@pytest.fixture(scope="module")
def ki():
    """The kernel entry points, by family module."""
    import types

    import autograd_gpu.amp as amp
    import autograd_gpu.clipping as clipping
    from autograd_gpu.backend.kernels import cast, dropout, small
    from autograd_gpu.optim import kernels as optim_kernels

    return types.SimpleNamespace(
        philox_words_device=dropout.philox_words_device, philox_words=dropout.philox_words,
        dropout_keep_numpy=dropout.dropout_keep_numpy, global_norm=clipping.fused_global_norm,
        clip_by_global_norm=clipping.fused_clip_by_global_norm, scale=clipping.fused_scale,
        unscale_and_check=amp.fused_unscale_and_check, sgd_momentum_=optim_kernels.sgd_momentum_,
        adam_=optim_kernels.adam_, same_bits=cast.same_bits, SMALL_OPS=small.SMALL_OPS,
        SMALL_MAX=small.SMALL_MAX)


@pytest.fixture(scope="module")
def K():
    """Each kernel entry with the backend bound, by its name (as the backend calls it)."""
    import functools

    from autograd_gpu.backend.kernels import (
        bias_act,
        cast,
        cross_entropy,
        dropout,
        elementwise,
        layer_norm,
        segment_sum,
        small,
        softmax,
    )

    mods = (softmax, cross_entropy, layer_norm, bias_act, segment_sum, dropout, elementwise,
            cast)
    bk_ = _bk()

    class Entries:
        def __getattr__(self, name):
            for m in mods:
                if name in m.FAMILY.entries:
                    return functools.partial(getattr(m, name), bk_)
            return getattr(small, name)(bk_)  # bind_scalar, bind_unary, bind_act_grad

    return Entries()


def _bk():
    from autograd_gpu.backend import backend_for

    return backend_for("cuda:0")


def _np(a):
    import cupy

    return cupy.asnumpy(a)


def _dev(bk, a):
    return bk.asarray(a)


def _close(got, ref, dtype, what="", k=1.0):
    """Relative error in the 2-norm, plus a loose elementwise bound."""
    got = np.asarray(_np(got), dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} vs {ref.shape}"
    if ref.size == 0:
        return
    assert np.all(np.isfinite(got) == np.isfinite(ref)), f"{what}: non-finite mismatch"
    fin = np.isfinite(ref)
    if not fin.any():
        return
    tol = RTOL[np.dtype(dtype)] * k
    err = np.linalg.norm(got[fin] - ref[fin]) / max(np.linalg.norm(ref[fin]), 1e-30)
    assert err <= tol, f"{what} ({_dt.name(dtype)}): relative error {err:.3g} > {tol:.3g}"
    scale = np.abs(ref[fin]).max()
    assert np.abs(got[fin] - ref[fin]).max() <= 10 * tol * (scale + 1e-30), f"{what}: max err"


def _data(shape, dtype, seed=0, lo=-3.0, hi=3.0):
    """(array in dtype, the same values in float64): references see the rounded inputs."""
    x = np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(dtype)
    return x, x.astype(np.float64)


def _softmax64(x):
    z = x - x.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _log_softmax64(x):
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


SHAPES = [(7, 33), (4, 5, 1000), (3, 4097), (2, 1), (64, 10)]


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_and_log_softmax(bk, ki, dtype, shape, K):
    x, x64 = _data(shape, dtype, 1)
    g, g64 = _data(shape, dtype, 2)
    y = K.softmax(_dev(bk, x))
    assert y.dtype == np.dtype(dtype)
    _close(y, _softmax64(x64), dtype, "softmax")
    ly = K.log_softmax(_dev(bk, x))
    _close(ly, _log_softmax64(x64), dtype, "log_softmax", k=2)
    # backward from the kernel's own outputs (as the ops do)
    y64 = _np(y).astype(np.float64)
    dx = K.softmax_grad(_dev(bk, g), y)
    _close(dx, y64 * (g64 - (g64 * y64).sum(-1, keepdims=True)), dtype, "softmax grad", k=4)
    ly64 = _np(ly).astype(np.float64)
    dlx = K.log_softmax_grad(_dev(bk, g), ly)
    _close(dlx, g64 - np.exp(ly64) * g64.sum(-1, keepdims=True), dtype, "log_softmax grad", k=4)


def test_softmax_batched_cotangent_and_extremes(bk, K):
    x = np.array([[1000.0, 0.0, -1000.0], [-np.inf, 0.0, 1.0]], dtype=np.float32)
    y = K.softmax(_dev(bk, x))
    _close(y, _softmax64(x.astype(np.float64)), np.float32, "softmax extremes")
    g = np.random.default_rng(0).standard_normal((2, 2, 3)).astype(np.float32)
    dx = K.softmax_grad(_dev(bk, g), y)
    y64 = _np(y).astype(np.float64)
    ref = y64 * (g - (g * y64).sum(-1, keepdims=True))
    _close(dx, ref, np.float32, "batched softmax grad", k=4)


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("shape", [(64, 10), (5, 3, 1000), (4, 50257 // 7)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_forward_and_backward(bk, dtype, shape, smoothing, K):
    x, x64 = _data(shape, dtype, 3)
    rng = np.random.default_rng(4)
    C = shape[-1]
    labels = rng.integers(0, C, size=shape[:-1])
    labels.reshape(-1)[0] = -100  # ignored row
    loss, lse, dlog = K.cross_entropy(_dev(bk, x), _dev(bk, labels), ignore_index=-100,
                                                 label_smoothing=smoothing)
    m = x64.max(-1)
    lse_ref = np.log(np.exp(x64 - m[..., None]).sum(-1)) + m
    lab0 = np.maximum(labels, 0)
    picked = np.take_along_axis(x64, lab0[..., None], -1)[..., 0]
    ref = lse_ref - (1 - smoothing) * picked - smoothing * x64.mean(-1)
    ref = np.where(labels == -100, 0.0, ref)
    acc = np.float64 if dtype == np.float64 else np.float32
    assert loss.dtype == acc and lse.dtype == acc
    _close(loss, ref, acc, "ce loss")
    _close(lse, lse_ref, acc, "ce lse")
    q = np.zeros_like(x64)
    np.put_along_axis(q, lab0[..., None], 1.0, -1)
    q = (1 - smoothing) * q + smoothing / C
    dref = np.where((labels == -100)[..., None], 0.0, _softmax64(x64) - q)
    _close(dlog, dref, dtype, "ce dlogits", k=2)
    # the backward from the saved lse (keepdims), without the ignored row's special case
    lab_dev = _dev(bk, lab0)
    d2 = K.cross_entropy_dlogits(_dev(bk, x), lab_dev, lse[..., None],
                                            label_smoothing=smoothing)
    _close(d2, _softmax64(x64) - q, dtype, "ce dlogits from lse", k=2)
    g = rng.standard_normal(shape[:-1])
    dx = K.cross_entropy_grad(_dev(bk, g), dlog)
    _close(dx, _np(dlog).astype(np.float64) * g[..., None], dtype, "ce grad", k=2)
    _, _, none = K.cross_entropy(_dev(bk, x), lab_dev, want_dlogits=False)
    assert none is None


def test_cross_entropy_bad_label_is_nan(bk, K):
    x = np.zeros((2, 4), np.float32)
    loss, lse, dlog = K.cross_entropy(_dev(bk, x), _dev(bk, np.array([1, 9])))
    loss, lse = _np(loss), _np(lse)
    assert np.isclose(loss[0], np.log(4.0)) and np.isnan(loss[1]) and np.isnan(lse[1])
    assert np.isnan(_np(dlog)[1]).all() and not np.isnan(_np(dlog)[0]).any()
    d = K.cross_entropy_dlogits(_dev(bk, x), _dev(bk, np.array([1, -1])),
                                           bk.xp.zeros(2, np.float32))
    assert np.isnan(_np(d)[1]).all() and not np.isnan(_np(d)[0]).any()


def _ln_ref(x, gamma, beta, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xh = (x - mu) * rstd
    y = xh * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta)
    return y, mu[..., 0], rstd[..., 0], xh


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("shape", [(16, 64), (3, 5, 1024), (257, 4096), (2, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_forward_and_backward(bk, dtype, shape, affine, K):
    x, x64 = _data(shape, dtype, 5)
    x64 = x64 + 2.0  # a mean away from zero
    x = x64.astype(dtype)
    x64 = x.astype(np.float64)
    C = shape[-1]
    gm = bt = gm64 = bt64 = None
    if affine:
        gm, gm64 = _data((C,), dtype, 6, 0.5, 1.5)
        bt, bt64 = _data((C,), dtype, 7)
    eps = 1e-5
    y, mean, rstd = K.layer_norm(
        _dev(bk, x), None if gm is None else _dev(bk, gm), None if bt is None else _dev(bk, bt),
        eps)
    yr, mur, rsr, xh = _ln_ref(x64, gm64, bt64, eps)
    _close(y, yr, dtype, "layer_norm y", k=2)
    acc = np.float64 if dtype == np.float64 else np.float32
    _close(mean, mur, acc, "layer_norm mean", k=10)
    _close(rstd, rsr, acc, "layer_norm rstd", k=10)
    g, g64 = _data(shape, dtype, 8)
    dx, dgam, dbet = K.layer_norm_grad(
        _dev(bk, g), _dev(bk, x), None if gm is None else _dev(bk, gm), mean, rstd)
    gh = g64 * (1.0 if gm64 is None else gm64)
    rs = rsr[..., None]
    dref = rs * (gh - gh.mean(-1, keepdims=True) - xh * (gh * xh).mean(-1, keepdims=True))
    _close(dx, dref, dtype, "layer_norm dx", k=8)
    lead = tuple(range(x.ndim - 1))
    _close(dgam, (g64 * xh).sum(lead), dtype, "layer_norm dgamma", k=4)
    _close(dbet, g64.sum(lead), dtype, "layer_norm dbeta", k=4)


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("shape", [(16, 64), (3, 5, 1024), (2, 3)])
def test_layer_norm_backward_from_output(bk, dtype, shape, K):
    x, x64 = _data(shape, dtype, 20)
    y, _, rstd = K.layer_norm(_dev(bk, x))
    y64 = _np(y).astype(np.float64)
    rs = _np(rstd).astype(dtype).astype(np.float64)[..., None]  # the op saves rstd in x's dtype
    g, g64 = _data(shape, dtype, 21)
    dx = K.layer_norm_grad_y(_dev(bk, g), y, rstd.astype(dtype)[..., None])
    ref = rs * (g64 - g64.mean(-1, keepdims=True) - y64 * (g64 * y64).mean(-1, keepdims=True))
    _close(dx, ref, dtype, "layer_norm dx from y", k=8)
    gb = np.stack([g, g[::-1].copy() if g.ndim > 1 else g])  # a batch of two cotangents
    dxb = K.layer_norm_grad_y(_dev(bk, gb), y, rstd.astype(dtype)[..., None])
    _close(_np(dxb)[0], ref, dtype, "batched layer_norm dx from y", k=8)


def _act64(z, act):
    if act == "relu":
        return np.maximum(z, 0), (z > 0).astype(np.float64)
    if act == "tanh":
        t = np.tanh(z)
        return t, 1 - t * t
    k = np.sqrt(2 / np.pi)
    t = np.tanh(k * (z + 0.044715 * z**3))
    y = 0.5 * z * (1 + t)
    d = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z)
    return y, d


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("act", ["relu", "gelu", "tanh"])
@pytest.mark.parametrize("shape", [(33, 65), (4, 3, 128), (1000,)])
def test_bias_act_forward_and_backward(bk, dtype, act, shape, K):
    x, x64 = _data(shape, dtype, 9)
    b, b64 = _data(shape[-1:], dtype, 10)
    z = (x64 + b64).astype(dtype).astype(np.float64) if dtype != np.float64 else x64 + b64
    y = K.bias_act(_dev(bk, x), _dev(bk, b), act)
    yr, dr = _act64(x64 + b64, act)
    if act == "relu":  # exact up to the rounding of x + b in the storage type
        yr = np.maximum(z, 0) if dtype != np.float64 else yr
    _close(y, yr, dtype, f"bias_{act}", k=2)
    g, g64 = _data(shape, dtype, 11)
    dx, db = K.bias_act_grad(_dev(bk, g), _dev(bk, x), _dev(bk, b), act)
    ref = g64 * dr
    _close(dx, ref, dtype, f"bias_{act} dx", k=2)
    _close(db, ref.reshape(-1, shape[-1]).sum(0), dtype, f"bias_{act} db", k=4)
    dx2, db2 = K.bias_act_grad(_dev(bk, g), _dev(bk, x), None, act)
    assert db2 is None
    _close(dx2, g64 * _act64(x64, act)[1], dtype, f"{act} dx (no bias)", k=2)


@pytest.mark.parametrize("dtype", ALL)
def test_scatter_add_matches_add_at_and_is_deterministic(bk, dtype, K):
    rng = np.random.default_rng(12)
    M, D, K = 50, 33, 4000
    idx = rng.integers(-M, M, size=K)
    idx[:500] = 3  # one long segment
    vals, v64 = _data((K, D), dtype, 13)
    ref = np.zeros((M, D))
    np.add.at(ref, idx, v64)
    outs = []
    for _ in range(5):
        t = bk.xp.zeros((M, D), dtype=dtype)
        K.scatter_add(t, _dev(bk, idx), _dev(bk, vals))
        outs.append(_np(t))
    tol = 1 if dtype == np.float64 else 8
    _close(outs[0], ref, dtype, "scatter_add", k=tol)
    for o in outs[1:]:
        assert o.tobytes() == outs[0].tobytes(), "scatter_add differs between runs"


def test_scatter_add_general_indices_and_backend(bk):
    rng = np.random.default_rng(14)
    target = np.zeros((6, 5, 4))
    ix = (np.array([0, 5, 0, 2]), np.array([1, 1, 1, 4]))
    vals = rng.standard_normal((4, 4))
    t = bk.asarray(target.copy())
    bk.deterministic_scatter_add(t, tuple(bk.asarray(i) for i in ix), bk.asarray(vals))
    ref = target.copy()
    np.add.at(ref, ix, vals)
    _close(t, ref, np.float64, "tuple index")
    mask = rng.random((6, 5, 4)) > 0.5
    v2 = rng.standard_normal(int(mask.sum()))
    t2 = bk.asarray(target.copy())
    bk.scatter_add(t2, bk.asarray(mask), bk.asarray(v2))
    ref2 = target.copy()
    ref2[mask] += v2
    _close(t2, ref2, np.float64, "bool mask")
    t3 = bk.asarray(np.zeros((4, 6))).T  # non-contiguous target, via the backend method
    bk.scatter_add(t3, bk.asarray(np.array([1, 1, 5])), bk.asarray(np.ones((3, 4))))
    ref3 = np.zeros((6, 4))
    ref3[1] += 2
    ref3[5] += 1
    _close(t3, ref3, np.float64, "non-contiguous target")
    t4 = bk.xp.zeros((5, 3), dtype=_dt.bfloat16)  # cupyx.scatter_add refuses bfloat16
    bk.scatter_add(t4, bk.asarray(np.array([0, 0, 4])), bk.asarray(np.ones((3, 3), _dt.bfloat16)))
    assert _np(t4).astype(np.float64).sum(1).tolist() == [6.0, 0.0, 0.0, 0.0, 3.0]
    ti = bk.xp.zeros(4, dtype=np.int32)  # integers: atomics are exact
    bk.scatter_add(ti, bk.asarray(np.array([1, 1, 3])),
                   bk.asarray(np.array([2, 3, 4], dtype=np.int32)))
    assert _np(ti).tolist() == [0, 5, 0, 4]


def test_philox_device_matches_numpy_twin(bk, ki):
    for seed, offset, n in [(0, 0, 17), (2**40 + 5, 3, 1001), (123, 2**33, 64)]:
        dev = _np(ki.philox_words_device(bk, n, seed, offset))
        assert np.array_equal(dev, ki.philox_words(n, seed, offset)), (seed, offset)


@pytest.mark.parametrize("dtype", ALL)
def test_dropout_mask_replays_and_matches_cpu(bk, ki, dtype, K):
    shape, p, seed = (37, 129), 0.3, 2024
    x, x64 = _data(shape, dtype, 15)
    y, mask = K.dropout(_dev(bk, x), p, seed, 5)
    keep = ki.dropout_keep_numpy(shape, p, seed, 5)
    assert np.array_equal(_np(mask), keep)
    _close(y, np.where(keep, x64 / (1 - p), 0.0), dtype, "dropout y")
    y2, mask2 = K.dropout(_dev(bk, x), p, seed, 5)
    assert _np(y2).tobytes() == _np(y).tobytes()
    m = K.dropout_mask(shape, p, seed, 5, dtype)
    _close(m, np.where(keep, 1 / (1 - p), 0.0), dtype, "dropout_mask")
    _, mask3 = K.dropout(_dev(bk, x), p, seed, 6)
    assert not np.array_equal(_np(mask3), keep)


def _tensor_list(bk, dtypes, seed=16):
    rng = np.random.default_rng(seed)
    shapes = [(3,), (40, 50), (1,), (7, 9, 11), (0,), (1000,), (2, 2), (300, 7), (5,),
              (64, 64), (13,)]
    hs = [rng.standard_normal(s).astype(dtypes[i % len(dtypes)]) for i, s in enumerate(shapes)]
    return hs, [bk.asarray(h) for h in hs]


@pytest.mark.parametrize("dtypes", [[np.float32], [np.float16, np.float32, _dt.bfloat16],
                                    [np.float64]])
def test_global_norm_clip_and_scale(bk, ki, dtypes):
    hs, ds = _tensor_list(bk, dtypes)
    ref = np.sqrt(sum(float((h.astype(np.float64) ** 2).sum()) for h in hs))
    acc = np.float64 if dtypes == [np.float64] else np.float32
    n = ki.global_norm(bk, ds)
    assert n.shape == () and n.dtype == acc
    assert abs(float(n) - ref) <= 1e-5 * ref
    assert float(ki.global_norm(bk, ds)) == float(n)  # deterministic
    clipped, n2 = ki.clip_by_global_norm(bk, ds, 1.0)
    f = min(1.0, 1.0 / (ref + 1e-6))
    for h, c in zip(hs, clipped):
        _close(c, h.astype(np.float64) * f, h.dtype, "clip")
    kept, _ = ki.clip_by_global_norm(bk, ds, 10 * ref)
    for h, c in zip(hs, kept):
        _close(c, h.astype(np.float64), h.dtype, "clip (below max)")
    out = ki.scale(bk, ds, bk.xp.full((), 0.5, dtype=np.float32), inplace=True)
    assert out[1] is ds[1]
    for h, d in zip(hs, ds):
        _close(d, h.astype(np.float64) * 0.5, h.dtype, "scale_")


def test_unscale_and_check(bk, ki):
    hs, ds = _tensor_list(bk, [np.float32, np.float16])
    found = ki.unscale_and_check(bk, ds, 0.25)
    assert found.shape == () and float(found) == 0.0
    for h, d in zip(hs, ds):
        _close(d, h.astype(np.float64) * 0.25, h.dtype, "unscale")
    for bad in (np.inf, -np.inf, np.nan):
        hs, ds = _tensor_list(bk, [np.float32])
        ds[9][3, 4] = bad
        assert float(ki.unscale_and_check(bk, ds, bk.xp.full((), 0.5, np.float32))) == 1.0
        assert float(ki.unscale_and_check(bk, ds[:9], 0.5)) == 0.0


def _sgd_ref(p, g, buf, lr, mom, damp, wd, nesterov, first):
    d = g + wd * p
    if mom:
        buf = d if first else mom * buf + (1 - damp) * d
        d = d + mom * buf if nesterov else buf
    return p - lr * d, buf


@pytest.mark.parametrize("nesterov,wd,damp", [(False, 0.0, 0.0), (True, 1e-2, 0.0),
                                              (False, 1e-2, 0.1)])
def test_sgd_momentum_matches_reference(bk, ki, nesterov, wd, damp):
    hs, ds = _tensor_list(bk, [np.float32], seed=17)
    hs, ds = hs[:10], ds[:10]
    gs = [np.random.default_rng(i).standard_normal(h.shape).astype(np.float32)
          for i, h in enumerate(hs)]
    bufs = [bk.xp.zeros(h.shape, np.float32) for h in hs]
    ref_p = [h.astype(np.float64) for h in hs]
    ref_b = [np.zeros(h.shape) for h in hs]
    for step in range(3):
        ki.sgd_momentum_(bk, ds, [bk.asarray(g) for g in gs], bufs, 0.1, momentum=0.9,
                         dampening=damp, weight_decay=wd, nesterov=nesterov, first=step == 0)
        for i in range(len(hs)):
            ref_p[i], ref_b[i] = _sgd_ref(ref_p[i], gs[i], ref_b[i], 0.1, 0.9, damp, wd,
                                          nesterov, step == 0)
    for d, r, b, rb in zip(ds, ref_p, bufs, ref_b):
        _close(d, r, np.float32, "sgd param", k=5)
        _close(b, rb, np.float32, "sgd buffer", k=5)
    plain = [bk.asarray(h) for h in hs]
    ki.sgd_momentum_(bk, plain, [bk.asarray(g) for g in gs], None, 0.5)
    for d, h, g in zip(plain, hs, gs):
        _close(d, h.astype(np.float64) - 0.5 * g, np.float32, "plain sgd")


@pytest.mark.parametrize("adamw", [False, True])
def test_adam_matches_reference(bk, ki, adamw):
    hs, ds = _tensor_list(bk, [np.float32], seed=18)
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.99, 1e-8, 0.05
    m = [bk.xp.zeros(h.shape, np.float32) for h in hs]
    v = [bk.xp.zeros(h.shape, np.float32) for h in hs]
    rp = [h.astype(np.float64) for h in hs]
    rm = [np.zeros(h.shape) for h in hs]
    rv = [np.zeros(h.shape) for h in hs]
    step = bk.xp.zeros((), np.float32)
    for t in range(1, 4):
        gs = [np.random.default_rng(10 * t + i).standard_normal(h.shape).astype(np.float32)
              for i, h in enumerate(hs)]
        step += 1  # device-side step count, as under graph capture
        ki.adam_(bk, ds, [bk.asarray(g) for g in gs], m, v, step, lr, b1, b2, eps, wd,
                 adamw=adamw)
        for i in range(len(hs)):
            g = gs[i].astype(np.float64)
            if adamw:
                rp[i] = rp[i] * (1 - lr * wd)
            else:
                g = g + wd * rp[i]
            rm[i] = b1 * rm[i] + (1 - b1) * g
            rv[i] = b2 * rv[i] + (1 - b2) * g * g
            mh, vh = rm[i] / (1 - b1**t), rv[i] / (1 - b2**t)
            rp[i] = rp[i] - lr * mh / (np.sqrt(vh) + eps)
    for d, r in zip(ds, rp):
        if r.size:
            _close(d, r, np.float32, "adam param", k=20)


@pytest.mark.parametrize("src, dst", [(np.float32, _dt.bfloat16), (_dt.bfloat16, np.float32),
                                      (np.float32, np.float16), (np.float16, np.float32)])
def test_cast_kernel_matches_numpy_bit_for_bit(bk, ki, src, dst, K):
    """The vectorised cast against NumPy/ml_dtypes: bit for bit (NaN as NaN), on an odd size
    (the element-wise tail), through astype (the op) and directly; an unaligned view is
    declined (None) and astype still gives the right bits."""
    import autograd_gpu as ag

    rng = np.random.default_rng(4)
    h = (rng.standard_normal(300_001) * 100).astype(np.float32).astype(src)
    h[:5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    d = bk.asarray(h)
    cast = K.cast
    y = cast(d, dst)
    assert y is not None and y.dtype == np.dtype(dst)
    ref = h.astype(dst)
    assert ki.same_bits(bk.to_numpy(y), ref)
    t = ag.astype(ag.Tensor.from_array(h, device="cuda:0"), dst)
    assert ki.same_bits(t.numpy(), ref)
    view = d[1:]  # 2- or 4-byte offset: not 16-byte aligned
    assert cast(view, dst) is None
    assert ki.same_bits(bk.to_numpy(bk.astype(view, dst)), ref[1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, _dt.bfloat16])
def test_vectorised_relu_and_bias_add_match_numpy(bk, dtype, K):
    """relu, relu's backward and the bias add on the vectorised kernels, against NumPy as
    numbers (NaN as NaN), directly and through the ops; declined cases return None and the ops
    still give NumPy's values."""
    import autograd_gpu as ag

    rng = np.random.default_rng(9)
    h = (rng.standard_normal((257, 512)) * 3).astype(dtype)
    h.flat[:4] = [np.nan, np.inf, -np.inf, -0.0]
    gh = rng.standard_normal((257, 512)).astype(dtype)
    bh = rng.standard_normal(512).astype(dtype)
    x, g, b = bk.asarray(h), bk.asarray(gh), bk.asarray(bh)

    def same(dev, ref):
        got = np.asarray(bk.to_numpy(dev), dtype=np.float64)
        assert np.array_equal(got, np.asarray(ref, dtype=np.float64), equal_nan=True)

    f64 = h.astype(np.float64)
    same(K.relu(x), np.maximum(f64, 0))
    same(K.relu_grad(g, x), np.where(f64 > 0, gh.astype(np.float64), 0))
    same(K.add_rowvec(x, b), (h + bh))
    # through the ops (forward and backward)
    xt = ag.Variable(ag.Tensor.from_array(h, device="cuda:0"))
    bt = ag.Variable(ag.Tensor.from_array(bh, device="cuda:0"))
    with ag.GradientTape() as tape:
        y = ag.relu(xt + bt)
    same(y.data, np.maximum(h + bh, 0))
    gx, gb = tape.gradient(y, [xt, bt], output_gradients=[ag.Tensor.from_array(
        gh, device="cuda:0")])
    same(gx.data, np.where((h + bh).astype(np.float64) > 0, gh.astype(np.float64), 0))
    # declined: unaligned, odd width, mixed dtypes
    assert K.relu(x.reshape(-1)[1:]) is None
    assert K.add_rowvec(x[:, :510], b[:510].copy()) is None
    assert K.add_rowvec(x[:, :511], b[:511]) is None
    same(bk.relu(x.reshape(-1)[1:]), np.maximum(f64.reshape(-1)[1:], 0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_array_kernels_match_cupy_bit_for_bit(bk, ki, dtype, K):
    """kernels/small.cu (arrays under 65,536 elements): every op against the CuPy kernel it
    replaces, bit for bit, and against NumPy; declined cases return None; the backend routes
    scalar arithmetic, the unary math functions and tanh/sigmoid's backward through it."""
    import cupy as cp

    from autograd_gpu.backend.cupy_backend import _elementwise

    h, f64 = _data((33, 31), dtype)
    x = bk.asarray(h)
    pos = bk.asarray(np.abs(h) + 0.25)
    t = bk.asarray(np.tanh(h[::-1]).copy())
    s = np.dtype(dtype).type(1.7)
    un, sc, ag_ = K.bind_unary, K.bind_scalar, K.bind_act_grad
    for op in ki.SMALL_OPS["small_unary"]:
        a = pos if op in ("log", "log1p", "sqrt") else x
        got = un(op, a)
        assert got is not None, op
        assert bool(cp.array_equal(got, getattr(cp, op)(a))), op
        _close(got, getattr(np, op)(_np(a).astype(np.float64)), dtype, op)
        assert bool(cp.array_equal(bk.unary(op, a), got)), op
    for op in ki.SMALL_OPS["small_scalar"]:
        got = sc(op, pos, s)
        assert got is not None and bool(cp.array_equal(got, _elementwise(op)(pos, s))), op
    for op in ki.SMALL_OPS["small_act_grad"]:
        got = ag_(op, x, t)
        assert got is not None and bool(cp.array_equal(got, _elementwise(op)(x, t))), op
        assert bool(cp.array_equal(bk.act_grad(op, x, t), got)), op
    assert bool(cp.array_equal(bk.scalar_op("mul", 1.7, x), x * s))
    assert bool(cp.array_equal(bk.scalar_op("sub", 1.7, x), s - x))
    # declined: strided, float16, too large, shapes that differ
    assert un("exp", x[:, ::2]) is None
    assert un("exp", x.astype(np.float16)) is None
    assert un("exp", cp.zeros(ki.SMALL_MAX, dtype)) is None
    assert ag_("tanh", x, t[:, :3].copy()) is None
    assert un("exp", x[:0]).shape == (0, 31)


def test_small_array_path_gives_the_same_chain_gradients(bk):
    """The benchmark's chain of tiny ops (scalar arithmetic and tanh), forward and backward,
    with kernels/small.cu and with CuPy's kernels: the same bits."""
    import autograd_gpu as ag

    x0 = np.linspace(-1, 1, 16).astype(np.float32)

    def chain():
        x = ag.Variable(ag.Tensor.from_array(x0, device="cuda:0"))
        with ag.GradientTape() as tape:
            y = x
            for i in range(40):
                k = i % 4
                y = y * 1.01 if k == 0 else y + 0.01 if k == 1 else ag.tanh(y) if k == 2 \
                    else 0.5 - y
            s = ag.exp(ag.sin(y)).sum()
        (gx,) = tape.gradient(s, [x])
        return _np(s.data), _np(gx.data)

    before = bk.small_kernels
    try:
        bk.small_kernels = True
        on = chain()
        bk.small_kernels = False
        off = chain()
    finally:
        bk.small_kernels = before
    assert np.array_equal(on[0], off[0]) and np.array_equal(on[1], off[1])
