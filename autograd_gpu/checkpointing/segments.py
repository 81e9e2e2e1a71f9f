"""AUTO's segments: recorded nodes grouped so that each group restores in one replay.

The open segment keeps its saved values while they fit the budget. When the next node does not
fit, the oldest nodes of the open segment close (at least a quarter of what it holds): they drop
their saved values and join the latest closed segment while the two still restore in one replay
under the budget (the replay runs from that segment's anchors, so joining adds no anchor); when
it is full they start the next closed segment, whose replay starts become anchors. In the sweep
one replay from its anchors restores a whole closed segment, and the open segment, never closed,
is not replayed at all. docs/checkpointing.md explains why this is the best a schedule that
replays each op at most once can do on a chain.
"""

from __future__ import annotations

import weakref

from ..ops.graph import CONST, OUTPUT
from .records import PARENT, Rec, alive, anchor_value, anchored, droppable_bytes, nbytes
from .replay import segment_bytes

__all__ = ["Segments", "new_bytes", "charge"]


def new_bytes(node, rec, ext) -> int:
    """Bytes the node's saved values add to what the open segment is charged for."""
    total = 0
    for s, code in zip(node.saved or (), node.saved_map):
        if code == OUTPUT:
            total += 0 if rec.counted else nbytes(s)
        elif code == CONST:
            total += nbytes(s)
        elif ext[code] is PARENT and not node.parents[code].extra.counted:
            total += nbytes(s)
    return total


def charge(node, rec, ext) -> None:
    """Mark the graph values the node saves as charged (counted once)."""
    for code in node.saved_map:
        if code == OUTPUT:
            rec.counted = True
        elif code >= 0 and ext[code] is PARENT:
            node.parents[code].extra.counted = True


class Segments:
    """The open and the latest closed segment of one AUTO policy, and the nodes it pinned.
    ``owner`` is a weak reference to the policy (its nodes are the ones whose records name it);
    ``anchors`` its ``Anchors``."""

    def __init__(self, owner, anchors, stats):
        self.owner = owner
        self.anchors = anchors
        self.stats = stats
        self.held = 0  # bytes kept by the open segment's saved values
        self.nodes: list = []  # weakrefs to the nodes of the open segment
        self.closed: list = []  # weakrefs to the nodes of the latest closed segment
        self.closed_avail: list = []  # those whose outputs its replay computes
        self.pinned: list = []  # (weakref, bytes): nodes that keep saved values no replay of
        # their segment could rebuild (a dropout's mask whose input is gone)
        self.pin_bytes = 0

    def fits(self, new, budget, base) -> bool:
        """Whether ``new`` more bytes of saved values fit next to what is held and ``base``
        (the reserve and the bookkeeping)."""
        return self.anchors.bytes + self.pin_bytes + self.held + new + base <= budget

    def keep(self, node, rec, ext, new) -> None:
        """``node`` joins the open segment with its saved values (``new`` bytes)."""
        self.held += new
        rec.charged = new
        charge(node, rec, ext)
        self.nodes.append(weakref.ref(node))

    def open_nodes(self) -> list:
        owner = self.owner()
        out = []
        for ref in self.nodes:
            n = ref()
            if n is not None and type(n.extra) is Rec and n.extra.policy is owner:
                out.append(n)
        return out

    def pinned_bytes_held(self) -> int:
        """Bytes of pinned nodes whose saved values the sweep has not released yet."""
        total = 0
        for ref, nb in self.pinned:
            n = ref()
            if n is not None and n.extra is not None and n.saved is not None:
                total += nb
        return total

    def slide(self, node, rec, ext, budget, base) -> bool:
        """``node`` does not fit: close the oldest nodes of the open segment instead of all of
        it. They join the latest closed segment while the two still restore in one replay under
        the budget (the replay then starts from that segment's anchors, so no anchor is added);
        when that segment is full they start the next one. Merges close at least a quarter of
        what the open segment holds, so that this runs once per several nodes. Returns whether
        ``node`` fits now."""
        for _ in range(16):
            new = new_bytes(node, rec, ext)
            if self.fits(new, budget, base):
                return True
            seg = self.open_nodes()
            if len(seg) < 2:
                return False
            fixed = self.anchors.bytes + self.pin_bytes + base
            over = fixed + self.held + new - budget
            merge = bool(self.closed)
            # a new segment costs an anchor where it starts (about one output)
            want = max(over, self.held // 4) if merge else over + seg[0].extra.nbytes
            chunk, freed = [], 0
            for n in seg[:-1]:
                chunk.append(n)
                freed += n.extra.charged
                if freed >= want:
                    break
            if merge:
                closed = [n for n in (ref() for ref in self.closed) if n is not None]
                while chunk and fixed + segment_bytes(closed + chunk, anchor_value,
                                                      dropping=set(chunk)) > budget:
                    # the two would not restore in one replay: take less
                    freed -= chunk.pop().extra.charged
                if freed < over:  # the closed segment is full: the next one starts here
                    self.closed = []
                    continue
            elif freed < over:
                return False
            self._close_oldest(chunk, seg[len(chunk):], merge, freed)
        return False

    def _close_oldest(self, chunk, rest, merge, freed) -> None:
        """Close ``chunk`` (the oldest open nodes), joining the latest closed segment when
        ``merge``; ``rest`` stays open."""
        before = [n for n in (ref() for ref in self.closed) if n is not None] if merge else []
        avail = {n for n in (ref() for ref in self.closed_avail) if n is not None} if merge \
            else set()
        avail = self._close(chunk, avail)
        self.nodes = [weakref.ref(n) for n in rest]
        self.held -= freed
        members = set(chunk)
        for n in rest:  # values the closed nodes were charged for that open nodes still save
            r = n.extra
            if any(e is PARENT and p in members for p, e in zip(n.parents, r.ext)):
                add = new_bytes(n, r, r.ext)
                charge(n, r, r.ext)
                r.charged += add
                self.held += add
        self.closed = [weakref.ref(n) for n in before + chunk]
        self.closed_avail = [weakref.ref(n) for n in avail]

    def close_all(self, cur, ext) -> None:
        """``cur`` does not fit next to the open segment: the segment's nodes drop their saved
        values (the sweep restores them with one replay) and the values that replay starts from
        become anchors. ``cur`` starts the next segment."""
        seg = self.open_nodes()
        self.nodes = []
        self.closed_avail = [weakref.ref(n) for n in self._close(seg, set())]
        self.closed = [weakref.ref(n) for n in seg]
        self.held = 0
        # the next segment's first op: when its own restore would need its inputs (it saves a
        # mask, or neither its output nor the inputs it reads), keep them now; otherwise what
        # it saves will serve as the anchors when its segment closes
        codes = cur.saved_map
        lazy = CONST not in codes and (OUTPUT in codes or all(
            i in codes for i, e in enumerate(ext) if e is PARENT))
        if not lazy:
            for p, e in zip(cur.parents, ext):
                if e is PARENT and not anchored(p) and alive(p):
                    self.anchors.add(p, p.extra.output(), holder=cur)

    def _close(self, seg, avail) -> set:
        """Drop the saved values of ``seg`` (open nodes, in recording order) and anchor what its
        replay starts from. ``avail``: nodes of an earlier closed segment whose outputs its
        replay computes (the two segments then restore together). Returns ``avail`` with the
        nodes of ``seg`` whose outputs a replay computes or finds."""
        members = set(seg)
        read = set()  # segment nodes whose output a later segment node reads
        for n in seg:
            for p, e in zip(n.parents, n.extra.ext):
                if e is PARENT and p in members:
                    read.add(p)
        avail = set(avail)  # outputs the replay of the segment computes or finds
        pinned: set = set()
        for n in seg:
            if self._startable(n, avail):
                avail.add(n)
                continue
            self._keep_known(n, avail, pinned)
            r = n.extra
            if n in read and not r.anch:
                self.anchors.add(n, r.output())
            if r.anch:
                avail.add(n)
        for n in seg:
            r = n.extra
            if r.keep and n not in pinned and droppable_bytes(n, r.ext):
                r.keep = False
                n.saved = None
                self.stats["dropped"] += 1
            for p, e in zip(n.parents, r.ext):  # outputs charged to the segment are released
                pr = p.extra if e is PARENT else None
                if type(pr) is Rec and not pr.anch:
                    pr.counted = False
            if not r.anch:
                r.counted = False
        return avail

    def _startable(self, n, avail) -> bool:
        """Whether a replay of the segment can run ``n``: every input it reads from the graph
        is computed by the replay, anchored, or alive (then anchored now, held by ``n``)."""
        missing = [p for p, e in zip(n.parents, n.extra.ext)
                   if e is PARENT and p not in avail and not anchored(p)]
        if missing and all(alive(p) for p in missing):
            for p in missing:  # the replay starts from them; n keeps them alive
                self.anchors.add(p, p.extra.output(), holder=n)
            missing = []
        return not missing

    def _keep_known(self, n, avail, pinned) -> None:
        """An input of ``n`` is gone (the tanh that starts the segment read a sum nobody keeps):
        its restore must not need its forward, and its consumers start from its output. A node
        that saves a constant (a mask) keeps its saved values (pinned); otherwise what it saves
        stays known (its output and saved inputs become anchors)."""
        r = n.extra
        codes = n.saved_map
        droppable = droppable_bytes(n, r.ext) if r.keep else 0
        if droppable and CONST in codes:  # a mask: n keeps its saved values
            pinned.add(n)
            self.pin_bytes += droppable
            self.pinned.append((weakref.ref(n), droppable))
        elif droppable:
            for code in codes:  # what it saves stays known: its output, its saved inputs
                if code == OUTPUT:
                    self.anchors.add(n, r.output())
                elif code >= 0 and r.ext[code] is PARENT:
                    p = n.parents[code]
                    if p not in avail and not anchored(p):
                        self.anchors.add(p, p.extra.output(), holder=n)
