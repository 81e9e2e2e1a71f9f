"""CupyBackend's fused operations (the Backend protocol's softmax, ..., dropout_mask): each runs
its kernel family's entry where one applies (the last axis, no tangent batch, matching dtypes
and shapes, the family ready on this backend), else the array implementation of
backend/fused.py on CuPy arrays, NumPy's reference. The conditions are the only thing decided
here; the kernels and their declarations are in backend/kernels/."""

from __future__ import annotations

from . import fused
from .kernels import bias_act as _bias_act
from .kernels import cross_entropy as _ce
from .kernels import dropout as _dropout
from .kernels import layer_norm as _ln
from .kernels import softmax as _softmax


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


class CupyFusedOps:
    """The fused operations of CupyBackend (a base class of it)."""

    FUSED = ("softmax", "log_softmax", "softmax_grad", "log_softmax_grad", "cross_entropy",
             "cross_entropy_dlogits", "layer_norm", "layer_norm_grad", "bias_act",
             "bias_act_grad", "gelu_grad", "dropout_mask")

    def softmax(self, x, axis=-1):
        if axis == -1 and _softmax.FAMILY.ready(self):
            return _softmax.softmax(self, x)
        return fused.softmax(self, x, axis)

    def log_softmax(self, x, axis=-1):
        if axis == -1 and _softmax.FAMILY.ready(self):
            return _softmax.log_softmax(self, x)
        return fused.log_softmax(self, x, axis)

    def softmax_grad(self, g, y, axis=-1):
        if axis == -1 and g.shape == y.shape and _softmax.FAMILY.ready(self):
            return _softmax.softmax_grad(self, g, y)
        return fused.softmax_grad(self, g, y, axis)

    def log_softmax_grad(self, g, y, axis=-1):
        if axis == -1 and g.shape == y.shape and _softmax.FAMILY.ready(self):
            return _softmax.log_softmax_grad(self, g, y)
        return fused.log_softmax_grad(self, g, y, axis)

    def cross_entropy(self, x, labels, axis=-1, label_smoothing=0.0):
        if axis == -1 and labels.shape == x.shape[:-1] and _ce.FAMILY.ready(self):
            # loss and lse in one pass over the logits
            loss, lse, _ = _ce.cross_entropy(self, x, labels, label_smoothing=label_smoothing,
                                             want_dlogits=False)
            return loss.astype(x.dtype, copy=False), lse[..., None]
        return fused.cross_entropy(self, x, labels, axis, label_smoothing)

    def cross_entropy_dlogits(self, x, labels, lse, axis=-1, label_smoothing=0.0):
        if (axis == -1 and labels.shape == x.shape[:-1] and lse.shape == labels.shape + (1,)
                and _ce.FAMILY.ready(self)):
            return _ce.cross_entropy_dlogits(self, x, labels, lse,
                                             label_smoothing=label_smoothing)
        return fused.cross_entropy_dlogits(self, x, labels, lse, axis, label_smoothing)

    def layer_norm(self, x, n_axes=1, eps=1e-5):
        if _ln.FAMILY.ready(self):  # one pass per row over the trailing axes
            lead = tuple(x.shape[: x.ndim - n_axes])
            c = _prod(x.shape[x.ndim - n_axes:])
            y, _, rstd = _ln.layer_norm(self, x.reshape(lead + (c,)), None, None, eps)
            return (y.reshape(x.shape),
                    rstd.reshape(lead + (1,) * n_axes).astype(x.dtype, copy=False))
        return fused.layer_norm(self, x, n_axes, eps)

    def layer_norm_grad(self, g, y, rstd, n_axes=1):
        lead = tuple(y.shape[: y.ndim - n_axes])
        c = _prod(y.shape[y.ndim - n_axes:])
        if g.shape == y.shape and rstd.size * c == y.size and _ln.FAMILY.ready(self):
            dx = _ln.layer_norm_grad_y(self, g.reshape(lead + (c,)), y.reshape(lead + (c,)),
                                       rstd)
            return dx.reshape(g.shape)
        return fused.layer_norm_grad(self, g, y, rstd, n_axes)

    def bias_act(self, x, b, act="relu"):
        if (b.ndim == 1 and x.ndim >= 1 and x.shape[-1] == b.shape[0] and x.dtype == b.dtype
                and _bias_act.FAMILY.ready(self)):
            return _bias_act.bias_act(self, x, b, act)
        return fused.bias_act(self, x, b, act)

    def bias_act_grad(self, g, x, b, act="gelu"):
        if (g.shape == x.shape and b.ndim == 1 and x.dtype == b.dtype == g.dtype
                and x.shape[-1] == b.shape[0] and _bias_act.FAMILY.ready(self)):
            return _bias_act.bias_act_grad(self, g, x, b, act, need_db=False)[0]
        return fused.bias_act_grad(self, g, x, b, act)

    gelu_grad = fused.gelu_grad

    def dropout_mask(self, shape, p, seed, dtype):
        """keep / (1 - p): the fused Philox4x32-10 kernel (graph-capturable), else cuRAND's
        stream through ``uniform``."""
        if _dropout.FAMILY.ready(self):
            return _dropout.dropout_mask(self, shape, p, seed, 0, dtype)
        return fused.dropout_mask(self, shape, p, seed, dtype)


__all__ = ["CupyFusedOps"]
