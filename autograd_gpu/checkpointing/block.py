"""BLOCK: keep the saved values of every ``checkpoint_every_n``-th recorded op, drop the others.

The sweep restores a dropped node with one replay from the nearest kept values, which restores
every dropped node on the way too (the sweep then frees them one by one). Kept saved values that
are graph values (a tanh's output, a matmul's input) are the replay starts; where they leave
more than ``2 * checkpoint_every_n`` ops without one (a kept dropout saves only its mask), the
kept node also keeps its output, so no replay is longer than that.
"""

from __future__ import annotations

from ..ops.graph import OUTPUT
from .config import CheckpointStrategy
from .policy import Policy
from .records import PARENT

__all__ = ["BlockPolicy"]


class BlockPolicy(Policy):
    strategy = CheckpointStrategy.BLOCK

    def _begin(self) -> None:
        self.last_known = self.pos - 1  # position of the latest output a kept node keeps alive

    def keeps(self, node, rec, arrs, out, ext, droppable) -> bool:
        n = self.cfg.checkpoint_every_n
        keep = (rec.pos + 1) % n == 0
        if keep:
            self._bound_segment(node, rec, out, ext, 2 * n)
        return keep

    def _bound_segment(self, node, rec, out, ext, limit) -> None:
        """Keep replays short: a kept node whose saved values leave no graph value known within
        the last ``limit`` ops also keeps its output (an anchor)."""
        known = self.last_known
        for code in node.saved_map:
            if code == OUTPUT:
                known = rec.pos
            elif code >= 0 and ext[code] is PARENT:
                known = max(known, node.parents[code].extra.pos)
        if rec.pos - known >= limit:
            rec.value = out
            known = rec.pos
            self.stats["anchors"] += 1
        self.last_known = known
