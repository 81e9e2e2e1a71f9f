"""The Backend protocol and the Device value.

A backend is a value, not a branch: op rules receive ``bk`` and use ``bk.xp`` (numpy or cupy).
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import DeviceError

__all__ = ["Device", "Backend"]


class Device:
    """A device name: ``Device("cpu")`` or ``Device("cuda:0")`` (``"cuda"`` means ``cuda:0``)."""

    __slots__ = ("type", "index")

    def __init__(self, spec: str | Device = "cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise DeviceError(
                f"Device: argument 'spec' expected 'cpu', 'cuda' or 'cuda:N', got {spec!r}"
            )
        kind, _, idx = spec.strip().lower().partition(":")
        if kind == "cpu" and not idx:
            self.type, self.index = "cpu", None
        elif kind in ("cuda", "gpu") and (not idx or idx.isdigit()):
            self.type, self.index = "cuda", int(idx or 0)
        else:
            raise DeviceError(
                f"Device: argument 'spec' expected 'cpu', 'cuda' or 'cuda:N', got {spec!r}"
            )

    def __str__(self) -> str:
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __repr__(self) -> str:
        return f"Device({str(self)!r})"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except DeviceError:
                return False
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))


class Backend(Protocol):
    """What an op rule may rely on. ``numpy_backend.NumpyBackend`` is the reference."""

    name: str  # "numpy" or "cupy": for messages and reports, never for a branch in an op
    is_host: bool  # arrays live in host memory (reading values costs no transfer)
    deterministic_scatter: bool  # scatter_add sums repeated indices in a fixed order
    graph_capture: bool  # launches can be captured in a CUDA graph
    xp: Any  # the array module
    device: Device

    def matmul(self, a, b): ...  # xp.matmul, or cuBLAS directly where CuPy cannot (capture)
    def sum(self, x, axis=None, keepdims=False, dtype=None): ...  # xp.sum (GPU: a GEMV path)
    def add(self, a, b): ...  # xp.add (GPU: scalar and bias-row fast paths)
    def relu(self, x): ...  # maximum(x, 0)
    def relu_grad(self, g, x): ...  # 0 where x <= 0 else g (a select: NaN x passes g)
    def act_grad(self, act, g, y): ...  # tanh/sigmoid vjp from the output y
    def unary(self, name, x): ...  # xp.<name>(x) for exp, tanh, ... (GPU: small-array path)
    def astype(self, x, dtype): ...  # x.astype(dtype, copy=False) (GPU: a vectorised kernel)
    # fused operations (backend/fused.py is the reference; the GPU picks a kernel where one
    # applies): the forwards of the ops of the same names and their fused gradients
    def softmax(self, x, axis=-1): ...
    def log_softmax(self, x, axis=-1): ...
    def softmax_grad(self, g, y, axis=-1): ...  # y * (g - sum(g * y, axis))
    def log_softmax_grad(self, g, y, axis=-1): ...  # g - exp(y) * sum(g, axis)
    def cross_entropy(self, x, labels, axis=-1, label_smoothing=0.0): ...  # -> (loss, lse)
    def cross_entropy_dlogits(self, x, labels, lse, axis=-1, label_smoothing=0.0): ...
    def layer_norm(self, x, n_axes=1, eps=1e-5): ...  # -> (y, rstd)
    def layer_norm_grad(self, g, y, rstd, n_axes=1): ...
    def bias_act(self, x, b, act="relu"): ...  # act(x + b)
    def bias_act_grad(self, g, x, b, act="gelu"): ...  # g * act'(x + b)
    def gelu_grad(self, g, x, approximate="tanh"): ...  # g * gelu'(x)
    def dropout_mask(self, shape, p, seed, dtype): ...  # keep / (1 - p), keep = [u >= p]
    def mixed_floats_ok(self, dtypes) -> bool: ...  # ufuncs promote this float mix themselves
    scalar_kernels: bool  # True: scalar_op(kind, a, b) may replace an array-number ufunc call
    def asarray(self, obj, dtype=None): ...
    def to_numpy(self, arr): ...
    def host_view(self, arr): ...  # what Tensor.numpy() returns: read-only view or a host copy
    def readonly(self, arr): ...  # what Tensor.data returns (read-only where the device can)
    def checksum(self, arr) -> int: ...  # a fingerprint of the bytes (detect_anomaly)
    scipy: Any  # scipy (NumPy) or cupyx.scipy (CuPy): .special, .linalg, .signal, .fft
    def is_array(self, obj) -> bool: ...
    cuda_kernels: bool  # runs the fused CUDA kernels (a family's ready(bk) asks this first)
    def synchronize(self) -> None: ...
