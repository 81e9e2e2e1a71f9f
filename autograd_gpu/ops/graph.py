"""The recorded graph: one Node per recorded op application (every op has one output).

A node holds strong references to its parents' nodes (not to their tensors), the saved values its
rules need, and the ids of the tapes that recorded it. Outputs are not referenced at all: a tensor
is (array, node), so the sweep rebuilds any output it needs from the saved array and the node. No
tensor <-> node cycles exist, so graphs die by reference counting. That is also why the node can
be a compiled type the cyclic GC does not track (``autograd_gpu._native.Node``, with the data in C
and the methods below attached); ``PyNode`` is its pure-Python twin.
"""

from __future__ import annotations

import os

__all__ = ["CONST", "OUTPUT", "PyNode", "Node"]

# saved_map codes (an input's position is its code, >= 0)
CONST = -1  # a constant (a mask, a shape, a Python number): not differentiated through
OUTPUT = -2  # the op's own output


class _NodeBehaviour:
    """A node's methods and properties, one definition for both node types below."""

    __slots__ = ()

    @property
    def in_meta(self) -> tuple:
        """(shape, dtype) per input (``((), None)`` for a Python number)."""
        m = self._in_meta
        return m if m is not None else tuple(p.out_meta for p in self.parents)

    @staticmethod
    def leaf(shape=(), dtype=None) -> "Node":
        return Node(None, None, (), None, (), (), frozenset(), (shape, dtype))

    @property
    def is_leaf(self) -> bool:
        return self.op is None

    def release(self) -> None:
        self.saved = None

    def drop_tape(self, tid: int) -> None:
        """Tape ``tid`` no longer needs this node; free the saved values when no tape does."""
        tp = self.tapes
        if tid in tp:
            tp = tp - {tid}
            self.tapes = tp
            if not tp:
                self.saved = None
                self.extra = None  # checkpoint bookkeeping (kept values) goes with them

    def __repr__(self) -> str:
        name = "leaf" if self.op is None else self.op.name
        return f"Node({name}, tapes={sorted(self.tapes)})"

    def __reduce__(self):
        # copy.deepcopy / pickle of a watched Variable or a model holding one (the compiled
        # type has no instance dict for the default protocol to read)
        return (_rebuild, (self.op, self.params, self.parents, self._in_meta, self.saved,
                           self.saved_map, self.tapes, self.out_meta, self.site, self.extra,
                           self.fw))


def _rebuild(op, params, parents, in_meta, saved, saved_map, tapes, out_meta, site, extra, fw):
    n = Node(op, params, parents, in_meta, saved, saved_map, tapes, out_meta)
    n.site, n.extra, n.fw = site, extra, fw
    return n


class PyNode(_NodeBehaviour):
    """The node in pure Python: the fallback for ``autograd_gpu._native.Node``, which has the
    same attributes and constructor in C and is not tracked by the cyclic GC (see _native.c)."""

    __slots__ = (
        "op", "params", "parents", "_in_meta", "saved", "saved_map", "tapes", "out_meta",
        "site", "extra", "fw", "__weakref__",
    )

    # positional only, few arguments: one is built per recorded op (the hot path)
    def __init__(self, op, params, parents, in_meta, saved, saved_map, tapes, out_meta):
        self.op = op  # Op record, or None for a leaf
        self.params = params  # dict of the op's keyword parameters
        # tuple: parent Node or None (constant input), one per input. A parent is truthy, so the
        # tuple is also the ``needs`` rules receive (an input leads to a tracked value).
        self.parents = parents
        # tuple of (shape, dtype) per input; None when every input is tracked (then it is the
        # parents' out_meta: one GC-tracked tuple less per node, see in_meta)
        self._in_meta = in_meta
        self.saved = saved  # tuple of arrays/values, None once released
        # per saved slot: the input position it holds, OUTPUT or CONST (the op's declared
        # layout, Op.codes_for: by position, never by the identity of an array)
        self.saved_map = saved_map
        self.tapes = tapes  # frozenset: ids of tapes that still propagate through this node
        self.out_meta = out_meta  # (shape, dtype) of the output
        self.site = None  # forward call site, filled under detect_anomaly
        self.extra = None  # room for checkpointing/AMP bookkeeping
        self.fw = None  # tangents of saved untracked inputs (registry._const_tangents)


def _node_type():
    """The compiled node with the behaviour attached, or PyNode (no compiler at install time,
    a source checkout, or AUTOGRAD_GPU_PURE_PYTHON=1)."""
    if os.environ.get("AUTOGRAD_GPU_PURE_PYTHON", "") not in ("", "0"):
        return PyNode
    try:
        from .._native import Node as native  # optional: the compiled extension may be absent
    except ImportError:
        return PyNode
    for name, attr in vars(_NodeBehaviour).items():
        if name not in ("__module__", "__doc__", "__slots__", "__qualname__"):
            setattr(native, name, attr)
    return native


Node = _node_type()
