"""The planner interface: what a checkpointing policy decides, and the factory that makes one.

A policy sees each op as it is recorded (``record``) and decides, for that node, whether it keeps
its saved values or drops them at once, and which outputs to hold on purpose (anchors) so that
dropped values can be rebuilt later. In the reverse sweep it rebuilds a dropped node's saved
values on demand (``restore``), through the shared replay machinery (``replay.Replayer``).

A strategy is one subclass: it names its ``strategy`` (a ``CheckpointStrategy`` member), which
registers it with ``make_policy``, implements ``keeps`` and, where a plain replay from the
nearest known values is not what it wants, ``rebuild``.
"""

from __future__ import annotations

from ..backend import backend_of_array
from ..errors import ArgumentError
from .config import CheckpointConfig, CheckpointStrategy
from .records import PARENT, Rec, droppable_bytes
from .replay import Replayer

__all__ = ["Policy", "make_policy"]

_POLICIES: dict = {}  # CheckpointStrategy -> Policy subclass


class Policy:
    """The checkpoint planner of one tape. It never references the tape (no cycles): the tape
    reaches it through its node list, nodes through ``node.extra`` (a ``Rec``).

    The surface the tape integration uses: ``record(node, arrays, out)`` after each recorded op,
    ``restart()`` when the tape releases its nodes, ``stats`` (a dict, ``checkpoint_stats``);
    the sweep calls ``node.extra.restore(node)``, which lands in ``restore``.

    Subclasses implement:

    * ``keeps(node, rec, arrs, out, ext, droppable) -> bool``: whether the node just recorded
      keeps its saved values. ``ext`` has, per input, ``PARENT`` (the value comes from a node
      this policy recorded) or the value itself (from outside the graph, always kept);
      ``droppable`` is the number of bytes dropping would free (0: the node keeps its values
      whatever this returns). It may hold outputs for later replays (``rec.value``).
    * ``rebuild(target)`` (optional): restore a dropped node's saved values when they are not
      all at hand; by default one replay from the nearest known values restores the target and
      every dropped node on the way.
    * ``_begin()`` (optional): reset the recording state (at creation and on ``restart``).
    """

    strategy: CheckpointStrategy | None = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.strategy is not None:
            _POLICIES[cls.strategy] = cls

    def __init__(self, cfg: CheckpointConfig, tid: int, persistent: bool):
        self.cfg = cfg
        self.tid = tid
        self.persistent = persistent
        self.pos = 0  # positions stay unique across restarts
        self.stats = {"recorded": 0, "dropped": 0, "anchors": 0, "replayed_ops": 0,
                      "replayed_cost": 0.0, "restores": 0, "replayed_by_op": {}}
        self.replay = Replayer(self.stats, persistent)
        self._begin()

    def _begin(self) -> None:
        """Start a recording: reset what the policy tracks while recording (positions go on)."""

    def restart(self) -> None:
        """Forget the recording state (the tape released its nodes). Nodes recorded before, if
        another tape still holds them, keep replaying through this policy."""
        self.replay.reset()
        self._begin()

    # ---- recording ---------------------------------------------------------------------------
    def record(self, node, arrs, out) -> None:
        if node.extra is not None:  # another tape's policy owns it
            return
        rp = self.replay
        if rp.bk is None:
            rp.bk = backend_of_array(out)
        ext = tuple(
            PARENT if (p is not None and type(p.extra) is Rec and p.extra.policy is self) else a
            for p, a in zip(node.parents, arrs)
        )
        rec = Rec(self, self.pos, ext, out)
        self.pos += 1
        node.extra = rec
        self.stats["recorded"] += 1
        droppable = droppable_bytes(node, ext)
        if not self.keeps(node, rec, arrs, out, ext, droppable) and droppable:
            rec.keep = False
            node.saved = None
            self.stats["dropped"] += 1

    def keeps(self, node, rec, arrs, out, ext, droppable) -> bool:
        raise NotImplementedError(f"{type(self).__name__}.keeps")

    # ---- the reverse sweep -------------------------------------------------------------------
    def restore(self, target) -> None:
        """Rebuild ``target.saved``: from values at hand if all of them are, else ``rebuild``."""
        self.stats["restores"] += 1
        rp = self.replay
        rp.forget_above(target.extra.pos)
        if not rp.fill_direct(target):
            self.rebuild(target)

    def rebuild(self, target) -> None:
        rp = self.replay
        rp.run(rp.needed(target), target, restore_all=True)


def make_policy(cfg: CheckpointConfig, tape_id: int, persistent: bool) -> Policy | None:
    """The policy for ``cfg`` on tape ``tape_id``; None for NONE (nothing to decide)."""
    s = cfg.strategy
    if s is CheckpointStrategy.NONE:
        return None
    cls = _POLICIES.get(s)
    if cls is None:
        raise ArgumentError(
            f"GradientTape: argument 'checkpoint' expected a strategy with a policy class, got "
            f"{s!r} (none registered: a Policy subclass names its strategy)"
        )
    return cls(cfg, tape_id, persistent)
