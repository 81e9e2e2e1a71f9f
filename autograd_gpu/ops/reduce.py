"""Reductions: sum mean max min logsumexp var prod, and the non-differentiable argmax/argmin,
all/any. Axis arguments are normalised to tuples of non-negative axes before recording, so the
rules can use negative axes (-ndim + a) that stay valid under leading tangent batches."""

from __future__ import annotations

import builtins
import numbers

from ..dtypes import is_floating
from ..errors import ArgumentError, DTypeError, ShapeError
from ..tensor import Tensor
from . import sampling as S
from ._util import as_tensor, norm_axis
from .registry import apply, defop


def _expand_back(F, g, in_shape, axes, keepdims):
    """Broadcast a (batched) reduced cotangent back to batch + in_shape."""
    nd = len(in_shape)
    batch = tuple(g.shape[: g.ndim - (nd if keepdims else nd - len(axes))])
    if not keepdims and axes:
        shape = list(in_shape)
        for a in axes:
            shape[a] = 1
        g = F.reshape(g, batch + tuple(shape))
    return F.broadcast_to(g, batch + tuple(in_shape))


def _acc(x):
    """The accumulation dtype of a sum over x: float32 for 16-bit floats (NumPy sums bfloat16 in
    bfloat16, where 1 + 1 + ... stalls at 256), else None (x's own)."""
    return "float32" if x.dtype.itemsize == 2 and is_floating(x.dtype) else None


def _low_to_f32(x):
    """x in float32 when it is a 16-bit float (for internal arithmetic), else x itself."""
    return x.astype("float32") if _acc(x) else x


def _reduce_sample(draw, lo=-2.0, hi=2.0, distinct=False):
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    shape = draw(S.shapes())
    x = draw(S.distinct_arrays(shape) if distinct else S.arrays(shape, lo, hi))
    axis = draw(S.axis_for(len(shape)))
    return (x,), {"axis": norm_axis(axis, len(shape)), "keepdims": draw(st.booleans())}


def _neg_axes(axes, nd):
    """Axes counted from the end (valid under leading batch axes); negative axes pass as is, so
    rules may call F.sum/F.mean with negative axes on batched values."""
    return tuple(a if a < 0 else a - nd for a in axes)


@defop("sum", params=("axis", "keepdims"), saves=(None,), complex_ok=True, batch=("axes", "axis"))
class Sum:
    """y = sum of x over axis (a tuple of axes: non-negative from the public function, negative
    ones from rules)"""

    def forward(bk, x, *, axis, keepdims=False):
        acc = _acc(x)
        y = bk.sum(x, axis=axis, keepdims=keepdims, dtype=acc)
        return (y.astype(x.dtype, copy=False) if acc else y), (x.shape,)

    def vjp(F, g, saved, needs, *, axis, keepdims=False):
        return (_expand_back(F, g, saved[0], axis, keepdims),)

    def jvp(F, ts, saved, *, axis, keepdims=False):
        return F.sum(ts[0], axis=_neg_axes(axis, len(saved[0])), keepdims=keepdims)

    sample = _reduce_sample


@defop("mean", params=("axis", "keepdims"), saves=(None,), complex_ok=True, batch=("axes", "axis"))
class Mean:
    """y = mean of x over axis"""

    def forward(bk, x, *, axis, keepdims=False):
        acc = _acc(x)
        y = bk.xp.mean(x, axis=axis, keepdims=keepdims, dtype=acc)
        return (y.astype(x.dtype) if acc else y), (x.shape,)

    def vjp(F, g, saved, needs, *, axis, keepdims=False):
        n = 1
        for a in axis:
            n *= saved[0][a]
        # divide before broadcasting: the division touches the reduced array only
        return (_expand_back(F, g / builtins.max(n, 1), saved[0], axis, keepdims),)

    def jvp(F, ts, saved, *, axis, keepdims=False):
        return F.mean(ts[0], axis=_neg_axes(axis, len(saved[0])), keepdims=keepdims)

    sample = _reduce_sample


def _reduce_cost(k):
    return lambda out, x, **p: k * x.size


def _keep_shape(in_shape, axes):
    """in_shape with the reduced axes set to 1 (the keepdims shape)."""
    return tuple(1 if i in axes else s for i, s in enumerate(in_shape))


def _keep(F, y, in_shape, axes, keepdims):
    """An (unbatched) reduced value y in keepdims form, to broadcast against x."""
    return y if keepdims else F.reshape(y, _keep_shape(in_shape, axes))


def _count(shape, axes):
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def _tie_weights(F, x, y, axes, keepdims):
    """Where x attains the reduced extreme y: 1/k at each of the k tied positions, else 0. The
    extreme of a slice holding a NaN is NaN (max and min propagate it), attained by its NaN
    entries: they share the gradient and the others get 0, as PyTorch's max()/min() over all
    elements give (its amax/amin give NaN to every entry of such a slice: x == NaN is false
    everywhere, a 0/0 weight)."""
    hit = F.logical_or(F.equal(x, _keep(F, y, x.shape, axes, keepdims)), F.isnan(x))
    hit = F.astype(hit, dtype=x.dtype)
    return hit / F.sum(hit, axis=axes, keepdims=True)


def _extreme(name, fn_name, doc):
    def forward(bk, x, *, axis, keepdims=False):
        y = getattr(bk.xp, fn_name)(x, axis=axis, keepdims=keepdims)
        return y, (x, y)

    def vjp(F, g, saved, needs, *, axis, keepdims=False):
        x, y = saved
        return (_expand_back(F, g, x.shape, axis, keepdims) * _tie_weights(F, x, y, axis,
                                                                           keepdims),)

    def jvp(F, ts, saved, *, axis, keepdims=False):
        x, y = saved
        w = _tie_weights(F, x, y, axis, keepdims)
        return F.sum(ts[0] * w, axis=_neg_axes(axis, x.ndim), keepdims=keepdims)

    def sample(draw):
        return _reduce_sample(draw, distinct=True)

    impl = type(name.title(), (), {
        "forward": staticmethod(forward), "vjp": staticmethod(vjp), "jvp": staticmethod(jvp),
        "sample": staticmethod(sample), "__doc__": doc,
    })
    return defop(name, params=("axis", "keepdims"), cost=_reduce_cost(1),
                 saves=("x", "out"), batch=("axes", "axis"))(impl)


Max = _extreme("max", "max", """y = max of x over axis. The gradient is split equally among tied
maxima: d y / d x_i = [x_i == y] / #{j : x_j == y} (JAX's and PyTorch's amax convention). A slice
holding NaN has the maximum NaN; its NaN entries share the gradient (PyTorch's max()).""")
Min = _extreme("min", "min", """y = min of x over axis. The gradient is split equally among tied
minima: d y / d x_i = [x_i == y] / #{j : x_j == y}. A slice holding NaN has the minimum NaN; its
NaN entries share the gradient (PyTorch's min()).""")


@defop("logsumexp", params=("axis", "keepdims"), cost=_reduce_cost(6), saves=("x", "out"),
       batch=("axes", "axis"))
class LogSumExp:
    """y = log(sum(exp(x), axis)), computed as m + log(sum(exp(x - m))) with m = max(x) (no
    overflow); dy/dx = exp(x - y) = softmax(x)."""

    def forward(bk, x, *, axis, keepdims=False):
        xp = bk.xp
        xf = _low_to_f32(x)
        m = xp.max(xf, axis=axis, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0).astype(xf.dtype, copy=False)  # slices of all -inf
        y = xp.log(xp.sum(xp.exp(xf - m), axis=axis, keepdims=True)) + m
        if not keepdims:
            y = xp.squeeze(y, axis=axis)
        if y.dtype != x.dtype:
            y = y.astype(x.dtype)
        return y, (x, y)

    def vjp(F, g, saved, needs, *, axis, keepdims=False):
        x, y = saved
        p = F.exp(x - _keep(F, y, x.shape, axis, keepdims))
        return (_expand_back(F, g, x.shape, axis, keepdims) * p,)

    def jvp(F, ts, saved, *, axis, keepdims=False):
        x, y = saved
        p = F.exp(x - _keep(F, y, x.shape, axis, keepdims))
        return F.sum(ts[0] * p, axis=_neg_axes(axis, x.ndim), keepdims=keepdims)

    sample = _reduce_sample


@defop("var", params=("axis", "ddof", "keepdims"), cost=_reduce_cost(4), saves=("x",),
       batch=("axes", "axis"), complex_ok=True)
class Var:
    """y = sum((x - mean(x))^2, axis) / (n - ddof), n the number of reduced elements;
    dy/dx = 2 (x - mean(x)) / (n - ddof)."""

    def forward(bk, x, *, axis, ddof=0, keepdims=False):
        acc = _acc(x)
        y = bk.xp.var(_low_to_f32(x), axis=axis, ddof=ddof, keepdims=keepdims)
        return (y.astype(x.dtype) if acc else y), (x,)

    def vjp(F, g, saved, needs, *, axis, ddof=0, keepdims=False):
        (x,) = saved
        d = _centred(F, x, axis) * (2.0 / (_count(x.shape, axis) - ddof))
        return (_expand_back(F, g, x.shape, axis, keepdims) * d,)

    def jvp(F, ts, saved, *, axis, ddof=0, keepdims=False):
        (x,) = saved
        d = _centred(F, x, axis) * (2.0 / (_count(x.shape, axis) - ddof))
        return _real(F, F.sum(ts[0] * d, axis=_neg_axes(axis, x.ndim), keepdims=keepdims))

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        (x,), p = _reduce_sample(draw)
        n = _count(x.shape, p["axis"])
        p["ddof"] = draw(st.sampled_from([0, 1])) if n > 1 else 0
        return (x,), p


def _centred(F, x, axis):
    """x - mean(x), conjugated for complex x: var and std are real functions of complex x,
    and their cotangent is 2 conj(x - mean(x)) / n' (the convention of docs/contributing.md),
    their tangent Re(<conj(x - mean(x)), t>) 2 / n'."""
    d = x - F.mean(x, axis=axis, keepdims=True)
    return F.conj(d) if x.dtype.kind == "c" else d


def _real(F, t):
    return F.real(t) if t.dtype.kind == "c" else t


def _std_scale(F, y, n_eff):
    """1 / (n_eff y) where y != 0, exactly 0 where y == 0. At zero variance std has no
    derivative (a cone: |t| along every direction); its subgradient 0 is PyTorch's convention.
    The where-masked y keeps the inactive branch finite, so its derivatives are 0 there at
    every order (1 / (n_eff * 0) under a where would still send 0 * inf = NaN backwards)."""
    zero = F.equal(y, 0)
    return F.where(zero, 0.0, 1.0 / (F.where(zero, 1.0, y) * n_eff))


@defop("std", params=("axis", "ddof", "keepdims"), cost=_reduce_cost(5), saves=("x", "out"),
       batch=("axes", "axis"), complex_ok=True)
class Std:
    """y = sqrt(var(x, axis, ddof)); dy/dx = (x - mean(x)) / ((n - ddof) y) where y > 0, and 0
    where y == 0 (zero variance: constant slices, one-element groups with ddof=0): PyTorch's
    convention for a function with no derivative there (sqrt's inf times var's 0 was NaN)."""

    def forward(bk, x, *, axis, ddof=0, keepdims=False):
        acc = _acc(x)
        y = bk.xp.std(_low_to_f32(x), axis=axis, ddof=ddof, keepdims=keepdims)
        return (y.astype(x.dtype) if acc else y), (x, y)

    def vjp(F, g, saved, needs, *, axis, ddof=0, keepdims=False):
        x, y = saved
        r = _std_scale(F, y, _count(x.shape, axis) - ddof)
        return (_expand_back(F, g * r, x.shape, axis, keepdims) * _centred(F, x, axis),)

    def jvp(F, ts, saved, *, axis, ddof=0, keepdims=False):
        x, y = saved
        r = _std_scale(F, y, _count(x.shape, axis) - ddof)
        s = F.sum(ts[0] * _centred(F, x, axis), axis=_neg_axes(axis, x.ndim), keepdims=keepdims)
        return _real(F, s) * r

    def sample(draw):
        """Random slices, and one-element groups (ddof 0: std is 0 for every x, so its
        derivatives are 0 at every order and central differences see it too). Constant slices
        of more elements are a kink (central differences of the gradient diverge there): a
        dedicated test compares them with PyTorch."""
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        if draw(st.booleans()):
            return Var.sample(draw)
        shape = draw(S.shapes(min_dims=1))
        x = draw(S.arrays(shape))
        axes = tuple(a for a in range(len(shape)) if shape[a] == 1)
        if not axes:
            shape = shape + (1,)
            x = x.reshape(shape)
            axes = (len(shape) - 1,)
        return (x,), {"axis": axes, "ddof": 0, "keepdims": draw(st.booleans())}


def _prod_weights(F, x, axes):
    """d prod(x) / d x_i = prod_{j != i} x_j, exact also where x has zeros: with z zeros in the
    slice, it is prod(x)/x_i (z = 0), the product of the non-zero entries at the zero (z = 1),
    and 0 otherwise. The zero pattern is a constant to higher derivatives."""
    zero = F.equal(x, 0)
    nz = F.where(zero, 1.0, x)
    pnz = F.prod(nz, axis=axes, keepdims=True)
    zc = F.sum(F.astype(zero, dtype=x.dtype), axis=axes, keepdims=True)
    one_zero = F.where(F.logical_and(zero, F.equal(zc, 1)), pnz, 0.0)
    return F.where(F.equal(zc, 0), pnz / nz, one_zero)


@defop("prod", params=("axis", "keepdims"), cost=_reduce_cost(1), saves=("x",), complex_ok=True,
       batch=("axes", "axis"))
class Prod:
    """y = product of x over axis; dy/dx_i = prod_{j != i} x_j. The first derivative is exact
    where x has zeros; second and higher derivatives are exact where the reduced slice holds no
    zero (the zero pattern is treated as a constant)."""

    def forward(bk, x, *, axis, keepdims=False):
        return bk.xp.prod(x, axis=axis, keepdims=keepdims), (x,)

    def vjp(F, g, saved, needs, *, axis, keepdims=False):
        (x,) = saved
        return (_expand_back(F, g, x.shape, axis, keepdims) * _prod_weights(F, x, axis),)

    def jvp(F, ts, saved, *, axis, keepdims=False):
        (x,) = saved
        w = _prod_weights(F, x, axis)
        return F.sum(ts[0] * w, axis=_neg_axes(axis, x.ndim), keepdims=keepdims)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape = draw(S.shapes(max_dims=2))
        x = draw(S.arrays(shape, -1.6, 1.6, away=(0.0, 0.4)))
        axis = draw(S.axis_for(len(shape)))
        return (x,), {"axis": norm_axis(axis, len(shape)), "keepdims": draw(st.booleans())}


# ---- non-differentiable reductions (integer or boolean results) ------------------------------


def _nondiff_reduce(name, fn_name, doc):
    def forward(bk, x, *, axis, keepdims=False):
        return getattr(bk.xp, fn_name)(x, axis=axis, keepdims=keepdims), ()

    def batch(F, args, dims, *, axis, keepdims=False):
        x = F.to_front(args[0], dims[0])
        if axis is None:  # (argmax/argmin: an index into each flattened example)
            x, axis = F.reshape(x, (x.shape[0], -1)), 1
        elif isinstance(axis, tuple):
            axis = tuple(a + 1 for a in axis)
        else:
            axis = axis + 1
        return F.apply(op, x, axis=axis, keepdims=keepdims), 0

    impl = type(name.title(), (), {"forward": staticmethod(forward), "__doc__": doc,
                                   "batch": staticmethod(batch)})
    op = defop(name, params=("axis", "keepdims"), cost=_reduce_cost(1),
               differentiable=False)(impl)
    return op


ARGMAX = _nondiff_reduce("argmax", "argmax", "index of the maximum along axis (first on ties)")
ARGMIN = _nondiff_reduce("argmin", "argmin", "index of the minimum along axis (first on ties)")
ALL = _nondiff_reduce("all", "all", "True where every element along axis is non-zero")
ANY = _nondiff_reduce("any", "any", "True where some element along axis is non-zero")


# ---- public functions -----------------------------------------------------------------------


def _float_input(x, op):
    x = as_tensor(x, None, "x", op)
    if not hasattr(x, "_bk"):
        x = Tensor.from_array(x)
    return x


def _check_float(x, op):
    if not is_floating(x.dtype):
        raise DTypeError(f"{op}: argument 'x' expected a floating dtype, got {x.dtype}")


def sum(x, axis=None, keepdims: bool = False):  # noqa: A001
    """Sum over axis (None: all axes)."""
    x = as_tensor(x, None, "x", "sum")
    return apply(Sum, x, axis=norm_axis(axis, x.ndim, "sum"), keepdims=bool(keepdims))


def mean(x, axis=None, keepdims: bool = False):
    """Mean over axis (None: all axes)."""
    x = as_tensor(x, None, "x", "mean")
    return apply(Mean, x, axis=norm_axis(axis, x.ndim, "mean"), keepdims=bool(keepdims))


def _reduced(op, x, axis, keepdims, name):
    x = _float_input(x, name)
    axes = norm_axis(axis, x.ndim, name)
    if builtins.any(x.shape[a] == 0 for a in axes):
        raise ShapeError(f"{name}: argument 'x' expected a non-empty reduction, got shape "
                         f"{x.shape} reduced over axes {axes}")
    return apply(op, x, axis=axes, keepdims=bool(keepdims))


def max(x, axis=None, keepdims: bool = False):  # noqa: A001
    """Maximum over axis (None: all axes). Tied maxima share the gradient equally."""
    return _reduced(Max, x, axis, keepdims, "max")


def min(x, axis=None, keepdims: bool = False):  # noqa: A001
    """Minimum over axis (None: all axes). Tied minima share the gradient equally."""
    return _reduced(Min, x, axis, keepdims, "min")


def logsumexp(x, axis=None, keepdims: bool = False):
    """log(sum(exp(x), axis)), computed without overflow; its gradient is softmax(x)."""
    x = _float_input(x, "logsumexp")
    _check_float(x, "logsumexp")
    axes = norm_axis(axis, x.ndim, "logsumexp")
    if builtins.any(x.shape[a] == 0 for a in axes):
        # log of an empty sum: -inf, as NumPy and PyTorch give; still a function of x (whose
        # gradient is then empty) through the sum, which is 0 here
        return sum(x, axis=axes, keepdims=keepdims) + float("-inf")
    return _reduced(LogSumExp, x, axis, keepdims, "logsumexp")


def _var_args(x, axis, ddof, name):
    """(x, axes) for var and std, after their checks: a floating x, valid axes, an int ddof >= 0
    and more than ddof elements reduced."""
    x = _float_input(x, name)
    _check_float(x, name)
    axes = norm_axis(axis, x.ndim, name)
    if not isinstance(ddof, numbers.Integral) or ddof < 0:
        raise ArgumentError(f"{name}: argument 'ddof' expected a non-negative int, got {ddof!r}")
    n = _count(x.shape, axes)
    if n - ddof <= 0:
        raise ShapeError(f"{name}: expected more than ddof={ddof} elements along axes {axes}, "
                         f"got {n} (shape {x.shape})")
    return x, axes


def var(x, axis=None, ddof: int = 0, keepdims: bool = False):
    """Variance over axis: sum((x - mean)^2) / (n - ddof)."""
    x, axes = _var_args(x, axis, ddof, "var")
    return apply(Var, x, axis=axes, ddof=int(ddof), keepdims=bool(keepdims))


def std(x, axis=None, ddof: int = 0, keepdims: bool = False):
    """Standard deviation over axis: sqrt(var(x, axis, ddof)). Where the variance is zero
    (a constant slice, a one-element group with ddof=0) std has no derivative; its gradient
    there is 0, PyTorch's convention (a subgradient: std is a cone, |t| * std(v) along v)."""
    x = _float_input(x, "std")
    axes = norm_axis(axis, x.ndim, "std")
    if _count(x.shape, axes) == 0 and is_floating(x.dtype) and not isinstance(ddof, bool) \
            and isinstance(ddof, numbers.Integral) and ddof >= 0:
        # an empty reduction: 0 / 0 = NaN, as NumPy and PyTorch give; still a function of x
        # (whose gradient is then empty) through the sum, which is 0 here
        return sum(x, axis=axes, keepdims=keepdims) + float("nan")
    x, axes = _var_args(x, axes, ddof, "std")
    return apply(Std, x, axis=axes, ddof=int(ddof), keepdims=bool(keepdims))


def prod(x, axis=None, keepdims: bool = False):
    """Product over axis (None: all axes). The gradient is exact at zeros (first order)."""
    x = _float_input(x, "prod")
    return apply(Prod, x, axis=norm_axis(axis, x.ndim, "prod"), keepdims=bool(keepdims))


def _arg(op, x, axis, keepdims, name):
    x = _float_input(x, name)
    if axis is None:
        if keepdims:
            raise ArgumentError(f"{name}: argument 'keepdims' needs an integer axis, got None")
        if x.size == 0:
            raise ShapeError(f"{name}: argument 'x' expected a non-empty tensor, got {x.shape}")
        return apply(op, x, axis=None, keepdims=False)
    if not isinstance(axis, numbers.Integral):
        raise ArgumentError(f"{name}: argument 'axis' expected an int or None, got {axis!r}")
    (a,) = norm_axis(axis, x.ndim, name)
    if x.ndim and x.shape[a] == 0:
        raise ShapeError(f"{name}: argument 'x' has an empty axis {a} (shape {x.shape})")
    return apply(op, x, axis=a if x.ndim else None, keepdims=bool(keepdims) and x.ndim > 0)


def argmax(x, axis=None, keepdims: bool = False):
    """Index of the maximum along axis (None: into the flattened tensor); int64, not
    differentiable. The first index wins on ties."""
    return _arg(ARGMAX, x, axis, keepdims, "argmax")


def argmin(x, axis=None, keepdims: bool = False):
    """Index of the minimum along axis (None: into the flattened tensor); int64, not
    differentiable. The first index wins on ties."""
    return _arg(ARGMIN, x, axis, keepdims, "argmin")


def all(x, axis=None, keepdims: bool = False):  # noqa: A001
    """True where every element along axis is non-zero (bool, not differentiable)."""
    x = _float_input(x, "all")
    return apply(ALL, x, axis=norm_axis(axis, x.ndim, "all"), keepdims=bool(keepdims))


def any(x, axis=None, keepdims: bool = False):  # noqa: A001
    """True where some element along axis is non-zero (bool, not differentiable)."""
    x = _float_input(x, "any")
    return apply(ANY, x, axis=norm_axis(axis, x.ndim, "any"), keepdims=bool(keepdims))


__all__ = ["sum", "mean", "max", "min", "logsumexp", "var", "std", "prod", "argmax", "argmin",
           "all", "any"]
