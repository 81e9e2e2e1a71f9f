"""Gradient checkpointing: the public names, and how a tape takes a checkpointing policy.

A tape given a ``CheckpointConfig`` decides, as each op is recorded, whether the node keeps its
saved values or drops them at once; the reverse sweep rebuilds dropped values by replaying the
recorded ops from the nearest kept values (random ops repeat their seeds, so bit for bit).
Strategies (``CheckpointStrategy``; strings such as ``"block"`` are accepted):

* NONE: keep everything (no bookkeeping at all).
* SELECTIVE: keep what expensive ops (matmul, conv) save, replay the cheap ops.
* BLOCK: keep every ``checkpoint_every_n``-th op's saved values, replay a segment at a time.
* FULL: keep only the inputs; the first restore replays the whole recorded forward.
* AUTO: keep peak activation memory under ``memory_budget_mb`` at little recomputation,
  planned as the forward goes, and for a chain from the previous step by the exact DP.

``checkpoint(fn, *args)`` marks an explicit recomputed segment instead. The policies live in
``autograd_gpu/checkpointing/`` (one class per strategy); docs/checkpointing.md explains each
and why, with the measurements.
"""

from __future__ import annotations

from .checkpointing import (
    CheckpointBudgetError,
    CheckpointConfig,
    CheckpointStrategy,
    as_config,
    checkpoint,
    make_policy,
)
from .tape import _TAPE_INIT_HOOKS

__all__ = ["CheckpointConfig", "CheckpointStrategy", "CheckpointBudgetError", "checkpoint",
           "checkpoint_stats"]


class _CheckpointNodes(list):
    """A checkpointing tape's node list: ``registry._record`` (and ``_native.record``) call
    ``recorded`` after appending a node, with the node's input arrays and output."""

    __slots__ = ("plan",)

    def recorded(self, node, arrs, out) -> None:
        self.plan.record(node, arrs, out)

    def clear(self) -> None:  # tape.reset() / release: the policy starts over with the nodes
        super().clear()
        self.plan.restart()


def _init_tape(tape) -> None:
    cfg = as_config(tape.checkpoint_config)
    tape.checkpoint_config = cfg
    tape.checkpoint_plan = None
    policy = None if cfg is None else make_policy(cfg, tape.id, tape.persistent)
    if policy is None:  # NONE: the plain node list, nothing to decide
        return
    nodes = _CheckpointNodes(tape._nodes)
    nodes.plan = policy
    tape._nodes = nodes
    tape.checkpoint_plan = policy


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
