"""ag.cuda: availability, and CUDA-graph replay of whole training steps against eager runs.
Skipped without a usable GPU (conftest)."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag

pytestmark = pytest.mark.gpu


def test_is_available_and_synchronize():
    assert ag.cuda.is_available()
    assert ag.cuda.device_count() >= 1
    ag.cuda.synchronize()
    before = ag.cuda.memory_info()
    t = ag.Tensor.zeros((1024, 1024), device="cuda:0")
    after = ag.cuda.memory_info()
    assert after["pool_used"] - before["pool_used"] >= 4 * 1024 * 1024
    assert 0 < after["device_free"] <= after["device_total"]
    del t
    ag.cuda.empty_cache()


def _data(steps, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((32, 8)).astype(np.float32) for _ in range(steps)]
    ys = [rng.standard_normal((32, 1)).astype(np.float32) for _ in range(steps)]
    w1 = rng.standard_normal((8, 16)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((16, 1)).astype(np.float32) * 0.3
    return xs, ys, w1, w2


def _model(w1, w2):
    return (ag.Variable(ag.Tensor.from_array(w1, device="cuda:0")),
            ag.Variable(ag.Tensor.from_array(w2, device="cuda:0")))


def _make_step(W1, W2, lr=0.1):
    def step(x, y):
        with ag.GradientTape() as tape:
            h = ag.tanh(x @ W1)
            loss = ((h @ W2 - y) ** 2).mean()
        g1, g2 = tape.gradient(loss, [W1, W2])
        W1.data[...] -= lr * g1.data  # in place: what a graph replays
        W2.data[...] -= lr * g2.data
        return loss

    return step


def _run(step, xs, ys):
    losses = []
    for x, y in zip(xs, ys):
        loss = step(ag.Tensor.from_array(x, device="cuda:0"),
                    ag.Tensor.from_array(y, device="cuda:0"))
        losses.append(float(loss.numpy()))
    return losses


def test_graphed_step_matches_eager_steps():
    xs, ys, w1, w2 = _data(7)
    E1, E2 = _model(w1, w2)
    eager = _run(_make_step(E1, E2), xs, ys)
    G1, G2 = _model(w1, w2)
    gstep = ag.cuda.graphed(_make_step(G1, G2), warmup=2)
    graphed = _run(gstep, xs, ys)
    assert gstep.captured and gstep.calls == 7
    np.testing.assert_allclose(graphed, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(G1.numpy(), E1.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(G2.numpy(), E2.numpy(), rtol=1e-5, atol=1e-6)
    assert eager[-1] < eager[0]  # it trains


def test_graphed_step_rejects_new_shapes():
    xs, ys, w1, w2 = _data(3)
    G1, G2 = _model(w1, w2)
    gstep = ag.cuda.graphed(_make_step(G1, G2), warmup=1)
    _run(gstep, xs[:2], ys[:2])
    with pytest.raises(ag.ArgumentError, match="new graphed step"):
        gstep(ag.Tensor.from_array(xs[2][:5], device="cuda:0"),
              ag.Tensor.from_array(ys[2][:5], device="cuda:0"))


def test_graphed_step_with_fused_sgd_momentum():
    """ag.optim.SGD with momentum updates in place through the fused kernel: graph-safe."""
    xs, ys, w1, w2 = _data(6, seed=1)
    results = []
    for use_graph in (False, True):
        W1, W2 = _model(w1, w2)
        opt = ag.optim.SGD([W1, W2], lr=0.05, momentum=0.9)

        def step(x, y, W1=W1, W2=W2, opt=opt):
            with ag.GradientTape() as tape:
                loss = ((ag.tanh(x @ W1) @ W2 - y) ** 2).mean()
            opt.step(tape.gradient(loss, [W1, W2]))
            return loss

        fn = ag.cuda.graphed(step, warmup=2) if use_graph else step
        results.append((_run(fn, xs, ys), W1.numpy(), W2.numpy()))
    (le, e1, e2), (lg, g1, g2) = results
    np.testing.assert_allclose(lg, le, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g1, e1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g2, e2, rtol=1e-5, atol=1e-6)


def test_graphed_chain_of_small_ops_forward_and_backward():
    x0 = np.linspace(-1, 1, 16).astype(np.float32)

    def chain(x):
        with ag.GradientTape() as tape:
            tape.watch(x)
            y = x
            for i in range(60):
                y = ag.tanh(y * 1.1 + 0.01 * i)
            s = y.sum()
        (gx,) = tape.gradient(s, [x])
        return y, gx

    ref_y, ref_g = chain(ag.Tensor.from_array(x0, device="cuda:0"))
    ref_y, ref_g = ref_y.numpy(), ref_g.numpy()
    g = ag.cuda.graphed(chain, warmup=1)
    for k in range(4):
        y, gx = g(ag.Tensor.from_array(x0 * (1 + k % 2), device="cuda:0"))
        want_y, want_g = chain(ag.Tensor.from_array(x0 * (1 + k % 2), device="cuda:0"))
        np.testing.assert_allclose(y.numpy(), want_y.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(gx.numpy(), want_g.numpy(), rtol=1e-6, atol=1e-6)
    assert g.captured
    y, gx = g(ag.Tensor.from_array(x0, device="cuda:0"))
    np.testing.assert_allclose(gx.numpy(), ref_g, rtol=1e-6, atol=1e-6)


_LAYOUTS = [
    ((64, 32), (32, 48), "cc"), ((64, 32), (32, 48), "fc"), ((64, 32), (32, 48), "cf"),
    ((64, 32), (32, 48), "ff"), ((64, 32), (32, 48), "slice"), ((32,), (32, 48), "cc"),
    ((64, 32), (32,), "cc"), ((32,), (32,), "cc"), ((3, 64, 32), (32, 48), "cc"),
    ((3, 64, 32), (3, 32, 48), "cc"), ((2, 1, 5, 4), (3, 4, 6), "cc"), ((1, 7), (7, 1), "cc"),
    ((4, 0), (0, 5), "cc"), ((0, 3), (3, 5), "cc"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("sa,sb,layout", _LAYOUTS)
def test_direct_cublas_matmul_matches_numpy(sa, sb, layout, dtype):
    """The cuBLAS path used inside CUDA-graph capture, eagerly, against NumPy in float64:
    C- and F-ordered operands, sliced views, vectors, batched broadcasting, empty shapes."""
    import cupy as cp

    from autograd_gpu.backend import cublas
    from autograd_gpu.dtypes import bfloat16

    dt = bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    rng = np.random.default_rng(3)
    a = rng.standard_normal(sa).astype(dt)
    b = rng.standard_normal(sb).astype(dt)
    da, db = cp.asarray(a), cp.asarray(b)
    if layout[0] == "f" and da.ndim == 2:
        da = cp.asfortranarray(da)
    if layout[1:] == "f" and db.ndim == 2:
        db = cp.asfortranarray(db)
    if layout == "slice":  # non-unit leading dimensions
        big = cp.zeros((sa[0], sa[1] + 5), dtype=dt)
        big[:, 2:2 + sa[1]] = da
        da = big[:, 2:2 + sa[1]]
    got = cublas.matmul(da, db)
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == ref.shape and got.dtype == dt
    tol = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}[dtype]
    g = cp.asnumpy(got).astype(np.float64)
    assert np.linalg.norm(g - ref) <= tol * max(np.linalg.norm(ref), 1.0)


def test_graphed_step_with_batched_and_transposed_matmuls():
    """A step whose forward and backward use batched, transposed and vector matmuls (the
    backward of matmul multiplies by transposed views) is captured and replays like eager."""
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((4, 16, 8)).astype(np.float32) for _ in range(6)]
    w0 = rng.standard_normal((8, 8)).astype(np.float32) * 0.3
    v0 = rng.standard_normal((8,)).astype(np.float32)

    def run(graph):
        w = ag.Variable(ag.Tensor.from_array(w0, device="cuda:0"))
        v = ag.Variable(ag.Tensor.from_array(v0, device="cuda:0"))

        def step(x):
            with ag.GradientTape() as tape:
                h = ag.tanh(x @ w)                      # (4, 16, 8) @ (8, 8)
                s = ag.matmul(h, ag.transpose(h, (0, 2, 1)))  # batched (4, 16, 16)
                loss = (s.sum(axis=0) @ ag.Tensor.ones((16, 8), device="cuda:0") @ v).sum()
            gw, gv = tape.gradient(loss, [w, v])
            w.data[...] -= 1e-3 * gw.data  # in place: what a graph replays
            v.data[...] -= 1e-3 * gv.data
            return loss

        fn = ag.cuda.graphed(step, warmup=2) if graph else step
        losses = [float(fn(ag.Tensor.from_array(x, device="cuda:0")).numpy()) for x in xs]
        return losses, w.numpy(), v.numpy()

    (le, we, ve), (lg, wg, vg) = run(False), run(True)
    np.testing.assert_allclose(lg, le, rtol=1e-5)
    np.testing.assert_allclose(wg, we, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vg, ve, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("shape, axis, keepdims", [((1024, 512), (0,), False),
                                                   ((1024, 512), (0,), True),
                                                   ((8, 128, 300), (0, 1), True),
                                                   ((8, 128, 300), (-3,), False)])
def test_sum_over_leading_axes_on_gpu_matches_numpy(shape, axis, keepdims, dtype):
    """Large sums over leading axes (bias gradients) take the ones @ x cuBLAS path."""
    from autograd_gpu.backend import backend_for
    from autograd_gpu.dtypes import bfloat16

    bk = backend_for("cuda:0")
    dt = bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    x = np.random.default_rng(2).standard_normal(shape).astype(dt)
    got = ag.sum(ag.Tensor.from_array(x, device="cuda:0"), axis=axis, keepdims=keepdims)
    ref = np.sum(x.astype(np.float64), axis=axis, keepdims=keepdims)
    assert got.shape == ref.shape and got.dtype == dt
    tol = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}[dtype]
    g = got.numpy().astype(np.float64)
    assert np.linalg.norm(g - ref) <= tol * np.linalg.norm(ref)
    assert isinstance(bk.sum(bk.asarray(x), axis=axis, keepdims=keepdims), bk.array_type)


def test_graphed_step_with_large_bias_gradient():
    """A bias gradient large enough for the ones @ x path, inside a captured step."""
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((512, 1024)).astype(np.float32) for _ in range(5)]
    b0 = rng.standard_normal((1024,)).astype(np.float32) * 0.1

    def run(graph):
        b = ag.Variable(ag.Tensor.from_array(b0, device="cuda:0"))

        def step(x):
            with ag.GradientTape() as tape:
                loss = (ag.tanh(x + b) ** 2).mean()
            (gb,) = tape.gradient(loss, [b])
            b.data[...] -= 0.5 * gb.data
            return loss

        fn = ag.cuda.graphed(step, warmup=2) if graph else step
        losses = [float(fn(ag.Tensor.from_array(x, device="cuda:0")).numpy()) for x in xs]
        return losses, b.numpy()

    (le, be), (lg, bg) = run(False), run(True)
    np.testing.assert_allclose(lg, le, rtol=1e-5)
    np.testing.assert_allclose(bg, be, rtol=1e-5, atol=1e-6)


def test_capturing_a_step_with_dropout_raises():
    x0 = np.ones((8, 4), np.float32)

    def step(x):
        return ag.dropout(x, 0.5).sum()

    g = ag.cuda.graphed(step, warmup=1)
    g(ag.Tensor.from_array(x0, device="cuda:0"))  # the eager warm-up call runs
    with pytest.raises(ag.ArgumentError, match="random op 'dropout'"):
        g(ag.Tensor.from_array(x0, device="cuda:0"))
    assert not g.captured


def test_graphed_adam_step_advances_the_bias_correction():
    """Adam's fused kernel reads the step count from a device counter the step increments: six
    graphed steps equal six eager ones (a host step count would be frozen at capture)."""
    rng = np.random.default_rng(8)
    w0 = rng.standard_normal((64, 32)).astype(np.float32)
    xs = [rng.standard_normal((16, 64)).astype(np.float32) for _ in range(6)]

    def run(graph):
        w = ag.Variable(ag.Tensor.from_array(w0, device="cuda:0"))
        opt = ag.optim.Adam([w], lr=1e-2)

        def step(x):
            with ag.GradientTape() as tape:
                loss = (ag.tanh(x @ w) ** 2).mean()
            opt.step(tape.gradient(loss, [w]))
            return loss

        fn = ag.cuda.graphed(step, warmup=2) if graph else step
        for x in xs:
            fn(ag.Tensor.from_array(x, device="cuda:0"))
        return w.numpy()

    np.testing.assert_allclose(run(True), run(False), rtol=1e-5, atol=1e-6)
