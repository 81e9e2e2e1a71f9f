"""SELECTIVE: keep what the expensive ops save, drop what the cheap ones save.

An op is expensive when its cost estimate (``op.estimate_cost``, in flops) is at least
``min_compute_cost`` per output element (a matmul with an inner dimension of 50 or more at the
default 100, a conv; elementwise ops cost 1 to 12). Dropped cheap nodes are replayed without
re-running an expensive op: an expensive op's output is held (an anchor) only while a dropped
cheap node may replay from it. A dropped node whose saved values are its own output gets them
back for free when a later kept node saves that output (a tanh before a matmul), and at the next
expensive op every anchor no dropped node needs any more is let go. So a plain MLP keeps what
NONE keeps and replays nothing, while a dropout's mask or a GELU's input is rebuilt from the
anchor. A cheap value whose replay would need more than ``MAX_STARTS`` anchors (a long residual
stream) is anchored itself, with its saved values. (A cheap op recorded after that next
expensive op that reads a released output directly, and is dropped, replays the expensive op if
the output has died by then: correct, only slower.)
"""

from __future__ import annotations

from ..ops.graph import OUTPUT
from .config import CheckpointStrategy
from .policy import Policy
from .records import NO_STARTS, PARENT, size

__all__ = ["SelectivePolicy", "MAX_STARTS"]

MAX_STARTS = 8  # anchors one replay may start from before a value is anchored


class SelectivePolicy(Policy):
    strategy = CheckpointStrategy.SELECTIVE

    def _begin(self) -> None:
        self.anchors: list = []  # Recs of the anchors held for now

    def keeps(self, node, rec, arrs, out, ext, droppable) -> bool:
        cost = node.op.estimate_cost(node.out_meta, node.in_meta, node.params)
        if cost >= self.cfg.min_compute_cost * max(1, size(node.out_meta[0])):
            if node.saved:
                self._undrop_parents(node, arrs, ext)
            self._release_unneeded()
            if OUTPUT in node.saved_map:  # its saved values hold the output: a replay start
                rec.starts = frozenset((rec,))
            else:
                self._anchor(rec, out)
            return True
        starts = NO_STARTS
        for p, e in zip(node.parents, ext):
            if e is PARENT:
                ps = p.extra.starts
                if ps and ps is not starts:  # a chain shares one set
                    starts = ps if not starts else starts | ps
        if len(starts) > MAX_STARTS:
            # keeps its saved values too: their replay would need all those anchors
            if node.saved:
                self._undrop_parents(node, arrs, ext)
            self._anchor(rec, out)
            return True
        rec.starts = starts
        if droppable:  # record() drops it: each anchor it may replay from must stay
            for a in starts:
                a.need += 1
        return False

    def _anchor(self, rec, out) -> None:
        rec.value = out
        rec.starts = frozenset((rec,))
        self.anchors.append(rec)
        self.stats["anchors"] += 1

    def _undrop_parents(self, node, arrs, ext) -> None:
        """A dropped parent whose only saved value is its output gets it back when this kept
        node saves that same array: holding it costs nothing more, and its restore then needs
        no replay (so neither the anchors it would have replayed from)."""
        for i, (p, e, a) in enumerate(zip(node.parents, ext, arrs)):
            if e is not PARENT or p.saved is not None:
                continue
            r = p.extra
            if r.keep or not all(c == OUTPUT for c in p.saved_map):
                continue
            if i in node.saved_map:  # the kept node saves input i, p's output
                p.saved = (a,) * len(p.saved_map)
                r.keep = True
                self.stats["dropped"] -= 1
                for anchor in r.starts:
                    anchor.need -= 1

    def _release_unneeded(self) -> None:
        """Let go of the anchors that no dropped node may replay from any more (their outputs
        stay known while something else holds them)."""
        left = []
        for r in self.anchors:
            if r.need > 0:
                left.append(r)
            else:
                r.value = None
                self.stats["anchors"] -= 1
        self.anchors = left
