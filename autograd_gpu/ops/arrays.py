"""NumPy's array functions on tensors: repeat, tile, roll, rot90, tril, triu, diag, diagonal,
trace, kron, cross, diff, gradient, select, sort, argsort, partition, argpartition, topk, cumprod,
logcumsumexp, median, quantile, percentile, linspace (tensor endpoints), meshgrid, moveaxis,
atleast_1d/2d/3d, array_split, inner, vdot and ravel; names and signatures as NumPy's.

Almost all are compositions of existing primitives (reshape, broadcast_to, transpose, flip,
getitem, concatenate, where, mul, einsum, logaddexp) and get their rules from them:
  * sort, partition and topk gather the input by an index permutation (argsort/argpartition,
    not differentiable; the gather is the permute primitive), so the gradient is routed back
    by that permutation;
  * cumprod and logcumsumexp are inclusive scans (Hillis-Steele: log2(n) levels of a product or
    a logaddexp of shifted halves), so their derivatives are exact at every order, also where
    the input has zeros (cumprod's quotient rule g/x is not) - at the price of log2(n) passes
    and values that agree with a sequential product to rounding, not bit for bit.
Primitives: argsort and argpartition (not differentiable), permute (a gather by a permutation
and its inverse, whose transpose is the gather by the inverse: sort's route both ways, without
a scatter or a host read of the indices), and quantile, whose gradient goes to the order
statistics it interpolates, split equally among tied entries (max's convention).
"""

from __future__ import annotations

import builtins
import math
import numbers

import numpy as np

from ..errors import ArgumentError, DTypeError, ShapeError, describe
from ..tensor import Tensor
from . import sampling as S
from ._util import as_tensor, axis_index, host_array, norm_axis
from .elementwise import floor, not_equal, where
from .elementwise_more import conj, logaddexp
from .indexing import ARR, GetItem, ScatterAdd, getitem, split
from .linalg import einsum, tensordot
from .reduce import sum as _sum
from .registry import apply, defop
from .shape import broadcast_to, concatenate, flip, reshape, stack, transpose

__all__ = [
    "repeat", "tile", "roll", "rot90", "tril", "triu", "diag", "diagonal", "trace", "kron",
    "cross", "diff", "gradient", "select", "sort", "argsort", "partition", "argpartition",
    "topk", "cumprod", "logcumsumexp", "median", "quantile", "percentile", "linspace",
    "meshgrid", "moveaxis", "atleast_1d", "atleast_2d", "atleast_3d", "array_split", "inner",
    "vdot", "ravel",
]


def _t(x, op, name="a", like=None):
    """A Tensor from a Tensor, an array, a list or a number (on ``like``'s device)."""
    t = as_tensor(x, like, name, op)
    if not isinstance(t, Tensor):
        if like is not None:
            return Tensor(like._bk.xp.asarray(t), like._bk)
        t = Tensor.from_array(np.asarray(t))
    return t


def _int(v, op, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ArgumentError(f"{op}: argument '{name}' expected an int, got {v!r}")
    return int(v)


def _slice(x, axis, lo, hi, step=1):
    """x[..., lo:hi:step, ...] along the non-negative ``axis``."""
    return getitem(x, (slice(None),) * axis + (slice(lo, hi, step),))


def _host_ints(v, op, name):
    """Integer values given as an int, a sequence, a NumPy array or a Tensor, on the host."""
    arr = host_array(v)
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"{op}: argument '{name}' expected integers, got {describe(v)}")
    return arr.astype(np.int64)


# ---- repetition and layout ------------------------------------------------------------------


def repeat(a, repeats, axis=None):
    """Each element of ``a`` repeated ``repeats`` times along ``axis`` (None: of the flattened
    a), as numpy.repeat: repeats is an int or one count per element of the axis. A gather with
    an index array, so the gradient sums the copies."""
    x = _t(a, "repeat")
    if axis is None:
        x, axis = ravel(x), 0
    ax = axis_index(axis, x.ndim, "repeat") if x.ndim else 0
    n = x.shape[ax] if x.ndim else 1
    reps = _host_ints(repeats, "repeat", "repeats")
    if reps.ndim > 1 or (reps.ndim == 1 and reps.size not in (1, n)):
        raise ShapeError(f"repeat: argument 'repeats' expected an int or {n} counts (the length "
                         f"of axis {ax}), got shape {reps.shape}")
    if (reps < 0).any():
        raise ArgumentError(f"repeat: argument 'repeats' expected non-negative counts, got "
                            f"{reps.min()}")
    if x.ndim == 0:
        x = reshape(x, (1,))
    index = np.repeat(np.arange(n), reps.reshape(-1) if reps.ndim else int(reps))
    return _gather_at(x, ax, index)


def _gather_at(x, axis, index):
    """x[..., index, ...] along the non-negative ``axis`` for a host index array built in range
    (a getitem without parse_index's bounds check, which reads the indices back from a GPU)."""
    bk = x._bk
    spec = tuple(ARR if d == axis else (0, n, 1) for d, n in enumerate(x.shape))
    return apply(GetItem, x, Tensor(bk.asarray(index), bk), index=spec)


def tile(A, reps):
    """``A`` repeated ``reps`` times along each axis (numpy.tile): a reshape, a broadcast and a
    reshape, so the gradient sums the tiles."""
    x = _t(A, "tile", "A")
    r = (_int(reps, "tile", "reps"),) if isinstance(reps, numbers.Integral) else tuple(
        _int(v, "tile", "reps") for v in reps)
    if builtins.any(v < 0 for v in r):
        raise ArgumentError(f"tile: argument 'reps' expected non-negative counts, got {reps!r}")
    d = builtins.max(x.ndim, len(r))
    shape = (1,) * (d - x.ndim) + x.shape
    r = (1,) * (d - len(r)) + r
    inter = tuple(v for s in shape for v in (1, s))
    wide = tuple(v for rs in zip(r, shape) for v in rs)
    y = broadcast_to(reshape(x, inter), wide)
    return reshape(y, tuple(a * b for a, b in zip(r, shape)))


def roll(a, shift, axis=None):
    """Elements shifted by ``shift`` along ``axis`` (None: of the flattened a, then reshaped),
    wrapping around, as numpy.roll; shift and axis may be tuples (shifts add up per axis). Two
    slices joined, so the gradient is the cotangent rolled back."""
    x = _t(a, "roll")
    if axis is None:
        return reshape(roll(ravel(x), shift, 0), x.shape)
    shifts = (shift,) if isinstance(shift, numbers.Integral) else tuple(shift)
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    if len(shifts) == 1:
        shifts = shifts * len(axes)
    if len(axes) == 1:
        axes = axes * len(shifts)
    if len(axes) != len(shifts):
        raise ShapeError(f"roll: arguments 'shift' and 'axis' expected the same length, got "
                         f"{shift!r} and {axis!r}")
    total = {}
    for s, ax in zip(shifts, axes):
        k = axis_index(ax, x.ndim, "roll")
        total[k] = total.get(k, 0) + _int(s, "roll", "shift")
    for k, s in total.items():
        n = x.shape[k]
        s = s % n if n else 0
        if s:
            x = concatenate([_slice(x, k, n - s, n), _slice(x, k, 0, n - s)], axis=k)
    return x


def rot90(m, k=1, axes=(0, 1)):
    """``m`` rotated by 90 degrees k times in the plane of ``axes``, from the first axis towards
    the second (numpy.rot90): flips and a transpose."""
    x = _t(m, "rot90", "m")
    axes = tuple(axes)
    if len(axes) != 2:
        raise ArgumentError(f"rot90: argument 'axes' expected 2 axes, got {axes!r}")
    if x.ndim < 2:
        raise ShapeError(f"rot90: argument 'm' expected at least 2 dimensions, got {x.shape}")
    a0, a1 = (axis_index(v, x.ndim, "rot90", "axes") for v in axes)
    if a0 == a1:
        raise ShapeError(f"rot90: argument 'axes' expected two different axes, got {axes!r}")
    k = _int(k, "rot90", "k") % 4
    if k == 0:
        return x
    if k == 2:
        return flip(flip(x, a0), a1)
    perm = list(range(x.ndim))
    perm[a0], perm[a1] = perm[a1], perm[a0]
    if k == 1:
        return transpose(flip(x, a1), perm)
    return flip(transpose(x, perm), a1)


def _tri_mask(x, k, upper, op):
    if x.ndim < 1:
        raise ShapeError(f"{op}: argument 'm' expected at least 1 dimension, got a 0-d tensor")
    n, m = (x.shape[-2], x.shape[-1]) if x.ndim >= 2 else (x.shape[-1], x.shape[-1])
    k = _int(k, op, "k")
    keep = x._bk.xp.tri(n, m, k - 1 if upper else k, dtype=bool)
    return Tensor(~keep if upper else keep, x._bk)


def tril(m, k=0):
    """The lower triangle of the last two axes (entries above diagonal k set to 0), as
    numpy.tril (a 1-d m is broadcast to a square first); a select, so the gradient passes on
    the kept entries."""
    x = _t(m, "tril", "m")
    return where(_tri_mask(x, k, False, "tril"), x, 0)


def triu(m, k=0):
    """The upper triangle of the last two axes (entries below diagonal k set to 0), as
    numpy.triu."""
    x = _t(m, "triu", "m")
    return where(_tri_mask(x, k, True, "triu"), x, 0)


def _diag_index(n1, n2, offset):
    """Row and column indices of diagonal ``offset`` of an n1 x n2 matrix."""
    r0, c0 = builtins.max(-offset, 0), builtins.max(offset, 0)
    n = builtins.max(0, builtins.min(n1 - r0, n2 - c0))
    i = np.arange(n)
    return i + r0, i + c0


def diagonal(a, offset=0, axis1=0, axis2=1):
    """The diagonal ``offset`` of the planes spanned by axis1 and axis2, as numpy.diagonal: those
    axes are removed and the diagonal becomes the last axis. A gather."""
    x = _t(a, "diagonal")
    if x.ndim < 2:
        raise ShapeError(f"diagonal: argument 'a' expected at least 2 dimensions, got {x.shape}")
    a1 = axis_index(axis1, x.ndim, "diagonal", "axis1")
    a2 = axis_index(axis2, x.ndim, "diagonal", "axis2")
    if a1 == a2:
        raise ShapeError(f"diagonal: arguments 'axis1' and 'axis2' expected different axes, got "
                         f"{axis1} and {axis2}")
    rest = [d for d in range(x.ndim) if d not in (a1, a2)]
    x = transpose(x, rest + [a1, a2])
    rows, cols = _diag_index(x.shape[-2], x.shape[-1], _int(offset, "diagonal", "offset"))
    bk = x._bk  # (indices in range by construction: no parse_index, no read back from a GPU)
    spec = tuple((0, n, 1) for n in x.shape[:-2]) + (ARR, ARR)
    return apply(GetItem, x, Tensor(bk.asarray(rows), bk), Tensor(bk.asarray(cols), bk),
                 index=spec)


def diag(v, k=0):
    """A 1-d v: the square matrix with v on diagonal k (a scatter of v); a 2-d v: its diagonal
    k (numpy.diag)."""
    x = _t(v, "diag", "v")
    k = _int(k, "diag", "k")
    if x.ndim == 2:
        return diagonal(x, k)
    if x.ndim != 1:
        raise ShapeError(f"diag: argument 'v' expected 1 or 2 dimensions, got {x.shape}")
    n = x.shape[0] + builtins.abs(k)
    rows, cols = _diag_index(n, n, k)
    bk = x._bk
    return apply(ScatterAdd, x, Tensor(bk.asarray(rows), bk), Tensor(bk.asarray(cols), bk),
                 index=(ARR, ARR), shape=(n, n))


def trace(a, offset=0, axis1=0, axis2=1):
    """The sum of diagonal ``offset`` of the planes of axis1 and axis2 (numpy.trace)."""
    return _sum(diagonal(a, offset, axis1, axis2), axis=-1)


def kron(a, b):
    """The Kronecker product (numpy.kron): the block array whose block i is a[i] * b, the shorter
    shape padded with leading 1s. A product of reshaped operands, reshaped."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    x, y = _t(a, "kron", "a", like), _t(b, "kron", "b", like)
    d = builtins.max(x.ndim, y.ndim)
    sa = (1,) * (d - x.ndim) + x.shape
    sb = (1,) * (d - y.ndim) + y.shape
    xa = reshape(x, tuple(v for s in sa for v in (s, 1)))
    yb = reshape(y, tuple(v for s in sb for v in (1, s)))
    return reshape(xa * yb, tuple(p * q for p, q in zip(sa, sb)))


def _component(x, i):
    return getitem(x, (Ellipsis, i))


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """The cross product of 3-vectors (and of 2-vectors, whose z is 0: for two of them the
    scalar z-component) along axisa of a and axisb of b, placed along axisc (``axis`` sets all
    three), broadcast over the other axes, as numpy.cross. Products and differences of
    components."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    x, y = _t(a, "cross", "a", like), _t(b, "cross", "b", like)
    if axis is not None:
        axisa = axisb = axisc = axis
    if x.ndim == 0 or y.ndim == 0:
        raise ShapeError("cross: arguments 'a' and 'b' expected at least 1 dimension")
    x = moveaxis(x, axis_index(axisa, x.ndim, "cross", "axisa"), -1)
    y = moveaxis(y, axis_index(axisb, y.ndim, "cross", "axisb"), -1)
    na, nb = x.shape[-1], y.shape[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ShapeError(f"cross: expected vectors of length 2 or 3 along the axes, got {na} "
                         f"and {nb}")
    a0, a1 = _component(x, 0), _component(x, 1)
    b0, b1 = _component(y, 0), _component(y, 1)
    z = a0 * b1 - a1 * b0
    if na == 2 and nb == 2:
        return z
    if na == 3 and nb == 3:
        a2, b2 = _component(x, 2), _component(y, 2)
        c = [a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, z]
    elif na == 2:
        b2 = _component(y, 2)
        c = [a1 * b2, -(a0 * b2), z]
    else:
        a2 = _component(x, 2)
        c = [-(a2 * b1), a2 * b0, z]
    c = [broadcast_to(v, z.shape) for v in c]
    out = stack(c, axis=-1)
    return moveaxis(out, -1, axis_index(axisc, out.ndim, "cross", "axisc"))


# ---- differences ----------------------------------------------------------------------------


def _edge(v, x, axis, op, name):
    """diff's prepend/append value as a tensor with length-1 (or its own length) along axis."""
    t = _t(v, op, name, like=x)
    if t.ndim == 0:
        shape = list(x.shape)
        shape[axis] = 1
        t = broadcast_to(t, tuple(shape))
    return t


def diff(a, n=1, axis=-1, prepend=None, append=None):
    """The n-th discrete difference along ``axis``, out[i] = a[i + 1] - a[i] applied n times
    (booleans: a[i + 1] != a[i]), after joining ``prepend`` and ``append`` (scalars are expanded
    along the axis), as numpy.diff. Slices and subtractions."""
    x = _t(a, "diff")
    n = _int(n, "diff", "n")
    if n < 0:
        raise ArgumentError(f"diff: argument 'n' expected a non-negative order, got {n}")
    if n == 0:
        return x
    if x.ndim == 0:
        raise ShapeError("diff: argument 'a' expected at least 1 dimension, got a 0-d tensor")
    ax = axis_index(axis, x.ndim, "diff")
    parts = [x]
    if prepend is not None:
        parts.insert(0, _edge(prepend, x, ax, "diff", "prepend"))
    if append is not None:
        parts.append(_edge(append, x, ax, "diff", "append"))
    if len(parts) > 1:
        x = concatenate(parts, axis=ax)
    for _ in range(builtins.min(n, x.shape[ax])):  # (once empty, it stays empty)
        m = x.shape[ax]
        hi, lo = _slice(x, ax, 1, m), _slice(x, ax, 0, m - 1)
        x = not_equal(hi, lo) if x.dtype == np.bool_ else hi - lo
    return x


def _spacings(varargs, f, axes):
    """numpy.gradient's spacings per axis: a float (uniform) or a 1-d float64 array of the
    differences of the given coordinates (kept only where they are not all equal)."""
    if len(varargs) == 0:
        return [1.0] * len(axes)
    if len(varargs) == 1 and np.ndim(_host(varargs[0])) == 0:
        return [float(_host(varargs[0]))] * len(axes)
    if len(varargs) != len(axes):
        raise ArgumentError(f"gradient: expected no spacing, one, or one per axis ({len(axes)}), "
                            f"got {len(varargs)}")
    out = []
    for i, v in enumerate(varargs):
        d = _host(v)
        if d.ndim == 0:
            out.append(float(d))
            continue
        if d.ndim != 1 or len(d) != f.shape[axes[i]]:
            raise ShapeError(f"gradient: spacing {i} expected a scalar or 1-d coordinates of "
                             f"length {f.shape[axes[i]]}, got shape {d.shape}")
        dx = np.diff(d.astype(np.float64) if d.dtype.kind in "iub" else d)
        out.append(float(dx[0]) if (dx == dx[0]).all() else dx)
    return out


def _host(v):
    if isinstance(v, Tensor):
        if v.is_tracked:
            raise ArgumentError("gradient: spacings are constants (not differentiated); got a "
                                "tensor a tape tracks (pass t.detach())")
    return host_array(v)


def _coef(c, axis, nd, f):
    """A host coefficient array along ``axis``, shaped to broadcast against f (f's device)."""
    shape = [1] * nd
    shape[axis] = -1
    return Tensor(f._bk.asarray(np.asarray(c).reshape(shape)), f._bk)


def _grad_axis(f, axis, dx, edge_order):
    """numpy.gradient along one axis: second-order central differences inside, one-sided
    differences of order ``edge_order`` at both ends (NumPy's formulas and order of
    operations)."""
    n, nd = f.shape[axis], f.ndim

    def s(lo, hi):
        return _slice(f, axis, lo, hi)

    if np.ndim(dx) == 0:
        inner = (s(2, n) - s(0, n - 2)) / (2.0 * dx)
        if edge_order == 1:
            first = (s(1, 2) - s(0, 1)) / dx
            last = (s(n - 1, n) - s(n - 2, n - 1)) / dx
        else:
            first = (-1.5 / dx) * s(0, 1) + (2.0 / dx) * s(1, 2) + (-0.5 / dx) * s(2, 3)
            last = (0.5 / dx) * s(n - 3, n - 2) + (-2.0 / dx) * s(n - 2, n - 1) \
                + (1.5 / dx) * s(n - 1, n)
        return concatenate([first, inner, last], axis=axis)
    d1, d2 = dx[:-1], dx[1:]
    ca, cb, cc = -d2 / (d1 * (d1 + d2)), (d2 - d1) / (d1 * d2), d1 / (d2 * (d1 + d2))
    inner = _coef(ca, axis, nd, f) * s(0, n - 2) + _coef(cb, axis, nd, f) * s(1, n - 1) \
        + _coef(cc, axis, nd, f) * s(2, n)
    if edge_order == 1:
        first = (s(1, 2) - s(0, 1)) / float(dx[0])
        last = (s(n - 1, n) - s(n - 2, n - 1)) / float(dx[-1])
    else:
        p, q = float(dx[0]), float(dx[1])
        first = (-(2.0 * p + q) / (p * (p + q))) * s(0, 1) + ((p + q) / (p * q)) * s(1, 2) \
            + (-p / (q * (p + q))) * s(2, 3)
        p, q = float(dx[-2]), float(dx[-1])
        last = (q / (p * (p + q))) * s(n - 3, n - 2) + (-(q + p) / (p * q)) * s(n - 2, n - 1) \
            + ((2.0 * q + p) / (q * (p + q))) * s(n - 1, n)
    return concatenate([first, inner, last], axis=axis)


def gradient(f, *varargs, axis=None, edge_order=1):
    """numpy.gradient: the derivative of sampled values ``f`` along each axis (None: all), by
    second-order central differences inside and one-sided differences of order ``edge_order``
    (1 or 2) at the boundaries. varargs: no spacing (1), one scalar for every axis, or one per
    axis, each a scalar or the 1-d coordinates (possibly uneven); spacings are constants. One
    axis gives a tensor, several a tuple. A linear map of f: slices, products and sums."""
    x = _t(f, "gradient", "f")
    if axis is None:
        axes = tuple(range(x.ndim))
    else:
        axes = tuple(axis_index(v, x.ndim, "gradient") for v in (
            (axis,) if isinstance(axis, numbers.Integral) else axis))
        if len(set(axes)) != len(axes):
            raise ShapeError(f"gradient: argument 'axis' has repeated axes: {axis!r}")
    if edge_order not in (1, 2):
        raise ArgumentError(f"gradient: argument 'edge_order' expected 1 or 2, got "
                            f"{edge_order!r}")
    dxs = _spacings(varargs, x, axes)
    if x.dtype.kind in "iub":
        x = x.astype(np.float64)
    out = []
    for ax, dx in zip(axes, dxs):
        if x.shape[ax] < edge_order + 1:
            raise ShapeError(f"gradient: axis {ax} has {x.shape[ax]} samples; at least "
                             f"edge_order + 1 = {edge_order + 1} are required")
        g = _grad_axis(x, ax, dx, edge_order)
        out.append(g if g.dtype == x.dtype else g.astype(x.dtype))
    return out[0] if len(out) == 1 else tuple(out)


def select(condlist, choicelist, default=0):
    """choicelist[i] where condlist[i] holds first (in list order), else ``default``, as
    numpy.select (everything broadcast together). Nested selects, so each choice gets the
    gradient where it was chosen."""
    if not isinstance(condlist, (list, tuple)) or not isinstance(choicelist, (list, tuple)):
        raise ArgumentError("select: arguments 'condlist' and 'choicelist' expected lists")
    if len(condlist) != len(choicelist):
        raise ArgumentError(f"select: 'condlist' and 'choicelist' expected the same length, got "
                            f"{len(condlist)} and {len(choicelist)}")
    if not condlist:
        raise ArgumentError("select: expected at least one condition, got an empty list")
    like = next((v for v in (*condlist, *choicelist, default) if isinstance(v, Tensor)), None)
    out = default
    for i in reversed(range(len(condlist))):
        c = _t(condlist[i], "select", f"condlist[{i}]", like)
        if c.dtype != np.bool_:
            raise DTypeError(f"select: condlist[{i}] expected a boolean array, got dtype "
                             f"{c.dtype}")
        out = where(c, _choice(choicelist[i], like, i), out)
    return out


def _choice(v, like, i):
    return v if isinstance(v, numbers.Number) else _t(v, "select", f"choicelist[{i}]", like)


# ---- sorting --------------------------------------------------------------------------------


def _sort_kind(kind, stable, op):
    """NumPy's kind/stable as the backend's choice: "stable" (stable, mergesort) or None
    (quicksort, heapsort: NumPy's introsort; CuPy's sorts are always stable)."""
    if stable:
        return "stable"
    if kind in (None, "quicksort", "heapsort"):
        return None
    if kind in ("stable", "mergesort"):
        return "stable"
    raise ArgumentError(f"{op}: argument 'kind' expected 'quicksort', 'mergesort', 'heapsort' "
                        f"or 'stable', got {kind!r}")


@defop("argsort", params=("axis", "kind", "descending"), differentiable=False,
       cost=lambda out, x, **p: 3.0 * x.size * math.log2(builtins.max(x.size, 2)),
       batch="leading")
class Argsort:
    """Indices that sort x along ``axis`` (negative), ascending (NaN last) or descending
    (NaN first, ties kept in index order); int64, not differentiable."""

    def forward(bk, x, *, axis=-1, kind=None, descending=False):
        xp = bk.xp
        if not descending:
            return (xp.argsort(x, axis=axis, kind="stable") if kind == "stable"
                    else xp.argsort(x, axis=axis)), ()
        # a stable ascending sort of the reversed x, reversed: descending with ties in index
        # order (a plain reversal of an ascending sort would reverse the ties)
        r = xp.argsort(xp.flip(x, axis=axis), axis=axis, kind="stable")
        return (x.shape[axis] - 1) - xp.flip(r, axis=axis), ()


@defop("argpartition", params=("kth", "axis"), differentiable=False,
       cost=lambda out, x, **p: 2.0 * x.size, batch="leading")
class Argpartition:
    """Indices that partition x along ``axis`` (negative) around the kth elements (numpy's
    argpartition: each kth element in its sorted place, smaller ones before it, larger after);
    int64, not differentiable."""

    def forward(bk, x, *, kth, axis=-1):
        return bk.xp.argpartition(x, kth, axis=axis), ()


def _gather_along(xp, x, p, axis):
    """take_along_axis of x by p along the negative ``axis``, their other axes broadcast (the
    shorter one padded with leading 1s: a cotangent or tangent batch in front of x's)."""
    nd = builtins.max(x.ndim, p.ndim)
    x = x.reshape((1,) * (nd - x.ndim) + x.shape)
    p = p.reshape((1,) * (nd - p.ndim) + p.shape)
    return xp.take_along_axis(x, p, axis=axis)


def _permute_sample(draw):
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    shape = draw(S.shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), -1))
    x = draw(S.arrays(shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = np.argsort(rng.random(shape), axis=axis)
    return (x, p, np.argsort(p, axis=axis)), {"axis": axis}


@defop("permute", params=("axis",), cost=lambda out, *xs, **p: float(out.size),
       saves=("p", "pinv"), complex_ok=True, batch="leading")
class Permute:
    """y = x gathered along ``axis`` (negative) by permutations p: y[..., i] = x[..., p[i]]
    (sort, partition and topk route their values by one); pinv is p's inverse along the axis
    (pinv[p[i]] = i). The transpose of a permutation is its inverse, so dy/dx is the cotangent
    gathered by pinv: a gather both ways (no scatter), exact at every order. p and pinv are
    integer inputs (not differentiated); other axes broadcast."""

    def forward(bk, x, p, pinv, *, axis):
        return _gather_along(bk.xp, x, p, axis), (p, pinv)

    def vjp(F, g, saved, needs, *, axis):
        p, pinv = saved
        return F.permute(g, pinv, p, axis=axis), None, None

    def jvp(F, ts, saved, *, axis):
        p, pinv = saved
        return F.permute(ts[0], p, pinv, axis=axis)

    sample = _permute_sample


def _permuted(x, idx, axis):
    """x gathered along the non-negative ``axis`` by the permutation tensor idx."""
    inv = apply(Argsort, idx, axis=axis - x.ndim, kind=None, descending=False)
    return apply(Permute, x, idx, inv, axis=axis - x.ndim)


def _sortable(a, axis, op):
    """(x, non-negative axis): x flattened for axis=None; 0-d refused for an int axis."""
    x = _t(a, op)
    if x.dtype.kind == "c":
        raise DTypeError(f"{op}: complex values have no order here; sort by ag.real or ag.abs")
    if axis is None:
        return ravel(x), 0
    if x.ndim == 0:
        raise ShapeError(f"{op}: argument 'axis' {axis!r} is out of range for a 0-d tensor "
                         "(use axis=None)")
    return x, axis_index(axis, x.ndim, op)


def argsort(a, axis=-1, kind=None, order=None, *, stable=None, descending=False):
    """Indices that sort ``a`` along ``axis`` (None: the flattened a), as numpy.argsort (int64,
    not differentiable); ``descending`` (the array API's) sorts from the largest, NaN first,
    ties in index order. Ties keep index order for kind='stable' / stable=True; other kinds
    order ties as the backend's sort does."""
    _no_order(order, "argsort")
    x, ax = _sortable(a, axis, "argsort")
    return apply(Argsort, x, axis=ax - x.ndim, kind=_sort_kind(kind, stable, "argsort"),
                 descending=bool(descending))


def _no_order(order, op):
    if order is not None:
        raise ArgumentError(f"{op}: argument 'order' (field names of structured arrays) is not "
                            f"supported, got {order!r}")


def sort(a, axis=-1, kind=None, order=None, *, stable=None, descending=False):
    """``a`` sorted along ``axis`` (None: flattened), as numpy.sort (NaN last; ``descending``:
    largest first). The input gathered by its argsort, so each output entry's gradient goes
    back to the entry it came from."""
    _no_order(order, "sort")
    x, ax = _sortable(a, axis, "sort")
    idx = apply(Argsort, x, axis=ax - x.ndim, kind=_sort_kind(kind, stable, "sort"),
                descending=bool(descending))
    return _permuted(x, idx, ax)


def _kth(kth, n, op):
    ks = (kth,) if isinstance(kth, numbers.Integral) else tuple(kth)
    out = []
    for k in ks:
        k = _int(k, op, "kth")
        if not -n <= k < n:
            raise ShapeError(f"{op}: argument 'kth' {k} is out of range for an axis of length "
                             f"{n}")
        out.append(k % n)
    if not out:
        raise ArgumentError(f"{op}: argument 'kth' expected at least one index")
    return out[0] if isinstance(kth, numbers.Integral) else tuple(out)


def argpartition(a, kth, axis=-1, kind="introselect", order=None):
    """Indices that partition ``a`` along ``axis`` around the kth elements (numpy.argpartition;
    int64, not differentiable)."""
    _no_order(order, "argpartition")
    x, ax = _sortable(a, axis, "argpartition")
    return apply(Argpartition, x, kth=_kth(kth, x.shape[ax], "argpartition"), axis=ax - x.ndim)


def partition(a, kth, axis=-1, kind="introselect", order=None):
    """``a`` partitioned along ``axis`` around the kth elements (numpy.partition): the input
    gathered by argpartition, so the gradient is routed back by that permutation."""
    x, ax = _sortable(a, axis, "partition")
    idx = argpartition(x, kth, ax, kind, order)
    return _permuted(x, idx, ax)


def topk(x, k, axis=-1, largest=True):
    """(values, indices) of the k largest entries along ``axis`` (the smallest with
    largest=False), sorted from the first pick (PyTorch's topk; jax.lax.top_k on the last
    axis). Ties go to the lower index; NaN counts as the largest. The values are a gather, so
    the gradient goes to the picked entries."""
    t, ax = _sortable(x, axis, "topk")
    k = _int(k, "topk", "k")
    n = t.shape[ax]
    if not 0 <= k <= n:
        raise ShapeError(f"topk: argument 'k' expected 0 <= k <= {n} (the length of axis {ax}), "
                         f"got {k}")
    idx = apply(Argsort, t, axis=ax - t.ndim, kind="stable", descending=bool(largest))
    return _slice(_permuted(t, idx, ax), ax, 0, k), _slice(idx, ax, 0, k)


# ---- scans ----------------------------------------------------------------------------------


def _scan(x, axis, combine):
    """Inclusive scan y_i = x_0 (+) ... (+) x_i along the non-negative ``axis`` for an
    associative (+): log2(n) levels, each combining every entry with the one 2^j before it
    (Hillis-Steele)."""
    n = x.shape[axis]
    d = 1
    while d < n:
        tail = combine(_slice(x, axis, 0, n - d), _slice(x, axis, d, n))
        x = concatenate([_slice(x, axis, 0, d), tail], axis=axis)
        d *= 2
    return x


def _scan_input(a, axis, op):
    x = _t(a, op)
    if axis is None:
        return ravel(x), 0
    if x.ndim == 0:
        raise ShapeError(f"{op}: argument 'a' expected at least 1 dimension for an int axis")
    return x, axis_index(axis, x.ndim, op)


def cumprod(a, axis=None):
    """Cumulative product along ``axis`` (None: of the flattened a), as numpy.cumprod. A scan
    of products: the gradient is exact at zeros, at every order; values agree with NumPy's
    sequential product to rounding."""
    x, ax = _scan_input(a, axis, "cumprod")
    if x.dtype == np.bool_:
        x = x.astype(np.int64)
    return _scan(x, ax, lambda p, q: p * q)


def logcumsumexp(x, axis=None):
    """log(cumsum(exp(x))) along ``axis`` (None: of the flattened x), without overflow
    (PyTorch's logcumsumexp, numpy.logaddexp.accumulate): a scan of logaddexp, whose weights
    give the gradient (the softmax of the prefix)."""
    t, ax = _scan_input(x, axis, "logcumsumexp")
    if t.dtype.kind not in "fV":
        raise DTypeError(f"logcumsumexp: argument 'x' expected a floating dtype, got {t.dtype}")
    return _scan(t, ax, logaddexp)


# ---- order statistics -----------------------------------------------------------------------


def _lerp(xp, a, b, t, omt):
    """NumPy's _lerp: a + (b - a) t, and b - (b - a)(1 - t) where t >= 0.5 (exact at t = 1)."""
    d = b - a
    return xp.where(t >= 0.5, b - d * omt, a + d * t)


def _tie_weights(xp, x, v):
    """(..., m, n): 1/k on each of the k entries of x (..., n) equal to v[..., j] (..., m)."""
    hit = xp.equal(x[..., None, :], v[..., :, None]).astype(x.dtype)
    cnt = hit.sum(axis=-1, keepdims=True)
    return hit / xp.where(cnt == 0, 1, cnt)


def _order_stats(n, q, method):
    """(lo, hi, t, 1 - t) per quantile: the order statistics interpolated and the weight."""
    if method == "median":
        return [(n - 1) // 2], [n // 2], [0.5 if n % 2 == 0 else 0.0], \
            [0.5 if n % 2 == 0 else 1.0]
    lo, hi, ts, omts = [], [], [], []
    for qi in q:
        v = (n - 1) * qi
        p = math.floor(v)
        if v >= n - 1:  # both at the last element; NumPy measures gamma from its index -1
            lo.append(n - 1)
            hi.append(n - 1)
            t = v + 1
        else:
            lo.append(p)
            hi.append(p + 1)
            t = v - p
        ts.append(t)
        omts.append(1 - t)
    return lo, hi, ts, omts


@defop("quantile", params=("q", "method"), saves=(None,), batch="leading",
       cost=lambda out, x, **p: 3.0 * x.size * math.log2(builtins.max(x.shape[-1], 2)))
class Quantile:
    """y[..., j] = the q[j]-quantile of x along its last axis: method "linear" interpolates the
    order statistics s[lo] and s[hi] at (n - 1) q (NumPy's default; its formula), "median" is
    the mean of the middle one or two, "index" takes s[(n - 1) q] for integer q. dy/dx: the
    interpolation weights (1 - t and t) on the entries equal to s[lo] and s[hi], each split
    equally among tied entries (max's convention); a slice holding NaN gives NaN, and its NaN
    entries share the gradient. The weights are saved (..., m, n): piecewise constant, so the
    second derivative is 0, as it is."""

    def forward(bk, x, *, q, method="linear"):
        xp = bk.xp
        n = x.shape[-1]
        s = xp.sort(x, axis=-1)
        lo, hi, t, omt = _order_stats(n, q, method)
        a, b = s[..., lo], s[..., hi]
        t = xp.asarray(t, dtype=x.dtype)
        omt = xp.asarray(omt, dtype=x.dtype)
        if method == "median":
            y = a if n % 2 else (a + b) / 2
        elif method == "index":
            y = a
        else:
            y = _lerp(xp, a, b, t, omt)
        w = _tie_weights(xp, x, a) * omt[:, None] + _tie_weights(xp, x, b) * t[:, None]
        if x.dtype.kind == "f" or x.dtype.kind == "V":
            isn = xp.isnan(x)
            nan_slice = isn.any(axis=-1, keepdims=True)
            y = xp.where(nan_slice, xp.asarray(math.nan, dtype=y.dtype), y)
            w = xp.where(nan_slice[..., None], _tie_nan(xp, isn, x.dtype), w)
        return y, (w,)

    def vjp(F, g, saved, needs, *, q, method="linear"):
        (w,) = saved
        return (F.sum(F.reshape(g, tuple(g.shape) + (1,)) * w, axis=(-2,)),)

    def jvp(F, ts, saved, *, q, method="linear"):
        (w,) = saved
        t = ts[0]
        return F.sum(F.reshape(t, tuple(t.shape[:-1]) + (1, t.shape[-1])) * w, axis=(-1,))

    def sample(draw):
        """Distinct entries (the gradient jumps where two cross: ties are a dedicated test's),
        q on and between the order statistics."""
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        x = draw(S.distinct_arrays(draw(S.shapes(min_dims=1))))
        method = draw(st.sampled_from(["linear", "median"]))
        q = tuple(draw(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.8, 1.0]), min_size=1,
                                max_size=3)))
        return (x,), {"q": q if method == "linear" else (0.5,), "method": method}


def _tie_nan(xp, isn, dtype):
    """(..., 1, n): 1/k on each of the k NaN entries of a slice (0 in slices without NaN)."""
    w = isn.astype(dtype)
    cnt = w.sum(axis=-1, keepdims=True)
    return (w / xp.where(cnt == 0, 1, cnt))[..., None, :]


def _quantile_args(a, q, axis, method, op):
    """(x as float, q as a 1-d host float64 array, its shape, axes, weak) after NumPy's checks."""
    if method != "linear":
        raise ArgumentError(f"{op}: argument 'method' expected 'linear' (the one method "
                            f"implemented, NumPy's default), got {method!r}")
    x = _t(a, op)
    if x.dtype.kind == "c":
        raise DTypeError(f"{op}: argument 'a' expected real numbers, got {x.dtype}")
    if isinstance(q, Tensor):
        if q.is_tracked:
            raise ArgumentError(f"{op}: argument 'q' is a constant (not differentiated); got a "
                                "tensor a tape tracks (pass q.detach())")
        q = q.numpy()
    weak = type(q) in (int, float)
    qa = np.asarray(q)
    if qa.dtype.kind not in "iuf" or qa.ndim > 1:
        raise ArgumentError(f"{op}: argument 'q' expected a number or a 1-d array of numbers, "
                            f"got {describe(q)}")
    return x, qa, weak


def _quantile(x, qa, weak, axis, keepdims, method, op):
    if x.dtype.kind in "iub":
        x = x.astype(np.float64)
    if not weak and qa.dtype.kind == "f" and np.result_type(x.dtype, qa.dtype) != x.dtype:
        x = x.astype(np.result_type(x.dtype, qa.dtype))
    axes = norm_axis(axis, x.ndim, op)
    rest = [d for d in range(x.ndim) if d not in axes]
    n = math.prod(x.shape[d] for d in axes)
    if n == 0:
        raise ShapeError(f"{op}: argument 'a' expected a non-empty reduction, got shape "
                         f"{x.shape} reduced over axes {axes}")
    xt = transpose(x, rest + list(axes)) if x.ndim else x
    xt = reshape(xt, tuple(x.shape[d] for d in rest) + (n,))
    if method == "linear" and qa.dtype.kind in "iu":
        method = "index"
    y = apply(Quantile, xt, q=tuple(float(v) for v in qa.reshape(-1)), method=method)
    kept = tuple(1 if d in axes else x.shape[d] for d in range(x.ndim)) if keepdims \
        else tuple(x.shape[d] for d in rest)
    y = reshape(y, kept + (qa.size,))
    y = moveaxis(y, -1, 0) if y.ndim > 1 else y
    return reshape(y, qa.shape + kept)


def quantile(a, q, axis=None, method="linear", keepdims=False):
    """The q-quantiles of ``a`` over ``axis`` (None: all), q in [0, 1] (a number or 1-d: its
    axis comes first), by NumPy's default method 'linear' (the only one implemented). The
    gradient goes to the interpolated order statistics, with weights 1 - t and t, each split
    equally among tied entries; q is a constant."""
    x, qa, weak = _quantile_args(a, q, axis, method, "quantile")
    if qa.size and not ((qa >= 0) & (qa <= 1)).all():
        raise ArgumentError(f"quantile: argument 'q' expected values in [0, 1], got {q!r}")
    return _quantile(x, qa, weak, axis, keepdims, method, "quantile")


def percentile(a, q, axis=None, method="linear", keepdims=False):
    """The q-th percentiles of ``a`` over ``axis``, q in [0, 100]: quantile(a, q / 100)."""
    x, qa, weak = _quantile_args(a, q, axis, method, "percentile")
    if qa.size and not ((qa >= 0) & (qa <= 100)).all():
        raise ArgumentError(f"percentile: argument 'q' expected values in [0, 100], got {q!r}")
    return _quantile(x, np.true_divide(qa, 100), weak, axis, keepdims, method, "percentile")


def median(a, axis=None, keepdims=False):
    """The median over ``axis`` (None: all): the middle order statistic, or the mean of the
    two middle ones, as numpy.median. Its gradient goes to those (1/2 each for two), split
    equally among entries tied with them; a slice holding NaN gives NaN. An empty reduction
    raises ShapeError (NumPy warns and gives NaN)."""
    x = _t(a, "median")
    if x.dtype.kind == "c":
        raise DTypeError(f"median: argument 'a' expected real numbers, got {x.dtype}")
    return _quantile(x, np.asarray(0.5), True, axis, keepdims, "median", "median")


# ---- construction ---------------------------------------------------------------------------


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """``num`` evenly spaced values from start to stop (stop included with endpoint=True), as
    numpy.linspace, with start and stop tensors (or arrays broadcasting together, the samples
    along a new ``axis``): start + i * step, the last one stop itself. Differentiable in both
    endpoints. retstep=True also gives the step (NaN when num < 2 with endpoint)."""
    num = _int(num, "linspace", "num")
    if num < 0:
        raise ArgumentError(f"linspace: argument 'num' expected a non-negative int, got {num}")
    like = start if isinstance(start, Tensor) else stop if isinstance(stop, Tensor) else None
    # NumPy's result type: Python numbers are weak (a float32 start keeps float32)
    dt = np.result_type(_weak(start), _weak(stop), float(num))
    s = _t(start, "linspace", "start", like)
    e = _t(stop, "linspace", "stop", like)
    if s.dtype != dt:
        s = s.astype(dt)
    if e.dtype != dt:
        e = e.astype(dt)
    div = num - 1 if endpoint else num
    delta = e - s
    nd = builtins.max(s.ndim, e.ndim)
    bk = s._bk
    y = Tensor(bk.xp.arange(num, dtype=dt).reshape((-1,) + (1,) * nd), bk)
    if div > 0:
        step = delta / div
        # where a step underflows to 0 (a subnormal delta), NumPy scales by delta after the
        # division (it decides for the whole array, this per entry: a mix of such deltas and
        # normal ones rounds differently, nothing else does)
        y = where(step == 0, (y / div) * delta, y * step)
    else:
        step = math.nan
        y = y * delta
    y = y + s
    if endpoint and num > 1:
        last = reshape(broadcast_to(e, tuple(y.shape[1:])), (1,) + tuple(y.shape[1:]))
        y = concatenate([_slice(y, 0, 0, num - 1), last], axis=0)
    if axis != 0:
        y = moveaxis(y, 0, axis)
    if dtype is not None:
        y = _cast_samples(y, dtype)
    return (y, step) if retstep else y


def _weak(v):
    """v for np.result_type: a tensor's dtype, a Python number itself (weak), an array's
    dtype."""
    if isinstance(v, Tensor):
        return v.dtype
    if type(v) in (bool, int, float, complex):
        return v
    dt = getattr(v, "dtype", None)  # a device array's without copying it
    return dt if dt is not None else np.asarray(v).dtype


def _cast_samples(y, dtype):
    """NumPy floors the samples before an integer cast."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        y = floor(y)
    return y.astype(dt)


def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    """Coordinate arrays from 1-d coordinate vectors (each flattened), as numpy.meshgrid:
    indexing 'xy' (Cartesian: the first two axes swapped) or 'ij' (matrix); ``sparse`` keeps
    the length-1 axes instead of broadcasting. Reshapes and broadcasts; ``copy`` changes
    nothing (tensors are immutable). Returns a tuple."""
    if indexing not in ("xy", "ij"):
        raise ArgumentError(f"meshgrid: argument 'indexing' expected 'xy' or 'ij', got "
                            f"{indexing!r}")
    like = next((v for v in xi if isinstance(v, Tensor)), None)
    xs = [ravel(_t(v, "meshgrid", f"xi[{i}]", like)) for i, v in enumerate(xi)]
    nd = len(xs)
    out = []
    for i, v in enumerate(xs):
        shape = [1] * nd
        j = 1 - i if indexing == "xy" and nd > 1 and i < 2 else i
        shape[j] = -1
        out.append(reshape(v, tuple(shape)))
    if not sparse and nd:
        full = np.broadcast_shapes(*(tuple(o.shape) for o in out))
        out = [broadcast_to(o, full) for o in out]
    return tuple(out)


def moveaxis(a, source, destination):
    """``a`` with the axes ``source`` moved to ``destination`` (ints or sequences), the others
    in their order (numpy.moveaxis): a transpose."""
    x = _t(a, "moveaxis")
    src = (source,) if isinstance(source, numbers.Integral) else tuple(source)
    dst = (destination,) if isinstance(destination, numbers.Integral) else tuple(destination)
    if len(src) != len(dst):
        raise ShapeError(f"moveaxis: arguments 'source' and 'destination' expected the same "
                         f"number of axes, got {source!r} and {destination!r}")
    src = [axis_index(v, x.ndim, "moveaxis", "source") for v in src]
    dst = [axis_index(v, x.ndim, "moveaxis", "destination") for v in dst]
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise ShapeError(f"moveaxis: repeated axes in {source!r} or {destination!r}")
    order = [d for d in range(x.ndim) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return x if order == list(range(x.ndim)) else transpose(x, order)


def _atleast(arys, nd, op):
    out = []
    for i, v in enumerate(arys):
        x = _t(v, op, f"arys[{i}]")
        if x.ndim < nd:
            if nd == 3 and x.ndim == 2:
                shape = x.shape + (1,)
            elif nd == 3 and x.ndim == 1:
                shape = (1,) + x.shape + (1,)
            else:
                shape = (1,) * (nd - x.ndim) + x.shape
            x = reshape(x, shape)
        out.append(x)
    return out[0] if len(out) == 1 else tuple(out)


def atleast_1d(*arys):
    """Each input with at least 1 dimension (numpy.atleast_1d; one input gives a tensor)."""
    return _atleast(arys, 1, "atleast_1d")


def atleast_2d(*arys):
    """Each input with at least 2 dimensions: (n,) becomes (1, n) (numpy.atleast_2d)."""
    return _atleast(arys, 2, "atleast_2d")


def atleast_3d(*arys):
    """Each input with at least 3 dimensions: (n,) becomes (1, n, 1) and (m, n) becomes
    (m, n, 1) (numpy.atleast_3d)."""
    return _atleast(arys, 3, "atleast_3d")


def array_split(ary, indices_or_sections, axis=0):
    """``ary`` cut along ``axis`` into a list: an int N gives N parts of nearly equal lengths
    (the first n % N one longer), a sequence gives the cut points (numpy.array_split)."""
    x = _t(ary, "array_split", "ary")
    if isinstance(indices_or_sections, numbers.Integral) and not isinstance(
            indices_or_sections, bool):
        k = int(indices_or_sections)
        if k <= 0:
            raise ArgumentError(f"array_split: argument 'indices_or_sections' expected a "
                                f"positive number of sections, got {k}")
        if x.ndim == 0:
            raise ShapeError("array_split: argument 'ary' expected at least 1 dimension")
        n = x.shape[axis_index(axis, x.ndim, "array_split")]
        each, extra = divmod(n, k)
        sizes = [each + 1] * extra + [each] * (k - extra)
        cuts = list(np.cumsum(sizes)[:-1])
        return split(x, [int(c) for c in cuts], axis=axis)
    return split(x, indices_or_sections, axis=axis)


# ---- products -------------------------------------------------------------------------------


def inner(a, b):
    """The inner product over the last axes (numpy.inner): out[i..., j...] =
    sum_k a[i..., k] b[j..., k]; a product when either is 0-d. An einsum."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    x, y = _t(a, "inner", "a", like), _t(b, "inner", "b", like)
    if x.ndim == 0 or y.ndim == 0:
        return x * y
    if x.shape[-1] != y.shape[-1]:
        raise ShapeError(f"inner: the last axes of a {x.shape} and b {y.shape} differ in "
                         "length")
    return tensordot(x, y, axes=([x.ndim - 1], [y.ndim - 1]))


def vdot(a, b):
    """sum(conj(a) * b) over the flattened a and b (numpy.vdot: a is conjugated); equal
    sizes required."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    x, y = ravel(_t(a, "vdot", "a", like)), ravel(_t(b, "vdot", "b", like))
    if x.shape != y.shape:
        raise ShapeError(f"vdot: arguments 'a' and 'b' expected the same size, got {x.size} "
                         f"and {y.size}")
    return einsum("i,i->", conj(x), y)


def ravel(a, order="C"):
    """``a`` flattened to one dimension in C order (numpy.ravel): a reshape."""
    if order not in ("C", None):
        raise ArgumentError(f"ravel: argument 'order' expected 'C' (tensors are indexed in C "
                            f"order), got {order!r}")
    x = _t(a, "ravel")
    return x if x.ndim == 1 else reshape(x, (x.size,))
