"""Matrix functions: pinv, expm, sqrtm. The public functions are in autograd_gpu/linalg.py.

Rules:
* pinv: Golub and Pereyra 1973 (the derivative of the pseudo-inverse where the rank is locally
  constant), as JAX's pinv jvp; its vjp is the transpose under the complex convention.
* expm: the Frechet derivative L(a, e) is the upper-right block of expm([[a, e], [0, a]])
  (Mathias 1996; Higham 2008, Functions of Matrices, 3.2), and the vjp is L(a^T, g). Both call
  the expm primitive, so every order of derivative comes from the same rule.
* sqrtm: x = sqrtm(a) satisfies x dx + dx x = da, a Sylvester equation: dx = sylv(x, x, da),
  and the vjp solves the transposed one, a_bar = sylv(x^T, x^T, g).
"""

from __future__ import annotations

import numpy as np

from ._linalg_util import conj, lapack, mH, mT, over_batch
from .registry import defop
from .solves import _rng, batch_shape, scipy_linalg, spd, well_conditioned

__all__ = ["Pinv", "Expm", "Sqrtm"]


def _mm_cost(k):
    return lambda out, a, **p: float(k * a.size * a.shape[-1])


# ---- pinv -----------------------------------------------------------------------------------


def _pinv(xp, a, rtol):
    """NumPy's pinv on any backend: singular values at or below rtol * the largest count as
    zero."""
    m, n = a.shape[-2:]
    if m == 0 or n == 0:
        return xp.zeros(a.shape[:-2] + (n, m), dtype=a.dtype)
    u, s, vh = lapack("pinv", xp.linalg.svd, a, full_matrices=False)
    large = s > rtol * s[..., :1]
    sinv = xp.where(large, 1.0 / xp.where(large, s, 1.0), 0.0).astype(s.dtype)
    return xp.matmul(xp.swapaxes(vh, -1, -2).conj() * sinv[..., None, :],
                     xp.swapaxes(u, -1, -2).conj())


@defop("pinv", params=("rtol",), cost=_mm_cost(20), saves=("a", "out"), complex_ok=True,
       batch="leading")
class Pinv:
    """p = pinv(a) (NumPy's: singular values <= rtol * the largest are dropped). Where the rank
    is locally constant (Golub and Pereyra 1973): dp = -p da p + p p^H da^H (I - a p)
    + (I - p a) da^H p^H p; vjp a_bar = -p^T g p^T + conj((I - a p) g^T p p^H)
    + conj(p^H p g^T (I - p a))."""

    def forward(bk, a, *, rtol=1e-15):
        p = _pinv(bk.xp, a, rtol)
        return p, (a, p)

    def vjp(F, g, saved, needs, *, rtol=1e-15):
        a, p = saved
        gt = mT(F, g)
        t1 = -F.matmul(F.matmul(mT(F, p), g), mT(F, p))
        left = gt - F.matmul(a, F.matmul(p, gt))  # (I - a p) g^T
        t2 = F.matmul(left, F.matmul(p, mH(F, p)))
        right = gt - F.matmul(F.matmul(gt, p), a)  # g^T (I - p a)
        t3 = F.matmul(F.matmul(mH(F, p), p), right)
        return (t1 + conj(F, t2 + t3),)

    def jvp(F, ts, saved, *, rtol=1e-15):
        a, p = saved
        da = ts[0]
        dah = mH(F, da)
        t1 = -F.matmul(F.matmul(p, da), p)
        t2 = F.matmul(F.matmul(p, mH(F, p)), dah - F.matmul(F.matmul(dah, a), p))
        t3 = F.matmul(dah - F.matmul(p, F.matmul(a, dah)), F.matmul(mH(F, p), p))
        return t1 + t2 + t3

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        m, n = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        lead = batch_shape(draw, 1)
        k = min(m, n)
        u = np.linalg.qr(rng.standard_normal(lead + (m, k)))[0]
        v = np.linalg.qr(rng.standard_normal(lead + (n, k)))[0]
        s = rng.uniform(0.5, 2.5, lead + (k,))
        return ((u * s[..., None, :]) @ np.swapaxes(v, -1, -2),), {"rtol": 1e-15}


# ---- expm -----------------------------------------------------------------------------------


def _frechet(F, a, e):
    """L(a, e) = the upper-right block of expm([[a, e], [0, a]]) (a broadcast to e's shape)."""
    n = a.shape[-1]
    ab = F.broadcast_to(a, tuple(e.shape))
    top = F.concatenate(ab, e, axis=-1)
    bottom = F.concatenate(F.zeros(tuple(e.shape), e.dtype), ab, axis=-1)
    blk = F.expm(F.concatenate(top, bottom, axis=-2))
    return F.getitem(blk, index=((0, n, 1), (n, 2 * n, 1)))


@defop("expm", cost=_mm_cost(30), saves=("a",), complex_ok=True, batch="leading")
class Expm:
    """y = expm(a) (SciPy's, Pade approximation with scaling and squaring). jvp: L(a, da), the
    upper-right block of expm([[a, da], [0, a]]); vjp: L(a^T, g). On CuPy, cupyx's expm
    chooses its scaling from the norm on the host (a synchronisation per matrix), takes one
    matrix at a time, and (CuPy 14's sources) handles real matrices only."""

    def forward(bk, a):
        fn = bk.scipy.linalg.expm
        return over_batch(bk.xp, lambda m: lapack("expm", fn, m), a), (a,)

    def vjp(F, g, saved, needs):
        return (_frechet(F, mT(F, saved[0]), g),)

    def jvp(F, ts, saved):
        return _frechet(F, saved[0], ts[0])

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        n = draw(st.integers(1, 3))
        return (rng.uniform(-1.0, 1.0, batch_shape(draw, 1) + (n, n)),), {}


# ---- sqrtm ----------------------------------------------------------------------------------


@defop("sqrtm", cost=_mm_cost(30), saves=("out",), complex_ok=True, batch="leading")
class Sqrtm:
    """x = sqrtm(a), the principal square root (SciPy's, from the Schur form; complex for a
    real a with eigenvalues on the negative real axis, as SciPy's). jvp: dx = sylv(x, x, da);
    vjp: a_bar = sylv(x^T, x^T, g). CuPy has no sqrtm: on a GPU it raises DeviceError."""

    def forward(bk, a):
        fn = scipy_linalg(bk, "sqrtm", "sqrtm")
        x = over_batch(bk.xp, lambda m: lapack("sqrtm", fn, m), a)
        return x, (x,)

    def vjp(F, g, saved, needs):
        xt = mT(F, saved[0])
        return (F.solve_sylvester(xt, xt, g),)

    def jvp(F, ts, saved):
        (x,) = saved
        return F.solve_sylvester(x, x, ts[0])

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        rng = _rng(draw)
        n = draw(st.integers(1, 3))
        lead = batch_shape(draw, 1)
        # eigenvalues with real parts >= 0.5: a real principal square root
        a = spd(rng, lead + (n, n)) + 0.2 * well_conditioned(rng, lead + (n, n))
        return (a + 0.5 * np.eye(n),), {}
