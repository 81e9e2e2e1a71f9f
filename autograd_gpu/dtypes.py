"""dtype helpers: which dtypes are floating (differentiable), names, parsing.

bfloat16 comes from ml_dtypes (NumPy has none); its numpy kind is 'V', so "is floating" is a
set membership test rather than ``np.issubdtype``.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from .errors import DTypeError

__all__ = [
    "bfloat16", "float16", "float32", "float64", "complex64", "complex128", "FLOATING", "COMPLEX",
    "as_dtype", "check_real", "is_floating", "is_complex", "is_inexact", "real_of", "name",
    "float_eps",
]

bfloat16 = np.dtype(ml_dtypes.bfloat16)
float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)

complex64 = np.dtype(np.complex64)
complex128 = np.dtype(np.complex128)

FLOATING = frozenset({bfloat16, float16, float32, float64})
COMPLEX = frozenset({complex64, complex128})
_REAL_OF = {complex64: float32, complex128: float64}
_ALIASES = {"bf16": bfloat16, "bfloat16": bfloat16, "half": float16, "fp16": float16,
            "float": float32, "fp32": float32, "double": float64, "fp64": float64}


def as_dtype(spec) -> np.dtype:
    """Parse a dtype spec: a numpy dtype, a type, or a name ("float32", "bfloat16", "fp16",
    "complex64")."""
    if spec is None:
        return float32
    if isinstance(spec, str) and spec.lower() in _ALIASES:
        return _ALIASES[spec.lower()]
    try:
        return np.dtype(spec)
    except TypeError as exc:
        raise DTypeError(f"dtype: expected a dtype or a dtype name, got {spec!r}") from exc


def check_real(dtype, where: str, what: str) -> None:
    """Refuse a complex dtype where only real values have a meaning (a real primal's tangent)."""
    if np.dtype(dtype).kind == "c":
        raise DTypeError(f"{where}: argument '{what}' expected a real dtype (the value it "
                         f"belongs to is real), got {np.dtype(dtype).name}")


def is_floating(dtype) -> bool:
    return dtype in FLOATING


def is_complex(dtype) -> bool:
    return dtype in COMPLEX


def is_inexact(dtype) -> bool:
    """Floating or complex: the dtypes that carry derivatives."""
    return dtype in FLOATING or dtype in COMPLEX


def real_of(dtype) -> np.dtype:
    """The real dtype of a complex one (complex64 -> float32); a real dtype itself."""
    return _REAL_OF.get(dtype, dtype)


def name(dtype) -> str:
    return "bfloat16" if dtype == bfloat16 else np.dtype(dtype).name


def float_eps(dtype) -> float:
    return float(ml_dtypes.finfo(dtype).eps)
