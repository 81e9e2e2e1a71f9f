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
