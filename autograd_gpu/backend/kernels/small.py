"""Elementwise ops on arrays under 65,536 elements (kernels/small.cu): their cost is the
launch's host time, about 10 us through a CuPy ufunc or ElementwiseKernel against a few us
through a RawModule function with a contiguous array, its length and an op code. float32 and
float64, C-contiguous (float16 and bfloat16 keep CuPy's kernels, which round through float the
way NumPy does).

The entries ``bind_scalar``, ``bind_unary`` and ``bind_act_grad`` return, for one backend, a
callable ``f(op, *arrays, *scalars)`` that gives the result, or None when the op, dtype, size
or layout is not covered or when the kernel failed its self-check for that (op, dtype): each
(op, dtype) is compared on first use with the CuPy kernel it replaces (``cupy_kernel`` and
``cupy.<op>``, the same expression), on a probe with NaN, infinities and signed zeros. The
backend keeps the bound callables, so a call site pays one Python call."""

from __future__ import annotations

import functools

import numpy as np

from .loader import KernelFamily, equal_values, probe_values

SMALL_MAX = 1 << 16  # elements: below it an elementwise op costs its launch's host time
SMALL_OPS = {
    "small_scalar": ("add", "sub", "rsub", "mul", "div", "rdiv"),
    "small_unary": ("negative", "exp", "expm1", "log", "log1p", "sqrt", "abs", "sin", "cos",
                    "tan", "tanh"),
    "small_act_grad": ("tanh", "sigmoid"),
}
_SCALAR_REF = {"add": lambda x, s: x + s, "sub": lambda x, s: x - s, "rsub": lambda x, s: s - x,
               "mul": lambda x, s: x * s, "div": lambda x, s: x / s, "rdiv": lambda x, s: s / x}

FAMILY = KernelFamily(
    "small", source="small",
    plain=tuple(f"{k}_{t}" for k in SMALL_OPS for t in ("f32", "f64")),
    dtypes=(np.float32, np.float64), entries=("bind_scalar", "bind_unary", "bind_act_grad"),
    references={
        "bind_scalar": lambda op, x, s: _SCALAR_REF[op](x, s),
        "bind_unary": lambda op, x: getattr(np, op)(x),
        "bind_act_grad": lambda op, g, t: g - g * t * t if op == "tanh" else g * (t - t * t),
    },
    self_check="each (op, dtype) on first use, against the CuPy kernel it replaces",
    ops=("add", "sub", "mul", "div", "neg", "exp", "expm1", "log", "log1p", "sqrt", "abs", "sin",
         "cos", "tan", "tanh", "tanh_grad", "sigmoid_grad"),
    callers=("CupyBackend.scalar_op", "CupyBackend.unary", "CupyBackend.act_grad"))

# array-with-Python-number arithmetic as a kernel with the number as a typed argument (NumPy's
# NEP 50 rule: the number takes the array's dtype), at the cost of an array-array call
_SCALAR_EXPR = {"add": "y = x + s", "sub": "y = x - s", "rsub": "y = s - x", "mul": "y = x * s",
                "div": "y = x / s", "rdiv": "y = s / x"}


@functools.cache
def cupy_kernel(name):
    """The CuPy kernels of the hot two-kernel patterns (compiled on first use, cached): the
    small kernels' references, and CupyBackend's path for larger arrays."""
    import cupy  # optional dependency (cupy)

    if name == "relu_grad":
        # a select (a NaN x passes g; an inf g where x <= 0 gives 0): NumpyBackend.relu_grad
        return cupy.ElementwiseKernel("T g, T x", "T y", "y = x <= (T)0 ? (T)0 : g",
                                      "ag_relu_grad")
    if name in _SCALAR_EXPR:
        return cupy.ElementwiseKernel("T x, T s", "T y", _SCALAR_EXPR[name], f"ag_scalar_{name}")
    if name == "tanh":
        return cupy.ElementwiseKernel("T g, T t", "T y", "y = g - g * t * t", "ag_tanh_grad")
    if name == "sigmoid":
        return cupy.ElementwiseKernel("T g, T s", "T y", "y = g * (s - s * s)",
                                      "ag_sigmoid_grad")
    raise KeyError(name)


def _reference(xp, family, op):
    """The CuPy kernel a small kernel replaces (its reference on the self-check)."""
    if family == "small_unary":
        return getattr(xp, op)
    return cupy_kernel(op)  # scalar: (x, s); act_grad: (g, t)


def _bind(family):
    """The entry of one kernel group of small.cu: bound to a backend, ``f(op, *arrays,
    *scalars)`` returns the result or None (see the module docstring)."""
    nin = 2 if family == "small_act_grad" else 1
    codes = {op: np.int32(i) for i, op in enumerate(SMALL_OPS[family])}
    suffix = {"f": "f32", "d": "f64"}

    def bind(bk):
        xp = bk.xp
        ndarray = xp.ndarray
        # CuPy keeps C-contiguity as a plain attribute (``flags`` builds an object per call)
        fast_contig = hasattr(ndarray, "_c_contiguous")
        ready: dict = {}  # (op, dtype char) -> (function, op code) once checked, or False

        def launch(fn, code, arrays, extra):
            a = arrays[0]
            y = ndarray(a.shape, a.dtype)
            n = a.size
            if n:
                fn(((n + 255) >> 8,), (256,), (*arrays, y, *extra, np.int64(n), code))
            return y

        def resolve(op, ch):
            """(function, op code) for a case that passed its self-check; False for one that is
            not covered or failed it (remembered: float16 under AMP asks on every call); None
            while a stream captures (asked again later)."""
            if ch not in suffix or op not in codes:
                ready[(op, ch)] = False
                return False
            code = codes[op]
            d = np.dtype(ch)
            ref = _reference(xp, family, op)
            name = f"{family}_{suffix[ch]}"

            def check():  # loading the function counts as part of the check
                fn = FAMILY.kernel(bk, name)
                p = probe_values(d)
                ps = [xp.asarray(p)] if nin == 1 else [xp.asarray(p[::-1].copy()),
                                                      xp.asarray(np.tanh(p))]
                extras = [(d.type(1.01),), (d.type(-0.3),)] if family == "small_scalar" \
                    else [()]
                return all(equal_values(xp.asnumpy(launch(fn, code, ps, e)),
                                        xp.asnumpy(ref(*ps, *e))) for e in extras)

            if not FAMILY.passes(bk, (op, d.str), check, family):
                if FAMILY.checked(bk, (op, d.str), family) is False:
                    ready[(op, ch)] = False
                    return False
                return None
            hit = ready[(op, ch)] = (FAMILY.kernel(bk, name), code)  # (loaded by the check)
            return hit

        def f(op, *args):
            a = args[0]
            if a.size >= SMALL_MAX:
                return None
            ch = a.dtype.char
            hit = ready.get((op, ch))
            if hit is None:
                hit = resolve(op, ch)
            if not hit or not (a._c_contiguous if fast_contig else a.flags.c_contiguous):
                return None
            if nin == 2:
                b = args[1]
                if b.shape != a.shape or b.dtype != a.dtype or not (
                        b._c_contiguous if fast_contig else b.flags.c_contiguous):
                    return None
            return launch(hit[0], hit[1], args[:nin], args[nin:])

        return f

    return bind


bind_scalar = _bind("small_scalar")  # f(op, x, s): x + s, x - s, s - x, x * s, x / s, s / x
bind_unary = _bind("small_unary")  # f(op, x): cupy.<op>(x)
bind_act_grad = _bind("small_act_grad")  # f(op, g, t): g - g t t (tanh), g (t - t t) (sigmoid)

__all__ = ["FAMILY", "SMALL_MAX", "SMALL_OPS", "bind_act_grad", "bind_scalar", "bind_unary",
           "cupy_kernel"]
