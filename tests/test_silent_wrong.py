"""Reproducers of results that were wrong without any error, each kept as a regression test:
tensors sharing one buffer, forward-over-reverse through closed-over variables, one tensor in two
differentiated positions, writes into saved arrays, tapes and threads, complex values, and the
forward-mode accumulator's tangents on long-lived primals."""

from __future__ import annotations

import gc
import threading
import tracemalloc
import weakref

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.ops.context import LIVE, STATE


def T(v):
    return ag.Tensor.from_array(np.asarray(v, np.float64))


def _np(t):
    return t.numpy()


# ---- one buffer, two tensors ------------------------------------------------------------------

@pytest.mark.parametrize("make_second", ["from_array", "detach"])
def test_two_tensors_sharing_one_buffer_get_their_own_gradients(make_second):
    a = np.array([1.0, 2.0, 3.0])
    x = ag.Tensor.from_array(a, copy=False)
    y = ag.Tensor.from_array(a, copy=False) if make_second == "from_array" else x.detach()
    gp, gq = ag.grad(lambda p, q: (p * q * q).sum(), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(_np(gp), a ** 2)  # d/dp = q^2
    np.testing.assert_allclose(_np(gq), 2 * a * a)  # d/dq = 2 p q
    with ag.GradientTape() as tape:
        tape.watch(x)
        tape.watch(y)
        loss = (x * y + y ** 3).sum()
    gx, gy = tape.gradient(loss, [x, y])
    np.testing.assert_allclose(_np(gx), a)
    np.testing.assert_allclose(_np(gy), a + 3 * a ** 2)


def test_second_derivative_with_a_shared_buffer():
    a = np.array([0.5, -1.5])
    x = ag.Tensor.from_array(a, copy=False)
    y = x.detach()
    with ag.GradientTape() as outer:
        outer.watch([x, y])
        with ag.GradientTape() as inner:
            inner.watch([x, y])
            z = (x * y * y).sum()
        gx, gy = inner.gradient(z, [x, y])  # y^2, 2 x y
        s = gy.sum()
    hxy, hyy = outer.gradient(s, [x, y])  # d(2xy)/dx = 2y, d(2xy)/dy = 2x
    np.testing.assert_allclose(_np(hxy), 2 * a)
    np.testing.assert_allclose(_np(hyy), 2 * a)


# ---- forward over reverse through a closure ---------------------------------------------------

def test_forward_over_reverse_sees_closed_over_variables():
    f = lambda x: x * ag.grad(lambda y: x * y)(T(2.0))  # x^2  # noqa: E731
    _, t = ag.jvp(f, (T(1.0),), (T(1.0),))
    assert float(t) == pytest.approx(2.0)
    h = lambda x: ag.grad(lambda y: x * y * y)(T(2.0))  # 2 x y at y = 2: 4x  # noqa: E731
    _, t = ag.jvp(h, (T(1.0),), (T(1.0),))
    assert float(t) == pytest.approx(4.0)


def test_accumulator_around_tape_gradient_of_a_closure():
    x, y = T([1.0, 2.0]), T([3.0, -1.0])
    with ag.ForwardAccumulator(x, T([1.0, 0.5])) as acc:
        with ag.GradientTape() as tape:
            tape.watch(y)
            z = (ag.sin(x) * y * y).sum()
        (g,) = tape.gradient(z, [y])  # 2 sin(x) y
    np.testing.assert_allclose(_np(acc.jvp(g)), 2 * np.cos([1.0, 2.0]) * [1.0, 0.5] * [3, -1])


def test_hvp_of_a_function_with_closed_over_tensors():
    w = T([0.3, -0.7])
    f = lambda x: (ag.exp(w * x) * x).sum()  # noqa: E731
    x, v = T([0.5, 1.5]), T([1.0, -2.0])
    h = ag.hvp(f, x, v)
    xv, wv = np.array([0.5, 1.5]), np.array([0.3, -0.7])
    diag = np.exp(wv * xv) * (2 * wv + wv * wv * xv)
    np.testing.assert_allclose(_np(h), diag * [1.0, -2.0])


# ---- one tensor in two positions --------------------------------------------------------------

def test_the_same_tensor_in_two_positions_gives_partials():
    x = T(5.0)
    gp, gq = ag.grad(lambda p, q: p * q, argnums=(0, 1))(x, x)
    assert (float(gp), float(gq)) == (5.0, 5.0)
    (gp, gq) = ag.grad(lambda pq: pq[0] * pq[1])((x, x))
    assert (float(gp), float(gq)) == (5.0, 5.0)
    _, t = ag.jvp(lambda p, q: p * q, (x, x), (T(1.0), T(0.0)))
    assert float(t) == 5.0  # d/dp along (1, 0)


def test_tape_gradient_with_a_source_listed_twice_is_the_total_derivative():
    x = T(5.0)
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    g1, g2 = tape.gradient(y, [x, x])
    assert float(g1) == float(g2) == 10.0


def test_grad_of_an_argument_also_read_from_a_closure():
    x = T(3.0)
    # JAX's meaning: the argument is a fresh variable, the closure's x a constant
    assert float(ag.grad(lambda p: p * x)(x)) == 3.0


# ---- writes into saved arrays -----------------------------------------------------------------

def test_from_array_copies_by_default():
    arr = np.array([1.0, 2.0, 3.0])
    x = ag.Tensor.from_array(arr)
    with ag.GradientTape() as tape:
        tape.watch(x)
        loss = (x * x).sum()
    arr[:] = 100.0
    (g,) = tape.gradient(loss, [x])
    np.testing.assert_allclose(_np(g), [2.0, 4.0, 6.0])


@pytest.mark.parametrize("handle", ["numpy", "data", "asarray"])
def test_handles_to_cpu_tensors_are_read_only(handle):
    x = T([1.0, 2.0, 3.0])
    with ag.GradientTape() as tape:
        tape.watch(x)
        loss = (x * x).sum()
    view = {"numpy": lambda: x.numpy(), "data": lambda: x.data,
            "asarray": lambda: np.asarray(x)}[handle]()
    with pytest.raises(ValueError, match="read-only"):
        view[:] = 100.0
    (g,) = tape.gradient(loss, [x])
    np.testing.assert_allclose(_np(g), [2.0, 4.0, 6.0])
    w = np.array(x)  # np.array copies: writable
    w[:] = 0.0
    assert x.numpy()[0] == 1.0


def test_zero_copy_writes_are_caught_under_detect_anomaly():
    arr = np.array([1.0, 2.0, 3.0])
    x = ag.Tensor.from_array(arr, copy=False)
    assert np.shares_memory(x._data, arr)
    with ag.detect_anomaly():
        with ag.GradientTape() as tape:
            tape.watch(x)
            loss = (ag.exp(x) * x).sum()
        arr[1] = 7.0
        with pytest.raises(ag.AnomalyError, match=r"op 'mul'.*written in place"):
            tape.gradient(loss, [x])


def test_detect_anomaly_passes_untouched_saved_values():
    x = T([1.0, 2.0])
    with ag.detect_anomaly():
        with ag.GradientTape() as tape:
            tape.watch(x)
            loss = (ag.exp(x) * x).sum()
        (g,) = tape.gradient(loss, [x])
    np.testing.assert_allclose(_np(g), np.exp([1, 2]) * (1 + np.array([1, 2])))


# ---- tapes and threads ------------------------------------------------------------------------

def _in_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    th = threading.Thread(target=run, name="worker")
    th.start()
    th.join()
    return box


def test_recording_in_another_thread_raises_naming_both_threads():
    tape = ag.GradientTape()
    x = T([1.0, 2.0])
    tape.watch(x)
    box = _in_thread(lambda: (x * x).sum())
    assert isinstance(box.get("error"), ag.TapeError)
    msg = str(box["error"])
    assert "MainThread" in msg and "worker" in msg and "mul" in msg
    tape._finish()


def test_a_tape_entered_in_another_thread_records_there():
    tape = ag.GradientTape()  # recording from here, in this thread
    x = T([1.0, 2.0])
    tape.watch(x)

    def work():
        with tape:
            y = (x * x).sum()
        return tape.gradient(y, [x])

    box = _in_thread(work)
    np.testing.assert_allclose(_np(box["value"][0]), [2.0, 4.0])
    assert tape.id not in STATE.recording and tape.id not in LIVE
    _ = x * 1.0  # the stale mode of this thread is dropped at its next op
    assert STATE.mode is None


def test_a_persistent_tape_dying_in_another_thread_releases_its_graph():
    x = T([1.0, 2.0])
    tape = ag.GradientTape(persistent=True)
    tape.watch(x)
    y = (x * x).sum()
    node = weakref.ref(tape._nodes[0])
    box = [tape]
    del tape, y
    _in_thread(box.clear)
    gc.collect()
    assert node() is None and not STATE.recording and not LIVE


# ---- complex values ---------------------------------------------------------------------------

def test_complex_values_are_never_truncated():
    # a complex-valued f: refused unless holomorphic (was 1.0 with a ComplexWarning)
    with pytest.raises(ag.DTypeError, match="holomorphic=True"):
        ag.grad(lambda x: (x * (1 + 0.2j)).sum())(1.0)
    z = ag.Tensor.from_array(np.array(0.5 + 0.25j))
    g = ag.grad(lambda w: w * w * (1 + 0.2j), holomorphic=True)(z)
    assert complex(g.numpy()) == pytest.approx(2 * (0.5 + 0.25j) * (1 + 0.2j))
    x = T([1.0, 2.0])
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = x * 2.0
    with pytest.raises(ag.DTypeError, match="output_gradients"):  # a real target
        tape.gradient(y, [x], output_gradients=[np.array([1 + 1j, 1.0])])
    with pytest.raises(ag.DTypeError, match="real dtype"):  # a real primal's tangent
        ag.jvp(lambda v: v * 2.0, (x,), (np.array([1j, 0]),))
    with pytest.raises(ag.DTypeError, match="ag.real"):  # a cast would drop a part
        ag.astype(z, "float64")
    with pytest.raises(ag.DTypeError, match="no complex rules"):  # a real rule
        ag.relu(z)
    # a real input reached by a complex cotangent gets its real part (JAX's convention):
    # Re(<vjp(u), v>) = d/dt Re(<u, f(x + t v)>) for real directions v
    with ag.GradientTape() as tape:
        tape.watch(x)
        w = x * (2 + 3j)
    u = np.array([1 - 1j, 0.5 + 2j])
    (gx,) = tape.gradient(w, [x], output_gradients=[u])
    assert gx.dtype == np.float64
    np.testing.assert_allclose(gx.numpy(), np.real(u * (2 + 3j)))


# ---- the accumulator's tangents on a long-lived primal ----------------------------------------

def test_forward_accumulator_takes_its_tangent_off_the_primal():
    w = ag.Variable(np.ones((16, 16)))
    x = T(np.ones((2, 16)))
    seed = T(np.ones((16, 16)))

    def use():
        with ag.ForwardAccumulator(w, seed) as acc:
            y = (x @ w).sum()
        return acc.jvp(y), acc.jvp(w)

    t, tw = use()
    assert float(t) == 512.0 and tw is seed and w._fw is None
    for _ in range(20):
        use()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(300):
        use()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 300 * 100, f"{grown} bytes kept after 300 uses"


def test_numpy_conversion_of_a_recorded_tensor_inside_a_list_is_refused():
    x, y = T([1.0, 2.0]), T([3.0, 4.0])
    with ag.GradientTape() as tape:
        tape.watch([x, y])
        with pytest.raises(ag.TapeError, match="cut it from the graph"):
            np.sum([x * 2.0, y])
        with pytest.raises(ag.TapeError, match="detach"):
            np.array([x, y])
        s = ag.stack([x * 2.0, y]).sum()  # the way that keeps the gradient
    gx, gy = tape.gradient(s, [x, y])
    np.testing.assert_allclose(gx.numpy(), [2.0, 2.0])
    assert np.asarray(s) == 13.0  # the tape stopped recording: converting is fine
    with ag.ForwardAccumulator(x, T([1.0, 0.0])):
        with pytest.raises(ag.TapeError, match="ForwardAccumulator"):
            np.array([x * 3.0])
    assert np.array(x.detach()).tolist() == [1.0, 2.0]
