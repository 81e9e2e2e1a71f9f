"""Shape and layout primitives. Shapes/axes are normalised before recording; rules keep any
leading tangent batch by working on the trailing dimensions only."""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import ArgumentError, ShapeError, describe
from ..tensor import Tensor, _shape
from . import sampling as S
from ._util import as_tensor, axis_index, positions
from .registry import apply, defop


def _batch(g, nd_out):
    return tuple(g.shape[: g.ndim - nd_out])


@defop("identity", cost=lambda out, *xs, **p: 0.0, complex_ok=True, batch="elementwise")
class Identity:
    """y = x: a new graph node over the same array. The functional transforms give each
    differentiated argument one, so that every position is its own variable (the same tensor
    passed twice has two partials)."""

    def forward(bk, x):
        return x, ()

    def vjp(F, g, saved, needs):
        return (g,)

    def jvp(F, ts, saved):
        return ts[0]

    def sample(draw):
        return (draw(S.arrays(draw(S.shapes()))),), {}


@defop("reshape", params=("shape",), cost=lambda out, *xs, **p: 0.0, saves=(None,), complex_ok=True)
class Reshape:
    """y = x with a new shape of the same size"""

    def batch(F, args, dims, *, shape):
        x = F.to_front(args[0], dims[0])
        return F.reshape(x, (x.shape[0],) + tuple(shape)), 0

    def forward(bk, x, *, shape):
        return x.reshape(shape), (x.shape,)

    def vjp(F, g, saved, needs, *, shape):
        return (F.reshape(g, _batch(g, len(shape)) + tuple(saved[0])),)

    def jvp(F, ts, saved, *, shape):
        t = ts[0]
        return F.reshape(t, _batch(t, len(saved[0])) + tuple(shape))

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes())
        x = draw(S.arrays(shape))
        n = int(np.prod(shape))
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        d = draw(st.sampled_from(divisors))
        new = draw(st.sampled_from([(n,), (d, n // d), (n // d, 1, d)]))
        return (x,), {"shape": new}


@defop("broadcast_to", params=("shape",), cost=lambda out, *xs, **p: 0.0, saves=(None,),
       complex_ok=True)
class BroadcastTo:
    """y = x broadcast to shape (a read-only view); the gradient sums over broadcast axes"""

    def batch(F, args, dims, *, shape):
        x = F.to_front(args[0], dims[0])
        lead = len(shape) - (x.ndim - 1)  # align the example's axes with the target's
        x = F.reshape(x, (x.shape[0],) + (1,) * lead + tuple(x.shape[1:]))
        return F.broadcast_to(x, (x.shape[0],) + tuple(shape)), 0

    def forward(bk, x, *, shape):
        return bk.xp.broadcast_to(x, shape), (x.shape,)

    def vjp(F, g, saved, needs, *, shape):
        return (g,)  # the engine sums g back to x's shape

    def jvp(F, ts, saved, *, shape):
        t = ts[0]
        b = _batch(t, len(saved[0]))
        pad = (1,) * (len(shape) - len(saved[0]))
        return F.broadcast_to(F.reshape(t, b + pad + tuple(saved[0])), b + tuple(shape))

    def sample(draw):
        sa, = draw(S.broadcast_shapes(1))
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        extra = draw(st.lists(st.integers(1, 3), max_size=2))
        target = tuple(extra) + tuple(s if s != 1 else draw(st.integers(1, 3)) for s in sa)
        return (draw(S.arrays(sa)),), {"shape": target}


@defop("transpose", params=("axes",), cost=lambda out, *xs, **p: 0.0, complex_ok=True)
class Transpose:
    """y = x with axes permuted (axes: a permutation of range(ndim))"""

    def batch(F, args, dims, *, axes):
        x = F.to_front(args[0], dims[0])
        return F.transpose(x, (0,) + tuple(a + 1 for a in axes)), 0

    def forward(bk, x, *, axes):
        return bk.xp.transpose(x, axes), ()

    def vjp(F, g, saved, needs, *, axes):
        nd = len(axes)
        inv = [0] * nd
        for i, a in enumerate(axes):
            inv[a] = i
        b = g.ndim - nd
        return (F.transpose(g, axes=tuple(range(b)) + tuple(b + i for i in inv)),)

    def jvp(F, ts, saved, *, axes):
        t = ts[0]
        b = t.ndim - len(axes)
        return F.transpose(t, axes=tuple(range(b)) + tuple(b + a for a in axes))

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes())
        perm = draw(st.permutations(list(range(len(shape)))))
        return (draw(S.arrays(shape)),), {"axes": tuple(perm)}


def _t(x, op):
    return as_tensor(x, None, "x", op)


def reshape(x, shape):
    """x with a new shape (one entry may be -1)."""

    x = _t(x, "reshape")
    shape = _shape(shape, "reshape", allow_minus_one=True)
    size = x.size
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: argument 'shape' may hold at most one -1, got {shape}")
    if -1 in shape:
        rest = 1
        for s in shape:
            rest *= s if s != -1 else 1
        if rest == 0 or size % rest:
            raise ShapeError(f"reshape: cannot reshape {x.shape} (size {size}) into {shape}")
        shape = tuple(size // rest if s == -1 else s for s in shape)
    n = 1
    for s in shape:
        n *= s
    if n != size:
        raise ShapeError(
            f"reshape: argument 'shape' expected {size} elements like input {x.shape}, got {shape}"
        )
    if shape == x.shape:
        return x
    return apply(Reshape, x, shape=shape)


def broadcast_to(x, shape):
    """x broadcast to shape."""
    x = _t(x, "broadcast_to")
    shape = tuple(int(s) for s in shape)
    if shape == x.shape:
        return x
    return apply(BroadcastTo, x, shape=shape)


def transpose(x, axes=None):
    """x with axes permuted (default: reversed)."""

    x = _t(x, "transpose")
    nd = x.ndim
    if axes is None:
        axes = tuple(range(nd))[::-1]
    else:
        seq = axes if isinstance(axes, numbers.Integral) else tuple(axes)  # any iterable
        axes = positions(seq, nd, "transpose", "axes")
    if sorted(axes) != list(range(nd)):
        raise ShapeError(
            f"transpose: argument 'axes' expected a permutation of range({nd}), got {axes}"
        )
    return apply(Transpose, x, axes=axes)


@defop("swapaxes", params=("a1", "a2"), cost=lambda out, *xs, **p: 0.0, complex_ok=True,
       batch="leading")
class SwapAxes:
    """y = x with axes a1 and a2 exchanged (negative axes, so leading batches are kept)"""

    def forward(bk, x, *, a1, a2):
        return bk.xp.swapaxes(x, a1, a2), ()

    def vjp(F, g, saved, needs, *, a1, a2):
        return (F.swapaxes(g, a1=a1, a2=a2),)

    def jvp(F, ts, saved, *, a1, a2):
        return F.swapaxes(ts[0], a1=a1, a2=a2)

    def sample(draw):
        shape = draw(S.shapes(min_dims=2))
        return (draw(S.arrays(shape)),), {"a1": -1, "a2": -2}


def swapaxes(x, axis1: int, axis2: int):
    """x with two axes exchanged."""
    x = _t(x, "swapaxes")
    nd = x.ndim
    for a in (axis1, axis2):
        if not -nd <= a < nd:
            raise ShapeError(f"swapaxes: axis {a} out of range for {nd} dimensions")
    return apply(SwapAxes, x, a1=axis1 % nd - nd, a2=axis2 % nd - nd)


def _full_spec(shape, axis=None, entry=None):
    """A canonical getitem spec (see ops/indexing.py) taking everything of ``shape`` except
    ``entry`` at ``axis``."""
    return tuple(entry if d == axis else (0, n, 1) for d, n in enumerate(shape))


def _fill(F, ts, shapes):
    """Tangents with each None replaced by zeros of batch + its input shape (None: all None)."""
    ref = next((t for t in ts if t is not None), None)
    if ref is None:
        return None
    b = tuple(ref.shape[: ref.ndim - len(shapes[0])])
    return [t if t is not None else F.zeros(b + tuple(s), ref.dtype) for t, s in zip(ts, shapes)]


def _copy_cost(out, *xs, **p):
    return float(out.size)


@defop("expand_dims", params=("axis",), cost=lambda out, *xs, **p: 0.0, saves=(None,),
       complex_ok=True, batch=("axes", "axis"))
class ExpandDims:
    """y = x with new axes of length 1 at the output positions ``axis`` (sorted, non-negative)"""

    def forward(bk, x, *, axis):
        return x.reshape(_expanded(x.shape, axis)), (x.shape,)

    def vjp(F, g, saved, needs, *, axis):
        shape = tuple(saved[0])
        return (F.reshape(g, _batch(g, len(shape) + len(axis)) + shape),)

    def jvp(F, ts, saved, *, axis):
        t = ts[0]
        shape = tuple(saved[0])
        return F.reshape(t, _batch(t, len(shape)) + _expanded(shape, axis))

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes(max_dims=3))
        k = draw(st.integers(1, 2))
        axis = draw(st.lists(st.integers(0, len(shape) + k - 1), min_size=k, max_size=k,
                             unique=True))
        return (draw(S.arrays(shape)),), {"axis": tuple(sorted(axis))}


def _expanded(shape, axis):
    it = iter(shape)
    return tuple(1 if d in axis else next(it) for d in range(len(shape) + len(axis)))


def _squeezed(shape, axis):
    return tuple(n for d, n in enumerate(shape) if d not in axis)


@defop("squeeze", params=("axis",), cost=lambda out, *xs, **p: 0.0, saves=(None,), complex_ok=True,
       batch=("axes", "axis"))
class Squeeze:
    """y = x without its length-1 axes ``axis`` (sorted, non-negative)"""

    def forward(bk, x, *, axis):
        return x.reshape(_squeezed(x.shape, axis)), (x.shape,)

    def vjp(F, g, saved, needs, *, axis):
        shape = tuple(saved[0])
        return (F.reshape(g, _batch(g, len(shape) - len(axis)) + shape),)

    def jvp(F, ts, saved, *, axis):
        t = ts[0]
        shape = tuple(saved[0])
        return F.reshape(t, _batch(t, len(shape)) + _squeezed(shape, axis))

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = list(draw(S.shapes(max_dims=3)))
        for _ in range(draw(st.integers(1, 2))):
            shape.insert(draw(st.integers(0, len(shape))), 1)
        ones = [d for d, n in enumerate(shape) if n == 1]
        axis = draw(st.lists(st.sampled_from(ones), min_size=1, unique=True))
        return (draw(S.arrays(tuple(shape))),), {"axis": tuple(sorted(axis))}


@defop("concatenate", params=("axis",), cost=_copy_cost, saves=(None,), complex_ok=True)
class Concatenate:
    """y = [x_0, x_1, ...] joined along ``axis`` (a negative axis); dy/dx_i: the matching slice
    of the cotangent"""

    def batch(F, args, dims, *, axis):  # (a negative axis: unchanged past the batch axis)
        return F.apply(Concatenate, *(F.front(x, d) for x, d in zip(args, dims)), axis=axis), 0

    def forward(bk, *xs, axis):
        return bk.xp.concatenate(xs, axis=axis), (tuple(x.shape for x in xs),)

    def vjp(F, g, saved, needs, *, axis):
        shapes = saved[0]
        nd = len(shapes[0])
        a = axis + nd
        out_shape = list(shapes[0])
        out_shape[a] = sum(s[a] for s in shapes)
        grads = []
        off = 0
        for s, need in zip(shapes, needs):
            n = s[a]
            grads.append(F.getitem(g, index=_full_spec(out_shape, a, (off, off + n, 1)))
                         if need else None)
            off += n
        return tuple(grads)

    def jvp(F, ts, saved, *, axis):
        parts = _fill(F, ts, saved[0])
        return None if parts is None else F.concatenate(*parts, axis=axis)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = list(draw(S.shapes(min_dims=1, max_dims=3)))
        nd = len(shape)
        axis = draw(st.integers(-nd, -1))
        xs = []
        for _ in range(draw(st.integers(1, 3))):
            shape[axis] = draw(st.integers(1, 3))
            xs.append(draw(S.arrays(tuple(shape))))
        return tuple(xs), {"axis": axis}


@defop("stack", params=("axis",), cost=_copy_cost, saves=(None, None), complex_ok=True)
class Stack:
    """y = x_0, x_1, ... (same shapes) stacked along a new axis ``axis`` (negative, counted in
    the output); dy/dx_i: the cotangent at index i of that axis"""

    def batch(F, args, dims, *, axis):  # (a negative axis: unchanged past the batch axis)
        return F.apply(Stack, *(F.front(x, d) for x, d in zip(args, dims)), axis=axis), 0

    def forward(bk, *xs, axis):
        return bk.xp.stack(xs, axis=axis), (xs[0].shape, len(xs))

    def vjp(F, g, saved, needs, *, axis):
        shape, n = saved
        out_shape = list(shape)
        a = axis + len(shape) + 1
        out_shape.insert(a, n)
        return tuple(F.getitem(g, index=_full_spec(out_shape, a, i)) if need else None
                     for i, need in enumerate(needs))

    def jvp(F, ts, saved, *, axis):
        parts = _fill(F, ts, [saved[0]] * saved[1])
        return None if parts is None else F.stack(*parts, axis=axis)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes(max_dims=3))
        axis = draw(st.integers(-len(shape) - 1, -1))
        xs = tuple(draw(S.arrays(shape)) for _ in range(draw(st.integers(1, 3))))
        return xs, {"axis": axis}


@defop("pad", params=("pad_width", "value"), cost=_copy_cost, saves=(None,), complex_ok=True,
       batch="leading")
class Pad:
    """y = x surrounded by ``value``: pad_width[d] = (before, after) entries on axis d (constant
    mode); dy/dx: the cotangent cropped back to x's region"""

    def forward(bk, x, *, pad_width, value=0.0):
        b = x.ndim - len(pad_width)
        pw = ((0, 0),) * b + tuple(pad_width)
        if not pw:  # a 0-d x: nothing to pad (numpy.pad refuses an empty pad_width)
            return x[...], ((),)
        return bk.xp.pad(x, pw, mode="constant", constant_values=value), (x.shape[b:],)

    def vjp(F, g, saved, needs, *, pad_width, value=0.0):
        spec = tuple((lo, lo + n, 1) for (lo, _), n in zip(pad_width, saved[0]))
        return (F.getitem(g, index=spec),)

    def jvp(F, ts, saved, *, pad_width, value=0.0):
        return F.pad(ts[0], pad_width=pad_width, value=0.0)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes(min_dims=1, max_dims=3))
        pw = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in shape)
        value = draw(st.sampled_from([0.0, 1.5, -2.0]))
        return (draw(S.arrays(shape)),), {"pad_width": pw, "value": value}


@defop("flip", params=("axis",), cost=_copy_cost, complex_ok=True, batch="leading")
class Flip:
    """y = x reversed along each axis in ``axis`` (negative axes); its own adjoint"""

    def forward(bk, x, *, axis):
        return bk.xp.flip(x, axis=axis), ()

    def vjp(F, g, saved, needs, *, axis):
        return (F.flip(g, axis=axis),)

    def jvp(F, ts, saved, *, axis):
        return F.flip(ts[0], axis=axis)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes(min_dims=1, max_dims=3))
        nd = len(shape)
        axis = draw(st.lists(st.integers(-nd, -1), min_size=1, max_size=nd, unique=True))
        return (draw(S.arrays(shape)),), {"axis": tuple(sorted(axis))}


@defop("cumsum", params=("axis",), cost=_copy_cost, complex_ok=True, batch="leading")
class Cumsum:
    """y_i = sum_{j <= i} x_j along ``axis`` (negative); dy/dx: the reversed cumulative sum of
    the cotangent, flip(cumsum(flip(g)))"""

    def forward(bk, x, *, axis):
        return bk.xp.cumsum(x, axis=axis), ()

    def vjp(F, g, saved, needs, *, axis):
        return (F.flip(F.cumsum(F.flip(g, axis=(axis,)), axis=axis), axis=(axis,)),)

    def jvp(F, ts, saved, *, axis):
        return F.cumsum(ts[0], axis=axis)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes(min_dims=1, max_dims=3))
        axis = draw(st.integers(-len(shape), -1))
        return (draw(S.arrays(shape)),), {"axis": axis}


# ---- public functions -------------------------------------------------------------------------


def _axes(axis, nd, op):

    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    out = tuple(sorted(axis_index(a, nd, op) for a in axes))
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: argument 'axis' has repeated axes: {axis!r}")
    return out


def _tensor_list(tensors, op):

    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise ArgumentError(
            f"{op}: argument 'tensors' expected a list or tuple of Tensors, got "
            f"{describe(tensors)}"
        )
    if not tensors:
        raise ArgumentError(f"{op}: argument 'tensors' expected at least one Tensor, got none")
    like = next((t for t in tensors if isinstance(t, Tensor)), None)
    out = []
    for i, t in enumerate(tensors):
        t = _t(t, op) if like is None else _like(t, like, op, i)
        if not isinstance(t, Tensor):
            t = Tensor.from_array(t, device=like.device if like is not None else None)
        out.append(t)
    return out


def _like(t, like, op, i):
    return as_tensor(t, like, f"tensors[{i}]", op)


def expand_dims(x, axis):
    """x with new length-1 axes inserted at ``axis`` (an int or a tuple; positions in the
    output, as numpy.expand_dims)."""
    x = _t(x, "expand_dims")
    k = 1 if isinstance(axis, numbers.Integral) else len(tuple(axis))
    axes = _axes(axis, x.ndim + k, "expand_dims")
    return apply(ExpandDims, x, axis=axes)


def squeeze(x, axis=None):
    """x without length-1 axes: all of them (axis=None) or those in ``axis``, which must have
    length 1."""
    x = _t(x, "squeeze")
    if axis is None:
        axes = tuple(d for d, n in enumerate(x.shape) if n == 1)
    else:
        axes = _axes(axis, x.ndim, "squeeze")
        bad = [d for d in axes if x.shape[d] != 1]
        if bad:
            raise ShapeError(
                f"squeeze: argument 'axis' expected axes of length 1, got axis {bad[0]} of "
                f"length {x.shape[bad[0]]} (x has shape {x.shape})"
            )
    if not axes:
        return x
    return apply(Squeeze, x, axis=axes)


def flatten(x, start_axis: int = 0, end_axis: int = -1):
    """x with axes start_axis..end_axis (inclusive) merged into one (a reshape). A 0-d x
    becomes shape (1,)."""
    x = _t(x, "flatten")
    if x.ndim == 0:
        return reshape(x, (1,))
    s = axis_index(start_axis, x.ndim, "flatten", "start_axis")
    e = axis_index(end_axis, x.ndim, "flatten", "end_axis")
    if s > e:
        raise ShapeError(
            f"flatten: argument 'start_axis' ({start_axis}) expected to come at or before "
            f"'end_axis' ({end_axis}) for {x.ndim} dimensions"
        )
    n = 1
    for d in x.shape[s:e + 1]:
        n *= d
    return reshape(x, x.shape[:s] + (n,) + x.shape[e + 1:])


def concatenate(tensors, axis=0):
    """The tensors joined along an existing ``axis`` (None: each flattened, then joined).
    Shapes must agree except along ``axis``."""
    xs = _tensor_list(tensors, "concatenate")
    if axis is None:
        xs = [reshape(t, (-1,)) for t in xs]
        axis = 0
    nd = xs[0].ndim
    if nd == 0:
        raise ShapeError("concatenate: argument 'tensors' expected at least 1-d tensors, got 0-d")
    a = axis_index(axis, nd, "concatenate")
    for i, t in enumerate(xs):
        if t.ndim != nd or any(p != q for d, (p, q) in enumerate(zip(t.shape, xs[0].shape))
                               if d != a):
            raise ShapeError(
                f"concatenate: tensors[{i}] expected shape {xs[0].shape} except along axis {a}, "
                f"got {t.shape}"
            )
    if len(xs) == 1:
        return xs[0]
    return apply(Concatenate, *xs, axis=a - nd)


def stack(tensors, axis=0):
    """The tensors (all of one shape) stacked along a new axis ``axis`` of the output."""
    xs = _tensor_list(tensors, "stack")
    shape = xs[0].shape
    for i, t in enumerate(xs):
        if t.shape != shape:
            raise ShapeError(f"stack: tensors[{i}] expected shape {shape} like tensors[0], "
                             f"got {t.shape}")
    nd = len(shape) + 1
    a = axis_index(axis, nd, "stack")
    return apply(Stack, *xs, axis=a - nd)


def _pad_width(pad_width, nd):

    def bad():
        return ArgumentError(
            f"pad: argument 'pad_width' expected an int, (before, after), or one (before, after) "
            f"per axis ({nd} axes) of non-negative ints, got {pad_width!r}"
        )

    def ints(seq):
        if isinstance(seq, numbers.Integral):
            return (int(seq),)
        if not isinstance(seq, (list, tuple)) or not all(
                isinstance(v, numbers.Integral) for v in seq):
            raise bad()
        return tuple(int(v) for v in seq)

    if isinstance(pad_width, numbers.Integral):
        rows = [(int(pad_width),)]
    elif isinstance(pad_width, (list, tuple)) and pad_width and all(
            isinstance(v, numbers.Integral) for v in pad_width):
        rows = [tuple(int(v) for v in pad_width)]
    elif isinstance(pad_width, (list, tuple)) and pad_width:
        rows = [ints(r) for r in pad_width]
    else:
        raise bad()
    if len(rows) == 1:
        rows = rows * nd
    if len(rows) != nd or any(len(r) not in (1, 2) for r in rows):
        raise bad()
    pw = tuple((r[0], r[-1]) for r in rows)
    if any(v < 0 for r in pw for v in r):
        raise bad()
    return pw


def pad(x, pad_width, value: float = 0.0):
    """x padded with the constant ``value``; pad_width in numpy's forms: N, (before, after),
    ((before, after),) or one (before, after) per axis."""

    x = _t(x, "pad")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"pad: argument 'value' expected a real number, got {value!r}")
    pw = _pad_width(pad_width, x.ndim)
    if all(p == (0, 0) for p in pw):
        return x
    return apply(Pad, x, pad_width=pw, value=float(value))


def flip(x, axis=None):
    """x reversed along ``axis`` (an int, a tuple, or None for all axes)."""
    x = _t(x, "flip")
    nd = x.ndim
    axes = tuple(range(nd)) if axis is None else _axes(axis, nd, "flip")
    if not axes:
        return x
    return apply(Flip, x, axis=tuple(a - nd for a in axes))


def cumsum(x, axis=None):
    """Cumulative sum along ``axis`` (None: of the flattened x)."""
    x = _t(x, "cumsum")
    if axis is None:
        x = reshape(x, (-1,))
        axis = 0
    if x.ndim == 0:
        raise ShapeError("cumsum: argument 'x' expected at least 1 dimension for an int axis")
    a = axis_index(axis, x.ndim, "cumsum")
    return apply(Cumsum, x, axis=a - x.ndim)


__all__ = [
    "reshape", "broadcast_to", "transpose", "swapaxes", "expand_dims", "squeeze", "flatten",
    "concatenate", "stack", "pad", "flip", "cumsum",
]
