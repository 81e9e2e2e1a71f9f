"""Device layer: the Backend protocol, NumPy and CuPy backends, and device selection."""

from .base import Backend, Device
from .numpy_backend import NUMPY, NumpyBackend
from .select import (
    backend_for,
    backend_of_array,
    default_backend,
    default_device,
    device,
    gpu_available,
    set_default_device,
)

__all__ = [
    "NUMPY",
    "Backend",
    "Device",
    "NumpyBackend",
    "backend_for",
    "backend_of_array",
    "default_backend",
    "default_device",
    "device",
    "gpu_available",
    "set_default_device",
]
