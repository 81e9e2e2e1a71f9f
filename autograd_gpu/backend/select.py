"""Which backend a new tensor gets: an explicit device, the ``ag.device`` context, the default.

The default is ``cuda:0`` when CuPy imports and ``cupy.cuda.is_available()`` is true, else ``cpu``.
``AUTOGRAD_GPU_DEVICE=cpu|cuda|cuda:N`` or ``set_default_device`` override it; an explicit request
for cuda where none is usable raises ``DeviceError`` with the reason and what to do about it (a
value read from the environment variable names the variable: the user may not know it is set).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import DeviceError
from .base import Device
from .cupy_backend import CupyBackend, cupy_status
from .numpy_backend import NUMPY

_backends: dict[Device, object] = {Device("cpu"): NUMPY}
_lock = threading.Lock()
_default: Device | None = None
_local = threading.local()
ENV_VAR = "AUTOGRAD_GPU_DEVICE"
_GPU_FIX = ("to use a GPU, install CuPy for its CUDA version (pip install \"autograd_gpu[cuda12]\" "
            "or [cuda13]) on a machine with an NVIDIA GPU and driver")


def backend_for(device: str | Device) -> object:
    """The backend object for a device spec (str or Device); created once per device."""
    return _backend(device, "ask for the device 'cpu'")


def _backend(device: str | Device, cpu_fix: str) -> object:
    dev = device if isinstance(device, Device) else Device(device)
    bk = _backends.get(dev)
    if bk is None:
        with _lock:
            bk = _backends.get(dev)
            if bk is None:
                try:
                    bk = CupyBackend(dev.index)
                except DeviceError as exc:
                    if cupy_status()[0]:  # a GPU is usable, the index is not: the message says
                        raise
                    raise DeviceError(f"{exc}. To run on the CPU, {cpu_fix}; {_GPU_FIX}") from None
                _backends[dev] = bk
    return bk


def _auto_default() -> Device:
    env = os.environ.get(ENV_VAR, "").strip()
    if not env:
        ok, _ = cupy_status()
        return Device("cuda:0") if ok else Device("cpu")
    try:
        dev = Device(env)
    except DeviceError:
        raise DeviceError(
            f"environment variable {ENV_VAR}={env!r}: expected 'cpu', 'cuda' or 'cuda:N'; "
            f"correct the value, or unset {ENV_VAR} to use the GPU when one is usable and the "
            "CPU otherwise") from None
    try:
        _backend(dev, f"set {ENV_VAR}=cpu or unset it")
    except DeviceError as exc:
        raise DeviceError(f"environment variable {ENV_VAR}={env!r}: {exc}") from None
    return dev


def default_device() -> Device:
    """The device new tensors go to: the innermost ``ag.device`` context, else the default."""
    stack = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    global _default
    if _default is None:
        _default = _auto_default()
    return _default


def default_backend() -> object:
    return backend_for(default_device())


def set_default_device(device: str | Device | None) -> Device:
    """Set the process-wide default device ("cpu", "cuda", "cuda:N" or None for automatic)."""
    global _default
    if device is None:
        _default = _auto_default()
    else:
        dev = Device(device)
        backend_for(dev)
        _default = dev
    return _default


@contextlib.contextmanager
def device(spec: str | Device) -> Iterator[Device]:
    """``with ag.device("cpu"):`` new tensors in this thread go to that device."""
    dev = Device(spec)
    backend_for(dev)
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(dev)
    try:
        yield dev
    finally:
        stack.pop()


def backend_of_array(arr: Any) -> object:
    """The backend owning a raw array (numpy ndarray -> cpu, cupy ndarray -> its GPU)."""
    mod = type(arr).__module__
    if mod.startswith("cupy"):
        return backend_for(Device(f"cuda:{arr.device.id}"))
    return NUMPY


def gpu_available() -> bool:
    return cupy_status()[0]


__all__ = [
    "Device",
    "DeviceError",
    "backend_for",
    "backend_of_array",
    "default_backend",
    "default_device",
    "device",
    "gpu_available",
    "set_default_device",
]
