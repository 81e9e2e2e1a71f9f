"""Layers built only from public ops (``autograd_gpu.ops.api``).

Weights follow PyTorch's default initialisation (Kaiming-uniform with a = sqrt(5), which gives
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases alike), drawn on the host with NumPy so
that the same seed gives the same model on every device.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import dtypes as _dt
from .. import random_state as _random_state
from ..errors import ArgumentError, AutogradError, ShapeError, describe
from ..ops import api as _api
from ..ops.elementwise import _BIAS_ACTS
from ..tensor import Tensor
from .module import Module, Parameter

__all__ = [
    "manual_seed", "op", "uniform_parameter", "Linear", "Dense", "Sequential", "ReLU", "GELU",
    "Tanh", "Sigmoid", "Identity", "Dropout", "LayerNorm", "Embedding", "Conv2d", "MaxPool2d",
    "AvgPool2d", "Flatten",
]


def manual_seed(seed: int) -> None:
    """``ag.manual_seed(seed)`` under its older name: seeds layers constructed without an
    explicit ``seed`` and every other random draw of the library."""
    _random_state.manual_seed(seed, _fn="nn.manual_seed")


def _rng(seed):
    """A layer's generator: its own ``seed``, else the library's "nn.init" stream."""
    return _random_state.generator("nn.init") if seed is None else np.random.default_rng(seed)


def op(name: str):
    """The public op ``name``; a clear error if this build does not provide it."""
    fn = getattr(_api, name, None)
    if fn is None:
        raise AutogradError(f"nn: the op '{name}' is not available in this build of autograd_gpu")
    return fn


def uniform_parameter(shape, bound, rng, dtype, device, name=None) -> Parameter:
    arr = rng.uniform(-bound, bound, size=shape).astype(_dt.as_dtype(dtype))
    return Parameter(arr, name=name, device=device)


def _pair(v, what, layer):
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(
        isinstance(i, numbers.Integral) for i in v
    ):
        return (int(v[0]), int(v[1]))
    raise ArgumentError(f"{layer}: argument '{what}' expected an int or a pair of ints, got {v!r}")


def _positive(v, what, layer):
    if not isinstance(v, numbers.Integral) or v <= 0:
        raise ArgumentError(f"{layer}: argument '{what}' expected a positive int, got {v!r}")
    return int(v)


_ACTIVATIONS = {
    None: None,
    "linear": None,
    "relu": lambda x: op("relu")(x),
    "gelu": lambda x: op("gelu")(x),
    "tanh": lambda x: op("tanh")(x),
    "sigmoid": lambda x: op("sigmoid")(x),
}


class Linear(Module):
    """y = x @ weight + bias, with ``weight`` of shape (in_features, out_features).

    The weight is stored input-major (as TensorFlow's Dense kernel), so the forward pass is one
    matmul with no transpose. Initialised U(-1/sqrt(in), 1/sqrt(in)) as in PyTorch.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 dtype="float32", device=None, seed: int | None = None):
        super().__init__()
        self.in_features = _positive(in_features, "in_features", "Linear")
        self.out_features = _positive(out_features, "out_features", "Linear")
        rng = _rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = uniform_parameter((self.in_features, self.out_features), bound, rng, dtype,
                                        device)
        self.bias = (uniform_parameter((self.out_features,), bound, rng, dtype, device)
                     if bias else None)

    def _matmul(self, x):
        if not isinstance(x, Tensor):
            raise ArgumentError(f"Linear: argument 'x' expected a Tensor, got {describe(x)}")
        if x.shape[-1] != self.in_features:
            raise ShapeError(
                f"Linear: argument 'x' expected last dimension {self.in_features}, "
                f"got shape {tuple(x.shape)}"
            )
        return op("matmul")(x, self.weight)

    def forward(self, x):
        y = self._matmul(x)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Dense(Linear):
    """Linear followed by an optional activation ("relu", "gelu", "tanh", "sigmoid")."""

    def __init__(self, in_features: int, out_features: int, activation: str | None = None,
                 bias: bool = True, **kw):
        if activation not in _ACTIVATIONS:
            names = sorted(k for k in _ACTIVATIONS if k)
            raise ArgumentError(
                f"Dense: argument 'activation' expected one of {names} or None, got {activation!r}"
            )
        super().__init__(in_features, out_features, bias, **kw)
        self.activation = activation

    def forward(self, x):
        if self.bias is not None and self.activation in _BIAS_ACTS:
            # the bias add and the activation as one op (one kernel on the GPU)
            return op("bias_act")(self._matmul(x), self.bias, self.activation)
        y = super().forward(x)
        act = _ACTIVATIONS[self.activation]
        return y if act is None else act(y)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.activation!r}"


class Sequential(Module):
    """Modules applied in order: ``Sequential(Linear(4, 8), ReLU(), Linear(8, 1))``."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = tuple(modules[0])
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise ArgumentError(
                    f"Sequential: argument {i} expected a Module, got {describe(m)}"
                )
            setattr(self, str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def append(self, module: Module) -> Sequential:
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x):
        return op("relu")(x)


class GELU(Module):
    """x * Phi(x); ``approximate="tanh"`` (default) or ``"none"`` (exact, with erf)."""

    def __init__(self, approximate: str = "tanh"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return op("gelu")(x, approximate=self.approximate)


class Tanh(Module):
    def forward(self, x):
        return op("tanh")(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    def forward(self, x):
        return op("sigmoid")(x)


class Identity(Module):
    def forward(self, x):
        return x


class Dropout(Module):
    """Zeroes each element with probability ``p`` and scales the rest by 1/(1-p) in training
    mode; the identity in eval mode. ``seed`` fixes the masks (each call advances a counter)."""

    def __init__(self, p: float = 0.5, seed: int | None = None):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ArgumentError(f"Dropout: argument 'p' expected a value in [0, 1), got {p!r}")
        self.p = float(p)
        self.seed = None if seed is None else _random_state.check_seed(seed, "Dropout")
        self._calls = 0

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        seed = None
        if self.seed is not None:  # call i's mask seed: (seed, i) through SeedSequence
            seed = _random_state.derived_seed(self.seed, self._calls)
            self._calls += 1
        return op("dropout")(x, p=self.p, training=True, seed=seed)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerNorm(Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing ``normalized_shape``."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, *,
                 dtype="float32", device=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = float(eps)
        if elementwise_affine:
            dt = _dt.as_dtype(dtype)
            self.weight = Parameter(np.ones(self.normalized_shape, dt), device=device)
            self.bias = Parameter(np.zeros(self.normalized_shape, dt), device=device)
        else:
            self.weight = self.bias = None

    def forward(self, x):
        return op("layer_norm")(x, self.normalized_shape, weight=self.weight, bias=self.bias,
                                eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class Embedding(Module):
    """Rows of ``weight`` (num_embeddings, embedding_dim) picked by integer indices; N(0, 1)
    initialisation as in PyTorch."""

    def __init__(self, num_embeddings: int, embedding_dim: int, *, dtype="float32", device=None,
                 seed: int | None = None):
        super().__init__()
        self.num_embeddings = _positive(num_embeddings, "num_embeddings", "Embedding")
        self.embedding_dim = _positive(embedding_dim, "embedding_dim", "Embedding")
        arr = _rng(seed).standard_normal((self.num_embeddings, self.embedding_dim))
        self.weight = Parameter(arr.astype(_dt.as_dtype(dtype)), device=device)

    def forward(self, indices):
        return op("embedding")(indices, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Conv2d(Module):
    """2-D convolution over NCHW input; weight (out, in/groups, kh, kw), Kaiming-uniform init."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *, dtype="float32", device=None,
                 seed: int | None = None):
        super().__init__()
        self.in_channels = _positive(in_channels, "in_channels", "Conv2d")
        self.out_channels = _positive(out_channels, "out_channels", "Conv2d")
        self.groups = _positive(groups, "groups", "Conv2d")
        if in_channels % groups or out_channels % groups:
            raise ArgumentError(
                f"Conv2d: argument 'groups' expected a divisor of in_channels ({in_channels}) "
                f"and out_channels ({out_channels}), got {groups}"
            )
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = _pair(stride, "stride", "Conv2d")
        self.padding = _pair(padding, "padding", "Conv2d")
        self.dilation = _pair(dilation, "dilation", "Conv2d")
        kh, kw = self.kernel_size
        fan_in = (in_channels // groups) * kh * kw
        bound = 1.0 / math.sqrt(fan_in)
        rng = _rng(seed)
        self.weight = uniform_parameter((out_channels, in_channels // groups, kh, kw), bound, rng,
                                        dtype, device)
        self.bias = uniform_parameter((out_channels,), bound, rng, dtype, device) if bias else None

    def forward(self, x):
        return op("conv2d")(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                            dilation=self.dilation, groups=self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class MaxPool2d(Module):
    """Max over kernel_size windows of NCHW input (stride defaults to kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding

    def forward(self, x):
        return op("max_pool2d")(x, self.kernel_size, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class AvgPool2d(MaxPool2d):
    """Mean over kernel_size windows of NCHW input (stride defaults to kernel_size)."""

    def forward(self, x):
        return op("avg_pool2d")(x, self.kernel_size, stride=self.stride, padding=self.padding)


class Flatten(Module):
    """Collapse the dimensions from ``start_dim`` on into one: (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = int(start_dim)

    def forward(self, x):
        nd = x.ndim
        s = self.start_dim % nd if nd else 0
        return op("reshape")(x, tuple(x.shape[:s]) + (-1,))
