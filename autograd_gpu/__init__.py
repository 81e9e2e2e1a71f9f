"""autograd_gpu: GPU-first automatic differentiation (CuPy on NVIDIA GPUs, NumPy elsewhere).

One API for both: arrays live on the GPU through CuPy when one is usable, else on the CPU
through NumPy. A gradient tape records eagerly; forward mode, an automatic choice between
forward and reverse mode, derivatives of any order, checkpointing, mixed precision,
deterministic execution, profiling, clipping and numerical checks are built around it.

``ag.*`` is the documented API and nothing else: ``__all__`` lists it, and
tests/test_public_api.py pins it (a name added or removed there is a deliberate change).
The implementation's own modules (``autograd_gpu.tape``, ``autograd_gpu.ops`` ...) stay
importable by their full names but are not attributes of the package.
"""

import importlib.metadata as _metadata

from . import (
    clipping,
    cuda,
    data,
    dtypes,
    fft,
    integrate,
    linalg,
    nn,
    optim,
    scheduler,
    signal,
    special,
    stats,
)
from .amp import AmpConfig, LossScaler, PrecisionMode
from .backend import Device, default_device, device, set_default_device
from .backend.host_pool import host_memory_pool
from .blas import blas_threads
from .checkpoint import CheckpointConfig, CheckpointStrategy, checkpoint
from .debug import detect_anomaly
from .determinism import DeterministicConfig, DeterministicMode
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
    VmapError,
)
from .forward import ForwardAccumulator
from .functional import (
    custom_gradient,
    custom_op,
    grad,
    hessian,
    hvp,
    jacobian,
    jvp,
    value_and_grad,
    vjp,
)
from .interop import from_dlpack
from .numerical import NumericalChecker, ValidationResult
from .ops import REGISTRY, apply, defop
from .ops import api as _api
from .ops.api import *  # noqa: F403  (every op family's public functions: ops/api.py)
from .profiling import BenchmarkConfig, BenchmarkResult, PerformanceBenchmark, profiler
from .profiling.memory import GradientMemoryProfiler, LeakReport
from .pytree import tree_flatten, tree_leaves, tree_map, tree_structure, tree_unflatten
from .random_state import manual_seed
from .scheduler import HybridScheduler, SchedulerConfig, SchedulingStrategy
from .tape import GradientTape, no_grad, stop_gradient
from .tensor import Tensor, TrackedTensor, Variable
from .vmap import vmap

gradient_clipping = clipping  # the guide's name for the clipping module


def _read_version() -> str:
    """The installed distribution's version: pyproject.toml is its one source, and pip records
    it in the package metadata at install time (an editable install too). A source tree put on
    sys.path without installing has no metadata: "0+unknown" says so instead of a stale copy."""
    try:
        return _metadata.version("autograd_gpu")
    except _metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _read_version()

_MODULES = ["clipping", "cuda", "data", "dtypes", "fft", "gradient_clipping", "integrate",
            "linalg", "nn", "optim", "profiler", "scheduler", "signal", "special", "stats"]
__all__ = sorted(
    _MODULES + list(_api.__all__) + [
        "AmpConfig", "LossScaler", "PrecisionMode", "Device", "default_device", "device",
        "set_default_device", "host_memory_pool", "blas_threads", "CheckpointConfig",
        "CheckpointStrategy", "checkpoint", "detect_anomaly", "DeterministicConfig",
        "DeterministicMode", "AnomalyError", "ArgumentError", "AutogradError", "DeviceError",
        "DTypeError", "LinAlgError", "NonDeterministicOpError", "ShapeError", "TapeError",
        "VmapError", "ForwardAccumulator", "custom_gradient", "custom_op", "grad", "hessian",
        "hvp", "jacobian", "jvp", "value_and_grad", "vjp", "from_dlpack", "NumericalChecker",
        "ValidationResult", "REGISTRY", "apply", "defop", "BenchmarkConfig", "BenchmarkResult",
        "GradientMemoryProfiler", "LeakReport", "PerformanceBenchmark", "tree_flatten",
        "tree_leaves", "tree_map", "tree_structure", "tree_unflatten", "manual_seed",
        "HybridScheduler", "SchedulerConfig", "SchedulingStrategy", "GradientTape", "no_grad",
        "stop_gradient", "Tensor", "TrackedTensor", "Variable", "vmap"])


def _drop_internal_module_attributes() -> None:
    """Importing a submodule sets it as an attribute of its package; the implementation's
    modules are not the API, so they leave the namespace here (``autograd_gpu.tape`` and the
    like still import by their full names). ``vmap`` is the function, not its module."""
    g = globals()
    for name in [n for n, v in g.items() if not n.startswith("_") and n not in __all__
                 and type(v) is type(_api)]:
        del g[name]
    g["vmap"] = vmap


_drop_internal_module_attributes()
