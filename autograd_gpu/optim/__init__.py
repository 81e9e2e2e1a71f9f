"""Optimizers (``ag.optim``): SGD, Adam, AdamW, and a GradientAccumulator for micro-batches.

Example::

    opt = ag.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    with ag.GradientTape() as tape:
        loss = ag.nn.mse_loss(model(x), y)
    opt.step(tape.gradient(loss, model.parameters()))
"""

from .accumulate import AccumulatedGradients, GradientAccumulator
from .optimizers import SGD, Adam, AdamW, Optimizer, scaler_says_skip

__all__ = ["SGD", "AccumulatedGradients", "Adam", "AdamW", "GradientAccumulator", "Optimizer",
           "scaler_says_skip"]
