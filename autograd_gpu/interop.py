"""Zero-copy exchange with PyTorch, JAX, CuPy and NumPy through DLPack.

``ag.from_dlpack(x)`` wraps any object with ``__dlpack__`` (a torch tensor, a jax array, a cupy or
numpy array) without copying; ``Tensor.__dlpack__`` lets those libraries take ours the same way.
"""

from __future__ import annotations

import numpy as np

from .backend import NUMPY, backend_for
from .errors import ArgumentError, DeviceError, describe
from .tensor import Tensor

_CPU, _CUDA, _CUDA_HOST, _CUDA_MANAGED = 1, 2, 3, 13


def from_dlpack(x) -> Tensor:
    """A Tensor sharing memory with ``x`` (any DLPack producer), on x's device."""
    if isinstance(x, Tensor):
        return x
    if not hasattr(x, "__dlpack__") or not hasattr(x, "__dlpack_device__"):
        raise ArgumentError(f"from_dlpack: argument 'x' expected an object with __dlpack__ and "
                            f"__dlpack_device__, got {describe(x)}")
    kind, index = x.__dlpack_device__()
    kind = int(kind)
    if kind in (_CPU, _CUDA_HOST):
        return Tensor(np.from_dlpack(x), NUMPY)
    if kind in (_CUDA, _CUDA_MANAGED):
        bk = backend_for(f"cuda:{int(index)}")  # DeviceError with the reason if unusable
        return Tensor(bk.xp.from_dlpack(x), bk)
    raise DeviceError(f"from_dlpack: argument 'x' lives on DLPack device type {kind}, expected "
                      "CPU (1) or CUDA (2)")


__all__ = ["from_dlpack"]
