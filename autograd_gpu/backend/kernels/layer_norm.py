"""Layer normalisation over the last axis (kernels/layer_norm.cu): the forward with optional
affine parameters (y, mean, rstd in one pass per row), the backward from the input (dx and,
in a second pass over chunks of rows, dgamma and dbeta), and the backward of the affine-free
norm from its output y and rstd (what the layer_norm op saves)."""

from __future__ import annotations

import numpy as np

from .loader import KernelFamily, acc, contig, i64, np_acc, rows_block


def _ref_layer_norm(x, gamma=None, beta=None, eps=1e-5):
    xf = np_acc(x)
    mean = xf.mean(-1, keepdims=True)
    var = ((xf - mean) ** 2).mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (xf - mean) * rstd
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype), mean[..., 0], rstd[..., 0]


def _ref_layer_norm_grad(g, x, gamma, mean, rstd, need_params=True):
    xf, gf = np_acc(x), np_acc(g.astype(x.dtype))
    xh = (xf - mean[..., None]) * rstd[..., None]
    gh = gf * (1.0 if gamma is None else np_acc(gamma.astype(x.dtype)))
    dx = rstd[..., None] * (gh - gh.mean(-1, keepdims=True)
                            - xh * (gh * xh).mean(-1, keepdims=True))
    if not need_params:
        return dx.astype(x.dtype), None, None
    lead = tuple(range(x.ndim - 1))
    return (dx.astype(x.dtype), (gf * xh).sum(lead).astype(x.dtype),
            gf.sum(lead).astype(x.dtype))


def _ref_layer_norm_grad_y(g, y, rstd):
    rs = np_acc(rstd.reshape(y.shape[:-1]))[..., None]
    gf, yf = np_acc(g.astype(y.dtype)), np_acc(np.broadcast_to(y, g.shape))
    dx = rs * (gf - gf.mean(-1, keepdims=True) - yf * (gf * yf).mean(-1, keepdims=True))
    return dx.astype(y.dtype)


FAMILY = KernelFamily(
    "layer_norm", source="layer_norm",
    templates=("ln_fwd", "ln_bwd_dx", "ln_bwd_y", "ln_bwd_params"),
    entries=("layer_norm", "layer_norm_grad", "layer_norm_grad_y"),
    references={
        "layer_norm": _ref_layer_norm,                # (y, mean, rstd)
        "layer_norm_grad": _ref_layer_norm_grad,      # (dx, dgamma, dbeta)
        "layer_norm_grad_y": _ref_layer_norm_grad_y,  # rstd (g - mean(g) - y mean(g y))
    },
    ops=("layer_norm", "layer_norm_grad"),
    callers=("CupyBackend.layer_norm", "CupyBackend.layer_norm_grad"))


def _param(xp, p, dtype, C, what):
    if p is None:
        return None
    if p.size != C:
        raise ValueError(f"layer_norm kernel: {what} has {p.size} elements, expected {C}")
    return contig(xp, p.astype(dtype, copy=False).reshape(C))


def layer_norm(bk, x, gamma=None, beta=None, eps=1e-5):
    """(y, mean, rstd) of layer normalisation over the last axis; mean and rstd have shape
    x.shape[:-1] (float32, float64 for float64 x)."""
    xp = bk.xp
    x = contig(xp, x)
    C = x.shape[-1]
    rows = x.size // C if C else 0
    a = acc(x.dtype)
    y = xp.empty_like(x)
    mean = xp.empty(x.shape[:-1], dtype=a)
    rstd = xp.empty(x.shape[:-1], dtype=a)
    gm = _param(xp, gamma, x.dtype, C, "gamma")
    bt = _param(xp, beta, x.dtype, C, "beta")
    if rows and C:
        FAMILY.kernel(bk, "ln_fwd", x.dtype)(
            (min(rows, 1 << 20),), (rows_block(C),),
            (x, x if gm is None else gm, x if bt is None else bt, y, mean, rstd, i64(rows),
             np.int32(C), np.float64(eps), np.int32(gm is not None), np.int32(bt is not None)))
    return y, mean, rstd


def layer_norm_grad(bk, g, x, gamma, mean, rstd, need_params=True):
    """(dx, dgamma, dbeta); dgamma and dbeta (sums over every leading axis) are None when
    ``need_params`` is false."""
    xp = bk.xp
    x = contig(xp, x)
    g = contig(xp, g.astype(x.dtype, copy=False))
    if g.shape != x.shape:
        raise ValueError(f"layer_norm_grad kernel: g of shape {g.shape}, expected {x.shape}")
    C = x.shape[-1]
    rows = x.size // C if C else 0
    gm = _param(xp, gamma, x.dtype, C, "gamma")
    mean, rstd = contig(xp, mean), contig(xp, rstd)
    dx = xp.empty_like(x)
    if rows and C:
        FAMILY.kernel(bk, "ln_bwd_dx", x.dtype)(
            (min(rows, 1 << 20),), (rows_block(C),),
            (g, x, x if gm is None else gm, mean, rstd, dx, i64(rows), np.int32(C),
             np.int32(gm is not None)))
    if not need_params:
        return dx, None, None
    a = acc(x.dtype)
    rpc = 64
    chunks = max(1, (rows + rpc - 1) // rpc)
    if chunks > 2048:  # keep the partial buffers small
        chunks = 2048
        rpc = (rows + chunks - 1) // chunks
    pg = xp.zeros((chunks, C), dtype=a)
    pb = xp.zeros((chunks, C), dtype=a)
    if rows and C:
        FAMILY.kernel(bk, "ln_bwd_params", x.dtype)(
            ((C + 127) // 128, chunks), (128,),
            (g, x, mean, rstd, pg, pb, i64(rows), np.int32(C), i64(rpc)))
    return dx, pg.sum(axis=0).astype(x.dtype), pb.sum(axis=0).astype(x.dtype)


def layer_norm_grad_y(bk, g, y, rstd):
    """dx = rstd * (g - mean(g) - y * mean(g * y)) over the last axis: the backward of a layer
    norm without affine part from its output y and rstd (one value per row of y, in any shape
    holding them, e.g. keepdims). ``g`` may carry leading batch axes (y and rstd broadcast)."""
    xp = bk.xp
    dt = y.dtype
    C = y.shape[-1] if y.ndim else 1
    rs = rstd.astype(dt, copy=False).reshape(y.shape[:-1])
    if g.shape != y.shape:
        y = xp.broadcast_to(y, g.shape)
        rs = xp.broadcast_to(rs, g.shape[:-1])
    g = contig(xp, g.astype(dt, copy=False))
    y, rs = contig(xp, y), contig(xp, rs)
    rows = g.size // C if C else 0
    dx = xp.empty_like(g)
    if rows and C:
        FAMILY.kernel(bk, "ln_bwd_y", dt)(
            (min(rows, 1 << 20),), (rows_block(C),), (g, y, rs, dx, i64(rows), np.int32(C)))
    return dx


__all__ = ["FAMILY", "layer_norm", "layer_norm_grad", "layer_norm_grad_y"]
