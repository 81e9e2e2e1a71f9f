"""Dropout masks from a counter-based generator (kernels/dropout.cu, Philox4x32-10): the same
(seed, offset) gives the same mask, so a replayed op (checkpointing) draws it again, and a
captured CUDA graph needs no generator state. ``philox4x32_10``, ``philox_words`` and
``dropout_keep_numpy`` are its CPU twin, bit-identical (Random123's known-answer vectors are in
tests/test_kernels_compile.py)."""

from __future__ import annotations

import numpy as np

from ... import dtypes as _dt
from .loader import KernelFamily, contig, grid, i64, np_acc

_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)


def philox4x32_10(ctr, key):
    """Philox4x32-10 on numpy arrays: ``ctr`` uint32 (..., 4), ``key`` (k0, k1). The CPU twin of
    the device generator in dropout.cu (bit-identical)."""
    c = [np.asarray(ctr[..., i], dtype=np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0] & 0xFFFFFFFF), np.uint64(key[1] & 0xFFFFFFFF)
    m0, m1 = np.uint64(_PHILOX_M[0]), np.uint64(_PHILOX_M[1])
    mask = np.uint64(0xFFFFFFFF)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(_PHILOX_W[0])) & mask
            k1 = (k1 + np.uint64(_PHILOX_W[1])) & mask
        p0 = m0 * c[0]
        p1 = m1 * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & mask
        hi1, lo1 = p1 >> np.uint64(32), p1 & mask
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return np.stack(c, axis=-1).astype(np.uint32)


def philox_words(n: int, seed: int, offset: int = 0) -> np.ndarray:
    """The first ``n`` 32-bit words of the stream (seed, offset): word i is lane i % 4 of the
    block with counter (i // 4, offset) (each 64 bits, low word first)."""
    groups = (n + 3) // 4
    g = np.arange(groups, dtype=np.uint64)
    ctr = np.empty((groups, 4), dtype=np.uint32)
    ctr[:, 0] = (g & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    ctr[:, 1] = (g >> np.uint64(32)).astype(np.uint32)
    ctr[:, 2] = np.uint32(offset & 0xFFFFFFFF)
    ctr[:, 3] = np.uint32((offset >> 32) & 0xFFFFFFFF)
    seed &= (1 << 64) - 1
    return philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32)).reshape(-1)[:n]


def philox_uniform(shape, seed: int, offset: int = 0) -> np.ndarray:
    """float32 uniforms in [0, 1) with 24 random bits, the same values the GPU draws."""
    shape = tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    w = philox_words(n, seed, offset)
    return ((w >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)).reshape(shape)


def dropout_keep_numpy(shape, p: float, seed: int, offset: int = 0) -> np.ndarray:
    """The keep mask (bool) the GPU dropout kernel draws for (shape, p, seed, offset)."""
    return philox_uniform(shape, seed, offset) >= np.float32(p)


def _ref_dropout(x, p, seed, offset=0):
    keep = dropout_keep_numpy(x.shape, p, seed, offset)
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    return np.where(keep, np_acc(x) * scale, 0.0).astype(x.dtype), keep


def _ref_dropout_mask(shape, p, seed, offset=0, dtype=np.float32):
    dtype = _dt.as_dtype(dtype)
    keep = dropout_keep_numpy(shape, p, seed, offset)
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    return np.where(keep, scale, 0.0).astype(dtype)


FAMILY = KernelFamily(
    "dropout", source="dropout", templates=("dropout_fwd",), plain=("philox_words",),
    entries=("dropout", "dropout_mask", "philox_words_device"),
    references={"dropout": _ref_dropout,            # (x * keep / (1 - p), keep)
                "dropout_mask": _ref_dropout_mask,  # keep / (1 - p) in dtype
                "philox_words_device": philox_words},
    ops=("dropout",), callers=("CupyBackend.dropout_mask",))


def _seed(v):
    return np.uint64(int(v) & ((1 << 64) - 1))


def dropout(bk, x, p, seed, offset=0):
    """(y, mask): y = x * keep / (1 - p), mask = keep (bool)."""
    xp = bk.xp
    x = contig(xp, x)
    y = xp.empty_like(x)
    mask = xp.empty(x.shape, dtype=np.bool_)
    n = x.size
    if n:
        FAMILY.kernel(bk, "dropout_fwd", x.dtype)(
            (grid((n + 3) // 4),), (256,),
            (x, y, mask, i64(n), np.float64(p), _seed(seed), _seed(offset), np.int32(0)))
    return y, mask


def dropout_mask(bk, shape, p, seed, offset=0, dtype=np.float32):
    """m = keep / (1 - p) as an array of ``dtype`` (dropout's backward: dx = g * m)."""
    xp = bk.xp
    dtype = _dt.as_dtype(dtype)
    m = xp.empty(tuple(shape), dtype=dtype)
    n = m.size
    if n:
        dummy = xp.empty((1,), dtype=np.uint8)
        FAMILY.kernel(bk, "dropout_fwd", dtype)(
            (grid((n + 3) // 4),), (256,),
            (m, m, dummy, i64(n), np.float64(p), _seed(seed), _seed(offset), np.int32(1)))
    return m


def philox_words_device(bk, n, seed, offset=0):
    """The generator's raw words on the device (for the parity test against ``philox_words``)."""
    xp = bk.xp
    groups = (n + 3) // 4
    out = xp.empty(groups * 4, dtype=np.uint32)
    if groups:
        FAMILY.kernel(bk, "philox_words")(
            (grid(groups),), (256,), (out, i64(groups), _seed(seed), _seed(offset)))
    return out[:n]


__all__ = ["FAMILY", "dropout", "dropout_keep_numpy", "dropout_mask", "philox4x32_10",
           "philox_uniform", "philox_words", "philox_words_device"]
