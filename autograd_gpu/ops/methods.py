"""Operators and methods of Tensor, installed here so that tensor.py depends only on the backend.

Every method is a thin call into the public functions of the op families.
"""

from __future__ import annotations

import numbers

from ..tensor import Tensor
from . import api as A
from ._util import FAST_ARGS, as_tensor
from .registry import apply


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
    "matmul": A.matmul,
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
    "erf", "sign", "floor", "ceil", "round", "maximum", "minimum", "clip", "astype", "square",
    "sum", "mean", "max", "min", "logsumexp", "var", "std", "prod", "argmax", "argmin", "all",
    "any", "reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "flatten", "flip",
    "broadcast_to", "take", "softmax", "log_softmax", "isfinite", "isnan", "cumsum",
):
    _fn = getattr(A, _name, None)
    if _fn is not None and not hasattr(Tensor, _name):
        setattr(Tensor, _name, _fn)


def _reshape(self, *shape):
    if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
        shape = tuple(shape[0])
    return A.reshape(self, shape)


def _transpose(self, *axes):
    if len(axes) == 1 and not isinstance(axes[0], numbers.Integral):
        axes = tuple(axes[0]) if axes[0] is not None else None
    return A.transpose(self, axes or None)


Tensor.reshape = _reshape
Tensor.transpose = _transpose
Tensor.T = property(lambda self: A.transpose(self, None))
Tensor.mT = property(lambda self: A.swapaxes(self, -1, -2))
if hasattr(A, "getitem"):
    Tensor.__getitem__ = lambda self, index: A.getitem(self, index)


def _setitem(self, index, value):
    from ..errors import ArgumentError

    raise ArgumentError(
        "__setitem__: tensors are immutable, so t[index] = value is not supported; build a new "
        "tensor instead: ag.where(mask, value, t) to replace entries, or "
        "ag.index_add(t, index, values) to add at an index"
    )


Tensor.__setitem__ = _setitem
