"""Numerical gradient checks: central differences in float64 against the tape's gradients.

``NumericalChecker().check_gradient_central(fn, x)`` evaluates ``fn(x)`` (or ``fn(tape, x)``) in
float64 on the CPU. For small inputs every coordinate is perturbed (a full finite-difference
gradient); for large ones ``num_directions`` random unit directions v are used and
``(f(x + eps v) - f(x - eps v)) / 2 eps`` is compared with ``<grad f(x), v>``. A non-scalar output
is reduced by summation (the tape seeds it with ones).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np

from .backend import NUMPY
from .errors import ArgumentError, describe
from .tape import GradientTape
from .tensor import Tensor

__all__ = ["ValidationResult", "NumericalChecker"]


@dataclass
class ValidationResult:
    """The outcome of a gradient check. ``bool(result)`` is ``is_valid``."""

    is_valid: bool
    max_error: float
    max_relative_error: float
    worst_index: tuple | int | None  # coordinate (full mode) or direction number (random mode)
    mode: str  # "full" or "random-direction"
    analytic: np.ndarray = field(repr=False)
    numerical: np.ndarray = field(repr=False)
    eps: float = 0.0
    atol: float = 0.0
    rtol: float = 0.0

    def __bool__(self) -> bool:
        return self.is_valid

    def summary(self) -> str:
        where = f" at {self.worst_index}" if self.worst_index is not None else ""
        verdict = "ok" if self.is_valid else "MISMATCH"
        return (f"{verdict}: max abs error {self.max_error:.3e}, max rel error "
                f"{self.max_relative_error:.3e}{where} ({self.mode}, eps={self.eps:g})")


class NumericalChecker:
    """Check analytic gradients against central differences.

    eps: step (default 1e-6, in float64); atol/rtol: tolerances (default 1e-6 / 1e-5);
    max_full_size: inputs up to this many elements are checked coordinate by coordinate;
    num_directions: random directions for larger inputs; seed: for those directions.
    """

    def __init__(self, eps: float | None = None, atol: float | None = None,
                 rtol: float | None = None, max_full_size: int = 256, num_directions: int = 16,
                 seed: int = 0):
        self.eps = 1e-6 if eps is None else float(eps)
        self.atol = 1e-6 if atol is None else float(atol)
        self.rtol = 1e-5 if rtol is None else float(rtol)
        if self.eps <= 0:
            raise ArgumentError(f"NumericalChecker: argument 'eps' expected > 0, got {eps}")
        self.max_full_size = int(max_full_size)
        self.num_directions = int(num_directions)
        self.seed = seed

    def check_gradient_central(self, fn, x) -> ValidationResult:
        """Compare the tape gradient of ``fn`` at ``x`` with central differences.

        ``fn`` takes ``(x)`` or ``(tape, x)`` and returns a Tensor (summed if not scalar).
        """
        if not callable(fn):
            raise ArgumentError(f"check_gradient_central: argument 'fn' expected a callable, "
                                f"got {describe(fn)}")
        x0 = _as_float64(x)
        with_tape = _takes_tape(fn)

        def value(arr) -> float:
            tape = GradientTape()
            t = Tensor(arr, _cpu())
            y = fn(tape, t) if with_tape else fn(t)
            tape._stop()
            return float(_check_out(y).numpy().astype(np.float64).sum())

        tape = GradientTape()
        xt = tape.watch(Tensor(x0.copy(), _cpu()))
        y = _check_out(fn(tape, xt) if with_tape else fn(xt))
        (g,) = tape.gradient(y, [xt], unconnected_gradients="zero")
        analytic = g.numpy().astype(np.float64)
        eps = self.eps
        if x0.size <= self.max_full_size:
            numerical = np.zeros_like(x0)
            flat = numerical.reshape(-1)
            for i in range(x0.size):
                xp = x0.copy().reshape(-1)
                xm = xp.copy()
                xp[i] += eps
                xm[i] -= eps
                flat[i] = (value(xp.reshape(x0.shape)) - value(xm.reshape(x0.shape))) / (2 * eps)
            err = np.abs(analytic - numerical)
            tol = self.atol + self.rtol * np.abs(numerical)
            rel = err / np.maximum(np.abs(numerical), 1e-12)
            worst = tuple(int(i) for i in np.unravel_index(np.argmax(err - tol), x0.shape)) \
                if x0.size else None
            return ValidationResult(bool(np.all(err <= tol)), float(err.max(initial=0.0)),
                                    float(rel.max(initial=0.0)), worst, "full", analytic,
                                    numerical, eps, self.atol, self.rtol)
        rng = np.random.default_rng(self.seed)
        num = np.zeros(self.num_directions)
        ana = np.zeros(self.num_directions)
        for k in range(self.num_directions):
            v = rng.standard_normal(x0.shape)
            v /= np.linalg.norm(v)
            num[k] = (value(x0 + eps * v) - value(x0 - eps * v)) / (2 * eps)
            ana[k] = float(np.sum(analytic * v))
        err = np.abs(ana - num)
        tol = self.atol + self.rtol * np.abs(num)
        rel = err / np.maximum(np.abs(num), 1e-12)
        return ValidationResult(bool(np.all(err <= tol)), float(err.max()), float(rel.max()),
                                int(np.argmax(err - tol)), "random-direction", ana, num, eps,
                                self.atol, self.rtol)


def _cpu():
    return NUMPY


def _as_float64(x) -> np.ndarray:
    if isinstance(x, Tensor):
        arr = x.numpy()
    elif isinstance(x, (np.ndarray, list, tuple, float, int)):
        arr = np.asarray(x)
    else:
        raise ArgumentError(f"check_gradient_central: argument 'x' expected a Tensor or array, "
                            f"got {describe(x)}")
    if arr.dtype.kind not in "fiub" and str(arr.dtype) != "bfloat16":
        raise ArgumentError(f"check_gradient_central: argument 'x' expected real numbers, "
                            f"got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64)


def _takes_tape(fn) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    except (TypeError, ValueError):
        return False
    return len(params) >= 2


def _check_out(y) -> Tensor:
    if not isinstance(y, Tensor):
        raise ArgumentError(f"check_gradient_central: fn must return a Tensor, got {describe(y)}")
    return y
