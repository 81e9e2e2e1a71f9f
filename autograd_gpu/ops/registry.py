"""The op registry and the one door every differentiable operation goes through.

An op is declared once, with its rules side by side::

    @defop("exp", cost=elementwise(4))
    class Exp:
        def forward(bk, x):            # arrays in, (output array, saved values) out
            y = bk.xp.exp(x)
            return y, (y,)
        def vjp(F, g, saved, needs):   # cotangent of the output -> one per input (None = zero)
            (y,) = saved
            return (g * y,)
        def jvp(F, ts, saved):         # tangents of the inputs (None = zero) -> output tangent
            (y,) = saved
            return ts[0] * y
        def sample(draw): ...          # hypothesis: (inputs, params) in the op's domain

Rules are written against ``F``, a namespace holding every primitive by name. During a first-order
backward pass ``F`` is ``raw(bk)``: each ``F.op(...)`` calls the op's forward directly on arrays,
with no tensors and no recording. When an outer tape or accumulator could watch the computation,
``F`` is ``tensors(bk)``: each ``F.op(...)`` goes through ``apply`` and is recorded, so every
gradient is differentiable again. Arithmetic operators work on both (arrays and Tensors).

Each op declares the layout of what its forward saves (``saves=``): per saved slot, the name of
the forward's input it holds, ``"out"`` for the op's output, or None for a constant (a mask, a
shape, a number). The engine knows a saved value by its slot, never by the identity of its array:
two inputs that share one buffer (``x * x.detach()``) stay two inputs. In tensor mode input and
output slots are re-linked to the graph; constants must not need a derivative. Cotangents and
tangents may carry leading batch axes: rules use negative axes.
"""

from __future__ import annotations

import inspect
import numbers
import warnings

from .. import dtypes as _dt
from ..backend import NUMPY
from ..errors import (
    ArgumentError,
    AutogradError,
    DeviceError,
    DTypeError,
    ShapeError,
    VmapError,
    describe,
)
from ..tensor import Tensor, TrackedTensor, Variable, tracked
from .context import LIVE, STATE, Mode, ThreadState, cross_thread_error
from .graph import CONST, OUTPUT, Node, PyNode

__all__ = [
    "REGISTRY", "Meta", "Op", "elementwise", "defop", "complex_error", "apply", "layout_error",
    "enable_native", "native_sweep", "RawOps", "TensorOps", "raw", "tensors", "saved_tensors",
    "sum_to", "call_jvp",
]

REGISTRY: dict[str, "Op"] = {}


class Meta:
    """Shape and dtype of a value, for cost estimates."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def ndim(self) -> int:
        return len(self.shape)


class Op:
    """A primitive: forward, vjp, jvp, sampler and cost, plus properties the engine reads."""

    __slots__ = (
        "name", "forward", "vjp", "jvp", "sample", "cost", "params", "deterministic",
        "differentiable", "broadcasting", "doc", "impl", "arity", "saves", "saved_codes",
        "complex_ok", "batch", "value", "runs_user_code",
    )

    def __init__(self, name, impl, params, cost, deterministic, differentiable, broadcasting,
                 saves=(), complex_ok=False, batch=None):
        self.name = name
        # how ag.vmap maps the op over a batch axis (see defop and docs/contributing.md): the
        # defop argument, or a ``batch`` rule beside forward, vjp and jvp in the op's class
        self.batch = _check_batch(name, batch if batch is not None
                                  else getattr(impl, "batch", None))
        # True: the op accepts complex inputs and its rules follow the complex convention of
        # docs/contributing.md (vjp = transpose of the complex-linear derivative, as in JAX)
        self.complex_ok = complex_ok
        # True for primitives whose forward runs the user's code (custom_op, custom_gradient,
        # odeint's func): their exceptions pass through as raised, since a TypeError or
        # ValueError there is a bug in that code, not a dtype or shape the op refuses
        self.runs_user_code = getattr(impl, "runs_user_code", False)
        self.impl = impl
        self.forward = getattr(impl, "forward", None)
        # optional ``value(bk) -> f(*arrays, **params)``: the forward's output alone, for
        # first-order sweeps; an op whose forward is one backend call names that call, so that
        # ``F.<op>`` in a rule costs what the call costs (see RawOps)
        self.value = getattr(impl, "value", None)
        self.vjp = getattr(impl, "vjp", None)
        self.jvp = getattr(impl, "jvp", None)
        self.sample = getattr(impl, "sample", None)
        self.cost = cost
        self.params = tuple(params)
        # True; False (no deterministic path on some backend); or a callable(bk, params) -> bool
        self.deterministic = deterministic
        self.differentiable = differentiable
        self.broadcasting = broadcasting
        self.doc = (impl.__doc__ or "").strip()
        self.arity = _arity(self.forward)
        self.saves = saves
        # the slot codes when they do not depend on the call (else None: codes_for computes them)
        self.saved_codes = None if callable(saves) else self._compile(saves, self.arity)

    def _compile(self, entries, n) -> tuple:
        """Slot codes from a layout: an input position (int >= 0), OUTPUT or CONST per slot."""
        names = _input_names(self.forward)
        codes = []
        for e in entries:
            if e is None:
                codes.append(CONST)
            elif e == "out":
                codes.append(OUTPUT)
            elif isinstance(e, bool) or not isinstance(e, (int, str)):
                raise ArgumentError(f"defop: op {self.name!r}: a 'saves' entry expected an input "
                                    f"name, an input position, 'out' or None, got {e!r}")
            elif isinstance(e, int):
                if e < 0 or (n is not None and e >= n):
                    raise ArgumentError(f"defop: op {self.name!r}: 'saves' names input position "
                                        f"{e}, but the forward takes {n} inputs")
                codes.append(e)
            elif e in names:
                codes.append(names.index(e))
            else:
                raise ArgumentError(f"defop: op {self.name!r}: 'saves' entry {e!r} is not an "
                                    f"input of its forward (inputs: {names}) nor 'out'")
        return tuple(codes)

    def codes_for(self, n: int, params) -> tuple:
        """The slot codes of one call with ``n`` inputs and ``params``."""
        c = self.saved_codes
        if c is not None:
            return c
        return self._compile(self.saves(n, params), n)

    def estimate_cost(self, out_meta, in_metas, params) -> float:
        return float(self.cost(Meta(*out_meta), *(Meta(*m) for m in in_metas), **params))

    def is_deterministic(self, bk, params) -> bool:
        d = self.deterministic
        return d(bk, params) if callable(d) else bool(d)

    def __call__(self, *inputs, **params):
        return apply(self, *inputs, **params)

    def __repr__(self) -> str:
        return f"Op({self.name!r})"


def _arity(fn):
    """Number of array inputs of a forward(bk, ...) (None for a variadic one)."""
    n = 0
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


def _check_batch(name, batch):
    """A defop batch declaration, validated (see defop)."""
    if batch is None or callable(batch) or batch in ("elementwise", "leading"):
        return batch
    if (isinstance(batch, tuple) and len(batch) >= 2 and batch[0] == "axes"
            and all(isinstance(p, str) for p in batch[1:])):
        return batch
    raise ArgumentError(f"defop: op {name!r}: 'batch' expected 'elementwise', 'leading', "
                        f"('axes', param, ...) or a rule, got {batch!r}")


def _input_names(fn) -> list:
    """Names of the array inputs of a forward(bk, ...) (a variadic one: its *name)."""
    out = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL):
            out.append(p.name)
    return out


def _split(op, args, params):
    """Let rules pass an op's parameters positionally after its inputs: F.reshape(g, shape)."""
    n = op.arity
    if n is None or len(args) <= n:
        return args, params
    extra = args[n:]
    params = dict(params)
    for name, v in zip(op.params, extra):
        params[name] = v
    return args[:n], params


def elementwise(k: float = 1.0):
    """Cost model of an elementwise op: k flops per output element."""
    return lambda out, *xs, **p: k * out.size


def defop(name: str, params=(), cost=None, deterministic=True, differentiable=True,
          broadcasting=False, register=True, saves=(), complex_ok=False, batch=None):
    """Declare a primitive. ``broadcasting=True`` marks elementwise ops whose inputs broadcast
    against each other (the engine then aligns tangent batches and unbroadcasts cotangents).
    ``register=False`` builds the Op without adding it to REGISTRY (user ops, test doubles).

    ``saves``: the layout of the saved values the forward returns, one entry per slot: the name
    (or position) of the forward input it holds, ``"out"`` for the output, None for a constant.
    A callable ``saves(n_inputs, params) -> entries`` for layouts that depend on the call
    (variadic forwards, parameter-dependent choices).

    ``complex_ok=True``: the op takes complex inputs (where NumPy defines it for them) and its
    rules follow the complex convention (docs/contributing.md); other ops refuse them.

    ``batch``: how ``ag.vmap`` maps the op over a batch axis: "elementwise" (inputs broadcast
    elementwise), "leading" (the forward already treats extra leading axes of its array inputs
    as a batch, broadcasting them), ``("axes", "axis", ...)`` ("leading", and the named params'
    non-negative axes shift past the batch axis), or a rule ``rule(F, args, dims, **params) ->
    (out, out_dim)`` (``dims``: per input its batch axis or None)."""

    def deco(impl):
        if register and name in REGISTRY:
            raise ArgumentError(f"defop: op {name!r} is already registered")
        if getattr(impl, "forward", None) is None:
            raise ArgumentError(f"defop: op {name!r} has no forward")
        op = Op(name, impl, params, cost if cost is not None else elementwise(1.0),
                deterministic, differentiable, broadcasting, saves, complex_ok, batch)
        if register:
            REGISTRY[name] = op
        return op

    return deco


# ---------------------------------------------------------------------------------------------
# the one door


_TENSOR_TYPES = {Tensor, TrackedTensor, Variable}
_SCALAR_TYPES = {int, float, bool, complex}
_COMPLEX = frozenset({_dt.complex64, _dt.complex128})


class _Inputs:
    """What one pass over apply's inputs gives: the backend, the arrays, and when tapes record,
    the graph edges (parent node or None per input), the ids of the recording tapes that track
    some input (``found``) and whether a constant is among the inputs."""

    __slots__ = ("bk", "arrs", "parents", "found", "const")


def _collect(op, inputs, recording=None, autowatch=()) -> _Inputs:
    """The one definition of apply's input handling (the fast path in ``apply`` and the C
    ``record`` are its specialisations for the common cases and defer to it for the rest):
    Tensors give their arrays and must share one device; Python real numbers pass as they are;
    anything else raises, naming the op and the argument. With ``recording`` (the thread's
    recording tapes) it also collects the graph edges, and lets context tapes watch the
    Variables they read (``autowatch``)."""
    got = _Inputs()
    bk = None
    arrs = []
    parents = [] if recording else None
    found = None
    const = False  # an input no tape tracks (its meta is stored; tracked ones are shared)
    for i, x in enumerate(inputs):
        tx = type(x)
        if tx in _TENSOR_TYPES or isinstance(x, Tensor):
            if x._batched:  # its vmap's interceptor would have taken it: the vmap has ended
                raise VmapError(
                    f"{op.name}: argument {i} is a batched value of an ag.vmap that is no "
                    "longer running (it escaped through a closure, a global or a side effect); "
                    "return it from the mapped function instead")
            xb = x._bk
            if bk is None:
                bk = xb
            elif xb is not bk:
                raise DeviceError(
                    f"{op.name}: argument {i} expected device {bk.device} like the other inputs, "
                    f"got {xb.device} (move it with .to(...); no silent copies)"
                )
            arrs.append(x._data)
            if parents is None:
                continue
            if autowatch and tx is not Tensor and getattr(x, "trainable", False):
                for tape in autowatch:
                    tape._autowatch(x)
            tp = x._tapes
            if tp:
                found = tp if found is None or tp == found else found | tp
                parents.append(x._node)
            else:
                parents.append(None)
                const = True
        elif tx in _SCALAR_TYPES or x is None or isinstance(x, numbers.Number):
            arrs.append(x)
            if parents is not None:
                parents.append(None)
                const = True
        else:
            raise ArgumentError(
                f"{op.name}: argument {i} expected a Tensor or a Python number, got {describe(x)}"
            )
    if found is not None and not found <= recording.keys():
        err = cross_thread_error(op.name, found)
        if err is not None:
            raise err
        found = frozenset(t for t in found if t in recording) or None
    if bk is None:
        from ..backend import default_backend  # (a cycle: backend selection imports tensors)

        bk = default_backend()
    got.bk, got.arrs, got.parents, got.found, got.const = bk, arrs, parents, found, const
    return got


def complex_error(op, arrs) -> DTypeError:
    """An op without complex support gave a complex output (complex inputs reached it)."""
    got = "; ".join(f"argument {i}: dtype {getattr(a, 'dtype', type(a).__name__)}"
                    for i, a in enumerate(arrs))
    return DTypeError(f"{op.name}: expected real inputs (this op has no complex rules), got "
                      f"{got}; take ag.real / ag.imag / ag.abs first, or use an op that accepts "
                      "complex values")


def _forward(op, bk, arrs, params, codes=()):
    """The op's forward with its errors translated (ShapeError, DTypeError); ``codes``: the
    call's saved-slot codes (see _fix_out)."""
    try:
        out, saved = op.forward(bk, *arrs, **params)
    except AutogradError:
        raise
    except (ValueError, IndexError, TypeError) as exc:
        if op.runs_user_code:
            _note_user_code(op, exc)
            raise
        _raise_translated(op, arrs, params, exc)
    if type(out) is not bk.array_type:
        out, saved = _fix_out(bk, out, saved, codes)
    return out, saved


def _note_user_code(op, exc) -> None:
    exc.add_note(f"(raised in the forward of the primitive {op.name!r}, which runs user code: "
                 "passed through as raised)")


def _raise_translated(op, arrs, params, exc):
    """NumPy's or CuPy's ValueError/IndexError (shapes) or TypeError (dtypes) from an op's
    forward, as the library's ShapeError or DTypeError naming the op and its inputs."""
    if not isinstance(exc, TypeError):
        got = "; ".join(f"argument {i}: shape {tuple(a.shape)}" if hasattr(a, "shape") else
                        f"argument {i}: {a!r}" for i, a in enumerate(arrs))
        extra = f" with {params}" if params else ""
        raise ShapeError(f"{op.name}: expected inputs whose shapes fit together{extra}, got "
                         f"{got} (NumPy/CuPy: {exc})") from exc
    got = "; ".join(f"argument {i}: dtype {getattr(a, 'dtype', type(a).__name__)}"
                    for i, a in enumerate(arrs))
    extra = f" with {params}" if params else ""
    raise DTypeError(f"{op.name}: expected inputs of dtypes it supports{extra}, got {got} "
                     f"(NumPy/CuPy: {exc})") from exc


def apply(op: Op, *inputs, **params) -> Tensor:
    """Run ``op`` on ``inputs`` (Tensors or Python numbers). Records on every recording tape that
    tracks an input, propagates forward-mode tangents, and runs the active hooks."""
    st = STATE.mode
    if st is not None:
        hooks = st.hooks
        if hooks:
            return _run_hooks(hooks, len(hooks) - 1, op, inputs, params)
        if _record is not None:  # the common recording case in C (_native.c), when compiled
            try:
                r = _record(op, inputs, params, st)
            except (ValueError, IndexError, TypeError) as exc:
                if op.runs_user_code:  # raised by the user's forward, which ran once
                    _note_user_code(op, exc)
                raise
            if r is not NotImplemented:
                return r
        return _apply_observed(op, inputs, params, st)
    # fast path: nothing can observe this call
    bk = None
    arrs = []
    for x in inputs:
        tx = type(x)
        if tx in _TENSOR_TYPES:
            if x._bk is not bk:
                if bk is not None:
                    bk = None
                    break
                bk = x._bk
            if tx is not Tensor and x._tapes and LIVE:
                err = cross_thread_error(op.name, x._tapes)
                if err is not None:
                    raise err
            arrs.append(x._data)
        elif tx in _SCALAR_TYPES:
            arrs.append(x)
        else:
            bk = None
            break
    if bk is None:  # scalars only, subclasses, mixed devices, bad arguments
        got = _collect(op, inputs)
        bk, arrs = got.bk, got.arrs
    try:
        out = op.forward(bk, *arrs, **params)[0]
    except (ValueError, IndexError, TypeError) as exc:
        if op.runs_user_code:
            _note_user_code(op, exc)
            raise
        out = _forward(op, bk, arrs, params)[0]  # re-run for a translated error
    if type(out) is not bk.array_type:
        out = bk.xp.asarray(out)
    if not op.complex_ok and out.dtype in _COMPLEX and op.differentiable:
        raise complex_error(op, arrs)
    return Tensor(out, bk)


def _run_hooks(hooks, i, op, inputs, params):
    if i < 0:
        return _apply_observed(op, inputs, params)
    return hooks[i]("forward", op, inputs, params,
                    lambda inp, prm: _run_hooks(hooks, i - 1, op, inp, prm))


def _apply_observed(op, inputs, params, st=None):
    """apply with tapes, accumulators or hooks active: collect the inputs (and the graph edges
    when tapes record), run the forward, record a node on the tapes that track an input, then
    push forward-mode tangents. ``st``: STATE.mode."""
    if st is None:
        st = STATE.mode or _IDLE
    elif not (st.recording or st.accumulators or st.hooks):
        # every tape of this thread was stopped from another thread: drop the stale mode so
        # that later ops take the fast path again
        STATE.refresh()
        st = _IDLE
    recording = st.recording if op.differentiable else None
    got = _collect(op, inputs, recording, st.autowatch if recording else ())
    bk, arrs = got.bk, got.arrs
    codes = op.saved_codes
    if codes is None:
        codes = op.codes_for(len(arrs), params)
    try:
        out, saved = op.forward(bk, *arrs, **params)
    except (ValueError, IndexError, TypeError) as exc:
        if op.runs_user_code:
            _note_user_code(op, exc)
            raise
        out, saved = _forward(op, bk, arrs, params, codes)  # re-run for a translated error
    if type(out) is not bk.array_type:
        out, saved = _fix_out(bk, out, saved, codes)
    if not op.complex_ok and out.dtype in _COMPLEX and op.differentiable:
        raise complex_error(op, arrs)
    if got.found:
        node = _record_node(op, params, inputs, got, out, saved, codes, st)
        result = _new_tensor(TrackedTensor)
        result._data = out
        result._bk = bk
        result._node = node
        result._tapes = got.found
        result._fw = None
    else:
        result = Tensor(out, bk)
    if st.accumulators and op.differentiable:
        for acc in st.accumulators:
            acc.propagate(op, bk, inputs, arrs, params, out, saved, result)
    return result


def _record_node(op, params, inputs, got, out, saved, codes, st):
    """The node of one recorded application, appended to every recording tape that tracks an
    input (their add-ons that watch recording see it), and shown to the hooks."""
    if len(saved) != len(codes):
        raise layout_error(op, saved, codes)
    parents, arrs, found = tuple(got.parents), got.arrs, got.found
    # Few GC-tracked tuples per node: on a long graph the collector's passes over them cost
    # more than building them. A tracked input's meta is its parent's out_meta (the node
    # derives in_meta from the parents when every input is tracked), and the output shares a
    # parent's out_meta when its shape and dtype are the same (elementwise ops).
    in_meta = None
    if got.const:
        in_meta = tuple(p.out_meta if p is not None else
                        (a.shape, a.dtype) if isinstance(x, Tensor) else ((), None)
                        for p, x, a in zip(parents, inputs, arrs))
    shape, dtype = out.shape, out.dtype
    p = parents[0] or parents[-1]
    out_meta = p.out_meta if p is not None else None
    if out_meta is None or out_meta[1] is not dtype or out_meta[0] != shape:
        out_meta = (shape, dtype)
    node = Node(op, params, parents, in_meta, saved, codes, found, out_meta)
    if got.const and st.accumulators and saved:
        node.fw = _const_tangents(inputs, parents, codes)
    recording, observers = st.recording, st.observers
    for tid in found:
        recording[tid].append(node)
        if observers:
            obs = observers.get(tid)
            if obs is not None:  # a tape add-on watching what is recorded (checkpointing)
                obs(node, arrs, out)
    for h in st.hooks:
        rec = getattr(h, "on_record", None)
        if rec is not None:
            rec(node)
    return node


def _fix_out(bk, out, saved, codes):
    """numpy ufuncs return scalars for 0-d inputs: the output as an array, and the saved slots
    that hold the output (``codes``: the call's slot codes) given that array too."""
    new = bk.xp.asarray(out)
    if OUTPUT in codes:
        saved = tuple(new if c == OUTPUT else s for s, c in zip(saved, codes))
    return new, saved


def layout_error(op, saved, codes) -> ArgumentError:
    return ArgumentError(
        f"{op.name}: the forward returned {len(saved)} saved values, but the op declares "
        f"{len(codes)} (its 'saves' layout {op.saves!r}); declare one entry per saved value")


def _const_tangents(inputs, parents, codes):
    """Per input: the forward-mode tangents of a saved input that no tape tracks, else None.
    A recorded sweep rebuilds saved inputs from arrays; these give the rebuilt constants the
    tangents the caller's tensors carried, so an accumulator around a gradient computation sees
    that the gradient depends on them (forward-over-reverse through a closed-over variable)."""
    fw = None
    for c in codes:
        if c >= 0 and parents[c] is None:
            x = inputs[c]
            t = getattr(x, "_fw", None)
            if t:
                if fw is None:
                    fw = [None] * len(inputs)
                # a snapshot: the caller's dict may later get a tangent computed from this
                # node, and a node must never be part of a reference cycle (see graph.py)
                fw[c] = dict(t)
    return None if fw is None else tuple(fw)


def _contract_problems(table: dict) -> list:
    """Names the compiled code reads (``_native.contract()``) that the Python side lacks."""

    have = {
        "Tensor slots": lambda n: n in Tensor.__slots__,
        "Mode": lambda n: n in Mode.__slots__ and hasattr(ThreadState(), n),
        "Op": lambda n: n in Op.__slots__ or callable(getattr(Op, n, None)),
        "backend": lambda n: hasattr(NUMPY, n),
        "array": lambda n: hasattr(NUMPY.xp.ndarray, n),
        "rule namespace": lambda n: n in REGISTRY,
        "astype keyword": lambda n: n in REGISTRY["astype"].params,
        "Node methods": lambda n: callable(getattr(Node, n, None)),
    }
    problems = []
    for group, names in table.items():
        if group == "SweepContext":
            from ..sweep import SweepContext  # (a cycle: sweep.py builds on this module)

            if tuple(names) != SweepContext._fields:
                problems.append(f"SweepContext fields {SweepContext._fields} != {tuple(names)}")
            continue
        check = have.get(group)
        if check is None:
            problems.append(f"unknown group {group!r}")
            continue
        problems += [f"{group}.{n}" for n in names if not check(n)]
    return problems


def enable_native(native=None) -> bool:
    """Turn the compiled recording and sweep on when the extension is in use and its contract
    (every name it reads from Python objects) matches this code; otherwise warn and keep the
    Python paths. Called once every op is registered (ops/__init__.py)."""
    global _record, native_sweep
    _record = native_sweep = None
    if Node is PyNode:  # not compiled, or AUTOGRAD_GPU_PURE_PYTHON=1
        return False
    if native is None:
        from .. import _native as native  # optional: the compiled extension may be absent
    problems = _contract_problems(native.contract())
    if problems:
        warnings.warn("autograd_gpu: the compiled extension (_native) does not match the Python "
                      f"code it reads ({'; '.join(problems)}); using the pure-Python recording "
                      "and sweep instead (rebuild the extension: pip install .)", RuntimeWarning,
                      stacklevel=2)
        return False
    native.configure(Node, Tensor, TrackedTensor, _fix_out, layout_error, complex_error,
                     tuple(_COMPLEX))
    _record, native_sweep = native.record, native.sweep
    return True


_record = native_sweep = None  # set by enable_native()

# what a hook's own call sees when nothing observes any more (never filled: nobody holds it)
_IDLE = Mode.__new__(Mode)
_IDLE.recording, _IDLE.autowatch, _IDLE.accumulators, _IDLE.hooks = {}, [], [], []
_IDLE.observers = {}
_new_tensor = object.__new__  # a TrackedTensor without __init__'s defaults (every slot set)


# ---------------------------------------------------------------------------------------------
# rule namespaces


class RawOps:
    """``F`` for first-order sweeps: primitives called directly on arrays, nothing recorded."""

    def __init__(self, bk):
        self.bk = bk
        self.xp = bk.xp
        self.is_raw = True

    def __getattr__(self, name):
        op = REGISTRY.get(name)
        if op is None:
            raise AttributeError(f"no primitive named {name!r}")
        if op.value is not None:  # the op's own output-only call (a backend method)
            call = op.value(self.bk)
            setattr(self, name, call)
            return call
        fwd, bk, arr_t, asarray = op.forward, self.bk, self.bk.array_type, self.bk.xp.asarray
        n = op.arity if op.arity is not None else 1 << 30

        def call(*args, **params):
            if len(args) > n:
                args, params = _split(op, args, params)
            out = fwd(bk, *args, **params)[0]
            return out if type(out) is arr_t else asarray(out)

        call.__name__ = name
        setattr(self, name, call)
        return call

    def const(self, value, dtype=None):
        return self.xp.asarray(value, dtype=dtype)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def data(self, x):
        return x

    @staticmethod
    def cached(value, fn, *args, **kwargs):
        """A saved value known to equal ``fn(F, *args, **kwargs)`` (a statistic the forward
        computed, as layer norm's rstd): nothing differentiates a first-order sweep's results,
        so the value serves as it is."""
        return value


class TensorOps:
    """``F`` for differentiable sweeps: primitives through ``apply`` on Tensors."""

    def __init__(self, bk):
        self.bk = bk
        self.xp = bk.xp
        self.is_raw = False

    def __getattr__(self, name):
        op = REGISTRY.get(name)
        if op is None:
            raise AttributeError(f"no primitive named {name!r}")

        n = op.arity if op.arity is not None else 1 << 30

        def call(*args, **params):
            if len(args) > n:
                args, params = _split(op, args, params)
            return apply(op, *args, **params)

        call.__name__ = name
        setattr(self, name, call)
        return call

    def const(self, value, dtype=None):
        return Tensor(self.xp.asarray(value, dtype=dtype), self.bk)

    def zeros(self, shape, dtype):
        return Tensor(self.xp.zeros(shape, dtype=dtype), self.bk)

    def data(self, x):
        return x._data if isinstance(x, Tensor) else x

    def cached(self, value, fn, *args, **kwargs):
        """A saved value known to equal ``fn(F, *args, **kwargs)``: recomputed here through
        recorded ops, so that its dependence on the inputs is part of the graph (the saved array
        itself is a constant to the rules)."""
        return fn(self, *args, **kwargs)


_RAW: dict = {}
_TENS: dict = {}


def raw(bk) -> RawOps:
    ns = _RAW.get(bk)
    if ns is None:
        ns = _RAW[bk] = RawOps(bk)
    return ns


def tensors(bk) -> TensorOps:
    ns = _TENS.get(bk)
    if ns is None:
        ns = _TENS[bk] = TensorOps(bk)
    return ns


def saved_tensors(node: Node, bk) -> tuple:
    """The node's saved values as Tensors linked into the graph (for differentiable sweeps):
    output and tracked-input slots become tracked tensors of their nodes, the rest constants
    (with the tangents a saved untracked input carried when it was recorded: see
    _const_tangents)."""
    out = []
    tapes = frozenset(node.tapes)
    parents = node.parents
    fw = node.fw
    for s, code in zip(node.saved, node.saved_map):
        if code == OUTPUT:
            out.append(tracked(s, bk, node, tapes))
            continue
        if code >= 0:
            p = parents[code]
            if p is not None:
                out.append(tracked(s, bk, p, tapes))
                continue
        if not hasattr(s, "dtype"):  # a number, a shape, a dtype
            out.append(s)
            continue
        t = Tensor(bk.xp.asarray(s), bk)
        if code >= 0 and fw is not None and fw[code]:
            t._fw = dict(fw[code])
        out.append(t)
    return tuple(out)


def sum_to(F, g, shape, batch_nd):
    """Sum a (batched) cotangent ``g`` of shape batch + S back to batch + ``shape``, where S is
    ``shape`` broadcast. The engine's unbroadcast; rules never do it."""
    gshape = g.shape
    if gshape[batch_nd:] == shape:
        return g
    lead = len(gshape) - batch_nd - len(shape)
    if lead < 0:
        raise ShapeError(f"unbroadcast: cotangent shape {gshape} cannot reduce to {shape}")
    axes = list(range(batch_nd, batch_nd + lead))
    for i, s in enumerate(shape):
        if s == 1 and gshape[batch_nd + lead + i] != 1:
            axes.append(batch_nd + lead + i)
    if axes:
        g = F.sum(g, axis=tuple(axes), keepdims=True)
    return F.reshape(g, tuple(gshape[:batch_nd]) + tuple(shape))


def call_jvp(op, F, tangents, saved, params, in_metas, out_ndim):
    """Run an op's jvp rule. For broadcasting ops, each tangent (batch + input shape) is first
    given singleton axes so that its input dims line up with the output's under a batch."""
    if op.broadcasting:
        ts = []
        for t, (shape, _) in zip(tangents, in_metas):
            if t is not None and len(shape) < out_ndim:
                b = t.ndim - len(shape)
                t = F.reshape(t, tuple(t.shape[:b]) + (1,) * (out_ndim - len(shape)) + tuple(shape))
            ts.append(t)
        tangents = tuple(ts)
    return op.jvp(F, tangents, saved, **params)
