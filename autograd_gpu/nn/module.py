"""Module and Parameter: trainable state, modes, and state dicts saved to .npz without pickle.

A Module registers the Parameters and sub-Modules assigned to its attributes, in assignment
order, so ``parameters()`` is a stable, ordered list (the order optimizers expect gradients in).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from .. import dtypes as _dt
from ..errors import AutogradError, describe
from ..tensor import Tensor, Variable


class StateDictError(AutogradError, ValueError):
    """A state dict or .npz file that does not match the module (names, shapes, dtypes), or a
    file that is not a plain-array .npz archive."""


class Parameter(Variable):
    """A trainable Variable owned by a Module. ``Parameter(value, name=None, dtype=None)``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Parameter" + Variable.__repr__(self)[len("Variable"):]


class Module:
    """Base class of layers. Subclasses set Parameters and Modules as attributes in ``__init__``
    and define ``forward``; calling the module calls ``forward``.

    ``training`` is True after construction; ``eval()`` switches every sub-module to inference
    behaviour (Dropout becomes the identity) and ``train()`` switches back.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration ------------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AutogradError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        params, mods = self.__dict__["_parameters"], self.__dict__["_modules"]
        params.pop(name, None)
        mods.pop(name, None)
        if isinstance(value, Parameter):
            if value.name is None:
                value.name = name
            params[name] = value
        elif isinstance(value, Module):
            mods[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Same as ``setattr(self, name, param)``; ``None`` records an absent parameter."""
        setattr(self, name, param)

    def add_module(self, name: str, module: Module) -> None:
        setattr(self, name, module)

    # ---- traversal ---------------------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs in registration order, each parameter once."""
        seen: set[int] = set()
        for mod_prefix, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self) -> list[Parameter]:
        """Every parameter of this module and its sub-modules, in a stable order."""
        return [p for _, p in self.named_parameters()]

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module (name ``prefix``) and every descendant."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield name, mod
            children = [(f"{name}.{n}" if name else n, m) for n, m in mod._modules.items()]
            stack.extend(reversed(children))

    def modules(self) -> list[Module]:
        return [m for _, m in self.named_modules()]

    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> list[Module]:
        return list(self._modules.values())

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ---- modes -------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    # ---- calling -----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def to(self, device) -> Module:
        """Move every parameter to ``device`` in place (the Parameter objects stay the same).
        Move the model before building its optimizer: optimizer state is not moved."""
        for p in self.parameters():
            moved = p.value().to(device)
            p._data, p._bk = moved._data, moved._bk
        return self

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """name -> host (numpy) copy of each parameter, in parameter order."""
        return OrderedDict((n, np.array(p.numpy(), copy=True)) for n, p in self.named_parameters())

    def load_state_dict(self, state, strict: bool = True) -> tuple[list[str], list[str]]:
        """Copy values from ``state`` (name -> numpy/cupy array or Tensor) into the parameters.

        Everything is validated before anything is assigned: with ``strict`` the names must match
        exactly; every present name must have the parameter's shape and dtype. On any mismatch a
        StateDictError is raised and the module is unchanged. Returns (missing, unexpected) names.
        """
        if not hasattr(state, "items"):
            raise StateDictError(
                f"load_state_dict: argument 'state' expected a mapping of name -> array, "
                f"got {describe(state)}"
            )
        named = OrderedDict(self.named_parameters())
        missing = [n for n in named if n not in state]
        unexpected = [n for n in state if n not in named]
        if strict and (missing or unexpected):
            raise StateDictError(
                f"load_state_dict({type(self).__name__}): names do not match; missing "
                f"{missing or 'none'}, unexpected {unexpected or 'none'}"
            )
        staged = []
        for name, p in named.items():
            if name not in state:
                continue
            arr = _host_array(state[name], name)
            if arr.dtype.hasobject or arr.dtype.kind not in "biufcV":
                raise StateDictError(
                    f"load_state_dict: '{name}' expected a numeric array, got dtype {arr.dtype}"
                )
            if p.dtype == _dt.bfloat16 and arr.dtype == np.uint16:
                arr = arr.view(_dt.bfloat16)  # how save() stores bfloat16 (npz has no bf16)
            if tuple(arr.shape) != p.shape:
                raise StateDictError(
                    f"load_state_dict: '{name}' expected shape {p.shape}, got {tuple(arr.shape)}"
                )
            if arr.dtype != p.dtype:
                raise StateDictError(
                    f"load_state_dict: '{name}' expected dtype {_dt.name(p.dtype)}, "
                    f"got {_dt.name(arr.dtype)}"
                )
            staged.append((p, arr))
        for p, arr in staged:
            p._data = p._bk.asarray(np.array(arr, copy=True))
        return missing, unexpected

    def save(self, path) -> None:
        """Write the state dict to an .npz file at exactly ``path`` (written atomically)."""
        arrays = {}
        for name, arr in self.state_dict().items():
            arrays[name] = arr.view(np.uint16) if arr.dtype == _dt.bfloat16 else arr
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def load(self, path, strict: bool = True) -> tuple[list[str], list[str]]:
        """Load parameters saved by ``save``. The file is read with ``allow_pickle=False``, so it
        cannot run code; a file that is not a plain-array .npz, or whose names, shapes or dtypes
        do not match, raises StateDictError and leaves the module unchanged."""
        return self.load_state_dict(load_npz(path), strict=strict)

    # ---- display -----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, m in self._modules.items():
                sub = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({name}): {sub}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"


def _host_array(value, name):
    if isinstance(value, Tensor):
        return value.numpy()
    if type(value).__module__.startswith("cupy"):
        return value.get()
    if isinstance(value, np.ndarray):
        return value
    raise StateDictError(
        f"load_state_dict: '{name}' expected an array or Tensor, got {describe(value)}"
    )


def load_npz(path) -> OrderedDict:
    """Read every array of an .npz file into memory with ``allow_pickle=False``.

    Raises StateDictError for anything else: a missing or non-zip file, a plain .npy, an entry
    holding Python objects (which would need pickle), or an unreadable entry.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise StateDictError(f"load: no such file {path!r}")
    if not zipfile.is_zipfile(path):
        raise StateDictError(f"load: {path!r} is not an .npz archive (expected a zip of .npy)")
    out = OrderedDict()
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name in npz.files:
                arr = npz[name]
                if not isinstance(arr, np.ndarray):  # a member that is not a .npy file
                    raise StateDictError(f"load: entry {name!r} is not a .npy array; refused")
                if arr.dtype.hasobject:
                    raise StateDictError(f"load: entry {name!r} holds Python objects; refused")
                out[name] = arr
    except StateDictError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise StateDictError(
            f"load: {path!r} could not be read as plain arrays without pickle "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    return out
