"""Launch helpers for the kernels over lists of tensors (clipping's, AMP's and the optimizers'):
up to MT_SLOTS tensors per launch, passed as raw device pointers and sizes (``MT_DECL`` in
kernels/common.cuh), one grid row (blockIdx.y) per tensor, tensors grouped by dtype."""

from __future__ import annotations

import numpy as np

from ... import dtypes as _dt
from .loader import contig

MT_SLOTS = 8  # tensors per multi-tensor launch (common.cuh)


def ptr(a):
    return np.uint64(0 if a is None else a.data.ptr)


def groups(arrays):
    """Non-empty arrays grouped by dtype, then in chunks of MT_SLOTS: [(dtype, [indices])]."""
    by = {}
    for i, a in enumerate(arrays):
        if a.size:
            by.setdefault(np.dtype(a.dtype), []).append(i)
    out = []
    for dt, idx in by.items():
        for s in range(0, len(idx), MT_SLOTS):
            out.append((dt, idx[s:s + MT_SLOTS]))
    return out


def slots(lists, idx):
    """Kernel arguments: for each list, MT_SLOTS pointers (0 where unused); then the sizes."""
    args = []
    for lst in lists:
        args += [ptr(lst[i]) for i in idx] + [np.uint64(0)] * (MT_SLOTS - len(idx))
    sizes = [np.uint64(lists[0][i].size) for i in idx] + [np.uint64(0)] * (MT_SLOTS - len(idx))
    return args + sizes


def blocks(arrays, idx, block=256, per_thread=4, cap=1024):
    """Grid columns for a group: enough blocks for its largest tensor, at most ``cap``."""
    n = max(arrays[i].size for i in idx)
    return max(1, min((n + block * per_thread - 1) // (block * per_thread), cap))


def check_inplace(arrays, what):
    for i, a in enumerate(arrays):
        if not a.flags.c_contiguous:
            raise ValueError(f"{what}: array {i} must be C-contiguous (it is updated in place)")


def check_f32(lists, what):
    for lst in lists:
        for a in lst:
            if a.dtype != np.float32:
                raise TypeError(f"{what}: expected float32 arrays, got {_dt.name(a.dtype)}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{what}: arrays must be C-contiguous (updated in place)")


def device_scalar(xp, v, dtype=np.float32):
    """A 0-d device array holding v (a number, or a 0-d device array converted on the device)."""
    if type(v).__module__.startswith("cupy"):
        return v.astype(dtype, copy=False).reshape(())
    return xp.full((), v, dtype=dtype)  # a fill kernel: no host-to-device copy


def contiguous(xp, arrays):
    return [contig(xp, a) for a in arrays]


__all__ = ["MT_SLOTS", "blocks", "check_f32", "check_inplace", "contiguous", "device_scalar",
           "groups", "ptr", "slots"]
