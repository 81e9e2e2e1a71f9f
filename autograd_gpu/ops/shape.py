"""Shape and layout primitives. Shapes/axes are normalised before recording; rules keep any
leading tangent batch by working on the trailing dimensions only."""

from __future__ import annotations

from . import sampling as S
from .registry import apply, defop


def _batch(g, nd_out):
    return tuple(g.shape[: g.ndim - nd_out])


@defop("reshape", params=("shape",), cost=lambda out, *xs, **p: 0.0)
class Reshape:
    """y = x with a new shape of the same size"""

    def forward(bk, x, *, shape):
        return x.reshape(shape), (x.shape,)

    def vjp(F, g, saved, needs, *, shape):
        return (F.reshape(g, _batch(g, len(shape)) + tuple(saved[0])),)

    def jvp(F, ts, saved, *, shape):
        t = ts[0]
        return F.reshape(t, _batch(t, len(saved[0])) + tuple(shape))

    def sample(draw):
        import numpy as np
        from hypothesis import strategies as st

        shape = draw(S.shapes())
        x = draw(S.arrays(shape))
        n = int(np.prod(shape))
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        d = draw(st.sampled_from(divisors))
        new = draw(st.sampled_from([(n,), (d, n // d), (n // d, 1, d)]))
        return (x,), {"shape": new}


@defop("broadcast_to", params=("shape",), cost=lambda out, *xs, **p: 0.0)
class BroadcastTo:
    """y = x broadcast to shape (a read-only view); the gradient sums over broadcast axes"""

    def forward(bk, x, *, shape):
        return bk.xp.broadcast_to(x, shape), (x.shape,)

    def vjp(F, g, saved, needs, *, shape):
        return (g,)  # the engine sums g back to x's shape

    def jvp(F, ts, saved, *, shape):
        t = ts[0]
        b = _batch(t, len(saved[0]))
        pad = (1,) * (len(shape) - len(saved[0]))
        return F.broadcast_to(F.reshape(t, b + pad + tuple(saved[0])), b + tuple(shape))

    def sample(draw):
        sa, = draw(S.broadcast_shapes(1))
        from hypothesis import strategies as st

        extra = draw(st.lists(st.integers(1, 3), max_size=2))
        target = tuple(extra) + tuple(s if s != 1 else draw(st.integers(1, 3)) for s in sa)
        return (draw(S.arrays(sa)),), {"shape": target}


@defop("transpose", params=("axes",), cost=lambda out, *xs, **p: 0.0)
class Transpose:
    """y = x with axes permuted (axes: a permutation of range(ndim))"""

    def forward(bk, x, *, axes):
        return bk.xp.transpose(x, axes), ()

    def vjp(F, g, saved, needs, *, axes):
        nd = len(axes)
        inv = [0] * nd
        for i, a in enumerate(axes):
            inv[a] = i
        b = g.ndim - nd
        return (F.transpose(g, axes=tuple(range(b)) + tuple(b + i for i in inv)),)

    def jvp(F, ts, saved, *, axes):
        t = ts[0]
        b = t.ndim - len(axes)
        return F.transpose(t, axes=tuple(range(b)) + tuple(b + a for a in axes))

    def sample(draw):
        from hypothesis import strategies as st

        shape = draw(S.shapes())
        perm = draw(st.permutations(list(range(len(shape)))))
        return (draw(S.arrays(shape)),), {"axes": tuple(perm)}


def _t(x, op):
    from ._util import as_tensor

    return as_tensor(x, None, "x", op)


def reshape(x, shape):
    """x with a new shape (one entry may be -1)."""
    import numbers

    from ..errors import ShapeError

    x = _t(x, "reshape")
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(int(s) for s in shape)
    size = x.size
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: argument 'shape' may hold at most one -1, got {shape}")
    if -1 in shape:
        rest = 1
        for s in shape:
            rest *= s if s != -1 else 1
        if rest == 0 or size % rest:
            raise ShapeError(f"reshape: cannot reshape {x.shape} (size {size}) into {shape}")
        shape = tuple(size // rest if s == -1 else s for s in shape)
    n = 1
    for s in shape:
        n *= s
    if n != size:
        raise ShapeError(
            f"reshape: argument 'shape' expected {size} elements like input {x.shape}, got {shape}"
        )
    if shape == x.shape:
        return x
    return apply(Reshape, x, shape=shape)


def broadcast_to(x, shape):
    """x broadcast to shape."""
    x = _t(x, "broadcast_to")
    shape = tuple(int(s) for s in shape)
    if shape == x.shape:
        return x
    return apply(BroadcastTo, x, shape=shape)


def transpose(x, axes=None):
    """x with axes permuted (default: reversed)."""
    from ..errors import ShapeError

    x = _t(x, "transpose")
    nd = x.ndim
    axes = tuple(range(nd))[::-1] if axes is None else tuple(int(a) % max(nd, 1) for a in axes)
    if sorted(axes) != list(range(nd)):
        raise ShapeError(f"transpose: argument 'axes' expected a permutation of range({nd}), got {axes}")
    return apply(Transpose, x, axes=axes)


def swapaxes(x, axis1: int, axis2: int):
    """x with two axes exchanged."""
    from ..errors import ShapeError
    from .linalg import SwapAxes

    x = _t(x, "swapaxes")
    nd = x.ndim
    for a in (axis1, axis2):
        if not -nd <= a < nd:
            raise ShapeError(f"swapaxes: axis {a} out of range for {nd} dimensions")
    return apply(SwapAxes, x, a1=axis1 % nd - nd, a2=axis2 % nd - nd)


__all__ = ["reshape", "broadcast_to", "transpose", "swapaxes"]
