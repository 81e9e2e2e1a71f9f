"""ag.fft: NumPy's FFT functions on tensors, differentiable (numpy.fft's names and signatures,
as jax.numpy.fft has them).

fft, ifft, fft2, ifft2, fftn, ifftn (complex to complex; a real input is taken as complex),
rfft, rfft2, rfftn (real input, half spectrum out), irfft, irfft2, irfftn (half spectrum in,
real output) with ``n``/``s`` (each axis cropped or zero-padded to that length first, as NumPy
does), ``axes`` and ``norm`` ("backward", the default; "ortho"; "forward"); fftshift and
ifftshift. The transforms are the primitives of ops/fft.py (their rules and the derivation of
the real transforms' are there); cropping, padding and the shifts are compositions of getitem,
pad and concatenate.

dtypes follow NumPy 2: float32 -> complex64, float64 -> complex128, integers and bools as
float64; float16 and bfloat16 are computed in float32. Complex input to rfft* raises DTypeError
(NumPy raises TypeError). Repeated axes raise ShapeError (NumPy would transform twice; SciPy
refuses them).

Gradients follow the complex convention of docs/contributing.md: for a real-valued loss L of a
complex input z, ag.grad gives dL/dx - i dL/dy (JAX's convention).
"""

from __future__ import annotations

import numbers

from . import dtypes as _dt
from .errors import ArgumentError, DTypeError, ShapeError, describe
from .ops import api as _api
from .ops import fft as _ops
from .ops._util import as_tensor, positions
from .ops.registry import apply
from .tensor import Tensor

__all__ = ["fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2", "irfft2",
           "rfftn", "irfftn", "fftshift", "ifftshift"]


# ---- arguments ------------------------------------------------------------------------------


def _input(a, op, real_only=False):
    """A tensor to transform: integers and bools as float64 (NumPy's rule); complex refused
    where the transform wants a real input."""
    t = as_tensor(a, None, "a", op)
    if not isinstance(t, Tensor):
        if isinstance(t, numbers.Number):
            t = Tensor.from_array(t, dtype="complex128" if isinstance(t, complex) else "float64")
        else:
            raise ArgumentError(f"{op}: argument 'a' expected a tensor, got {describe(a)}")
    if t.dtype.kind in "biu":
        t = _api.astype(t, "float64")
    elif real_only and _dt.is_complex(t.dtype):
        raise DTypeError(f"{op}: argument 'a' expected real values, got {_dt.name(t.dtype)} "
                         f"(the half spectrum of complex input is not defined; use fft)")
    elif not _dt.is_inexact(t.dtype):
        raise DTypeError(f"{op}: argument 'a' expected a numeric dtype, got {t.dtype}")
    return t


def _norm(norm, op):
    if norm is None:
        return "backward"
    if norm not in _ops.NORMS:
        raise ArgumentError(f"{op}: argument 'norm' expected None, 'backward', 'ortho' or "
                            f"'forward', got {norm!r}")
    return norm


def _lengths(s, count, op, name="s"):
    seq = (s,) if isinstance(s, numbers.Integral) else s
    if not isinstance(seq, (tuple, list)) or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in seq):
        raise ArgumentError(f"{op}: argument '{name}' expected an int or a sequence of ints, "
                            f"got {s!r}")
    if count is not None and len(seq) != count:
        raise ShapeError(f"{op}: argument '{name}' expected {count} lengths (one per axis), got "
                         f"{s!r}")
    if any(v < 1 for v in seq):
        raise ShapeError(f"{op}: argument '{name}' expected lengths >= 1 (the number of FFT "
                         f"points), got {s!r}")
    return tuple(int(v) for v in seq)


def _plan(t, s, axes, op, inverse_real=False, lname="s"):
    """(axes, lengths) as NumPy reads s and axes: s alone means the last len(s) axes; axes
    alone, the input's lengths there (for irfft*, 2 (m - 1) on the last axis)."""
    if t.ndim == 0:
        raise ShapeError(f"{op}: argument 'a' expected at least 1 dimension, got a scalar")
    if axes is None:
        axes = tuple(range(t.ndim)) if s is None else \
            tuple(range(t.ndim - len(_lengths(s, None, op)), t.ndim))
    axes = positions(axes, t.ndim, op, "axes")
    if not axes:
        raise ShapeError(f"{op}: argument 'axes' expected at least one axis, got {axes!r}")
    if s is None:
        s = [t.shape[a] for a in axes]
        if inverse_real:
            s[-1] = 2 * (s[-1] - 1)
    return axes, _lengths(s, len(axes), op, lname)


def _resize(t, axes, lengths):
    """t cropped or zero-padded to ``lengths`` along ``axes`` (NumPy's n/s)."""
    crop = [slice(None)] * t.ndim
    pads = [(0, 0)] * t.ndim
    for a, n in zip(axes, lengths):
        have = t.shape[a]
        if have > n:
            crop[a] = slice(0, n)
        elif have < n:
            pads[a] = (0, n - have)
    if any(c != slice(None) for c in crop):
        t = t[tuple(crop)]
    if any(p != (0, 0) for p in pads):
        t = _api.pad(t, pads)
    return t


def _neg(axes, ndim):
    return tuple(a - ndim for a in axes)


# ---- the transforms -------------------------------------------------------------------------


def _c2c(op_obj, a, s, axes, norm, name, lname="s"):
    t = _input(a, name)
    axes, lengths = _plan(t, s, axes, name, lname=lname)
    norm = _norm(norm, name)
    t = _resize(t, axes, lengths)
    return apply(op_obj, t, axes=_neg(axes, t.ndim), norm=norm)


def _r2c(a, s, axes, norm, name, lname="s"):
    t = _input(a, name, real_only=True)
    axes, lengths = _plan(t, s, axes, name, lname=lname)
    norm = _norm(norm, name)
    t = _resize(t, axes, lengths)
    return apply(_ops.Rfftn, t, axes=_neg(axes, t.ndim), norm=norm)


def _c2r(a, s, axes, norm, name, lname="s"):
    t = _input(a, name)
    axes, lengths = _plan(t, s, axes, name, inverse_real=True, lname=lname)
    norm = _norm(norm, name)
    n = lengths[-1]
    t = _resize(t, axes, lengths[:-1] + (n // 2 + 1,))
    return apply(_ops.Irfftn, t, axes=_neg(axes, t.ndim), n=n, norm=norm)


def _one(n, axis, op):
    """(s, axes) of a 1-d transform from NumPy's n and axis."""
    if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
        raise ShapeError(f"{op}: argument 'axis' expected an int, got {axis!r}")
    return (None if n is None else _lengths(n, 1, op, "n")), (axis,)


def fft(a, n=None, axis=-1, norm=None):
    """numpy.fft.fft: the 1-d discrete Fourier transform along axis (a cropped or zero-padded
    to n points first)."""
    s, axes = _one(n, axis, "fft")
    return _c2c(_ops.Fftn, a, s, axes, norm, "fft", "n")


def ifft(a, n=None, axis=-1, norm=None):
    """numpy.fft.ifft: the 1-d inverse discrete Fourier transform along axis."""
    s, axes = _one(n, axis, "ifft")
    return _c2c(_ops.Ifftn, a, s, axes, norm, "ifft", "n")


def fft2(a, s=None, axes=(-2, -1), norm=None):
    """numpy.fft.fft2: the 2-d discrete Fourier transform over axes."""
    return _c2c(_ops.Fftn, a, s, axes, norm, "fft2")


def ifft2(a, s=None, axes=(-2, -1), norm=None):
    """numpy.fft.ifft2: the 2-d inverse discrete Fourier transform over axes."""
    return _c2c(_ops.Ifftn, a, s, axes, norm, "ifft2")


def fftn(a, s=None, axes=None, norm=None):
    """numpy.fft.fftn: the n-d discrete Fourier transform over axes (all by default)."""
    return _c2c(_ops.Fftn, a, s, axes, norm, "fftn")


def ifftn(a, s=None, axes=None, norm=None):
    """numpy.fft.ifftn: the n-d inverse discrete Fourier transform over axes."""
    return _c2c(_ops.Ifftn, a, s, axes, norm, "ifftn")


def rfft(a, n=None, axis=-1, norm=None):
    """numpy.fft.rfft: the transform of a real input along axis, entries 0..n//2."""
    s, axes = _one(n, axis, "rfft")
    return _r2c(a, s, axes, norm, "rfft", "n")


def irfft(a, n=None, axis=-1, norm=None):
    """numpy.fft.irfft: the real inverse of rfft along axis; n output points (2 (m - 1) by
    default for m input entries; the input is cropped or zero-padded to n//2 + 1)."""
    s, axes = _one(n, axis, "irfft")
    return _c2r(a, s, axes, norm, "irfft", "n")


def rfft2(a, s=None, axes=(-2, -1), norm=None):
    """numpy.fft.rfft2: the 2-d transform of a real input, halved along the last axis."""
    return _r2c(a, s, axes, norm, "rfft2")


def irfft2(a, s=None, axes=(-2, -1), norm=None):
    """numpy.fft.irfft2: the real inverse of rfft2."""
    return _c2r(a, s, axes, norm, "irfft2")


def rfftn(a, s=None, axes=None, norm=None):
    """numpy.fft.rfftn: the n-d transform of a real input, halved along the last of axes."""
    return _r2c(a, s, axes, norm, "rfftn")


def irfftn(a, s=None, axes=None, norm=None):
    """numpy.fft.irfftn: the real inverse of rfftn; s gives the output lengths."""
    return _c2r(a, s, axes, norm, "irfftn")


# ---- shifts ---------------------------------------------------------------------------------


def _shift(x, axes, op, half):
    t = as_tensor(x, None, "x", op)
    if not isinstance(t, Tensor):
        t = Tensor.from_array(t)
    axes = tuple(range(t.ndim)) if axes is None else positions(axes, t.ndim, op, "axes")
    for a in axes:
        n = t.shape[a]
        k = half(n) % n if n else 0
        if k == 0:
            continue
        head = [slice(None)] * t.ndim
        tail = [slice(None)] * t.ndim
        head[a], tail[a] = slice(n - k, n), slice(0, n - k)
        t = _api.concatenate([t[tuple(head)], t[tuple(tail)]], axis=a)
    return t


def fftshift(x, axes=None):
    """numpy.fft.fftshift: the zero-frequency entry moved to the centre (a roll by n//2 along
    each axis; all axes by default)."""
    return _shift(x, axes, "fftshift", lambda n: n // 2)


def ifftshift(x, axes=None):
    """numpy.fft.ifftshift: the inverse of fftshift (a roll by -(n//2))."""
    return _shift(x, axes, "ifftshift", lambda n: -(n // 2))
