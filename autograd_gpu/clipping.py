"""Gradient clipping (``ag.gradient_clipping``). None entries pass through untouched.

No host synchronisation: the global norm stays a 0-d tensor on the gradients' device.
"""

from __future__ import annotations

import numbers

from .errors import ArgumentError, DeviceError, describe
from .ops import api as A
from .tensor import Tensor


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
    if bk.has_kernel("global_norm"):
        return Tensor(bk.kernel("global_norm")([g._data for g in live]), bk)
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
