"""Operators and methods of Tensor, installed here so that tensor.py depends only on the backend.

Every method is a thin call into the public functions of the op families.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..dtypes import as_dtype
from ..errors import ArgumentError
from ..tensor import Tensor
from . import api as A
from . import numpy_protocol as NP
from ._util import FAST_ARGS, as_tensor
from .registry import apply

__all__: list = []  # installs operators and methods on Tensor; exports nothing


def _other(self, other, op):
    if isinstance(other, (Tensor, numbers.Number)):
        return other
    return as_tensor(other, self, "other", op)


def _binop(fn, name, reflected=False):
    op = getattr(fn, "op", None)
    if op is not None:  # a primitive: call apply directly when no coercion is needed
        if reflected:
            def method(self, other):
                if type(other) in FAST_ARGS:
                    return apply(op, other, self)
                return fn(_other(self, other, name), self)
        else:
            def method(self, other):
                if type(other) in FAST_ARGS:
                    return apply(op, self, other)
                return fn(self, _other(self, other, name))
    elif reflected:
        def method(self, other):
            return fn(_other(self, other, name), self)
    else:
        def method(self, other):
            return fn(self, _other(self, other, name))
    method.__name__ = name
    return method


_BINARY = {
    "add": A.add, "sub": A.sub, "mul": A.mul, "truediv": A.div, "pow": A.pow,
    "matmul": A.matmul, "mod": A.mod, "floordiv": A.floor_divide, "divmod": A.divmod,
}
for _n, _f in _BINARY.items():
    setattr(Tensor, f"__{_n}__", _binop(_f, f"__{_n}__"))
    setattr(Tensor, f"__r{_n}__", _binop(_f, f"__r{_n}__", reflected=True))

for _n, _f in {"lt": A.less, "le": A.less_equal, "gt": A.greater, "ge": A.greater_equal,
               "eq": A.equal, "ne": A.not_equal, "and": A.logical_and, "or": A.logical_or}.items():
    setattr(Tensor, f"__{_n}__", _binop(_f, f"__{_n}__"))
Tensor.__rand__ = _binop(A.logical_and, "__rand__", reflected=True)
Tensor.__ror__ = _binop(A.logical_or, "__ror__", reflected=True)
Tensor.__neg__ = lambda self: apply(A.neg.op, self)
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = lambda self: A.abs(self)
Tensor.__invert__ = lambda self: A.logical_not(self)

# methods named like the functions: t.exp(), t.sum(axis=...), t.reshape(...), ...
for _name in (
    "add", "sub", "mul", "div", "matmul", "pow", "neg", "exp", "expm1", "log", "log1p", "sqrt",
    "abs", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "leaky_relu", "gelu", "softplus",
    "erf", "sign", "floor", "ceil", "maximum", "minimum", "square", "logsumexp", "swapaxes",
    "expand_dims", "squeeze", "flatten", "flip", "broadcast_to", "softmax", "log_softmax",
    "isfinite", "isnan", "mod", "remainder", "floor_divide",
):
    _fn = getattr(A, _name, None)
    if _fn is not None and not hasattr(Tensor, _name):
        setattr(Tensor, _name, _fn)


# ---- NumPy's method signatures ----------------------------------------------------------------
# t.sum(axis, dtype, out, keepdims) and friends take ndarray's arguments in ndarray's order, as
# code written for arrays passes them. ``out`` is refused (tensors are immutable), ``where``
# must be True, ``dtype`` casts the tensor first (NumPy accumulates in that dtype) and the
# result must come out in it.

_NV = np._NoValue


def _prep(self, name, dtype=None, out=None, where=True):
    """The tensor to reduce: out and where checked, cast to dtype (the common call, with none
    of them, returns at once)."""
    if out is None and dtype is None and where is True:
        return self
    op = f"Tensor.{name}"
    NP.refuse_out(op, out)
    NP.check_where(op, where)
    return NP.cast(self, dtype, op)


def _done(y, name, dtype):
    return y if dtype is None else NP.expect_dtype(f"Tensor.{name}", y, dtype)


def _sum(self, axis=None, dtype=None, out=None, keepdims=False, initial=_NV, where=True):
    """Sum over axis (None: all axes); ndarray.sum's arguments."""
    x = _prep(self, "sum", dtype, out, where)
    if initial is not _NV:
        NP.refuse_given("Tensor.sum", "initial", initial, neutral=0)
    return _done(A.sum(x, axis=axis, keepdims=keepdims), "sum", dtype)


def _mean(self, axis=None, dtype=None, out=None, keepdims=False, *, where=True):
    """Mean over axis (None: all axes); ndarray.mean's arguments."""
    x = _prep(self, "mean", dtype, out, where)
    return _done(A.mean(x, axis=axis, keepdims=keepdims), "mean", dtype)


def _prod(self, axis=None, dtype=None, out=None, keepdims=False, initial=_NV, where=True):
    """Product over axis (None: all axes); ndarray.prod's arguments."""
    x = _prep(self, "prod", dtype, out, where)
    if initial is not _NV:
        NP.refuse_given("Tensor.prod", "initial", initial, neutral=1)
    return _done(A.prod(x, axis=axis, keepdims=keepdims), "prod", dtype)


def _extreme(fn, name):
    def method(self, axis=None, out=None, keepdims=False, initial=_NV, where=True):
        x = _prep(self, name, None, out, where)
        if initial is not _NV:
            NP.refuse_given(f"Tensor.{name}", "initial", initial)
        return fn(x, axis=axis, keepdims=keepdims)

    method.__name__ = name
    method.__doc__ = f"{name.title()} over axis (None: all axes); ndarray.{name}'s arguments."
    return method


def _spread(fn, name):
    def method(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True,
               mean=_NV, correction=_NV):
        x = _prep(self, name, dtype, out, where)
        NP.refuse_given(f"Tensor.{name}", "mean", mean)
        if correction is not _NV:
            if ddof != 0:
                raise ArgumentError(f"Tensor.{name}: give 'ddof' or 'correction', not both")
            ddof = correction
        return _done(fn(x, axis=axis, ddof=ddof, keepdims=keepdims), name, dtype)

    method.__name__ = name
    method.__doc__ = (f"{name} over axis with ddof (None: all axes); ndarray.{name}'s "
                      "arguments (correction is ddof's other name).")
    return method


def _arg(fn, name):
    def method(self, axis=None, out=None, *, keepdims=False):
        x = _prep(self, name, None, out)
        return fn(x, axis=axis, keepdims=keepdims)

    method.__name__ = name
    method.__doc__ = f"Index of the {name[3:]}imum along axis; ndarray.{name}'s arguments."
    return method


def _logic(fn, name):
    def method(self, axis=None, out=None, keepdims=False, *, where=True):
        x = _prep(self, name, None, out, where)
        return fn(x, axis=axis, keepdims=keepdims)

    method.__name__ = name
    method.__doc__ = f"Logical {name} over axis; ndarray.{name}'s arguments."
    return method


def _cumsum(self, axis=None, dtype=None, out=None):
    """Cumulative sum along axis (None: of the flattened tensor); ndarray.cumsum's arguments."""
    x = _prep(self, "cumsum", dtype, out)
    return _done(A.cumsum(x, axis=axis), "cumsum", dtype)


def _clip(self, min=None, max=None, out=None, *, lo=None, hi=None, **kwargs):  # noqa: A002
    """Values limited to [min, max] (ndarray.clip; ``lo``/``hi`` are ag.clip's names)."""
    x = _prep(self, "clip", None, out, kwargs.pop("where", True))
    if kwargs:
        raise ArgumentError(f"Tensor.clip: argument(s) {sorted(kwargs)} not supported on "
                            "tensors")
    if lo is not None or hi is not None:
        if min is not None or max is not None:
            raise ArgumentError("Tensor.clip: give min/max or lo/hi, not both")
        min, max = lo, hi  # noqa: A001
    return A.clip(x, min, max)


def _astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
    """The tensor converted to dtype (differentiable between floating dtypes); ndarray.astype's
    arguments: order is memory layout only, casting is checked as NumPy does, copy=False returns
    the tensor itself when it has the dtype already."""
    op = "Tensor.astype"
    NP.check_order(op, order, layout_only=True)
    dt = np.dtype(as_dtype(dtype))
    if casting != "unsafe":
        NP.check_casting(op, [self], casting, dt)
    if not copy and self.dtype == dt:
        return self
    return A.astype(self, dt)


def _reshape(self, *shape, order="C", copy=None):
    """The tensor with a new shape: t.reshape(2, 3) or t.reshape((2, 3)) (one entry may be -1);
    ndarray.reshape's arguments (order 'C' only; copy changes nothing for an immutable tensor)."""
    NP.check_order("Tensor.reshape", order)
    if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
        shape = tuple(shape[0])
    return A.reshape(self, shape)


def _transpose(self, *axes):
    """Axes permuted: t.transpose(), t.transpose(1, 0) or t.transpose((1, 0))."""
    if len(axes) == 1 and not isinstance(axes[0], numbers.Integral):
        axes = tuple(axes[0]) if axes[0] is not None else None
    return A.transpose(self, axes or None)


def _round(self, decimals=0, out=None):
    """Round half to even (not differentiable); ndarray.round's arguments, decimals 0 only."""
    x = _prep(self, "round", None, out)
    if decimals != 0:
        raise ArgumentError(f"Tensor.round: argument 'decimals' is supported as 0 only (ag.round "
                            f"rounds to integers), got {decimals!r}")
    return A.round(x)


def _take(self, indices, axis=None, out=None, mode="raise"):
    """Elements at integer indices along axis (None: of the flattened tensor); ndarray.take's
    arguments, mode 'raise' only (out-of-range indices raise)."""
    x = _prep(self, "take", None, out)
    if mode != "raise":
        raise ArgumentError(f"Tensor.take: argument 'mode' is supported as 'raise' only, got "
                            f"{mode!r}")
    return A.take(x, indices, axis=axis)


def _ravel(self, order="C"):
    """The tensor flattened to one dimension (ndarray.ravel)."""
    NP.check_order("Tensor.ravel", order)
    return A.flatten(self)


def _dot(self, b, out=None):
    """NumPy's dot with b (ndarray.dot)."""
    return A.dot(_prep(self, "dot", None, out), b)


Tensor.sum = _sum
Tensor.mean = _mean
Tensor.prod = _prod
Tensor.max = _extreme(A.max, "max")
Tensor.min = _extreme(A.min, "min")
Tensor.std = _spread(A.std, "std")
Tensor.var = _spread(A.var, "var")
Tensor.argmax = _arg(A.argmax, "argmax")
Tensor.argmin = _arg(A.argmin, "argmin")
Tensor.all = _logic(A.all, "all")
Tensor.any = _logic(A.any, "any")
Tensor.cumsum = _cumsum
Tensor.clip = _clip
Tensor.astype = _astype
Tensor.reshape = _reshape
Tensor.transpose = _transpose
Tensor.round = _round
Tensor.take = _take
Tensor.ravel = _ravel
Tensor.dot = _dot


def _repeat(self, repeats, axis=None):
    """Each element repeated ``repeats`` times along axis (ndarray.repeat; see ag.repeat)."""
    return A.repeat(self, repeats, axis=axis)


def _argsort(self, axis=-1, kind=None, order=None, *, stable=None):
    """Indices that sort the tensor along axis (ndarray.argsort; int64, not differentiable).
    ndarray.sort and ndarray.partition sort in place, which an immutable tensor cannot: use
    ag.sort and ag.partition."""
    return A.argsort(self, axis=axis, kind=kind, order=order, stable=stable)


def _diagonal(self, offset=0, axis1=0, axis2=1):
    """The diagonal of the planes of axis1 and axis2 (ndarray.diagonal; see ag.diagonal)."""
    return A.diagonal(self, offset, axis1, axis2)


def _trace(self, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    """The sum along a diagonal (ndarray.trace's arguments; dtype casts first)."""
    x = _prep(self, "trace", dtype, out)
    return _done(A.trace(x, offset, axis1, axis2), "trace", dtype)


def _cumprod(self, axis=None, dtype=None, out=None):
    """Cumulative product along axis (None: of the flattened tensor); ndarray.cumprod's
    arguments."""
    x = _prep(self, "cumprod", dtype, out)
    return _done(A.cumprod(x, axis=axis), "cumprod", dtype)


def _conj(self):
    """The complex conjugate (the tensor itself when it is real); ndarray.conj."""
    return A.conj(self)


Tensor.repeat = _repeat
Tensor.argsort = _argsort
Tensor.diagonal = _diagonal
Tensor.trace = _trace
Tensor.cumprod = _cumprod
Tensor.conj = Tensor.conjugate = _conj
Tensor.real = property(lambda self: A.real(self), doc="The real part (ndarray.real).")
Tensor.imag = property(lambda self: A.imag(self), doc="The imaginary part (ndarray.imag).")


Tensor.T = property(lambda self: A.transpose(self, None))
Tensor.mT = property(lambda self: A.swapaxes(self, -1, -2))
if hasattr(A, "getitem"):
    Tensor.__getitem__ = lambda self, index: A.getitem(self, index)


def _setitem(self, index, value):
    raise ArgumentError(
        "__setitem__: tensors are immutable, so t[index] = value is not supported; build a new "
        "tensor instead: ag.where(mask, value, t) to replace entries, or "
        "ag.index_add(t, index, values) to add at an index"
    )


Tensor.__setitem__ = _setitem
