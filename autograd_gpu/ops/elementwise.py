"""Elementwise primitives: arithmetic, transcendental functions, activations, casts.

Broadcasting ops take any mix of Tensors and Python numbers (weak scalars, as in NumPy 2).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..backend.fused import BIAS_ACTS as _BIAS_ACTS
from ..backend.fused import GELU_C as _GELU_C
from ..backend.fused import GELU_K as _GELU_K
from ..backend.fused import gelu_tanh as _gelu_tanh
from ..dtypes import as_dtype
from ..errors import ArgumentError, DTypeError
from . import sampling as S
from ._util import FAST_ARGS, as_tensor, scale, tsum, weak_scalars
from .registry import apply, defop, elementwise

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)




# ---- arithmetic -----------------------------------------------------------------------------


@defop("add", broadcasting=True, complex_ok=True, batch="elementwise")
class Add:
    """y = a + b"""

    def forward(bk, a, b):
        if (type(a) is float or type(b) is float) and not bk.scalar_kernels:
            a, b = weak_scalars(a, b)  # (CuPy's bk.add has its own typed-scalar path)
        return bk.add(a, b), ()

    def vjp(F, g, saved, needs):
        return g, g

    def jvp(F, ts, saved):
        ta, tb = ts
        return tsum(ta, tb)

    sample = S.binary()


@defop("sub", broadcasting=True, complex_ok=True, batch="elementwise")
class Sub:
    """y = a - b"""

    def forward(bk, a, b):
        if bk.scalar_kernels:
            y = bk.scalar_op("sub", a, b)
            if y is not None:
                return y, ()
        if type(a) is float or type(b) is float:
            a, b = weak_scalars(a, b)
        return bk.xp.subtract(a, b), ()

    def vjp(F, g, saved, needs):
        return g, (-g if needs[1] else None)

    def jvp(F, ts, saved):
        ta, tb = ts
        return tsum(ta, None if tb is None else -tb)

    sample = S.binary()


def _arith_value(bk, kind, ufunc):
    """The output of Mul's or Div's forward alone (``F.mul``/``F.div`` in a first-order sweep,
    at the cost of the arithmetic itself): a backend scalar kernel for an array with a Python
    number where the backend has them, NumPy's weak-scalar rule for bfloat16, else the ufunc."""
    scalar_op = bk.scalar_op if bk.scalar_kernels else None
    arr_t, asarray = bk.array_type, bk.xp.asarray

    def call(a, b):
        if scalar_op is not None:
            y = scalar_op(kind, a, b)
            if y is not None:
                return y
        if type(a) is float or type(b) is float:
            a, b = weak_scalars(a, b)
        y = ufunc(a, b)
        return y if type(y) is arr_t else asarray(y)

    return call


@defop("mul", broadcasting=True, saves=("a", "b"), complex_ok=True, batch="elementwise")
class Mul:
    """y = a * b"""

    def forward(bk, a, b):
        if bk.scalar_kernels:
            y = bk.scalar_op("mul", a, b)
            if y is not None:
                return y, (a, b)
        if type(a) is float or type(b) is float:
            a, b = weak_scalars(a, b)
        return bk.xp.multiply(a, b), (a, b)

    def value(bk):
        return _arith_value(bk, "mul", bk.xp.multiply)

    def vjp(F, g, saved, needs):
        a, b = saved
        if needs[0] and needs[0] is needs[1]:  # x * x (one graph node twice): one product
            # (the parents, not the arrays: two tensors may share one buffer, x * x.detach())
            return g * (a + a), None
        # F.mul, not *: a saved Python number takes the forward's typed-scalar path on a GPU
        return (F.mul(g, b) if needs[0] else None), (F.mul(g, a) if needs[1] else None)

    def jvp(F, ts, saved):
        a, b = saved
        return tsum(scale(ts[0], b), scale(ts[1], a))

    sample = S.binary()


@defop("div", broadcasting=True, saves=("b", "out"), complex_ok=True, batch="elementwise")
class Div:
    """y = a / b"""

    def forward(bk, a, b):
        y = bk.scalar_op("div", a, b) if bk.scalar_kernels else None
        if y is None:
            if type(a) is float or type(b) is float:
                a, b = weak_scalars(a, b)
            y = bk.xp.true_divide(a, b)
        return y, (b, y)

    def value(bk):
        return _arith_value(bk, "div", bk.xp.true_divide)

    def vjp(F, g, saved, needs):
        b, y = saved
        ga = F.div(g, b)  # (as Mul's: the forward's typed-scalar path for a saved number)
        return (ga if needs[0] else None), (-ga * y if needs[1] else None)

    def jvp(F, ts, saved):
        b, y = saved
        ta, tb = ts
        return tsum(ta, None if tb is None else -(tb * y)) / b

    sample = S.binary(lo_b=-2.0, hi_b=2.0, away_b=(0.0, 0.5))


def _mod_sample(draw):
    """b away from 0 and a/b at least 0.15 from an integer: a mod b jumps by |b| wherever a/b is
    one, and central differences straddling a jump would measure it. One operand is built from
    the other as a = b (n + f), n an integer in [-2, 1], f in [0.15, 0.85] (either may be the
    broadcast one), or b is a Python number."""
    import numpy as np  # (this module's abs is the op)
    from hypothesis import strategies as st

    kind = draw(st.integers(0, 2))
    sa, sb = draw(S.broadcast_shapes(2))
    full = np.broadcast_shapes(sa, sb)
    if kind == 2:
        b = draw(st.sampled_from([1.5, -0.7]))
        q = draw(st.integers(-2, 1)) + draw(S.arrays(sa, 0.15, 0.85))
        return (np.asarray(b * q), b), {}
    n = draw(S.ints(full, -2, 2)).astype(np.float64)
    q = n + draw(S.arrays(full, 0.15, 0.85))
    if kind == 0:  # a has the full shape, b broadcasts against it
        b = draw(S.arrays(sb, -2.0, 2.0, away=(0.0, 0.4)))
        return (np.asarray(b * q), b), {}
    a = draw(S.arrays(sa, -2.0, 2.0, away=(0.0, 0.4)))
    return (a, np.asarray(a / q)), {}


@defop("mod", broadcasting=True, cost=elementwise(4), saves=("a", "b"), batch="elementwise")
class Mod:
    """y = a mod b with the sign of b (NumPy's remainder, Python's %): a - b floor(a/b).
    d/da = 1, d/db = -floor(a/b); discontinuous where a/b is an integer (the jump's one-sided
    derivatives agree, as for floor)."""

    def forward(bk, a, b):
        if type(a) is float or type(b) is float:
            a, b = weak_scalars(a, b)
        return bk.xp.remainder(a, b), (a, b)

    def vjp(F, g, saved, needs):
        a, b = saved
        return g, (-(g * F.floor_divide(a, b)) if needs[1] else None)

    def jvp(F, ts, saved):
        a, b = saved
        ta, tb = ts
        return tsum(ta, None if tb is None else -(tb * F.floor_divide(a, b)))

    sample = _mod_sample


@defop("neg", complex_ok=True, batch="elementwise")
class Neg:
    """y = -x"""

    def forward(bk, x):
        return bk.unary("negative", x), ()

    def vjp(F, g, saved, needs):
        return (-g,)

    def jvp(F, ts, saved):
        return -ts[0]

    sample = S.unary()


def _is_number(v) -> bool:
    """A Python (or NumPy scalar) number: a constant the rule may branch on."""
    return isinstance(v, (int, float))


def _pow_dx(F, t, x, p):
    """t * d(x**p)/dx = t p x**(p-1), exactly 0 where p == 0 (x**0 is the constant 1; at x = 0
    the product form is 0 * inf = NaN): PyTorch's value. Where p is an array, only the points
    with p == 0 and x == 0 are masked, and there the base is replaced by 1 before the power, so
    no inf is formed and the masked branch stays finite under higher derivatives (a where only
    stops a NaN in the values, not in the inactive branch's own derivative). Elsewhere p == 0
    needs no mask (0 * x**-1 is 0), and masking it would lose the mixed partial
    d2(x**p)/dx dp = 1/x there, which PyTorch's p == 0 mask drops."""
    if _is_number(p):
        if p == 0:
            return F.zeros(tuple(t.shape), t.dtype)
        return t * p * x ** (p - 1)
    zero = F.logical_and(F.equal(p, 0), F.equal(x, 0))
    xs = F.where(zero, 1.0, x)
    return F.where(zero, 0.0, t * p * xs ** (p - 1))


def _pow_log_base(F, x, p):
    """log(x) where d(x**p)/dp = x**p log(x) is finite, 0 where x == 0 and p >= 0: there x**p
    is 0 (or 1 at p = 0) and PyTorch gives the derivative 0 (the product form is 0 * -inf =
    NaN). For p < 0 at x = 0 it stays -inf (x**p = inf), and x < 0 gives NaN, as PyTorch."""
    if _is_number(x):
        if x > 0:
            return math.log(x)
        if x < 0:
            return math.nan
        return F.astype(F.where(F.greater_equal(p, 0), 0.0, -math.inf), dtype=p.dtype)
    # (p is an array here: only a tensor exponent is differentiated)
    mask = F.logical_and(F.equal(x, 0), F.greater_equal(p, 0))
    return F.log(F.where(mask, 1.0, x))  # (log 1 = 0: finite at every order)


@defop("pow", broadcasting=True, cost=elementwise(10), saves=("x", "p", "out"), complex_ok=True,
       batch="elementwise")
class Pow:
    """y = x ** p. d/dx = p x^(p-1), and 0 where p == 0 (also at x = 0); d/dp = y log(x), and 0
    where x == 0 and p >= 0 (PyTorch's conventions: both limits are finite, 0 * inf is not);
    elsewhere d/dp needs x > 0 (NaN for x < 0)."""

    def forward(bk, x, p):
        if type(p) is float or type(x) is float:
            x, p = weak_scalars(x, p)
        y = bk.xp.power(x, p)
        return y, (x, p, y)

    def vjp(F, g, saved, needs):
        x, p, y = saved
        gx = _pow_dx(F, g, x, p) if needs[0] else None
        gp = g * y * _pow_log_base(F, x, p) if needs[1] else None
        return gx, gp

    def jvp(F, ts, saved):
        x, p, y = saved
        tx, tp = ts
        return tsum(None if tx is None else _pow_dx(F, tx, x, p),
                    None if tp is None else tp * y * _pow_log_base(F, x, p))

    def sample(draw):
        """Four regimes: positive bases with real exponents, some exactly 0 (both
        differentiated); bases with exact zeros (and negatives) under a constant integer
        exponent, 0..3 (p = 0 and p = 1 at x = 0 are the edge points; integer powers are smooth
        there); the same with an integer array exponent (the array form of the p == 0 mask);
        and the number bases 0 and 2 under positive exponents (d/dp of 0**p is 0 there)."""
        import numpy as np  # (this module's abs is the op)
        from hypothesis import strategies as st

        kind = draw(st.integers(0, 3))
        if kind == 0:  # with exact zero exponents: d2/dx dp = x**(p-1) (1 + p log x) = 1/x there
            (x, p), _ = S.binary(lo=0.3, hi=2.0, lo_b=-2.0, hi_b=2.5)(draw)
            p = np.where(draw(S.arrays(np.shape(p), 0.0, 1.0)) < 0.3, 0.0, p)
            return (x, p), {}
        if kind == 3:
            y = draw(S.arrays(draw(S.shapes()), 0.3, 2.5))
            return (draw(st.sampled_from([0.0, 2.0])), y), {}
        sx, sp = draw(S.broadcast_shapes(2))
        x = draw(S.arrays(sx))
        x = np.where(draw(S.arrays(sx, 0.0, 1.0)) < 0.4, 0.0, x)  # exact zeros
        if kind == 1:
            return (x, draw(st.integers(0, 3))), {}
        return (x, np.asarray(draw(S.ints(sp, 0, 4)), dtype=np.int64)), {}


# ---- transcendental -------------------------------------------------------------------------


@defop("exp", cost=elementwise(4), saves=("out",), complex_ok=True, batch="elementwise")
class Exp:
    """y = exp(x)"""

    def forward(bk, x):
        y = bk.unary("exp", x)
        return y, (y,)

    def vjp(F, g, saved, needs):
        return (g * saved[0],)

    def jvp(F, ts, saved):
        return ts[0] * saved[0]

    sample = S.unary()


@defop("expm1", cost=elementwise(4), saves=("out",), complex_ok=True, batch="elementwise")
class Expm1:
    """y = exp(x) - 1, accurate near 0"""

    def forward(bk, x):
        y = bk.unary("expm1", x)
        return y, (y,)

    def vjp(F, g, saved, needs):
        return (g * (saved[0] + 1),)

    def jvp(F, ts, saved):
        return ts[0] * (saved[0] + 1)

    sample = S.unary()


@defop("log", cost=elementwise(4), saves=("x",), complex_ok=True, batch="elementwise")
class Log:
    """y = log(x), x > 0"""

    def forward(bk, x):
        return bk.unary("log", x), (x,)

    def vjp(F, g, saved, needs):
        return (g / saved[0],)

    def jvp(F, ts, saved):
        return ts[0] / saved[0]

    sample = S.unary(0.2, 3.0)


@defop("log1p", cost=elementwise(4), saves=("x",), complex_ok=True, batch="elementwise")
class Log1p:
    """y = log(1 + x), x > -1, accurate near 0"""

    def forward(bk, x):
        return bk.unary("log1p", x), (x,)

    def vjp(F, g, saved, needs):
        return (g / (saved[0] + 1),)

    def jvp(F, ts, saved):
        return ts[0] / (saved[0] + 1)

    sample = S.unary(-0.7, 3.0)


@defop("sqrt", cost=elementwise(2), saves=("out",), complex_ok=True, batch="elementwise")
class Sqrt:
    """y = sqrt(x), x > 0"""

    def forward(bk, x):
        y = bk.unary("sqrt", x)
        return y, (y,)

    def vjp(F, g, saved, needs):
        return (g * 0.5 / saved[0],)

    def jvp(F, ts, saved):
        return ts[0] * 0.5 / saved[0]

    sample = S.unary(0.2, 3.0)


@defop("abs", saves=("x",), complex_ok=True, batch="elementwise")
class Abs:
    """y = |x| (derivative sign(x); 0 at 0). Complex z (a real output): the cotangent is
    g conj(z) / |z| (0 at z = 0), the convention of docs/contributing.md; the tangent
    Re(conj(z) t) / |z|."""

    def forward(bk, x):
        return bk.unary("abs", x), (x,)

    def vjp(F, g, saved, needs):
        x = saved[0]
        if x.dtype.kind == "c":
            return (g * _unit_conj(F, x),)
        return (g * F.sign(x),)

    def jvp(F, ts, saved):
        x = saved[0]
        if x.dtype.kind == "c":
            return F.real(ts[0] * _unit_conj(F, x))
        return ts[0] * F.sign(x)

    sample = S.unary(away=(0.0, 0.1))


def _unit_conj(F, z):
    """conj(z) / |z|, 0 at z = 0 (a complex number's derivative of |z|, transposed)."""
    a = F.abs(z)
    return F.conj(z) / F.where(a == 0.0, 1.0, a)


@defop("sin", cost=elementwise(4), saves=("x",), complex_ok=True, batch="elementwise")
class Sin:
    """y = sin(x)"""

    def forward(bk, x):
        return bk.unary("sin", x), (x,)

    def vjp(F, g, saved, needs):
        return (g * F.cos(saved[0]),)

    def jvp(F, ts, saved):
        return ts[0] * F.cos(saved[0])

    sample = S.unary(-3.0, 3.0)


@defop("cos", cost=elementwise(4), saves=("x",), complex_ok=True, batch="elementwise")
class Cos:
    """y = cos(x)"""

    def forward(bk, x):
        return bk.unary("cos", x), (x,)

    def vjp(F, g, saved, needs):
        return (-g * F.sin(saved[0]),)

    def jvp(F, ts, saved):
        return -ts[0] * F.sin(saved[0])

    sample = S.unary(-3.0, 3.0)


@defop("tan", cost=elementwise(4), saves=("out",), complex_ok=True, batch="elementwise")
class Tan:
    """y = tan(x); dy/dx = 1 + y^2"""

    def forward(bk, x):
        y = bk.unary("tan", x)
        return y, (y,)

    def vjp(F, g, saved, needs):
        y = saved[0]
        return (g * (1 + y * y),)

    def jvp(F, ts, saved):
        y = saved[0]
        return ts[0] * (1 + y * y)

    sample = S.unary(-1.2, 1.2)


@defop("tanh", cost=elementwise(4), saves=("out",), complex_ok=True, batch="elementwise")
class Tanh:
    """y = tanh(x); dy/dx = 1 - y^2"""

    def forward(bk, x):
        y = bk.unary("tanh", x)
        return y, (y,)

    def vjp(F, g, saved, needs):
        return (F.tanh_grad(g, saved[0]),)

    def jvp(F, ts, saved):
        return F.tanh_grad(ts[0], saved[0])

    sample = S.unary(-3.0, 3.0)


@defop("sigmoid", cost=elementwise(4), saves=("out",), complex_ok=True, batch="elementwise")
class Sigmoid:
    """y = 1 / (1 + exp(-x)); dy/dx = y(1-y). Real x: e / (1 + e) with e = exp(-|x|) on the
    negative side, 1 / (1 + e) on the other (no overflow, and relative accuracy in the lower
    tail: the form (1 + tanh(x/2)) / 2 gave 9.3592e-14 for 9.3576e-14 at x = -30, and 0 below
    about -37). Complex x: (1 + tanh(x/2)) / 2."""

    def forward(bk, x):
        xp = bk.xp
        if x.dtype.kind == "c":
            y = xp.tanh(x * 0.5)
            y *= 0.5
            y += 0.5
        else:
            e = xp.exp(-xp.abs(x))
            y = xp.where(x >= 0, 1.0, e) / (1.0 + e)
        y = bk.astype(y, x.dtype)  # bfloat16: computed in float32 (see weak_scalars)
        return y, (y,)

    def vjp(F, g, saved, needs):
        return (F.sigmoid_grad(g, saved[0]),)

    def jvp(F, ts, saved):
        return F.sigmoid_grad(ts[0], saved[0])

    sample = S.unary(-4.0, 4.0)


def _erf(bk, x):
    out = bk.scipy.special.erf(x)  # (scipy on the CPU, cupyx.scipy on a GPU)
    return out if out.dtype == x.dtype else out.astype(x.dtype)


@defop("erf", cost=elementwise(8), saves=("x",), batch="elementwise")
class Erf:
    """y = erf(x); dy/dx = 2/sqrt(pi) exp(-x^2)"""

    def forward(bk, x):
        return _erf(bk, x), (x,)

    def vjp(F, g, saved, needs):
        x = saved[0]
        return (g * (_TWO_OVER_SQRT_PI * F.exp(-(x * x))),)

    def jvp(F, ts, saved):
        x = saved[0]
        return ts[0] * (_TWO_OVER_SQRT_PI * F.exp(-(x * x)))

    sample = S.unary()


# ---- activations ----------------------------------------------------------------------------


@defop("relu", saves=("out",), batch="elementwise")
class Relu:
    """y = max(x, 0); dy/dx = 0 where y <= 0 else 1 (at x = 0 too; a NaN x passes the
    gradient, and a NaN or inf cotangent where y <= 0 gives 0: PyTorch's conventions)"""

    def forward(bk, x):
        y = bk.relu(x)
        return y, (y,)

    def vjp(F, g, saved, needs):
        return (F.relu_grad(g, saved[0]),)

    def jvp(F, ts, saved):
        return F.relu_grad(ts[0], saved[0])

    sample = S.unary(away=(0.0, 0.1))


@defop("relu_grad", broadcasting=True, saves=("x", None), batch="elementwise")
class ReluGrad:
    """y = 0 where x <= 0 else g (relu's vjp and jvp as one primitive: one kernel on the GPU
    instead of a comparison and a product). A select: a NaN or inf g where x <= 0 gives 0 (a
    product 0 * inf would be NaN), and a NaN x passes g, as PyTorch's threshold_backward. Linear
    in g; zero derivative in x. ``g`` may carry leading batch axes that ``x`` lacks
    (broadcasting: the engine aligns the tangents)."""

    def value(bk):
        return bk.relu_grad

    def forward(bk, g, x):
        return bk.relu_grad(g, x), (x, g.shape)

    def vjp(F, gg, saved, needs):
        return (F.relu_grad(gg, saved[0]) if needs[0] else None), None

    def jvp(F, ts, saved):
        x, gshape = saved
        tg, tx = ts
        if tg is not None:
            return F.relu_grad(tg, x)
        # (tx arrives aligned to the output's axes: call_jvp pads broadcasting ops' tangents)
        return F.zeros(tuple(tx.shape[:tx.ndim - len(gshape)]) + tuple(gshape), tx.dtype)

    def sample(draw):
        shape = draw(S.shapes())
        return (draw(S.arrays(shape)), draw(S.arrays(shape, away=(0.0, 0.1)))), {}


def _act_grad_sample(draw):
    shape = draw(S.shapes())
    return (draw(S.arrays(shape)), draw(S.arrays(shape, -0.99, 0.99))), {}


def _act_grad_op(name, act, dh, doc):
    """An activation's vjp from its output y as one primitive: out = g h(y) (one kernel on the
    GPU instead of two or three). Linear in g (its derivative is this op again); d out / dy =
    g h'(y), given by ``dh(g, y)``. ``g`` may carry leading batch axes that ``y`` lacks."""

    def forward(bk, g, y):
        return bk.act_grad(act, g, y), (g, y)

    def vjp(F, gg, saved, needs):
        g, y = saved
        return ((getattr(F, name)(gg, y) if needs[0] else None),
                (gg * dh(g, y) if needs[1] else None))

    def jvp(F, ts, saved):
        g, y = saved
        tg, ty = ts
        return tsum(None if tg is None else getattr(F, name)(tg, y),
                    None if ty is None else dh(g, y) * ty)

    def value(bk):
        return functools.partial(bk.act_grad, act)

    impl = type(name.title().replace("_", ""), (), {
        "forward": staticmethod(forward), "vjp": staticmethod(vjp), "jvp": staticmethod(jvp),
        "value": staticmethod(value), "sample": staticmethod(_act_grad_sample), "__doc__": doc})
    return defop(name, broadcasting=True, saves=("g", "y"), complex_ok=True,
                 batch="elementwise")(impl)


TanhGrad = _act_grad_op("tanh_grad", "tanh", lambda g, t: g * t * -2.0,
                        "y = g (1 - t^2): tanh's vjp and jvp from its output t")
SigmoidGrad = _act_grad_op("sigmoid_grad", "sigmoid", lambda g, s: g * (1.0 - 2.0 * s),
                           "y = g s (1 - s): sigmoid's vjp and jvp from its output s")


@defop("leaky_relu", params=("negative_slope",), saves=("x",), batch="elementwise")
class LeakyRelu:
    """y = x where x > 0 else negative_slope * x"""

    def forward(bk, x, *, negative_slope=0.01):
        y = bk.astype(bk.xp.where(x > 0, x, x * negative_slope), x.dtype)
        return y, (x,)

    def vjp(F, g, saved, needs, *, negative_slope=0.01):
        x = saved[0]
        return (F.where(x > 0, g, g * negative_slope),)

    def jvp(F, ts, saved, *, negative_slope=0.01):
        x = saved[0]
        return F.where(x > 0, ts[0], ts[0] * negative_slope)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        x = draw(S.arrays(draw(S.shapes()), away=(0.0, 0.1)))
        return (x,), {"negative_slope": draw(st.sampled_from([0.01, 0.2]))}


def _gelu_deriv2(F, x, approximate):
    """gelu''(x), for the rules of the fused gradients gelu_grad and bias_act_grad. tanh form,
    with t = tanh(u), u = k (x + c x^3): (1 - t^2) (u' - x t u'^2 + 3 k c x^2); erf form:
    phi(x) (2 - x^2), phi the standard normal density."""
    if approximate == "tanh":
        du = _GELU_K * (1 + 3 * _GELU_C * x * x)
        t = F.tanh(_GELU_K * (x + _GELU_C * x * x * x))
        return (1 - t * t) * (du - x * t * du * du + (3 * _GELU_K * _GELU_C) * x * x)
    return (_INV_SQRT_2PI * F.exp(-0.5 * (x * x))) * (2 - x * x)


def _act_deriv2(F, z, act):
    """act''(z) for bias_act_grad's rules; None for relu (zero away from its kink)."""
    if act == "relu":
        return None
    if act == "tanh":
        t = F.tanh(z)
        return -2.0 * t * (1 - t * t)
    return _gelu_deriv2(F, z, "tanh")


def _bias_act_saves(n, params):
    """gelu recomputes x + b from x and b; relu and tanh need only y."""
    return ("x", "b") if params["act"] == "gelu" else ("out",)


def _bias_act_sample(draw):
    """(x, b) with b a row over x's last axis, and an activation."""
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    shape = draw(S.shapes(min_dims=1))
    act = draw(st.sampled_from(_BIAS_ACTS))
    b = draw(S.arrays(shape[-1:], -1.0, 1.0))
    x = draw(S.arrays(shape, -3.0, 3.0))
    if act == "relu":  # keep x + b away from relu's kink for central differences
        import numpy as np  # (this module's abs is the op)

        x = x + 0.25 * (np.abs(x + b) < 0.1)
    return (x, b), {"act": act}


@defop("bias_act", params=("act",), cost=elementwise(12), broadcasting=True, saves=_bias_act_saves,
       batch="elementwise")
class BiasAct:
    """y = act(x + b), act in relu, tanh, gelu (tanh form): a layer's bias add and activation as
    one op. On the GPU, with b a row over x's last axis in x's dtype, one kernel
    (kernels/bias_act.cu) instead of two passes. relu and tanh save y only (their derivatives
    are functions of y: the op holds what add + activation would); gelu saves x and b and
    recomputes x + b in its fused gradient bias_act_grad (one kernel on the GPU too)."""

    def forward(bk, x, b, *, act):
        y = bk.bias_act(x, b, act)
        return y, ((x, b) if act == "gelu" else (y,))

    def vjp(F, g, saved, needs, *, act):
        if act == "gelu":
            x, b = saved
            dz = F.bias_act_grad(g, x, b, act=act)
        else:
            (y,) = saved
            dz = F.relu_grad(g, y) if act == "relu" else F.tanh_grad(g, y)
        return dz, dz

    def jvp(F, ts, saved, *, act):
        tz = tsum(*ts)
        if act == "gelu":
            x, b = saved
            return F.bias_act_grad(tz, x, b, act=act)
        (y,) = saved
        return F.relu_grad(tz, y) if act == "relu" else F.tanh_grad(tz, y)

    sample = _bias_act_sample


@defop("bias_act_grad", params=("act",), cost=elementwise(16), broadcasting=True,
       saves=("g", "x", "b"), batch="elementwise")
class BiasActGrad:
    """out = g * act'(x + b), act in relu, tanh, gelu (tanh form): bias_act's vjp and jvp as
    one op (one kernel on the GPU for a row b in g's dtype). Linear in g (its vjp there is this
    op again); in x and in b: u * g * act''(x + b) (zero for relu), the engine summing b's over
    its broadcast axes. ``g`` may carry leading batch axes that x lacks."""

    def value(bk):
        return bk.bias_act_grad

    def forward(bk, g, x, b, *, act):
        return bk.bias_act_grad(g, x, b, act), (g, x, b)

    def vjp(F, u, saved, needs, *, act):
        g, x, b = saved
        gg = F.bias_act_grad(u, x, b, act=act) if needs[0] else None
        gz = None
        if needs[1] or needs[2]:
            d2 = _act_deriv2(F, x + b, act)
            gz = None if d2 is None else u * g * d2
        return gg, gz, gz

    def jvp(F, ts, saved, *, act):
        g, x, b = saved
        tg, tx, tb = ts
        tz = tsum(tx, tb)
        dz = None
        if tz is not None:
            d2 = _act_deriv2(F, x + b, act)
            dz = None if d2 is None else tz * g * d2
        return tsum(None if tg is None else F.bias_act_grad(tg, x, b, act=act), dz)

    def sample(draw):
        (x, b), params = _bias_act_sample(draw)
        return (draw(S.arrays(x.shape)), x, b), params


@defop("gelu", params=("approximate",), cost=elementwise(12), saves=("x",), batch="elementwise")
class Gelu:
    """GELU. approximate="tanh": 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)));
    approximate="none": x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). vjp and jvp: gelu_grad."""

    def forward(bk, x, *, approximate="tanh"):
        xp = bk.xp
        if approximate == "tanh":
            return bk.astype(_gelu_tanh(xp, x), x.dtype), (x,)
        if approximate == "none":
            return bk.astype(0.5 * x * (1 + _erf(bk, x / _SQRT_2)), x.dtype), (x,)
        raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")

    def vjp(F, g, saved, needs, *, approximate="tanh"):
        return (F.gelu_grad(g, saved[0], approximate=approximate),)

    def jvp(F, ts, saved, *, approximate="tanh"):
        return F.gelu_grad(ts[0], saved[0], approximate=approximate)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        x = draw(S.arrays(draw(S.shapes()), -3.0, 3.0))
        return (x,), {"approximate": draw(st.sampled_from(["tanh", "none"]))}


@defop("gelu_grad", params=("approximate",), cost=elementwise(14), broadcasting=True,
       saves=("g", "x"), batch="elementwise")
class GeluGrad:
    """out = g * gelu'(x) (tanh or erf form): GELU's vjp and jvp as one op. Linear in g (its
    vjp there is this op again); in x: u * g * gelu''(x). ``g`` may carry leading batch axes
    that x lacks."""

    def value(bk):
        return bk.gelu_grad

    def forward(bk, g, x, *, approximate="tanh"):
        return bk.gelu_grad(g, x, approximate), (g, x)

    def vjp(F, u, saved, needs, *, approximate="tanh"):
        g, x = saved
        gg = F.gelu_grad(u, x, approximate=approximate) if needs[0] else None
        gx = u * g * _gelu_deriv2(F, x, approximate) if needs[1] else None
        return gg, gx

    def jvp(F, ts, saved, *, approximate="tanh"):
        g, x = saved
        tg, tx = ts
        return tsum(None if tg is None else F.gelu_grad(tg, x, approximate=approximate),
                    None if tx is None else tx * g * _gelu_deriv2(F, x, approximate))

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes())
        x = draw(S.arrays(shape, -3.0, 3.0))
        return (draw(S.arrays(shape)), x), {
            "approximate": draw(st.sampled_from(["tanh", "none"]))}


@defop("softplus", cost=elementwise(6), saves=("x",), batch="elementwise")
class Softplus:
    """y = log(1 + exp(x)) (stable: logaddexp(x, 0)); dy/dx = sigmoid(x)"""

    def forward(bk, x):
        return bk.xp.logaddexp(x, 0), (x,)

    def vjp(F, g, saved, needs):
        return (g * F.sigmoid(saved[0]),)

    def jvp(F, ts, saved):
        return ts[0] * F.sigmoid(saved[0])

    sample = S.unary(-4.0, 4.0)


# ---- selection ------------------------------------------------------------------------------


def _select_sample(draw):
    """Two broadcastable arrays with no near-ties (the derivative jumps at a == b)."""
    sa, sb = draw(S.broadcast_shapes(2))
    a = draw(S.arrays(sa))
    b = draw(S.arrays(sb))
    gap = np.abs(np.subtract(*np.broadcast_arrays(a, b)))
    while gap.size and gap.min() < 0.05:
        b = b + 0.07
        gap = np.abs(np.subtract(*np.broadcast_arrays(a, b)))
    return (a, b), {}


def _select_vjp(F, g, saved, needs):
    """Rules shared by maximum and minimum: saved[0] marks where a loses (gets no gradient),
    saved[1] where b loses. Outside NaN exactly one of them holds (ties go to a); where a or b is
    NaN (so is the output) neither holds and both get the gradient, as PyTorch gives."""
    a_loses, b_loses = saved
    return ((F.where(a_loses, 0.0, g) if needs[0] else None),
            (F.where(b_loses, 0.0, g) if needs[1] else None))


def _select_jvp(F, ts, saved):
    a_loses, b_loses = saved
    ta, tb = ts
    return tsum(None if ta is None else F.where(a_loses, 0.0, ta),
                None if tb is None else F.where(b_loses, 0.0, tb))


@defop("maximum", broadcasting=True, saves=(None, None), batch="elementwise")
class Maximum:
    """y = max(a, b) elementwise; the gradient goes to a where a >= b, else to b, and to both
    where a or b is NaN (y is NaN: PyTorch's convention; at ties PyTorch gives each half)"""

    def forward(bk, a, b):
        if type(a) is float or type(b) is float:
            a, b = weak_scalars(a, b)
        xp = bk.xp
        return xp.maximum(a, b), (xp.less(a, b), xp.greater_equal(a, b))

    vjp = _select_vjp
    jvp = _select_jvp
    sample = _select_sample


@defop("minimum", broadcasting=True, saves=(None, None), batch="elementwise")
class Minimum:
    """y = min(a, b) elementwise; the gradient goes to a where a <= b, else to b, and to both
    where a or b is NaN (y is NaN: PyTorch's convention; at ties PyTorch gives each half)"""

    def forward(bk, a, b):
        if type(a) is float or type(b) is float:
            a, b = weak_scalars(a, b)
        xp = bk.xp
        return xp.minimum(a, b), (xp.greater(a, b), xp.less_equal(a, b))

    vjp = _select_vjp
    jvp = _select_jvp
    sample = _select_sample


@defop("where", broadcasting=True, saves=("cond",), complex_ok=True, batch="elementwise")
class Where:
    """y = a where cond else b (cond is boolean and not differentiated)"""

    def forward(bk, cond, a, b):
        y = bk.xp.where(cond, a, b)
        if (
            y.dtype.kind == "f"
            and isinstance(a, bk.array_type)
            and a.dtype != y.dtype
            and not isinstance(b, bk.array_type)
        ):
            y = y.astype(a.dtype)  # cupy.where promotes bfloat16 + a Python float to float32
        return y, (cond,)

    def vjp(F, g, saved, needs):
        c = saved[0]
        return (
            None,
            (F.where(c, g, 0.0) if needs[1] else None),
            (F.where(c, 0.0, g) if needs[2] else None),
        )

    def jvp(F, ts, saved):
        c = saved[0]
        _, ta, tb = ts
        return F.where(c, 0.0 if ta is None else ta, 0.0 if tb is None else tb)

    def sample(draw):
        sc, sa, sb = draw(S.broadcast_shapes(3))
        return (np.asarray(draw(S.arrays(sc)) > 0), draw(S.arrays(sa)), draw(S.arrays(sb))), {}


@defop("clip", params=("lo", "hi"), saves=(None,), batch="elementwise")
class Clip:
    """y = min(max(x, lo), hi); the gradient passes where lo <= x <= hi"""

    def forward(bk, x, *, lo=None, hi=None):
        y = bk.astype(bk.xp.clip(x, lo, hi), x.dtype)
        xp = bk.xp
        inside = xp.ones(x.shape, dtype=bool)
        if lo is not None:
            inside &= x >= lo
        if hi is not None:
            inside &= x <= hi
        return y, (inside,)

    def vjp(F, g, saved, needs, *, lo=None, hi=None):
        return (F.where(saved[0], g, 0.0),)

    def jvp(F, ts, saved, *, lo=None, hi=None):
        return F.where(saved[0], ts[0], 0.0)

    def sample(draw):
        x = draw(S.arrays(draw(S.shapes()), -2.0, 2.0))
        x = np.where(np.abs(np.abs(x) - 1.0) < 0.05, x + 0.1, x)
        return (x,), {"lo": -1.0, "hi": 1.0}


@defop("astype", params=("dtype",), cost=elementwise(0.5), saves=(None,), complex_ok=True,
       batch="elementwise")
class AsType:
    """y = x converted to dtype (the gradient is converted back). Complex to real keeps the
    real part: the cast the engine gives a complex cotangent of a real input (the convention
    of docs/contributing.md); the public ag.astype refuses that cast (use ag.real)."""

    def forward(bk, x, *, dtype):
        if x.dtype.kind == "c" and dtype.kind != "c":
            x = x.real
        return bk.astype(x, dtype), (x.dtype,)

    def vjp(F, g, saved, needs, *, dtype):
        return (F.astype(g, dtype=saved[0]),)

    def jvp(F, ts, saved, *, dtype):
        return F.astype(ts[0], dtype=dtype)

    def sample(draw):
        return (draw(S.arrays(draw(S.shapes()))),), {"dtype": np.dtype(np.float64)}


# ---- non-differentiable (their derivative is zero or undefined) ------------------------------


def _nondiff(name, fn, doc):
    def forward(bk, *xs, **p):
        return fn(bk.xp)(*xs, **p), ()

    impl = type(name.title(), (), {"forward": staticmethod(forward), "__doc__": doc})
    return defop(name, differentiable=False, broadcasting=True, batch="elementwise")(impl)


SIGN = _nondiff("sign", lambda xp: xp.sign, "sign(x): -1, 0 or 1 (derivative zero)")
FLOOR = _nondiff("floor", lambda xp: xp.floor, "floor(x)")
CEIL = _nondiff("ceil", lambda xp: xp.ceil, "ceil(x)")
ROUND = _nondiff("round", lambda xp: xp.round, "round half to even")
EQUAL = _nondiff("equal", lambda xp: xp.equal, "a == b")
NOT_EQUAL = _nondiff("not_equal", lambda xp: xp.not_equal, "a != b")
LESS = _nondiff("less", lambda xp: xp.less, "a < b")
LESS_EQUAL = _nondiff("less_equal", lambda xp: xp.less_equal, "a <= b")
GREATER = _nondiff("greater", lambda xp: xp.greater, "a > b")
GREATER_EQUAL = _nondiff("greater_equal", lambda xp: xp.greater_equal, "a >= b")
LOGICAL_AND = _nondiff("logical_and", lambda xp: xp.logical_and, "a and b")
LOGICAL_OR = _nondiff("logical_or", lambda xp: xp.logical_or, "a or b")
LOGICAL_NOT = _nondiff("logical_not", lambda xp: xp.logical_not, "not x")
ISFINITE = _nondiff("isfinite", lambda xp: xp.isfinite, "x is neither inf nor NaN")
ISNAN = _nondiff("isnan", lambda xp: xp.isnan, "x is NaN")
FLOOR_DIVIDE = _nondiff("floor_divide", lambda xp: xp.floor_divide,
                         "floor(a / b) (NumPy's floor_divide, Python's //)")


# ---- public functions -----------------------------------------------------------------------


def _binary(op, name):
    def fn(a, b):
        if type(a) in FAST_ARGS and type(b) in FAST_ARGS:
            return apply(op, a, b)
        like = a if hasattr(a, "_bk") else b if hasattr(b, "_bk") else None
        return apply(op, as_tensor(a, like, "a", name), as_tensor(b, like, "b", name))

    fn.__name__ = name
    fn.__doc__ = op.doc
    fn.op = op
    return fn


def _unary(op, name):
    def fn(x):
        if type(x) in FAST_ARGS:
            return apply(op, x)
        return apply(op, as_tensor(x, None, "x", name))

    fn.__name__ = name
    fn.__doc__ = op.doc
    fn.op = op
    return fn


add = _binary(Add, "add")
sub = subtract = _binary(Sub, "sub")
mul = multiply = _binary(Mul, "mul")
div = divide = true_divide = _binary(Div, "div")
pow = power = _binary(Pow, "pow")  # noqa: A001
maximum = _binary(Maximum, "maximum")
minimum = _binary(Minimum, "minimum")
equal = _binary(EQUAL, "equal")
not_equal = _binary(NOT_EQUAL, "not_equal")
less = _binary(LESS, "less")
less_equal = _binary(LESS_EQUAL, "less_equal")
greater = _binary(GREATER, "greater")
greater_equal = _binary(GREATER_EQUAL, "greater_equal")
logical_and = _binary(LOGICAL_AND, "logical_and")
logical_or = _binary(LOGICAL_OR, "logical_or")

neg = negative = _unary(Neg, "neg")
exp = _unary(Exp, "exp")
expm1 = _unary(Expm1, "expm1")
log = _unary(Log, "log")
log1p = _unary(Log1p, "log1p")
sqrt = _unary(Sqrt, "sqrt")
abs = _unary(Abs, "abs")  # noqa: A001
sin = _unary(Sin, "sin")
cos = _unary(Cos, "cos")
tan = _unary(Tan, "tan")
tanh = _unary(Tanh, "tanh")
sigmoid = _unary(Sigmoid, "sigmoid")
erf = _unary(Erf, "erf")
relu = _unary(Relu, "relu")
softplus = _unary(Softplus, "softplus")
sign = _unary(SIGN, "sign")
floor = _unary(FLOOR, "floor")
ceil = _unary(CEIL, "ceil")
round = _unary(ROUND, "round")  # noqa: A001
logical_not = _unary(LOGICAL_NOT, "logical_not")
isfinite = _unary(ISFINITE, "isfinite")
isnan = _unary(ISNAN, "isnan")
mod = remainder = _binary(Mod, "mod")
floor_divide = _binary(FLOOR_DIVIDE, "floor_divide")


def divmod(a, b):  # noqa: A001
    """(floor_divide(a, b), mod(a, b)), as Python's divmod and numpy.divmod: the quotient is
    not differentiable, the remainder is (see mod)."""
    return floor_divide(a, b), mod(a, b)


def square(x):
    """y = x * x"""
    x = as_tensor(x, None, "x", "square")
    return apply(Mul, x, x)


def leaky_relu(x, negative_slope: float = 0.01):
    """x where x > 0, else negative_slope * x (PyTorch's default slope 0.01); at 0 the
    derivative is the slope."""
    return apply(LeakyRelu, as_tensor(x, None, "x", "leaky_relu"), negative_slope=negative_slope)


def bias_act(x, b, act: str = "relu"):
    """act(x + b) as one op (a layer's bias add and activation; ``nn.Dense`` uses it): act is
    "relu", "tanh" or "gelu" (tanh form). On the GPU a row bias over x's last axis takes one
    fused kernel (kernels/bias_act.cu) forward, and for gelu backward too."""
    if act not in _BIAS_ACTS:
        raise ArgumentError(
            f"bias_act: argument 'act' expected one of {list(_BIAS_ACTS)}, got {act!r}")
    xt = as_tensor(x, None, "x", "bias_act")
    return apply(BiasAct, xt, as_tensor(b, xt, "b", "bias_act"), act=act)


def gelu(x, approximate: str = "tanh"):
    """x Phi(x), Phi the standard normal CDF: approximate="tanh" (the default) is the tanh
    form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), "none" the erf form."""
    if approximate not in ("tanh", "none"):
        raise ArgumentError(
            f"gelu: argument 'approximate' expected 'tanh' or 'none', got {approximate!r}"
        )
    return apply(Gelu, as_tensor(x, None, "x", "gelu"), approximate=approximate)


def where(cond, a, b):
    """a where cond else b. cond is a boolean tensor (or array)."""
    like = next((v for v in (a, b, cond) if hasattr(v, "_bk")), None)
    c = as_tensor(cond, like, "cond", "where")
    if hasattr(c, "dtype") and c.dtype != bool:
        c = apply(NOT_EQUAL, c, 0)
    return apply(Where, c, as_tensor(a, like, "a", "where"), as_tensor(b, like, "b", "where"))


def clip(x, lo=None, hi=None):
    """min(max(x, lo), hi); lo and hi are Python numbers (or None for no bound)."""
    if lo is not None and hi is not None and lo > hi:
        raise ArgumentError(f"clip: expected lo <= hi, got lo={lo}, hi={hi}")
    return apply(Clip, as_tensor(x, None, "x", "clip"), lo=lo, hi=hi)


def astype(x, dtype):
    """x converted to dtype (differentiable between floating and complex dtypes). Complex to
    real is refused: NumPy drops the imaginary part with only a warning; say which part
    (ag.real, ag.imag, ag.abs)."""
    x = as_tensor(x, None, "x", "astype")
    dt = as_dtype(dtype)
    if x.dtype.kind == "c" and dt.kind != "c":
        raise DTypeError(f"astype: argument 'dtype' expected a complex dtype for a complex x "
                         f"({x.dtype}), got {dt}: take ag.real(x), ag.imag(x) or ag.abs(x) "
                         "first (a cast would drop the imaginary part)")
    return apply(AsType, x, dtype=dt)


# the public functions (ag.<name>); the op records (Add, SIGN, ...) stay internal
__all__ = ["add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "pow",
           "power", "maximum", "minimum", "equal", "not_equal", "less", "less_equal", "greater",
           "greater_equal", "logical_and", "logical_or", "neg", "negative", "exp", "expm1", "log",
           "log1p", "sqrt", "abs", "sin", "cos", "tan", "tanh", "sigmoid", "erf", "relu",
           "softplus", "sign", "floor", "ceil", "round", "logical_not", "isfinite", "isnan",
           "mod", "remainder", "floor_divide", "divmod", "square", "leaky_relu", "bias_act",
           "gelu", "where", "clip", "astype"]
