"""Gradient checkpointing: trade recomputation for activation memory, decided on the tape.

A checkpointing tape hands each recorded op to a policy (``policy.Policy``), which decides
whether the node keeps its saved values or drops them at once, and which outputs to hold so that
dropped values can be rebuilt; the reverse sweep rebuilds them on demand by replaying recorded
ops (``replay.Replayer``). One class per strategy: ``block.BlockPolicy``,
``selective.SelectivePolicy``, ``full.FullPolicy``, ``auto.AutoPolicy`` (NONE needs none). The
chain dynamic program is ``chain``; ``explicit`` is ``ag.checkpoint(fn, *args)``.
docs/checkpointing.md explains the strategies, why they work as they do, and their figures.
"""

from __future__ import annotations

# each strategy module registers its policy class with make_policy when imported
from . import auto, block, full, selective  # noqa: F401
from .config import CheckpointBudgetError, CheckpointConfig, CheckpointStrategy, as_config
from .explicit import checkpoint
from .policy import Policy, make_policy

__all__ = ["CheckpointBudgetError", "CheckpointConfig", "CheckpointStrategy", "Policy",
           "as_config", "checkpoint", "make_policy"]
