"""Linear algebra: matmul (vectors, matrices, batched with broadcasting)."""

from __future__ import annotations

from . import sampling as S
from .registry import apply, defop


def _matmul_cost(out, a, b):
    k = a.shape[-1] if a.ndim else 1
    return 2.0 * out.size * k


@defop("matmul", cost=_matmul_cost)
class Matmul:
    """y = a @ b with NumPy's rules: 1-d operands are promoted and the added axis removed;
    leading (batch) axes broadcast."""

    def forward(bk, a, b):
        return bk.xp.matmul(a, b), (a, b)

    def vjp(F, g, saved, needs):
        a, b = saved
        ga = gb = None
        if a.ndim == 1 and b.ndim == 1:  # y = <a, b>, g has only batch axes
            gx = F.reshape(g, g.shape + (1,))
            ga = gx * b if needs[0] else None
            gb = gx * a if needs[1] else None
            return ga, gb
        if a.ndim == 1:  # (k) @ (..., k, n) -> (..., n)
            if needs[0]:
                ga = F.reshape(F.matmul(F.reshape(g, g.shape[:-1] + (1, g.shape[-1])),
                                        F.swapaxes(b, a1=-1, a2=-2)), g.shape[:-1] + (a.shape[0],))
            if needs[1]:
                gb = F.reshape(a, (a.shape[0], 1)) * F.reshape(g, g.shape[:-1] + (1, g.shape[-1]))
            return ga, gb
        if b.ndim == 1:  # (..., m, k) @ (k) -> (..., m)
            if needs[0]:
                ga = F.reshape(g, g.shape + (1,)) * b
            if needs[1]:
                gb = F.reshape(F.matmul(F.reshape(g, g.shape[:-1] + (1, g.shape[-1])), a),
                               g.shape[:-1] + (b.shape[0],))
            return ga, gb
        if needs[0]:
            ga = F.matmul(g, F.swapaxes(b, a1=-1, a2=-2))
        if needs[1]:
            gb = F.matmul(F.swapaxes(a, a1=-1, a2=-2), g)
        return ga, gb

    def jvp(F, ts, saved):
        a, b = saved
        ta, tb = ts
        # a tangent batch must not line up with the other operand's broadcast axes
        if ta is not None and 2 <= a.ndim < b.ndim:
            ta = _pad(F, ta, a.shape, b.ndim)
        if tb is not None and 2 <= b.ndim < a.ndim:
            tb = _pad(F, tb, b.shape, a.ndim)
        out = None
        if ta is not None:
            out = F.matmul(ta, b) if not (a.ndim == 1 and b.ndim > 1) else _vec_mat(F, ta, b)
        if tb is not None:
            if b.ndim == 1:
                t2 = F.matmul(tb, a) if a.ndim == 1 else _mat_vec(F, a, tb)
            else:
                t2 = F.matmul(a, tb)
            out = t2 if out is None else out + t2
        return out

    def sample(draw):
        from hypothesis import strategies as st

        m, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
        kind = draw(st.sampled_from(["mm", "mv", "vm", "vv", "bmm", "bcast"]))
        shapes = {
            "mm": ((m, k), (k, n)), "mv": ((m, k), (k,)), "vm": ((k,), (k, n)), "vv": ((k,), (k,)),
            "bmm": ((2, m, k), (2, k, n)), "bcast": ((3, 1, m, k), (2, k, n)),
        }[kind]
        return (draw(S.arrays(shapes[0])), draw(S.arrays(shapes[1]))), {}


def _pad(F, t, shape, ndim):
    nb = t.ndim - len(shape)
    return F.reshape(t, tuple(t.shape[:nb]) + (1,) * (ndim - len(shape)) + tuple(shape))


def _vec_mat(F, ta, b):
    """(batch..., k) tangent of a 1-d left operand times (..., k, n)."""
    t = F.reshape(ta, ta.shape[:-1] + (1, ta.shape[-1]))
    y = F.matmul(t, b)
    return F.reshape(y, y.shape[:-2] + (y.shape[-1],))


def _mat_vec(F, a, tb):
    """(..., m, k) times a (batch..., k) tangent of a 1-d right operand."""
    t = F.reshape(tb, tb.shape[:-1] + (tb.shape[-1], 1))
    y = F.matmul(a, t)
    return F.reshape(y, y.shape[:-2] + (y.shape[-2],))


@defop("swapaxes", params=("a1", "a2"), cost=lambda out, *xs, **p: 0.0)
class SwapAxes:
    """y = x with axes a1 and a2 exchanged (negative axes, so leading batches are kept)"""

    def forward(bk, x, *, a1, a2):
        return bk.xp.swapaxes(x, a1, a2), ()

    def vjp(F, g, saved, needs, *, a1, a2):
        return (F.swapaxes(g, a1=a1, a2=a2),)

    def jvp(F, ts, saved, *, a1, a2):
        return F.swapaxes(ts[0], a1=a1, a2=a2)

    def sample(draw):
        shape = draw(S.shapes(min_dims=2))
        return (draw(S.arrays(shape)),), {"a1": -1, "a2": -2}


def matmul(a, b):
    """a @ b (NumPy semantics)."""
    from ._util import as_tensor

    like = a if hasattr(a, "_bk") else b if hasattr(b, "_bk") else None
    return apply(Matmul, as_tensor(a, like, "a", "matmul"), as_tensor(b, like, "b", "matmul"))
