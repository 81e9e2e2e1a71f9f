"""Deterministic execution: seeds, cuBLAS settings, deterministic kernels, and a guard.

A tape built with a :class:`DeterministicConfig` (``GradientTape(deterministic=cfg)`` or
``GradientTape.with_deterministic_config(cfg)``) in WARN or STRICT mode:

* **Seeds** (once per config object, at its first tape, or explicitly with ``cfg.apply()``):
  ``global_seed`` seeds NumPy's global generator, CuPy's (when CuPy is usable), and every
  random draw of the library (``ag.manual_seed``: random ops, ``ag.nn`` layers and
  ``Tensor.randn``/``rand`` without a seed). Call ``cfg.apply()`` before building a model so
  that its initial weights are covered too. With ``operation_seeds=True`` each random op draws
  its seeds from its own counter-based stream (seed, op name, call count), so adding a random op
  elsewhere does not shift the masks of the others, and a checkpointed segment that is replayed
  recomputes with the seed recorded in the node (the same mask).
* **cuBLAS**: sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (which cuBLAS reads when it creates a
  handle; it makes its GEMMs reproducible when several streams are in use). It warns when that
  may be too late: CuPy has already allocated device memory, so a BLAS call (and a handle) may
  have happened; then export the variable before starting Python, or call ``cfg.apply()``
  before creating any GPU tensor.
* **Deterministic kernels**: while such a tape records or sweeps, ``ops.context.
  deterministic_requested()`` is true in this thread; ops whose GPU path accumulates with atomics
  (scatter-add in getitem/take/embedding backward) then take their sort-based deterministic
  kernel (``bk.deterministic_scatter_add``).
* **The guard**: each op that runs (forward, and each node's reverse rule in the sweep) is asked
  ``op.is_deterministic(bk, params)``. An op without a deterministic path on this backend raises
  :class:`~autograd_gpu.errors.NonDeterministicOpError` naming it (STRICT), or warns once per op
  and backend (WARN). An op declares its answer with ``defop(..., deterministic=...)``, covering
  its reverse rule too.
* ``cudnn_deterministic`` is accepted for API compatibility and recorded; autograd_gpu uses no
  cuDNN path (its convolutions are matmul-based), so there is nothing to switch.

OFF does none of this (the config is only stored on the tape).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from .addons import TapeAddon, register_config
from .backend import backend_of_array, default_backend
from .backend.cupy_backend import cupy_status
from .errors import ArgumentError, NonDeterministicOpError, describe
from .options import OptionEnum
from .random_state import manual_seed
from .tensor import Tensor

__all__ = ["DeterministicConfig", "DeterministicMode", "seed_everything"]

CUBLAS_WORKSPACE = ":4096:8"
_CUBLAS_OK = (":4096:8", ":16:8")


class DeterministicMode(OptionEnum):
    OFF = "off"
    WARN = "warn"
    STRICT = "strict"



@dataclass
class DeterministicConfig:
    """Deterministic-execution settings for a tape (see the module docstring)."""

    mode: DeterministicMode = DeterministicMode.STRICT
    global_seed: int | None = 42
    operation_seeds: bool = True
    cudnn_deterministic: bool = True
    _applied: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.mode = DeterministicMode.parse(self.mode, "DeterministicConfig", "mode")
        if self.global_seed is not None:
            if isinstance(self.global_seed, bool) or not isinstance(self.global_seed, int) \
                    or self.global_seed < 0:
                raise ArgumentError(
                    f"DeterministicConfig: argument 'global_seed' expected a non-negative int or "
                    f"None, got {self.global_seed!r}"
                )
        self.operation_seeds = bool(self.operation_seeds)
        self.cudnn_deterministic = bool(self.cudnn_deterministic)

    @property
    def enabled(self) -> bool:
        return self.mode is not DeterministicMode.OFF

    def apply(self) -> None:
        """Set the environment and seed every generator now (a tape does this once per config,
        at its first use; call it yourself before building a model)."""
        self._applied = True
        if not self.enabled:
            return
        ensure_cublas_workspace()
        if self.global_seed is not None:
            seed_everything(self.global_seed, operation_seeds=self.operation_seeds)


def seed_everything(seed: int, operation_seeds: bool = True) -> None:
    """Seed NumPy's global generator, CuPy's (if usable) and every random draw of the library
    (``ag.manual_seed``) with ``seed``."""
    np.random.seed(seed)
    if cupy_status()[0]:
        import cupy  # optional dependency (cupy)

        cupy.random.seed(seed)
    manual_seed(seed, operation_seeds=operation_seeds)


def cublas_may_be_initialised() -> bool:
    """Whether cuBLAS could already have created a handle in this process (it reads
    CUBLAS_WORKSPACE_CONFIG then). CuPy loads libcublas at import but creates a handle only for
    its first BLAS call, which needs device arrays: so the answer is yes once CuPy has allocated
    device memory from its pool (conservative: any allocation counts)."""
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return False
    try:
        return cupy.get_default_memory_pool().total_bytes() > 0
    except Exception:  # no usable GPU: nothing can have started
        return False


def ensure_cublas_workspace() -> None:
    """Set CUBLAS_WORKSPACE_CONFIG for reproducible cuBLAS GEMMs; warn if it may be too late."""
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") in _CUBLAS_OK:
        return
    late = cublas_may_be_initialised()
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    if late:
        warnings.warn(
            f"DeterministicConfig: set CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE} after cuBLAS "
            "was loaded; a cuBLAS handle created before now ignores it. Export it before "
            "starting Python for reproducible GEMMs across streams.",
            RuntimeWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------
# the guard

_WARNED: set = set()  # (op name, backend name) already warned about under WARN


def reset_warnings() -> None:
    """Forget which ops WARN mode has warned about (each then warns once more)."""
    _WARNED.clear()


def _backend_of(x):
    if isinstance(x, Tensor):
        return x._bk
    return backend_of_array(x)


class _Guard:
    """The hook of a deterministic tape. ``deterministic = True`` is what
    ``ops.context.deterministic_requested`` looks for."""

    deterministic = True

    def __init__(self, mode: DeterministicMode):
        self.strict = mode is DeterministicMode.STRICT

    def __call__(self, phase, op, args, params, call):
        if op.deterministic is not True:
            if phase == "forward":
                bk = next((a._bk for a in args if isinstance(a, Tensor)), None)
                if bk is None:
                    bk = default_backend()
            else:
                bk = _backend_of(args[0])
            if not op.is_deterministic(bk, params):
                self._violation(op, bk, phase)
        return call(args, params)

    def _violation(self, op, bk, phase):
        where = "forward" if phase == "forward" else "reverse rule (vjp)"
        mode = "STRICT" if self.strict else "WARN"
        msg = (f"{op.name}: this op has no deterministic implementation of its {where} on the "
               f"{bk.name} backend ({bk.device}); DeterministicMode.{mode} asks for "
               "bitwise-reproducible ops")
        if self.strict:
            raise NonDeterministicOpError(msg + " (use WARN or OFF, or run it on the CPU)")
        key = (op.name, bk.name)
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(msg, RuntimeWarning, stacklevel=4)


class _DeterministicTape(TapeAddon):
    kind = "deterministic"

    def __init__(self, mode: DeterministicMode):
        self.interceptors = (_Guard(mode),)


def _deterministic_config(cfg, tape):
    """GradientTape(deterministic=...): a DeterministicConfig; an enabled one is applied (seeds,
    cuBLAS workspace) and its guard checks every op the tape records or sweeps."""
    if not isinstance(cfg, DeterministicConfig):
        raise ArgumentError(f"GradientTape: argument 'deterministic' expected a "
                            f"DeterministicConfig, got {describe(cfg)}")
    if not cfg.enabled:
        return cfg, None
    if not cfg._applied:
        cfg.apply()
    return cfg, _DeterministicTape(cfg.mode)


register_config("deterministic", _deterministic_config)
