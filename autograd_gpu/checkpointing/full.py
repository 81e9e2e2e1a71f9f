"""FULL: the least memory, at the most recomputation.

FULL keeps nothing but the tape's inputs: the values that do not come from the recorded graph
(watched tensors, weights, constants), which their owners keep alive anyway, and outputs the
caller still holds. Every node that saves a graph value or a constant drops it at once. The
sweep rebuilds each node's saved values when it reaches the node, by one replay from those
inputs that restores that node only, freeing every intermediate as soon as the replay has used
it; so between the forward and the backward, and at every point of the backward, the tape holds
only the sweep's working set (the cotangent in flight, a replay's current input and output, the
saved values of the node being differentiated). The price: on a chain of n ops the k-th restore
replays about k ops, n^2 / 2 in all. AUTO is the trade-off between the two.
"""

from __future__ import annotations

from .config import CheckpointStrategy
from .policy import Policy

__all__ = ["FullPolicy"]


class FullPolicy(Policy):
    strategy = CheckpointStrategy.FULL

    def keeps(self, node, rec, arrs, out, ext, droppable) -> bool:
        return False

    def rebuild(self, target) -> None:
        """Replay from the nearest known values (the inputs, or an output still alive) and
        restore the target only: every other value of the replay is freed on the way."""
        rp = self.replay
        rp.run(rp.needed(target), target)
