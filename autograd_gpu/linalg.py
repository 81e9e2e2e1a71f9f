"""ag.linalg: NumPy's numpy.linalg and the solvers of scipy.linalg, differentiable.

Names, signatures and results follow NumPy (numpy.linalg: norm, svd, svdvals, eigh, eigvalsh,
eig, eigvals, solve, inv, det, slogdet, pinv, cholesky, qr, lstsq, matrix_power, multi_dot) and
SciPy (scipy.linalg: solve_triangular, cho_factor, cho_solve, lu_factor, lu_solve, expm, sqrtm,
solve_sylvester), batched over leading axes where NumPy's are. The primitives and their rules are
in autograd_gpu/ops/ (solves.py, decompositions.py, matfuncs.py); the functions here check
their arguments, adapt shapes (a vector right-hand side becomes a one-column matrix) and
compose primitives (inv is a solve against the identity, cho_solve two triangular solves, norm
a reduction), so those compositions get their rules from the primitives.

Errors: a singular matrix (solve, inv), a matrix that is not positive definite (cholesky) or a
routine that does not converge raise ag.LinAlgError (also a numpy.linalg.LinAlgError) naming
the function, where NumPy raises; det of a singular matrix is 0 and slogdet gives (0, -inf),
as NumPy's. On a GPU, CuPy does not check for these failures (it would have to wait for the
device): the results hold NaN or inf instead. Shapes that do not fit raise ShapeError, integer
and 16-bit float inputs DTypeError (LAPACK computes in float32, float64, complex64 and
complex128).
"""

from __future__ import annotations

import numbers
from collections import namedtuple

from .errors import ArgumentError, DTypeError, LinAlgError, ShapeError, describe
from .ops import decompositions as _dec
from .ops import solves as _sol
from .ops._linalg_util import unpack as _unpack
from .ops._util import as_tensor
from .ops.registry import apply, tensors
from .tensor import Tensor

__all__ = [
    "svd", "svdvals", "eigh", "eigvalsh", "solve", "inv", "det", "slogdet", "cholesky",
    "qr", "solve_triangular", "cho_factor", "cho_solve", "lu_factor", "lu_solve",
    "solve_sylvester", "EighResult", "SVDResult", "QRResult", "SlogdetResult",
]

EighResult = namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
SVDResult = namedtuple("SVDResult", ["U", "S", "Vh"])
QRResult = namedtuple("QRResult", ["Q", "R"])
SlogdetResult = namedtuple("SlogdetResult", ["sign", "logabsdet"])

_LAPACK_DTYPES = ("float32", "float64", "complex64", "complex128")


# ---- argument checks ------------------------------------------------------------------------


def _tensor(x, op, name, like=None):
    t = as_tensor(x, like, name, op)
    if not isinstance(t, Tensor):
        if not isinstance(t, numbers.Number):
            raise ArgumentError(f"{op}: argument '{name}' expected a Tensor, got {describe(x)}")
        t = Tensor.from_array(t) if like is None else Tensor(like._bk.xp.asarray(t), like._bk)
    if t.dtype.name not in _LAPACK_DTYPES:
        raise DTypeError(f"{op}: argument '{name}' expected float32, float64, complex64 or "
                         f"complex128 (LAPACK's types), got {t.dtype}")
    return t


def _matrix(x, op, name="a", square=False, like=None):
    t = _tensor(x, op, name, like)
    if t.ndim < 2:
        raise ShapeError(f"{op}: argument '{name}' expected a matrix or a batch of matrices "
                         f"(..., m, n), got shape {t.shape}")
    if square and t.shape[-1] != t.shape[-2]:
        raise ShapeError(f"{op}: argument '{name}' expected square matrices (..., n, n), got "
                         f"shape {t.shape}")
    return t


def _rhs(b, n, op, like):
    """b as (..., n, k) and whether it was a vector (NumPy's rule: only a 1-d b is one)."""
    b = _tensor(b, op, "b", like)
    vec = b.ndim == 1
    if b.ndim == 0 or b.shape[-1 if vec else -2] != n:
        raise ShapeError(f"{op}: argument 'b' expected shape ({n},) or (..., {n}, k) for a "
                         f"with {n} rows, got {b.shape}")
    return (b.reshape((n, 1)) if vec else b), vec


def _unvec(x, vec):
    return x.reshape(x.shape[:-1]) if vec else x


def _is_complex(t):
    return t.dtype.kind == "c"


def _conj(t):
    if not _is_complex(t):
        return t
    from .ops import api

    return api.conj(t)


def _real(t):
    if not _is_complex(t):
        return t
    from .ops import api

    return api.real(t)


def _mT(t):
    return t.swapaxes(-1, -2)


def _mH(t):
    return _mT(_conj(t))


def _const(like, arr):
    return Tensor(arr, like._bk)


def _eye(like, n):
    return _const(like, like._bk.xp.eye(n, dtype=like.dtype))


def _check_bool(v, op, name):
    if not isinstance(v, (bool, numbers.Integral)) or isinstance(v, numbers.Integral) and \
            v not in (0, 1):
        raise ArgumentError(f"{op}: argument '{name}' expected a bool, got {v!r}")
    return bool(v)


# ---- solves and determinants ----------------------------------------------------------------


def solve(a, b):
    """x with a @ x = b (numpy.linalg.solve): a (..., n, n), b (n,) or (..., n, k), leading
    axes broadcast. A singular a raises LinAlgError. Rules: solves with a and a^T."""
    a = _matrix(a, "solve", square=True)
    b, vec = _rhs(b, a.shape[-1], "solve", a)
    return _unvec(apply(_sol.Solve, a, b), vec)


def inv(a):
    """The inverse of a (..., n, n) (numpy.linalg.inv): a solve against the identity, so its
    derivative -inv(a)^T g inv(a)^T comes from solve's rules."""
    a = _matrix(a, "inv", square=True)
    try:
        return apply(_sol.Solve, a, _eye(a, a.shape[-1]))
    except LinAlgError as exc:
        raise LinAlgError(f"inv: {exc}") from exc


def det(a):
    """The determinant of a (..., n, n) (numpy.linalg.det; 0 for a singular a). Its gradient
    det(a) a^{-T} comes from a solve: at a singular a it raises LinAlgError."""
    return apply(_sol.Det, _matrix(a, "det", square=True))


def slogdet(a):
    """(sign, log|det a|) (numpy.linalg.slogdet, as its SlogdetResult): sign is +-1 (a complex
    number of modulus 1 for complex a) or 0 for a singular a, where logabsdet is -inf."""
    a = _matrix(a, "slogdet", square=True)
    sign, logabs = _unpack(tensors(a._bk), apply(_sol.Slogdet, a), ((), ()))
    return SlogdetResult(sign, _real(logabs))


# ---- SciPy's solvers ------------------------------------------------------------------------


_TRANS = {0: 0, 1: 1, 2: 2, "N": 0, "T": 1, "C": 2}


def solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False,
                     check_finite=True):
    """x with op(t) x = b, t the lower (lower=True) or upper triangle of a (scipy.linalg.
    solve_triangular; the other triangle is never read, and with unit_diagonal neither is the
    diagonal, taken as 1). trans: 0/'N' (t), 1/'T' (t^T), 2/'C' (t^H). a (..., n, n) and b
    (n,) or (..., n, k) with leading axes broadcast. overwrite_b and check_finite are accepted
    for SciPy's signature and change nothing (tensors are immutable; NaN and inf propagate, as
    with check_finite=False: checking would make a GPU wait for the host)."""
    op = "solve_triangular"
    if trans not in _TRANS:
        raise ArgumentError(f"{op}: argument 'trans' expected 0, 1, 2, 'N', 'T' or 'C', got "
                            f"{trans!r}")
    a = _matrix(a, op, square=True)
    b, vec = _rhs(b, a.shape[-1], op, a)
    x = apply(_sol.SolveTriangular, a, b, trans=_TRANS[trans],
              lower=_check_bool(lower, op, "lower"),
              unit_diagonal=_check_bool(unit_diagonal, op, "unit_diagonal"))
    return _unvec(x, vec)


def cho_factor(a, lower=False, overwrite_a=False, check_finite=True):
    """(c, lower) with c the Cholesky factor of a (scipy.linalg.cho_factor): lower triangular
    (c c^H = a) when lower, else upper (c^H c = a). Unlike SciPy's, whose other triangle keeps
    a's entries, c's other triangle holds zeros. overwrite_a and check_finite change nothing."""
    return cholesky(a, upper=not _check_bool(lower, "cho_factor", "lower")), bool(lower)


def cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True):
    """x with a x = b from cho_factor's (c, lower) (scipy.linalg.cho_solve): two triangular
    solves, whose rules give the gradient with respect to c and b."""
    try:
        c, lower = c_and_lower
    except (TypeError, ValueError):
        raise ArgumentError("cho_solve: argument 'c_and_lower' expected a pair (c, lower) as "
                            f"cho_factor returns, got {describe(c_and_lower)}") from None
    c = _matrix(c, "cho_solve", "c", square=True)
    b, vec = _rhs(b, c.shape[-1], "cho_solve", c)
    low = _check_bool(lower, "cho_solve", "lower")
    first, second = (0, 2) if low else (2, 0)
    y = apply(_sol.SolveTriangular, c, b, trans=first, lower=low, unit_diagonal=False)
    x = apply(_sol.SolveTriangular, c, y, trans=second, lower=low, unit_diagonal=False)
    return _unvec(x, vec)


def lu_factor(a, overwrite_a=False, check_finite=True):
    """(lu, piv) with a = P L U (scipy.linalg.lu_factor, square a, batched over leading axes):
    lu holds U and L's strict lower triangle (L has a unit diagonal), piv (int32) the row
    interchanges. A singular a gives a zero on U's diagonal (SciPy warns), as SciPy's.
    Rectangular a is not supported (ShapeError)."""
    a = _matrix(a, "lu_factor", square=True)
    n = a.shape[-1]
    out = apply(_sol.LuFactor, a)
    lu = out[..., :n, :]
    piv = _const(a, out.detach().data[..., n, :].real.astype("int32"))
    return lu, piv


def lu_solve(lu_and_piv, b, trans=0, overwrite_b=False, check_finite=True):
    """x with a x = b (trans 0), a^T x = b (1) or a^H x = b (2) from lu_factor's (lu, piv)
    (scipy.linalg.lu_solve): a row permutation and two triangular solves, whose rules give the
    gradient with respect to lu and b (piv is an integer array)."""
    op = "lu_solve"
    try:
        lu, piv = lu_and_piv
    except (TypeError, ValueError):
        raise ArgumentError(f"{op}: argument 'lu_and_piv' expected a pair (lu, piv) as "
                            f"lu_factor returns, got {describe(lu_and_piv)}") from None
    if trans not in _TRANS:
        raise ArgumentError(f"{op}: argument 'trans' expected 0, 1, 2, 'N', 'T' or 'C', got "
                            f"{trans!r}")
    lu = _matrix(lu, op, "lu", square=True)
    n = lu.shape[-1]
    b, vec = _rhs(b, n, op, lu)
    xp = lu._bk.xp
    p = as_tensor(piv, lu, "piv", op)
    pd = xp.asarray(p.data if isinstance(p, Tensor) else p)
    if pd.dtype.kind not in "iu" or pd.shape != lu.shape[:-1]:
        raise ArgumentError(f"{op}: argument 'piv' expected integers of shape {lu.shape[:-1]}, "
                            f"got {describe(pd)}")
    perm = _sol.perm_from_piv(xp, pd.astype("int64"))
    F = tensors(lu._bk)
    t = _TRANS[trans]
    if t == 0:  # a = P^T L U: x = U^{-1} L^{-1} b[p]
        y = apply(_sol.SolveTriangular, lu, _sol.take_rows(F, b, _const(lu, perm)), trans=0,
                  lower=True, unit_diagonal=True)
        x = apply(_sol.SolveTriangular, lu, y, trans=0, lower=False, unit_diagonal=False)
    else:  # a^T = U^T L^T P: x = P^T L^{-T} U^{-T} b
        y = apply(_sol.SolveTriangular, lu, b, trans=t, lower=False, unit_diagonal=False)
        z = apply(_sol.SolveTriangular, lu, y, trans=t, lower=True, unit_diagonal=True)
        x = _sol.take_rows(F, z, _const(lu, xp.argsort(perm, axis=-1)))
    return _unvec(x, vec)


def solve_sylvester(a, b, q):
    """x with a x + x b = q (scipy.linalg.solve_sylvester): a (..., n, n), b (..., m, m),
    q (..., n, m). Not available on a GPU (cupyx.scipy has no solve_sylvester)."""
    op = "solve_sylvester"
    a = _matrix(a, op, "a", square=True)
    b = _matrix(b, op, "b", square=True, like=a)
    q = _matrix(q, op, "q", like=a)
    if q.shape[-2:] != (a.shape[-1], b.shape[-1]):
        raise ShapeError(f"{op}: argument 'q' expected shape (..., {a.shape[-1]}, "
                         f"{b.shape[-1]}) for a {a.shape} and b {b.shape}, got {q.shape}")
    return apply(_sol.SolveSylvester, a, b, q)


# ---- decompositions -------------------------------------------------------------------------


def cholesky(a, /, *, upper=False):
    """The Cholesky factor of a Hermitian positive-definite a (..., n, n) (numpy.linalg.
    cholesky): lower triangular L with L L^H = a, or with upper=True U = L^H. Only the lower
    (upper) triangle of a is read, and only it gets a gradient. A matrix that is not positive
    definite raises LinAlgError."""
    a = _matrix(a, "cholesky", square=True)
    if _check_bool(upper, "cholesky", "upper"):
        return _mH(apply(_dec.Cholesky, _mH(a)))
    return apply(_dec.Cholesky, a)


def _uplo(UPLO, op):  # noqa: N803
    if UPLO not in ("L", "U"):
        raise ArgumentError(f"{op}: argument 'UPLO' expected 'L' or 'U', got {UPLO!r}")
    return UPLO == "L"


def eigh(a, UPLO="L"):  # noqa: N803
    """Eigenvalues (ascending) and eigenvectors of a Hermitian a (..., n, n) (numpy.linalg.eigh,
    as its EighResult): only the lower (UPLO='L') or upper triangle is read. The eigenvector
    derivative is undefined where eigenvalues repeat: a gradient through eigenvectors that
    couples two equal eigenvalues is NaN (as JAX's); eigenvalue-only functions keep finite
    gradients."""
    a = _matrix(a, "eigh", square=True)
    n = a.shape[-1]
    out = apply(_dec.Eigh, a, lower=_uplo(UPLO, "eigh"))
    w, v = _unpack(tensors(a._bk), out, ((n,), (n, n)))
    return EighResult(_real(w), v)


def eigvalsh(a, UPLO="L"):  # noqa: N803
    """The eigenvalues (ascending) of a Hermitian a (numpy.linalg.eigvalsh): eigh's, whose
    rules give a finite gradient also where eigenvalues repeat."""
    return eigh(a, UPLO).eigenvalues


def _svd_parts(a, full):
    m, n = a.shape[-2:]
    out = apply(_dec.Svd, a, full_matrices=full)
    return _unpack(tensors(a._bk), out, _dec._svd_shapes(m, n, full))


def _herm_lower(a):
    """The Hermitian matrix of a's lower triangle (what eigh-based routines read)."""
    F = tensors(a._bk)
    from .ops._linalg_util import herm_from_triangle

    return herm_from_triangle(F, a, True)


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """U, S, Vh with a = U diag(S) Vh (numpy.linalg.svd, as its SVDResult; S alone with
    compute_uv=False). Differentiable with full_matrices=False (or square a): with
    full_matrices=True and m != n the extra singular vectors are not unique, and the gradient
    raises ArgumentError. Singular-vector derivatives are undefined where singular values
    repeat (NaN where a cotangent couples them, as JAX's); S alone has finite gradients.
    hermitian=True factors the Hermitian matrix of a's lower triangle (the triangle NumPy's
    eigh-based path reads); its singular vectors may differ from NumPy's in sign."""
    a = _matrix(a, "svd")
    full = _check_bool(full_matrices, "svd", "full_matrices")
    if _check_bool(hermitian, "svd", "hermitian"):
        a = _matrix(a, "svd", square=True)
        a = _herm_lower(a)
    if not _check_bool(compute_uv, "svd", "compute_uv"):
        return _svd_parts(a, False)[1]
    return SVDResult(*_svd_parts(a, full))


def svdvals(x, /):
    """The singular values of x (..., m, n), descending (numpy.linalg.svdvals)."""
    return svd(x, full_matrices=False, compute_uv=False)


def qr(a, mode="reduced"):
    """a = Q R (numpy.linalg.qr, as its QRResult): mode 'reduced' (Q (..., m, k), R (..., k, n),
    k = min(m, n)), 'complete' (Q (..., m, m)) or 'r' (R alone). For m < n the rules come from
    the square factorisation of the first m columns and R's rest Q^H a[..., m:]. 'complete'
    with m > n is not differentiable (ArgumentError when a gradient is asked); 'raw' is not
    supported."""
    if mode not in ("reduced", "complete", "r"):
        raise ArgumentError(f"qr: argument 'mode' expected 'reduced', 'complete' or 'r', got "
                            f"{mode!r}" + (" (Householder reflectors are not supported)"
                                           if mode == "raw" else ""))
    a = _matrix(a, "qr")
    m, n = a.shape[-2:]
    F = tensors(a._bk)
    if m < n:
        q, r1 = _unpack(F, apply(_dec.Qr, a[..., :, :m], complete=False),
                        _dec._qr_shapes(m, m, False))
        r = F.concatenate(r1, _mH(q) @ a[..., :, m:], axis=-1)
    else:
        complete = mode == "complete"
        q, r = _unpack(F, apply(_dec.Qr, a, complete=complete),
                       _dec._qr_shapes(m, n, complete))
    return r if mode == "r" else QRResult(q, r)
