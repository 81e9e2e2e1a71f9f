"""The error hierarchy. Every failure the library detects raises one of these.

A message names the op, the argument, what was expected and what was given.
"""

from __future__ import annotations

import numpy as _np

__all__ = [
    "AutogradError", "ShapeError", "DTypeError", "DeviceError", "TapeError",
    "NonDeterministicOpError", "AnomalyError", "ArgumentError", "LinAlgError", "VmapError",
    "describe",
]


class AutogradError(Exception):
    """Base class of every error raised by autograd_gpu."""


class ShapeError(AutogradError, ValueError):
    """Shapes that do not fit the op (matmul inner dims, broadcasting, reshape sizes)."""


class DTypeError(AutogradError, TypeError):
    """A dtype the op cannot take (integers where floats are required, watching an int)."""


class DeviceError(AutogradError, RuntimeError):
    """A device that cannot be used, or inputs that live on different devices."""


class TapeError(AutogradError, RuntimeError):
    """Misuse of a GradientTape (reuse of a non-persistent tape, gradient of nothing)."""


class NonDeterministicOpError(AutogradError, RuntimeError):
    """An op without a deterministic path ran under DeterministicMode.STRICT."""


class AnomalyError(AutogradError, FloatingPointError):
    """A NaN or inf appeared inside ``ag.detect_anomaly()``."""


class ArgumentError(AutogradError, TypeError):
    """An argument of the wrong kind (not a tensor, an unknown option, a bad value)."""


class LinAlgError(AutogradError, _np.linalg.LinAlgError):
    """A linear-algebra routine failed where NumPy's raises numpy.linalg.LinAlgError (a singular
    matrix in solve or inv, a matrix that is not positive definite in cholesky, no convergence
    in eigh or svd): the same failure, naming the op. It is also a numpy.linalg.LinAlgError (a
    ValueError), so code that catches NumPy's error catches it."""


class VmapError(AutogradError, RuntimeError):
    """Inside ``ag.vmap``: data-dependent Python control flow on a batched value (a value that
    differs per example has no single Python value), a random op under randomness='error', or
    a batched value used after its vmap ended."""


def describe(x) -> str:
    """A short description of a value for error messages: kind, shape, dtype, device."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        dev = getattr(x, "device", None)
        where = f", device={dev}" if dev is not None and not callable(dev) else ""
        return f"{type(x).__name__}(shape={tuple(shape)}, dtype={dtype}{where})"
    return f"{type(x).__name__} {x!r}"[:120]
