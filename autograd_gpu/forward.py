"""Forward mode: tangents pushed through each op's jvp rule as the primal computation runs
(``ForwardAccumulator``), and a replay of a tape's recorded graph with the jvp rules
(``GradientTape.forward_gradient``).

A tangent lives on the tensor it belongs to, in ``tensor._fw[acc.id]``. Tangents may carry leading
batch axes (batch + primal shape): one sweep then pushes a whole batch of directions, which is how
a forward-mode Jacobian is computed (an identity batch, in chunks).

Nesting: while an accumulator computes a tangent it takes itself out of the thread's list (its own
tangent computation must not be differentiated by itself), but other accumulators and recording
tapes stay, so they see the tangent computation and differentiate it (forward-over-forward,
reverse-over-forward, forward-over-reverse).
"""

from __future__ import annotations

import numbers

from . import dtypes as _dt
from .errors import ArgumentError, DeviceError, DTypeError, ShapeError, TapeError, describe
from .ops.context import STATE, new_id
from .ops.graph import OUTPUT
from .ops.registry import call_jvp, raw, saved_tensors, tensors
from .tape import check_unconnected
from .tensor import Tensor

__all__ = ["ForwardAccumulator", "replay_jvp"]


def _as_tensor_list(x, what, where):
    if isinstance(x, Tensor):
        return [x], True
    if isinstance(x, (list, tuple)) and all(isinstance(t, Tensor) for t in x):
        return list(x), False
    raise ArgumentError(f"{where}: argument '{what}' expected a Tensor or a list of Tensors, "
                        f"got {describe(x)}")


def coerce_tangent(t, primal, batch_nd, where, what="tangents"):
    """A tangent for ``primal`` as a Tensor on its device with its dtype; shape checked."""
    bk = primal._bk
    if isinstance(t, Tensor) and t._batched:  # inside ag.vmap: ForwardAccumulator lays it out
        if tuple(t.shape[batch_nd:]) != tuple(primal.shape):
            raise ShapeError(f"{where}: argument '{what}' expected shape {primal.shape} (the "
                             f"primal's), got {t.shape}")
        return t
    if isinstance(t, Tensor):
        if t._bk is not bk:
            raise DeviceError(f"{where}: argument '{what}' expected device {primal.device} like "
                              f"its primal, got {t.device}")
        arr = t._data
    elif isinstance(t, numbers.Number) or hasattr(t, "shape") or isinstance(t, (list, tuple)):
        arr = bk.xp.asarray(t._data if isinstance(t, Tensor) else t)
    else:
        raise ArgumentError(f"{where}: argument '{what}' expected a Tensor or an array, "
                            f"got {describe(t)}")
    if not _dt.is_complex(primal.dtype):
        _dt.check_real(arr.dtype, where, what)
    shape = tuple(arr.shape)
    if len(shape) != primal.ndim + batch_nd or shape[batch_nd:] != primal.shape:
        lead = f"{batch_nd} batch axes + " if batch_nd else ""
        raise ShapeError(f"{where}: argument '{what}' expected shape {lead}{primal.shape} (the "
                         f"primal's), got {shape}")
    if not _dt.is_inexact(primal.dtype):
        raise DTypeError(f"{where}: the primal for '{what}' has dtype {_dt.name(primal.dtype)}; "
                         "integer and bool tensors are never differentiable")
    if arr.dtype != primal.dtype:
        arr = arr.astype(primal.dtype)
    return t if isinstance(t, Tensor) and t._data is arr else Tensor(arr, bk)


def _set_tangent(x, acc_id, t):
    fw = x._fw
    if fw is None:
        x._fw = {acc_id: t}
    else:
        fw[acc_id] = t


class ForwardAccumulator:
    """Forward-mode context: ops on ``primals`` (and on anything computed from them inside the
    block) carry tangents; ``acc.jvp(y)`` reads y's tangent (J t), inside or after the block.

    ``tangents`` match the primals' shapes, or carry ``batch_nd`` leading batch axes (the same for
    every tangent): a batch of directions pushed in one sweep.
    """

    def __init__(self, primals, tangents, *, batch_nd: int = 0):
        self.id = new_id()
        plist, single = _as_tensor_list(primals, "primals", "ForwardAccumulator")
        if single:
            tlist = [tangents]
        elif isinstance(tangents, (list, tuple)):
            tlist = list(tangents)
        else:
            raise ArgumentError("ForwardAccumulator: argument 'tangents' expected a list like "
                                f"'primals' ({len(plist)} entries), got {describe(tangents)}")
        if len(tlist) != len(plist):
            raise ShapeError(f"ForwardAccumulator: argument 'tangents' expected {len(plist)} "
                             f"entries (one per primal), got {len(tlist)}")
        if not isinstance(batch_nd, numbers.Integral) or batch_nd < 0:
            raise ArgumentError("ForwardAccumulator: argument 'batch_nd' expected an int >= 0, "
                                f"got {batch_nd!r}")
        self.batch_nd = int(batch_nd)
        self.batch_shape = None
        self._active = False
        self._by_node: dict = {}  # graph node -> tangent of the tensor it made (see propagate)
        # (primal, tangent): put on the primals while the context is active, taken off at
        # exit (a long-lived parameter would otherwise keep every accumulator's tangent)
        self._seeds: list = []
        for i, (p, t) in enumerate(zip(plist, tlist)):
            t = coerce_tangent(t, p, self.batch_nd, "ForwardAccumulator", f"tangents[{i}]")
            b = tuple(t.shape[: self.batch_nd])
            if self.batch_shape is None:
                self.batch_shape = b
            elif b != self.batch_shape:
                raise ShapeError("ForwardAccumulator: argument 'tangents' expected the same batch "
                                 f"shape {self.batch_shape} for every tangent, got {b} for "
                                 f"tangents[{i}]")
            if p._batched or t._batched:  # inside ag.vmap: the tangent of the physical tensor
                from .vmap import _absolute, match_layout  # (a cycle: vmap builds on this)

                phys, axes = _absolute(p)
                p, t = phys, match_layout(t, phys, axes, lead=self.batch_nd)
            self._seeds.append((p, t))
        if self.batch_shape is None:
            self.batch_shape = ()

    # ---- context ---------------------------------------------------------------------------
    def __enter__(self) -> ForwardAccumulator:
        for p, t in self._seeds:
            _set_tangent(p, self.id, t)
        STATE.accumulators.append(self)
        STATE.refresh()
        self._active = True
        return self

    def __exit__(self, *exc):
        accs = STATE.accumulators
        for i in range(len(accs) - 1, -1, -1):
            if accs[i] is self:
                del accs[i]
                break
        STATE.refresh()
        self._active = False
        self._by_node = {}
        for p, _ in self._seeds:
            fw = p._fw
            if fw:
                fw.pop(self.id, None)
                if not fw:
                    p._fw = None
        return False

    # ---- reading tangents ------------------------------------------------------------------
    def jvp(self, y, unconnected_gradients: str = "none"):
        """The tangent of ``y`` (or of each tensor of a list): J t, with the batch axes first.

        A tensor that does not depend on the primals has no tangent: None, or zeros with
        ``unconnected_gradients="zero"``."""
        check_unconnected(unconnected_gradients, "ForwardAccumulator.jvp")
        if isinstance(y, (list, tuple)):
            return type(y)(self.jvp(t, unconnected_gradients) for t in y)
        if not isinstance(y, Tensor):
            raise ArgumentError(f"ForwardAccumulator.jvp: argument 'y' expected a Tensor, "
                                f"got {describe(y)}")
        if y._batched:  # inside ag.vmap: the physical tensor's tangent, batched again
            from .vmap import physical, rewrap  # (a cycle: vmap builds on this module)

            phys, chain = physical(y)
            return rewrap(self.jvp(phys, unconnected_gradients), chain, lead=self.batch_nd)
        t = y._fw.get(self.id) if y._fw else None
        if t is None:  # a primal, read outside the context
            t = next((t for p, t in self._seeds if p is y), None)
        if t is None and unconnected_gradients == "zero":
            t = Tensor(y._bk.xp.zeros(self.batch_shape + y.shape, dtype=y.dtype), y._bk)
        return t

    # ---- the hook apply() calls ------------------------------------------------------------
    def propagate(self, op, bk, inputs, arrs, params, out, saved, result):
        me = self.id
        by_node = self._by_node
        ts = []
        any_t = False
        for x in inputs:
            t = None
            if isinstance(x, Tensor):
                t = x._fw.get(me) if x._fw else None
                node = x._node
                if node is not None:
                    # A reverse sweep rebuilds saved values as new Tensors from the graph: they
                    # find their tangent through their node (forward-over-reverse).
                    if t is None:
                        t = by_node.get(node)
                    elif node not in by_node:
                        by_node[node] = t
            if t is not None:
                any_t = True
            ts.append(t)
        if not any_t:
            return
        if op.jvp is None:
            raise TapeError(f"ForwardAccumulator: op '{op.name}' has no forward-mode (jvp) rule")
        st = STATE
        accs = st.accumulators
        others = [a for a in accs if a is not self]
        differentiable = bool(st.recording or others)
        in_metas = tuple((getattr(a, "shape", ()), getattr(a, "dtype", None)) for a in arrs)
        st.accumulators = others
        st.refresh()
        try:
            if differentiable:
                F = tensors(bk)
                sv = _saved_as_tensors(op, saved, inputs, params, result, bk)
                t = call_jvp(op, F, tuple(ts), sv, params, in_metas, out.ndim)
            else:
                F = raw(bk)
                t = call_jvp(op, F, tuple(None if t is None else t._data for t in ts), saved,
                             params, in_metas, out.ndim)
            if t is None:
                return
            t = _fit(F, t, self.batch_shape + out.shape, out.dtype)
            if not differentiable:
                t = Tensor(t if type(t) is bk.array_type else bk.xp.asarray(t), bk)
        finally:
            st.accumulators = accs
            st.refresh()
        _set_tangent(result, me, t)
        if result._node is not None:
            by_node[result._node] = t


def _fit(F, t, shape, dtype):
    """A jvp rule may return a tangent that still broadcasts to the output (a scalar input's
    tangent, a symbolic broadcast); give it the full batch + output shape and the output dtype."""
    if tuple(t.shape) != tuple(shape):
        t = F.broadcast_to(t, tuple(shape))
    if t.dtype != dtype:
        t = F.astype(t, dtype=dtype)
    return t


def _saved_as_tensors(op, saved, inputs, params, result, bk):
    """Saved values for tensor-mode rules, by their declared slots: input and output slots as
    the Tensors themselves (linked to whatever observes them), other arrays as constants."""
    sv = []
    for s, code in zip(saved, op.codes_for(len(inputs), params)):
        if code == OUTPUT:
            sv.append(result)
        elif code >= 0 and isinstance(inputs[code], Tensor):
            sv.append(inputs[code])
        else:
            sv.append(Tensor(bk.xp.asarray(s), bk) if hasattr(s, "dtype") and
                      hasattr(s, "shape") else s)
    return tuple(sv)


# ---------------------------------------------------------------------------------------------
# replay of a recorded graph


def needed_nodes(target_nodes) -> set:
    """Every node the targets depend on (iterative: graphs may be 100,000 ops deep)."""
    seen = set()
    stack = [n for n in target_nodes if n is not None]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        for p in n.parents:
            if p is not None and p not in seen:
                stack.append(p)
    return seen


def relevant_nodes(tape, source_nodes, target_nodes) -> list:
    """The recorded nodes on some path from a source to a target, in recording order."""
    need = needed_nodes(target_nodes)
    reach = set(source_nodes)
    out = []
    for node in tape._nodes:
        if node in need and node not in reach:
            for p in node.parents:
                if p is not None and p in reach:
                    reach.add(node)
                    out.append(node)
                    break
    return out


def replay_jvp(tape, sources, seeds, targets, batch_shape=(), nodes=None) -> list:
    """Push tangents ``seeds`` (one per source, batch + source shape; None = zero) through the
    nodes ``tape`` recorded, with the jvp rules. Returns the targets' tangents (None where a
    target does not depend on the sources). ``nodes``: the relevant nodes when already known."""
    if not sources:
        return [None] * len(targets)
    bk = sources[0]._bk
    st = STATE
    was = tape._pause()
    try:
        differentiable = bool(st.recording or st.accumulators)
        F = tensors(bk) if differentiable else raw(bk)
        tan: dict = {}
        for s, seed in zip(sources, seeds):
            if seed is None:
                continue
            node = s._node
            if node is None:
                raise TapeError(f"GradientTape.forward_gradient: source {describe(s)} is not "
                                "tracked; call tape.watch(x) on it before computing with it")
            v = seed if differentiable else (seed._data if isinstance(seed, Tensor) else seed)
            if differentiable and not isinstance(v, Tensor):
                v = Tensor(v, bk)
            tan[node] = v if node not in tan else tan[node] + v
        target_nodes = [t._node for t in targets]
        source_set = set(tan)
        if nodes is None:
            nodes = relevant_nodes(tape, source_set, target_nodes)
        uses: dict = {}  # how many later nodes read each tangent: drop it after the last one
        for node in nodes:
            for p in node.parents:
                if p is not None:
                    uses[p] = uses.get(p, 0) + 1
        keep = set(target_nodes)
        get = tan.get
        for node in nodes:
            if node in source_set:
                continue
            ts = []
            live = False
            for p in node.parents:
                if p is None:
                    ts.append(None)
                    continue
                t = get(p)
                if t is not None:
                    live = True
                ts.append(t)
                u = uses[p] - 1
                uses[p] = u
                if u == 0 and p not in keep:
                    tan.pop(p, None)
            if not live:
                continue
            op = node.op
            if node.saved is None and node.extra is not None:
                node.extra.restore(node)  # checkpointing: recompute the released values
            if node.saved is None:
                raise TapeError(
                    f"GradientTape.forward_gradient: the saved values of op '{op.name}' were "
                    "released by gradient(); use persistent=True or call forward_gradient first")
            saved = saved_tensors(node, bk) if differentiable else node.saved
            out_shape, out_dtype = node.out_meta
            t = call_jvp(op, F, tuple(ts), saved, node.params, node.in_meta, len(out_shape))
            if t is not None:
                shape = batch_shape + out_shape
                if t.shape != shape or t.dtype != out_dtype:
                    t = _fit(F, t, shape, out_dtype)
                tan[node] = t
        out = []
        for tgt in targets:
            t = tan.get(tgt._node) if tgt._node is not None else None
            if t is not None and not isinstance(t, Tensor):
                t = Tensor(t if type(t) is bk.array_type else bk.xp.asarray(t), bk)
            out.append(t)
        return out
    finally:
        tape._resume(was)
