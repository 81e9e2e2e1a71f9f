"""Functional transforms (grad, value_and_grad, vjp, jvp, jacobian, hessian, hvp,
batch_jacobian) and user primitives (custom_op, custom_gradient)."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag

EPS = 1e-6
RNG = np.random.default_rng(7)


def T(a):
    return ag.Tensor.from_array(np.asarray(a, dtype=np.float64), device="cpu")


def fd_jac(fn, x, eps=EPS):
    """Central-difference Jacobian of numpy fn at x: shape fn(x).shape + x.shape."""
    x = np.asarray(x, dtype=np.float64)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = eps
        e = e.reshape(x.shape)
        cols.append((np.asarray(fn(x + e)) - np.asarray(fn(x - e))) / (2 * eps))
    y0 = np.asarray(fn(x))
    return np.stack(cols, axis=-1).reshape(y0.shape + x.shape)


# ---- grad / value_and_grad ------------------------------------------------------------------


def f2(a, b):
    return (a.sin() * b).sum() + (a * a).sum() * 0.5


def test_grad_argnums_int_and_tuple():
    a, b = RNG.standard_normal(4), RNG.standard_normal(4)
    ga = ag.grad(f2)(T(a), T(b))
    np.testing.assert_allclose(ga.numpy(), np.cos(a) * b + a, rtol=1e-12)
    gb = ag.grad(f2, argnums=1)(T(a), T(b))
    np.testing.assert_allclose(gb.numpy(), np.sin(a), rtol=1e-12)
    ga2, gb2 = ag.grad(f2, argnums=(0, 1))(T(a), T(b))
    np.testing.assert_allclose(ga2.numpy(), np.cos(a) * b + a, rtol=1e-12)
    np.testing.assert_allclose(gb2.numpy(), np.sin(a), rtol=1e-12)
    gb3 = ag.grad(f2, argnums=-1)(T(a), T(b))
    np.testing.assert_allclose(gb3.numpy(), np.sin(a), rtol=1e-12)


def test_grad_of_tuple_and_list_inputs_keeps_structure():
    def f(params, x):
        w, (b, c) = params
        return ((x @ w + b).tanh() * c).sum()

    x = RNG.standard_normal((2, 3))
    w, b, c = RNG.standard_normal((3, 2)), RNG.standard_normal(2), RNG.standard_normal(2)
    g = ag.grad(f)((T(w), [T(b), T(c)]), T(x))
    assert isinstance(g, tuple) and isinstance(g[1], list)
    gw, (gb, gc) = g
    z = x @ w + b
    s = 1 - np.tanh(z) ** 2
    np.testing.assert_allclose(gw.numpy(), x.T @ (s * c), rtol=1e-12)
    np.testing.assert_allclose(gb.numpy(), (s * c).sum(0), rtol=1e-12)
    np.testing.assert_allclose(gc.numpy(), np.tanh(z).sum(0), rtol=1e-12)


def test_value_and_grad_and_aux_and_unconnected():
    a = RNG.standard_normal(3)
    v, g = ag.value_and_grad(lambda x: (x ** 3).sum())(T(a))
    np.testing.assert_allclose(v.numpy(), (a ** 3).sum(), rtol=1e-12)
    np.testing.assert_allclose(g.numpy(), 3 * a ** 2, rtol=1e-12)
    (v2, aux), g2 = ag.value_and_grad(lambda x: ((x * x).sum(), x * 2.0), has_aux=True)(T(a))
    np.testing.assert_allclose(aux.numpy(), 2 * a)
    np.testing.assert_allclose(g2.numpy(), 2 * a, rtol=1e-12)
    # a second argument f does not use: zeros, as in JAX
    g3 = ag.grad(lambda x, y: (x * x).sum(), argnums=1)(T(a), T(a))
    np.testing.assert_array_equal(g3.numpy(), np.zeros(3))


def test_grad_of_grad_nests():
    a = RNG.standard_normal(3)
    d1 = ag.grad(lambda x: (x.sin() * x).sum())
    d2 = ag.grad(lambda x: (d1(x) * T(np.ones(3))).sum())
    # d/dx_i of sum_j (cos x_j x_j + sin x_j) = -sin x_i x_i + 2 cos x_i
    np.testing.assert_allclose(d2(T(a)).numpy(), -np.sin(a) * a + 2 * np.cos(a), rtol=1e-10)


def test_grad_errors():
    with pytest.raises(ag.ShapeError, match="scalar"):
        ag.grad(lambda x: x * 2.0)(T(np.ones(3)))
    with pytest.raises(ag.ArgumentError, match="argnums"):
        ag.grad(f2, argnums=2)(T(np.ones(3)), T(np.ones(3)))
    with pytest.raises(ag.ArgumentError, match="argnums"):
        ag.grad(f2, argnums="0")(T(np.ones(3)), T(np.ones(3)))
    with pytest.raises(ag.ArgumentError):
        ag.grad(3)
    with pytest.raises(ag.DTypeError):
        ag.grad(lambda x: x.sum())(ag.Tensor.from_array(np.arange(3)))


# ---- vjp / jvp --------------------------------------------------------------------------------


def test_vjp_with_tuple_output_and_two_primals():
    a, b = RNG.standard_normal(3), RNG.standard_normal(3)
    out, vjp_fn = ag.vjp(lambda x, y: (x * y, (x.exp()).sum()), T(a), T(b))
    np.testing.assert_allclose(out[0].numpy(), a * b)
    u0, u1 = RNG.standard_normal(3), 1.7
    ga, gb = vjp_fn((T(u0), T(u1)))
    np.testing.assert_allclose(ga.numpy(), u0 * b + u1 * np.exp(a), rtol=1e-12)
    np.testing.assert_allclose(gb.numpy(), u0 * a, rtol=1e-12)
    ga2, _ = vjp_fn((T(2 * u0), T(0.0)))  # callable again
    np.testing.assert_allclose(ga2.numpy(), 2 * u0 * b, rtol=1e-12)
    with pytest.raises(ag.ShapeError):
        vjp_fn((T(np.ones(2)), T(1.0)))


def test_jvp_function():
    a, b = RNG.standard_normal(3), RNG.standard_normal(3)
    ta, tb = RNG.standard_normal(3), RNG.standard_normal(3)
    y, t = ag.jvp(lambda x, z: (x * z).tanh(), (T(a), T(b)), (T(ta), T(tb)))
    np.testing.assert_allclose(y.numpy(), np.tanh(a * b))
    np.testing.assert_allclose(t.numpy(), (1 - np.tanh(a * b) ** 2) * (ta * b + a * tb),
                               rtol=1e-12)
    _, t1 = ag.jvp(lambda x: x.sin(), T(a), T(ta))  # a single primal
    np.testing.assert_allclose(t1.numpy(), np.cos(a) * ta, rtol=1e-12)


# ---- jacobian -----------------------------------------------------------------------------------


def g_np(x):
    return np.tanh(np.outer(x, x[:2]).ravel() * 0.3) + np.sin(x).sum()


def g_ag(x):
    outer = x.reshape((-1, 1)) @ x.reshape((1, -1)) @ T(np.eye(x.shape[0])[:, :2])
    return (outer.reshape((-1,)) * 0.3).tanh() + x.sin().sum()


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_jacobian_modes_match_finite_differences(mode):
    x = RNG.standard_normal(4)
    J = ag.jacobian(g_ag, T(x), mode=mode)
    assert J.shape == (8, 4)
    np.testing.assert_allclose(J.numpy(), fd_jac(g_np, x), rtol=1e-6, atol=1e-8)


def test_jacobian_tuple_inputs_argnums_and_outputs():
    a, b = RNG.standard_normal(3), RNG.standard_normal(2)

    def f(x, y):
        return x.sin() * y.sum(), (x * 2.0).sum() * y

    Ja, Jb = ag.jacobian(lambda x, y: f(x, y)[0], (T(a), T(b)))
    np.testing.assert_allclose(Ja.numpy(), np.diag(np.cos(a) * b.sum()), rtol=1e-12)
    np.testing.assert_allclose(Jb.numpy(), np.outer(np.sin(a), np.ones(2)), rtol=1e-12)
    Jb_only = ag.jacobian(lambda x, y: f(x, y)[0], [T(a), T(b)], argnums=1)
    np.testing.assert_allclose(Jb_only.numpy(), Jb.numpy())
    (J0a, J0b), (J1a, J1b) = ag.jacobian(f, (T(a), T(b)), mode="reverse")
    np.testing.assert_allclose(J1a.numpy(), 2 * np.outer(b, np.ones(3)), rtol=1e-12)
    np.testing.assert_allclose(J1b.numpy(), 2 * a.sum() * np.eye(2), rtol=1e-12)
    np.testing.assert_allclose(J0a.numpy(), Ja.numpy())
    # a structured argument gives Jacobians in its structure
    (Jp, Jq), = ag.jacobian(lambda p: p[0] * p[1], ([T(a), T(a * 2)],))
    np.testing.assert_allclose(Jp.numpy(), np.diag(2 * a), rtol=1e-12)
    np.testing.assert_allclose(Jq.numpy(), np.diag(a), rtol=1e-12)


def test_jacobian_unconnected_is_zero_and_matrix_input():
    x = RNG.standard_normal((2, 3))
    J = ag.jacobian(lambda m: (m * m).sum(axis=0), T(x), mode="forward")
    ref = np.zeros((3, 2, 3))
    for j in range(3):
        ref[j, :, j] = 2 * x[:, j]
    np.testing.assert_allclose(J.numpy(), ref, rtol=1e-12)
    J0 = ag.jacobian(lambda m, c: c * 2.0, (T(x), T(np.ones(2))), argnums=0)
    np.testing.assert_array_equal(J0.numpy(), np.zeros((2, 2, 3)))


def test_jacobian_chunked_equals_unchunked():
    x = RNG.standard_normal(7)
    for mode in ("forward", "reverse"):
        J1 = ag.jacobian(g_ag, T(x), mode=mode)
        J2 = ag.jacobian(g_ag, T(x), mode=mode, chunk_size=3)
        np.testing.assert_allclose(J2.numpy(), J1.numpy(), rtol=1e-12, atol=1e-14)


def test_jacobian_of_grad_matches_hessian():
    x = RNG.standard_normal(3)
    H = ag.jacobian(ag.grad(lambda v: (v.sin() * v.exp()).sum()), T(x), mode="reverse")
    d = 2 * np.cos(x) * np.exp(x)
    np.testing.assert_allclose(H.numpy(), np.diag(d), rtol=1e-10, atol=1e-12)


# ---- hessian / hvp ------------------------------------------------------------------------------

A3 = RNG.standard_normal((5, 5))


def h_ag(x):
    return ((T(A3) @ x).tanh() ** 2).sum() + (x.sin() * x.reshape((5, 1))).sum()


def h_grad_np(x):
    z = A3 @ x
    t = np.tanh(z)
    g = A3.T @ (2 * t * (1 - t ** 2))
    # d/dx_k sum_{i,j} sin(x_j) x_i = cos(x_k) sum_i x_i + sum_j sin(x_j)
    return g + np.cos(x) * x.sum() + np.sin(x).sum()


def test_gradient_reference():
    x = RNG.standard_normal(5)
    np.testing.assert_allclose(ag.grad(h_ag)(T(x)).numpy(), h_grad_np(x), rtol=1e-10)


@pytest.mark.parametrize("strategy", ["auto", "mixed", "reverse", "forward"])
def test_hessian_matches_finite_differences_of_gradient(strategy):
    x = RNG.standard_normal(5)
    H = ag.hessian(h_ag, T(x), scheduler=strategy)
    ref = fd_jac(h_grad_np, x)
    np.testing.assert_allclose(H.numpy(), ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(H.numpy(), H.numpy().T, rtol=1e-10, atol=1e-12)
    H2 = ag.hessian(h_ag, T(x), scheduler=strategy, chunk_size=2)
    np.testing.assert_allclose(H2.numpy(), H.numpy(), rtol=1e-10, atol=1e-12)


def test_hessian_of_matrix_input():
    x = RNG.standard_normal((2, 2))
    H = ag.hessian(lambda m: (m ** 3).sum(), T(x))
    ref = np.zeros((2, 2, 2, 2))
    for i in range(2):
        for j in range(2):
            ref[i, j, i, j] = 6 * x[i, j]
    np.testing.assert_allclose(H.numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("strategy", ["auto", "mixed", "reverse", "forward"])
def test_hvp_matches_finite_differences_of_gradient(strategy):
    x, v = RNG.standard_normal(5), RNG.standard_normal(5)
    hv = ag.hvp(h_ag, T(x), T(v), scheduler=strategy)
    ref = (h_grad_np(x + EPS * v) - h_grad_np(x - EPS * v)) / (2 * EPS)
    np.testing.assert_allclose(hv.numpy(), ref, rtol=1e-6, atol=1e-7)


def test_hvp_errors():
    x = T(RNG.standard_normal(5))
    with pytest.raises(ag.ShapeError):
        ag.hvp(h_ag, x, T(np.ones(4)))
    with pytest.raises(ag.ShapeError, match="scalar"):
        ag.hessian(lambda v: v * 2.0, x)


# ---- batch_jacobian --------------------------------------------------------------------------

WB = RNG.standard_normal((3, 2))


def per_example(xb):
    """(B, 3) -> (B, 2, 2): rows are independent examples."""
    h = (xb @ T(WB)).tanh()  # (B, 2)
    return h.reshape((-1, 2, 1)) * xb.sin().sum(axis=1, keepdims=True).reshape((-1, 1, 1))


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_batch_jacobian_matches_loop(mode):
    xb = RNG.standard_normal((4, 3))
    x = T(xb)
    tape = ag.GradientTape(persistent=True)
    tape.watch(x)
    y = per_example(x)
    bj = tape.batch_jacobian(y, x, mode=mode)
    assert bj.shape == (4, 2, 1, 3)
    for b in range(4):
        xr = T(xb[b:b + 1])
        tb = ag.GradientTape()
        tb.watch(xr)
        yr = per_example(xr)
        jb = tb.jacobian(yr, xr, mode="reverse").numpy()[0, :, :, 0, :]
        np.testing.assert_allclose(bj.numpy()[b], jb, rtol=1e-12, atol=1e-14)
    # and the block diagonal of the full Jacobian
    full = tape.jacobian(y, x, mode="reverse").numpy()
    for b in range(4):
        np.testing.assert_allclose(bj.numpy()[b], full[b, :, :, b, :], rtol=1e-12, atol=1e-14)


def test_batch_jacobian_errors():
    x = T(RNG.standard_normal((4, 3)))
    tape = ag.GradientTape(persistent=True)
    tape.watch(x)
    y = x.sum(axis=0)
    with pytest.raises(ag.ShapeError, match="batch"):
        tape.batch_jacobian(y, x)


# ---- custom_op ----------------------------------------------------------------------------------


def _softclip_np(x, c):
    return c * np.tanh(x / c)


def _make_softclip(with_jvp, batched=False):
    def forward(xp, x, *, c=2.0):
        return c * xp.tanh(x / c)

    def vjp(g, inputs, out, *, c=2.0):
        (x,) = inputs
        return (g * (1.0 - (out / c) ** 2),)

    def jvp(ts, inputs, out, *, c=2.0):
        return ts[0] * (1.0 - (out / c) ** 2)

    return ag.custom_op(forward, vjp, jvp if with_jvp else None, name="softclip",
                        params=("c",), batched=batched)


@pytest.mark.parametrize("with_jvp", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_custom_op_unary_forward_and_reverse(with_jvp, batched):
    op = _make_softclip(with_jvp, batched)
    x = RNG.standard_normal(5) * 2
    fn = lambda v: _softclip_np(np.sin(v), 1.5) * 2.0  # noqa: E731
    f = lambda v: op(v.sin(), c=1.5) * 2.0  # noqa: E731
    ref = fd_jac(fn, x)
    np.testing.assert_allclose(f(T(x)).numpy(), fn(x), rtol=1e-12)
    with ag.GradientTape() as tape:
        xt = T(x)
        tape.watch(xt)
        s = (f(xt) * T(np.arange(5.0))).sum()
    (g,) = tape.gradient(s, [xt])
    np.testing.assert_allclose(g.numpy(), np.arange(5.0) @ ref, rtol=1e-6, atol=1e-8)
    for mode in ("forward", "reverse"):
        J = ag.jacobian(f, T(x), mode=mode)
        np.testing.assert_allclose(J.numpy(), ref, rtol=1e-6, atol=1e-8)
    v = RNG.standard_normal(5)
    _, t = ag.jvp(f, (T(x),), (T(v),))
    np.testing.assert_allclose(t.numpy(), ref @ v, rtol=1e-6, atol=1e-8)


def _make_mulexp(with_jvp):
    """z = a * exp(b), two inputs (b broadcast against a by the engine's unbroadcast)."""

    def forward(xp, a, b):
        return a * xp.exp(b)

    def vjp(g, inputs, out):
        a, b = inputs
        return g * (out / a), g * out

    def jvp(ts, inputs, out):
        a, b = inputs
        ta, tb = ts
        r = None
        if ta is not None:
            r = ta * b.exp()
        if tb is not None:
            r = tb * out if r is None else r + tb * out
        return r

    return ag.custom_op(forward, vjp, jvp if with_jvp else None, name="mulexp")


@pytest.mark.parametrize("with_jvp", [True, False])
def test_custom_op_two_inputs_and_second_order(with_jvp):
    op = _make_mulexp(with_jvp)
    a, b = RNG.uniform(0.5, 1.5, 4), RNG.standard_normal(4)

    def fn(v):
        return (v[:4] * np.exp(v[4:]) * np.sin(v[:4])).sum()

    f = lambda v: (op(v[0], v[1]) * v[0].sin()).sum()  # noqa: E731
    (ga, gb) = ag.grad(f)((T(a), T(b)))
    full = np.concatenate([a, b])
    gref = fd_jac(fn, full)
    np.testing.assert_allclose(np.concatenate([ga.numpy(), gb.numpy()]), gref, rtol=1e-6,
                               atol=1e-8)
    # second order through the user rules (forward-over-reverse uses the jvp or its transpose)
    sa, sb = T(np.eye(8)[:4]), T(np.eye(8)[4:])
    fvec = lambda v: (op(sa @ v, sb @ v) * (sa @ v).sin()).sum()  # noqa: E731
    H = ag.hessian(fvec, T(full)).numpy()

    def grad_np(v):
        return fd_jac(fn, v, eps=1e-5)

    Href = fd_jac(grad_np, full, eps=1e-4)
    np.testing.assert_allclose(H, Href, rtol=1e-4, atol=1e-5)
    Hr = ag.hessian(fvec, T(full), scheduler="reverse").numpy()
    np.testing.assert_allclose(Hr, H, rtol=1e-9, atol=1e-10)


def test_custom_op_class_decorator_and_tensor_forward():
    @ag.custom_op
    class Cube:
        """y = x^3 written as a composite of ag ops"""

        tensor_forward = True

        @staticmethod
        def forward(x):
            return x * x * x

        @staticmethod
        def vjp(g, inputs, out):
            return (g * 3.0 * inputs[0] * inputs[0],)

    x = RNG.standard_normal(3)
    assert "x^3" in Cube.op.doc
    np.testing.assert_allclose(Cube(T(x)).numpy(), x ** 3, rtol=1e-12)
    np.testing.assert_allclose(ag.grad(lambda v: Cube(v).sum())(T(x)).numpy(), 3 * x ** 2,
                               rtol=1e-12)
    np.testing.assert_allclose(ag.jacobian(Cube, T(x), mode="forward").numpy(),
                               np.diag(3 * x ** 2), rtol=1e-12)
    np.testing.assert_allclose(ag.hessian(lambda v: Cube(v).sum(), T(x)).numpy(),
                               np.diag(6 * x), rtol=1e-10)
    with pytest.raises(ag.ArgumentError, match="1 inputs"):
        Cube(T(x), T(x))


def test_custom_op_not_in_global_registry_and_errors():
    op = _make_softclip(True)
    assert "softclip" not in ag.REGISTRY
    with pytest.raises(ag.ArgumentError):
        ag.custom_op(lambda xp, x: x, "not callable")
    bad = ag.custom_op(lambda xp, x: x * 2, lambda g, ins, out: (g, g), name="bad")
    with ag.GradientTape() as tape:
        x = T(np.ones(2))
        tape.watch(x)
        y = bad(x)
    with pytest.raises(ag.ArgumentError, match="2 gradients|1 gradients"):
        tape.gradient(y, [x])
    assert op.op.name == "softclip"


def test_user_forward_errors_pass_through_as_raised():
    """A TypeError or ValueError inside a user primitive's forward is a bug in that code: it
    reaches the caller as raised (with a note naming the primitive), not re-labelled as the
    DTypeError/ShapeError the registry gives NumPy's own errors, recording or not."""
    calls = []

    def broken_type(xp, x):
        calls.append("type")
        raise TypeError("user bug: unsupported operand")

    def broken_value(xp, x):
        calls.append("value")
        raise ValueError("user bug: bad value")

    for fwd, kind in ((broken_type, TypeError), (broken_value, ValueError)):
        op = ag.custom_op(fwd, lambda g, ins, out: (g,), name=f"broken_{kind.__name__}")
        x = T(np.ones(3))
        with pytest.raises(kind, match="user bug") as info:
            op(x)
        assert not isinstance(info.value, ag.AutogradError)
        assert any("broken_" in note for note in info.value.__notes__)
        with ag.GradientTape() as tape:
            tape.watch(x)
            with pytest.raises(kind, match="user bug") as info:
                op(x)
        assert any("broken_" in note for note in info.value.__notes__)
    # the user's code runs once per call, recording or not: a user function with side effects
    # must not see them twice (the compiled recording path must not hand the error to a path
    # that runs the forward again to translate it)
    assert calls == ["type", "type", "value", "value"]
    # NumPy's own error in a library op is still translated
    with pytest.raises(ag.ShapeError):
        ag.matmul(T(np.ones((2, 3))), T(np.ones((2, 3))))


def test_numerical_checker_checks_user_ops():
    op = _make_softclip(False)
    x = T(RNG.standard_normal(4))
    res = ag.NumericalChecker().check_gradient_central(lambda v: (op(v) * v).sum(), x)
    assert res.is_valid and res.max_error < 1e-5
    wrong = ag.custom_op(lambda xp, v: xp.sin(v), lambda g, ins, out: (g * 2.0,), name="wrong")
    res2 = ag.NumericalChecker().check_gradient_central(lambda v: wrong(v).sum(), x)
    assert not res2.is_valid


def test_custom_gradient_decorator():
    @ag.custom_gradient
    def log1pexp(x):
        e = x.exp()

        def grad_fn(dy):
            return dy * (1.0 - 1.0 / (1.0 + e))

        return (e + 1.0).log(), grad_fn

    x = np.array([-3.0, 0.5, 50.0])
    np.testing.assert_allclose(log1pexp(T(x)).numpy(), np.log1p(np.exp(x)), rtol=1e-12)
    g = ag.grad(lambda v: log1pexp(v).sum())(T(x))
    np.testing.assert_allclose(g.numpy(), 1 / (1 + np.exp(-x)), rtol=1e-12)
    J = ag.jacobian(log1pexp, T(x), mode="forward")  # transpose of the custom vjp
    np.testing.assert_allclose(J.numpy(), np.diag(1 / (1 + np.exp(-x))), rtol=1e-12)


def test_transforms_leave_no_marks_on_their_inputs():
    x = T(RNG.standard_normal(3))
    for _ in range(3):
        ag.grad(lambda v: (v * v).sum())(x)
        ag.jacobian(lambda v: v.sin(), x)
        ag.jvp(lambda v: v.sin(), (x,), (T(np.ones(3)),))
        ag.hessian(lambda v: (v ** 3).sum(), x, scheduler="reverse")
        ag.vjp(lambda v: v.exp(), x)
    assert not x._tapes  # no stale tape ids: later ops on x do not filter them
    assert not x._fw  # no stale tangents


@pytest.mark.parametrize("strategy", ["mixed", "reverse", "forward"])
def test_hvp_and_hessian_are_differentiable_again(strategy):
    def f(v):
        return (v.sin() * v * v).sum()

    x, v, w = RNG.standard_normal(3), RNG.standard_normal(3), RNG.standard_normal(3)
    Wm = RNG.standard_normal((3, 3))

    def hv_np(xn):
        return float(ag.hvp(f, T(xn), T(v), scheduler=strategy).numpy() @ w)

    def h_np(xn):
        return float(np.sum(ag.hessian(f, T(xn), scheduler=strategy).numpy() * Wm))

    g1 = ag.grad(lambda xt: (ag.hvp(f, xt, T(v), scheduler=strategy) * T(w)).sum())(T(x))
    np.testing.assert_allclose(g1.numpy(), fd_jac(hv_np, x), rtol=1e-5, atol=1e-7)
    g2 = ag.grad(lambda xt: (ag.hessian(f, xt, scheduler=strategy) * T(Wm)).sum())(T(x))
    np.testing.assert_allclose(g2.numpy(), fd_jac(h_np, x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_jacobian_is_differentiable_again(mode):
    x, W = RNG.standard_normal(3), RNG.standard_normal((4, 3))

    def s_np(xn):  # sum of the Jacobian of tanh(W x): sum_ij (1 - tanh(Wx)_i^2) W_ij
        return float(((1 - np.tanh(W @ xn) ** 2)[:, None] * W).sum())

    g = ag.grad(lambda v: ag.jacobian(lambda u: (T(W) @ u).tanh(), v, mode=mode).sum())(T(x))
    np.testing.assert_allclose(g.numpy(), fd_jac(s_np, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_batch_jacobian_is_differentiable_again(mode):
    xb = RNG.standard_normal((2, 3))

    def s(xt):
        tape = ag.GradientTape()
        tape.watch(xt)
        y = per_example(xt)
        return (tape.batch_jacobian(y, xt, mode=mode) ** 2).sum()

    def s_np(xn):
        return float(s(T(xn)).numpy())

    g = ag.grad(s)(T(xb))
    np.testing.assert_allclose(g.numpy(), fd_jac(s_np, xb), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
def test_hessian_of_activations_agrees_across_strategies(act):
    """The activations' vjp primitives (tanh_grad, sigmoid_grad, relu_grad) under every nesting:
    forward-over-forward, forward-over-reverse and reverse-over-reverse Hessians agree."""
    x = RNG.standard_normal(6)
    A = RNG.standard_normal((6, 6))

    def f(v):
        z = getattr(ag, act)(T(A) @ v)
        return (z * z * v).sum()

    hs = [ag.hessian(f, T(x), scheduler=s).numpy() for s in ("forward", "mixed", "reverse")]
    for h in hs[1:]:
        np.testing.assert_allclose(h, hs[0], rtol=1e-10, atol=1e-12)
