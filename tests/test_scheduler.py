"""HybridScheduler: the mode chosen for Jacobians and Hessians, its estimates and reasons."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag
import autograd_gpu.scheduler as S
from autograd_gpu.scheduler import GraphStats, HybridScheduler, last_schedule

RNG = np.random.default_rng(99)


def T(a):
    return ag.Tensor.from_array(np.asarray(a, dtype=np.float64), device="cpu")


def bench_f(A):
    return lambda x: (A @ x.sin()).tanh() * 2.0


def bench_ref(A, x):
    z = A.numpy() @ np.sin(x)
    return (2 * (1 - np.tanh(z) ** 2))[:, None] * A.numpy() * np.cos(x)[None, :]


def _record(n, m, cfg=None, persistent=True):
    A = T(RNG.standard_normal((m, n)) / np.sqrt(n))
    x = T(RNG.standard_normal(n))
    tape = ag.GradientTape(persistent=persistent, scheduler=cfg)
    tape.watch(x)
    y = bench_f(A)(x)
    return tape, x, y, A


def test_config_defaults_strings_and_validation():
    cfg = ag.SchedulerConfig()
    assert cfg.strategy is ag.SchedulingStrategy.AUTO
    assert (cfg.forward_mode_threshold, cfg.reverse_mode_threshold) == (10.0, 0.1)
    assert cfg.enable_mixed_mode is True
    assert ag.SchedulerConfig(strategy="Forward").strategy is ag.SchedulingStrategy.FORWARD
    assert ag.SchedulerConfig(strategy="mixed").strategy is ag.SchedulingStrategy.MIXED
    with pytest.raises(ag.ArgumentError, match="strategy"):
        ag.SchedulerConfig(strategy="sideways")
    with pytest.raises(ag.ArgumentError, match="forward_mode_threshold"):
        ag.SchedulerConfig(forward_mode_threshold=-1)
    with pytest.raises(ag.ArgumentError, match="reverse_mode_threshold"):
        ag.SchedulerConfig(forward_mode_threshold=1.0, reverse_mode_threshold=2.0)
    with pytest.raises(ag.ArgumentError, match="enable_mixed_mode"):
        ag.SchedulerConfig(strategy="mixed", enable_mixed_mode=False)
    tape, x, y, _ = _record(3, 4)
    with pytest.raises(ag.ArgumentError, match="mode"):
        tape.jacobian(y, x, mode="sideways")
    with pytest.raises(ag.ArgumentError):
        ag.jacobian(lambda v: v, x, scheduler=3.5)


def test_auto_picks_forward_for_few_inputs_many_outputs():
    tape, x, y, A = _record(8, 2000)
    J = tape.jacobian(y, x)
    s = tape.last_schedule
    assert s.mode == "forward"
    assert (s.n_inputs, s.n_outputs) == (8, 2000)
    assert s.forward_cost < s.reverse_cost
    assert "forward_mode_threshold" in s.reason
    assert J.shape == (2000, 8)
    np.testing.assert_allclose(J.numpy(), bench_ref(A, x.numpy()), rtol=1e-10, atol=1e-12)


def test_auto_picks_reverse_for_many_inputs_few_outputs():
    tape, x, y, A = _record(2000, 8)
    J = tape.jacobian(y, x)
    s = tape.last_schedule
    assert s.mode == "reverse"
    assert s.reverse_cost < s.forward_cost
    assert "reverse_mode_threshold" in s.reason
    np.testing.assert_allclose(J.numpy(), bench_ref(A, x.numpy()), rtol=1e-10, atol=1e-12)


def test_functional_jacobian_records_its_schedule():
    A = T(RNG.standard_normal((200, 8)))
    x = T(RNG.standard_normal(8))
    J = ag.jacobian(bench_f(A), x)
    assert last_schedule().mode == "forward" and last_schedule().kind == "jacobian"
    np.testing.assert_allclose(J.numpy(), bench_ref(A, x.numpy()), rtol=1e-10, atol=1e-12)
    A2 = T(RNG.standard_normal((8, 200)))
    x2 = T(RNG.standard_normal(200))
    ag.jacobian(bench_f(A2), x2)
    assert last_schedule().mode == "reverse"


@pytest.mark.parametrize("strategy,mode", [("forward", "forward"), ("reverse", "reverse")])
def test_config_strategy_is_honoured_against_the_estimate(strategy, mode):
    # the shapes favour the other mode: the explicit strategy still wins
    n, m = (200, 4) if mode == "forward" else (4, 200)
    cfg = ag.SchedulerConfig(strategy=strategy)
    tape, x, y, A = _record(n, m, cfg)
    J = tape.jacobian(y, x)
    assert tape.last_schedule.mode == mode
    assert tape.last_schedule.strategy.value == strategy
    np.testing.assert_allclose(J.numpy(), bench_ref(A, x.numpy()), rtol=1e-10, atol=1e-12)
    tape2 = ag.GradientTape.with_scheduler_config(cfg, persistent=True)
    assert tape2.scheduler_config is cfg


def test_mode_argument_beats_config():
    cfg = ag.SchedulerConfig(strategy=ag.SchedulingStrategy.REVERSE)
    tape, x, y, A = _record(4, 60, cfg)
    J = tape.jacobian(y, x, mode="forward")
    assert tape.last_schedule.mode == "forward"
    np.testing.assert_allclose(J.numpy(), bench_ref(A, x.numpy()), rtol=1e-10, atol=1e-12)


def test_estimate_decides_between_thresholds():
    cfg = ag.SchedulerConfig(forward_mode_threshold=1e6, reverse_mode_threshold=1e-6)
    tape, x, y, A = _record(10, 60, cfg)
    J = tape.jacobian(y, x)
    s = tape.last_schedule
    assert "estimated" in s.reason and s.mode == "forward"
    assert s.forward_cost < s.reverse_cost
    np.testing.assert_allclose(J.numpy(), bench_ref(A, x.numpy()), rtol=1e-10, atol=1e-12)
    tape, x, y, A = _record(60, 10, cfg)
    tape.jacobian(y, x)
    s = tape.last_schedule
    assert "estimated" in s.reason and s.mode == "reverse"
    assert s.reverse_cost < s.forward_cost
    assert str(s).startswith("jacobian: reverse mode")


def test_cost_model_reads_node_costs():
    tape, x, y, _ = _record(16, 32)
    from autograd_gpu.forward import relevant_nodes

    nodes = relevant_nodes(tape, {x._node}, [y._node])
    assert [n.op.name for n in nodes] == ["sin", "matmul", "tanh", "mul"]
    st = GraphStats(nodes)
    costs = [n.op.estimate_cost(n.out_meta, n.in_meta, n.params) for n in nodes]
    assert costs[1] == 2 * 32 * 16  # matmul: 2 m n flops
    elems = (16 + 16) + (32 + 16) + (32 + 32) + (32 + 32)  # out + linked inputs per node
    assert st.elements == 16 + 32 + 32 + 32
    assert st.work == pytest.approx(sum(costs) * S.T_FLOP + elems * S.T_ELEM)
    f1, r1, _, _ = HybridScheduler().estimate(st, 16, 32, 8)
    f2, r2, _, _ = HybridScheduler().estimate(st, 32, 16, 8)
    assert f2 > f1 and r2 < r1  # more inputs: forward dearer; fewer outputs: reverse cheaper


def test_memory_budget_chunks_the_sweep():
    cfg = ag.SchedulerConfig(strategy="reverse", memory_budget_mb=0.05)
    tape, x, y, A = _record(6, 300, cfg)
    J = tape.jacobian(y, x)
    assert 1 <= tape.last_schedule.chunk_size < 300
    np.testing.assert_allclose(J.numpy(), bench_ref(A, x.numpy()), rtol=1e-10, atol=1e-12)


def test_non_persistent_tape_is_released_after_jacobian():
    tape, x, y, A = _record(5, 7, persistent=False)
    J = tape.jacobian(y, x, mode="reverse", chunk_size=2)  # several sweeps, then released
    np.testing.assert_allclose(J.numpy(), bench_ref(A, x.numpy()), rtol=1e-10, atol=1e-12)
    with pytest.raises(ag.TapeError, match="persistent=True"):
        tape.jacobian(y, x)


def _hess_f(v):
    return (v.sin() * v.sum()).sum()


def _hess_ref(x):
    s = x.sum()
    # f = S * sum(sin x): H = diag(-sin x) S + cos x_i + cos x_j
    return np.diag(-np.sin(x) * s) + np.cos(x)[:, None] + np.cos(x)[None, :]


@pytest.mark.parametrize("cfg,mode", [
    (ag.SchedulerConfig(strategy="mixed"), "forward-over-reverse"),
    (ag.SchedulerConfig(), "forward-over-reverse"),
    (ag.SchedulerConfig(enable_mixed_mode=False), "reverse-over-reverse"),
    (ag.SchedulerConfig(strategy="reverse"), "reverse-over-reverse"),
    (ag.SchedulerConfig(strategy="forward"), "forward-over-forward"),
])
def test_hessian_and_hvp_modes(cfg, mode):
    x = RNG.standard_normal(4)
    H = ag.hessian(_hess_f, T(x), scheduler=cfg)
    assert last_schedule().mode == mode and last_schedule().kind == "hessian"
    np.testing.assert_allclose(H.numpy(), _hess_ref(x), rtol=1e-10, atol=1e-12)
    v = RNG.standard_normal(4)
    hv = ag.hvp(_hess_f, T(x), T(v), scheduler=cfg)
    assert last_schedule().mode == mode and last_schedule().kind == "hvp"
    np.testing.assert_allclose(hv.numpy(), _hess_ref(x) @ v, rtol=1e-10, atol=1e-12)


def test_batch_jacobian_uses_per_example_sizes():
    W = T(RNG.standard_normal((3, 50)))
    x = T(RNG.standard_normal((4, 3)))
    tape = ag.GradientTape(persistent=True)
    tape.watch(x)
    y = (x @ W).tanh()  # per example: R^3 -> R^50, forward favoured
    bj = tape.batch_jacobian(y, x)
    assert tape.last_schedule.kind == "batch_jacobian"
    assert tape.last_schedule.mode == "forward"
    assert (tape.last_schedule.n_inputs, tape.last_schedule.n_outputs) == (3, 50)
    ref = (1 - np.tanh(x.numpy() @ W.numpy()) ** 2)[:, :, None] * W.numpy().T[None]
    np.testing.assert_allclose(bj.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_strings_and_enums_accepted_everywhere():
    A = T(RNG.standard_normal((30, 3)))
    x = T(RNG.standard_normal(3))
    tape = ag.GradientTape(persistent=True, scheduler="reverse")
    tape.watch(x)
    y = bench_f(A)(x)
    J1 = tape.jacobian(y, x)
    assert tape.last_schedule.mode == "reverse"
    J2 = tape.jacobian(y, x, mode=ag.SchedulingStrategy.FORWARD)
    assert tape.last_schedule.mode == "forward"
    np.testing.assert_allclose(J1.numpy(), J2.numpy(), rtol=1e-12, atol=1e-14)
    ag.jacobian(bench_f(A), x, scheduler=ag.SchedulingStrategy.REVERSE)
    assert last_schedule().mode == "reverse"
    with pytest.raises(ag.ArgumentError, match="scheduler"):
        ag.GradientTape(scheduler="upward")
    assert isinstance(tape.scheduler_config, ag.SchedulerConfig)
