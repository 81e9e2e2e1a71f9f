"""ag.special: values against scipy.special, gradients against central differences and PyTorch,
the parameters without a derivative (NaN where tracked), dtypes, errors, and the compositions
(multigammaln, logsumexp with b and return_sign, softmax/log_softmax over every axis, zeta with
q None). The primitives' rules are also checked by tests/test_registry_rules.py on their
samplers' inputs."""

from __future__ import annotations

import types

import numpy as np
import pytest
import scipy.special as sp

import autograd_gpu as ag
from autograd_gpu.ops import special as ops_special

S = ag.special
EPS = 1e-6
RNG = np.random.default_rng(0)


def T(a):
    return ag.Tensor.from_array(np.asarray(a, dtype=np.float64))


def _fd(f, xs, i, d):
    """Central difference of the scalar sum(w * f(...)) along d in argument i."""
    plus = [x + EPS * d if k == i else x for k, x in enumerate(xs)]
    minus = [x - EPS * d if k == i else x for k, x in enumerate(xs)]
    return (f(*plus) - f(*minus)) / (2 * EPS)


def _check_grad(fn, ref, xs, argnums, rtol=1e-6):
    """ag.grad of sum(w * fn(...)) against central differences of sum(w * ref(...))."""
    w = RNG.standard_normal(np.shape(ref(*xs)))

    def loss(*ts):
        return ag.sum(fn(*ts) * T(w))

    for i in argnums:
        g = ag.grad(loss, argnums=i)(*[T(x) if isinstance(x, np.ndarray) else x for x in xs])
        d = RNG.standard_normal(np.shape(xs[i]))
        want = _fd(lambda *a: float(np.sum(w * ref(*a))), xs, i, d)
        got = float(np.sum(g.numpy() * d))
        assert abs(got - want) <= rtol * (1 + abs(want)), (fn.__name__, i, got, want)


# ---- values against SciPy -------------------------------------------------------------------

UNARY = {  # name: domain
    "gammaln": (0.1, 6.0), "digamma": (0.1, 6.0), "psi": (0.1, 6.0), "gamma": (0.1, 5.0),
    "rgamma": (-2.9, 5.0), "erf": (-3.0, 3.0), "erfc": (-3.0, 6.0), "erfinv": (-0.99, 0.99),
    "erfcinv": (0.01, 1.99), "logit": (0.01, 0.99), "expit": (-30.0, 30.0),
    "entr": (0.0, 4.0), "log_ndtr": (-40.0, 8.0), "ndtr": (-8.0, 8.0), "ndtri": (0.001, 0.999),
    "i0": (-5.0, 5.0), "i0e": (-50.0, 50.0), "i1": (-5.0, 5.0), "i1e": (-50.0, 50.0),
    "j0": (-20.0, 20.0), "j1": (-20.0, 20.0), "y0": (0.05, 20.0), "y1": (0.05, 20.0),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_values_match_scipy(name):
    lo, hi = UNARY[name]
    x = np.linspace(lo, hi, 41).reshape(41, 1) * np.ones((1, 2))
    got = getattr(S, name)(T(x))
    assert isinstance(got, ag.Tensor) and got.dtype == np.float64
    # expit is ag.sigmoid, computed as (1 + tanh(x/2)) / 2: accurate to 1e-16 absolutely, not
    # relatively in the lower tail (SciPy: 9.3576e-14 at x = -30, ag.sigmoid 9.3592e-14)
    atol = 1e-16 if name == "expit" else 0
    np.testing.assert_allclose(got.numpy(), getattr(sp, name)(x), rtol=1e-13, atol=atol)


@pytest.mark.parametrize("name", ["gammaln", "digamma", "erfc", "ndtri", "i1e", "j1", "entr"])
def test_dtypes_float32_kept_and_16_bit_computed_in_float32(name):
    lo, hi = UNARY[name]
    x = np.linspace(lo + 0.01, hi - 0.01, 9)
    for dt in ("float32", "float16", "bfloat16"):
        t = ag.Tensor.from_array(x, dtype=dt)
        y = getattr(S, name)(t)
        assert y.dtype == t.dtype, (name, dt, y.dtype)
        want = getattr(sp, name)(t.numpy().astype(np.float32)).astype(t.dtype)
        np.testing.assert_array_equal(y.numpy(), want)


def test_parameter_and_order_functions_match_scipy():
    x = np.linspace(0.2, 6.0, 30)
    n = np.array([0, 1, 2, 3, 4, 5] * 5)
    np.testing.assert_allclose(S.polygamma(n, T(x)).numpy(), sp.polygamma(n, x), rtol=1e-13)
    np.testing.assert_allclose(S.polygamma(3, T(x)).numpy(), sp.polygamma(3, x), rtol=1e-13)
    np.testing.assert_allclose(S.jn(n - 2, T(x)).numpy(), sp.jn(n - 2, x), rtol=1e-13)
    np.testing.assert_allclose(S.yn(n - 2, T(x)).numpy(), sp.yn(n - 2, x), rtol=1e-13)
    np.testing.assert_allclose(S.iv(n * 0.5 - 1, T(x)).numpy(), sp.iv(n * 0.5 - 1, x),
                               rtol=1e-13)
    np.testing.assert_allclose(S.ive(1.5, T(x)).numpy(), sp.ive(1.5, x), rtol=1e-13)
    a = n + 0.5
    np.testing.assert_allclose(S.gammainc(a, T(x)).numpy(), sp.gammainc(a, x), rtol=1e-13)
    np.testing.assert_allclose(S.gammaincc(T(a), T(x)).numpy(), sp.gammaincc(a, x), rtol=1e-13)
    u = x / 6.1
    np.testing.assert_allclose(S.betainc(a, 2.5, T(u)).numpy(), sp.betainc(a, 2.5, u),
                               rtol=1e-13)
    np.testing.assert_allclose(S.beta(T(a), T(x)).numpy(), sp.beta(a, x), rtol=1e-13)
    np.testing.assert_allclose(S.betaln(T(a), 3.0).numpy(), sp.betaln(a, 3.0), rtol=1e-13)
    np.testing.assert_allclose(S.xlogy(T(n - 2.0), T(x)).numpy(), sp.xlogy(n - 2.0, x),
                               rtol=1e-13)
    np.testing.assert_allclose(S.zeta(T(x + 1.1), T(a)).numpy(), sp.zeta(x + 1.1, a),
                               rtol=1e-13)
    s = np.array([-7.5, -2.0, -0.5, 0.0, 0.5, 1.5, 3.0, 40.0])
    np.testing.assert_allclose(S.zeta(T(s)).numpy(), sp.zeta(s), rtol=1e-13)
    np.testing.assert_allclose(S.multigammaln(T(x + 2.0), 4).numpy(),
                               sp.multigammaln(x + 2.0, 4), rtol=1e-13)


def test_python_numbers_give_float64_tensors():
    y = S.gammaln(2.5)
    assert isinstance(y, ag.Tensor) and y.dtype == np.float64
    assert float(y.numpy()) == pytest.approx(sp.gammaln(2.5), rel=1e-15)
    assert float(S.gammainc(2, 1.5).numpy()) == pytest.approx(sp.gammainc(2, 1.5), rel=1e-15)
    assert float(S.polygamma(1, 3).numpy()) == pytest.approx(sp.polygamma(1, 3), rel=1e-15)


def test_xlogy_and_entr_conventions_at_zero():
    x = np.array([0.0, 0.0, 0.0, 2.0])
    y = np.array([0.0, 3.0, np.nan, 0.0])
    np.testing.assert_array_equal(S.xlogy(T(x), T(y)).numpy(), sp.xlogy(x, y))
    gx, gy = ag.grad(lambda a, b: ag.sum(S.xlogy(a, b)), argnums=(0, 1))(T(x[:2]), T(y[:2]))
    # d/dx: log(y), 0 at x == 0 and y <= 0 (PyTorch's); d/dy: 0 along x == 0
    np.testing.assert_array_equal(gx.numpy(), [0.0, np.log(3.0)])
    np.testing.assert_array_equal(gy.numpy(), [0.0, 0.0])
    e = np.array([-1.0, 0.0, 0.5])
    np.testing.assert_array_equal(S.entr(T(e)).numpy(), sp.entr(e))
    g = ag.grad(lambda t: ag.sum(S.entr(t)))(T(e))
    np.testing.assert_array_equal(g.numpy(), [0.0, np.inf, -(np.log(0.5) + 1.0)])


# ---- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(UNARY) - {"entr"}))
def test_unary_gradients_match_central_differences(name):
    lo, hi = UNARY[name]
    x = RNG.uniform(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo), (3, 4))
    if name in ("i0e", "i1e"):
        x = np.where(np.abs(x) < 0.2, 0.5, x)
    if name == "rgamma":
        x = np.where(np.abs(x - np.round(x)) < 0.2, np.round(x) + 0.3, x)
    _check_grad(getattr(S, name), getattr(sp, name), [x], [0])


def test_gradients_of_parameter_functions_in_their_value():
    x = RNG.uniform(0.3, 4.0, (2, 3))
    n = np.array([[0], [2]])
    _check_grad(lambda t: S.polygamma(n, t), lambda v: sp.polygamma(n, v), [x], [0])
    _check_grad(lambda t: S.jn(n - 1, t), lambda v: sp.jn(n - 1, v), [x], [0])
    _check_grad(lambda t: S.yn(n - 1, t), lambda v: sp.yn(n - 1, v), [x], [0])
    _check_grad(lambda t: S.iv(0.5, t), lambda v: sp.iv(0.5, v), [x], [0])
    _check_grad(lambda t: S.ive(-1.5, t), lambda v: sp.ive(-1.5, v), [x], [0])
    _check_grad(lambda t: S.gammainc(2.5, t), lambda v: sp.gammainc(2.5, v), [x], [0])
    _check_grad(lambda t: S.gammaincc(n + 1, t), lambda v: sp.gammaincc(n + 1, v), [x], [0])
    u = x / 4.1
    _check_grad(lambda t: S.betainc(1.5, n + 2, t), lambda v: sp.betainc(1.5, n + 2, v),
                [u], [0])
    _check_grad(S.beta, sp.beta, [x, x.T[:1].T + 0.5], [0, 1])
    _check_grad(S.betaln, sp.betaln, [x, x[::-1]], [0, 1])
    _check_grad(S.xlogy, sp.xlogy, [x - 2.0, x], [0, 1])
    _check_grad(lambda q: S.zeta(2.5, q), lambda q: sp.zeta(2.5, q), [x], [0])


def test_second_derivatives_through_the_rules():
    x = np.array([0.4, 1.3, 2.6])
    for fn, d2 in ((S.gammaln, lambda v: sp.polygamma(1, v)),
                   (S.digamma, lambda v: sp.polygamma(2, v)),
                   (lambda t: S.polygamma(2, t), lambda v: sp.polygamma(4, v)),
                   (S.erfinv, None)):
        h = ag.grad(lambda t: ag.sum(ag.grad(lambda s: ag.sum(fn(s)))(t)))(T(x / 3.0))
        if d2 is None:  # erfinv'' = 2 y y'^2 with y' = sqrt(pi)/2 exp(y^2)
            y = sp.erfinv(x / 3.0)
            d2 = lambda v, y=y: 2 * y * (np.sqrt(np.pi) / 2 * np.exp(y * y)) ** 2  # noqa: E731
        np.testing.assert_allclose(h.numpy(), d2(x / 3.0), rtol=1e-12)


try:
    import torch
except ImportError:  # the reference of the tests marked needs_torch below; CI installs it
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the reference) is not installed")

TORCH = {  # ag.special name: (torch function, domain); empty without PyTorch
    "gammaln": (torch.special.gammaln, (0.2, 5.0)),
    "digamma": (torch.special.digamma, (0.2, 5.0)),
    "erfc": (torch.special.erfc, (-2.0, 2.0)),
    "erfinv": (torch.special.erfinv, (-0.9, 0.9)),
    "logit": (torch.special.logit, (0.05, 0.95)),
    "expit": (torch.special.expit, (-4.0, 4.0)),
    "entr": (torch.special.entr, (0.1, 3.0)),
    "log_ndtr": (torch.special.log_ndtr, (-30.0, 4.0)),
    "ndtr": (torch.special.ndtr, (-4.0, 4.0)),
    "ndtri": (torch.special.ndtri, (0.02, 0.98)),
    "i0": (torch.special.i0, (-3.0, 3.0)),
    "i0e": (torch.special.i0e, (0.2, 3.0)),
    "i1": (torch.special.i1, (-3.0, 3.0)),
    "i1e": (torch.special.i1e, (0.2, 3.0)),
} if torch is not None else {}


@needs_torch
@pytest.mark.parametrize("name", sorted(TORCH))
def test_unary_values_and_gradients_match_pytorch(name):
    fn, (lo, hi) = TORCH[name]
    x = RNG.uniform(lo, hi, (4, 5))
    w = RNG.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    y = fn(xt)
    (gt,) = torch.autograd.grad((y * torch.tensor(w)).sum(), xt)
    ours = getattr(S, name)
    np.testing.assert_allclose(ours(T(x)).numpy(), y.detach().numpy(), rtol=1e-12, atol=1e-300)
    g = ag.grad(lambda t: ag.sum(ours(t) * T(w)))(T(x))
    # PyTorch's trigamma (digamma's derivative) is accurate to about 1e-9 relatively (-1.3e-9
    # at x = 0.4 against mpmath, where SciPy's polygamma(1, x) is within 1 ulp)
    rtol = 1e-8 if name == "digamma" else 1e-11
    np.testing.assert_allclose(g.numpy(), gt.numpy(), rtol=rtol, atol=1e-14)


@needs_torch
def test_binary_and_composed_functions_match_pytorch():
    a = RNG.uniform(0.5, 4.0, (3, 4))
    x = RNG.uniform(0.2, 5.0, (3, 4))
    cases = [
        (lambda p, q: S.polygamma(2, q), lambda p, q: torch.special.polygamma(2, q), (1,)),
        (lambda p, q: S.gammainc(p, q), torch.special.gammainc, (1,)),
        (lambda p, q: S.gammaincc(p, q), torch.special.gammaincc, (1,)),
        (lambda p, q: S.xlogy(p - 2.0, q), lambda p, q: torch.special.xlogy(p - 2.0, q),
         (0, 1)),
        (lambda p, q: S.zeta(p + 1.5, q), lambda p, q: torch.special.zeta(p + 1.5, q), (1,)),
        (lambda p, q: S.multigammaln(p + 2.0, 3),
         lambda p, q: torch.special.multigammaln(p + 2.0, 3), (0,)),
        (lambda p, q: S.logsumexp(p * q, axis=1),
         lambda p, q: torch.special.logsumexp(p * q, dim=1), (0, 1)),
        (lambda p, q: S.softmax(p - q, axis=0),
         lambda p, q: torch.special.softmax(p - q, dim=0), (0, 1)),
        (lambda p, q: S.log_softmax(p - q, axis=1),
         lambda p, q: torch.special.log_softmax(p - q, dim=1), (0, 1)),
    ]
    for ours, theirs, argnums in cases:
        pt, qt = torch.tensor(a, requires_grad=True), torch.tensor(x, requires_grad=True)
        y = theirs(pt, qt)
        w = RNG.standard_normal(tuple(y.shape))
        gts = torch.autograd.grad((y * torch.tensor(w)).sum(), [[pt, qt][i] for i in argnums])
        np.testing.assert_allclose(ours(T(a), T(x)).numpy(), y.detach().numpy(), rtol=1e-12)
        gs = ag.grad(lambda p, q: ag.sum(ours(p, q) * T(w)), argnums=argnums)(T(a), T(x))
        for g, gt in zip(gs, gts):
            np.testing.assert_allclose(g.numpy(), gt.numpy(), rtol=1e-10, atol=1e-13)


# ---- parameters without a derivative --------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("case", ["gammainc", "gammaincc", "betainc_a", "betainc_b", "iv",
                                  "ive", "zeta_x", "zeta_riemann"])
def test_a_tracked_parameter_gets_nan_and_the_value_its_true_gradient(case):
    x = np.array([0.3, 0.6])
    fns = {
        "gammainc": (lambda p, v: S.gammainc(p, v), lambda v: sp.gammainc(1.5, v)),
        "gammaincc": (lambda p, v: S.gammaincc(p, v), lambda v: sp.gammaincc(1.5, v)),
        "betainc_a": (lambda p, v: S.betainc(p, 2.0, v), lambda v: sp.betainc(1.5, 2.0, v)),
        "betainc_b": (lambda p, v: S.betainc(2.0, p, v), lambda v: sp.betainc(2.0, 1.5, v)),
        "iv": (lambda p, v: S.iv(p, v), lambda v: sp.iv(1.5, v)),
        "ive": (lambda p, v: S.ive(p, v), lambda v: sp.ive(1.5, v)),
        "zeta_x": (lambda p, v: S.zeta(p + 1.0, v), lambda v: sp.zeta(2.5, v)),
        "zeta_riemann": (lambda p, v: S.zeta(p + 1.0) * v, lambda v: sp.zeta(2.5) * v),
    }
    fn, ref = fns[case]
    p = T([1.5, 1.5])
    gp, gx = ag.grad(lambda a, v: ag.sum(fn(a, v)), argnums=(0, 1))(p, T(x))
    assert np.all(np.isnan(gp.numpy())), f"{case}: a tracked parameter's gradient must be NaN"
    d = np.array([1.0, -0.5])
    want = (np.sum(ref(x + EPS * d)) - np.sum(ref(x - EPS * d))) / (2 * EPS)
    assert float(np.sum(gx.numpy() * d)) == pytest.approx(want, rel=1e-6)
    # tracked but only the value asked for: the value's gradient is unaffected
    with ag.GradientTape() as tape:
        tape.watch(p)
        xt = T(x)
        tape.watch(xt)
        y = ag.sum(fn(p, xt))
    (gx2,) = tape.gradient(y, [xt])
    np.testing.assert_array_equal(gx2.numpy(), gx.numpy())
    # forward mode: a tangent on the parameter makes the output tangent NaN
    _, tan = ag.jvp(lambda a: fn(a, T(x)), (p,), (T([1.0, 1.0]),))
    assert np.all(np.isnan(tan.numpy()))


@needs_torch
def test_a_constant_parameter_tensor_is_fine():
    a = T([1.5, 2.5])
    g = ag.grad(lambda v: ag.sum(S.gammainc(a, v)))(T([0.5, 1.0]))
    np.testing.assert_allclose(g.numpy(), np.exp((a.numpy() - 1) * np.log([0.5, 1.0]) -
                                                 np.array([0.5, 1.0]) - sp.gammaln(a.numpy())))


# ---- compositions ---------------------------------------------------------------------------


@needs_torch
def test_logsumexp_with_b_return_sign_and_zero_weights():
    a = RNG.standard_normal((3, 4)) * 3
    b = RNG.uniform(-1.0, 2.0, (3, 4))
    for axis in (None, 0, 1, (0, 1), -1):
        for keep in (False, True):
            out, sign = S.logsumexp(T(a), axis=axis, b=T(b), keepdims=keep, return_sign=True)
            ro, rs = sp.logsumexp(a, axis=axis, b=b, keepdims=keep, return_sign=True)
            np.testing.assert_allclose(out.numpy(), ro, rtol=1e-13)
            np.testing.assert_array_equal(sign.numpy(), rs)
            np.testing.assert_allclose(S.logsumexp(T(a), axis=axis, b=T(b), keepdims=keep)
                                       .numpy(), sp.logsumexp(a, axis=axis, b=b, keepdims=keep),
                                       rtol=1e-13)
    # b broadcasts against a; b == 0 leaves an entry out even where a is inf
    a2 = np.array([[1.0, np.inf], [2.0, 3.0]])
    b2 = np.array([1.0, 0.0])
    np.testing.assert_allclose(S.logsumexp(T(a2), axis=1, b=T(b2)).numpy(),
                               sp.logsumexp(a2, axis=1, b=b2))
    np.testing.assert_allclose(S.logsumexp(T(a[:1]), axis=0, b=T(b)).numpy(),
                               sp.logsumexp(a[:1], axis=0, b=b), rtol=1e-13)
    # large a: no overflow
    np.testing.assert_allclose(S.logsumexp(T([1000.0, 1000.0]), b=T([1.0, 2.0])).numpy(),
                               1000.0 + np.log(3.0))
    out, sign = S.logsumexp(T(a), return_sign=True)
    assert float(sign.numpy()) == 1.0 and out.numpy() == pytest.approx(sp.logsumexp(a))


@needs_torch
def test_logsumexp_with_b_gradients():
    a = RNG.standard_normal((3, 4))
    b = RNG.uniform(0.2, 2.0, (3, 4))
    _check_grad(lambda p, q: S.logsumexp(p, axis=1, b=q),
                lambda p, q: sp.logsumexp(p, axis=1, b=q), [a, b], [0, 1])
    bn = b - 1.0
    _check_grad(lambda p, q: S.logsumexp(p, axis=0, b=q, return_sign=True)[0],
                lambda p, q: sp.logsumexp(p, axis=0, b=q, return_sign=True)[0], [a, bn], [0, 1])


@needs_torch
def test_softmax_and_log_softmax_over_every_axis_by_default():
    x = RNG.standard_normal((3, 4))
    for axis in (None, (0, 1), 0, -1):
        np.testing.assert_allclose(S.softmax(T(x), axis=axis).numpy(), sp.softmax(x, axis=axis),
                                   rtol=1e-13)
        np.testing.assert_allclose(S.log_softmax(T(x), axis=axis).numpy(),
                                   sp.log_softmax(x, axis=axis), rtol=1e-13, atol=1e-15)
        _check_grad(lambda t: S.softmax(t, axis=axis), lambda v: sp.softmax(v, axis=axis),
                    [x], [0])
        _check_grad(lambda t: S.log_softmax(t, axis=axis),
                    lambda v: sp.log_softmax(v, axis=axis), [x], [0])


@needs_torch
def test_multigammaln_gradient_and_domain():
    a = RNG.uniform(2.0, 5.0, (2, 3))
    _check_grad(lambda t: S.multigammaln(t, 3), lambda v: sp.multigammaln(v, 3), [a], [0])
    with pytest.raises(ag.ArgumentError, match=r"multigammaln: argument 'a' expected values"):
        S.multigammaln(T([0.9, 3.0]), 3)
    for d in (0, 1.5, True):
        with pytest.raises(ag.ArgumentError, match="argument 'd'"):
            S.multigammaln(T([3.0]), d)


# ---- errors ---------------------------------------------------------------------------------


@needs_torch
def test_integer_values_complex_and_bad_orders_raise():
    ints = ag.Tensor.from_array(np.array([1, 2, 3]))
    with pytest.raises(ag.DTypeError, match=r"gammaln: argument 'x' expected a floating dtype"):
        S.gammaln(ints)
    with pytest.raises(ag.DTypeError, match="gammainc: argument 'x'"):
        S.gammainc(1.0, ints)
    cplx = ag.Tensor.from_array(np.array([1.0 + 1j]))
    with pytest.raises(ag.DTypeError, match="digamma: argument 'x' expected a floating dtype"):
        S.digamma(cplx)  # (complex arguments are not supported: CuPy's functions are real)
    with pytest.raises(ag.DTypeError, match="xlogy: argument 'y' expected a floating dtype"):
        S.xlogy(T([1.0]), cplx)
    with pytest.raises(ag.DTypeError, match="polygamma: argument 'n' expected an integer order"):
        S.polygamma(1.5, T([1.0]))
    with pytest.raises(ag.DTypeError, match="jn: argument 'n' expected an integer order"):
        S.jn(T([1.0]), T([1.0]))
    with pytest.raises(ag.DTypeError, match="yn: argument 'n'"):
        S.yn(True, T([1.0]))
    with pytest.raises(ag.DTypeError, match="betainc: argument 'b' expected real numbers"):
        S.betainc(1.0, ag.Tensor.from_array(np.array([True])), T([0.5]))
    with pytest.raises(ag.ArgumentError, match="betainc: expected 3 arguments"):
        S.betainc(1.0, T([0.5]))
    with pytest.raises(ag.ArgumentError, match="gammaln: argument 'x' expected a Tensor"):
        S.gammaln("x")
    with pytest.raises(ag.ShapeError):
        S.beta(T(np.ones(3)), T(np.ones(4)))
    with pytest.raises(ag.ShapeError, match="logsumexp: argument 'b'"):
        S.logsumexp(T(np.ones(3)), b=T(np.ones(4)))


@needs_torch
def test_a_function_the_device_library_lacks_raises_device_error():
    fake = types.SimpleNamespace(
        scipy=types.SimpleNamespace(__name__="cupyx.scipy", special=types.SimpleNamespace()),
        device="cuda:0")
    with pytest.raises(ag.DeviceError, match=r"iv: cupyx.scipy.special has no iv .* cuda:0"):
        ops_special.special_fn(fake, "iv")
    with pytest.raises(ag.DeviceError, match=r"jn: cupyx.scipy.special has no jv"):
        ops_special.special_fn(fake, "jv", "jn")


@needs_torch
def test_scipy_special_ufuncs_on_tensors_dispatch_to_ag_special():
    x = T([0.5, 1.5])
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = ag.sum(sp.gammaln(x))
    assert isinstance(y, ag.Tensor)
    (g,) = tape.gradient(y, [x])
    np.testing.assert_allclose(g.numpy(), sp.digamma([0.5, 1.5]), rtol=1e-14)
