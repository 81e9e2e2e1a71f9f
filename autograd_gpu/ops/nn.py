"""Neural-network primitives and losses: softmax, log_softmax, cross_entropy, layer_norm, mse_loss.

softmax, log_softmax, cross_entropy with integer labels and layer_norm are primitives whose
forwards are backend operations (``bk.softmax``, ...: backend/fused.py is their reference, and
a GPU backend runs a fused kernel where one applies). Their derivatives are primitives of their
own, the fused gradients softmax_grad, log_softmax_grad, cross_entropy_dlogits and
layer_norm_grad, with rules of their own (so every gradient is differentiable again): a rule is
mathematics only, and the backend picks the kernel inside the fused gradient's forward. The
composites they replace stay in tests/test_reduce_linalg_nn.py as oracles.

Axis parameters are stored negative (-1 is the last axis), so the rules hold unchanged under a
leading batch of tangents or cotangents. float16/bfloat16 inputs are computed in float32 inside
each forward and the result is rounded once to the input dtype.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..dtypes import as_dtype, is_floating
from ..errors import ArgumentError, DTypeError, ShapeError
from ..tensor import Tensor
from . import sampling as S
from ._util import as_tensor, axis_index, check_values, tsum
from .elementwise import AsType
from .reduce import mean as _mean
from .reduce import sum as _sum
from .registry import apply, defop


def _axis_sample(draw, min_dims=1):
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    shape = draw(S.shapes(min_dims=min_dims))
    return shape, draw(st.integers(-len(shape), -1))


def _keep_axis(F, v, axis, ndim):
    """A (batched) value v of shape batch + S, S the input shape without ``axis``, with that axis
    put back as size 1 so that it broadcasts against batch + input shape."""
    pos = v.ndim + axis + 1  # where the removed axis sits, counted on v's own shape
    return F.reshape(v, tuple(v.shape[:pos]) + (1,) + tuple(v.shape[pos:]))


def _softmax_cost(out, x, **p):
    return 5.0 * x.size


# ---- softmax family -------------------------------------------------------------------------


@defop("softmax", params=("axis",), cost=_softmax_cost, saves=("out",), batch=("axes", "axis"))
class Softmax:
    """y = exp(x) / sum(exp(x), axis) (computed from x - max(x)); saves y only.
    vjp and jvp: y * (v - sum(v * y, axis)) (the Jacobian is symmetric), softmax_grad."""

    def forward(bk, x, *, axis=-1):
        y = bk.softmax(x, axis)
        return y, (y,)

    def vjp(F, g, saved, needs, *, axis=-1):
        return (F.softmax_grad(g, saved[0], axis=axis),)

    def jvp(F, ts, saved, *, axis=-1):
        return F.softmax_grad(ts[0], saved[0], axis=axis)

    def sample(draw):
        shape, axis = _axis_sample(draw)
        return (draw(S.arrays(shape, -3.0, 3.0)),), {"axis": axis}


@defop("log_softmax", params=("axis",), cost=_softmax_cost, saves=("out",),
       batch=("axes", "axis"))
class LogSoftmax:
    """y = x - logsumexp(x, axis) (computed from x - max(x)); saves y only.
    vjp: g - exp(y) * sum(g, axis) (log_softmax_grad); jvp: t - sum(exp(y) * t, axis)."""

    def forward(bk, x, *, axis=-1):
        y = bk.log_softmax(x, axis)
        return y, (y,)

    def vjp(F, g, saved, needs, *, axis=-1):
        return (F.log_softmax_grad(g, saved[0], axis=axis),)

    def jvp(F, ts, saved, *, axis=-1):
        (y,) = saved
        t = ts[0]
        return t - F.sum(F.exp(y) * t, axis=(axis,), keepdims=True)

    def sample(draw):
        shape, axis = _axis_sample(draw)
        return (draw(S.arrays(shape, -3.0, 3.0)),), {"axis": axis}


def _grad_sample(draw):
    """(g, y) of one shape and an axis: a fused gradient's inputs."""
    shape, axis = _axis_sample(draw)
    return (draw(S.arrays(shape)), draw(S.arrays(shape, -2.0, 2.0))), {"axis": axis}


@defop("softmax_grad", params=("axis",), cost=_softmax_cost, broadcasting=True,
       saves=("g", "y"), batch=("axes", "axis"))
class SoftmaxGrad:
    """out = y * (g - sum(g * y, axis)): softmax's vjp and jvp from its output y, one kernel on
    the GPU. Linear in g with a symmetric matrix (vjp in g: softmax_grad(u, y)); in y:
    u * (g - sum(g * y)) - g * sum(u * y). ``g`` may carry leading batch axes."""

    def value(bk):
        return bk.softmax_grad

    def forward(bk, g, y, *, axis=-1):
        return bk.softmax_grad(g, y, axis), (g, y)

    def vjp(F, u, saved, needs, *, axis=-1):
        g, y = saved
        ax = (axis,)
        gg = F.softmax_grad(u, y, axis=axis) if needs[0] else None
        gy = None
        if needs[1]:
            s = F.sum(g * y, axis=ax, keepdims=True)
            gy = u * (g - s) - g * F.sum(u * y, axis=ax, keepdims=True)
        return gg, gy

    def jvp(F, ts, saved, *, axis=-1):
        g, y = saved
        tg, ty = ts
        ax = (axis,)
        dy = None
        if ty is not None:
            s = F.sum(g * y, axis=ax, keepdims=True)
            dy = ty * (g - s) - y * F.sum(g * ty, axis=ax, keepdims=True)
        return tsum(None if tg is None else F.softmax_grad(tg, y, axis=axis), dy)

    sample = _grad_sample


@defop("log_softmax_grad", params=("axis",), cost=_softmax_cost, broadcasting=True,
       saves=("g", "y"), batch=("axes", "axis"))
class LogSoftmaxGrad:
    """out = g - exp(y) * sum(g, axis): log_softmax's vjp from its output y, one kernel on the
    GPU. In g: the transpose, u - sum(u * exp(y)); in y: -u * exp(y) * sum(g)."""

    def value(bk):
        return bk.log_softmax_grad

    def forward(bk, g, y, *, axis=-1):
        return bk.log_softmax_grad(g, y, axis), (g, y)

    def vjp(F, u, saved, needs, *, axis=-1):
        g, y = saved
        ax = (axis,)
        e = F.exp(y)
        gg = u - F.sum(u * e, axis=ax, keepdims=True) if needs[0] else None
        gy = -(u * e) * F.sum(g, axis=ax, keepdims=True) if needs[1] else None
        return gg, gy

    def jvp(F, ts, saved, *, axis=-1):
        g, y = saved
        tg, ty = ts
        ax = (axis,)
        dy = None if ty is None else -(ty * F.exp(y)) * F.sum(g, axis=ax, keepdims=True)
        return tsum(None if tg is None else F.log_softmax_grad(tg, y, axis=axis), dy)

    sample = _grad_sample


# ---- cross-entropy with integer labels -------------------------------------------------------


def _ce_cost(out, x, *rest, **p):
    return 6.0 * x.size


def _labels_sample(draw):
    shape, axis = _axis_sample(draw)
    lshape = shape[: len(shape) + axis] + shape[len(shape) + axis + 1:]
    labels = np.asarray(draw(S.ints(lshape, 0, shape[axis])), dtype=np.int64)
    return shape, axis, labels


@defop("cross_entropy", params=("axis", "label_smoothing"), cost=_ce_cost,
       saves=("x", "labels", None))
class CrossEntropy:
    """Per-example loss from logits x and integer class labels along axis:
    loss = logsumexp(x) - sum(q * x, axis), q = (1 - s) onehot(label) + s / C (s the label
    smoothing; s = 0 gives -log_softmax(x)[label]). Output: x's shape without axis.
    vjp (x): g * (softmax(x) - q), cross_entropy_dlogits; the labels are not differentiable.
    Saves x, the labels and lse = logsumexp(x) (keepdims), from which the fused gradient takes
    softmax. A label outside [0, C) gives a NaN loss and NaN gradient for its example (the public
    function raises on the CPU before that; on a GPU it does not synchronise to check)."""

    def batch(F, args, dims, *, axis=-1, label_smoothing=0.0):
        x, labels = (F.front(a, d) for a, d in zip(args, dims))
        return F.apply(CrossEntropy, x, labels, axis=axis + 1 if axis >= 0 else axis,
                       label_smoothing=label_smoothing), 0

    def forward(bk, x, labels, *, axis=-1, label_smoothing=0.0):
        loss, lse = bk.cross_entropy(x, labels, axis, label_smoothing)
        return loss, (x, labels, lse)

    def vjp(F, g, saved, needs, *, axis=-1, label_smoothing=0.0):
        x, labels, lse = saved
        d = F.cross_entropy_dlogits(x, labels, lse, axis=axis, label_smoothing=label_smoothing)
        return _keep_axis(F, g, axis, x.ndim) * d, None

    def jvp(F, ts, saved, *, axis=-1, label_smoothing=0.0):
        x, labels, lse = saved
        d = F.cross_entropy_dlogits(x, labels, lse, axis=axis, label_smoothing=label_smoothing)
        return F.sum(ts[0] * d, axis=(axis,), keepdims=False)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape, axis, labels = _labels_sample(draw)
        x = draw(S.arrays(shape, -3.0, 3.0))
        return (x, labels), {"axis": axis, "label_smoothing": draw(st.sampled_from([0.0, 0.1]))}


@defop("cross_entropy_dlogits", params=("axis", "label_smoothing"), cost=_ce_cost,
       broadcasting=True, saves=("x",), batch=("axes", "axis"))
class CrossEntropyDlogits:
    """out = softmax(x) - q, q = (1 - s) onehot(labels) + s / C along axis: d cross_entropy /
    d logits, one kernel on the GPU. softmax is taken as e / sum(e), e = exp(x - lse), from the
    forward's lse = logsumexp(x) (keepdims): the division cancels lse's rounding, so the value
    depends on x alone (its derivative in lse is zero) and a recorded sweep differentiates it
    as softmax(x): vjp in x softmax_grad(u, softmax(x)); labels and lse get none. A label
    outside [0, C) (lse NaN) gives NaN."""

    def value(bk):
        return bk.cross_entropy_dlogits

    def forward(bk, x, labels, lse, *, axis=-1, label_smoothing=0.0):
        return bk.cross_entropy_dlogits(x, labels, lse, axis, label_smoothing), (x,)

    def vjp(F, u, saved, needs, *, axis=-1, label_smoothing=0.0):
        (x,) = saved
        return F.softmax_grad(u, F.softmax(x, axis=axis), axis=axis), None, None

    def jvp(F, ts, saved, *, axis=-1, label_smoothing=0.0):
        if ts[0] is None:
            return None
        return F.softmax_grad(ts[0], F.softmax(saved[0], axis=axis), axis=axis)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape, axis, labels = _labels_sample(draw)
        x = draw(S.arrays(shape, -3.0, 3.0))
        lse = np.log(np.exp(x).sum(axis=axis, keepdims=True))
        return (x, labels, lse), {"axis": axis,
                                  "label_smoothing": draw(st.sampled_from([0.0, 0.1]))}


# ---- layer normalisation --------------------------------------------------------------------


def _rstd(F, x, n_axes, eps):
    """1 / sqrt(var(x) + eps) over the last n_axes axes, keepdims, through differentiable ops."""
    axes = tuple(range(x.ndim - n_axes, x.ndim))
    return 1.0 / F.sqrt(F.var(x, axis=axes, ddof=0, keepdims=True) + eps)


def _ln_cost(out, x, *rest, **p):
    return 8.0 * x.size


@defop("layer_norm", params=("n_axes", "eps"), cost=_ln_cost, saves=("x", "out", None),
       batch="leading")
class LayerNorm:
    """y = (x - mean(x)) / sqrt(var(x) + eps) over the last n_axes axes (no affine part: the
    public layer_norm multiplies by weight and adds bias as composites).
    vjp/jvp: rstd * (v - mean(v) - y * mean(v * y)), rstd = 1 / sqrt(var(x) + eps): the
    Jacobian is symmetric, layer_norm_grad is both. Saves x, y and rstd; rstd is a statistic of
    x (``F.cached``: used as saved where nothing differentiates the rule, recomputed from x
    through differentiable ops where something does)."""

    def forward(bk, x, *, n_axes, eps=1e-5):
        y, rstd = bk.layer_norm(x, n_axes, eps)
        return y, (x, y, rstd)

    def vjp(F, g, saved, needs, *, n_axes, eps=1e-5):
        x, y, rstd = saved
        rstd = F.cached(rstd, _rstd, x, n_axes, eps)
        return (F.layer_norm_grad(g, y, rstd, n_axes=n_axes),)

    def jvp(F, ts, saved, *, n_axes, eps=1e-5):
        x, y, rstd = saved
        rstd = F.cached(rstd, _rstd, x, n_axes, eps)
        return F.layer_norm_grad(ts[0], y, rstd, n_axes=n_axes)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes(min_dims=1, min_side=2))
        n_axes = draw(st.integers(1, len(shape)))
        x = draw(S.arrays(shape, -2.0, 2.0))
        return (x,), {"n_axes": n_axes, "eps": draw(st.sampled_from([1e-5, 0.1]))}


@defop("layer_norm_grad", params=("n_axes",), cost=_ln_cost, broadcasting=True,
       saves=("g", "y", "rstd"), batch="leading")
class LayerNormGrad:
    """out = rstd * (g - mean(g) - y * mean(g * y)) over the last n_axes axes: layer norm's vjp
    and jvp from its output y and rstd (keepdims), one kernel on the GPU (16-bit floats in
    float32). Linear in g with a symmetric matrix (vjp in g: layer_norm_grad(u, y, rstd)); in y:
    -rstd * (u * mean(g * y) + g * mean(u * y)); in rstd: u * (g - mean(g) - y * mean(g * y)),
    summed by the engine over rstd's broadcast axes. ``g`` may carry leading batch axes."""

    def value(bk):
        return bk.layer_norm_grad

    def forward(bk, g, y, rstd, *, n_axes=1):
        return bk.layer_norm_grad(g, y, rstd, n_axes), (g, y, rstd)

    def vjp(F, u, saved, needs, *, n_axes=1):
        g, y, rstd = saved
        axes = tuple(range(-n_axes, 0))
        gg = F.layer_norm_grad(u, y, rstd, n_axes=n_axes) if needs[0] else None
        gy = gr = None
        if needs[1] or needs[2]:
            mgy = F.mean(g * y, axis=axes, keepdims=True)
        if needs[1]:
            gy = -(rstd * (u * mgy + g * F.mean(u * y, axis=axes, keepdims=True)))
        if needs[2]:
            gr = u * (g - F.mean(g, axis=axes, keepdims=True) - y * mgy)
        return gg, gy, gr

    def jvp(F, ts, saved, *, n_axes=1):
        g, y, rstd = saved
        tg, ty, tr = ts
        axes = tuple(range(-n_axes, 0))
        mgy = F.mean(g * y, axis=axes, keepdims=True)
        dy = None if ty is None else -(rstd * (ty * mgy + y * F.mean(g * ty, axis=axes,
                                                                      keepdims=True)))
        dr = None if tr is None else tr * (g - F.mean(g, axis=axes, keepdims=True) - y * mgy)
        return tsum(None if tg is None else F.layer_norm_grad(tg, y, rstd, n_axes=n_axes), dy,
                    dr)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes(min_dims=1, min_side=2))
        n_axes = draw(st.integers(1, len(shape)))
        lead = shape[: len(shape) - n_axes]
        rstd = draw(S.arrays(lead + (1,) * n_axes, 0.5, 2.0))
        return (draw(S.arrays(shape)), draw(S.arrays(shape)), rstd), {"n_axes": n_axes}


# ---- public functions -----------------------------------------------------------------------


def _float_tensor(x, name, op, like=None):
    t = as_tensor(x, like, name, op)
    if not hasattr(t, "_bk"):
        raise ArgumentError(f"{op}: argument '{name}' expected a tensor, got a Python number {x!r}")
    if not is_floating(t.dtype):
        raise DTypeError(f"{op}: argument '{name}' expected a floating dtype, got {t.dtype}")
    return t


def _norm_axis(axis, ndim, op):
    axis_index(axis, ndim, op)
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
    if reduction == "mean":
        return _mean(loss)
    if reduction == "sum":
        return _sum(loss)
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
        q = t * (1.0 - s) + s / c if s else t
        loss = -_sum(q * log_softmax(x, axis=ax), axis=x.ndim + ax)
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
