"""ag.optim: updates against hand-computed steps, skipping, state, the fused-kernel hook and
gradient accumulation."""

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu import optim
from autograd_gpu.backend import NUMPY


def P(values):
    return ag.nn.Parameter(np.array(values, dtype=np.float64))


def G(values):
    return ag.Tensor.from_array(np.array(values, dtype=np.float64))


W0 = [1.0, -2.0, 0.5]
GRADS = [[0.1, 0.2, -0.3], [0.4, -0.1, 0.0], [-0.2, 0.3, 0.5]]


def run(opt_cls, steps=3, dtype=np.float64, **kw):
    p = ag.nn.Parameter(np.array(W0, dtype=dtype))
    opt = opt_cls([p], **kw)
    out = []
    for g in GRADS[:steps]:
        assert opt.step([ag.Tensor.from_array(np.array(g, dtype=dtype))]) is True
        out.append(p.numpy().copy())
    return out


def sgd_reference(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    # written out by hand from the definition, one step at a time
    w = np.array(W0)
    buf = None
    out = []
    for g in GRADS:
        g = np.array(g) + weight_decay * w
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g
        out.append(w.copy())
    return out


def test_sgd_plain_hand_computed():
    got = run(optim.SGD, lr=0.1)
    # step 1 by hand: w - 0.1 * g
    np.testing.assert_allclose(got[0], [0.99, -2.02, 0.53], rtol=1e-15)
    np.testing.assert_allclose(got[2], [1.0 - 0.01 - 0.04 + 0.02, -2.0 - 0.02 + 0.01 - 0.03,
                                        0.5 + 0.03 - 0.0 - 0.05], rtol=1e-14)


def test_sgd_momentum_hand_computed():
    got = run(optim.SGD, lr=0.1, momentum=0.9)
    # buf1 = g1; buf2 = 0.9 g1 + g2: w2 = w1 - 0.1 * buf2
    b1 = np.array(GRADS[0])
    b2 = 0.9 * b1 + np.array(GRADS[1])
    np.testing.assert_allclose(got[1], np.array(W0) - 0.1 * b1 - 0.1 * b2, rtol=1e-14)
    np.testing.assert_allclose(got, sgd_reference(0.1, momentum=0.9), rtol=1e-14)


@pytest.mark.parametrize("kw", [
    dict(momentum=0.9, nesterov=True),
    dict(momentum=0.8, dampening=0.3),
    dict(weight_decay=0.05),
    dict(momentum=0.9, nesterov=True, weight_decay=0.01),
])
def test_sgd_variants(kw):
    np.testing.assert_allclose(run(optim.SGD, lr=0.05, **kw), sgd_reference(0.05, **kw),
                               rtol=1e-14)


def test_sgd_nesterov_first_step_by_hand():
    # first step: buf = g, update = g + 0.9 g = 1.9 g
    got = run(optim.SGD, steps=1, lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(got[0], np.array(W0) - 0.19 * np.array(GRADS[0]), rtol=1e-14)


def adam_reference(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):
    w = np.array(W0)
    m = np.zeros(3)
    v = np.zeros(3)
    out = []
    for t, g in enumerate(GRADS, start=1):
        g = np.array(g)
        if decoupled:
            w = w * (1 - lr * wd)
        else:
            g = g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(w.copy())
    return out


def test_adam_first_step_is_lr_times_sign():
    # with bias correction, step 1 moves each weight by lr * g / (|g| + eps') = lr * sign(g)
    got = run(optim.Adam, steps=1, lr=0.01)
    np.testing.assert_allclose(got[0], np.array(W0) - 0.01 * np.sign(GRADS[0]), rtol=1e-6)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_three_steps(wd):
    np.testing.assert_allclose(run(optim.Adam, lr=0.01, weight_decay=wd),
                               adam_reference(0.01, wd=wd), rtol=1e-13)


def test_adamw_decoupled_decay():
    got = run(optim.AdamW, lr=0.01, weight_decay=0.1)
    np.testing.assert_allclose(got, adam_reference(0.01, wd=0.1, decoupled=True), rtol=1e-13)
    # first step by hand: w (1 - lr wd) - lr sign(g)
    first = np.array(W0) * (1 - 0.001) - 0.01 * np.sign(GRADS[0])
    np.testing.assert_allclose(got[0], first, rtol=1e-6)
    assert not np.allclose(got, adam_reference(0.01, wd=0.1))  # differs from L2 Adam
    assert optim.AdamW([P(W0)]).weight_decay == 0.01


def test_none_gradients_skip_parameters_and_float32():
    a = ag.nn.Parameter(np.ones(2, np.float32))
    b = ag.nn.Parameter(np.ones(2, np.float32))
    opt = optim.SGD([a, b], lr=0.5)
    opt.step([None, ag.Tensor.from_array(np.array([1.0, 2.0], np.float32))])
    np.testing.assert_array_equal(a.numpy(), [1, 1])
    np.testing.assert_array_equal(b.numpy(), [0.5, 0.0])
    assert b.dtype == np.float32


def test_step_skipped_by_flag_scaler_and_amp_gradients():
    p = P(W0)
    opt = optim.Adam([p], lr=0.1)
    assert opt.step([G([np.inf, 0, 0])], skip=True) is False

    class Scaler:
        found_inf = True

    assert opt.step([G([np.nan, 0, 0])], scaler=Scaler()) is False

    class Flagged(list):
        step_skipped = True

    assert opt.step(Flagged([G([np.inf, 1, 1])])) is False
    np.testing.assert_array_equal(p.numpy(), W0)
    assert opt.step_count == 0 and opt.skipped_steps == 3 and opt.state[0] == {}
    Scaler.found_inf = False
    assert opt.step([G(GRADS[0])], scaler=Scaler()) is True
    np.testing.assert_allclose(p.numpy(), adam_reference(0.1)[0], rtol=1e-12)


def test_real_loss_scaler_skip_if_available():
    scaler = ag.LossScaler.dynamic()
    scaler.update(True)  # an overflowing step
    p = P(W0)
    opt = optim.SGD([p], lr=1.0)
    assert opt.step([G([1, 1, 1])], scaler=scaler) is False
    np.testing.assert_array_equal(p.numpy(), W0)


def test_step_validates_gradients():
    p = P(W0)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(ag.ShapeError, match="one per parameter"):
        opt.step([G(W0), G(W0)])
    with pytest.raises(ag.ShapeError, match="expected shape"):
        opt.step([G([1.0, 2.0])])
    with pytest.raises(ag.ArgumentError):
        opt.step(["nope"])
    with pytest.raises(ag.ArgumentError):
        optim.SGD([p, p])
    with pytest.raises(ag.ArgumentError):
        optim.SGD([p], lr=-1)
    with pytest.raises(ag.ArgumentError):
        optim.SGD([p], momentum=0.0, nesterov=True)
    with pytest.raises(ag.ArgumentError):
        optim.Adam([p], betas=(1.0, 0.9))
    np.testing.assert_array_equal(p.numpy(), W0)


@pytest.mark.parametrize("cls, kw", [(optim.SGD, dict(lr=0.1, momentum=0.9)),
                                     (optim.Adam, dict(lr=0.01)),
                                     (optim.AdamW, dict(lr=0.01))])
def test_state_dict_resume_matches_uninterrupted(cls, kw):
    full = run(cls, **kw)
    p = P(W0)
    opt = cls([p], **kw)
    opt.step([G(GRADS[0])])
    sd = opt.state_dict()
    weights = p.numpy().copy()
    p2 = ag.nn.Parameter(weights)
    opt2 = cls([p2], lr=123.0)  # hyper-parameters come back from the state dict
    opt2.load_state_dict(sd)
    assert opt2.lr == kw["lr"] and opt2.step_count == 1
    for g in GRADS[1:]:
        opt2.step([G(g)])
    np.testing.assert_allclose(p2.numpy(), full[-1], rtol=1e-14)
    with pytest.raises(ag.AutogradError):
        opt2.load_state_dict({**sd, "state": [{"momentum_buffer": np.zeros(5)}]})


def test_training_reduces_loss_with_tape():
    rng = np.random.default_rng(0)
    x = ag.Tensor.from_array(rng.standard_normal((64, 3)))
    w_true = np.array([[1.0], [-2.0], [0.5]])
    y = ag.Tensor.from_array(x.numpy() @ w_true)
    model = ag.nn.Linear(3, 1, seed=0, dtype="float64")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(300):
        with ag.GradientTape() as tape:
            loss = ((model(x) - y) ** 2).mean()
        opt.step(tape.gradient(loss, model.parameters()))
    np.testing.assert_allclose(model.weight.numpy(), w_true, atol=1e-6)


def test_fused_kernel_hook_is_called_and_matches_xp_path(monkeypatch):
    """The optimizers' fused kernels (optim/kernels.py) replace the xp path where their family
    is ready; here they are NumPy implementations of the documented contract, counted."""
    from autograd_gpu.optim import kernels as okern

    calls = []

    # the family's NumPy references of the contract (what its self-check compares against)
    def sgd_momentum(bk, *args, **kw):
        calls.append("sgd")
        okern._ref_sgd(*args, **kw)

    def adam(bk, *args, **kw):
        calls.append("adam")
        okern._ref_adam(*args, **kw)

    monkeypatch.setattr(okern.FAMILY, "ready", lambda bk: bk is NUMPY)
    monkeypatch.setattr(okern, "sgd_momentum", sgd_momentum)
    monkeypatch.setattr(okern, "adam", adam)
    # the fused kernels take float32 parameters; float64 ones keep the xp path
    f32 = np.float32
    np.testing.assert_allclose(run(optim.SGD, lr=0.1, momentum=0.9, nesterov=True, dtype=f32),
                               sgd_reference(0.1, momentum=0.9, nesterov=True), rtol=1e-6)
    np.testing.assert_allclose(run(optim.AdamW, lr=0.01, weight_decay=0.1, dtype=f32),
                               adam_reference(0.01, wd=0.1, decoupled=True), rtol=1e-6)
    assert calls == ["sgd"] * 3 + ["adam"] * 3
    np.testing.assert_allclose(run(optim.Adam, lr=0.01), adam_reference(0.01), rtol=1e-13)
    assert calls == ["sgd"] * 3 + ["adam"] * 3


def test_gradient_accumulator():
    acc = optim.GradientAccumulator()
    acc.add([G([1.0, 2.0]), None])
    acc.add([G([3.0, 4.0]), G([1.0])])
    acc.add([G([5.0, 0.0]), None])
    assert acc.count == 3 and len(acc) == 3
    s, avg = acc.sum(), acc.average()
    np.testing.assert_array_equal(s[0].numpy(), [9.0, 6.0])
    np.testing.assert_array_equal(s[1].numpy(), [1.0])
    np.testing.assert_allclose(avg[0].numpy(), [3.0, 2.0])
    np.testing.assert_allclose(avg[1].numpy(), [1.0 / 3])
    assert avg.step_skipped is False
    with pytest.raises(ag.ShapeError):
        acc.add([G([1.0, 2.0])])

    class Flagged(list):
        step_skipped = True

    acc.add(Flagged([G([0.0, 0.0]), None]))
    assert acc.average().step_skipped is True
    acc.reset()
    assert acc.count == 0 and acc.sum() == []
    with pytest.raises(ag.ArgumentError):
        acc.average()


def test_accumulated_micro_batches_equal_full_batch_gradient():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 4))
    y = rng.standard_normal((12, 2))
    model = ag.nn.Linear(4, 2, seed=0, dtype="float64")

    def grads(xb, yb):
        with ag.GradientTape() as tape:
            loss = ((model(ag.Tensor.from_array(xb)) - ag.Tensor.from_array(yb)) ** 2).mean()
        return tape.gradient(loss, model.parameters())

    full = grads(x, y)
    acc = optim.GradientAccumulator()
    for i in range(0, 12, 4):
        acc.add(grads(x[i:i + 4], y[i:i + 4]))
    for a, b in zip(acc.average(), full):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, kw", [(optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True,
                                                      weight_decay=0.01)),
                                     (optim.SGD, dict(lr=0.1)),
                                     (optim.Adam, dict(lr=0.01, weight_decay=0.1)),
                                     (optim.AdamW, dict(lr=0.01, weight_decay=0.1))])
def test_optimizers_on_gpu_match_cpu(cls, kw, dtype):
    """Parameters on cuda (float32: the fused kernels; float64: the xp path) against the
    NumPy path."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((33, 17)).astype(dtype)
    gs = [rng.standard_normal((33, 17)).astype(dtype) for _ in range(3)]
    results = []
    for dev in ("cpu", "cuda"):
        p = ag.nn.Parameter(w0, device=dev)
        opt = cls([p], **kw)
        for g in gs:
            opt.step([ag.Tensor.from_array(g, device=dev)])
        assert p.device == dev
        results.append(p.numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-6)


def test_update_is_in_place_unless_the_old_value_is_still_referenced():
    import weakref

    import autograd_gpu as ag

    w = ag.Variable(np.ones(3))
    opt = ag.optim.SGD([w], lr=0.5)
    before = weakref.ref(w._data)  # not a reference that keeps the array alive
    opt.step([ag.Tensor.from_array(np.ones(3))])
    assert w._data is before()  # nothing else held the array: updated in place
    np.testing.assert_allclose(w.data, 0.5)
    kept = w.data  # a (read-only) view holds the array, as a tape's saved value would
    opt.step([ag.Tensor.from_array(np.ones(3))])
    assert w._data is not kept.base
    np.testing.assert_allclose(kept, 0.5)  # the old value is untouched
    np.testing.assert_allclose(w.data, 0.0)


def _low_reference(kind, dtype, lr, steps=3, **kw):
    """The documented update with a half-precision parameter: float32 state and arithmetic,
    the parameter rounded to ``dtype`` after every step (written out from the formulas)."""
    w = np.array(W0, dtype).astype(np.float32)
    m = v = buf = None
    out = []
    for t, g in enumerate(GRADS[:steps], start=1):
        g = np.array(g, dtype).astype(np.float32)
        wd = kw.get("weight_decay", 0.0)
        if kind == "AdamW":
            w = w * np.float32(1 - lr * wd)
        elif wd:
            g = g + np.float32(wd) * w
        if kind == "SGD":
            mom = kw.get("momentum", 0.0)
            if mom:
                buf = g.copy() if buf is None else np.float32(mom) * buf + g
                g = g + np.float32(mom) * buf if kw.get("nesterov") else buf
            w = w - np.float32(lr) * g
        else:
            b1, b2 = 0.9, 0.999
            m = (1 - b1) * g if m is None else b1 * m + (1 - b1) * g
            v = (1 - b2) * g * g if v is None else b2 * v + (1 - b2) * g * g
            w = w - (lr / (1 - b1**t)) * m / (np.sqrt(v / (1 - b2**t)) + 1e-8)
        w = w.astype(np.float32).astype(dtype).astype(np.float32)  # stored in dtype
        out.append(w.copy())
    return out


@pytest.mark.parametrize("dtype", [np.float16, ag.dtypes.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("kind,kw", [
    ("SGD", {}), ("SGD", dict(momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(weight_decay=0.1)), ("AdamW", dict(weight_decay=0.1)),
])
def test_half_precision_parameters_are_updated(kind, kw, dtype):
    """float16/bfloat16 parameters: the step works on a float32 copy with float32 state and
    writes the result back in the parameter's dtype (a step that left them unchanged passed
    every other test)."""
    lr = 0.1 if kind == "SGD" else 0.01
    got = run(getattr(optim, kind), dtype=dtype, lr=lr, **kw)
    ref = _low_reference(kind, dtype, lr, **kw)
    ulp = 2.0 ** -7 if dtype is ag.dtypes.bfloat16 else 2.0 ** -10
    for k, (a, b) in enumerate(zip(got, ref)):
        assert a.dtype == np.dtype(dtype), f"step {k + 1}: parameter dtype {a.dtype}"
        np.testing.assert_allclose(a.astype(np.float64), b, rtol=ulp, atol=0,
                                   err_msg=f"step {k + 1}")
    moved = np.abs(got[-1].astype(np.float64) - np.array(W0))
    assert (moved > 0.5 * lr * ulp).all()  # every entry moved, by more than rounding
    p = ag.nn.Parameter(np.array(W0, dtype))
    opt = getattr(optim, kind)([p], lr=lr, **kw)
    opt.step([ag.Tensor.from_array(np.array(GRADS[0], dtype))])
    assert all(s.dtype == np.float32 for s in opt.state[0].values())  # float32 state
