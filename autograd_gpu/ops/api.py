"""The public functional API: every op family's public functions (its ``__all__``) in one
namespace, which the package re-exports as ``ag.*``."""

from __future__ import annotations

from . import (
    arrays,
    conv,
    elementwise,
    elementwise_more,
    indexing,
    linalg,
    nn,
    random,
    reduce,
    shape,
    special,
)

# In this order; a name two families export must be the same object in both (checked below).
FAMILIES = (elementwise, reduce, shape, indexing, linalg, nn, conv, random, special,
            elementwise_more, arrays)


def _collect() -> dict:
    out: dict = {}
    for fam in FAMILIES:
        for name in fam.__all__:
            obj = getattr(fam, name)
            if out.get(name, obj) is not obj:
                raise ImportError(f"ops.api: {name!r} is exported by two families as different "
                                  f"objects ({fam.__name__} and {out[name].__module__})")
            out[name] = obj
    return out


_PUBLIC = _collect()
globals().update(_PUBLIC)
__all__ = sorted(_PUBLIC)
