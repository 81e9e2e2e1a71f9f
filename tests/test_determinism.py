"""Deterministic execution: seeding, the STRICT/WARN guard (forward and reverse rules), the
deterministic-kernel flag, CUBLAS_WORKSPACE_CONFIG, and bitwise-equal gradients across runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu import determinism
from autograd_gpu.ops import random as agrandom
from autograd_gpu.ops.context import deterministic_requested


@ag.defop("test_nondet", register=False, deterministic=False)
class _NonDet:
    """y = 2x; declared without a deterministic path (a test double)."""

    def forward(bk, x):
        return x * 2, ()

    def vjp(F, g, saved, needs):
        return (g * 2,)

    def jvp(F, ts, saved):
        return ts[0] * 2


_FLAG = {"ok": True}


@ag.defop("test_det_flag", register=False, deterministic=lambda bk, params: _FLAG["ok"])
class _DetFlag:
    """y = 3x; deterministic while _FLAG['ok'] (to exercise the check of reverse rules)."""

    def forward(bk, x):
        return x * 3, ()

    def vjp(F, g, saved, needs):
        return (g * 3,)

    def jvp(F, ts, saved):
        return ts[0] * 3


def _x():
    return ag.Variable(np.arange(4, dtype=np.float32))


def test_config_parsing():
    cfg = ag.DeterministicConfig(mode="warn", global_seed=None)
    assert cfg.mode is ag.DeterministicMode.WARN and cfg.cudnn_deterministic
    assert ag.DeterministicConfig().mode is ag.DeterministicMode.STRICT
    assert ag.DeterministicConfig().global_seed == 42
    with pytest.raises(ag.ArgumentError, match="mode"):
        ag.DeterministicConfig(mode="sometimes")
    with pytest.raises(ag.ArgumentError, match="global_seed"):
        ag.DeterministicConfig(global_seed=-3)
    with pytest.raises(ag.ArgumentError):
        ag.GradientTape(deterministic="strict")


def test_strict_raises_naming_the_op():
    x = _x()
    y = ag.apply(_NonDet, x)  # no deterministic tape: fine
    np.testing.assert_array_equal(y.numpy(), 2 * x.numpy())
    cfg = ag.DeterministicConfig(mode="strict", global_seed=None)
    with ag.GradientTape(deterministic=cfg):
        with pytest.raises(ag.NonDeterministicOpError, match="test_nondet") as info:
            ag.apply(_NonDet, x)
        assert "numpy" in str(info.value) and "STRICT" in str(info.value)
        y = ag.apply(_DetFlag, x)  # a deterministic op passes
    np.testing.assert_array_equal(y.numpy(), 3 * x.numpy())
    ag.apply(_NonDet, x)  # the guard ends with the tape


def test_strict_checks_reverse_rules_after_the_context_exits():
    x = _x()
    cfg = ag.DeterministicConfig(global_seed=None)
    _FLAG["ok"] = True
    try:
        with ag.GradientTape(deterministic=cfg) as tape:
            y = ag.apply(_DetFlag, x).sum()
        _FLAG["ok"] = False  # now the op reports no deterministic path on this backend
        with pytest.raises(ag.NonDeterministicOpError, match="test_det_flag.*reverse rule"):
            tape.gradient(y, [x])
    finally:
        _FLAG["ok"] = True
    with ag.GradientTape(deterministic=cfg) as tape:
        y = ag.apply(_DetFlag, x).sum()
    (g,) = tape.gradient(y, [x])
    np.testing.assert_array_equal(g.numpy(), np.full(4, 3.0, np.float32))


def test_warn_warns_once_per_op_and_off_is_silent():
    determinism.reset_warnings()
    x = _x()
    cfg = ag.DeterministicConfig(mode=ag.DeterministicMode.WARN, global_seed=None)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with ag.GradientTape(deterministic=cfg) as tape:
            y = ag.apply(_NonDet, x)
            y = ag.apply(_NonDet, y).sum()
        (g,) = tape.gradient(y, [x])  # the reverse rules warn no more
        with ag.GradientTape(deterministic=cfg):
            ag.apply(_NonDet, x)
    msgs = [str(w.message) for w in rec if "test_nondet" in str(w.message)]
    assert len(msgs) == 1 and "WARN" in msgs[0]
    np.testing.assert_array_equal(g.numpy(), np.full(4, 4.0, np.float32))
    off = ag.DeterministicConfig(mode="off")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ag.GradientTape(deterministic=off):
            assert not deterministic_requested()
            ag.apply(_NonDet, x)


def test_deterministic_kernels_requested_while_recording_and_sweeping():
    seen = []

    @ag.defop("test_probe", register=False)
    class _Probe:
        """y = x; records whether deterministic kernels are requested in forward and vjp."""

        def forward(bk, x):
            seen.append(("fwd", deterministic_requested()))
            return x, ()

        def vjp(F, g, saved, needs):
            seen.append(("vjp", deterministic_requested()))
            return (g,)

        def jvp(F, ts, saved):
            return ts[0]

    x = _x()
    assert not deterministic_requested()
    with ag.GradientTape(deterministic=ag.DeterministicConfig(global_seed=None)) as tape:
        y = ag.apply(_Probe, x).sum()
    assert not deterministic_requested()
    tape.gradient(y, [x])
    ag.apply(_Probe, x)
    assert seen == [("fwd", True), ("vjp", True), ("fwd", False)]


def test_apply_seeds_generators_and_sets_cublas(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cfg = ag.DeterministicConfig(global_seed=123)
    cfg.apply()
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    a = (np.random.rand(3), agrandom.next_seed("dropout"), agrandom.next_seed("dropout"),
         agrandom.next_seed("other"))
    ag.DeterministicConfig(global_seed=123).apply()
    b = (np.random.rand(3), agrandom.next_seed("dropout"), agrandom.next_seed("dropout"),
         agrandom.next_seed("other"))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:] and a[1] != a[2]
    # operation_seeds: each op has its own stream, so another op's draws do not shift it
    ag.DeterministicConfig(global_seed=123).apply()
    agrandom.next_seed("other")
    agrandom.next_seed("other")
    assert agrandom.next_seed("dropout") == a[1]
    ag.DeterministicConfig(global_seed=123, operation_seeds=False).apply()
    agrandom.next_seed("other")
    assert agrandom.next_seed("dropout") != a[1]  # one shared counter


def test_seeding_happens_once_per_config():
    cfg = ag.DeterministicConfig(global_seed=7)
    with ag.GradientTape(deterministic=cfg):
        first = agrandom.next_seed("dropout")
    with ag.GradientTape(deterministic=cfg):
        second = agrandom.next_seed("dropout")  # the stream goes on: new masks every step
    with ag.GradientTape(deterministic=ag.DeterministicConfig(global_seed=7)):
        again = agrandom.next_seed("dropout")  # a new config (a new run) starts it over
    assert first != second and again == first


def test_cublas_warning_when_too_late(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(determinism, "cublas_may_be_initialised", lambda: True)
    with pytest.warns(RuntimeWarning, match="CUBLAS_WORKSPACE_CONFIG"):
        determinism.ensure_cublas_workspace()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        determinism.ensure_cublas_workspace()  # already set: nothing to say


# ---- two STRICT runs, bitwise -----------------------------------------------------------------


def _run(device, seed=42, steps=3, vocab=50, tokens=(32, 24)):
    """A small model with an embedding (repeated indices: a scatter-add backward), a gather
    with repeated indices, dropout and a dense layer; returns every step's gradients."""
    cfg = ag.DeterministicConfig(mode="strict", global_seed=seed)
    cfg.apply()  # before any tensor exists (the tape would do it at its first use)
    rng = np.random.default_rng(0)
    ids = ag.Tensor.from_array(rng.integers(0, vocab // 5, tokens), device=device)
    table = ag.Variable(rng.standard_normal((vocab, 16)).astype(np.float32), device=device)
    w = ag.Variable(rng.standard_normal((16, 4)).astype(np.float32) * 0.3, device=device)
    rows = rng.integers(0, tokens[0], 4 * tokens[0])
    target = ag.Tensor.from_array(rng.standard_normal((4 * tokens[0], 4)).astype(np.float32),
                                  device=device)
    params = [table, w]
    opt = ag.optim.SGD(params, lr=0.05)
    out = []
    for _ in range(steps):
        with ag.GradientTape(deterministic=cfg) as tape:
            e = ag.embedding(ids, table).mean(axis=1)  # (batch, 16)
            e = ag.dropout(e, p=0.3)
            h = ag.getitem(e, rows)  # repeated rows: another scatter-add backward
            loss = ((h @ w - target) ** 2).mean()
        grads = tape.gradient(loss, params)
        out.append([g.numpy() for g in grads])
        opt.step(grads)
    return out


def _assert_bitwise(a, b):
    for ga, gb in zip(a, b):
        for x, y in zip(ga, gb):
            assert x.dtype == y.dtype and x.shape == y.shape
            assert x.tobytes() == y.tobytes()


def test_two_strict_runs_give_bitwise_equal_gradients():
    a = _run("cpu")
    b = _run("cpu")
    _assert_bitwise(a, b)
    assert not np.array_equal(a[0][1], a[1][1])  # training moved on (new masks, new weights)
    c = _run("cpu", seed=43)  # another seed: other dropout masks, other gradients
    assert not np.array_equal(a[0][1], c[0][1])


@pytest.mark.gpu
def test_two_strict_runs_bitwise_on_gpu_with_scatter_heavy_backward():
    # many tokens over few rows: thousands of colliding atomic adds without the deterministic
    # kernel
    a = _run("cuda", tokens=(256, 128), vocab=40)
    b = _run("cuda", tokens=(256, 128), vocab=40)
    _assert_bitwise(a, b)
