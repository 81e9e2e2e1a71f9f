"""NumPy's protocols on tensors: ``np.sin(t)``, ``np.sum(t, axis=0)``, ``ndarray * t``,
``np.add.reduce(t)``, ``np.shape(t)``.

NumPy hands any ufunc or array function that meets a Tensor to ``Tensor.__array_ufunc__`` or
``Tensor.__array_function__``, which call :func:`array_ufunc` and :func:`array_function` here.
A NumPy function with an autograd_gpu op of the same meaning calls that op: the result is a
Tensor on the inputs' device, recorded on the tapes that watch them, so it is differentiable.
One without raises ``ArgumentError`` (a ``TypeError``) naming the NumPy function and the nearest
ag op by name: before this module NumPy unwrapped the tensor and returned a plain array, and the
gradient through it became zero or None with no error.

The mapping is derived from the ag namespace, not kept as a list: ``numpy.X`` (a function or a
ufunc) goes to ``ag.X`` when that is a public op function, ``numpy.<sub>.X`` to ``ag.<sub>.X``
(``numpy.linalg`` to ``ag.linalg``, ``numpy.fft`` to ``ag.fft``) once ag has that namespace, and
SciPy's special-function ufuncs to ``ag.special.X`` (or the same-named top-level op). An op added
to ag later is picked up by name. Only the names that differ are listed (``_ALIASES``), and the
ufunc methods whose meaning is another op (``np.add.reduce`` is ``sum``: ``_REDUCE``,
``_ACCUMULATE``).

Arguments are bound to NumPy's own signature and passed to the op by name (the first one by
position), so a positional ``dtype`` never lands in an op's ``ddof``. NumPy's extra arguments
are handled the same way for every function: ``out`` is refused (tensors are immutable, and a
result written into an array would carry no gradient), ``where`` must be True, ``dtype`` casts
the operands (ufuncs: NumPy's own loop resolution, ``ufunc.resolve_dtypes``, decides the dtypes
and raises NumPy's errors), ``casting`` is checked, ``order`` must be 'C' (any order for ufuncs,
whose order is memory layout only), ``copy``, ``subok`` and ``optimize`` change no value, and any
other argument NumPy's function has but the op lacks is accepted only at NumPy's default value.
Where NumPy's default differs from the op's (``take_along_axis``'s axis=-1), NumPy's is passed.

Queries that need no derivative (``np.shape``, ``np.ndim``, ``np.size``, ``np.result_type``,
``np.may_share_memory``, ``np.allclose``, ...) give NumPy's answers.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
import sys
import types

import numpy as np

from ..backend import NUMPY, backend_of_array
from ..errors import ArgumentError, DeviceError, DTypeError
from ..tensor import NUMPY_PROTOCOL, Tensor
from ._util import as_tensor
from .elementwise import astype
from .registry import Op
from .shape import reshape

__all__ = [
    "public_ops", "refuse_out", "check_where", "refuse_given", "check_order", "cast",
    "expect_dtype", "check_casting", "array_ufunc", "array_function", "dispatch_table", "QUERIES",
    "NUMPY_PROTOCOL",
]

_PKG = __name__.split(".")[0]

# ops-package modules that hold machinery, not ops (their public functions are no ops)
_MACHINERY = frozenset({"api", "registry", "context", "graph", "sampling", "methods",
                        "numpy_protocol"})

# NumPy (or SciPy) name -> ag name, where they differ and mean the same
_ALIASES = {
    "absolute": "abs",
    "negative": "neg",
    "true_divide": "div",
    "power": "pow",
    "rint": "round",
    "around": "round",
    "amax": "max",
    "amin": "min",
    "ravel": "flatten",
    "concat": "concatenate",
    "permute_dims": "transpose",
}

# ufuncs that mean a logical op on booleans only: ``ndarray & t`` is np.bitwise_and
_BOOL_ONLY = {"bitwise_and": "logical_and", "bitwise_or": "logical_or",
              "bitwise_xor": "logical_xor", "invert": "logical_not"}

# ufunc.reduce / ufunc.accumulate -> the ag op of that meaning (looked up by name in ag)
_REDUCE = {"add": "sum", "multiply": "prod", "maximum": "max", "minimum": "min",
           "logical_and": "all", "logical_or": "any", "logaddexp": "logsumexp"}
_ACCUMULATE = {"add": "cumsum", "multiply": "cumprod", "logaddexp": "logcumsumexp"}

# op parameter names that differ from NumPy's, per ag op (NumPy name -> op name)
_RENAMES = {
    "clip": {"a_min": "lo", "a_max": "hi", "min": "lo", "max": "hi"},
    "where": {"condition": "cond", "x": "a", "y": "b"},
    "pad": {"constant_values": "value"},
    "std": {"correction": "ddof"},
    "var": {"correction": "ddof"},
}

# arguments that change no value of an immutable tensor (memory layout, copies, planning)
_NO_VALUE_CHANGE = frozenset({"copy", "subok", "optimize"})

_NOVALUE = np._NoValue
_ORDERS = ("K", "A", "C", "F")


# ---- the ag namespace -----------------------------------------------------------------------


def _ag():
    return sys.modules[_PKG]


def _is_op_function(obj, sub=None) -> bool:
    """A public op function: a plain function (not a class, an Op or a module) defined in one of
    the op family modules (autograd_gpu.ops.<family>), or, for the ag.<sub> namespace, in
    autograd_gpu.<sub>."""
    if isinstance(obj, (type, Op, types.ModuleType)) or not callable(obj):
        return False
    parts = (getattr(obj, "__module__", None) or "").split(".")
    if parts[0] != _PKG or len(parts) < 2 or parts[1].startswith("_"):
        return False
    if parts[1] == "ops":  # (ops._util's helpers are no ops)
        return len(parts) >= 3 and not parts[2].startswith("_") and parts[2] not in _MACHINERY
    return sub is not None and parts[1] == sub


def _namespace(sub):
    """ag itself (sub None) or ag.<sub> when it exists as a namespace, else None."""
    ag = _ag()
    if sub is None:
        return ag
    ns = getattr(ag, sub, None)
    return ns if isinstance(ns, types.ModuleType) else None


def public_ops(sub=None) -> list:
    """Names of the public op functions of ag (or of ag.<sub>), sorted."""
    ns = _namespace(sub)
    if ns is None:
        return []
    names = getattr(ns, "__all__", None) if sub is not None else None
    names = dir(ns) if names is None else names
    return sorted(n for n in names
                  if not n.startswith("_") and _is_op_function(getattr(ns, n, None), sub))


def _lookup(sub, name):
    """The ag op for a NumPy name in namespace ``sub``: the same name, else its alias."""
    ns = _namespace(sub)
    if ns is None:
        return None
    for n in (name, _ALIASES.get(name)):
        if n is not None:
            fn = getattr(ns, n, None)
            if _is_op_function(fn, sub):
                return fn
    return None


def _ag_name(fn, sub=None) -> str:
    return f"ag.{sub + '.' if sub else ''}{fn.__name__}"


def _unsupported(qual, name, sub, why=""):
    """ArgumentError for a NumPy function with no ag op, naming the nearest op by name."""
    cands = public_ops(sub) or public_ops(None)
    where = sub if sub and _namespace(sub) is not None else None
    best = difflib.get_close_matches(name, cands, n=1, cutoff=0.0)
    near = f"; the nearest ag op by name is ag.{where + '.' if where else ''}{best[0]}" \
        if best else ""
    missing = f"ag.{sub}.{name}" if sub else f"ag.{name}"
    if sub and _namespace(sub) is None:
        missing += f" (ag has no '{sub}' namespace)"
    return ArgumentError(
        f"{qual}: no autograd_gpu op of the same meaning (no {missing}){why}{near}. A plain "
        "NumPy result would carry no gradient, so it is refused: call an ag op, or convert "
        "explicitly with t.numpy() for an untracked array")


# ---- NumPy's extra arguments ----------------------------------------------------------------


def refuse_out(op, out):
    """``out=`` must be None: tensors are immutable, and a result written into an existing
    array would carry no gradient."""
    if isinstance(out, tuple):
        if all(o is None for o in out):
            return
    elif out is None:
        return
    raise ArgumentError(
        f"{op}: argument 'out' is not supported (got {_brief(out)}): tensors are immutable, and "
        "a result written into an existing array would carry no gradient; use the returned "
        "value instead (y = f(...), or a = a + t for a += t)")


def check_where(op, where):
    """``where=`` must be True (a masked result leaves entries of ``out`` unwritten)."""
    if where is True or where is _NOVALUE or (isinstance(where, np.bool_) and bool(where)):
        return
    raise ArgumentError(
        f"{op}: argument 'where' is supported only as True, got {_brief(where)} (use ag.where "
        "to select entries)")


def refuse_given(op, name, value, neutral=_NOVALUE):
    """An argument the op does not take, accepted only at NumPy's default or ``neutral``."""
    if value is _NOVALUE or (neutral is not _NOVALUE and isinstance(value, numbers.Number)
                             and value == neutral):
        return
    raise ArgumentError(f"{op}: argument '{name}' is not supported, got {_brief(value)}")


def check_order(op, order, layout_only=False):
    """'C' (or None); any of K, A, C, F where the order is memory layout only."""
    if order is None or order == "C" or (layout_only and order in _ORDERS):
        return
    raise ArgumentError(
        f"{op}: argument 'order' expected 'C' (tensors are indexed in C order), got {order!r}")


def cast(x, dtype, op="astype"):
    """x cast to ``dtype`` (differentiable: ag.astype for tensors); numbers pass unchanged
    (NumPy's weak scalars), sequences element by element."""
    if dtype is None:
        return x
    dt = np.dtype(dtype)
    if isinstance(x, Tensor):
        if x.dtype == dt:
            return x
        return astype(x, dt)
    if isinstance(x, (list, tuple)):
        return type(x)(cast(v, dt, op) for v in x)
    if hasattr(x, "dtype") and hasattr(x, "astype") and not isinstance(x, np.generic):
        return x if x.dtype == dt else x.astype(dt)
    if isinstance(x, np.generic):
        return x.astype(dt)
    return x


def expect_dtype(op, y, dtype):
    """The result of an op called with NumPy's ``dtype=``: it must have that dtype."""
    if dtype is None:
        return y
    dt = np.dtype(dtype)
    for t in (y if isinstance(y, (tuple, list)) else (y,)):
        if isinstance(t, Tensor) and t.dtype != dt:
            raise DTypeError(f"{op}: argument 'dtype' asked for {dt}, but the op gives "
                             f"{t.dtype} for operands cast to it")
    return y


def check_casting(op, values, casting, dtype=None):
    """NumPy's ``casting=`` rule between each operand and the computation dtype."""
    if casting is None or casting == "same_kind" and dtype is None:
        return
    if casting not in ("no", "equiv", "safe", "same_kind", "unsafe"):
        raise ArgumentError(f"{op}: argument 'casting' expected one of 'no', 'equiv', 'safe', "
                            f"'same_kind', 'unsafe', got {casting!r}")
    dts = [v.dtype for v in _flat(values) if _is_array(v)]
    if not dts:
        return
    target = np.dtype(dtype) if dtype is not None else np.result_type(*dts)
    for d in dts:
        if not np.can_cast(d, target, casting=casting):
            raise DTypeError(f"{op}: cannot cast an operand from {d} to {target} with "
                             f"casting={casting!r}")


def _same(a, b) -> bool:
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # an array compared with ==, a type that refuses it
        return False


def _brief(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_brief(x) for x in v) + ")"
    shape = getattr(v, "shape", None)
    if shape is not None and not isinstance(v, np.generic):
        return f"{type(v).__name__}(shape={tuple(shape)}, dtype={v.dtype})"
    return repr(v)[:80]


def _flat(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v


def _is_array(v) -> bool:
    return isinstance(v, (Tensor, np.ndarray)) or type(v).__module__.startswith("cupy")


def _known_types(values) -> bool:
    """Every array-like among the operands is a Tensor, a NumPy or a CuPy array."""
    for v in _flat(values):
        if isinstance(v, (Tensor, np.ndarray, np.generic, numbers.Number, str, type(None),
                          slice, type(Ellipsis), np.dtype, type)):
            continue
        mod = type(v).__module__
        if mod.startswith("cupy"):
            continue
        if hasattr(v, "__array_ufunc__") or hasattr(v, "__array_function__"):
            return False
    return True


# ---- ufuncs ---------------------------------------------------------------------------------


def _ufunc_origin(ufunc):
    """(qualified name, ag namespace) of a ufunc: NumPy's map to ag, SciPy's special functions
    to ag.special when it exists, else to ag's same-named op (erf, expm1, log1p, round are
    SciPy's functions of those names); (name, False) for a ufunc of another library."""
    name = ufunc.__name__
    if getattr(np, name, None) is ufunc:
        return f"numpy.{name}", None
    special = sys.modules.get("scipy.special")
    if special is not None and getattr(special, name, None) is ufunc:
        return f"scipy.special.{name}", ("special" if _namespace("special") is not None
                                         else None)
    return name, False


def _resolve_ufunc(ufunc):
    """(qualified name, ag function or None, namespace) for a ufunc called directly."""
    qual, sub = _ufunc_origin(ufunc)
    if sub is False:
        return qual, None, False
    name = ufunc.__name__
    fn = _lookup(sub, name)
    if fn is None and sub is not None:  # ag.special lacks it: the top-level op of that name
        fn = _lookup(None, name)
    if fn is None and name in _BOOL_ONLY:
        base = _lookup(None, _BOOL_ONLY[name])
        if base is not None:
            fn = _bool_only(base, qual)
    if fn is None and name == "positive":
        fn = _positive
    return qual, fn, sub


def _positive(x):
    """+x: the tensor itself (tensors are immutable values)."""
    return x


def _bool_only(fn, qual):
    def call(*xs):
        for i, x in enumerate(xs):
            dt = getattr(x, "dtype", None)
            boolean = dt == np.bool_ if dt is not None else isinstance(x, (bool, np.bool_))
            if not boolean:
                raise ArgumentError(
                    f"{qual}: operand {i} is {_brief(x)}; on tensors it is supported for "
                    f"booleans only (as {_ag_name(fn)}): bitwise operations on integers have "
                    "no ag op")
        return fn(*xs)

    call.__name__ = fn.__name__
    return call


def _ufunc_dtypes(ufunc, inputs, dtype, signature, casting, qual):
    """NumPy's loop dtypes for the call (inputs..., outputs...), with its errors."""
    dts = []
    for x in inputs:
        if isinstance(x, bool):
            dts.append(np.dtype(bool))
        elif isinstance(x, (int, float, complex)) and not isinstance(x, np.generic):
            dts.append(type(x))  # a weak Python scalar
        else:
            dts.append(np.asarray(x).dtype if isinstance(x, (np.generic, list, tuple))
                       else np.dtype(x.dtype))
    sig = signature
    if dtype is not None:
        if sig is not None:
            raise ArgumentError(f"{qual}: give 'dtype' or 'signature', not both")
        sig = (None,) * ufunc.nin + (np.dtype(dtype),) * ufunc.nout
    kw = {} if sig is None else {"signature": sig}
    try:
        return ufunc.resolve_dtypes(tuple(dts) + (None,) * ufunc.nout,
                                    casting=casting or "same_kind", **kw)
    except TypeError as exc:  # (UFuncTypeError is one) NumPy's own refusal
        raise DTypeError(f"{qual}: {exc}") from None


def _ufunc_kwargs(qual, kwargs):
    """Check NumPy's ufunc keywords; returns (dtype, signature, casting)."""
    kw = dict(kwargs)
    refuse_out(qual, kw.pop("out", None))
    check_where(qual, kw.pop("where", True))
    check_order(qual, kw.pop("order", None), layout_only=True)
    kw.pop("subok", None)
    dtype = kw.pop("dtype", None)
    signature = kw.pop("signature", None)
    casting = kw.pop("casting", None)
    if kw:
        raise ArgumentError(f"{qual}: argument(s) {sorted(kw)} not supported on tensors "
                            f"(got {', '.join(f'{k}={_brief(v)}' for k, v in kw.items())})")
    return dtype, signature, casting


def _call_ufunc(ufunc, qual, fn, inputs, kwargs):
    dtype, signature, casting = _ufunc_kwargs(qual, kwargs)
    if dtype is None and signature is None and casting is None:
        return fn(*inputs)
    loop = _ufunc_dtypes(ufunc, inputs, dtype, signature, casting, qual)
    ins = [x if isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)
           else cast(x, loop[i], qual) for i, x in enumerate(inputs)]
    out = fn(*ins)
    outs = out if isinstance(out, tuple) else (out,)
    for k, y in enumerate(outs):
        want = loop[ufunc.nin + k]
        if isinstance(y, Tensor) and y.dtype != want:
            raise DTypeError(f"{qual}: NumPy computes this call in {want}, but "
                             f"{_ag_name(fn)} gives {y.dtype} for operands of "
                             f"{[str(d) for d in loop[:ufunc.nin]]}")
    return out


def _reduction(ufunc, method, qual, inputs, kwargs):
    table = _REDUCE if method == "reduce" else _ACCUMULATE
    target = table.get(ufunc.__name__) if qual.startswith("numpy.") else None
    fn = _lookup(None, target) if target is not None else None
    if fn is None:
        raise _unsupported(f"{qual}.{method}", target or f"{ufunc.__name__}.{method}", None)
    kw = dict(kwargs)
    name = f"{qual}.{method}"
    refuse_out(name, kw.pop("out", None))
    check_where(name, kw.pop("where", True))
    refuse_given(name, "initial", kw.pop("initial", _NOVALUE))
    dtype = kw.pop("dtype", None)
    axis = kw.pop("axis", 0)
    call = {"axis": axis}
    if "keepdims" in kw:
        keep = kw.pop("keepdims")
        if method == "reduce":
            call["keepdims"] = bool(keep)
        elif keep:
            raise ArgumentError(f"{name}: argument 'keepdims' is not supported")
    if kw:
        raise ArgumentError(f"{name}: argument(s) {sorted(kw)} not supported on tensors")
    (x,) = inputs
    x = cast(_as_tensor(x, name), dtype, name)
    return expect_dtype(name, fn(x, **call), dtype)


def _outer(ufunc, qual, fn, inputs, kwargs):
    """ufunc.outer(a, b) = ufunc(a[..., None, ..., None], b): a reshaped so its axes come
    first (through ag.reshape for a tensor, so the result stays recorded)."""
    a, b = inputs
    nb = np.ndim(b) if not isinstance(b, Tensor) else b.ndim
    na = a.ndim if isinstance(a, Tensor) else np.ndim(a)
    if na and nb:
        shape = tuple(a.shape) + (1,) * nb
        if isinstance(a, Tensor):
            a = reshape(a, shape)
        else:
            a = (a if hasattr(a, "reshape") else np.asarray(a)).reshape(shape)
    return _call_ufunc(ufunc, qual, fn, (a, b), kwargs)


def array_ufunc(ufunc, method, inputs, kwargs):
    """Tensor.__array_ufunc__: a NumPy ufunc (or one of its methods) on tensors."""
    if not _known_types(inputs) or not _known_types(kwargs.get("out", ()) or ()):
        return NotImplemented
    qual, fn, sub = _resolve_ufunc(ufunc)
    if sub is False:
        raise ArgumentError(
            f"{qual}: a ufunc from outside NumPy and SciPy, whose meaning ag cannot know, so it "
            "is refused on tensors (a plain result would carry no gradient); convert explicitly "
            "with t.numpy() for an untracked array")
    if method in ("reduce", "accumulate"):
        return _reduction(ufunc, method, qual, inputs, kwargs)
    if method == "at":
        hint = " (ag.index_add(t, index, values) gives t with values added at index)" \
            if ufunc.__name__ == "add" else ""
        raise ArgumentError(f"{qual}.at: writes into its first operand in place, and tensors "
                            f"are immutable{hint}")
    if fn is None:
        raise _unsupported(qual if method == "__call__" else f"{qual}.{method}",
                           ufunc.__name__, sub)
    if method == "__call__":
        return _call_ufunc(ufunc, qual, fn, inputs, kwargs)
    if method == "outer":
        return _outer(ufunc, f"{qual}.outer", fn, inputs, kwargs)
    raise _unsupported(f"{qual}.{method}", f"{ufunc.__name__}.{method}", sub)


# ---- array functions ------------------------------------------------------------------------

_SIGNATURES: dict = {}


def _signature(fn):
    sig = _SIGNATURES.get(fn)
    if sig is None:
        sig = _SIGNATURES[fn] = inspect.signature(fn)
    return sig


def _function_origin(func):
    """(qualified name, ag namespace) of a NumPy function: numpy.X -> (…, None), numpy.linalg.X
    -> (…, 'linalg'); (name, False) for a function from outside NumPy."""
    mod = getattr(func, "__module__", None) or ""
    name = getattr(func, "__name__", repr(func))
    if mod == "numpy":
        return f"numpy.{name}", None
    if mod.startswith("numpy."):
        sub = mod.split(".")[1]
        return f"numpy.{sub}.{name}", sub
    return f"{mod + '.' if mod else ''}{name}", False


def _as_tensor(x, op):
    if isinstance(x, Tensor):
        return x
    t = as_tensor(x, None, "a", op)
    return t if isinstance(t, Tensor) else Tensor.from_array(t)


def _call_function(func, qual, fn, args, kwargs, sub):
    """fn called with NumPy's arguments: bound to NumPy's signature, passed by name."""
    np_sig = _signature(func)
    try:
        bound = np_sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise ArgumentError(f"{qual}: {exc}") from None
    given = {}
    for name, value in bound.arguments.items():
        if np_sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            given.update(value)
        else:
            given[name] = value
    params = list(np_sig.parameters.values())
    ag_params = _signature(fn).parameters
    ag_names = list(ag_params)
    ag_label = _ag_name(fn, sub)
    renames = _RENAMES.get(fn.__name__, {})

    first = params[0]
    pos = []
    if first.kind is inspect.Parameter.VAR_POSITIONAL:
        pos = list(given.pop(first.name, ()))
    elif first.name in given:
        pos = [given.pop(first.name)]

    refuse_out(qual, given.pop("out", None))
    check_where(qual, given.pop("where", True))
    check_order(qual, given.pop("order", None))
    casting = given.pop("casting", None)
    if "casting" in np_sig.parameters and casting == np_sig.parameters["casting"].default:
        casting = None
    dtype = None
    if "dtype" in given and "dtype" not in ag_params:
        dtype = given.pop("dtype")
    device = given.pop("device", None)
    if device is not None:
        raise ArgumentError(f"{qual}: argument 'device' is not supported (move tensors with "
                            f"t.to(device)), got {device!r}")
    for k in _NO_VALUE_CHANGE:
        given.pop(k, None)

    call = _keywords_for_op(qual, np_sig, ag_params, ag_label, renames, given, pos)
    _numpy_defaults(params[1:], bound, ag_params, renames, call)

    if dtype is not None or casting is not None:
        check_casting(qual, pos, casting, dtype)
    if dtype is not None:
        pos = [cast(v, dtype, qual) if _is_array(v) or isinstance(v, (list, tuple)) else v
               for v in pos]
    try:
        _signature(fn).bind(*pos, **call)
    except TypeError as exc:
        raise ArgumentError(f"{qual}: cannot be called as {ag_label}"
                            f"({', '.join(ag_names)}) with these arguments ({exc})") from None
    return expect_dtype(qual, fn(*pos, **call), dtype)


def _keywords_for_op(qual, np_sig, ag_params, ag_label, renames, given, pos) -> dict:
    """NumPy's keyword arguments under the op's parameter names; NumPy's *varargs after the
    first argument go on ``pos``. An argument the op has no parameter for is dropped when it
    holds NumPy's default and refused otherwise."""
    call: dict = {}
    ag_varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in ag_params.values())
    for name, value in given.items():
        if ag_varargs and name in np_sig.parameters and \
                np_sig.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
            pos.extend(value)  # NumPy's *varargs after the first argument (np.gradient's)
            continue
        target = renames.get(name, name)
        if target in ag_params and ag_params[target].kind in (
                inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            if target in call:
                raise ArgumentError(f"{qual}: arguments for '{target}' given twice")
            call[target] = value
            continue
        default = np_sig.parameters[name].default if name in np_sig.parameters else _NOVALUE
        if value is _NOVALUE or _same(value, default):
            continue  # NumPy's default: the op's meaning already
        raise ArgumentError(f"{qual}: argument '{name}' (= {_brief(value)}) is not supported: "
                            f"{ag_label} has no such parameter")
    return call


def _numpy_defaults(params, bound, ag_params, renames, call) -> None:
    """Into ``call``: NumPy's defaults for the parameters not given, where the op's default
    differs (or the op has none)."""
    for p in params:
        target = renames.get(p.name, p.name)
        if p.name in bound.arguments or target in call or target not in ag_params:
            continue
        if p.default is inspect.Parameter.empty or p.default is _NOVALUE:
            continue
        ag_default = ag_params[target].default
        if p.default is None and ag_default is inspect.Parameter.empty:
            continue  # None is NumPy's "absent" (np.where(cond)): the op's own error says so
        if ag_default is inspect.Parameter.empty or not _same(ag_default, p.default):
            call[target] = p.default


# ---- queries (no derivative: NumPy's answer) ------------------------------------------------


def _raw(values, qual, allow_mixed=False):
    """Tensors replaced by their arrays; (values, xp). NumPy arrays next to GPU tensors raise
    DeviceError (no silent copies) unless ``allow_mixed``: then xp is None."""
    gpu = next((v._bk for v in _flat(values) if isinstance(v, Tensor)
                and not v._bk.is_host), None)
    has_host = any(isinstance(v, np.ndarray) or isinstance(v, Tensor) and v._bk.is_host
                   for v in _flat(values))
    if gpu is not None and has_host:
        if allow_mixed:
            return None, None
        raise DeviceError(f"{qual}: operands on {gpu.device} and on the host; move them to one "
                          "device with ag.Tensor.from_array(x, device=...)")

    def un(v):
        if isinstance(v, Tensor):
            return v._data
        if isinstance(v, list):
            return [un(x) for x in v]
        if isinstance(v, tuple):
            return tuple(un(x) for x in v)
        return v

    return [un(v) for v in values], (gpu.xp if gpu is not None else np)


def _dtypes_of(values):
    return [v.dtype if isinstance(v, Tensor) else v for v in values]


def _q_attr(func):
    """shape, ndim, size, iscomplexobj, isrealobj: NumPy's code reads attributes tensors have."""
    return lambda qual, args, kwargs: func._implementation(*args, **kwargs)


def _q_dtypes(func):
    """result_type, can_cast, min_scalar_type: a tensor stands for its dtype (NumPy >= 2 has
    no value-based casting, so an array and its dtype give one answer)."""
    return lambda qual, args, kwargs: func._implementation(*_dtypes_of(args), **kwargs)


def _q_memory(name):
    def query(qual, args, kwargs):
        raw, xp = _raw(args, qual, allow_mixed=True)
        if xp is None:
            return False  # host and device memory never overlap
        return bool(getattr(xp, name)(*raw, **kwargs))

    return query


def _q_values(name, to_bool):
    def query(qual, args, kwargs):
        raw, xp = _raw(list(args), qual)
        r = getattr(xp, name)(*raw, **kwargs)
        if to_bool:
            return bool(r)
        if isinstance(r, (np.ndarray,)) or type(r).__module__.startswith("cupy"):
            return Tensor(r, backend_of_array(r) if xp is not np else _numpy_backend())
        return r

    return query


def _numpy_backend():
    return NUMPY


_QUERIES = {
    "shape": _q_attr(np.shape), "ndim": _q_attr(np.ndim), "size": _q_attr(np.size),
    "iscomplexobj": _q_attr(np.iscomplexobj), "isrealobj": _q_attr(np.isrealobj),
    "result_type": _q_dtypes(np.result_type), "can_cast": _q_dtypes(np.can_cast),
    "min_scalar_type": _q_dtypes(np.min_scalar_type),
    "may_share_memory": _q_memory("may_share_memory"),
    "shares_memory": _q_memory("shares_memory"),
    "array_equal": _q_values("array_equal", True), "array_equiv": _q_values("array_equiv", True),
    "allclose": _q_values("allclose", True), "isclose": _q_values("isclose", False),
    "count_nonzero": _q_values("count_nonzero", False),
}


def _query(func):
    if getattr(func, "__module__", None) == "numpy":
        q = _QUERIES.get(func.__name__)
        if q is not None and getattr(np, func.__name__, None) is func:
            return q
    return None


def array_function(func, types_, args, kwargs):
    """Tensor.__array_function__: a NumPy function on tensors."""
    for t in types_:
        if not (issubclass(t, (Tensor, np.ndarray)) or t.__module__.startswith("cupy")):
            return NotImplemented
    q = _query(func)
    qual, sub = _function_origin(func)
    if q is not None:
        return q(qual, args, kwargs)
    name = getattr(func, "__name__", "")
    if sub is False:
        raise _unsupported(qual, name, None, " (not a NumPy function)")
    fn = _lookup(sub, name)
    if fn is None:
        raise _unsupported(qual, name, sub)
    return _call_function(func, qual, fn, args, kwargs, sub)


# ---- the table, for tests and introspection -------------------------------------------------


def dispatch_table() -> dict:
    """Every NumPy ufunc, ufunc method and function that dispatches to an ag op now, derived
    from ag's namespace: {qualified NumPy name: (numpy object, method or None, ag function)}.
    Queries (np.shape, ...) are listed by :data:`QUERIES`. SciPy's special-function ufuncs are
    included when SciPy is installed."""
    table = {}
    ufuncs = [getattr(np, n) for n in dir(np) if isinstance(getattr(np, n), np.ufunc)]
    try:
        import scipy.special as special  # SciPy loads on first use (it adds ~0.3 s to import time)

        ufuncs += [getattr(special, n) for n in dir(special)
                   if isinstance(getattr(special, n), np.ufunc)]
    except ImportError:
        pass
    for uf in ufuncs:
        qual, fn, _sub = _resolve_ufunc(uf)
        if fn is not None:
            table.setdefault(qual, (uf, None, fn))
        for method, tab in (("reduce", _REDUCE), ("accumulate", _ACCUMULATE)):
            if qual.startswith("numpy.") and uf.__name__ in tab:
                red = _lookup(None, tab[uf.__name__])
                if red is not None:
                    table[f"{qual}.{method}"] = (uf, method, red)
    mods = [(None, np)] + [(s, getattr(np, s)) for s in dir(np)
                           if isinstance(getattr(np, s, None), types.ModuleType)
                           and _namespace(s) is not None]
    for sub, mod in mods:
        for n in dir(mod):
            obj = getattr(mod, n, None)
            if isinstance(obj, np.ufunc) or not hasattr(obj, "_implementation"):
                continue
            qual, osub = _function_origin(obj)
            if osub != sub or _query(obj) is not None:
                continue
            fn = _lookup(sub, obj.__name__)
            if fn is not None:
                table.setdefault(qual, (obj, None, fn))
    return dict(sorted(table.items()))


QUERIES = tuple(sorted(_QUERIES))

NUMPY_PROTOCOL.ufunc = array_ufunc
NUMPY_PROTOCOL.function = array_function
