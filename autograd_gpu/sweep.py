"""The reverse sweep over a tape's recorded nodes, in Python and (when compiled) in C.

Recording order is a topological order, so the sweep walks the node list backwards: it takes
each node's cotangent out of ``grads``, notes it if the node is wanted, restores released saved
values (checkpointing), runs the op's vjp rule, releases the node's saved values (non-persistent
tapes), then unbroadcasts and casts each input cotangent to its parent's meta and adds it in.
``_native.sweep`` runs the same steps in the same order (the rules, restores and sums are the
same Python calls); this loop is the reference, used with the pure-Python node and whenever an
interceptor watches the sweep.
"""

from __future__ import annotations

from typing import NamedTuple

from .ops import registry as _registry
from .ops.registry import saved_tensors, sum_to

__all__ = ["SweepContext", "run_sweep", "ready_points"]

_EMPTY = frozenset()


class SweepContext(NamedTuple):
    """Everything one sweep needs besides the nodes and the cotangent tables. A tuple, read by
    position in C: the field order is part of the compiled contract (_native.c, CONTRACT)."""

    tid: int  # the sweeping tape's id
    release: bool  # free saved values as the sweep passes them (non-persistent tape)
    F: object  # the rule namespace: raw(bk), or tensors(bk) for a recorded sweep
    restore: object  # restore(node) -> saved values of a released node
    wrap: object  # saved_tensors for a recorded sweep, else None
    bk: object  # the backend
    sum_to: object  # the engine's unbroadcast
    batch_nd: int  # leading batch axes of the cotangents
    empty: frozenset  # the empty tape set given to released nodes
    ready_at: dict | None  # node -> wanted leaves whose cotangent is final once it is swept
    on_ready: object  # on_ready(leaf, cotangent or None), or None


def ready_points(nodes, want) -> tuple[dict, list]:
    """For wanted leaves: the node after whose sweep each one's cotangent is final (its first
    recorded consumer: the sweep goes backwards), and the wanted leaves no node consumes (known
    before the sweep, no search at the end)."""
    want_leaves = {w for w in want if w.op is None}
    first: dict = {}
    for node in nodes:
        for p in node.parents:
            if p is not None and p in want_leaves and p not in first:
                first[p] = node
    ready_at: dict = {}
    for leaf, node in first.items():
        ready_at.setdefault(node, []).append(leaf)
    unused = [w for w in want_leaves if w not in first]
    return ready_at, unused


def run_sweep(nodes, grads: dict, want_set, found: dict, ctx: SweepContext, hooks) -> None:
    """Sweep ``nodes`` backwards (see the module docstring); ``hooks``: the thread's
    interceptors (the compiled loop runs only when there are none)."""
    native = _registry.native_sweep
    if native is not None and not hooks:
        native(nodes, grads, want_set, found, ctx)
        return
    python_sweep(nodes, grads, want_set, found, ctx, hooks)


def python_sweep(nodes, grads: dict, want_set, found: dict, ctx: SweepContext, hooks) -> None:
    """The reference loop (run_sweep's Python path)."""
    tid, release, F, restore, wrap, bk, _, batch_nd, empty, ready_at, on_ready = ctx
    for node in reversed(nodes):
        g = grads.pop(node, None)
        if g is None:  # no cotangent reaches it: its inputs get nothing from it either
            if ready_at and node in ready_at:
                for leaf in ready_at[node]:
                    on_ready(leaf, grads.get(leaf))
            continue
        if node in want_set:
            found[node] = g
        saved = node.saved
        if saved is None:
            saved = restore(node)
        if wrap is not None:
            saved = wrap(node, bk)
        parents = node.parents
        if hooks:
            gis = _hooked_vjp(hooks, node, F, g, saved, parents)
        elif node.params:
            gis = node.op.vjp(F, g, saved, parents, **node.params)
        else:
            gis = node.op.vjp(F, g, saved, parents)
        g = saved = None  # not held while the sums below allocate
        if release:
            if len(node.tapes) == 1:  # only this tape: free the saved values now
                node.tapes = empty
                node.saved = None
                node.extra = None  # checkpoint bookkeeping goes with them
            else:
                node.drop_tape(tid)
        _accumulate(parents, gis, grads, want_set, tid, F, batch_nd)
        gis = None  # not held through the next node's restore and rule
        if ready_at:
            for leaf in ready_at.get(node, ()):
                on_ready(leaf, grads.get(leaf))


def _accumulate(parents, gis, grads, want_set, tid, F, batch_nd) -> None:
    """Add each input cotangent, fitted to its parent's (shape, dtype), into ``grads``."""
    for p, gi in zip(parents, gis):
        if p is None or gi is None:
            continue
        if (p.op is None or tid not in p.tapes) and p not in want_set:
            continue  # a leaf or another tape's node that nobody asked for
        # a tracked input's (shape, dtype) is its parent's output meta
        shape, dtype = p.out_meta
        gshape = gi.shape
        if (gshape[batch_nd:] if batch_nd else gshape) != shape:
            gi = sum_to(F, gi, shape, batch_nd)
        gd = gi.dtype
        if gd is not dtype and gd != dtype:
            gi = F.astype(gi, dtype=dtype)
        if p in grads:
            grads[p] = grads[p] + gi
        else:
            grads[p] = gi


def _hooked_vjp(hooks, node, F, g, saved, needs):
    def run(i, args, params):
        if i < 0:
            return node.op.vjp(F, args[0], args[1], needs, **params)
        return hooks[i]("vjp", node.op, args, params, lambda a, p: run(i - 1, a, p))

    return run(len(hooks) - 1, (g, saved, node), node.params)


def sweep_context(tid, release, F, restore, differentiable, bk, batch_nd, ready_at=None,
                  on_ready=None) -> SweepContext:
    return SweepContext(tid, release, F, restore, saved_tensors if differentiable else None, bk,
                        sum_to, batch_nd, _EMPTY, ready_at or None, on_ready)
