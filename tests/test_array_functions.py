"""NumPy's array functions on tensors (ops/arrays.py): values against NumPy (the same call on
arrays and on tensors), gradients against central differences of NumPy's own function and
against PyTorch where it has the function, the conventions (ties in sort, median and quantile,
zeros in cumprod, infinities in logcumsumexp), Tensor methods, and errors."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag

try:  # PyTorch is a reference where it has the function (not a dependency)
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

EPS = 1e-6


def T(a):
    return ag.Tensor.from_array(np.asarray(a))


def _distinct(rng, shape, lo=-2.0, hi=2.0):
    """Values pairwise at least 0.02 apart (no ties: sort, median and max-like functions have
    a derivative there)."""
    n = int(np.prod(shape))
    grid = np.linspace(lo, hi, 4 * n)
    return rng.choice(grid, n, replace=False).reshape(shape)


RNG = np.random.default_rng(7)
A = _distinct(RNG, (3, 4, 5))
B = _distinct(RNG, (2, 3))
V = _distinct(RNG, (5,))
U3 = _distinct(RNG, (4, 3))
W3 = _distinct(RNG, (3,))
Z = np.array([[2.0, 0.0, 3.0, 0.5, -4.0], [1.5, -0.5, 0.0, 0.0, 2.0]])

# name: (call(module, *inputs) with the same code for numpy and ag, inputs)
CASES = {
    "repeat_axis": (lambda m, a: m.repeat(a, 2, axis=1), [A]),
    "repeat_counts": (lambda m, a: m.repeat(a, [1, 0, 2], axis=0), [A]),
    "repeat_flat": (lambda m, a: m.repeat(a, 3), [B]),
    "tile": (lambda m, a: m.tile(a, (2, 1, 1, 3)), [A]),
    "tile_int": (lambda m, a: m.tile(a, 3), [V]),
    "roll": (lambda m, a: m.roll(a, 2, axis=1), [A]),
    "roll_axes": (lambda m, a: m.roll(a, (1, -3), axis=(0, 2)), [A]),
    "roll_flat": (lambda m, a: m.roll(a, 7), [A]),
    "rot90_1": (lambda m, a: m.rot90(a), [A]),
    "rot90_2": (lambda m, a: m.rot90(a, 2, axes=(1, 2)), [A]),
    "rot90_3": (lambda m, a: m.rot90(a, -1, axes=(2, 0)), [A]),
    "tril": (lambda m, a: m.tril(a, -1), [A]),
    "tril_1d": (lambda m, a: m.tril(a, 1), [V]),
    "triu": (lambda m, a: m.triu(a, 2), [A]),
    "diag_make": (lambda m, a: m.diag(a, -2), [V]),
    "diag_take": (lambda m, a: m.diag(a, 1), [B]),
    "diagonal": (lambda m, a: m.diagonal(a, 1, 2, 0), [A]),
    "trace": (lambda m, a: m.trace(a, -1, 0, 2), [A]),
    "kron": (lambda m, a, b: m.kron(a, b), [B, U3]),
    "kron_ranks": (lambda m, a, b: m.kron(a, b), [A, B]),
    "cross": (lambda m, a, b: m.cross(a, b), [U3, W3]),
    "cross_axes": (lambda m, a, b: m.cross(a, b, axisa=0, axisc=0), [U3.T, U3]),
    "diff": (lambda m, a: m.diff(a, 2, axis=1), [A]),
    "diff_edges": (lambda m, a, p: m.diff(a, prepend=0.5, append=p), [A, A[..., :2]]),
    "gradient": (lambda m, a: m.gradient(a), [A]),
    "gradient_edge2": (lambda m, a: m.gradient(a, 0.3, axis=2, edge_order=2), [A]),
    "gradient_coords": (lambda m, a: m.gradient(a, np.array([0.0, 0.5, 0.7, 1.6, 2.0]),
                                                axis=-1, edge_order=2), [A]),
    "gradient_coords1": (lambda m, a: m.gradient(a, [0.0, 0.5, 0.7, 1.6], axis=1), [A]),
    "select": (lambda m, a, b: m.select([a > 0.5, a < -0.5], [a, b * 2], -1.0),
               [A, A[::-1] * 0.7]),
    "sort": (lambda m, a: m.sort(a, axis=1), [A]),
    "sort_flat": (lambda m, a: m.sort(a, axis=None), [A]),
    "partition": (lambda m, a: m.partition(a, (0, 3)), [A]),
    "cumprod": (lambda m, a: m.cumprod(a, axis=1), [Z]),
    "cumprod_flat": (lambda m, a: m.cumprod(a), [A[:, :2]]),
    "median": (lambda m, a: m.median(a, axis=(0, 2), keepdims=True), [A]),
    "median_even": (lambda m, a: m.median(a, axis=1), [A]),
    "median_all": (lambda m, a: m.median(a), [A]),
    "quantile": (lambda m, a: m.quantile(a, [0.1, 0.5, 1.0], axis=1), [A]),
    "quantile_scalar": (lambda m, a: m.quantile(a, 0.37), [A]),
    "quantile_int_q": (lambda m, a: m.quantile(a, [0, 1], axis=0, keepdims=True), [A]),
    "percentile": (lambda m, a: m.percentile(a, 30, axis=(1, 2)), [A]),
    "linspace": (lambda m, a, b: m.linspace(a, b, 7), [V[:2], W3[:2]]),
    "linspace_axis": (lambda m, a, b: m.linspace(a, b, 4, endpoint=False, axis=1),
                      [V[:2], W3[1]]),
    "linspace_step": (lambda m, a, b: m.linspace(a, b, 5, retstep=True), [V[0], W3[0]]),
    "meshgrid": (lambda m, a, b: m.meshgrid(a, b), [V, W3]),
    "meshgrid_ij": (lambda m, a, b, c: m.meshgrid(a, b, c, indexing="ij", sparse=True),
                    [V, W3, B]),
    "moveaxis": (lambda m, a: m.moveaxis(a, [0, 1], [-1, 0]), [A]),
    "atleast_3d": (lambda m, a, b: m.atleast_3d(a, b), [B, V]),
    "atleast_2d": (lambda m, a: m.atleast_2d(a), [V]),
    "array_split": (lambda m, a: m.array_split(a, 3, axis=2), [A]),
    "inner": (lambda m, a, b: m.inner(a, b), [A, B.T[:, :2].T @ np.ones((3, 5)) * 0.3]),
    "vdot": (lambda m, a, b: m.vdot(a, b), [A, A[::-1] * 0.5]),
    "ravel": (lambda m, a: m.ravel(a), [A]),
}


def _outs(y):
    if isinstance(y, (tuple, list)):
        return [v for item in y for v in _outs(item)]
    return [y]


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_match_numpy(name):
    call, inputs = CASES[name]
    ref = _outs(call(np, *inputs))
    got = _outs(call(ag, *[T(a) for a in inputs]))
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        if not isinstance(g, ag.Tensor):  # linspace's step for retstep=True
            g = g if isinstance(g, float) else g
            np.testing.assert_allclose(g.numpy() if hasattr(g, "numpy") else g, r, rtol=1e-15)
            continue
        assert g.shape == np.shape(r) and g.dtype == np.asarray(r).dtype, name
        np.testing.assert_allclose(g.numpy(), r, rtol=1e-14, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_central_differences_of_numpy(name):
    """<grad, v> of L = sum_k <out_k, w_k> against central differences of NumPy's function
    (also for the outputs that are integers or constants: they take no part)."""
    call, inputs = CASES[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    ref = _outs(call(np, *inputs))
    keep = [k for k, r in enumerate(ref) if np.asarray(r).dtype == np.float64]
    ws = {k: rng.standard_normal(np.shape(ref[k])) for k in keep}
    ts = [T(a) for a in inputs]
    with ag.GradientTape() as tape:
        tape.watch(ts)
        outs = _outs(call(ag, *ts))
        loss = sum((outs[k] * T(ws[k])).sum() for k in keep if isinstance(outs[k], ag.Tensor))
    grads = tape.gradient(loss, ts, unconnected_gradients="zero")
    dirs = [rng.standard_normal(np.shape(a)) for a in inputs]

    def f(xs):
        ys = _outs(call(np, *xs))
        return sum(float(np.sum(ws[k] * ys[k])) for k in keep)

    fd = (f([a + EPS * d for a, d in zip(inputs, dirs)])
          - f([a - EPS * d for a, d in zip(inputs, dirs)])) / (2 * EPS)
    got = sum(float(np.sum(g.numpy() * d)) for g, d in zip(grads, dirs))
    assert got == pytest.approx(fd, rel=1e-7, abs=1e-7), name


# ---- against PyTorch ------------------------------------------------------------------------


def _torch_grad(fn, inputs, w):
    ts = [torch.tensor(a, requires_grad=True) for a in inputs]
    y = fn(*ts)
    (y * torch.tensor(w)).sum().backward()
    return [t.grad.numpy() for t in ts]


def _ag_grad(fn, inputs, w):
    ts = [T(a) for a in inputs]
    with ag.GradientTape() as tape:
        tape.watch(ts)
        y = (fn(*ts) * T(w)).sum()
    return [g.numpy() for g in tape.gradient(y, ts, unconnected_gradients="zero")]


TORCH_CASES = {
    "repeat": (lambda a: ag.repeat(a, [1, 0, 2], axis=0),
               lambda a: torch.repeat_interleave(a, torch.tensor([1, 0, 2]), dim=0), [A]),
    "tile": (lambda a: ag.tile(a, (2, 1, 3)), lambda a: torch.tile(a, (2, 1, 3)), [A]),
    "roll": (lambda a: ag.roll(a, (1, -3), axis=(0, 2)),
             lambda a: torch.roll(a, (1, -3), dims=(0, 2)), [A]),
    "rot90": (lambda a: ag.rot90(a, 3, axes=(2, 0)), lambda a: torch.rot90(a, 3, dims=(2, 0)),
              [A]),
    "tril": (lambda a: ag.tril(a, -1), lambda a: torch.tril(a, -1), [A]),
    "triu": (lambda a: ag.triu(a, 1), lambda a: torch.triu(a, 1), [A]),
    "diag": (lambda a: ag.diag(a, 2), lambda a: torch.diag(a, 2), [V]),
    "diagonal": (lambda a: ag.diagonal(a, 1, 2, 0),
                 lambda a: torch.diagonal(a, 1, 2, 0), [A]),
    "trace": (lambda a: ag.trace(a), lambda a: torch.trace(a), [B]),
    "kron": (lambda a, b: ag.kron(a, b), lambda a, b: torch.kron(a, b), [B, U3]),
    "cross": (lambda a, b: ag.cross(a, b),
              lambda a, b: torch.linalg.cross(a, b.expand_as(a)), [U3, W3]),
    "diff": (lambda a: ag.diff(a, 2, axis=1), lambda a: torch.diff(a, 2, dim=1), [A]),
    "gradient": (lambda a: ag.gradient(a, 0.5, axis=1, edge_order=2),
                 lambda a: torch.gradient(a, spacing=0.5, dim=1, edge_order=2)[0], [A]),
    "sort": (lambda a: ag.sort(a, axis=1), lambda a: torch.sort(a, dim=1)[0], [A]),
    "sort_descending": (lambda a: ag.sort(a, descending=True),
                        lambda a: torch.sort(a, descending=True)[0], [A]),
    "topk": (lambda a: ag.topk(a, 3)[0], lambda a: torch.topk(a, 3)[0], [A]),
    "topk_smallest": (lambda a: ag.topk(a, 2, axis=0, largest=False)[0],
                      lambda a: torch.topk(a, 2, dim=0, largest=False)[0], [A]),
    "cumprod_zeros": (lambda a: ag.cumprod(a, axis=1), lambda a: torch.cumprod(a, dim=1), [Z]),
    "logcumsumexp": (lambda a: ag.logcumsumexp(a, axis=2),
                     lambda a: torch.logcumsumexp(a, dim=2), [A * 3]),
    "quantile": (lambda a: ag.quantile(a, [0.2, 0.9], axis=1),
                 lambda a: torch.quantile(a, torch.tensor([0.2, 0.9], dtype=torch.float64),
                                          dim=1), [A]),
    "median_odd": (lambda a: ag.median(a, axis=0), lambda a: torch.median(a, dim=0)[0], [A]),
    "meshgrid": (lambda a, b: ag.meshgrid(a, b)[0] * ag.meshgrid(a, b)[1],
                 lambda a, b: torch.prod(torch.stack(torch.meshgrid(a, b, indexing="xy")), 0),
                 [V, W3]),
    "moveaxis": (lambda a: ag.moveaxis(a, 0, -1), lambda a: torch.movedim(a, 0, -1), [A]),
    "inner": (lambda a, b: ag.inner(a, b), lambda a, b: torch.inner(a, b), [A, A[0]]),
    "vdot": (lambda a, b: ag.vdot(a, b), lambda a, b: torch.vdot(a, b), [V, V[::-1].copy()]),
}


@needs_torch
@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_values_and_gradients_match_pytorch(name):
    fa, ft, inputs = TORCH_CASES[name]
    rng = np.random.default_rng(11)
    y_ag = fa(*[T(a) for a in inputs])
    y_t = ft(*[torch.tensor(a) for a in inputs])
    np.testing.assert_allclose(y_ag.numpy(), y_t.numpy(), rtol=1e-14, atol=1e-14)
    w = rng.standard_normal(y_ag.shape)
    for g, r in zip(_ag_grad(fa, inputs, w), _torch_grad(ft, inputs, w)):
        np.testing.assert_allclose(g, r, rtol=1e-13, atol=1e-14)


def test_topk_indices_and_ties():
    x = np.array([[1.0, 3.0, 3.0, -1.0, np.nan], [0.0, 0.0, 2.0, 2.0, 1.0]])
    vals, idx = ag.topk(T(x), 3)
    np.testing.assert_array_equal(idx.numpy(), [[4, 1, 2], [2, 3, 4]])  # NaN largest; ties
    np.testing.assert_array_equal(vals.numpy(), np.take_along_axis(x, idx.numpy(), 1))
    vals, idx = ag.topk(T(x), 2, largest=False)
    np.testing.assert_array_equal(idx.numpy(), [[3, 0], [0, 1]])
    assert idx.dtype == np.int64


# ---- conventions ----------------------------------------------------------------------------


def _hvp(fn, x, u, w):
    """d/dx <grad_x <fn(x), u>, w> (a Hessian-vector product) by nested tapes."""
    t = T(x)
    with ag.GradientTape() as outer:
        outer.watch(t)
        with ag.GradientTape() as inner:
            inner.watch(t)
            y = (fn(t) * T(u)).sum()
        (g,) = inner.gradient(y, [t])
        h = (g * T(w)).sum()
    (hv,) = outer.gradient(h, [t], unconnected_gradients="zero")
    return hv.numpy()


@needs_torch
def test_cumprod_second_derivatives_are_exact_at_zeros():
    """The scan is made of products: its Hessian at a point with one and with two zeros per
    row equals central differences of the (exact, polynomial) gradient; a rule built on
    g * y / x has no value there."""
    rng = np.random.default_rng(12)
    u, w = rng.standard_normal(Z.shape), rng.standard_normal(Z.shape)
    got = _hvp(lambda t: ag.cumprod(t, axis=1), Z, u, w)

    def grad_at(x):
        return _ag_grad(lambda t: ag.cumprod(t, axis=1), [x], u)[0]

    fd = (grad_at(Z + EPS * w) - grad_at(Z - EPS * w)) / (2 * EPS)
    np.testing.assert_allclose(got, fd, rtol=1e-8, atol=1e-8)
    zt = torch.tensor(Z, requires_grad=True)
    (g,) = torch.autograd.grad((torch.cumprod(zt, 1) * torch.tensor(u)).sum(), zt,
                               create_graph=True)
    (h,) = torch.autograd.grad((g * torch.tensor(w)).sum(), zt)
    np.testing.assert_allclose(got, h.numpy(), rtol=1e-12, atol=1e-12)


@needs_torch
def test_logcumsumexp_with_infinities():
    x = np.array([-np.inf, -np.inf, 0.5, np.inf, 2.0, -1.0])
    y = ag.logcumsumexp(T(x))
    np.testing.assert_array_equal(y.numpy(), np.logaddexp.accumulate(x))
    np.testing.assert_array_equal(
        y.numpy(), torch.logcumsumexp(torch.tensor(x), 0).numpy())
    # y0 = x0 exactly; y1 = logaddexp(x0, x1) gives 1/2 each at the tie -inf, -inf; y2 is
    # all x2's (weight sigmoid(x2 - y1) = 1)
    (g,) = _ag_grad(ag.logcumsumexp, [x[:3]], np.ones(3))
    np.testing.assert_array_equal(g, [1.5, 0.5, 1.0])
    assert ag.logcumsumexp(T(np.array([1.0, 2.0])), axis=0).dtype == np.float64


def test_sort_routes_the_gradient_through_its_permutation_and_keeps_ties_in_order():
    x = np.array([3.0, 1.0, 2.0, 1.0, 0.0])
    y = ag.sort(T(x), kind="stable")
    np.testing.assert_array_equal(y.numpy(), np.sort(x))
    np.testing.assert_array_equal(ag.argsort(T(x), stable=True).numpy(),
                                  np.argsort(x, stable=True))
    (g,) = _ag_grad(lambda t: ag.sort(t, kind="stable"), [x], np.arange(5.0))
    np.testing.assert_array_equal(g, [4.0, 1.0, 3.0, 2.0, 0.0])
    d = ag.argsort(T(x), descending=True).numpy()
    np.testing.assert_array_equal(d, [0, 2, 1, 3, 4])  # ties in index order
    assert ag.argsort(T(x)).dtype == np.int64


def test_median_and_quantile_split_the_gradient_among_ties():
    """Like max: the gradient of an order statistic is shared equally by the entries equal to
    it (median of [1, 2, 2, 5, 2]: 1/3 to each 2), and interpolation weights go to both
    neighbours' groups."""
    x = np.array([1.0, 2.0, 2.0, 5.0, 2.0])
    (g,) = _ag_grad(ag.median, [x], np.ones(()))
    np.testing.assert_allclose(g, [0.0, 1 / 3, 1 / 3, 0.0, 1 / 3])
    # q = 0.875: position 3.5 between s[3] = 2 (weight 0.5, three tied) and s[4] = 5 (0.5)
    (g,) = _ag_grad(lambda t: ag.quantile(t, 0.875), [x], np.ones(()))
    np.testing.assert_allclose(g, [0.0, 1 / 6, 1 / 6, 0.5, 1 / 6])
    # even count: the mean of the two middle values, 1/2 each
    (g,) = _ag_grad(ag.median, [np.array([4.0, 1.0, 3.0, 2.0])], np.ones(()))
    np.testing.assert_allclose(g, [0.0, 0.0, 0.5, 0.5])


def test_median_and_quantile_of_slices_with_nan():
    x = np.array([[1.0, np.nan, 3.0, np.nan], [4.0, 1.0, 2.0, 3.0]])
    y = ag.median(T(x), axis=1)
    np.testing.assert_array_equal(y.numpy(), np.median(x, axis=1))
    np.testing.assert_array_equal(ag.quantile(T(x), 0.3, axis=1).numpy(),
                                  np.quantile(x, 0.3, axis=1))
    (g,) = _ag_grad(lambda t: ag.median(t, axis=1), [x], np.ones(2))
    np.testing.assert_allclose(g, [[0.0, 0.5, 0.0, 0.5], [0.0, 0.0, 0.5, 0.5]])


def test_quantile_dtypes_follow_numpy():
    x32 = A.astype(np.float32)
    for q in (0.3, [0.3], np.float32(0.3)):
        assert ag.quantile(T(x32), q).dtype == np.quantile(x32, q).dtype
    assert ag.median(T(np.arange(5))).dtype == np.median(np.arange(5)).dtype
    np.testing.assert_allclose(ag.quantile(T(x32), 0.3).numpy(), np.quantile(x32, 0.3),
                               rtol=1e-7)


def test_partition_puts_kth_in_place():
    x = _distinct(np.random.default_rng(13), (4, 9))
    y = ag.partition(T(x), 4, axis=1).numpy()
    assert np.array_equal(y[:, 4], np.sort(x, axis=1)[:, 4])
    assert (y[:, :4] <= y[:, 4:5]).all() and (y[:, 5:] >= y[:, 4:5]).all()
    idx = ag.argpartition(T(x), 4, axis=1).numpy()
    np.testing.assert_array_equal(np.take_along_axis(x, idx, 1), y)


def test_linspace_gradient_in_the_endpoints():
    s, e = np.array([1.0, -2.0]), np.array([3.0, 0.5])
    ts, te = T(s), T(e)
    with ag.GradientTape() as tape:
        tape.watch([ts, te])
        y = ag.linspace(ts, te, 5).sum(axis=1).sum()
    gs, ge = tape.gradient(y, [ts, te])
    np.testing.assert_allclose(gs.numpy(), [2.5, 2.5])  # sum_i (1 - i/4)
    np.testing.assert_allclose(ge.numpy(), [2.5, 2.5])
    assert ag.linspace(0.0, 1.0, 3).dtype == np.float64
    assert ag.linspace(T(np.float32(0.0)), 1.0, 3).dtype == np.float32
    np.testing.assert_array_equal(ag.linspace(0, 10, 4, dtype=np.int64).numpy(),
                                  np.linspace(0, 10, 4, dtype=np.int64))
    y, step = ag.linspace(0.0, 1.0, 1, retstep=True)
    assert np.isnan(step) and y.numpy().tolist() == [0.0]


def test_gradient_of_integers_and_single_axis_results():
    x = np.array([1, 4, 9, 16])
    got = ag.gradient(T(x))
    assert isinstance(got, ag.Tensor) and got.dtype == np.float64
    np.testing.assert_array_equal(got.numpy(), np.gradient(x))
    both = ag.gradient(T(A[0]), 0.5, 2.0)
    assert isinstance(both, tuple) and len(both) == 2


def test_tensor_methods():
    t = T(A)
    np.testing.assert_array_equal(t.repeat(2, axis=0).numpy(), A.repeat(2, axis=0))
    np.testing.assert_array_equal(t.argsort(axis=1).numpy(), A.argsort(axis=1))
    np.testing.assert_array_equal(t.diagonal(0, 1, 2).numpy(), A.diagonal(0, 1, 2))
    np.testing.assert_allclose(t.trace(1, 0, 2).numpy(), A.trace(1, 0, 2))
    np.testing.assert_allclose(t.cumprod(axis=2).numpy(), A.cumprod(axis=2), rtol=1e-14)
    np.testing.assert_array_equal(t.ravel().numpy(), A.ravel())
    np.testing.assert_array_equal(t.conj().numpy(), A.conj())
    np.testing.assert_array_equal(t.conjugate().numpy(), A.conjugate())
    z = T(A[0] + 1j * A[1])
    np.testing.assert_array_equal(z.real.numpy(), A[0])
    np.testing.assert_array_equal(z.imag.numpy(), A[1])
    assert t.real is t
    with pytest.raises(ag.ArgumentError, match="out"):
        t.cumprod(out=np.empty_like(A))
    assert t.trace(dtype=np.float32).dtype == np.float32


def test_numpy_calls_on_tensors_dispatch_here():
    t = T(A)
    with ag.GradientTape() as tape:
        tape.watch(t)
        y = (np.sort(t, axis=1).sum() + np.median(t) + np.trace(t) + np.cumprod(t).sum()
             + np.quantile(t, 0.3) + np.roll(t, 1).sum() + np.multiply.accumulate(t, axis=1).sum()
             + np.logaddexp.accumulate(t, axis=2).sum())
    assert isinstance(y, ag.Tensor)
    (g,) = tape.gradient(y, [t])
    assert g.shape == A.shape and np.isfinite(g.numpy()).all()


VMAP_CASES = {
    "sort": lambda t: ag.sort(t, axis=0), "sort_descending": lambda t: ag.sort(t, descending=True),
    "argsort": lambda t: ag.argsort(t, axis=1), "partition": lambda t: ag.partition(t, 1, axis=0),
    "topk": lambda t: ag.topk(t, 2)[0], "topk_indices": lambda t: ag.topk(t, 2, axis=0)[1],
    "median": lambda t: ag.median(t, axis=0), "quantile": lambda t: ag.quantile(t, [0.2, 0.7]),
    "cumprod": lambda t: ag.cumprod(t, axis=0), "logcumsumexp": lambda t: ag.logcumsumexp(t, 1),
    "tril": ag.tril, "triu": lambda t: ag.triu(t, 1), "diag": lambda t: ag.diag(t[0]),
    "diagonal": ag.diagonal, "trace": ag.trace, "roll": lambda t: ag.roll(t, 2),
    "repeat": lambda t: ag.repeat(t, 2, axis=0), "tile": lambda t: ag.tile(t, 2),
    "rot90": ag.rot90, "kron": lambda t: ag.kron(t, t),
    "cross": lambda t: ag.cross(t[:, :3], t[:, 1:4]), "diff": lambda t: ag.diff(t, axis=0),
    "gradient": lambda t: ag.gradient(t, axis=1), "select": lambda t: ag.select([t > 0], [t]),
    "linspace": lambda t: ag.linspace(t[0], t[1], 4), "meshgrid": lambda t: ag.meshgrid(t[0],
                                                                                          t[1])[0],
    "moveaxis": lambda t: ag.moveaxis(t, 0, 1), "atleast_3d": lambda t: ag.atleast_3d(t[0]),
    "array_split": lambda t: ag.array_split(t, 2, axis=1)[1], "inner": lambda t: ag.inner(t, t),
    "vdot": lambda t: ag.vdot(t, t), "ravel": ag.ravel,
}


@pytest.mark.parametrize("name", sorted(VMAP_CASES))
def test_vmap_equals_a_loop(name):
    """The compositions run under ag.vmap through their primitives' batch declarations
    (permute's and quantile's among them), as the function applied example by example."""
    x = _distinct(np.random.default_rng(14), (4, 3, 5))
    f = VMAP_CASES[name]
    got = ag.vmap(f)(T(x)).numpy()
    want = np.stack([f(T(v)).numpy() for v in x])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


COMPLEX_CASES = {
    "repeat": lambda m, a: m.repeat(a, 2, axis=0), "tile": lambda m, a: m.tile(a, (2, 1)),
    "roll": lambda m, a: m.roll(a, 1, axis=1), "rot90": lambda m, a: m.rot90(a),
    "tril": lambda m, a: m.tril(a), "triu": lambda m, a: m.triu(a, 1),
    "diag": lambda m, a: m.diag(a[0]), "diagonal": lambda m, a: m.diagonal(a),
    "trace": lambda m, a: m.trace(a), "kron": lambda m, a: m.kron(a, a[:2, :2]),
    "cross": lambda m, a: m.cross(a[:, :3], a[:, 1:]), "diff": lambda m, a: m.diff(a, axis=0),
    "gradient": lambda m, a: m.gradient(a, axis=1),
    "select": lambda m, a: m.select([m.real(a) > 0], [a]),
    "cumprod": lambda m, a: m.cumprod(a, axis=1),
    "linspace": lambda m, a: m.linspace(a[0], a[1], 4),
    "meshgrid": lambda m, a: m.meshgrid(a[0], a[1])[0],
    "moveaxis": lambda m, a: m.moveaxis(a, 0, 1),
    "atleast_3d": lambda m, a: m.atleast_3d(a),
    "array_split": lambda m, a: m.array_split(a, 3, axis=1)[0],
    "inner": lambda m, a: m.inner(a, a), "vdot": lambda m, a: m.vdot(a, a * 2),
    "ravel": lambda m, a: m.ravel(a),
}


@pytest.mark.parametrize("name", sorted(COMPLEX_CASES))
def test_complex_inputs_values_and_gradients(name):
    """The compositions on complex128 inputs: NumPy's values, and the gradient of
    L = Re(sum(w * f(a))) (dL/dRe - i dL/dIm, JAX's convention) against central differences
    along a complex direction."""
    rng = np.random.default_rng(15)
    a = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    f = COMPLEX_CASES[name]
    y, ref = f(ag, T(a)), f(np, a)
    assert y.dtype == ref.dtype
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-13)
    w = rng.standard_normal(ref.shape) + 1j * rng.standard_normal(ref.shape)
    g = ag.grad(lambda t: ag.real((f(ag, t) * T(w)).sum()))(T(a)).numpy()
    v = rng.standard_normal(a.shape) + 1j * rng.standard_normal(a.shape)

    def loss(x):
        return float(np.real(np.sum(w * f(np, x))))

    fd = (loss(a + EPS * v) - loss(a - EPS * v)) / (2 * EPS)
    assert float(np.real(np.sum(g * v))) == pytest.approx(fd, rel=1e-7, abs=1e-7)


def test_vdot_conjugates_its_first_argument():
    a = np.array([1.0 + 2.0j, -0.5 + 0.25j])
    b = np.array([0.5 - 1.0j, 2.0 + 1.0j])
    np.testing.assert_allclose(ag.vdot(T(a), T(b)).numpy(), np.vdot(a, b), rtol=1e-15)
    # L = Re(vdot(a, b)) = Re(a) Re(b) + Im(a) Im(b); its gradients dL/dRe - i dL/dIm are
    # conj(b) in a and conj(a) in b
    ga, gb = ag.grad(lambda s, t: ag.real(ag.vdot(s, t)), argnums=(0, 1))(T(a), T(b))
    np.testing.assert_allclose(ga.numpy(), np.conj(b), rtol=1e-15)
    np.testing.assert_allclose(gb.numpy(), np.conj(a), rtol=1e-15)


# ---- GPU ------------------------------------------------------------------------------------


def _run_on(device, call, inputs, ws):
    ts = [ag.Tensor.from_array(a, device=device) for a in inputs]
    with ag.GradientTape() as tape:
        tape.watch(ts)
        outs = [o for o in _outs(call(ag, *ts)) if isinstance(o, ag.Tensor)]
        loss = sum((o * ag.Tensor.from_array(w, device=device)).sum()
                   for o, w in zip(outs, ws) if o.dtype == np.float64)
    grads = tape.gradient(loss, ts, unconnected_gradients="zero")
    return [o.numpy() for o in outs], [g.numpy() for g in grads], outs


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(CASES))
def test_on_gpu_matches_the_cpu(name):
    """Every case on CuPy: results stay on the device, values and gradients as on the CPU
    (partition's order away from kth is the backend's own: compared sorted)."""
    call, inputs = CASES[name]
    rng = np.random.default_rng(16)
    ref = [o for o in _outs(call(ag, *[T(a) for a in inputs])) if isinstance(o, ag.Tensor)]
    ws = [rng.standard_normal(o.shape) for o in ref]
    vc, gc, _ = _run_on("cpu", call, inputs, ws)
    vg, gg, outs = _run_on("cuda:0", call, inputs, ws)
    assert all(type(o.data).__module__.startswith("cupy") for o in outs), "left the GPU"
    if name == "partition":
        vc, vg = [np.sort(v, axis=-1) for v in vc], [np.sort(v, axis=-1) for v in vg]
        gc, gg = [np.sort(g, axis=None) for g in gc], [np.sort(g, axis=None) for g in gg]
    for a, b in zip(vg + gg, vc + gc):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.gpu
def test_sorting_on_gpu():
    x = _distinct(np.random.default_rng(17), (3, 7))
    xg = ag.Tensor.from_array(x, device="cuda:0")
    np.testing.assert_array_equal(ag.argsort(xg, axis=0).numpy(), np.argsort(x, axis=0))
    vals, idx = ag.topk(xg, 3, largest=False)
    np.testing.assert_array_equal(idx.numpy(), np.argsort(x, axis=-1)[:, :3])
    np.testing.assert_array_equal(vals.numpy(), np.sort(x, axis=-1)[:, :3])
    p = ag.argpartition(xg, 3).numpy()
    assert (np.take_along_axis(x, p, 1)[:, 3] == np.sort(x, 1)[:, 3]).all()


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("call, err, match", [
    (lambda: ag.repeat(T(A), [1, 2], axis=0), ag.ShapeError, "repeat.*repeats"),
    (lambda: ag.repeat(T(A), -1), ag.ArgumentError, "repeat.*non-negative"),
    (lambda: ag.repeat(T(A), 1.5), ag.DTypeError, "repeat.*integers"),
    (lambda: ag.tile(T(A), (-1,)), ag.ArgumentError, "tile"),
    (lambda: ag.roll(T(A), (1, 2), axis=(0, 1, 2)), ag.ShapeError, "roll"),
    (lambda: ag.rot90(T(V)), ag.ShapeError, "rot90.*2 dimensions"),
    (lambda: ag.rot90(T(A), axes=(1, 1)), ag.ShapeError, "rot90.*different"),
    (lambda: ag.tril(T(np.float64(1.0))), ag.ShapeError, "tril"),
    (lambda: ag.diag(T(A)), ag.ShapeError, "diag.*1 or 2"),
    (lambda: ag.diagonal(T(V)), ag.ShapeError, "diagonal"),
    (lambda: ag.trace(T(A), axis1=1, axis2=1), ag.ShapeError, "diagonal.*different"),
    (lambda: ag.cross(T(A), T(A)), ag.ShapeError, "cross.*length 2 or 3"),
    (lambda: ag.diff(T(A), -1), ag.ArgumentError, "diff.*non-negative"),
    (lambda: ag.diff(T(np.float64(1.0))), ag.ShapeError, "diff"),
    (lambda: ag.gradient(T(np.ones(2)), edge_order=2), ag.ShapeError, "gradient"),
    (lambda: ag.gradient(T(A), 1.0, 2.0), ag.ArgumentError, "gradient.*spacing"),
    (lambda: ag.gradient(T(A), edge_order=3), ag.ArgumentError, "edge_order"),
    (lambda: ag.select([T(A)], [T(A)]), ag.DTypeError, "select.*boolean"),
    (lambda: ag.select([T(A) > 0], []), ag.ArgumentError, "select.*same length"),
    (lambda: ag.sort(T(A), kind="bogo"), ag.ArgumentError, "sort.*kind"),
    (lambda: ag.sort(T(A), order="f"), ag.ArgumentError, "sort.*order"),
    (lambda: ag.sort(T(np.float64(1.0))), ag.ShapeError, "sort"),
    (lambda: ag.sort(T(A + 1j)), ag.DTypeError, "sort.*complex"),
    (lambda: ag.partition(T(A), 5), ag.ShapeError, "partition.*kth"),
    (lambda: ag.topk(T(A), 6), ag.ShapeError, "topk.*k"),
    (lambda: ag.logcumsumexp(T(np.arange(3))), ag.DTypeError, "logcumsumexp"),
    (lambda: ag.quantile(T(A), 1.5), ag.ArgumentError, "quantile.*\\[0, 1\\]"),
    (lambda: ag.quantile(T(A), [[0.5]]), ag.ArgumentError, "quantile.*1-d"),
    (lambda: ag.quantile(T(A), 0.5, method="nearest"), ag.ArgumentError, "method"),
    (lambda: ag.percentile(T(A), 101), ag.ArgumentError, "percentile.*100"),
    (lambda: ag.median(T(np.zeros((2, 0))), axis=1), ag.ShapeError, "median.*non-empty"),
    (lambda: ag.median(T(A + 1j)), ag.DTypeError, "median"),
    (lambda: ag.linspace(0.0, 1.0, -1), ag.ArgumentError, "linspace.*num"),
    (lambda: ag.meshgrid(T(V), indexing="xx"), ag.ArgumentError, "meshgrid"),
    (lambda: ag.moveaxis(T(A), [0, 1], [0]), ag.ShapeError, "moveaxis"),
    (lambda: ag.array_split(T(A), 0), ag.ArgumentError, "array_split"),
    (lambda: ag.inner(T(A), T(B)), ag.ShapeError, "inner"),
    (lambda: ag.vdot(T(A), T(B)), ag.ShapeError, "vdot"),
    (lambda: ag.ravel(T(A), order="F"), ag.ArgumentError, "ravel.*order"),
    (lambda: _quantile_of_a_watched_q(), ag.ArgumentError, "quantile.*constant"),
])
def test_bad_arguments_raise_named_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


def _quantile_of_a_watched_q():
    q = T(np.array(0.5))
    with ag.GradientTape() as tape:
        tape.watch(q)
        return ag.quantile(T(A), q * 1.0)
