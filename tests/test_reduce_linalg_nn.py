"""Reductions, einsum and friends, and the neural-network primitives: values against NumPy/SciPy,
gradients against hand-computed formulas, fused primitives against their composite oracles,
and the errors of bad input. (vjp/jvp/second order against central differences for every
primitive: tests/test_registry_rules.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp

import autograd_gpu as ag

RNG = np.random.default_rng(0)


def T(a):
    return ag.Tensor.from_array(np.asarray(a, dtype=np.float64), device="cpu")


def grads(fn, *arrays, seed=None):
    """Value and gradients of fn(*tensors) w.r.t. every argument (float64, CPU)."""
    xs = [T(a) for a in arrays]
    with ag.GradientTape() as tape:
        tape.watch(xs)
        y = fn(*xs)
    og = None if seed is None else ag.Tensor.from_array(np.asarray(seed, np.float64), "cpu")
    gs = tape.gradient(y, xs, output_gradients=og, unconnected_gradients="zero")
    return y.numpy(), [g.numpy() for g in gs]


def hvp(fn, arrays, vs):
    """d/dx <grad f(x), v> for a scalar f: a second-order sweep through nested tapes."""
    xs = [T(a) for a in arrays]
    with ag.GradientTape() as outer:
        outer.watch(xs)
        with ag.GradientTape() as inner:
            inner.watch(xs)
            y = fn(*xs)
        gs = inner.gradient(y, xs, unconnected_gradients="zero")
        h = None
        for g, v in zip(gs, vs):
            term = (g * T(v)).sum()
            h = term if h is None else h + term
    return [g.numpy() for g in outer.gradient(h, xs, unconnected_gradients="zero")]


# ---- reductions -----------------------------------------------------------------------------

X = RNG.standard_normal((3, 4, 5))
AXES = [None, 0, 1, -1, (0, 2), (0, 1, 2)]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["max", "min", "prod", "sum", "mean", "all", "any"])
def test_reduction_values_match_numpy(name, axis, keepdims):
    x = X if name not in ("all", "any") else (X > -0.5)
    ref = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    if name in ("all", "any"):
        got = getattr(ag, name)(ag.Tensor.from_array(x, device="cpu"), axis=axis,
                                keepdims=keepdims).numpy()
        assert got.dtype == bool
        np.testing.assert_array_equal(got, ref)
    else:
        got = getattr(ag, name)(T(x), axis=axis, keepdims=keepdims).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    assert got.shape == np.shape(ref)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_var_std_match_scipy_numpy(axis, keepdims):
    np.testing.assert_allclose(ag.logsumexp(T(X), axis=axis, keepdims=keepdims).numpy(),
                               sp.logsumexp(X, axis=axis, keepdims=keepdims), rtol=1e-12)
    for ddof in (0, 1):
        np.testing.assert_allclose(ag.var(T(X), axis=axis, ddof=ddof, keepdims=keepdims).numpy(),
                                   np.var(X, axis=axis, ddof=ddof, keepdims=keepdims), rtol=1e-12)
        np.testing.assert_allclose(ag.std(T(X), axis=axis, ddof=ddof, keepdims=keepdims).numpy(),
                                   np.std(X, axis=axis, ddof=ddof, keepdims=keepdims), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:divide by zero")  # log(0) = -inf for an all -inf slice
def test_logsumexp_is_stable():
    x = np.array([[1000.0, 1000.0, -1000.0], [-np.inf, -np.inf, -np.inf], [-1e308, 0.0, 1.0]])
    got = ag.logsumexp(T(x), axis=1).numpy()
    np.testing.assert_allclose(got[0], 1000.0 + np.log(2.0), rtol=1e-15)
    assert got[1] == -np.inf
    np.testing.assert_allclose(got[2], sp.logsumexp(x[2]), rtol=1e-15)
    f32 = ag.logsumexp(ag.Tensor.from_array(np.float32([[100.0, 100.0]]), device="cpu"), axis=1)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32.numpy(), [100.0 + np.log(2.0)], rtol=1e-6)


def test_max_min_gradient_splits_ties_equally():
    x = np.array([1.0, 3.0, 3.0, 2.0])
    _, (g,) = grads(ag.max, x)
    np.testing.assert_allclose(g, [0.0, 0.5, 0.5, 0.0])
    _, (g,) = grads(ag.min, np.array([0.5, 0.5, 0.5, 2.0]))
    np.testing.assert_allclose(g, [1 / 3, 1 / 3, 1 / 3, 0.0])
    x = np.array([[1.0, 5.0, 5.0], [7.0, 2.0, 0.0]])
    w = np.array([2.0, 3.0])
    _, (g,) = grads(lambda t: ag.max(t, axis=1), x, seed=w)
    np.testing.assert_allclose(g, [[0.0, 1.0, 1.0], [3.0, 0.0, 0.0]])
    _, (g,) = grads(lambda t: ag.min(t, axis=0, keepdims=True), x, seed=[[1.0, 1.0, 1.0]])
    np.testing.assert_allclose(g, [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])


def test_logsumexp_gradient_is_softmax():
    x = RNG.standard_normal((3, 5))
    u = RNG.standard_normal(3)
    _, (g,) = grads(lambda t: ag.logsumexp(t, axis=1), x, seed=u)
    np.testing.assert_allclose(g, u[:, None] * sp.softmax(x, axis=1), rtol=1e-12)
    # Hessian-vector product: (diag(p) - p p^T) v, row by row
    v = RNG.standard_normal((3, 5))
    (h,) = hvp(lambda t: ag.logsumexp(t, axis=1).sum(), [x], [v])
    p = sp.softmax(x, axis=1)
    np.testing.assert_allclose(h, p * v - p * np.sum(p * v, axis=1, keepdims=True), rtol=1e-10)


@pytest.mark.parametrize("ddof", [0, 1])
def test_var_std_gradients(ddof):
    x = RNG.standard_normal((4, 6))
    n = 6
    _, (g,) = grads(lambda t: ag.var(t, axis=1, ddof=ddof), x)
    d = x - x.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(g, 2 * d / (n - ddof), rtol=1e-12)
    _, (g,) = grads(lambda t: ag.std(t, axis=1, ddof=ddof), x)
    s = x.std(axis=1, ddof=ddof, keepdims=True)
    np.testing.assert_allclose(g, d / ((n - ddof) * s), rtol=1e-10)


def test_prod_values_and_gradients_with_zeros():
    x = np.array([[2.0, 3.0, 4.0], [2.0, 0.0, 3.0], [0.0, 5.0, 0.0]])
    np.testing.assert_allclose(ag.prod(T(x), axis=1).numpy(), [24.0, 0.0, 0.0])
    _, (g,) = grads(lambda t: ag.prod(t, axis=1), x)
    # d prod / d x_i = product of the other entries
    np.testing.assert_allclose(g, [[12.0, 8.0, 6.0], [0.0, 6.0, 0.0], [0.0, 0.0, 0.0]])
    # second order where the slice has no zero: d2/dxi dxj = prod / (xi xj) off the diagonal
    x = np.array([1.5, -2.0, 0.5])
    v = np.array([1.0, 2.0, -1.0])
    (h,) = hvp(ag.prod, [x], [v])
    H = np.prod(x) / np.outer(x, x)
    np.fill_diagonal(H, 0.0)
    np.testing.assert_allclose(h, H @ v, rtol=1e-12)


def test_argmax_argmin_first_on_ties_and_not_differentiable():
    x = np.array([[1.0, 4.0, 4.0], [-1.0, -3.0, -3.0]])
    np.testing.assert_array_equal(ag.argmax(T(x), axis=1).numpy(), [1, 0])
    np.testing.assert_array_equal(ag.argmin(T(x), axis=1).numpy(), [0, 1])
    np.testing.assert_array_equal(ag.argmax(T(x), axis=0, keepdims=True).numpy(), [[0, 0, 0]])
    assert ag.argmax(T(x)).numpy() == 1 and ag.argmin(T(x)).numpy() == 4
    assert ag.argmax(T(x), axis=-1).dtype == np.int64
    t = T(x)
    with ag.GradientTape() as tape:
        tape.watch(t)
        i = ag.argmax(t, axis=1)
    assert not isinstance(i, ag.TrackedTensor)


def test_reduction_methods_on_tensor():
    t = T(X)
    np.testing.assert_allclose(t.max(axis=1).numpy(), X.max(axis=1))
    np.testing.assert_allclose(t.logsumexp(axis=0).numpy(), sp.logsumexp(X, axis=0))
    np.testing.assert_allclose(t.var(axis=2, ddof=1).numpy(), X.var(axis=2, ddof=1))
    np.testing.assert_array_equal(t.argmin(axis=2).numpy(), X.argmin(axis=2))


def test_reduction_errors():
    t = T(X)
    with pytest.raises(ag.ShapeError, match="axis"):
        ag.max(t, axis=3)
    with pytest.raises(ag.ShapeError, match="repeated"):
        ag.min(t, axis=(0, -3))
    with pytest.raises(ag.ShapeError, match="ddof"):
        ag.var(t, axis=1, ddof=4)
    with pytest.raises(ag.ArgumentError, match="ddof"):
        ag.var(t, ddof=-1)
    with pytest.raises(ag.ArgumentError, match="int or None"):
        ag.argmax(t, axis=(0, 1))
    with pytest.raises(ag.ShapeError, match="axis"):
        ag.argmin(t, axis=-4)
    with pytest.raises(ag.ShapeError, match="non-empty"):
        ag.max(T(np.zeros((2, 0))), axis=1)
    with pytest.raises(ag.DTypeError, match="floating"):
        ag.logsumexp(ag.Tensor.from_array(np.arange(3), device="cpu"))
    with pytest.raises(ag.ArgumentError):
        ag.prod("not a tensor")


@pytest.mark.parametrize("call", [
    lambda t: ag.sum(t, axis=True), lambda t: ag.mean(t, axis=(0, False)),
    lambda t: ag.fft.fftn(t, axes=(True,)), lambda t: ag.linalg.norm(t, axis=True),
    lambda t: ag.grad(lambda a: (a * a).sum(), argnums=True)(t),
    lambda t: ag.transpose(t, (True, False)), lambda t: ag.softmax(t, axis=True),
    lambda t: ag.log_softmax(t, axis=True), lambda t: ag.take(t, [0], axis=True)], ids=[
    "sum", "mean", "fftn", "norm", "grad", "transpose", "softmax", "log_softmax", "take"])
def test_a_bool_is_not_an_axis(call):
    """NumPy raises for axis=True; read as 1 it would reduce over an axis nobody named. One
    reader of axis-like arguments (ops._util.positions) refuses it everywhere."""
    with pytest.raises(ag.AutogradError, match="expected an int( or a sequence of ints)?,? "
                                               "(in .*)?got"):
        call(T(X))


# ---- einsum, outer, tensordot, dot ----------------------------------------------------------

EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 2)]),
    ("ij,jk", [(3, 4), (4, 2)]),
    ("ij->ji", [(3, 4)]),
    ("ji", [(3, 4)]),  # implicit: sorted letters -> transpose
    ("ii->", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("ii->i", [(4, 4)]),
    ("iij->ji", [(3, 3, 2)]),
    ("ij->", [(3, 4)]),
    ("i,i->", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("...ij,jk", [(2, 3, 4), (4, 5)]),
    ("i...->...", [(3, 2, 4)]),
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 2)]),
    ("ij,ij->ij", [(3, 1), (3, 4)]),
    (" i j , j k -> i k ", [(3, 4), (4, 2)]),
    ("Ba,aC", [(2, 3), (3, 4)]),
]


@pytest.mark.parametrize("spec,shapes", EINSUM_CASES)
def test_einsum_values_match_numpy(spec, shapes):
    ops = [RNG.standard_normal(s) for s in shapes]
    got = ag.einsum(spec, *[T(o) for o in ops]).numpy()
    ref = np.einsum(spec.replace(" ", ""), *ops)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec,shapes", EINSUM_CASES)
def test_einsum_gradient_matches_finite_differences(spec, shapes):
    ops = [RNG.standard_normal(s) for s in shapes]
    ref = np.einsum(spec.replace(" ", ""), *ops)
    u = RNG.standard_normal(ref.shape)
    _, gs = grads(lambda *ts: ag.einsum(spec, *ts), *ops, seed=u)
    for k, (o, g) in enumerate(zip(ops, gs)):
        assert g.shape == o.shape
        num = np.zeros_like(o)
        for idx in np.ndindex(o.shape):  # einsum is linear in each operand: exact differences
            e = np.zeros_like(o)
            e[idx] = 1.0
            args = [e if j == k else ops[j] for j in range(len(ops))]
            num[idx] = np.sum(u * np.einsum(spec.replace(" ", ""), *args))
        np.testing.assert_allclose(g, num, rtol=1e-10, atol=1e-12)


def test_einsum_gradients_by_hand():
    a, b = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 2))
    g = RNG.standard_normal((3, 2))
    _, (ga, gb) = grads(lambda x, y: ag.einsum("ij,jk->ik", x, y), a, b, seed=g)
    np.testing.assert_allclose(ga, g @ b.T, rtol=1e-12)
    np.testing.assert_allclose(gb, a.T @ g, rtol=1e-12)
    _, (gt,) = grads(lambda x: ag.einsum("ii->", x), RNG.standard_normal((4, 4)))
    np.testing.assert_allclose(gt, np.eye(4))
    d = RNG.standard_normal(4)
    _, (gd,) = grads(lambda x: ag.einsum("ii->i", x), RNG.standard_normal((4, 4)), seed=d)
    np.testing.assert_allclose(gd, np.diag(d))
    # a size-1 axis broadcast against 4: its gradient sums over the broadcast
    x, y = RNG.standard_normal((3, 1)), RNG.standard_normal((3, 4))
    _, (gx, gy) = grads(lambda s, t: ag.einsum("ij,ij->ij", s, t), x, y)
    np.testing.assert_allclose(gx, y.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(gy, np.broadcast_to(x, (3, 4)), rtol=1e-12)


def test_einsum_second_order_quadratic_form():
    A = RNG.standard_normal((4, 4))
    x = RNG.standard_normal(4)
    v = RNG.standard_normal(4)
    (h,) = hvp(lambda t: ag.einsum("i,ij,j->", t, T(A), t), [x], [v])
    np.testing.assert_allclose(h, (A + A.T) @ v, rtol=1e-12)


def test_outer_tensordot_dot_match_numpy():
    a, b = RNG.standard_normal((2, 3)), RNG.standard_normal(4)
    np.testing.assert_allclose(ag.outer(T(a), T(b)).numpy(), np.outer(a, b))
    _, (ga, gb) = grads(ag.outer, a, b)
    np.testing.assert_allclose(ga, np.full((2, 3), b.sum()))
    np.testing.assert_allclose(gb, np.full(4, a.sum()))
    x, y = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((3, 4, 5))
    np.testing.assert_allclose(ag.tensordot(T(x), T(y)).numpy(), np.tensordot(x, y), rtol=1e-12)
    np.testing.assert_allclose(ag.tensordot(T(x), T(y), axes=0).numpy(),
                               np.tensordot(x, y, axes=0), rtol=1e-12)
    z = RNG.standard_normal((4, 2, 3))
    np.testing.assert_allclose(ag.tensordot(T(x), T(z), axes=([1, 2], [2, 0])).numpy(),
                               np.tensordot(x, z, axes=([1, 2], [2, 0])), rtol=1e-12)
    np.testing.assert_allclose(ag.tensordot(T(x), T(z), axes=(-1, 0)).numpy(),
                               np.tensordot(x, z, axes=(-1, 0)), rtol=1e-12)
    for sa, sb in [((3,), (3,)), ((2, 3), (3, 4)), ((2, 3), (3,)), ((3,), (3, 4)),
                   ((2, 2, 3), (4, 3, 5)), ((), (2, 3)), ((2, 3), ())]:
        p, q = RNG.standard_normal(sa), RNG.standard_normal(sb)
        np.testing.assert_allclose(ag.dot(T(p), T(q)).numpy(), np.dot(p, q), rtol=1e-12)
    _, (gp, gq) = grads(ag.dot, RNG.standard_normal((2, 3)), q := RNG.standard_normal((3, 4)))
    np.testing.assert_allclose(gp, np.ones((2, 4)) @ q.T, rtol=1e-12)


def test_einsum_errors():
    a, b = T(np.ones((2, 3))), T(np.ones((3, 4)))
    with pytest.raises(ag.ArgumentError, match="operand"):
        ag.einsum("ij,jk->ik", a)
    with pytest.raises(ag.ArgumentError, match="letters"):
        ag.einsum("i1,jk->ik", a, b)
    with pytest.raises(ag.ArgumentError, match="repeat"):
        ag.einsum("ij,jk->ii", a, b)
    with pytest.raises(ag.ArgumentError, match="do not appear"):
        ag.einsum("ij,jk->iz", a, b)
    with pytest.raises(ag.ShapeError, match="size"):
        ag.einsum("ij,jk->ik", a, T(np.ones((4, 4))))
    with pytest.raises(ag.ShapeError, match="names 3 axes"):
        ag.einsum("ijk,jk->i", a, b)
    with pytest.raises(ag.ShapeError, match="repeats in operand"):
        ag.einsum("ii->i", a)
    with pytest.raises(ag.ShapeError, match=r"'\.\.\.'"):
        ag.einsum("...j->j", T(np.ones((2, 3))))
    with pytest.raises(ag.ArgumentError, match="more than one"):
        ag.einsum("...i...->i", a)
    with pytest.raises(ag.ArgumentError, match="at least one operand"):
        ag.einsum("ij")
    with pytest.raises(ag.ShapeError, match="differ in size"):
        ag.tensordot(a, a, axes=1)
    with pytest.raises(ag.ShapeError, match="axes"):
        ag.tensordot(a, b, axes=([0, 1], [0]))


# ---- softmax, log_softmax -------------------------------------------------------------------


def softmax_composite(x, axis=-1):
    """The oracle: exp(x - logsumexp(x)) from primitives."""
    return ag.exp(x - ag.logsumexp(x, axis=axis, keepdims=True))


def log_softmax_composite(x, axis=-1):
    return x - ag.logsumexp(x, axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_log_softmax_match_scipy(axis):
    x = RNG.standard_normal((3, 4, 5)) * 3
    np.testing.assert_allclose(ag.softmax(T(x), axis=axis).numpy(), sp.softmax(x, axis=axis),
                               rtol=1e-12)
    np.testing.assert_allclose(ag.log_softmax(T(x), axis=axis).numpy(),
                               sp.log_softmax(x, axis=axis), rtol=1e-12)


def test_softmax_is_stable_for_large_logits():
    x = np.array([[1000.0, 999.0, -1000.0]])
    s = ag.softmax(T(x)).numpy()
    ls = ag.log_softmax(T(x)).numpy()
    assert np.all(np.isfinite(s)) and np.isfinite(ls[0, :2]).all()
    np.testing.assert_allclose(s, sp.softmax(x, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(ls, sp.log_softmax(x, axis=-1), rtol=1e-12)
    f32 = ag.softmax(ag.Tensor.from_array(np.float32([[80.0, 81.0]]), device="cpu"))
    assert f32.dtype == np.float32


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_gradients_by_hand_and_against_the_composite(axis):
    x = RNG.standard_normal((3, 4))
    g = RNG.standard_normal((3, 4))
    y, (gx,) = grads(lambda t: ag.softmax(t, axis=axis), x, seed=g)
    np.testing.assert_allclose(gx, y * (g - np.sum(g * y, axis=axis, keepdims=True)), rtol=1e-12)
    _, (gc,) = grads(lambda t: softmax_composite(t, axis), x, seed=g)
    np.testing.assert_allclose(gx, gc, rtol=1e-10, atol=1e-14)
    ly, (lx,) = grads(lambda t: ag.log_softmax(t, axis=axis), x, seed=g)
    np.testing.assert_allclose(lx, g - np.exp(ly) * np.sum(g, axis=axis, keepdims=True),
                               rtol=1e-12)
    _, (lc,) = grads(lambda t: log_softmax_composite(t, axis), x, seed=g)
    np.testing.assert_allclose(lx, lc, rtol=1e-10, atol=1e-14)
    # second order against the composite
    w, v = T(RNG.standard_normal((3, 4))), RNG.standard_normal((3, 4))
    for prim, comp in ((ag.softmax, softmax_composite), (ag.log_softmax, log_softmax_composite)):
        (h1,) = hvp(lambda t: (prim(t, axis=axis) * w).sum(), [x], [v])
        (h2,) = hvp(lambda t: (comp(t, axis) * w).sum(), [x], [v])
        np.testing.assert_allclose(h1, h2, rtol=1e-9, atol=1e-12)


def test_softmax_errors():
    with pytest.raises(ag.ShapeError, match="axis"):
        ag.softmax(T(np.ones((2, 3))), axis=2)
    with pytest.raises(ag.ShapeError, match="at least 1 dimension"):
        ag.log_softmax(T(1.0))
    with pytest.raises(ag.DTypeError, match="floating"):
        ag.softmax(ag.Tensor.from_array(np.arange(3), device="cpu"))


# ---- cross_entropy --------------------------------------------------------------------------


def ce_composite(logits, labels_np, axis=-1, reduction="mean", label_smoothing=0.0):
    """The oracle for integer labels: a one-hot float target through the probability path,
    written with log_softmax_composite."""
    c = logits.shape[axis]
    onehot = np.moveaxis(np.eye(c)[labels_np], -1, axis)
    q = onehot * (1 - label_smoothing) + label_smoothing / c
    loss = -(T(q) * log_softmax_composite(logits, axis)).sum(axis=axis)
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


def ce_numpy(x, labels, axis=-1):
    lsm = sp.log_softmax(x, axis=axis)
    return -np.squeeze(np.take_along_axis(lsm, np.expand_dims(labels, axis), axis=axis), axis)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_integer_labels(reduction, axis, smoothing):
    x = RNG.standard_normal((4, 5, 3)) * 2
    c = x.shape[axis]
    lshape = (4, 3) if axis == 1 else (4, 5)
    labels = RNG.integers(0, c, size=lshape)
    lab = ag.Tensor.from_array(labels, device="cpu")
    fn = lambda t: ag.cross_entropy(t, lab, axis=axis, reduction=reduction,  # noqa: E731
                                    label_smoothing=smoothing)
    seed = None if reduction != "none" else RNG.standard_normal(lshape)
    y, (g,) = grads(fn, x, seed=seed)
    yc, (gc,) = grads(lambda t: ce_composite(t, labels, axis, reduction, smoothing), x, seed=seed)
    np.testing.assert_allclose(y, yc, rtol=1e-12)
    np.testing.assert_allclose(g, gc, rtol=1e-10, atol=1e-14)
    if smoothing == 0.0:
        per = ce_numpy(x, labels, axis)
        ref = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
        np.testing.assert_allclose(y, ref, rtol=1e-12)
        # by hand: (softmax - onehot) times the example's weight
        w = {"mean": np.full(lshape, 1 / labels.size), "sum": np.ones(lshape), "none": seed}
        onehot = np.moveaxis(np.eye(c)[labels], -1, axis)
        hand = np.expand_dims(w[reduction], axis) * (sp.softmax(x, axis=axis) - onehot)
        np.testing.assert_allclose(g, hand, rtol=1e-10, atol=1e-14)
    # second order against the composite
    v = RNG.standard_normal(x.shape)
    scal = (lambda f: (lambda t: f(t).sum()))
    (h1,) = hvp(scal(fn), [x], [v])
    (h2,) = hvp(scal(lambda t: ce_composite(t, labels, axis, reduction, smoothing)), [x], [v])
    np.testing.assert_allclose(h1, h2, rtol=1e-9, atol=1e-12)


def test_cross_entropy_label_forms():
    x = RNG.standard_normal((1, 4))
    ref = ce_numpy(x, np.array([2]))[0]
    np.testing.assert_allclose(ag.cross_entropy(T(x), [2]).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(ag.cross_entropy(T(x), np.array([2], np.int32)).numpy(), ref,
                               rtol=1e-12)
    np.testing.assert_allclose(ag.cross_entropy(T(x[0]), 2).numpy(), ref, rtol=1e-12)
    big = np.array([[1000.0, 0.0, -1000.0]])
    np.testing.assert_allclose(ag.cross_entropy(T(big), [1]).numpy(), 1000.0, rtol=1e-12)


def test_cross_entropy_probabilities_differentiable_in_both():
    x = RNG.standard_normal((3, 4))
    p = sp.softmax(RNG.standard_normal((3, 4)), axis=1)
    (loss, (gx, gp)) = grads(lambda a, b: ag.cross_entropy(a, b, reduction="sum"), x, p)
    lsm = sp.log_softmax(x, axis=1)
    np.testing.assert_allclose(loss, -np.sum(p * lsm), rtol=1e-12)
    np.testing.assert_allclose(gp, -lsm, rtol=1e-12)
    np.testing.assert_allclose(gx, sp.softmax(x, axis=1) * p.sum(1, keepdims=True) - p,
                               rtol=1e-10, atol=1e-14)
    # smoothing: (1 - s) p + s / C
    s = 0.1
    loss = ag.cross_entropy(T(x), T(p), label_smoothing=s).numpy()
    np.testing.assert_allclose(loss, np.mean(-np.sum(((1 - s) * p + s / 4) * lsm, axis=1)),
                               rtol=1e-12)


def test_cross_entropy_primitive_marks_bad_labels_with_nan():
    """What a GPU (where the public check would cost a host sync) gets for a label out of
    range: NaN for that example's loss and first-order gradient, the others untouched."""
    x = RNG.standard_normal((3, 4))
    labels = ag.Tensor.from_array(np.array([1, 7, -1]), device="cpu")
    op = ag.REGISTRY["cross_entropy"]
    xt = T(x)
    with ag.GradientTape() as tape:
        tape.watch(xt)
        loss = ag.apply(op, xt, labels, axis=-1, label_smoothing=0.0)
    (g,) = tape.gradient(loss, [xt])
    loss, g = loss.numpy(), g.numpy()
    np.testing.assert_allclose(loss[0], ce_numpy(x[:1], np.array([1]))[0], rtol=1e-12)
    assert np.isnan(loss[1:]).all() and np.isnan(g[1:]).all() and np.isfinite(g[0]).all()


def test_cross_entropy_errors():
    x = T(np.zeros((2, 3)))
    with pytest.raises(ag.ArgumentError, match=r"\[0, 3\)"):
        ag.cross_entropy(x, [0, 3])
    with pytest.raises(ag.ArgumentError, match=r"\[0, 3\)"):
        ag.cross_entropy(x, [-1, 0])
    with pytest.raises(ag.ShapeError, match="expected shape"):
        ag.cross_entropy(x, [0, 1, 2])
    with pytest.raises(ag.ShapeError, match="integer class labels need an integer dtype"):
        ag.cross_entropy(x, T([0.0, 1.0]))
    with pytest.raises(ag.DTypeError, match="bool"):
        ag.cross_entropy(x, ag.Tensor.from_array(np.array([True, False]), device="cpu"))
    with pytest.raises(ag.DTypeError, match="floating"):
        ag.cross_entropy(ag.Tensor.from_array(np.zeros((2, 3), np.int64), device="cpu"), [0, 1])
    with pytest.raises(ag.ArgumentError, match="reduction"):
        ag.cross_entropy(x, [0, 1], reduction="avg")
    with pytest.raises(ag.ArgumentError, match="label_smoothing"):
        ag.cross_entropy(x, [0, 1], label_smoothing=1.5)
    with pytest.raises(ag.ShapeError, match="axis"):
        ag.cross_entropy(x, [0, 1], axis=2)
    with pytest.raises(ag.ShapeError, match="scalar"):
        ag.cross_entropy(T(1.0), 0)


# ---- layer_norm -----------------------------------------------------------------------------


def layer_norm_composite(x, k, weight=None, bias=None, eps=1e-5):
    """The oracle: mean, var and sqrt from primitives."""
    axes = tuple(range(x.ndim - k, x.ndim))
    y = (x - ag.mean(x, axis=axes, keepdims=True)) / ag.sqrt(
        ag.var(x, axis=axes, keepdims=True) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


@pytest.mark.parametrize("ns", [(6,), (4, 6)])
@pytest.mark.parametrize("affine", [False, True])
def test_layer_norm_against_numpy_and_the_composite(ns, affine):
    x = RNG.standard_normal((3, 4, 6)) * 2 + 1
    k = len(ns)
    axes = tuple(range(3 - k, 3))
    ref = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + 0.01)
    args = [x]
    if affine:
        w, b = RNG.standard_normal(ns), RNG.standard_normal(ns)
        ref = ref * w + b
        args += [w, b]
        fn = lambda t, wt, bt: ag.layer_norm(t, ns, wt, bt, eps=0.01)  # noqa: E731
        comp = lambda t, wt, bt: layer_norm_composite(t, k, wt, bt, eps=0.01)  # noqa: E731
    else:
        fn = lambda t: ag.layer_norm(t, ns, eps=0.01)  # noqa: E731
        comp = lambda t: layer_norm_composite(t, k, eps=0.01)  # noqa: E731
    u = RNG.standard_normal(x.shape)
    y, gs = grads(fn, *args, seed=u)
    yc, gcs = grads(comp, *args, seed=u)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, yc, rtol=1e-12, atol=1e-12)
    for g, gc in zip(gs, gcs):
        np.testing.assert_allclose(g, gc, rtol=1e-9, atol=1e-12)
    if affine:  # by hand: d/dw = sum over leading axes of u * xhat, d/db = sum of u
        lead = tuple(range(3 - k))
        xhat = (y - args[2]) / args[1]
        np.testing.assert_allclose(gs[1], np.sum(u * xhat, axis=lead), rtol=1e-10)
        np.testing.assert_allclose(gs[2], np.sum(u, axis=lead), rtol=1e-12)
    vs = [RNG.standard_normal(np.shape(a)) for a in args]
    wt = T(RNG.standard_normal(x.shape))
    h1 = hvp(lambda *ts: (fn(*ts) * wt).sum(), args, vs)
    h2 = hvp(lambda *ts: (comp(*ts) * wt).sum(), args, vs)
    for a, b in zip(h1, h2):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11)


def test_layer_norm_gradient_by_hand():
    x = RNG.standard_normal((2, 5))
    g = RNG.standard_normal((2, 5))
    eps = 1e-5
    _, (gx,) = grads(lambda t: ag.layer_norm(t, 5, eps=eps), x, seed=g)
    rstd = 1 / np.sqrt(x.var(axis=1, keepdims=True) + eps)
    xhat = (x - x.mean(axis=1, keepdims=True)) * rstd
    hand = rstd * (g - g.mean(1, keepdims=True) - xhat * (g * xhat).mean(1, keepdims=True))
    np.testing.assert_allclose(gx, hand, rtol=1e-10, atol=1e-12)


def test_layer_norm_errors():
    x = T(np.ones((2, 3)))
    with pytest.raises(ag.ShapeError, match="trailing axes"):
        ag.layer_norm(x, (2,))
    with pytest.raises(ag.ShapeError, match="trailing axes"):
        ag.layer_norm(x, (1, 2, 3))
    with pytest.raises(ag.ShapeError, match="weight"):
        ag.layer_norm(x, 3, weight=T(np.ones(2)))
    with pytest.raises(ag.ShapeError, match="bias"):
        ag.layer_norm(x, 3, bias=T(np.ones((1, 3))))
    with pytest.raises(ag.ArgumentError, match="eps"):
        ag.layer_norm(x, 3, eps=0.0)
    with pytest.raises(ag.ArgumentError, match="normalized_shape"):
        ag.layer_norm(x, "3")


# ---- mse_loss -------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction):
    p, t = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    seed = RNG.standard_normal((4, 3)) if reduction == "none" else None
    y, (gp, gt) = grads(lambda a, b: ag.mse_loss(a, b, reduction=reduction), p, t, seed=seed)
    sq = (p - t) ** 2
    np.testing.assert_allclose(y, {"mean": sq.mean(), "sum": sq.sum(), "none": sq}[reduction],
                               rtol=1e-12)
    w = {"mean": 1 / 12, "sum": 1.0, "none": seed}[reduction]
    np.testing.assert_allclose(gp, 2 * (p - t) * w, rtol=1e-12)
    np.testing.assert_allclose(gt, -2 * (p - t) * w, rtol=1e-12)


def test_mse_loss_errors():
    with pytest.raises(ag.ShapeError, match="shape"):
        ag.mse_loss(T(np.ones((2, 3))), T(np.ones(3)))
    with pytest.raises(ag.ArgumentError, match="reduction"):
        ag.mse_loss(T(np.ones(3)), T(np.ones(3)), reduction="max")


# ---- forward mode ---------------------------------------------------------------------------

LAB = np.array([[0, 2, 1], [3, 3, 0]])
FORWARD_CASES = {
    "max": lambda t: ag.max(t, axis=1),
    "logsumexp": lambda t: ag.logsumexp(t, axis=(0, 2)),
    "var": lambda t: ag.var(t, axis=-1, ddof=1),
    "prod": lambda t: ag.prod(t, axis=0),
    "einsum": lambda t: ag.einsum("ijk,ijk->j", t, t),
    "softmax": lambda t: ag.softmax(t, axis=1),
    "log_softmax": lambda t: ag.log_softmax(t, axis=-1),
    "cross_entropy": lambda t: ag.cross_entropy(t, LAB, axis=1, reduction="none",
                                                label_smoothing=0.1),
    "layer_norm": lambda t: ag.layer_norm(t, (4, 3)),
}


@pytest.mark.parametrize("name", sorted(FORWARD_CASES))
def test_forward_mode_and_forward_over_reverse(name):
    fn = FORWARD_CASES[name]
    x = RNG.standard_normal((2, 4, 3)) + 0.1
    v = RNG.standard_normal(x.shape)
    y = fn(T(x)).numpy()
    u = RNG.standard_normal(y.shape)
    _, (g,) = grads(fn, x, seed=u)
    xt = T(x)
    with ag.ForwardAccumulator(xt, T(v)) as acc:
        jv = acc.jvp(fn(xt)).numpy()
    np.testing.assert_allclose(np.sum(u * jv), np.sum(g * v), rtol=1e-10)  # <u, Jv> = <J'u, v>
    # forward-over-reverse Hessian-vector product against reverse-over-reverse
    (h_rr,) = hvp(lambda t: (fn(t) * T(u)).sum(), [x], [v])
    xt = T(x)
    with ag.ForwardAccumulator(xt, T(v)) as acc:
        with ag.GradientTape() as tape:
            tape.watch(xt)
            s = (fn(xt) * T(u)).sum()
        (gx,) = tape.gradient(s, [xt])
        h_fr = acc.jvp(gx, unconnected_gradients="zero").numpy()
    np.testing.assert_allclose(h_fr, h_rr, rtol=1e-8, atol=1e-10)


# ---- GPU parity (cupy against numpy) --------------------------------------------------------

GPU_CASES = {
    "max": (lambda x: ag.max(x, axis=1), (64, 33)),
    "min": (lambda x: ag.min(x, axis=(0, 2), keepdims=True), (8, 9, 10)),
    "logsumexp": (lambda x: ag.logsumexp(x, axis=-1), (64, 33)),
    "var": (lambda x: ag.var(x, axis=0, ddof=1), (64, 33)),
    "std": (lambda x: ag.std(x, axis=1), (64, 33)),
    "prod": (lambda x: ag.prod(x * 0.1 + 1.0, axis=1), (16, 8)),
    "einsum": (lambda x: ag.einsum("bij,bkj->bik", x, x), (4, 16, 32)),
    "einsum_trace": (lambda x: ag.einsum("ii->", x), (32, 32)),
    "tensordot": (lambda x: ag.tensordot(x, x, axes=([0], [0])), (16, 8)),
    "softmax": (lambda x: ag.softmax(x, axis=-1), (64, 1000)),
    "softmax_axis0": (lambda x: ag.softmax(x, axis=0), (64, 33)),
    "log_softmax": (lambda x: ag.log_softmax(x, axis=-1), (64, 1000)),
    "cross_entropy": (lambda x: ag.cross_entropy(x, ag.Tensor.from_array(
        np.arange(x.shape[0]) % x.shape[1], device=x.device), label_smoothing=0.1), (64, 1000)),
    "layer_norm": (lambda x: ag.layer_norm(x, x.shape[-1]), (64, 768)),
    "mse_loss": (lambda x: ag.mse_loss(x, x * 0.5 + 1.0), (64, 33)),
}
# float16/bfloat16 on the GPU for the ops that mixed precision keeps (AMP) or autocasts
LOW_PRECISION = ("max", "logsumexp", "softmax", "log_softmax", "cross_entropy", "layer_norm",
                 "einsum")


def _gpu_case(name, dtype, device="cuda"):
    from autograd_gpu.dtypes import as_dtype

    fn, shape = GPU_CASES[name]
    rng = np.random.default_rng(1)
    x64 = rng.standard_normal(shape)
    dt = as_dtype(dtype)
    x_low = x64.astype(dt)
    ref_in = x_low.astype(np.float64)  # the reference sees the same rounded inputs

    def run(arr, device):
        t = ag.Tensor.from_array(arr, device=device)
        with ag.GradientTape() as tape:
            tape.watch(t)
            y = fn(t)
            w = np.random.default_rng(2).standard_normal(y.shape).astype(arr.dtype)
            s = (y * ag.Tensor.from_array(w, device=device)).sum()
        (g,) = tape.gradient(s, [t])
        return y, g

    y_gpu, g_gpu = run(x_low, device)
    y_ref, g_ref = run(ref_in, "cpu")
    return y_gpu, g_gpu, y_ref.numpy(), g_ref.numpy(), dt


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(GPU_CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_gpu_matches_numpy(name, dtype):
    if dtype in ("float16", "bfloat16") and name not in LOW_PRECISION:
        pytest.skip("low precision is checked for the AMP ops only")
    y_gpu, g_gpu, y_ref, g_ref, dt = _gpu_case(name, dtype)
    assert y_gpu.device.type == "cuda" and y_gpu.dtype == dt and g_gpu.dtype == dt
    tol = {"float64": 1e-10, "float32": 2e-4, "float16": 2e-2, "bfloat16": 6e-2}[dtype]
    for got, ref in ((y_gpu, y_ref), (g_gpu, g_ref)):
        got = got.numpy().astype(np.float64)
        scale = np.max(np.abs(ref)) + 1e-30
        assert np.max(np.abs(got - ref)) <= tol * scale, f"{name} {dtype}"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_on_cpu_accumulates_in_float32(dtype):
    from autograd_gpu.dtypes import as_dtype

    dt = as_dtype(dtype)
    ones = ag.Tensor.from_array(np.ones(1000, dtype=dt), device="cpu")
    s = ag.sum(ones)
    assert s.dtype == dt and float(s.numpy()) == 1000.0  # bfloat16 summed in bfloat16 gives 256
    assert float(ag.mean(ones).numpy()) == 1.0
    for name in ("max", "logsumexp", "softmax", "log_softmax", "cross_entropy", "layer_norm",
                 "einsum"):
        y, g, y_ref, g_ref, _ = _gpu_case(name, dtype, device="cpu")
        assert y.dtype == dt and g.dtype == dt, name
        for got, ref in ((y, y_ref), (g, g_ref)):
            err = np.max(np.abs(got.numpy().astype(np.float64) - ref)) / np.max(np.abs(ref))
            assert err <= 3e-2, (name, err)


def test_layer_norm_bfloat16_gradient_on_an_ill_conditioned_row():
    """Two nearly equal values (rstd = 64 in bfloat16): the first-order rule runs in float32,
    so the gradient still sums to zero over the row and matches float64 to bfloat16 precision
    (computed in bfloat16 it came out as [-0.68, 0.43])."""
    from autograd_gpu.dtypes import bfloat16

    x = np.array([[1.84375, 1.875]])
    u = np.array([[-1.24591095, -0.73226735]])

    def grad(dtype):
        t = ag.Tensor.from_array(x.astype(dtype))
        with ag.GradientTape() as tape:
            tape.watch(t)
            y = ag.layer_norm(t, 2)
        return tape.gradient(y, [t], output_gradients=ag.Tensor.from_array(
            u.astype(dtype)))[0].numpy().astype(np.float64)

    g16, g64 = grad(bfloat16), grad(np.float64)
    assert abs(g16.sum()) < 1e-6
    np.testing.assert_allclose(g16, g64, rtol=0.03)
