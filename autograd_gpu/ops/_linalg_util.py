"""Helpers shared by the linear-algebra primitives (ops/decompositions.py, ops/solves.py,
ops/matfuncs.py): transposes, masks and diagonals written with ``F.<op>`` (so the rules that use
them stay differentiable), the packing of several results into one output, the translation of
LAPACK's errors, and a loop over batch axes for routines that take one matrix at a time.

Rules follow the complex convention of docs/contributing.md: a cotangent is transported with
transposes (``mT``), and conjugates appear only where the forward map itself conjugates.
"""

from __future__ import annotations

import functools
import itertools

import numpy as _np  # only for numpy.linalg.LinAlgError, which NumPy, SciPy and CuPy all raise

from ..backend import cublas
from ..errors import ArgumentError, LinAlgError, ShapeError
from .registry import REGISTRY

__all__ = [
    "is_complex", "mT", "mH", "conj", "real", "imag", "eye", "tri", "diagonal", "diag_embed",
    "lift", "reciprocal_or_zero", "undefined_where", "pack", "unpack", "lapack", "over_batch",
    "herm_from_triangle", "triangle_cotangent", "solve_tri", "square_check", "batch_matrices",
]


def is_complex(x) -> bool:
    return x.dtype.kind == "c"


def mT(F, x):
    """The transpose of the last two axes."""
    return F.swapaxes(x, a1=-1, a2=-2)


def conj(F, x):
    """The complex conjugate (x itself when x is real)."""
    return F.conj(x) if is_complex(x) else x


def mH(F, x):
    """The conjugate transpose of the last two axes."""
    return mT(F, conj(F, x))


def real(F, x):
    return F.real(x) if is_complex(x) else x


def imag(F, x):
    return F.imag(x)


@functools.lru_cache(maxsize=24)
def _mask(bk, n, dtype, lower, k, diag):
    """A cached constant n x n mask: 1 on the triangle strictly below (lower) or above diagonal
    k... see tri_weights. Read-only where the backend allows: rules share it, never write it."""
    xp = bk.xp
    if lower:
        m = xp.tri(n, n, k - 1, dtype=dtype)
    else:  # (j > i + k) is the transpose of (j < i - k)
        m = xp.ascontiguousarray(xp.tri(n, n, -k - 1, dtype=dtype).T)
    if diag is not None:
        m = m + xp.asarray(diag, dtype=dtype) * xp.eye(n, dtype=dtype)
    if hasattr(m, "flags") and hasattr(m.flags, "writeable"):
        try:
            m.flags.writeable = False
        except ValueError:  # (CuPy's flags are read-only attributes)
            pass
    return m


def tri_weights(F, n, dtype, lower=True, strict=1.0, diag=0.0):
    """The constant n x n matrix with ``strict`` on the strict lower (upper) triangle and
    ``diag`` on the diagonal, 0 elsewhere (one cached array per shape: masks are applied with
    one product)."""
    m = _mask(F.bk, n, _np.dtype(dtype), bool(lower), 0, None if diag == 0.0 else float(diag))
    return F.const(m) if strict == 1.0 else F.const(m) * strict


def eye(F, n, dtype):
    return F.const(_mask(F.bk, n, _np.dtype(dtype), True, -n, 1.0))


def tri(F, n, k, dtype, upper=False):
    """The 0/1 mask of the lower triangle at and below diagonal k (upper: at and above it)."""
    if upper:  # at and above k: strictly above k - 1
        return F.const(_mask(F.bk, n, _np.dtype(dtype), False, k - 1, None))
    return F.const(_mask(F.bk, n, _np.dtype(dtype), True, k + 1, None))


def diagonal(F, x):
    """x[..., i, i] as (..., n) (a product with the identity and a sum: both differentiable)."""
    n = x.shape[-1]
    return F.sum(x * eye(F, n, _real_dtype(x)), axis=(-1,), keepdims=False)


def diag_embed(F, v):
    """(..., n) -> (..., n, n) with v on the diagonal."""
    n = v.shape[-1]
    return F.reshape(v, tuple(v.shape) + (1,)) * eye(F, n, _real_dtype(v))


def _real_dtype(x):
    return _np.dtype(x.dtype.char.lower()) if is_complex(x) else x.dtype


def lift(F, t, shape, nd):
    """A tangent ``t`` (tangent batch + ``shape``) with singleton axes inserted after its batch
    so that ``shape`` lines up with the trailing axes of an nd-dimensional result: otherwise the
    tangent batch would broadcast against the other operand's leading axes (silently wrong
    when the lengths agree)."""
    if t is None or len(shape) >= nd:
        return t
    nb = t.ndim - len(shape)
    return F.reshape(t, tuple(t.shape[:nb]) + (1,) * (nd - len(shape)) + tuple(shape))


def reciprocal_or_zero(F, d):
    """1/d where d != 0, and 0 where d == 0 (JAX's "1 / (d + z) - z" with z the zero mask):
    finite and differentiable at every order away from the zeros."""
    z = F.const((F.data(d) == 0).astype(_real_dtype(d)))
    return 1.0 / (d + z) - z


def undefined_where(F, x, zero_den):
    """NaN where ``zero_den`` (a constant boolean mask of vanishing denominators) meets a
    non-zero ``x``, else 0: added to ``x * reciprocal_or_zero(den)`` it gives x/0 = undefined
    where a derivative really is undefined (an eigenvector cotangent that couples two equal
    eigenvalues), and 0 where x is exactly zero, as JAX's symbolic zeros do (an eigenvalue-only
    function of a matrix with repeated eigenvalues keeps a finite gradient)."""
    xd = F.data(x)
    bad = zero_den & (xd != 0)
    return F.const(F.xp.where(bad, F.xp.nan, 0.0).astype(_real_dtype(x)))


def pack(xp, *arrays, core_ndims):
    """Several results with common leading axes as one array: each flattened over its last
    ``core_ndims[i]`` axes and joined along the last axis (the engine records one output per
    op; the public function unpacks with ``unpack``)."""
    parts = []
    for a, k in zip(arrays, core_ndims):
        lead = a.shape[: a.ndim - k]
        parts.append(a.reshape(lead + (-1,)) if k != 1 else a)
    dtype = _np.result_type(*(p.dtype for p in parts))
    return xp.concatenate([p.astype(dtype, copy=False) for p in parts], axis=-1)


def unpack(F, packed, core_shapes):
    """The results ``pack`` joined, in order, each reshaped to leading axes + its core shape."""
    lead = tuple(packed.shape[:-1])
    out, off = [], 0
    for shape in core_shapes:
        n = 1
        for s in shape:
            n *= s
        part = F.getitem(packed, index=((off, off + n, 1),))
        out.append(F.reshape(part, lead + tuple(shape)) if len(shape) != 1 else part)
        off += n
    return out


def lapack(op, fn, *args, **kwargs):
    """Call a LAPACK-backed routine, turning NumPy's/SciPy's LinAlgError (a ValueError, which
    the engine would report as a shape error) into ag.LinAlgError naming the op.

    On the GPU, cuSOLVER reports a failed factorisation (a matrix not positive definite, an
    exactly singular one, no convergence) only in a status array on the device, and CuPy does
    not read it by default (CuPy 14.2's ``cupyx.errstate(linalg='ignore')``, read in its
    sources on 2026-12-07): the result would be garbage with no error where NumPy raises. So
    device calls run under ``linalg='raise'``: the status is read (one synchronisation with the
    host per call, as PyTorch's torch.linalg functions do on CUDA) and a failure raises the same
    ag.LinAlgError as on the CPU. Inside a CUDA-graph capture the status cannot be read, so the
    op is refused there rather than replayed unchecked."""
    if not any(hasattr(a, "__cuda_array_interface__") for a in args):
        try:
            return fn(*args, **kwargs)
        except _np.linalg.LinAlgError as exc:
            raise LinAlgError(f"{op}: {exc}") from exc
    import cupyx  # optional dependency (cupy): only device arrays reach here

    if cublas.active_binding() is not None:  # ag.cuda.graphed is capturing this step
        raise ArgumentError(
            f"ag.cuda.graphed: the step runs '{op}', whose failure (a singular or not positive "
            "definite matrix) cuSOLVER reports only through a status the host must read; a "
            "captured graph would replay it unchecked. Run this step eagerly")
    try:
        with cupyx.errstate(linalg="raise"):
            return fn(*args, **kwargs)
    except _np.linalg.LinAlgError as exc:
        raise LinAlgError(f"{op}: {exc}") from exc


def _broadcast_shapes(*shapes):
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(nd):
        dims = {s[i - nd + len(s)] for s in shapes if i - nd + len(s) >= 0} - {1}
        if len(dims) > 1:
            raise ValueError(f"leading axes {shapes} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def over_batch(xp, fn, *arrays, core=2):
    """``fn`` applied to each matrix of ``arrays`` (each (..., m, n), leading axes broadcast
    together), the results stacked: for routines that take one matrix at a time (SciPy's and
    cupyx.scipy's). ``fn`` returns one array or a tuple of arrays."""
    lead = _broadcast_shapes(*(a.shape[: a.ndim - core] for a in arrays))
    if not lead:
        return fn(*arrays)
    arrs = [xp.broadcast_to(a, lead + a.shape[a.ndim - core:]) for a in arrays]
    idxs = list(itertools.product(*(range(n) for n in lead)))
    if not idxs:  # an empty batch: the shapes from one probe call on identity matrices
        probe = fn(*(xp.eye(a.shape[-2], a.shape[-1], dtype=a.dtype) for a in arrays))
        many = isinstance(probe, tuple)
        probe = probe if many else (probe,)
        outs = tuple(xp.empty(lead + p.shape, dtype=p.dtype) for p in probe)
        return outs if many else outs[0]
    res = [fn(*(a[i] for a in arrs)) for i in idxs]
    if isinstance(res[0], tuple):
        return tuple(xp.stack([r[k] for r in res]).reshape(lead + res[0][k].shape)
                     for k in range(len(res[0])))
    return xp.stack(res).reshape(lead + res[0].shape)


def herm_from_triangle(F, t, lower):
    """The Hermitian matrix LAPACK reads when given only one triangle of t: the strict triangle,
    its conjugate transpose, and the real part of the diagonal (half of t_ii + conj(t_ii))."""
    s = t * tri_weights(F, t.shape[-1], _real_dtype(t), lower, 1.0, 0.5)
    return s + mH(F, s)


def triangle_cotangent(F, sbar, lower):
    """The adjoint of herm_from_triangle: the cotangent of t from that of the Hermitian matrix
    it stands for: the strict triangle of sbar + sbar^H, and on the diagonal the real part of
    sbar_ii (half of the diagonal of sbar + sbar^H)."""
    return (sbar + mH(F, sbar)) * tri_weights(F, sbar.shape[-1], _real_dtype(sbar), lower, 1.0,
                                              0.5)


def solve_tri(F, a, b, lower, trans=0, unit=False):
    return F.solve_triangular(a, b, trans=trans, lower=lower, unit_diagonal=unit)


def square_check(x, op, name="a"):
    """(..., n, n) or a ShapeError naming the op."""
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"{op}: argument '{name}' expected square matrices (..., n, n), got "
                         f"shape {tuple(x.shape)}")


def batch_matrices(name):
    """A vmap batching rule for op ``name`` whose array inputs are all (..., m, n) matrices with
    leading axes that broadcast: each batched input gets its batch axis in front, then
    singleton axes up to the largest leading rank among the inputs, so that its own leading
    axes stay aligned with the other inputs' (with the batch axis merely moved to the front, a
    matrix with fewer leading axes would line its batch up with another's leading axis)."""

    def rule(F, args, dims, **params):
        lead = max(a.ndim - (d is not None) - 2 for a, d in zip(args, dims))
        new = []
        for a, d in zip(args, dims):
            if d is not None:
                a = F.to_front(a, d)
                k = a.ndim - 3
                if k < lead:
                    a = F.reshape(a, (a.shape[0],) + (1,) * (lead - k) + tuple(a.shape[1:]))
            new.append(a)
        return F.apply(REGISTRY[name], *new, **params), 0

    return rule
