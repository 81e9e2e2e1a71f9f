"""Mixed precision: the loss scaler's state machine, loss scaling on the tape, skipped steps,
autocast dtypes, the cast cache, and an AMP-trained MLP on scikit-learn's digits."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu import amp
from autograd_gpu.dtypes import bfloat16

# ---- the scaler's state machine -------------------------------------------------------------


def test_dynamic_scaler_grows_after_interval_and_clamps_at_max():
    s = ag.LossScaler.dynamic(init_scale=8.0, growth_factor=2.0, growth_interval=3,
                              max_scale=32.0)
    seen = []
    for _ in range(10):
        s.update(False)
        seen.append((s.scale, s.growth_tracker))
    assert seen == [(8, 1), (8, 2), (16, 0), (16, 1), (16, 2), (32, 0), (32, 1), (32, 2),
                    (32, 0), (32, 1)]
    assert (s.skipped_steps, s.steps, s.found_inf) == (0, 10, False)


def test_dynamic_scaler_backs_off_resets_tracker_and_clamps_at_min():
    s = ag.LossScaler.dynamic(init_scale=4.0, backoff_factor=0.5, growth_interval=3,
                              min_scale=1.0)
    s.update(False)
    s.update(False)
    assert s.growth_tracker == 2
    s.update(True)
    assert (s.scale, s.growth_tracker, s.found_inf, s.skipped_steps) == (2.0, 0, True, 1)
    s.update(True)
    s.update(True)  # 0.5 would be below min_scale
    assert (s.scale, s.skipped_steps) == (1.0, 3)
    s.update(False)
    s.update(False)
    assert (s.scale, s.growth_tracker, s.found_inf) == (1.0, 2, False)
    s.update(False)  # three clean steps since the last overflow
    assert (s.scale, s.growth_tracker) == (2.0, 0)
    assert s.steps == 8


def test_static_and_none_scalers():
    s = ag.LossScaler.static(128.0)
    for f in (True, False, True):
        s.update(f)
    assert (s.scale, s.skipped_steps, s.found_inf, s.enabled) == (128.0, 2, True, True)
    n = ag.LossScaler.none()
    assert (n.scale, n.enabled) == (1.0, False)


def test_scaler_state_dict_round_trip():
    s = ag.LossScaler.dynamic(init_scale=1024.0, growth_interval=2, min_scale=2.0,
                              max_scale=4096.0)
    for f in (False, True, False, True, False):
        s.update(f)
    state = s.state_dict()
    assert state["scale"] == 256.0 and state["skipped_steps"] == 2 and state["growth_tracker"] == 1
    r = ag.LossScaler.dynamic()
    r.load_state_dict(state)
    assert r.state_dict() == state
    for f in (False, False, True, False):  # the same future from the same state
        s.update(f)
        r.update(f)
        assert r.state_dict() == s.state_dict()
    with pytest.raises(ag.ArgumentError, match="missing"):
        r.load_state_dict({k: v for k, v in state.items() if k != "scale"})
    with pytest.raises(ag.ArgumentError):
        r.load_state_dict(dict(state, growth_factor=0.5))
    assert r.state_dict() == s.state_dict()  # a failed load changes nothing


@pytest.mark.parametrize("kw", [dict(growth_factor=1.0), dict(backoff_factor=1.5),
                                dict(growth_interval=0), dict(init_scale=-1.0),
                                dict(min_scale=8.0, max_scale=4.0),
                                dict(init_scale=1e9, max_scale=1e6)])
def test_scaler_rejects_bad_arguments(kw):
    with pytest.raises(ag.ArgumentError):
        ag.LossScaler.dynamic(**kw)


def test_amp_config_parsing():
    cfg = ag.AmpConfig(precision_mode="bf16", loss_scaler=None)
    assert cfg.precision_mode is ag.PrecisionMode.BFLOAT16 and cfg.dtype == bfloat16
    assert not cfg.loss_scaler.enabled
    assert ag.AmpConfig().precision_mode is ag.PrecisionMode.FLOAT16
    assert ag.AmpConfig().loss_scaler.scale == 65536.0
    with pytest.raises(ag.ArgumentError, match="precision_mode"):
        ag.AmpConfig(precision_mode="int8")
    with pytest.raises(ag.ArgumentError, match="both"):
        ag.AmpConfig(autocast_ops=("matmul",), keep_fp32_ops=("matmul",))
    with pytest.raises(ag.ArgumentError):
        ag.GradientTape(amp="fp16")


# ---- loss scaling on the tape ---------------------------------------------------------------


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = ag.Tensor.from_array(rng.standard_normal((8, 5)).astype(np.float32))
    w1 = ag.Variable(rng.standard_normal((5, 4)).astype(np.float32) * 0.5)
    w2 = ag.Variable(rng.standard_normal((4, 1)).astype(np.float32) * 0.5)
    return x, w1, w2


def test_scaled_gradients_equal_unscaled_ones_exactly():
    """Power-of-two scales are exact: with nothing autocast, the unscaled gradients are the
    float32 gradients bit for bit."""
    x, w1, w2 = _data()
    with ag.GradientTape() as t:
        loss = ag.tanh(x @ w1) @ w2
        loss = (loss * loss).sum()
    ref = [g.numpy() for g in t.gradient(loss, [w1, w2])]
    cfg = ag.AmpConfig(autocast_ops=(), loss_scaler=ag.LossScaler.static(1024.0))
    with ag.GradientTape(amp=cfg) as t:
        loss = ag.tanh(x @ w1) @ w2
        loss = (loss * loss).sum()
    got = t.gradient(loss, [w1, w2])
    assert isinstance(got, amp.AmpGradients) and got.scale == 1024.0
    assert not got.step_skipped and not t.step_skipped
    for g, r in zip(got, ref):
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g.numpy(), r)


def test_output_gradients_are_scaled_too():
    x, w1, _ = _data()
    og = np.full((8, 4), 3.0, np.float32)
    with ag.GradientTape() as t:
        y = x @ w1
    (ref,) = t.gradient(y, [w1], output_gradients=[og])
    cfg = ag.AmpConfig(autocast_ops=(), loss_scaler=ag.LossScaler.static(64.0))
    with ag.GradientTape(amp=cfg) as t:
        y = x @ w1
    (got,) = t.gradient(y, [w1], output_gradients=[og])
    np.testing.assert_array_equal(got.numpy(), ref.numpy())


_INJECT = {"factor": 1.0}


@ag.defop("test_inject_grad", register=False)
class _InjectGrad:
    """y = x; the cotangent is multiplied by _INJECT['factor'] (inf to inject an overflow)."""

    def forward(bk, x):
        return x, ()

    def vjp(F, g, saved, needs):
        return (g * _INJECT["factor"],)

    def jvp(F, ts, saved):
        return ts[0]


def _train(steps, inject_at, scaler, use_optim):
    x, w1, w2 = _data(1)
    cfg = ag.AmpConfig(precision_mode="float16", loss_scaler=scaler)
    opt = ag.optim.SGD([w1, w2], lr=0.1) if use_optim else None
    history = []
    for step in range(steps):
        _INJECT["factor"] = float("inf") if step == inject_at else 1.0
        with ag.GradientTape(amp=cfg) as tape:
            h = ag.relu(x @ ag.apply(_InjectGrad, w1))
            loss = ((h @ w2) ** 2).mean()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # inf * 0 in the injected step
            grads = tape.gradient(loss, [w1, w2])
        assert np.isfinite(grads[1].numpy()).all()  # only w1's gradient carries the inf
        if use_optim:
            applied = opt.step(grads)
            assert applied is (step != inject_at)
        elif not grads.step_skipped:
            for p, g in zip((w1, w2), grads):
                p.assign(p.numpy() - 0.1 * g.numpy())
        history.append((w1.numpy().copy(), w2.numpy().copy(), tape.step_skipped,
                        scaler.scale))
    return history


@pytest.mark.parametrize("use_optim", [False, True])
def test_injected_inf_skips_exactly_that_step(use_optim):
    _INJECT["factor"] = 1.0
    scaler = ag.LossScaler.dynamic(init_scale=1024.0, growth_interval=100)
    hist = _train(5, 2, scaler, use_optim)
    assert [h[2] for h in hist] == [False, False, True, False, False]
    assert [h[3] for h in hist] == [1024.0, 1024.0, 512.0, 512.0, 512.0]
    # the skipped step left both weights untouched; every other step moved them
    np.testing.assert_array_equal(hist[2][0], hist[1][0])
    np.testing.assert_array_equal(hist[2][1], hist[1][1])
    for a, b in ((0, 1), (2, 3), (3, 4)):
        assert not np.array_equal(hist[a][0], hist[b][0])
    assert (scaler.skipped_steps, scaler.steps, scaler.found_inf) == (1, 5, False)
    # a run without the injection makes the same updates, one step shorter
    _INJECT["factor"] = 1.0
    clean = _train(4, -1, ag.LossScaler.dynamic(init_scale=1024.0, growth_interval=100),
                   use_optim)
    np.testing.assert_allclose(hist[4][0], clean[3][0], rtol=1e-5, atol=1e-6)


def test_float16_overflow_backs_off_until_it_fits():
    """With every op in float16 (the loss too), a scale of 65536 overflows the cotangents: the
    dynamic scaler halves until a step is clean, and that step's gradients match float32's."""
    x, w1, w2 = _data(2)
    with ag.GradientTape() as t:
        loss = ((ag.relu(x @ (w1 * 4.0)) @ w2) ** 2).sum()
    ref = [g.numpy() for g in t.gradient(loss, [w1, w2])]
    cfg = ag.AmpConfig(loss_scaler=ag.LossScaler.dynamic(init_scale=65536.0))
    skipped = []
    for _ in range(20):
        with ag.GradientTape(amp=cfg) as t:
            loss = ((ag.relu(x @ (w1 * 4.0)) @ w2) ** 2).sum()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            grads = t.gradient(loss, [w1, w2])
        skipped.append(grads.step_skipped)
        if not grads.step_skipped:
            break
    assert skipped[0] and not skipped[-1]
    assert cfg.loss_scaler.scale == 65536.0 / 2 ** (len(skipped) - 1)
    assert cfg.loss_scaler.skipped_steps == len(skipped) - 1
    for g, r in zip(grads, ref):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g.numpy(), r, rtol=2e-2, atol=2e-2 * np.abs(r).max())


def test_in_place_unscale_never_touches_a_buffer_twice():
    base = np.arange(12, dtype=np.float32)
    a, b, c = base.reshape(3, 4), base.reshape(4, 3), base[::2]
    d = np.ones(5, np.float32)
    out = amp._private_contiguous(np, [base, a, b, c, d, d])
    assert out[0] is base and out[4] is d  # first users of a buffer keep it
    for o in out[1:4] + out[5:]:
        assert o.flags.c_contiguous and not np.shares_memory(o, base) and o is not d
    for o, x in zip(out, [base, a, b, c, d, d]):
        np.testing.assert_array_equal(o, x)


def test_higher_order_gradients_stay_differentiable_under_amp():
    x = ag.Variable(np.array([0.5, -1.0, 2.0], np.float32))
    cfg = ag.AmpConfig(autocast_ops=(), loss_scaler=ag.LossScaler.static(8.0))
    with ag.GradientTape() as outer:
        with ag.GradientTape(amp=cfg) as inner:
            y = (x ** 3).sum()
        (g,) = inner.gradient(y, [x])  # 3 x^2, unscaled by a recorded multiply
        gs = g.sum()
    np.testing.assert_allclose(g.numpy(), 3 * x.numpy() ** 2, rtol=1e-6)
    (h,) = outer.gradient(gs, [x])
    np.testing.assert_allclose(h.numpy(), 6 * x.numpy(), rtol=1e-6)


# ---- autocast -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,low", [("float16", np.dtype(np.float16)), ("bfloat16", bfloat16)])
def test_autocast_dtypes_per_op_list(mode, low):
    rng = np.random.default_rng(0)
    x = ag.Tensor.from_array(rng.standard_normal((4, 6)).astype(np.float32))
    w = ag.Variable(rng.standard_normal((6, 3)).astype(np.float32))
    b = ag.Variable(np.zeros(3, np.float32))
    x64 = ag.Tensor.from_array(rng.standard_normal((4, 6)))
    cfg = ag.AmpConfig(precision_mode=mode, loss_scaler=ag.LossScaler.none(),
                       autocast_ops=("matmul", "exp"), keep_fp32_ops=("softmax", "tanh"))
    with ag.GradientTape(amp=cfg) as tape:
        h = x @ w  # autocast op
        e = ag.exp(x)  # autocast op named in the config
        s = ag.softmax(h, axis=-1)  # float32 op with a low-precision input
        t = ag.tanh(h)  # float32 op
        t64 = ag.tanh(x64)  # float32 ops leave float64 alone
        same = h * h  # follows its inputs: both low
        widened = h + b  # low + float32: the widest wins
        mixed = e + x64  # low + float64
        neg = -h  # one input: unchanged
        gram = ag.transpose(h) @ h  # an autocast op on inputs already in the low precision
        loss = (widened * s).sum() + t.sum() + same.sum() + mixed.sum() + neg.sum()
    assert (h.dtype, e.dtype, s.dtype, t.dtype, t64.dtype) == (low, low, np.float32,
                                                              np.float32, np.float64)
    assert (same.dtype, widened.dtype, mixed.dtype, neg.dtype) == (low, np.float32,
                                                                  np.float64, low)
    assert gram.dtype == low
    assert loss.dtype == np.float64
    grads = tape.gradient(loss, [w, b])
    assert [g.dtype for g in grads] == [np.float32, np.float32]  # fp32 master weights
    # the values: the same loss in float32 throughout, within the low precision's error
    with ag.GradientTape() as ref:
        h = x @ w
        loss = ((h + b) * ag.softmax(h, axis=-1)).sum() + ag.tanh(h).sum() + (h * h).sum() \
            + (ag.exp(x) + x64).sum() + (-h).sum()
    for g, r in zip(grads, ref.gradient(loss, [w, b])):
        r = r.numpy()
        np.testing.assert_allclose(g.numpy(), r, rtol=0.05, atol=0.05 * np.abs(r).max())


def test_autocast_only_while_recording():
    x, w1, _ = _data()
    cfg = ag.AmpConfig(loss_scaler=ag.LossScaler.none())
    with ag.GradientTape(amp=cfg):
        assert (x @ w1).dtype == np.float16
    assert (x @ w1).dtype == np.float32  # the tape stopped: no autocast
    tape = ag.GradientTape(amp=cfg)  # recording from creation
    y = x @ w1
    tape.gradient(y.sum(), [w1])
    assert y.dtype == np.float16
    assert (x @ w1).dtype == np.float32


def test_cast_cache_casts_a_weight_once_per_tape():
    x, w1, _ = _data()
    cfg = ag.AmpConfig(loss_scaler=ag.LossScaler.none())
    with ag.GradientTape(amp=cfg) as tape:
        a = x @ w1
        b = (x * 2.0) @ w1
        c = ag.tanh(x) @ w1
        d = x @ w1
        loss = (a + b + c + d).sum()
    # one recorded cast for w1 (used four times); the cache holds x and w1 (the temporaries
    # x*2 and tanh(x) are gone, and so are their entries)
    assert sum(n.op.name == "astype" for n in tape._nodes) == 1
    assert len(tape.addon("amp").autocast.cache) == 2
    (g,) = tape.gradient(loss, [w1])
    xs = x.numpy()
    ref = (2 * xs + 2 * xs + np.tanh(xs)).sum(0)[:, None] * np.ones((1, 4))
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-2)


@pytest.mark.parametrize("mode", ["bfloat16", "float16"])
def test_mixed_elementwise_ops_promote_without_a_cast_node(mode):
    """(x @ w) + b with a low-precision product and a float32 bias: the add reads both as they
    are (no astype node for the product), returns float32, and the gradients equal those of the
    explicit-cast formulation bit for bit."""
    x, w1, _ = _data()
    b = ag.Variable(np.linspace(-1, 1, 4).astype(np.float32))
    cfg = ag.AmpConfig(precision_mode=mode, loss_scaler=ag.LossScaler.none())
    with ag.GradientTape(amp=cfg) as tape:
        y = x @ w1 + b
        loss = (y * y).sum()
    assert y.dtype == np.float32
    casts = [n for n in tape._nodes if n.op.name == "astype"]
    assert len(casts) == 1  # w1 down for the matmul (x is not tracked); nothing up for the add
    g = tape.gradient(loss, [w1, b])
    low = ag.dtypes.as_dtype(mode)
    with ag.GradientTape() as ref:
        ref.watch([w1, b])
        z = ag.astype(ag.astype(x, low) @ ag.astype(w1, low), "float32") + b
        loss2 = (z * z).sum()
    g2 = ref.gradient(loss2, [w1, b])
    for a, c in zip(g, g2):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a.numpy(), c.numpy())


def test_released_tape_drops_its_casts_so_updates_stay_in_place():
    """After gradient() (non-persistent) the cast cache lets go of the weights' arrays, so an
    optimizer step inside the tape's scope still updates them in place (no weight copy)."""
    x, w1, _ = _data()
    cfg = ag.AmpConfig(loss_scaler=ag.LossScaler.none())
    opt = ag.optim.SGD([w1], lr=0.1)
    with ag.GradientTape(amp=cfg) as tape:
        loss = (x @ w1).sum()
    assert len(tape.addon("amp").autocast.cache) == 2
    grads = tape.gradient(loss, [w1])
    assert len(tape.addon("amp").autocast.cache) == 0
    before = id(w1._data)  # (holding the array itself would force the copy)
    opt.step(grads)
    assert id(w1._data) == before


def test_cast_cache_is_weak_and_sees_reassignment():
    x, w1, _ = _data()
    cfg = ag.AmpConfig(loss_scaler=ag.LossScaler.none())
    with ag.GradientTape(amp=cfg) as tape:
        cache = tape.addon("amp").autocast.cache
        tmp = ag.Tensor.from_array(np.ones((5, 2), np.float32))
        _ = x @ tmp
        n = len(cache)
        del tmp, _
        gc.collect()
        assert len(cache) == n - 1  # the entry died with its tensor
        y1 = x @ w1
        w1.assign(w1.numpy() * 2)
        y2 = x @ w1  # a new value: a new cast, not the cached one
    np.testing.assert_allclose(y2.numpy().astype(np.float32), 2 * y1.numpy().astype(np.float32),
                               rtol=1e-2, atol=1e-2)


# ---- an AMP-trained MLP on scikit-learn's digits --------------------------------------------


def _digits():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = x[perm], y[perm]
    n = 1400
    return x[:n], y[:n], x[n:], y[n:]


def _train_mlp(cfg, epochs=12, batch=100, hidden=64):
    xtr, ytr, xte, yte = _digits()
    rng = np.random.default_rng(1)
    params = [ag.Variable(rng.standard_normal((64, hidden)).astype(np.float32) * 0.18),
              ag.Variable(np.zeros(hidden, np.float32)),
              ag.Variable(rng.standard_normal((hidden, 10)).astype(np.float32) * 0.18),
              ag.Variable(np.zeros(10, np.float32))]
    w1, b1, w2, b2 = params
    opt = ag.optim.SGD(params, lr=0.2, momentum=0.9)
    order = np.random.default_rng(2)
    for _ in range(epochs):
        perm = order.permutation(len(xtr))
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            xb, yb = ag.Tensor.from_array(xtr[idx]), ag.Tensor.from_array(ytr[idx])
            with ag.GradientTape(amp=cfg) as tape:
                logits = ag.relu(xb @ w1 + b1) @ w2 + b2
                loss = ag.cross_entropy(logits, yb)
            opt.step(tape.gradient(loss, params))
    logits = ag.relu(ag.Tensor.from_array(xte) @ w1 + b1) @ w2 + b2
    return 100.0 * float((logits.numpy().argmax(-1) == yte).mean()), params


def test_amp_mlp_on_digits_matches_fp32_accuracy():
    acc32, p32 = _train_mlp(None)
    f16 = ag.AmpConfig(precision_mode="float16")
    acc16, p16 = _train_mlp(f16)
    bf16 = ag.AmpConfig(precision_mode="bfloat16", loss_scaler=ag.LossScaler.none())
    acc_bf, _ = _train_mlp(bf16)
    assert acc32 > 93.0
    assert acc16 >= acc32 - 1.0, (acc16, acc32)
    assert acc_bf >= acc32 - 1.0, (acc_bf, acc32)
    assert all(p.dtype == np.float32 for p in p16)  # master weights stayed float32
    assert f16.loss_scaler.steps == 12 * 14


# ---- GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_bf16_amp_on_gpu_matches_fp32():
    import cupy as cp

    rng = np.random.default_rng(0)
    x = ag.Tensor.from_array(rng.standard_normal((256, 128)).astype(np.float32), device="cuda")
    ws = [ag.Variable(rng.standard_normal((128, 128)).astype(np.float32) / 12, device="cuda")
          for _ in range(3)]

    def loss_fn():
        h = x
        for w in ws:
            h = ag.relu(h @ w)
        h = ag.astype(h, "float32")  # the loss in float32 (a float16 one overflows at 65536)
        return (h * h).mean()

    with ag.GradientTape() as t:
        loss = loss_fn()
    ref = [g.numpy() for g in t.gradient(loss, ws)]
    for mode in ("bfloat16", "float16"):
        cfg = ag.AmpConfig(precision_mode=mode)
        with ag.GradientTape(amp=cfg) as t:
            loss = loss_fn()
        grads = t.gradient(loss, ws)
        assert not grads.step_skipped
        for g, r in zip(grads, ref):
            assert isinstance(g.data, cp.ndarray) and g.dtype == np.float32
            np.testing.assert_allclose(g.numpy(), r, rtol=0.1, atol=0.05 * np.abs(r).max())
    # the GPU unscale+check path flags an inf in one array among several
    bk = x.backend
    s = ag.LossScaler.static(4.0)
    arrs = [cp.full((1000,), 8.0, cp.float32), cp.ones((3, 3), cp.float32)]
    arrs[1][1, 2] = cp.inf
    out, found = s.unscale_and_check(arrs, bk)
    assert found and float(out[0][0]) == 2.0
    out, found = s.unscale_and_check([arrs[0]], bk)
    assert not found
