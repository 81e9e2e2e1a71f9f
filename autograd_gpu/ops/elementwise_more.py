"""More elementwise functions under NumPy's names: inverse trigonometric and hyperbolic
functions, exp2, log2, log10, cbrt, reciprocal, sinc, arctan2, hypot, logaddexp, logaddexp2,
fmax, fmin, copysign, heaviside, xlog1py (xlogy is ops/special.py's), the degree conversions,
nan_to_num, and the complex helpers real, imag, conj and angle.

Primitives where the function needs rules of its own, or where NumPy's forward is better
conditioned than a composition (hypot does not overflow where sqrt(a*a + b*b) does; logaddexp
gives each input its softmax weight also at ties, where max + log1p(exp(-|a - b|)) would give
the whole gradient to one input). Compositions where the function is a product or a select of
existing ops (deg2rad, rad2deg, logaddexp2, nan_to_num): they get their rules from those ops.

Complex numbers: the holomorphic functions that NumPy defines for complex inputs declare
``complex_ok`` and their rules are the real ones, g f'(z) (the transpose of the complex-linear
derivative; docs/contributing.md). real, imag, conj and angle are not holomorphic and have
explicit rules, each derived from the defining identity
Re(sum(vjp(u) v)) = d/dt Re(sum(u f(z + t v))):
  real:  Re(w v) = u Re(v)                      ->  w = u (as a complex number)
  imag:  Re(w v) = u Im(v)                      ->  w = -i u
  conj:  Re(w v) = Re(u conj(v))                ->  w = conj(u)
  angle: Re(w v) = u Im(v / z)                  ->  w = -i u / z  (= -i u conj(z) / |z|^2)
On real inputs they are the identity (real, conj) or constants (imag; angle, which is 0 or pi).
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from ..tensor import Tensor
from . import sampling as S
from ._util import as_tensor, tsum
from .elementwise import _binary, _select_jvp, _select_vjp, _unary, isnan, where
from .registry import apply, defop, elementwise

__all__ = [
    "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "arcsinh", "arccosh", "arctanh",
    "exp2", "log2", "log10", "cbrt", "reciprocal", "sinc", "hypot", "logaddexp", "logaddexp2",
    "fmax", "fmin", "copysign", "heaviside", "xlog1py", "deg2rad", "radians", "rad2deg",
    "degrees", "nan_to_num", "real", "imag", "conj", "conjugate", "angle",
]

_LN2 = math.log(2.0)
_INV_LN2 = 1.0 / _LN2
_INV_LN10 = 1.0 / math.log(10.0)
_DEG = math.pi / 180.0
_RAD = 180.0 / math.pi


def _sample(lo, hi, away=None):
    def sample(draw):
        return (draw(S.arrays(draw(S.shapes()), lo, hi, away=away)),), {}

    return sample


def _holomorphic(name, fwd, deriv, doc, sample, *, save="x", cost=8, complex_ok=True):
    """A unary primitive y = f(x) with f' given by ``deriv(F, s)`` of the saved value s (the
    input x, or the output y with ``save="out"``): vjp g f'(x), jvp t f'(x). With complex_ok,
    f is holomorphic and NumPy defines it for complex inputs: the same rules hold there."""

    def forward(bk, x):
        y = fwd(bk.xp, x)
        return y, ((x,) if save == "x" else (y,))

    def vjp(F, g, saved, needs):
        return (g * deriv(F, saved[0]),)

    def jvp(F, ts, saved):
        return ts[0] * deriv(F, saved[0])

    impl = type(name.title(), (), {
        "forward": staticmethod(forward), "vjp": staticmethod(vjp), "jvp": staticmethod(jvp),
        "sample": staticmethod(sample), "__doc__": doc})
    return defop(name, cost=elementwise(cost), saves=(save,), complex_ok=complex_ok,
                 batch="elementwise")(impl)


def _sqrt_1mx2(F, x):
    """sqrt(1 - x^2) as sqrt((1 - x)(1 + x)): no cancellation near |x| = 1."""
    return F.sqrt((1 - x) * (1 + x))


Arcsin = _holomorphic(
    "arcsin", lambda xp, x: xp.arcsin(x), lambda F, x: 1 / _sqrt_1mx2(F, x),
    "y = arcsin(x), |x| < 1 (principal branch for complex x); dy/dx = 1 / sqrt(1 - x^2)",
    _sample(-0.9, 0.9))
Arccos = _holomorphic(
    "arccos", lambda xp, x: xp.arccos(x), lambda F, x: -1 / _sqrt_1mx2(F, x),
    "y = arccos(x), |x| < 1 (principal branch for complex x); dy/dx = -1 / sqrt(1 - x^2)",
    _sample(-0.9, 0.9))
Arctan = _holomorphic(
    "arctan", lambda xp, x: xp.arctan(x), lambda F, x: 1 / (1 + x * x),
    "y = arctan(x); dy/dx = 1 / (1 + x^2)", _sample(-3.0, 3.0))
Sinh = _holomorphic(
    "sinh", lambda xp, x: xp.sinh(x), lambda F, x: F.cosh(x),
    "y = sinh(x); dy/dx = cosh(x)", _sample(-2.0, 2.0))
Cosh = _holomorphic(
    "cosh", lambda xp, x: xp.cosh(x), lambda F, x: F.sinh(x),
    "y = cosh(x); dy/dx = sinh(x)", _sample(-2.0, 2.0))
Arcsinh = _holomorphic(
    "arcsinh", lambda xp, x: xp.arcsinh(x), lambda F, x: 1 / F.sqrt(x * x + 1),
    "y = arcsinh(x); dy/dx = 1 / sqrt(x^2 + 1)", _sample(-3.0, 3.0))
Arccosh = _holomorphic(
    "arccosh", lambda xp, x: xp.arccosh(x),
    lambda F, x: 1 / (F.sqrt(x - 1) * F.sqrt(x + 1)),
    "y = arccosh(x), x > 1; dy/dx = 1 / (sqrt(x - 1) sqrt(x + 1)) (the product form is the "
    "principal branch's derivative for complex x too, where 1 / sqrt(x^2 - 1) has the wrong "
    "sign on part of the plane)", _sample(1.1, 3.0))
Arctanh = _holomorphic(
    "arctanh", lambda xp, x: xp.arctanh(x), lambda F, x: 1 / ((1 - x) * (1 + x)),
    "y = arctanh(x), |x| < 1; dy/dx = 1 / (1 - x^2)", _sample(-0.9, 0.9))
Exp2 = _holomorphic(
    "exp2", lambda xp, x: xp.exp2(x), lambda F, y: y * _LN2,
    "y = 2^x; dy/dx = y log(2)", _sample(-2.0, 2.0), save="out")
Log2 = _holomorphic(
    "log2", lambda xp, x: xp.log2(x), lambda F, x: _INV_LN2 / x,
    "y = log2(x), x > 0; dy/dx = 1 / (x log(2))", _sample(0.2, 3.0))
Log10 = _holomorphic(
    "log10", lambda xp, x: xp.log10(x), lambda F, x: _INV_LN10 / x,
    "y = log10(x), x > 0; dy/dx = 1 / (x log(10))", _sample(0.2, 3.0))
Cbrt = _holomorphic(
    "cbrt", lambda xp, x: xp.cbrt(x), lambda F, y: 1 / (3 * (y * y)),
    "y = cbrt(x) (the real cube root, negative for x < 0); dy/dx = 1 / (3 y^2), infinite at "
    "x = 0. Real only: NumPy's cbrt has no complex loop", _sample(-2.0, 2.0, away=(0.0, 0.2)),
    save="out", complex_ok=False)
Reciprocal = _holomorphic(
    "reciprocal", lambda xp, x: xp.reciprocal(x), lambda F, y: -(y * y),
    "y = 1 / x (integers as NumPy: integer division); dy/dx = -y^2",
    _sample(-2.0, 2.0, away=(0.0, 0.4)), save="out", cost=2)


# ---- sinc -----------------------------------------------------------------------------------


def _series_coeffs(k, top):
    """Coefficients c_n (n = n0, n0 + 1, ...) of the k-th derivative of f(u) = sin(u)/u as a
    Maclaurin series: f(u) = sum_n (-1)^n u^(2n) / (2n + 1)!, so
    f^(k)(u) = sum_{2n >= k} (-1)^n u^(2n - k) / ((2n + 1) (2n - k)!). Enough terms that the
    first one left out is below 1e-17 for |u| < top."""
    n0 = (k + 1) // 2
    m_max = 24 + 4 * math.ceil(top)
    return [(-1) ** n / ((2 * n + 1) * math.factorial(2 * n - k))
            for n in range(n0, (k + m_max) // 2 + 1)]


def _sinc_deriv(xp, x, k):
    """The k-th derivative of sinc(x) = sin(pi x) / (pi x): pi^k f^(k)(pi x) with f as above.
    For |u| = |pi x| < max(1, k) the Maclaurin series (exact at 0, no cancellation); beyond it
    Leibniz's rule on sin(u) * u^-1, f^(k) = sum_j C(k, j) sin^(k-j)(u) (-1)^j j! / u^(j+1),
    whose terms are at most about 1/|u| there. Both hold for complex x (they are the same
    analytic function)."""
    top = float(max(1, k))
    u = x * math.pi
    small = xp.abs(u) < top
    us = xp.where(small, u, 0)
    v = us * us
    acc = 0
    for c in reversed(_series_coeffs(k, top)):
        acc = acc * v + c
    series = acc * us if k % 2 else acc
    ub = xp.where(small, top, u)
    inv = 1 / ub
    s, c = xp.sin(ub), xp.cos(ub)
    big = 0
    for j in range(k + 1):
        m = k - j  # sin^(m) = sin, cos, -sin, -cos for m mod 4 = 0, 1, 2, 3
        trig = (s, c, -s, -c)[m % 4]
        coef = math.comb(k, j) * (-1) ** j * math.factorial(j)
        big = big + coef * trig * inv ** (j + 1)
    return xp.where(small, series, big) * math.pi ** k


def _sinc_sample(draw):
    """Exact zeros, tiny values and values on both sides of the series' boundary
    (|pi x| = max(1, k)) among ordinary ones; k = 0, 1, 2."""
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    k = draw(st.integers(0, 2))
    shape = draw(S.shapes())
    x = draw(S.arrays(shape, -2.0, 2.0))
    pick = draw(S.arrays(shape, 0.0, 1.0))
    edge = max(1, k) / math.pi
    x = np.where(pick < 0.15, 0.0, np.where(pick < 0.3, 1e-4 * x, x))
    x = np.where((pick > 0.85) & (pick < 0.92), edge * (1 + 0.05 * x), x)
    return (x,), {"k": k}


@defop("sinc", params=("k",), cost=elementwise(30), saves=("x",), complex_ok=True,
       batch="elementwise")
class Sinc:
    """y = the k-th derivative of sinc(x) = sin(pi x) / (pi x) (1 at x = 0; NumPy's sinc is
    k = 0); dy/dx = the same op with k + 1. One op for every order, each computed where it is
    well conditioned (a series near 0, a closed form beyond), so derivatives of every order are
    exact at x = 0, where sin(pi x) / (pi x) differentiated as a quotient is 0/0."""

    def forward(bk, x, *, k=0):
        if k == 0:
            return bk.xp.sinc(x), (x,)
        y = _sinc_deriv(bk.xp, x, k)
        return (bk.astype(y, x.dtype) if x.dtype.kind in "fc" else y), (x,)

    def vjp(F, g, saved, needs, *, k=0):
        return (g * F.sinc(saved[0], k=k + 1),)

    def jvp(F, ts, saved, *, k=0):
        return ts[0] * F.sinc(saved[0], k=k + 1)

    sample = _sinc_sample


# ---- binary ---------------------------------------------------------------------------------


def _pair_sample(lo, hi, lo_b, hi_b, away_a=None, away_b=None):
    def sample(draw):
        sa, sb = draw(S.broadcast_shapes(2))
        return (draw(S.arrays(sa, lo, hi, away=away_a)),
                draw(S.arrays(sb, lo_b, hi_b, away=away_b))), {}

    return sample


@defop("arctan2", broadcasting=True, cost=elementwise(12), saves=("x1", "x2"),
       batch="elementwise")
class Arctan2:
    """y = arctan2(x1, x2), the angle of the point (x2, x1) in (-pi, pi]; d/dx1 = x2 / r^2,
    d/dx2 = -x1 / r^2 with r^2 = x1^2 + x2^2 (NaN at the origin, where the angle has no limit;
    the jump across x1 = 0 for x2 < 0 is a branch cut)"""

    def forward(bk, x1, x2):
        return bk.xp.arctan2(x1, x2), (x1, x2)

    def vjp(F, g, saved, needs):
        x1, x2 = saved
        gr = g / (x1 * x1 + x2 * x2)
        return (gr * x2 if needs[0] else None), (-(gr * x1) if needs[1] else None)

    def jvp(F, ts, saved):
        x1, x2 = saved
        t1, t2 = ts
        num = tsum(None if t1 is None else t1 * x2, None if t2 is None else -(t2 * x1))
        return num / (x1 * x1 + x2 * x2)

    # x1 away from 0: the branch cut (x1 = 0, x2 < 0) and the origin are out of reach
    sample = _pair_sample(-2.0, 2.0, -2.0, 2.0, away_a=(0.0, 0.2))


def _inv_or_zero(F, y):
    """1 / y where y != 0, exactly 0 where y == 0; the masked denominator keeps the inactive
    branch finite at every order."""
    zero = F.equal(y, 0)
    return F.where(zero, 0.0, 1.0 / F.where(zero, 1.0, y))


@defop("hypot", broadcasting=True, cost=elementwise(8), saves=("x1", "x2", "out"),
       batch="elementwise")
class Hypot:
    """y = sqrt(x1^2 + x2^2), computed by NumPy's hypot (no overflow or underflow where the
    squares would: |x| above 1.3e154 or below 1.5e-162 in float64); d/dx1 = x1 / y,
    d/dx2 = x2 / y, and 0 at the origin (a cone: no derivative there; 0 is the subgradient
    PyTorch gives for its norms, as ag.std at zero variance)"""

    def forward(bk, x1, x2):
        y = bk.xp.hypot(x1, x2)
        return y, (x1, x2, y)

    def vjp(F, g, saved, needs):
        x1, x2, y = saved
        gr = g * _inv_or_zero(F, y)
        return (gr * x1 if needs[0] else None), (gr * x2 if needs[1] else None)

    def jvp(F, ts, saved):
        x1, x2, y = saved
        t1, t2 = ts
        num = tsum(None if t1 is None else t1 * x1, None if t2 is None else t2 * x2)
        return num * _inv_or_zero(F, y)

    sample = _pair_sample(-2.0, 2.0, -2.0, 2.0, away_a=(0.0, 0.2))


def _softmax_weight(F, a, b):
    """sigmoid(a - b) = exp(a - logaddexp(a, b)), the weight of a; 1/2 where a and b are the
    same infinity (a - b is NaN there; both have equal share of the limit)."""
    same_inf = F.logical_and(F.equal(a, b), F.logical_not(F.isfinite(a)))
    return F.sigmoid(F.where(same_inf, 0.0, a) - F.where(same_inf, 0.0, b))


@defop("logaddexp", broadcasting=True, cost=elementwise(10), saves=("x1", "x2"),
       batch="elementwise")
class LogAddExp:
    """y = log(exp(x1) + exp(x2)), NumPy's stable form; d/dx1 = sigmoid(x1 - x2),
    d/dx2 = sigmoid(x2 - x1) (1/2 each at ties, and where both are the same infinity)"""

    def forward(bk, x1, x2):
        return bk.xp.logaddexp(x1, x2), (x1, x2)

    def vjp(F, g, saved, needs):
        x1, x2 = saved
        return ((g * _softmax_weight(F, x1, x2) if needs[0] else None),
                (g * _softmax_weight(F, x2, x1) if needs[1] else None))

    def jvp(F, ts, saved):
        x1, x2 = saved
        t1, t2 = ts
        return tsum(None if t1 is None else t1 * _softmax_weight(F, x1, x2),
                    None if t2 is None else t2 * _softmax_weight(F, x2, x1))

    def sample(draw):
        """Random pairs, some exactly tied (the derivative exists there: 1/2 each)."""
        (a, b), _ = _pair_sample(-3.0, 3.0, -3.0, 3.0)(draw)
        tie = draw(S.arrays(np.shape(a), 0.0, 1.0)) < 0.3
        if np.shape(b) == np.broadcast_shapes(np.shape(a), np.shape(b)):
            b = np.where(np.broadcast_to(tie, np.shape(b)), np.broadcast_to(a, np.shape(b)), b)
        return (a, b), {}


def _fselect(name, cmp, doc):
    """fmax / fmin: the NaN-ignoring select. x1 wins where cmp(x1, x2) or x2 is NaN (ties go to
    x1; where both are NaN, x1 gets the gradient: PyTorch's convention)."""

    def forward(bk, x1, x2):
        xp = bk.xp
        x1_wins = xp.logical_or(getattr(xp, cmp)(x1, x2), xp.isnan(x2))
        return getattr(xp, name)(x1, x2), (xp.logical_not(x1_wins), x1_wins)

    impl = type(name.title(), (), {
        "forward": staticmethod(forward), "vjp": staticmethod(_select_vjp),
        "jvp": staticmethod(_select_jvp), "sample": staticmethod(_no_tie_sample),
        "__doc__": doc})
    return defop(name, broadcasting=True, saves=(None, None), batch="elementwise")(impl)


def _no_tie_sample(draw):
    """Two broadcastable arrays at least 0.05 apart (the derivative jumps at ties)."""
    (a, b), _ = _pair_sample(-2.0, 2.0, -2.0, 2.0)(draw)
    gap = np.abs(np.subtract(*np.broadcast_arrays(a, b)))
    while gap.size and gap.min() < 0.05:
        b = b + 0.07
        gap = np.abs(np.subtract(*np.broadcast_arrays(a, b)))
    return (a, b), {}


Fmax = _fselect("fmax", "greater_equal", """y = max(x1, x2) ignoring NaN (NaN only where both
are); the gradient goes to x1 where x1 >= x2 or x2 is NaN, else to x2 (ties and double NaN to
x1, as PyTorch's fmax)""")
Fmin = _fselect("fmin", "less_equal", """y = min(x1, x2) ignoring NaN (NaN only where both
are); the gradient goes to x1 where x1 <= x2 or x2 is NaN, else to x2 (ties and double NaN to
x1, as PyTorch's fmin)""")


@defop("copysign", broadcasting=True, saves=(None,), batch="elementwise")
class Copysign:
    """y = |x1| with the sign bit of x2; d/dx1 = sign(x1) sign(y) (+1 or -1; 0 at x1 = 0, as
    ag.abs), d/dx2 = 0 (piecewise constant in x2). The factor is saved as a constant: it is
    piecewise constant, so the higher derivatives are 0, as they are."""

    def forward(bk, x1, x2):
        xp = bk.xp
        y = xp.copysign(x1, x2)
        return y, (xp.sign(x1) * xp.sign(y),)

    def vjp(F, g, saved, needs):
        return (g * saved[0] if needs[0] else None), None

    def jvp(F, ts, saved):
        return None if ts[0] is None else ts[0] * saved[0]

    sample = _pair_sample(-2.0, 2.0, -2.0, 2.0, away_a=(0.0, 0.1), away_b=(0.0, 0.1))


@defop("xlog1py", broadcasting=True, cost=elementwise(8), saves=("x", "y"), complex_ok=True,
       batch="elementwise")
class XLog1pY:
    """out = x log(1 + y), and 0 where x == 0 unless y is NaN (scipy.special.xlog1py);
    d/dx = log(1 + y), d/dy = x / (1 + y). At x == 0 and y == -1 (where x log(1 + y) is
    0 * -inf) both are 0; there alone the denominator is masked, so at x == 0 with y > -1
    the mixed derivative d2/dx dy = 1 / (1 + y) stays exact."""

    def forward(bk, x, y):
        xp = bk.xp
        zero = xp.logical_and(xp.equal(x, 0), xp.logical_not(xp.isnan(y)))
        return xp.where(zero, 0, x * xp.log1p(xp.where(zero, 0, y))), (x, y)

    def vjp(F, g, saved, needs):
        x, y = saved
        log1p, over = _xlog1py_parts(F, x, y)
        return (g * log1p if needs[0] else None), (g * over if needs[1] else None)

    def jvp(F, ts, saved):
        x, y = saved
        log1p, over = _xlog1py_parts(F, x, y)
        return tsum(None if ts[0] is None else ts[0] * log1p,
                    None if ts[1] is None else ts[1] * over)

    def sample(draw):
        """x with exact zeros (the convention's point), y > -1 (x too, so that one array can
        serve as both)."""
        (x, y), _ = _pair_sample(-0.7, 2.0, -0.7, 3.0)(draw)
        return (np.where(np.abs(x) < 0.3, 0.0, x), y), {}


def _xlog1py_parts(F, x, y):
    """(log(1 + y), x / (1 + y)) with y replaced by 0 where x == 0 and y == -1."""
    both = F.logical_and(F.equal(x, 0), F.equal(y, -1))
    ys = F.where(both, 0.0, y)
    return F.log1p(ys), x / (ys + 1)


@defop("heaviside", differentiable=False, broadcasting=True, batch="elementwise")
class Heaviside:
    """heaviside(x1, x2): 0 where x1 < 0, x2 where x1 == 0, 1 where x1 > 0 (not differentiable:
    its derivative is 0 away from x1 = 0, as sign's)"""

    def forward(bk, x1, x2):
        return bk.xp.heaviside(x1, x2), ()


# ---- complex helpers ------------------------------------------------------------------------


def _is_complex(dt) -> bool:
    return dt.kind == "c"


def _complex_sample(draw):
    return (draw(S.arrays(draw(S.shapes()))),), {}


@defop("real", saves=(None,), complex_ok=True, cost=elementwise(0.5), batch="elementwise")
class Real:
    """y = Re(x) (x itself for real x). Not holomorphic: the cotangent of a complex x is the
    real cotangent as a complex number (Re(w v) = u Re(v) for every v gives w = u)."""

    def forward(bk, x):
        return bk.xp.real(x), (x.dtype,)

    def vjp(F, g, saved, needs):
        dt = saved[0]
        return (F.astype(g, dtype=dt) if _is_complex(dt) else g,)

    def jvp(F, ts, saved):
        return F.real(ts[0]) if _is_complex(saved[0]) else ts[0]

    sample = _complex_sample


@defop("imag", saves=(None,), complex_ok=True, cost=elementwise(0.5), batch="elementwise")
class Imag:
    """y = Im(x) (zeros for real x, whose derivative is then 0). Not holomorphic: the cotangent
    of a complex x is -i times the real cotangent (Re(w v) = u Im(v) for every v)."""

    def forward(bk, x):
        y = bk.xp.imag(x)
        return (y if _is_complex(x.dtype) else bk.xp.zeros_like(x)), (x.dtype,)

    def vjp(F, g, saved, needs):
        dt = saved[0]
        return (F.astype(g, dtype=dt) * -1j if _is_complex(dt) else None,)

    def jvp(F, ts, saved):
        t = ts[0]
        return F.imag(t) if _is_complex(saved[0]) else F.zeros(tuple(t.shape), t.dtype)

    sample = _complex_sample


@defop("conj", saves=(None,), complex_ok=True, cost=elementwise(0.5), batch="elementwise")
class Conj:
    """y = conj(x) (x itself for real x). Not holomorphic: the cotangent is conj(u)
    (Re(w v) = Re(u conj(v)) for every v)."""

    def forward(bk, x):
        return bk.xp.conj(x), (x.dtype,)

    def vjp(F, g, saved, needs):
        return (F.conj(g) if _is_complex(saved[0]) else g,)

    def jvp(F, ts, saved):
        return F.conj(ts[0]) if _is_complex(saved[0]) else ts[0]

    sample = _complex_sample


@defop("angle", saves=("x",), complex_ok=True, cost=elementwise(12), batch="elementwise")
class Angle:
    """y = arg(x) = arctan2(Im x, Re x) in (-pi, pi] (0 or pi for real x, whose derivative is
    then 0). Not holomorphic: the cotangent of a complex x is -i u / x, i.e. d/dRe - i d/dIm of
    u arg(x) (undefined at 0, as the angle; the negative real axis is a branch cut); the
    tangent is Im(t / x)."""

    def forward(bk, x):
        return bk.xp.angle(x), (x,)

    def vjp(F, g, saved, needs):
        x = saved[0]
        if not _is_complex(x.dtype):
            return (None,)
        return (F.astype(g, dtype=x.dtype) * -1j / x,)

    def jvp(F, ts, saved):
        x, t = saved[0], ts[0]
        return F.imag(t / x) if _is_complex(x.dtype) else F.zeros(tuple(t.shape), t.dtype)

    sample = _sample(-2.0, 2.0, away=(0.0, 0.2))


# ---- public functions -----------------------------------------------------------------------

arcsin = _unary(Arcsin, "arcsin")
arccos = _unary(Arccos, "arccos")
arctan = _unary(Arctan, "arctan")
sinh = _unary(Sinh, "sinh")
cosh = _unary(Cosh, "cosh")
arcsinh = _unary(Arcsinh, "arcsinh")
arccosh = _unary(Arccosh, "arccosh")
arctanh = _unary(Arctanh, "arctanh")
exp2 = _unary(Exp2, "exp2")
log2 = _unary(Log2, "log2")
log10 = _unary(Log10, "log10")
cbrt = _unary(Cbrt, "cbrt")
reciprocal = _unary(Reciprocal, "reciprocal")
arctan2 = _binary(Arctan2, "arctan2")
hypot = _binary(Hypot, "hypot")
logaddexp = _binary(LogAddExp, "logaddexp")
fmax = _binary(Fmax, "fmax")
fmin = _binary(Fmin, "fmin")
copysign = _binary(Copysign, "copysign")
heaviside = _binary(Heaviside, "heaviside")
xlog1py = _binary(XLog1pY, "xlog1py")


def _t(x, op):
    t = as_tensor(x, None, "x", op)
    if not hasattr(t, "_bk"):
        t = Tensor.from_array(t)
    return t


def sinc(x):
    """sin(pi x) / (pi x), and 1 at x = 0 (NumPy's normalised sinc). Its derivatives of every
    order are exact, also at 0 (see the op)."""
    return apply(Sinc, _t(x, "sinc"), k=0)


def logaddexp2(x1, x2):
    """log2(2^x1 + 2^x2), as logaddexp(x1 log 2, x2 log 2) / log 2 (a composition; its values
    agree with NumPy's logaddexp2 to a few ulps)."""
    return logaddexp(_scaled(x1, x2, _LN2), _scaled(x2, x1, _LN2)) * _INV_LN2


def _scaled(a, other, c):
    like = other if hasattr(other, "_bk") else None
    a = as_tensor(a, like, "x", "logaddexp2")
    return a * c


def deg2rad(x):
    """x * pi / 180 (NumPy's deg2rad and radians: the same product)."""
    return _t(x, "deg2rad") * _DEG


def rad2deg(x):
    """x * 180 / pi (NumPy's rad2deg and degrees: the same product)."""
    return _t(x, "rad2deg") * _RAD


radians = deg2rad
degrees = rad2deg


def real(val):
    """The real part (the tensor itself when it is real, as NumPy returns the array)."""
    x = _t(val, "real")
    return apply(Real, x) if _is_complex(x.dtype) else x


def imag(val):
    """The imaginary part (zeros for a real tensor, with zero derivative)."""
    return apply(Imag, _t(val, "imag"))


def conj(x):
    """The complex conjugate (the tensor itself when it is real)."""
    x = _t(x, "conj")
    return apply(Conj, x) if _is_complex(x.dtype) else x


conjugate = conj


def angle(z, deg=False):
    """The argument of z in (-pi, pi] (degrees with deg=True); 0 or pi for real z."""
    y = apply(Angle, _t(z, "angle"))
    return y * _RAD if deg else y


def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    """x with NaN replaced by ``nan``, +inf by ``posinf`` and -inf by ``neginf`` (defaults: the
    dtype's largest and most negative finite values), as NumPy's; a composition of selects, so
    the gradient is 1 at finite entries and 0 at replaced ones. Complex x: the real and the
    imaginary parts separately. ``copy`` changes nothing (tensors are immutable)."""
    x = _t(x, "nan_to_num")
    if x.dtype.kind in "biu":
        return x
    if _is_complex(x.dtype):
        re = nan_to_num(real(x), nan=nan, posinf=posinf, neginf=neginf)
        im = nan_to_num(imag(x), nan=nan, posinf=posinf, neginf=neginf)
        return re + im * 1j
    info = _finfo(x.dtype)
    hi = info.max if posinf is None else posinf
    lo = info.min if neginf is None else neginf
    y = where(isnan(x), float(nan), x)
    y = where(x == math.inf, float(hi), y)
    y = where(x == -math.inf, float(lo), y)
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def _finfo(dtype):
    return ml_dtypes.finfo(dtype)
