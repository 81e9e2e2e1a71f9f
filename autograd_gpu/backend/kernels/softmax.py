"""Softmax and log-softmax over the last axis, forward and backward (kernels/softmax.cu): one
block per row, in the storage dtype's accumulation type."""

from __future__ import annotations

import numpy as np

from .loader import KernelFamily, contig, i64, np_acc, rows_block


def _ref_softmax(x, log=False):
    xf = np_acc(x)
    z = xf - xf.max(-1, keepdims=True)
    lse = np.log(np.exp(z).sum(-1, keepdims=True))
    return (z - lse if log else np.exp(z - lse)).astype(x.dtype)


def _ref_softmax_grad(g, y, log=False):
    g = g.astype(y.dtype)
    gf, yf = np_acc(g), np_acc(np.broadcast_to(y, g.shape))
    if log:
        return (gf - np.exp(yf) * gf.sum(-1, keepdims=True)).astype(y.dtype)
    return (yf * (gf - (gf * yf).sum(-1, keepdims=True))).astype(y.dtype)


FAMILY = KernelFamily(
    "softmax", source="softmax", templates=("softmax_fwd", "softmax_bwd"),
    entries=("softmax", "log_softmax", "softmax_grad", "log_softmax_grad"),
    references={
        "softmax": _ref_softmax,                                  # y = softmax(x, -1)
        "log_softmax": lambda x: _ref_softmax(x, True),           # y = log_softmax(x, -1)
        "softmax_grad": _ref_softmax_grad,                        # y * (g - sum(g * y, -1))
        "log_softmax_grad": lambda g, y: _ref_softmax_grad(g, y, True),  # g - exp(y) sum(g)
    },
    ops=("softmax", "log_softmax", "softmax_grad", "log_softmax_grad"),
    callers=("CupyBackend.softmax", "CupyBackend.log_softmax", "CupyBackend.softmax_grad",
             "CupyBackend.log_softmax_grad"))


def _fwd(bk, x, log):
    xp = bk.xp
    x = contig(xp, x)
    y = xp.empty_like(x)
    if x.size == 0:
        return y
    C = x.shape[-1] if x.ndim else 1
    rows = x.size // C
    FAMILY.kernel(bk, "softmax_fwd", x.dtype)(
        (min(rows, 1 << 20),), (rows_block(C),), (x, y, i64(rows), np.int32(C), np.int32(log)))
    return y


def _bwd(bk, g, y, log):
    xp = bk.xp
    if g.shape != y.shape or g.dtype != y.dtype:  # batched cotangents: broadcast y, match dtype
        g = g.astype(y.dtype, copy=False)
        y = xp.broadcast_to(y, g.shape)
    g, y = contig(xp, g), contig(xp, y)
    dx = xp.empty_like(g)
    if g.size == 0:
        return dx
    C = g.shape[-1] if g.ndim else 1
    rows = g.size // C
    FAMILY.kernel(bk, "softmax_bwd", g.dtype)(
        (min(rows, 1 << 20),), (rows_block(C),),
        (g, y, dx, i64(rows), np.int32(C), np.int32(log)))
    return dx


def softmax(bk, x):
    """softmax(x) over the last axis."""
    return _fwd(bk, x, 0)


def log_softmax(bk, x):
    """log_softmax(x) over the last axis."""
    return _fwd(bk, x, 1)


def softmax_grad(bk, g, y):
    """y * (g - sum(g * y, -1)) from softmax's output y; g may carry leading batch axes."""
    return _bwd(bk, g, y, 0)


def log_softmax_grad(bk, g, y):
    """g - exp(y) * sum(g, -1) from log_softmax's output y."""
    return _bwd(bk, g, y, 1)


__all__ = ["FAMILY", "log_softmax", "log_softmax_grad", "softmax", "softmax_grad"]
