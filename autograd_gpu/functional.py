"""Functional transforms (grad, value_and_grad, vjp, jvp, jacobian, hessian, hvp) and user
primitives (custom_op, custom_gradient).

Arguments may be Tensors, arrays (made Tensors, dtype kept), or tuples/lists of them (nested);
results mirror the argument's structure. ``argnums`` picks the differentiated positional
arguments: an int gives one result, a tuple a tuple. Transforms nest: each runs its own tape or
accumulator, and inner ones record on outer ones (``grad(grad(f))``, ``jacobian(grad(f))``).
"""

from __future__ import annotations

import inspect
import numbers

from . import dtypes as _dt
from .errors import ArgumentError, DTypeError, ShapeError, describe
from .forward import ForwardAccumulator, coerce_tangent
from .ops import api as A
from .ops._util import positions
from .ops.context import STATE, Suspend
from .ops.registry import Op, apply, sum_to, tensors
from .ops.shape import Identity
from .pytree import tree_flatten, tree_unflatten
from .scheduler import HybridScheduler, SchedulerConfig, _remember
from .tape import GradientTape
from .tensor import Tensor
from .vmap import active_levels, lift, vmap

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacobian", "hessian", "hvp", "custom_op",
           "custom_gradient", "CustomOp"]


# ---------------------------------------------------------------------------------------------
# structures of tensors


def _leaf(x, where, what):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number) or type(x).__module__.startswith(("numpy", "cupy")):
        return Tensor.from_array(x)
    raise ArgumentError(f"{where}: argument '{what}' expected a Tensor, an array or a pytree "
                        f"(tuples, lists, dicts, namedtuples) of them, got {describe(x)}")


def _flatten(x, where, what):
    """(leaves, rebuild): the Tensors of a pytree (nested tuples, lists, dicts, namedtuples;
    see pytree.py) and a function putting new leaves back in the same structure."""
    leaves, treedef = tree_flatten(x)
    leaves = [_leaf(v, where, what) for v in leaves]
    return leaves, lambda new: tree_unflatten(treedef, new)


def _argnums(argnums, nargs, where):
    single = isinstance(argnums, numbers.Integral) and not isinstance(argnums, bool)
    if isinstance(argnums, (tuple, list)) and not argnums:
        raise ArgumentError(f"{where}: argument 'argnums' expected an int or a non-empty "
                            f"tuple of ints, got {argnums!r}")
    return positions(argnums, nargs, where, "argnums", noun="positions",
                     of=f"{nargs} positional arguments", error=ArgumentError), single


def _prepare(args, nums, where):
    """Flatten the differentiated arguments into leaves; return new args, the leaves per
    argument and each argument's rebuild function.

    Each leaf is a fresh variable (an ``identity`` node over the caller's tensor, recorded on
    whatever observes the caller's tensor): the same tensor at two positions gives two
    partials, and a tensor that f reads from a closure is a constant, as in JAX."""
    args = list(args)
    per_arg, rebuilds = [], []
    for i in nums:
        leaves, rb = _flatten(args[i], where, f"args[{i}]")
        leaves = [lift(apply(Identity, t)) for t in leaves]
        args[i] = rb(leaves)
        per_arg.append(leaves)
        rebuilds.append(rb)
    return args, per_arg, rebuilds


def _unwatch(tape, leaves):
    """Take a finished transform's tape off the tensors it watched. ``watch`` marks a tensor in
    place; without this, every call of a transform on the same tensor would leave a stale tape
    id on it, and each later op would pay for filtering them."""
    tid = tape.id
    for t in leaves:
        tp = t._tapes
        if tid in tp:
            t._tapes = tp - {tid}


def _check_scalar(y, where, holomorphic=False):
    if not isinstance(y, Tensor):
        raise ArgumentError(f"{where}: f expected to return a Tensor, got {describe(y)}")
    if y.size != 1:
        raise ShapeError(f"{where}: f expected to return a scalar (one element), got shape "
                         f"{y.shape}; use jacobian or vjp for non-scalar outputs")
    _check_complex_output(y, where, holomorphic)


def _check_complex_output(y, where, holomorphic):
    """A complex-valued f has no gradient of its own unless it is holomorphic (JAX's rule):
    with holomorphic=True the result is the complex derivative f'(z)."""
    if _dt.is_complex(y.dtype) and not holomorphic:
        raise DTypeError(f"{where}: f returned a complex value ({_dt.name(y.dtype)}): pass "
                         "holomorphic=True for a holomorphic f (the result is then f'(z)), or "
                         "differentiate a real function of it (ag.real, ag.abs)")


def _check_holomorphic_inputs(flat, where, holomorphic):
    if holomorphic:
        for i, t in enumerate(flat):
            if not _dt.is_complex(t.dtype):
                raise DTypeError(f"{where}: holomorphic=True expected complex inputs, got "
                                 f"{_dt.name(t.dtype)} for differentiated input {i}")


def _seed(y, holomorphic):
    """gradient()'s output_gradients for a scalar y: None (ones) or a complex one."""
    if holomorphic and _dt.is_complex(y.dtype):
        return [Tensor(y._bk.xp.ones(y.shape, dtype=y.dtype), y._bk)]
    return None


def _zeros_like(t):
    return Tensor(t._bk.xp.zeros(t.shape, dtype=t.dtype), t._bk)


# ---------------------------------------------------------------------------------------------
# reverse mode


def _value_and_grad(f, argnums, has_aux, args, kwargs, where, holomorphic=False):
    nums, single = _argnums(argnums, len(args), where)
    args, per_arg, rebuilds = _prepare(args, nums, where)
    flat = [t for leaves in per_arg for t in leaves]
    _check_holomorphic_inputs(flat, where, holomorphic)
    tape = GradientTape(watch_accessed_variables=False)
    try:
        with tape:
            tape.watch(flat)
            res = f(*args, **kwargs)
        return _finish_value_and_grad(tape, res, flat, per_arg, rebuilds, single, has_aux, where,
                                      holomorphic)
    finally:
        _unwatch(tape, flat)


def _finish_value_and_grad(tape, res, flat, per_arg, rebuilds, single, has_aux, where,
                           holomorphic=False):
    if has_aux:
        if not isinstance(res, (tuple, list)) or len(res) != 2:
            raise ArgumentError(f"{where}: with has_aux=True, f expected to return (value, aux), "
                                f"got {describe(res)}")
        y, aux = res
    else:
        y, aux = res, None
    _check_scalar(y, where, holomorphic)
    gs = tape.gradient(y, flat, output_gradients=_seed(y, holomorphic),
                       unconnected_gradients="zero")
    out, k = [], 0
    for leaves, rb in zip(per_arg, rebuilds):
        out.append(rb(gs[k:k + len(leaves)]))
        k += len(leaves)
    grads = out[0] if single else tuple(out)
    return y, aux, grads


def grad(f, argnums=0, has_aux: bool = False, holomorphic: bool = False):
    """The gradient of a scalar-valued f with respect to argument(s) ``argnums``:
    ``grad(f)(x) = df/dx``. With ``has_aux``, f returns (value, aux) and the result is
    (gradient, aux). Each differentiated argument is its own variable: the same tensor passed
    at two positions gets two partials, and a tensor f reads from a closure is a constant
    (JAX's meaning).

    Complex inputs (JAX's convention): for a real-valued f of complex z the result is
    df/dx - i df/dy; a complex-valued f needs ``holomorphic=True`` (and complex inputs), and
    the result is then the complex derivative f'(z)."""
    if not callable(f):
        raise ArgumentError(f"grad: argument 'f' expected a callable, got {describe(f)}")

    def grad_f(*args, **kwargs):
        _, aux, g = _value_and_grad(f, argnums, has_aux, args, kwargs, "grad", holomorphic)
        return (g, aux) if has_aux else g

    return grad_f


def value_and_grad(f, argnums=0, has_aux: bool = False, holomorphic: bool = False):
    """Like ``grad``, returning (value, gradient) (``((value, aux), gradient)`` with has_aux)."""
    if not callable(f):
        raise ArgumentError(f"value_and_grad: argument 'f' expected a callable, got {describe(f)}")

    def vg(*args, **kwargs):
        y, aux, g = _value_and_grad(f, argnums, has_aux, args, kwargs, "value_and_grad",
                                    holomorphic)
        return ((y, aux) if has_aux else y), g

    return vg


def vjp(f, *primals, has_aux: bool = False):
    """(f(*primals), vjp_fn): ``vjp_fn(cotangent)`` returns a tuple with, per primal, the
    cotangent pulled back (u^T J), in the primal's structure. f may return a Tensor or a
    tuple/list of Tensors (the cotangent then has that structure). vjp_fn may be called many
    times."""
    where = "vjp"
    if not callable(f):
        raise ArgumentError(f"vjp: argument 'f' expected a callable, got {describe(f)}")
    if not primals:
        raise ArgumentError("vjp: expected at least one primal after f")
    args, per_arg, rebuilds = _prepare(primals, tuple(range(len(primals))), where)
    tape = GradientTape(persistent=True, watch_accessed_variables=False)
    flat = [t for leaves in per_arg for t in leaves]
    try:
        with tape:
            tape.watch(flat)
            res = f(*args)
    finally:
        _unwatch(tape, flat)  # the sweeps in vjp_fn need the graph, not the marks
    aux = None
    if has_aux:
        res, aux = res
    outs, _ = _flatten(res, where, "f's output")

    def vjp_fn(cotangent):
        cts, _ = _flatten(cotangent, "vjp_fn", "cotangent")
        if len(cts) != len(outs):
            raise ShapeError(f"vjp_fn: argument 'cotangent' expected {len(outs)} tensors (the "
                             f"structure of f's output), got {len(cts)}")
        for i, (c, o) in enumerate(zip(cts, outs)):
            if c.shape != o.shape:
                raise ShapeError(f"vjp_fn: cotangent {i} expected shape {o.shape} (f's output), "
                                 f"got {c.shape}")
        gs = tape.gradient(list(outs), flat, output_gradients=list(cts),
                           unconnected_gradients="zero")
        out, k = [], 0
        for leaves, rb in zip(per_arg, rebuilds):
            out.append(rb(gs[k:k + len(leaves)]))
            k += len(leaves)
        return tuple(out)

    return (res, vjp_fn, aux) if has_aux else (res, vjp_fn)


# ---------------------------------------------------------------------------------------------
# forward mode


def jvp(f, primals, tangents):
    """(f(*primals), J t): forward mode. ``primals`` is a tuple/list of f's arguments (a single
    Tensor means one argument); ``tangents`` has the same structure and shapes. A tangent of an
    output that does not depend on the primals is zeros."""
    where = "jvp"
    if not callable(f):
        raise ArgumentError(f"jvp: argument 'f' expected a callable, got {describe(f)}")
    if isinstance(primals, (list, tuple)):
        prim = tuple(primals)
    else:
        prim, tangents = (primals,), (tangents,)
    if not isinstance(tangents, (list, tuple)) or len(tangents) != len(prim):
        raise ShapeError(f"jvp: argument 'tangents' expected {len(prim)} entries like 'primals', "
                         f"got {describe(tangents)}")
    args, per_arg, rebuilds = _prepare(prim, tuple(range(len(prim))), where)
    flat = [t for leaves in per_arg for t in leaves]
    tflat = []
    for i, (tg, leaves) in enumerate(zip(tangents, per_arg)):
        tl = tree_flatten(tg)[0]
        if len(tl) != len(leaves):
            raise ShapeError(f"jvp: tangents[{i}] expected the structure of primals[{i}] "
                             f"({len(leaves)} tensors), got {len(tl)}")
        tflat += [coerce_tangent(t, p, 0, where, f"tangents[{i}]") for t, p in zip(tl, leaves)]
    acc = ForwardAccumulator(flat, tflat)
    try:
        with acc:
            res = f(*args)
        outs, rb = _flatten(res, where, "f's output")
        touts = [acc.jvp(o, unconnected_gradients="zero") for o in outs]
    finally:
        for p in flat:  # the primals are the caller's tensors: take our tangent off them
            if p._fw and acc.id in p._fw:
                del p._fw[acc.id]
    return res, rb(touts)


# ---------------------------------------------------------------------------------------------
# Jacobians and Hessians


def jacobian(f, x, mode: str = "auto", *, argnums=None, scheduler=None, chunk_size=None,
             holomorphic: bool = False):
    """The Jacobian of f at x, shape f(x).shape + x.shape.

    ``x`` a Tensor: f(x). ``x`` a tuple/list: f(*x), differentiated with respect to the
    arguments ``argnums`` (default: all, giving a tuple of Jacobians; an int gives one). An
    argument that is itself a tuple/list gives Jacobians in its structure; an f returning a
    tuple/list gives one entry per output. ``mode``: "auto" (the scheduler decides from the
    recorded graph; ``ag.scheduler.last_schedule()`` says what it chose and why), "forward",
    "reverse"; ``scheduler``: a SchedulerConfig (or strategy name) for AUTO.

    Complex values (JAX's rules): a complex-valued f needs ``holomorphic=True`` (complex
    inputs; the result is the complex Jacobian, in either mode); a real-valued f of complex
    inputs gives, per output, its gradient df/dx - i df/dy (reverse mode only: a forward
    tangent cannot carry both directions)."""
    where = "jacobian"
    if not callable(f):
        raise ArgumentError(f"jacobian: argument 'f' expected a callable, got {describe(f)}")
    if isinstance(x, (list, tuple)):
        args = tuple(x)
        if argnums is None:
            argnums = tuple(range(len(args)))
    else:
        args = (x,)
        if argnums is None:
            argnums = 0
    nums, single = _argnums(argnums, len(args), where)
    args, per_arg, rebuilds = _prepare(args, nums, where)
    cfg = SchedulerConfig.coerce(scheduler, where)
    tape = GradientTape(watch_accessed_variables=False, scheduler=cfg)
    flat = [t for leaves in per_arg for t in leaves]
    _check_holomorphic_inputs(flat, where, holomorphic)
    if not holomorphic and any(_dt.is_complex(t.dtype) for t in flat):
        if mode == "forward":
            raise DTypeError("jacobian: mode 'forward' expected real inputs or holomorphic=True "
                             "(a real function of complex inputs has a gradient, df/dx - i "
                             "df/dy, only in reverse mode)")
        mode = "reverse"
    # Jacobians stay one recording and batched identity seeds swept through it: the vmap
    # formulations measured no faster (2026-12-07, one thread, medians of 15 interleaved rounds
    # at load 7-8, bench/test_jacobian_bench.py::test_jacobian_vmap_interleaved, f = tanh(A sin
    # x) * 2 in float64). ag.vmap over a vjp_fn is the same batched sweep: 0.94x of this
    # reverse mode's time for R^8 -> R^2000, 1.05x for R^2000 -> R^8. f run under a
    # ForwardAccumulator with the identity tangent batch (the engine's vmap over jvp, nothing
    # recorded) took 0.64x of the forward mode's time for R^8 -> R^2000 but 1.18x for
    # R^2000 -> R^8, and with this function's argument handling, schedule and assembly around
    # it 1.02x and 1.00x. ag.vmap over ag.jvp lifts the primal (a copy of the forward per
    # direction): 2.0x and 7.6x. (hessian's forward-over-reverse already pushes an identity
    # tangent batch through the gradient: the engine's vmap over jvp.)
    try:
        with tape:
            tape.watch(flat)
            res = f(*args)
        outs, rb_out = _flatten(res, where, "f's output")
        for o in outs:
            _check_complex_output(o, where, holomorphic)
        if active_levels():  # inside ag.vmap: the batched sweep of vmap(vjp) per output
            table = _jacobian_by_vmap(tape, outs, flat)
        else:
            table = tape.jacobian(list(outs), flat, mode=mode, unconnected_gradients="zero",
                                  chunk_size=chunk_size)
    finally:
        _unwatch(tape, flat)
    rows = []
    for row in table:
        per, k = [], 0
        for leaves, rb in zip(per_arg, rebuilds):
            per.append(rb(row[k:k + len(leaves)]))
            k += len(leaves)
        rows.append(per[0] if single else tuple(per))
    return rb_out(rows)


def _jacobian_by_vmap(tape, outs, flat) -> list:
    """The Jacobian blocks (one row per output, one entry per source) by reverse mode as
    ``vmap`` of the vjp over an identity basis of each output: inside an ag.vmap, where the
    tape's own Jacobian machinery would read batched values' arrays."""
    table = []
    for o in outs:
        m = o.size
        basis = Tensor(o._bk.xp.eye(m, dtype=o.dtype).reshape((m,) + tuple(o.shape)), o._bk)

        def pull(u, o=o):
            return tuple(tape.gradient(o, flat, output_gradients=u,
                                       unconnected_gradients="zero"))

        tape.persistent, was = True, tape.persistent  # one sweep per output, same graph
        try:
            blocks = vmap(pull)(basis)
        finally:
            tape.persistent = was
        table.append([A.reshape(b, tuple(o.shape) + tuple(s.shape))
                      for b, s in zip(blocks, flat)])
    return table


def _hessian_input(x, where):
    if not isinstance(x, Tensor):
        x = _leaf(x, where, "x")
    return lift(x)


def _eye_batch(x, k0, k1):
    xp = x._bk.xp
    n = x.size
    return Tensor(xp.eye(k1 - k0, n, k=k0, dtype=x.dtype).reshape((k1 - k0,) + x.shape), x._bk)


def _grad_in(f, x, where):
    """The gradient of scalar f at x, recorded for whatever observes it (nested tapes and
    accumulators), as a Tensor shaped like x (zeros where f does not depend on x)."""
    tape = GradientTape(watch_accessed_variables=False)
    try:
        with tape:
            tape.watch(x)
            y = f(x)
        _check_scalar(y, where)
        (g,) = tape.gradient(y, [x], unconnected_gradients="zero")
    finally:
        _unwatch(tape, [x])
    return g


def hessian(f, x, *, scheduler=None, chunk_size=None):
    """The Hessian of a scalar f at x, shape x.shape + x.shape.

    Forward-over-reverse by default (the Jacobian of the gradient in forward mode, n tangent
    directions pushed through one recorded reverse sweep in batched chunks). A SchedulerConfig
    with strategy REVERSE uses reverse-over-reverse, FORWARD forward-over-forward; the decision is
    in ``ag.scheduler.last_schedule()``."""
    where = "hessian"
    if not callable(f):
        raise ArgumentError(f"hessian: argument 'f' expected a callable, got {describe(f)}")
    x = _hessian_input(x, where)
    sched = HybridScheduler(SchedulerConfig.coerce(scheduler, where))
    n = x.size
    plan = sched.plan_hessian(n, "hessian")
    xp = x._bk.xp
    chunk = n if chunk_size is None else max(1, int(chunk_size))
    plan.chunk_size = chunk
    _remember(None, plan)
    shape = x.shape + x.shape
    if plan.mode == "reverse-over-reverse":
        outer = GradientTape(watch_accessed_variables=False, persistent=True)
        try:
            with outer:
                outer.watch(x)
                g = _grad_in(f, x, where)
            if g._node is None or outer.id not in g._tapes:  # f is affine in x: H is zero
                return Tensor(xp.zeros(shape, dtype=x.dtype), x._bk)
            H = outer.jacobian(g, x, mode="reverse", unconnected_gradients="zero",
                               chunk_size=chunk)
        finally:
            _unwatch(outer, [x])
        _remember(None, plan)  # the inner Jacobian recorded its own decision
        return H
    # then H must be differentiable (or, inside ag.vmap, assembled with ops on batched values)
    observed = bool(STATE.recording or STATE.accumulators or active_levels())
    if observed:
        chunk = n
    blocks = []
    accs: list = []
    try:
        for k0 in range(0, max(n, 1), chunk):
            k1 = min(n, k0 + chunk)
            if plan.mode == "forward-over-reverse":
                acc = ForwardAccumulator(x, _eye_batch(x, k0, k1), batch_nd=1)
                accs.append(acc)
                with acc:
                    g = _grad_in(f, x, where)
                t = acc.jvp(g, unconnected_gradients="zero")  # (c,) + x.shape: Hessian rows
            else:  # forward-over-forward
                outer = ForwardAccumulator(x, _eye_batch(x, k0, k1), batch_nd=1)
                inner = ForwardAccumulator(x, _eye_batch(x, 0, n), batch_nd=1)
                accs += [outer, inner]
                with outer:
                    with inner:
                        y = f(x)
                    _check_scalar(y, where)
                    gy = inner.jvp(y, unconnected_gradients="zero")  # (n,) + y.shape: gradient
                t = outer.jvp(gy, unconnected_gradients="zero")  # (c, n) + y.shape
            blocks.append(t)
    finally:
        _drop_tangents(x, accs)
    # rows came out as d(grad)/d(x_i): transpose to H[j, i] = d grad_j / d x_i
    if observed:
        return A.reshape(A.transpose(A.reshape(blocks[0], (n, n)), (1, 0)), shape)
    parts = [b._data.reshape(-1, n) for b in blocks]
    h = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)
    return Tensor(xp.ascontiguousarray(h.T).reshape(shape), x._bk)


def _drop_tangents(x, accs):
    """Take the transform's tangents off the caller's tensor (see _unwatch for why)."""
    fw = x._fw
    if fw:
        for acc in accs:
            fw.pop(acc.id, None)


def hvp(f, x, v, *, scheduler=None):
    """The Hessian-vector product H(x) v of a scalar f, shaped like x, without forming H:
    forward-over-reverse by default (one forward-mode sweep over the gradient), reverse-over-
    reverse with strategy REVERSE, forward-over-forward with FORWARD."""
    where = "hvp"
    if not callable(f):
        raise ArgumentError(f"hvp: argument 'f' expected a callable, got {describe(f)}")
    x = _hessian_input(x, where)
    v = coerce_tangent(v, x, 0, where, "v")
    sched = HybridScheduler(SchedulerConfig.coerce(scheduler, where))
    plan = sched.plan_hessian(x.size, "hvp")
    _remember(None, plan)
    if plan.mode == "forward-over-reverse":
        acc = ForwardAccumulator(x, v)
        try:
            with acc:
                g = _grad_in(f, x, where)
        finally:
            _drop_tangents(x, [acc])
        return acc.jvp(g, unconnected_gradients="zero")
    if plan.mode == "reverse-over-reverse":
        outer = GradientTape(watch_accessed_variables=False)
        try:
            with outer:
                outer.watch(x)
                g = _grad_in(f, x, where)
                s = (g * v).sum()
            (h,) = outer.gradient(s, [x], unconnected_gradients="zero")
        finally:
            _unwatch(outer, [x])
        return h
    # forward-over-forward: the inner batch of n basis directions gives the gradient
    outer = ForwardAccumulator(x, v)
    inner = ForwardAccumulator(x, _eye_batch(x, 0, x.size), batch_nd=1)
    try:
        with outer:
            with inner:
                y = f(x)
            _check_scalar(y, where)
            gy = inner.jvp(y, unconnected_gradients="zero")
    finally:
        _drop_tangents(x, [outer, inner])
    t = outer.jvp(gy, unconnected_gradients="zero")  # (n,) + y.shape
    from .ops import api as A

    return A.reshape(t, x.shape)


# ---------------------------------------------------------------------------------------------
# user primitives


class CustomOp:
    """A user primitive: call it like a function on Tensors (``op(x, y, **params)``); it goes
    through the one door (apply) and so records on tapes, carries tangents, and works in every
    transform. ``.op`` is its registry record (not added to the global registry)."""

    def __init__(self, op: Op):
        self.op = op
        self.__name__ = op.name
        self.__doc__ = op.doc

    def __call__(self, *inputs, **params):
        like = next((x for x in inputs if isinstance(x, Tensor)), None)
        ins = []
        for i, x in enumerate(inputs):
            if isinstance(x, (Tensor, numbers.Number)):
                ins.append(x)
            elif type(x).__module__.startswith(("numpy", "cupy")):
                t = Tensor.from_array(x, device=None if like is None else like.device)
                ins.append(t)
            else:
                raise ArgumentError(f"{self.op.name}: argument {i} expected a Tensor, an array "
                                    f"or a number, got {describe(x)}")
        if self.op.arity is not None and len(ins) != self.op.arity:
            raise ArgumentError(f"{self.op.name}: expected {self.op.arity} inputs, got {len(ins)}")
        return apply(self.op, *ins, **params)

    def __repr__(self) -> str:
        return f"CustomOp({self.op.name!r})"


def _wrap(F, x):
    """A rule argument as a Tensor for user code (raw arrays are wrapped, numbers kept)."""
    if x is None or isinstance(x, (Tensor, numbers.Number)):
        return x
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return Tensor(F.xp.asarray(x), F.bk)
    return x


def _unwrap(F, x):
    if x is None:
        return None
    if F.is_raw:
        return x._data if isinstance(x, Tensor) else x
    return x if isinstance(x, Tensor) else F.const(x)


def _per_example(F, fn, batched_args, batch_shape, core_shapes):
    """Run ``fn`` (written for unbatched arguments) once per batch entry and stack the results:
    the fallback for user rules that do not take leading batch axes."""
    B = 1
    for s in batch_shape:
        B *= s
    flat = [None if a is None else F.reshape(a, (B,) + tuple(cs))
            for a, cs in zip(batched_args, core_shapes)]
    results = []
    for k in range(B):
        if F.is_raw:
            parts = [None if a is None else a[k] for a in flat]
        else:
            parts = [None if a is None else _take(F, a, k, B) for a in flat]
        results.append(fn(parts))
    outs = []
    for j in range(len(results[0])):
        col = [r[j] for r in results]
        if all(c is None for c in col):
            outs.append(None)
            continue
        ref = next(c for c in col if c is not None)
        col = [F.zeros(ref.shape, ref.dtype) if c is None else c for c in col]
        if F.is_raw:
            st = F.xp.stack(col)
        else:
            st = _stack(F, col, B)
        outs.append(F.reshape(st, tuple(batch_shape) + tuple(ref.shape)))
    return outs


def _take(F, a, k, B):
    """a[k] for a Tensor of shape (B,) + S, differentiably: a one-hot row times a."""
    xp = F.xp
    onehot = F.const(xp.eye(1, B, k=k, dtype=a.dtype).reshape(B))
    rest = tuple(a.shape[1:])
    n = 1
    for s in rest:
        n *= s
    return F.reshape(F.matmul(onehot, F.reshape(a, (B, n))), rest)


def _stack(F, items, B):
    """Stack B Tensors of equal shape along a new leading axis, differentiably."""
    xp = F.xp
    shape = tuple(items[0].shape)
    n = 1
    for s in shape:
        n *= s
    out = None
    for k, it in enumerate(items):
        e = F.const(xp.eye(B, 1, k=-k, dtype=it.dtype))  # (B, 1) column e_k
        term = e * F.reshape(it, (1, n))
        out = term if out is None else out + term
    return F.reshape(out, (B,) + shape)


class _UserRules:
    """The forward, vjp and jvp of a user primitive (custom_op, custom_gradient) around the
    user's functions: arrays in and out of the registry's calling convention, per-example
    calls when the user's rules are not batched, and the jvp as the transpose of the vjp when
    the user gave no jvp."""

    runs_user_code = True  # the registry passes the user's exceptions through as raised

    def __init__(self, name, fwd, user_vjp, user_jvp, tensor_forward, batched):
        self.name, self.fwd, self.user_vjp, self.user_jvp = name, fwd, user_vjp, user_jvp
        self.tensor_forward, self.batched = tensor_forward, batched
        self.__doc__ = fwd.__doc__ or f"user primitive {name}"

    def forward(self, bk, *arrs, **prm):
        if self.tensor_forward:
            with Suspend():
                ts = [Tensor(a, bk) if hasattr(a, "shape") else a for a in arrs]
                out = self.fwd(*ts, **prm)
            out = out._data if isinstance(out, Tensor) else bk.xp.asarray(out)
        else:
            out = self.fwd(bk.xp, *arrs, **prm)
            if isinstance(out, Tensor):
                out = out._data
        if type(out) is not bk.array_type:
            out = bk.xp.asarray(out)
        return out, tuple(arrs) + (out,)

    def call_vjp(self, F, g, ins, out, prm):
        """User vjp on Tensors; g may carry batch axes (unbatched rules run per example)."""
        nb = g.ndim - out.ndim
        if nb and not self.batched:
            def one(parts):
                return self.user_vjp_call(F, parts[0], ins, out, prm)

            return _per_example(F, one, [g], tuple(g.shape[:nb]), [tuple(out.shape)])
        return self.user_vjp_call(F, g, ins, out, prm)

    def user_vjp_call(self, F, g, ins, out, prm):
        res = self.user_vjp(_wrap(F, g), tuple(_wrap(F, x) for x in ins), _wrap(F, out), **prm)
        res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
        if len(res) != len(ins):
            raise ArgumentError(f"{self.name}: the user vjp expected to return {len(ins)} "
                                f"gradients (one per input), got {len(res)}")
        _check_cotangents(self.name, res, ins, tuple(g.shape[:g.ndim - out.ndim]),
                          tuple(out.shape))
        return tuple(_unwrap(F, r) for r in res)

    def vjp(self, F, g, saved, needs, **prm):
        *ins, out = saved
        gs = self.call_vjp(F, g, ins, out, prm)
        return tuple(gi if nd else None for gi, nd in zip(gs, needs))

    def jvp(self, F, ts, saved, **prm):
        *ins, out = saved
        if self.user_jvp is None:
            return self.transpose_of_vjp(F, ts, ins, out, prm)
        t0 = next(t for t in ts if t is not None)
        x0 = ins[[i for i, t in enumerate(ts) if t is not None][0]]
        nb = t0.ndim - len(getattr(x0, "shape", ()))
        if nb and not self.batched:
            shapes = [getattr(x, "shape", ()) for x in ins]

            def one(parts):
                r = self.user_jvp(tuple(_wrap(F, p) for p in parts),
                                  tuple(_wrap(F, x) for x in ins), _wrap(F, out), **prm)
                return (_unwrap(F, r),)

            (r,) = _per_example(F, one, list(ts), tuple(t0.shape[:nb]), shapes)
            return r
        r = self.user_jvp(tuple(_wrap(F, t) for t in ts), tuple(_wrap(F, x) for x in ins),
                          _wrap(F, out), **prm)
        return _unwrap(F, r)

    def transpose_of_vjp(self, F, ts, ins, out, prm):
        """jvp(t) = d/du <vjp(u), t>: the vjp is linear in u, so its transpose applied to t is
        the gradient with respect to u of <vjp(u), t> (any u; zeros here). One batched reverse
        sweep over the recorded vjp handles a whole tangent batch."""
        bk = F.bk
        outT = _wrap(F, out)
        u = Tensor(bk.xp.zeros(outT.shape, dtype=outT.dtype), bk)
        tape = GradientTape(watch_accessed_variables=False)
        try:
            tape.watch(u)
            TF = tensors(bk)
            gs = self.user_vjp_call(TF, u, ins if not F.is_raw else
                                    [_wrap(F, x) for x in ins], outT, prm)
            tape._pause()
            seeds = []
            nb = None
            for gi, ti, x in zip(gs, ts, ins):
                if gi is None or ti is None or not isinstance(gi, Tensor) or not gi._tapes:
                    continue
                shape = tuple(getattr(x, "shape", ()))
                if tuple(gi.shape) != shape:
                    gi = sum_to(TF, gi, shape, 0)
                nb = ti.ndim - len(shape)
                seeds.append((gi, ti))
            if not seeds:
                return None
            (r,) = tape.backward(seeds, [u._node], batch_nd=nb)
        finally:
            tape._finish()
        if r is None:
            return None
        return r._data if F.is_raw else r


def _make_op(name, fwd, user_vjp, user_jvp, params, cost, tensor_forward, batched,
             batch=None):
    impl = _UserRules(name, fwd, user_vjp, user_jvp, tensor_forward, batched)
    # saved: every input, then the output
    op = Op(name, impl, params, cost, True, True, False, saves=_inputs_and_output, batch=batch)
    # the arity is the forward's: after xp for array forwards
    op.arity = _user_arity(fwd, skip=0 if tensor_forward else 1)
    return op


def _inputs_and_output(n, params):
    return (*range(n), "out")


def _broadcasts(shape, to) -> bool:
    """Whether an array of ``shape`` broadcasts to ``to`` (NumPy's rule)."""
    return len(shape) <= len(to) and all(
        s in (1, t) for s, t in zip(reversed(shape), reversed(to)))


def _check_cotangents(name, res, ins, batch, out_shape):
    """A user vjp's cotangent for input i must have input i's shape (after the batch axes), or
    the output's shape when input i broadcasts to it (the engine then sums over the broadcast
    axes). Any other shape is a bug in the rule that summing would hide: refused."""
    for i, (r, x) in enumerate(zip(res, ins)):
        if r is None:
            continue
        if not (isinstance(r, (Tensor, numbers.Number))
                or (hasattr(r, "shape") and hasattr(r, "dtype"))):
            raise ArgumentError(f"{name}: the user vjp's gradient for input {i} expected a "
                                f"Tensor, an array or None, got {describe(r)}")
        got = tuple(getattr(r, "shape", ()))
        xshape = tuple(getattr(x, "shape", ()))
        if got == batch + xshape:
            continue
        via_out = _broadcasts(xshape, out_shape)
        if via_out and got == batch + out_shape:
            continue
        also = (f" or the output's {batch + out_shape} (summed over the axes input {i} is "
                f"broadcast along)" if via_out and out_shape != xshape else "")
        raise ShapeError(f"{name}: the user vjp returned a gradient of shape {got} for input {i} "
                         f"(shape {xshape}); expected shape {batch + xshape}{also}")


def _user_arity(fn, skip):
    n = 0
    try:
        ps = list(inspect.signature(fn).parameters.values())[skip:]
    except (TypeError, ValueError):
        return None
    for p in ps:
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            n += 1
    return n


def _default_cost(out, *xs, **p):
    return float(out.size)


def custom_op(forward=None, vjp=None, jvp=None, *, name: str | None = None, params=(),
              cost=None, tensor_forward: bool = False, batched: bool = False, batch=None):
    """Declare a user primitive with its own derivative rules. Returns a CustomOp (callable).

    - ``forward(xp, *arrays, **params) -> array``: on backend arrays (``xp`` is numpy or cupy);
      with ``tensor_forward=True``, ``forward(*tensors, **params) -> Tensor`` built from ag ops
      (run without recording: the rules below define the derivative).
    - ``vjp(g, inputs, output, **params)``: Tensors in (the output's cotangent, the inputs, the
      output); a tuple of input cotangents out (one per input, None for zero), each of its
      input's shape, or of the output's shape for an input that broadcasts to it (the engine
      sums over the broadcast axes); any other shape raises ShapeError. Write it with ag ops so
      that it is differentiable again (higher order).
    - ``jvp(tangents, inputs, output, **params)`` (optional): tangents (None for zero) -> the
      output's tangent. Without it, forward mode uses the transpose of the vjp.
    - ``batched=True`` says the rules accept leading batch axes on g / the tangents (Jacobians
      then take one sweep); otherwise they run once per batch entry.
    - ``cost(out_meta, *in_metas, **params)``: flop estimate for the scheduler.
    - ``batch``: how ``ag.vmap`` maps the op (docs/contributing.md: "elementwise", "leading",
      ("axes", ...), or a rule ``batch(F, args, dims, **params) -> (out, out_dim)``); without
      it the op runs once per example under vmap, with a one-time warning naming it.

    Also a class decorator: ``@ag.custom_op`` on a class with static ``forward``/``vjp``/``jvp``
    (and optional ``name``, ``params``, ``cost``, ``tensor_forward``, ``batched``, ``batch``
    attributes)."""
    if isinstance(forward, type):
        cls = forward
        kw = {k: getattr(cls, k) for k in ("params", "tensor_forward", "batched")
              if hasattr(cls, k)}
        bt = cls.__dict__.get("batch")
        if bt is not None:
            kw["batch"] = bt.__func__ if isinstance(bt, staticmethod) else bt
        cst = cls.__dict__.get("cost")
        if isinstance(cst, staticmethod):
            cst = cst.__func__
        fw = cls.__dict__.get("forward")
        fw = fw.__func__ if isinstance(fw, staticmethod) else fw
        if fw is not None and cls.__doc__ and not fw.__doc__:
            fw.__doc__ = cls.__doc__
        return custom_op(fw, getattr(cls, "vjp", None), getattr(cls, "jvp", None),
                         name=getattr(cls, "name", cls.__name__), cost=cst, **kw)
    if forward is None:  # used as @custom_op(name=...) on a class
        def deco(cls):
            if not isinstance(cls, type):
                raise ArgumentError(f"custom_op: expected a class, got {describe(cls)}")
            for k, v in (("name", name), ("params", params), ("cost", cost),
                         ("tensor_forward", tensor_forward), ("batched", batched),
                         ("batch", batch)):
                if v and not hasattr(cls, k):
                    setattr(cls, k, staticmethod(v) if k in ("cost", "batch") and callable(v)
                            else v)
            return custom_op(cls)

        return deco
    if not callable(forward):
        raise ArgumentError(f"custom_op: argument 'forward' expected a callable, "
                            f"got {describe(forward)}")
    if not callable(vjp):
        raise ArgumentError(f"custom_op: argument 'vjp' expected a callable (the reverse rule), "
                            f"got {describe(vjp)}")
    if jvp is not None and not callable(jvp):
        raise ArgumentError(f"custom_op: argument 'jvp' expected a callable or None, "
                            f"got {describe(jvp)}")
    op = _make_op(name or getattr(forward, "__name__", "custom_op"), forward, vjp, jvp,
                  tuple(params), cost or _default_cost, bool(tensor_forward), bool(batched),
                  batch)
    return CustomOp(op)


def custom_gradient(f):
    """TensorFlow-style decorator: ``f(*xs)`` returns ``(y, grad_fn)`` where ``grad_fn(dy)``
    returns the input gradients (a Tensor for one input, else a tuple). The result is a function
    whose calls record as one primitive with that gradient; forward mode uses its transpose."""
    if not callable(f):
        raise ArgumentError(f"custom_gradient: argument 'f' expected a callable, "
                            f"got {describe(f)}")
    name = getattr(f, "__name__", "custom_gradient")

    def wrapper(*xs):
        ins = [_leaf(x, name, f"xs[{i}]") for i, x in enumerate(xs)]
        with Suspend():
            res = f(*[Tensor(x._data, x._bk) for x in ins])
        if not isinstance(res, (tuple, list)) or len(res) != 2 or not callable(res[1]):
            raise ArgumentError(f"custom_gradient: {name} expected to return (y, grad_fn), "
                                f"got {describe(res)}")
        y, grad_fn = res
        if not isinstance(y, Tensor):
            raise ArgumentError(f"custom_gradient: {name} expected y to be a Tensor, "
                                f"got {describe(y)}")
        y_arr = y._data

        def fwd(xp, *arrs):
            return y_arr

        def rule(g, inputs, output):
            r = grad_fn(g)
            return tuple(r) if isinstance(r, (tuple, list)) else (r,)

        fwd.__doc__ = f.__doc__
        op = _make_op(name, fwd, rule, None, (), lambda out, *a, **p: float(out.size), False,
                      False)
        op.arity = len(ins)
        return apply(op, *ins)

    wrapper.__name__ = name
    wrapper.__doc__ = f.__doc__
    return wrapper
