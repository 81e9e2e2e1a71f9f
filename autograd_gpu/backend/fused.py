"""The fused operations of the Backend protocol, written once on the backend's array module.

These are NumpyBackend's implementations (the reference of each op), and CupyBackend's wherever
none of its fused kernels applies (an axis other than the last, a batched cotangent, a dtype or
layout a kernel does not take, kernels switched off). Each function takes the backend first and
is bound as a method (``NumpyBackend.softmax = fused.softmax``).

Ops reach them through the primitives of ops/nn.py and ops/elementwise.py: the forward ops
(softmax, log_softmax, cross_entropy, layer_norm, bias_act) and their fused gradients
(softmax_grad, log_softmax_grad, cross_entropy_dlogits, layer_norm_grad, bias_act_grad,
gelu_grad), so that a derivative rule is mathematics only and the backend picks the kernel.
Axes are negative (-1 the last). float16/bfloat16 inputs are computed in float32 where the
forward ops are, and rounded once; every expression is the one the ops' rules evaluated on
arrays before they became primitives, so first-order gradients keep their bits.
"""

from __future__ import annotations

import math

from ..dtypes import is_floating

GELU_K = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715
_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
BIAS_ACTS = ("relu", "tanh", "gelu")


def _acc(x):
    """float32 for 16-bit floats (sums and internal arithmetic), else None (x's own dtype)."""
    return "float32" if x.dtype.itemsize == 2 and is_floating(x.dtype) else None


def _low_to_f32(x):
    return x.astype("float32") if _acc(x) else x


def _sum(bk, x, axis, keepdims):
    """The sum primitive's forward: accumulated in float32 for 16-bit floats."""
    acc = _acc(x)
    y = bk.sum(x, axis=axis, keepdims=keepdims, dtype=acc)
    return y.astype(x.dtype, copy=False) if acc else y


def _mean(bk, x, axis, keepdims):
    """The mean primitive's forward."""
    acc = _acc(x)
    y = bk.xp.mean(x, axis=axis, keepdims=keepdims, dtype=acc)
    return y.astype(x.dtype) if acc else y


def _stable_exp(xp, x, axis):
    """exp(x - max(x, axis)) and that max (keepdims): no overflow for large logits."""
    m = xp.max(x, axis=axis, keepdims=True)
    return xp.exp(x - m), m


# ---- softmax family -------------------------------------------------------------------------


def softmax(bk, x, axis=-1):
    """exp(x) / sum(exp(x), axis), from x - max(x)."""
    xp = bk.xp
    e, _ = _stable_exp(xp, _low_to_f32(x), axis)
    e /= xp.sum(e, axis=axis, keepdims=True)
    if e.dtype != x.dtype:
        e = e.astype(x.dtype)
    return e


def log_softmax(bk, x, axis=-1):
    """x - logsumexp(x, axis), from x - max(x)."""
    xp = bk.xp
    xf = _low_to_f32(x)
    z = xf - xp.max(xf, axis=axis, keepdims=True)
    y = z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))
    if y.dtype != x.dtype:
        y = y.astype(x.dtype)
    return y


def softmax_grad(bk, g, y, axis=-1):
    """y * (g - sum(g * y, axis)): softmax's vjp (and jvp) from its output y; g may carry
    leading batch axes."""
    gy = g * y
    return gy - y * _sum(bk, gy, (axis,), True)


def log_softmax_grad(bk, g, y, axis=-1):
    """g - exp(y) * sum(g, axis): log_softmax's vjp from its output y."""
    return g - bk.unary("exp", y) * _sum(bk, g, (axis,), True)


# ---- cross-entropy with integer labels ------------------------------------------------------


def cross_entropy(bk, x, labels, axis=-1, label_smoothing=0.0):
    """(loss, lse): loss = lse - sum(q * x, axis), q = (1 - s) onehot(labels) + s / C, in x's
    dtype; lse = logsumexp(x, axis) (keepdims, float32 for 16-bit x), NaN for a label outside
    [0, C) (per example: no host synchronisation)."""
    xp = bk.xp
    xf = _low_to_f32(x)
    e, m = _stable_exp(xp, xf, axis)
    lse = xp.log(xp.sum(e, axis=axis, keepdims=True)) + m
    lab = xp.expand_dims(labels, axis)
    valid = (lab >= 0) & (lab < x.shape[axis])
    lse = xp.where(valid, lse, xp.nan).astype(lse.dtype, copy=False)
    picked = xp.take_along_axis(xf, xp.where(valid, lab, 0), axis=axis)
    if label_smoothing:
        s = label_smoothing
        mean_x = xp.mean(xf, axis=axis, keepdims=True)
        loss = lse - (1.0 - s) * picked - s * mean_x
    else:
        loss = lse - picked
    loss = xp.squeeze(loss, axis=axis)
    if loss.dtype != x.dtype:
        loss = loss.astype(x.dtype)
    return loss, lse


def cross_entropy_dlogits(bk, x, labels, lse, axis=-1, label_smoothing=0.0):
    """softmax(x) - q, d loss / d logits, with softmax taken as e / sum(e), e = exp(x - lse).

    exp(x - lse) alone is softmax(x) times exp(lse - rounded lse): a relative error of every
    entry as large as lse's rounding (3e-5 in float32 at |x| ~ 1000, whose ulp is 6e-5), where
    dividing by sum(e) cancels it (softmax is unchanged by a shift), leaving a few ulp, as
    PyTorch's exp(x - max) / sum. So the value does not depend on lse, only its accuracy does.
    A label outside [0, C) has a NaN lse, hence NaN here."""
    xp = bk.xp
    e = xp.exp(x - lse)
    e /= xp.sum(e, axis=axis, keepdims=True)
    p = e if e.dtype == x.dtype else e.astype(x.dtype)
    c = x.shape[axis]
    iota = xp.asarray(xp.arange(c).reshape((c,) + (1,) * (-axis - 1)))
    pos = labels.ndim + axis + 1  # labels with the class axis put back as size 1
    lab = labels.reshape(tuple(labels.shape[:pos]) + (1,) + tuple(labels.shape[pos:]))
    q = bk.astype(xp.equal(lab, iota), x.dtype)
    if label_smoothing:
        q = q * (1.0 - label_smoothing) + label_smoothing / c
    return p - q


# ---- layer normalisation --------------------------------------------------------------------


def layer_norm(bk, x, n_axes=1, eps=1e-5):
    """(y, rstd): y = (x - mean(x)) * rstd over the last n_axes axes, rstd = 1 / sqrt(var(x) +
    eps) (keepdims), both in x's dtype (computed in float32 for 16-bit x)."""
    xp = bk.xp
    axes = tuple(range(-n_axes, 0))
    xf = _low_to_f32(x)
    xc = xf - xp.mean(xf, axis=axes, keepdims=True)
    rstd = 1.0 / xp.sqrt(xp.mean(xc * xc, axis=axes, keepdims=True) + eps)
    y = xc * rstd
    if y.dtype != x.dtype:
        y, rstd = y.astype(x.dtype), rstd.astype(x.dtype)
    return y, rstd


def _ln_rule(bk, v, y, rstd, n_axes):
    axes = tuple(range(-n_axes, 0))
    mv = _mean(bk, v, axes, True)
    mvy = _mean(bk, v * y, axes, True)
    return (v - mv - y * mvy) * rstd


def layer_norm_grad(bk, g, y, rstd, n_axes=1):
    """rstd * (g - mean(g) - y * mean(g * y)) over the last n_axes axes: layer norm's vjp (and
    jvp: its Jacobian is symmetric) from its output y and rstd. 16-bit floats are computed in
    float32, as the kernel does (in bfloat16 the two means cancel badly when rstd is large)."""
    if g.dtype.itemsize == 2:
        f32 = "float32"
        dx = _ln_rule(bk, g.astype(f32), y.astype(f32), rstd.astype(f32), n_axes)
        return dx.astype(g.dtype)
    return _ln_rule(bk, g, y, rstd, n_axes)


# ---- dropout --------------------------------------------------------------------------------


def dropout_mask(bk, shape, p, seed, dtype):
    """keep / (1 - p) with keep = [u >= p], u the backend's uniform stream for ``seed``: the
    scaled mask, in ``dtype``."""
    xp = bk.xp
    keep = bk.uniform(seed, shape) >= xp.float32(p)
    return keep.astype(dtype) * xp.asarray(1.0 / (1.0 - p), dtype=dtype)


# ---- bias + activation, GELU ----------------------------------------------------------------


def gelu_tanh(xp, x):
    """GELU's tanh form on arrays: 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))."""
    t = xp.tanh(GELU_K * (x + GELU_C * x * x * x))
    return 0.5 * x * (1 + t)


def gelu_deriv(bk, x, approximate="tanh"):
    """d gelu / dx on arrays, in the tanh form or the exact (erf) one."""
    if approximate == "tanh":
        t = bk.unary("tanh", GELU_K * (x + GELU_C * x * x * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (GELU_K * (1 + 3 * GELU_C * x * x))
    z = x / _SQRT_2
    erf = bk.scipy.special.erf(z)  # (the erf primitive's forward)
    if erf.dtype != z.dtype:
        erf = erf.astype(z.dtype)
    return 0.5 * (1 + erf) + x * (_INV_SQRT_2PI * bk.unary("exp", -0.5 * (x * x)))


def gelu_grad(bk, g, x, approximate="tanh"):
    """g * gelu'(x): GELU's vjp and jvp."""
    return g * gelu_deriv(bk, x, approximate)


def bias_act(bk, x, b, act="relu"):
    """act(x + b), act in relu, tanh, gelu (tanh form)."""
    z = bk.add(x, b)
    if act == "relu":
        return bk.relu(z)
    if act == "tanh":
        return bk.unary("tanh", z)
    return bk.astype(gelu_tanh(bk.xp, z), z.dtype)


def bias_act_grad(bk, g, x, b, act="gelu"):
    """g * act'(x + b) (the cotangent of x; b's is its sum over the broadcast axes)."""
    z = x + b
    if act == "relu":
        return bk.relu_grad(g, z)
    if act == "tanh":
        return bk.act_grad("tanh", g, bk.unary("tanh", z))
    return g * gelu_deriv(bk, z, "tanh")


__all__ = ["BIAS_ACTS", "GELU_C", "GELU_K", "bias_act", "bias_act_grad", "cross_entropy",
           "cross_entropy_dlogits", "dropout_mask", "gelu_deriv", "gelu_grad", "gelu_tanh",
           "layer_norm", "layer_norm_grad", "log_softmax", "log_softmax_grad", "softmax",
           "softmax_grad"]
