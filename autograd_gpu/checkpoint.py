"""Gradient checkpointing: trade recomputation for activation memory, decided on the tape.

A tape given a ``CheckpointConfig`` decides, as each op is recorded, whether the node keeps its
saved values (the arrays its vjp needs) or drops them at once. A dropped node keeps only what is
needed to replay it: references to its inputs that do not come from the recorded graph (watched
inputs, weights, Python numbers) and its parent nodes. When the reverse sweep reaches a dropped
node it calls ``node.extra.restore(node)``, which replays ``op.forward(bk, *inputs, **params)``
along the recorded ops from the nearest kept values. Random ops carry their seed in their params
(``ag.dropout`` draws it before recording), so a replay reproduces the same masks bit for bit.

Kept values are found by identity, so no array is stored twice: a node's output is known while
something keeps it alive (a kept node's saved tuple, an anchor, the user's own tensor), tracked
with a weak reference; anchors are outputs the planner holds on purpose. Replays free every
intermediate as soon as its last consumer in the replay has run.

Strategies (``CheckpointStrategy``; strings such as ``"block"`` are accepted):

* NONE: keep everything (no bookkeeping at all).
* BLOCK: keep the saved values of every ``checkpoint_every_n``-th recorded op; the others are
  dropped and restored a segment at a time (one replay from the nearest kept values restores the
  saved values of every dropped node on the way, which the sweep then frees one by one). Kept
  saved values that are graph values (a tanh's output, a matmul's input) are the replay starts;
  where they leave more than ``2 * checkpoint_every_n`` ops without one (a kept dropout saves
  only its mask), the kept node also keeps its output, so no replay is longer than that.
* SELECTIVE: keep the saved values of ops whose cost estimate (``op.estimate_cost``, in flops) is
  at least ``min_compute_cost`` per output element (a matmul with an inner dimension of 50 or
  more at the default 100, a conv; elementwise ops cost 1 to 12) and drop the cheap ones, which
  are replayed without re-running an expensive op. An expensive op's output is held (an anchor)
  only while a dropped cheap node may replay from it: a dropped node whose saved values are its
  own output gets them back for free when a later kept node saves that output (a tanh before a
  matmul), and at the next expensive op every anchor that no dropped node needs any more is let
  go. So a plain MLP keeps what NONE keeps and replays nothing, while a dropout's mask or a GELU's
  input is rebuilt from the anchor. A cheap value whose replay would need more than
  ``_SEL_MAX_STARTS`` anchors (a long residual stream) is anchored itself, with its saved values.
  (A cheap op recorded after that next expensive op that reads a released output directly, and
  is dropped, replays the expensive op if the output has died by then: correct, only slower.)
* FULL: keep only the inputs; the first restore replays the whole recorded forward. This bounds
  the memory held between the forward and the backward, not the peak of the backward.
* AUTO: keep peak activation memory under ``memory_budget_mb`` at little recomputation.

AUTO, and why. The memory must be freed during the forward (otherwise the peak is NONE's), but
the length of the recorded chain is unknown until the forward ends, so AUTO plans as it goes, in
greedy segments (sizes below in units of one activation):

1. The open segment keeps its saved values while the anchors, the segment's saved values, the
   new node's and a reserve for the step in flight stay under the budget. A big budget keeps
   everything: no recomputation at all.
2. When the next node does not fit, the oldest nodes of the open segment close (at least a
   quarter of what it holds, so this happens once per several nodes): they drop their saved
   values and join the latest closed segment, as long as the two still restore in one replay
   under the budget (the replay runs from that segment's anchors, so joining adds no anchor).
   When it is full, they start the next closed segment, and the values its replay starts from
   become anchors (on a chain, the input the first of them saved, or the output of a tanh among
   them, which it already held). If that cannot make room either, the whole open segment closes
   and the node starts a new one. In the sweep one replay from its anchors restores a whole
   closed segment, and the open segment, never closed, is not replayed at all: each op is
   recomputed at most once.
3. Why: restoring segment j holds the anchors below it and the segment's own values, so with M
   units left after the reserve, segment j can hold about M - j units and a chain of L units
   fits when M^2 / 2 >= L. The peak is about sqrt(2L) units (plus the reserve) instead of the
   2 sqrt(L) of evenly spaced anchors; no schedule that recomputes each op at most once does
   better on a chain, since every segment is as long as the memory at its place allows. Closing
   the oldest nodes rather than the whole open segment keeps the open segment, the part never
   replayed, as large as the budget allows when the forward ends: on the 48-layer benchmark
   chain AUTO at half of NONE's memory replays 87 ops instead of 117 (the first version closed
   whole segments, whose last was often short), at 80% 54 instead of 105.
4. An anchor is held by the first node that reads it (or by its own node), so the sweep frees it
   as soon as it has passed every node that replays from it: by the time it restores the
   segment that produced a value, the next segment's anchor on that value is gone. A node whose
   input no replay of its segment can rebuild restores its saved values from what it keeps (a
   tanh from its anchored output, without running anything); one that saves a constant (a
   dropout's mask) keeps its saved values.
5. The reserve is what no saved value accounts for: in the sweep, the cotangent in flight and
   what the rule allocates (two output-sized arrays at once: ``act_grad`` writes its steps into
   one) or, during a restore, that cotangent and the replay's current input and output (three,
   the most; while a step is in flight the replay has not yet made the last value it restores,
   and that unit covers an output the caller still holds, such as the last activation); in the
   forward, an op's inputs and output. AUTO takes max(3 x output, output + inputs) of each op,
   plus the saved values of the node after one restored by a replay (the tape releases them only
   after that restore), the largest seen so far, and counts its own bookkeeping (``_BOOK`` bytes
   a node).
6. Only when not even one node fits next to the anchors (the chain is longer than about M^2 / 2
   units) does AUTO fall back: every later node drops its saved values, anchors are spaced
   ``stride`` ops apart within half of the memory left (the stride doubles and every other
   anchor is freed when they would exceed it), and a restore whose segment does not fit in one
   replay uses the memory left (budget - reserve - anchors still held) as ``f`` slots for
   temporary checkpoints, placed by the dynamic program of optimal checkpointing for a chain
   (T(1, f) = 1, T(n, 0) = n(n+1)/2, T(n, f) = min_j j + T(n-j, f-1) + T(j, f): advance j steps,
   keep a checkpoint, reverse the tail with one slot fewer, then the head with the slot back;
   the same recursion revolve solves in closed form, but a DP also handles the case where slots
   run out part way and is easy to audit). Ops are then recomputed several times.
7. A training loop records the same graph every step, so AUTO also plans from the previous
   step. When a step's graph was a chain (every op reads only the op recorded just before it,
   and no op saves an output-sized constant such as a dropout mask), its first restore plans the
   chain offline for the config: the chain's states are the outputs some rule saves (a tanh's,
   which the next matmul saves too), a step runs from one state to the next, and the outputs to
   keep are the first-sweep checkpoints of the exact DP G(n, m) = min_j G(n - j, m - 1) + F(j, m)
   (the forward keeps a state j steps in; the rest is planned with one slot fewer; the first j
   steps are reversed last with every slot back, F = T - n of the DP of point 6), with m the
   states that fit next to the reserve. ``bench/checkpoint_bound.py`` tabulates it. The next
   recording with the same config (``config._auto_chain_plan``) and budget keeps exactly those
   outputs (anchors) and drops every saved value, and the sweep restores as in point 6, while
   its ops match the plan's (op name, output size, saved constants); at the first op that
   differs the plan is forgotten and the online planner goes on from the anchors placed so far.
   A plan is followed only while it beats the online planner: predicted, then as measured by
   the first step that followed it. On the 48-layer benchmark chain the second step replays 117
   ops instead of 199 at 28% of NONE's memory, 150 instead of 220 at 25%, 393 instead of 500 at
   18%, and 114 instead of 117 at 30%.

The trade-off: optimal offline schedules (revolve, Checkmate) need the whole graph before the
forward runs; AUTO sees the first step op by op, so it cannot balance segments against the end
of the chain (its first segments are the longest, and weight gradients, which the sweep
allocates as it goes, come on top of them at the end of the sweep), but it never holds more than
the budget in the forward either. From the second step a chain gets the offline plan (point 7);
other graphs keep the online planner.

A budget below the working set of one step (an op's output, saved values, inputs and a
cotangent in flight) is impossible: the tape raises ``CheckpointBudgetError`` when such an op is
recorded, naming the op and the minimum.

Also ``checkpoint(fn, *args)``: an explicit recomputed segment, recorded as one node whose
forward runs ``fn`` without recording and whose vjp re-runs ``fn`` under a fresh tape.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from .backend import backend_of_array
from .errors import ArgumentError, AutogradError, TapeError, describe
from .ops.context import STATE, Suspend, pop_hook, push_hook
from .ops.graph import CONST, OUTPUT
from .ops.registry import _forward, apply, defop
from .options import OptionEnum
from .tape import _TAPE_INIT_HOOKS, GradientTape
from .tensor import Tensor, Variable

__all__ = ["CheckpointConfig", "CheckpointStrategy", "CheckpointBudgetError", "checkpoint",
           "checkpoint_stats"]

_MB = 1024.0 * 1024.0
_BOOK = 320  # AUTO: bytes of bookkeeping a recorded node costs (its _Rec, weak references)
_SEL_MAX_STARTS = 8  # SELECTIVE: anchors one replay may start from before a value is anchored
_NO_STARTS = frozenset()  # one shared empty set (each frozenset() call builds a new one)


class CheckpointStrategy(OptionEnum):
    NONE = "none"
    SELECTIVE = "selective"
    BLOCK = "block"
    FULL = "full"
    AUTO = "auto"



class CheckpointBudgetError(AutogradError, MemoryError):
    """AUTO checkpointing cannot keep the activation memory under ``memory_budget_mb``."""


@dataclass
class CheckpointConfig:
    """What a tape keeps and what it recomputes (see the module docstring)."""

    strategy: CheckpointStrategy = CheckpointStrategy.SELECTIVE
    checkpoint_every_n: int = 3
    min_compute_cost: float = 100.0
    memory_budget_mb: float | None = None

    def __post_init__(self):
        self.strategy = CheckpointStrategy.parse(self.strategy, "CheckpointConfig", "strategy")
        n = self.checkpoint_every_n
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ArgumentError(
                f"CheckpointConfig: argument 'checkpoint_every_n' expected an int >= 1, got {n!r}"
            )
        c = self.min_compute_cost
        # written so that NaN fails: every comparison with NaN is false
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not c >= 0:
            raise ArgumentError(
                f"CheckpointConfig: argument 'min_compute_cost' expected a number >= 0, got {c!r}"
            )
        b = self.memory_budget_mb
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))
                              or not 0 < b < float("inf")):
            raise ArgumentError(
                f"CheckpointConfig: argument 'memory_budget_mb' expected a finite number > 0 or "
                f"None, got {b!r}"
            )
        if self.strategy is CheckpointStrategy.AUTO and b is None:
            raise ArgumentError(
                "CheckpointConfig: strategy AUTO expected 'memory_budget_mb' (a number of MB), "
                "got None"
            )


def _as_config(cfg) -> CheckpointConfig | None:
    if cfg is None or isinstance(cfg, CheckpointConfig):
        return cfg
    if isinstance(cfg, (str, CheckpointStrategy)):
        return CheckpointConfig(strategy=cfg)
    raise ArgumentError(
        f"GradientTape: argument 'checkpoint' expected a CheckpointConfig, a strategy or None, "
        f"got {describe(cfg)}"
    )


# ---------------------------------------------------------------------------------------------
# per-node bookkeeping


class _Parent:
    """Marks an input that comes from a node this plan recorded (replayed, not referenced)."""

    __slots__ = ()

    def __repr__(self):
        return "<parent>"


_PARENT = _Parent()


class _Rec:
    """``node.extra`` of a node recorded by a checkpointing tape."""

    __slots__ = ("plan", "pos", "ext", "value", "wout", "keep", "counted", "nbytes", "hold",
                 "anch", "starts", "need", "charged")

    def __init__(self, plan, pos, ext, out):
        self.plan = plan
        self.pos = pos  # recording order within the plan (a topological order)
        self.ext = ext  # per input: _PARENT, or the value itself (array, number, None)
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
        # SELECTIVE: the anchors (their _Recs) a replay of this output starts from, and, on an
        # anchor, how many dropped nodes may replay from it
        self.starts = _NO_STARTS
        self.need = 0

    def output(self):
        if self.value is not None:
            return self.value
        w = self.wout
        return None if w is None else w()

    def restore(self, node) -> None:
        self.plan.restore(node)


def _anchor_value(p):
    """Node ``p``'s output if it is an anchor (known to every replay), else None."""
    r = p.extra
    return r.output() if type(r) is _Rec and r.anch else None


def _anchored(p) -> bool:
    """Whether node ``p``'s output is an anchor (AUTO)."""
    r = p.extra
    return type(r) is _Rec and r.anch


def _alive(p) -> bool:
    r = p.extra
    return type(r) is _Rec and r.output() is not None


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _nbytes(x) -> int:
    return int(getattr(x, "nbytes", 0)) if hasattr(x, "dtype") else 0


class _Plan:
    """The checkpoint planner of one tape. It never references the tape (no cycles): the tape
    reaches it through its node list, nodes through ``node.extra``."""

    def __init__(self, cfg: CheckpointConfig, tid: int, persistent: bool):
        self.cfg = cfg
        self.strategy = cfg.strategy
        self.tid = tid
        self.persistent = persistent
        self.bk = None
        self.pos = 0
        self.last_known = -1  # BLOCK: position of the latest output a kept node keeps alive
        self.restored: list = []  # weakrefs to dropped nodes a replay filled (persistent tapes)
        self.temp: dict = {}  # AUTO: node -> output, temporary checkpoints of the sweep
        self.stats = {"recorded": 0, "dropped": 0, "anchors": 0, "replayed_ops": 0,
                      "replayed_cost": 0.0, "restores": 0, "replayed_by_op": {}}
        # AUTO
        self.budget = (cfg.memory_budget_mb or 0.0) * _MB
        self.mode = "retain"
        self.held = 0  # bytes kept by the open segment's saved values (retain mode)
        self.book = 0  # the plan's own bookkeeping (_BOOK bytes a node) and data_bytes
        self.data: dict = {}  # id -> bytes: inputs from outside the graph as large as an output
        self.data_bytes = 0
        self.start = self.pos  # the first position of this recording
        self.reserve = 0  # the largest working set of one step seen so far
        self.anchors: list = []  # (weakref to the holder, weakref to the node, bytes)
        self.anchor_bytes = 0
        self.pinned: list = []  # (weakref, bytes): nodes that keep saved values no replay of
        # their segment could rebuild (a dropout's mask whose input is gone)
        self.pin_bytes = 0
        self.stride = 1  # the fallback's anchor spacing, in ops
        self.last_anchor = -(1 << 60)
        self.nodes: list = []  # AUTO: weakrefs to the nodes of the open segment
        self.closed: list = []  # AUTO: weakrefs to the nodes of the latest closed segment
        self.closed_avail: list = []  # AUTO: those whose outputs its replay computes
        self.sel_anchors: list = []  # SELECTIVE: _Recs of the anchors held for now
        # AUTO on a chain: the plan learned from an earlier step with this config (followed
        # while the recording matches it), and this recording's signature (to learn from)
        self.learned = None
        self.sig: list | None = None
        self.chain = True
        self.cur = None
        if self.strategy is CheckpointStrategy.AUTO:
            lp = getattr(cfg, "_auto_chain_plan", None)
            if lp is not None and lp.better(self.budget):
                self.learned = lp
            else:
                self.sig = []

    def restart(self) -> None:
        """Forget the recording state (the tape released its nodes). Nodes recorded before, if
        another tape still holds them, keep replaying through this plan."""
        bk, stats, pos = self.bk, self.stats, self.pos
        self.__init__(self.cfg, self.tid, self.persistent)
        self.bk, self.stats = bk, stats
        self.pos, self.last_known = pos, pos - 1  # positions stay unique across restarts
        self.start = pos

    # ---- recording ---------------------------------------------------------------------------
    def record(self, node, arrs, out) -> None:
        if node.extra is not None:  # another tape's planner owns it
            return
        if self.bk is None:
            self.bk = backend_of_array(out)
        ext = tuple(
            _PARENT if (p is not None and type(p.extra) is _Rec and p.extra.plan is self) else a
            for p, a in zip(node.parents, arrs)
        )
        rec = _Rec(self, self.pos, ext, out)
        self.pos += 1
        node.extra = rec
        self.stats["recorded"] += 1
        droppable = self._droppable(node, ext)
        s = self.strategy
        if s is CheckpointStrategy.BLOCK:
            n = self.cfg.checkpoint_every_n
            keep = (rec.pos + 1) % n == 0
            if keep:
                self._bound_segment(node, rec, out, ext, 2 * n)
        elif s is CheckpointStrategy.SELECTIVE:
            keep = self._selective_record(node, rec, arrs, out, ext, droppable)
        elif s is CheckpointStrategy.FULL:
            keep = False
        else:
            if self.sig is not None or self.learned is not None:
                self._note_chain(node, rec, ext)
            keep = self._auto_record(node, rec, out, ext, droppable)
        if not keep and droppable:
            rec.keep = False
            node.saved = None
            self.stats["dropped"] += 1

    # ---- SELECTIVE ---------------------------------------------------------------------------
    def _selective_record(self, node, rec, arrs, out, ext, droppable) -> bool:
        cost = node.op.estimate_cost(node.out_meta, node.in_meta, node.params)
        if cost >= self.cfg.min_compute_cost * max(1, _size(node.out_meta[0])):
            if node.saved:
                self._undrop_parents(node, arrs, ext)
            self._release_unneeded()
            if OUTPUT in node.saved_map:  # its saved values hold the output: a replay start
                rec.starts = frozenset((rec,))
            else:
                self._sel_anchor(rec, out)
            return True
        starts = _NO_STARTS
        for p, e in zip(node.parents, ext):
            if e is _PARENT:
                ps = p.extra.starts
                if ps and ps is not starts:  # a chain shares one set
                    starts = ps if not starts else starts | ps
        if len(starts) > _SEL_MAX_STARTS:
            # keeps its saved values too: their replay would need all those anchors
            if node.saved:
                self._undrop_parents(node, arrs, ext)
            self._sel_anchor(rec, out)
            return True
        rec.starts = starts
        if droppable:  # record() drops it: each anchor it may replay from must stay
            for a in starts:
                a.need += 1
        return False

    def _sel_anchor(self, rec, out) -> None:
        rec.value = out
        rec.starts = frozenset((rec,))
        self.sel_anchors.append(rec)
        self.stats["anchors"] += 1

    def _undrop_parents(self, node, arrs, ext) -> None:
        """A dropped parent whose only saved value is its output gets it back when this kept
        node saves that same array: holding it costs nothing more, and its restore then needs
        no replay (so neither the anchors it would have replayed from)."""
        for i, (p, e, a) in enumerate(zip(node.parents, ext, arrs)):
            if e is not _PARENT or p.saved is not None:
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
        for r in self.sel_anchors:
            if r.need > 0:
                left.append(r)
            else:
                r.value = None
                self.stats["anchors"] -= 1
        self.sel_anchors = left

    def _bound_segment(self, node, rec, out, ext, limit) -> None:
        """Keep replays short: a kept node whose saved values leave no graph value known within
        the last ``limit`` ops also keeps its output (an anchor)."""
        known = self.last_known
        for code in node.saved_map:
            if code == OUTPUT:
                known = rec.pos
            elif code >= 0 and ext[code] is _PARENT:
                known = max(known, node.parents[code].extra.pos)
        if rec.pos - known >= limit:
            rec.value = out
            known = rec.pos
            self.stats["anchors"] += 1
        self.last_known = known

    @staticmethod
    def _droppable(node, ext) -> int:
        """Bytes the node's saved tuple keeps alive that dropping it could free (values from the
        graph and constants; inputs from outside the graph are kept by their owners anyway)."""
        total, seen = 0, set()
        for s, code in zip(node.saved or (), node.saved_map):
            if (code == OUTPUT or code == CONST or ext[code] is _PARENT) and id(s) not in seen:
                seen.add(id(s))
                total += _nbytes(s)
        return total

    # ---- AUTO: plan as the forward goes ------------------------------------------------------
    def _auto_record(self, node, rec, out, ext, droppable) -> bool:
        parents = {p for p, e in zip(node.parents, ext) if e is _PARENT}  # x * x reads x once
        in_bytes = sum(p.extra.nbytes for p in parents)
        # the working set of one step that no saved value accounts for. While the sweep
        # restores a node it holds that node's cotangent and the replay's latest output and its
        # input (three output-sized arrays, the most); a rule holds the cotangent and its result
        # (two: act_grad writes its steps into one array); the forward, the op's inputs and
        # output (module docstring, point 5)
        work = max(3 * rec.nbytes, rec.nbytes + in_bytes)
        for code in node.saved_map:
            if code >= 0 and ext[code] is _PARENT:
                p = node.parents[code]
                pr = p.extra
                if OUTPUT not in p.saved_map and (not pr.keep or self._droppable(p, pr.ext)):
                    # p (a dropout: it saves a mask) may be restored by a replay while the
                    # sweep still holds this node's saved values (the tape releases them after
                    # the next node's restore), p's output among them
                    work = max(work, 3 * pr.nbytes + droppable)
        if work > self.reserve:
            self.reserve = work
        self.book += _BOOK
        for e in ext:
            # an input from outside the graph as large as the activations (the batch, not a
            # weight): it stays alive through the step, so it counts against the budget
            if e is not _PARENT and _nbytes(e) >= rec.nbytes > 0 and id(e) not in self.data:
                self.data[id(e)] = _nbytes(e)
                self.data_bytes += _nbytes(e)
                self.book += _nbytes(e)
        if self.reserve + droppable + self.book > self.budget:
            raise CheckpointBudgetError(
                f"checkpoint AUTO: memory_budget_mb={self.cfg.memory_budget_mb} MB is below the "
                f"working set of op '{node.op.name}' (output {node.out_meta[0]} "
                f"{node.out_meta[1]}): {(self.reserve + droppable) / _MB:.3f} MB for its "
                "output, saved values, inputs and a cotangent in flight, plus "
                f"{self.book / _MB:.3f} MB for the batch the graph reads and the bookkeeping of "
                "the ops recorded. No schedule can go below that; raise the budget or shrink "
                "the batch"
            )
        if self.learned is not None:
            lp = self.learned
            k = rec.pos - self.start
            if k < len(lp.sig) and lp.sig[k] == self.cur:
                if k in lp.keep:
                    self._anchor(node, out)
                return False
            # the graph differs from the one the plan was made for: forget the plan, and go on
            # with the online planner from here (its accounting already holds the anchors); a
            # graph that differs from its first op on (another batch size) is learned instead
            self.learned = None
            self.cfg._auto_chain_plan = None
            if k == 0:
                self.sig = [self.cur]
        if self.mode == "retain":
            new = self._new_bytes(node, rec, ext)
            if self._fits(new):
                self._keep(node, rec, ext, new)
                return True
            if self.nodes and self._slide(node, rec, ext):
                self._keep(node, rec, ext, self._new_bytes(node, rec, ext))
                return True
            if self.nodes:
                self._close_segment(node, ext)
                new = self._new_bytes(node, rec, ext)
                if self._fits(new):
                    self._keep(node, rec, ext, new)
                    return True
            self._to_fallback()  # not even this one node fits next to the anchors
        if rec.pos - self.last_anchor >= self.stride and \
                self.anchor_bytes + rec.nbytes <= self._anchor_cap():
            self._anchor(node, out)
        elif rec.pos - self.last_anchor >= 2 * self.stride and rec.nbytes <= self._anchor_cap():
            self._anchor(node, out)  # full: make room by doubling the stride
        while self.anchors and self.anchor_bytes > self._anchor_cap():
            self._thin()
        return False

    def _note_chain(self, node, rec, ext) -> None:
        """Note this node in the recording's signature (op, output bytes, bytes of saved
        constants), and whether the graph is still a chain: every node reads only the node
        recorded just before it (the first reads none)."""
        codes = node.saved_map
        const = sum(_nbytes(v) for v, code in zip(node.saved or (), codes) if code == CONST)
        saves_in = any(code >= 0 and ext[code] is _PARENT for code in codes)
        self.cur = (node.op.name, rec.nbytes, const, OUTPUT in codes, saves_in)
        if self.sig is None:
            return
        self.sig.append(self.cur)
        parents = [p for p, e in zip(node.parents, ext) if e is _PARENT]
        if (not parents and rec.pos != self.start) or any(
                p.extra.pos != rec.pos - 1 for p in parents):
            self.chain = False

    def _learn(self) -> None:
        """The forward is over (the sweep's first restore): if the graph was a chain, plan its
        checkpoints offline for the next step with this config (module docstring, point 7)."""
        sig, self.sig = self.sig, None
        if not self.chain or len(sig) < 4:
            return
        n = len(sig)
        unit = max(e[1] for e in sig)
        if unit <= 0 or any(e[2] * 8 > unit for e in sig):
            return  # a saved constant as large as an output (a dropout's mask): not counted
        # the chain's states: outputs some rule saves (a tanh's, the matmul input after it),
        # and the last output; a step runs from one state to the next (a layer's matmul, bias
        # add and tanh), and reversing it needs the states at both ends
        ends = [k for k in range(n) if sig[k][3] or (k + 1 < n and sig[k + 1][4]) or k == n - 1]
        # kept states at once, besides the live one and the step in flight (the reserve)
        m = int((self.budget - self.reserve - self.book - self.pin_bytes) // unit) - 1
        m = min(m, len(ends))
        if m < 1 or len(ends) < 4 or len(ends) ** 2 * m > _CHAIN_DP_MAX:
            return
        keep, steps = _chain_plan(len(ends), m)
        self.cfg._auto_chain_plan = _ChainPlan(
            self.budget, tuple(sig), frozenset(ends[q] for q in keep),
            round(steps * n / len(ends)), self.stats)

    def _fits(self, new) -> bool:
        return self.anchor_bytes + self.pin_bytes + self.held + new + self.reserve + \
            self.book <= self.budget

    def _keep(self, node, rec, ext, new) -> None:
        self.held += new
        rec.charged = new
        self._charge(node, rec, ext)
        self.nodes.append(weakref.ref(node))

    def _open_nodes(self) -> list:
        out = []
        for ref in self.nodes:
            n = ref()
            if n is not None and type(n.extra) is _Rec and n.extra.plan is self:
                out.append(n)
        return out

    def _slide(self, node, rec, ext) -> bool:
        """``node`` does not fit: close the oldest nodes of the open segment instead of all of
        it (module docstring, points 2 and 3). They join the latest closed segment while the
        two still restore in one replay under the budget (the replay then starts from that
        segment's anchors, so no anchor is added); when that segment is full they start the
        next one.
        Merges close at least a quarter of what the open segment holds, so that this runs once
        per several nodes. Returns whether ``node`` fits now."""
        for _ in range(16):
            new = self._new_bytes(node, rec, ext)
            if self._fits(new):
                return True
            seg = self._open_nodes()
            if len(seg) < 2:
                return False
            fixed = self.anchor_bytes + self.pin_bytes + self.reserve + self.book
            over = fixed + self.held + new - self.budget
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
                while chunk and fixed + _segment_bytes(closed + chunk, _anchor_value,
                                                       dropping=set(chunk)) > self.budget:
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
            if any(e is _PARENT and p in members for p, e in zip(n.parents, r.ext)):
                add = self._new_bytes(n, r, r.ext)
                self._charge(n, r, r.ext)
                r.charged += add
                self.held += add
        self.closed = [weakref.ref(n) for n in before + chunk]
        self.closed_avail = [weakref.ref(n) for n in avail]

    def _new_bytes(self, node, rec, ext) -> int:
        total = 0
        for s, code in zip(node.saved or (), node.saved_map):
            if code == OUTPUT:
                total += 0 if rec.counted else _nbytes(s)
            elif code == CONST:
                total += _nbytes(s)
            elif ext[code] is _PARENT and not node.parents[code].extra.counted:
                total += _nbytes(s)
        return total

    @staticmethod
    def _charge(node, rec, ext) -> None:
        for code in node.saved_map:
            if code == OUTPUT:
                rec.counted = True
            elif code >= 0 and ext[code] is _PARENT:
                node.parents[code].extra.counted = True

    def _close_segment(self, cur, ext) -> None:
        """``cur`` does not fit next to the open segment: the segment's nodes drop their saved
        values (the sweep restores them with one replay) and the values that replay starts from
        become anchors. ``cur`` starts the next segment."""
        seg = self._open_nodes()
        self.nodes = []
        self.closed_avail = [weakref.ref(n) for n in self._close(seg, set())]
        self.closed = [weakref.ref(n) for n in seg]
        self.held = 0
        # the next segment's first op: when its own restore would need its inputs (it saves a
        # mask, or neither its output nor the inputs it reads), keep them now; otherwise what
        # it saves will serve as the anchors when its segment closes
        codes = cur.saved_map
        lazy = CONST not in codes and (OUTPUT in codes or all(
            i in codes for i, e in enumerate(ext) if e is _PARENT))
        if not lazy:
            for p, e in zip(cur.parents, ext):
                if e is _PARENT and not _anchored(p) and _alive(p):
                    self._anchor(p, p.extra.output(), holder=cur)

    def _close(self, seg, avail) -> set:
        """Drop the saved values of ``seg`` (open nodes, in recording order) and anchor what its
        replay starts from. ``avail``: nodes of an earlier closed segment whose outputs its
        replay computes (the two segments then restore together). Returns ``avail`` with the
        nodes of ``seg`` whose outputs a replay computes or finds."""
        members = set(seg)
        read = set()  # segment nodes whose output a later segment node reads
        for n in seg:
            for p, e in zip(n.parents, n.extra.ext):
                if e is _PARENT and p in members:
                    read.add(p)
        avail = set(avail)  # outputs the replay of the segment computes or finds
        pinned: set = set()
        for n in seg:
            r = n.extra
            missing = [p for p, e in zip(n.parents, r.ext)
                       if e is _PARENT and p not in avail and not _anchored(p)]
            if missing and all(_alive(p) for p in missing):
                for p in missing:  # the replay starts from them; n keeps them alive
                    self._anchor(p, p.extra.output(), holder=n)
                missing = []
            if not missing:
                avail.add(n)
                continue
            # an input of n is gone (the tanh that starts the segment read a sum nobody keeps):
            # n's restore must not need n's forward, and its consumers start from its output
            codes = n.saved_map
            droppable = self._droppable(n, r.ext) if r.keep else 0
            if droppable and CONST in codes:  # a mask: n keeps its saved values
                pinned.add(n)
                self.pin_bytes += droppable
                self.pinned.append((weakref.ref(n), droppable))
            elif droppable:
                for code in codes:  # what it saves stays known: its output, its saved inputs
                    if code == OUTPUT:
                        self._anchor(n, r.output())
                    elif code >= 0 and r.ext[code] is _PARENT:
                        p = n.parents[code]
                        if p not in avail and not _anchored(p):
                            self._anchor(p, p.extra.output(), holder=n)
            if n in read and not r.anch:
                self._anchor(n, r.output())
            if r.anch:
                avail.add(n)
        for n in seg:
            r = n.extra
            if r.keep and n not in pinned and self._droppable(n, r.ext):
                r.keep = False
                n.saved = None
                self.stats["dropped"] += 1
            for p, e in zip(n.parents, r.ext):  # outputs charged to the segment are released
                pr = p.extra if e is _PARENT else None
                if type(pr) is _Rec and not pr.anch:
                    pr.counted = False
            if not r.anch:
                r.counted = False
        return avail

    def _anchor_cap(self) -> float:
        return max(0.0, (self.budget - self.reserve - self.pin_bytes - self.book) / 2.0)

    def _anchor(self, node, out, holder=None) -> None:
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
        self.anchor_bytes += rec.nbytes
        self.anchors.append((weakref.ref(holder), weakref.ref(node), rec.nbytes))
        if rec.pos > self.last_anchor:
            self.last_anchor = rec.pos
        self.stats["anchors"] += 1

    def _to_fallback(self) -> None:
        """Not even one node fits next to the anchors: from here on every node drops its saved
        values, anchors are spaced ``stride`` ops apart within half of the memory left, and the
        sweep's restores place temporary checkpoints (the DP)."""
        self.mode = "anchor"
        self.nodes = []
        pos = sorted(n.extra.pos for n in self._anchor_nodes())
        self.stride = max(1, min((b - a for a, b in zip(pos, pos[1:])), default=1))
        while self.anchors and self.anchor_bytes > self._anchor_cap():
            self._thin()

    def _anchor_nodes(self) -> list:
        out = []
        for _, nref, _ in self.anchors:
            n = nref()
            if n is not None and type(n.extra) is _Rec and n.extra.anch:
                out.append(n)
        return out

    def _thin(self) -> None:
        """Double the anchor stride and free the anchors that no longer fit the spacing."""
        self.stride *= 2
        live = []
        for entry in self.anchors:
            h, n = entry[0](), entry[1]()
            if h is not None and n is not None and type(n.extra) is _Rec and n.extra.anch:
                live.append((n.extra.pos, entry, h, n))
        live.sort(key=lambda t: t[0])
        kept, last, total = [], -(1 << 60), 0
        for pos, entry, h, n in live:
            r = n.extra
            if pos - last >= self.stride and total + r.nbytes <= self._anchor_cap():
                kept.append(entry)
                last = pos
                total += r.nbytes
                continue
            v = r.output()
            r.anch = False
            if h is n:
                r.value = None
            elif type(h.extra) is _Rec:
                h.extra.hold = tuple(x for x in h.extra.hold if x is not v)
        self.anchors, self.anchor_bytes = kept, total
        self.last_anchor = last
        self.stats["anchors"] = len(kept)

    # ---- the reverse sweep -------------------------------------------------------------------
    def restore(self, target) -> None:
        rec = target.extra
        self.stats["restores"] += 1
        if self.sig is not None:
            self._learn()
        elif self.learned is not None and self.learned.followed is None:
            self.learned.followed = self.stats  # a whole step followed it: judge it by this one
        if self.persistent and self.restored:
            self._redrop(rec.pos)
        if self.temp:
            for n in [n for n in self.temp if n.extra is None or n.extra.pos >= rec.pos]:
                del self.temp[n]
        saved = self._direct(target)
        if saved is not None:  # every saved value is at hand (an anchor, a kept input)
            target.saved = saved
            if self.persistent:
                self.restored.append(weakref.ref(target))
        elif self.strategy is CheckpointStrategy.AUTO:
            self._restore_auto(target)
        else:
            self._run(self._needed(target), target, restore_all=True)

    def _redrop(self, pos) -> None:
        """Persistent tapes: drop again what earlier replays restored above ``pos``."""
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

    def _direct(self, n):
        """The saved values of ``n`` when all of them are known without running anything (its
        output is an anchor, its saved inputs are kept), else None."""
        r = n.extra
        vals = []
        for code in n.saved_map:
            if code == OUTPUT:
                v = r.output()
            elif code == CONST:
                return None
            elif r.ext[code] is _PARENT:
                v = self._known(n.parents[code])
            else:
                vals.append(r.ext[code])
                continue
            if v is None:
                return None
            vals.append(v)
        return tuple(vals)

    def _known(self, p):
        r = p.extra
        v = r.output()
        if v is None and self.temp:
            v = self.temp.get(p)
        return v

    def _needed(self, target) -> list:
        """Nodes to run (in recording order, the target last) to rebuild the target's inputs
        from the nearest kept values."""
        order = [target]
        seen = {target}
        stack = [target]
        while stack:
            n = stack.pop()
            r = n.extra
            for p, e in zip(n.parents, r.ext):
                if e is not _PARENT or p in seen:
                    continue
                pr = p.extra
                if type(pr) is not _Rec:
                    raise TapeError(
                        f"checkpoint: cannot recompute the saved values of op '{target.op.name}': "
                        f"its ancestor op '{p.op.name}' was already released by a gradient() "
                        "call; use persistent=True on the tape that ran first"
                    )
                if self._known(p) is not None:
                    continue
                seen.add(p)
                stack.append(p)
                order.append(p)
        order.sort(key=lambda n: n.extra.pos)
        return order

    def _run(self, order, target, restore_all=False, keep_last=False):
        """Replay ``order``. Restores the target's saved values (and, with ``restore_all``, those
        of every dropped node on the way); with ``keep_last`` returns the last node's output."""
        bk = self.bk
        last = order[-1]
        uses: dict = {}
        members = set(order)
        for n in order:
            for p, e in zip(n.parents, n.extra.ext):
                if e is _PARENT and p in members:
                    uses[p] = uses.get(p, 0) + 1
        vals: dict = {}
        stats = self.stats
        for n in order:
            r = n.extra
            args = []
            for p, e in zip(n.parents, r.ext):
                if e is not _PARENT:
                    args.append(e)
                elif p in vals:
                    args.append(vals[p])
                else:
                    args.append(self._known(p))
            want_out = uses.get(n, 0) > 0 or (keep_last and n is last)
            fill = n.saved is None and (n is target or (restore_all and not r.keep and n.tapes))
            codes = n.saved_map
            out = None
            if fill and not want_out and all(c >= 0 for c in codes):
                saved = tuple(args[c] for c in codes)  # saved values are inputs: no forward
            else:
                out, saved = _forward(n.op, bk, args, n.params, codes)
                stats["replayed_ops"] += 1
                stats["replayed_cost"] += n.op.estimate_cost(n.out_meta, n.in_meta, n.params)
                by_op = stats["replayed_by_op"]
                by_op[n.op.name] = by_op.get(n.op.name, 0) + 1
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
                if e is _PARENT and p in uses:
                    uses[p] -= 1
                    if uses[p] == 0:
                        vals.pop(p, None)
        return vals.get(last) if keep_last else None

    def _restore_auto(self, target) -> None:
        while True:
            order = self._needed(target)
            n = len(order)
            if n == 1:
                break
            # the sweep has released the bookkeeping of the nodes after the target
            book = self.data_bytes + _BOOK * max(0, target.extra.pos - self.start + 1)
            free = self.budget - self.reserve - book - self._held_anchor_bytes() - \
                sum(_nbytes(v) for v in self.temp.values())
            seg = _segment_bytes(order, self._known)
            if seg <= free:  # the whole segment fits: restore it in one replay
                self._run(order, target, restore_all=True)
                return
            slot = max(x.extra.nbytes for x in order[:-1]) or 1
            f = int((free - _segment_bytes([target], self._known)) // slot)
            if f <= 0:
                break
            j = _split(n, f)
            v = self._run(order[:j], None, keep_last=True)
            self.temp[order[j - 1]] = v
        self._run(order, target)

    def _held_anchor_bytes(self) -> int:
        """Bytes anchors and pinned nodes still hold: the sweep releases a node's bookkeeping
        (``node.extra``) once it has processed it, so anchors past the target are gone."""
        total = 0
        for href, _, nb in self.anchors:
            h = href()
            if h is not None and h.extra is not None:
                total += nb
        for ref, nb in self.pinned:
            n = ref()
            if n is not None and n.extra is not None and n.saved is not None:
                total += nb
        return total


def _segment_bytes(order, known, dropping=frozenset()) -> int:
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
            elif r.ext[code] is _PARENT:
                p = n.parents[code]
                key, nb = p, (0 if known(p) is not None else p.extra.nbytes)
            else:
                continue
            if key not in seen:
                seen.add(key)
                total += nb
    return total


# optimal checkpoint placement for a chain: T[f][n] and the first split J[f][n]
_T: list = []
_J: list = []
_DP_MAX_N = 100  # beyond it: equal spacing (the DP costs O(n^2 f) the first time)
_DP_LOCK = threading.Lock()


def _split(n: int, f: int) -> int:
    """Steps to advance before storing a checkpoint, to reverse ``n`` steps with ``f`` free slots
    at the least number of forward evaluations (see the module docstring)."""
    if f >= n - 1:
        return 1
    if n > _DP_MAX_N:
        return max(1, n // (f + 1))
    with _DP_LOCK:
        _fill(n, f)
        return _J[f][n]


def _fill(n: int, f: int) -> None:
    """Extend the tables T[g][m], J[g][m] to m <= n for every g <= f."""
    while len(_T) <= f:
        _T.append([0, 1])  # T(0, g) = 0, T(1, g) = 1
        _J.append([0, 0])
    for g in range(f + 1):
        T, J = _T[g], _J[g]
        prev = _T[g - 1] if g else None  # already filled up to n (g ascends)
        while len(T) <= n:
            m = len(T)
            if g == 0:
                T.append(m * (m + 1) // 2)
                J.append(0)
                continue
            best, bj = None, 1
            for j in range(1, m):
                c = j + prev[m - j] + T[j]
                if best is None or c < best:
                    best, bj = c, j
            T.append(best)
            J.append(bj)


def revolve_cost(n: int, f: int) -> int:
    """Forward evaluations the schedule of ``_split`` needs to reverse ``n`` steps with ``f``
    free slots (the DP value T(n, f))."""
    if n <= 0:
        return 0
    if f >= n - 1:
        return 2 * n - 1
    with _DP_LOCK:
        _fill(n, f)
        return _T[f][n]


_CHAIN_DP_MAX = 3_000_000  # AUTO plans a chain of n states with m slots while n^2 m is below
# this (the DP's work: about 0.3 s of Python at the limit, once per config)


class _ChainPlan:
    """AUTO's plan for a chain, learned from a step with the config it is stored on."""

    __slots__ = ("budget", "sig", "keep", "replays", "online", "followed")

    def __init__(self, budget, sig, keep, replays, online):
        self.budget = budget  # the budget it was made for (bytes)
        self.sig = sig  # per node, in recording order: (op name, output bytes, bytes of saved
        # constants, saves its output, saves an input from the graph)
        self.keep = keep  # positions whose outputs the forward keeps (anchors)
        self.replays = replays  # replays the plan needs (the DP's count)
        self.online = online  # stats of the step it was learned from (the online planner's)
        self.followed = None  # stats of the first step that followed it to its sweep

    def better(self, budget) -> bool:
        """Whether a new recording with ``budget`` should follow it: made for that budget, and
        fewer replays than the online planner's, predicted and, once a step followed it,
        measured."""
        if budget != self.budget:
            return False
        online = self.online["replayed_ops"]
        if self.followed is not None:
            return self.followed["replayed_ops"] < online
        return self.replays < online


def _chain_plan(n: int, m: int) -> tuple:
    """The states to keep (step positions, 0-based: state i ends step i) so that reversing a
    chain of ``n`` steps with at most ``m`` kept states at once needs the fewest step replays,
    and that number. G(1, m) = 0, G(n, 0) = F(n, 0), G(n, m) = min_j G(n - j, m - 1) + F(j, m):
    the forward, which costs nothing, keeps the state j steps in; the rest is planned with one
    slot fewer; the first j steps are reversed last with every slot back, at F(j, m) = T(j, m)
    - j replays (T of ``_fill`` counts each step's own evaluation, which the kept state at its
    end makes unnecessary here)."""
    with _DP_LOCK:
        _fill(n, m)
        F = [[_T[g][k] - k for k in range(n + 1)] for g in range(m + 1)]
    G = [[0] * (n + 1) for _ in range(m + 1)]
    J = [[0] * (n + 1) for _ in range(m + 1)]
    G[0] = list(F[0])
    for g in range(1, m + 1):
        prev, Fg, Gg, Jg = G[g - 1], F[g], G[g], J[g]
        for k in range(2, n + 1):
            best, bj = None, 1
            for j in range(1, k):
                c = prev[k - j] + Fg[j]
                if best is None or c < best:
                    best, bj = c, j
            Gg[k], Jg[k] = best, bj
    keep, pos, k, g = [], 0, n, m
    while k > 1 and g > 0:
        j = J[g][k]
        pos += j
        keep.append(pos - 1)
        k -= j
        g -= 1
    return frozenset(keep), G[m][n]


# ---------------------------------------------------------------------------------------------
# tape integration


class _CheckpointNodes(list):
    """A checkpointing tape's node list: ``registry._record`` calls ``recorded`` after appending
    a node, with the node's input arrays and output (see the module docstring)."""

    __slots__ = ("plan",)

    def recorded(self, node, arrs, out) -> None:
        self.plan.record(node, arrs, out)

    def clear(self) -> None:  # tape.reset() / release: the plan starts over with the nodes
        super().clear()
        self.plan.restart()


def _init_tape(tape) -> None:
    cfg = _as_config(tape.checkpoint_config)
    tape.checkpoint_config = cfg
    tape.checkpoint_plan = None
    if cfg is None or cfg.strategy is CheckpointStrategy.NONE:
        return
    nodes = _CheckpointNodes(tape._nodes)
    nodes.plan = _Plan(cfg, tape.id, tape.persistent)
    tape._nodes = nodes
    tape.checkpoint_plan = nodes.plan


_TAPE_INIT_HOOKS.append(_init_tape)


def checkpoint_stats(tape) -> dict:
    """What a checkpointing tape did: nodes recorded and dropped, anchors, ops replayed and
    their estimated cost. Empty for a tape without checkpointing."""
    plan = getattr(tape, "checkpoint_plan", None)
    if plan is None:
        return {}
    out = dict(plan.stats)
    out["replayed_by_op"] = dict(out["replayed_by_op"])
    return out


# ---------------------------------------------------------------------------------------------
# an explicit segment: ag.checkpoint(fn, *args)


class _Trace:
    """What the first run of a segment did: each op call's params (replayed verbatim, so random
    ops draw the same seeds), the tracked tensors it read from outside, its output, its cost."""

    __slots__ = ("calls", "out", "cost", "ext")

    def __init__(self):
        self.calls: list = []
        self.out = None
        self.cost = 0.0
        self.ext: list = []  # tensors fn reads from outside its arguments (closure weights)


class _Capture:
    """Hook: records each op call (first run) or substitutes the recorded params (replays)."""

    def __init__(self, trace, replay, externals=None):
        self.trace = trace
        self.replay = replay
        self.i = 0
        self.externals = externals  # dict id -> tensor, filled on the first run

    def __call__(self, phase, op, args, params, call):
        if phase != "forward":
            return call(args, params)
        calls = self.trace.calls
        if self.replay:
            if self.i < len(calls) and calls[self.i][0] is op:
                params = calls[self.i][1]
                self.i += 1
            else:
                self.i = len(calls) + 1  # the op sequence diverged: stop substituting
            return call(args, params)
        calls.append((op, params))
        if self.externals is not None:
            for a in args:
                if isinstance(a, Tensor) and (a._tapes or isinstance(a, Variable)):
                    self.externals.setdefault(id(a), a)
        out = call(args, params)
        try:
            metas = [(getattr(a, "shape", ()), getattr(a, "dtype", None)) for a in args]
            self.trace.cost += op.estimate_cost((out.shape, out.dtype), metas, params)
        except Exception:  # a cost model that cannot take these metas: cost unknown, not fatal
            pass
        return out

    def __enter__(self):
        push_hook(self)
        return self

    def __exit__(self, *exc):
        pop_hook(self)
        return False


def _run_fn(fn, xs, trace, replay, externals=None):
    with _Capture(trace, replay, externals), Suspend():
        y = fn(*xs)
    if not isinstance(y, Tensor):
        raise ArgumentError(
            f"checkpoint: argument 'fn' expected a function returning one Tensor, "
            f"got {describe(y)}"
        )
    return y


def _wrap(bk, a):
    return Tensor(a, bk) if hasattr(a, "dtype") and hasattr(a, "shape") else a


def _segment_cost(out, *xs, fn, trace, nargs):
    return trace.cost


@defop("checkpoint", params=("fn", "trace", "nargs"), cost=_segment_cost, register=False,
       saves=lambda n, params: tuple(range(n)))
class _Segment:
    """y = fn(*args), recorded as one node: the forward keeps only the inputs; the vjp re-runs
    fn under a fresh tape (with the first run's op params, so random ops repeat) and backprops."""

    def forward(bk, *arrays, fn, trace, nargs):
        if trace.out is not None:  # the first run already computed it (ag.checkpoint)
            out, trace.out = trace.out, None
        else:  # a replay (tape-level checkpointing): same params, same values
            out = _run_fn(fn, [_wrap(bk, a) for a in arrays[:nargs]], trace, True)._data
        return out, tuple(arrays)

    def vjp(F, g, saved, needs, *, fn, trace, nargs):
        bk = F.bk
        if F.is_raw:
            xs = [_wrap(bk, a) for a in saved[:nargs]]
            g = Tensor(g, bk)
        else:
            xs = list(saved[:nargs])
        xs += trace.ext  # fn reads these objects themselves (closures): differentiate those
        srcs = [x for x, nd in zip(xs, needs) if nd and isinstance(x, Tensor)]
        tape = GradientTape()
        try:
            for x in srcs:
                tape.watch(x)
            with tape, _Capture(trace, True):
                y = fn(*xs[:nargs])
            nb = g.ndim - y.ndim
            grads = tape.backward([(y, g)], [x._node for x in srcs], batch_nd=nb)
        finally:
            tape._finish()
        it = iter(grads)
        out = []
        for x, nd in zip(xs, needs):
            if nd and isinstance(x, Tensor):
                gx = next(it)
                out.append(None if gx is None else (gx._data if F.is_raw else gx))
            else:
                out.append(None)
        return tuple(out)

    def jvp(F, ts, saved, *, fn, trace, nargs):
        raise ArgumentError(
            "checkpoint: forward mode (a ForwardAccumulator or jvp) through an ag.checkpoint "
            "segment is not supported; call fn directly under forward mode"
        )


def checkpoint(fn, *args):
    """``fn(*args)`` as one recomputed segment: nothing inside ``fn`` is kept for the backward
    pass; its vjp re-runs ``fn`` (random ops repeat their seeds) and backpropagates through it.
    Tracked tensors and Variables that ``fn`` reads from outside (weights in a closure) get
    their gradients too. ``fn`` must return one Tensor; args are Tensors or Python numbers."""
    if not callable(fn):
        raise ArgumentError(f"checkpoint: argument 'fn' expected a callable, got {describe(fn)}")
    for i, a in enumerate(args):
        if not (isinstance(a, Tensor) or isinstance(a, (int, float)) or a is None):
            raise ArgumentError(
                f"checkpoint: argument args[{i}] expected a Tensor or a Python number, "
                f"got {describe(a)}"
            )
    if not STATE.recording:  # nothing records: nothing to save, just run it
        return fn(*args)
    trace = _Trace()
    externals: dict = {}
    y = _run_fn(fn, args, trace, False, externals)
    for a in args:
        externals.pop(id(a), None)
    trace.out = y._data
    trace.ext = list(externals.values())
    inputs = list(args) + trace.ext
    try:
        return apply(_Segment, *inputs, fn=fn, trace=trace, nargs=len(args))
    finally:
        trace.out = None
