"""Indexing: getitem (basic, integer-array and boolean-mask indexing), take, take_along_axis,
and the scatter-add primitive that is their reverse rule.

An index is normalised before recording into a canonical ``spec`` (a hashable tuple with one
entry per index position, covering every dimension of x) plus the integer index arrays, which
travel as non-differentiable inputs (so they live on x's device and are released with the node):

* ``int``                      an integer index (non-negative)
* ``(start, stop, step)``      a slice, from ``slice.indices`` (``stop`` None: run through 0)
* ``None``                     a new axis of length 1
* ``"array"``                  the next integer index array input

Boolean masks become the integer arrays of their ``nonzero()`` (NumPy defines them so), and
Ellipsis is expanded into full slices. NumPy's placement rule for advanced indices holds: when the
advanced entries (arrays, and ints once any array is present) are not adjacent, their broadcast
dimensions come first. Rules may carry leading batch axes; since NumPy would put those batch axes
after such front dimensions, the forwards move them back to the front.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..backend import NUMPY
from ..errors import ArgumentError, DeviceError, DTypeError, ShapeError, VmapError, describe
from ..tensor import Tensor
from . import sampling as S
from ._util import as_tensor, axis_index, check_values
from .registry import apply, defop
from .shape import _full_spec, broadcast_to, reshape

ARR = "array"


# ---- the canonical index ----------------------------------------------------------------------


def _layout(spec, arrays):
    """(xp index tuple, dims consumed, dims produced, advanced-dims-first, advanced ndim)."""
    items = []
    k = nd_in = nd_out = 0
    pos = []
    has_arr = bool(arrays)
    for i, e in enumerate(spec):
        if e is None:
            items.append(None)
            nd_out += 1
        elif isinstance(e, str):
            items.append(arrays[k])
            k += 1
            nd_in += 1
            pos.append(i)
        elif isinstance(e, tuple):
            items.append(slice(*e))
            nd_in += 1
            nd_out += 1
        else:
            items.append(e)
            nd_in += 1
            if has_arr:
                pos.append(i)
    nadv = max((a.ndim for a in arrays), default=0)
    front = has_arr and pos[-1] - pos[0] + 1 != len(pos)
    return tuple(items), nd_in, nd_out + nadv, front, nadv


def _move(y, b, nadv, to_front, xp):
    """Swap a block of ``b`` batch axes with the ``nadv`` advanced axes ahead of/behind it."""
    if to_front:  # y: adv + batch + rest -> batch + adv + rest
        perm = list(range(nadv, nadv + b)) + list(range(nadv))
    else:  # y: batch + adv + rest -> adv + batch + rest
        perm = list(range(b, b + nadv)) + list(range(b))
    return xp.transpose(y, perm + list(range(b + nadv, y.ndim)))


def _broadcast_shapes(shapes, op):
    nd = max((len(s) for s in shapes), default=0)
    out = [1] * nd
    for s in shapes:
        for i, d in enumerate(s):
            j = nd - len(s) + i
            if d != 1:
                if out[j] not in (1, d):
                    raise ShapeError(
                        f"{op}: index arrays expected shapes that broadcast together, got "
                        f"{[tuple(x) for x in shapes]}"
                    )
                out[j] = d
    return tuple(out)


def indexed_shape(shape, spec, arrays) -> tuple:
    """The shape of x[index] for x of ``shape`` (spec and arrays as in the module docstring)."""
    adv = _broadcast_shapes([a.shape for a in arrays], "getitem") if arrays else None
    _, _, _, front, _ = _layout(spec, arrays)
    out = []
    placed = adv is None
    for e in spec:
        if e is None:
            out.append(1)
        elif isinstance(e, tuple):
            out.append(_slice_len(*e))
        elif not placed and not front:  # the first advanced entry holds all advanced dims
            out.extend(adv)
            placed = True
    if front:
        out = list(adv) + out
    return tuple(out)


def _slice_len(start, stop, step):
    return len(range(start, -1 if stop is None else stop, step))


def _index_array(item, bk, op):
    """An index item that is an array (Tensor, numpy/cupy array, list) as a backend array."""
    if isinstance(item, Tensor):
        if item._bk is not bk:
            raise DeviceError(
                f"{op}: argument 'index' expected index tensors on {bk.device} like x, got one on "
                f"{item.device}"
            )
        if item._batched:  # inside ag.vmap: a different index per example, kept as a Tensor
            return _batched_index(item, op)
        arr = item._data
    elif isinstance(item, (list, tuple)):
        try:
            arr = bk.asarray(item)
        except (ValueError, TypeError) as exc:
            raise ArgumentError(
                f"{op}: argument 'index' expected a rectangular list of ints, got {item!r}"[:200]
            ) from exc
        if arr.size == 0 and arr.dtype.kind == "f":  # [] is an empty integer index
            arr = arr.astype(bk.xp.intp)
    else:
        mod = type(item).__module__
        if mod.startswith("cupy") and bk.is_host:
            raise DeviceError(
                f"{op}: argument 'index' expected index arrays on {bk.device} like x, got "
                f"{describe(item)} on a GPU"
            )
        arr = bk.asarray(item)  # a numpy index array is copied to x's device (it is small)
    kind = arr.dtype.kind
    if kind not in "iub":
        raise DTypeError(
            f"{op}: argument 'index' expected integer or boolean index arrays, got dtype "
            f"{arr.dtype}"
        )
    return arr


def _batched_index(item, op):
    """A batched index array (inside ag.vmap) stays a Tensor: the op's batching rule gathers
    every example's own positions in one op (GetItem.batch). A boolean mask that differs per
    example would select a different number of elements per example."""
    kind = item.dtype.kind
    if kind == "b":
        raise VmapError(f"{op}: a boolean mask that differs per example inside ag.vmap selects a "
                        "different number of elements per example (no batched shape); use "
                        "ag.where(mask, x, 0) or integer indices")
    if kind not in "iu":
        raise DTypeError(f"{op}: argument 'index' expected integer or boolean index arrays, got "
                         f"dtype {item.dtype}")
    return item


def _index_tensor(a, bk):
    """An index array from parse_index as an op input (a batched one is already a Tensor)."""
    return a if isinstance(a, Tensor) else Tensor(a, bk)


def _is_array_like(item):
    if isinstance(item, (Tensor, list)):
        return True
    return type(item).__module__.startswith(("numpy", "cupy")) and hasattr(item, "ndim") \
        and not isinstance(item, numbers.Number)


def parse_index(shape, index, bk, op="getitem"):
    """Normalise a NumPy-style index for an array of ``shape`` on backend ``bk``.

    Returns (spec, arrays): the canonical spec tuple and the integer index arrays (backend
    arrays, in order). Raises ShapeError for out-of-range or mismatched indices and
    ArgumentError/DTypeError for unsupported index kinds.
    """
    if not isinstance(index, tuple):
        index = (index,)
    n_ell = sum(1 for it in index if it is Ellipsis)
    if n_ell > 1:
        raise ArgumentError(f"{op}: argument 'index' may hold at most one Ellipsis, got {n_ell}")
    items = [_classify_item(it, bk, op) for it in index]
    consumed = sum(_DIMS_CONSUMED[kind](val) for kind, val in items)
    nd = len(shape)
    if consumed > nd:
        raise ShapeError(
            f"{op}: argument 'index' indexes {consumed} dimensions, but x has shape {shape} "
            f"({nd} dimensions)"
        )
    spec: list = []
    arrays: list = []
    d = 0
    for kind, val in items:
        if kind is Ellipsis:
            spec.extend((0, shape[d + k], 1) for k in range(nd - consumed))
            d += nd - consumed
        elif kind is None:
            spec.append(None)
        else:
            d = _spec_item(kind, val, shape, d, spec, arrays, bk, op)
    spec.extend((0, shape[k], 1) for k in range(d, nd))  # trailing dims: full slices
    if arrays:
        _broadcast_shapes([a.shape for a in arrays], op)
    return tuple(spec), arrays


# how many of x's dims each kind of index item consumes
_DIMS_CONSUMED = {Ellipsis: lambda v: 0, None: lambda v: 0, "int": lambda v: 1,
                  "slice": lambda v: 1, "array": lambda v: 1, "mask": lambda v: v.ndim}


def _classify_item(it, bk, op):
    """(kind, value) of one index item: Ellipsis, None, "int", "slice", "array" (integer
    indices) or "mask" (a boolean array); anything else raises."""
    if it is Ellipsis or it is None:
        return it, None
    if isinstance(it, bool) or type(it).__name__ == "bool_":
        raise ArgumentError(
            f"{op}: argument 'index' got a scalar bool {it!r}; use a boolean mask array "
            "(a Tensor of the indexed shape) or ag.where"
        )
    if isinstance(it, numbers.Integral):
        return "int", int(it)
    if isinstance(it, slice):
        return "slice", it
    if _is_array_like(it):
        arr = _index_array(it, bk, op)
        if arr.dtype.kind != "b":
            return "array", arr
        if arr.ndim == 0:
            raise ArgumentError(
                f"{op}: argument 'index' got a 0-d boolean mask; use a mask with the "
                "indexed shape"
            )
        return "mask", arr
    raise ArgumentError(
        f"{op}: argument 'index' expected ints, slices, None, Ellipsis, or integer/"
        f"boolean arrays, got {describe(it)}"
    )


def _spec_item(kind, val, shape, d, spec, arrays, bk, op):
    """Append the spec entries (and index arrays) of one item that starts at axis d; returns
    the next axis."""
    if kind == "int":
        n = shape[d]
        if not -n <= val < n:
            raise ShapeError(
                f"{op}: index {val} is out of range for axis {d} with size {n} "
                f"(x has shape {shape})"
            )
        spec.append(val % n)
        return d + 1
    if kind == "slice":
        try:
            start, stop, step = val.indices(shape[d])
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"{op}: argument 'index' has a bad slice {val!r}: {exc}") \
                from exc
        spec.append((start, stop if stop >= 0 else None, step))
        return d + 1
    if kind == "array":
        _check_bounds(check_values(val) if isinstance(val, Tensor) else val, shape[d], d,
                      shape, op)
        spec.append(ARR)
        arrays.append(val)
        return d + 1
    # a boolean mask: its nonzero() positions, one array per dim it covers
    want = tuple(shape[d:d + val.ndim])
    if tuple(val.shape) != want:
        raise ShapeError(
            f"{op}: boolean mask of shape {tuple(val.shape)} expected the shape {want} of "
            f"the dims it indexes (x has shape {shape}, mask starts at axis {d})"
        )
    for a in bk.xp.nonzero(val):
        spec.append(ARR)
        arrays.append(a)
    return d + val.ndim


def _check_bounds(arr, n, axis, shape, op):
    """Out-of-range integer indices raise (NumPy raises; CuPy would wrap silently). One host
    read of the result on a GPU."""
    if arr.size == 0:
        return
    bad = bool(((arr < -n) | (arr >= n)).any())
    if bad:
        lo, hi = int(arr.min()), int(arr.max())
        raise ShapeError(
            f"{op}: index array with values in [{lo}, {hi}] is out of range for axis {axis} "
            f"with size {n} (x has shape {shape})"
        )


def _is_identity(spec, shape):
    return len(spec) == len(shape) and all(
        isinstance(e, tuple) and e == (0, n, 1) for e, n in zip(spec, shape)
    )


# ---- primitives -------------------------------------------------------------------------------


def _index_sample(draw, shape=None):
    """(shape, spec, arrays) for a random index of a random shape: basic, integer-array
    (adjacent and separated, repeated indices), and boolean-mask kinds."""
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    shape = shape if shape is not None else draw(S.shapes(min_dims=1, max_dims=3))
    nd = len(shape)
    kind = draw(st.sampled_from(["basic", "array", "arrays", "mixed", "mask"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    idx = []
    if kind == "basic":
        for n in shape:
            c = draw(st.sampled_from(["int", "slice", "newaxis+slice", "full"]))
            if c == "int":
                idx.append(int(rng.integers(-n, n)))
            elif c == "full":
                idx.append(slice(None))
            else:
                step = draw(st.sampled_from([1, 2, -1, -2]))
                a = int(rng.integers(-n, n))
                b = draw(st.sampled_from([None, int(rng.integers(-n - 1, n + 1))]))
                if c == "newaxis+slice":
                    idx.append(None)
                idx.append(slice(a, b, step))
        if draw(st.booleans()):
            idx.insert(draw(st.integers(0, len(idx))), None)
    elif kind == "array":
        ax = draw(st.integers(0, nd - 1))
        n = shape[ax]
        ishape = draw(st.sampled_from([(), (3,), (2, 2)]))
        arr = rng.integers(-n, n, size=ishape)  # small range: repeats are likely
        idx = [slice(None)] * ax + [arr]
    elif kind == "arrays":
        a0 = rng.integers(0, shape[0], size=(2, 1))
        idx = [a0]
        if nd > 1:
            idx.append(rng.integers(-shape[1], shape[1], size=(3,)))
    elif kind == "mixed":  # int and array separated by a slice: advanced dims go first
        if nd < 3:
            idx = [rng.integers(0, shape[0], size=(4,))]
        else:
            idx = [int(rng.integers(0, shape[0])), slice(None, None, -1),
                   rng.integers(0, shape[2], size=(2, 3))]
    else:
        k = draw(st.integers(1, nd))
        start = draw(st.integers(0, nd - k))
        mask = rng.random(shape[start:start + k]) < 0.6
        idx = [slice(None)] * start + [mask]
    spec, arrays = parse_index(tuple(shape), tuple(idx), NUMPY)
    return tuple(shape), spec, [np.asarray(a, dtype=np.int64) for a in arrays]


def _gather_cost(out, *xs, **p):
    return float(out.size)


def _scatter_cost(out, v, *xs, **p):
    return float(out.size + 2 * v.size)


def _getitem_saves(n, params):
    """x's shape, then every index array (inputs 1 .. n-1)."""
    return (None, *range(1, n))


@defop("getitem", params=("index",), cost=_gather_cost, saves=_getitem_saves, complex_ok=True)
class GetItem:
    """y = x[index] (NumPy basic, integer-array and mask indexing, index in canonical form).
    dy/dx: the cotangent scatter-added into zeros of x's shape (repeated indices accumulate)."""

    def batch(F, args, dims, *, index):
        """x's extra leading axes are a batch the forward keeps in front. Batched index arrays
        (a different index per example): one gather, see _gather_batched."""
        if any(d is not None for d in dims[1:]):
            return _gather_batched(F, args, dims, index)
        return F.apply(GetItem, F.to_front(args[0], dims[0]), *args[1:], index=index), 0

    def forward(bk, x, *arrays, index):
        idx, nd_in, _, front, nadv = _layout(index, arrays)
        b = x.ndim - nd_in
        if b:
            idx = (slice(None),) * b + idx
        y = x[idx]
        if b and front and nadv:
            y = _move(y, b, nadv, True, bk.xp)
        if type(y) is not bk.array_type:
            y = bk.xp.asarray(y)
        return y, (x.shape[b:],) + arrays

    def vjp(F, g, saved, needs, *, index):
        shape, *arrays = saved
        return (F.scatter_add(g, *arrays, index=index, shape=tuple(shape)),) \
            + (None,) * len(arrays)

    def jvp(F, ts, saved, *, index):
        return F.getitem(ts[0], *saved[1:], index=index)

    def sample(draw):
        shape, spec, arrays = _index_sample(draw)
        return (draw(S.arrays(shape)), *arrays), {"index": spec}


def _batched_arrays(F, arrays, dims, index):
    """Per-example index arrays for one NumPy index over the whole batch: each batched array's
    batch axis in front, padded so that the batch axes line up (unbatched arrays broadcast as
    they are). Returns (arrays, nadv: the examples' broadcast index rank, contiguous: whether
    the examples' advanced indices are adjacent, npre: output axes before them)."""
    B = F.size
    nadv = max(a.ndim - (d is not None) for a, d in zip(arrays, dims))
    out = []
    for a, d in zip(arrays, dims):
        if d is None:
            out.append(a)
            continue
        a = F.to_front(a, d)
        out.append(F.reshape(a, (B,) + (1,) * (nadv - (a.ndim - 1)) + tuple(a.shape[1:])))
    pos = [i for i, e in enumerate(index) if _advanced(e)]
    contiguous = pos[-1] - pos[0] + 1 == len(pos)
    return out, nadv, contiguous, (pos[0] if contiguous else 0)


def _advanced(e) -> bool:
    """An index entry NumPy treats as advanced next to index arrays: an array or an int (the
    others are None and slices, each one output axis)."""
    return e is not None and not isinstance(e, tuple)


def _batch_positions(F, like, nadv):
    """arange(B) shaped (B, 1, ..., 1) to index the batch axis next to the examples' arrays."""
    xp = like._bk.xp
    return Tensor(xp.arange(F.size, dtype=like.dtype).reshape((F.size,) + (1,) * nadv),
                  like._bk)


def _gather_batched(F, args, dims, index):
    """getitem with per-example index arrays, one gather. An unbatched x is indexed by the
    batched arrays directly: the batch is the first axis of the advanced block. A batched x gets
    arange(B) as an extra leading index array (example b reads its own slice); NumPy then puts
    the advanced block first wherever it was, so the axes before it are moved back in front of
    it. A logical x with leading axes beyond the index (a tangent batch) takes the loop."""
    x, arrays = args[0], args[1:]
    dx, darrs = dims[0], dims[1:]
    nd_in = sum(e is not None for e in index)
    if x.ndim - (dx is not None) != nd_in:
        return F.loop(GetItem, args, dims, {"index": index})
    arrs, nadv, contiguous, npre = _batched_arrays(F, arrays, darrs, index)
    if dx is None:
        return F.apply(GetItem, x, *arrs, index=index), npre
    ar = _batch_positions(F, next(a for a, d in zip(arrays, darrs) if d is not None), nadv)
    y = F.apply(GetItem, F.to_front(x, dx), ar, *arrs, index=(ARR,) + tuple(index))
    if npre:  # (B, adv..., pre..., post...) -> (B, pre..., adv..., post...)
        k = 1 + nadv
        perm = (0,) + tuple(range(k, k + npre)) + tuple(range(1, k)) + tuple(
            range(k + npre, y.ndim))
        y = F.transpose(y, perm)
    return y, 0


def _scatter_batched(F, args, dims, index, shape):
    """scatter_add with per-example index arrays (the adjoint of _gather_batched): one scatter
    into a (B,) + shape output, arange(B) indexing its batch axis; v laid out as NumPy lays out
    the gather with that extra index."""
    v, arrays = args[0], args[1:]
    dv, darrs = dims[0], dims[1:]
    arrs, nadv, contiguous, npre = _batched_arrays(F, arrays, darrs, index)
    nd_out = sum(not _advanced(e) for e in index) + nadv
    if v.ndim - (dv is not None) != nd_out:
        return F.loop(ScatterAdd, args, dims, {"index": index, "shape": shape})
    v = F.front(v, dv)
    if npre:  # (B, pre..., adv..., post...) -> (B, adv..., pre..., post...)
        perm = (0,) + tuple(range(1 + npre, 1 + npre + nadv)) + tuple(range(1, 1 + npre)) \
            + tuple(range(1 + npre + nadv, v.ndim))
        v = F.transpose(v, perm)
    ar = _batch_positions(F, next(a for a, d in zip(arrays, darrs) if d is not None), nadv)
    y = F.apply(ScatterAdd, v, ar, *arrs, index=(ARR,) + tuple(index),
                shape=(F.size,) + tuple(shape))
    return y, 0


def _scatter_deterministic(bk, params):
    # basic indices never repeat an element (plain assignment); index arrays go through
    # bk.scatter_add, which sums floating values in a fixed order on every backend that has
    # deterministic_scatter_add (the CuPy backend's sort-based segment sum)
    return (bk.deterministic_scatter or ARR not in params["index"]
            or hasattr(bk, "deterministic_scatter_add"))


def _index_arrays(n, params):
    """every index array (inputs 1 .. n-1)."""
    return tuple(range(1, n))


@defop("scatter_add", params=("index", "shape"), cost=_scatter_cost,
       deterministic=_scatter_deterministic, saves=_index_arrays, complex_ok=True)
class ScatterAdd:
    """y = zeros(shape); y[index] += v, with repeated indices accumulated (the adjoint of
    getitem). dy/dv: gather, v_bar = y_bar[index]."""

    def batch(F, args, dims, *, index, shape):
        if any(d is not None for d in dims[1:]):
            return _scatter_batched(F, args, dims, index, shape)
        return F.apply(ScatterAdd, F.to_front(args[0], dims[0]), *args[1:], index=index,
                       shape=shape), 0

    def forward(bk, v, *arrays, index, shape):
        idx, _, nd_out, front, nadv = _layout(index, arrays)
        b = v.ndim - nd_out
        out = bk.xp.zeros(tuple(v.shape[:b]) + tuple(shape), dtype=v.dtype)
        if b:
            idx = (slice(None),) * b + idx
            if front and nadv:
                v = _move(v, b, nadv, False, bk.xp)
        if arrays:
            bk.scatter_add(out, idx, v)
        else:
            out[idx] = v
        return out, tuple(arrays)

    def vjp(F, g, saved, needs, *, index, shape):
        return (F.getitem(g, *saved, index=index),) + (None,) * len(saved)

    def jvp(F, ts, saved, *, index, shape):
        t = ts[0]
        return None if t is None else F.scatter_add(t, *saved, index=index, shape=shape)

    def sample(draw):
        shape, spec, arrays = _index_sample(draw)
        vshape = indexed_shape(shape, spec, arrays)
        return (draw(S.arrays(vshape)), *arrays), {"index": spec, "shape": shape}


# ---- public functions -------------------------------------------------------------------------


def _gather(x, spec, arrays):
    if not arrays and _is_identity(spec, x.shape):
        return x
    bk = x._bk
    return apply(GetItem, x, *(_index_tensor(a, bk) for a in arrays), index=spec)


def getitem(x, index):
    """x[index] with NumPy semantics: ints, slices (any step), None, Ellipsis, integer arrays
    (Tensors, numpy/cupy arrays or lists; broadcast together; repeated indices allowed) and
    boolean masks. The gradient scatter-adds into zeros of x's shape."""
    x = as_tensor(x, None, "x", "getitem")
    if not isinstance(x, Tensor):
        raise ArgumentError(f"getitem: argument 'x' expected a Tensor, got {describe(x)}")
    spec, arrays = parse_index(x.shape, index, x._bk, "getitem")
    return _gather(x, spec, arrays)


def index_add(x, index, values):
    """A new tensor: x with ``values`` added at x[index] (out of place; repeated indices
    accumulate). Differentiable in x (identity) and values (gather)."""
    x = as_tensor(x, None, "x", "index_add")
    values = as_tensor(values, x, "values", "index_add")
    if isinstance(values, numbers.Number):
        values = Tensor(x._bk.xp.asarray(values, dtype=x.dtype), x._bk)
    spec, arrays = parse_index(x.shape, index, x._bk, "index_add")
    shape = indexed_shape(x.shape, spec, arrays)
    if values.shape != shape:
        if len(values.shape) > len(shape) or any(
            v not in (1, s) for v, s in zip(values.shape[::-1], shape[::-1])
        ):
            raise ShapeError(
                f"index_add: argument 'values' of shape {values.shape} expected to broadcast to "
                f"the indexed shape {shape}"
            )
        values = broadcast_to(values, shape)
    bk = x._bk
    return x + apply(ScatterAdd, values, *(_index_tensor(a, bk) for a in arrays), index=spec,
                     shape=x.shape)


def take(x, indices, axis=None):
    """Elements of x at integer ``indices`` along ``axis`` (None: of the flattened x), as
    numpy.take: out shape x.shape[:axis] + indices.shape + x.shape[axis+1:]."""
    x = as_tensor(x, None, "x", "take")
    if axis is None:
        x = reshape(x, (-1,))
        axis = 0
    nd = x.ndim
    axis = axis_index(axis, nd, "take")
    if isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
        index = (slice(None),) * axis + (int(indices),)
    else:
        arr = _index_array(indices, x._bk, "take")
        if arr.dtype.kind == "b":
            raise DTypeError("take: argument 'indices' expected integers, got a boolean array")
        index = (slice(None),) * axis + (arr,)
    spec, arrays = parse_index(x.shape, index, x._bk, "take")
    return _gather(x, spec, arrays)


def take_along_axis(x, indices, axis):
    """out[..., i, ...] = x[..., indices[..., i, ...], ...] along ``axis`` (numpy's
    take_along_axis; indices has x's ndim and broadcasts against x on the other axes).
    ``axis=None`` works on the flattened x with 1-d indices."""
    x = as_tensor(x, None, "x", "take_along_axis")
    bk = x._bk
    idx = _index_array(indices, bk, "take_along_axis")
    if idx.dtype.kind == "b":
        raise DTypeError("take_along_axis: argument 'indices' expected integers, got booleans")
    if axis is None:
        x = reshape(x, (-1,))
        axis = 0
    nd = x.ndim
    axis = axis_index(axis, nd, "take_along_axis")
    if idx.ndim != nd:
        raise ShapeError(
            f"take_along_axis: argument 'indices' expected {nd} dimensions like x {x.shape}, "
            f"got shape {tuple(idx.shape)}"
        )
    _check_bounds(check_values(idx) if isinstance(idx, Tensor) else idx, x.shape[axis], axis,
                  x.shape, "take_along_axis")
    arrays = []
    for d in range(nd):
        if d == axis:
            arrays.append(idx)
        else:
            shp = [1] * nd
            shp[d] = x.shape[d]
            arrays.append(bk.xp.arange(x.shape[d]).reshape(shp))
    _broadcast_shapes([a.shape for a in arrays], "take_along_axis")
    return _gather(x, (ARR,) * nd, arrays)


def split(x, indices_or_sections, axis=0) -> list:
    """x cut along ``axis`` into a list: an int N gives N equal parts (it must divide the
    length); a sequence of indices gives the cut points, as numpy.split."""

    x = as_tensor(x, None, "x", "split")
    if x.ndim == 0:
        raise ShapeError("split: argument 'x' expected at least 1 dimension, got a 0-d tensor")
    a = axis_index(axis, x.ndim, "split")
    n = x.shape[a]
    if isinstance(indices_or_sections, numbers.Integral) and not isinstance(
            indices_or_sections, bool):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ShapeError(
                f"split: argument 'indices_or_sections' expected a positive divisor of the axis "
                f"length {n}, got {k} (use a list of cut points for unequal parts)"
            )
        cuts = [i * (n // k) for i in range(1, k)]
    else:
        try:
            cuts = [int(c) for c in indices_or_sections]
        except TypeError as exc:
            raise ArgumentError(
                f"split: argument 'indices_or_sections' expected an int or a sequence of ints, "
                f"got {indices_or_sections!r}"
            ) from exc
    bounds = [0] + cuts + [n]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        lo, hi, _ = slice(lo, hi).indices(n)
        hi = max(hi, lo)
        if (lo, hi) == (0, n):
            out.append(x)
        else:
            out.append(apply(GetItem, x, index=_full_spec(x.shape, a, (lo, hi, 1))))
    return out


__all__ = ["getitem", "index_add", "take", "take_along_axis", "split"]
