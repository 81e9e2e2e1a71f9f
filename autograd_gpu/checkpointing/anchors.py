"""AUTO's anchors: outputs held on purpose so that replays can start from them.

An anchor is held by the first node that reads it (or by its own node), so the sweep frees it as
soon as it has passed every node that replays from it. When AUTO falls back to spacing anchors
(not even one node's saved values fit next to them), they are spaced ``stride`` ops apart within
a cap; the stride doubles and every other anchor is freed when they would exceed it.
"""

from __future__ import annotations

import weakref

from .records import Rec

__all__ = ["Anchors"]


class Anchors:
    """The anchors one AUTO policy holds, their bytes, and the fallback's spacing."""

    def __init__(self, stats: dict):
        self.stats = stats
        self.entries: list = []  # (weakref to the holder, weakref to the node, bytes)
        self.bytes = 0
        self.stride = 1  # the fallback's anchor spacing, in ops
        self.last = -(1 << 60)  # position of the latest anchor

    def add(self, node, out, holder=None) -> None:
        """Keep ``node``'s output for replays: in its own record, or in ``holder``'s (a
        consumer, so the sweep frees it as soon as it has passed every node that reads it)."""
        rec = node.extra
        if rec.anch or out is None:
            return
        if holder is None or holder is node or rec.wout is None:
            rec.value = out
            holder = node
        else:
            holder.extra.hold += (out,)
        rec.anch = True
        rec.counted = True
        self.bytes += rec.nbytes
        self.entries.append((weakref.ref(holder), weakref.ref(node), rec.nbytes))
        if rec.pos > self.last:
            self.last = rec.pos
        self.stats["anchors"] += 1

    def space(self, node, rec, out, cap) -> None:
        """The fallback: anchor ``node`` if it is ``stride`` ops past the last anchor and fits
        under ``cap`` (or is two strides past it: then thin the others), and keep the anchors
        under ``cap``."""
        if rec.pos - self.last >= self.stride and self.bytes + rec.nbytes <= cap:
            self.add(node, out)
        elif rec.pos - self.last >= 2 * self.stride and rec.nbytes <= cap:
            self.add(node, out)  # full: make room by doubling the stride
        while self.entries and self.bytes > cap:
            self.thin(cap)

    def start_spacing(self, cap) -> None:
        """Enter the fallback: the stride starts at the closest spacing of the anchors placed so
        far, thinned to fit ``cap``."""
        pos = sorted(n.extra.pos for n in self.nodes())
        self.stride = max(1, min((b - a for a, b in zip(pos, pos[1:])), default=1))
        while self.entries and self.bytes > cap:
            self.thin(cap)

    def nodes(self) -> list:
        out = []
        for _, nref, _ in self.entries:
            n = nref()
            if n is not None and type(n.extra) is Rec and n.extra.anch:
                out.append(n)
        return out

    def thin(self, cap) -> None:
        """Double the stride and free the anchors that no longer fit the spacing or ``cap``."""
        self.stride *= 2
        live = []
        for entry in self.entries:
            h, n = entry[0](), entry[1]()
            if h is not None and n is not None and type(n.extra) is Rec and n.extra.anch:
                live.append((n.extra.pos, entry, h, n))
        live.sort(key=lambda t: t[0])
        kept, last, total = [], -(1 << 60), 0
        for pos, entry, h, n in live:
            r = n.extra
            if pos - last >= self.stride and total + r.nbytes <= cap:
                kept.append(entry)
                last = pos
                total += r.nbytes
                continue
            v = r.output()
            r.anch = False
            if h is n:
                r.value = None
            elif type(h.extra) is Rec:
                h.extra.hold = tuple(x for x in h.extra.hold if x is not v)
        self.entries, self.bytes = kept, total
        self.last = last
        self.stats["anchors"] = len(kept)

    def held_bytes(self) -> int:
        """Bytes of the anchors still held: the sweep releases a node's bookkeeping
        (``node.extra``) once it has processed it, so anchors past the target are gone."""
        total = 0
        for href, _, nb in self.entries:
            h = href()
            if h is not None and h.extra is not None:
                total += nb
        return total
