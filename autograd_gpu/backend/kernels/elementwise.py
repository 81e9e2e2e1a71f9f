"""Vectorised relu, relu's backward and a bias row add (kernels/elementwise.cu): four elements
per thread with one vector load and store each, for C-contiguous arrays aligned to 4 elements
(CuPy's kernels move one element at a time). Each entry returns its result, or None when the
arrays do not qualify or the kernel failed its self-check for that dtype (the caller then uses
CuPy's kernel): each (kernel, dtype) is compared on first use with the CuPy expression it
replaces, on a probe with NaN, infinities and signed zeros."""

from __future__ import annotations

import numpy as np

from .loader import KernelFamily, equal_values, grid, i64, probe_values

FAMILY = KernelFamily(
    "elementwise", source="elementwise", templates=("relu_fwd", "relu_bwd", "add_rowvec"),
    entries=("relu", "relu_grad", "add_rowvec"),
    references={"relu": lambda x: np.maximum(x, 0),
                "relu_grad": lambda g, x: np.where(x <= 0, 0, g),  # a select (NaN x passes g)
                "add_rowvec": lambda x, b: x + b},
    self_check="each (kernel, dtype) on first use, against the CuPy expression it replaces",
    ops=("relu", "relu_grad", "add", "bias_act"),
    callers=("CupyBackend.relu", "CupyBackend.relu_grad", "CupyBackend.add"))


def _vec_ok(*arrays) -> bool:
    """C-contiguous and aligned for 4-element vector loads."""
    return all(a.flags.c_contiguous and a.data.ptr % (4 * a.itemsize) == 0 for a in arrays)


def _same_kind(*arrays) -> bool:
    a = arrays[0]
    return all(b.shape == a.shape and b.dtype == a.dtype for b in arrays[1:])


def _launch(bk, name, dtype, args, n):
    FAMILY.kernel(bk, name, dtype)((grid((n + 3) // 4, 256, 8192),), (256,), args)


def _run(bk, kernel, extra, arrays):
    a = arrays[0]
    y = bk.xp.empty_like(a)
    _launch(bk, kernel, a.dtype, (*arrays, y, i64(a.size), *extra), a.size)
    return y


def _checked(bk, kernel, extra, arrays, probes, reference):
    """The kernel's result, or None where its self-check for this dtype failed."""
    xp = bk.xp
    d = arrays[0].dtype

    def check():
        ps = [xp.asarray(p) for p in probes(d)]
        return equal_values(xp.asnumpy(_run(bk, kernel, extra(*ps), ps)),
                            xp.asnumpy(reference(xp, *ps)))

    if not FAMILY.passes(bk, d.str, check, kernel):
        return None
    return _run(bk, kernel, extra(*arrays), arrays)


def relu(bk, x):
    """maximum(x, 0), or None."""
    if not (_same_kind(x) and _vec_ok(x)):
        return None
    return _checked(bk, "relu_fwd", lambda x: (), (x,), lambda d: [probe_values(d)],
                    lambda xp, x: xp.maximum(x, 0))


def relu_grad(bk, g, x):
    """0 where x <= 0 else g (a select: a NaN x passes g, an inf g where x <= 0 gives 0), or
    None."""
    if not (_same_kind(g, x) and _vec_ok(g, x)):
        return None
    return _checked(bk, "relu_bwd", lambda g, x: (), (g, x),
                    lambda d: [probe_values(d)[::-1].copy(), probe_values(d)],
                    lambda xp, g, x: xp.where(x <= 0, 0, g))


def add_rowvec(bk, x, b):
    """x + b, b a row over x's last axis whose length is a multiple of 4 (same dtype), or
    None."""
    if not (b.ndim == 1 and x.ndim >= 1 and x.shape[-1] == b.shape[0] and b.shape[0] % 4 == 0
            and x.dtype == b.dtype and _vec_ok(x, b)):
        return None
    return _checked(bk, "add_rowvec", lambda x, b: (i64(b.shape[0]),), (x, b),
                    lambda d: [probe_values(d, 4096).reshape(64, 64),
                               probe_values(d, 64)[::-1].copy()],
                    lambda xp, x, b: x + b)


__all__ = ["FAMILY", "add_rowvec", "relu", "relu_grad"]
