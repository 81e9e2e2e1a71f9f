"""Neural-network layers, losses and the Module base class (``ag.nn``).

Layers are built only from public ops, so every gradient through them comes from the op rules
(and is itself differentiable). Parameters are ``ag.Variable`` subclasses: a GradientTape used as
a context watches them automatically.

Example::

    model = ag.nn.Sequential(ag.nn.Linear(64, 128, seed=0), ag.nn.ReLU(), ag.nn.Linear(128, 10))
    opt = ag.optim.Adam(model.parameters(), lr=1e-3)
    with ag.GradientTape() as tape:
        loss = ag.nn.cross_entropy(model(x), labels)
    opt.step(tape.gradient(loss, model.parameters()))
"""

from .layers import (
    GELU,
    AvgPool2d,
    Conv2d,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    Identity,
    LayerNorm,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    manual_seed,
)
from .losses import CrossEntropyLoss, MSELoss, cross_entropy, mse_loss
from .module import Module, Parameter, StateDictError, load_npz
from .stateless import functional_call, stack_modules

__all__ = [
    "functional_call", "stack_modules",
    "AvgPool2d", "Conv2d", "CrossEntropyLoss", "Dense", "Dropout", "Embedding", "Flatten", "GELU",
    "Identity", "LayerNorm", "Linear", "MSELoss", "MaxPool2d", "Module", "Parameter", "ReLU",
    "Sequential", "Sigmoid", "StateDictError", "Tanh", "cross_entropy", "load_npz",
    "manual_seed", "mse_loss",
]
