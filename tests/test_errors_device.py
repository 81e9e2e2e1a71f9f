"""Bad inputs raise named AutogradError subclasses; device selection and fallback."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import autograd_gpu as ag


def T(x, dtype=np.float64):
    return ag.Tensor.from_array(np.asarray(x, dtype=dtype))


def test_error_hierarchy():
    for cls in (ag.ShapeError, ag.DTypeError, ag.DeviceError, ag.TapeError,
                ag.NonDeterministicOpError, ag.AnomalyError, ag.ArgumentError):
        assert issubclass(cls, ag.AutogradError)


def test_shape_mismatch_names_op_and_shapes():
    with pytest.raises(ag.ShapeError, match=r"add.*\(2,\).*\(3,\)"):
        T([1.0, 2.0]) + T([1.0, 2.0, 3.0])
    with pytest.raises(ag.ShapeError, match="matmul"):
        T(np.ones((2, 3))) @ T(np.ones((2, 3)))


def test_reshape_size_mismatch():
    with pytest.raises(ag.ShapeError, match=r"reshape.*6"):
        T(np.ones((2, 3))).reshape(4, 2)


def test_non_tensor_arguments():
    with pytest.raises(ag.ArgumentError, match="sin"):
        ag.sin("hello")
    with pytest.raises(ag.ArgumentError, match="watch"):
        ag.GradientTape().watch([1.0, 2.0])
    with pytest.raises(ag.ArgumentError, match="targets"):
        ag.GradientTape().gradient("loss", [])


def test_ragged_list():
    with pytest.raises(ag.AutogradError):
        ag.Tensor.from_array([[1.0, 2.0], [3.0]])


def test_bad_dtype_spec():
    with pytest.raises(ag.DTypeError):
        ag.Tensor.zeros((2,), dtype="float77")


def test_to_scalar_needs_one_element():
    with pytest.raises(ag.ShapeError, match="to_scalar"):
        T([1.0, 2.0]).to_scalar()


def test_unknown_device_and_unusable_cuda():
    with pytest.raises(ag.DeviceError, match="cpu"):
        ag.Device("tpu")
    from autograd_gpu.backend.cupy_backend import cupy_status

    if not cupy_status()[0]:
        with pytest.raises(ag.DeviceError, match="cuda"):
            ag.Tensor.zeros((2,), device="cuda")
        with pytest.raises(ag.DeviceError):
            ag.set_default_device("cuda:0")


def test_device_context_and_default():
    assert ag.default_device() == ag.Device("cpu")  # conftest pins cpu
    with ag.device("cpu") as d:
        assert d == "cpu"
        assert ag.Tensor.ones((1,)).device == ag.Device("cpu")


def test_clip_bounds_validated():
    with pytest.raises(ag.ArgumentError, match="clip"):
        ag.clip(T([1.0]), 2.0, 1.0)


def test_anomaly_names_op_on_nan_producing_domain():
    x = T([-1.0, 1.0])
    with pytest.raises(ag.AnomalyError, match=r"op 'log' produced NaN"):
        with ag.detect_anomaly():
            ag.log(x)
    # outside the context the IEEE result comes back (as NumPy does)
    with np.errstate(invalid="ignore"):
        assert np.isnan(ag.log(x).numpy()[0])


def test_anomaly_in_backward_names_op_and_forward_site():
    x = T([0.0, 1.0])
    with ag.detect_anomaly():
        with ag.GradientTape() as tape:
            tape.watch(x)
            y = ag.sqrt(x).sum()  # finite forward, infinite derivative at 0
        with pytest.raises(ag.AnomalyError, match=r"gradient of op 'sqrt'.*test_errors_device"):
            with np.errstate(divide="ignore"):
                tape.gradient(y, [x])


def test_fallback_to_numpy_without_gpu_is_silent():
    """With CuPy installed (CI installs the cuda12 extra) and no GPU: numpy, no error, no noise."""
    env = {k: v for k, v in os.environ.items() if k != "AUTOGRAD_GPU_DEVICE"}
    code = ("import autograd_gpu as ag; t = ag.Tensor.ones((2,)); "
            "print(ag.default_device(), t.device, type(t.data).__module__)")
    r = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    from autograd_gpu.backend.cupy_backend import cupy_status

    if cupy_status()[0]:
        assert r.stdout.split()[0] == "cuda:0"
    else:
        assert r.stdout.split() == ["cpu", "cpu", "numpy"]
        assert r.stderr == "", f"fallback printed noise: {r.stderr!r}"


def test_cupy_installed_in_ci():
    """CI installs the cuda12 extra; this proves the fallback test above ran with CuPy present."""
    if os.environ.get("CI") != "true":
        pytest.skip("only required in CI")
    import importlib.util

    assert importlib.util.find_spec("cupy") is not None


def test_env_override_requesting_cuda_without_gpu_raises():
    from autograd_gpu.backend.cupy_backend import cupy_status

    if cupy_status()[0]:
        pytest.skip("a GPU is usable here")
    env = dict(os.environ, AUTOGRAD_GPU_DEVICE="cuda")
    code = "import autograd_gpu as ag; ag.Tensor.ones((1,))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode != 0 and "DeviceError" in r.stderr and "cuda" in r.stderr
    # the error names the variable and both ways out
    assert "AUTOGRAD_GPU_DEVICE='cuda'" in r.stderr
    assert "set AUTOGRAD_GPU_DEVICE=cpu or unset it" in r.stderr
    assert "autograd_gpu[cuda12]" in r.stderr


@pytest.mark.parametrize("value", ["cdua", "gpu:x", "cpu:0"])
def test_env_override_misspelt_names_the_variable(monkeypatch, value):
    from autograd_gpu.backend import select

    monkeypatch.setenv("AUTOGRAD_GPU_DEVICE", value)
    with pytest.raises(ag.DeviceError) as info:
        select._auto_default()
    msg = str(info.value)
    assert f"AUTOGRAD_GPU_DEVICE={value!r}" in msg
    assert "'cpu', 'cuda' or 'cuda:N'" in msg and "unset AUTOGRAD_GPU_DEVICE" in msg


def test_explicit_cuda_without_gpu_says_what_to_do(monkeypatch):
    from autograd_gpu.backend import cupy_backend, select

    monkeypatch.setattr(select, "cupy_status", lambda: (False, "no GPU in this test"))
    monkeypatch.setattr(cupy_backend, "cupy_status", lambda: (False, "no GPU in this test"))
    monkeypatch.setattr(select, "_backends", dict(select._backends))
    monkeypatch.delitem(select._backends, ag.Device("cuda:5"), raising=False)
    with pytest.raises(ag.DeviceError) as info:
        select.backend_for("cuda:5")
    msg = str(info.value)
    assert "cuda:5" in msg and "no GPU in this test" in msg
    assert "ask for the device 'cpu'" in msg and "autograd_gpu[cuda12]" in msg
    assert "AUTOGRAD_GPU_DEVICE" not in msg  # not read from the environment here


def test_array_protocol_and_repr():
    t = T([1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(t), [1.0, 2.0])
    assert "Tensor" in repr(t) and "float64" in repr(t)
    assert len(t) == 2 and float(t[1]) == 2.0


@pytest.mark.parametrize("call, err, pattern", [
    (lambda: ag.Tensor.ones((2.9,)), ag.ShapeError, r"Tensor.ones.*integer sizes"),
    (lambda: ag.Tensor.ones("ab"), ag.ShapeError, r"Tensor.ones.*'shape'"),
    (lambda: ag.Tensor.zeros((-1, 2)), ag.ShapeError, r"Tensor.zeros.*non-negative"),
    (lambda: T(np.ones(4)).reshape("a"), ag.ShapeError, r"reshape"),
    (lambda: T(np.ones((2, 2))).transpose((0, 5)), ag.ShapeError, r"transpose.*axes"),
    (lambda: T(np.ones(2)).sum(axis=1.5), ag.ShapeError, r"sum.*axis"),
    (lambda: ag.Tensor.from_array("abc"), ag.DTypeError, r"from_array.*expected numbers"),
    (lambda: ag.Tensor.from_array(np.array(["a"], dtype=object)), ag.DTypeError, r"numbers"),
    (lambda: ag.Tensor.arange(0, 5, 0), ag.ArgumentError, r"arange.*step"),
    (lambda: ag.Tensor.arange("a"), ag.ArgumentError, r"arange.*start"),
    (lambda: ag.Tensor.full((2,), "a"), ag.ArgumentError, r"full.*value"),
    (lambda: ag.Tensor.randn((2,), seed="a"), ag.ArgumentError, r"randn.*seed"),
    (lambda: ag.GradientTape(persistent="yes"), ag.ArgumentError, r"persistent"),
])
def test_constructor_and_shape_arguments_are_validated(call, err, pattern):
    with pytest.raises(err, match=pattern):
        call()


def test_forward_mode_refuses_integer_primals():
    i = ag.Tensor.from_array(np.arange(3))
    with pytest.raises(ag.DTypeError, match="never differentiable"):
        ag.ForwardAccumulator(i, ag.Tensor.from_array(np.full(3, 0.5)))


def test_shape_errors_name_each_argument():
    with pytest.raises(ag.ShapeError, match=r"matmul: .*argument 0: shape \(2, 2\); argument 1"):
        T(np.ones((2, 2))) @ T(np.ones(3))


@pytest.mark.parametrize("call, pattern", [
    (lambda: ag.BenchmarkConfig(num_iterations=-1), r"BenchmarkConfig.*num_iterations"),
    (lambda: ag.BenchmarkConfig(num_warmup=-5), r"BenchmarkConfig.*num_warmup"),
    (lambda: ag.PerformanceBenchmark({"a": 1}), r"PerformanceBenchmark.*config"),
    (lambda: ag.PerformanceBenchmark().run("a", "f"), r"run.*callable"),
    (lambda: ag.AmpConfig(autocast_ops=("bogusop",)), r"AmpConfig.*bogusop"),
    (lambda: ag.detect_anomaly("x").__enter__(), r"detect_anomaly.*check_forward"),
    (lambda: ag.nn.Linear(3, 2)("x"), r"Linear.*Tensor"),
])
def test_user_layer_arguments_are_validated(call, pattern):
    with pytest.raises(ag.ArgumentError, match=pattern):
        call()


def test_cuda_graph_capture_refuses_random_ops():
    """The hook ag.cuda.graphed holds during a capture: a random op (its seed drawn on the
    host, so every replay would repeat one mask) raises ArgumentError naming it; other ops and
    dropout that does nothing (p=0, training=False) pass."""
    from autograd_gpu.cuda import _refuse_random_ops
    from autograd_gpu.ops.context import pop_hook, push_hook

    x = ag.Tensor.from_array(np.ones((4, 3), np.float32))
    push_hook(_refuse_random_ops)
    try:
        y = ag.tanh(x) * 2.0
        ag.dropout(y, 0.0)
        ag.dropout(y, 0.5, training=False)
        with pytest.raises(ag.ArgumentError, match="random op 'dropout'"):
            ag.dropout(y, 0.5)
    finally:
        pop_hook(_refuse_random_ops)
    ag.dropout(y, 0.5)  # outside a capture: fine


def test_anomaly_mode_raises_instead_of_numpys_warning():
    """Inside detect_anomaly the AnomalyError replaces NumPy's RuntimeWarning for the same
    event; outside, NumPy's floating-point settings apply as usual."""
    import warnings

    x = T([-1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would fail the test
        with pytest.raises(ag.AnomalyError, match="log"):
            with ag.detect_anomaly():
                ag.log(x)
    with pytest.warns(RuntimeWarning, match="invalid value"):
        ag.log(x)
