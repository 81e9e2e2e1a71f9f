"""Forward mode: ForwardAccumulator, nesting, and tape.forward_gradient (replay of the graph)."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag

EPS = 1e-6


def T(a):
    return ag.Tensor.from_array(np.asarray(a, dtype=np.float64), device="cpu")


def fd_dir(fn, x, v, eps=EPS):
    """Central difference of numpy-valued fn(x) along v."""
    return (fn(x + eps * v) - fn(x - eps * v)) / (2 * eps)


RNG = np.random.default_rng(1234)
W = RNG.standard_normal((4, 3))
B = RNG.standard_normal(3)


def comp(x):
    """A composite of many primitives: matmul, broadcasting, reductions, reshape, transpose."""
    h = (T(W).T @ x.reshape((4, 2))).tanh()  # (3, 2)
    h = h * x.reshape((2, 4)).sum(axis=1) + T(B).reshape((3, 1))
    h = h.exp() / (1.0 + h.sin() ** 2)
    return (h.transpose() * 0.5 + h.mean(axis=1, keepdims=True).T).sqrt()


def comp_np(xn):
    h = np.tanh(W.T @ xn.reshape(4, 2))
    h = h * xn.reshape(2, 4).sum(axis=1) + B.reshape(3, 1)
    h = np.exp(h) / (1.0 + np.sin(h) ** 2)
    return np.sqrt(h.T * 0.5 + h.mean(axis=1, keepdims=True).T)


def test_composite_reference_matches():
    x = RNG.uniform(0.1, 0.5, 8)
    np.testing.assert_allclose(comp(T(x)).numpy(), comp_np(x), rtol=1e-12)


def test_accumulator_jvp_matches_central_differences():
    x = RNG.uniform(0.1, 0.5, 8)
    v = RNG.standard_normal(8)
    xt = T(x)
    with ag.ForwardAccumulator(xt, T(v)) as acc:
        y = comp(xt)
    t = acc.jvp(y).numpy()
    np.testing.assert_allclose(t, fd_dir(comp_np, x, v), rtol=1e-6, atol=1e-8)
    # the primal value is unchanged by forward mode
    np.testing.assert_allclose(y.numpy(), comp_np(x), rtol=1e-12)


def test_accumulator_batched_tangents_equal_one_at_a_time():
    x = RNG.uniform(0.1, 0.5, 8)
    vs = RNG.standard_normal((3, 8))
    xt = T(x)
    with ag.ForwardAccumulator(xt, T(vs), batch_nd=1) as acc:
        y = comp(xt)
    tb = acc.jvp(y).numpy()
    assert tb.shape == (3,) + y.shape
    for k in range(3):
        x1 = T(x)
        with ag.ForwardAccumulator(x1, T(vs[k])) as a1:
            y1 = comp(x1)
        np.testing.assert_allclose(tb[k], a1.jvp(y1).numpy(), rtol=1e-12, atol=1e-14)


def test_accumulator_several_primals_and_lists():
    a, b = RNG.standard_normal(5), RNG.standard_normal(5)
    ta, tb = RNG.standard_normal(5), RNG.standard_normal(5)
    xa, xb = T(a), T(b)
    with ag.ForwardAccumulator([xa, xb], [T(ta), T(tb)]) as acc:
        y = (xa * xb).sin()
        z = xa.exp()
    ty, tz = acc.jvp([y, z])
    np.testing.assert_allclose(ty.numpy(), np.cos(a * b) * (ta * b + a * tb), rtol=1e-12)
    np.testing.assert_allclose(tz.numpy(), np.exp(a) * ta, rtol=1e-12)


def test_unconnected_and_after_exit():
    x = T(RNG.standard_normal(4))
    c = T(RNG.standard_normal(4))
    with ag.ForwardAccumulator(x, T(np.ones(4))) as acc:
        y = x * 3.0
        w = c.exp()
    assert acc.jvp(w) is None
    np.testing.assert_array_equal(acc.jvp(w, unconnected_gradients="zero").numpy(), np.zeros(4))
    # tangents computed inside stay readable; ops after the block do not propagate
    np.testing.assert_allclose(acc.jvp(y).numpy(), 3.0 * np.ones(4))
    z = y * 2.0
    assert acc.jvp(z) is None


def test_forward_over_forward_second_directional_derivative():
    x = RNG.uniform(0.1, 0.5, 8)
    u, v = RNG.standard_normal(8), RNG.standard_normal(8)
    xt = T(x)
    with ag.ForwardAccumulator(xt, T(u)) as outer:
        with ag.ForwardAccumulator(xt, T(v)) as inner:
            y = comp(xt)
        tv = inner.jvp(y)
    second = outer.jvp(tv).numpy()

    def jv(xn):
        x1 = T(xn)
        with ag.ForwardAccumulator(x1, T(v)) as a:
            y1 = comp(x1)
        return a.jvp(y1).numpy()

    np.testing.assert_allclose(second, fd_dir(jv, x, u), rtol=1e-5, atol=1e-7)


def test_forward_over_reverse_is_hvp():
    x = RNG.uniform(0.1, 0.5, 8)
    v = RNG.standard_normal(8)
    xt = T(x)
    with ag.ForwardAccumulator(xt, T(v)) as acc:
        with ag.GradientTape() as tape:
            tape.watch(xt)
            s = (comp(xt) ** 2).sum()
        (g,) = tape.gradient(s, [xt])
    hv = acc.jvp(g).numpy()

    def grad_np(xn):
        x1 = T(xn)
        with ag.GradientTape() as tp:
            tp.watch(x1)
            s1 = (comp(x1) ** 2).sum()
        return tp.gradient(s1, [x1])[0].numpy()

    np.testing.assert_allclose(hv, fd_dir(grad_np, x, v), rtol=1e-5, atol=1e-7)


def test_reverse_over_forward():
    x = RNG.uniform(0.1, 0.5, 8)
    v = RNG.standard_normal(8)
    w = RNG.standard_normal((2, 3))
    xt = T(x)
    with ag.GradientTape() as tape:
        tape.watch(xt)
        with ag.ForwardAccumulator(xt, T(v)) as acc:
            y = comp(xt)
        s = (acc.jvp(y) * T(w)).sum()
    (g,) = tape.gradient(s, [xt])

    def h(xn):
        x1 = T(xn)
        with ag.ForwardAccumulator(x1, T(v)) as a:
            y1 = comp(x1)
        return np.sum(a.jvp(y1).numpy() * w)

    e = np.eye(8)
    ref = np.array([fd_dir(h, x, e[i]) for i in range(8)])
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-5, atol=1e-7)


# ---- random compositions: forward replay == reverse-mode Jacobian ----------------------------

UNARY = [
    lambda a: a.sin(), lambda a: a.tanh(), lambda a: (a * 0.3).exp(), lambda a: a.sigmoid(),
    lambda a: (a * a + 1.0).sqrt(), lambda a: (a * a + 1.0).log(), lambda a: a.cos() * 2.0,
]
BINARY = [
    lambda a, b: a * b, lambda a, b: a + b, lambda a, b: a - b * 0.5,
    lambda a, b: a / (b * b + 1.0),
]


def random_program(rng, depth):
    """A random straight-line program on a (3, 4) input: unary, binary, matmul, reductions with
    broadcasting, transposes. Returns f(x) -> Tensor."""
    W = rng.standard_normal((4, 4))
    steps = []
    for _ in range(depth):
        kind = rng.integers(0, 5)
        if kind == 0:
            steps.append(("u", int(rng.integers(len(UNARY)))))
        elif kind == 1:
            steps.append(("b", int(rng.integers(len(BINARY)))))
        elif kind == 2:
            steps.append(("mm", None))
        elif kind == 3:
            steps.append(("red", int(rng.integers(2))))
        else:
            steps.append(("tt", None))

    def f(x):
        pool = [x]
        h = x
        for kind, k in steps:
            if kind == "u":
                h = UNARY[k](h)
            elif kind == "b":
                h = BINARY[k](h, pool[len(pool) // 2])
            elif kind == "mm":
                h = (h @ T(W)) * 0.5
            elif kind == "red":
                h = h * h.mean(axis=k, keepdims=True)
            else:
                h = h.T.reshape((4, 3)).reshape((3, 4))
            pool.append(h)
        return h.sum(axis=0)

    return f


@pytest.mark.parametrize("seed", range(8))
def test_forward_gradient_equals_reverse_jacobian(seed):
    rng = np.random.default_rng(seed)
    f = random_program(rng, depth=int(rng.integers(3, 9)))
    x = T(rng.uniform(-1.0, 1.0, (3, 4)))
    tape = ag.GradientTape(persistent=True)
    tape.watch(x)
    y = f(x)
    jf = tape.forward_gradient(x, y)
    jr = tape.jacobian(y, x, mode="reverse")
    assert jf.shape == y.shape + x.shape == (4, 3, 4)
    np.testing.assert_allclose(jf.numpy(), jr.numpy(), rtol=1e-10, atol=1e-12)
    # a JVP through the replay is the Jacobian applied to the tangent
    t = rng.standard_normal((3, 4))
    jv = tape.forward_gradient(x, y, tangent=T(t))
    np.testing.assert_allclose(jv.numpy(), np.tensordot(jr.numpy(), t, axes=2), rtol=1e-10,
                               atol=1e-12)
    # and central differences agree with both
    def fn(xn):
        with ag.no_grad():
            return f(T(xn)).numpy()

    np.testing.assert_allclose(jv.numpy(), fd_dir(fn, x.numpy(), t), rtol=1e-5, atol=1e-7)
    # chunked replay gives the same Jacobian
    jc = tape.forward_gradient(x, y, chunk_size=5)
    np.testing.assert_allclose(jc.numpy(), jf.numpy(), rtol=1e-12, atol=1e-14)


def test_forward_gradient_lists_and_unconnected():
    a = T(RNG.standard_normal(3))
    b = T(RNG.standard_normal(2))
    tape = ag.GradientTape(persistent=True)
    tape.watch([a, b])
    y = a.sin() * 2.0
    z = b.exp().sum() * a
    ta, tb = RNG.standard_normal(3), RNG.standard_normal(2)
    ty, tz = tape.forward_gradient([a, b], [y, z], tangent=[T(ta), T(tb)])
    an, bn = a.numpy(), b.numpy()
    np.testing.assert_allclose(ty.numpy(), 2 * np.cos(an) * ta, rtol=1e-12)
    np.testing.assert_allclose(tz.numpy(), np.exp(bn).sum() * ta + np.exp(bn) @ tb * an,
                               rtol=1e-12)
    (jya, jyb), _ = tape.forward_gradient([a, b], [y, z])
    np.testing.assert_allclose(jya.numpy(), np.diag(2 * np.cos(an)), rtol=1e-12)
    assert jyb is None  # y does not depend on b
    jyb0 = tape.forward_gradient(b, y, unconnected_gradients="zero")
    np.testing.assert_array_equal(jyb0.numpy(), np.zeros((3, 2)))


def test_forward_gradient_on_non_persistent_tape_is_consumed():
    x = T(RNG.standard_normal(3))
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = x.tanh()
    j = tape.forward_gradient(x, y)
    np.testing.assert_allclose(j.numpy(), np.diag(1 - np.tanh(x.numpy()) ** 2), rtol=1e-12)
    with pytest.raises(ag.TapeError, match="persistent=True"):
        tape.gradient(y, [x])


# ---- errors -------------------------------------------------------------------------------


def test_wrong_tangent_shape_raises_shape_error():
    x = T(RNG.standard_normal(3))
    with pytest.raises(ag.ShapeError, match=r"expected shape \(3,\)"):
        ag.ForwardAccumulator(x, T(np.ones(4)))
    with pytest.raises(ag.ShapeError, match="2 entries"):
        ag.ForwardAccumulator([x, x], [T(np.ones(3))])
    tape = ag.GradientTape(persistent=True)
    tape.watch(x)
    y = x.sin()
    with pytest.raises(ag.ShapeError, match="tangent"):
        tape.forward_gradient(x, y, tangent=T(np.ones((3, 1))))
    with pytest.raises(ag.ShapeError):
        ag.jvp(lambda a: a.sin(), (x,), (T(np.ones(2)),))


def test_bad_arguments():
    x = T(RNG.standard_normal(3))
    with pytest.raises(ag.ArgumentError):
        ag.ForwardAccumulator("x", 1.0)
    with ag.ForwardAccumulator(x, T(np.ones(3))) as acc:
        y = x * 2.0
    with pytest.raises(ag.ArgumentError):
        acc.jvp(np.ones(3))
    with pytest.raises(ag.ArgumentError):
        acc.jvp(y, unconnected_gradients="zeros!")
    tape = ag.GradientTape(persistent=True)
    z = x.sin()
    with pytest.raises(ag.TapeError, match="watch"):
        tape.forward_gradient(x, z)


def test_forward_gradient_after_gradient_on_non_persistent_tape():
    x = T(RNG.standard_normal(3))
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = x.sin()
    (g,) = tape.gradient(y, [x])
    np.testing.assert_allclose(g.numpy(), np.cos(x.numpy()), rtol=1e-12)
    with pytest.raises(ag.TapeError, match="persistent=True"):
        tape.forward_gradient(x, y)


def test_forward_gradient_chunks_under_a_memory_budget():
    x = T(RNG.standard_normal(40))
    cfg = ag.SchedulerConfig(memory_budget_mb=0.01)  # ~1300 float64: a few directions a chunk
    tape = ag.GradientTape(persistent=True, scheduler=cfg)
    tape.watch(x)
    y = (x.reshape((40, 1)) * x.reshape((1, 40))).tanh().sum(axis=1)
    jf = tape.forward_gradient(x, y)
    jr = tape.jacobian(y, x, mode="reverse")
    np.testing.assert_allclose(jf.numpy(), jr.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch", [(2,), (3, 2), (4,)])
def test_batched_tangents_through_a_batched_matrix_vector_product(batch):
    """(..., m, k) @ (k,) and (k,) @ (..., k, n) with a batch of tangents on the vector: the
    tangents' batch axis was matmul-broadcast against the matrix's leading axes, which gave
    wrong values without an error when their lengths matched (2 here) and raised otherwise."""
    rng = np.random.default_rng(11)
    a = ag.Tensor.from_array(rng.standard_normal(batch + (3, 4)))
    b = ag.Tensor.from_array(rng.standard_normal(batch + (4, 3)))
    v = ag.Tensor.from_array(rng.standard_normal(4))
    jf = ag.jacobian(lambda x: a @ x, v, mode="forward").numpy()
    assert np.allclose(jf, a.numpy(), rtol=1e-12, atol=1e-12)
    jf = ag.jacobian(lambda x: x @ b, v, mode="forward").numpy()
    assert np.allclose(jf, np.swapaxes(b.numpy(), -1, -2), rtol=1e-12, atol=1e-12)
    h = ag.hessian(lambda x: ((a @ x) ** 2).sum(), v).numpy()
    flat = a.numpy().reshape(-1, 4)
    assert np.allclose(h, 2 * flat.T @ flat, rtol=1e-12, atol=1e-12)


LOW_AND_FULL = [np.float16, ag.dtypes.bfloat16, np.float32, np.float64]


@pytest.mark.parametrize("dtype", LOW_AND_FULL, ids=["float16", "bfloat16", "float32", "float64"])
def test_tangents_have_their_primal_dtype(dtype):
    """Every tangent has the dtype of the value it belongs to: tangents given in float64 take
    the primal's dtype, rules whose constants promote 16-bit arrays (where, clip, sigmoid with
    Python floats) are cast back, a float64 intermediate carries a float64 tangent."""
    xv = np.array([-1.5, -0.25, 0.5, 2.0])
    x = ag.Tensor.from_array(xv.astype(dtype))
    tv = np.array([1.0, -2.0, 0.5, 3.0])  # float64, on purpose

    def f(x):
        a = ag.sigmoid(x) * 2.0
        b = ag.where(x > 0, a, 0.5)
        c = ag.clip(b, 0.1, 1.5) + ag.maximum(x, 0.25)
        wide = ag.astype(c, np.float64) * 3.0
        return [x, c, wide, ag.astype(wide, dtype) - x, ag.relu(x) ** 2]

    ys, ts = ag.jvp(f, (x,), (tv,))
    for k, (y, t) in enumerate(zip(ys, ts)):
        assert t.dtype == y.dtype, f"output {k}: tangent {t.dtype} for a {y.dtype} value"
    assert ts[2].dtype == np.float64 and ts[0].dtype == np.dtype(dtype)

    # the same through an accumulator: intermediates, the primal itself, an unconnected zero
    with ag.ForwardAccumulator(x, tv) as acc:
        ys = f(x)
        z = ag.Tensor.from_array(np.ones(4, dtype))
    for k, y in enumerate(ys):
        assert acc.jvp(y).dtype == y.dtype, f"accumulator output {k}"
    assert acc.jvp(z, unconnected_gradients="zero").dtype == np.dtype(dtype)

    # values against float64 (the 16-bit dtypes to their precision)
    _, ref_t = ag.jvp(f, (ag.Tensor.from_array(xv),), (tv,))
    tol = {2: 2e-2, 4: 1e-5, 8: 1e-12}[np.dtype(dtype).itemsize]
    for k, (t, r) in enumerate(zip(ts, ref_t)):
        np.testing.assert_allclose(t.numpy().astype(np.float64), r.numpy(), rtol=tol, atol=tol,
                                   err_msg=f"output {k}")

    # forward mode over a recorded tape
    with ag.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = ag.astype(ag.clip(ag.sigmoid(x), 0.2, 0.8) * 2.0, np.float64)
        w = ag.where(x > 0, x, 0.5)
    assert tape.forward_gradient(x, y, tangent=tv).dtype == np.float64
    assert tape.forward_gradient(x, w, tangent=tv).dtype == np.dtype(dtype)
