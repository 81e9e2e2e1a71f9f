"""Deterministic scatter-add (kernels/segment_sum.cu): target[index] += values with duplicate
indices summed in a fixed order, by a stable sort of the indices and one thread per (segment,
column) (no atomics: the same bits on every run; float16/bfloat16 too, which
cupyx.scatter_add refuses)."""

from __future__ import annotations

import numpy as np

from .loader import KernelFamily, contig, ctype, grid, i64


def _ref_scatter_add(target, index, values):
    np.add.at(target, index, values)
    return target


FAMILY = KernelFamily(
    "segment_sum", source="segment_sum", templates=("segment_sum",),
    entries=("scatter_add",), references={"scatter_add": _ref_scatter_add},
    ops=("scatter_add", "embedding_grad"),
    callers=("CupyBackend.scatter_add", "CupyBackend.deterministic_scatter_add"))


def scatter_add(bk, target, index, values):
    """``target[index] += values`` in place, duplicates summed in a fixed order (no atomics).

    ``index``: an integer array selecting along axis 0 (``values.shape == index.shape +
    target.shape[1:]``; negative entries count from the end), or any other numpy-style index
    (tuples of integer arrays, slices, integers, boolean masks), which is reduced to flat
    positions first. ``target`` must be C-contiguous (it is updated in place).
    """
    xp = bk.xp
    if not target.flags.c_contiguous:
        raise ValueError("scatter_add kernel: target must be C-contiguous (updated in place)")
    ctype(target.dtype)
    if (hasattr(index, "dtype") and index.dtype.kind in "iu" and target.ndim >= 1
            and not isinstance(index, tuple)):
        M = target.shape[0]
        idx = xp.asarray(index).astype(np.int64, copy=False).reshape(-1)
        D = target.size // M if M else 0
        vals = xp.broadcast_to(values, tuple(index.shape) + target.shape[1:])
        flat_target = target.reshape(M, D) if M else target
    else:
        # general index: the flat position of every selected element
        size = target.size
        pos_dtype = np.int32 if size < 2**31 else np.int64
        pos = xp.arange(size, dtype=pos_dtype).reshape(target.shape)[index]
        M, D = size, 1
        idx = pos.astype(np.int64, copy=False).reshape(-1)
        vals = xp.broadcast_to(values, pos.shape)
        flat_target = target.reshape(-1)
    K = idx.size
    if K == 0 or D == 0:
        return target
    vals = contig(xp, vals.astype(target.dtype, copy=False)).reshape(K * D)
    idx = xp.where(idx < 0, idx + M, idx)
    order = xp.argsort(idx)  # stable: duplicates keep their original order
    sorted_idx = idx[order]
    total = K * D
    FAMILY.kernel(bk, "segment_sum", target.dtype)(
        (grid(total, 256, 1 << 20),), (256,),
        (sorted_idx, order, vals, flat_target, i64(K), i64(D), i64(M)))
    return target


__all__ = ["FAMILY", "scatter_add"]
