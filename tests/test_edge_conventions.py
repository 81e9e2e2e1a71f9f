"""Derivatives at edge points, against PyTorch: where the exact answer is finite, no NaN.

Central differences (tests/test_registry_rules.py) cannot check kinks and NaN inputs, so these
points are checked here against PyTorch's values: each case states PyTorch 2.13's numbers as
literals (the tests run without PyTorch too), and where PyTorch is installed the same functions
run through it as well. Conventions that deliberately differ from PyTorch are tested as such:

* maximum/minimum at ties give the whole gradient to ``a`` (PyTorch: half each);
* max/min reductions of a slice holding NaN give the gradient to its NaN entries, split equally
  (PyTorch's max()/min() over all elements; its amax/amin give NaN to every entry);
* second derivatives of ``0 ** y`` are 0 where PyTorch gives NaN (0 ** y is 0 for y > 0).
"""

from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.backend.numpy_backend import NumpyBackend

NAN, INF = float("nan"), float("inf")

try:
    import torch
except ImportError:  # the literals still check every case
    torch = None


def T(a, dtype=np.float64):
    return ag.Tensor.from_array(np.asarray(a, dtype=dtype), device="cpu")


def grad(f, *xs, dtype=np.float64):
    """Gradients of the scalar f at xs (unconnected inputs: zeros)."""
    ts = [T(x, dtype) for x in xs]
    with ag.GradientTape() as tape:
        tape.watch(ts)
        y = f(*ts)
    return [g.numpy() for g in tape.gradient(y, ts, unconnected_gradients="zero")]


def jvp(f, xs, ts):
    _, t = ag.jvp(f, tuple(T(x) for x in xs), tuple(T(t) for t in ts))
    return t.numpy()


def second(f, x):
    """d/dx sum(grad f(x)) by reverse over reverse, and the forward-over-reverse directional
    form along ones (the same vector for a symmetric Hessian)."""
    rr = ag.grad(lambda z: ag.grad(f)(z).sum())(T(x)).numpy()
    _, fr = ag.jvp(lambda z: ag.grad(f)(z), (T(x),), (T(np.ones_like(np.asarray(x))),))
    return rr, fr.numpy()


def same(a, b):
    """Equal values, NaN where the other has NaN (and 0.0 == -0.0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)


def tgrad(f, *xs):
    ts = [torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True) for x in xs]
    gs = torch.autograd.grad(f(*ts), ts, allow_unused=True)
    return [np.zeros(t.shape) if g is None else g.numpy() for g, t in zip(gs, ts)]


def tjvp(f, xs, ts):
    as_t = lambda v: torch.tensor(np.asarray(v, dtype=np.float64))  # noqa: E731
    return torch.func.jvp(f, tuple(map(as_t, xs)), tuple(map(as_t, ts)))[1].numpy()


def tsecond(f, x):
    t = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    (g,) = torch.autograd.grad(f(t), t, create_graph=True)
    if not g.requires_grad:  # the gradient is a constant
        return np.zeros(t.shape)
    (h,) = torch.autograd.grad(g.sum(), t, allow_unused=True)
    return np.zeros(t.shape) if h is None else h.detach().numpy()


# infinities and NaNs are this file's subject: NumPy's warnings about them are expected
pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")]


# ---- pow ------------------------------------------------------------------------------------

POW_X = [0.0, 1.0, -2.0]


@pytest.mark.parametrize("p,grad_ref,second_ref", [
    (0, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),       # x**0 = 1: d/dx is 0 at x = 0 too (was NaN)
    (1, [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]),       # second order 1 * x**0 at 0 (was NaN)
    (2, [0.0, 2.0, -4.0], [2.0, 2.0, 2.0]),
    (3, [0.0, 3.0, 12.0], [0.0, 6.0, -12.0]),
])
def test_integer_powers_at_zero(p, grad_ref, second_ref):
    f = lambda x: (x ** p).sum()  # noqa: E731
    (g,) = grad(f, POW_X)
    assert same(g, grad_ref)
    assert same(jvp(f, [POW_X], [[1.0, 1.0, 1.0]]), sum(grad_ref))
    rr, fr = second(f, POW_X)
    assert same(rr, second_ref) and same(fr, second_ref)
    (g32,) = grad(f, POW_X, dtype=np.float32)
    assert g32.dtype == np.float32 and same(g32, grad_ref)
    if torch is not None:
        assert same(tgrad(f, POW_X)[0], grad_ref) and same(tsecond(f, POW_X), second_ref)


X_P = [0.0, 0.0, 0.0, 0.0, 2.0, -1.0]
P_P = [0.0, 1.0, 2.0, -1.0, 0.0, 2.0]
# PyTorch: d/dx is 0 where p == 0; d/dp is 0 where x == 0 and p >= 0, -inf at 0 ** -1, NaN for x < 0
GX_REF = [0.0, 1.0, 0.0, -INF, 0.0, -2.0]
GP_REF = [0.0, 0.0, 0.0, -INF, np.log(2.0), NAN]


def test_tensor_power_masks_the_zero_exponent_and_the_zero_base():
    f = lambda x, p: (x ** p).sum()  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0 ** -1 and log(-1) themselves
        gx, gp = grad(f, X_P, P_P)
        tx = jvp(lambda x, p: x ** p, [X_P, P_P], [np.ones(6), np.zeros(6)])
        tp = jvp(lambda x, p: x ** p, [X_P, P_P], [np.zeros(6), np.ones(6)])
        ones_gx = np.add(GX_REF, np.multiply(0.0, GP_REF))  # a zero tangent times inf: NaN
        ones_gp = np.add(np.multiply(0.0, GX_REF), GP_REF)
    assert same(gx, GX_REF) and same(gp, GP_REF)
    assert same(tx, ones_gx) and same(tp, ones_gp)
    if torch is not None:
        tgx, tgp = tgrad(f, X_P, P_P)
        assert same(tgx, GX_REF) and same(tgp, GP_REF)


def test_zero_exponent_keeps_its_mixed_partial_away_from_zero_bases():
    """At p == 0 with x != 0, d2(x**p)/dx dp = x**(p-1) (1 + p log x) = 1/x is finite: only
    x == 0 is masked (PyTorch masks every p == 0 and drops it: its second derivative of
    (0.5**x)**x at x = 0 is -0.693, the exact value 2 log 0.5 = -1.386)."""
    f = lambda x: ((0.5 ** x) ** x).sum()  # noqa: E731  (= 0.5 ** (x * x))
    rr, fr = second(f, [0.0, 0.5])
    exact = 2 * np.log(0.5) * 0.5 ** np.array([0.0, 0.25]) * (1 + 2 * np.array([0.0, 0.25])
                                                              * np.log(0.5))
    assert np.allclose(rr, exact, rtol=1e-12) and np.allclose(fr, exact, rtol=1e-12)
    # the mixed partial itself, at x = 2, p = 0: d/dp of d/dx is 1/2
    dp = ag.grad(lambda p: ag.grad(lambda x: (x ** p).sum())(T([2.0])).sum())(T([0.0]))
    assert same(dp.numpy(), [0.5])


def test_zero_base_power_has_a_zero_exponent_gradient():
    y = [0.0, 1.0, 2.5, -1.0]
    f = lambda y: (0.0 ** y).sum()  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        (g,) = grad(f, y)
        t = jvp(lambda y: 0.0 ** y, [y], [np.ones(4)])
        rr, fr = second(f, y)
    ref = [0.0, 0.0, 0.0, -INF]  # PyTorch's (was [-inf, nan, nan, -inf])
    assert same(g, ref) and same(t, ref)
    # second order: 0 ** y is 0 for y > 0, every derivative 0 (PyTorch: NaN at the first three)
    assert same(rr[:3], [0.0, 0.0, 0.0]) and same(fr[:3], [0.0, 0.0, 0.0])
    # a float32 exponent keeps its dtype through the masked log
    (g32,) = grad(lambda y: (0.0 ** y).sum(), [1.0, 2.0], dtype=np.float32)
    assert g32.dtype == np.float32 and same(g32, [0.0, 0.0])
    if torch is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert same(tgrad(f, y)[0], ref)


# ---- std and var at zero variance -------------------------------------------------------------

CONST_ROWS = [[1.0, 1.0, 1.0], [1.0, 2.0, 4.0]]
ROW2_STD0 = [-0.35634832254989918, -0.08908708063747479, 0.44543540318737396]
ROW2_STD1 = [-0.43643578047198484, -0.10910894511799621, 0.54554472558998102]


@pytest.mark.parametrize("ddof,row2", [(0, ROW2_STD0), (1, ROW2_STD1)])
def test_std_gradient_is_zero_at_zero_variance(ddof, row2):
    f = lambda x: ag.std(x, axis=1, ddof=ddof).sum()  # noqa: E731
    (g,) = grad(f, CONST_ROWS)
    assert same(g, [[0.0, 0.0, 0.0], row2])  # PyTorch's (was NaN in the first row)
    t = jvp(f, [CONST_ROWS], [[[1.0, -2.0, 5.0], [0.0, 0.0, 0.0]]])
    assert same(t, 0.0)
    rr, fr = second(lambda x: ag.std(x, axis=1, ddof=ddof)[0], CONST_ROWS)
    assert same(rr, np.zeros((2, 3))) and same(fr, np.zeros((2, 3)))  # PyTorch: 0 (was NaN)
    (g32,) = grad(f, CONST_ROWS, dtype=np.float32)
    assert g32.dtype == np.float32 and np.allclose(g32, [[0.0] * 3, row2], atol=1e-6)
    if torch is not None:
        th = lambda x: torch.std(x, dim=1, correction=ddof).sum()  # noqa: E731
        assert same(tgrad(th, CONST_ROWS)[0], g)
        assert same(tsecond(lambda x: torch.std(x, dim=1, correction=ddof)[0], CONST_ROWS), rr)


@pytest.mark.parametrize("axis,keepdims", [(1, False), (1, True), ((0, 1), False), (None, True)])
def test_std_and_var_over_one_element_groups(axis, keepdims):
    x = np.array([[1.5], [-2.0]]) if axis != (0, 1) and axis is not None else np.array([[3.0]])
    for name in ("std", "var"):
        f = lambda z: getattr(ag, name)(z, axis=axis, keepdims=keepdims).sum()  # noqa: B023,E731
        (g,) = grad(f, x)
        assert same(g, np.zeros_like(x)), name  # PyTorch's (std's was NaN)
        assert same(jvp(f, [x], [np.ones_like(x)]), 0.0), name
        rr, fr = second(f, x)
        assert same(rr, np.zeros_like(x)) and same(fr, np.zeros_like(x)), name
    if torch is not None:
        dim = None if axis is None else axis
        assert same(tgrad(lambda z: torch.std(z, dim=dim, correction=0).sum(), x)[0], 0 * x)


def test_var_at_zero_variance_is_still_zero():
    (g,) = grad(lambda x: ag.var(x, axis=1).sum(), CONST_ROWS)
    assert same(g, [[0.0] * 3, [-8 / 9, -2 / 9, 10 / 9]])


def test_std_keeps_its_values_and_errors():
    x = np.random.default_rng(3).standard_normal((4, 5))
    for axis in (None, 0, 1, (0, 1)):
        for ddof in (0, 1):
            got = ag.std(T(x), axis=axis, ddof=ddof).numpy()
            assert np.allclose(got, np.std(x, axis=axis, ddof=ddof), rtol=1e-14, atol=0)
    with pytest.raises(ag.ShapeError, match="std"):
        ag.std(T([[1.0], [2.0]]), axis=1, ddof=1)
    with pytest.raises(ag.ArgumentError, match="std: argument 'ddof'"):
        ag.std(T([1.0, 2.0]), ddof=-1)


# ---- relu, maximum/minimum, where, clip: NaN and inf kept out of the inactive branch -----------


def test_infinite_cotangent_behind_an_inactive_relu_gives_zero():
    f = lambda x: ag.sqrt(ag.relu(x)).sum()  # noqa: E731
    (g,) = grad(f, [-1.0, 0.0, 4.0])
    assert same(g, [0.0, 0.0, 0.25])  # PyTorch's (was [nan, nan, 0.25]: inf * 0)
    assert same(jvp(ag.relu, [[-1.0, 0.0, 4.0]], [[INF, NAN, 1.0]]), [0.0, 0.0, 1.0])
    rr, fr = second(f, [-1.0, 0.0, 4.0])
    assert same(rr, [0.0, 0.0, -0.03125]) and same(fr, [0.0, 0.0, -0.03125])
    if torch is not None:
        assert same(tgrad(lambda x: torch.sqrt(torch.relu(x)).sum(), [-1.0, 0.0, 4.0])[0], g)
        assert same(tsecond(lambda x: torch.sqrt(torch.relu(x)).sum(), [-1.0, 0.0, 4.0]), rr)
        assert same(tjvp(torch.relu, [[-1.0, 0.0, 4.0]], [[INF, NAN, 1.0]]), [0.0, 0.0, 1.0])


def test_relu_at_nan_and_a_nan_factor_follow_pytorch():
    (g,) = grad(lambda x: ag.relu(x).sum(), [NAN, -1.0, 1.0, 0.0])
    assert same(g, [1.0, 0.0, 1.0, 0.0])  # PyTorch: 0 where relu(x) <= 0, so NaN passes
    # d/dx relu(x * c) = relu'(x c) c: with c = NaN that is NaN in PyTorch too (the factor's)
    (g,) = grad(lambda x: ag.relu(x * T([NAN, 1.0])).sum(), [-1.0, 1.0])
    assert same(g, [NAN, 1.0])
    # bias_act's relu takes the same rule
    (g,) = grad(lambda x: ag.sqrt(ag.bias_act(x, T([0.0, 0.0, 0.0]), "relu")).sum(),
                [[-1.0, 0.0, 4.0]])
    assert same(g, [[0.0, 0.0, 0.25]])
    if torch is not None:
        assert same(tgrad(lambda x: torch.relu(x).sum(), [NAN, -1.0, 1.0, 0.0])[0],
                    [1.0, 0.0, 1.0, 0.0])
        c = torch.tensor([NAN, 1.0], dtype=torch.float64)
        assert same(tgrad(lambda x: torch.relu(x * c).sum(), [-1.0, 1.0])[0], [NAN, 1.0])


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.float64])
def test_relu_grad_is_a_select_in_every_float_dtype(dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 33)).astype(dtype)
    x[0, :4] = [0.0, -0.0, NAN, -INF]
    g = rng.standard_normal((5, 33)).astype(dtype)
    g[1:, :3] = [INF, NAN, -INF]
    g[0, :4] = [INF, NAN, -3.0, NAN]
    ref = np.where(x.astype(np.float64) <= 0, 0.0, g.astype(np.float64))
    out = NumpyBackend.relu_grad(g, x)
    assert out.dtype == np.dtype(dtype) and out.shape == g.shape
    assert np.array_equal(out.astype(np.float64), ref, equal_nan=True)
    assert not np.signbit(out.astype(np.float64)[ref == 0]).any()  # +0.0, not -0.0
    # a leading batch of cotangents, a strided one, and x broadcast against a smaller g
    gb = np.stack([g, -g])
    assert np.array_equal(NumpyBackend.relu_grad(gb, x).astype(np.float64),
                          np.where(x.astype(np.float64) <= 0, 0.0, gb.astype(np.float64)),
                          equal_nan=True)
    assert np.array_equal(NumpyBackend.relu_grad(g[:, ::2], x[:, ::2]).astype(np.float64),
                          ref[:, ::2], equal_nan=True)
    assert np.array_equal(NumpyBackend.relu_grad(g[0], x).astype(np.float64),
                          np.where(x.astype(np.float64) <= 0, 0.0, g[0].astype(np.float64)),
                          equal_nan=True)


MAX_A = [1.0, NAN, 3.0, NAN]
MAX_B = [NAN, 0.0, 1.0, NAN]


@pytest.mark.parametrize("name,ga,gb", [
    ("maximum", [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]),
    ("minimum", [1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]),
])
def test_maximum_minimum_with_nan_give_both_inputs_the_gradient(name, ga, gb):
    f = lambda a, b: getattr(ag, name)(a, b).sum()  # noqa: E731
    got = grad(f, MAX_A, MAX_B)
    assert same(got[0], ga) and same(got[1], gb)  # PyTorch's (was all to b where NaN)
    # forward mode is the adjoint: a NaN pair carries both tangents
    t = jvp(lambda a, b: getattr(ag, name)(a, b), [MAX_A, MAX_B],
            [[1.0, 10.0, 100.0, 1000.0], [2.0, 20.0, 200.0, 2000.0]])
    assert same(t, [3.0, 30.0, 100.0 if name == "maximum" else 200.0, 3000.0])
    if torch is not None:
        tg = tgrad(lambda a, b: getattr(torch, name)(a, b).sum(), MAX_A, MAX_B)
        assert same(tg[0], ga) and same(tg[1], gb)


@pytest.mark.parametrize("fn,tfn,x,ref", [
    (lambda x: ag.sqrt(ag.maximum(x, T([0.0, 0.0]))), lambda x: torch.sqrt(torch.maximum(
        x, torch.zeros(2, dtype=torch.float64))), [-1.0, 4.0], [0.0, 0.25]),
    (lambda x: ag.sqrt(-ag.minimum(x, T([0.0, 0.0]))), lambda x: torch.sqrt(-torch.minimum(
        x, torch.zeros(2, dtype=torch.float64))), [1.0, -4.0], [0.0, -0.25]),
    (lambda x: ag.sqrt(ag.where(x > 0, x, 0.0)), lambda x: torch.sqrt(torch.where(x > 0, x, 0.0)),
     [-1.0, 4.0], [0.0, 0.25]),
    (lambda x: ag.sqrt(ag.clip(x, 0.0, 1.0)), lambda x: torch.sqrt(torch.clamp(x, 0.0, 1.0)),
     [-1.0, 0.25], [0.0, 1.0]),
    (lambda x: ag.clip(x, 0.0, 1.0), lambda x: torch.clamp(x, 0.0, 1.0), [NAN, 0.5], [0.0, 1.0]),
] if torch is not None else [],
    ids=["maximum", "minimum", "where", "clip", "clip-nan"] if torch is not None else [])
def test_inactive_branches_stop_infinite_cotangents(fn, tfn, x, ref):
    (g,) = grad(lambda z: fn(z).sum(), x)
    assert same(g, ref)
    assert same(tgrad(lambda z: tfn(z).sum(), x)[0], ref)


# ---- max / min reductions with NaN ----------------------------------------------------------


@pytest.mark.parametrize("name", ["max", "min"])
def test_nan_in_a_reduction_takes_the_gradient_without_poisoning_the_rest(name):
    x = [[1.0, NAN, 3.0], [1.0, 2.0, 3.0]]
    (g,) = grad(lambda z: getattr(ag, name)(z, axis=1).sum(), x)
    other = [0.0, 0.0, 1.0] if name == "max" else [1.0, 0.0, 0.0]
    assert same(g, [[0.0, 1.0, 0.0], other])  # was NaN for the whole first row
    (g,) = grad(lambda z: getattr(ag, name)(z), [[NAN, 1.0, NAN], [1.0, 2.0, 3.0]])
    assert same(g, [[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])  # was NaN everywhere
    t = jvp(lambda z: getattr(ag, name)(z, axis=1), [x], [[[1.0, 5.0, 1.0], [1.0, 2.0, 3.0]]])
    assert same(t, [5.0, 3.0 if name == "max" else 1.0])
    if torch is not None:  # PyTorch's max()/min() over all elements split among the NaNs
        tg = tgrad(lambda z: getattr(torch, name)(z), [[NAN, 1.0, NAN], [1.0, 2.0, 3.0]])[0]
        assert same(tg, [[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])
        td = tgrad(lambda z: getattr(torch, name)(z, dim=1).values.sum(), x)[0]
        assert same(td, [[0.0, 1.0, 0.0], other])


# ---- cross_entropy precision ------------------------------------------------------------------


def _ce_case(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1000.0, 1000.0, size=(16, 10))
    x[:, :5] = x.max(1, keepdims=True) - rng.uniform(0.0, 3.0, size=(16, 5))  # near the max
    x = x.astype(dtype)
    labels = rng.integers(0, 10, size=16)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(1, keepdims=True))
    exact = e / e.sum(1, keepdims=True) - np.eye(10)[labels]
    return x, labels, exact


@pytest.mark.parametrize("dtype,bound", [(np.float32, 2.5e-7), (np.float64, 1e-15)])
def test_cross_entropy_gradient_is_accurate_at_large_logits(dtype, bound):
    """The max error of d loss / d logits against the float64 value at |logits| ~ 1000: was
    1.8e-5 in float32 (exp(x - lse) carried lse's rounding, ulp(1000) = 6e-5) and 2.9e-14 in
    float64; PyTorch's is 6.6e-8 and 2.2e-16."""
    x, labels, exact = _ce_case(dtype)
    lab = ag.Tensor.from_array(labels)
    loss = lambda z: ag.cross_entropy(z, lab, reduction="sum")  # noqa: E731
    g = ag.grad(loss)(T(x, dtype)).numpy()
    assert g.dtype == dtype
    assert np.abs(g - exact).max() <= bound
    # forward mode takes the same rule: the jvp along e_k is the gradient's entry k
    tan = np.zeros_like(x)
    tan[3, 4] = 1.0
    _, t = ag.jvp(loss, (T(x, dtype),), (T(tan, dtype),))
    assert abs(float(t.numpy()) - exact[3, 4]) <= bound
    if torch is not None:
        tx = torch.tensor(x, requires_grad=True)
        torch.nn.functional.cross_entropy(tx, torch.tensor(labels), reduction="sum").backward()
        assert np.abs(tx.grad.numpy() - exact).max() <= bound  # the bound is PyTorch's scale
        assert np.abs(g - tx.grad.numpy()).max() <= 2 * bound


def test_cross_entropy_kernel_reference_is_accurate_at_large_logits():
    """The NumPy reference the GPU kernel is checked against takes the same stable form."""
    from autograd_gpu.backend.kernels.cross_entropy import _ref_cross_entropy

    x, labels, exact = _ce_case(np.float32, seed=1)
    _, lse, d = _ref_cross_entropy(x, labels)
    assert lse.dtype == np.float32 and np.abs(d - exact).max() <= 2.5e-7
