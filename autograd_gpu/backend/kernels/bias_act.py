"""Bias add and activation in one pass (kernels/bias_act.cu): y = act(x + b), b a row over
the last axis (or None), act in relu, gelu (tanh form), tanh; and its backward
dx = g * act'(x + b), with db = the sum of dx over the leading axes on request."""

from __future__ import annotations

import numpy as np

from .loader import KernelFamily, acc, contig, grid, i64, np_acc

_ACTS = {"relu": 0, "gelu": 1, "gelu_tanh": 1, "tanh": 2}


def _act_code(act):
    try:
        return _ACTS[act]
    except KeyError:
        raise ValueError(f"bias_act kernel: act expected one of {sorted(_ACTS)}, got {act!r}") \
            from None


def _ref_act(z, act):
    code = _act_code(act)
    if code == 0:
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    if code == 2:
        t = np.tanh(z)
        return t, 1 - t * t
    k = np.sqrt(2 / np.pi)
    t = np.tanh(k * (z + 0.044715 * z**3))
    return (0.5 * z * (1 + t),
            0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z))


def _ref_bias_act(x, b, act="relu"):
    z = np_acc(x) + (0 if b is None else np_acc(b.astype(x.dtype)))
    return _ref_act(z, act)[0].astype(x.dtype)


def _ref_bias_act_grad(g, x, b, act="relu", need_db=True):
    z = np_acc(x) + (0 if b is None else np_acc(b.astype(x.dtype)))
    dz = (np_acc(g.astype(x.dtype)) * _ref_act(z, act)[1]).astype(x.dtype)
    db = None if b is None or not need_db else np_acc(dz).reshape(-1, x.shape[-1]).sum(
        0).astype(x.dtype).reshape(b.shape)
    return dz, db


FAMILY = KernelFamily(
    "bias_act", source="bias_act", templates=("bias_act_fwd", "bias_act_bwd"),
    entries=("bias_act", "bias_act_grad"),
    references={"bias_act": _ref_bias_act,            # act(x + b)
                "bias_act_grad": _ref_bias_act_grad},  # (g act'(x + b), its sum or None)
    ops=("bias_act", "bias_act_grad"),
    callers=("CupyBackend.bias_act", "CupyBackend.bias_act_grad"))


def _bias(xp, b, dtype, C):
    bb = None if b is None else contig(xp, b.astype(dtype, copy=False).reshape(-1))
    if bb is not None and bb.size != C:
        raise ValueError(f"bias_act kernel: bias has {bb.size} elements, expected {C}")
    return bb


def bias_act(bk, x, b, act="relu"):
    """act(x + b) in x's dtype; b over the last axis, or None."""
    xp = bk.xp
    code = _act_code(act)
    x = contig(xp, x)
    C = x.shape[-1] if x.ndim else 1
    bb = _bias(xp, b, x.dtype, C)
    y = xp.empty_like(x)
    if x.size:
        FAMILY.kernel(bk, "bias_act_fwd", x.dtype)(
            (grid(x.size),), (256,),
            (x, x if bb is None else bb, y, i64(x.size), np.int32(C), np.int32(code),
             np.int32(bb is not None)))
    return y


def bias_act_grad(bk, g, x, b, act="relu", need_db=True):
    """(dx, db): dx = g * act'(x + b) in x's dtype, db = sum of dx over the leading axes (None
    when b is None or not ``need_db``)."""
    xp = bk.xp
    code = _act_code(act)
    x = contig(xp, x)
    g = contig(xp, g.astype(x.dtype, copy=False))
    C = x.shape[-1] if x.ndim else 1
    bb = _bias(xp, b, x.dtype, C)
    dz = xp.empty_like(x)
    if x.size:
        FAMILY.kernel(bk, "bias_act_bwd", x.dtype)(
            (grid(x.size),), (256,),
            (g, x, x if bb is None else bb, dz, i64(x.size), np.int32(C), np.int32(code),
             np.int32(bb is not None)))
    db = None
    if b is not None and need_db:
        a = acc(x.dtype)
        db = dz.reshape(-1, C).astype(a, copy=False).sum(axis=0).astype(x.dtype).reshape(b.shape)
    return dz, db


__all__ = ["FAMILY", "bias_act", "bias_act_grad"]
