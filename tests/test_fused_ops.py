"""Fused gradients as primitives: derivative rules hold mathematics only (no sweep-mode branch,
no kernel asked for by name), and an op's output-only call for first-order sweeps (``value``)
gives exactly its forward's output."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autograd_gpu as ag
from autograd_gpu import dtypes as _dt
from autograd_gpu.backend import NUMPY
from autograd_gpu.ops.registry import REGISTRY, raw, tensors

WITH_VALUE = sorted(n for n, op in REGISTRY.items() if op.value is not None)
FUSED_GRADIENTS = ["softmax_grad", "log_softmax_grad", "cross_entropy_dlogits", "layer_norm_grad",
                   "bias_act_grad", "gelu_grad", "relu_grad", "tanh_grad", "sigmoid_grad"]


def test_the_fused_gradients_are_primitives_with_an_output_only_call():
    assert set(FUSED_GRADIENTS) <= set(WITH_VALUE)
    for name in FUSED_GRADIENTS:
        assert REGISTRY[name].differentiable, name


# what a rule must not contain: a branch on the sweep mode or a kernel asked for by name
_SPEED_CHOICES = re.compile(r"\bis_raw\b|has_kernel|\.kernel\(")


def _rule_functions():
    """Every function of the ops package whose first parameter is the rule namespace ``F``:
    the vjp, jvp and batching rules and the helpers they call."""
    import importlib
    import pkgutil

    import autograd_gpu.ops as ops

    seen = {}
    for info in pkgutil.iter_modules(ops.__path__):
        mod = importlib.import_module(f"autograd_gpu.ops.{info.name}")
        objs = list(vars(mod).values())
        objs += [v for c in vars(mod).values() if isinstance(c, type) for v in vars(c).values()]
        objs += [op.impl for op in REGISTRY.values() if op.impl.__module__ == mod.__name__]
        objs += [v for op in REGISTRY.values() if op.impl.__module__ == mod.__name__
                 for v in vars(op.impl).values()]
        for f in objs:
            f = getattr(f, "__func__", f)
            if not inspect.isfunction(f) or f.__module__ != mod.__name__:
                continue
            params = list(inspect.signature(f).parameters)
            if params and params[0] == "F":
                seen[f"{mod.__name__}.{f.__qualname__}"] = f
    return seen


RULES = _rule_functions()


def test_rule_functions_are_found():
    names = " ".join(RULES)
    for want in ("Softmax.vjp", "LayerNorm.jvp", "Mul.vjp", "_keep_axis", "_rstd"):
        assert want in names


@pytest.mark.parametrize("name", sorted(RULES))
def test_rules_hold_no_speed_choices(name):
    src = inspect.getsource(RULES[name])
    hit = _SPEED_CHOICES.search(src)
    assert hit is None, f"{name}: {hit.group(0)!r} in a rule"


def _cast(inputs, dtype):
    return [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
            for a in inputs]


@pytest.mark.parametrize("name", WITH_VALUE)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, _dt.bfloat16])
def test_output_only_call_equals_the_forward(name, dtype):
    """``F.<op>`` in a first-order sweep is ``op.value(bk)``: the same array, bit for bit, as
    the forward's output, in every dtype."""
    op = REGISTRY[name]
    call = op.value(NUMPY)
    assert raw(NUMPY).__getattr__(name) is not None

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data):
        inputs, params = op.sample(data.draw)
        inputs = _cast(list(inputs), dtype)
        want = op.forward(NUMPY, *inputs, **params)[0]
        got = call(*inputs, **params)
        assert type(got) is type(want) or np.shape(got) == ()
        got, want = np.asarray(got), np.asarray(want)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()

    check()


def test_mul_and_div_value_calls_keep_python_numbers_weak():
    """A Python number next to a bfloat16 array takes the array's dtype (NumPy's NEP 50 rule,
    which ml_dtypes' bfloat16 does not get from NumPy itself), as in the forward."""
    x = np.linspace(-1, 1, 5).astype(_dt.bfloat16)
    for name in ("mul", "div"):
        op = REGISTRY[name]
        got = op.value(NUMPY)(x, 0.1)
        want = op.forward(NUMPY, x, 0.1)[0]
        assert got.dtype == _dt.bfloat16 and got.tobytes() == want.tobytes()


def test_cached_saved_values():
    """``F.cached(value, fn, ...)``: the saved value as it is in a first-order sweep; recomputed
    through recorded ops in a recorded sweep (so its dependence on the inputs is in the graph)."""
    saved = np.array([2.0])
    calls = []

    def fn(F, x):
        calls.append(F)
        return F.exp(x)

    assert raw(NUMPY).cached(saved, fn, np.zeros(1)) is saved and not calls
    x = ag.Tensor.from_array(np.array([0.5]))
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = tensors(NUMPY).cached(saved, fn, x)
    assert calls and np.allclose(y.numpy(), np.exp(0.5))
    (g,) = tape.gradient(y, [x])
    assert np.allclose(g.numpy(), np.exp(0.5))


def test_layer_norm_second_derivative_sees_rstd_depend_on_x():
    """The layer-norm rule's rstd is a statistic of x: a second derivative through it matches
    the composite (x - mean) / sqrt(var + eps)."""
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((3, 6))
    u = rng.standard_normal((3, 6))
    w = rng.standard_normal((3, 6))

    def second(f):
        x = ag.Tensor.from_array(x0)
        with ag.GradientTape() as outer:
            outer.watch(x)
            with ag.GradientTape() as inner:
                inner.watch(x)
                y = f(x)
            (g,) = inner.gradient(y, [x], output_gradients=ag.Tensor.from_array(u))
            s = ag.sum(g * ag.Tensor.from_array(w))
        return outer.gradient(s, [x])[0].numpy()

    def composite(x):
        m = ag.mean(x, axis=-1, keepdims=True)
        v = ag.mean((x - m) * (x - m), axis=-1, keepdims=True)
        return (x - m) / ag.sqrt(v + 1e-5)

    np.testing.assert_allclose(second(lambda x: ag.layer_norm(x, 6)), second(composite),
                               rtol=1e-9, atol=1e-9)
