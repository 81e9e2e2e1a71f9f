"""Shape and indexing primitives: values against NumPy, gradients against hand-computed results,
second order through the scatter-add primitive, error cases, and GPU parity."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.backend import NUMPY
from autograd_gpu.ops.registry import REGISTRY


def T(a, device="cpu"):
    return ag.Tensor.from_array(np.asarray(a), device=device)


def X(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def grad(fn, x, w=None):
    """d/dx <w, fn(x)> (w = ones by default) as a numpy array."""
    xt = T(x)
    tape = ag.GradientTape()
    tape.watch(xt)
    y = fn(xt)
    og = None if w is None else T(w)
    (g,) = tape.gradient(y, [xt], output_gradients=og, unconnected_gradients="zero")
    return g.numpy()


A = X((3, 4, 5, 6))
MASK_A = A[..., 0] > 0.2
INDICES = [
    0, -1, (slice(None), 1), (Ellipsis, 2), (None, 0, Ellipsis, None), slice(None, None, -1),
    (slice(3, 0, -2), slice(-1, None, -1)),
    (slice(None, None, 2), slice(1, -1), 0, slice(5, 1, -3)),
    ([0, 2, 2],), (slice(None), [1, 1, 3], [0, 4, 4]), (0, slice(None), [1, 2]),
    (slice(None), [[0], [1]], None, [1, 2]), (np.array([[2, 0]]), slice(None), np.array([1, -1])),
    (MASK_A,), (slice(None), A[0, :, :, 0] > 0.3), (np.array(1), slice(None), np.array(2)),
    (A[:, 0, 0, 0] > 0.0,), ([],), (Ellipsis,), (), (Ellipsis, np.array([5, 0, 5])),
    (1, [0, 3], slice(None, None, -1), [[2], [0]]),
]


# ---- getitem ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", INDICES, ids=[str(i)[:40] for i in range(len(INDICES))])
def test_getitem_matches_numpy(index):
    got = T(A)[index].numpy()
    want = A[index]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("index", INDICES, ids=[str(i)[:40] for i in range(len(INDICES))])
def test_getitem_gradient_is_scatter_add(index):
    w = X(A[index].shape, seed=1)
    want = np.zeros_like(A)
    np.add.at(want, index, w)
    np.testing.assert_allclose(grad(lambda x: x[index], A, w), want, rtol=0, atol=1e-12)


def test_getitem_tensor_indices_and_mask_tensor():
    x = T(A)
    idx = ag.Tensor.from_array(np.array([3, 0, 3]))
    np.testing.assert_array_equal(x[:, idx].numpy(), A[:, [3, 0, 3]])
    m = x > 0.5
    np.testing.assert_array_equal(x[m].numpy(), A[A > 0.5])
    # a mask's gradient: ones where selected
    np.testing.assert_array_equal(grad(lambda t: t[t > 0.5], A), (A > 0.5).astype(float))


def test_repeated_indices_accumulate():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    g = grad(lambda t: t[[0, 0, 2, 0, -1]], x)
    np.testing.assert_array_equal(g, [3.0, 0.0, 1.0, 1.0])
    g = grad(lambda t: t[[0, 0, 2]] * t[[0, 0, 2]], x)  # d/dx sum x_i^2 over picks = 2 x count
    np.testing.assert_array_equal(g, [4.0, 0.0, 6.0, 0.0])


def test_negative_step_and_newaxis_gradients():
    x = np.arange(6.0).reshape(2, 3)
    w = np.array([[10.0, 20.0]])
    g = grad(lambda t: t[None, 1, ::-2], x, w)  # picks x[1, 2] and x[1, 0]
    np.testing.assert_array_equal(g, [[0.0, 0.0, 0.0], [20.0, 0.0, 10.0]])


def test_second_order_through_scatter_add():
    x = np.array([0.5, -1.0, 2.0])
    idx = [2, 0, 2, 2]
    xt = T(x)
    with ag.GradientTape() as outer:
        outer.watch(xt)
        with ag.GradientTape() as inner:
            inner.watch(xt)
            y = (xt[idx] ** 3).sum()
        (g,) = inner.gradient(y, [xt])
        s = (g * T([1.0, 1.0, 1.0])).sum()
    (h,) = outer.gradient(s, [xt])
    count = np.array([1.0, 0.0, 3.0])
    np.testing.assert_allclose(g.numpy(), 3 * x**2 * count)
    np.testing.assert_allclose(h.numpy(), 6 * x * count)


def test_third_order_through_take():
    x = np.array([0.7, 1.3])
    xt = T(x)
    with ag.GradientTape() as t3:
        t3.watch(xt)
        with ag.GradientTape() as t2:
            t2.watch(xt)
            with ag.GradientTape() as t1:
                t1.watch(xt)
                y = ag.take(xt, [1, 1, 0]).sin().sum()
            (g1,) = t1.gradient(y, [xt])
            s1 = g1.sum()
        (g2,) = t2.gradient(s1, [xt])
        s2 = g2.sum()
    (g3,) = t3.gradient(s2, [xt])
    count = np.array([1.0, 2.0])
    np.testing.assert_allclose(g1.numpy(), count * np.cos(x))
    np.testing.assert_allclose(g2.numpy(), -count * np.sin(x))
    np.testing.assert_allclose(g3.numpy(), -count * np.cos(x))


def test_getitem_full_index_returns_same_tensor():
    x = T(A)
    assert x[...] is x
    assert x[:, :] is x


def test_getitem_errors():
    x = T(np.zeros((3, 4)))
    with pytest.raises(ag.ShapeError, match="getitem.*index 3 is out of range for axis 0"):
        x[3]
    with pytest.raises(ag.ShapeError, match="getitem.*out of range for axis 1"):
        x[:, [0, 4]]
    with pytest.raises(ag.ShapeError, match="getitem.*out of range"):
        x[[-4]]
    with pytest.raises(ag.ShapeError, match="getitem.*indexes 3 dimensions"):
        x[0, 0, 0]
    with pytest.raises(ag.ArgumentError, match="getitem.*Ellipsis"):
        x[..., 0, ...]
    with pytest.raises(ag.DTypeError, match="getitem.*integer or boolean"):
        x[np.array([0.0, 1.0])]
    with pytest.raises(ag.ArgumentError, match="getitem"):
        x["a"]
    with pytest.raises(ag.ArgumentError, match="getitem.*scalar bool"):
        x[True]
    with pytest.raises(ag.ShapeError, match="getitem.*boolean mask of shape \\(4,\\)"):
        x[np.ones(4, dtype=bool)]
    with pytest.raises(ag.ShapeError, match="getitem.*broadcast"):
        x[[0, 1], [0, 1, 2]]
    with pytest.raises(ag.ArgumentError, match="getitem.*bad slice"):
        x[::0]


def test_setitem_raises():
    x = T(np.zeros(3))
    with pytest.raises(ag.ArgumentError, match="immutable.*where.*index_add"):
        x[0] = 1.0


# ---- index_add, take, take_along_axis -----------------------------------------------------------


def test_index_add_values_and_gradients():
    x = np.arange(5.0)
    v = np.array([1.0, 2.0, 3.0])
    out = ag.index_add(T(x), [0, 4, 0], T(v))
    np.testing.assert_array_equal(out.numpy(), [4.0, 1.0, 2.0, 3.0, 6.0])
    xt, vt = T(x), T(v)
    tape = ag.GradientTape()
    tape.watch([xt, vt])
    y = ag.index_add(xt, [0, 4, 0], vt)
    gx, gv = tape.gradient(y, [xt, vt], output_gradients=T([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(gx.numpy(), [1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(gv.numpy(), [1.0, 5.0, 1.0])
    # a broadcast scalar value along a slice
    np.testing.assert_array_equal(ag.index_add(T(np.zeros((2, 3))), (1, slice(None)), 2.0).numpy(),
                                  [[0, 0, 0], [2, 2, 2]])
    with pytest.raises(ag.ShapeError, match="index_add.*values"):
        ag.index_add(T(x), [0, 1], T(np.ones(3)))


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_take_matches_numpy_and_gradient(axis):
    x = X((3, 4))
    idx = np.array([[1, 0], [2, 2]])
    np.testing.assert_array_equal(ag.take(T(x), idx, axis=axis).numpy(), np.take(x, idx, axis=axis))
    w = X(np.take(x, idx, axis=axis).shape, seed=2)
    want = np.zeros_like(x)
    if axis is None:
        np.add.at(want.reshape(-1), idx, w)
    else:
        np.add.at(want, (slice(None),) * (axis % 2) + (idx,), w)
    np.testing.assert_allclose(grad(lambda t: ag.take(t, idx, axis=axis), x, w), want, atol=1e-12)
    np.testing.assert_array_equal(T(x).take(2, axis=1).numpy(), x[:, 2])


def test_take_along_axis_matches_numpy_and_gradient():
    x = X((3, 4))
    idx = np.array([[3, 3], [0, 1], [2, 2]])
    got = ag.take_along_axis(T(x), idx, axis=1)
    np.testing.assert_array_equal(got.numpy(), np.take_along_axis(x, idx, axis=1))
    g = grad(lambda t: ag.take_along_axis(t, idx, axis=1), x)
    want = np.array([[0, 0, 0, 2], [1, 1, 0, 0], [0, 0, 2, 0]], dtype=float)
    np.testing.assert_array_equal(g, want)
    idx0 = np.array([[2, 0, 1, 1]])
    np.testing.assert_array_equal(ag.take_along_axis(T(x), idx0, axis=0).numpy(),
                                  np.take_along_axis(x, idx0, axis=0))
    np.testing.assert_array_equal(ag.take_along_axis(T(x), np.array([11, 0]), axis=None).numpy(),
                                  np.take_along_axis(x, np.array([11, 0]), axis=None))
    with pytest.raises(ag.ShapeError, match="take_along_axis.*dimensions"):
        ag.take_along_axis(T(x), np.array([0, 1]), axis=1)
    with pytest.raises(ag.ShapeError, match="take_along_axis.*out of range"):
        ag.take_along_axis(T(x), np.array([[4]]), axis=1)
    with pytest.raises(ag.ShapeError, match="take.*axis"):
        ag.take(T(x), [0], axis=2)


# ---- shape primitives ---------------------------------------------------------------------------


def test_expand_dims_squeeze_flatten():
    x = X((2, 3))
    for axis in (0, 2, -1, (0, 3), (-1, 1)):
        np.testing.assert_array_equal(ag.expand_dims(T(x), axis).numpy(), np.expand_dims(x, axis))
    y = X((1, 3, 1, 2))
    for axis in (None, 0, 2, (0, -2)):
        np.testing.assert_array_equal(ag.squeeze(T(y), axis).numpy(), np.squeeze(y, axis))
    np.testing.assert_array_equal(T(y).squeeze().numpy(), np.squeeze(y))
    z = X((2, 3, 4, 5))
    assert ag.flatten(T(z)).shape == (120,)
    np.testing.assert_array_equal(ag.flatten(T(z), 1, 2).numpy(), z.reshape(2, 12, 5))
    np.testing.assert_array_equal(T(z).flatten(-2).numpy(), z.reshape(2, 3, 20))
    assert ag.flatten(T(np.float64(3.0))).shape == (1,)
    w = X((2, 1, 3))
    gx = grad(lambda t: ag.expand_dims(t, (0, 2)), x, w.reshape(1, 2, 1, 3))
    np.testing.assert_array_equal(gx, w.reshape(2, 3))
    np.testing.assert_array_equal(grad(lambda t: ag.squeeze(t, 1), w, x), x.reshape(2, 1, 3))
    np.testing.assert_array_equal(grad(lambda t: ag.flatten(t), x, np.arange(6.0)),
                                  np.arange(6.0).reshape(2, 3))
    with pytest.raises(ag.ShapeError, match="squeeze.*length 1, got axis 0 of length 2"):
        ag.squeeze(T(w), 0)
    with pytest.raises(ag.ShapeError, match="expand_dims.*axis"):
        ag.expand_dims(T(x), 3)
    with pytest.raises(ag.ShapeError, match="expand_dims.*repeated"):
        ag.expand_dims(T(x), (0, -4))
    with pytest.raises(ag.ShapeError, match="flatten.*start_axis"):
        ag.flatten(T(z), 3, 1)


def test_concatenate_and_gradients():
    a, b, c = X((2, 3)), X((2, 1), 1), X((2, 2), 2)
    out = ag.concatenate([T(a), T(b), T(c)], axis=1)
    np.testing.assert_array_equal(out.numpy(), np.concatenate([a, b, c], axis=1))
    np.testing.assert_array_equal(ag.concatenate([T(a), T(a)], axis=-2).numpy(),
                                  np.concatenate([a, a], axis=0))
    np.testing.assert_array_equal(ag.concatenate([T(a), T(b)], axis=None).numpy(),
                                  np.concatenate([a, b], axis=None))
    ts = [T(a), T(b), T(c)]
    tape = ag.GradientTape()
    tape.watch(ts)
    y = ag.concatenate(ts, axis=1)
    w = np.arange(12.0).reshape(2, 6)
    ga, gb, gc = tape.gradient(y, ts, output_gradients=T(w))
    np.testing.assert_array_equal(ga.numpy(), w[:, :3])
    np.testing.assert_array_equal(gb.numpy(), w[:, 3:4])
    np.testing.assert_array_equal(gc.numpy(), w[:, 4:])
    with pytest.raises(ag.ShapeError, match="concatenate.*tensors\\[1\\].*\\(2, 3\\).*\\(3, 1\\)"):
        ag.concatenate([T(a), T(np.zeros((3, 1)))], axis=1)
    with pytest.raises(ag.ShapeError, match="concatenate.*axis"):
        ag.concatenate([T(a), T(a)], axis=2)
    with pytest.raises(ag.ArgumentError, match="concatenate.*at least one"):
        ag.concatenate([])
    with pytest.raises(ag.ArgumentError, match="concatenate.*list"):
        ag.concatenate(T(a))


def test_stack_and_gradients():
    a, b = X((2, 3)), X((2, 3), 1)
    for axis in (0, 1, 2, -1, -3):
        np.testing.assert_array_equal(ag.stack([T(a), T(b)], axis).numpy(),
                                      np.stack([a, b], axis))
    ts = [T(a), T(b)]
    tape = ag.GradientTape()
    tape.watch(ts)
    y = ag.stack(ts, axis=1)
    w = X((2, 2, 3), 5)
    ga, gb = tape.gradient(y, ts, output_gradients=T(w))
    np.testing.assert_array_equal(ga.numpy(), w[:, 0])
    np.testing.assert_array_equal(gb.numpy(), w[:, 1])
    with pytest.raises(ag.ShapeError, match="stack.*tensors\\[1\\]"):
        ag.stack([T(a), T(a.T)])
    with pytest.raises(ag.ShapeError, match="stack.*axis"):
        ag.stack([T(a), T(b)], axis=3)


def test_split_round_trip_and_gradients():
    x = X((4, 6))
    parts = ag.split(T(x), 3, axis=1)
    for p, q in zip(parts, np.split(x, 3, axis=1)):
        np.testing.assert_array_equal(p.numpy(), q)
    np.testing.assert_array_equal(ag.concatenate(parts, axis=1).numpy(), x)
    for cuts in ([1, 3], [0, 2, 9], [3, 1]):
        got = ag.split(T(x), cuts, axis=0)
        want = np.split(x, cuts, axis=0)
        assert len(got) == len(want)
        for p, q in zip(got, want):
            assert p.shape == q.shape
            np.testing.assert_array_equal(p.numpy(), q)
    # d/dx of 1*sum(p0) + 2*sum(p1) + 3*sum(p2)
    g = grad(lambda t: sum((k + 1) * p.sum() for k, p in enumerate(ag.split(t, [1, 3], axis=0))),
             x)
    np.testing.assert_array_equal(g, np.repeat([[1.0], [2.0], [2.0], [3.0]], 6, axis=1))
    # concatenate(split(x)) is the identity for gradients too
    w = X((4, 6), 3)
    np.testing.assert_array_equal(
        grad(lambda t: ag.concatenate(ag.split(t, [2, 5], axis=1), axis=1), x, w), w)
    with pytest.raises(ag.ShapeError, match="split.*divisor"):
        ag.split(T(x), 4, axis=1)
    with pytest.raises(ag.ShapeError, match="split.*axis"):
        ag.split(T(x), 2, axis=2)


@pytest.mark.parametrize("pw", [1, (1, 2), ((2, 0),), ((0, 1), (2, 3)), [[1], [0]]])
def test_pad_matches_numpy_and_gradient(pw):
    x = X((2, 3))
    np.testing.assert_array_equal(ag.pad(T(x), pw, value=-1.5).numpy(),
                                  np.pad(x, pw, constant_values=-1.5))
    ref = np.pad(x, pw)
    w = X(ref.shape, 4)
    # the gradient is w cropped to x's region: locate it through numpy
    marker = np.pad(np.ones_like(x), pw).astype(bool)
    np.testing.assert_array_equal(grad(lambda t: ag.pad(t, pw, value=7.0), x, w),
                                  w[marker].reshape(x.shape))


def test_pad_errors():
    x = T(np.zeros((2, 3)))
    with pytest.raises(ag.ArgumentError, match="pad.*pad_width"):
        ag.pad(x, -1)
    with pytest.raises(ag.ArgumentError, match="pad.*pad_width"):
        ag.pad(x, ((1, 1), (1, 1), (1, 1)))
    with pytest.raises(ag.ArgumentError, match="pad.*value"):
        ag.pad(x, 1, value="a")


def test_flip_and_gradient():
    x = X((2, 3, 4))
    for axis in (None, 0, -1, (0, 2)):
        np.testing.assert_array_equal(ag.flip(T(x), axis).numpy(), np.flip(x, axis))
    w = X((2, 3, 4), 6)
    np.testing.assert_array_equal(grad(lambda t: ag.flip(t, 1), x, w), w[:, ::-1])
    np.testing.assert_array_equal(grad(lambda t: t.flip(), x, w), w[::-1, ::-1, ::-1])
    with pytest.raises(ag.ShapeError, match="flip.*axis"):
        ag.flip(T(x), 3)


def test_cumsum_and_gradient():
    x = X((3, 4))
    for axis in (0, 1, -1):
        np.testing.assert_allclose(ag.cumsum(T(x), axis).numpy(), np.cumsum(x, axis), atol=1e-14)
    np.testing.assert_allclose(ag.cumsum(T(x)).numpy(), np.cumsum(x), atol=1e-14)
    w = np.array([1.0, 2.0, 3.0, 4.0])
    # d/dx_j sum_i w_i cumsum_i = sum_{i >= j} w_i
    np.testing.assert_array_equal(grad(lambda t: ag.cumsum(t, 0), np.zeros(4), w),
                                  [10.0, 9.0, 7.0, 4.0])
    with pytest.raises(ag.ShapeError, match="cumsum.*axis"):
        ag.cumsum(T(x), 2)


def test_shape_ops_second_order():
    # h(x) = sum(cumsum(flip(pad(x))) ** 2): check the Hessian-vector product by differences
    x = X((3,))
    v = X((3,), 1)

    def f(t):
        return (ag.cumsum(ag.flip(ag.pad(t, 1, value=0.5)), 0) ** 2).sum()

    def g_of(xx):
        return grad(f, xx)

    xt = T(x)
    with ag.GradientTape() as outer:
        outer.watch(xt)
        with ag.GradientTape() as inner:
            inner.watch(xt)
            y = f(xt)
        (g,) = inner.gradient(y, [xt])
        s = (g * T(v)).sum()
    (hv,) = outer.gradient(s, [xt])
    eps = 1e-6
    fd = (g_of(x + eps * v) - g_of(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hv.numpy(), fd, atol=1e-6)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_of_separated_advanced_index(mode):
    # advanced dims go first here, so batched sweeps must move the batch axes around them
    if not hasattr(ag.GradientTape, "jacobian"):
        pytest.skip("tape.jacobian not available")
    x0 = X((3, 4, 5))
    idx = (0, slice(None), [[1, 2, 2]])
    x = T(x0)
    with ag.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x[idx] * 2.0
    J = tape.jacobian(y, x, mode=mode).numpy()
    ref = np.zeros(y.shape + x0.shape)
    for k in np.ndindex(y.shape):
        e = np.zeros(y.shape)
        e[k] = 2.0
        np.add.at(ref[k], idx, e)
    np.testing.assert_array_equal(J, ref)


def test_forward_mode_tangents():
    x = T(np.arange(4.0))
    c = T(np.ones(2))
    v = T([1.0, 10.0, 100.0, 1000.0])
    with ag.ForwardAccumulator(x, v) as acc:
        y = ag.concatenate([x[[0, 0, 3]], c, ag.stack([x[1], c[0]])])  # c has no tangent
        z = ag.pad(ag.cumsum(ag.flip(x), 0), 1)
        w = ag.index_add(x, [0, 0], x[[1, 2]] * 2.0)
        np.testing.assert_array_equal(acc.jvp(y).numpy(), [1, 1, 1000, 0, 0, 10, 0])
        np.testing.assert_array_equal(acc.jvp(z).numpy(), [0, 1000, 1100, 1110, 1111, 0])
        np.testing.assert_array_equal(acc.jvp(w).numpy(), [221, 10, 100, 1000])


# ---- engine-facing properties -------------------------------------------------------------------


def test_scatter_add_determinism_flag():
    op = REGISTRY["scatter_add"]

    class FakeGpu:  # a backend whose scatter_add uses atomics
        name = "cupy"
        deterministic_scatter = False

    basic = {"index": ((0, 3, 1), 1), "shape": (3, 2)}
    adv = {"index": ("array", (0, 2, 1)), "shape": (3, 2)}
    assert op.is_deterministic(NUMPY, adv)
    assert op.is_deterministic(FakeGpu, basic)
    assert not op.is_deterministic(FakeGpu, adv)


def test_getitem_saves_no_input_array():
    xt = T(X((50,)))
    tape = ag.GradientTape()
    tape.watch(xt)
    y = xt[[1, 2]]
    node = y._node
    assert all(s is not xt.data for s in node.saved)
    assert node.params["index"] == ("array",)


def test_ops_are_registered_with_rules():
    for name in ("getitem", "scatter_add", "expand_dims", "squeeze", "concatenate", "stack",
                 "pad", "flip", "cumsum"):
        op = REGISTRY[name]
        assert op.vjp and op.jvp and op.sample and op.doc


# ---- GPU parity ---------------------------------------------------------------------------------


GPU_CASES = [
    lambda t: t[1:, ::-2],
    lambda t: t[[0, 0, 2], None],
    lambda t: t[:, [1, 1, 3], [0, 4, 4]],
    lambda t: t[0, :, [1, 2]],
    lambda t: t[t > 0.3],
    lambda t: ag.take(t, [[1, 0], [3, 3]], axis=1),
    lambda t: ag.take_along_axis(t, np.zeros((3, 2, 5, 6), dtype=np.int64), axis=1),
    lambda t: ag.concatenate(ag.split(t, [1, 3], axis=1)[::-1], axis=1),
    lambda t: ag.stack([t, t * 2.0], axis=-1),
    lambda t: ag.pad(t, ((1, 0), (0, 2), (1, 1), (0, 0)), value=0.25),
    lambda t: ag.cumsum(ag.flip(t, (0, 3)), axis=2),
    lambda t: ag.squeeze(ag.expand_dims(t, (1, 3)), 1),
    lambda t: ag.index_add(t, ([0, 0], slice(None), [1, 1]), 1.0),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", range(len(GPU_CASES)))
def test_gpu_matches_numpy(case, dtype):
    fn = GPU_CASES[case]
    x = A.astype(dtype)
    outs = {}
    for dev in ("cpu", "cuda"):
        xt = T(x, dev)
        tape = ag.GradientTape()
        tape.watch(xt)
        y = fn(xt)
        w = ag.Tensor.from_array(np.cos(np.arange(y.size)).reshape(y.shape).astype(dtype),
                                 device=dev)
        (g,) = tape.gradient(y, [xt], output_gradients=w)
        outs[dev] = (y.numpy(), g.numpy())
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(outs["cuda"][0], outs["cpu"][0], rtol=tol, atol=tol)
    np.testing.assert_allclose(outs["cuda"][1], outs["cpu"][1], rtol=tol, atol=tol)
