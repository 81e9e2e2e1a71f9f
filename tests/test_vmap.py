"""ag.vmap composed with the other transforms, against Python loops over the examples, in
float64: per-sample gradients (MLP, CNN), Hessians and Jacobians of a batch of functions,
grad of a vmap, jacfwd-style vmap(jvp), vmap(vjp_fn) over cotangents, nested maps with a
gradient in between, checkpointing, AMP and custom ops inside a map; in_axes/out_axes (pytrees,
None, negative axes, axis_size); the randomness modes; the errors.

(The registry-wide check that vmap of every op equals a loop over slices is in
tests/test_registry_rules.py.)
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.vmap import VmapError

RTOL, ATOL = 1e-10, 1e-12


def T(a):
    return ag.Tensor.from_array(np.asarray(a, dtype=np.float64))


def close(got, want, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(got.numpy() if hasattr(got, "numpy") else got),
                               np.asarray(want), rtol=rtol, atol=atol)


def stack(xs):
    return np.stack([x.numpy() for x in xs])


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- per-sample gradients --------------------------------------------------------------------


def _mlp(seed=0):
    return ag.nn.Sequential(ag.nn.Linear(5, 7, dtype="float64", seed=seed), ag.nn.Tanh(),
                            ag.nn.Linear(7, 7, dtype="float64", seed=seed + 1), ag.nn.ReLU(),
                            ag.nn.Linear(7, 3, dtype="float64", seed=seed + 2))


def _params(model):
    return {k: v.value() for k, v in model.named_parameters()}


def test_per_sample_gradients_of_an_mlp_equal_a_loop():
    model = _mlp()
    params = _params(model)
    r = rng(1)
    xs, ys = T(r.standard_normal((6, 5))), ag.Tensor.from_array(r.integers(0, 3, 6))

    def loss(p, x, y):
        return ag.cross_entropy(ag.nn.functional_call(model, p, x[None]), y[None])

    got = ag.vmap(ag.grad(loss), in_axes=(None, 0, 0))(params, xs, ys)
    assert set(got) == set(params)
    for name, p in params.items():
        assert got[name].shape == (6,) + p.shape
    for b in range(6):
        want = ag.grad(loss)(params, xs[b], ys[b])
        for name in params:
            close(got[name][b], want[name].numpy())
    # and the per-example gradients sum to the batch gradient of the summed loss
    total = ag.grad(lambda p: sum(loss(p, xs[b], ys[b]) for b in range(6)))(params)
    for name in params:
        close(got[name].numpy().sum(0), total[name].numpy())


def test_per_sample_gradients_of_a_cnn_equal_a_loop():
    model = ag.nn.Sequential(
        ag.nn.Conv2d(2, 3, 3, padding=1, dtype="float64", seed=3), ag.nn.ReLU(),
        ag.nn.MaxPool2d(2), ag.nn.Conv2d(3, 4, 3, dtype="float64", seed=4), ag.nn.Tanh(),
        ag.nn.AvgPool2d(2), ag.nn.Flatten(), ag.nn.Linear(4, 3, dtype="float64", seed=5))
    params = _params(model)
    r = rng(2)
    xs = T(r.standard_normal((5, 2, 8, 8)))
    ys = ag.Tensor.from_array(r.integers(0, 3, 5))

    def loss(p, x, y):
        return ag.cross_entropy(ag.nn.functional_call(model, p, x[None]), y[None])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every op batched, no per-example loop
        got = ag.vmap(ag.grad(loss), in_axes=(None, 0, 0))(params, xs, ys)
    for b in range(5):
        want = ag.grad(loss)(params, xs[b], ys[b])
        for name in params:
            close(got[name][b], want[name].numpy())


def test_per_sample_gradients_with_respect_to_the_inputs_too():
    """argnums over a shared weight and the mapped input at once."""
    r = rng(3)
    w, xs = T(r.standard_normal((4, 3))), T(r.standard_normal((5, 4)))

    def f(w, x):
        return (ag.tanh(x @ w) ** 2).sum()

    gw, gx = ag.vmap(ag.grad(f, argnums=(0, 1)), in_axes=(None, 0))(w, xs)
    for b in range(5):
        ww, wx = ag.grad(f, argnums=(0, 1))(w, xs[b])
        close(gw[b], ww.numpy())
        close(gx[b], wx.numpy())


# ---- Hessians, Jacobians ---------------------------------------------------------------------


def _fn(x, a):
    return (a * ag.sin(x)).sum() + (x * x).sum() ** 2 * a[0]


def test_vmap_of_hessian_equals_a_loop_and_the_formula():
    r = rng(4)
    xs, As = T(r.standard_normal((4, 3))), T(r.standard_normal((4, 3)))
    got = ag.vmap(lambda x, a: ag.hessian(lambda v: _fn(v, a), x))(xs, As)
    assert got.shape == (4, 3, 3)
    for b in range(4):
        want = ag.hessian(lambda v: _fn(v, As[b]), xs[b])
        close(got[b], want.numpy())
        x, a = xs[b].numpy(), As[b].numpy()
        s = (x * x).sum()
        formula = np.diag(-a * np.sin(x)) + a[0] * (4 * s * np.eye(3) + 8 * np.outer(x, x))
        close(got[b], formula)


@pytest.mark.parametrize("mode", ["forward", "reverse", "auto"])
def test_vmap_of_jacobian_equals_a_loop(mode):
    r = rng(5)
    W = T(r.standard_normal((2, 3)))
    xs = T(r.standard_normal((4, 3)))

    def f(x):
        return ag.tanh(W @ ag.sin(x)) * x[:2]

    got = ag.vmap(lambda x: ag.jacobian(f, x, mode=mode))(xs)
    assert got.shape == (4, 2, 3)
    for b in range(4):
        close(got[b], ag.jacobian(f, xs[b], mode=mode).numpy())


def test_vmap_of_jacobian_of_several_arguments():
    r = rng(6)
    xs, ys = T(r.standard_normal((3, 2))), T(r.standard_normal((3, 2)))

    def f(x, y):
        return ag.sin(x) * y.sum()

    jx, jy = ag.vmap(lambda x, y: ag.jacobian(f, (x, y), mode="reverse"))(xs, ys)
    for b in range(3):
        wx, wy = ag.jacobian(f, (xs[b], ys[b]), mode="reverse")
        close(jx[b], wx.numpy())
        close(jy[b], wy.numpy())


@pytest.mark.parametrize("kw", [{"scheduler": "reverse"}, {"scheduler": "forward"},
                                {"chunk_size": 2}])
def test_vmap_of_hessian_in_every_mode(kw):
    xs = T(rng(30).standard_normal((4, 3)))

    def s(x):
        return (ag.sin(x) * x).sum() * x[0]

    got = ag.vmap(lambda x: ag.hessian(s, x, **kw))(xs)
    for b in range(4):
        close(got[b], ag.hessian(s, xs[b]).numpy())
    vs = T(rng(31).standard_normal((4, 3)))
    got = ag.vmap(lambda x, v: ag.hvp(s, x, v))(xs, vs)
    for b in range(4):
        close(got[b], ag.hessian(s, xs[b]).numpy() @ vs.numpy()[b])


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_tape_jacobians_inside_vmap_equal_a_loop(mode):
    """tape.jacobian, tape.batch_jacobian and tape.forward_gradient on a tape created inside
    the map (the tape records the whole batch's graph)."""
    r = rng(32)
    W = T(r.standard_normal((2, 3)))
    xs, ts = T(r.standard_normal((4, 3))), T(r.standard_normal((4, 3)))
    X2 = T(r.standard_normal((4, 5, 3)))

    def f(x):
        return ag.tanh(W @ ag.sin(x)) * x[:2]

    def jac(x):
        with ag.GradientTape() as t:
            t.watch(x)
            y = f(x)
        return t.jacobian(y, x, mode=mode, chunk_size=2)

    def jvp(x, v):
        with ag.GradientTape() as t:
            t.watch(x)
            y = f(x)
        return t.forward_gradient(x, y, tangent=v)

    def bjac(x):  # x: (5, 3) per example
        with ag.GradientTape() as t:
            t.watch(x)
            y = ag.sin(x) * x[:, :1] + x[:, ::-1] ** 2
        return t.batch_jacobian(y, x, mode=mode)

    J = ag.vmap(jac)(xs)
    Jt = ag.vmap(jvp)(xs, ts)
    BJ = ag.vmap(bjac)(X2)
    assert BJ.shape == (4, 5, 3, 3)
    for b in range(4):
        want = ag.jacobian(f, xs[b]).numpy()
        close(J[b], want)
        close(Jt[b], want @ ts.numpy()[b])
        full = ag.jacobian(lambda v: ag.sin(v) * v[:, :1] + v[:, ::-1] ** 2, X2[b]).numpy()
        close(BJ[b], np.stack([full[k, :, k] for k in range(5)]))


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_tape_jacobian_inside_vmap_unconnected(mode):
    w = T([1.0, 2.0])
    xs = T(rng(33).standard_normal((3, 2)))

    def f(x, z):
        with ag.GradientTape(persistent=True) as t:
            t.watch(x)
            y, c = w * 3.0, x * 2.0
        return t.jacobian([y, c], x, mode=mode, unconnected_gradients=z)

    u, c = ag.vmap(lambda x: f(x, "zero"))(xs)
    close(u, np.zeros((3, 2, 2)))
    close(c, np.broadcast_to(2 * np.eye(2), (3, 2, 2)))
    assert ag.vmap(lambda x: f(x, "none")[0])(xs) is None


def test_a_forward_tangent_per_example_on_a_shared_source_is_refused():
    w = T([1.0, 2.0])

    def f(x, v):
        with ag.GradientTape() as t:
            t.watch(w)
            y = w * x
        return t.forward_gradient(w, y, tangent=v)

    with pytest.raises(VmapError, match="tangent 0.*per-example source"):
        ag.vmap(f)(T(np.ones((3, 2))), T(np.ones((3, 2))))


def test_transforms_of_a_vmapped_function():
    """jacobian, hessian and jvp of vmap(f): block-diagonal over the examples."""
    r = rng(34)
    W = T(r.standard_normal((2, 3)))
    xs, ts = T(r.standard_normal((4, 3))), T(r.standard_normal((4, 3)))

    def f(x):
        return ag.tanh(W @ ag.sin(x)) * x[:2]

    def s(x):
        return (ag.sin(x) * x).sum() * x[0]

    loopJ = np.stack([ag.jacobian(f, xs[b]).numpy() for b in range(4)])
    loopH = np.stack([ag.hessian(s, xs[b]).numpy() for b in range(4)])
    eye = np.eye(4)
    for mode in ("forward", "reverse"):
        close(ag.jacobian(ag.vmap(f), xs, mode=mode), np.einsum("bij,bc->bicj", loopJ, eye))
    close(ag.hessian(lambda X: ag.vmap(s)(X).sum(), xs), np.einsum("bij,bc->bicj", loopH, eye))
    close(ag.jvp(ag.vmap(f), (xs,), (ts,))[1], np.einsum("bij,bj->bi", loopJ, ts.numpy()))


def test_grad_of_per_example_gradients():
    """A gradient penalty: grad of a function of vmap(grad) (reverse over a batched reverse)."""
    r = rng(35)
    w, xs = T(r.standard_normal(3)), T(r.standard_normal((4, 3)))

    def g(w, x):
        return ag.tanh((w * x).sum()) ** 2

    got = ag.grad(lambda w: (ag.vmap(ag.grad(g), in_axes=(None, 0))(w, xs) ** 2).sum())(w)
    want = sum(ag.grad(lambda v: (ag.grad(g)(v, xs[b]) ** 2).sum())(w).numpy() for b in range(4))
    close(got, want)


def test_grad_of_vmap_is_the_sum_of_per_example_gradients():
    r = rng(7)
    w, xs = T(r.standard_normal(3)), T(r.standard_normal((5, 3)))

    def f(w, x):
        return ag.exp(ag.sin(w * x).sum())

    got = ag.grad(lambda w: ag.vmap(f, in_axes=(None, 0))(w, xs).sum())(w)
    want = sum(ag.grad(f)(w, xs[b]).numpy() for b in range(5))
    close(got, want)
    # and grad of a weighted vmap output: the vjp of vmap
    c = T(r.standard_normal(5))
    got = ag.grad(lambda w: (ag.vmap(f, in_axes=(None, 0))(w, xs) * c).sum())(w)
    want = sum(c.numpy()[b] * ag.grad(f)(w, xs[b]).numpy() for b in range(5))
    close(got, want)


def test_jacfwd_style_vmap_of_jvp_and_vmap_of_vjp_fn():
    r = rng(8)
    x = T(r.standard_normal(4))
    W = T(r.standard_normal((3, 4)))

    def f(v):
        return ag.tanh(W @ v) * v[:3]

    J = ag.jacobian(f, x, mode="reverse").numpy()
    eye4, eye3 = T(np.eye(4)), T(np.eye(3))
    cols = ag.vmap(lambda t: ag.jvp(f, (x,), (t,))[1])(eye4)  # rows: J e_i
    close(cols, J.T)
    _, vjp_fn = ag.vjp(f, x)
    rows = ag.vmap(lambda u: vjp_fn(u)[0])(eye3)  # rows: e_j^T J
    close(rows, J)
    # over arbitrary cotangents too, and with out_axes=1
    U = T(r.standard_normal((5, 3)))
    close(ag.vmap(lambda u: vjp_fn(u)[0], out_axes=1)(U), (U.numpy() @ J).T)


def test_vmap_of_vjp_of_a_batched_forward():
    """vjp inside the map: each example's forward and its pullback."""
    r = rng(9)
    xs, us = T(r.standard_normal((4, 3))), T(r.standard_normal((4, 3)))

    def pull(x, u):
        _, fn = ag.vjp(lambda v: ag.sin(v) * v.sum(), x)
        return fn(u)[0]

    got = ag.vmap(pull)(xs, us)
    for b in range(4):
        close(got[b], pull(xs[b], us[b]).numpy())


def test_nested_vmap_with_grad_in_between():
    r = rng(10)
    ws, xs = T(r.standard_normal((3, 4))), T(r.standard_normal((3, 5, 4)))

    def f(w, x):
        return ag.tanh((w * x).sum()) ** 2

    def outer(w, xb):  # the gradient of the inner map's summed output, per outer example
        return ag.grad(lambda v: ag.vmap(f, in_axes=(None, 0))(v, xb).sum())(w)

    got = ag.vmap(outer)(ws, xs)
    # and the inner map of per-example gradients inside an outer map
    got2 = ag.vmap(lambda w, xb: ag.vmap(ag.grad(f), in_axes=(None, 0))(w, xb))(ws, xs)
    assert got2.shape == (3, 5, 4)
    for i in range(3):
        per = [ag.grad(f)(ws[i], xs[i, j]).numpy() for j in range(5)]
        close(got[i], sum(per))
        close(got2[i], np.stack(per))


def test_grad_of_grad_inside_vmap():
    r = rng(11)
    xs = T(r.standard_normal(5))
    got = ag.vmap(ag.grad(ag.grad(lambda x: ag.sin(x) * x ** 3)))(xs)
    x = xs.numpy()
    close(got, -np.sin(x) * x ** 3 + 6 * np.cos(x) * x ** 2 + 6 * x * np.sin(x))


# ---- checkpoint, AMP, custom_op inside a map ---------------------------------------------------


def test_vmap_with_checkpoint_inside():
    r = rng(12)
    w, xs = T(r.standard_normal((4, 4))), T(r.standard_normal((6, 4)))

    def block(h, w):
        return ag.tanh(h @ w) + h

    def loss(w, x):
        h = ag.checkpoint(block, x, w)
        h = ag.checkpoint(block, h, w)
        return (h * h).sum()

    def plain(w, x):
        return (block(block(x, w), w) ** 2).sum()

    got = ag.vmap(ag.grad(loss), in_axes=(None, 0))(w, xs)
    for b in range(6):
        close(got[b], ag.grad(plain)(w, xs[b]).numpy())
    # and a checkpointed vmap under a tape (grad of a map)
    with ag.GradientTape() as tape:
        tape.watch(w)
        y = ag.vmap(lambda x: loss(w, x))(xs).sum()
    (g,) = tape.gradient(y, [w])
    close(g, sum(ag.grad(plain)(w, xs[b]).numpy() for b in range(6)))


def test_vmap_under_an_amp_tape():
    r = rng(13)
    w = ag.Tensor.from_array(r.standard_normal((4, 3)).astype(np.float32))
    xs = ag.Tensor.from_array(r.standard_normal((5, 4)).astype(np.float32))

    def f(x):
        return (ag.tanh(x @ w) ** 2).sum()

    with ag.GradientTape() as t:
        t.watch(w)
        y = ag.vmap(f)(xs).sum()
    (ref,) = t.gradient(y, [w])
    # loss scaling only (nothing autocast): power-of-two scales are exact
    cfg = ag.AmpConfig(autocast_ops=(), loss_scaler=ag.LossScaler.static(1024.0))
    with ag.GradientTape(amp=cfg) as t:
        t.watch(w)
        y = ag.vmap(f)(xs).sum()
    (got,) = t.gradient(y, [w])
    np.testing.assert_array_equal(got.numpy(), ref.numpy())
    # matmul autocast to float16 inside the map: float16 accuracy
    cfg = ag.AmpConfig(loss_scaler=ag.LossScaler.static(256.0))
    with ag.GradientTape(amp=cfg) as t:
        t.watch(w)
        y = ag.vmap(f)(xs).sum()
    (got,) = t.gradient(y, [w])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=2e-2, atol=2e-2)
    assert not np.array_equal(got.numpy(), ref.numpy())  # the matmuls did run in float16
    assert not t.step_skipped


def _cube_fwd(xp, x):
    return x ** 3


def _cube_vjp(g, inputs, output):
    return (g * 3.0 * inputs[0] * inputs[0],)


def test_custom_op_with_a_batch_rule_runs_once_on_the_batch():
    calls = []

    def fwd(xp, x):
        calls.append(x.shape)
        return x ** 3

    op = ag.custom_op(fwd, _cube_vjp, name="vmap_test_cube_rule", batch="elementwise")
    xs = T(rng(14).standard_normal((5, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ag.vmap(ag.grad(lambda x: op(x).sum()))(xs)
        y = ag.vmap(op)(xs)
    close(got, 3 * xs.numpy() ** 2)
    close(y, xs.numpy() ** 3)
    assert (5, 3) in calls and (3,) not in calls


def test_custom_op_without_a_batch_rule_loops_and_warns_once():
    op = ag.custom_op(_cube_fwd, _cube_vjp, name="vmap_test_cube_loop")
    xs = T(rng(15).standard_normal((4, 3)))
    with pytest.warns(RuntimeWarning, match="vmap_test_cube_loop"):
        y = ag.vmap(op)(xs)
    close(y, xs.numpy() ** 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per op
        got = ag.vmap(ag.grad(lambda x: op(x).sum()))(xs)
    close(got, 3 * xs.numpy() ** 2)


def test_custom_op_with_a_rule_of_its_own():
    def rule(F, args, dims):
        (x,), (d,) = args, dims
        return op(F.to_front(x, d)), 0

    op = ag.custom_op(_cube_fwd, _cube_vjp, name="vmap_test_cube_fn", batch=rule)
    xs = T(rng(16).standard_normal((3, 4)))
    close(ag.vmap(op, in_axes=1)(xs), (xs.numpy() ** 3).T)


# ---- in_axes / out_axes ------------------------------------------------------------------------


def test_in_axes_none_and_nonzero_and_negative():
    r = rng(17)
    a, b = T(r.standard_normal((3, 5))), T(r.standard_normal(3))

    def f(x, y):
        return x * y + ag.sin(x)

    close(ag.vmap(f, in_axes=(1, None))(a, b), stack([f(a[:, i], b) for i in range(5)]))
    close(ag.vmap(f, in_axes=(-1, None))(a, b), stack([f(a[:, i], b) for i in range(5)]))
    close(ag.vmap(f, in_axes=(1, None), out_axes=1)(a, b),
          stack([f(a[:, i], b) for i in range(5)]).T)
    close(ag.vmap(f, in_axes=(1, None), out_axes=-1)(a, b),
          stack([f(a[:, i], b) for i in range(5)]).T)


def test_dict_inputs_and_outputs_with_per_key_axes():
    r = rng(18)
    d = {"w": T(r.standard_normal((2, 4))), "b": T(r.standard_normal(3)),
         "s": T(r.standard_normal((4, 2)))}

    def f(p):
        return {"y": p["w"].sum() * p["b"] + p["s"].sum(), "z": p["w"] * 2.0}

    got = ag.vmap(f, in_axes=({"w": 1, "b": None, "s": 0},), out_axes={"y": 0, "z": 1})(d)
    assert set(got) == {"y", "z"}
    assert got["y"].shape == (4, 3) and got["z"].shape == (2, 4)
    for i in range(4):
        want = f({"w": d["w"][:, i], "b": d["b"], "s": d["s"][i]})
        close(got["y"][i], want["y"].numpy())
        close(got["z"][:, i], want["z"].numpy())


def test_tuple_outputs_and_an_unbatched_output_broadcast():
    xs = T(rng(19).standard_normal((4, 2)))
    c = T([1.0, 2.0])
    y, k = ag.vmap(lambda x: (x * 2.0, c))(xs)
    close(y, xs.numpy() * 2)
    close(k, np.broadcast_to(c.numpy(), (4, 2)))


def test_axis_size_with_every_input_unmapped():
    c = T([1.0, 2.0])
    got = ag.vmap(lambda v: v * 3.0, in_axes=None, axis_size=4)(c)
    close(got, np.broadcast_to(c.numpy() * 3, (4, 2)))
    with pytest.raises(ag.ShapeError, match="axis_size"):
        ag.vmap(lambda v: v, in_axes=None)(c)
    with pytest.raises(ag.ShapeError, match="axis_size"):
        ag.vmap(lambda v: v, axis_size=5)(T(np.ones((4, 2))))


def test_numpy_arrays_are_accepted_as_mapped_inputs():
    a = np.arange(6.0).reshape(3, 2)
    close(ag.vmap(lambda x: x.sum())(a), a.sum(1))


# ---- randomness ---------------------------------------------------------------------------------


def test_randomness_error_raises_on_a_random_op():
    xs = T(np.ones((4, 6)))
    with pytest.raises(VmapError, match="dropout.*randomness"):
        ag.vmap(lambda x: ag.dropout(x, 0.5))(xs)
    layer = ag.nn.Dropout(0.5)
    with pytest.raises(VmapError, match="randomness"):
        ag.vmap(layer)(xs)
    layer.eval()  # no randomness in eval mode: allowed
    close(ag.vmap(layer)(xs), np.ones((4, 6)))
    close(ag.vmap(lambda x: ag.dropout(x, 0.5, training=False))(xs), np.ones((4, 6)))


def test_randomness_different_gives_independent_masks():
    xs = T(np.ones((8, 200)))
    y = ag.vmap(lambda x: ag.dropout(x, 0.5), randomness="different")(xs).numpy()
    kept = y != 0
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.3 < kept.mean() < 0.7
    rows = {r.tobytes() for r in kept}
    assert len(rows) == 8  # every example its own mask
    # and through the module, in training
    y2 = ag.vmap(ag.nn.Dropout(0.5), randomness="different")(xs).numpy()
    assert len({r.tobytes() for r in (y2 != 0)}) == 8


def test_randomness_same_gives_one_mask_for_all():
    xs = T(np.arange(1, 8 * 200 + 1, dtype=np.float64).reshape(8, 200))
    y = ag.vmap(lambda x: ag.dropout(x, 0.5), randomness="same")(xs).numpy()
    kept = y != 0
    assert 0.3 < kept.mean() < 0.7
    assert all((k == kept[0]).all() for k in kept)
    close(y[kept], 2 * xs.numpy()[kept])
    y2 = ag.vmap(ag.nn.Dropout(0.5), randomness="same")(xs).numpy()
    assert all(((r != 0) == (y2[0] != 0)).all() for r in y2)


def test_randomness_with_gradients_uses_the_same_mask_forward_and_backward():
    xs = T(rng(20).standard_normal((4, 50)))
    g = ag.vmap(ag.grad(lambda x: (ag.dropout(x, 0.5) * x).sum()), randomness="different")(xs)
    g = g.numpy()
    x = xs.numpy()
    # d/dx (m * x * x / (1-p)) = 2 m x / (1-p): either 0 or 4x per element
    ratio = np.where(np.abs(x) > 1e-8, g / x, 0.0)
    assert np.all(np.isclose(ratio, 0.0) | np.isclose(ratio, 4.0))


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body,what", [
    (lambda x: x * 2.0 if x.sum() > 0 else x, "bool"),
    (lambda x: x * float(x.sum()), "float"),
    (lambda x: x * x.sum().item(), "item"),
    (lambda x: T(x.numpy()), "numpy"),
    (lambda x: x * int(x[0]), "int"),
    (lambda x: T(np.asarray(x)), "NumPy array"),
])
def test_python_control_flow_on_a_batched_value_raises(body, what):
    with pytest.raises(VmapError, match=f"{what}.*differs per example"):
        ag.vmap(body)(T(np.ones((3, 2))))


def test_vmap_error_is_an_autograd_error():
    assert issubclass(VmapError, ag.AutogradError)


def test_in_axes_that_do_not_match_the_arguments():
    a, b = T(np.ones((3, 2))), T(np.ones((3,)))
    with pytest.raises(ag.ShapeError, match="in_axes.*2 entries.*got 3"):
        ag.vmap(lambda x, y: x, in_axes=(0, 0, 0))(a, b)
    with pytest.raises(ag.ShapeError, match=r"args\[1\].*1 dims.*axis 1"):
        ag.vmap(lambda x, y: x, in_axes=(0, 1))(a, b)
    with pytest.raises(ag.ShapeError, match=r"in_axes.*keys"):
        ag.vmap(lambda d: d["a"], in_axes=({"a": 0, "c": 0},))({"a": a, "b": b})
    with pytest.raises(ag.ArgumentError, match="in_axes.*ints or None"):
        ag.vmap(lambda x: x, in_axes=(0.5,))(a)
    with pytest.raises(ag.ShapeError, match=r"args\[0\].*number"):
        ag.vmap(lambda x: x)(3.0)


def test_mapped_axes_of_different_sizes_name_the_arguments():
    a, b = T(np.ones((3, 2))), T(np.ones((4, 2)))
    with pytest.raises(ag.ShapeError, match=r"different sizes.*args\[0\].*3.*args\[1\].*4"):
        ag.vmap(lambda x, y: x + y)(a, b)
    with pytest.raises(ag.ShapeError, match=r"args\[0\]\['w'\].*args\[0\]\['z'\]"):
        ag.vmap(lambda d: d["w"])({"w": a, "z": b})


def test_a_batched_value_escaping_the_vmap_is_refused_when_used():
    leaked = []

    def f(x):
        leaked.append(x)
        return x * 2.0

    ag.vmap(f)(T(np.ones((3, 2))))
    with pytest.raises(VmapError, match="escaped|outside"):
        leaked[0] + 1.0
    with pytest.raises(VmapError):
        ag.sin(leaked[0])
    with pytest.raises(VmapError):
        leaked[0].numpy()


def test_bad_arguments_to_vmap():
    with pytest.raises(ag.ArgumentError, match="callable"):
        ag.vmap(3)
    with pytest.raises(ag.ArgumentError, match="randomness"):
        ag.vmap(lambda x: x, randomness="sometimes")
    with pytest.raises(ag.ArgumentError, match="Tensors"):
        ag.vmap(lambda x: 3.0)(T(np.ones(3)))


def test_tape_gradient_of_a_source_not_batched_where_its_targets_are_raises():
    w = T(np.ones(3))

    def f(x):
        with ag.GradientTape() as t:
            t.watch(w)
            y = (w * x).sum()
        return t.gradient(y, [w])[0]

    with pytest.raises(VmapError, match="not batched"):
        ag.vmap(f)(T(np.ones((4, 3))))


# ---- batching rules the registry test does not reach (it maps the first input only) ------------


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("axes", [(0, 0), (None, 0), (0, None), (1, 2)])
def test_convolutions_with_per_example_operands_equal_a_loop(axes, groups):
    """conv2d and its two adjoints with either or both operands mapped (both: the per-example
    weights of vmap(grad) of a CNN), one op each, no per-example loop."""
    from autograd_gpu.ops.conv import Conv2d, Conv2dTransposeInput, Conv2dWeight
    from autograd_gpu.ops.registry import apply

    r = rng(21)
    B, N, C, O, H = 3, 2, 2 * groups, 2 * groups, 6
    geo = {"stride": (2, 1), "padding": ((1, 0), (1, 1)), "dilation": (1, 2), "groups": groups}
    x = r.standard_normal((N, C, H, H))
    w = r.standard_normal((O, C // groups, 3, 2))
    y = Conv2d.forward(ag.Tensor.from_array(x)._bk, x, w, **geo)[0]
    cases = [(Conv2d, x, w, {}), (Conv2dTransposeInput, y, w, {"in_hw": (H, H)}),
             (Conv2dWeight, x, y, {"w_hw": (3, 2)})]

    def batch(a, ax):  # B different copies of a, stacked on axis ax
        if ax is None:
            return a
        return np.stack([a * (1.0 + 0.5 * e) + 0.1 * e for e in range(B)], axis=ax)

    for op, a, b, extra in cases:
        params = dict(geo, **extra)
        A_, B_ = batch(a, axes[0]), batch(b, axes[1])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no per-example loop
            got = ag.vmap(lambda u, v: apply(op, u, v, **params), in_axes=axes)(T(A_), T(B_))
        want = []
        for e in range(B):
            ue = a if axes[0] is None else np.take(A_, e, axis=axes[0])
            ve = b if axes[1] is None else np.take(B_, e, axis=axes[1])
            want.append(apply(op, T(ue), T(ve), **params).numpy())
        close(got, np.stack(want))


@pytest.mark.parametrize("axes", [(0, 0), (None, 0), (0, None), (-1, -1)])
@pytest.mark.parametrize("lead", [(), (2,)])
def test_embedding_and_its_gradient_with_per_example_tables_equal_a_loop(axes, lead):
    """Per-example tables (vmap(grad) of a model with an embedding lifts the table) and
    per-example indices, with and without leading axes on the table / cotangent: one op."""
    from autograd_gpu.ops.conv import Embedding, EmbeddingGrad
    from autograd_gpu.ops.registry import apply

    r = rng(22)
    B, V, D = 3, 5, 2
    idx = r.integers(0, V, (B, 4, 2))
    tables = r.standard_normal((B,) + lead + (V, D))
    gs = r.standard_normal((B,) + lead + (4, 2, D))

    def wrap(v):
        return ag.Tensor.from_array(v) if v.dtype.kind == "i" else T(v)

    for op, first, second, params in ((Embedding, idx, tables, {}),
                                      (EmbeddingGrad, gs, idx, {"num": V})):
        # an unmapped input is example 0's; a mapped one has its batch moved to axis ax
        ins = [a[0] if ax is None else np.moveaxis(a, 0, ax)
               for a, ax in zip((first, second), axes)]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no per-example loop
            got = ag.vmap(lambda u, v: apply(op, u, v, **params), in_axes=axes)(
                *[wrap(a) for a in ins])
        want = [apply(op, *[wrap(a[0] if ax is None else a[e])
                            for a, ax in zip((first, second), axes)], **params).numpy()
                for e in range(B)]
        close(got, np.stack(want))


def test_per_sample_gradients_of_an_embedding_model_equal_a_loop():
    model = ag.nn.Sequential(ag.nn.Embedding(6, 3, dtype="float64", seed=1), ag.nn.Flatten(),
                             ag.nn.Linear(6, 2, dtype="float64", seed=2))
    params = _params(model)
    ids = ag.Tensor.from_array(rng(23).integers(0, 6, (5, 2)))
    ys = ag.Tensor.from_array(rng(24).integers(0, 2, 5))

    def loss(p, i, y):
        return ag.cross_entropy(ag.nn.functional_call(model, p, i[None]), y[None])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ag.vmap(ag.grad(loss), in_axes=(None, 0, 0))(params, ids, ys)
    for b in range(5):
        want = ag.grad(loss)(params, ids[b], ys[b])
        for name in params:
            close(got[name][b], want[name].numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_matmul_kernels_for_vmapped_shapes_equal_numpy(dtype):
    """Matmul's forward computes real outer products ((..., m, 1) @ (..., 1, n), the
    per-example weight gradients) as a broadcast product (np.matmul's numbers bit for bit) and
    rows against one matrix broadcast along the batch (a lifted weight) as one GEMM."""
    from autograd_gpu.ops.linalg import _product

    r = rng(40)
    bk = T(0.0)._bk

    def arr(*s):
        a = r.standard_normal(s) + (1j * r.standard_normal(s) if dtype is np.complex128 else 0)
        return a.astype(dtype)

    for a, b in [(arr(5, 4, 1), arr(5, 1, 3)), (arr(4, 1), arr(1, 3)), (arr(4, 1), arr(5, 1, 3)),
                 (arr(2, 1, 4, 1), arr(3, 1, 3))]:
        if dtype is np.complex128:  # (left to BLAS, whose complex products round differently)
            np.testing.assert_allclose(_product(bk, a, b), np.matmul(a, b), rtol=1e-15)
        else:
            np.testing.assert_array_equal(_product(bk, a, b), np.matmul(a, b))
    W = arr(6, 3)
    x = arr(5, 1, 6)
    Wb = np.broadcast_to(W, (5, 6, 3))
    np.testing.assert_allclose(_product(bk, x, Wb), np.matmul(x, Wb), rtol=1e-5)
    np.testing.assert_allclose(_product(bk, x[:, :, :3], np.swapaxes(Wb, 1, 2)[:, :3, :]),
                               np.matmul(x[:, :, :3], np.swapaxes(Wb, 1, 2)[:, :3, :]),
                               rtol=1e-5)


_INDEXINGS = {
    "x[i]": lambda x, i, j, k: x[i],
    "x[:, j]": lambda x, i, j, k: x[:, j],
    "x[i, j]": lambda x, i, j, k: x[i, j],
    "x[i, :, k]": lambda x, i, j, k: x[i, :, k],  # advanced indices apart: their axes go first
    "x[:, j, k]": lambda x, i, j, k: x[:, j, k],
    "x[1, j]": lambda x, i, j, k: x[1, j],
    "x[:, 2, k]": lambda x, i, j, k: x[:, 2, k],
    "x[None, :, j]": lambda x, i, j, k: x[None, :, j],
    "x[:, None, j, 1:5]": lambda x, i, j, k: x[:, None, j, 1:5],
    "x[::2, j, ::-1]": lambda x, i, j, k: x[::2, j, ::-1],
    "x[-i - 1]": lambda x, i, j, k: x[-i - 1],
}


@pytest.mark.parametrize("x_axis", [0, None])
@pytest.mark.parametrize("name", list(_INDEXINGS))
def test_indexing_with_per_example_indices_equals_a_loop(name, x_axis):
    """x[i] with i different per example (a label, a gathered position): one gather (and one
    scatter for its gradient, one gather for its tangent), no per-example loop, for a batched or
    a shared x, every NumPy placement of the advanced axes."""
    fn = _INDEXINGS[name]
    r = rng(41)
    B = 3
    x = r.standard_normal((B, 5, 6, 7))
    i, j, k = r.integers(0, 5, (B, 4)), r.integers(0, 6, (B, 4)), r.integers(0, 7, (B, 2, 4))
    I, J, K = (ag.Tensor.from_array(a) for a in (i, j, k))
    xs = T(x) if x_axis == 0 else T(x[0])

    def ex(b):
        return T(x[b] if x_axis == 0 else x[0]), I[b], J[b], K[b]

    want = [fn(*ex(b)).numpy() for b in range(B)]
    c = T(r.standard_normal(want[0].shape))

    def loss(*a):
        return (fn(*a) * c).sum()

    t = T(r.standard_normal(x.shape[1:]))
    axes = (x_axis, 0, 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no per-example loop
        got = ag.vmap(fn, in_axes=axes)(xs, I, J, K)
        g = ag.vmap(ag.grad(loss), in_axes=axes)(xs, I, J, K)
        tan = ag.vmap(lambda *a: ag.jvp(lambda v: fn(v, *a[1:]), (a[0],), (t,))[1],
                      in_axes=axes)(xs, I, J, K)
    close(got, np.stack(want))
    close(g, np.stack([ag.grad(loss)(*ex(b)).numpy() for b in range(B)]))
    close(tan, np.stack([fn(t, *ex(b)[1:]).numpy() for b in range(B)]))


def test_nested_maps_and_jacobians_with_per_example_indices():
    r = rng(42)
    x = r.standard_normal((2, 3, 5))
    idx = r.integers(0, 5, (2, 3, 4))
    X, I = T(x), ag.Tensor.from_array(idx)
    got = ag.vmap(ag.vmap(lambda v, i: ag.sin(v[i])))(X, I)
    close(got, np.sin(np.take_along_axis(x, idx, axis=-1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        J = ag.vmap(lambda v, i: ag.jacobian(lambda u: ag.sin(u[i]), v))(X[0], I[0])
        Jf = ag.vmap(lambda v, i: ag.jacobian(lambda u: ag.sin(u[i]), v, mode="forward"))(
            X[0], I[0])
    for b in range(3):
        want = ag.jacobian(lambda u: ag.sin(u[I[0, b]]), X[0, b]).numpy()
        close(J[b], want)
        close(Jf[b], want)
    # index_add and take with per-example indices
    vals = T(r.standard_normal((3, 4)))
    got = ag.vmap(lambda v, i, a: ag.index_add(v, i, a))(X[0], I[0], vals)
    for b in range(3):
        close(got[b], ag.index_add(X[0, b], I[0, b], vals[b]).numpy())
    close(ag.vmap(lambda v, i: ag.take(v, i))(X[0], I[0]),
          np.stack([np.take(x[0, b], idx[0, b]) for b in range(3)]))


def test_a_per_example_boolean_mask_is_refused():
    X = T(np.ones((3, 4)))
    M = ag.Tensor.from_array(np.eye(3, 4, dtype=bool))
    with pytest.raises(VmapError, match="boolean mask.*differs per example"):
        ag.vmap(lambda v, m: v[m])(X, M)


@pytest.fixture
def matmul_calls(monkeypatch):
    """The shapes of every backend matmul call made while the test runs (the CPU backend's
    matmul wrapped)."""
    bk = T(0.0)._bk
    calls = []
    plain = type(bk).matmul

    def recording(a, b):
        calls.append((a.shape, b.shape))
        return plain(a, b)

    monkeypatch.setattr(type(bk), "matmul", staticmethod(recording))
    return calls


def test_matmul_against_one_repeated_matrix_is_one_2d_product(matmul_calls):
    """A vmapped matmul whose other operand is one matrix (unbatched, or lifted: a stride-0
    broadcast along the batch) reaches the backend as one 2-d product with the batch folded
    into the rows, not as a stacked product over the batch; the values equal a loop."""
    r = rng(41)
    bk = T(0.0)._bk
    calls = matmul_calls
    a = r.standard_normal((3, 3))
    X, C, M = r.standard_normal((9, 3)), r.standard_normal((9, 3, 1)), r.standard_normal((9, 2, 3))
    cases = [(lambda x: x @ T(a), X, [x @ a for x in X]),
             (lambda x: x @ T(a), M, [m @ a for m in M]),
             (lambda x: T(a) @ x, X, [a @ x for x in X]),
             (lambda x: T(a) @ x, C, [a @ c for c in C])]
    for f, xs, want in cases:
        calls.clear()
        close(ag.vmap(f)(T(xs)), np.stack(want), rtol=1e-13, atol=1e-13)
        assert calls and all(len(s) == 2 and len(t) == 2 for s, t in calls), calls

    # per-example gradients: the weight is lifted to a stride-0 (9, 3, 3) for the forward
    calls.clear()
    g = ag.vmap(ag.grad(lambda w, x: ag.sum(ag.tanh(w @ x))), in_axes=(None, 0))(T(a), T(X))
    close(g, np.stack([np.outer(1.0 - np.tanh(a @ x) ** 2, x) for x in X]), rtol=1e-13, atol=1e-13)
    assert calls and all(len(s) == 2 and len(t) == 2 for s, t in calls), calls

    # a leading tangent batch in front of the columns (the copy is of the columns only)
    from autograd_gpu.ops.linalg import _product  # (a private helper, tested directly)

    Ab = np.broadcast_to(a.T, (9, 3, 3))
    cols = np.moveaxis(r.standard_normal((9, 3, 3, 1)), 1, 0)
    calls.clear()
    close(_product(bk, Ab, cols), np.matmul(Ab, cols), rtol=1e-13, atol=1e-13)
    assert calls == [((27, 3), (3, 3))]


def test_matmul_derivative_outer_products_are_broadcast_products(matmul_calls):
    """Matmul's vjp and jvp compute their products with F.matmul, so the ones with an inner
    length of 1 (the vjp of a row times a matrix, the jvp of an outer product) take the
    forward's broadcast route, not a stacked matmul; the others stay stacked products."""
    r = rng(42)
    calls = matmul_calls
    u, v = r.standard_normal((7, 3, 1)), r.standard_normal((7, 1, 4))
    tu, tv = r.standard_normal((7, 3, 1)), r.standard_normal((7, 1, 4))
    y, t = ag.jvp(lambda p, q: p @ q, (T(u), T(v)), (T(tu), T(tv)))
    close(t, tu * v + u * tv, rtol=1e-15, atol=0)
    assert calls == []
    w, g = r.standard_normal((7, 3, 4)), r.standard_normal((7, 1, 4))
    y, pullback = ag.vjp(lambda p, q: p @ q, T(np.swapaxes(u, 1, 2)), T(w))
    gu, gw = pullback(T(g))
    close(gw, np.swapaxes(u, 1, 2).transpose(0, 2, 1) * g, rtol=1e-15, atol=0)
    close(gu, g @ np.swapaxes(w, 1, 2), rtol=1e-13, atol=1e-13)
    assert calls == [((7, 1, 3), (7, 3, 4)), ((7, 1, 4), (7, 4, 3))]  # forward, gu


def test_take_along_axis_with_per_example_indices():
    """take_along_axis whose indices differ per example (argsort/argmax results of a batch):
    one gather, values and per-example gradients equal a loop, unbatched x too, and an index
    out of range in any example raises ShapeError (the bounds check reads the whole batch)."""
    r = rng(43)
    x = r.standard_normal((4, 5, 6))
    idx = r.integers(0, 5, (4, 3, 6))
    X, I = T(x), ag.Tensor.from_array(idx)

    def loss(v, i):
        return ag.sum(ag.take_along_axis(v, i, 0) ** 2)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no per-example loop
        got = ag.vmap(lambda v, i: ag.take_along_axis(v, i, 0))(X, I)
        g = ag.vmap(ag.grad(loss))(X, I)
        shared = ag.vmap(lambda i: ag.take_along_axis(T(x[0]), i, 0))(I)
        last = ag.vmap(lambda v, i: ag.take_along_axis(v, i, -1), in_axes=(0, 1))(
            X, ag.Tensor.from_array(np.moveaxis(r.integers(0, 6, (4, 5, 2)), 0, 1)))
    close(got, np.stack([np.take_along_axis(x[b], idx[b], 0) for b in range(4)]))
    close(g, np.stack([ag.grad(loss)(T(x[b]), ag.Tensor.from_array(idx[b])).numpy()
                       for b in range(4)]))
    close(shared, np.stack([np.take_along_axis(x[0], idx[b], 0) for b in range(4)]))
    assert tuple(last.shape) == (4, 5, 2)
    bad = idx.copy()
    bad[2, 0, 0] = 5
    with pytest.raises(ag.ShapeError, match="out of range"):
        ag.vmap(lambda v, i: ag.take_along_axis(v, i, 0))(X, ag.Tensor.from_array(bad))
