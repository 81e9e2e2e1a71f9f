"""NumpyBackend.act_grad: the tanh/sigmoid vjp from the output writes its later steps into the
array its first step allocated, for the same bits as the plain expressions with one output-sized
temporary instead of two (the peak of a checkpointed sweep on a tanh chain)."""

from __future__ import annotations

import tracemalloc

import ml_dtypes
import numpy as np
import pytest

from autograd_gpu.backend.numpy_backend import NumpyBackend


def _plain(act, g, y):
    return g - g * y * y if act == "tanh" else g * (y - y * y)


SHAPES = [
    ((64, 32), (64, 32)),
    ((3, 64, 32), (64, 32)),  # a batch axis on the cotangent
    ((), ()),  # 0-d: NumPy scalars, no out=
    ((7,), (7,)),
]


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", ml_dtypes.bfloat16])
@pytest.mark.parametrize("g_wide", [False, True], ids=["same-dtype", "float64-cotangent"])
@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: f"{s[0]}-{s[1]}")
def test_act_grad_same_bits_as_plain_expressions(act, dtype, g_wide, shapes):
    rng = np.random.default_rng(0)
    gs, ys = shapes
    g = np.asarray(rng.standard_normal(gs)).astype("float64" if g_wide else dtype)
    y = np.tanh(np.asarray(rng.standard_normal(ys))).astype(dtype)
    want = np.asarray(_plain(act, g, y))
    got = np.asarray(NumpyBackend.act_grad(act, g, y))
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_act_grad_holds_one_temporary(act):
    rng = np.random.default_rng(1)
    g = rng.standard_normal((512, 256))  # 1 MB each
    y = np.tanh(rng.standard_normal((512, 256)))
    g0, y0 = g.copy(), y.copy()
    NumpyBackend.act_grad(act, g, y)  # warm-up
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = NumpyBackend.act_grad(act, g, y)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * g.nbytes, peak / g.nbytes  # the result only (the plain forms: 2 x)
    assert np.array_equal(g, g0) and np.array_equal(y, y0)  # the inputs are left alone
    assert out is not g and out is not y


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("shape", [(3, 80), (80,), (2, 3, 64), (5, 7), ()])
def test_relu_bits_match_numpy_maximum_with_zero(dtype, shape):
    """relu takes np.maximum against a row of zeros when the last axis is long enough (the
    contiguous SIMD loop); the bits must be those of np.maximum(x, 0), NaN, -0.0 and infinities
    included."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    special = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, -1.0, 2.0, -np.nan], dtype)
    flat = x.reshape(-1)
    flat[: min(flat.size, special.size)] = special[: flat.size]
    y = NumpyBackend.relu(x)
    ref = np.maximum(x, 0)
    assert y.dtype == ref.dtype and y.shape == ref.shape
    bits = [np.atleast_1d(a).view(np.uint8) for a in (y, ref)]
    np.testing.assert_array_equal(*bits)


@pytest.mark.parametrize("dtype", [np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)])
def test_python_floats_keep_low_precision_dtypes(dtype):
    """NEP 50 for every float dtype: a Python float takes the array's dtype. NumPy does this for
    float16 but promotes ml_dtypes' bfloat16 to float32 with a Python float, so ops that mix
    them (arithmetic, maximum, pow, and ops with float constants inside: sigmoid, GELU,
    leaky_relu, clip, bias_act) must keep bfloat16 themselves, with NEP 50's values."""
    import autograd_gpu as ag

    h = np.array([0.5, -1.0, 3.0, 0.3]).astype(dtype)
    x = ag.Variable(h)
    cases = {
        "x*f": lambda: x * 1.01, "f*x": lambda: 1.01 * x, "x+f": lambda: x + 1.5,
        "f+x": lambda: 1.5 + x, "x-f": lambda: x - 0.5, "f-x": lambda: 0.5 - x,
        "x/f": lambda: x / 3.0, "f/x": lambda: 2.0 / x, "pow": lambda: ag.abs(x) ** 0.5,
        "maximum": lambda: ag.maximum(x, 0.4), "minimum": lambda: ag.minimum(0.4, x),
        "sigmoid": lambda: ag.sigmoid(x), "gelu": lambda: ag.gelu(x),
        "gelu_none": lambda: ag.gelu(x, approximate="none"),
        "leaky_relu": lambda: ag.leaky_relu(x, 0.2), "clip": lambda: ag.clip(x, -0.2, 0.7),
        "bias_act": lambda: ag.bias_act(x, x, "gelu"),
    }
    for name, f in cases.items():
        with ag.GradientTape() as tape:
            y = f()
            total = y.sum()
        assert y.dtype == dtype, name
        (g,) = tape.gradient(total, [x])
        assert g.dtype == dtype, name
    s = dtype.type(1.01)
    assert np.array_equal((x * 1.01).numpy(), h * s)  # the number rounded to the dtype first
    assert np.array_equal((0.5 - x).numpy(), dtype.type(0.5) - h)
