"""ag.integrate.odeint: values against scipy.integrate.solve_ivp (and JAX's odeint when JAX is
installed), adjoint gradients against central differences and against backpropagation through
an explicit solver's steps, the traced right-hand side against eager calls, memory independent
of the number of steps, a Lotka-Volterra fit, and errors."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import minimize

import autograd_gpu as ag
from autograd_gpu import integrate
from autograd_gpu.integrate import ODEIntegrationError, odeint

R = np.array([1.0, -0.5, -0.8])
A = np.array([[-0.1, -0.4, 0.0], [0.3, -0.05, -0.2], [0.0, 0.25, -0.05]])
Y0 = np.array([1.0, 0.8, 0.5])


def T(a):
    return ag.Tensor.from_array(np.asarray(a, dtype=np.float64))


def lv(y, t, r, a):
    return y * (r + a @ y)


def _reference(fun, y0, ts):
    sol = solve_ivp(lambda t, y: fun(y, t), (ts[0], ts[-1]), y0, t_eval=ts, method="DOP853",
                    rtol=1e-13, atol=1e-13)
    return sol.y.T


def test_lotka_volterra_matches_solve_ivp():
    ts = np.linspace(0.0, 20.0, 200)
    ys = odeint(lv, T(Y0), T(ts), T(R), T(A))
    assert ys.shape == (200, 3)
    ref = _reference(lambda y, t: lv(y, t, R, A), Y0, ts)
    np.testing.assert_allclose(ys.numpy(), ref, rtol=1e-6, atol=1e-7)
    tight = odeint(lv, T(Y0), T(ts), T(R), T(A), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tight.numpy(), ref, rtol=1e-10, atol=1e-11)


def test_time_dependent_and_exact_solutions():
    ts = np.array([0.0, 0.5, 1.0, 3.0, 3.0, 7.0])  # a repeated time too
    ys = odeint(lambda y, t: ag.cos(t) * y, T([1.0, -2.0]), T(ts), rtol=1e-11, atol=1e-11)
    exact = np.exp(np.sin(ts))[:, None] * np.array([1.0, -2.0])
    np.testing.assert_allclose(ys.numpy(), exact, rtol=1e-9)
    one = odeint(lambda y, t, k: -k * y, T([3.0]), T([2.0]), T(0.7))  # a single time: y0
    np.testing.assert_allclose(one.numpy(), [[3.0]])


def test_pytree_state_and_arguments():
    # y = {"x": (2,), "v": (2, 2)}: a damped oscillator per column, args a dict and a number
    def f(y, t, p, scale):
        return {"x": y["v"][0] * scale, "v": ag.stack([-p["k"] * y["x"], -p["c"] * y["v"][1]])}

    y0 = {"x": T([1.0, 0.5]), "v": T([[0.0, 0.2], [1.0, -1.0]])}
    ts = np.linspace(0.0, 2.0, 5)
    out = odeint(f, y0, T(ts), {"k": T(2.0), "c": T(0.3)}, 1.5, rtol=1e-11, atol=1e-11)
    assert set(out) == {"x", "v"} and out["x"].shape == (5, 2) and out["v"].shape == (5, 2, 2)

    def flat(y, t):
        x, v = y[:2], y[2:].reshape(2, 2)
        return np.concatenate([v[0] * 1.5, np.stack([-2.0 * x, -0.3 * v[1]]).ravel()])

    ref = _reference(flat, np.array([1.0, 0.5, 0.0, 0.2, 1.0, -1.0]), ts)
    np.testing.assert_allclose(out["x"].numpy(), ref[:, :2], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(out["v"].numpy().reshape(5, 4), ref[:, 2:], rtol=1e-9,
                               atol=1e-10)


def test_matches_jax_odeint():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from jax.experimental.ode import odeint as jodeint  # (optional reference)

    ts = np.linspace(0.0, 30.0, 300)
    ys = odeint(lv, T(Y0), T(ts), T(R), T(A))
    jys = jodeint(lambda y, t, r, a: y * (r + a @ y), jax.numpy.asarray(Y0),
                  jax.numpy.asarray(ts), jax.numpy.asarray(R), jax.numpy.asarray(A))
    # the same algorithm and the same steps: equal up to rounding
    np.testing.assert_allclose(ys.numpy(), np.asarray(jys), rtol=1e-11, atol=1e-12)


# ---- gradients ------------------------------------------------------------------------------


def _loss(ts_, data, tol=1e-10, trace=True):
    def loss(r, a, y0, ts):
        ys = odeint(lv, y0, ts, r, a, rtol=tol, atol=tol, trace=trace)
        return ag.sum(ag.square(ys - T(data)) * T(np.linspace(1.0, 2.0, len(ts_)))[:, None])

    return loss


def _central(fn, args, i, h=1e-6):
    base = [np.array(a, dtype=np.float64) for a in args]
    out = np.zeros_like(base[i])
    for j in np.ndindex(base[i].shape):
        up = [b.copy() for b in base]
        dn = [b.copy() for b in base]
        up[i][j] += h
        dn[i][j] -= h
        out[j] = (float(fn(*map(T, up)).numpy()) - float(fn(*map(T, dn)).numpy())) / (2 * h)
    return out


def test_adjoint_gradients_match_central_differences():
    ts = np.array([0.0, 0.7, 1.5, 2.0, 3.2])
    data = _reference(lambda y, t: lv(y, t, R, A), Y0, ts) * 1.05
    loss = _loss(ts, data)
    args = [R * 1.1, A, Y0, ts]
    got = ag.grad(loss, argnums=(0, 1, 2, 3))(*map(T, args))
    for i in range(4):
        want = _central(loss, args, i)
        np.testing.assert_allclose(got[i].numpy(), want, rtol=2e-6, atol=1e-7,
                                   err_msg=f"argument {i}")


def _rk4_steps(r, a, y0, ts, per=400):
    """An explicit fixed-step RK4 in ag ops: reverse mode through its recorded steps is the
    direct-differentiation reference."""
    out = [y0]
    y = y0
    for k in range(len(ts) - 1):
        t0, t1 = ts[k], ts[k + 1]
        h = (t1 - t0) / per
        for j in range(per):
            t = t0 + j * h
            k1 = lv(y, t, r, a)
            k2 = lv(y + 0.5 * h * k1, t, r, a)
            k3 = lv(y + 0.5 * h * k2, t, r, a)
            k4 = lv(y + h * k3, t, r, a)
            y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        out.append(y)
    return ag.stack(out)


def test_adjoint_matches_backprop_through_solver_steps():
    ts = np.array([0.0, 1.0, 2.5])
    data = _reference(lambda y, t: lv(y, t, R, A), Y0, ts) * 0.97

    def direct(r, a, y0):
        return ag.sum(ag.square(_rk4_steps(r, a, y0, ts) - T(data)))

    def adjoint(r, a, y0):
        ys = odeint(lv, y0, T(ts), r, a, rtol=1e-12, atol=1e-12)
        return ag.sum(ag.square(ys - T(data)))

    args = [T(R), T(A), T(Y0)]
    want = ag.grad(direct, argnums=(0, 1, 2))(*args)
    got = ag.grad(adjoint, argnums=(0, 1, 2))(*args)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-7, atol=1e-9)


def test_traced_and_eager_evaluations_agree():
    # trace=False: func called eagerly and the adjoint solved one interval after another (JAX's
    # reverse pass); traced: the recording replayed and every interval's adjoint solved at once
    # (_transitions). The forward values are the same primitives on the same arrays; the
    # gradients are two solves of one adjoint system, equal to the tolerance.
    ts = np.linspace(0.0, 5.0, 30)
    data = np.ones((30, 3))
    args = [T(R), T(A), T(Y0), T(ts)]
    for tol, rtol in ((1e-8, 2e-6), (1e-12, 1e-9)):
        traced = ag.value_and_grad(_loss(ts, data, tol, True), argnums=(0, 1, 2, 3))(*args)
        eager = ag.value_and_grad(_loss(ts, data, tol, False), argnums=(0, 1, 2, 3))(*args)
        assert traced[0].numpy() == eager[0].numpy()
        for a, b in zip(traced[1], eager[1]):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol,
                                       atol=rtol * np.abs(b.numpy()).max())


def test_sequential_adjoint_replays_the_recording(monkeypatch):
    # a batched state over the limit: the interval-by-interval solve, with func's recording
    # replayed for its vjp; the same primitives as eager calls, so the same numbers
    ts = np.linspace(0.0, 5.0, 12)
    data = np.ones((12, 3))
    args = [T(R), T(A), T(Y0), T(ts)]
    eager = ag.grad(_loss(ts, data, 1e-8, False), argnums=(0, 1, 2, 3))(*args)
    monkeypatch.setattr(integrate, "_PARALLEL_LIMIT", 0)
    traced = ag.grad(_loss(ts, data, 1e-8, True), argnums=(0, 1, 2, 3))(*args)
    for a, b in zip(traced, eager):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-13, atol=1e-13)


def test_generated_replay_equals_the_loop_and_eager_calls():
    # Program.value is generated code (a line per step); the loop replay and func itself are
    # the references, for outputs that are a step's, an input and a constant
    from autograd_gpu import _odetrace as tr

    c = T([1.0, 2.0, 3.0])
    funcs = [lambda y, t, r, a: y * (r + a @ y) + ag.sin(t) * c - 2.0,
             lambda y, t, r, a: y,
             lambda y, t, r, a: c]
    first = [Y0, np.asarray(0.3), R, A]
    for fn in funcs:
        prog, why, _ = tr.compile_checked(fn, first, lambda f: [Y0 + 0.1, np.asarray(0.5), R, A],
                                          c._bk)
        assert prog is not None, why
        for pt in ([Y0 * 2.0, np.asarray(1.5), R, A], [Y0, np.asarray(-1.0), R * 3.0, A.T]):
            want = fn(*map(T, pt)).numpy()
            np.testing.assert_array_equal(prog.value(pt), want)
            np.testing.assert_array_equal(prog.value_loop(pt), want)


def _counting_compiles(monkeypatch):
    names = []
    real = integrate._tr.compile_checked

    def counted(fn, *a, **kw):
        names.append(fn.__name__)
        return real(fn, *a, **kw)

    monkeypatch.setattr(integrate._tr, "compile_checked", counted)
    return names


def test_batched_adjoint_program_is_reused_across_calls(monkeypatch):
    # The batched right-hand side is traced once per func: a later call with other argument
    # values and times (same shapes) replays the same program on its own inputs, so its
    # gradients are bit for bit those of a call that traces afresh.
    def f(y, t, r, a):
        return y * (r + a @ y)

    def grads(func, r, ts):
        def loss(r_, a_, y0_, ts_):
            return ag.sum(ag.square(odeint(func, y0_, ts_, r_, a_, rtol=1e-10, atol=1e-10)))

        return ag.grad(loss, argnums=(0, 1, 2, 3))(T(r), T(A), T(Y0), T(ts))

    names = _counting_compiles(monkeypatch)
    ts1, ts2 = np.linspace(0.0, 3.0, 8), np.linspace(0.5, 4.0, 8) ** 1.1
    grads(f, R, ts1)
    assert names.count("rhs") == 1
    reused = grads(f, R * 1.1, ts2)
    assert names.count("rhs") == 1  # no second trace of the batched right-hand side
    integrate._RHS_CACHE.clear()
    fresh = grads(f, R * 1.1, ts2)
    assert names.count("rhs") == 2
    for a, b in zip(reused, fresh):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    grads(f, R, np.linspace(0.0, 3.0, 9))  # another number of intervals: another program
    assert names.count("rhs") == 3


def test_batched_adjoint_program_follows_a_changed_closure(monkeypatch):
    # func reads a Python number from its closure: its recording holds it, so a changed value
    # is a different recording and the batched program is traced again (a stale program would
    # give the old rate's gradient)
    box = {"k": 0.5}

    def f(y, t):
        return -box["k"] * y

    names = _counting_compiles(monkeypatch)
    ts = T(np.linspace(0.0, 2.0, 6))
    for k in (0.5, 0.8):
        box["k"] = k
        g = ag.grad(lambda y0: ag.sum(odeint(f, y0, ts, rtol=1e-12, atol=1e-12)[-1]))(T([1.0]))
        np.testing.assert_allclose(g.numpy(), [np.exp(-2.0 * k)], rtol=1e-9)
    assert names.count("rhs") == 2


def test_value_dependent_func_is_called_eagerly():
    # A Python branch on t: a trace taken at t = 0 would replay the t < 1 branch forever. The
    # float(t) read marks the trace invalid and odeint calls func at every evaluation.
    def f(y, t):
        return -y if float(t) < 1.0 else 2.0 * y

    ys = odeint(f, T([1.0]), T([0.0, 0.5, 2.0]), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ys.numpy()[:, 0], [1.0, np.exp(-0.5), np.exp(-1.0 + 2.0)],
                               rtol=1e-6)


def test_value_derived_constant_is_caught_by_the_second_trace():
    # A copy of y's array made outside the ops is a constant to a trace: replayed, y' = -y0
    # (y(1) = 0). The recording at the probe point holds another constant, so odeint calls func
    # eagerly (y(1) = exp(-1)).
    def f(y, t):
        return -ag.Tensor.from_array(y._data.copy()) + 0.0 * y

    ys = odeint(f, T([2.0]), T([0.0, 1.0]), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ys.numpy()[-1], [2.0 * np.exp(-1.0)], rtol=1e-8)


def test_stop_gradient_inside_func():
    # y' = -k stop_gradient(y) y: the value flows, the derivative through the stopped factor not
    def f(y, t, k):
        return -k * ag.stop_gradient(y) * y

    def loss(k, y0, trace):
        return ag.sum(odeint(f, y0, T([0.0, 1.0]), k, rtol=1e-10, atol=1e-10, trace=trace))

    a = ag.grad(lambda k, y0: loss(k, y0, True), argnums=(0, 1))(T(0.5), T([1.0, 2.0]))
    b = ag.grad(lambda k, y0: loss(k, y0, False), argnums=(0, 1))(T(0.5), T([1.0, 2.0]))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-12)


def test_jacobian_with_batched_cotangents():
    ts = T([0.0, 0.5, 1.0])

    def f(y0):
        return odeint(lv, y0, ts, T(R), T(A), rtol=1e-11, atol=1e-11)[-1]

    jac = ag.jacobian(f, T(Y0), mode="reverse")
    h = 1e-6
    want = np.stack([(f(T(Y0 + h * e)).numpy() - f(T(Y0 - h * e)).numpy()) / (2 * h)
                     for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(jac.numpy(), want, rtol=1e-6, atol=1e-8)


def test_vmap_runs_odeint_per_example():
    # no batching rule: ag.vmap runs the primitive once per example (with its one-time
    # warning); values and per-example gradients of y(1) = exp(-k)
    def f(k):
        return odeint(lambda y, t, kk: -kk * y, T([1.0]), T([0.0, 1.0]), k, rtol=1e-10,
                      atol=1e-10)[-1, 0]

    ks = np.array([0.5, 1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = ag.vmap(f)(T(ks))
    np.testing.assert_allclose(v.numpy(), np.exp(-ks), rtol=1e-8)
    g = ag.vmap(ag.grad(f))(T(ks))
    np.testing.assert_allclose(g.numpy(), -np.exp(-ks), rtol=1e-7)


def test_memory_does_not_grow_with_the_number_of_steps():
    ts = T(np.linspace(0.0, 10.0, 5))
    data = T(np.ones((5, 3)))

    def peak(tol):
        g = ag.grad(lambda r: ag.sum(ag.square(odeint(lv, T(Y0), ts, r, T(A), rtol=tol,
                                                      atol=tol) - data)))
        g(T(R))  # warm caches
        tracemalloc.start()
        g(T(R))
        _, p = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return p

    steps = {}
    orig = integrate._Solver.step

    def counting(self, *a):
        steps[self] = steps.get(self, 0) + 1
        return orig(self, *a)

    integrate._Solver.step = counting
    try:
        loose, tight = peak(1e-5), None
        n_loose = sum(steps.values())
        steps.clear()
        tight = peak(1e-12)
        n_tight = sum(steps.values())
    finally:
        integrate._Solver.step = orig
    assert n_tight > 8 * n_loose  # many more steps...
    assert tight < 1.5 * loose + 20_000  # ...in about the same memory


def test_lotka_volterra_fit_recovers_parameters():
    ts = np.linspace(0.0, 8.0, 25)
    data = T(_reference(lambda y, t: lv(y, t, R, A), Y0, ts))
    t = T(ts)

    def loss(r):
        return ag.sum(ag.square(odeint(lv, T(Y0), t, r, T(A), rtol=1e-8, atol=1e-8) - data))

    vg = ag.value_and_grad(loss)

    def fun(r):  # scipy's L-BFGS with the adjoint gradient
        v, g = vg(T(r))
        return float(v.numpy()), g.numpy()

    r0 = R + np.array([0.15, -0.1, 0.1])
    first = fun(r0)[0]
    res = minimize(fun, r0, jac=True, method="L-BFGS-B", options={"maxiter": 60})
    assert res.fun < 1e-8 * first
    np.testing.assert_allclose(res.x, R, atol=1e-4)


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")  # y' = y^2 blows up
def test_errors():
    y0, ts = T(Y0), T([0.0, 1.0])
    with pytest.raises(ag.ShapeError, match="odeint.*'t'"):
        odeint(lv, y0, T([[0.0, 1.0]]), T(R), T(A))
    with pytest.raises(ag.ArgumentError, match="non-decreasing"):
        odeint(lv, y0, T([1.0, 0.0]), T(R), T(A))
    with pytest.raises(ag.DTypeError, match="y0"):
        odeint(lv, ag.Tensor.from_array(np.array([1, 2, 3])), ts, T(R), T(A))
    with pytest.raises(ag.ShapeError, match="output"):
        odeint(lambda y, t: ag.sum(y), y0, ts)
    with pytest.raises(ag.ArgumentError, match="rtol"):
        odeint(lv, y0, ts, T(R), T(A), rtol=-1.0)
    with pytest.raises(ag.ArgumentError, match="mxstep"):
        odeint(lv, y0, ts, T(R), T(A), mxstep=0)
    with pytest.raises(ag.ArgumentError, match="func"):
        odeint(3, y0, ts)
    with pytest.raises(ODEIntegrationError, match="mxstep=3"):
        odeint(lv, y0, T([0.0, 30.0]), T(R), T(A), mxstep=3)
    with pytest.raises(ODEIntegrationError):  # blows up in finite time: y' = y^2
        odeint(lambda y, t: y * y, T([1.0]), T([0.0, 2.0]))
    assert issubclass(ODEIntegrationError, ag.AutogradError)


def test_step_below_the_rounding_of_t_raises():
    # y' = y^2 from t = 1e8 blows up at t = 1e8 + 1, where y is still far from overflow but
    # the step falls below t's rounding (1.5e-8): a step that cannot advance t is refused,
    # not accepted with y moving while t stands still (which only ended at mxstep)
    with pytest.raises(ODEIntegrationError, match="step size fell"):
        odeint(lambda y, t: y * y, T([1.0]), T([1e8, 1e8 + 2.0]), mxstep=1000)


def test_closure_over_a_tracked_tensor_raises():
    k = T(0.5)
    with pytest.raises(ag.TapeError, match=r"\*args"):
        with ag.GradientTape() as tape:
            tape.watch(k)
            odeint(lambda y, t: -k * y, T([1.0]), T([0.0, 1.0]))


def test_forward_mode_and_second_order_raise():
    def f(k):
        return ag.sum(odeint(lambda y, t, kk: -kk * y, T([1.0]), T([0.0, 1.0]), k))

    with pytest.raises(ag.TapeError, match="forward-mode"):
        ag.jvp(f, (T(0.5),), (T(1.0),))
    with pytest.raises(ag.TapeError, match="second-order"):
        ag.grad(ag.grad(f))(T(0.5))


def test_float32_state():
    ys = odeint(lambda y, t: -y, ag.Tensor.from_array(np.array([1.0], np.float32)),
                T([0.0, 1.0]), rtol=1e-5, atol=1e-6)
    assert ys.dtype == np.float32
    np.testing.assert_allclose(ys.numpy()[-1], [np.exp(-1.0)], rtol=1e-5)
