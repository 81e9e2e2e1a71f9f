"""Direct cuBLAS GEMM calls (through ctypes) for the CuPy backend.

Why: CuPy refuses every cuBLAS call while a stream is being captured into a CUDA graph
(``cublas.setStream`` raises "calling cuBLAS API during stream capture is currently
unsupported"), so a graphed training step could not contain a single matmul. cuBLAS itself
supports capture when it is given a workspace of its own (no allocation inside the capture), and
that is what this module does: it calls ``cublasGemmEx`` / ``cublasGemmStridedBatchedEx`` on
CuPy's handle for the current device, bound to the capturing stream and to a workspace owned by
the graph. Outside capture it is also usable as an eager GEMM (``AUTOGRAD_GPU_GEMM=cublas``),
which the GPU benchmark compares against ``cupy.matmul``.

Row-major trick: C = A @ B (row-major) is C^T = B^T @ A^T in cuBLAS's column-major terms, and a
row-major matrix is its transpose in column-major, so no data moves: the operands swap places and
each one's layout (C- or F-contiguous) picks its transpose flag.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

from ..dtypes import bfloat16
from ..errors import DeviceError

__all__ = [
    "WORKSPACE_BYTES", "supports", "Binding", "capturing", "active_binding", "matmul", "sum_rows",
]

# cudaDataType and cublasComputeType_t values from the CUDA headers (library_types.h, cublas_api.h)
_R_32F, _R_64F, _R_16F, _R_16BF = 0, 1, 2, 14
_COMPUTE_32F, _COMPUTE_32F_FAST_TF32, _COMPUTE_64F = 68, 77, 70
_OP_N, _OP_T = 0, 1
_GEMM_DEFAULT = -1
WORKSPACE_BYTES = 32 << 20  # what PyTorch gives cuBLAS on Hopper (CUBLAS_WORKSPACE_CONFIG=:4096:8)

_lib = None
_lock = threading.Lock()
_state = threading.local()  # .binding: (handle, stream_ptr, workspace) while a capture runs


def _load():
    """libcublas as CuPy loaded it (the same copy and handle space), else by soname."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        import cupy  # optional dependency (cupy)

        cupy.cuda.device.get_cublas_handle()  # makes CuPy load libcublas first
        names = []
        try:
            with open("/proc/self/maps") as f:
                for line in f:
                    path = line.split()[-1] if line.strip() else ""
                    base = os.path.basename(path)
                    if base.startswith("libcublas.so") and path not in names:
                        names.append(path)
        except OSError:
            pass
        names += ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]
        lib = err = None
        for name in names:
            try:
                lib = ctypes.CDLL(name)
                lib.cublasGemmEx  # noqa: B018 (the symbol must exist)
                break
            except (OSError, AttributeError) as exc:
                lib, err = None, exc
        if lib is None:
            raise DeviceError(f"cuBLAS: could not load libcublas for direct GEMM calls ({err})")
        vp, i, ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
        lib.cublasSetStream_v2.argtypes = [vp, vp]
        lib.cublasSetWorkspace_v2.argtypes = [vp, vp, ctypes.c_size_t]
        lib.cublasGemmEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, vp, i, i, vp, vp, i, i,
                                     i, i]
        lib.cublasGemmStridedBatchedEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, ll, vp, i, i,
                                                   ll, vp, vp, i, i, ll, i, i, i]
        for fn in (lib.cublasSetStream_v2, lib.cublasSetWorkspace_v2, lib.cublasGemmEx,
                   lib.cublasGemmStridedBatchedEx):
            fn.restype = ctypes.c_int
        _lib = lib
        return lib


def _check(status, what):
    if status != 0:
        raise DeviceError(f"cuBLAS: {what} failed with status {status}")


def _dtype_codes(dtype, allow_tf32=True):
    """(data type, compute type, scalar ctype) for a GEMM on ``dtype``, or None. float32 uses
    TF32 tensor cores when CUPY_TF32 asks for them (as cupy.matmul does) and ``allow_tf32``."""
    if dtype == np.float32:
        tf32 = allow_tf32 and os.environ.get("CUPY_TF32", "0") not in ("", "0")
        return _R_32F, (_COMPUTE_32F_FAST_TF32 if tf32 else _COMPUTE_32F), ctypes.c_float
    if dtype == np.float64:
        return _R_64F, _COMPUTE_64F, ctypes.c_double
    if dtype == np.float16:
        return _R_16F, _COMPUTE_32F, ctypes.c_float
    if dtype == bfloat16:
        return _R_16BF, _COMPUTE_32F, ctypes.c_float
    return None


def supports(dtype) -> bool:
    return _dtype_codes(dtype) is not None


class Binding:
    """cuBLAS bound to one stream and one workspace; ``bind()`` before each use (CuPy rebinds
    the shared handle to its own stream on every one of its calls)."""

    def __init__(self, stream_ptr: int, workspace=None):
        import cupy  # optional dependency (cupy)

        self.lib = _load()
        self.handle = int(cupy.cuda.device.get_cublas_handle())
        self.stream_ptr = int(stream_ptr)
        self.workspace = (workspace if workspace is not None
                          else cupy.empty(WORKSPACE_BYTES, dtype=np.uint8))

    def bind(self):
        # cublasSetStream resets the workspace to cuBLAS's default pool: set ours after it
        _check(self.lib.cublasSetStream_v2(self.handle, self.stream_ptr), "cublasSetStream")
        _check(self.lib.cublasSetWorkspace_v2(self.handle, self.workspace.data.ptr,
                                              self.workspace.nbytes), "cublasSetWorkspace")


class capturing:
    """Context: inside it, ``matmul`` on this thread uses ``binding`` (set by ag.cuda.graphed
    around a capture)."""

    def __init__(self, binding: Binding):
        self.binding = binding

    def __enter__(self):
        self.prev = getattr(_state, "binding", None)
        _state.binding = self.binding
        self.binding.bind()
        return self.binding

    def __exit__(self, *exc):
        _state.binding = self.prev
        return False


def active_binding():
    return getattr(_state, "binding", None)


def _layout(x):
    """(array, transpose flag for the column-major view, leading dimension) of a 2-d operand."""
    r, c = x.shape
    s0, s1 = (s // x.itemsize for s in x.strides)
    if (s1 == 1 or c == 1) and s0 >= max(c, 1):
        return x, _OP_N, max(s0, c, 1)
    if (s0 == 1 or r == 1) and s1 >= max(r, 1):
        return x, _OP_T, max(s1, r, 1)
    import cupy  # optional dependency (cupy)

    x = cupy.ascontiguousarray(x)
    return x, _OP_N, max(c, 1)


def _gemm2d(lib, handle, a, b, out, codes):
    """out (m, n) = a (m, k) @ b (k, n), all 2-d; out C-contiguous."""
    dt, ct, scal = codes
    m, k = a.shape
    n = b.shape[1]
    a, opa, lda = _layout(a)
    b, opb, ldb = _layout(b)
    one, zero = scal(1.0), scal(0.0)
    _check(lib.cublasGemmEx(handle, opb, opa, n, m, k, ctypes.byref(one), b.data.ptr, dt, ldb,
                            a.data.ptr, dt, lda, ctypes.byref(zero), out.data.ptr, dt, max(n, 1),
                            ct, _GEMM_DEFAULT), "cublasGemmEx")
    return out


def matmul(a, b, binding: Binding | None = None, allow_tf32: bool = True):
    """``a @ b`` with NumPy's matmul rules (1-d promotion, broadcast batch axes) on cuBLAS.
    Floating dtypes of equal kind only; the caller falls back to cupy.matmul otherwise."""
    import cupy  # optional dependency (cupy)

    if binding is None:
        binding = active_binding()
    if a.dtype != b.dtype:
        dt = cupy.result_type(a.dtype, b.dtype)
        a, b = a.astype(dt, copy=False), b.astype(dt, copy=False)
    codes = _dtype_codes(a.dtype, allow_tf32)
    if codes is None or a.ndim == 0 or b.ndim == 0:
        raise DeviceError(f"cuBLAS matmul: dtype {a.dtype} or 0-d operands are not supported")
    if binding is not None:
        lib, handle = binding.lib, binding.handle
        binding.bind()
    else:
        lib = _load()
        handle = int(cupy.cuda.device.get_cublas_handle())
        _check(lib.cublasSetStream_v2(handle, cupy.cuda.get_current_stream().ptr),
               "cublasSetStream")
    va, vb = a.ndim == 1, b.ndim == 1
    A = a[None, :] if va else a
    B = b[:, None] if vb else b
    if A.shape[-1] != B.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
    m, k, n = A.shape[-2], A.shape[-1], B.shape[-1]
    batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    out = cupy.empty(batch + (m, n), dtype=a.dtype)
    if out.size == 0:
        pass
    elif k == 0:
        out.fill(0)
    elif B.ndim == 2 and A.ndim > 2 and A.flags.c_contiguous:
        _gemm2d(lib, handle, A.reshape(-1, k), B, out.reshape(-1, n), codes)  # one GEMM
    elif not batch:
        _gemm2d(lib, handle, A, B, out, codes)
    else:
        nb = int(np.prod(batch))
        A3 = cupy.ascontiguousarray(cupy.broadcast_to(A, batch + (m, k))).reshape(nb, m, k)
        B3 = cupy.ascontiguousarray(cupy.broadcast_to(B, batch + (k, n))).reshape(nb, k, n)
        dt, ct, scal = codes
        one, zero = scal(1.0), scal(0.0)
        _check(lib.cublasGemmStridedBatchedEx(
            handle, _OP_N, _OP_N, n, m, k, ctypes.byref(one), B3.data.ptr, dt, n, k * n,
            A3.data.ptr, dt, k, m * k, ctypes.byref(zero), out.data.ptr, dt, n, m * n, nb, ct,
            _GEMM_DEFAULT), "cublasGemmStridedBatchedEx")
    if va:
        out = out[..., 0, :]
    if vb:
        out = out[..., 0]
    return out


_ONES: dict = {}


def sum_rows(x):
    """x (R, C), C-contiguous, summed over its rows as one GEMV-shaped GEMM, ones(R) @ x:
    CuPy's reduction over a leading axis reads memory at about half the bandwidth (a bias
    gradient of (8192, 4096) float32: 0.25 ms against 0.12 ms on an H100). Accumulates in
    float32 (float64 for float64), never in TF32. Returns shape (C,)."""
    import cupy  # optional dependency (cupy)

    r = x.shape[0]
    capturing = active_binding() is not None
    key = (r, x.dtype.str, cupy.cuda.Device().id)
    ones = None if capturing else _ONES.get(key)
    if ones is None:
        ones = cupy.ones((r,), dtype=x.dtype)
        if not capturing:  # a vector filled inside a capture holds nothing until a replay
            if len(_ONES) > 64:
                _ONES.clear()
            _ONES[key] = ones
    return matmul(ones, x, allow_tf32=False)
