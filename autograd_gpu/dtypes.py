"""dtype helpers: which dtypes are floating (differentiable), names, parsing.

bfloat16 comes from ml_dtypes (NumPy has none); its numpy kind is 'V', so "is floating" is a
set membership test rather than ``np.issubdtype``.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from .errors import DTypeError

bfloat16 = np.dtype(ml_dtypes.bfloat16)
float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)

FLOATING = frozenset({bfloat16, float16, float32, float64})
_ALIASES = {"bf16": bfloat16, "bfloat16": bfloat16, "half": float16, "fp16": float16,
            "float": float32, "fp32": float32, "double": float64, "fp64": float64}


def as_dtype(spec) -> np.dtype:
    """Parse a dtype spec: a numpy dtype, a type, or a name ("float32", "bfloat16", "fp16")."""
    if spec is None:
        return float32
    if isinstance(spec, str) and spec.lower() in _ALIASES:
        return _ALIASES[spec.lower()]
    try:
        dt = np.dtype(spec)
    except TypeError as exc:
        raise DTypeError(f"dtype: expected a dtype or a dtype name, got {spec!r}") from exc
    check_real(dt, "dtype", "spec")
    return dt


def check_real(dtype, where: str, what: str) -> None:
    """Refuse a complex dtype: the rules and the tape assume real values (a complex value
    through a real rule would lose its imaginary part without an error)."""
    if np.dtype(dtype).kind == "c":
        raise DTypeError(f"{where}: argument '{what}' expected a real dtype (bool, int, float, "
                         f"bfloat16), got {np.dtype(dtype).name}: complex numbers are not "
                         "supported")


def is_floating(dtype) -> bool:
    return dtype in FLOATING


def name(dtype) -> str:
    return "bfloat16" if dtype == bfloat16 else np.dtype(dtype).name


def float_eps(dtype) -> float:
    return float(ml_dtypes.finfo(dtype).eps)
