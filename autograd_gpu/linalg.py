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
from .ops import api
from .ops import decompositions as _dec
from .ops import matfuncs as _mf
from .ops import solves as _sol
from .ops._linalg_util import herm_from_triangle
from .ops._linalg_util import unpack as _unpack
from .ops._util import as_tensor, positions
from .ops.registry import apply, tensors
from .tensor import Tensor

__all__ = [
    "norm", "svd", "svdvals", "eigh", "eigvalsh", "solve", "inv", "det", "slogdet", "cholesky",
    "qr", "solve_triangular", "cho_factor", "cho_solve", "lu_factor", "lu_solve",
    "solve_sylvester", "pinv", "lstsq", "matrix_power", "multi_dot", "expm", "sqrtm",
    "eig", "eigvals", "EighResult", "EigResult", "SVDResult", "QRResult", "SlogdetResult",
]

EighResult = namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
EigResult = namedtuple("EigResult", ["eigenvalues", "eigenvectors"])
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
    return api.conj(t)


def _real(t):
    if not _is_complex(t):
        return t
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


def _pair(x, op, name, what):
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise ArgumentError(f"{op}: argument '{name}' expected a pair {what} returns, got "
                            f"{describe(x)}")
    return x


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
    c, lower = _pair(c_and_lower, "cho_solve", "c_and_lower", "(c, lower) as cho_factor")
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
    lu, piv = _pair(lu_and_piv, op, "lu_and_piv", "(lu, piv) as lu_factor")
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
    as its EighResult): only the lower (UPLO='L') or upper triangle is read. Each eigenvector's
    largest-magnitude entry is real and positive, so the eigenvectors are NumPy's up to a sign
    (phase) each, the same on CPU and GPU, and continuous in a. The eigenvector derivative
    is undefined where eigenvalues repeat: a gradient through eigenvectors that couples two
    equal eigenvalues is NaN (as JAX's); eigenvalue-only functions keep finite gradients."""
    a = _matrix(a, "eigh", square=True)
    n = a.shape[-1]
    out = apply(_dec.Eigh, a, lower=_uplo(UPLO, "eigh"))
    w, v = _unpack(tensors(a._bk), out, ((n,), (n, n)))
    return EighResult(_real(w), v)


def eigvalsh(a, UPLO="L"):  # noqa: N803
    """The eigenvalues (ascending) of a Hermitian a (numpy.linalg.eigvalsh): eigh's, whose
    rules give a finite gradient also where eigenvalues repeat."""
    return eigh(a, UPLO).eigenvalues


def eig(a):
    """Eigenvalues and right eigenvectors of a general square a (..., n, n) (numpy.linalg.eig,
    as its EigResult), always complex (as JAX's; NumPy returns real arrays when every
    eigenvalue is real). Each eigenvector has unit norm and its largest-modulus entry real and
    positive: NumPy's up to the sign of each eigenvector (LAPACK makes that entry real with a
    sign that can flip under an arbitrarily small change of a, where the eigenvectors would not
    be continuous). Gradients follow the complex convention of
    docs/contributing.md (a real a gets the real part); eigenvector derivatives are undefined
    where eigenvalues repeat (NaN where a cotangent couples them), and a defective a (no basis
    of eigenvectors) makes the rules' solve with V raise LinAlgError."""
    a = _matrix(a, "eig", square=True)
    n = a.shape[-1]
    F = tensors(a._bk)
    w, v = _dec._eig_parts(F, apply(_dec.Eig, a), n)
    return EigResult(w, v)


def eigvals(a):
    """The eigenvalues of a general square a (numpy.linalg.eigvals), complex: eig's."""
    return eig(a).eigenvalues


def _svd_parts(a, full):
    m, n = a.shape[-2:]
    out = apply(_dec.Svd, a, full_matrices=full)
    u, s, vh = _unpack(tensors(a._bk), out, _dec._svd_shapes(m, n, full))
    return u, _real(s), vh


def _herm_lower(a):
    """The Hermitian matrix of a's lower triangle (what eigh-based routines read)."""
    F = tensors(a._bk)
    return herm_from_triangle(F, a, True)


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """U, S, Vh with a = U diag(S) Vh (numpy.linalg.svd, as its SVDResult; S alone with
    compute_uv=False). Each pair (u_j, v_j) is scaled so that v_j's largest-magnitude entry is
    real and positive: NumPy's up to a sign (phase) per pair, the same on CPU and GPU.
    Differentiable with full_matrices=False (or square a): with
    full_matrices=True and m != n the extra singular vectors are not unique, and the gradient
    raises ArgumentError. Singular-vector derivatives are undefined where singular values
    repeat (NaN where a cotangent couples them, as JAX's); S alone has finite gradients.
    hermitian=True factors the Hermitian matrix of a's lower triangle (the triangle NumPy's
    eigh-based path reads)."""
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


# ---- pseudo-inverse, least squares, products ------------------------------------------------


_NOVALUE = object()


def _rtol_of(a, rcond, rtol):
    """NumPy's pinv defaults: rcond 1e-15 when neither is given; rtol=None means
    max(m, n) * eps."""
    if rcond is None:
        if rtol is _NOVALUE:
            return 1e-15
        if rtol is None:
            return max(a.shape[-2:]) * float(a._bk.xp.finfo(a.dtype).eps)
        rcond = rtol
    elif rtol is not _NOVALUE:
        raise ArgumentError("pinv: arguments 'rcond' and 'rtol' cannot both be given")
    if not isinstance(rcond, numbers.Real):
        raise ArgumentError(f"pinv: argument 'rcond' expected a real number, got {rcond!r}")
    return float(rcond)


def pinv(a, rcond=None, hermitian=False, *, rtol=_NOVALUE):
    """The Moore-Penrose pseudo-inverse of a (..., m, n) (numpy.linalg.pinv): singular values
    at or below rcond (rtol) times the largest are dropped. Its derivative (Golub and Pereyra)
    holds where the rank does not change, that is away from singular values at the cutoff.
    hermitian=True inverts the Hermitian matrix of a's lower triangle (the triangle NumPy's
    eigh-based path reads)."""
    a = _matrix(a, "pinv")
    if _check_bool(hermitian, "pinv", "hermitian"):
        a = _herm_lower(_matrix(a, "pinv", square=True))
    return apply(_mf.Pinv, a, rtol=_rtol_of(a, rcond, rtol))


def lstsq(a, b, rcond=None):
    """(x, residuals, rank, s) for min ||b - a x|| (numpy.linalg.lstsq): a (m, n), b (m,) or
    (m, k). x = pinv(a) b with singular values at or below rcond * the largest dropped (rcond
    None: eps * max(m, n)), the minimum-norm solution, as NumPy's; residuals the squared
    column norms of b - a x when rank == n < m, else empty; s a's singular values. x, residuals
    and s are differentiable (rank must not change nearby); rank is a 0-d int32 tensor (it
    decides the residuals' shape, so computing it waits for the device)."""
    a = _matrix(a, "lstsq")
    if a.ndim != 2:
        raise ShapeError(f"lstsq: argument 'a' expected a 2-d matrix (m, n) as NumPy's, got "
                         f"shape {a.shape}")
    m, n = a.shape
    b = _tensor(b, "lstsq", "b", a)
    if b.ndim not in (1, 2) or b.shape[0] != m:
        raise ShapeError(f"lstsq: argument 'b' expected shape ({m},) or ({m}, k), got {b.shape}")
    eps = float(a._bk.xp.finfo(a.dtype).eps)
    rc = eps * max(m, n) if rcond is None else rcond
    if not isinstance(rc, numbers.Real):
        raise ArgumentError(f"lstsq: argument 'rcond' expected a real number, got {rcond!r}")
    x = apply(_mf.Pinv, a, rtol=float(rc)) @ b
    s = svdvals(a)
    sd = s.detach().numpy()
    rank = int((sd > float(rc) * sd[0]).sum()) if sd.size else 0
    rank_t = _const(a, a._bk.xp.asarray(rank, dtype="int32"))
    if rank == n and m > n:
        r = b - a @ x
        resid = (_real(r * _conj(r))).sum(axis=0)
        resid = resid.reshape((1,)) if b.ndim == 1 else resid
    else:
        resid = _const(a, a._bk.xp.empty((0,), dtype=s.dtype))
    return x, resid, rank_t, s


def matrix_power(a, n):
    """a raised to the integer power n (numpy.linalg.matrix_power): repeated squaring with
    NumPy's order of products; n = 0 gives the identity (a constant), n < 0 powers of inv(a)."""
    if not isinstance(n, numbers.Integral) or isinstance(n, bool):
        raise ArgumentError(f"matrix_power: argument 'n' expected an integer, got {n!r}")
    a = as_tensor(a, None, "a", "matrix_power")
    if not isinstance(a, Tensor) or a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"matrix_power: argument 'a' expected square matrices (..., n, n), "
                         f"got {describe(a)}")
    n = int(n)
    if n == 0:
        xp = a._bk.xp
        return _const(a, xp.broadcast_to(xp.eye(a.shape[-1], dtype=a.dtype), a.shape).copy())
    if n < 0:
        a = inv(a)
        n = -n
    if n == 1:
        return a
    if n in (2, 3):
        return a @ a if n == 2 else (a @ a) @ a
    z = result = None
    while n > 0:
        z = a if z is None else z @ z
        n, bit = divmod(n, 2)
        if bit:
            result = z if result is None else result @ z
    return result


def multi_dot(arrays, *, out=None):
    """The product of two or more matrices in the cheapest order (numpy.linalg.multi_dot): the
    first may be a vector (a row), the last a vector (a column), the others 2-d."""
    if out is not None:
        raise ArgumentError("multi_dot: argument 'out' is not supported (tensors are immutable)")
    ts = [as_tensor(x, None, f"arrays[{i}]", "multi_dot") for i, x in enumerate(arrays)]
    if len(ts) < 2:
        raise ArgumentError(f"multi_dot: argument 'arrays' expected at least two arrays, got "
                            f"{len(ts)}")
    first_vec, last_vec = ts[0].ndim == 1, ts[-1].ndim == 1
    if first_vec:
        ts[0] = ts[0].reshape((1, -1))
    if last_vec:
        ts[-1] = ts[-1].reshape((-1, 1))
    for i, t in enumerate(ts):
        if t.ndim != 2:
            raise ShapeError(f"multi_dot: arrays[{i}] expected a 2-d array (the first and last "
                             f"may be 1-d), got shape {t.shape}")
    for i in range(len(ts) - 1):
        if ts[i].shape[1] != ts[i + 1].shape[0]:
            raise ShapeError(f"multi_dot: arrays[{i}] {ts[i].shape} and arrays[{i + 1}] "
                             f"{ts[i + 1].shape} do not fit")
    res = _chain(ts, _chain_order([t.shape[0] for t in ts] + [ts[-1].shape[1]]), 0, len(ts) - 1)
    if first_vec and last_vec:
        return res.reshape(())
    if first_vec or last_vec:
        return res.reshape((-1,))
    return res


def _chain_order(p):
    """The split table of the cheapest parenthesisation of matrices of sizes p[i] x p[i+1]
    (Cormen et al., Introduction to Algorithms, 15.2; NumPy's multi_dot uses the same)."""
    n = len(p) - 1
    cost = [[0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for length in range(1, n):
        for i in range(n - length):
            j = i + length
            cost[i][j] = None
            for k in range(i, j):
                c = cost[i][k] + cost[k + 1][j] + p[i] * p[k + 1] * p[j + 1]
                if cost[i][j] is None or c < cost[i][j]:
                    cost[i][j], split[i][j] = c, k
    return split


def _chain(ts, split, i, j):
    if i == j:
        return ts[i]
    k = split[i][j]
    return _chain(ts, split, i, k) @ _chain(ts, split, k + 1, j)


# ---- matrix functions -----------------------------------------------------------------------


def expm(A):  # noqa: N803
    """The matrix exponential of A (..., n, n) (scipy.linalg.expm). Its derivative, the Frechet
    derivative, is a block of the exponential of a 2n x 2n block matrix."""
    return apply(_mf.Expm, _matrix(A, "expm", "A", square=True))


def sqrtm(A):  # noqa: N803
    """The principal square root of A (..., n, n) (scipy.linalg.sqrtm; complex for a real A
    with eigenvalues on the negative real axis, as SciPy's). Derivatives solve Sylvester
    equations. Not available on a GPU (cupyx.scipy has no sqrtm)."""
    return apply(_mf.Sqrtm, _matrix(A, "sqrtm", "A", square=True))


# ---- norms ----------------------------------------------------------------------------------


def _api():
    from .ops import api  # (a cycle at import time: api imports every op family)

    return api


def _safe_root(s, p=2.0):
    """s ** (1/p) for s >= 0 whose gradient at s == 0 is 0 (PyTorch's norm at the zero vector:
    a subgradient) instead of inf * 0 = NaN; the inner where keeps every order finite."""
    ag = _api()
    zero = s == 0
    safe = ag.where(zero, 1.0, s)
    root = ag.sqrt(safe) if p == 2.0 else safe ** (1.0 / p)
    return ag.where(zero, 0.0, root)


def _abs(x):
    if _is_complex(x):
        return _safe_root(_real(x * _conj(x)))
    return _api().abs(x)


def _sq(x):
    return _real(x * _conj(x)) if _is_complex(x) else x * x


def _vector_norm(x, ord, axes, keepdims):  # noqa: A002
    ag = _api()
    inf = float("inf")
    if ord is None or ord == 2:
        return _safe_root(ag.sum(_sq(x), axis=axes, keepdims=keepdims))
    if isinstance(ord, str) or not isinstance(ord, numbers.Real):
        raise ArgumentError(f"norm: invalid norm order {ord!r} for vectors")
    if ord == inf:
        return ag.max(_abs(x), axis=axes, keepdims=keepdims)
    if ord == -inf:
        return ag.min(_abs(x), axis=axes, keepdims=keepdims)
    if ord == 0:  # the count of non-zero entries: piecewise constant
        nz = _const(x, (x.detach().data != 0).astype(_real(x).dtype))
        return ag.sum(nz, axis=axes, keepdims=keepdims)
    if ord == 1:
        return ag.sum(_abs(x), axis=axes, keepdims=keepdims)
    return _safe_root(ag.sum(_abs(x) ** float(ord), axis=axes, keepdims=keepdims), float(ord))


def _matrix_norm(x, ord, axes, keepdims):  # noqa: A002
    ag = _api()
    r, c = axes
    inf = float("inf")
    if ord in (None, "fro", "f"):
        y = _safe_root(ag.sum(_sq(x), axis=axes, keepdims=keepdims))
        return y
    if ord in (2, -2, "nuc"):
        rest = [d for d in range(x.ndim) if d not in axes]
        s = svdvals(x.transpose(tuple(rest) + (r, c)))
        y = ag.max(s, axis=-1) if ord == 2 else ag.min(s, axis=-1) if ord == -2 else \
            ag.sum(s, axis=-1)
    elif ord in (1, -1, inf, -inf):
        # 1: the largest column sum (sum over rows); inf: the largest row sum
        over, then = (r, c) if ord in (1, -1) else (c, r)
        sums = ag.sum(_abs(x), axis=over, keepdims=True)
        y = ag.max(sums, axis=then, keepdims=True) if ord in (1, inf) else \
            ag.min(sums, axis=then, keepdims=True)
        y = y.reshape(tuple(n for d, n in enumerate(x.shape) if d not in axes))
    else:
        raise ArgumentError(f"norm: invalid norm order {ord!r} for matrices")
    if keepdims:
        y = y.reshape(tuple(1 if d in axes else n for d, n in enumerate(x.shape)))
    return y


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002
    """Vector and matrix norms (numpy.linalg.norm). axis None: the 2-norm of the flattened x
    for ord None (ord must be None, or x 1-d or 2-d); an int: vector norms (ord None/2, 1, inf,
    -inf, 0, any p); a pair: matrix norms ('fro', 'nuc', 1, -1, 2, -2, inf, -inf). The 2-norm
    (and 'fro', and p-norms) has gradient 0 at the zero vector, as PyTorch's (a subgradient),
    where sqrt's derivative would give NaN; 2, -2 and 'nuc' come from svdvals."""
    x = as_tensor(x, None, "x", "norm")
    if not isinstance(x, Tensor):
        x = Tensor.from_array(x)
    if x.dtype.kind not in "fc":
        raise DTypeError(f"norm: argument 'x' expected a floating or complex dtype, got "
                         f"{x.dtype}")
    keepdims = _check_bool(keepdims, "norm", "keepdims")
    if axis is None:
        if ord is None or (ord in ("f", "fro") and x.ndim == 2) or (ord == 2 and x.ndim == 1):
            y = _safe_root(_api().sum(_sq(x), axis=None))
            return y.reshape((1,) * x.ndim) if keepdims else y
        if x.ndim not in (1, 2):
            raise ShapeError(f"norm: ord={ord!r} with axis=None needs a 1-d or 2-d x, got "
                             f"shape {x.shape}")
    axes = tuple(range(x.ndim)) if axis is None else positions(axis, x.ndim, "norm", "axis")
    if len(axes) == 1:
        return _vector_norm(x, ord, axes, keepdims)
    if len(axes) == 2:
        return _matrix_norm(x, ord, axes, keepdims)
    raise ShapeError(f"norm: argument 'axis' expected one or two axes, got {axis!r}")
