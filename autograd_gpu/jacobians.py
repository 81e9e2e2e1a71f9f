"""Jacobians on a recorded tape: the machinery behind ``tape.jacobian``, ``tape.batch_jacobian``
and ``tape.forward_gradient``. The scheduler (scheduler.py) decides the mode from its cost model;
this module carries the decision out: batched identity seeds in chunks, pushed through the
forward-mode replay (forward.replay_jvp) or the reverse sweep (tape.backward), and assembled
into target.shape + source.shape blocks.
"""

from __future__ import annotations

from .errors import ArgumentError, ShapeError, describe
from .forward import _as_tensor_list, coerce_tangent, relevant_nodes, replay_jvp
from .ops import api as A
from .ops.context import STATE
from .scheduler import (
    GraphStats,
    HybridScheduler,
    SchedulerConfig,
    SchedulingStrategy,
    _itemsize,
    _remember,
    _size,
)
from .tape import check_sources, check_unconnected
from .tensor import Tensor
from .vmap import VmapError, _absolute, _build, _seed_layout, vmap

__all__ = ["tape_jacobian", "tape_batch_jacobian", "tape_forward_gradient",
           "forward_jacobian_parts", "reverse_jacobian_parts", "identity_chunks",
           "join_chunks", "assemble_jacobian"]


def identity_chunks(t, chunk, differentiable, allow_empty=False):
    """The identity over ``t``'s elements as seed batches of shape (k,) + t.shape: returns the
    chunk sizes and a generator of the arrays. One chunk when ``chunk`` is None or the result
    must stay differentiable. An empty ``t`` gives one empty chunk if ``allow_empty``."""
    n = t.size
    c = max(1, n if (chunk is None or differentiable) else min(int(chunk), n))
    sizes = [min(n, k0 + c) - k0 for k0 in range(0, n, c)] or ([0] if allow_empty else [])
    xp = t._bk.xp

    def gen():
        k0 = 0
        for k in sizes:
            yield xp.eye(k, n, k=k0, dtype=t.dtype).reshape((k,) + t.shape)
            k0 += k

    return sizes, gen()


def join_chunks(parts, sizes, like, differentiable):
    """Concatenate per-chunk sweep results along the batch axis; a chunk with no path (None)
    becomes zeros of its size shaped like ``like``. None when no chunk had a path."""
    if not parts or all(r is None for r in parts):
        return None
    if differentiable:
        return parts[0]  # a single chunk
    xp = like._bk.xp
    arrs = [r._data if r is not None else xp.zeros((k,) + like.shape, dtype=like.dtype)
            for r, k in zip(parts, sizes)]
    return arrs[0] if len(arrs) == 1 else xp.concatenate(arrs, axis=0)


def forward_jacobian_parts(tape, sources, targets, chunk=None, differentiable=False,
                           nodes=None):
    """Forward-mode Jacobian blocks: for each source, each target's tangents under an identity
    batch, as raw arrays (or Tensors when ``differentiable``) of shape (n_source,) + target shape.
    Chunked over the source's elements when ``chunk`` is smaller."""
    results = []
    for s in sources:
        sizes, seeds_iter = identity_chunks(s, chunk, differentiable, allow_empty=True)
        per_target = [[] for _ in targets]
        for eye in seeds_iter:
            seed = Tensor(eye, s._bk)
            seeds = [seed if o is s else None for o in sources]
            res = replay_jvp(tape, sources, seeds, targets, (eye.shape[0],), nodes)
            for lst, r in zip(per_target, res):
                lst.append(r)
        blocks = [join_chunks(lst, sizes, tgt, differentiable) for tgt, lst in
                  zip(targets, per_target)]
        results.append(blocks)
    return results


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------------------------------------
# GradientTape.forward_gradient


def tape_forward_gradient(self, source, target, tangent=None, unconnected_gradients="none",
                      chunk_size=None):
    """Forward mode over the recorded graph: replays the ops this tape recorded with their jvp
    rules. With ``tangent`` (shaped like ``source``): the JVP J t, shaped like ``target``.
    Without: the full Jacobian, shape target.shape + source.shape, from identity tangent
    batches (chunks of ``chunk_size`` directions).

    ``source`` and ``target`` may be lists (the result is then a list per target; without a
    tangent, a list per target of a list per source). Uses the saved values, so call it before
    ``gradient`` on a non-persistent tape (which it then releases, as ``gradient`` does)."""
    where = "GradientTape.forward_gradient"
    self._check_usable("forward_gradient")
    srcs, s_single = _as_tensor_list(source, "source", where)
    tgts, t_single = _as_tensor_list(target, "target", where)
    zero = check_unconnected(unconnected_gradients, where)
    check_sources(srcs, where)
    if tangent is not None:
        tl = [tangent] if s_single else list(tangent) if isinstance(tangent, (list, tuple)) \
            else None
        if tl is None or len(tl) != len(srcs):
            raise ShapeError(f"{where}: argument 'tangent' expected {len(srcs)} tangents (one per "
                             f"source), got {describe(tangent)}")
        seeds = [coerce_tangent(t, s, 0, where, "tangent") for t, s in zip(tl, srcs)]
        if _any_batched(srcs, tgts, seeds):  # inside ag.vmap: replay the physical graph
            res = _batched_jvp(self, srcs, seeds, tgts, where)
        else:
            res = replay_jvp(self, srcs, seeds, tgts, ())
        res = [Tensor(t._bk.xp.zeros(t.shape, dtype=t.dtype), t._bk) if r is None and zero
               else r for r, t in zip(res, tgts)]
        out = res[0] if t_single else res
    elif _any_batched(srcs, tgts):  # inside ag.vmap: vmap of the tangent path over a basis
        table = _batched_jacobian(self, srcs, tgts, "forward", zero)
        rows = [r[0] if s_single else r for r in table]
        out = rows[0] if t_single else rows
    else:
        differentiable = bool(STATE.recording.keys() - {self.id} or STATE.accumulators)
        nodes = relevant_nodes(self, {s._node for s in srcs}, [t._node for t in tgts])
        if chunk_size is None:  # bound the tangent batch by the scheduler's memory budget
            budget = getattr(self.scheduler_config, "memory_budget_mb", 256.0)
            per_dir = max(1, sum(_numel(n.out_meta[0]) for n in nodes))
            item = max(getattr(t.dtype, "itemsize", 8) for t in tgts)
            chunk_size = max(1, int(budget * (1 << 20) / item // per_dir))
        parts = forward_jacobian_parts(self, srcs, tgts, chunk_size, differentiable, nodes)
        table = []
        for t_i, tgt in enumerate(tgts):
            row = []
            for s_i, src in enumerate(srcs):
                row.append(assemble_jacobian(parts[s_i][t_i], tgt, src, zero, differentiable))
            table.append(row[0] if s_single else row)
        out = table[0] if t_single else table
    if not self.persistent:
        self._finish()
    return out


def assemble_jacobian(block, tgt, src, zero, differentiable, forward=True):
    """A Jacobian block (target shape + source shape) from a batched sweep's result: forward
    mode gives (n,) + target shape tangents (transposed here), reverse mode gives (m,) + source
    shape cotangents (reshaped only)."""
    bk = src._bk
    shape = tgt.shape + src.shape
    if block is None:
        return Tensor(bk.xp.zeros(shape, dtype=tgt.dtype if forward else src.dtype), bk) \
            if zero else None
    n, m = src.size, tgt.size
    if differentiable:
        if forward:
            block = A.transpose(A.reshape(block, (n, m)), (1, 0))
        return A.reshape(block, shape)
    arr = block._data if isinstance(block, Tensor) else block
    if forward:
        arr = arr.reshape(n, m).T
    return Tensor(arr.reshape(shape), bk)


def reverse_jacobian_parts(tape, sources, targets, chunk=None, differentiable=False):
    """Reverse-mode Jacobian blocks: for each target, each source's cotangents under an identity
    seed batch, (m_target,) + source shape, chunked over the target's elements."""
    table = []
    was_persistent = tape.persistent
    tape.persistent = True  # chunks sweep the same graph several times
    try:
        for tgt in targets:
            sizes, seeds_iter = identity_chunks(tgt, chunk, differentiable)
            per_source = [[] for _ in sources]
            for eye in seeds_iter:
                res = tape.backward([(tgt, eye)], [s._node for s in sources], batch_nd=1)
                for lst, r in zip(per_source, res):
                    lst.append(r)
            row = [join_chunks(lst, sizes, src, differentiable) for src, lst in
                   zip(sources, per_source)]
            table.append(row)
    finally:
        tape.persistent = was_persistent
    return table


def tape_jacobian(self, target, source, mode="auto", unconnected_gradients="none",
              chunk_size=None):
    """d target / d source, shape target.shape + source.shape.

    ``mode``: "auto" (the tape's SchedulerConfig decides; see ``tape.last_schedule``),
    "forward" or "reverse". ``source``/``target`` may be lists: the result is then a list per
    target (when ``target`` is a list) of a list per source (when ``source`` is a list)."""
    where = "GradientTape.jacobian"
    self._check_usable("jacobian")
    srcs, s_single = _as_tensor_list(source, "source", where)
    tgts, t_single = _as_tensor_list(target, "target", where)
    zero = check_unconnected(unconnected_gradients, where)
    check_sources(srcs, where)
    sched = HybridScheduler(self.scheduler_config)
    req = SchedulingStrategy.parse(mode, where, "mode")
    if _any_batched(srcs, tgts):  # inside ag.vmap: vmap of vjp (jvp) over an identity basis
        n = sum(s.size for s in srcs)
        m = sum(t.size for t in tgts)
        fwd = req is SchedulingStrategy.FORWARD or (req is SchedulingStrategy.AUTO and n < m)
        table = _batched_jacobian(self, srcs, tgts, "forward" if fwd else "reverse", zero)
        if not self.persistent:
            self._finish()
        rows = [r[0] if s_single else r for r in table]
        return rows[0] if t_single else rows
    if chunk_size is not None:
        sched = HybridScheduler(SchedulerConfig(
            strategy=sched.config.strategy, forward_mode_threshold=sched.config.
            forward_mode_threshold, reverse_mode_threshold=sched.config.reverse_mode_threshold,
            enable_mixed_mode=sched.config.enable_mixed_mode, chunk_size=chunk_size))
    nodes = relevant_nodes(self, {s._node for s in srcs}, [t._node for t in tgts])
    stats = GraphStats(nodes)
    n = sum(s.size for s in srcs)
    m = sum(t.size for t in tgts)
    itemsize = max(_itemsize(t.dtype) for t in tgts + srcs)
    plan = sched.plan_jacobian(stats, n, m, itemsize, "jacobian",
                               None if req is SchedulingStrategy.AUTO else req)
    _remember(self, plan)
    differentiable = bool(STATE.recording.keys() - {self.id} or STATE.accumulators)
    table = []
    if plan.mode == "forward":
        parts = forward_jacobian_parts(self, srcs, tgts, plan.chunk_size, differentiable, nodes)
        for t_i, tgt in enumerate(tgts):
            table.append([assemble_jacobian(parts[s_i][t_i], tgt, src, zero, differentiable)
                          for s_i, src in enumerate(srcs)])
    else:
        parts = reverse_jacobian_parts(self, srcs, tgts, plan.chunk_size, differentiable)
        for t_i, tgt in enumerate(tgts):
            table.append([assemble_jacobian(parts[t_i][s_i], tgt, src, zero, differentiable,
                                               forward=False)
                          for s_i, src in enumerate(srcs)])
    if not self.persistent:
        self._finish()
    rows = [r[0] if s_single else r for r in table]
    return rows[0] if t_single else rows


def tape_batch_jacobian(self, target, source, mode="auto", unconnected_gradients="none"):
    """Per-example Jacobians for a leading batch axis: J[b] = d target[b] / d source[b], shape
    (B,) + target.shape[1:] + source.shape[1:]. Assumes example b of the target depends only on
    example b of the source (cross-example terms would be summed in). One batched sweep: the
    identity over one example's elements, repeated over the batch axis."""
    where = "GradientTape.batch_jacobian"
    self._check_usable("batch_jacobian")
    if not isinstance(target, Tensor) or not isinstance(source, Tensor):
        raise ArgumentError(f"{where}: arguments 'target' and 'source' expected Tensors, got "
                            f"{describe(target)} and {describe(source)}")
    zero = check_unconnected(unconnected_gradients, where)
    check_sources([source], where)
    if target.ndim < 1 or source.ndim < 1 or target.shape[0] != source.shape[0]:
        raise ShapeError(f"{where}: expected target and source with the same leading batch "
                         f"axis, got target {target.shape} and source {source.shape}")
    B = target.shape[0]
    ts, ss = target.shape[1:], source.shape[1:]
    m1, n1 = _size(ts), _size(ss)
    if _any_batched([source], [target]):  # inside ag.vmap
        req = SchedulingStrategy.parse(mode, where, "mode")
        fwd = req is SchedulingStrategy.FORWARD or (req is SchedulingStrategy.AUTO and n1 < m1)
        res = _batched_batch_jacobian(self, source, target, fwd, zero)
        if not self.persistent:
            self._finish()
        return res
    nodes = relevant_nodes(self, {source._node}, [target._node])
    stats = GraphStats(nodes)
    sched = HybridScheduler(self.scheduler_config)
    req = SchedulingStrategy.parse(mode, where, "mode")
    plan = sched.plan_jacobian(stats, n1, m1, _itemsize(target.dtype), "batch_jacobian",
                               None if req is SchedulingStrategy.AUTO else req)
    _remember(self, plan)
    bk = source._bk
    xp = bk.xp
    differentiable = bool(STATE.recording.keys() - {self.id} or STATE.accumulators)
    out_shape = (B,) + ts + ss
    if plan.mode == "forward":
        eye = xp.broadcast_to(xp.eye(n1, dtype=source.dtype).reshape(n1, 1, n1), (n1, B, n1))
        seed = Tensor(xp.ascontiguousarray(eye).reshape((n1,) + source.shape), bk)
        (t,) = replay_jvp(self, [source], [seed], [target], (n1,), nodes)
        if t is None:
            res = Tensor(xp.zeros(out_shape, dtype=target.dtype), bk) if zero else None
        elif differentiable:
            r = A.transpose(A.reshape(t, (n1, B, m1)), (1, 2, 0))
            res = A.reshape(r, out_shape)
        else:
            res = Tensor(xp.moveaxis(t._data.reshape(n1, B, m1), 0, 2).reshape(out_shape), bk)
    else:
        eye = xp.broadcast_to(xp.eye(m1, dtype=target.dtype).reshape(m1, 1, m1), (m1, B, m1))
        seed = xp.ascontiguousarray(eye).reshape((m1,) + target.shape)
        was = self.persistent
        self.persistent = True
        try:
            (g,) = self.backward([(target, seed)], [source._node], batch_nd=1)
        finally:
            self.persistent = was
        if g is None:
            res = Tensor(xp.zeros(out_shape, dtype=source.dtype), bk) if zero else None
        elif differentiable:
            res = A.reshape(A.transpose(A.reshape(g, (m1, B, n1)), (1, 0, 2)), out_shape)
        else:
            res = Tensor(xp.swapaxes(g._data.reshape(m1, B, n1), 0, 1).reshape(out_shape), bk)
    if not self.persistent:
        self._finish()
    return res


# ---------------------------------------------------------------------------------------------
# inside ag.vmap: the tape recorded the physical (whole-batch) graph; the Jacobian machinery
# above reads arrays, which batched values do not have. These paths are vmaps of the tape's
# batched-aware gradient (vmap.batched_gradient) and of _batched_jvp over identity bases: a
# basis batched at a new level is an extra leading seed axis, so each is still one sweep.


def _any_batched(*groups) -> bool:
    return any(getattr(t, "_batched", False) for g in groups for t in g if t is not None)


def _batched_jvp(tape, srcs, seeds, tgts, where):
    """forward_gradient's tangent path on batched values: the seeds laid out like the physical
    sources (levels a seed has and its targets lack become leading tangent axes, as a vmap over
    tangents gives), replayed through the physical graph, the results batched again."""
    slay = [_absolute(s) for s in srcs]
    tlay = [_absolute(t) for t in tgts]
    tl = set().union(*(set(a) for _, a in tlay))
    levels = [set(_absolute(t)[1]) if t is not None else set() for t in seeds]
    for i, ((_, axes), lv) in enumerate(zip(slay, levels)):
        if (lv - set(axes)) & tl:
            raise VmapError(
                f"{where}: tangent {i} differs per example of an ag.vmap its source is not "
                "mapped over: a per-example tangent needs a per-example source (differentiate "
                "inside the vmap with ag.jvp, which gives each example its own copy)")
    extra = sorted(set().union(*levels) - tl, key=lambda L: L.id)
    phys = [None if t is None else _seed_layout(t, P, axes, extra)
            for t, (P, axes) in zip(seeds, slay)]
    lead = tuple(L.size for L in extra)
    res = replay_jvp(tape, [P for P, _ in slay], phys, [P for P, _ in tlay], lead)
    out = []
    for r, (_, axes) in zip(res, tlay):
        if r is None:
            out.append(None)
            continue
        ax = {L: a + len(extra) for L, a in axes.items()}
        ax.update({L: k for k, L in enumerate(extra)})
        out.append(_build(r, ax))
    return out


def _zeros(t, shape):
    """Zeros of logical ``shape`` in t's dtype: the same for every example (unbatched)."""
    return Tensor(t._bk.xp.zeros(shape, dtype=t.dtype), t._bk)


def _sweeps(tape, fn, basis):
    """vmap(fn)(basis) on a tape kept alive between the batched sweeps."""
    was = tape.persistent
    tape.persistent = True
    try:
        return vmap(fn)(basis)
    finally:
        tape.persistent = was


def _eye(t, n, shape):
    xp = t._bk.xp
    return Tensor(xp.eye(n, dtype=t.dtype).reshape((n,) + tuple(shape)), t._bk)


def _batched_jacobian(tape, srcs, tgts, mode, zero) -> list:
    """table[target][source] of Jacobian blocks (target shape + source shape) on batched
    values: reverse mode as vmap of the tape's gradient over an identity basis of each target
    (one batched sweep per target), forward mode as vmap of _batched_jvp over a basis of each
    source."""
    table = [[None] * len(srcs) for _ in tgts]
    if mode == "reverse":
        for i, tgt in enumerate(tgts):
            def pull(u, tgt=tgt):
                return tuple(tape.gradient([tgt], srcs, output_gradients=[u],
                                           unconnected_gradients="none"))

            blocks = _sweeps(tape, pull, _eye(tgt, tgt.size, tgt.shape))
            for j, (b, src) in enumerate(zip(blocks, srcs)):
                table[i][j] = None if b is None else A.reshape(b, tgt.shape + src.shape)
    else:
        for j, src in enumerate(srcs):
            def push(t, src=src):
                return tuple(_batched_jvp(tape, [src], [t], tgts, "GradientTape.jacobian"))

            blocks = _sweeps(tape, push, _eye(src, src.size, src.shape))
            for i, (b, tgt) in enumerate(zip(blocks, tgts)):
                if b is not None:  # (n,) + target shape -> target shape + source shape
                    b = A.transpose(A.reshape(b, (src.size, tgt.size)), (1, 0))
                    table[i][j] = A.reshape(b, tgt.shape + src.shape)
    for i, tgt in enumerate(tgts):
        for j, src in enumerate(srcs):
            if table[i][j] is None and zero:
                table[i][j] = _zeros(tgt if mode == "forward" else src, tgt.shape + src.shape)
    return table


def _batched_batch_jacobian(tape, source, target, forward, zero):
    """batch_jacobian on batched values: the identity over one example's elements broadcast
    over the leading axis, vmapped (one sweep)."""
    B, ts, ss = target.shape[0], tuple(target.shape[1:]), tuple(source.shape[1:])
    m1, n1 = _size(ts), _size(ss)
    if forward:
        def push(t):
            (r,) = _batched_jvp(tape, [source], [A.broadcast_to(t, source.shape)], [target],
                                "GradientTape.batch_jacobian")
            return (r,)

        (r,) = _sweeps(tape, push, _eye(source, n1, ss))  # (n1, B) + ts
        if r is not None:
            r = A.transpose(A.reshape(r, (n1, B, m1)), (1, 2, 0))
    else:
        def pull(u):
            return tuple(tape.gradient([target], [source],
                                       output_gradients=[A.broadcast_to(u, target.shape)],
                                       unconnected_gradients="none"))

        (r,) = _sweeps(tape, pull, _eye(target, m1, ts))  # (m1, B) + ss
        if r is not None:
            r = A.transpose(A.reshape(r, (m1, B, n1)), (1, 0, 2))
    shape = (B,) + ts + ss
    if r is None:
        return _zeros(source if not forward else target, shape) if zero else None
    return A.reshape(r, shape)
