"""ag.signal: scipy.signal.convolve on tensors, differentiable in both inputs.

``convolve(in1, in2, mode="full", method="auto")`` as SciPy has it: n-dimensional (in1 and in2
of the same number of dimensions), mode "full", "valid" (in2 and in1 swapped when in2 is the
larger, as SciPy does) or "same" (the centre of the full result, in1's shape), method "direct",
"fft" or "auto" (the backend's scipy.signal.choose_conv_method, from the shapes; CuPy 14.2's
chooses "fft" for every 1-d float pair and cannot choose for n-d inputs, where "auto" is "fft").

"direct" is the convolve primitive of ops/signal.py (direct sums through scipy.signal or
cupyx.scipy.signal; its rules are correlations). "fft" is a composition of ag.fft: the real
transforms for real inputs (irfftn(rfftn(a) rfftn(b)) over lengths SciPy's next_fast_len
chooses), the complex ones when either input is complex, then the same cropping SciPy does; its
gradient comes from the transforms' rules. "same" and the FFT path's cropping are getitem.

Inputs are floating or complex (integers raise DTypeError: cast them); 0-d inputs give
in1 * in2, as SciPy; an empty input raises ShapeError (SciPy 1.17 raises ValueError or
IndexError).
"""

from __future__ import annotations

from . import dtypes as _dt
from . import fft as _fft
from .errors import ArgumentError, DTypeError, ShapeError, describe
from .ops import api as _api
from .ops import signal as _ops
from .ops._util import as_tensor
from .ops.registry import apply
from .tensor import Tensor

__all__ = ["convolve"]

_MODES = ("full", "valid", "same")
_METHODS = ("auto", "direct", "fft")


def _operand(x, name, like):
    t = as_tensor(x, like, name, "convolve")
    if not isinstance(t, Tensor):
        if isinstance(t, (int, float, complex)) and not isinstance(t, bool):
            t = Tensor.from_array(t, dtype="complex128" if isinstance(t, complex) else "float64")
        else:
            raise ArgumentError(f"convolve: argument '{name}' expected a tensor, got "
                                f"{describe(x)}")
    if not _dt.is_inexact(t.dtype):
        raise DTypeError(f"convolve: argument '{name}' expected a floating or complex dtype, "
                         f"got {_dt.name(t.dtype)} (cast it with .astype)")
    return t


def _centre(y, shape):
    """The centre of y with the given shape (SciPy's _centered)."""
    idx = tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(y.shape, shape))
    return y[idx]


def _fft_full(a, b):
    """The full convolution through ag.fft over lengths next_fast_len chooses."""
    nd = a.ndim
    full = tuple(p + q - 1 for p, q in zip(a.shape, b.shape))
    real = not (_dt.is_complex(a.dtype) or _dt.is_complex(b.dtype))
    fast = a._bk.scipy.fft.next_fast_len
    s = tuple(int(fast(n, real)) for n in full)
    axes = tuple(range(nd))
    if real:
        spec = _fft.rfftn(a, s=s, axes=axes) * _fft.rfftn(b, s=s, axes=axes)
        y = _fft.irfftn(spec, s=s, axes=axes)
    else:
        y = _fft.ifftn(_fft.fftn(a, s=s, axes=axes) * _fft.fftn(b, s=s, axes=axes), axes=axes)
    if s != full:
        y = y[tuple(slice(0, n) for n in full)]
    want = a._bk.xp.result_type(a._data, b._data)
    if y.dtype != want:  # 16-bit floats: transformed in float32, rounded back as "direct" does
        y = _api.astype(y, want)
    return y


def _valid_order(a, b):
    """(larger, smaller) for mode "valid", or a ShapeError as SciPy's."""
    if all(p >= q for p, q in zip(a.shape, b.shape)):
        return a, b
    if all(q >= p for p, q in zip(a.shape, b.shape)):
        return b, a
    raise ShapeError(f"convolve: for mode 'valid' one input must be at least as large as the "
                     f"other in every dimension, got shapes {a.shape} and {b.shape}")


def convolve(in1, in2, mode="full", method="auto"):
    """scipy.signal.convolve: the n-dimensional convolution of in1 and in2 (see the module
    docstring for modes, methods and the rules)."""
    like = in1 if isinstance(in1, Tensor) else in2 if isinstance(in2, Tensor) else None
    a, b = _operand(in1, "in1", like), _operand(in2, "in2", like)
    if mode not in _MODES:
        raise ArgumentError(f"convolve: argument 'mode' expected 'full', 'valid' or 'same', "
                            f"got {mode!r}")
    if method not in _METHODS:
        raise ArgumentError(f"convolve: argument 'method' expected 'auto', 'direct' or 'fft', "
                            f"got {method!r}")
    if a.ndim != b.ndim:
        raise ShapeError(f"convolve: in1 and in2 expected the same number of dimensions, got "
                         f"shapes {a.shape} and {b.shape}")
    if a.ndim == 0:
        return a * b
    if a.size == 0 or b.size == 0:  # (SciPy 1.17 raises ValueError or IndexError)
        raise ShapeError(f"convolve: expected non-empty inputs, got shapes {a.shape} and "
                         f"{b.shape}")
    if mode == "valid":
        a, b = _valid_order(a, b)
    if method == "auto":
        method = _choose(a, b, mode)
    if method == "fft":
        y = _fft_full(a, b)
        return _centre(y, _out_shape(a.shape, b.shape, mode))
    if mode == "valid":
        return apply(_ops.Convolve, a, b, mode="valid", nd=a.ndim)
    y = apply(_ops.Convolve, a, b, mode="full", nd=a.ndim)
    return y if mode == "full" else _centre(y, a.shape)


def _choose(a, b, mode):
    """The backend's choose_conv_method; "fft" where it says it cannot choose (CuPy 14.2's
    handles 1-d inputs only, raising NotImplementedError, and answers "fft" for every 1-d float
    pair)."""
    try:
        return a._bk.scipy.signal.choose_conv_method(a._data, b._data, mode=mode)
    except NotImplementedError:
        return "fft"


def _out_shape(sa, sb, mode):
    """The result's shape: full, valid (sa the larger), or same (in1's, sa)."""
    if mode == "full":
        return tuple(p + q - 1 for p, q in zip(sa, sb))
    if mode == "valid":
        return tuple(p - q + 1 for p, q in zip(sa, sb))
    return tuple(sa)
