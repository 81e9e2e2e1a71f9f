"""The CuPy backend, imported lazily. Used only when ``cupy.cuda.is_available()`` says so."""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import warnings

import numpy as np

from ..dtypes import bfloat16
from ..errors import DeviceError
from . import cublas
from .base import Device
from .cupy_fused import CupyFusedOps
from .kernels import cast as _cast
from .kernels import elementwise as _ew
from .kernels import segment_sum as _segment_sum
from .kernels import small as _small
from .numpy_backend import NumpyBackend

__all__ = ["cupy_status", "device_count", "gpu_matmul", "CupyBackend"]


@functools.lru_cache(maxsize=1)
def cupy_status() -> tuple[bool, str]:
    """(usable, reason). Never raises and never prints: CuPy without a GPU is a normal setup."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA install
        return False, f"cupy could not be imported ({type(exc).__name__}: {exc})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok = bool(cupy.cuda.is_available())
    except Exception as exc:
        return False, f"cupy.cuda.is_available() failed ({type(exc).__name__}: {exc})"
    if not ok:
        return False, "cupy is installed but cupy.cuda.is_available() is False (no usable GPU)"
    return True, "ok"


def device_count() -> int:
    ok, _ = cupy_status()
    if not ok:
        return 0
    import cupy  # optional dependency (cupy)

    return int(cupy.cuda.runtime.getDeviceCount())


_SUM_ROWS_MIN = 1 << 18  # below this CuPy's reduction is as fast and saves a GEMM launch
_CAST_MIN = 1 << 16  # elements; smaller casts are launch-bound either way
_VEC_MIN = 1 << 16  # the same for the vectorised elementwise kernels
_DIRECT_GEMM = os.environ.get("AUTOGRAD_GPU_GEMM", "cupy").strip().lower() == "cublas"


class CupyScipy:
    """cupyx.scipy's submodules (special, linalg, signal, fft), each imported on first use.
    cupyx.scipy.signal loads cuSPARSE and nvJitLink and cupyx.scipy.linalg cublasLt (seen failing
    to import without them, CuPy 14.2, 2026-12-07): importing all four at once made every special
    and fft op fail on a machine lacking one library. Now only the ops that need the missing
    submodule fail, with a DeviceError naming it."""

    __name__ = "cupyx.scipy"
    SUBMODULES = ("special", "linalg", "signal", "fft")

    def __getattr__(self, name):
        if name not in self.SUBMODULES:
            raise AttributeError(f"cupyx.scipy submodule {name!r} is not one the library uses")
        try:
            mod = importlib.import_module(f"cupyx.scipy.{name}")
        except ImportError as exc:
            raise DeviceError(f"cupyx.scipy.{name} could not be imported on this machine "
                              f"({type(exc).__name__}: {exc}); the ops that use it need it "
                              "(the autograd_gpu[cuda12] and [cuda13] extras install CuPy's CUDA "
                              "libraries with it)") from exc
        setattr(self, name, mod)  # later lookups find the attribute, not __getattr__
        return mod


def gpu_matmul(a, b):
    """``cupy.matmul``, except while ag.cuda.graphed captures a step (CuPy refuses cuBLAS calls
    during capture) or when ``AUTOGRAD_GPU_GEMM=cublas``: then cuBLAS directly (backend/cublas)."""
    import cupy  # optional dependency (cupy)

    if (_DIRECT_GEMM or cublas.active_binding() is not None) and cublas.supports(
            cupy.result_type(a.dtype, b.dtype)) and a.ndim and b.ndim:
        return cublas.matmul(a, b)
    return cupy.matmul(a, b)


# array-with-Python-number arithmetic: CuPy's ufuncs resolve a weak Python scalar on every call
# (about twice the host time of an array-array call, measured on an H100 host); a kernel with
# the number as a typed argument (kernels/small.py: cupy_kernel) does the same arithmetic
# (NumPy's NEP 50 rule: the number takes the array's dtype) at the cost of an array-array call
_PYNUM = (float, int)
_REVERSED = {"sub": "rsub", "div": "rdiv"}  # the number first
_FLOAT_SCALAR = {"e": np.float16, "f": np.float32, "d": np.float64}  # the number in x's dtype
_elementwise = _small.cupy_kernel


def _no_kernel(*args):
    return None


def _bf16():
    return bfloat16


# CURAND_RNG_PSEUDO_PHILOX4_32_10 in curand.h (when cupy.cuda.curand does not name it)
_CURAND_PHILOX = 161


class CupyBackend(CupyFusedOps):
    name = "cupy"  # (for messages and reports; code asks the capability flags below)
    is_host = False  # device arrays: reading a value synchronises and copies
    deterministic_scatter = False  # scatter_add uses atomics (deterministic_scatter_add sorts)
    graph_capture = True  # launches can be captured in a CUDA graph (ag.cuda.graphed)
    cuda_kernels = True  # runs the fused kernels of autograd_gpu/kernels (backend/kernels)

    def __init__(self, index: int = 0):
        ok, reason = cupy_status()
        if not ok:
            raise DeviceError(f"device: requested cuda:{index}, but {reason}")
        import cupy  # optional dependency (cupy)

        n = device_count()
        if index >= n:
            raise DeviceError(
                f"device: requested cuda:{index}, expected an index below {n} (GPUs visible: {n})"
            )
        self.xp = cupy
        self.index = index
        self.device = Device(f"cuda:{index}")
        self.array_type = cupy.ndarray
        self._mixed: dict = {}
        self.small_kernels = True

    matmul = staticmethod(gpu_matmul)

    @functools.cached_property
    def scipy(self):
        """cupyx.scipy (special, linalg, signal, fft): NumpyBackend.scipy's GPU counterpart,
        each submodule imported on first use (see CupyScipy)."""
        return CupyScipy()

    def sum(self, x, axis=None, keepdims=False, dtype=None):
        """``cupy.sum``; a large C-contiguous float array summed over its leading axes (a bias
        gradient) goes through cuBLAS as ones @ x instead (see ``cublas.sum_rows``)."""
        k = len(axis) if isinstance(axis, tuple) else 0
        if (0 < k < x.ndim and x.size >= _SUM_ROWS_MIN and x.flags.c_contiguous
                and cublas.supports(x.dtype)
                and sorted(a % x.ndim for a in axis) == list(range(k))):
            rows = 1
            for n in x.shape[:k]:
                rows *= n
            y = cublas.sum_rows(x.reshape(rows, -1))
            y = y.reshape(((1,) * k if keepdims else ()) + x.shape[k:])
            return y if dtype is None or y.dtype == dtype else y.astype(dtype)
        return self.xp.sum(x, axis=axis, keepdims=keepdims, dtype=dtype)

    def mixed_floats_ok(self, dtypes) -> bool:
        """Whether CuPy's ufuncs take this mix of float dtypes (bfloat16 with float32, say)
        directly, promoting as NumPy does; tried once per mix on a one-element array."""
        key = frozenset(dtypes)
        ok = self._mixed.get(key)
        if ok is None:
            xp = self.xp
            try:
                arrs = [xp.zeros((1,), dtype=d) for d in key]
                want = np.result_type(*key)
                ok = all(f(*arrs[:2]).dtype == want for f in (xp.add, xp.multiply)) \
                    if len(arrs) == 2 else False
            except Exception:
                ok = False
            self._mixed[key] = ok
        return ok

    def astype(self, x, dtype):
        """``x.astype(dtype, copy=False)``; large float32 <-> float16/bfloat16 conversions go
        through the vectorised cast kernel (kernels/cast.cu), about twice as fast."""
        if x.size >= _CAST_MIN and x.dtype != dtype and _cast.FAMILY.ready(self):
            y = _cast.cast(self, x, dtype)
            if y is not None:
                return y
        return x.astype(dtype, copy=False)

    # arrays under SMALL_MAX elements (float32/float64, C-contiguous) take kernels/small.cu:
    # their cost is the launch's host time, about 10 us through a CuPy ufunc or
    # ElementwiseKernel against a few us through a RawModule function. ``small_kernels = False``:
    # CuPy's kernels for every size (for A/B comparisons; AUTOGRAD_GPU_KERNELS=0 turns off every
    # fused kernel). The three callables (``f(op, *arrays, *scalars)`` -> result or None, the
    # entries of backend/kernels/small.py bound to this backend) are instance attributes,
    # resolved on first use, so a call site pays one Python call.
    _SMALL = {"small_scalar": _small.bind_scalar, "small_unary": _small.bind_unary,
              "small_act_grad": _small.bind_act_grad}

    @property
    def small_kernels(self) -> bool:
        return self._small_on

    @small_kernels.setter
    def small_kernels(self, on) -> None:
        self._small_on = bool(on)
        for family in self._SMALL:
            setattr(self, "_" + family, self._small_first(family) if on else _no_kernel)

    def _small_first(self, family):
        def first(*args):
            f = self._SMALL[family](self) if _small.FAMILY.ready(self) else _no_kernel
            if self._small_on:
                setattr(self, "_" + family, f)
            return f(*args)

        return first

    def unary(self, name, x):
        """``cupy.<name>(x)`` (an elementwise math function); small arrays through small.cu."""
        y = self._small_unary(name, x)
        return getattr(self.xp, name)(x) if y is None else y

    def act_grad(self, act, g, y):
        """tanh: g (1 - y^2); sigmoid: g y (1 - y), in one pass for float32/float64."""
        if g.dtype == y.dtype and g.dtype.char in "fd":
            r = self._small_act_grad(act, g, y)
            return _elementwise(act)(g, y) if r is None else r
        return NumpyBackend.act_grad(act, g, y)  # the same array expressions, on cupy arrays

    scalar_kernels = True

    def scalar_op(self, kind, a, b):
        """``a <op> b`` when exactly one of them is a Python float/int and the other a float16/
        float32/float64 array (``kind`` in add, sub, mul, div: "sub" and "div" with the number
        first become rsub/rdiv); None otherwise (the caller uses the ufunc)."""
        ta, tb = type(a), type(b)
        if tb in _PYNUM and ta is self.array_type:
            x, s = a, b
        elif ta in _PYNUM and tb is self.array_type:
            x, s = b, a
            kind = _REVERSED.get(kind, kind)
        else:
            return None
        typ = _FLOAT_SCALAR.get(x.dtype.char)
        if typ is None:
            return None
        s = typ(s)
        y = self._small_scalar(kind, x, s)
        return _elementwise(kind)(x, s) if y is None else y

    def _vec(self, entry, *arrays):
        """A vectorised kernel of kernels/elementwise.cu (``entry``: relu, relu_grad or
        add_rowvec of backend/kernels/elementwise.py) on large arrays, or None."""
        if arrays[0].size >= _VEC_MIN and _ew.FAMILY.ready(self):
            return entry(self, *arrays)
        return None

    def relu(self, x):
        y = self._vec(_ew.relu, x)
        return self.xp.maximum(x, 0) if y is None else y

    def add(self, a, b):
        """a + b: a Python number through the typed scalar kernel, a large array plus a row
        vector over its last axis (a bias) through the vectorised kernel, else cupy.add."""
        y = self.scalar_op("add", a, b)
        if y is None and type(a) is self.array_type and type(b) is self.array_type:
            if b.ndim == 1 and a.ndim > 1:
                y = self._vec(_ew.add_rowvec, a, b)
            elif a.ndim == 1 and b.ndim > 1:
                y = self._vec(_ew.add_rowvec, b, a)
        return self.xp.add(a, b) if y is None else y

    def relu_grad(self, g, x):
        """0 where x <= 0 else g in one pass: the vectorised kernel for large contiguous arrays,
        else a CuPy kernel for float32/float64, else a mask and a product."""
        y = self._vec(_ew.relu_grad, g, x)
        if y is not None:
            return y
        if g.dtype == x.dtype and g.dtype.char in "fd":
            return _elementwise("relu_grad")(g, x)
        return NumpyBackend.relu_grad(g, x)

    def asarray(self, obj, dtype=None):
        with self.xp.cuda.Device(self.index):
            return self.xp.asarray(obj, dtype=dtype)

    def uniform(self, seed: int, shape):
        """float32 U[0, 1) numbers from cuRAND's Philox4x32-10 seeded with ``seed``."""
        xp = self.xp
        curand = getattr(xp.cuda, "curand", None)
        method = getattr(curand, "CURAND_RNG_PSEUDO_PHILOX4_32_10", _CURAND_PHILOX)
        return xp.random.RandomState(seed, method=method).random_sample(shape, dtype=xp.float32)

    @staticmethod
    def sweep_scope():
        """Context around a reverse sweep (nothing to do: CuPy has its own memory pool)."""
        return contextlib.nullcontext()

    def to_numpy(self, arr):
        return self.xp.asnumpy(arr)

    host_view = to_numpy  # a copy on the host: writing into it touches nothing of ours

    @staticmethod
    def readonly(arr):
        return arr  # CuPy has no read-only arrays (detect_anomaly checks saved ones)

    def checksum(self, arr) -> int:
        """A fingerprint of an array's bytes computed on the device: a position-weighted sum
        of its bytes (detect_anomaly's in-place write check; one synchronisation)."""
        xp = self.xp
        b = xp.ascontiguousarray(arr).reshape(-1).view(xp.uint8).astype(xp.uint64)
        w = xp.arange(1, b.size + 1, dtype=xp.uint64) % 65521
        return int(xp.sum(b * (w + 1)))

    def is_array(self, obj) -> bool:
        return isinstance(obj, self.xp.ndarray)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def scatter_add(self, target, index, values):
        """target[index] += values, in place. Floating targets go through the deterministic
        sort-based segment sum (the same bits on every run; float16/bfloat16 too, which
        ``cupyx.scatter_add`` refuses); integer targets use atomics, which are exact."""
        if target.dtype.kind == "f" or target.dtype == _bf16():
            return self.deterministic_scatter_add(target, index, values)
        return self.scatter_add_atomic(target, index, values)

    def deterministic_scatter_add(self, target, index, values):
        """target[index] += values in place, duplicates summed in a fixed order (no atomics):
        the sort-based segment sum of backend/kernels/segment_sum.py."""
        if target.flags.c_contiguous:
            return _segment_sum.scatter_add(self, target, index, values)
        tmp = self.xp.ascontiguousarray(target)
        _segment_sum.scatter_add(self, tmp, index, values)
        target[...] = tmp
        return target

    def scatter_add_atomic(self, target, index, values):
        """target[index] += values with atomics (fast; float sums depend on the run's order)."""
        import cupyx  # optional dependency (cupy)

        cupyx.scatter_add(target, index, values)
        return target

    @property
    def current_stream(self):
        """The CuPy stream kernels are launched on now (``with cupy.cuda.Stream():`` changes it)."""
        return self.xp.cuda.get_current_stream()

    def memory_pool(self):
        """CuPy's device memory pool (all device arrays of this backend come from it)."""
        return self.xp.get_default_memory_pool()

    # One backend object per device (apply compares backends by identity): a copied or
    # unpickled tensor keeps it, and the cached scipy module is never copied (deepcopy of a
    # Variable failed with "cannot pickle 'module' object" once an op had used bk.scipy)
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        from .select import backend_for  # (a cycle at import time: select imports this module)

        return backend_for, (f"cuda:{self.index}",)

    def __repr__(self) -> str:
        return f"CupyBackend(cuda:{self.index})"
