"""autograd_gpu: GPU-first automatic differentiation (CuPy on NVIDIA GPUs, NumPy elsewhere)."""

from __future__ import annotations

from . import dtypes
from .backend import Device, default_device, device, set_default_device
from .errors import (
    AnomalyError,
    ArgumentError,
    AutogradError,
    DeviceError,
    DTypeError,
    NonDeterministicOpError,
    ShapeError,
    TapeError,
)
from .ops import REGISTRY, api as _api, apply, defop
from .ops.api import *  # noqa: F403
from .tape import GradientTape, no_grad, stop_gradient
from .tensor import Tensor, TrackedTensor, Variable

__version__ = "0.1.0"

for _name in dir(_api):
    if not _name.startswith("_") and _name not in globals():
        globals()[_name] = getattr(_api, _name)
