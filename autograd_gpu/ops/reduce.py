"""Reductions: sum mean max min logsumexp var prod, and the non-differentiable argmax/argmin,
all/any. Axis arguments are normalised to tuples of non-negative axes before recording, so the
rules can use negative axes (-ndim + a) that stay valid under leading tangent batches."""

from __future__ import annotations

from ..errors import ShapeError
from . import sampling as S
from ._util import as_tensor, norm_axis
from .registry import apply, defop


def _expand_back(F, g, in_shape, axes, keepdims):
    """Broadcast a (batched) reduced cotangent back to batch + in_shape."""
    nd = len(in_shape)
    batch = tuple(g.shape[: g.ndim - (nd if keepdims else nd - len(axes))])
    if not keepdims and axes:
        shape = list(in_shape)
        for a in axes:
            shape[a] = 1
        g = F.reshape(g, batch + tuple(shape))
    return F.broadcast_to(g, batch + tuple(in_shape))


def _reduce_sample(draw, lo=-2.0, hi=2.0, distinct=False):
    from hypothesis import strategies as st

    shape = draw(S.shapes())
    x = draw(S.distinct_arrays(shape) if distinct else S.arrays(shape, lo, hi))
    axis = draw(S.axis_for(len(shape)))
    return (x,), {"axis": norm_axis(axis, len(shape)), "keepdims": draw(st.booleans())}


def _neg_axes(axes, nd):
    return tuple(a - nd for a in axes)


@defop("sum", params=("axis", "keepdims"))
class Sum:
    """y = sum of x over axis (a tuple of non-negative axes)"""

    def forward(bk, x, *, axis, keepdims=False):
        return bk.xp.sum(x, axis=axis, keepdims=keepdims), (x.shape,)

    def vjp(F, g, saved, needs, *, axis, keepdims=False):
        return (_expand_back(F, g, saved[0], axis, keepdims),)

    def jvp(F, ts, saved, *, axis, keepdims=False):
        return F.sum(ts[0], axis=_neg_axes(axis, len(saved[0])), keepdims=keepdims)

    sample = _reduce_sample


@defop("mean", params=("axis", "keepdims"))
class Mean:
    """y = mean of x over axis"""

    def forward(bk, x, *, axis, keepdims=False):
        return bk.xp.mean(x, axis=axis, keepdims=keepdims), (x.shape,)

    def vjp(F, g, saved, needs, *, axis, keepdims=False):
        n = 1
        for a in axis:
            n *= saved[0][a]
        return (_expand_back(F, g, saved[0], axis, keepdims) / max(n, 1),)

    def jvp(F, ts, saved, *, axis, keepdims=False):
        return F.mean(ts[0], axis=_neg_axes(axis, len(saved[0])), keepdims=keepdims)

    sample = _reduce_sample


def sum(x, axis=None, keepdims: bool = False):  # noqa: A001
    """Sum over axis (None: all axes)."""
    x = as_tensor(x, None, "x", "sum")
    return apply(Sum, x, axis=norm_axis(axis, x.ndim, "sum"), keepdims=bool(keepdims))


def mean(x, axis=None, keepdims: bool = False):
    """Mean over axis (None: all axes)."""
    x = as_tensor(x, None, "x", "mean")
    return apply(Mean, x, axis=norm_axis(axis, x.ndim, "mean"), keepdims=bool(keepdims))


__all__ = ["sum", "mean"]
