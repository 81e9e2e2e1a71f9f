"""Module and Parameter: trainable state, modes, and state dicts saved to .npz without pickle.

A Module registers the Parameters and sub-Modules assigned to its attributes, in assignment
order, so ``parameters()`` is a stable, ordered list (the order optimizers expect gradients in).
"""

from __future__ import annotations

import itertools
import math
import os
import re
import secrets
import socket
import stat
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from .. import dtypes as _dt
from ..errors import AutogradError, describe
from ..tensor import Tensor, Variable

__all__ = ["StateDictError", "Parameter", "Module", "load_npz", "remove_stale_temps"]


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
            value = state[name]
            _check_declared(value, name)  # shape and dtype, before any copy to the host
            _check_entry("load_state_dict", f"'{name}'", tuple(value.shape),
                         np.dtype(value.dtype), p.shape, p.dtype)
            arr = _host_array(value, name)
            if p.dtype == _dt.bfloat16 and arr.dtype == np.uint16:
                arr = arr.view(_dt.bfloat16)  # how save() stores bfloat16 (npz has no bf16)
            staged.append((p, arr))
        for p, arr in staged:
            p._data = p._bk.asarray(np.array(arr, copy=True))
        return missing, unexpected

    def save(self, path) -> None:
        """Write the state dict to an .npz file at exactly ``path``, atomically: the data goes to
        a temporary file next to it (``<name>.<host>.<pid>.<token>.<n>.npz.tmp``), is flushed
        to disk, and replaces ``path`` in one rename. Temporary files that a killed earlier save
        of the same path left behind are removed first. A new file gets the usual mode
        (0o666 less the umask: 0o644 under the default umask 022); an existing file keeps its
        mode."""
        arrays = {}
        for name, arr in self.state_dict().items():
            arrays[name] = arr.view(np.uint16) if arr.dtype == _dt.bfloat16 else arr
        path = os.fspath(path)
        remove_stale_temps(path)
        tmp, fd = _open_temp(path)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())  # on disk before the rename makes it the file
            os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except FileNotFoundError:
                pass
            raise

    def load(self, path, strict: bool = True) -> tuple[list[str], list[str]]:
        """Load parameters saved by ``save``. Every entry's .npy header (shape, dtype, byte
        order) and its sizes in the archive are checked against this module's parameters before
        its data is read or decompressed, and no pickle is ever read, so a file that does not
        fit (including a zip bomb or a header claiming terabytes) raises StateDictError after
        reading a few hundred bytes, leaving the module unchanged. With ``strict=False``,
        entries the module has no parameter for are reported, not read."""
        spec = OrderedDict((n, (p.shape, p.dtype)) for n, p in self.named_parameters())
        arrays, unexpected = _read_npz(path, spec, strict, f"load({type(self).__name__})")
        missing, _ = self.load_state_dict(arrays, strict=False)
        return missing, unexpected

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


def _dtype_text(dt) -> str:
    """A dtype's name, with its byte order when that is not this machine's."""
    dt = np.dtype(dt)
    if dt.byteorder in "<>" and dt.itemsize > 1:  # '=' (native) and '|' (n/a) say nothing
        order = "big" if dt.byteorder == ">" else "little"
        return f"{_dt.name(dt)} in {order}-endian byte order ({dt.str!r})"
    return _dt.name(dt)


def _check_declared(value, name):
    if isinstance(value, (np.ndarray, Tensor)) or type(value).__module__.startswith("cupy"):
        return
    raise StateDictError(
        f"load_state_dict: '{name}' expected an array or Tensor, got {describe(value)}"
    )


def _check_entry(who, what, shape, dtype, want_shape, want_dtype):
    """Refuse an entry whose declared shape or dtype is not the parameter's (bfloat16 is stored
    as uint16). Raised before the entry's data is read."""
    if dtype.hasobject or dtype.kind not in "biufcV" or dtype.fields is not None:
        raise StateDictError(f"{who}: {what} expected a numeric array, got dtype {dtype}")
    if tuple(shape) != tuple(want_shape):
        raise StateDictError(
            f"{who}: {what} expected shape {tuple(want_shape)}, got {tuple(shape)}"
        )
    if dtype == want_dtype or (want_dtype == _dt.bfloat16 and dtype == np.uint16):
        return
    raise StateDictError(
        f"{who}: {what} expected dtype {_dtype_text(want_dtype)}, got {_dtype_text(dtype)}"
        + ("; convert it with arr.astype(arr.dtype.newbyteorder('='))"
           if dtype.newbyteorder("=") == want_dtype else "")
    )


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


def load_npz(path, expected=None, strict: bool = True) -> OrderedDict:
    """Read the arrays of an .npz file without pickle, checking each entry before reading it.

    ``expected``: None, or a mapping name -> what the entry must be (an array, Tensor or
    Parameter, or a ``(shape, dtype)`` pair). With it, the names must match (``strict``; with
    ``strict=False`` other entries are skipped unread) and each entry's .npy header must declare
    that shape and dtype, all checked before any data is decompressed: peak memory is what the
    expected arrays need, whatever the file claims.

    Every entry is checked in any case: its .npy header must account for exactly the size the
    archive declares for it, the compressed bytes must be present in the file, and a deflated
    entry cannot claim more than deflate's largest ratio (1032:1). Raises StateDictError for
    anything else: a missing or non-zip file, a plain .npy, an entry that is not a .npy array,
    one holding Python objects (which would need pickle), or an unreadable or corrupt entry.
    """
    if expected is not None:
        if not hasattr(expected, "items"):
            raise StateDictError(f"load_npz: argument 'expected' expected a mapping of name -> "
                                 f"array or (shape, dtype), got {describe(expected)}")
        expected = OrderedDict((n, _spec(v, n)) for n, v in expected.items())
    return _read_npz(path, expected, strict, "load")[0]


def _spec(v, name):
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return tuple(v.shape), np.dtype(v.dtype)
    if isinstance(v, (tuple, list)) and len(v) == 2:
        try:
            return tuple(int(d) for d in v[0]), _dt.as_dtype(v[1])
        except (TypeError, ValueError):
            pass
    raise StateDictError(f"load_npz: expected[{name!r}] expected an array or (shape, dtype), "
                         f"got {describe(v)}")


# deflate codes a 258-byte match in at least 2 bits, so it never expands data more than 1032x
_DEFLATE_MAX_RATIO = 1032
_READ_CHUNK = 1 << 20  # bytes decompressed at a time into the destination array


def _read_npz(path, expected, strict, who):
    """(name -> array, unexpected names). ``expected``: None or name -> (shape, dtype)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise StateDictError(f"{who}: no such file {path!r}")
    if not zipfile.is_zipfile(path):
        raise StateDictError(f"{who}: {path!r} is not an .npz archive (expected a zip of .npy)")
    out = OrderedDict()
    unexpected: list[str] = []
    try:
        with open(path, "rb") as fh:
            archive_size = os.fstat(fh.fileno()).st_size
            with zipfile.ZipFile(fh) as zf:
                members = OrderedDict()
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        raise StateDictError(
                            f"{who}: entry {info.filename!r} is not a .npy array; refused")
                    key = info.filename[:-4]
                    if key in members:
                        raise StateDictError(f"{who}: entry {key!r} appears twice in {path!r}")
                    members[key] = info
                if expected is not None:
                    missing = [n for n in expected if n not in members]
                    unexpected = [n for n in members if n not in expected]
                    if strict and (missing or unexpected):
                        raise StateDictError(
                            f"{who}: names do not match; missing {missing or 'none'}, "
                            f"unexpected {unexpected or 'none'}"
                        )
                for key, info in members.items():
                    if expected is not None and key not in expected:
                        continue  # non-strict: reported, never read
                    want = None if expected is None else expected[key]
                    out[key] = _read_member(zf, info, who, f"{path!r} entry {key!r}",
                                            archive_size, want)
    except StateDictError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError,
            NotImplementedError, zlib.error) as exc:
        raise StateDictError(
            f"{who}: {path!r} could not be read as plain arrays without pickle "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    return out, unexpected


def _read_member(zf, info, who, what, archive_size, want):
    """One .npy entry: sizes and header checked (against ``want`` = (shape, dtype) when given)
    before the data is read, then decompressed chunk by chunk straight into the array."""
    where = f"{who}: {what}"
    if info.flag_bits & 0x1:
        raise StateDictError(f"{where} is encrypted; refused")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise StateDictError(f"{where} uses zip compression method {info.compress_type}; "
                             f"expected stored or deflated (what np.savez writes)")
    if info.header_offset + info.compress_size > archive_size:
        raise StateDictError(f"{where} declares {info.compress_size} compressed bytes at offset "
                             f"{info.header_offset}, but the file has {archive_size} bytes")
    n, c = info.file_size, info.compress_size
    if info.compress_type == zipfile.ZIP_STORED and c != n:
        raise StateDictError(f"{where} is stored uncompressed but declares {c} stored bytes "
                             f"for {n} bytes of data")
    if info.compress_type == zipfile.ZIP_DEFLATED and (
            n > _DEFLATE_MAX_RATIO * c + 1024 or c > n + n // 1000 + 1024):
        raise StateDictError(f"{where} declares {n} bytes deflated into {c}: not a ratio "
                             f"deflate can produce (at most {_DEFLATE_MAX_RATIO}:1); refused")
    with zf.open(info) as m:
        version = np.lib.format.read_magic(m)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(m)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(m)
        else:
            raise StateDictError(f"{where} has .npy format version {version}; expected 1.0 "
                                 f"or 2.0 (what np.save writes for numeric arrays)")
        header = m.tell()
        if dtype.hasobject:
            raise StateDictError(f"{where} holds Python objects; refused")
        if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
            raise StateDictError(f"{where} expected a numeric array, got dtype {dtype}")
        if want is not None:
            _check_entry(who, what, shape, dtype, *want)
        nbytes = math.prod(shape) * dtype.itemsize
        if n != header + nbytes:
            raise StateDictError(
                f"{where} declares {n} bytes, but its header (shape {tuple(shape)}, "
                f"{_dtype_text(dtype)}) accounts for {header + nbytes}")
        arr = np.empty(tuple(reversed(shape)) if fortran else shape, dtype=dtype)
        view = arr.reshape(-1).view(np.uint8)
        pos = 0
        while pos < nbytes:
            chunk = m.read(min(_READ_CHUNK, nbytes - pos))
            if not chunk:
                break
            view[pos:pos + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            pos += len(chunk)
        if pos != nbytes or m.read(1):
            raise StateDictError(f"{where} holds {pos} data bytes where its header declares "
                                 f"{nbytes}")
    return arr.T if fortran else arr


# ---- temporary files of save() -----------------------------------------------------------------
# <name>.<host>.<pid>.<token>.<n>.npz.tmp next to the target: the host (CRC-32 of its name) and
# pid say who wrote it, the token (random per process) tells this process from an earlier one
# that had the same pid, and n tells apart concurrent saves in one process.
_TOKEN = secrets.token_hex(4)
_HOST = format(zlib.crc32(socket.gethostname().encode()), "08x")
_TEMP_COUNT = itertools.count(1)


def _temp_pattern(base: str):
    return re.compile(re.escape(base) + r"\.([0-9a-f]{8})\.(\d+)\.([0-9a-f]+)\.\d+\.npz\.tmp")


def _open_temp(path: str):
    folder, base = os.path.split(os.path.abspath(path))
    n = next(_TEMP_COUNT)
    tmp = os.path.join(folder, f"{base}.{_HOST}.{os.getpid()}.{_TOKEN}.{n}.npz.tmp")
    # 0o666 less the umask, like any new file (mkstemp's 0o600 hid saved models from the group)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        if os.path.exists(path) and hasattr(os, "fchmod"):
            os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode))  # overwriting keeps the mode
    except BaseException:
        os.close(fd)
        os.remove(tmp)
        raise
    return tmp, fd


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no safe probe: never remove another process's file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists (another user's)
        return True
    return True


def remove_stale_temps(path) -> list[str]:
    """Remove the temporary files that saves of ``path`` killed before their rename left next to
    it (written by this host, by a process that is gone or by an earlier process with this
    one's pid). Files of live saves, of other hosts and of other targets are left alone.
    Returns the removed paths. ``Module.save`` calls it first."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = _temp_pattern(base)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    me = os.getpid()
    for name in names:
        m = pattern.fullmatch(name)
        if m is None or m.group(1) != _HOST:
            continue
        pid, token = int(m.group(2)), m.group(3)
        stale = token != _TOKEN if pid == me else not _pid_alive(pid)
        if stale:
            full = os.path.join(folder, name)
            try:
                os.remove(full)
                removed.append(full)
            except FileNotFoundError:
                pass
    return removed
