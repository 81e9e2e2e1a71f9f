"""ag.special: SciPy's special functions on tensors, differentiable, as scipy.special names and
signatures them (and as jax.scipy.special does).

Each function takes tensors, NumPy/CuPy arrays or Python numbers; array arguments go to the
tensors' device. Values come from scipy.special on the CPU and cupyx.scipy.special on a GPU (the
primitives are in ops/special.py, which also lists what CuPy lacks: iv, ive and jn raise
DeviceError on a GPU). Differentiable arguments must be floating (an integer tensor raises
DTypeError: cast it with .astype). Complex arguments are not supported.

Parameters without a derivative: the integer orders (polygamma's, jn's and yn's n: a Python int
or an integer tensor), and the real parameters whose derivative is not implemented (gammainc's
and gammaincc's a, betainc's a and b, iv's and ive's v, zeta's x). Where one of those is a
tracked tensor, its gradient and its part of a tangent are NaN (see ops/special.py), never a
silent zero.

logsumexp, softmax and log_softmax are compositions of ag's reductions (softmax and log_softmax
with an int axis are ag.softmax and ag.log_softmax); multigammaln is a sum of gammaln terms.
"""

from __future__ import annotations

import math
import numbers

from . import dtypes as _dt
from .errors import ArgumentError, DTypeError, ShapeError, describe
from .ops import api as _api
from .ops import special as _ops
from .ops._util import as_tensor
from .ops.registry import apply
from .tape import stop_gradient
from .tensor import Tensor

__all__ = [
    "gammaln", "digamma", "psi", "polygamma", "gamma", "rgamma", "gammainc", "gammaincc",
    "beta", "betaln", "betainc", "multigammaln", "erf", "erfc", "erfinv", "erfcinv", "logit",
    "expit", "xlogy", "entr", "log_ndtr", "ndtr", "ndtri", "i0", "i0e", "i1", "i1e", "iv",
    "ive", "j0", "j1", "jn", "y0", "y1", "yn", "zeta", "logsumexp", "softmax", "log_softmax",
]


# ---- argument handling ----------------------------------------------------------------------


def _like(args):
    """The first tensor among the arguments (arrays go to its device), or None."""
    for a in args:
        if isinstance(a, Tensor):
            return a
    return None


def _real_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _value(x, op, name, like):
    """A differentiable argument: a floating tensor, or a Python real number."""
    if _real_number(x):
        return x
    t = as_tensor(x, like, name, op)
    if not isinstance(t, Tensor):
        raise ArgumentError(f"{op}: argument '{name}' expected a tensor or a real number, got "
                            f"{describe(x)}")
    if not _dt.is_floating(t.dtype):
        raise DTypeError(f"{op}: argument '{name}' expected a floating dtype (float16, bfloat16, "
                         f"float32, float64), got {_dt.name(t.dtype)} (cast it with .astype)")
    return t


def _param(p, op, name, like):
    """A real parameter without a derivative: a Python real or a real (integer or floating)
    tensor."""
    if _real_number(p):
        return p
    t = as_tensor(p, like, name, op)
    if not isinstance(t, Tensor) or not (_dt.is_floating(t.dtype) or t.dtype.kind in "iu"):
        raise DTypeError(f"{op}: argument '{name}' expected real numbers, got "
                         f"{_dt.name(t.dtype) if isinstance(t, Tensor) else describe(p)}")
    return t


def _order(n, op, like):
    """An integer order: a Python int (or an integral float), or an integer tensor."""
    if isinstance(n, numbers.Integral) and not isinstance(n, bool):
        return int(n)
    if isinstance(n, numbers.Real) and not isinstance(n, bool) and float(n).is_integer():
        return int(n)
    t = as_tensor(n, like, "n", op) if not isinstance(n, (bool, numbers.Number)) else None
    if not isinstance(t, Tensor) or t.dtype.kind not in "iu":
        got = _dt.name(t.dtype) if isinstance(t, Tensor) else repr(n)
        raise DTypeError(f"{op}: argument 'n' expected an integer order (a Python int or an "
                         f"integer tensor), got {got}")
    return t


def _first_tensor(args):
    """The arguments, with the last (the differentiable value) made a float64 tensor when
    none is a tensor, so that the result is a tensor."""
    if _like(args) is not None:
        return args
    return (*args[:-1], Tensor.from_array(float(args[-1]), dtype="float64"))


def _unary(op, name, doc_extra=""):
    def fn(x):
        x = _value(x, name, "x", None)
        return apply(op, _first_tensor((x,))[0])

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"scipy.special.{name}: {op.doc}{doc_extra}"
    fn.op = op
    return fn


def _with_order(op, name):
    def fn(n, x):
        like = _like((n, x))
        x = _value(x, name, "x", like)
        n = _order(n, name, _like((x,)))
        return apply(op, *_first_tensor((n, x)))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"scipy.special.{name}: {op.doc}"
    fn.op = op
    return fn


def _with_params(op, name, params, value="x"):
    """A function of real parameters (no derivative) and one differentiable value, last."""

    def fn(*args):
        if len(args) != len(params) + 1:
            raise ArgumentError(f"{name}: expected {len(params) + 1} arguments "
                                f"({', '.join(params)}, {value}), got {len(args)}")
        like = _like(args)
        x = _value(args[-1], name, value, like)
        ps = [_param(p, name, pn, like) for p, pn in zip(args[:-1], params)]
        return apply(op, *_first_tensor((*ps, x)))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"scipy.special.{name}({', '.join(params)}, {value}): {op.doc}"
    fn.op = op
    return fn


def _binary(op, name, names=("a", "b")):
    def fn(a, b):
        like = _like((a, b))
        a, b = _value(a, name, names[0], like), _value(b, name, names[1], like)
        return apply(op, *_first_tensor((a, b)))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"scipy.special.{name}: {op.doc}"
    fn.op = op
    return fn


# ---- the functions --------------------------------------------------------------------------

gammaln = _unary(_ops.GammaLn, "gammaln")
digamma = psi = _unary(_ops.Digamma, "digamma")
polygamma = _with_order(_ops.Polygamma, "polygamma")
gamma = _unary(_ops.Gamma, "gamma")
rgamma = _unary(_ops.RGamma, "rgamma")
gammainc = _with_params(_ops.GammaInc, "gammainc", ("a",))
gammaincc = _with_params(_ops.GammaIncC, "gammaincc", ("a",))
beta = _binary(_ops.Beta, "beta")
betaln = _binary(_ops.BetaLn, "betaln")
betainc = _with_params(_ops.BetaInc, "betainc", ("a", "b"))
erfc = _unary(_ops.Erfc, "erfc")
erfinv = _unary(_ops.Erfinv, "erfinv")
erfcinv = _unary(_ops.Erfcinv, "erfcinv")
logit = _unary(_ops.Logit, "logit")
xlogy = _binary(_ops.XLogY, "xlogy", ("x", "y"))
entr = _unary(_ops.Entr, "entr")
log_ndtr = _unary(_ops.LogNdtr, "log_ndtr")
ndtr = _unary(_ops.Ndtr, "ndtr")
ndtri = _unary(_ops.Ndtri, "ndtri")
i0 = _unary(_ops.I0, "i0")
i0e = _unary(_ops.I0e, "i0e")
i1 = _unary(_ops.I1, "i1")
i1e = _unary(_ops.I1e, "i1e")
iv = _with_params(_ops.Iv, "iv", ("v",), value="z")
ive = _with_params(_ops.Ive, "ive", ("v",), value="z")
j0 = _unary(_ops.J0, "j0")
j1 = _unary(_ops.J1, "j1")
jn = _with_order(_ops.Jn, "jn")
y0 = _unary(_ops.Y0, "y0")
y1 = _unary(_ops.Y1, "y1")
yn = _with_order(_ops.Yn, "yn")


def erf(z):
    """scipy.special.erf: ag.erf (2/sqrt(pi) times the integral of exp(-t^2) from 0 to z)."""
    return _api.erf(_value(z, "erf", "z", None))


def expit(x):
    """scipy.special.expit: the logistic sigmoid 1 / (1 + exp(-x)) (ag.sigmoid)."""
    return _api.sigmoid(_value(x, "expit", "x", None))


def zeta(x, q=None):
    """scipy.special.zeta: the Hurwitz zeta function sum_k (k + q)^-x (x > 1), or with q None
    the Riemann zeta function (any real x but 1; computed as zetac(x) + 1).
    d/dq = -x zeta(x + 1, q); no derivative in x (NaN where x is tracked)."""
    if q is None:
        x = _value(x, "zeta", "x", None)
        return apply(_ops.Zetac, *_first_tensor((x,))) + 1.0
    like = _like((x, q))
    q = _value(q, "zeta", "q", like)
    x = _param(x, "zeta", "x", like)
    return apply(_ops.Zeta, *_first_tensor((x, q)))


def multigammaln(a, d):
    """scipy.special.multigammaln: log of the multivariate gamma function of dimension d,
    d (d-1)/4 log(pi) + sum_{j=0}^{d-1} gammaln(a - j/2), for a > (d-1)/2 (else ArgumentError,
    as SciPy raises). A composition of gammaln: d/da = sum_j digamma(a - j/2)."""
    if not isinstance(d, numbers.Integral) or isinstance(d, bool) or d < 1:
        raise ArgumentError(f"multigammaln: argument 'd' expected a positive int, got {d!r}")
    d = int(d)
    a = _value(a, "multigammaln", "a", None)
    if not isinstance(a, Tensor):
        a = Tensor.from_array(float(a), dtype="float64")
    xp = a._bk.xp
    if a.size and bool(xp.any(a._data <= 0.5 * (d - 1))):
        raise ArgumentError(f"multigammaln: argument 'a' expected values > (d-1)/2 = "
                            f"{0.5 * (d - 1)} for d = {d}, got a minimum of "
                            f"{float(xp.min(a._data))}")
    shifts = Tensor((xp.arange(d) * 0.5).astype(a.dtype), a._bk)
    terms = apply(_ops.GammaLn, _api.expand_dims(a, -1) - shifts)
    return _api.sum(terms, axis=-1) + d * (d - 1) / 4.0 * math.log(math.pi)


# ---- logsumexp and the softmax family -------------------------------------------------------


def _float_tensor(x, op, name):
    x = _value(x, op, name, None)
    return x if isinstance(x, Tensor) else Tensor.from_array(float(x), dtype="float64")


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """scipy.special.logsumexp: log(sum(b * exp(a), axis)) without overflow. With b (scale
    factors, broadcast against a; entries where b == 0 are left out, as SciPy does) the sum
    may be negative: return_sign=True gives (log|sum|, sign(sum)), else NaN there, as SciPy.
    Without b it is ag.logsumexp; with b a composition (gradient b exp(a) / sum). The sign is a
    constant (no derivative)."""
    a = _float_tensor(a, "logsumexp", "a")
    if b is None:
        out = _api.logsumexp(a, axis=axis, keepdims=keepdims)
        if not return_sign:
            return out
        return out, Tensor(out._bk.xp.ones(out.shape, out.dtype), out._bk)
    b = _value(b, "logsumexp", "b", a)
    if isinstance(b, Tensor) and b.shape != a.shape:  # the sum runs over the broadcast shape
        a = _api.broadcast_to(a, _broadcast_shape(a.shape, b.shape))
    a = _api.where(_api.equal(b, 0.0), float("-inf"), a)  # SciPy leaves b == 0 terms out
    if a.size:  # the shift m is a constant to the derivative (the result does not depend on it)
        m = stop_gradient(_api.max(a, axis=axis, keepdims=True))
        m = _api.where(_api.isfinite(m), m, 0.0)
        s = _api.sum(b * _api.exp(a - m), axis=axis, keepdims=True)
        out = _api.log(_api.abs(s)) + m
    else:  # an empty sum: log(0) = -inf, as SciPy
        s = _api.sum(b * _api.exp(a), axis=axis, keepdims=True)
        out = _api.log(_api.abs(s))
    sign = Tensor(s._bk.xp.sign(s._data), s._bk)
    if not keepdims:
        axes = tuple(range(out.ndim)) if axis is None else axis
        out, sign = _api.squeeze(out, axis=axes), _api.squeeze(sign, axis=axes)
    if return_sign:
        return out, sign
    return _api.where(_api.less(sign, 0.0), float("nan"), out)


def _broadcast_shape(sa, sb):
    nd = max(len(sa), len(sb))
    sa, sb = (1,) * (nd - len(sa)) + tuple(sa), (1,) * (nd - len(sb)) + tuple(sb)
    if any(p != q and 1 not in (p, q) for p, q in zip(sa, sb)):
        raise ShapeError(f"logsumexp: argument 'b' expected a shape that broadcasts with a's "
                         f"{sa}, got {sb}")
    return tuple(q if p == 1 else p for p, q in zip(sa, sb))


def softmax(x, axis=None):
    """scipy.special.softmax: exp(x) / sum(exp(x), axis), over every axis when axis is None
    (SciPy's default; ag.softmax's is -1). An int axis runs the ag.softmax primitive; None or
    a tuple the composition exp(x - logsumexp(x, axis))."""
    x = _float_tensor(x, "softmax", "x")
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool) and x.ndim:
        return _api.softmax(x, axis=axis)
    return _api.exp(x - _api.logsumexp(x, axis=axis, keepdims=True))


def log_softmax(x, axis=None):
    """scipy.special.log_softmax: x - logsumexp(x, axis), over every axis when axis is None
    (SciPy's default). An int axis runs the ag.log_softmax primitive; None or a tuple the
    composition."""
    x = _float_tensor(x, "log_softmax", "x")
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool) and x.ndim:
        return _api.log_softmax(x, axis=axis)
    return x - _api.logsumexp(x, axis=axis, keepdims=True)
