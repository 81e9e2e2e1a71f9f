"""Special-function primitives behind ``ag.special``: SciPy's functions of these names, computed
through ``bk.scipy.special`` (scipy.special on the CPU, cupyx.scipy.special on CuPy), with their
derivatives written in terms of other primitives (so they differentiate again).

Arguments that are orders or shape parameters (polygamma's and jn's and yn's integer order n,
gammainc's a, betainc's a and b, iv's v, zeta's x) are inputs without an implemented
derivative. An integer order has none; for a real parameter (gammainc's a, ...) one exists but
is not implemented here (JAX implements gammainc's in a only, and refuses betainc's). Where
such a parameter is tracked by a tape or an accumulator, its cotangent and its contribution to
the output tangent are NaN: a gradient that depends on it shows that it is not available,
instead of a silent zero; a gradient that does not depend on it is unaffected.

CuPy 14.2's cupyx.scipy.special lacks iv, ive and jv (jn): on a GPU these raise DeviceError
naming the function (compute them on a CPU tensor). Every other function here has a
cupyx.scipy.special counterpart. 16-bit floats are computed in float32 (SciPy's and CuPy's loops
are float32 and float64) and rounded once. Complex arguments are not accepted (CuPy's special
functions are real).
"""

from __future__ import annotations

import math

import numpy as np

from ..dtypes import is_floating
from ..errors import DeviceError
from . import sampling as S
from ._util import tsum
from .registry import defop, elementwise

# the public functions live in autograd_gpu/special.py (ag.special); xlogy is NumPy-level too
__all__ = ["xlogy"]

_NAN = float("nan")
_SQRT_PI_2 = math.sqrt(math.pi) / 2.0
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / _SQRT_2PI
_COST = elementwise(40)


def special_fn(bk, name, op=None):
    """``bk.scipy.special.<name>``, or a DeviceError naming the op and what the device's
    library lacks."""
    fn = getattr(bk.scipy.special, name, None)
    if fn is None:
        raise DeviceError(
            f"{op or name}: {bk.scipy.__name__}.special has no {name} (CuPy 14.2 lacks iv, ive "
            f"and jv), so it cannot run on {bk.device}; compute it on a CPU tensor "
            f"(t.to('cpu'))")
    return fn


def _call(bk, name, *args, op=None):
    """``name(*args)`` through bk.scipy.special, in the result dtype of the floating array
    arguments (integer orders do not take part): 16-bit floats computed in float32 and rounded
    once, as SciPy and CuPy have float32 and float64 loops only."""
    fn = special_fn(bk, name, op)
    floats = [a.dtype for a in args if hasattr(a, "dtype") and is_floating(a.dtype)]
    dt = bk.xp.result_type(*floats) if floats else None
    if dt is not None and dt.itemsize == 2:
        args = tuple(a.astype("float32") if hasattr(a, "dtype") and is_floating(a.dtype) else a
                     for a in args)
    out = fn(*args)
    if dt is not None and out.dtype != dt:
        out = out.astype(dt)
    return out


def _undefined(t):
    """The cotangent (or tangent term) of a parameter whose derivative is not implemented: NaN
    wherever one is asked for (see the module docstring); None for an untracked parameter."""
    return None if t is None else t * _NAN




def _param_sample(lo_int, hi_int, floats, lo, hi, n_params=1):
    """Samples of (params..., x): each parameter an integer array (broadcasting against x) or
    a Python float from ``floats``, never a float64 array (the registry test differentiates
    those, and the parameters' derivatives are not implemented); x uniform in [lo, hi]."""

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shapes = draw(S.broadcast_shapes(n_params + 1))
        ps = []
        for k in range(n_params):
            if draw(st.booleans()):
                ps.append(draw(S.ints(shapes[k], lo_int, hi_int)))
            else:
                ps.append(draw(st.sampled_from(floats)))
        return (*ps, draw(S.arrays(shapes[-1], lo, hi))), {}

    return sample


def _chain_rule(dx):
    """The vjp and jvp of an elementwise y = f(x) from its derivative ``dx(F, *saved)``:
    g * dy/dx and t * dy/dx (the same expression for both; second order follows from F)."""

    def vjp(F, g, saved, needs):
        return (g * dx(F, *saved),)

    def jvp(F, ts, saved):
        return ts[0] * dx(F, *saved)

    return vjp, jvp


def _unary(name, cost=_COST, saves=("x",)):
    """defop for a one-input special function (elementwise, batched elementwise)."""
    return defop(name, cost=cost, saves=saves, batch="elementwise")


def _nary(name, saves, cost=_COST):
    """defop for a special function of several broadcasting inputs."""
    return defop(name, cost=cost, saves=saves, broadcasting=True, batch="elementwise")


# ---- gamma family ---------------------------------------------------------------------------


@_unary("gammaln")
class GammaLn:
    """y = log|Gamma(x)|; dy/dx = digamma(x)"""

    def forward(bk, x):
        return _call(bk, "gammaln", x), (x,)

    vjp, jvp = _chain_rule(lambda F, x: F.digamma(x))

    sample = S.unary(0.2, 5.0)


@_unary("digamma")
class Digamma:
    """y = digamma(x) = d/dx log Gamma(x) (psi); dy/dx = polygamma(1, x)"""

    def forward(bk, x):
        return _call(bk, "digamma", x), (x,)

    vjp, jvp = _chain_rule(lambda F, x: F.polygamma(1, x))

    sample = S.unary(0.2, 5.0)


@_nary("polygamma", saves=("n", "x"))
class Polygamma:
    """y = polygamma(n, x), the n-th derivative of digamma(x) (n = 0: digamma itself);
    dy/dx = polygamma(n + 1, x). n is an integer order: no derivative."""

    def forward(bk, n, x):
        # an array order: CuPy 14.2's polygamma broadcasts its arguments as arrays
        na = n if hasattr(n, "dtype") else bk.xp.asarray(n)
        return _call(bk, "polygamma", na, x), (n, x)

    def vjp(F, g, saved, needs):
        n, x = saved
        return None, g * F.polygamma(n + 1, x)

    def jvp(F, ts, saved):
        n, x = saved
        return ts[1] * F.polygamma(n + 1, x)

    sample = _param_sample(0, 4, (0.0, 2.0), 0.3, 4.0)


def _rgamma_sample(draw):
    """Positive x, and negative x at least 0.2 from the poles 0, -1, -2."""
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    shape = draw(S.shapes())
    x = draw(S.arrays(shape, 0.2, 4.0))
    if draw(st.booleans()):
        x = -np.floor(x / 1.5) - draw(S.arrays(shape, 0.2, 0.8))
    return (x,), {}


@_unary("gamma", saves=("x", "out"))
class Gamma:
    """y = Gamma(x); dy/dx = Gamma(x) digamma(x)"""

    def forward(bk, x):
        y = _call(bk, "gamma", x)
        return y, (x, y)

    vjp, jvp = _chain_rule(lambda F, x, y: y * F.digamma(x))

    sample = _rgamma_sample


@_unary("rgamma", saves=("x", "out"))
class RGamma:
    """y = 1 / Gamma(x) (0 at the poles of Gamma); dy/dx = -digamma(x) / Gamma(x) (away from
    the poles, where the formula is 0 * inf)"""

    def forward(bk, x):
        y = _call(bk, "rgamma", x)
        return y, (x, y)

    vjp, jvp = _chain_rule(lambda F, x, y: -(y * F.digamma(x)))

    sample = _rgamma_sample


def _gammainc_dx(F, a, x):
    """d/dx gammainc(a, x) = x^(a-1) exp(-x) / Gamma(a), in logs (no overflow)."""
    return F.exp((a - 1.0) * F.log(x) - x - F.gammaln(a))


@_nary("gammainc", saves=("a", "x"))
class GammaInc:
    """y = P(a, x), the regularised lower incomplete gamma function;
    dy/dx = x^(a-1) exp(-x) / Gamma(a). No derivative in a (NaN where a is tracked)."""

    def forward(bk, a, x):
        return _call(bk, "gammainc", a, x), (a, x)

    def vjp(F, g, saved, needs):
        a, x = saved
        return _undefined(g if needs[0] else None), g * _gammainc_dx(F, a, x)

    def jvp(F, ts, saved):
        a, x = saved
        return tsum(_undefined(ts[0]), None if ts[1] is None else ts[1] * _gammainc_dx(F, a, x))

    sample = _param_sample(1, 5, (0.5, 2.5), 0.1, 5.0)


@_nary("gammaincc", saves=("a", "x"))
class GammaIncC:
    """y = Q(a, x) = 1 - P(a, x), the regularised upper incomplete gamma function;
    dy/dx = -x^(a-1) exp(-x) / Gamma(a). No derivative in a (NaN where a is tracked)."""

    def forward(bk, a, x):
        return _call(bk, "gammaincc", a, x), (a, x)

    def vjp(F, g, saved, needs):
        a, x = saved
        return _undefined(g if needs[0] else None), -(g * _gammainc_dx(F, a, x))

    def jvp(F, ts, saved):
        a, x = saved
        return tsum(_undefined(ts[0]),
                    None if ts[1] is None else -(ts[1] * _gammainc_dx(F, a, x)))

    sample = _param_sample(1, 5, (0.5, 2.5), 0.1, 5.0)


@_nary("beta", saves=("a", "b", "out"))
class Beta:
    """y = B(a, b) = Gamma(a) Gamma(b) / Gamma(a + b); dy/da = y (digamma(a) - digamma(a+b)),
    dy/db = y (digamma(b) - digamma(a+b))"""

    def forward(bk, a, b):
        y = _call(bk, "beta", a, b)
        return y, (a, b, y)

    def vjp(F, g, saved, needs):
        a, b, y = saved
        gy, dab = g * y, F.digamma(a + b)
        return (gy * (F.digamma(a) - dab) if needs[0] else None,
                gy * (F.digamma(b) - dab) if needs[1] else None)

    def jvp(F, ts, saved):
        a, b, y = saved
        dab = F.digamma(a + b)
        return y * tsum(None if ts[0] is None else ts[0] * (F.digamma(a) - dab),
                        None if ts[1] is None else ts[1] * (F.digamma(b) - dab))

    sample = S.binary(0.3, 4.0)


@_nary("betaln", saves=("a", "b"))
class BetaLn:
    """y = log|B(a, b)|; dy/da = digamma(a) - digamma(a+b), dy/db = digamma(b) - digamma(a+b)"""

    def forward(bk, a, b):
        return _call(bk, "betaln", a, b), (a, b)

    def vjp(F, g, saved, needs):
        a, b = saved
        dab = F.digamma(a + b)
        return (g * (F.digamma(a) - dab) if needs[0] else None,
                g * (F.digamma(b) - dab) if needs[1] else None)

    def jvp(F, ts, saved):
        a, b = saved
        dab = F.digamma(a + b)
        return tsum(None if ts[0] is None else ts[0] * (F.digamma(a) - dab),
                    None if ts[1] is None else ts[1] * (F.digamma(b) - dab))

    sample = S.binary(0.3, 4.0)


def _betainc_dx(F, a, b, x):
    """d/dx betainc(a, b, x) = x^(a-1) (1-x)^(b-1) / B(a, b), in logs."""
    return F.exp((a - 1.0) * F.log(x) + (b - 1.0) * F.log1p(-x) - F.betaln(a, b))


@_nary("betainc", saves=("a", "b", "x"))
class BetaInc:
    """y = I_x(a, b), the regularised incomplete beta function;
    dy/dx = x^(a-1) (1-x)^(b-1) / B(a, b). No derivative in a or b (NaN where tracked)."""

    def forward(bk, a, b, x):
        return _call(bk, "betainc", a, b, x), (a, b, x)

    def vjp(F, g, saved, needs):
        a, b, x = saved
        return (_undefined(g if needs[0] else None),
                _undefined(g if needs[1] else None), g * _betainc_dx(F, a, b, x))

    def jvp(F, ts, saved):
        a, b, x = saved
        return tsum(_undefined(ts[0]), _undefined(ts[1]),
                    None if ts[2] is None else ts[2] * _betainc_dx(F, a, b, x))

    sample = _param_sample(1, 5, (0.5, 2.5), 0.05, 0.95, n_params=2)


# ---- error functions and the normal distribution --------------------------------------------


@_unary("erfc")
class Erfc:
    """y = erfc(x) = 1 - erf(x) (accurate where erf(x) is near 1); dy/dx = -2/sqrt(pi) e^(-x^2)"""

    def forward(bk, x):
        return _call(bk, "erfc", x), (x,)

    def vjp(F, g, saved, needs):
        x = saved[0]
        return (g * (-_TWO_OVER_SQRT_PI * F.exp(-(x * x))),)

    def jvp(F, ts, saved):
        x = saved[0]
        return ts[0] * (-_TWO_OVER_SQRT_PI * F.exp(-(x * x)))

    sample = S.unary(-3.0, 3.0)


@_unary("erfinv", saves=("out",))
class Erfinv:
    """y = erfinv(x), the inverse of erf on (-1, 1); dy/dx = sqrt(pi)/2 e^(y^2)"""

    def forward(bk, x):
        y = _call(bk, "erfinv", x)
        return y, (y,)

    def vjp(F, g, saved, needs):
        y = saved[0]
        return (g * (_SQRT_PI_2 * F.exp(y * y)),)

    def jvp(F, ts, saved):
        y = saved[0]
        return ts[0] * (_SQRT_PI_2 * F.exp(y * y))

    sample = S.unary(-0.95, 0.95)


@_unary("erfcinv", saves=("out",))
class Erfcinv:
    """y = erfcinv(x), the inverse of erfc on (0, 2); dy/dx = -sqrt(pi)/2 e^(y^2)"""

    def forward(bk, x):
        y = _call(bk, "erfcinv", x)
        return y, (y,)

    def vjp(F, g, saved, needs):
        y = saved[0]
        return (g * (-_SQRT_PI_2 * F.exp(y * y)),)

    def jvp(F, ts, saved):
        y = saved[0]
        return ts[0] * (-_SQRT_PI_2 * F.exp(y * y))

    sample = S.unary(0.05, 1.95)


@_unary("ndtr")
class Ndtr:
    """y = Phi(x), the standard normal CDF; dy/dx = exp(-x^2/2) / sqrt(2 pi)"""

    def forward(bk, x):
        return _call(bk, "ndtr", x), (x,)

    def vjp(F, g, saved, needs):
        x = saved[0]
        return (g * (_INV_SQRT_2PI * F.exp(x * x * -0.5)),)

    def jvp(F, ts, saved):
        x = saved[0]
        return ts[0] * (_INV_SQRT_2PI * F.exp(x * x * -0.5))

    sample = S.unary(-4.0, 4.0)


@_unary("log_ndtr", saves=("x", "out"))
class LogNdtr:
    """y = log Phi(x), accurate far in the lower tail; dy/dx = exp(-x^2/2 - y) / sqrt(2 pi)"""

    def forward(bk, x):
        y = _call(bk, "log_ndtr", x)
        return y, (x, y)

    vjp, jvp = _chain_rule(lambda F, x, y: _INV_SQRT_2PI * F.exp(x * x * -0.5 - y))

    sample = S.unary(-20.0, 5.0)


@_unary("ndtri", saves=("out",))
class Ndtri:
    """y = Phi^-1(x), the standard normal quantile on (0, 1); dy/dx = sqrt(2 pi) exp(y^2/2)"""

    def forward(bk, x):
        y = _call(bk, "ndtri", x)
        return y, (y,)

    def vjp(F, g, saved, needs):
        y = saved[0]
        return (g * (_SQRT_2PI * F.exp(y * y * 0.5)),)

    def jvp(F, ts, saved):
        y = saved[0]
        return ts[0] * (_SQRT_2PI * F.exp(y * y * 0.5))

    sample = S.unary(0.02, 0.98)


# ---- logit, xlogy, entr ---------------------------------------------------------------------


@_unary("logit")
class Logit:
    """y = log(x / (1 - x)) (SciPy's form: accurate near x = 1/2, where log(x) - log1p(-x)
    cancels); dy/dx = 1 / (x (1 - x))"""

    def forward(bk, x):
        return _call(bk, "logit", x), (x,)

    def vjp(F, g, saved, needs):
        x = saved[0]
        return (g / (x * (1.0 - x)),)

    def jvp(F, ts, saved):
        x = saved[0]
        return ts[0] / (x * (1.0 - x))

    sample = S.unary(0.03, 0.97)


def _xlogy_sample(draw):
    """x with exact zeros (the convention's point), y positive."""
    sa, sb = draw(S.broadcast_shapes(2))
    x = draw(S.arrays(sa, -2.0, 2.0))
    x = np.where(np.abs(x) < 0.5, 0.0, x)
    return (x, draw(S.arrays(sb, 0.1, 3.0))), {}


@_nary("xlogy", saves=("x", "y"))
class XLogY:
    """y = x log(y), and 0 where x == 0 (whatever y); d/dx = log(y), 0 where x == 0 and
    y <= 0 (PyTorch's convention); d/dy = x / y, and 0 at x == y == 0 (the function is 0
    along x == 0; the 0/0 is masked so higher derivatives stay finite there)"""

    def forward(bk, x, y):
        return _call(bk, "xlogy", x, y), (x, y)

    def vjp(F, g, saved, needs):
        x, y = saved
        return (g * _xlogy_dx(F, x, y) if needs[0] else None,
                g * _xlogy_dy(F, x, y) if needs[1] else None)

    def jvp(F, ts, saved):
        x, y = saved
        return tsum(None if ts[0] is None else ts[0] * _xlogy_dx(F, x, y),
                    None if ts[1] is None else ts[1] * _xlogy_dy(F, x, y))

    sample = _xlogy_sample


def _xlogy_dx(F, x, y):
    bad = F.logical_and(F.equal(x, 0.0), F.less_equal(y, 0.0))
    return F.where(bad, 0.0, F.log(F.where(bad, 1.0, y)))


def _xlogy_dy(F, x, y):
    # masked only where x == 0 and y == 0 (0/0): elsewhere x/y is already 0 at x == 0, and
    # masking it would lose the mixed partial d2/dx dy = 1/y there
    zero = F.logical_and(F.equal(x, 0.0), F.equal(y, 0.0))
    return F.where(zero, 0.0, x / F.where(zero, 1.0, y))


@_unary("entr")
class Entr:
    """y = -x log(x) for x > 0, 0 at x = 0, -inf for x < 0; dy/dx = -(log(x) + 1) for x > 0
    (+inf at 0) and 0 on the constant x < 0"""

    def forward(bk, x):
        return _call(bk, "entr", x), (x,)

    vjp, jvp = _chain_rule(lambda F, x: _entr_dx(F, x))

    sample = S.unary(0.05, 3.0)


def _entr_dx(F, x):
    neg = F.less(x, 0.0)
    return F.where(neg, 0.0, -(F.log(F.where(neg, 1.0, x)) + 1.0))


def xlogy(x, y):
    """x log(y), and 0 where x == 0 (scipy.special.xlogy; also ag.special.xlogy)."""
    from ..special import xlogy as fn  # (a cycle: ag.special builds on this module)

    return fn(x, y)


# ---- Bessel functions -----------------------------------------------------------------------


def _masked_over_x(F, num, x, at_zero):
    """num / x, and ``at_zero`` where x == 0 (the limit; the denominator masked there)."""
    zero = F.equal(x, 0.0)
    return F.where(zero, at_zero, num / F.where(zero, 1.0, x))


@_unary("i0")
class I0:
    """y = I0(x), the modified Bessel function of order 0; dy/dx = I1(x)"""

    def forward(bk, x):
        return _call(bk, "i0", x), (x,)

    vjp, jvp = _chain_rule(lambda F, x: F.i1(x))

    sample = S.unary(-3.0, 3.0)


@_unary("i0e", saves=("x", "out"))
class I0e:
    """y = exp(-|x|) I0(x); dy/dx = i1e(x) - sign(x) y (a kink at x = 0, where sign gives 0)"""

    def forward(bk, x):
        y = _call(bk, "i0e", x)
        return y, (x, y)

    vjp, jvp = _chain_rule(lambda F, x, y: F.i1e(x) - F.sign(x) * y)

    sample = S.unary(-3.0, 3.0, away=(0.0, 0.1))


@_unary("i1", saves=("x", "out"))
class I1:
    """y = I1(x); dy/dx = I0(x) - I1(x)/x (1/2 at x = 0)"""

    def forward(bk, x):
        y = _call(bk, "i1", x)
        return y, (x, y)

    vjp, jvp = _chain_rule(lambda F, x, y: F.i0(x) - _masked_over_x(F, y, x, 0.5))

    sample = S.unary(-3.0, 3.0)


@_unary("i1e", saves=("x", "out"))
class I1e:
    """y = exp(-|x|) I1(x); dy/dx = i0e(x) - y (sign(x) + 1/x) (1/2 at x = 0)"""

    def forward(bk, x):
        y = _call(bk, "i1e", x)
        return y, (x, y)

    vjp, jvp = _chain_rule(lambda F, x, y: _i1e_dx(F, x, y))

    sample = S.unary(-3.0, 3.0, away=(0.0, 0.1))


def _i1e_dx(F, x, y):
    return F.i0e(x) - F.sign(x) * y - _masked_over_x(F, y, x, 0.5)


@_nary("iv", saves=("v", "x"))
class Iv:
    """y = I_v(x), the modified Bessel function of real order v;
    dy/dx = (I_{v-1}(x) + I_{v+1}(x)) / 2. No derivative in v (NaN where tracked).
    Not in CuPy 14.2 (DeviceError on a GPU)."""

    def forward(bk, v, x):
        return _call(bk, "iv", v, x), (v, x)

    def vjp(F, g, saved, needs):
        v, x = saved
        return (_undefined(g if needs[0] else None),
                g * ((F.iv(v - 1, x) + F.iv(v + 1, x)) * 0.5))

    def jvp(F, ts, saved):
        v, x = saved
        return tsum(_undefined(ts[0]), None if ts[1] is None
                    else ts[1] * ((F.iv(v - 1, x) + F.iv(v + 1, x)) * 0.5))

    sample = _param_sample(-2, 4, (0.5, 1.5, -0.5), 0.1, 4.0)


@_nary("ive", saves=("v", "x", "out"))
class Ive:
    """y = exp(-|x|) I_v(x); dy/dx = (ive(v-1, x) + ive(v+1, x)) / 2 - sign(x) y. No derivative
    in v (NaN where tracked). Not in CuPy 14.2 (DeviceError on a GPU)."""

    def forward(bk, v, x):
        y = _call(bk, "ive", v, x)
        return y, (v, x, y)

    def vjp(F, g, saved, needs):
        v, x, y = saved
        return _undefined(g if needs[0] else None), g * _ive_dx(F, v, x, y)

    def jvp(F, ts, saved):
        v, x, y = saved
        return tsum(_undefined(ts[0]), None if ts[1] is None else ts[1] * _ive_dx(F, v, x, y))

    sample = _param_sample(-2, 4, (0.5, 1.5, -0.5), 0.1, 4.0)


def _ive_dx(F, v, x, y):
    return (F.ive(v - 1, x) + F.ive(v + 1, x)) * 0.5 - F.sign(x) * y


@_unary("j0")
class J0:
    """y = J0(x), the Bessel function of the first kind of order 0; dy/dx = -J1(x)"""

    def forward(bk, x):
        return _call(bk, "j0", x), (x,)

    def vjp(F, g, saved, needs):
        return (-(g * F.j1(saved[0])),)

    def jvp(F, ts, saved):
        return -(ts[0] * F.j1(saved[0]))

    sample = S.unary(-6.0, 6.0)


@_unary("j1", saves=("x", "out"))
class J1:
    """y = J1(x); dy/dx = J0(x) - J1(x)/x (1/2 at x = 0)"""

    def forward(bk, x):
        y = _call(bk, "j1", x)
        return y, (x, y)

    vjp, jvp = _chain_rule(lambda F, x, y: F.j0(x) - _masked_over_x(F, y, x, 0.5))

    sample = S.unary(-6.0, 6.0)


@_nary("jn", saves=("n", "x"))
class Jn:
    """y = J_n(x) of integer order n (SciPy's jv); dy/dx = (J_{n-1}(x) - J_{n+1}(x)) / 2. n has
    no derivative. Not in CuPy 14.2 (DeviceError on a GPU)."""

    def forward(bk, n, x):
        return _call(bk, "jv", n, x, op="jn"), (n, x)

    def vjp(F, g, saved, needs):
        n, x = saved
        return None, g * ((F.jn(n - 1, x) - F.jn(n + 1, x)) * 0.5)

    def jvp(F, ts, saved):
        n, x = saved
        return ts[1] * ((F.jn(n - 1, x) - F.jn(n + 1, x)) * 0.5)

    sample = _param_sample(-2, 5, (0.0, 3.0), -6.0, 6.0)


@_unary("y0")
class Y0:
    """y = Y0(x), the Bessel function of the second kind of order 0 (x > 0); dy/dx = -Y1(x)"""

    def forward(bk, x):
        return _call(bk, "y0", x), (x,)

    def vjp(F, g, saved, needs):
        return (-(g * F.y1(saved[0])),)

    def jvp(F, ts, saved):
        return -(ts[0] * F.y1(saved[0]))

    sample = S.unary(0.2, 6.0)


@_unary("y1", saves=("x", "out"))
class Y1:
    """y = Y1(x) (x > 0); dy/dx = Y0(x) - Y1(x)/x"""

    def forward(bk, x):
        y = _call(bk, "y1", x)
        return y, (x, y)

    vjp, jvp = _chain_rule(lambda F, x, y: F.y0(x) - y / x)

    sample = S.unary(0.2, 6.0)


@_nary("yn", saves=("n", "x"))
class Yn:
    """y = Y_n(x) of integer order n (x > 0); dy/dx = (Y_{n-1}(x) - Y_{n+1}(x)) / 2. n has no
    derivative."""

    def forward(bk, n, x):
        return _call(bk, "yn", n, x), (n, x)

    def vjp(F, g, saved, needs):
        n, x = saved
        return None, g * ((F.yn(n - 1, x) - F.yn(n + 1, x)) * 0.5)

    def jvp(F, ts, saved):
        n, x = saved
        return ts[1] * ((F.yn(n - 1, x) - F.yn(n + 1, x)) * 0.5)

    sample = _param_sample(-2, 5, (0.0, 3.0), 0.3, 6.0)


# ---- zeta -----------------------------------------------------------------------------------


@_nary("zeta", saves=("x", "q"))
class Zeta:
    """y = zeta(x, q) = sum_k (k + q)^-x, the Hurwitz zeta function (x > 1);
    dy/dq = -x zeta(x + 1, q). No derivative in x (NaN where tracked)."""

    def forward(bk, x, q):
        return _call(bk, "zeta", x, q), (x, q)

    def vjp(F, g, saved, needs):
        x, q = saved
        return (_undefined(g if needs[0] else None),
                -(g * (x * F.zeta(x + 1.0, q))) if needs[1] else None)

    def jvp(F, ts, saved):
        x, q = saved
        return tsum(_undefined(ts[0]),
                    None if ts[1] is None else -(ts[1] * (x * F.zeta(x + 1.0, q))))

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        sx, sq = draw(S.broadcast_shapes(2))
        x = draw(st.one_of(st.sampled_from((1.5, 2.0, 3.5)), S.ints(sx, 2, 5)))
        return (x, draw(S.arrays(sq, 0.3, 3.0))), {}


@_unary("zetac")
class Zetac:
    """y = zeta(x) - 1, the Riemann zeta function minus 1 (any real x but 1). No derivative in
    x (NaN where tracked): the op has no differentiable input."""

    def forward(bk, x):
        return _call(bk, "zetac", x), (x,)

    def vjp(F, g, saved, needs):
        return (_undefined(g),)

    def jvp(F, ts, saved):
        return _undefined(ts[0])

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        return (draw(st.sampled_from((-2.5, 0.5, 1.5, 3.0))),), {}
