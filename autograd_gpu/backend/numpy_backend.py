"""The NumPy backend: the reference implementation of every op."""

from __future__ import annotations

import functools
import zlib

import numpy as np

from ..dtypes import bfloat16 as _BF16
from . import fused
from .base import Device
from .host_pool import POOL as HOST_POOL

__all__ = ["NumpyBackend", "NUMPY"]

_SIMD_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@functools.lru_cache(maxsize=32)
def _zeros_row(n, dtype):
    z = np.zeros(n, dtype)
    z.flags.writeable = False
    return z


# the integer type of each float dtype's size (relu_grad's bit mask; ml_dtypes' bfloat16 too)
_SAME_SIZE_INT = {np.dtype(t): i for t, i in ((np.float16, np.int16), (np.float32, np.int32),
                                              (np.float64, np.int64))}
_SAME_SIZE_INT[_BF16] = np.int16

_UNARY = {n: getattr(np, n) for n in ("negative", "exp", "expm1", "log", "log1p", "sqrt", "abs",
                                      "sin", "cos", "tan", "tanh")}


class NumpyBackend:
    name = "numpy"  # (for messages and reports; code asks the capability flags below)
    is_host = True  # arrays live in host memory: reading their values costs no transfer
    deterministic_scatter = True  # scatter_add (np.add.at) sums in a fixed order
    graph_capture = False  # no CUDA graphs
    cuda_kernels = False  # runs no CUDA kernels (backend/kernels: every family is unready)
    xp = np
    matmul = staticmethod(np.matmul)
    sum = staticmethod(np.sum)

    def __init__(self):
        self.device = Device("cpu")
        self.array_type = np.ndarray

    def asarray(self, obj, dtype=None):
        return np.asarray(obj, dtype=dtype)

    @functools.cached_property
    def scipy(self):
        """SciPy for this backend's arrays (special, linalg, signal, stats, fft): scipy here,
        cupyx.scipy on CuPy. Imported on first use: only the NumPy/SciPy surface needs it."""
        import scipy  # (optional until first use: the core runs on numpy alone)
        import scipy.fft
        import scipy.linalg  # SciPy loads on first use (it adds ~0.3 s to import time)
        import scipy.signal  # SciPy loads on first use (it adds ~0.3 s to import time)
        import scipy.special  # SciPy loads on first use (it adds ~0.3 s to import time)
        import scipy.stats  # noqa: F401  (the submodules are attributes once imported)

        return scipy

    @staticmethod
    def uniform(seed: int, shape):
        """float32 U[0, 1) numbers from NumPy's counter-based Philox keyed by ``seed``."""
        return np.random.Generator(np.random.Philox(key=seed)).random(shape, dtype=np.float32)

    @staticmethod
    def sweep_scope():
        """Context around a reverse sweep: arrays made inside come from (and die into) the host
        memory pool (backend/host_pool.py)."""
        return HOST_POOL.scope()

    def to_numpy(self, arr):
        return np.asarray(arr)

    @staticmethod
    def readonly(arr):
        """A read-only view: what the library hands out (a tape may have saved ``arr``)."""
        v = arr.view()
        v.flags.writeable = False
        return v

    host_view = readonly

    @staticmethod
    def checksum(arr) -> int:
        """A cheap fingerprint of an array's bytes (detect_anomaly's in-place write check)."""
        return zlib.crc32(memoryview(np.ascontiguousarray(arr)).cast("B"))

    def is_array(self, obj) -> bool:
        return isinstance(obj, np.ndarray)

    add = staticmethod(np.add)

    @staticmethod
    def relu(x):
        # np.maximum against a scalar runs NumPy's strided loop; against a row of zeros
        # broadcast over the leading axes its inner loop is the contiguous SIMD one: 2.5x faster
        # at (256, 1024) float32. Same values (NaN propagates, -0.0 gives 0.0).
        n = x.shape[-1] if x.ndim else 0
        if n >= 64 and x.dtype in _SIMD_FLOATS:
            return np.maximum(x, _zeros_row(n, x.dtype))
        return np.maximum(x, 0)

    scalar_kernels = False  # NumPy's ufuncs are the reference (see CupyBackend.scalar_op)

    @staticmethod
    def unary(name, x):
        """``numpy.<name>(x)`` (CupyBackend.unary routes small arrays to its own kernels)."""
        return _UNARY[name](x)

    @staticmethod
    def mixed_floats_ok(dtypes) -> bool:
        return True  # NumPy (with ml_dtypes) promotes float mixes inside its ufunc loops

    @staticmethod
    def astype(x, dtype):
        return x.astype(dtype, copy=False)

    @staticmethod
    def act_grad(act, g, y):
        """An activation's vjp from its output: tanh g - g y y, sigmoid g (y - y y), with no
        Python-scalar operand (NumPy's weak-scalar path is slow).

        Later steps write into the array the first step allocated (the same operations in the
        same order: the same bits), so the rule holds one output-sized temporary besides g and y
        where the plain expressions held two; on a checkpointed tanh chain that extra array was
        the sweep's peak. CupyBackend sends its 16-bit arrays here too: they take the plain
        expressions (the forms its GPU tests ran), as do NumPy scalars (no out=)."""
        if act == "tanh":
            t = g * y  # the broadcast shape and promoted dtype of the whole expression
            if type(t) is not np.ndarray:
                return g - t * y
            np.multiply(t, y, out=t)
            return np.subtract(g, t, out=t)
        t = y * y
        if type(t) is not np.ndarray or g.shape != t.shape or g.dtype != t.dtype:
            return g * (y - t)  # g has a batch axis or another dtype, or a scalar: no room in t
        np.subtract(y, t, out=t)
        return np.multiply(g, t, out=t)

    @staticmethod
    def relu_grad(g, x):
        """0 where x <= 0, else g (a NaN x passes g, as PyTorch's threshold_backward). A
        select, not g * (x > 0): a NaN or inf cotangent where x <= 0 gives 0, where the product
        gave NaN (sqrt(relu(x)) at x < 0 sends inf back into relu). Float arrays clear g's bits
        with an integer mask of all ones or zeros: within 10% of the product's time at
        (256, 1024) float32, where np.where takes about 20 times as long (2 ms)."""
        off = np.less_equal(x, 0)
        it = _SAME_SIZE_INT.get(g.dtype) if type(g) is np.ndarray else None
        if it is None or type(off) is not np.ndarray:  # CuPy's 16-bit arrays, NumPy scalars
            return np.where(off, g.dtype.type(0), g)
        keep = off.astype(it)
        keep -= 1  # 0 where x <= 0, -1 (every bit set) elsewhere
        if keep.shape == g.shape:
            return np.bitwise_and(g.view(it), keep, out=keep).view(g.dtype)
        return np.bitwise_and(g.view(it), keep).view(g.dtype)

    # the fused operations (backend/fused.py: their reference, on NumPy's arrays)
    softmax = fused.softmax
    log_softmax = fused.log_softmax
    softmax_grad = fused.softmax_grad
    log_softmax_grad = fused.log_softmax_grad
    cross_entropy = fused.cross_entropy
    cross_entropy_dlogits = fused.cross_entropy_dlogits
    layer_norm = fused.layer_norm
    layer_norm_grad = fused.layer_norm_grad
    bias_act = fused.bias_act
    bias_act_grad = fused.bias_act_grad
    gelu_grad = fused.gelu_grad
    dropout_mask = fused.dropout_mask

    def synchronize(self) -> None:
        return None

    def scatter_add(self, target, index, values):
        """target[index] += values with repeated indices accumulated (deterministic on CPU)."""
        np.add.at(target, index, values)
        return target

    deterministic_scatter_add = scatter_add  # np.add.at sums in index order

    # One backend object per device (apply compares backends by identity): a copied or
    # unpickled tensor keeps it, and the cached scipy module is never copied (deepcopy of a
    # Variable failed with "cannot pickle 'module' object" once an op had used bk.scipy)
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        from .select import backend_for  # (a cycle at import time: select imports this module)

        return backend_for, ("cpu",)

    def __repr__(self) -> str:
        return "NumpyBackend(cpu)"


NUMPY = NumpyBackend()
