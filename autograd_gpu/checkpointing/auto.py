"""AUTO: keep peak activation memory under ``memory_budget_mb`` at little recomputation.

The forward is planned as it goes (the chain's length is unknown until it ends): the open
segment keeps its saved values while they fit, and its oldest nodes close into segments that
restore in one replay each (``segments.Segments``). Only when not even one node fits next to the
anchors does AUTO fall back to spaced anchors (``anchors.Anchors``), and the sweep's restores
then place temporary checkpoints by the chain DP (``chain.split``). From the second step with
the same config a chain follows a plan made offline from the previous recording
(``chain.ChainTracker``). docs/checkpointing.md has the reasoning and the measurements.
"""

from __future__ import annotations

import weakref

from ..ops.graph import OUTPUT
from .anchors import Anchors
from .chain import ChainTracker, split
from .config import MB, CheckpointBudgetError, CheckpointStrategy
from .policy import Policy
from .records import PARENT, droppable_bytes, nbytes
from .replay import segment_bytes
from .segments import Segments, new_bytes

__all__ = ["AutoPolicy", "BOOK"]

BOOK = 320  # bytes of bookkeeping a recorded node costs (its Rec, weak references)


class AutoPolicy(Policy):
    strategy = CheckpointStrategy.AUTO

    def _begin(self) -> None:
        self.budget = (self.cfg.memory_budget_mb or 0.0) * MB
        self.mode = "retain"  # or "anchor": the fallback
        self.book = 0  # the policy's own bookkeeping (BOOK bytes a node) and data_bytes
        self.data: dict = {}  # id -> bytes: inputs from outside the graph as large as an output
        self.data_bytes = 0
        self.start = self.pos  # the first position of this recording
        self.reserve = 0  # the largest working set of one step seen so far
        self.anchors = Anchors(self.stats)
        self.segments = Segments(weakref.ref(self), self.anchors, self.stats)
        self.chains = ChainTracker(self.cfg, self.budget, self.start)

    # ---- recording ---------------------------------------------------------------------------
    def keeps(self, node, rec, arrs, out, ext, droppable) -> bool:
        chains = self.chains
        if chains.active:
            chains.note(node, rec, ext)
        self._account(node, rec, ext, droppable)
        follow = chains.follow(rec.pos)
        if follow is not None:
            if follow:
                self.anchors.add(node, out)
            return False
        if self.mode == "retain":
            if self._retain(node, rec, ext):
                return True
            self._to_fallback()  # not even this one node fits next to the anchors
        self.anchors.space(node, rec, out, self._anchor_cap())
        return False

    def _account(self, node, rec, ext, droppable) -> None:
        """Grow the reserve and the bookkeeping by this node; raise CheckpointBudgetError when
        its working set alone does not fit the budget."""
        parents = {p for p, e in zip(node.parents, ext) if e is PARENT}  # x * x reads x once
        in_bytes = sum(p.extra.nbytes for p in parents)
        # the working set of one step that no saved value accounts for. While the sweep
        # restores a node it holds that node's cotangent and the replay's latest output and its
        # input (three output-sized arrays, the most); a rule holds the cotangent and its result
        # (two: act_grad writes its steps into one array); the forward, the op's inputs and
        # output
        work = max(3 * rec.nbytes, rec.nbytes + in_bytes)
        for code in node.saved_map:
            if code >= 0 and ext[code] is PARENT:
                p = node.parents[code]
                pr = p.extra
                if OUTPUT not in p.saved_map and (not pr.keep or droppable_bytes(p, pr.ext)):
                    # p (a dropout: it saves a mask) may be restored by a replay while the
                    # sweep still holds this node's saved values (the tape releases them after
                    # the next node's restore), p's output among them
                    work = max(work, 3 * pr.nbytes + droppable)
        if work > self.reserve:
            self.reserve = work
        self.book += BOOK
        for e in ext:
            # an input from outside the graph as large as the activations (the batch, not a
            # weight): it stays alive through the step, so it counts against the budget
            if e is not PARENT and nbytes(e) >= rec.nbytes > 0 and id(e) not in self.data:
                self.data[id(e)] = nbytes(e)
                self.data_bytes += nbytes(e)
                self.book += nbytes(e)
        if self.reserve + droppable + self.book > self.budget:
            raise CheckpointBudgetError(
                f"checkpoint AUTO: memory_budget_mb={self.cfg.memory_budget_mb} MB is below the "
                f"working set of op '{node.op.name}' (output {node.out_meta[0]} "
                f"{node.out_meta[1]}): {(self.reserve + droppable) / MB:.3f} MB for its "
                "output, saved values, inputs and a cotangent in flight, plus "
                f"{self.book / MB:.3f} MB for the batch the graph reads and the bookkeeping of "
                "the ops recorded. No schedule can go below that; raise the budget or shrink "
                "the batch"
            )

    def _retain(self, node, rec, ext) -> bool:
        """Keep the node in the open segment if it fits, closing older nodes to make room;
        whether it was kept."""
        segs, base = self.segments, self.reserve + self.book
        new = new_bytes(node, rec, ext)
        if segs.fits(new, self.budget, base):
            segs.keep(node, rec, ext, new)
            return True
        if segs.nodes and segs.slide(node, rec, ext, self.budget, base):
            segs.keep(node, rec, ext, new_bytes(node, rec, ext))
            return True
        if segs.nodes:
            segs.close_all(node, ext)
            new = new_bytes(node, rec, ext)
            if segs.fits(new, self.budget, base):
                segs.keep(node, rec, ext, new)
                return True
        return False

    def _anchor_cap(self) -> float:
        """The fallback's anchors take at most half of the memory left."""
        return max(0.0, (self.budget - self.reserve - self.segments.pin_bytes - self.book) / 2.0)

    def _to_fallback(self) -> None:
        """Not even one node fits next to the anchors: from here on every node drops its saved
        values, anchors are spaced ``stride`` ops apart within half of the memory left, and the
        sweep's restores place temporary checkpoints (the DP)."""
        self.mode = "anchor"
        self.segments.nodes = []
        self.anchors.start_spacing(self._anchor_cap())

    # ---- the reverse sweep -------------------------------------------------------------------
    def restore(self, target) -> None:
        free = self.budget - self.reserve - self.book - self.segments.pin_bytes
        self.chains.sweep(self.budget, free, self.stats)
        super().restore(target)

    def rebuild(self, target) -> None:
        """Restore ``target`` with one replay when its segment fits the memory free now, else
        advance by the DP's split, keep that output as a temporary checkpoint, and go on."""
        rp = self.replay
        while True:
            order = rp.needed(target)
            n = len(order)
            if n == 1:
                break
            # the sweep has released the bookkeeping of the nodes after the target
            book = self.data_bytes + BOOK * max(0, target.extra.pos - self.start + 1)
            free = self.budget - self.reserve - book - self._held_bytes() - \
                sum(nbytes(v) for v in rp.temp.values())
            seg = segment_bytes(order, rp.known)
            if seg <= free:  # the whole segment fits: restore it in one replay
                rp.run(order, target, restore_all=True)
                return
            slot = max(x.extra.nbytes for x in order[:-1]) or 1
            f = int((free - segment_bytes([target], rp.known)) // slot)
            if f <= 0:
                break
            j = split(n, f)
            v = rp.run(order[:j], None, keep_last=True)
            rp.temp[order[j - 1]] = v
        rp.run(order, target)

    def _held_bytes(self) -> int:
        """Bytes anchors and pinned nodes still hold (the sweep releases a node's bookkeeping
        once it has processed it, so those past the target are gone)."""
        return self.anchors.held_bytes() + self.segments.pinned_bytes_held()
