"""Gradient checkpointing: the public names, and how a tape takes a checkpointing policy.

A tape given a ``CheckpointConfig`` decides, as each op is recorded, whether the node keeps its
saved values or drops them at once; the reverse sweep rebuilds dropped values by replaying the
recorded ops from the nearest kept values (random ops repeat their seeds, so bit for bit).
Strategies (``CheckpointStrategy``; strings such as ``"block"`` are accepted):

* NONE: keep everything (no bookkeeping at all).
* SELECTIVE: keep what expensive ops (matmul, conv) save, replay the cheap ops.
* BLOCK: keep every ``checkpoint_every_n``-th op's saved values, replay a segment at a time.
* FULL: keep only the tape's inputs; each restore replays from them and rebuilds that node only
  (the least memory: the sweep's working set; n^2 / 2 replays on a chain).
* AUTO: keep peak activation memory under ``memory_budget_mb`` at little recomputation,
  planned as the forward goes, and for a chain from the previous step by the exact DP.

``checkpoint(fn, *args)`` marks an explicit recomputed segment instead. The policies live in
``autograd_gpu/checkpointing/`` (one class per strategy); docs/checkpointing.md explains each
and why, with the measurements.
"""

from __future__ import annotations

from .addons import TapeAddon, register_config
from .checkpointing import (
    CheckpointBudgetError,
    CheckpointConfig,
    CheckpointStrategy,
    as_config,
    checkpoint,
    make_policy,
)

__all__ = ["CheckpointConfig", "CheckpointStrategy", "CheckpointBudgetError", "checkpoint",
           "checkpoint_stats"]


class CheckpointAddon(TapeAddon):
    """A checkpointing tape's add-on: its policy sees every recorded node (keep or drop its saved
    values) and starts over when the tape releases its graph."""

    kind = "checkpoint"
    records = True

    def __init__(self, cfg, tape_id, persistent):
        self.plan = make_policy(cfg, tape_id, persistent)

    def on_record(self, node, arrays, out) -> None:
        self.plan.record(node, arrays, out)

    def on_release(self) -> None:
        self.plan.restart()


def _checkpoint_config(value, tape):
    """GradientTape(checkpoint=...): a CheckpointConfig or a strategy name; any strategy but
    NONE gives the tape a CheckpointAddon."""
    cfg = as_config(value)
    if cfg is None or cfg.strategy is CheckpointStrategy.NONE:
        return cfg, None
    return cfg, CheckpointAddon(cfg, tape.id, tape.persistent)


register_config("checkpoint", _checkpoint_config)


def checkpoint_stats(tape) -> dict:
    """What a checkpointing tape did: nodes recorded and dropped, anchors, ops replayed and
    their estimated cost. Empty for a tape without checkpointing."""
    addon = tape.addon("checkpoint")
    if addon is None:
        return {}
    plan = addon.plan
    out = dict(plan.stats)
    out["replayed_by_op"] = dict(out["replayed_by_op"])
    return out
