"""The CuPy backend, imported lazily. Used only when ``cupy.cuda.is_available()`` says so."""

from __future__ import annotations

import functools
import warnings

from ..errors import DeviceError
from .base import Device


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
    import cupy

    return int(cupy.cuda.runtime.getDeviceCount())


def _bf16():
    from ..dtypes import bfloat16

    return bfloat16


class CupyBackend:
    name = "cupy"

    def __init__(self, index: int = 0):
        ok, reason = cupy_status()
        if not ok:
            raise DeviceError(f"device: requested cuda:{index}, but {reason}")
        import cupy

        n = device_count()
        if index >= n:
            raise DeviceError(
                f"device: requested cuda:{index}, expected an index below {n} (GPUs visible: {n})"
            )
        self.xp = cupy
        self.index = index
        self.device = Device(f"cuda:{index}")
        self.array_type = cupy.ndarray
        self._kernels = None

    def asarray(self, obj, dtype=None):
        with self.xp.cuda.Device(self.index):
            return self.xp.asarray(obj, dtype=dtype)

    def to_numpy(self, arr):
        return self.xp.asnumpy(arr)

    def is_array(self, obj) -> bool:
        return isinstance(obj, self.xp.ndarray)

    def _kernel_table(self):
        if self._kernels is None:
            from . import kernels

            self._kernels = kernels.KernelTable(self)
        return self._kernels

    def has_kernel(self, name: str) -> bool:
        return self._kernel_table().has(name)

    def kernel(self, name: str):
        return self._kernel_table().get(name)

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
        """target[index] += values in place, duplicates summed in a fixed order (no atomics).
        ``target`` must be C-contiguous. See ``kernel_impls.deterministic_scatter_add``."""
        from .kernel_impls import deterministic_scatter_add

        if target.flags.c_contiguous:
            return deterministic_scatter_add(self, target, index, values)
        tmp = self.xp.ascontiguousarray(target)
        deterministic_scatter_add(self, tmp, index, values)
        target[...] = tmp
        return target

    def scatter_add_atomic(self, target, index, values):
        """target[index] += values with atomics (fast; float sums depend on the run's order)."""
        import cupyx

        cupyx.scatter_add(target, index, values)
        return target

    @property
    def current_stream(self):
        """The CuPy stream kernels are launched on now (``with cupy.cuda.Stream():`` changes it)."""
        return self.xp.cuda.get_current_stream()

    def memory_pool(self):
        """CuPy's device memory pool (all device arrays of this backend come from it)."""
        return self.xp.get_default_memory_pool()

    def __repr__(self) -> str:
        return f"CupyBackend(cuda:{self.index})"
