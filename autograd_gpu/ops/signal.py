"""The direct n-dimensional convolution primitive behind ``ag.signal.convolve`` (method
"direct"); the FFT method is a composition of ag.fft's transforms (autograd_gpu/signal.py).

``convolve(a, b, mode, nd)``: the last ``nd`` axes of a and b are the signal axes; leading axes
beyond them are a batch, broadcast between a and b (the rules' batched tangents and cotangents,
and vmap, put them there). ``mode`` is "full" (every overlap: length n_a + n_b - 1 per axis) or
"valid" (full overlaps only: n_a - n_b + 1, with a at least as long as b on every signal axis:
the public function orders the inputs, convolution being commutative). Computed by
``bk.scipy.signal.convolve(method="direct")`` (scipy.signal, cupyx.scipy.signal), once per
batch element when there is a batch (SciPy's n-d convolution has no batch axes).

Rules (the adjoint of a convolution is a correlation, i.e. a convolution with the other input
flipped over its signal axes; no conjugate, the complex convention of docs/contributing.md):
  full:  y = a * b            da = valid(g, flip(b))      db = valid(g, flip(a))
  valid: y = valid(a, b)      da = full(g, flip(b))       db = valid(flip(a), g)
The inputs keep their order in each (g is at least as long as flip(b) in full mode's, flip(a)
at least as long as g in valid mode's). jvp: the same mode on (ta, b) and (a, tb), bilinearity.
"""

from __future__ import annotations

import itertools

from . import sampling as S
from ._util import tsum
from .registry import defop

__all__ = ["MODES", "Convolve"]

__all__: list = []  # the public function lives in autograd_gpu/signal.py (ag.signal)

MODES = ("full", "valid")


def _batch_shape(a, b, nd):
    ba, bb = a.shape[: a.ndim - nd], b.shape[: b.ndim - nd]
    k = max(len(ba), len(bb))
    ba, bb = (1,) * (k - len(ba)) + tuple(ba), (1,) * (k - len(bb)) + tuple(bb)
    return tuple(q if p == 1 else p for p, q in zip(ba, bb)), ba, bb


def _common(bk, a, b):
    """a and b in their result dtype (16-bit floats as float32): CuPy's direct convolution
    gives in1's dtype (a real in1 would drop a complex in2's imaginary part), and SciPy's n-d
    direct sums refuse float16."""
    dt = bk.xp.result_type(a, b)
    if dt.itemsize == 2 and dt.kind != "c":
        dt = bk.xp.dtype("float32")
    return (a if a.dtype == dt else a.astype(dt)), (b if b.dtype == dt else b.astype(dt)), dt


def _direct(bk, a, b, mode, nd):
    """scipy.signal.convolve(a, b, mode, method="direct") over the last nd axes, per element
    of the broadcast leading batch, in the inputs' result dtype."""
    want = bk.xp.result_type(a, b)
    a, b, _ = _common(bk, a, b)
    y = _direct_batched(bk, a, b, mode, nd)
    return y if y.dtype == want else y.astype(want)


def _direct_batched(bk, a, b, mode, nd):
    conv = bk.scipy.signal.convolve
    if a.ndim == nd and b.ndim == nd:
        return conv(a, b, mode=mode, method="direct")
    batch, ba, bb = _batch_shape(a, b, nd)
    a = a.reshape(ba + a.shape[a.ndim - nd:])
    b = b.reshape(bb + b.shape[b.ndim - nd:])
    outs = []
    for idx in itertools.product(*(range(n) for n in batch)):
        ia = tuple(i if n > 1 else 0 for i, n in zip(idx, ba))
        ib = tuple(i if n > 1 else 0 for i, n in zip(idx, bb))
        outs.append(conv(a[ia], b[ib], mode=mode, method="direct"))
    if not outs:  # an empty batch
        sa, sb = a.shape[a.ndim - nd:], b.shape[b.ndim - nd:]
        sig = tuple(p + q - 1 if mode == "full" else p - q + 1 for p, q in zip(sa, sb))
        return bk.xp.zeros(batch + sig, dtype=bk.xp.result_type(a, b))
    out = bk.xp.stack(outs)
    return out.reshape(batch + out.shape[1:])


def _flip(F, x, nd):
    return F.flip(x, axis=tuple(range(-nd, 0)))


def _conv_cost(out, a, b, *, mode, nd):
    nb = 1
    for s in b.shape[b.ndim - nd:]:
        nb *= s
    return 2.0 * out.size * nb


def _sample(draw):
    """1 to 3 signal axes; a at least as long as b on each for "valid"."""
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    nd = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(MODES))
    sa = tuple(draw(st.integers(1, 5)) for _ in range(nd))
    sb = tuple(draw(st.integers(1, n if mode == "valid" else 4)) for n in sa)
    return (draw(S.arrays(sa)), draw(S.arrays(sb))), {"mode": mode, "nd": nd}


@defop("convolve", params=("mode", "nd"), cost=_conv_cost, saves=("a", "b"), complex_ok=True,
       batch="leading")
class Convolve:
    """y = a * b over the last nd axes, direct sums (mode "full" or "valid"); the adjoint of
    convolution is correlation: full: da = valid(g, flip(b)), db = valid(g, flip(a));
    valid: da = full(g, flip(b)), db = valid(flip(a), g)"""

    def forward(bk, a, b, *, mode, nd):
        return _direct(bk, a, b, mode, nd), (a, b)

    def vjp(F, g, saved, needs, *, mode, nd):
        a, b = saved
        if mode == "full":
            da = F.convolve(g, _flip(F, b, nd), mode="valid", nd=nd) if needs[0] else None
            db = F.convolve(g, _flip(F, a, nd), mode="valid", nd=nd) if needs[1] else None
        else:
            da = F.convolve(g, _flip(F, b, nd), mode="full", nd=nd) if needs[0] else None
            db = F.convolve(_flip(F, a, nd), g, mode="valid", nd=nd) if needs[1] else None
        return da, db

    def jvp(F, ts, saved, *, mode, nd):
        a, b = saved
        ta, tb = ts
        return tsum(None if ta is None else F.convolve(ta, b, mode=mode, nd=nd),
                    None if tb is None else F.convolve(a, tb, mode=mode, nd=nd))

    sample = _sample
