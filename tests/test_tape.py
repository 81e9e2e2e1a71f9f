"""Tape semantics: persistence, nesting, several targets and sources, unconnected sources,
stop_recording, no_grad, long chains, threads, and memory release."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

import autograd_gpu as ag


def T(x, dtype=np.float64):
    return ag.Tensor.from_array(np.asarray(x, dtype=dtype))


def test_guide_minimal_example():
    tape = ag.GradientTape()
    x = tape.watch(T([[1.0, 2.0], [3.0, 4.0]], np.float32))
    loss = (x * x).sum()
    (g,) = tape.gradient([loss], [x])
    np.testing.assert_array_equal(g.numpy(), [[2.0, 4.0], [6.0, 8.0]])
    assert g.dtype == np.float32


def test_polynomial_scalar():
    tape = ag.GradientTape()
    x = tape.watch(ag.Tensor.from_scalar(3.0))
    y = x * x + x * 2.0 + 1.0
    (g,) = tape.gradient(y, x)
    assert g.to_scalar() == pytest.approx(8.0)


def test_non_persistent_tape_used_twice_raises():
    x = T([1.0, 2.0])
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = (x * x).sum()
    tape.gradient(y, [x])
    with pytest.raises(ag.TapeError, match="persistent=True"):
        tape.gradient(y, [x])


def test_persistent_tape_gives_several_gradients():
    x = T([1.0, 2.0, 3.0])
    with ag.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y1 = x * 2.0
        y2 = x * x
    (g1,) = tape.gradient(y1, [x])
    (g2,) = tape.gradient(y2, [x])
    (g2b,) = tape.gradient(y2, [x])
    np.testing.assert_allclose(g1.numpy(), [2, 2, 2])
    np.testing.assert_allclose(g2.numpy(), [2, 4, 6])
    np.testing.assert_allclose(g2b.numpy(), g2.numpy())


def test_multiple_targets_and_sources():
    x, y = T(np.ones((2, 2))), T(np.full((2, 2), 3.0))
    with ag.GradientTape() as tape:
        tape.watch([x, y])
        z = (x * x + y * y).sum()
        w = (x * y).sum()
    gx, gy = tape.gradient([z, w], [x, y])
    np.testing.assert_allclose(gx.numpy(), 2 * 1 + 3)
    np.testing.assert_allclose(gy.numpy(), 2 * 3 + 1)


def test_output_gradients_weight_targets():
    x = T([1.0, 2.0])
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    (g,) = tape.gradient(y, [x], output_gradients=[T([10.0, 100.0])])
    np.testing.assert_allclose(g.numpy(), [20.0, 400.0])


def test_output_gradients_wrong_shape():
    x = T([1.0, 2.0])
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    with pytest.raises(ag.ShapeError, match="output_gradients"):
        tape.gradient(y, [x], output_gradients=[T([1.0, 2.0, 3.0])])


def test_unconnected_sources():
    x, y = T([1.0]), T([2.0])
    with ag.GradientTape(persistent=True) as tape:
        tape.watch([x, y])
        z = x * 3.0
    gx, gy = tape.gradient(z, [x, y])
    assert gy is None and gx.numpy()[0] == 3.0
    _, gy0 = tape.gradient(z, [x, y], unconnected_gradients="zero")
    np.testing.assert_array_equal(gy0.numpy(), [0.0])


def test_unwatched_source_raises_instead_of_none():
    x = T([1.0])
    with ag.GradientTape() as tape:
        y = x * 2.0
    with pytest.raises(ag.TapeError, match="watch"):
        tape.gradient(y, [x])


def test_gradient_wrt_intermediate():
    x = T([2.0])
    with ag.GradientTape() as tape:
        tape.watch(x)
        h = x * x
        y = ag.sin(h)
    gh, gx = tape.gradient(y, [h, x])
    np.testing.assert_allclose(gh.numpy(), np.cos(4.0))
    np.testing.assert_allclose(gx.numpy(), np.cos(4.0) * 4.0)


def test_stop_recording_and_stop_gradient_and_no_grad():
    x = T([3.0])
    with ag.GradientTape(persistent=True) as tape:
        tape.watch(x)
        with tape.stop_recording():
            c = x * x  # a constant to the tape
        y = c * x
        z = ag.stop_gradient(x * x) * x
        with ag.no_grad():
            n = x * x
        assert not n.is_tracked
        w = n * x
    for t in (y, z, w):
        (g,) = tape.gradient(t, [x])
        assert g.to_scalar() == pytest.approx(9.0)


def test_no_grad_as_decorator():
    @ag.no_grad()
    def f(v):
        return v * v

    x = T([1.0])
    with ag.GradientTape() as tape:
        tape.watch(x)
        assert not f(x).is_tracked


def test_reset_forgets_recorded_ops():
    x = T([2.0])
    tape = ag.GradientTape(persistent=True)
    tape.watch(x)
    y = x * x
    tape.reset()
    z = x * 5.0
    (gy,) = tape.gradient(y, [x])
    (gz,) = tape.gradient(z, [x])
    assert gy is None
    assert gz.to_scalar() == 5.0


@pytest.mark.parametrize("order", [1, 2, 3])
def test_nested_tapes_sin(order):
    x0 = 0.7
    expected = [np.cos(x0), -np.sin(x0), -np.cos(x0)][order - 1]
    x = T(x0)
    tapes = [ag.GradientTape() for _ in range(order)]
    for t in tapes:
        t.__enter__()
        t.watch(x)
    y = ag.sin(x)
    for t in reversed(tapes):
        t.__exit__(None, None, None)
        (y,) = t.gradient(y, [x])
    assert y.to_scalar() == pytest.approx(expected, rel=1e-12)


def test_third_derivative_of_cube():
    x = T(2.0)
    with ag.GradientTape() as t3:
        t3.watch(x)
        with ag.GradientTape() as t2:
            t2.watch(x)
            with ag.GradientTape() as t1:
                t1.watch(x)
                y = x**3
            (d1,) = t1.gradient(y, [x])
        (d2,) = t2.gradient(d1, [x])
    (d3,) = t3.gradient(d2, [x])
    assert (d1.to_scalar(), d2.to_scalar(), d3.to_scalar()) == pytest.approx((12.0, 12.0, 6.0))


def test_guide_style_second_order_with_watched_gradient():
    x = T([1.5])
    outer = ag.GradientTape()
    outer.watch(x)
    inner = ag.GradientTape()
    inner.watch(x)
    y = x**3.0
    (dy,) = inner.gradient([y], [x])
    (d2,) = outer.gradient([dy], [x])
    np.testing.assert_allclose(dy.numpy(), 3 * 1.5**2)
    np.testing.assert_allclose(d2.numpy(), 6 * 1.5)


def test_long_chain_is_iterative():
    x = T([0.5])
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = x
        for _ in range(100_000):
            y = y * 1.0
    (g,) = tape.gradient(y, [x])
    assert g.numpy()[0] == 1.0


def test_threads_each_with_their_own_tape():
    results, errors = {}, []

    def work(k):
        try:
            x = T([float(k)])
            for _ in range(50):
                with ag.GradientTape() as tape:
                    tape.watch(x)
                    y = x * x * float(k)
                (g,) = tape.gradient(y, [x])
            results[k] = g.to_scalar()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {k: 2.0 * k * k for k in range(1, 5)}


def test_tapes_in_one_thread_do_not_see_another_threads_ops():
    x = T([1.0])
    tape = ag.GradientTape()
    tape.watch(x)
    out = {}

    def other():
        z = T([3.0])  # this thread's own values: nothing of the main thread's tape
        out["y"] = z * 2.0

    th = threading.Thread(target=other)
    th.start()
    th.join()
    assert not out["y"].is_tracked and tape._nodes == []
    tape._stop()


def test_intermediates_are_freed_after_gradient():
    x = T(np.ones(1000))
    refs = []
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = x
        for _ in range(5):
            y = ag.exp(y * 0.1)
            refs.append(weakref.ref(y._data))
        loss = y.sum()
    del y
    tape.gradient(loss, [x])
    del loss
    gc.collect()
    assert all(r() is None for r in refs)


def _release_probe_op():
    """An identity op whose vjp records, while the sweep runs, which saved values are gone."""
    def vjp(g, inputs, output):
        _PROBE["later_freed"] = _PROBE["later"].saved is None  # swept before the probe
        _PROBE["earlier_kept"] = _PROBE["earlier"].saved is not None  # swept after it
        return (g,)

    return ag.custom_op(lambda xp, a: a.copy(), vjp, name="release_probe")


_PROBE: dict = {}
_RELEASE_PROBE = _release_probe_op()


def _loop(kind):
    """The sweep the default run takes (compiled when built), or the Python loop, which runs
    whenever an interceptor watches the sweep (here the profiler's; also AMP, anomaly mode,
    determinism checks)."""
    import contextlib

    return ag.profiler.profile() if kind == "python loop" else contextlib.nullcontext()


@pytest.mark.parametrize("kind", ["default", "python loop"])
def test_saved_values_released_during_sweep_not_after(kind):
    """A non-persistent tape frees each node's saved values as soon as the sweep has used them:
    while the probe's rule runs, sin's (already swept) are gone and exp's (not yet) are held."""
    _PROBE.clear()
    x = T(np.ones(10))
    with _loop(kind):
        with ag.GradientTape() as tape:
            tape.watch(x)
            y = ag.exp(x)
            z = ag.sin(_RELEASE_PROBE(y))
            loss = z.sum()  # recorded: the sweep runs through z and y
        _PROBE.update(later=z._node, earlier=y._node)
        assert z._node.saved is not None and y._node.saved is not None
        (g,) = tape.gradient(loss, [x])
    assert _PROBE == {"later": z._node, "earlier": y._node, "later_freed": True,
                      "earlier_kept": True}
    assert z._node.saved is None and y._node.saved is None
    np.testing.assert_allclose(g.numpy(), np.cos(np.e) * np.e)


def _order_sensitive_gradient():
    """d/dx of x*1 + x*(-2^53) + (x - x) + x*2^53 (exactly 1): float64 sums of its cotangents
    depend on their order."""
    big = 2.0 ** 53
    x = ag.Variable(np.ones(3))
    with ag.GradientTape() as tape:
        a = x * 1.0
        b = x * -big
        e = x - x
        d = x * big
        loss = (a + b + e + d).sum()
    return tape.gradient(loss, [x])[0].numpy()


@pytest.mark.parametrize("kind", ["default", "python loop"])
def test_cotangents_are_summed_in_sweep_order(kind):
    """The compiled sweep and the Python loop add a node's incoming cotangents in one order,
    bit for bit: consumers in reverse recording order (d, e, b, a), a consumer's inputs in
    order (e's +1, then its -1): (((2^53 + 1) - 1) - 2^53) + 1 = 0 in float64. Adding a's
    first, or e's -1 before its +1, gives 1 (the exact value, which this order rounds away)."""
    big = 2.0 ** 53
    assert (((big + 1.0) - 1.0) - big) + 1.0 == 0.0  # the documented order
    assert (((1.0 - big) + 1.0 - 1.0) + big) == 1.0 and (((big - 1.0) + 1.0) - big) + 1.0 == 1.0
    with _loop(kind):
        g = _order_sensitive_gradient()
    assert np.array_equal(g, np.zeros(3)), g


@pytest.mark.parametrize("dtype", [np.float16, ag.dtypes.bfloat16, np.float32, np.float64],
                         ids=["float16", "bfloat16", "float32", "float64"])
def test_unconnected_zero_gradients_have_their_source_dtype(dtype):
    x = ag.Variable(np.ones(3, dtype))
    z = ag.Variable(np.ones((2, 2), dtype))
    with ag.GradientTape(persistent=True) as tape:
        tape.watch(z)  # watched, never used
        y = (x * 2.0).sum()
    gx, gz = tape.gradient(y, [x, z], unconnected_gradients="zero")
    assert gx.dtype == gz.dtype == np.dtype(dtype) and gz.shape == (2, 2)
    assert not gz.numpy().any()
    assert tape.forward_gradient(z, y, tangent=np.ones((2, 2)),
                                 unconnected_gradients="zero").dtype == np.dtype(dtype)
    gx, gz = ag.grad(lambda a, b: (a * 2.0).sum(), argnums=(0, 1))(x, z)
    assert gz.dtype == np.dtype(dtype) and not gz.numpy().any()


def test_variables_are_watched_by_a_context_tape():
    w = ag.Variable(np.eye(2))
    x = T([[1.0, 2.0]])
    with ag.GradientTape() as tape:
        loss = ((x @ w) ** 2).sum()
    (gw,) = tape.gradient([loss], [w])
    expected = 2 * x.numpy().T @ (x.numpy() @ np.eye(2))
    np.testing.assert_allclose(gw.numpy(), expected)
    assert tape.id not in w._tapes  # released when the context closed
    with ag.GradientTape(watch_accessed_variables=False) as tape2:
        loss2 = (w * 2.0).sum()
    assert not loss2.is_tracked
    del tape2


def test_variable_assign_checks_shape_and_keeps_saved_values():
    w = ag.Variable(np.array([1.0, 2.0]))
    with ag.GradientTape() as tape:
        y = (w * w).sum()
    w.assign(np.array([10.0, 10.0]))
    (g,) = tape.gradient(y, [w])
    np.testing.assert_allclose(g.numpy(), [2.0, 4.0])  # values saved at forward time
    with pytest.raises(ag.ShapeError):
        w.assign(np.zeros(3))


def test_integer_tensors_are_never_watched():
    with pytest.raises(ag.DTypeError, match="int64"):
        ag.GradientTape().watch(ag.Tensor.from_array(np.arange(3)))
    with pytest.raises(ag.DTypeError):
        ag.Variable(np.arange(3))


def test_gradient_dtype_follows_source_under_promotion():
    x = ag.Tensor.from_array(np.array([1.0, 2.0], np.float32))
    s = ag.Tensor.from_array(np.array([3.0], np.float64))
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = (x * s).sum()
    assert y.dtype == np.float64
    (g,) = tape.gradient(y, [x])
    assert g.dtype == np.float32 and np.allclose(g.numpy(), 3.0)


def test_broadcast_gradients_are_summed():
    a, b = T(np.ones((3, 4))), T(np.ones((4,)))
    with ag.GradientTape() as tape:
        tape.watch([a, b])
        y = (a * b).sum()
    ga, gb = tape.gradient(y, [a, b])
    assert ga.shape == (3, 4) and gb.shape == (4,)
    np.testing.assert_allclose(gb.numpy(), 3.0)


@pytest.mark.parametrize("kind", ["default", "python loop"])
def test_an_intermediate_of_another_dtype_gets_a_gradient_of_its_dtype(kind):
    """A node whose output has its parent's shape but another dtype (astype) records its own
    (shape, dtype): the sweep casts each cotangent to it, so a float32 one would round the
    float64 intermediate's gradient (here 1 + 2^-40 to 1)."""
    c = 1.0 + 2.0 ** -40
    x = T([1.0, 2.0, 3.0], np.float32)
    with _loop(kind):
        with ag.GradientTape() as tape:
            tape.watch(x)
            y = ag.astype(x, np.float64)
            h = ag.astype(y * 2.0, np.float32)  # and back: float32 again, same shape
            loss = (y * c).sum() + ag.astype(h, np.float64).sum()
        assert y._node.out_meta == ((3,), np.dtype(np.float64))
        assert h._node.out_meta == ((3,), np.dtype(np.float32))
        gy, gx = tape.gradient(loss, [y, x])
    assert gy.dtype == np.float64 and np.array_equal(gy.numpy(), np.full(3, c + 2.0))
    assert gx.dtype == np.float32 and np.array_equal(gx.numpy(), np.full(3, np.float32(c + 2)))
