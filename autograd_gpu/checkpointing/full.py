"""FULL: keep only the inputs; the first restore replays the whole recorded forward."""

from __future__ import annotations

from .config import CheckpointStrategy
from .policy import Policy

__all__ = ["FullPolicy"]


class FullPolicy(Policy):
    strategy = CheckpointStrategy.FULL

    def keeps(self, node, rec, arrs, out, ext, droppable) -> bool:
        return False
