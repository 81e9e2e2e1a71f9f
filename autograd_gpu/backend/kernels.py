"""Fused CUDA kernels from ``autograd_gpu/kernels/*.cu``, compiled with NVRTC and cached.

``KERNELS`` maps a kernel name to (source file stem, name in ``kernel_impls``): a ``make_*``
factory, called with the backend and the stem, returns the callable that ``bk.kernel(name)``
hands out; any other name is a function taking the backend first, handed out bound to it. Call
signatures are documented in ``kernel_impls``; each kernel's reference is its op's xp (numpy)
path.
"""

from __future__ import annotations

import functools
import os
import warnings
from importlib import resources

KERNELS: dict[str, tuple[str, str]] = {
    # ops/nn.py
    "softmax_lastdim": ("softmax", "make_softmax"),
    "log_softmax_lastdim": ("softmax", "make_log_softmax"),
    "softmax_lastdim_grad": ("softmax", "make_softmax_grad"),
    "log_softmax_lastdim_grad": ("softmax", "make_log_softmax_grad"),
    "cross_entropy": ("cross_entropy", "cross_entropy"),
    "cross_entropy_grad": ("cross_entropy", "cross_entropy_grad"),
    "cross_entropy_dlogits": ("cross_entropy", "cross_entropy_dlogits"),
    "layer_norm": ("layer_norm", "layer_norm"),
    "layer_norm_grad": ("layer_norm", "layer_norm_grad"),
    "layer_norm_grad_y": ("layer_norm", "layer_norm_grad_y"),
    "bias_act": ("bias_act", "bias_act"),
    "bias_act_grad": ("bias_act", "bias_act_grad"),
    # ops/indexing.py, ops/conv.py (embedding): deterministic scatter-add
    "scatter_add": ("segment_sum", "deterministic_scatter_add"),
    # ops/random.py
    "dropout": ("dropout", "dropout"),
    "dropout_mask": ("dropout", "dropout_mask"),
    # clipping, amp, optim (multi-tensor)
    "global_norm": ("multi_tensor", "global_norm"),
    "clip_by_global_norm": ("multi_tensor", "clip_by_global_norm"),
    "unscale_and_check": ("multi_tensor", "unscale_and_check"),
    "sgd_momentum": ("optim", "make_sgd_momentum"),
    "adam": ("optim", "make_adam"),
    # ops/elementwise.py: vectorised relu, relu backward, bias add; mixed-precision casts
    "relu": ("elementwise", "make_relu"),
    "relu_grad": ("elementwise", "make_relu_grad"),
    "add_rowvec": ("elementwise", "make_add_rowvec"),
    "cast": ("cast", "make_cast"),
    # ops/elementwise.py on arrays under 65,536 elements: one launch with a short host path
    "small_scalar": ("small", "make_small_scalar"),
    "small_unary": ("small", "make_small_unary"),
    "small_act_grad": ("small", "make_small_act_grad"),
}

_INCLUDE = '#include "common.cuh"'


def kernel_dir():
    return resources.files("autograd_gpu").joinpath("kernels")


def kernel_source(stem: str) -> str:
    """The source of ``kernels/<stem>.cu`` with the shared header spliced in (NVRTC gets one
    self-contained string, so CuPy's compile cache sees every change)."""
    d = kernel_dir()
    src = d.joinpath(f"{stem}.cu").read_text()
    if _INCLUDE in src:
        src = src.replace(_INCLUDE, d.joinpath("common.cuh").read_text().replace(
            "#pragma once", ""), 1)
    return src


def kernels_enabled() -> bool:
    """False when the environment sets AUTOGRAD_GPU_KERNELS=0 (every op then takes its xp path:
    for A/B comparisons and debugging)."""
    return os.environ.get("AUTOGRAD_GPU_KERNELS", "1").strip().lower() not in ("0", "false", "no")


class KernelTable:
    """The kernels of one CuPy backend. ``has(name)`` compiles the kernel's source file on first
    use; a file that does not compile is reported once with a warning naming the error, and its
    kernels are then unavailable (the ops take their xp path), rather than failing every op."""

    def __init__(self, bk):
        self.bk = bk
        self._cache = {}
        self._ok = {}
        self.enabled = kernels_enabled()

    def has(self, name: str) -> bool:
        ok = self._ok.get(name)
        if ok is None:
            ok = self._ok[name] = self._probe(name)
        return ok

    def _probe(self, name: str) -> bool:
        if not self.enabled or name not in KERNELS:
            return False
        from . import kernel_impls

        stem = KERNELS[name][0]
        try:
            kernel_impls.ensure_compiled(stem, self.bk.index)
        except Exception as exc:  # NVRTC missing or failing: say so, then use the xp path
            warnings.warn(f"autograd_gpu: fused kernels of kernels/{stem}.cu are unavailable "
                          f"({type(exc).__name__}: {exc}); ops use their xp path instead",
                          RuntimeWarning, stacklevel=3)
            return False
        return True

    def get(self, name: str):
        fn = self._cache.get(name)
        if fn is None:
            from . import kernel_impls

            if name not in KERNELS:
                raise KeyError(f"no fused kernel named {name!r}; known: {sorted(KERNELS)}")
            stem, attr = KERNELS[name]
            impl = getattr(kernel_impls, attr)
            fn = impl(self.bk, stem) if attr.startswith("make_") else functools.partial(
                impl, self.bk)
            self._cache[name] = fn
        return fn
