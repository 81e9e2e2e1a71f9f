"""Per-node bookkeeping of a checkpointing tape: the ``node.extra`` record every policy attaches
to the nodes it records, and the small queries policies and replays make on it."""

from __future__ import annotations

import weakref

from ..ops.graph import CONST, OUTPUT

__all__ = ["PARENT", "Rec", "NO_STARTS", "anchor_value", "anchored", "alive", "size", "nbytes",
           "droppable_bytes"]

NO_STARTS = frozenset()  # one shared empty set (each frozenset() call builds a new one)


class _Parent:
    """Marks an input that comes from a node the same policy recorded (replayed, not
    referenced)."""

    __slots__ = ()

    def __repr__(self):
        return "<parent>"


PARENT = _Parent()


class Rec:
    """``node.extra`` of a node recorded by a checkpointing tape. One record type serves every
    policy (the hot path tests ``type(p.extra) is Rec``); fields a policy does not use keep their
    defaults."""

    __slots__ = ("policy", "pos", "ext", "value", "wout", "keep", "counted", "nbytes", "hold",
                 "anch", "starts", "need", "charged")

    def __init__(self, policy, pos, ext, out):
        self.policy = policy
        self.pos = pos  # recording order within the policy (a topological order)
        self.ext = ext  # per input: PARENT, or the value itself (array, number, None)
        self.value = None  # the output, held on purpose (an anchor)
        try:
            self.wout = weakref.ref(out)  # the output while something else keeps it alive
        except TypeError:
            self.wout = None
        self.keep = True  # saved values retained (False: dropped, restorable)
        self.counted = False  # AUTO: output bytes already charged to the budget
        self.charged = 0  # AUTO: bytes of saved values charged to this node while it is open
        self.nbytes = int(getattr(out, "nbytes", 0))
        self.hold = ()  # AUTO: anchors of its parents' outputs this node keeps alive
        self.anch = False  # AUTO: the output is an anchor (in ``value`` or a consumer's hold)
        # SELECTIVE: the anchors (their Recs) a replay of this output starts from, and, on an
        # anchor, how many dropped nodes may replay from it
        self.starts = NO_STARTS
        self.need = 0

    def output(self):
        if self.value is not None:
            return self.value
        w = self.wout
        return None if w is None else w()

    def restore(self, node) -> None:
        """Rebuild ``node.saved`` (the tape's sweep calls this on a node whose values are gone)."""
        self.policy.restore(node)


def anchor_value(p):
    """Node ``p``'s output if it is an anchor (known to every replay), else None."""
    r = p.extra
    return r.output() if type(r) is Rec and r.anch else None


def anchored(p) -> bool:
    """Whether node ``p``'s output is an anchor (AUTO)."""
    r = p.extra
    return type(r) is Rec and r.anch


def alive(p) -> bool:
    r = p.extra
    return type(r) is Rec and r.output() is not None


def size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def nbytes(x) -> int:
    return int(getattr(x, "nbytes", 0)) if hasattr(x, "dtype") else 0


def droppable_bytes(node, ext) -> int:
    """Bytes the node's saved tuple keeps alive that dropping it could free (values from the
    graph and constants; inputs from outside the graph are kept by their owners anyway)."""
    total, seen = 0, set()
    for s, code in zip(node.saved or (), node.saved_map):
        if (code == OUTPUT or code == CONST or ext[code] is PARENT) and id(s) not in seen:
            seen.add(id(s))
            total += nbytes(s)
    return total
