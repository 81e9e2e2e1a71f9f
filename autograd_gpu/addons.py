"""Tape add-ons: the one interface through which a feature extends a ``GradientTape``.

Checkpointing, mixed precision, determinism checks and data-parallel gradient reduction are
add-ons; the tape knows none of them by name. A feature module registers a factory for a keyword
of ``GradientTape(...)`` (``register_config``), or code attaches an add-on to a tape at run time
(``tape.add_addon``). What an add-on may observe and change is exactly the hooks below, called
by the tape at fixed points; every hook is optional (the base class does nothing).

- ``interceptors``: hooks ``hook(phase, op, args, params, call) -> result`` pushed on the
  recording thread's hook list while the tape records and during its sweeps. They see every op
  of that thread in that time ("forward") and every rule the sweep runs ("vjp"); they may change
  an op's inputs and parameters (autocast), wrap its result, or refuse it (determinism).
- ``records = True`` and ``on_record(node, arrays, out)``: called for each node recorded on this
  tape, after it is appended, with the op's input arrays and output. The add-on may release
  ``node.saved`` if it gives ``node.extra`` an object whose ``restore(node)`` rebuilds them
  (checkpointing); the sweep calls it when it reaches a released node.
- ``scale_seed(seed) -> seed``: the cotangent seed of ``gradient()`` (loss scaling).
- ``finish(grads) -> grads``: ``gradient()``'s results before they are returned (unscaling).
- ``watch_gradients(want, nodes) -> callback or None``: before a sweep of ``gradient()``; the
  callback ``ready(node, grad)`` is called in the sweep as soon as the cotangent of a wanted leaf
  is final (its last consumer swept), in the compiled and the Python sweep alike (data-parallel
  reduction overlapping the backward).
- ``on_release()``: the tape released its graph (a non-persistent ``gradient()``, ``reset()``).
- ``step_skipped``: True when the last ``gradient()`` produced values an optimizer must not
  apply (an AMP overflow).
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ArgumentError, describe

__all__ = ["TapeAddon", "register_config", "config_factory"]


class TapeAddon:
    """Base class of tape add-ons (see the module docstring for each hook's contract)."""

    kind = "addon"  # a name to find it by: tape.addon(kind)
    interceptors: tuple = ()
    records = False
    step_skipped = False

    def on_record(self, node, arrays, out) -> None:
        pass

    def scale_seed(self, seed):
        return seed

    def finish(self, grads: list) -> list:
        return grads

    def watch_gradients(self, want, nodes):
        return None

    def on_release(self) -> None:
        pass


# keyword of GradientTape(...) -> factory(value, tape) -> (normalised config, TapeAddon or None)
_FACTORIES: dict[str, Callable] = {}


def register_config(keyword: str, factory: Callable) -> None:
    """Let ``GradientTape(keyword=value)`` build an add-on: ``factory(value, tape)`` validates
    the value and returns ``(config, addon or None)`` (the tape's ``id`` and ``persistent`` are
    set by then); the tape keeps the config as ``tape.<keyword>_config``."""
    if not isinstance(keyword, str) or not callable(factory):
        raise ArgumentError(f"register_config: expected a keyword and a callable, got "
                            f"{describe(keyword)} and {describe(factory)}")
    _FACTORIES[keyword] = factory


def config_factory(keyword: str) -> Callable:
    try:
        return _FACTORIES[keyword]
    except KeyError:  # (every feature module is imported by autograd_gpu/__init__.py)
        raise ArgumentError(f"GradientTape: no feature handles the argument {keyword!r}; "
                            "import autograd_gpu (not only autograd_gpu.tape)") from None
