"""Primitives: the registry (defop, apply) and one module per op family."""

from . import api, methods  # noqa: F401  (api imports every family; methods installs operators)
from .registry import REGISTRY, Op, apply, defop, enable_native

enable_native()  # every op is registered now: check the compiled part's contract, turn it on

__all__ = ["REGISTRY", "Op", "apply", "defop", "api"]
