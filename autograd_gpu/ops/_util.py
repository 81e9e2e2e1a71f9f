"""Small helpers shared by op families."""

from __future__ import annotations

import numbers

import numpy as np

from ..dtypes import bfloat16 as _BF16
from ..errors import ArgumentError, DeviceError, ShapeError, describe
from ..tensor import Tensor, TrackedTensor, Variable

__all__ = [
    "FAST_ARGS", "weak_scalars", "scale", "tsum", "as_tensor", "norm_axis", "positions",
    "axis_index", "host_array", "real_only", "check_values",
]

# argument types that need no coercion (checked with one set lookup on hot paths)
FAST_ARGS = frozenset({Tensor, TrackedTensor, Variable, int, float})


_BF16_SCALAR = _BF16.type


def weak_scalars(a, b):
    """NumPy's weak-scalar rule (NEP 50: a Python float takes the array's dtype) for bfloat16:
    NumPy applies it to its own float types, but a Python float promotes an ml_dtypes bfloat16
    array to float32. So a Python float next to a NumPy bfloat16 array becomes a bfloat16
    scalar first, as NEP 50 would make it (the arithmetic then stays in bfloat16, rounded as
    for float16). Anything else passes through; CuPy arrays take their own path. Ops with float
    constants inside (sigmoid's halves, GELU's) compute a bfloat16 input in float32 and round
    the result once with ``bk.astype``."""
    if type(b) is float and type(a) is np.ndarray and a.dtype is _BF16:
        return a, _BF16_SCALAR(b)
    if type(a) is float and type(b) is np.ndarray and b.dtype is _BF16:
        return _BF16_SCALAR(a), b
    return a, b


def scale(t, c):
    """t * c, with None (a symbolic zero tangent) passing through."""
    return None if t is None else t * c


def tsum(*terms):
    """Sum of the non-None terms; None when all are None."""
    out = None
    for t in terms:
        if t is not None:
            out = t if out is None else out + t
    return out


def as_tensor(x, like: Tensor | None = None, name: str = "x", op: str = "op"):
    """Coerce an argument for a public function: Tensors and Python numbers pass through;
    arrays and nested lists become Tensors on ``like``'s device (never a silent host->GPU copy
    of a numpy array onto a GPU tensor's device)."""
    if isinstance(x, Tensor) or isinstance(x, numbers.Number):
        return x
    if isinstance(x, (list, tuple)):
        dev = like.device if like is not None else None
        return Tensor.from_array(x, device=dev)
    mod = type(x).__module__
    if mod.startswith(("numpy", "cupy")):
        if like is not None and mod.startswith("numpy") and like._bk.is_host:
            return (
                Tensor(x, like._bk)
                if type(x).__name__ == "ndarray"
                else Tensor.from_array(x, device="cpu")
            )
        t = Tensor.from_array(x)
        if like is None or t._bk is like._bk:
            return t
        raise DeviceError(
            f"{op}: argument '{name}' expected an array on {like.device}, got {describe(x)} "
            f"on {t.device} (move it with ag.Tensor.from_array(x, device=...))"
        )
    raise ArgumentError(f"{op}: argument '{name}' expected a Tensor, got {describe(x)}")


def host_array(v):
    """A constant argument (integer counts, spacings, ...) as a NumPy array: a Tensor's values, a
    device array copied off the device (CuPy refuses np.asarray on one: a TypeError that named
    neither the op nor the argument), or whatever np.asarray reads."""
    if isinstance(v, Tensor):
        return v.numpy()
    if hasattr(v, "__cuda_array_interface__") and hasattr(v, "get"):
        return v.get()
    return np.asarray(v)


def positions(value, n, op, name, *, noun="axes", of=None, error=ShapeError):
    """An axis-like argument (an int, or a tuple or list of ints) as a tuple of positions in
    [0, n), in the order given: the one reading of ``axis``, ``axes`` and ``argnums`` arguments.
    Bools are refused (NumPy raises for ``axis=True``; read as 1 it would pick an axis
    silently), as are positions out of [-n, n) and repeats. ``of`` names what n counts, for the
    message (default: an input of n dimensions)."""
    seq = (value,) if isinstance(value, numbers.Integral) else value
    if not isinstance(seq, (tuple, list)) or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in seq):
        raise error(f"{op}: argument '{name}' expected an int or a sequence of ints, got "
                    f"{value!r}")
    out = []
    for v in seq:
        if not -n <= v < n:
            raise error(f"{op}: argument '{name}' expected {noun} in [{-n}, {n}) for "
                        f"{of or f'an input of {n} dimensions'}, got {value!r}")
        out.append(int(v) % n)
    if len(set(out)) != len(out):
        raise error(f"{op}: argument '{name}' has repeated {noun}: {value!r}")
    return tuple(out)


def axis_index(axis, nd, op, name="axis"):
    """One axis argument as a position in [0, nd) (bools refused, as in positions)."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -nd <= axis < nd:
        raise ShapeError(f"{op}: argument '{name}' expected an int in [{-nd}, {nd}), got "
                         f"{axis!r}")
    return int(axis) % nd


def norm_axis(axis, ndim, op="op"):
    """A reduction's axes, sorted (None -> all axes). A 0-d input takes axis 0 or -1 as its one
    (empty) axis, as its reductions' batching rules ask."""
    if axis is None:
        return tuple(range(ndim))
    if ndim == 0:
        return positions(axis, 1, op, "axis", of="an input of 0 dimensions")
    return tuple(sorted(positions(axis, ndim, op, "axis")))


def real_only(x, name):
    """Raise TypeError (apply turns it into a DTypeError naming the op) for a complex x: for an
    op whose output is real, the engine's check of complex outputs cannot see it."""
    if x.dtype.kind == "c":
        raise TypeError(f"{name} has no complex rules (its output would be real)")


def check_values(t):
    """A tensor's values for a host-side check (label and index bounds): its array, or for a
    batched value inside ag.vmap the physical array of the whole batch (which holds every
    example's values)."""
    while t._batched:
        t = t._phys
    return t._data
