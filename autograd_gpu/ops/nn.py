"""Neural-network primitives and losses: softmax, log_softmax, cross_entropy, layer_norm, mse_loss.

softmax, log_softmax, cross_entropy with integer labels and layer_norm are primitives (fused
kernels will take over their forward on the GPU: each forward's xp body is the reference, and a
``if bk.has_kernel(name): ...`` branch at its top only has to return the same output and saved
values). The composites they replace stay in tests/test_reduce_linalg_nn.py as oracles.

Axis parameters are stored negative (-1 is the last axis), so the rules hold unchanged under a
leading batch of tangents or cotangents. float16/bfloat16 inputs are computed in float32 inside
each forward and the result is rounded once to the input dtype.
"""

from __future__ import annotations

import numbers

from ..dtypes import as_dtype, is_floating
from ..errors import ArgumentError, DTypeError, ShapeError
from . import sampling as S
from ._util import as_tensor, check_values
from .elementwise import AsType
from .reduce import _low_to_f32
from .registry import apply, defop


def _stable_exp(xp, x, axis):
    """exp(x - max(x, axis)) and that max (keepdims): no overflow for large logits."""
    m = xp.max(x, axis=axis, keepdims=True)
    return xp.exp(x - m), m


def _axis_sample(draw, min_dims=1):
    from hypothesis import strategies as st

    shape = draw(S.shapes(min_dims=min_dims))
    return shape, draw(st.integers(-len(shape), -1))


def _keep_axis(F, v, axis, ndim):
    """A (batched) value v of shape batch + S, S the input shape without ``axis``, with that axis
    put back as size 1 so that it broadcasts against batch + input shape."""
    pos = v.ndim + axis + 1  # where the removed axis sits, counted on v's own shape
    return F.reshape(v, tuple(v.shape[:pos]) + (1,) + tuple(v.shape[pos:]))


# ---- softmax family -------------------------------------------------------------------------


@defop("softmax", params=("axis",), cost=lambda out, x, **p: 5.0 * x.size, saves=("out",),
       batch=("axes", "axis"))
class Softmax:
    """y = exp(x) / sum(exp(x), axis) (computed from x - max(x)); saves y only.
    vjp: y * (g - sum(g * y, axis)); jvp: y * (t - sum(t * y, axis))."""

    def forward(bk, x, *, axis=-1):
        if axis == -1 and bk.has_kernel("softmax_lastdim"):  # fused kernel (GPU)
            y = bk.kernel("softmax_lastdim")(x)
            return y, (y,)
        xp = bk.xp
        e, _ = _stable_exp(xp, _low_to_f32(x), axis)
        e /= xp.sum(e, axis=axis, keepdims=True)
        if e.dtype != x.dtype:
            e = e.astype(x.dtype)
        return e, (e,)

    def vjp(F, g, saved, needs, *, axis=-1):
        (y,) = saved
        if (F.is_raw and axis == -1 and g.shape == y.shape  # no tangent batch
                and F.bk.has_kernel("softmax_lastdim_grad")):
            return (F.bk.kernel("softmax_lastdim_grad")(g, y),)
        gy = g * y
        return (gy - y * F.sum(gy, axis=(axis,), keepdims=True),)

    def jvp(F, ts, saved, *, axis=-1):
        (y,) = saved
        ty = ts[0] * y
        return ty - y * F.sum(ty, axis=(axis,), keepdims=True)

    def sample(draw):
        shape, axis = _axis_sample(draw)
        return (draw(S.arrays(shape, -3.0, 3.0)),), {"axis": axis}


@defop("log_softmax", params=("axis",), cost=lambda out, x, **p: 5.0 * x.size, saves=("out",),
       batch=("axes", "axis"))
class LogSoftmax:
    """y = x - logsumexp(x, axis) (computed from x - max(x)); saves y only.
    vjp: g - exp(y) * sum(g, axis); jvp: t - sum(exp(y) * t, axis)."""

    def forward(bk, x, *, axis=-1):
        if axis == -1 and bk.has_kernel("log_softmax_lastdim"):  # fused kernel (GPU)
            y = bk.kernel("log_softmax_lastdim")(x)
            return y, (y,)
        xp = bk.xp
        xf = _low_to_f32(x)
        z = xf - xp.max(xf, axis=axis, keepdims=True)
        y = z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))
        if y.dtype != x.dtype:
            y = y.astype(x.dtype)
        return y, (y,)

    def vjp(F, g, saved, needs, *, axis=-1):
        (y,) = saved
        if (F.is_raw and axis == -1 and g.shape == y.shape  # no tangent batch
                and F.bk.has_kernel("log_softmax_lastdim_grad")):
            return (F.bk.kernel("log_softmax_lastdim_grad")(g, y),)
        return (g - F.exp(y) * F.sum(g, axis=(axis,), keepdims=True),)

    def jvp(F, ts, saved, *, axis=-1):
        (y,) = saved
        t = ts[0]
        return t - F.sum(F.exp(y) * t, axis=(axis,), keepdims=True)

    def sample(draw):
        shape, axis = _axis_sample(draw)
        return (draw(S.arrays(shape, -3.0, 3.0)),), {"axis": axis}


# ---- cross-entropy with integer labels -------------------------------------------------------


def _target_dist(F, x, labels, axis, smoothing):
    """q: the one-hot of labels along axis, smoothed to (1 - s) onehot + s / C; x's dtype."""
    c = x.shape[axis]
    iota = F.const(F.xp.arange(c).reshape((c,) + (1,) * (-axis - 1)))
    q = F.astype(F.equal(_keep_axis(F, labels, axis, x.ndim), iota), dtype=x.dtype)
    if smoothing:
        q = q * (1.0 - smoothing) + smoothing / c
    return q


@defop("cross_entropy", params=("axis", "label_smoothing"),
       cost=lambda out, x, labels, **p: 6.0 * x.size, saves=("x", "labels", None))
class CrossEntropy:
    """Per-example loss from logits x and integer class labels along axis:
    loss = logsumexp(x) - sum(q * x, axis), q = (1 - s) onehot(label) + s / C (s the label
    smoothing; s = 0 gives -log_softmax(x)[label]). Output: x's shape without axis.
    vjp (x): g * (softmax(x) - q); the labels are not differentiable. Saves x, the labels and
    lse = logsumexp(x) (keepdims). First-order sweeps take softmax as e / sum(e), e = exp(x - lse)
    (the division cancels lse's rounding: exp(x - lse) alone was 1,000 times less accurate than
    PyTorch in float32 at |x| ~ 1000); a recorded (higher-order) sweep recomputes it with the
    softmax primitive, since lse is a constant to the rules. A label outside [0, C) gives a NaN
    loss and NaN first-order gradient for its example (the public function raises on the CPU
    before that; on a GPU it does not synchronise to check)."""

    def batch(F, args, dims, *, axis=-1, label_smoothing=0.0):
        x, labels = (F.front(a, d) for a, d in zip(args, dims))
        return F.apply(CrossEntropy, x, labels, axis=axis + 1 if axis >= 0 else axis,
                       label_smoothing=label_smoothing), 0

    def forward(bk, x, labels, *, axis=-1, label_smoothing=0.0):
        if axis == -1 and bk.has_kernel("cross_entropy"):  # fused kernel: loss and lse, 1 pass
            loss, lse, _ = bk.kernel("cross_entropy")(x, labels, label_smoothing=label_smoothing,
                                                      want_dlogits=False)
            return loss.astype(x.dtype, copy=False), (x, labels, lse[..., None])
        xp = bk.xp
        xf = _low_to_f32(x)
        e, m = _stable_exp(xp, xf, axis)
        lse = xp.log(xp.sum(e, axis=axis, keepdims=True)) + m
        lab = xp.expand_dims(labels, axis)
        valid = (lab >= 0) & (lab < x.shape[axis])  # per example: cheap, and no host sync
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
        return loss, (x, labels, lse)

    def vjp(F, g, saved, needs, *, axis=-1, label_smoothing=0.0):
        return _keep_axis(F, g, axis, saved[0].ndim) * _ce_dlogits(F, saved, axis,
                                                                    label_smoothing), None

    def jvp(F, ts, saved, *, axis=-1, label_smoothing=0.0):
        d = _ce_dlogits(F, saved, axis, label_smoothing)
        return F.sum(ts[0] * d, axis=(axis,), keepdims=False)

    def sample(draw):
        import numpy as np
        from hypothesis import strategies as st

        shape, axis = _axis_sample(draw)
        x = draw(S.arrays(shape, -3.0, 3.0))
        lshape = shape[: len(shape) + axis] + shape[len(shape) + axis + 1:]
        labels = np.asarray(draw(S.ints(lshape, 0, shape[axis])), dtype=np.int64)
        return (x, labels), {"axis": axis, "label_smoothing": draw(st.sampled_from([0.0, 0.1]))}


def _ce_dlogits(F, saved, axis, smoothing):
    """d loss / d logits = softmax(x) - q."""
    x, labels, lse = saved
    if F.is_raw and axis == -1 and F.bk.has_kernel("cross_entropy_dlogits"):  # one kernel
        return F.bk.kernel("cross_entropy_dlogits")(x, labels, lse, label_smoothing=smoothing)
    if F.is_raw:
        # softmax from the forward's lse: e = exp(x - lse) is softmax(x) times exp(lse - lse
        # rounded), a relative error of every entry as large as lse's rounding (3e-5 in
        # float32 at |x| ~ 1000, whose ulp is 6e-5); dividing by sum(e) cancels it (softmax is
        # unchanged by a shift), leaving a few ulp, as PyTorch's exp(x - max) / sum
        xp = F.xp
        e = xp.exp(x - lse)
        e /= xp.sum(e, axis=axis, keepdims=True)
        p = e if e.dtype == x.dtype else e.astype(x.dtype)
    else:
        p = F.softmax(x, axis=axis)
    return p - _target_dist(F, x, labels, axis, smoothing)


# ---- layer normalisation --------------------------------------------------------------------


def _prod_of(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _rstd(F, x, n_axes, eps):
    """1 / sqrt(var(x) + eps) over the last n_axes axes, keepdims, through differentiable ops."""
    axes = tuple(range(x.ndim - n_axes, x.ndim))
    return 1.0 / F.sqrt(F.var(x, axis=axes, ddof=0, keepdims=True) + eps)


def _ln_rule(F, v, y, rstd, n_axes):
    """rstd * (v - mean(v) - y * mean(v * y)): the layer-norm Jacobian is symmetric, so this is
    both its vjp (v = g) and its jvp (v = t)."""
    axes = tuple(range(-n_axes, 0))
    mv = F.mean(v, axis=axes, keepdims=True)
    mvy = F.mean(v * y, axis=axes, keepdims=True)
    return (v - mv - y * mvy) * rstd


@defop("layer_norm", params=("n_axes", "eps"), cost=lambda out, x, **p: 8.0 * x.size,
       saves=("x", "out", None), batch="leading")
class LayerNorm:
    """y = (x - mean(x)) / sqrt(var(x) + eps) over the last n_axes axes (no affine part: the
    public layer_norm multiplies by weight and adds bias as composites).
    vjp/jvp: rstd * (v - mean(v) - y * mean(v * y)), rstd = 1 / sqrt(var(x) + eps).
    Saves x, y and rstd; rstd is used as is in first-order sweeps and recomputed from x through
    differentiable ops when the sweep itself is recorded (higher order)."""

    def forward(bk, x, *, n_axes, eps=1e-5):
        if bk.has_kernel("layer_norm"):  # fused kernel (GPU): one pass per row
            lead = tuple(x.shape[: x.ndim - n_axes])
            c = _prod_of(x.shape[x.ndim - n_axes:])
            y, _, rstd = bk.kernel("layer_norm")(x.reshape(lead + (c,)), None, None, eps)
            y = y.reshape(x.shape)
            return y, (x, y, rstd.reshape(lead + (1,) * n_axes).astype(x.dtype, copy=False))
        xp = bk.xp
        axes = tuple(range(-n_axes, 0))
        xf = _low_to_f32(x)
        xc = xf - xp.mean(xf, axis=axes, keepdims=True)
        rstd = 1.0 / xp.sqrt(xp.mean(xc * xc, axis=axes, keepdims=True) + eps)
        y = xc * rstd
        if y.dtype != x.dtype:
            y, rstd = y.astype(x.dtype), rstd.astype(x.dtype)
        return y, (x, y, rstd)

    def vjp(F, g, saved, needs, *, n_axes, eps=1e-5):
        x, y, rstd = saved
        if (F.is_raw and g.shape == y.shape  # no tangent batch
                and F.bk.has_kernel("layer_norm_grad_y")):  # fused kernel (GPU)
            c = _prod_of(y.shape[y.ndim - n_axes:])
            dx = F.bk.kernel("layer_norm_grad_y")(
                g.reshape(tuple(g.shape[: g.ndim - n_axes]) + (c,)),
                y.reshape(tuple(y.shape[: y.ndim - n_axes]) + (c,)), rstd)
            return (dx.reshape(g.shape),)
        if not F.is_raw:
            rstd = _rstd(F, x, n_axes, eps)
        elif g.dtype.itemsize == 2:  # 16-bit floats: the rule in float32, as the kernel runs it
            f32 = "float32"  # (in bfloat16 the two means cancel badly when rstd is large)
            dx = _ln_rule(F, g.astype(f32), y.astype(f32), rstd.astype(f32), n_axes)
            return (dx.astype(g.dtype),)
        return (_ln_rule(F, g, y, rstd, n_axes),)

    def jvp(F, ts, saved, *, n_axes, eps=1e-5):
        x, y, rstd = saved
        if not F.is_raw:
            rstd = _rstd(F, x, n_axes, eps)
        return _ln_rule(F, ts[0], y, rstd, n_axes)

    def sample(draw):
        from hypothesis import strategies as st

        shape = draw(S.shapes(min_dims=1, min_side=2))
        n_axes = draw(st.integers(1, len(shape)))
        x = draw(S.arrays(shape, -2.0, 2.0))
        return (x,), {"n_axes": n_axes, "eps": draw(st.sampled_from([1e-5, 0.1]))}


# ---- public functions -----------------------------------------------------------------------


def _float_tensor(x, name, op, like=None):
    t = as_tensor(x, like, name, op)
    if not hasattr(t, "_bk"):
        raise ArgumentError(f"{op}: argument '{name}' expected a tensor, got a Python number {x!r}")
    if not is_floating(t.dtype):
        raise DTypeError(f"{op}: argument '{name}' expected a floating dtype, got {t.dtype}")
    return t


def _norm_axis(axis, ndim, op):
    if not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise ShapeError(
            f"{op}: argument 'axis' expected an int in [{-ndim}, {ndim}), got {axis!r}"
        )
    return int(axis) % ndim - ndim


def softmax(x, axis: int = -1):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) along axis (stable for large x)."""
    x = _float_tensor(x, "x", "softmax")
    if x.ndim == 0:
        raise ShapeError("softmax: argument 'x' expected at least 1 dimension, got a scalar")
    axis = _norm_axis(axis, x.ndim, "softmax")
    if x.size == 0:  # nothing to normalise: an empty result of x's shape (NumPy, PyTorch)
        return x * 0.0
    return apply(Softmax, x, axis=axis)


def log_softmax(x, axis: int = -1):
    """log(softmax(x)) = x - logsumexp(x) along axis (stable for large x)."""
    x = _float_tensor(x, "x", "log_softmax")
    if x.ndim == 0:
        raise ShapeError("log_softmax: argument 'x' expected at least 1 dimension, got a scalar")
    axis = _norm_axis(axis, x.ndim, "log_softmax")
    if x.size == 0:  # nothing to normalise: an empty result of x's shape (NumPy, PyTorch)
        return x * 0.0
    return apply(LogSoftmax, x, axis=axis)


_REDUCTIONS = ("mean", "sum", "none")


def _reduce_loss(loss, reduction):
    from .reduce import mean, sum

    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    return loss


def _check_reduction(reduction, op):
    if reduction not in _REDUCTIONS:
        raise ArgumentError(
            f"{op}: argument 'reduction' expected one of {_REDUCTIONS}, got {reduction!r}"
        )


def cross_entropy(logits, target, axis: int = -1, reduction: str = "mean",
                  label_smoothing: float = 0.0):
    """Cross-entropy between softmax(logits) along axis and a target, which is either

    * integer class labels (shape: logits' shape without axis; values in [0, C)): the loss is
      -log_softmax(logits)[label], the labels are not differentiated (one fused primitive). A
      label out of range raises ArgumentError on the CPU; on a GPU (no host sync) it makes
      that example's loss NaN;
    * probabilities (a float tensor shaped like logits): the loss is -sum(p * log_softmax), and
      it is differentiable in both arguments (a composite).

    label_smoothing s in [0, 1) mixes the target with the uniform distribution:
    (1 - s) target + s / C. reduction: 'mean' (over examples), 'sum' or 'none'."""
    from ..tensor import Tensor

    op = "cross_entropy"
    x = _float_tensor(logits, "logits", op)
    if x.ndim == 0:
        raise ShapeError(f"{op}: argument 'logits' expected at least 1 dimension (classes), got "
                         "a scalar")
    ax = _norm_axis(axis, x.ndim, op)
    _check_reduction(reduction, op)
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing < 1.0:
        raise ArgumentError(
            f"{op}: argument 'label_smoothing' expected a number in [0, 1), got {label_smoothing!r}"
        )
    s = float(label_smoothing)
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        target = Tensor(x._bk.xp.asarray(target, dtype="int64"), x._bk)
    t = as_tensor(target, x, "target", op)
    if not hasattr(t, "_bk"):
        raise ArgumentError(f"{op}: argument 'target' expected integer labels or probabilities, "
                            f"got {target!r}")
    c = x.shape[ax]
    floating = is_floating(t.dtype)
    kind = "f" if floating else "b" if t.dtype == bool else t._bk.xp.dtype(t.dtype).kind
    if kind in "iu":
        lshape = x.shape[: x.ndim + ax] + x.shape[x.ndim + ax + 1:]
        if t.shape != lshape:
            raise ShapeError(
                f"{op}: argument 'target' (integer labels) expected shape {lshape} (logits "
                f"{x.shape} without axis {ax}), got {t.shape}"
            )
        if t.size and t._bk.is_host:
            # free on the CPU; on a GPU this would be a host sync per call, so there the
            # primitive marks such examples with a NaN loss instead
            vals = check_values(t)
            lo, hi = int(vals.min()), int(vals.max())
            if lo < 0 or hi >= c:
                raise ArgumentError(
                    f"{op}: argument 'target' expected class labels in [0, {c}), got values in "
                    f"[{lo}, {hi}]"
                )
        if t.dtype != x._bk.xp.int64:
            t = apply(AsType, t, dtype=as_dtype("int64"))
        loss = apply(CrossEntropy, x, t, axis=ax, label_smoothing=s)
    elif kind == "f":
        if t.shape != x.shape:
            raise ShapeError(
                f"{op}: argument 'target' (probabilities) expected the logits' shape {x.shape}, "
                f"got {t.shape} (integer class labels need an integer dtype)"
            )
        from .reduce import sum

        q = t * (1.0 - s) + s / c if s else t
        loss = -sum(q * log_softmax(x, axis=ax), axis=x.ndim + ax)
    else:
        raise DTypeError(
            f"{op}: argument 'target' expected integer class labels or floating probabilities, "
            f"got dtype {t.dtype}"
        )
    return _reduce_loss(loss, reduction)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Layer normalisation over the trailing axes given by normalized_shape:
    y = (x - mean) / sqrt(var + eps) * weight + bias (weight and bias optional, shaped
    normalized_shape; the biased variance, as in PyTorch)."""
    op = "layer_norm"
    x = _float_tensor(x, "x", op)
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    try:
        if isinstance(normalized_shape, str):
            raise TypeError
        ns = tuple(int(n) for n in normalized_shape)
    except (TypeError, ValueError):
        raise ArgumentError(f"{op}: argument 'normalized_shape' expected an int or a tuple of "
                            f"ints, got {normalized_shape!r}") from None
    k = len(ns)
    if k == 0 or k > x.ndim or x.shape[x.ndim - k:] != ns:
        raise ShapeError(f"{op}: argument 'normalized_shape' expected the trailing axes of x "
                         f"(shape {x.shape}), got {ns}")
    if not isinstance(eps, numbers.Real) or not eps > 0:
        raise ArgumentError(f"{op}: argument 'eps' expected a positive number, got {eps!r}")
    y = apply(LayerNorm, x, n_axes=k, eps=float(eps))
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            continue
        p = _float_tensor(p, name, op, like=x)
        if p.shape != ns:
            raise ShapeError(f"{op}: argument '{name}' expected shape {ns} (normalized_shape), "
                             f"got {p.shape}")
        y = y * p if name == "weight" else y + p
    return y


def mse_loss(pred, target, reduction: str = "mean"):
    """Mean squared error: (pred - target)^2, averaged ('mean'), summed ('sum') or per element
    ('none'). A composite; shapes must be equal (no silent broadcasting)."""
    op = "mse_loss"
    p = _float_tensor(pred, "pred", op)
    t = _float_tensor(target, "target", op, like=p)
    if p.shape != t.shape:
        raise ShapeError(f"{op}: argument 'target' expected the shape of pred {p.shape}, "
                         f"got {t.shape}")
    _check_reduction(reduction, op)
    d = p - t
    return _reduce_loss(d * d, reduction)


__all__ = ["softmax", "log_softmax", "cross_entropy", "layer_norm", "mse_loss"]
