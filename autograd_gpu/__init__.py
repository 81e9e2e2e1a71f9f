"""autograd_gpu: GPU-first automatic differentiation (CuPy on NVIDIA GPUs, NumPy elsewhere).

One API for both: arrays live on the GPU through CuPy when one is usable, else on the CPU
through NumPy. A gradient tape records eagerly; forward mode, an automatic choice between
forward and reverse mode, derivatives of any order, checkpointing, mixed precision,
deterministic execution, profiling, clipping and numerical checks are built around it.
"""

from __future__ import annotations

import importlib as _importlib

from . import dtypes
from .backend import Device, default_device, device, set_default_device
from .backend.host_pool import host_memory_pool
from .blas import blas_threads
from .errors import (
    AnomalyError,
    ArgumentError,
    AutogradError,
    DeviceError,
    DTypeError,
    LinAlgError,
    NonDeterministicOpError,
    ShapeError,
    TapeError,
)
from .ops import REGISTRY, apply, defop
from .ops import api as _api
from .random_state import manual_seed
from .tape import GradientTape, no_grad, stop_gradient
from .tensor import Tensor, TrackedTensor, Variable


def _read_version() -> str:
    """The installed distribution's version: pyproject.toml is its one source, and pip records
    it in the package metadata at install time (an editable install too). A source tree put on
    sys.path without installing has no metadata: "0+unknown" says so instead of a stale copy."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("autograd_gpu")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _read_version()

for _name in dir(_api):
    if not _name.startswith("_") and _name not in globals() and callable(getattr(_api, _name)):
        globals()[_name] = getattr(_api, _name)

# Higher layers: (module, names it exports at the top level).
_LAYERS = (
    ("forward", ("ForwardAccumulator",)),
    ("scheduler", ("HybridScheduler", "SchedulerConfig", "SchedulingStrategy")),
    ("functional", ("grad", "value_and_grad", "vjp", "jvp", "jacobian", "hessian", "hvp",
                    "custom_op", "custom_gradient")),
    ("checkpoint", ("CheckpointConfig", "CheckpointStrategy", "checkpoint")),
    ("amp", ("AmpConfig", "PrecisionMode", "LossScaler")),
    ("determinism", ("DeterministicConfig", "DeterministicMode")),
    ("numerical", ("NumericalChecker", "ValidationResult")),
    ("interop", ("from_dlpack",)),
    ("debug", ("detect_anomaly",)),
    ("vmap", ("vmap", "VmapError")),
    ("pytree", ("tree_map", "tree_flatten", "tree_unflatten", "tree_leaves",
                "tree_structure")),
    ("profiling", ("PerformanceBenchmark", "BenchmarkConfig", "BenchmarkResult",
                   "GradientMemoryProfiler", "LeakReport", "profiler")),
)
for _mod_name, _names in _LAYERS:
    try:
        _mod = _importlib.import_module(f"{__name__}.{_mod_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_mod_name}":
            raise
        continue
    for _n in _names:
        if hasattr(_mod, _n):
            globals()[_n] = getattr(_mod, _n)

for _sub in ("clipping", "nn", "optim", "cuda", "data", "special", "linalg", "fft", "signal",
             "stats", "integrate"):
    try:
        globals()[_sub] = _importlib.import_module(f"{__name__}.{_sub}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_sub}":
            raise
gradient_clipping = globals().get("clipping")
