"""The NumPy backend: the reference implementation of every op."""

from __future__ import annotations

import numpy as np

from .base import Device


class NumpyBackend:
    name = "numpy"
    xp = np
    matmul = staticmethod(np.matmul)
    sum = staticmethod(np.sum)

    def __init__(self):
        self.device = Device("cpu")
        self.array_type = np.ndarray

    def asarray(self, obj, dtype=None):
        return np.asarray(obj, dtype=dtype)

    def to_numpy(self, arr):
        return np.asarray(arr)

    def is_array(self, obj) -> bool:
        return isinstance(obj, np.ndarray)

    add = staticmethod(np.add)

    @staticmethod
    def relu(x):
        return np.maximum(x, 0)

    scalar_kernels = False  # NumPy's ufuncs are the reference (see CupyBackend.scalar_op)

    @staticmethod
    def mixed_floats_ok(dtypes) -> bool:
        return True  # NumPy (with ml_dtypes) promotes float mixes inside its ufunc loops

    @staticmethod
    def astype(x, dtype):
        return x.astype(dtype, copy=False)

    @staticmethod
    def act_grad(act, g, y):
        """An activation's vjp from its output: tanh g (1 - y^2), sigmoid g y (1 - y)."""
        if act == "tanh":
            return g - g * y * y  # no Python-scalar operand: NumPy's weak-scalar path is slow
        return g * (y - y * y)

    @staticmethod
    def relu_grad(g, x):
        return g * (x > 0)  # a boolean mask: twice as fast as sign() or where() in NumPy

    def has_kernel(self, name: str) -> bool:
        return False

    def kernel(self, name: str):
        raise KeyError(f"the numpy backend has no fused kernel {name!r}; use the xp path")

    def synchronize(self) -> None:
        return None

    def scatter_add(self, target, index, values):
        """target[index] += values with repeated indices accumulated (deterministic on CPU)."""
        np.add.at(target, index, values)
        return target

    deterministic_scatter_add = scatter_add  # np.add.at sums in index order

    def __repr__(self) -> str:
        return "NumpyBackend(cpu)"


NUMPY = NumpyBackend()
