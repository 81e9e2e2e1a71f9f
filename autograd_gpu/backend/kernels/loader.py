"""Kernel families: the declaration each fused-kernel module makes, and the loader behind it.

A family is one CUDA source, ``autograd_gpu/kernels/<source>.cu``, declared once by the Python
module that launches its kernels (``KernelFamily(...)`` at the top of that module, beside the
code that uses it: the backend's families in ``backend/kernels/``, the optimizers' in
``optim/kernels.py``, AMP's in ``amp.py``, clipping's in ``clipping.py``). The declaration names
the kernels of the source (templates instantiated for each storage dtype, or plain ``extern
"C"`` functions), the dtypes the entry points take, the entry points (functions of the module,
the backend first), the NumPy reference of each (same arguments after the backend; the CPU tests
run the callers' kernel branches through them and the GPU tests compare against them), how the
family checks itself on first use, and the ops that reach it.

The loader compiles a source with NVRTC (``cupy.RawModule``, the header ``common.cuh`` spliced
in) once per device, on the first ``family.ready(bk)``. A source that does not compile is
reported once with a warning naming the error, and its family is then not ready on that backend
(the callers take their array path), rather than failing every op; ``family.passes(bk, key,
check)`` runs a self-check once per key, and a kernel whose check disagrees with its reference,
or whose launch raises, is reported once and not used again for that key. So a kernel can cost
speed, never correctness. ``AUTOGRAD_GPU_KERNELS=0`` (or ``set_enabled(False)``) makes every
family unready: every op takes its array path (for A/B comparisons and debugging).

Launches go to the current CuPy stream, take memory from CuPy's pool and never wait for the
device, so all of them can be captured into a CUDA graph (``ag.cuda.graphed``).
"""

from __future__ import annotations

import os
import threading
import warnings
from importlib import resources

import numpy as np

from ... import dtypes as _dt

FLOATS = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), _dt.bfloat16)
_CTYPE = {
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    np.dtype(np.float16): "__half",
    _dt.bfloat16: "__nv_bfloat16",
}
_INCLUDE = '#include "common.cuh"'

FAMILIES: dict = {}  # name -> KernelFamily, in declaration (import) order
_switch: dict = {"on": None}  # None: follow AUTOGRAD_GPU_KERNELS


def kernel_dir():
    return resources.files("autograd_gpu").joinpath("kernels")


def kernel_source(stem: str) -> str:
    """The source of ``kernels/<stem>.cu`` with the shared header spliced in (NVRTC gets one
    self-contained string, so CuPy's compile cache sees every change)."""
    d = kernel_dir()
    src = d.joinpath(f"{stem}.cu").read_text()
    if _INCLUDE in src:
        src = src.replace(_INCLUDE, d.joinpath("common.cuh").read_text().replace(
            "#pragma once", ""), 1)
    return src


def kernels_enabled() -> bool:
    """False when ``set_enabled(False)`` was called, or the environment sets
    AUTOGRAD_GPU_KERNELS=0 (read when a family is first asked on a backend)."""
    if _switch["on"] is not None:
        return _switch["on"]
    return os.environ.get("AUTOGRAD_GPU_KERNELS", "1").strip().lower() not in ("0", "false", "no")


def set_enabled(on) -> None:
    """Turn every family on or off at run time (None: back to AUTOGRAD_GPU_KERNELS); families
    are asked again on next use (bench/gpu_suite.py times ops with and without kernels)."""
    _switch["on"] = None if on is None else bool(on)
    for fam in FAMILIES.values():
        fam._ready.clear()


def ctype(dtype) -> str:
    """The CUDA storage type of a float dtype (TypeError for any other)."""
    try:
        return _CTYPE[np.dtype(dtype)]
    except KeyError:
        raise TypeError(
            f"fused kernel: expected float16, bfloat16, float32 or float64, got "
            f"{_dt.name(dtype)}"
        ) from None


class KernelFamily:
    """The declaration of one kernel source and what is known about it (see the module
    docstring). ``kernel(bk, name, dtype)`` is the compiled function to launch; ``ready(bk)``
    whether the family can run on that backend now; ``passes(bk, key, check)`` a first-use
    self-check."""

    def __init__(self, name, *, source, templates=(), plain=(), dtypes=FLOATS, entries=(),
                 references=None, self_check=None, ops=(), callers=()):
        if name in FAMILIES:
            raise ValueError(f"kernel family {name!r} is declared twice")
        self.name = name
        self.source = source  # kernels/<source>.cu
        self.templates = tuple(templates)  # __global__ templates, one instance per dtype
        self.plain = tuple(plain)  # extern "C" kernels
        self.dtypes = tuple(np.dtype(d) for d in dtypes)  # what the entry points take
        self.entries = tuple(entries)  # functions of the declaring module, the backend first
        self.references = dict(references or {})  # entry -> NumPy reference
        self.self_check = self_check  # what is compared on first use (None: compiling only)
        self.ops = tuple(ops)  # registered ops whose forwards reach the family
        self.callers = tuple(callers)  # the functions that call its entry points
        self._lock = threading.Lock()
        self._modules: dict = {}  # device index -> cupy.RawModule
        self._functions: dict = {}  # (name, dtype, device index) -> RawKernel
        self._ready: dict = {}  # backend -> bool
        self._checks: dict = {}  # (backend, kernel) -> _SelfCheck
        FAMILIES[name] = self

    def __repr__(self) -> str:
        return f"KernelFamily({self.name!r}, kernels/{self.source}.cu)"

    @property
    def name_expressions(self) -> list:
        """What NVRTC instantiates: each template for each of the family's dtypes (its ctype),
        then the plain kernels."""
        names = [f"{k}<{_CTYPE[d]}>" for k in self.templates for d in self.dtypes
                 if d in _CTYPE]
        return names + list(self.plain)

    def module(self, device_index: int = 0):
        """The compiled RawModule of the source for a device (compiled once, cached)."""
        mod = self._modules.get(device_index)
        if mod is None:
            with self._lock:
                mod = self._modules.get(device_index)
                if mod is None:
                    import cupy  # optional dependency (cupy)

                    with cupy.cuda.Device(device_index):
                        mod = cupy.RawModule(code=kernel_source(self.source),
                                             options=("-std=c++17",),
                                             name_expressions=self.name_expressions)
                    self._modules[device_index] = mod
        return mod

    def kernel(self, bk, name: str, dtype=None):
        """The kernel ``name`` compiled for ``bk``'s device: a template's instance for
        ``dtype``, or a plain kernel (``dtype`` None). TypeError for a dtype with no instance."""
        key = (name, dtype, bk.index)
        fn = self._functions.get(key)
        if fn is None:
            expr = name if dtype is None else f"{name}<{ctype(dtype)}>"
            fn = self._functions[key] = self.module(bk.index).get_function(expr)
        return fn

    def compile(self, bk) -> None:
        """Compile the source for ``bk``'s device now (raises the compiler's error)."""
        first = self.templates[0] if self.templates else self.plain[0]
        self.kernel(bk, first, self.dtypes[0] if self.templates else None)

    def ready(self, bk) -> bool:
        """Whether ``bk`` runs this family now: a backend that runs CUDA kernels, kernels on,
        and the source compiled for its device (tried once per backend; a failure warns)."""
        ok = self._ready.get(bk)
        if ok is None:
            ok = self._ready[bk] = self._probe(bk)
        return ok

    def _probe(self, bk) -> bool:
        if not getattr(bk, "cuda_kernels", False) or not kernels_enabled():
            return False
        try:
            self.compile(bk)
        except Exception as exc:  # NVRTC missing or failing: say so, then use the xp path
            warnings.warn(f"autograd_gpu: fused kernels of kernels/{self.source}.cu are "
                          f"unavailable ({type(exc).__name__}: {exc}); ops use their xp path "
                          "instead", RuntimeWarning, stacklevel=4)
            return False
        return True

    def passes(self, bk, key, check, what=None) -> bool:
        """The self-check of one case (``key``: a dtype, an op and dtype) on first use:
        ``check()`` runs the kernel and its reference on a probe and compares them; see
        _SelfCheck. ``what`` names the kernel in the warning (default: the family)."""
        what = what or self.name
        chk = self._checks.get((bk, what))
        if chk is None:
            chk = self._checks[(bk, what)] = _SelfCheck(bk.xp, what)
        return chk.ok(key, check)

    def checked(self, bk, key, what=None):
        """The recorded outcome of a case's self-check: True, False, or None when it has not
        run (as while a stream captures)."""
        chk = self._checks.get((bk, what or self.name))
        return None if chk is None else chk.state.get(key)


class _SelfCheck:
    """First use of a kernel per key: run it and its reference on a probe on the device and
    compare on the host; a kernel that disagrees, or whose launch raises, is reported once and
    not used again (its op keeps the reference path). Skipped while a stream captures (no host
    copies allowed there): the kernel then waits for an eager call."""

    def __init__(self, xp, what):
        self.xp, self.what, self.state = xp, what, {}

    def ok(self, key, check) -> bool:
        ok = self.state.get(key)
        if ok is None:
            xp = self.xp
            if xp.cuda.runtime.streamIsCapturing(xp.cuda.get_current_stream().ptr):
                return False
            why = "disagrees with its reference on its self-check"
            try:
                ok = bool(check())
            except Exception as exc:  # a launch that cannot run is not used either
                ok = False
                why = f"failed its self-check ({type(exc).__name__}: {exc})"
            self.state[key] = ok
            if not ok:
                warnings.warn(f"autograd_gpu: the {self.what} kernel ({key}) {why}; that case "
                              "uses the reference path", RuntimeWarning, stacklevel=4)
        return ok


# ---- launch helpers shared by the family modules ---------------------------------------------


def acc(dtype):
    """The accumulation dtype of a storage dtype: float64 for float64, else float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def i64(v):
    return np.int64(v)


def rows_block(C: int) -> int:
    """Threads per row for the row kernels: a power of two in [32, 512], about C / 2."""
    t = 32
    while t < 512 and t * 2 <= C:
        t *= 2
    return t


def grid(n: int, block: int = 256, cap: int = 65536) -> int:
    return max(1, min((n + block - 1) // block, cap))


def contig(xp, a):
    return a if a.flags.c_contiguous else xp.ascontiguousarray(a)


def probe_values(dtype, n=4099):
    """Self-check probe: normal values with 0, -0, NaN, +-inf and a tiny number in front."""
    rng = np.random.default_rng(1)
    h = rng.standard_normal(n) * 3
    h[:6] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30]
    with np.errstate(over="ignore"):
        return h.astype(np.float32).astype(dtype)


def equal_values(a, b) -> bool:
    """Equal as numbers (NaN where the other is NaN; 0.0 equals -0.0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def np_acc(x):
    """A NumPy array in its accumulation dtype (the references compute there)."""
    return x.astype(acc(x.dtype))


__all__ = ["FAMILIES", "FLOATS", "KernelFamily", "acc", "contig", "ctype", "equal_values", "grid",
           "i64", "kernel_dir", "kernel_source", "kernels_enabled", "np_acc", "probe_values",
           "rows_block", "set_enabled"]
