"""Cross-entropy with integer labels over the last axis (kernels/cross_entropy.cu): loss and
logsumexp in one pass over the logits (d loss / d logits too, on request), the gradient from
the saved logsumexp, and the product of that gradient with the loss's cotangent.

With q = (1 - s) onehot(label) + s / C (s the label smoothing): lse = logsumexp(logits),
loss = lse - (1 - s) logits[label] - s mean(logits) (float32; float64 for float64 logits; NaN
loss and lse for a label outside [0, C); loss 0 where label == ignore_index), and
dlogits = softmax(logits) - q in the logits' dtype."""

from __future__ import annotations

import numpy as np

from .loader import KernelFamily, acc, contig, grid, i64, np_acc, rows_block


def _ref_cross_entropy(x, labels, ignore_index=None, label_smoothing=0.0, want_dlogits=True):
    xf = np_acc(x)
    C = x.shape[-1]
    m = xf.max(-1, keepdims=True)
    lse_all = (np.log(np.exp(xf - m).sum(-1, keepdims=True)) + m)[..., 0]
    valid = (labels >= 0) & (labels < C)
    lab = np.where(valid, labels, 0)
    picked = np.take_along_axis(xf, lab[..., None], -1)[..., 0]
    s = label_smoothing
    ign = np.zeros(labels.shape, bool) if ignore_index is None else labels == ignore_index
    loss = np.where(valid, lse_all - (1 - s) * picked - s * xf.mean(-1), np.nan)
    loss = np.where(ign, 0.0, loss).astype(xf.dtype)
    lse = np.where(valid | ign, lse_all, np.nan).astype(xf.dtype)
    dlog = _ref_ce_dlogits(x, labels, lse, ignore_index, s) if want_dlogits else None
    return loss, lse, dlog


def _ref_ce_dlogits(x, labels, lse, ignore_index=None, label_smoothing=0.0):
    xf = np_acc(x)
    C = x.shape[-1]
    valid = (labels >= 0) & (labels < C)
    q = (np.arange(C) == labels[..., None]) * (1 - label_smoothing) + label_smoothing / C
    e = np.exp(xf - lse.reshape(labels.shape)[..., None])
    d = e / e.sum(-1, keepdims=True) - q
    d = np.where(valid[..., None], d, np.nan)
    if ignore_index is not None:
        d = np.where((labels == ignore_index)[..., None], 0.0, d)
    return d.astype(x.dtype)


def _ref_ce_grad(g, dlogits):
    a = acc(dlogits.dtype)
    return (dlogits.astype(a) * np.expand_dims(g.astype(a), -1)).astype(dlogits.dtype)


FAMILY = KernelFamily(
    "cross_entropy", source="cross_entropy", templates=("ce_fwd", "ce_dlogits", "ce_bwd"),
    entries=("cross_entropy", "cross_entropy_dlogits", "cross_entropy_grad"),
    references={
        "cross_entropy": _ref_cross_entropy,          # (loss, lse, dlogits or None)
        "cross_entropy_dlogits": _ref_ce_dlogits,     # e / sum(e) - q, e = exp(x - lse)
        "cross_entropy_grad": _ref_ce_grad,           # dlogits * g[..., None]
    },
    ops=("cross_entropy", "cross_entropy_dlogits"),
    callers=("CupyBackend.cross_entropy", "CupyBackend.cross_entropy_dlogits"))


def _labels(xp, labels, lead):
    if tuple(labels.shape) != lead:
        raise ValueError(f"cross_entropy kernel: labels of shape {tuple(labels.shape)}, "
                         f"expected {lead} (the logits' shape without the class axis)")
    return contig(xp, labels.astype(np.int64, copy=False))


def _ignore(ignore_index):
    return (i64(0), np.int32(0)) if ignore_index is None else (i64(ignore_index), np.int32(1))


def cross_entropy(bk, logits, labels, ignore_index=None, label_smoothing=0.0,
                  want_dlogits=True):
    """(loss, lse, dlogits) in one pass over the logits; see the module docstring. ``loss`` and
    ``lse`` have the labels' shape (float32, float64 for float64 logits); ``dlogits`` is None
    unless ``want_dlogits``."""
    xp = bk.xp
    x = contig(xp, logits)
    C = x.shape[-1]
    lead = x.shape[:-1]
    lab = _labels(xp, labels, lead)
    a = acc(x.dtype)
    loss = xp.empty(lead, dtype=a)
    lse = xp.empty(lead, dtype=a)
    dlog = xp.empty_like(x) if want_dlogits else None
    rows = x.size // C if C else 0
    if rows and C:
        FAMILY.kernel(bk, "ce_fwd", x.dtype)(
            (min(rows, 1 << 20),), (rows_block(C),),
            (x, lab, loss, lse, x if dlog is None else dlog, i64(rows), np.int32(C),
             *_ignore(ignore_index), np.float64(label_smoothing), np.int32(want_dlogits)))
    return loss, lse, dlog


def cross_entropy_dlogits(bk, logits, labels, lse, ignore_index=None, label_smoothing=0.0):
    """d loss / d logits = e / sum(e) - q, e = exp(logits - lse), from the lse the forward
    saved (any shape holding one value per row, e.g. keepdims; float32, float64 for float64)."""
    xp = bk.xp
    x = contig(xp, logits)
    C = x.shape[-1]
    lead = x.shape[:-1]
    lab = _labels(xp, labels, lead)
    ls = contig(xp, lse.astype(acc(x.dtype), copy=False)).reshape(lead)
    dlog = xp.empty_like(x)
    rows = x.size // C if C else 0
    if rows and C:
        FAMILY.kernel(bk, "ce_dlogits", x.dtype)(
            (min(rows, 1 << 20),), (rows_block(C),),
            (x, lab, ls, dlog, i64(rows), np.int32(C), *_ignore(ignore_index),
             np.float64(label_smoothing)))
    return dlog


def cross_entropy_grad(bk, g, dlogits):
    """dx = dlogits * g[..., None]; g has the loss's shape (or leading batch axes before it)."""
    xp = bk.xp
    lead = dlogits.shape[:-1]
    if tuple(g.shape) != lead:  # batched or broadcast cotangent: plain broadcasting
        return (dlogits * xp.expand_dims(g, -1)).astype(dlogits.dtype, copy=False)
    gr = contig(xp, g.astype(acc(dlogits.dtype), copy=False))
    d = contig(xp, dlogits)
    dx = xp.empty_like(d)
    n = d.size
    if n:
        FAMILY.kernel(bk, "ce_bwd", d.dtype)(
            (grid(n),), (256,), (d, gr, dx, i64(n), np.int32(d.shape[-1])))
    return dx


__all__ = ["FAMILY", "cross_entropy", "cross_entropy_dlogits", "cross_entropy_grad"]
