"""The elementwise functions of ops/elementwise_more.py: values against NumPy and SciPy (float64
and float32), first and second derivatives against PyTorch where it has the function (central
differences elsewhere), the edge conventions each op documents, the complex rules (JAX's
convention, checked against central differences along real and imaginary directions), NumPy's
dispatch, and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special as sp

import autograd_gpu as ag

try:  # PyTorch is the reference for the derivatives where it has the function (not a dependency)
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

EPS = 1e-6


def _tf(name):
    """PyTorch's function ``name`` (dotted: "special.xlog1py"), looked up when called."""
    def call(*args):
        fn = torch
        for part in name.split("."):
            fn = getattr(fn, part)
        return fn(*args)

    return call


def T(a):
    return ag.Tensor.from_array(np.asarray(a))


def _grads(fn, inputs, w, order=1):
    """Gradients of sum(fn(*inputs) * w) (order 1), or of sum(grad_0 * w2) for order 2 with
    w = (w, w2), as float64 arrays."""
    ts = [T(a) for a in inputs]
    if order == 1:
        with ag.GradientTape() as tape:
            tape.watch(ts)
            y = (fn(*ts) * T(w)).sum()
        return [g.numpy() for g in tape.gradient(y, ts, unconnected_gradients="zero")]
    w1, w2 = w
    with ag.GradientTape() as outer:
        outer.watch(ts)
        with ag.GradientTape() as inner:
            inner.watch(ts)
            y = (fn(*ts) * T(w1)).sum()
        gs = inner.gradient(y, ts, unconnected_gradients="zero")
        h = sum((g * T(w2)).sum() for g in gs)
    return [g.numpy() for g in outer.gradient(h, ts, unconnected_gradients="zero")]


def _torch_grads(fn, inputs, w, order=1):
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in inputs]
    if order == 1:
        y = (fn(*ts) * torch.tensor(w)).sum()
        return [g.numpy() for g in torch.autograd.grad(y, ts, allow_unused=True)]
    w1, w2 = w
    y = (fn(*ts) * torch.tensor(w1)).sum()
    gs = torch.autograd.grad(y, ts, create_graph=True)
    h = sum((g * torch.tensor(w2)).sum() for g in gs)
    if not h.requires_grad:  # a linear function: PyTorch's gradient is a constant
        return [np.zeros(np.shape(a)) for a in inputs]
    return [np.zeros(np.shape(a)) if g is None else g.numpy()
            for a, g in zip(inputs, torch.autograd.grad(h, ts, allow_unused=True))]


# name: (NumPy's function, PyTorch's, domain low, high, keep away from 0)
UNARY = {
    "arcsin": (np.arcsin, _tf("asin"), -0.9, 0.9, False),
    "arccos": (np.arccos, _tf("acos"), -0.9, 0.9, False),
    "arctan": (np.arctan, _tf("atan"), -3.0, 3.0, False),
    "sinh": (np.sinh, _tf("sinh"), -2.0, 2.0, False),
    "cosh": (np.cosh, _tf("cosh"), -2.0, 2.0, False),
    "arcsinh": (np.arcsinh, _tf("asinh"), -3.0, 3.0, False),
    "arccosh": (np.arccosh, _tf("acosh"), 1.1, 3.0, False),
    "arctanh": (np.arctanh, _tf("atanh"), -0.9, 0.9, False),
    "exp2": (np.exp2, _tf("exp2"), -2.0, 2.0, False),
    "log2": (np.log2, _tf("log2"), 0.2, 3.0, False),
    "log10": (np.log10, _tf("log10"), 0.2, 3.0, False),
    "cbrt": (np.cbrt, lambda t: torch.sign(t) * t.abs() ** (1.0 / 3.0), -2.0, 2.0, True),
    "reciprocal": (np.reciprocal, _tf("reciprocal"), -2.0, 2.0, True),
    "sinc": (np.sinc, _tf("sinc"), -2.0, 2.0, True),
    "deg2rad": (np.deg2rad, _tf("deg2rad"), -200.0, 200.0, False),
    "radians": (np.radians, _tf("deg2rad"), -200.0, 200.0, False),
    "rad2deg": (np.rad2deg, _tf("rad2deg"), -4.0, 4.0, False),
    "degrees": (np.degrees, _tf("rad2deg"), -4.0, 4.0, False),
}


def _unary_input(name, rng, shape=(3, 4)):
    _, _, lo, hi, away = UNARY[name]
    x = rng.uniform(lo, hi, shape)
    return np.where(np.abs(x) < 0.2, 0.5, x) if away else x


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unary_values_match_numpy(name, dtype):
    rng = np.random.default_rng(1)
    x = _unary_input(name, rng).astype(dtype)
    got = getattr(ag, name)(T(x))
    ref = UNARY[name][0](x)
    assert got.dtype == ref.dtype
    np.testing.assert_allclose(got.numpy(), ref, rtol=4 * np.finfo(dtype).eps, atol=0)


@needs_torch
@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("order", [1, 2])
def test_unary_derivatives_match_pytorch(name, order):
    rng = np.random.default_rng(2)
    x = _unary_input(name, rng)
    w = rng.standard_normal(x.shape)
    w = w if order == 1 else (w, rng.standard_normal(x.shape))
    (got,) = _grads(getattr(ag, name), [x], w, order)
    (ref,) = _torch_grads(UNARY[name][1], [x], w, order)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


# name: (reference function on arrays, PyTorch's, domain of x1, domain of x2)
BINARY = {
    "arctan2": (np.arctan2, _tf("atan2"), (0.2, 2.0), (-2.0, 2.0)),
    "hypot": (np.hypot, _tf("hypot"), (-2.0, 2.0), (0.2, 2.0)),
    "logaddexp": (np.logaddexp, _tf("logaddexp"), (-3.0, 3.0), (-3.0, 3.0)),
    "logaddexp2": (np.logaddexp2, _tf("logaddexp2"), (-3.0, 3.0), (-3.0, 3.0)),
    "fmax": (np.fmax, _tf("fmax"), (-2.0, 2.0), (-2.0, 2.0)),
    "fmin": (np.fmin, _tf("fmin"), (-2.0, 2.0), (-2.0, 2.0)),
    "copysign": (np.copysign, _tf("copysign"), (-2.0, 2.0), (-2.0, 2.0)),
    "xlog1py": (sp.xlog1py, _tf("special.xlog1py"), (-2.0, 2.0), (-0.7, 3.0)),
}


def _binary_inputs(name, rng):
    _, _, (lo1, hi1), (lo2, hi2) = BINARY[name]
    a, b = rng.uniform(lo1, hi1, (3, 4)), rng.uniform(lo2, hi2, (4,))
    if name in ("fmax", "fmin"):  # no near-ties: the derivative jumps there
        b = np.where(np.abs(a - b).min(axis=0) < 0.05, b + 0.3, b)
    return a, b


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_binary_values_match_numpy(name, dtype):
    a, b = (v.astype(dtype) for v in _binary_inputs(name, np.random.default_rng(3)))
    got = getattr(ag, name)(T(a), T(b))
    ref = BINARY[name][0](a, b)
    assert got.dtype == ref.dtype
    # logaddexp2 is a composition (logaddexp of scaled inputs): a few ulps from NumPy's loop
    tol = (16 if name == "logaddexp2" else 2) * np.finfo(dtype).eps
    np.testing.assert_allclose(got.numpy(), ref, rtol=tol, atol=tol)


@needs_torch
@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("order", [1, 2])
def test_binary_derivatives_match_pytorch(name, order):
    rng = np.random.default_rng(4)
    a, b = _binary_inputs(name, rng)
    w = rng.standard_normal((3, 4))
    w = w if order == 1 else (w, rng.standard_normal((3, 4)))
    got = _grads(getattr(ag, name), [a, b], w, order)
    ref = _torch_grads(BINARY[name][1], [a, b], w, order)
    for g, r in zip(got, ref):
        r = np.zeros_like(g) if r is None else r
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


def test_heaviside_values_and_no_derivative():
    x1 = np.array([-1.5, 0.0, 0.0, 2.0])
    x2 = np.array([0.5, 0.5, 0.25, 0.5])
    np.testing.assert_array_equal(ag.heaviside(T(x1), T(x2)).numpy(), np.heaviside(x1, x2))
    t = T(x1)
    with ag.GradientTape(persistent=True) as tape:
        tape.watch(t)
        y = ag.heaviside(t, 0.5).sum()
    assert tape.gradient(y, [t]) == [None]  # not differentiable (derivative 0 off 0), as sign
    (g,) = tape.gradient(y, [t], unconnected_gradients="zero")
    np.testing.assert_array_equal(g.numpy(), 0.0)


# ---- edge conventions -----------------------------------------------------------------------


def _sinc_mp(x, n):
    """The n-th derivative of sinc(x) = sin(pi x) / (pi x) in 40-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(40):
        return float(mpmath.diff(lambda t: mpmath.sinc(mpmath.pi * t), mpmath.mpf(x), n))


def _nested(fn, x, n):
    """The n-th derivative of an elementwise fn at the points x, by nested tapes."""
    ts = [T(x)]
    tapes = [ag.GradientTape() for _ in range(n)]
    for tp in tapes:
        tp.__enter__()
        tp.watch(ts[0])
    y = fn(ts[0])
    for k in range(n - 1, -1, -1):
        (y,) = tapes[k].gradient(y.sum(), [ts[0]], unconnected_gradients="zero")
        tapes[k].__exit__(None, None, None)
    return y.numpy()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4])
def test_sinc_derivatives_of_every_order_are_exact_also_at_zero(n):
    """sin(pi x) / (pi x) differentiated as a quotient is 0/0 at 0 and cancels badly near it;
    the op's series gives each derivative to rounding (PyTorch's second derivative at 0 is 0,
    the true one -pi^2/3)."""
    x = np.array([0.0, 1e-9, -3e-5, 1e-2, 0.2, 1 / math.pi, 0.5, -0.9, 1.3, 2.7, 40.25])
    got = _nested(ag.sinc, x, n)
    ref = np.array([_sinc_mp(v, n) for v in x])
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-12 * math.pi ** n)
    if n == 2:
        assert got[0] == pytest.approx(-math.pi ** 2 / 3, rel=1e-14)


def test_hypot_does_not_overflow_and_its_gradient_at_the_origin_is_zero():
    a = np.array([3e200, 0.0, 3e-200, 3.0])
    b = np.array([4e200, 0.0, 4e-200, 4.0])
    ga, gb = _grads(ag.hypot, [a, b], np.ones(4))
    np.testing.assert_allclose(ag.hypot(T(a), T(b)).numpy(), np.hypot(a, b), rtol=1e-15)
    np.testing.assert_allclose(ga, [0.6, 0.0, 0.6, 0.6], rtol=1e-15)
    np.testing.assert_allclose(gb, [0.8, 0.0, 0.8, 0.8], rtol=1e-15)
    with np.errstate(over="ignore", under="ignore"):
        composition = ag.sqrt(T(a) * T(a) + T(b) * T(b)).numpy()
    assert np.isinf(composition[0]) and composition[2] == 0.0  # why hypot is a primitive


def test_logaddexp_weights_at_ties_infinities_and_far_apart():
    a = np.array([1.5, -np.inf, np.inf, 0.0, 1000.0, -np.inf])
    b = np.array([1.5, -np.inf, 2.0, 1000.0, 0.0, 3.0])
    y = ag.logaddexp(T(a), T(b)).numpy()
    np.testing.assert_array_equal(y, np.logaddexp(a, b))
    ga, gb = _grads(ag.logaddexp, [a, b], np.ones(6))
    np.testing.assert_array_equal(ga, [0.5, 0.5, 1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(gb, [0.5, 0.5, 0.0, 1.0, 0.0, 1.0])
    # the second derivative at a tie: d2/da2 = w (1 - w) = 1/4
    (h,) = _grads(lambda x: ag.logaddexp(x, T(np.array([1.5]))), [np.array([1.5])],
                  (np.ones(1), np.ones(1)), order=2)
    assert h[0] == pytest.approx(0.25, rel=1e-15)


@needs_torch
def test_fmax_fmin_route_the_gradient_past_nan_as_pytorch():
    a = np.array([np.nan, 1.0, np.nan, 2.0, 1.0])
    b = np.array([1.0, np.nan, np.nan, 2.0, 3.0])
    for name, tfn in (("fmax", torch.fmax), ("fmin", torch.fmin)):
        fn = getattr(ag, name)
        np.testing.assert_array_equal(fn(T(a), T(b)).numpy(), getattr(np, name)(a, b))
        got = _grads(fn, [a, b], np.ones(5))
        ref = _torch_grads(tfn, [a, b], np.ones(5))
        for g, r in zip(got, ref):
            np.testing.assert_array_equal(g, r)


def test_copysign_derivative_is_the_sign_product_and_zero_at_zero():
    a = np.array([-2.0, 0.0, 3.0, -0.5, 1.0])
    b = np.array([1.0, -1.0, -2.0, -0.0, 0.0])
    y = ag.copysign(T(a), T(b)).numpy()
    np.testing.assert_array_equal(y, np.copysign(a, b))
    np.testing.assert_array_equal(np.signbit(y), np.signbit(np.copysign(a, b)))
    ga, gb = _grads(ag.copysign, [a, b], np.ones(5))
    np.testing.assert_array_equal(ga, [-1.0, 0.0, -1.0, 1.0, 1.0])
    np.testing.assert_array_equal(gb, 0.0)


def test_xlog1py_at_x_zero():
    """0 where x == 0 (also at y = -1, where x log1p(y) is 0 * -inf); there d/dx = log1p(y)
    (finite, 0 at y = -1), d/dy = 0, and the mixed derivative d2/dx dy = 1/(1 + y) (a mask of
    the whole x == 0 line would lose it)."""
    x = np.array([0.0, 0.0, 0.0, 1.5])
    y = np.array([0.5, -1.0, np.nan, 2.0])
    np.testing.assert_array_equal(ag.xlog1py(T(x), T(y)).numpy(), sp.xlog1py(x, y))
    gx, gy = _grads(ag.xlog1py, [x[:2], y[:2]], np.ones(2))
    np.testing.assert_allclose(gx, [math.log1p(0.5), 0.0], rtol=1e-15)
    np.testing.assert_array_equal(gy, [0.0, 0.0])
    # d/dx of (d/dy) at x = 0, y = 0.5: central differences of the gradient in y
    def gy_at(xv):
        return _grads(ag.xlog1py, [np.array([xv]), np.array([0.5])], np.ones(1))[1][0]

    fd = (gy_at(EPS) - gy_at(-EPS)) / (2 * EPS)
    (hx, _) = _grads(ag.xlog1py, [np.array([0.0]), np.array([0.5])], (np.zeros(1), np.zeros(1)),
                     order=2)
    _, (hxy) = _hessian_row(np.array([0.0]), np.array([0.5]))
    assert hxy == pytest.approx(fd, rel=1e-8) and hxy == pytest.approx(1 / 1.5, rel=1e-14)
    assert hx.shape == (1,)


def _hessian_row(x, y):
    """(d2/dy dx, d2/dx dy) of xlog1py at (x, y): the gradient in y differentiated in x."""
    tx, ty = T(x), T(y)
    with ag.GradientTape() as outer:
        outer.watch([tx, ty])
        with ag.GradientTape() as inner:
            inner.watch([tx, ty])
            v = ag.xlog1py(tx, ty).sum()
        _, gyy = inner.gradient(v, [tx, ty])
        s = gyy.sum()
    hx, hy = outer.gradient(s, [tx, ty], unconnected_gradients="zero")
    return float(hy.numpy()[0]), float(hx.numpy()[0])


def test_xlogy_is_ag_specials():
    x = np.array([0.0, 0.0, 1.5, -2.0])
    y = np.array([0.0, 2.0, 0.5, 3.0])
    np.testing.assert_array_equal(ag.xlogy(T(x), T(y)).numpy(), sp.xlogy(x, y))
    gx, gy = _grads(ag.xlogy, [x[1:], y[1:]], np.ones(3))
    np.testing.assert_allclose(gx, np.log(y[1:]), rtol=1e-15)
    np.testing.assert_allclose(gy, x[1:] / y[1:], rtol=1e-15)


def test_nan_to_num_replaces_and_passes_the_gradient_only_at_finite_entries():
    x = np.array([np.nan, np.inf, -np.inf, 1.5, -2.0], dtype=np.float32)
    for kw in ({}, {"nan": 2.0, "posinf": 5.0, "neginf": -3.0}):
        y = ag.nan_to_num(T(x), **kw)
        ref = np.nan_to_num(x, **kw)
        assert y.dtype == ref.dtype
        np.testing.assert_array_equal(y.numpy(), ref)
    (g,) = _grads(ag.nan_to_num, [x.astype(np.float64)], np.full(5, 3.0))
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0, 3.0, 3.0])
    ints = T(np.array([1, 2]))
    assert ag.nan_to_num(ints) is ints


def test_complex_helpers_on_real_tensors():
    x = np.array([-1.5, 0.5, 2.0])
    t = T(x)
    assert ag.real(t) is t and ag.conj(t) is t and ag.conjugate is ag.conj
    np.testing.assert_array_equal(ag.imag(t).numpy(), np.imag(x))
    np.testing.assert_array_equal(ag.angle(t).numpy(), np.angle(x))
    np.testing.assert_allclose(ag.angle(t, deg=True).numpy(), np.angle(x, deg=True))
    for fn, want in ((ag.real, 1.0), (ag.imag, 0.0), (ag.conj, 1.0), (ag.angle, 0.0)):
        (g,) = _grads(fn, [x], np.ones(3))
        np.testing.assert_array_equal(g, want)


def test_reciprocal_of_integers_is_numpys_integer_reciprocal():
    x = np.array([1, 2, -1, 3])
    y = ag.reciprocal(T(x))
    assert y.dtype == np.reciprocal(x).dtype
    np.testing.assert_array_equal(y.numpy(), np.reciprocal(x))


# ---- complex numbers ------------------------------------------------------------------------


def _wirtinger_fd(loss, z):
    """dL/dx - i dL/dy of a real L at complex z, by central differences per entry."""
    g = np.zeros_like(z)
    for k in range(z.size):
        e = np.zeros_like(z)
        e.flat[k] = EPS
        dx = (loss(z + e) - loss(z - e)) / (2 * EPS)
        dy = (loss(z + 1j * e) - loss(z - 1j * e)) / (2 * EPS)
        g.flat[k] = dx - 1j * dy
    return g


def _check_real_valued(fn_ag, z, w):
    """ag.grad of L(z) = sum(Re(fn(z)) w) + sum(Im(fn(z)) w / 2) against central differences."""
    def loss_ag(t):
        y = fn_ag(t)
        return (ag.real(y) * T(w)).sum() + (ag.imag(y) * T(w * 0.5)).sum()

    def loss_np(a):
        return float(loss_ag(T(a)).numpy())

    got = ag.grad(loss_ag)(T(z)).numpy()
    np.testing.assert_allclose(got, _wirtinger_fd(loss_np, z), rtol=1e-7, atol=1e-8)


COMPLEX_FNS = {
    "arcsin": ag.arcsin, "arccos": ag.arccos, "arctan": ag.arctan, "sinh": ag.sinh,
    "cosh": ag.cosh, "arcsinh": ag.arcsinh, "arctanh": ag.arctanh, "exp2": ag.exp2,
    "log2": ag.log2, "log10": ag.log10, "reciprocal": ag.reciprocal, "sinc": ag.sinc,
    "conj": ag.conj, "real": ag.real, "imag": ag.imag, "angle": ag.angle,
    "arccosh": lambda z: ag.arccosh(z + 2.0), "xlog1py": lambda z: ag.xlog1py(z, z * 0.5),
    "nan_to_num": ag.nan_to_num,
}


@pytest.mark.parametrize("name", sorted(COMPLEX_FNS))
def test_complex_gradients_follow_the_convention(name):
    """grad of a real-valued L(z) is dL/dx - i dL/dy (JAX's convention), through each op's
    complex rules."""
    rng = np.random.default_rng(5)
    z = rng.uniform(-0.6, 0.6, (2, 3)) + 1j * rng.uniform(-0.5, 0.5, (2, 3))
    z = np.where(np.abs(z) < 0.2, z + 0.3, z)
    _check_real_valued(COMPLEX_FNS[name], z, rng.standard_normal((2, 3)))


def test_complex_values_match_numpy():
    rng = np.random.default_rng(6)
    z = rng.uniform(-0.6, 0.6, 5) + 1j * rng.uniform(-0.5, 0.5, 5)
    for name in ("arcsin", "arccos", "arctan", "sinh", "cosh", "arcsinh", "arccosh", "arctanh",
                 "exp2", "log2", "log10", "reciprocal", "sinc", "real", "imag", "conj",
                 "angle"):
        got = getattr(ag, name)(T(z))
        ref = getattr(np, name)(z)
        assert got.dtype == ref.dtype, name
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-14, atol=1e-15, err_msg=name)
    zn = np.array([complex(np.nan, np.inf), complex(-np.inf, 1.0)])
    np.testing.assert_array_equal(ag.nan_to_num(T(zn)).numpy(), np.nan_to_num(zn))


def test_holomorphic_derivatives_of_complex_ops():
    """With holomorphic=True, grad is f'(z): the real formulas continued (arccosh's with
    sqrt(z - 1) sqrt(z + 1), which differs from 1/sqrt(z^2 - 1) on part of the plane)."""
    z = np.array([0.3 + 0.4j, -2.0 + 0.1j, -0.5 - 1.2j])
    cases = {
        ag.arcsin: 1 / np.sqrt(1 - z * z), ag.arctan: 1 / (1 + z * z),
        ag.arccosh: 1 / (np.sqrt(z - 1) * np.sqrt(z + 1)), ag.sinh: np.cosh(z),
        ag.exp2: np.exp2(z) * np.log(2), ag.reciprocal: -1 / (z * z),
        ag.sinc: (np.cos(np.pi * z) - np.sinc(z)) / z,
    }
    for fn, want in cases.items():
        got = np.array([ag.grad(fn, holomorphic=True)(T(np.array(v))).numpy() for v in z])
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # arccosh: central differences of NumPy's own principal branch at z = -2 + 0.1i
    v = z[1]
    fd = (np.arccosh(v + EPS) - np.arccosh(v - EPS)) / (2 * EPS)
    assert abs(fd - 1 / (np.sqrt(v - 1) * np.sqrt(v + 1))) < 1e-7
    assert abs(fd - 1 / np.sqrt(v * v - 1)) > 0.1


def test_ops_without_complex_rules_refuse_complex_inputs():
    z = T(np.array([1.0 + 1.0j, 2.0]))
    for call in (lambda: ag.arctan2(z, z), lambda: ag.hypot(z, z), lambda: ag.cbrt(z),
                 lambda: ag.logaddexp(z, z), lambda: ag.fmax(z, z), lambda: ag.copysign(z, z),
                 lambda: ag.heaviside(z, 0.5)):
        with pytest.raises(ag.DTypeError):
            call()


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(set(UNARY) | set(BINARY) | {"real", "imag", "angle",
                                                                     "nan_to_num", "heaviside"}))
def test_on_gpu_matches_the_cpu(name):
    """Values and first derivatives on CuPy against the CPU (results stay on the device)."""
    rng = np.random.default_rng(9)
    if name in UNARY:
        inputs = [_unary_input(name, rng)]
    elif name in BINARY:
        inputs = list(_binary_inputs(name, rng))
    else:
        inputs = [rng.uniform(-2.0, 2.0, (3, 4))] + ([np.full(4, 0.5)] if name == "heaviside"
                                                     else [])
    fn = getattr(ag, name)
    w = rng.standard_normal((3, 4))
    res = {}
    for dev in ("cpu", "cuda:0"):
        ts = [ag.Tensor.from_array(a, device=dev) for a in inputs]
        with ag.GradientTape() as tape:
            tape.watch(ts)
            y = fn(*ts)
            loss = (y * ag.Tensor.from_array(w, device=dev)).sum()
        gs = tape.gradient(loss, ts, unconnected_gradients="zero")
        res[dev] = (y, [g.numpy() for g in gs])
    assert type(res["cuda:0"][0].data).__module__.startswith("cupy")
    np.testing.assert_allclose(res["cuda:0"][0].numpy(), res["cpu"][0].numpy(), rtol=1e-13)
    for a, b in zip(res["cuda:0"][1], res["cpu"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# ---- vmap, NumPy's dispatch and errors ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(UNARY) | set(BINARY) | {"real", "imag", "angle",
                                                                     "nan_to_num", "heaviside"}))
def test_vmap_equals_a_loop(name):
    """Every function under ag.vmap (the primitives by their batch declarations, the
    compositions through theirs) against the function applied example by example."""
    rng = np.random.default_rng(8)
    x = rng.uniform(0.3, 0.8, (4, 3, 2))
    fn = getattr(ag, name)
    f = (lambda t: fn(t, t[::-1] * 0.5 + 0.1)) if name in BINARY or name == "heaviside" else fn
    got = ag.vmap(f)(T(x)).numpy()
    want = np.stack([f(T(v)).numpy() for v in x])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


# ---- NumPy's dispatch and errors ------------------------------------------------------------


def test_numpy_functions_dispatch_to_these_ops():
    x = np.array([0.3, 0.6, 0.2])
    t = T(x)
    with ag.GradientTape() as tape:
        tape.watch(t)
        y = (np.sinh(t) + np.arctan2(t, 2.0) + np.logaddexp(t, t) + np.sinc(t) + np.hypot(t, 1.0)
             + np.fmax(t, 0.4) + np.nan_to_num(t) + np.degrees(t) + np.real(t) + np.cbrt(t)
             + sp.xlog1py(t, t)).sum()
    assert isinstance(y, ag.Tensor)
    (g,) = tape.gradient(y, [t])
    ref = (np.cosh(x) + 2.0 / (4.0 + x * x) + 1.0 + (np.cos(np.pi * x) - np.sinc(x)) / x
           + x / np.hypot(x, 1.0) + (x >= 0.4) + 1.0 + 180.0 / np.pi + 1.0
           + 1.0 / (3.0 * np.cbrt(x) ** 2) + np.log1p(x) + x / (1 + x))
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-12)


def test_bad_arguments_raise_named_errors():
    with pytest.raises(ag.ShapeError, match="arctan2"):
        ag.arctan2(T(np.ones(2)), T(np.ones(3)))
    with pytest.raises(ag.ArgumentError, match="sinc"):
        ag.sinc("x")
    with pytest.raises(ag.ArgumentError, match="logaddexp2"):
        ag.logaddexp2(T(np.ones(2)), object())
    with pytest.raises(ag.ArgumentError, match="angle"):
        ag.angle(object())
