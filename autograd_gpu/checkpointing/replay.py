"""Rebuilding released saved values: the replay machinery every policy shares.

A released node's saved values come back by running ``op.forward`` again along the recorded ops,
from the nearest values still known: an input from outside the graph (held in the node's
record), an output something keeps alive (a weak reference), an anchor a policy holds, or a
temporary checkpoint of the sweep. A replay frees each intermediate as soon as its last consumer
in the replay has run, so it holds one op's inputs and output at a time besides what it
restores. Random ops carry their seed in their params, so a replay draws the same numbers.
"""

from __future__ import annotations

import weakref

from ..errors import TapeError
from ..ops.graph import CONST, OUTPUT
from ..ops.registry import _forward
from .records import PARENT, Rec

__all__ = ["Replayer", "segment_bytes"]


class Replayer:
    """Replays recorded ops for one policy. It holds the backend, the policy's stats (replay
    counts), the nodes a replay filled on a persistent tape (dropped again as the sweep moves
    on) and the sweep's temporary checkpoints (``temp``: node -> output)."""

    def __init__(self, stats: dict, persistent: bool):
        self.bk = None
        self.stats = stats
        self.persistent = persistent
        self.restored: list = []  # weakrefs to dropped nodes a replay filled (persistent tapes)
        self.temp: dict = {}  # node -> output: temporary checkpoints placed by a policy

    def reset(self) -> None:
        """The tape released its nodes: forget what refers to them."""
        self.restored = []
        self.temp = {}

    def forget_above(self, pos) -> None:
        """The sweep has reached position ``pos``: values restored or checkpointed above it are
        not needed any more (persistent tapes drop restored values again)."""
        if self.persistent and self.restored:
            keep = []
            for ref in self.restored:
                n = ref()
                if n is None or n.extra is None:
                    continue
                if n.extra.pos > pos and not n.extra.keep and n.saved is not None:
                    n.saved = None
                else:
                    keep.append(ref)
            self.restored = keep
        if self.temp:
            for n in [n for n in self.temp if n.extra is None or n.extra.pos >= pos]:
                del self.temp[n]

    def fill_direct(self, target) -> bool:
        """Restore ``target`` without running anything when every saved value is at hand (an
        anchor, a kept input); whether it did."""
        saved = self.direct(target)
        if saved is None:
            return False
        target.saved = saved
        if self.persistent:
            self.restored.append(weakref.ref(target))
        return True

    def direct(self, n):
        """The saved values of ``n`` when all of them are known without running anything (its
        output is an anchor, its saved inputs are kept), else None."""
        r = n.extra
        vals = []
        for code in n.saved_map:
            if code == OUTPUT:
                v = r.output()
            elif code == CONST:
                return None
            elif r.ext[code] is PARENT:
                v = self.known(n.parents[code])
            else:
                vals.append(r.ext[code])
                continue
            if v is None:
                return None
            vals.append(v)
        return tuple(vals)

    def known(self, p):
        """Node ``p``'s output if some value holds it (alive, anchored, a temporary
        checkpoint), else None."""
        r = p.extra
        v = r.output()
        if v is None and self.temp:
            v = self.temp.get(p)
        return v

    def needed(self, target) -> list:
        """Nodes to run (in recording order, the target last) to rebuild the target's inputs
        from the nearest known values."""
        order = [target]
        seen = {target}
        stack = [target]
        while stack:
            n = stack.pop()
            r = n.extra
            for p, e in zip(n.parents, r.ext):
                if e is not PARENT or p in seen:
                    continue
                pr = p.extra
                if type(pr) is not Rec:
                    raise TapeError(
                        f"checkpoint: cannot recompute the saved values of op '{target.op.name}': "
                        f"its ancestor op '{p.op.name}' was already released by a gradient() "
                        "call; use persistent=True on the tape that ran first"
                    )
                if self.known(p) is not None:
                    continue
                seen.add(p)
                stack.append(p)
                order.append(p)
        order.sort(key=lambda n: n.extra.pos)
        return order

    def run(self, order, target, restore_all=False, keep_last=False):
        """Replay ``order``. Restores the target's saved values (and, with ``restore_all``, those
        of every dropped node on the way); with ``keep_last`` returns the last node's output."""
        bk = self.bk
        last = order[-1]
        uses: dict = {}
        members = set(order)
        for n in order:
            for p, e in zip(n.parents, n.extra.ext):
                if e is PARENT and p in members:
                    uses[p] = uses.get(p, 0) + 1
        vals: dict = {}
        for n in order:
            r = n.extra
            args = []
            for p, e in zip(n.parents, r.ext):
                if e is not PARENT:
                    args.append(e)
                elif p in vals:
                    args.append(vals[p])
                else:
                    args.append(self.known(p))
            want_out = uses.get(n, 0) > 0 or (keep_last and n is last)
            fill = n.saved is None and (n is target or (restore_all and not r.keep and n.tapes))
            codes = n.saved_map
            out = None
            if fill and not want_out and all(c >= 0 for c in codes):
                saved = tuple(args[c] for c in codes)  # saved values are inputs: no forward
            else:
                out, saved = _forward(n.op, bk, args, n.params, codes)
                self._count(n)
            if fill:
                n.saved = saved
                if self.persistent:
                    self.restored.append(weakref.ref(n))
            if want_out:
                vals[n] = out
            # drop this step's references now: the next op's forward runs without them (a
            # replay holds one op's inputs and output at a time, besides what it restores)
            out = saved = args = None
            for p, e in zip(n.parents, r.ext):
                if e is PARENT and p in uses:
                    uses[p] -= 1
                    if uses[p] == 0:
                        vals.pop(p, None)
        return vals.get(last) if keep_last else None

    def _count(self, n) -> None:
        stats = self.stats
        stats["replayed_ops"] += 1
        stats["replayed_cost"] += n.op.estimate_cost(n.out_meta, n.in_meta, n.params)
        by_op = stats["replayed_by_op"]
        by_op[n.op.name] = by_op.get(n.op.name, 0) + 1


def segment_bytes(order, known, dropping=frozenset()) -> int:
    """Bytes that restoring the saved values of every dropped node in ``order`` (and of the
    nodes in the set ``dropping``, about to be dropped) adds, from metadata (the arrays are
    gone): each graph value once (a tanh's output is also the next matmul's saved input),
    constants (masks) as output-sized; values already held (anchors, ``known``) add nothing."""
    seen: set = set()
    total = 0
    for n in order:
        r = n.extra
        if r.keep and n not in dropping:
            continue
        for i, code in enumerate(n.saved_map):
            if code == OUTPUT:
                key, nb = n, r.nbytes
            elif code == CONST:
                key, nb = (n, i), r.nbytes
            elif r.ext[code] is PARENT:
                p = n.parents[code]
                key, nb = p, (0 if known(p) is not None else p.extra.nbytes)
            else:
                continue
            if key not in seen:
                seen.add(key)
                total += nb
    return total
