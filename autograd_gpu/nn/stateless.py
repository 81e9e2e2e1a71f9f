"""Modules as functions of their parameters: ``functional_call`` runs a module with an explicit
dict of parameters, and ``stack_modules`` stacks identical modules' parameters, so that
``ag.vmap(ag.grad(loss))`` over a model's parameters (per-example gradients) and ensembles of
models are one line each::

    params = dict(model.named_parameters())
    per_example = ag.vmap(ag.grad(lambda p, x, y: loss(functional_call(model, p, x), y)),
                          in_axes=(None, 0, 0))(params, xs, ys)
    stacked = stack_modules(models)             # {name: (M, ...) tensor}
    outs = ag.vmap(lambda p: functional_call(models[0], p, x))(stacked)
"""

from __future__ import annotations

from ..errors import ArgumentError, DTypeError, ShapeError, describe
from ..ops import api as A
from ..tensor import Tensor
from .module import Module

__all__ = ["functional_call", "stack_modules"]


def _owner(module, name):
    """(sub-module, attribute) holding the parameter of dotted ``name``."""
    *path, attr = name.split(".")
    mod = module
    for p in path:
        mod = mod._modules[p]
    return mod, attr


def functional_call(module, params, *args, **kwargs):
    """``module(*args, **kwargs)`` with the parameters named in ``params`` (a dict, dotted
    names as ``named_parameters`` gives them; a subset is allowed) replaced by the given tensors
    for this call; the module's own parameters are put back afterwards, also on error. The
    replacement tensors (plain, tracked or batched inside ag.vmap) are what the layers read, so
    gradients with respect to them flow as for any input. Not thread-safe: the module's
    attributes are swapped for the call."""
    if not isinstance(module, Module):
        raise ArgumentError(f"functional_call: argument 'module' expected an ag.nn.Module, got "
                            f"{describe(module)}")
    if not isinstance(params, dict):
        raise ArgumentError(f"functional_call: argument 'params' expected a dict of name -> "
                            f"Tensor, got {describe(params)}")
    own = dict(module.named_parameters())
    unknown = sorted(set(params) - set(own))
    if unknown:
        raise ArgumentError(f"functional_call: argument 'params' has names the module does not "
                            f"have: {unknown} (its parameters: {sorted(own)})")
    swaps = []
    try:
        for name, value in params.items():
            if not isinstance(value, Tensor):
                raise ArgumentError(f"functional_call: params[{name!r}] expected a Tensor, got "
                                    f"{describe(value)}")
            ref = own[name]
            if tuple(value.shape) != tuple(ref.shape):
                raise ShapeError(f"functional_call: params[{name!r}] expected shape "
                                 f"{tuple(ref.shape)} (the module's), got {tuple(value.shape)}")
            mod, attr = _owner(module, name)
            swaps.append((mod, attr, mod.__dict__[attr]))
            object.__setattr__(mod, attr, value)
        return module(*args, **kwargs)
    finally:
        for mod, attr, original in reversed(swaps):
            object.__setattr__(mod, attr, original)


def stack_modules(modules) -> dict:
    """The parameters of identical modules stacked along a new leading axis: {name: tensor of
    shape (len(modules),) + the parameter's shape}, for ``ag.vmap`` over an ensemble with
    ``functional_call(modules[0], params, ...)``. Every module must have the same parameter
    names, shapes and dtypes (the first difference is named)."""
    modules = list(modules)
    if not modules or not all(isinstance(m, Module) for m in modules):
        raise ArgumentError(f"stack_modules: expected a non-empty list of ag.nn.Modules, got "
                            f"{describe(modules)}")
    first = dict(modules[0].named_parameters())
    for i, m in enumerate(modules[1:], 1):
        ps = dict(m.named_parameters())
        if list(ps) != list(first):
            raise ArgumentError(f"stack_modules: modules[{i}] has parameters {list(ps)}, "
                                f"modules[0] has {list(first)}")
        for name, p in ps.items():
            q = first[name]
            if tuple(p.shape) != tuple(q.shape):
                raise ShapeError(f"stack_modules: modules[{i}].{name} has shape "
                                 f"{tuple(p.shape)}, modules[0] has {tuple(q.shape)}")
            if p.dtype != q.dtype:
                raise DTypeError(f"stack_modules: modules[{i}].{name} has dtype {p.dtype}, "
                                 f"modules[0] has {q.dtype}")
    return {name: A.stack([dict(m.named_parameters())[name].value() for m in modules])
            for name in first}
