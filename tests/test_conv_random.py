"""conv2d, conv_transpose2d, pooling, embedding and dropout against loop-based NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.backend import backend_for
from autograd_gpu.ops import random as R
from autograd_gpu.ops.registry import REGISTRY


def T(a):
    return ag.Tensor.from_array(np.asarray(a), device="cpu")


def grads(fn, *arrays, seed=None):
    """Values of fn(*tensors) and its gradients w.r.t. every input, seeded with ``seed``."""
    ts = [T(a) for a in arrays]
    with ag.GradientTape() as tape:
        tape.watch(ts)
        y = fn(*ts)
    og = None if seed is None else T(seed)
    gs = tape.gradient(y, ts, output_gradients=og)
    return y.numpy(), [g.numpy() for g in gs]


# ---- loop references --------------------------------------------------------------------------


def ref_conv(x, w, b, stride, padding, dilation, groups):
    """Direct 7-loop cross-correlation; padding ((top, bottom), (left, right))."""
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(padding))
    n, c, hp, wp = xp.shape
    co, cig, kh, kw = w.shape
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    cog = co // groups
    y = np.zeros((n, co, ho, wo))
    for nn in range(n):
        for o in range(co):
            grp = o // cog
            for i in range(ho):
                for j in range(wo):
                    s = 0.0 if b is None else b[o]
                    for ci in range(cig):
                        for a in range(kh):
                            for bb in range(kw):
                                s += xp[nn, grp * cig + ci, i * sh + a * dh, j * sw + bb * dw] \
                                    * w[o, ci, a, bb]
                    y[nn, o, i, j] = s
    return y


def ref_conv_grads(x, w, g, stride, padding, dilation, groups):
    """Hand-derived adjoints of ref_conv: dL/dx and dL/dw for the output cotangent g."""
    (sh, sw), (dh, dw) = stride, dilation
    (pt, _), (pl, _) = padding
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(padding))
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    n, co, ho, wo = g.shape
    _, cig, kh, kw = w.shape
    cog = co // groups
    for nn in range(n):
        for o in range(co):
            grp = o // cog
            for i in range(ho):
                for j in range(wo):
                    for ci in range(cig):
                        for a in range(kh):
                            for bb in range(kw):
                                r, s = i * sh + a * dh, j * sw + bb * dw
                                gxp[nn, grp * cig + ci, r, s] += g[nn, o, i, j] * w[o, ci, a, bb]
                                gw[o, ci, a, bb] += g[nn, o, i, j] * xp[nn, grp * cig + ci, r, s]
    h, wd = x.shape[2:]
    return gxp[:, :, pt:pt + h, pl:pl + wd], gw


def ref_pool(x, k, s, p, kind):
    """Max (-inf padding) or mean (zero padding, counted) over each window, and for max the
    padded-input position of the first maximum per window."""
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0),) * (x.ndim - 2) + ((p[0], p[0]), (p[1], p[1])), constant_values=fill)
    ho = (xp.shape[-2] - k[0]) // s[0] + 1
    wo = (xp.shape[-1] - k[1]) // s[1] + 1
    y = np.zeros(x.shape[:-2] + (ho, wo))
    arg = {}
    for idx in np.ndindex(*x.shape[:-2]):
        for i in range(ho):
            for j in range(wo):
                win = xp[idx][i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]]
                if kind == "max":
                    a = int(np.argmax(win))
                    y[idx + (i, j)] = win.flat[a]
                    arg[idx + (i, j)] = (i * s[0] + a // k[1], j * s[1] + a % k[1])
                else:
                    y[idx + (i, j)] = win.mean()
    return y, arg


# ---- conv2d -----------------------------------------------------------------------------------

CONV_CASES = [
    # (x shape, w shape, stride, padding, dilation, groups)
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 0, 1, 1),
    ((2, 3, 7, 6), (4, 3, 3, 3), 2, 1, 1, 1),
    ((1, 2, 8, 9), (3, 2, 3, 2), (2, 3), (1, 2), 1, 1),
    ((2, 2, 9, 9), (2, 2, 3, 3), 1, 2, 2, 1),
    ((1, 4, 6, 7), (6, 2, 2, 3), (1, 2), 1, (2, 1), 2),
    ((2, 4, 5, 5), (4, 1, 3, 3), 1, 1, 1, 4),  # depthwise
    ((1, 2, 6, 6), (2, 2, 3, 3), 2, ((2, 0), (0, 1)), 1, 1),  # asymmetric padding
    ((1, 1, 4, 4), (1, 1, 1, 1), 3, 0, 1, 1),  # stride leaves inputs unused
]


def _geom(stride, padding, dilation):
    pair = (lambda v: (v, v) if isinstance(v, int) else tuple(v))
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        pads = padding
    else:
        ph, pw = pair(padding)
        pads = ((ph, ph), (pw, pw))
    return pair(stride), pads, pair(dilation)


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CONV_CASES)
def test_conv2d_matches_loop_reference_with_gradients(xs, ws, stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    st, pads, dil = _geom(stride, padding, dilation)
    ref = ref_conv(x, w, b, st, pads, dil, groups)
    g = rng.standard_normal(ref.shape)
    y, (gx, gw, gb) = grads(lambda x_, w_, b_: ag.conv2d(x_, w_, b_, stride=stride,
                                                           padding=padding, dilation=dilation,
                                                           groups=groups), x, w, b, seed=g)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    rgx, rgw = ref_conv_grads(x, w, g, st, pads, dil, groups)
    np.testing.assert_allclose(gx, rgx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, rgw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


def test_conv2d_padding_modes_and_float32():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 2)).astype(np.float32)
    same = ag.conv2d(T(x), T(w), padding="same")
    assert same.shape == (2, 5, 7, 8) and same.dtype == np.float32
    # 'same' with stride 2 gives ceil(H / 2), extra padding at the bottom/right
    s2 = ag.conv2d(T(x), T(w), stride=2, padding="same").numpy()
    ref = ref_conv(x.astype(np.float64), w.astype(np.float64), None, (2, 2), ((1, 1), (0, 1)),
                   (1, 1), 1)
    assert s2.shape == (2, 5, 4, 4)
    np.testing.assert_allclose(s2, ref, rtol=1e-5, atol=1e-5)
    valid = ag.conv2d(T(x), T(w), padding="valid").numpy()
    np.testing.assert_allclose(valid, ref_conv(x.astype(np.float64), w.astype(np.float64), None,
                                               (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float16, ag.dtypes.bfloat16])
def test_low_precision_keeps_dtype(dtype):
    rng = np.random.default_rng(14)
    x, w = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((4, 2, 3, 3))
    ref = ref_conv(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 2)
    xt, wt = T(x.astype(dtype)), T(w.astype(dtype))
    with ag.GradientTape() as tape:
        tape.watch([xt, wt])
        y = ag.conv2d(xt, wt, padding=1, groups=2)
        outs = [y, ag.max_pool2d(y, 2, padding=1), ag.avg_pool2d(y, 2), ag.dropout(y, 0.5, seed=1)]
        s = outs[1].sum() + outs[2].sum() + outs[3].sum()
    gx, gw = tape.gradient(s, [xt, wt])
    assert all(o.dtype == dtype for o in outs + [gx, gw])
    tol = 0.05 if dtype == np.float16 else 0.3
    np.testing.assert_allclose(y.numpy().astype(np.float64), ref, atol=tol)


def test_conv2d_second_derivative_against_differences():
    """d/dw <dL/dx, v> for L = sum(conv2d(x, w)^2) / 2, against central differences of the
    hand-derived first gradient."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((4, 1, 3, 2))
    v = rng.standard_normal(x.shape)
    geo = dict(stride=(2, 1), padding=((1, 0), (1, 1)), dilation=(1, 2), groups=2)
    st, pads, dil = geo["stride"], geo["padding"], geo["dilation"]

    def gx_ref(w_):
        y = ref_conv(x, w_, None, st, pads, dil, 2)
        return ref_conv_grads(x, w_, y, st, pads, dil, 2)[0]

    xt, wt = T(x), T(w)
    with ag.GradientTape() as outer:
        outer.watch(wt)
        with ag.GradientTape() as inner:
            inner.watch([xt, wt])
            y = ag.conv2d(xt, wt, **geo)
            loss = (y * y).sum() * 0.5
        (gx,) = inner.gradient(loss, [xt])
        h = (gx * T(v)).sum()
    (hw,) = outer.gradient(h, [wt])
    np.testing.assert_allclose(gx.numpy(), gx_ref(w), rtol=1e-10, atol=1e-10)
    d = rng.standard_normal(w.shape)
    eps = 1e-6
    fd = (np.sum(gx_ref(w + eps * d) * v) - np.sum(gx_ref(w - eps * d) * v)) / (2 * eps)
    assert abs(np.sum(hw.numpy() * d) - fd) < 1e-6 * (1 + abs(fd))


def test_conv2d_batched_cotangents_give_a_jacobian():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((2, 1, 2, 2))
    xt, wt = T(x), T(w)
    with ag.GradientTape(persistent=True) as tape:
        tape.watch([xt, wt])
        y = ag.conv2d(xt, wt, groups=2, padding=1)
    jx = tape.jacobian(y, xt).numpy()
    jw = tape.jacobian(y, wt).numpy()
    assert jx.shape == y.shape + x.shape and jw.shape == y.shape + w.shape
    # the convolution is linear in each argument: J_x x = y and J_w w = y
    yref = y.numpy()
    np.testing.assert_allclose(np.tensordot(jx, x, axes=4), yref, atol=1e-12)
    np.testing.assert_allclose(np.tensordot(jw, w, axes=4), yref, atol=1e-12)


def ref_conv_transpose(x, w, stride, pad, opad, dilation, groups):
    n, ci, h, wd = x.shape
    _, cog, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + opad[0] + 1
    wo = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opad[1] + 1
    out = np.zeros((n, cog * groups, ho + 2 * ph + sh + dh * kh, wo + 2 * pw + sw + dw * kw))
    cig = ci // groups
    for nn in range(n):
        for c in range(ci):
            grp = c // cig
            for i in range(h):
                for j in range(wd):
                    for o in range(cog):
                        for a in range(kh):
                            for b in range(kw):
                                out[nn, grp * cog + o, i * sh + a * dh, j * sw + b * dw] += \
                                    x[nn, c, i, j] * w[c, o, a, b]
    return out[:, :, ph:ph + ho, pw:pw + wo]


@pytest.mark.parametrize("stride,pad,opad,dil,groups", [
    ((1, 1), (0, 0), (0, 0), (1, 1), 1),
    ((2, 2), (1, 0), (1, 0), (1, 1), 1),
    ((2, 3), (1, 1), (0, 2), (1, 2), 2),
])
def test_conv_transpose2d_matches_loop_reference(stride, pad, opad, dil, groups):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 3, 4))
    w = rng.standard_normal((4, 3, 3, 2))
    y = ag.conv_transpose2d(T(x), T(w), stride=stride, padding=pad, output_padding=opad,
                            dilation=dil, groups=groups).numpy()
    np.testing.assert_allclose(y, ref_conv_transpose(x, w, stride, pad, opad, dil, groups),
                               rtol=1e-12, atol=1e-12)


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 3))
    y = ag.conv2d(T(x), T(w), stride=2, padding=1, groups=2).numpy()
    u = rng.standard_normal(y.shape)
    xt = ag.conv_transpose2d(T(u), T(w), stride=2, padding=1, output_padding=(0, 1),
                             groups=2).numpy()
    assert xt.shape == x.shape
    assert np.isclose(np.sum(y * u), np.sum(x * xt), rtol=1e-12)


def test_conv2d_errors_name_the_op():
    x = T(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ag.ShapeError, match="conv2d.*weight"):
        ag.conv2d(x, T(np.zeros((2, 2, 3, 3))))  # channel mismatch
    with pytest.raises(ag.ShapeError, match="conv2d.*groups"):
        ag.conv2d(x, T(np.zeros((2, 1, 3, 3))), groups=2)  # 2 does not divide 3
    with pytest.raises(ag.ShapeError, match="conv2d.*kernel"):
        ag.conv2d(x, T(np.zeros((2, 3, 7, 3))), padding=0)
    with pytest.raises(ag.ShapeError, match="conv2d.*kernel"):
        ag.conv2d(x, T(np.zeros((2, 3, 3, 3))), dilation=3)  # span 7 > 5
    with pytest.raises(ag.ShapeError, match="conv2d.*4-d"):
        ag.conv2d(T(np.zeros((3, 5, 5))), T(np.zeros((2, 3, 3, 3))))
    with pytest.raises(ag.ShapeError, match="conv2d.*bias"):
        ag.conv2d(x, T(np.zeros((2, 3, 3, 3))), bias=T(np.zeros(3)))
    with pytest.raises(ag.ArgumentError, match="conv2d.*stride"):
        ag.conv2d(x, T(np.zeros((2, 3, 3, 3))), stride=0)
    with pytest.raises(ag.ArgumentError, match="conv2d.*padding"):
        ag.conv2d(x, T(np.zeros((2, 3, 3, 3))), padding="full")
    with pytest.raises(ag.DTypeError, match="conv2d.*x"):
        ag.conv2d(T(np.zeros((1, 3, 5, 5), dtype=np.int64)), T(np.zeros((2, 3, 3, 3))))
    with pytest.raises(ag.ArgumentError, match="conv2d.*weight"):
        ag.conv2d(x, object())
    with pytest.raises(ag.ArgumentError, match="conv_transpose2d.*output_padding"):
        ag.conv_transpose2d(x, T(np.zeros((3, 2, 3, 3))), stride=2, output_padding=2)


# ---- pooling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,k,s,p", [
    ((2, 3, 6, 6), 2, None, 0),
    ((1, 2, 7, 5), (3, 2), (2, 1), (1, 1)),
    ((3, 5, 5), 3, 1, 1),  # overlapping windows share maxima
])
def test_max_pool2d_matches_loops_and_routes_gradient_to_argmax(shape, k, s, p):
    rng = np.random.default_rng(6)
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64) / 7.0  # no ties
    kk = (k, k) if isinstance(k, int) else k
    ss = kk if s is None else ((s, s) if isinstance(s, int) else s)
    pp = (p, p) if isinstance(p, int) else p
    ref, arg = ref_pool(x, kk, ss, pp, "max")
    g = rng.standard_normal(ref.shape)
    y, (gx,) = grads(lambda t: ag.max_pool2d(t, k, s, p), x, seed=g)
    np.testing.assert_array_equal(y, ref)
    want = np.zeros_like(x)
    for idx, (r, c) in arg.items():
        want[idx[:-2] + (r - pp[0], c - pp[1])] += g[idx]
    np.testing.assert_allclose(gx, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,k,s,p", [
    ((2, 3, 6, 6), 2, None, 0),
    ((1, 2, 7, 5), (3, 2), (2, 1), (1, 1)),
    ((3, 5, 5), 3, 1, 1),
])
def test_avg_pool2d_matches_loops_with_gradient(shape, k, s, p):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    kk = (k, k) if isinstance(k, int) else k
    ss = kk if s is None else ((s, s) if isinstance(s, int) else s)
    pp = (p, p) if isinstance(p, int) else p
    ref, _ = ref_pool(x, kk, ss, pp, "avg")
    g = rng.standard_normal(ref.shape)
    y, (gx,) = grads(lambda t: ag.avg_pool2d(t, k, s, p), x, seed=g)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    xpad = np.zeros(shape[:-2] + (shape[-2] + 2 * pp[0], shape[-1] + 2 * pp[1]))
    for idx in np.ndindex(*g.shape):
        i, j = idx[-2:]
        win = (slice(i * ss[0], i * ss[0] + kk[0]), slice(j * ss[1], j * ss[1] + kk[1]))
        xpad[idx[:-2] + win] += g[idx] / (kk[0] * kk[1])
    want = xpad[..., pp[0]:pp[0] + shape[-2], pp[1]:pp[1] + shape[-1]]
    np.testing.assert_allclose(gx, want, rtol=1e-12, atol=1e-12)


def test_max_pool2d_second_order_is_zero_curvature_but_connected():
    """max pooling is piecewise linear: d/dx <grad, v> is zero, and the gradient of <grad, v>
    with respect to the upstream cotangent is the gathered v."""
    rng = np.random.default_rng(8)
    x = rng.permutation(32).reshape(1, 2, 4, 4).astype(np.float64)
    v = rng.standard_normal(x.shape)
    xt = T(x)
    with ag.GradientTape() as outer:
        outer.watch(xt)
        with ag.GradientTape() as inner:
            inner.watch(xt)
            y = ag.max_pool2d(xt, 2)
            loss = (y * y).sum() * 0.5  # dL/dx = scatter(y), so d/dx <dL/dx, v> = scatter(gather v)
        (gx,) = inner.gradient(loss, [xt])
        h = (gx * T(v)).sum()
    (hx,) = outer.gradient(h, [xt])
    ref, arg = ref_pool(x, (2, 2), (2, 2), (0, 0), "max")
    want = np.zeros_like(x)
    for idx, (r, c) in arg.items():
        want[idx[:-2] + (r, c)] = v[idx[:-2] + (r, c)]
    np.testing.assert_allclose(hx.numpy(), want, atol=1e-12)


def test_max_pool2d_propagates_nan_and_keeps_dtype():
    x = np.array([[[[1.0, np.nan, 0.0, 5.0], [3.0, 2.0, 4.0, -1.0]]]], dtype=np.float32)
    y = ag.max_pool2d(T(x), 2).numpy()
    assert y.dtype == np.float32
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 5.0


def test_pool_errors():
    x = T(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ag.ArgumentError, match="max_pool2d.*padding"):
        ag.max_pool2d(x, 2, padding=2)
    with pytest.raises(ag.ShapeError, match="avg_pool2d.*kernel"):
        ag.avg_pool2d(x, 5)
    with pytest.raises(ag.ShapeError, match="max_pool2d"):
        ag.max_pool2d(T(np.zeros((4, 4))), 2)
    with pytest.raises(ag.ArgumentError, match="avg_pool2d.*kernel_size"):
        ag.avg_pool2d(x, 0)


# ---- embedding --------------------------------------------------------------------------------


def test_embedding_matches_indexing_and_accumulates_repeats():
    rng = np.random.default_rng(9)
    w = rng.standard_normal((6, 3))
    idx = np.array([[0, 5, 5], [2, 0, 5]])
    wt = T(w)
    g = rng.standard_normal((2, 3, 3))
    with ag.GradientTape() as tape:
        tape.watch(wt)
        y = ag.embedding(idx, wt)
    (gw,) = tape.gradient(y, [wt], output_gradients=T(g))
    np.testing.assert_array_equal(y.numpy(), w[idx])
    want = np.zeros_like(w)
    np.add.at(want, idx, g)
    np.testing.assert_allclose(gw.numpy(), want, rtol=1e-12, atol=1e-12)
    assert np.allclose(gw.numpy()[5], g[0, 1] + g[0, 2] + g[1, 2])
    # scalar index and 1-d
    np.testing.assert_array_equal(ag.embedding(T(np.int64(4)), wt).numpy(), w[4])
    np.testing.assert_array_equal(ag.embedding([1, 1], wt).numpy(), w[[1, 1]])


def test_embedding_second_order():
    """L = sum(embedding(idx, w)^3): the Hessian is diagonal with 6 * count(v) * w[v, d]."""
    rng = np.random.default_rng(10)
    w = rng.standard_normal((4, 2))
    idx = np.array([3, 1, 3, 3])
    wt = T(w)
    v = rng.standard_normal(w.shape)
    with ag.GradientTape() as outer:
        outer.watch(wt)
        with ag.GradientTape() as inner:
            inner.watch(wt)
            e = ag.embedding(idx, wt)
            loss = (e * e * e).sum()
        (gw,) = inner.gradient(loss, [wt])
        h = (gw * T(v)).sum()
    (hw,) = outer.gradient(h, [wt])
    counts = np.bincount(idx, minlength=4)[:, None]
    np.testing.assert_allclose(gw.numpy(), 3 * counts * w ** 2, rtol=1e-12)
    np.testing.assert_allclose(hw.numpy(), 6 * counts * w * v, rtol=1e-12)


def test_embedding_errors_and_determinism_flag():
    w = T(np.zeros((3, 2)))
    with pytest.raises(ag.DTypeError, match="embedding.*indices"):
        ag.embedding(T(np.array([0.0, 1.0])), w)
    with pytest.raises(ag.ShapeError, match=r"embedding.*\[0, 3\)"):
        ag.embedding(np.array([0, 3]), w)
    with pytest.raises(ag.ShapeError, match="embedding.*weight"):
        ag.embedding(np.array([0]), T(np.zeros(3)))
    op = REGISTRY["embedding_grad"]
    cpu = backend_for("cpu")
    assert op.is_deterministic(cpu, {"num": 3})

    class FakeGpu:  # a backend whose scatter_add uses atomics
        name = "cupy"
        deterministic_scatter = False

    assert not op.is_deterministic(FakeGpu(), {"num": 3})


# ---- dropout ----------------------------------------------------------------------------------


def test_dropout_mask_is_a_function_of_the_seed():
    x = T(np.ones((64, 32)))
    a = ag.dropout(x, 0.3, seed=123).numpy()
    b = ag.dropout(x, 0.3, seed=123).numpy()
    c = ag.dropout(x, 0.3, seed=124).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.2
    assert set(np.unique(a)) <= {0.0, 1.0 / 0.7}
    # the recorded op replays to the same mask (checkpoint recomputation)
    bk = backend_for("cpu")
    y1, (m1,) = REGISTRY["dropout"].forward(bk, x.numpy(), p=0.3, seed=123)
    np.testing.assert_array_equal(y1, a)
    np.testing.assert_array_equal(m1 * x.numpy(), a)


def test_dropout_preserves_the_expectation():
    x = T(np.full((200, 500), 2.0, dtype=np.float32))
    y = ag.dropout(x, 0.25, seed=7).numpy()
    assert y.dtype == np.float32
    zero = np.mean(y == 0)
    assert abs(zero - 0.25) < 0.01
    assert abs(y.mean() - 2.0) < 0.03


def test_dropout_gradient_is_the_scaled_mask():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 7))
    g = rng.standard_normal((5, 7))
    y, (gx,) = grads(lambda t: ag.dropout(t, 0.5, seed=99), x, seed=g)
    keep = y != 0
    np.testing.assert_allclose(y, np.where(keep, 2.0 * x, 0.0), rtol=1e-12)
    np.testing.assert_allclose(gx, np.where(keep, 2.0 * g, 0.0), rtol=1e-12)


def test_dropout_identity_cases_and_errors():
    x = T(np.ones((3, 3)))
    assert ag.dropout(x, 0.5, training=False) is x
    assert ag.dropout(x, 0.0) is x
    for bad in (-0.1, 1.0, 1.5, "0.5", True):
        with pytest.raises(ag.ArgumentError, match="dropout.*'p'"):
            ag.dropout(x, bad)
    with pytest.raises(ag.ArgumentError, match="dropout.*seed"):
        ag.dropout(x, 0.5, seed=-1)
    with pytest.raises(ag.DTypeError, match="dropout"):
        ag.dropout(T(np.ones(3, dtype=np.int64)), 0.5)


def test_global_seed_stream_is_counter_based_and_replayable():
    state = R.get_rng_state()
    try:
        x = T(np.ones((10, 10)))
        R.set_global_seed(5)
        s1, s2 = R.next_seed(), R.next_seed()
        m1 = ag.dropout(x, 0.5).numpy()
        R.set_global_seed(5)
        assert (R.next_seed(), R.next_seed()) == (s1, s2) and s1 != s2
        np.testing.assert_array_equal(ag.dropout(x, 0.5).numpy(), m1)
        R.set_global_seed(6)
        assert R.next_seed() != s1
        # per-op streams: seeds for one op name do not shift when another op draws
        R.set_global_seed(5, operation_seeds=True)
        d1 = R.next_seed("dropout")
        R.set_global_seed(5, operation_seeds=True)
        R.next_seed("other")
        assert R.next_seed("dropout") == d1
        saved = R.get_rng_state()
        a = R.next_seed("dropout")
        R.set_rng_state(saved)
        assert R.next_seed("dropout") == a
        with pytest.raises(ag.ArgumentError, match="set_global_seed"):
            R.set_global_seed(-3)
    finally:
        R.set_rng_state(state)


# ---- a small CNN on the CPU -------------------------------------------------------------------


def test_small_cnn_trains_on_digit_like_data():
    """conv -> relu -> max-pool -> conv -> relu -> avg-pool -> linear, trained with SGD on 8x8
    images of two classes: the loss falls by more than half."""
    rng = np.random.default_rng(12)
    n = 64
    labels = rng.integers(0, 2, size=n)
    imgs = rng.normal(0, 0.3, size=(n, 1, 8, 8))
    imgs[labels == 0, 0, :, 3:5] += 1.0  # vertical bar
    imgs[labels == 1, 0, 3:5, :] += 1.0  # horizontal bar
    target = np.eye(2)[labels]
    w1 = rng.normal(0, 0.3, (8, 1, 3, 3))
    w2 = rng.normal(0, 0.2, (8, 4, 3, 3))
    w3 = rng.normal(0, 0.2, (8 * 2 * 2, 2))
    params = [T(w1), T(w2), T(w3)]
    x, t = T(imgs), T(target)
    losses = []
    for _ in range(30):
        with ag.GradientTape() as tape:
            tape.watch(params)
            h = ag.relu(ag.conv2d(x, params[0], padding=1))
            h = ag.max_pool2d(h, 2)
            h = ag.relu(ag.conv2d(h, params[1], padding="same", groups=2))
            h = ag.avg_pool2d(h, 2)
            out = ag.reshape(h, (n, 32)) @ params[2]
            d = out - t
            loss = (d * d).mean()
        gs = tape.gradient(loss, params)
        losses.append(float(loss.numpy()))
        params = [T(p.numpy() - 0.5 * g.numpy()) for p, g in zip(params, gs)]
    assert losses[-1] < 0.5 * losses[0]


# ---- GPU parity ---------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_matches_cpu():
    import cupy as cp

    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    g = rng.standard_normal((4, 6, 5, 5)).astype(np.float32)
    out = {}
    for dev in ("cpu", "cuda"):
        xt = ag.Tensor.from_array(x, device=dev)
        wt = ag.Tensor.from_array(w, device=dev)
        with ag.GradientTape() as tape:
            tape.watch([xt, wt])
            y = ag.conv2d(xt, wt, stride=2, padding=1, dilation=1, groups=2)
        gx, gw = tape.gradient(y, [xt, wt], output_gradients=ag.Tensor.from_array(g, device=dev))
        mp = ag.max_pool2d(xt, 3, 2, 1)
        ap = ag.avg_pool2d(xt, 2)
        out[dev] = [a.numpy() for a in (y, gx, gw, mp, ap)]
    for a, b in zip(out["cpu"], out["cuda"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # embedding and its scatter-add gradient
    wt = ag.Tensor.from_array(w.reshape(6, -1)[:, :5], device="cuda")
    idx = ag.Tensor.from_array(np.array([[1, 5, 1], [0, 1, 5]]), device="cuda")
    with ag.GradientTape() as tape:
        tape.watch(wt)
        e = ag.embedding(idx, wt)
    (ge,) = tape.gradient(e, [wt])
    want = np.zeros((6, 5), dtype=np.float32)
    np.add.at(want, np.array([[1, 5, 1], [0, 1, 5]]), 1.0)
    np.testing.assert_allclose(ge.numpy(), want)
    # dropout: same seed -> same mask on the GPU; expectation preserved
    xt = ag.Tensor.from_array(np.ones((256, 256), dtype=np.float32), device="cuda")
    a = ag.dropout(xt, 0.3, seed=5)
    b = ag.dropout(xt, 0.3, seed=5)
    c = ag.dropout(xt, 0.3, seed=6)
    assert isinstance(a.data, cp.ndarray)
    assert bool(cp.all(a.data == b.data)) and not bool(cp.all(a.data == c.data))
    assert abs(float(a.data.mean()) - 1.0) < 0.02


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float16, ag.dtypes.bfloat16])
def test_gpu_low_precision_matches_float64_reference(dtype):
    rng = np.random.default_rng(15)
    x, w = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((4, 2, 3, 3))
    xt = ag.Tensor.from_array(x.astype(dtype), device="cuda")
    wt = ag.Tensor.from_array(w.astype(dtype), device="cuda")
    with ag.GradientTape() as tape:
        tape.watch([xt, wt])
        y = ag.conv2d(xt, wt, padding=1, groups=2)
        outs = [y, ag.max_pool2d(y, 2, padding=1), ag.avg_pool2d(y, 2), ag.dropout(y, 0.5, seed=3)]
        s = outs[1].sum() + outs[2].sum() + outs[3].sum()
    gx, gw = tape.gradient(s, [xt, wt])
    assert all(o.dtype == dtype for o in outs + [gx, gw])
    tol = 0.05 if dtype == np.float16 else 0.3
    ref = ref_conv(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 2)
    np.testing.assert_allclose(y.numpy().astype(np.float64), ref, atol=tol)
    ref_mp, _ = ref_pool(ref, (2, 2), (2, 2), (1, 1), "max")
    np.testing.assert_allclose(outs[1].numpy().astype(np.float64), ref_mp, atol=tol)
    big = ag.dropout(xt, 0.5, seed=2**64 - 1).numpy()
    np.testing.assert_array_equal(big, ag.dropout(xt, 0.5, seed=2**64 - 1).numpy())
