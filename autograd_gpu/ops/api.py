"""The public functional API: every op family's public functions in one namespace."""

from __future__ import annotations

import importlib

from .elementwise import *  # noqa: F403
from .elementwise import (  # noqa: F401
    abs,
    add,
    astype,
    ceil,
    clip,
    cos,
    div,
    divide,
    divmod,
    equal,
    erf,
    exp,
    expm1,
    floor,
    floor_divide,
    gelu,
    greater,
    greater_equal,
    isfinite,
    isnan,
    leaky_relu,
    less,
    less_equal,
    log,
    log1p,
    logical_and,
    logical_not,
    logical_or,
    maximum,
    minimum,
    mod,
    mul,
    multiply,
    neg,
    negative,
    not_equal,
    pow,
    power,
    relu,
    remainder,
    round,
    sigmoid,
    sign,
    sin,
    softplus,
    sqrt,
    square,
    sub,
    subtract,
    tan,
    tanh,
    true_divide,
    where,
)
from .linalg import matmul  # noqa: F401

# Families: each defines __all__ with its public functions.
FAMILIES = ("reduce", "shape", "indexing", "linalg", "nn", "conv", "random", "special", "fft",
            "signal")
for _fam in FAMILIES:
    try:
        _mod = importlib.import_module(f"{__package__}.{_fam}")
    except ModuleNotFoundError as _exc:  # a family not written yet
        if _exc.name != f"{__package__}.{_fam}":
            raise
        continue
    for _name in getattr(_mod, "__all__", ()):
        globals()[_name] = getattr(_mod, _name)

# The rest of NumPy's elementwise and array functions (their own modules, each with __all__).
for _fam in ("elementwise_more", "arrays"):
    _mod = importlib.import_module(f"{__package__}.{_fam}")
    for _name in _mod.__all__:
        globals()[_name] = getattr(_mod, _name)
