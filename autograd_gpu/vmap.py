"""``ag.vmap``: map a function over an axis of its inputs without a Python loop.

Inside ``vmap(f)``, f sees each batched input as a ``BatchedTensor``: a per-example (logical)
tensor that holds the physical tensor (the whole batch) and which of its axes is the batch axis.
An interceptor for this vmap level (``_Level``) catches every op whose inputs are batched at its
level and runs the op's batching rule (``defop(batch=...)``) on the physical tensors instead:
one op over the whole batch. The rule's own ops go through ``apply`` again, so tapes that track
the physical tensors record them, outer vmap levels batch them again (nesting), and AMP and the
profiler see them.

Transforms compose through two rules:
- ``grad(vmap(f))``: the tape outside records the physical ops; nothing special.
- ``vmap(grad(f))`` and the other transforms inside a vmap: each differentiated argument is
  lifted to every active level (broadcast along a new batch axis when it is not batched there),
  so that every example has its own copy and its own gradient (per-example gradients with
  respect to a shared weight), and tapes and accumulators read batched targets, sources and
  tangents through their physical tensors (``physical``/``rewrap``). A tape created inside a
  vmap differentiates per example only with respect to values batched at that level: a source
  that is not raises (its physical gradient would be the sum over the batch).

Randomness (as ``torch.func.vmap``): ``randomness="error"`` raises at a random op inside the
map, ``"different"`` draws independent values per example, ``"same"`` one draw for all.
"""

from __future__ import annotations

import numbers
import warnings

from .errors import ArgumentError, ShapeError, VmapError, describe
from .ops import api as A
from .ops.context import STATE, pop_hook, push_hook
from .ops.registry import apply
from .pytree import broadcast_prefix, leaf_paths, tree_flatten, tree_unflatten
from .tensor import Tensor

__all__ = ["vmap", "BatchedTensor", "VmapError", "lift", "physical", "rewrap", "match_layout",
           "random_mode"]

_RANDOMNESS = ("error", "different", "same")


class _NoArray:
    """A batched value's ``_data``: code that would read a Tensor's array directly must see it
    through ``vmap.physical`` instead (the physical array has the batch axis: used as the
    example's array it would be silently wrong), so any use of it raises."""

    __slots__ = ()

    def __getattr__(self, name):
        raise VmapError(f"vmap: the array of a batched value was read directly (.{name}): this "
                        "code path does not support values inside ag.vmap; please report it")

    def __repr__(self) -> str:
        return "<the array of a batched value>"


_NO_ARRAY = _NoArray()


class BatchedTensor(Tensor):
    """A per-example view of a batch inside ``ag.vmap``: ``shape`` is one example's shape;
    the batch lives in ``_phys`` (a Tensor, or a BatchedTensor of an outer vmap) along axis
    ``_bdim``. It has no array of its own (``_data`` refuses every use)."""

    __slots__ = ("_phys", "_bdim", "_level")
    _batched = True

    def __init__(self, phys, bdim, level):
        self._phys = phys
        self._bdim = bdim
        self._level = level
        self._data = _NO_ARRAY
        self._bk = phys._bk
        self._node = phys._node
        self._tapes = phys._tapes
        self._fw = None

    @property
    def shape(self) -> tuple:
        s = self._phys.shape
        return s[:self._bdim] + s[self._bdim + 1:]

    @property
    def ndim(self) -> int:
        return self._phys.ndim - 1

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def dtype(self):
        return self._phys.dtype

    def __repr__(self) -> str:
        return (f"BatchedTensor(shape={self.shape}, dtype={self.dtype}, batch axis "
                f"{self._bdim} of {tuple(self._phys.shape)}, level {self._level.id})")

    def _no_value(self, what):
        raise VmapError(
            f"vmap: {what} of a batched tensor is not allowed inside ag.vmap: its value differs "
            "per example, so data-dependent Python control flow (if x > 0, float(x), "
            ".item(), .numpy()) has no single answer. Use ag.where for a per-example choice, or "
            "compute the value outside the vmap")

    def __bool__(self):
        self._no_value("bool()")

    def __float__(self):
        self._no_value("float()")

    def __int__(self):
        self._no_value("int()")

    def __index__(self):
        self._no_value("__index__")

    def to_scalar(self):
        self._no_value("to_scalar()/item()")

    item = to_scalar

    def numpy(self):
        self._no_value("numpy()")

    def tolist(self):
        self._no_value("tolist()")

    def __array__(self, dtype=None, copy=None):
        self._no_value("conversion to a NumPy array")


# ---------------------------------------------------------------------------------------------
# levels


class _Level:
    """One active vmap: its batch size, its randomness mode, and the interceptor that batches
    the ops whose inputs are batched at this level."""

    _count = 0

    def __init__(self, size, randomness):
        _Level._count += 1
        self.id = _Level._count
        self.size = size
        self.randomness = randomness

    def __call__(self, phase, op, args, params, call):
        if phase != "forward":
            return call(args, params)
        dims = [a._bdim if isinstance(a, BatchedTensor) and a._level is self else None
                for a in args]
        if all(d is None for d in dims):
            return call(args, params)
        phys = [a._phys if d is not None else a for a, d in zip(args, dims)]
        out, out_dim = run_rule(op, phys, dims, params, self)
        if out_dim is None:
            return out
        return BatchedTensor(out, out_dim, self)


def active_levels() -> list:
    """The vmap levels active in this thread, outermost first."""
    return [h for h in STATE.hooks if isinstance(h, _Level)]


# ---------------------------------------------------------------------------------------------
# batching rules


def _to_front(x, d):
    """x with its batch axis ``d`` moved to the front (a transpose op when needed)."""
    if d == 0:
        return x
    perm = (d,) + tuple(i for i in range(x.ndim) if i != d)
    return A.transpose(x, perm)


def _elementwise(op, args, dims, params, level):
    nd = max((_logical_ndim(a, d) for a, d in zip(args, dims)), default=0)
    new = []
    for a, d in zip(args, dims):
        if d is None:
            new.append(a)
            continue
        a = _to_front(a, d)
        k = a.ndim - 1
        if k < nd:  # align the example's axes with the output's trailing axes
            a = A.reshape(a, (a.shape[0],) + (1,) * (nd - k) + tuple(a.shape[1:]))
        new.append(a)
    return apply(op, *new, **params), 0


def _logical_ndim(a, d):
    if not hasattr(a, "ndim"):
        return 0
    return a.ndim - (1 if d is not None else 0)


def _leading(op, args, dims, params, level, axes=()):
    new = [a if d is None else _to_front(a, d) for a, d in zip(args, dims)]
    if axes:
        params = dict(params)
        for name in axes:
            params[name] = _shift_axes(params.get(name))
    return apply(op, *new, **params), 0


def _shift_axes(v):
    """Axis parameters past a new leading batch axis: non-negative ones move by one."""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return v + 1 if v >= 0 else v
    if isinstance(v, tuple):
        return tuple(_shift_axes(a) for a in v)
    return v


_WARNED: set = set()


def _loop(op, args, dims, params, level):
    """The fallback for an op without a batching rule: the op on each example, stacked."""
    if op.name not in _WARNED:
        _WARNED.add(op.name)
        warnings.warn(f"vmap: op '{op.name}' has no batching rule; it runs once per example "
                      f"(a Python loop over {level.size} examples)", RuntimeWarning,
                      stacklevel=4)
    outs = []
    for b in range(level.size):
        ex = [a if d is None else a[(slice(None),) * d + (b,)] for a, d in zip(args, dims)]
        outs.append(apply(op, *ex, **params))
    return A.stack(outs, axis=0), 0


def run_rule(op, args, dims, params, level):
    """Run op's batching rule on the physical inputs: (output, its batch axis)."""
    rule = op.batch
    if rule is None:
        return _loop(op, args, dims, params, level)
    if rule == "elementwise":
        return _elementwise(op, args, dims, params, level)
    if rule == "leading":
        return _leading(op, args, dims, params, level)
    if isinstance(rule, tuple):
        return _leading(op, args, dims, params, level, axes=rule[1:])
    return rule(_Rules(level), args, dims, **params)


class _Rules:
    """What a custom batching rule receives as ``F``: the public ops (recorded, batched by
    outer levels), ``size`` (the batch size), ``to_front`` and ``apply``."""

    def __init__(self, level):
        self.size = level.size
        self.level = level

    def __getattr__(self, name):
        return getattr(A, name)

    @staticmethod
    def to_front(x, d):
        return x if d is None else _to_front(x, d)

    @staticmethod
    def apply(op, *args, **params):
        return apply(op, *args, **params)

    def front(self, x, d):
        """x's batch axis at the front; an unbatched x broadcast along a new leading one."""
        if d is None:
            return A.broadcast_to(A.expand_dims(x, 0), (self.size,) + tuple(x.shape))
        return _to_front(x, d)

    def loop(self, op, args, dims, params):
        """The per-example fallback, for the cases a rule does not vectorise."""
        return _loop(op, args, dims, params, self.level)

    def batched(self, x, d):
        """A physical tensor as a value batched at this level (to run user code per example)."""
        return BatchedTensor(x, d, self.level) if d is not None else x

    def unbatch(self, y):
        """(physical tensor, batch axis) of a value batched at this level (None if it is not)."""
        if isinstance(y, BatchedTensor) and y._level is self.level:
            return y._phys, y._bdim
        return y, None

    def random_mode(self, op_name) -> str:
        return random_mode(self, op_name)


def random_mode(F, op_name) -> str:
    """The randomness mode of the level a random op's batching rule runs under ("different" or
    "same"); raises under "error"."""
    mode = F.level.randomness
    if mode == "error":
        raise VmapError(f"vmap: random op '{op_name}' inside ag.vmap with randomness='error' "
                        "(the default): pass randomness='different' (independent draws per "
                        "example) or 'same' (one draw for every example)")
    return mode


# ---------------------------------------------------------------------------------------------
# the transform


def vmap(f, in_axes=0, out_axes=0, axis_size=None, randomness="error"):
    """Vectorise ``f`` over an axis of its inputs: ``vmap(f)(xs)`` is ``stack([f(x) for x in
    xs])`` without the loop.

    ``in_axes``: per positional argument (a pytree prefix of the arguments) the axis to map
    over, or None for an argument shared by every example; an int applies to every argument.
    ``out_axes``: where the batch axis goes in each output (an unbatched output is broadcast).
    ``axis_size``: the batch size when no argument is mapped. ``randomness``: "error",
    "different" or "same" (see the module docstring). Nests with itself and composes with
    ag.grad, vjp, jvp, jacobian, hessian, checkpoint, AMP and custom_op."""
    if not callable(f):
        raise ArgumentError(f"vmap: argument 'f' expected a callable, got {describe(f)}")
    if randomness not in _RANDOMNESS:
        raise ArgumentError(f"vmap: argument 'randomness' expected one of {_RANDOMNESS}, got "
                            f"{randomness!r}")

    def mapped(*args):
        leaves, treedef = tree_flatten(args)
        axes = _in_axes(in_axes, args)
        names = leaf_paths(args, "args")
        size = _batch_size(leaves, axes, axis_size, names)
        axes = _normalised(leaves, axes)
        level = _Level(size, randomness)
        push_hook(level)
        try:
            wrapped = [x if a is None else BatchedTensor(x, a, level)
                       for x, a in zip(_tensors(leaves, axes), axes)]
            out = f(*tree_unflatten(treedef, wrapped))
        finally:
            pop_hook(level)
        return _unwrap_outputs(out, out_axes, level)

    mapped.__name__ = getattr(f, "__name__", "vmapped")
    mapped.__doc__ = f.__doc__
    return mapped


def _in_axes(in_axes, args):
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)
    if isinstance(in_axes, tuple) and len(in_axes) != len(args):
        raise ShapeError(f"vmap: argument 'in_axes' expected {len(args)} entries (one per "
                         f"positional argument), got {len(in_axes)}")
    axes = broadcast_prefix(in_axes, args, "vmap", "in_axes", "args")
    for a in axes:
        if a is not None and (not isinstance(a, numbers.Integral) or isinstance(a, bool)):
            raise ArgumentError(f"vmap: argument 'in_axes' expected ints or None, got {a!r}")
    return axes


def _tensors(leaves, axes):
    out = []
    for x, a in zip(leaves, axes):
        if a is None:
            out.append(x)
            continue
        if not isinstance(x, Tensor):
            x = Tensor.from_array(x)
        out.append(x)
    return out


def _batch_size(leaves, axes, axis_size, names):
    size = None
    first = None
    for x, a, name in zip(leaves, axes, names):
        if a is None:
            continue
        if isinstance(x, numbers.Number):
            raise ShapeError(f"vmap: argument {name} is the number {x!r}, which has no axis "
                             f"{a} to map over (give it in_axes None)")
        nd = len(getattr(x, "shape", ()))
        if not -nd <= a < nd:
            raise ShapeError(f"vmap: argument {name} has {nd} dims (shape "
                             f"{tuple(getattr(x, 'shape', ()))}), in_axes asks for axis {a}")
        n = x.shape[a]
        if size is None:
            size, first = n, name
        elif n != size:
            raise ShapeError(f"vmap: mapped axes of different sizes: argument {first} has "
                             f"{size} along its mapped axis, argument {name} has {n}")
    if size is None:
        if axis_size is None:
            raise ShapeError("vmap: no argument is mapped (every in_axes is None): pass "
                             "axis_size")
        size = int(axis_size)
    elif axis_size is not None and int(axis_size) != size:
        raise ShapeError(f"vmap: argument 'axis_size' is {axis_size}, but the mapped axes have "
                         f"size {size}")
    return size


def _normalised(leaves, axes):
    return [a if a is None else int(a) % len(x.shape) for x, a in zip(leaves, axes)]


def _unwrap_outputs(out, out_axes, level):
    leaves, treedef = tree_flatten(out)
    axes = broadcast_prefix(out_axes, out, "vmap", "out_axes")
    res = []
    for i, (y, a) in enumerate(zip(leaves, axes)):
        if not isinstance(y, Tensor):
            raise ArgumentError(f"vmap: f expected to return Tensors (a pytree of them), got "
                                f"{describe(y)} at output leaf {i}")
        if isinstance(y, BatchedTensor) and y._level is level:
            phys, d = y._phys, y._bdim
        else:  # the same for every example: broadcast along a new batch axis
            phys, d = A.broadcast_to(A.expand_dims(y, 0), (level.size,) + tuple(y.shape)), 0
        if a is None:
            raise ArgumentError("vmap: out_axes None is only for outputs that do not depend on "
                                "the batch")
        nd = phys.ndim
        dest = a % nd
        if dest != d:
            perm = [i for i in range(nd) if i != d]
            perm.insert(dest, d)
            phys = A.transpose(phys, tuple(perm))
        res.append(phys)
    return tree_unflatten(treedef, res)


# ---------------------------------------------------------------------------------------------
# what the other transforms use


def lift(x):
    """``x`` batched at every active vmap level (broadcast along a new batch axis where it is
    not): the differentiated arguments of a transform inside a vmap, so that every example has
    its own variable and its own gradient."""
    levels = active_levels()
    if not levels:
        return x
    P, axes = _absolute(x)
    missing = [L for L in levels if L not in axes]
    if not missing:
        return x
    for L in missing:  # P is the innermost physical tensor: these ops are not batched again
        P = A.broadcast_to(A.expand_dims(P, 0), (L.size,) + tuple(P.shape))
        axes = {k: v + 1 for k, v in axes.items()}
        axes[L] = 0
    return _build(P, axes)


def match_layout(v, P, axes, lead=0):
    """``v`` (a value with the logical shape of the batched value whose physical tensor is P
    with batch axes ``axes``, plus ``lead`` leading axes) as a physical tensor laid out like P:
    batched at the same levels on the same axes (broadcast where v is not batched)."""
    Q, qaxes = _absolute(v)
    for L in axes:
        if L not in qaxes:
            Q = A.expand_dims(Q, lead)
            qaxes = {k: (a + 1 if a >= lead else a) for k, a in qaxes.items()}
            qaxes[L] = lead
    order = list(range(Q.ndim))
    # batch axes go where P has them; the other axes keep their order
    target = [None] * Q.ndim
    for L, a in axes.items():
        target[a + lead] = qaxes[L]
    rest = iter(i for i in order if i not in qaxes.values())
    perm = tuple(t if t is not None else next(rest) for t in target)
    if perm != tuple(order):
        Q = A.transpose(Q, perm)
    shape = tuple(Q.shape[:lead]) + tuple(P.shape)
    return Q if tuple(Q.shape) == shape else A.broadcast_to(Q, shape)


def _absolute(x):
    """(the innermost physical tensor P, {level: its batch axis in P})."""
    P, chain = physical(x)
    axes: dict = {}
    removed: list = []
    for level, d in reversed(chain):  # the innermost wrapper's axis is P's own
        a = d
        for r in sorted(removed):
            if r <= a:
                a += 1
        axes[level] = a
        removed.append(a)
    return P, axes


def _build(P, axes):
    """P wrapped as the batched value with these batch axes (the oldest level innermost, as
    the levels' interceptors build them)."""
    t = P
    removed: list = []
    for level in sorted(axes, key=lambda L: L.id):
        a = axes[level]
        t = BatchedTensor(t, a - sum(1 for r in removed if r < a), level)
        removed.append(a)
    return t


def physical(x):
    """(the innermost physical tensor, the chain of (level, batch axis) from outside in)."""
    chain = []
    while isinstance(x, BatchedTensor):
        chain.append((x._level, x._bdim))
        x = x._phys
    return x, chain


def rewrap(t, chain, lead=0):
    """A physical tensor back as the batched value of ``chain`` (from ``physical``); ``lead``:
    leading axes ``t`` has in front (a tangent or cotangent batch) that shift every batch axis."""
    if t is None:
        return None
    for level, d in reversed(chain):  # innermost first: wrap outward
        t = BatchedTensor(t, d + lead, level)
    return t


def batched_levels(x) -> set:
    return set(_absolute(x)[1])


def batched_gradient(tape, targets, sources, output_gradients, unconnected_gradients):
    """tape.gradient for batched targets, sources or cotangents inside ag.vmap: the sweep runs
    on the physical tensors, every example at once. Each example's targets depend on its own
    slice of the sources only (the transforms lift their arguments), so the physical cotangent
    of a source is, per example, the gradient of that example's targets. Cotangents batched at
    a level the targets are not (``vmap(vjp_fn)``: many cotangents for one forward) become a
    leading batch of cotangents: one batched sweep, as a Jacobian's."""
    ogs = output_gradients
    if ogs is not None:
        ogs = list(ogs) if isinstance(ogs, (list, tuple)) else [ogs]
        if len(ogs) != len(targets):
            raise ShapeError(f"GradientTape.gradient: argument 'output_gradients' expected "
                             f"{len(targets)} entries (one per target), got {len(ogs)}")
        ogs = [None if g is None else g if isinstance(g, Tensor) else Tensor.from_array(g)
               for g in ogs]
    layouts = [_absolute(t) for t in targets]
    target_levels = set().union(*(set(a) for _, a in layouts))
    extra = sorted({L for g in (ogs or ()) if g is not None for L in _absolute(g)[1]}
                   - target_levels, key=lambda L: L.id)
    ps, chains = _sources(sources, target_levels)
    seeds = []
    for i, (P, axes) in enumerate(layouts):
        g = None if ogs is None else ogs[i]
        seeds.append((P, None if g is None else _seed_layout(g, P, axes, extra)))
    if not extra:
        res = tape.gradient([p for p, _ in seeds], ps,
                            output_gradients=None if ogs is None else [s for _, s in seeds],
                            unconnected_gradients=unconnected_gradients)
        return [rewrap(g, c) for g, c in zip(res, chains)]
    return _extra_sweep(tape, seeds, sources, ps, extra, unconnected_gradients)


def _sources(sources, target_levels):
    ps, chains = [], []
    for i, s in enumerate(sources):
        P, axes = _absolute(s)
        if any(L not in axes for L in target_levels):
            raise VmapError(
                f"GradientTape.gradient: sources[{i}] is not batched at the ag.vmap level its "
                "targets are batched at: its physical gradient would be the sum over the "
                "batch, not per example. Differentiate inside the vmap with ag.grad / ag.vjp "
                "(they give each example its own copy of a shared value)")
        ps.append(P)
        chains.append(physical(s)[1])
    return ps, chains


def _seed_layout(g, P, axes, extra):
    """A cotangent laid out like target P (its batch levels on P's axes), with the levels in
    ``extra`` (batched in the cotangent, not in the target) as leading axes in that order."""
    Q, qaxes = _absolute(g)
    for L in extra:
        if L not in qaxes:  # (this cotangent is the same for every entry of that level)
            Q = A.expand_dims(Q, 0)
            qaxes = {m: a + 1 for m, a in qaxes.items()}
            qaxes[L] = 0
    front = [qaxes[L] for L in extra]
    perm = tuple(front) + tuple(i for i in range(Q.ndim) if i not in front)
    if perm != tuple(range(Q.ndim)):
        Q = A.transpose(Q, perm)
    body = {L: perm.index(a) for L, a in qaxes.items() if L not in extra}
    # (_build only labels Q's axes for match_layout: the wrappers never reach an op)
    return match_layout(_build(Q, body), P, axes, lead=len(extra))


def _extra_sweep(tape, seeds, sources, ps, extra, unconnected_gradients):
    lead = len(extra)
    res = tape.backward([(P, s) for P, s in seeds if s is not None], [p._node for p in ps],
                        batch_nd=lead)
    if not tape.persistent:
        tape._finish()
    out = []
    for s, p, g in zip(sources, ps, res):
        if g is None:
            if unconnected_gradients != "zero":
                out.append(None)
                continue
            g = A.broadcast_to(p * 0.0, tuple(L.size for L in extra) + tuple(p.shape))
        axes = {L: a + lead for L, a in _absolute(s)[1].items()}
        axes.update({L: k for k, L in enumerate(extra)})
        out.append(_build(g, axes))
    return out
