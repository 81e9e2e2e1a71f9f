"""Matrix decompositions: cholesky, eigh, svd, qr. The public functions (NumPy's signatures,
results as NumPy's named tuples) are in autograd_gpu/linalg.py.

An op records one output, so a decomposition with several results packs them along a last
axis (``_linalg_util.pack``) and the public function unpacks them with getitem and reshape:
the cotangent of an unused result is then exactly zero, which the rules treat as JAX treats a
symbolic zero (see ``undefined_where``).

Rules:
* cholesky: Murray 2016 ("Differentiation of the Cholesky decomposition"), with triangular
  solves. NumPy reads only the lower triangle, so the derivative is taken with respect to it.
* eigh: dw = diag(V^H dS V), dV = V (F o V^H dS V) with F_ij = 1/(w_j - w_i), as JAX's rule;
  only the triangle NumPy reads (UPLO) gets a cotangent.
* svd: Townsend 2016 ("Differentiating the singular value decomposition"), JAX's svd_jvp.
* qr: Walter and Lehmann 2018 / JAX's qr_jvp_rule, with triangular solves (m >= n).
Equal eigenvalues (singular values) make the eigenvector (singular vector) derivative
undefined: where a cotangent couples two equal values the rules give NaN, as JAX's 1/0 does,
and eigenvalue-only functions keep a finite gradient.
"""

from __future__ import annotations

import numpy as np

from ..errors import ArgumentError
from ._linalg_util import (
    conj,
    diag_embed,
    diagonal,
    herm_from_triangle,
    is_complex,
    lapack,
    mH,
    mT,
    pack,
    real,
    reciprocal_or_zero,
    solve_tri,
    tri_weights,
    triangle_cotangent,
    undefined_where,
    unpack,
)
from .registry import defop
from .solves import _real_dtype, _rng, batch_shape, scipy_linalg, spd

__all__ = ["Cholesky", "Eigh", "Svd", "Qr"]


def _cube(out, a, **p):
    n = a.shape[-1]
    return float(max(a.size // max(n * a.shape[-2], 1), 1) * 10.0 * n ** 3)


def _phi(F, x):
    """The lower triangle of x with its diagonal halved (Murray's Phi)."""
    return x * tri_weights(F, x.shape[-1], _real_dtype(x), True, 1.0, 0.5)


@defop("cholesky", cost=lambda out, a, **p: out.size * a.shape[-1] / 3.0, saves=("out",),
       complex_ok=True, batch="leading")
class Cholesky:
    """L lower triangular with L L^H = S, S the Hermitian matrix of a's lower triangle (NumPy
    reads only it). jvp: dL = L Phi(L^{-1} dS L^{-H}); vjp: S_bar = L^{-T} Phi(L^T L_bar)
    conj(L)^{-1} by two triangular solves, a_bar its lower-triangle part (Murray 2016)."""

    def forward(bk, a):
        low = lapack("cholesky", bk.xp.linalg.cholesky, a)
        return low, (low,)

    def vjp(F, g, saved, needs):
        (low,) = saved
        p = _phi(F, F.matmul(mT(F, low), g))
        y = solve_tri(F, low, p, True, 1)
        sbar = mT(F, solve_tri(F, low, mT(F, y), True, 2))
        return (triangle_cotangent(F, sbar, True),)

    def jvp(F, ts, saved):
        (low,) = saved
        z = solve_tri(F, low, herm_from_triangle(F, ts[0], True), True, 0)
        m = mH(F, solve_tri(F, low, mH(F, z), True, 0))
        return F.matmul(low, _phi(F, m))

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        n = draw(st.integers(1, 4))
        a = spd(rng, batch_shape(draw) + (n, n))
        # the upper triangle is never read: junk there checks that it gets no cotangent
        return (a + (1 - np.tri(n)) * rng.uniform(-3, 3, a.shape),), {}


# ---- the phase (sign) of eigenvectors and singular vectors ----------------------------------
#
# An eigenvector (a singular vector pair) is determined up to a unit factor: a sign for real
# ones, a phase for complex ones. LAPACK's choice follows from its algorithm, not from a rule a
# derivative can follow (zheevd's, zgesdd's phases), it can flip under an arbitrarily small
# change of the matrix (zgeev and dgeev make the largest entry real, with a sign that flips when
# an intermediate quantity crosses zero: central differences of NumPy's eig jumped by 1.3 at a
# random 4 x 4 real matrix), and cuSOLVER's differs from LAPACK's. So the forwards fix it: each
# column's entry of largest modulus (index k_j) is made real and positive. The values are
# NumPy's up to that sign (phase), the same on every backend, and continuous wherever the
# largest entry is unique. Complex tangents get the matching term i v_j theta_j, theta_j =
# -Im(dv[k_j, j]) / v[k_j, j], which keeps that entry real (a real sign is locally constant:
# no term); the cotangent rules get its transpose.


def fix_phase(xp, v):
    """The unit factors (..., 1, n) that make each column's largest-modulus entry real and
    positive."""
    k = xp.argmax(xp.abs(v), axis=-2)[..., None, :]
    vk = xp.take_along_axis(v, k, axis=-2)
    r = xp.abs(vk)
    return vk.conj() / xp.where(r == 0, 1.0, r)


def _kmask(F, v):
    """The constant one-hot mask (..., m, n) of each column's largest-modulus entry, and that
    entry itself (real, (..., 1, n); differentiable)."""
    vd = F.data(v)
    xp = F.xp
    k = xp.argmax(xp.abs(vd), axis=-2)
    mask = (xp.arange(vd.shape[-2])[:, None] == k[..., None, :]).astype(vd.real.dtype)
    km = F.const(mask)
    return km, real(F, F.sum(v * km, axis=(-2,), keepdims=True))


def gauge_theta(F, v, dv):
    """theta_j = -Im(dv[k_j, j]) / v[k_j, j] as (..., 1, n): the tangent's rotation that keeps
    the fixed entries real."""
    km, vk = _kmask(F, v)
    return -F.imag(F.sum(dv * km, axis=(-2,), keepdims=True)) / vk


def gauge_cotangent(F, v, c):
    """The transpose of theta on a cotangent of dv: c_j = the coefficient of theta_j,
    (..., 1, n) real; returns the matrix E with E[k_j, j] = i c_j / v[k_j, j]."""
    km, vk = _kmask(F, v)
    return km * (c / vk) * F.const(1j)


# ---- eigh -----------------------------------------------------------------------------------


def _gaps(F, w):
    """d_ij = w_j - w_i over the last axis of w, and the constant mask of off-diagonal zeros."""
    n = w.shape[-1]
    lead = tuple(w.shape[:-1])
    d = F.reshape(w, lead + (1, n)) - F.reshape(w, lead + (n, 1))
    zero = (F.data(d) == 0) & (F.xp.eye(n) == 0)
    return d, zero


def _over_gaps(F, x, d, zero):
    """x / d entrywise off the diagonal (0 on it), NaN where d == 0 meets x != 0."""
    return x * reciprocal_or_zero(F, d) + undefined_where(F, x, zero)


@defop("eigh", params=("lower",), cost=_cube, saves=("out",), complex_ok=True,
       batch="leading")
class Eigh:
    """w, V with S V = V diag(w), w ascending, S the symmetric (Hermitian) matrix of a's lower
    (upper) triangle; packed as (..., n + n*n). With X = V^H dS V: jvp dw = Re diag(X),
    dV = V (F o X), F_ij = 1/(w_j - w_i) off the diagonal; vjp S_bar = conj(V) (diag(w_bar) +
    F o V^T V_bar) V^T, a_bar its triangle part. Each eigenvector's largest entry is real and
    positive (above; complex tangents gain i V diag(theta))."""

    def forward(bk, a, *, lower=True):
        w, v = lapack("eigh", bk.xp.linalg.eigh, a, UPLO="L" if lower else "U")
        v = v * fix_phase(bk.xp, v)
        out = pack(bk.xp, w, v, core_ndims=(1, 2))
        return out, (out,)

    def vjp(F, g, saved, needs, *, lower=True):
        (out,) = saved
        n = _n_of(out)
        w, v = unpack(F, out, ((n,), (n, n)))
        gw, gv = unpack(F, g, ((n,), (n, n)))
        if is_complex(v):  # theta_j's coefficient: Re(i (V^T gv)_jj)
            c = -F.imag(diagonal(F, F.matmul(mT(F, v), gv)))
            gv = gv + gauge_cotangent(F, v, F.reshape(c, tuple(c.shape[:-1]) + (1, n)))
        d, zero = _gaps(F, w)
        xbar = diag_embed(F, real(F, gw)) + _over_gaps(F, F.matmul(mT(F, v), gv), d, zero)
        sbar = F.matmul(F.matmul(conj(F, v), xbar), mT(F, v))
        return (triangle_cotangent(F, sbar, lower),)

    def jvp(F, ts, saved, *, lower=True):
        (out,) = saved
        n = _n_of(out)
        w, v = unpack(F, out, ((n,), (n, n)))
        x = F.matmul(F.matmul(mH(F, v), herm_from_triangle(F, ts[0], lower)), v)
        d, zero = _gaps(F, w)
        dw = real(F, diagonal(F, x))
        dv = F.matmul(v, _over_gaps(F, x, d, zero))
        if is_complex(v):
            dv = dv + v * gauge_theta(F, v, dv) * F.const(1j)
        lead = tuple(dv.shape[:-2])
        return F.concatenate(dw, F.reshape(dv, lead + (n * n,)), axis=-1)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        n = draw(st.integers(1, 4))
        shape = batch_shape(draw) + (n, n)
        q = np.linalg.qr(rng.standard_normal(shape))[0]
        w = np.sort(rng.permutation(np.arange(n))[:n] * 0.7 + rng.uniform(-0.1, 0.1, n) - 1.0)
        a = (q * w) @ np.swapaxes(q, -1, -2)
        lower = draw(st.booleans())
        junk = rng.uniform(-3, 3, shape) * ((1 - np.tri(n)) if lower else np.tri(n, k=-1))
        return (a + junk,), {"lower": lower}


def _n_of(out):
    """n from a packed (w, V) of length n + n*n."""
    k = out.shape[-1]
    n = int(round((-1 + (1 + 4 * k) ** 0.5) / 2))
    return n


# ---- svd ------------------------------------------------------------------------------------


def _svd_shapes(m, n, full):
    k = min(m, n)
    return ((m, m if full else k), (k,), (n if full else k, n))


def _not_differentiable(op, why):
    raise ArgumentError(f"{op}: not differentiable here: {why}")


def _svd_common(F, out, shape, full):
    m, n = shape
    if full and m != n:
        _not_differentiable("svd", "full_matrices=True with m != n: the extra singular vectors "
                                   "are not unique (use full_matrices=False)")
    u, s, vh = unpack(F, out, _svd_shapes(m, n, full))
    s2 = s * s
    d, zero = _gaps(F, s2)
    return u, s, vh, d, zero


def _over_s(F, x, s):
    """x with column j divided by s_j (0 where s_j == 0 and x's column is zero, else NaN)."""
    k = s.shape[-1]
    lead = tuple(s.shape[:-1])
    sr = F.reshape(s, lead + (1, k))
    zero = F.data(sr) == 0
    return x * reciprocal_or_zero(F, sr) + undefined_where(F, x, zero)


def _i_over_s(F, x, s):
    """i x_j / s_j for vectors (..., k) (0 where s_j == 0 and x_j == 0, else NaN)."""
    zero = F.data(s) == 0
    return (x * reciprocal_or_zero(F, s) + undefined_where(F, x, zero)) * F.const(1j)


@defop("svd", params=("full_matrices",), cost=_cube, saves=("out", None), complex_ok=True,
       batch="leading")
class Svd:
    """a = U diag(s) Vh, s descending; packed as (..., m*ku + k + kv*n). Rules (Townsend 2016;
    JAX's svd_jvp), with F_ij = 1/(s_j^2 - s_i^2) and P = U^H da V: ds = Re diag(P);
    dU = U (F o (P S + S P^H) + (P - P^H)/2 o S^{-1}) + (I - U U^H) da V S^{-1};
    dV = V (F o (S P + P^H S)) + (I - V V^H) da^H U S^{-1} (the projections vanish when U, V
    are square; the (P - P^H)/2 term only for complex a); each pair (u_j, v_j) is scaled so
    that v_j's largest entry is real and positive (above). The vjp is the transpose.
    full_matrices=True is differentiable only for square a."""

    def forward(bk, a, *, full_matrices=False):
        u, s, vh = lapack("svd", bk.xp.linalg.svd, a, full_matrices=full_matrices)
        k = s.shape[-1]
        ph = fix_phase(bk.xp, bk.xp.swapaxes(vh[..., :k, :], -1, -2).conj())
        u = bk.xp.concatenate([u[..., :k] * ph, u[..., k:]], axis=-1)
        vh = bk.xp.concatenate([vh[..., :k, :] * bk.xp.swapaxes(ph, -1, -2).conj(),
                                vh[..., k:, :]], axis=-2)
        out = pack(bk.xp, u, s, vh, core_ndims=(2, 1, 2))
        return out, (out, a.shape[-2:])

    def vjp(F, g, saved, needs, *, full_matrices=False):
        out, (m, n) = saved
        u, s, vh, d, zero = _svd_common(F, out, (m, n), full_matrices)
        gu, gs, gvh = unpack(F, g, _svd_shapes(m, n, full_matrices))
        k = s.shape[-1]
        u, gu = _first_cols(F, u, k), _first_cols(F, gu, k)
        v, gv = mH(F, _first_rows(F, vh, k)), mH(F, _first_rows(F, gvh, k))
        utgu = F.matmul(mT(F, u), gu)
        if is_complex(v):  # theta_j's coefficient: Re(i (U^T gu + V^T gv)_jj)
            c = -F.imag(diagonal(F, utgu + F.matmul(mT(F, v), gv)))
            gv = gv + gauge_cotangent(F, v, F.reshape(c, tuple(c.shape[:-1]) + (1, k)))
        vtgv = F.matmul(mT(F, v), gv)
        j = _over_gaps(F, utgu - mH(F, utgu), d, zero)
        kk = _over_gaps(F, vtgv - mH(F, vtgv), d, zero)
        lead = tuple(s.shape[:-1])
        s_row, s_col = F.reshape(s, lead + (1, k)), F.reshape(s, lead + (k, 1))
        inner = j * s_row + s_col * kk + diag_embed(F, real(F, gs))
        if is_complex(u):
            inner = inner + diag_embed(F, _i_over_s(F, F.imag(diagonal(F, utgu)), s))
        ga = F.matmul(F.matmul(conj(F, u), inner), mT(F, v))
        if m > k:
            ga = ga + F.matmul(_over_s(F, gu - F.matmul(conj(F, u), utgu), s), mT(F, v))
        if n > k:
            z = F.matmul(u, mT(F, _over_s(F, gv - F.matmul(conj(F, v), vtgv), s)))
            ga = ga + conj(F, z)
        return (ga,)

    def jvp(F, ts, saved, *, full_matrices=False):
        out, (m, n) = saved
        u, s, vh, d, zero = _svd_common(F, out, (m, n), full_matrices)
        v = mH(F, vh)
        da = ts[0]
        p = F.matmul(F.matmul(mH(F, u), da), v)
        k = s.shape[-1]
        lead = tuple(p.shape[:-2])
        s_row = F.reshape(s, tuple(s.shape[:-1]) + (1, k))
        s_col = F.reshape(s, tuple(s.shape[:-1]) + (k, 1))
        dss, sds = p * s_row, s_col * p
        xu = _over_gaps(F, dss + mH(F, dss), d, zero)
        if is_complex(p):
            xu = xu + diag_embed(F, _i_over_s(F, F.imag(diagonal(F, p)), s))
        du = F.matmul(u, xu)
        dv = F.matmul(v, _over_gaps(F, sds + mH(F, sds), d, zero))
        if m > k:
            dav = F.matmul(da, v)
            du = du + _over_s(F, dav - F.matmul(u, F.matmul(mH(F, u), dav)), s)
        if n > k:
            dau = F.matmul(mH(F, da), u)
            dv = dv + _over_s(F, dau - F.matmul(v, F.matmul(mH(F, v), dau)), s)
        if is_complex(v):
            th = gauge_theta(F, v, dv) * F.const(1j)
            du, dv = du + u * th, dv + v * th
        parts = [F.reshape(du, lead + (m * k,)), real(F, diagonal(F, p)),
                 F.reshape(mH(F, dv), lead + (k * n,))]
        return F.concatenate(*parts, axis=-1)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        m, n = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        lead = batch_shape(draw)
        k = min(m, n)
        u = np.linalg.qr(rng.standard_normal(lead + (m, k)))[0]
        v = np.linalg.qr(rng.standard_normal(lead + (n, k)))[0]
        s = 2.5 - np.arange(k) * 0.6 + rng.uniform(-0.1, 0.1, k)
        full = m == n and draw(st.booleans())
        return ((u * s) @ np.swapaxes(v, -1, -2),), {"full_matrices": full}


def _first_cols(F, x, k):
    return x if x.shape[-1] == k else F.getitem(x, index=((0, x.shape[-2], 1), (0, k, 1)))


def _first_rows(F, x, k):
    return x if x.shape[-2] == k else F.getitem(x, index=((0, k, 1), (0, x.shape[-1], 1)))


# ---- qr -------------------------------------------------------------------------------------


def _qr_shapes(m, n, complete):
    k = m if complete else min(m, n)
    return ((m, k), (k, n))


def _qr_parts(F, out, shape, complete):
    m, n = shape
    if m < n:
        _not_differentiable("qr", "more columns than rows (ag.linalg.qr differentiates that case "
                                  "through the square factorisation of the first m columns)")
    if complete and m > n:
        _not_differentiable("qr", "mode='complete' with more rows than columns: the last m - n "
                                  "columns of Q are not unique (use mode='reduced')")
    return unpack(F, out, _qr_shapes(m, n, complete))


@defop("qr", params=("complete",), cost=_cube, saves=("out", None), complex_ok=True,
       batch="leading")
class Qr:
    """a = Q R, Q with orthonormal columns, R upper triangular with a real diagonal (NumPy's
    qr, mode 'reduced' or 'complete'); packed as (..., m*k + k*n). Differentiable for m >= n
    (and 'complete' only when m == n). jvp (JAX's): Y = da R^{-1}, C = Q^H Y, O = L - L^H with
    L = C's strict lower triangle and half its diagonal (so O's diagonal is i Im diag C, which
    keeps R's diagonal real), dQ = Q (O - C) + Y, dR = (C - O) R. vjp, its transpose: M =
    Q^T Q_bar - R_bar R^T, C_bar = (M - M^H) o W - M (W: the strict lower triangle and half
    the diagonal), a_bar = (Q_bar + conj(Q) C_bar) R^{-T} (a triangular solve)."""

    def forward(bk, a, *, complete=False):
        q, r = lapack("qr", bk.xp.linalg.qr, a, mode="complete" if complete else "reduced")
        out = pack(bk.xp, q, r, core_ndims=(2, 2))
        return out, (out, a.shape[-2:])

    def vjp(F, g, saved, needs, *, complete=False):
        out, (m, n) = saved
        q, r = _qr_parts(F, out, (m, n), complete)
        gq, gr = unpack(F, g, _qr_shapes(m, n, complete))
        mm = F.matmul(mT(F, q), gq) - F.matmul(gr, mT(F, r))
        cbar = (mm - mH(F, mm)) * tri_weights(F, n, _real_dtype(mm), True, 1.0, 0.5) - mm
        b = gq + F.matmul(conj(F, q), cbar)
        return (mT(F, solve_tri(F, r, mT(F, b), False, 0)),)

    def jvp(F, ts, saved, *, complete=False):
        out, (m, n) = saved
        q, r = _qr_parts(F, out, (m, n), complete)
        y = mT(F, solve_tri(F, r, mT(F, ts[0]), False, 1))
        c = F.matmul(mH(F, q), y)
        low = c * tri_weights(F, n, _real_dtype(c), True, 1.0, 0.5)
        o = low - mH(F, low)
        dq = F.matmul(q, o - c) + y
        dr = F.matmul(c - o, r)
        lead = tuple(dq.shape[:-2])
        return F.concatenate(F.reshape(dq, lead + (m * n,)), F.reshape(dr, lead + (n * n,)),
                             axis=-1)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        n = draw(st.integers(1, 4))
        m = n + draw(st.integers(0, 2))
        a = rng.standard_normal(batch_shape(draw) + (m, n)) + 2.0 * np.eye(m, n)
        return (a,), {"complete": m == n and draw(st.booleans())}


# ---- eig ------------------------------------------------------------------------------------


def _eig_parts(F, out, n):
    """(w, V) from eig's real output: real and imaginary parts stacked on axis -2."""
    z = F.getitem(out, index=(0, (0, n + n * n, 1))) + \
        F.getitem(out, index=(1, (0, n + n * n, 1))) * F.const(1j)
    return unpack(F, z, ((n,), (n, n)))


def _as_real_pair(F, z):
    return F.stack(real(F, z), F.imag(z), axis=-2)


@defop("eig", cost=_cube, saves=("out",), complex_ok=True, batch="leading")
class Eig:
    """w, V with a V = V diag(w) (NumPy's eig, always complex as JAX's), each eigenvector of
    unit norm with its largest-modulus entry real and positive (LAPACK's geev makes it real
    with a sign that can flip discontinuously: the values are NumPy's up to that sign). The
    output is real, the real and imaginary parts of packed (w, V) stacked on
    axis -2, (..., 2, n + n*n): a real function of a real a, as the engine's rules for real
    inputs need; the public function joins the parts. With X = V^{-1} da V (a solve):
    dw = diag X; dV = V (F o X) + V diag(alpha), F_ij = 1/(w_j - w_i), alpha_j = -Re(v_j^H
    dv_j) - i Im(dv_kj) / v_kj (unit norm kept, the largest entry kept real). vjp: with g =
    diag(V^T V_bar), V_raw_bar = V_bar - conj(V) Re(g) - i Im(g_j)/v_kj at (k_j, j), X_bar =
    diag(w_bar) + F o V^T V_raw_bar, a_bar = V^{-T} X_bar V^T (a solve). Eigenvector
    derivatives are undefined where eigenvalues repeat (NaN where a cotangent couples them).
    A CuPy without cupy.linalg.eig (it came with cuSOLVER's geev) raises DeviceError."""

    def forward(bk, a):
        w, v = lapack("eig", scipy_linalg(bk, "eig", "eig", bk.xp.linalg), a)
        ct = (a.real if a.dtype.kind == "c" else a).dtype.char.upper()  # f -> F, d -> D
        w, v = w.astype(ct), v.astype(ct)
        v = v * fix_phase(bk.xp, v)
        z = pack(bk.xp, w, v, core_ndims=(1, 2))
        out = bk.xp.stack([z.real, z.imag], axis=-2)
        return out, (out,)

    def vjp(F, g, saved, needs):
        (out,) = saved
        n = _n_of(out)
        w, v = _eig_parts(F, out, n)
        gz = F.getitem(g, index=(0, (0, n + n * n, 1))) - \
            F.getitem(g, index=(1, (0, n + n * n, 1))) * F.const(1j)
        gw, gv = unpack(F, gz, ((n,), (n, n)))
        gd = diagonal(F, F.matmul(mT(F, v), gv))
        lead = tuple(gd.shape[:-1])
        gv = gv - conj(F, v) * F.reshape(real(F, gd), lead + (1, n)) - \
            gauge_cotangent(F, v, F.reshape(F.imag(gd), lead + (1, n)))
        d, zero = _gaps(F, w)
        xbar = diag_embed(F, gw) + _over_gaps(F, F.matmul(mT(F, v), gv), d, zero)
        return (F.solve(mT(F, v), F.matmul(xbar, mT(F, v))),)

    def jvp(F, ts, saved):
        (out,) = saved
        n = _n_of(out)
        w, v = _eig_parts(F, out, n)
        x = F.solve(v, F.matmul(ts[0], v))
        d, zero = _gaps(F, w)
        dv = F.matmul(v, _over_gaps(F, x, d, zero))
        lead = tuple(dv.shape[:-2])
        norm = real(F, F.sum(conj(F, v) * dv, axis=(-2,), keepdims=True))
        dv = dv - v * norm + v * gauge_theta(F, v, dv) * F.const(1j)
        z = F.concatenate(diagonal(F, x), F.reshape(dv, lead + (n * n,)), axis=-1)
        return _as_real_pair(F, z)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        n = draw(st.integers(1, 4))
        lead = batch_shape(draw, 1)
        # P B P^{-1}, B with separated real eigenvalues and (n >= 2) a pair a +- ib, b >= 0.5
        b = np.diag(np.arange(n) * 0.8 - 1.0 + rng.uniform(-0.1, 0.1, n))
        if n >= 2 and draw(st.booleans()):
            b[:2, :2] = [[0.3, 0.7], [-0.7, 0.3]]
        p = np.linalg.qr(rng.standard_normal(lead + (n, n)))[0] + 0.3 * rng.standard_normal(
            lead + (n, n))
        return (p @ b @ np.linalg.inv(p),), {}
