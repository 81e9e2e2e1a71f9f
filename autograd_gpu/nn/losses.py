"""Losses: the library's loss ops, re-exported, plus Module wrappers."""

from __future__ import annotations

from .layers import op
from .module import Module

__all__ = ["mse_loss", "cross_entropy", "MSELoss", "CrossEntropyLoss"]


def mse_loss(pred, target, reduction: str = "mean"):
    """mean((pred - target)^2) (``reduction``: "mean", "sum" or "none")."""
    return op("mse_loss")(pred, target, reduction=reduction)


def cross_entropy(logits, target, axis: int = -1, reduction: str = "mean"):
    """-sum(target * log_softmax(logits)) over ``axis``, or -log_softmax(logits)[label] for
    integer labels; averaged over the batch with ``reduction="mean"``."""
    return op("cross_entropy")(logits, target, axis=axis, reduction=reduction)


class MSELoss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, pred, target):
        return mse_loss(pred, target, reduction=self.reduction)


class CrossEntropyLoss(Module):
    def __init__(self, axis: int = -1, reduction: str = "mean"):
        super().__init__()
        self.axis, self.reduction = axis, reduction

    def forward(self, logits, target):
        return cross_entropy(logits, target, axis=self.axis, reduction=self.reduction)
