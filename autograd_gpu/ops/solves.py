"""Linear solves and determinants: solve, solve_triangular, det, slogdet, lu_factor and
solve_sylvester. The public functions (NumPy's and SciPy's signatures) are in
autograd_gpu/linalg.py; these primitives take canonical shapes (right-hand sides always
(..., n, k)), with leading axes broadcast as NumPy's gufuncs do.

Rules use solves, never explicit inverses: the cotangent of b in x = a^{-1} b is
solve(a^T, x_bar) (Giles 2008, "An extended collection of matrix derivative results"; JAX's
rules), with transposes, not conjugates, per the complex convention of docs/contributing.md.
"""

from __future__ import annotations

import numpy as np

from ..errors import DeviceError
from ._linalg_util import (
    batch_matrices,
    conj,
    diagonal,
    eye,
    lapack,
    lift,
    mH,
    mT,
    over_batch,
    pack,
    real,
    solve_tri,
    tri,
    unpack,
)
from .registry import defop

__all__ = ["Solve", "SolveTriangular", "Det", "Slogdet", "LuFactor", "SolveSylvester"]


def _n3(out, a, *rest, **p):
    n = a.shape[-1]
    k = rest[0].shape[-1] if rest else n
    batch = max(out.size // max(out.shape[-1] * out.shape[-2], 1), 1) if out.ndim >= 2 else 1
    return float(batch * (2.0 / 3.0 * n ** 3 + 2.0 * n * n * k))


# ---- samplers (test time only: hypothesis and numpy are imported there) ---------------------


def _rng(draw):
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def batch_shape(draw, max_dims=2):
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    return tuple(draw(st.lists(st.integers(1, 3), max_size=max_dims)))


def well_conditioned(rng, shape):
    """Square matrices (..., n, n) with singular values kept in about [0.5, 3]."""
    n = shape[-1]
    q1 = np.linalg.qr(rng.standard_normal(shape))[0]
    q2 = np.linalg.qr(rng.standard_normal(shape))[0]
    s = rng.uniform(0.6, 2.5, shape[:-1])
    return (q1 * s[..., None, :]) @ q2 if n else np.zeros(shape)


def spd(rng, shape):
    """Symmetric positive definite matrices with eigenvalues in [0.5, 3]."""
    q = np.linalg.qr(rng.standard_normal(shape))[0]
    w = rng.uniform(0.5, 3.0, shape[:-1])
    return (q * w[..., None, :]) @ np.swapaxes(q, -1, -2)


# ---- solve ----------------------------------------------------------------------------------


def _same_lead(xp, a, b):
    """a (..., n, n) and b (..., n, k) broadcast to the same leading axes: NumPy's solve
    broadcasts them itself, but cupy.linalg.solve (CuPy 14.2) requires a.shape[:-1] ==
    b.shape[:-1] and raises ValueError otherwise (inv of a batch solves against one eye). The
    broadcast operand is copied out: CuPy's per-matrix path builds its result with empty_like
    of b, which should not see zero strides."""
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if a.shape[:-2] != lead:
        a = xp.ascontiguousarray(xp.broadcast_to(a, lead + a.shape[-2:]))
    if b.shape[:-2] != lead:
        b = xp.ascontiguousarray(xp.broadcast_to(b, lead + b.shape[-2:]))
    return a, b


@defop("solve", cost=_n3, saves=("a", "out", None), complex_ok=True,
       batch=batch_matrices("solve"))
class Solve:
    """x = a^{-1} b for a (..., n, n) and b (..., n, k), leading axes broadcast.
    jvp: dx = solve(a, db - da x); vjp: b_bar = solve(a^T, x_bar), a_bar = -b_bar x^T."""

    def forward(bk, a, b):
        x = lapack("solve", bk.xp.linalg.solve, *_same_lead(bk.xp, a, b))
        return x, (a, x, b.shape)

    def vjp(F, g, saved, needs):
        a, x, _ = saved
        gb = F.solve(mT(F, a), g)
        return (-F.matmul(gb, mT(F, x)) if needs[0] else None), (gb if needs[1] else None)

    def jvp(F, ts, saved):
        a, x, b_shape = saved
        ta, tb = ts
        rhs = lift(F, tb, b_shape, x.ndim)
        if ta is not None:
            da_x = F.matmul(lift(F, ta, a.shape, x.ndim), x)
            rhs = -da_x if rhs is None else rhs - da_x
        return F.solve(a, rhs)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        n, k = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        ba, bb = draw(st.sampled_from([((), ()), ((2,), (2,)), ((2,), ()), ((), (3,)),
                                       ((3, 1), (2,))]))
        return (well_conditioned(rng, ba + (n, n)), rng.standard_normal(bb + (n, k))), {}


# ---- triangular solve -----------------------------------------------------------------------


def _trsm(bk, a, b, trans, lower, unit):
    fn = bk.scipy.linalg.solve_triangular
    if trans == 2 and a.dtype.kind != "c":  # the same system; SciPy copies a C-ordered a for 2
        trans = 1
    # both operands in their result dtype: SciPy computes in it, but cupyx.scipy's (CuPy 14.2)
    # casts b to a's dtype, so a float32 a would round a float64 b to float32 and drop the
    # imaginary part of a complex b
    dt = bk.xp.result_type(a.dtype, b.dtype)
    a, b = a.astype(dt, copy=False), b.astype(dt, copy=False)

    def one(a2, b2):
        return lapack("solve_triangular", fn, a2, b2, trans=trans, lower=lower,
                      unit_diagonal=unit, check_finite=False)

    if a.ndim == 2 and b.ndim > 2:  # one matrix: the batch of b becomes more right-hand sides
        n, k = b.shape[-2:]
        lead = b.shape[:-2]
        x = one(a, bk.xp.moveaxis(b, -2, 0).reshape(n, -1))
        return bk.xp.moveaxis(x.reshape((n,) + lead + (k,)), 0, -2)
    return over_batch(bk.xp, one, a, b)


def _tri_mask(F, n, dtype, lower, unit):
    return tri(F, n, (-1 if unit else 0) if lower else (1 if unit else 0), dtype,
               upper=not lower)


def _real_dtype(x):
    return x.real.dtype if x.dtype.kind == "c" else x.dtype


def _op_of(F, m, trans):
    """op(m): m, m^T or m^H for trans 0, 1, 2."""
    return m if trans == 0 else mT(F, m) if trans == 1 else mH(F, m)


@defop("solve_triangular", params=("trans", "lower", "unit_diagonal"), cost=_n3,
       saves=("a", "out", None), complex_ok=True, batch=batch_matrices("solve_triangular"))
class SolveTriangular:
    """x = op(t)^{-1} b, t the lower (or upper) triangle of a (with a unit diagonal when
    unit_diagonal), op = identity, transpose or conjugate transpose for trans = 0, 1, 2 (SciPy's
    solve_triangular; only that triangle of a is read, so only it gets a cotangent).
    jvp: dx = op(t)^{-1} (db - op(dt) x); vjp: b_bar = op(t)^{-T} x_bar, t_bar = the triangle
    of -b_bar x^T (transposed, or conjugate-transposed, as op)."""

    def forward(bk, a, b, *, trans=0, lower=False, unit_diagonal=False):
        x = _trsm(bk, a, b, trans, lower, unit_diagonal)
        return x, (a, x, b.shape)

    def vjp(F, g, saved, needs, *, trans=0, lower=False, unit_diagonal=False):
        a, x, _ = saved
        if trans == 2:  # op(t)^{-T} = conj(t)^{-1}: conjugate around a plain solve
            gb = conj(F, solve_tri(F, a, conj(F, g), lower, 0, unit_diagonal))
        else:
            gb = solve_tri(F, a, g, lower, 1 - trans, unit_diagonal)
        ga = None
        if needs[0]:  # (the sign on the small factor: one pass over the n x n result)
            m = _op_of(F, F.matmul(-gb, mT(F, x)), trans)
            ga = m * _tri_mask(F, a.shape[-1], _real_dtype(a), lower, unit_diagonal)
        return ga, (gb if needs[1] else None)

    def jvp(F, ts, saved, *, trans=0, lower=False, unit_diagonal=False):
        a, x, b_shape = saved
        ta, tb = ts
        rhs = lift(F, tb, b_shape, x.ndim)
        if ta is not None:
            dt = ta * _tri_mask(F, a.shape[-1], _real_dtype(a), lower, unit_diagonal)
            dm = F.matmul(lift(F, _op_of(F, dt, trans), a.shape, x.ndim), x)
            rhs = -dm if rhs is None else rhs - dm
        return solve_tri(F, a, rhs, lower, trans, unit_diagonal)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        n, k = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        ba, bb = draw(st.sampled_from([((), ()), ((2,), (2,)), ((), (3,)), ((2,), ())]))
        a = rng.uniform(-1, 1, ba + (n, n))
        d = rng.uniform(1.5, 2.5, ba + (n,)) * rng.choice([-1.0, 1.0], ba + (n,))
        a = a * (1 - np.eye(n)) + d[..., None] * np.eye(n)
        params = {"trans": draw(st.sampled_from([0, 1, 2])), "lower": draw(st.booleans()),
                  "unit_diagonal": draw(st.booleans())}
        return (a, rng.standard_normal(bb + (n, k))), params


# ---- determinants ---------------------------------------------------------------------------


def _trace_solve(F, a, ta):
    """tr(a^{-1} da) over the last two axes (da: tangent batch + a's shape)."""
    return F.sum(diagonal(F, F.solve(a, ta)), axis=(-1,))


def _inv_t_scaled(F, a, c):
    """c[..., None, None] * a^{-T}, as a solve of a^T against c times the identity."""
    n = a.shape[-1]
    rhs = F.reshape(c, tuple(c.shape) + (1, 1)) * eye(F, n, _real_dtype(a))
    return F.solve(mT(F, a), rhs)


def _det_sample(draw):
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    rng = _rng(draw)
    n = draw(st.integers(1, 4))
    a = well_conditioned(rng, batch_shape(draw) + (n, n))
    if draw(st.booleans()):  # a negative determinant
        a[..., 0, :] *= -1
    return (a,), {}


@defop("det", cost=_n3, saves=("a", "out"), complex_ok=True, batch="leading")
class Det:
    """y = det(a). jvp: y tr(a^{-1} da); vjp: a_bar = (y_bar y) a^{-T}, as a solve of a^T (a
    singular a makes the rules raise LinAlgError: the gradient there is the adjugate, which
    these rules do not form)."""

    def forward(bk, a):
        y = bk.xp.linalg.det(a)
        y = bk.xp.asarray(y)
        return y, (a, y)

    def vjp(F, g, saved, needs):
        a, y = saved
        return (_inv_t_scaled(F, a, g * y),)

    def jvp(F, ts, saved):
        a, y = saved
        return y * _trace_solve(F, a, ts[0])

    sample = _det_sample


@defop("slogdet", cost=_n3, saves=("a", "out"), complex_ok=True, batch="leading")
class Slogdet:
    """(sign, log|det a|) packed along a last axis of length 2. Real a: the sign is piecewise
    constant (derivative 0) and d log|det| = tr(a^{-1} da), so a_bar = l_bar a^{-T}. Complex a:
    with tau = tr(a^{-1} da), d log|det| = Re tau and d sign = i sign Im tau."""

    def forward(bk, a):
        s, ld = bk.xp.linalg.slogdet(a)
        out = pack(bk.xp, bk.xp.asarray(s)[..., None], bk.xp.asarray(ld)[..., None],
                   core_ndims=(1, 1))
        return out, (a, out)

    def vjp(F, g, saved, needs):
        a, out = saved
        gs, gl = unpack(F, g, ((), ()))
        c = real(F, gl) if a.dtype.kind == "c" else gl
        if a.dtype.kind == "c":  # Re(gs * i s Im tau) = -Im(gs s) Im tau = Re(i Im(gs s) tau)
            s = unpack(F, out, ((), ()))[0]
            c = c + F.imag(gs * s) * F.const(1j)
        return (_inv_t_scaled(F, a, c),)

    def jvp(F, ts, saved):
        a, out = saved
        tau = _trace_solve(F, a, ts[0])
        lead = tuple(tau.shape)
        if a.dtype.kind == "c":
            s = unpack(F, out, ((), ()))[0]
            ts_ = F.reshape(s * F.imag(tau) * F.const(1j), lead + (1,))
            tl = F.reshape(real(F, tau) * F.const(1.0 + 0j), lead + (1,))
        else:
            ts_ = F.zeros(lead + (1,), tau.dtype)
            tl = F.reshape(tau, lead + (1,))
        return F.concatenate(ts_, tl, axis=-1)

    sample = _det_sample


# ---- LU factorisation -----------------------------------------------------------------------


def scipy_linalg(bk, name, op, module=None):
    """bk.scipy.linalg.<name> (or <module>.<name>), or a DeviceError saying that this backend
    lacks it (cupyx.scipy.linalg has no sqrtm or solve_sylvester; older CuPy has no eig)."""
    mod = bk.scipy.linalg if module is None else module
    fn = getattr(mod, name, None)
    if fn is None:
        raise DeviceError(f"{op}: {mod.__name__} has no {name} on {bk.device}; compute it on "
                          f"the CPU (move the tensor with .to('cpu'))")
    return fn


def perm_from_piv(xp, piv):
    """The row permutation p with a[p] = L U from LAPACK's interchanges (row i swapped with
    row piv[i], in order), for a batch of pivot vectors (..., n). Device operations only (one
    gather and two scatters per row), so a GPU never waits for the host."""
    n = piv.shape[-1]
    lead = piv.shape[:-1]
    pv = piv.reshape(-1, n)
    perm = xp.broadcast_to(xp.arange(n), pv.shape).copy()
    rows = xp.arange(pv.shape[0])
    for i in range(n):
        j = pv[:, i]
        pi = perm[:, i].copy()
        perm[:, i] = perm[rows, j]
        perm[rows, j] = pi
    return perm.reshape(lead + (n,))


def take_rows(F, x, perm):
    """x[..., perm, :] per matrix (perm: a constant (..., n) index array for x's leading axes;
    x may carry more leading batch axes in front)."""
    p = F.data(perm)
    nb = p.ndim - 1
    arrays = [F.xp.arange(p.shape[d]).reshape((1,) * d + (p.shape[d],) + (1,) * (nb - d))
              for d in range(nb)]
    spec = ("array",) * (nb + 1) + ((0, x.shape[-1], 1),)
    return F.getitem(x, *(F.const(a) for a in arrays), F.const(p), index=spec)


def _lu_parts(F, out, n):
    lu = F.getitem(out, index=((0, n, 1), (0, n, 1)))
    rd = _real_dtype(lu)
    low = lu * tri(F, n, -1, rd) + eye(F, n, rd)
    up = lu * tri(F, n, 0, rd, upper=True)
    return lu, low, up


@defop("lu_factor", cost=_n3, saves=("out", None, None), complex_ok=True, batch="leading")
class LuFactor:
    """a[p] = L U with partial pivoting, for square a (SciPy's lu_factor): lu holds L's strict
    lower triangle (L has a unit diagonal) and U; the pivots piv (LAPACK's row interchanges)
    travel as floats (exact) in an extra last row: output (..., n + 1, n). The pivots are
    piecewise constant (derivative 0). With X = L^{-1} (da)[p] U^{-1}: jvp dlu = L tril(X, -1)
    + triu(X) U; vjp X_bar = tril(L^T lu_bar, -1) + triu(lu_bar U^T), a_bar[p] = L^{-T} X_bar
    U^{-T} (triangular solves). On CuPy, cupyx's lu_factor reads getrf's status on the host
    (a synchronisation per matrix) and factors one matrix at a time."""

    def forward(bk, a):
        fn = bk.scipy.linalg.lu_factor
        lu, piv = over_batch(bk.xp, lambda m: lapack("lu_factor", fn, m, check_finite=False), a)
        perm = perm_from_piv(bk.xp, piv)
        out = bk.xp.concatenate([lu, piv[..., None, :].astype(lu.dtype)], axis=-2)
        return out, (out, perm, bk.xp.argsort(perm, axis=-1))

    def vjp(F, g, saved, needs):
        out, _, inv = saved
        n = out.shape[-1]
        lu, low, up = _lu_parts(F, out, n)
        glu = F.getitem(g, index=((0, n, 1), (0, n, 1)))
        rd = _real_dtype(lu)
        xbar = F.matmul(mT(F, low), glu) * tri(F, n, -1, rd) + \
            F.matmul(glu, mT(F, up)) * tri(F, n, 0, rd, upper=True)
        y = solve_tri(F, lu, xbar, True, 1, True)
        w = mT(F, solve_tri(F, lu, mT(F, y), False, 0))
        return (take_rows(F, w, inv),)

    def jvp(F, ts, saved):
        out, perm, _ = saved
        n = out.shape[-1]
        lu, low, up = _lu_parts(F, out, n)
        z = solve_tri(F, lu, take_rows(F, ts[0], perm), True, 0, True)
        x = mT(F, solve_tri(F, lu, mT(F, z), False, 1))
        rd = _real_dtype(lu)
        dlu = F.matmul(low, x * tri(F, n, -1, rd)) + F.matmul(x * tri(F, n, 0, rd, upper=True), up)
        zero = F.zeros(tuple(dlu.shape[:-2]) + (1, n), dlu.dtype)
        return F.concatenate(dlu, zero, axis=-2)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        n = draw(st.integers(1, 4))
        return (well_conditioned(rng, batch_shape(draw, 1) + (n, n)),), {}


# ---- Sylvester equations --------------------------------------------------------------------


def _sylvester(bk, a, b, q):
    fn = scipy_linalg(bk, "solve_sylvester", "solve_sylvester")
    return over_batch(bk.xp, lambda x, y, z: lapack("solve_sylvester", fn, x, y, z), a, b, q)


@defop("solve_sylvester", cost=lambda out, a, b, q, **p: 10.0 * (a.size * a.shape[-1] +
                                                                    b.size * b.shape[-1]),
       saves=("a", "b", "out", None), complex_ok=True, batch=batch_matrices("solve_sylvester"))
class SolveSylvester:
    """x with a x + x b = q (SciPy's solve_sylvester, Bartels-Stewart; a (..., n, n),
    b (..., m, m), q (..., n, m)). jvp: dx = sylv(a, b, dq - da x - x db); vjp: q_bar =
    sylv(a^T, b^T, x_bar), a_bar = -q_bar x^T, b_bar = -x^T q_bar. CuPy has no solve_sylvester:
    on a GPU it raises DeviceError."""

    def forward(bk, a, b, q):
        x = _sylvester(bk, a, b, q)
        return x, (a, b, x, q.shape)

    def vjp(F, g, saved, needs):
        a, b, x, _ = saved
        gq = F.solve_sylvester(mT(F, a), mT(F, b), g)
        ga = -F.matmul(gq, mT(F, x)) if needs[0] else None
        gb = -F.matmul(mT(F, x), gq) if needs[1] else None
        return ga, gb, (gq if needs[2] else None)

    def jvp(F, ts, saved):
        a, b, x, q_shape = saved
        ta, tb, tq = ts
        rhs = lift(F, tq, q_shape, x.ndim)
        for t, term in ((ta, lambda t: F.matmul(lift(F, t, a.shape, x.ndim), x)),
                        (tb, lambda t: F.matmul(x, lift(F, t, b.shape, x.ndim)))):
            if t is not None:
                rhs = -term(t) if rhs is None else rhs - term(t)
        return F.solve_sylvester(a, b, rhs)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        n, m = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        lead = batch_shape(draw, 1)
        a = rng.uniform(-0.4, 0.4, lead + (n, n)) + 2.0 * np.eye(n)
        b = rng.uniform(-0.4, 0.4, lead + (m, m)) + 1.5 * np.eye(m)
        return (a, b, rng.standard_normal(lead + (n, m))), {}
