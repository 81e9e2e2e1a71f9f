"""Hypothesis helpers for op samplers (test-time only; hypothesis is imported lazily).

A sampler is ``sample(draw) -> (inputs, params)``: inputs are float64 numpy arrays in the op's
domain (or integer arrays / Python numbers for non-differentiable arguments), params the op's
keyword parameters. Arrays come from a drawn seed, so shrinking acts on shapes, not values.
"""

from __future__ import annotations

import numpy as np

__all__ = ["shapes", "broadcast_shapes", "arrays", "distinct_arrays", "ints", "axis_for", "unary",
           "binary"]


def _st():
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    return st


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis.extra import numpy as hnp

    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def broadcast_shapes(n=2, min_dims=0, max_dims=3, max_side=4):
    """n shapes that broadcast together (a strategy of tuples of shapes)."""
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis.extra import numpy as hnp

    return hnp.mutually_broadcastable_shapes(
        num_shapes=n, min_dims=min_dims, max_dims=max_dims, max_side=max_side
    ).map(lambda r: r.input_shapes)


def arrays(shape, lo=-2.0, hi=2.0, away=None, dtype=np.float64):
    """float arrays uniform in [lo, hi]; ``away=(c, d)`` keeps |x - c| >= d (kinks, poles)."""
    st = _st()

    def build(seed):
        rng = np.random.default_rng(seed)
        x = rng.uniform(lo, hi, size=shape)
        if away is not None:
            c, d = away
            near = np.abs(x - c) < d
            x = np.where(near, c + np.where(x >= c, d, -d) + np.sign(x - c + 1e-300) * 0.0, x)
            x = np.where(np.abs(x - c) < d, c + d, x)
        return np.asarray(x, dtype=dtype)

    return st.integers(0, 2**32 - 1).map(build)


def distinct_arrays(shape, lo=-2.0, hi=2.0, gap=0.05):
    """Arrays whose entries are pairwise at least ``gap`` apart (max/min/sort have no ties)."""
    st = _st()

    def build(seed):
        rng = np.random.default_rng(seed)
        n = int(np.prod(shape, dtype=np.int64))
        grid = np.linspace(lo, hi, max(n, 1) * 3)
        if n and (grid[1] - grid[0]) < gap:
            grid = lo + gap * np.arange(max(n, 1) * 3)
        x = rng.choice(grid, size=n, replace=False) if n else np.zeros(0)
        return x.reshape(shape).astype(np.float64)

    return st.integers(0, 2**32 - 1).map(build)


def ints(shape, lo, hi):
    """int64 arrays in [lo, hi)."""
    st = _st()
    return st.integers(0, 2**32 - 1).map(
        lambda seed: np.random.default_rng(seed).integers(lo, hi, size=shape).astype(np.int64)
    )


def axis_for(ndim, allow_none=True, allow_tuple=True):
    """An axis argument valid for ``ndim`` dims: None, an int (maybe negative) or a tuple."""
    st = _st()
    options = []
    if allow_none:
        options.append(st.none())
    if ndim > 0:
        options.append(st.integers(-ndim, ndim - 1))
        if allow_tuple:
            options.append(
                st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(
                    tuple
                )
            )
    return st.one_of(*options) if options else st.none()


def unary(lo=-2.0, hi=2.0, away=None):
    """A sampler of one array argument, uniform in [lo, hi] (kept ``away`` from points)."""

    def sample(draw):
        return (draw(arrays(draw(shapes()), lo, hi, away=away)),), {}

    return sample


def binary(lo=-2.0, hi=2.0, lo_b=None, hi_b=None, away_b=None):
    """A sampler of two broadcasting array arguments; the second in [lo_b, hi_b] when given."""

    def sample(draw):
        sa, sb = draw(broadcast_shapes(2))
        a = draw(arrays(sa, lo, hi))
        b = draw(arrays(sb, lo if lo_b is None else lo_b, hi if hi_b is None else hi_b,
                        away=away_b))
        return (a, b), {}

    return sample
