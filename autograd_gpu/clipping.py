"""Gradient clipping (``ag.gradient_clipping``). None entries pass through untouched.

No host synchronisation: the global norm stays a 0-d tensor on the gradients' device. On a GPU
the global norm is the multi-tensor kernels of kernels/clipping.cu (declared below: one launch
per MT_SLOTS tensors of a dtype, per-block partial sums added in a fixed order, so the norm is
the same on every run).
"""

from __future__ import annotations

import numbers

import numpy as np

from .backend.kernels import multi_tensor as _mt
from .backend.kernels.loader import KernelFamily, acc
from .errors import ArgumentError, DeviceError, describe
from .ops import api as A
from .tensor import Tensor


def _ref_global_norm(arrays):
    return np.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in arrays))


def _ref_scale(arrays, coef, inplace=False, mode=0, max_norm=0.0):
    f = float(coef)
    if mode == 1:
        f = min(1.0, max_norm / (f + 1e-6))
    return [(a.astype(np.float64) * f).astype(a.dtype) for a in arrays]


def _ref_clip(arrays, max_norm, inplace=False):
    norm = _ref_global_norm(arrays)
    return _ref_scale(arrays, norm, mode=1, max_norm=max_norm), norm


KERNELS = KernelFamily(
    "clipping", source="clipping", templates=("l2norm_partial", "mt_scale"),
    entries=("fused_global_norm", "fused_scale", "fused_clip_by_global_norm"),
    references={"fused_global_norm": _ref_global_norm, "fused_scale": _ref_scale,
                "fused_clip_by_global_norm": _ref_clip},
    callers=("global_norm",))


def fused_global_norm(bk, arrays):
    """sqrt(sum of squares of every element of every array), a 0-d float32 device array
    (float64 if any array is float64). One launch per MT_SLOTS tensors; deterministic."""
    xp = bk.xp
    arrays = _mt.contiguous(xp, arrays)
    groups = _mt.groups(arrays)
    out_dt = np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32
    if not groups:
        return xp.zeros((), dtype=out_dt)
    bpt = max(_mt.blocks(arrays, idx) for _, idx in groups)
    total = xp.zeros((), dtype=np.float64 if out_dt == np.float64 else np.float32)
    for a in {acc(dt) for dt, _ in groups}:
        mine = [(dt, idx) for dt, idx in groups if acc(dt) == a]
        part = xp.zeros(sum(len(idx) for _, idx in mine) * bpt, dtype=a)
        base = 0
        for dt, idx in mine:
            KERNELS.kernel(bk, "l2norm_partial", dt)(
                (bpt, len(idx)), (256,), tuple(_mt.slots([arrays], idx)) + (part, np.int64(base)))
            base += len(idx) * bpt
        total = total + part.sum()
    return xp.sqrt(total).astype(out_dt, copy=False)


def fused_scale(bk, arrays, coef, inplace=False, mode=0, max_norm=0.0):
    """Each array times ``coef`` (a number or a 0-d device array); with ``mode=1`` times
    min(1, max_norm / (coef + 1e-6)), coef the global norm. Returns the scaled arrays (the same
    objects when ``inplace``)."""
    xp = bk.xp
    arrays = list(arrays)
    if inplace:
        _mt.check_inplace(arrays, "scale")
        outs = arrays
    else:
        arrays = _mt.contiguous(xp, arrays)
        outs = [xp.empty_like(a) for a in arrays]
    c = _mt.device_scalar(xp, coef, np.float64)
    for dt, idx in _mt.groups(arrays):
        KERNELS.kernel(bk, "mt_scale", dt)(
            (_mt.blocks(arrays, idx), len(idx)), (256,),
            tuple(_mt.slots([arrays, outs], idx)) + (c, np.float64(max_norm), np.int32(mode)))
    return outs


def fused_clip_by_global_norm(bk, arrays, max_norm, inplace=False):
    """(clipped arrays, global norm): arrays * min(1, max_norm / (norm + 1e-6)), the factor
    computed on the device (no host synchronisation)."""
    norm = fused_global_norm(bk, arrays)
    outs = fused_scale(bk, arrays, norm, inplace=inplace, mode=1, max_norm=float(max_norm))
    return outs, norm


def _check_list(grads, op):
    if isinstance(grads, Tensor):
        raise ArgumentError(f"{op}: argument 'grads' expected a list of Tensors (or None), got a "
                            "single Tensor; wrap it in a list")
    out = list(grads)
    bk = None
    for i, g in enumerate(out):
        if g is None:
            continue
        if not isinstance(g, Tensor):
            raise ArgumentError(f"{op}: grads[{i}] expected a Tensor or None, got {describe(g)}")
        if bk is None:
            bk = g._bk
        elif g._bk is not bk:
            raise DeviceError(f"{op}: grads[{i}] expected device {bk.device}, got {g.device}")
    return out, bk


def global_norm(grads) -> Tensor:
    """sqrt(sum over tensors of sum(g^2)), accumulated in at least float32."""
    gs, bk = _check_list(grads, "global_norm")
    live = [g for g in gs if g is not None]
    if not live:
        raise ArgumentError("global_norm: argument 'grads' expected at least one Tensor, got none")
    if KERNELS.ready(bk):
        return Tensor(fused_global_norm(bk, [g._data for g in live]), bk)
    total = None
    for g in live:
        gf = g if g.dtype.itemsize >= 4 else A.astype(g, "float32")
        s = A.sum(gf * gf)
        total = s if total is None else total + s
    return A.sqrt(total)


def clip_by_global_norm(grads, max_norm: float):
    """Scale all gradients by max_norm / max(global_norm, max_norm).

    Returns ``(clipped, global_norm)``; ``global_norm`` is the norm before clipping (a 0-d
    Tensor). A non-finite norm makes every clipped gradient NaN, so the problem is visible.
    """
    if not isinstance(max_norm, numbers.Real) or not max_norm > 0:
        raise ArgumentError(f"clip_by_global_norm: argument 'max_norm' expected a number > 0, "
                            f"got {max_norm!r}")
    gs, _ = _check_list(grads, "clip_by_global_norm")
    norm = global_norm(gs)
    scale = float(max_norm) / A.maximum(norm, float(max_norm))
    clipped = [None if g is None else g * A.astype(scale, g.dtype) for g in gs]
    return clipped, norm


def clip_by_value(grads, clip_value: float):
    """Clip every gradient elementwise to [-clip_value, clip_value]."""
    if not isinstance(clip_value, numbers.Real) or not clip_value > 0:
        raise ArgumentError(f"clip_by_value: argument 'clip_value' expected a number > 0, "
                            f"got {clip_value!r}")
    gs, _ = _check_list(grads, "clip_by_value")
    c = float(clip_value)
    return [None if g is None else A.clip(g, -c, c) for g in gs]


def clip_by_norm(t: Tensor, max_norm: float) -> Tensor:
    """Scale one tensor so that its L2 norm is at most max_norm."""
    (out,), _ = clip_by_global_norm([t], max_norm)
    return out


__all__ = ["clip_by_global_norm", "clip_by_value", "clip_by_norm", "global_norm"]
