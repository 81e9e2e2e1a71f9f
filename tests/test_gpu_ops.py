"""Every registered op on CuPy against its NumPy path: forward values (float64 and float32)
and reverse-mode gradients (float64), on inputs from the op's own sampler. Also: results stay
on the device, and the public ops that have fused kernels agree with NumPy in float16/bfloat16.
Skipped without a usable GPU (conftest)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autograd_gpu as ag
from autograd_gpu import dtypes as _dt
from autograd_gpu.ops.registry import REGISTRY, apply

pytestmark = pytest.mark.gpu

SAMPLED = sorted(n for n, op in REGISTRY.items() if op.sample is not None)
RANDOM = {"dropout"}  # CPU and GPU draw different numbers for one seed (see ops/random.py)
# ops whose function cupyx.scipy.special (CuPy 14.2) lacks: a DeviceError on the GPU
CPU_ONLY = {"iv", "ive", "jn"}
# and cupyx.scipy.linalg (read in CuPy's sources, 2026-12-07: no sqrtm, no solve_sylvester)
CPU_ONLY |= {"sqrtm", "solve_sylvester"}
# ops whose CuPy routine itself reads a value on the host (CuPy's sources, 2026-12-07)
HOST_SYNC = {"lu_factor": "cupyx.scipy.linalg.lu_factor reads getrf's status (dev_info)",
             "expm": "cupyx.scipy.linalg.expm chooses its scaling from the norm on the host"}
FAST = settings(max_examples=3, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def _on(inputs, device, cast=None):
    out = []
    for a in inputs:
        if isinstance(a, np.ndarray):
            if cast is not None and a.dtype == np.float64:
                a = a.astype(cast)
            out.append(ag.Tensor.from_array(a, device=device))
        else:
            out.append(a)
    return out


def _rel(gpu, cpu, floor=1e-6):
    """||gpu - cpu|| / ||cpu|| over the finite entries; the denominator is at least
    floor * sqrt(n), so rounding noise around exact zeros does not count as an error. Complex
    values are compared as complex (a float64 cast would drop their imaginary parts)."""
    dt = np.complex128 if np.iscomplexobj(gpu) or np.iscomplexobj(cpu) else np.float64
    gpu = np.asarray(gpu, dtype=dt)
    cpu = np.asarray(cpu, dtype=dt)
    fin = np.isfinite(cpu)
    assert np.array_equal(fin, np.isfinite(gpu)), "non-finite entries differ"
    if not fin.any():
        return 0.0
    d = np.linalg.norm(gpu[fin] - cpu[fin])
    return d / max(np.linalg.norm(cpu[fin]), floor * np.sqrt(fin.sum()))


def _run(op, inputs, params, device, cast=None):
    ts = _on(inputs, device, cast)
    y = apply(op, *ts, **params)
    return ts, y


@pytest.mark.parametrize("name", SAMPLED)
@FAST
@given(data=st.data())
def test_op_on_gpu_matches_numpy(name, data):
    op = REGISTRY[name]
    inputs, params = op.sample(data.draw)
    inputs = list(inputs)
    if name in CPU_ONLY:
        with pytest.raises(ag.DeviceError, match=f"{name}: cupyx.scipy.(special|linalg) has no"):
            _run(op, inputs, params, "cuda:0")
        return
    _, yc = _run(op, inputs, params, "cpu")
    _, yg = _run(op, inputs, params, "cuda:0")
    assert yg.device == ag.Device("cuda:0")
    assert type(yg.data).__module__.startswith("cupy"), f"{name}: result left the GPU"
    assert yg.shape == yc.shape and yg.dtype == yc.dtype, f"{name}: {yg.dtype} vs {yc.dtype}"
    if name in RANDOM:
        _, yg2 = _run(op, inputs, params, "cuda:0")
        assert yg2.numpy().tobytes() == yg.numpy().tobytes(), f"{name}: seed does not replay"
        return
    if yc.dtype.kind in "biu":
        assert np.array_equal(yg.numpy(), yc.numpy()), f"{name}: integer/bool results differ"
    else:
        assert _rel(yg.numpy(), yc.numpy()) <= 1e-9, f"{name}: float64 forward differs"
        # float32: the same inputs rounded to float32 on both devices
        if any(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in inputs):
            _, yc32 = _run(op, inputs, params, "cpu", np.float32)
            _, yg32 = _run(op, inputs, params, "cuda:0", np.float32)
            assert yg32.dtype == yc32.dtype
            if yc32.dtype.kind == "f":
                assert _rel(yg32.numpy(), yc32.numpy(), 1e-3) <= 2e-4, \
                    f"{name}: float32 differs"
    if not op.differentiable:
        return
    diff = [i for i, a in enumerate(inputs) if isinstance(a, np.ndarray) and a.dtype == np.float64]
    if not diff or yc.dtype not in (np.float64, np.complex128):
        return
    rng = np.random.default_rng(0)
    u = rng.standard_normal(yc.shape)
    if yc.dtype == np.complex128:  # complex outputs of real inputs (fftn, rfftn)
        u = u + 1j * rng.standard_normal(yc.shape)
    grads = {}
    for dev in ("cpu", "cuda:0"):
        ts = _on(inputs, dev)
        with ag.GradientTape() as tape:
            tape.watch([ts[i] for i in diff])
            y = apply(op, *ts, **params)
        gs = tape.gradient(y, [ts[i] for i in diff],
                           output_gradients=ag.Tensor.from_array(u, device=dev),
                           unconnected_gradients="zero")
        grads[dev] = [g.numpy() for g in gs]
        if dev != "cpu":
            assert all(g.device == ag.Device(dev) for g in gs)
    for k, (gc, gg) in enumerate(zip(grads["cpu"], grads["cuda:0"])):
        assert _rel(gg, gc) <= 1e-9, f"{name}: gradient of input {diff[k]} differs"


def _status_check(exc):
    """Whether the synchronisation was CuPy reading cuSOLVER's or cuBLAS's status array, which
    the linalg ops ask for (a failed factorisation must raise, as on the CPU)."""
    names = set()
    tb = exc.__traceback__
    while tb is not None:
        names.add(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return bool(names & {"_check_cusolver_dev_info_if_synchronization_allowed",
                         "_check_cublas_info_array_if_synchronization_allowed"})


def _has_mask(inputs, params):
    vals = list(inputs) + list(params.values())
    return any(isinstance(a, np.ndarray) and a.dtype == np.bool_ for a in vals)


@pytest.mark.parametrize("name", SAMPLED)
@FAST
@given(data=st.data())
def test_op_makes_no_host_synchronisation(name, data):
    """Forward and first-order backward of every op queue device work only: no transfer to the
    host and no stream synchronisation (cupyx.allow_synchronize(False) raises on one). Boolean
    masks in getitem/scatter_add are the exception (their output size is data-dependent)."""
    import warnings

    import cupyx

    op = REGISTRY[name]
    if name in CPU_ONLY:
        return
    inputs, params = op.sample(data.draw)
    ts = _on(list(inputs), "cuda:0")
    y0 = apply(op, *ts, **params)
    diff = [t for t in ts if isinstance(t, ag.Tensor) and t.dtype == np.float64]
    want_grad = op.differentiable and bool(diff) and y0.dtype == np.float64
    u = ag.Tensor.from_array(np.ones(y0.shape), device="cuda:0") if want_grad else None
    ag.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # allow_synchronize is deprecated (but works)
        try:
            with cupyx.allow_synchronize(False):
                with ag.GradientTape() as tape:
                    tape.watch(diff)
                    y = apply(op, *ts, **params)
                if want_grad:
                    tape.gradient(y, diff, output_gradients=u, unconnected_gradients="zero")
        except cupyx.DeviceSynchronized as exc:
            if name in ("getitem", "scatter_add") and _has_mask(inputs, params):
                return
            if name in HOST_SYNC:  # (documented in the op's docstring)
                return
            if _status_check(exc):  # cuSOLVER's status, read on purpose (_linalg_util.lapack)
                return
            raise AssertionError(f"{name}: the GPU path synchronises with the host ({exc})") \
                from exc


@pytest.mark.parametrize("dtype", [np.float32, np.float16, _dt.bfloat16])
def test_fused_ops_in_low_precision(dtype):
    """softmax, log_softmax, layer_norm and cross_entropy through the public API on the GPU,
    against float64 NumPy math on the same rounded inputs."""
    tol = {np.dtype(np.float32): 1e-5, np.dtype(np.float16): 4e-3, _dt.bfloat16: 3e-2}
    tol = tol[np.dtype(dtype)]
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (16, 100)).astype(dtype)
    x64 = x.astype(np.float64)
    xg = ag.Tensor.from_array(x, device="cuda:0")
    z = x64 - x64.max(-1, keepdims=True)
    sm = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    got = ag.softmax(xg, axis=-1)
    assert got.dtype == np.dtype(dtype)
    assert _rel(got.numpy(), sm) <= tol
    got = ag.log_softmax(xg, axis=-1)
    lsm = z - np.log(np.exp(z).sum(-1, keepdims=True))
    assert _rel(got.numpy(), lsm) <= tol
    labels = rng.integers(0, 100, 16)
    got = ag.cross_entropy(xg, ag.Tensor.from_array(labels, device="cuda:0"), reduction="none")
    assert got.dtype == np.dtype(dtype)
    assert _rel(got.numpy(), -lsm[np.arange(16), labels]) <= tol
    got = ag.layer_norm(xg, 100)
    xc = x64 - x64.mean(-1, keepdims=True)
    assert _rel(got.numpy(), xc / np.sqrt((xc * xc).mean(-1, keepdims=True) + 1e-5)) <= tol
    # and the gradients of a loss through all of them, against float64 NumPy
    xg2 = ag.Tensor.from_array(x, device="cuda:0")
    with ag.GradientTape() as tape:
        tape.watch(xg2)
        loss = ag.cross_entropy(ag.layer_norm(xg2, 100), ag.Tensor.from_array(
            labels, device="cuda:0"), reduction="sum")
    (gx,) = tape.gradient(loss, [xg2])
    xc64 = ag.Tensor.from_array(x64, device="cpu")
    with ag.GradientTape() as tape:
        tape.watch(xc64)
        loss64 = ag.cross_entropy(ag.layer_norm(xc64, 100), ag.Tensor.from_array(labels),
                                  reduction="sum")
    (gref,) = tape.gradient(loss64, [xc64])
    assert gx.dtype == np.dtype(dtype)
    assert _rel(gx.numpy(), gref.numpy()) <= 4 * tol


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_arithmetic_with_python_numbers_matches_numpy(dtype):
    """Array-with-number arithmetic (the typed scalar kernels on CuPy) against NumPy: both
    operand orders, forward values bit for bit with NumPy's NEP 50 dtype rule, and gradients."""
    rng = np.random.default_rng(11)
    h = (rng.uniform(0.5, 2.0, (37, 5)) * rng.choice([-1, 1], (37, 5))).astype(dtype)
    cases = [lambda x: x + 0.25, lambda x: 3 + x, lambda x: x - 1.5, lambda x: 2.0 - x,
             lambda x: x * 1.01, lambda x: -3 * x, lambda x: x / 7.0, lambda x: 1.5 / x]
    for i, f in enumerate(cases):
        ref = f(h)
        xg = ag.Tensor.from_array(h, device="cuda:0")
        got = f(xg)
        assert got.dtype == ref.dtype, i
        np.testing.assert_array_equal(got.numpy(), ref, err_msg=f"case {i}")
        gc, gg = (ag.grad(lambda v: f(v).sum())(ag.Tensor.from_array(h, device=d)).numpy()
                  for d in ("cpu", "cuda:0"))
        np.testing.assert_allclose(gg, gc, rtol=1e-3 if dtype == "float16" else 1e-6,
                                   err_msg=f"grad case {i}")
