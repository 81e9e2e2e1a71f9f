"""Tensor: an array and the backend that owns it. TrackedTensor and Variable take part in tapes.

Tensors are immutable values (Variables are the mutable exception). Arithmetic operators and
methods are installed by ``ops.methods`` so that this module depends only on the backend layer;
NumPy's protocols (``np.sin(t)``, ``ndarray * t``) go through ``NUMPY_PROTOCOL``, which
``ops.numpy_protocol`` fills in.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import dtypes as _dt
from . import random_state
from .backend import NUMPY, backend_for, backend_of_array, default_backend
from .backend.base import Device
from .errors import ArgumentError, DeviceError, DTypeError, ShapeError, TapeError

__all__ = ["NUMPY_PROTOCOL", "Tensor", "TrackedTensor", "tracked", "is_scalar", "Variable"]

_EMPTY = frozenset()


class _NumpyProtocol:
    """Where Tensor.__array_ufunc__ and __array_function__ send NumPy's calls. ops.numpy_protocol
    installs its dispatch here when the ops load (this module imports only the backend layer);
    until then NumPy's calls on tensors are declined, and NumPy raises TypeError."""

    __slots__ = ("ufunc", "function")

    def __init__(self):
        self.ufunc = lambda ufunc, method, inputs, kwargs: NotImplemented
        self.function = lambda func, types, args, kwargs: NotImplemented


NUMPY_PROTOCOL = _NumpyProtocol()


def _backend(device):
    return default_backend() if device is None else backend_for(device)


class Tensor:
    """An n-dimensional array on a device (numpy on the CPU, cupy on a GPU).

    ``_node`` is the graph edge (the node that made it, or a leaf node once watched), ``_tapes``
    the ids of tapes that track it, ``_fw`` forward-mode tangents keyed by accumulator id.
    """

    __slots__ = ("_data", "_bk", "_node", "_tapes", "_fw", "__weakref__")
    __array_priority__ = 1000  # cupy_array * t defers to us (NumPy's: __array_ufunc__)
    _batched = False  # True for vmap.BatchedTensor (a per-example view inside ag.vmap)
    __hash__ = object.__hash__  # identity hashing; == is elementwise

    def __init__(self, data, bk=None):
        if bk is None:  # public construction: Tensor(array_like)
            t = Tensor.from_array(data)
            data, bk = t._data, t._bk
        self._data = data
        self._bk = bk
        self._node = None
        self._tapes = _EMPTY
        self._fw = None

    # ---- construction ----------------------------------------------------------------------
    @staticmethod
    def from_array(array, device=None, dtype=None, copy: bool = True) -> "Tensor":
        """A tensor from a numpy/cupy array (dtype kept), a Tensor, nested lists or a scalar.

        Lists and Python floats become float32 (as in PyTorch); ints stay int64. The array is
        copied (``copy=True``, the default), so writing into it later cannot change a value a
        tape saved. ``copy=False`` is the zero-copy promise: the tensor shares the caller's
        buffer where the device allows, and the caller must not write into it while a tape
        may need it (``ag.detect_anomaly()`` detects such writes). A Tensor is returned as it
        is (tensors are immutable values).
        """
        if isinstance(array, Tensor):
            t = array if device is None else array.to(device)
            return (
                t
                if dtype is None
                else Tensor(t._bk.xp.asarray(t._data, _dt.as_dtype(dtype)), t._bk)
            )
        want = None if dtype is None else _dt.as_dtype(dtype)
        if type(array).__module__.startswith("cupy"):
            src = backend_of_array(array)
            bk = src if device is None else backend_for(device)
            if bk is not src:
                return Tensor(bk.asarray(src.to_numpy(array), want), bk)
            arr = bk.asarray(array, want)
            return Tensor(arr.copy() if copy and arr is array else arr, bk)
        fresh = False  # an array made here: nobody else holds it, no copy needed
        if not isinstance(array, np.ndarray):
            if hasattr(array, "__dlpack__") and not isinstance(array, (list, tuple)):
                array = np.from_dlpack(array)
            else:
                try:
                    array = np.asarray(array)
                except ValueError as exc:
                    raise ShapeError(
                        f"Tensor.from_array: argument 'array' expected a rectangular nested "
                        f"list, got a ragged one ({exc})"
                    ) from exc
                fresh = True
                if want is None and array.dtype == np.float64:
                    want = _dt.float32
                elif want is None and array.dtype == np.complex128:
                    want = _dt.complex64  # (as PyTorch: Python numbers give single precision)
        if array.dtype.kind not in "biufc" and array.dtype != _dt.bfloat16:
            raise DTypeError(
                "Tensor.from_array: argument 'array' expected numbers (bool, int, float, "
                f"bfloat16, complex), got dtype={array.dtype}"
            )
        bk = _backend(device)
        arr = bk.asarray(array, want)
        if copy and not fresh and bk is NUMPY and np.may_share_memory(arr, array):
            arr = arr.copy()
        return Tensor(arr, bk)

    @staticmethod
    def _filled(shape, value, dtype, device, op="Tensor.full"):
        dt = _dt.as_dtype(dtype)
        if not isinstance(value, numbers.Number) or (
                isinstance(value, complex) and not _dt.is_complex(dt)):
            raise ArgumentError(f"{op}: argument 'value' expected a number of dtype "
                                f"{_dt.name(dt)}, got {value!r}")
        bk = _backend(device)
        return Tensor(bk.xp.full(_shape(shape, op), value, dtype=_dt.as_dtype(dtype)), bk)

    @staticmethod
    def zeros(shape, dtype="float32", device=None) -> "Tensor":
        return Tensor._filled(shape, 0, dtype, device, "Tensor.zeros")

    @staticmethod
    def ones(shape, dtype="float32", device=None) -> "Tensor":
        return Tensor._filled(shape, 1, dtype, device, "Tensor.ones")

    @staticmethod
    def full(shape, value, dtype="float32", device=None) -> "Tensor":
        return Tensor._filled(shape, value, dtype, device)

    @staticmethod
    def scalar(value, dtype="float32", device=None) -> "Tensor":
        return Tensor._filled((), value, dtype, device, "Tensor.scalar")

    from_scalar = scalar

    @staticmethod
    def zeros_like(t: "Tensor") -> "Tensor":
        return Tensor(t._bk.xp.zeros_like(t._data), t._bk)

    @staticmethod
    def ones_like(t: "Tensor") -> "Tensor":
        return Tensor(t._bk.xp.ones_like(t._data), t._bk)

    @staticmethod
    def randn(shape, seed=None, dtype="float32", device=None) -> "Tensor":
        """Standard normal samples. The same seed gives the same values on every device;
        without one they come from the library's stream seeded by ``ag.manual_seed``."""
        rng = _generator(seed, "Tensor.randn")
        arr = rng.standard_normal(_shape(shape, "Tensor.randn")).astype(_dt.as_dtype(dtype))
        bk = _backend(device)
        return Tensor(bk.asarray(arr), bk)

    @staticmethod
    def rand(shape, seed=None, dtype="float32", device=None) -> "Tensor":
        """Uniform samples in [0, 1) (the seed as in ``randn``)."""
        rng = _generator(seed, "Tensor.rand")
        arr = rng.random(_shape(shape, "Tensor.rand")).astype(_dt.as_dtype(dtype))
        bk = _backend(device)
        return Tensor(bk.asarray(arr), bk)

    @staticmethod
    def arange(start, stop=None, step=1, dtype=None, device=None) -> "Tensor":
        for name, v in (("start", start), ("stop", stop), ("step", step)):
            if v is not None and (not isinstance(v, numbers.Real) or isinstance(v, bool)):
                raise ArgumentError(f"Tensor.arange: argument '{name}' expected a real number, "
                                    f"got {v!r}")
        if step == 0:
            raise ArgumentError("Tensor.arange: argument 'step' expected a non-zero number, got 0")
        bk = _backend(device)
        if stop is None:
            start, stop = 0, start
        return Tensor(
            bk.xp.arange(start, stop, step, dtype=None if dtype is None else _dt.as_dtype(dtype)),
            bk,
        )

    # ---- properties ------------------------------------------------------------------------
    @property
    def data(self):
        """The backend array (numpy.ndarray or cupy.ndarray). On the CPU a read-only view: a
        tape may have saved this array, and writing into it would change a gradient. CuPy has
        no read-only arrays: do not write into a GPU tensor's data (``ag.detect_anomaly()``
        detects it)."""
        return self._bk.readonly(self._data)

    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def device(self) -> Device:
        return self._bk.device

    @property
    def backend(self):
        return self._bk

    @property
    def is_tracked(self) -> bool:
        return bool(self._tapes)

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise ShapeError("len: argument 'self' expected at least 1 dimension, got a 0-d tensor")
        return self._data.shape[0]

    # ---- conversion ------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The values as a numpy array: a copy from a GPU, a read-only view of a CPU tensor
        (a tape may have saved the array; ``.numpy().copy()`` gives a writable copy)."""
        return self._bk.host_view(self._data)

    def to_scalar(self):
        """The value of a one-element tensor as a Python number (synchronises on a GPU)."""
        if self._data.size != 1:
            raise ShapeError(
                f"to_scalar: argument 'self' expected exactly one element, got shape {self.shape}"
            )
        return self._data.reshape(()).item()

    item = to_scalar

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device) -> "Tensor":
        """A copy on another device (itself when already there). Not differentiable."""
        bk = backend_for(device)
        if bk is self._bk:
            return self
        host = self._bk.to_numpy(self._data)
        return Tensor(bk.asarray(host), bk)

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def detach(self) -> "Tensor":
        """The same values, cut from every tape and accumulator."""
        return Tensor(self._data, self._bk)

    def __array__(self, dtype=None, copy=None):
        """np.asarray(t): a read-only view of a CPU tensor (np.array(t) a writable copy).
        Refused while a tape records this tensor or an accumulator carries its tangent: NumPy
        would go on with a plain array, and the gradient through it would silently be lost
        (``np.array([t1, t2])``; NumPy does not dispatch on tensors inside lists). Use
        ``ag.stack``, or ``t.detach().numpy()`` to leave the graph on purpose."""
        if self._bk is not NUMPY:
            raise DeviceError(
                f"__array__: tensor lives on {self.device}; call .numpy() to copy it to the host"
            )
        if self._tapes or self._fw:
            _refuse_if_observed(self)
        a = self._data
        if dtype is not None and np.dtype(dtype) != a.dtype:
            if copy is False:
                raise ValueError(f"__array__: converting {a.dtype} to {np.dtype(dtype)} needs a "
                                 "copy, but copy=False was asked")
            return a.astype(dtype)
        return a.copy() if copy else NUMPY.readonly(a)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy ufuncs and operators with a tensor operand (np.sin(t), ndarray * t,
        np.add.reduce(t)): the ag op of the same meaning, recorded on the tapes, or TypeError
        naming the nearest op (ops/numpy_protocol.py); never a plain array without gradient."""
        return NUMPY_PROTOCOL.ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        """NumPy functions with a tensor argument (np.sum(t, axis=0), np.concatenate([t, a])):
        as __array_ufunc__."""
        return NUMPY_PROTOCOL.function(func, types, args, kwargs)

    def __dlpack__(self, *args, **kwargs):
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise ShapeError(
                f"bool: argument 'self' expected one element, got shape {self.shape}; "
                "use .any() or .all()"
            )
        return bool(self._data.reshape(()).item())

    def __float__(self) -> float:
        return float(self.to_scalar())

    def __int__(self) -> int:
        return int(self.to_scalar())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise ArgumentError(f"__index__: expected a one-element integer tensor, got {self!r}")
        return int(self.to_scalar())

    def __repr__(self) -> str:
        kind = type(self).__name__
        body = np.array2string(self.numpy(), separator=", ", threshold=20, precision=4)
        return f"{kind}({body}, dtype={_dt.name(self.dtype)}, device={self.device})"

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def _refuse_if_observed(t) -> None:
    from .ops.context import LIVE, STATE  # (a cycle: the ops build on tensors)

    tapes = [tid for tid in t._tapes if tid in LIVE and tid in STATE.recording]
    accs = [a for a in STATE.accumulators if t._fw and a.id in t._fw]
    if tapes or accs:
        who = (f"GradientTape {tapes[0]} records it" if tapes else
               "a ForwardAccumulator carries its tangent")
        raise TapeError(
            f"__array__: {who}, and converting it to a NumPy array would cut it from the "
            "graph without an error (np.array([t1, t2]), np.sum([t1, t2]): NumPy does not "
            "dispatch on tensors inside lists); use ag.stack / ag ops, or t.detach().numpy() "
            "to leave the graph on purpose")


class TrackedTensor(Tensor):
    """A tensor that one or more tapes (or accumulators) track. Made by ``tape.watch`` and by ops
    on tracked inputs."""

    __slots__ = ()


def tracked(data, bk, node, tapes) -> TrackedTensor:
    """A TrackedTensor linked to ``node`` and tracked by the tape ids in ``tapes`` (frozenset)."""
    t = TrackedTensor(data, bk)
    t._node = node
    t._tapes = tapes
    return t


def _shape(shape, op: str = "Tensor", allow_minus_one: bool = False) -> tuple:
    """A shape as a tuple of ints; anything else (floats, strings, negative sizes) raises."""
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise ShapeError(f"{op}: argument 'shape' expected an int or a sequence of ints, "
                         f"got {shape!r}")
    shape = tuple(shape)
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape):
        raise ShapeError(f"{op}: argument 'shape' expected integer sizes, got {shape!r}")
    out = tuple(int(s) for s in shape)
    if any(s < 0 and not (allow_minus_one and s == -1) for s in out):
        raise ShapeError(f"{op}: argument 'shape' expected non-negative sizes, got {out}")
    return out


def _generator(seed, op):
    """A generator for ``seed``; with None, the library's stream for ``op`` (ag.manual_seed)."""
    if seed is None:
        return random_state.generator(op)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ArgumentError(f"{op}: argument 'seed' expected None or an int >= 0, got {seed!r}")
    return np.random.default_rng(seed)


def is_scalar(x) -> bool:
    return isinstance(x, numbers.Number) and not isinstance(x, Tensor)


class Variable(TrackedTensor):
    """Trainable, mutable state (``ag.nn.Parameter`` is one). A tape used as a context watches
    every Variable read inside it. ``assign`` replaces the value; values saved by earlier ops keep
    the old array."""

    __slots__ = ("name", "trainable")

    def __init__(
        self, value, name: str | None = None, trainable: bool = True, dtype=None, device=None
    ):
        t = Tensor.from_array(value, device=device, dtype=dtype)
        if trainable and not _dt.is_inexact(t.dtype):
            raise DTypeError(
                f"Variable: argument 'value' expected a floating dtype for a trainable variable, "
                f"got {_dt.name(t.dtype)}"
            )
        data = t._data.copy() if t._data is getattr(value, "_data", value) else t._data
        super().__init__(data, t._bk)
        self.name = name
        self.trainable = trainable

    def assign(self, value) -> "Variable":
        """Replace the value (same shape; cast to this variable's dtype; same device)."""
        v = value._data if isinstance(value, Tensor) else value
        if isinstance(value, Tensor) and value._bk is not self._bk:
            raise DeviceError(
                f"Variable.assign: argument 'value' expected device {self.device}, "
                f"got {value.device}"
            )
        arr = self._bk.xp.asarray(v, dtype=self._data.dtype)
        if arr.shape != self._data.shape:
            raise ShapeError(
                f"Variable.assign: argument 'value' expected shape {self.shape}, got {arr.shape}"
            )
        self._data = arr
        return self

    def assign_add(self, delta) -> "Variable":
        return self.assign(self._data + (delta._data if isinstance(delta, Tensor) else delta))

    def assign_sub(self, delta) -> "Variable":
        return self.assign(self._data - (delta._data if isinstance(delta, Tensor) else delta))

    def value(self) -> Tensor:
        """A plain (untracked) tensor holding the current value."""
        return Tensor(self._data, self._bk)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"Variable{label}{Tensor.__repr__(self)[len('Variable') :]}"
