"""The optimizers' fused updates (kernels/optim.cu): SGD (momentum, Nesterov, weight decay,
dampening; plain SGD too, one pass where w -= lr * g would be two kernels) and Adam/AdamW, in
place on float32, C-contiguous parameters, gradients and state, up to MT_SLOTS tensors per
launch. The xp paths of optimizers.py are their references; the contracts::

    sgd_momentum(bk, param, grad, buf, *, lr, momentum, dampening, weight_decay, nesterov, first)
        g = grad + weight_decay * param
        buf = g if first else momentum * buf + (1 - dampening) * g
        param -= lr * (g + momentum * buf if nesterov else buf)
    adam(bk, param, grad, m, v, *, lr, beta1, beta2, eps, weight_decay, decoupled, step)
        param *= 1 - lr * weight_decay                      (decoupled, AdamW)
        g = grad + weight_decay * param                     (not decoupled, Adam's L2)
        m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
        param -= lr * (m / (1 - beta1**step)) / (sqrt(v / (1 - beta2**step)) + eps)

``step`` is an int or a 0-d device array (read on the device, so a captured CUDA graph sees the
current count). Arguments are one array each, or lists of them.
"""

from __future__ import annotations

import numpy as np

from ..backend.kernels import multi_tensor as _mt
from ..backend.kernels.loader import KernelFamily


def _ref_sgd(param, grad, buf, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, first=False):
    g = grad + weight_decay * param
    if momentum:
        buf[...] = g if first else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    param -= lr * g
    return param


def _ref_adam(param, grad, m, v, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
              decoupled=False, step):
    if decoupled:
        param *= 1 - lr * weight_decay
        g = grad
    else:
        g = grad + weight_decay * param
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    param -= lr * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + eps)
    return param


FAMILY = KernelFamily(
    "optim", source="optim", plain=("sgd_momentum", "adam"), dtypes=(np.float32,),
    entries=("sgd_momentum", "adam"),
    references={"sgd_momentum": _ref_sgd, "adam": _ref_adam},
    callers=("SGD._update", "Adam._update"))


def sgd_momentum_(bk, params, grads, bufs, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                  nesterov=False, first=False):
    """In place, float32: the SGD step of optim.cu over lists of arrays. ``bufs`` are the
    momentum buffers (ignored when momentum == 0; pass ``first=True`` on the first step, which
    sets buf = d instead of reading it)."""
    params, grads = list(params), _mt.contiguous(bk.xp, grads)
    bufs = list(bufs) if bufs is not None else [None] * len(params)
    _mt.check_f32([params, grads] + ([bufs] if momentum else []), "sgd_momentum_")
    kern = FAMILY.kernel(bk, "sgd_momentum")
    for _, idx in _mt.groups(params):
        kern((_mt.blocks(params, idx), len(idx)), (256,),
             tuple(_mt.slots([params, grads, bufs], idx))
             + (np.float32(lr), np.float32(momentum), np.float32(dampening),
                np.float32(weight_decay), np.int32(bool(nesterov)), np.int32(bool(first))))
    return params


def adam_(bk, params, grads, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999,
          eps=1e-8, weight_decay=0.0, adamw=False):
    """In place, float32: one Adam (``adamw=False``, L2 penalty in the gradient) or AdamW
    (decoupled decay) step over lists of arrays. ``step`` is the 1-based step count: an int, or
    a 0-d device array (the caller increments it on the device, as a captured graph needs)."""
    xp = bk.xp
    params, grads = list(params), _mt.contiguous(xp, grads)
    exp_avg, exp_avg_sq = list(exp_avg), list(exp_avg_sq)
    _mt.check_f32([params, grads, exp_avg, exp_avg_sq], "adam_")
    s = _mt.device_scalar(xp, step)
    kern = FAMILY.kernel(bk, "adam")
    for _, idx in _mt.groups(params):
        kern((_mt.blocks(params, idx), len(idx)), (256,),
             tuple(_mt.slots([params, grads, exp_avg, exp_avg_sq], idx))
             + (np.float32(lr), np.float32(beta1), np.float32(beta2), np.float32(eps),
                np.float32(weight_decay), np.int32(bool(adamw)), s))
    return params


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def sgd_momentum(bk, param, grad, buf, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, first=False):
    """The SGD update of one parameter (or lists), in place; returns ``param``."""
    sgd_momentum_(bk, _as_list(param), _as_list(grad), None if buf is None else _as_list(buf),
                  lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                  nesterov=nesterov, first=first)
    return param


def adam(bk, param, grad, m, v, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
         decoupled=False, step):
    """The Adam (AdamW with ``decoupled=True``) update of one parameter (or lists), in place;
    returns ``param``."""
    adam_(bk, _as_list(param), _as_list(grad), _as_list(m), _as_list(v), step, lr=lr,
          beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, adamw=decoupled)
    return param


__all__ = ["FAMILY", "adam", "adam_", "sgd_momentum", "sgd_momentum_"]
