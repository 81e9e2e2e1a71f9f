"""FFT primitives behind ``ag.fft``: n-dimensional transforms over given axes with exact lengths
(the public functions in autograd_gpu/fft.py crop or zero-pad their inputs with getitem and pad
first, so those steps get their rules from those ops), through ``bk.scipy.fft`` (scipy.fft on
the CPU, cupyx.scipy.fft on CuPy).

Rules, in the complex convention of docs/contributing.md (the vjp is the transpose, not the
conjugate transpose, of the complex-linear derivative). W is the unnormalised DFT matrix over
the axes (N points in all) and c the norm's factor (1, 1/sqrt(N), 1/N for "backward", "ortho",
"forward"; the inverse transforms divide by the complementary factor).

* fftn: y = c W x. W is symmetric, so the transpose is the same transform: vjp = fftn(g) with
  the same norm. ifftn likewise: vjp = ifftn(g).
* rfftn: y = P c W x, P keeping the first m = n//2 + 1 entries of the last axis. For complex x
  (the complex-linear extension) the transpose is c W P^T g = fftn(zero-pad(g)). For real x the
  cotangent is its real part, Re(c W P^T g); with conj(W) = W^-1 N this is
  irfftn(conj(g) h) with the dual norm ("backward" <-> "forward"), h = 1/2 on the entries that
  irfftn counts twice (0 < k < n/2) and 1 on k = 0 and k = n/2: irfftn sums the half spectrum
  as 2 Re(.) there. JAX transposes a naive rfft (a full complex FFT) instead; this is the same
  number from a half-length transform.
* irfftn (complex in, real out, real-linear): y = A Re(z) + B Im(z); the convention's cotangent
  is A^T u - i B^T u, which works out as conj(rfftn(u)) d with the dual norm, d = 2 on the
  entries counted twice and 1 on k = 0 and k = n/2 (JAX's mask). The imaginary parts of those
  two entries do not reach the output: their cotangent is 0, as it is here (rfftn(u) is real
  there).

The jvp of every transform is the transform of the tangent. 16-bit float inputs are computed in
float32 (complex64 out): the FFT libraries have no half-precision transforms on the CPU.
"""

from __future__ import annotations

import math

from ..dtypes import is_floating
from . import sampling as S
from .registry import defop

__all__ = ["NORMS", "Fftn", "Ifftn", "Rfftn", "Irfftn"]

__all__: list = []  # the public functions live in autograd_gpu/fft.py (ag.fft)

NORMS = ("backward", "ortho", "forward")
_DUAL = {"backward": "forward", "ortho": "ortho", "forward": "backward"}


def _up(x):
    """16-bit floats as float32 (scipy.fft and NumPy's pocketfft have no float16 transforms)."""
    return x.astype("float32") if x.dtype.itemsize == 2 and is_floating(x.dtype) else x


def _fft_cost(out, x, **params):
    n = max(out.size, x.size, 2)
    return 5.0 * n * math.log2(n)


def _half_weights(F, m, n, axis, dtype, value):
    """A real vector of length m along ``axis`` (negative), ``value`` on the entries the
    half-spectrum counts twice (0 < k < n/2) and 1 on k = 0 and (n even) k = n/2."""
    xp = F.xp
    w = xp.full((m,), value, dtype=dtype)
    w[0] = 1.0
    if n % 2 == 0:
        w[m - 1] = 1.0
    return F.const(w.reshape((m,) + (1,) * (-axis - 1)))


def _real_dtype(g):
    return "float32" if str(g.dtype) in ("complex64", "float32") else "float64"


def _axes_sample(draw, min_dims=1):
    """A shape (1 to 3 axes) and a nonempty set of its axes, negative, in drawn order (the last
    is the halved one of rfftn/irfftn), and a norm."""
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    shape = draw(S.shapes(min_dims=min_dims, max_dims=3, max_side=5))
    nd = len(shape)
    axes = draw(st.lists(st.integers(-nd, -1), min_size=1, max_size=nd, unique=True))
    return shape, tuple(axes), draw(st.sampled_from(NORMS))


def _c2c_sample(draw):
    shape, axes, norm = _axes_sample(draw)
    return (draw(S.arrays(shape)),), {"axes": axes, "norm": norm}


@defop("fftn", params=("axes", "norm"), cost=_fft_cost, complex_ok=True, batch=("axes", "axes"))
class Fftn:
    """y = c W x over axes (the discrete Fourier transform, scaled by the norm's c); its own
    transpose: vjp = fftn(g), jvp = fftn(t)"""

    def forward(bk, x, *, axes, norm):
        return bk.scipy.fft.fftn(_up(x), axes=axes, norm=norm), ()

    def vjp(F, g, saved, needs, *, axes, norm):
        return (F.fftn(g, axes=axes, norm=norm),)

    def jvp(F, ts, saved, *, axes, norm):
        return F.fftn(ts[0], axes=axes, norm=norm)

    sample = _c2c_sample


@defop("ifftn", params=("axes", "norm"), cost=_fft_cost, complex_ok=True,
       batch=("axes", "axes"))
class Ifftn:
    """y = conj(W) x / (N c) over axes (the inverse transform); its own transpose:
    vjp = ifftn(g), jvp = ifftn(t)"""

    def forward(bk, x, *, axes, norm):
        return bk.scipy.fft.ifftn(_up(x), axes=axes, norm=norm), ()

    def vjp(F, g, saved, needs, *, axes, norm):
        return (F.ifftn(g, axes=axes, norm=norm),)

    def jvp(F, ts, saved, *, axes, norm):
        return F.ifftn(ts[0], axes=axes, norm=norm)

    sample = _c2c_sample


@defop("rfftn", params=("axes", "norm"), cost=_fft_cost, saves=(None,), complex_ok=True,
       batch=("axes", "axes"))
class Rfftn:
    """y = the first n//2 + 1 entries, along the last of axes, of fftn(x) (the half spectrum
    of a real x; the complex-linear extension for complex x). vjp: real x:
    irfftn(conj(g) h, dual norm), h = 1/2 on the entries counted twice, else 1; complex x:
    fftn(zero-pad(g)). jvp = rfftn(t). (Derivation: the module docstring.)"""

    def forward(bk, x, *, axes, norm):
        x = _up(x)
        n = x.shape[axes[-1]]
        if x.dtype.kind == "c":
            y = bk.scipy.fft.fftn(x, axes=axes, norm=norm)
            idx = (Ellipsis, slice(0, n // 2 + 1)) + (slice(None),) * (-axes[-1] - 1)
            return y[idx], ((n, True),)
        return bk.scipy.fft.rfftn(x, axes=axes, norm=norm), ((n, False),)

    def vjp(F, g, saved, needs, *, axes, norm):
        n, cplx = saved[0]
        m = n // 2 + 1
        if cplx:
            pw = ((0, n - m),) + ((0, 0),) * (-axes[-1] - 1)
            return (F.fftn(F.pad(g, pad_width=pw, value=0.0), axes=axes, norm=norm),)
        h = _half_weights(F, m, n, axes[-1], _real_dtype(g), 0.5)
        return (F.irfftn(F.conj(g) * h, axes=axes, n=n, norm=_DUAL[norm]),)

    def jvp(F, ts, saved, *, axes, norm):
        return F.rfftn(ts[0], axes=axes, norm=norm)

    sample = _c2c_sample


@defop("irfftn", params=("axes", "n", "norm"), cost=_fft_cost, complex_ok=True,
       batch=("axes", "axes"))
class Irfftn:
    """y = the real inverse transform over axes of a half spectrum z (m = n//2 + 1 entries
    along the last of axes, n the output length there; the imaginary parts of entries 0 and
    n/2 do not count). Real-linear in z: vjp = conj(rfftn(g, dual norm)) d, d = 2 on the
    entries counted twice, else 1 (JAX's rule); jvp = irfftn(t)."""

    def forward(bk, z, *, axes, n, norm):
        z = _up(z)
        s = [z.shape[a] for a in axes[:-1]] + [n]
        return bk.scipy.fft.irfftn(z, s=s, axes=axes, norm=norm), ()

    def vjp(F, g, saved, needs, *, axes, n, norm):
        d = _half_weights(F, n // 2 + 1, n, axes[-1], _real_dtype(g), 2.0)
        return (F.conj(F.rfftn(g, axes=axes, norm=_DUAL[norm]) * d),)

    def jvp(F, ts, saved, *, axes, n, norm):
        return F.irfftn(ts[0], axes=axes, n=n, norm=norm)

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        shape, axes, norm = _axes_sample(draw)
        m = shape[axes[-1]]
        n = 1 if m == 1 else draw(st.sampled_from((2 * m - 2, 2 * m - 1)))
        return (draw(S.arrays(shape)),), {"axes": axes, "n": n, "norm": norm}
