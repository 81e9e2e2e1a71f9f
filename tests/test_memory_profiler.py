"""GradientMemoryProfiler (autograd_gpu/profiling/memory.py): deltas against known allocations,
peaks, leak detection on clean and leaky loops, the per-op table of kept memory."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.checkpoint import CheckpointConfig
from autograd_gpu.profiling.memory import GradientMemoryProfiler, LeakReport

B, H, LAYERS = 256, 16, 10
ACT = B * H * 8  # bytes of one activation


@pytest.fixture
def prof():
    p = GradientMemoryProfiler(device="cpu")
    p.start_profiling()
    yield p
    p.stop_profiling()


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return [ag.Variable(rng.standard_normal((H, H)) / 4) for _ in range(LAYERS)]


def _forward(Ws, x):
    h = x
    for w in Ws:
        h = ag.tanh(h @ w)
    return (h * h).sum()


def test_delta_matches_known_allocation(prof):
    prof.record_checkpoint("before")
    a = np.ones(1024 * 1024)  # 8 MiB
    prof.record_checkpoint("allocated")
    del a
    prof.record_checkpoint("freed")
    assert prof.get_memory_delta("before", "allocated") == pytest.approx(8.0, abs=0.02)
    assert prof.get_memory_delta("allocated", "freed") == pytest.approx(-8.0, abs=0.02)
    assert prof.get_memory_delta("before", "freed") == pytest.approx(0.0, abs=0.02)


def test_peak_between_checkpoints(prof):
    prof.record_checkpoint("a")
    tmp = np.zeros(2 * 1024 * 1024)  # 16 MiB, freed before the next checkpoint
    tmp[0] = 1.0
    del tmp
    prof.record_checkpoint("b")
    assert prof.get_memory_delta("a", "b") == pytest.approx(0.0, abs=0.02)
    assert prof.get_peak_delta("a", "b") == pytest.approx(16.0, abs=0.05)
    assert prof.checkpoint("b").peak_mb - prof.checkpoint("a").current_mb == \
        pytest.approx(16.0, abs=0.05)
    assert prof.peak_mb >= 15.95


def test_forward_memory_is_the_activations(prof):
    Ws = _weights()
    x = ag.Tensor.from_array(np.random.default_rng(1).standard_normal((B, H)))
    prof.record_checkpoint("before_forward")
    with ag.GradientTape() as tape:
        loss = _forward(Ws, x)
    prof.record_checkpoint("after_forward")
    tape.gradient(loss, Ws)
    prof.record_checkpoint("after_backward")
    fwd = prof.get_memory_delta("before_forward", "after_forward")
    # the tape keeps each layer's tanh output (the next matmul saves the same array)
    assert fwd == pytest.approx(LAYERS * ACT / 2**20, rel=0.1)
    snap = prof.checkpoint("after_forward")
    assert snap.kept_bytes == LAYERS * ACT + LAYERS * H * H * 8 + x.data.nbytes
    assert prof.checkpoint("after_backward").kept_bytes == 0


def test_op_table_exact_bytes(prof):
    Ws = _weights()
    x = ag.Tensor.from_array(np.random.default_rng(2).standard_normal((B, H)))
    with ag.GradientTape(persistent=True) as tape:
        _forward(Ws, x)
    rows = {r["op"]: r for r in prof.op_memory_table(tape)}
    assert rows["tanh"]["nodes"] == LAYERS and rows["tanh"]["kept_bytes"] == LAYERS * ACT
    # matmul saves (h, W): h is the input x or a tanh output already counted once
    assert rows["matmul"]["kept_bytes"] == ACT + LAYERS * H * H * 8
    assert rows["sum"]["kept_bytes"] == 0
    text = prof.report()
    assert "memory kept by live tapes now" in text and "tanh" in text and "matmul" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("tanh"))
    assert f"{LAYERS * ACT / 2**20:.3f}" in line
    tape.reset()


def test_op_table_counts_checkpoint_anchors_and_drops(prof):
    Ws = _weights()
    x = ag.Tensor.from_array(np.random.default_rng(3).standard_normal((B, H)))
    cfg = CheckpointConfig("selective", min_compute_cost=10)  # matmul (32 flops/elt) kept
    with ag.GradientTape(checkpoint=cfg) as tape:
        loss = _forward(Ws, x)
        rows = {r["op"]: r for r in prof.op_memory_table()}
    # each tanh's output is the next matmul's saved input, so the tanh gets it back and no
    # replay needs that matmul's output; the last tanh feeds h * h (cheap, dropped), so it stays
    # dropped and the last matmul's output stays anchored for its replay
    assert rows["matmul"]["anchor_bytes"] == ACT
    assert rows["tanh"]["dropped"] == 1 and rows["mul"]["dropped"] == 1
    assert rows["tanh"]["kept_bytes"] == (LAYERS - 1) * ACT
    tape.gradient(loss, Ws)


def _clean_loop(prof, Ws, x, iters=5, cfg=None):
    for _ in range(iters):
        with ag.GradientTape(checkpoint=cfg) as tape:
            loss = _forward(Ws, x)
        grads = tape.gradient(loss, Ws)
        for w, g in zip(Ws, grads):
            w.assign_sub(1e-3 * g)
        prof.record_checkpoint("iteration")


@pytest.mark.parametrize("cfg", [None, CheckpointConfig("block", checkpoint_every_n=3)])
def test_clean_training_loop_has_no_leaks(prof, cfg):
    Ws = _weights()
    x = ag.Tensor.from_array(np.random.default_rng(4).standard_normal((B, H)))
    _clean_loop(prof, Ws, x, cfg=cfg)
    report = prof.detect_leaks()
    assert isinstance(report, LeakReport)
    assert report.num_suspicious == 0, str(report)
    assert not report and "nothing suspicious" in str(report)


def test_kept_persistent_tape_is_found(prof):
    Ws = _weights()
    x = ag.Tensor.from_array(np.random.default_rng(5).standard_normal((B, H)))
    with ag.GradientTape(persistent=True) as kept:
        loss = _forward(Ws, x)
    kept.gradient(loss, Ws)
    _clean_loop(prof, Ws, x, iters=2)
    report = prof.detect_leaks()
    assert report.num_suspicious == 1, str(report)
    item = report.items[0]
    assert item.kind == "tape" and f"id={kept.id}" in item.description
    assert item.nbytes >= LAYERS * ACT
    del kept, loss
    assert prof.detect_leaks().num_suspicious == 0


def test_kept_finished_tapes_are_found(prof):
    Ws = _weights()
    x = ag.Tensor.from_array(np.random.default_rng(6).standard_normal((B, H)))
    old = []
    for _ in range(3):
        with ag.GradientTape() as tape:
            loss = _forward(Ws, x)
        tape.gradient(loss, Ws)
        old.append(tape)
    report = prof.detect_leaks()
    # the newest tape may be alive (the loop variable); the two before it should be gone
    assert report.num_suspicious == 2, str(report)
    assert {it.kind for it in report.items} == {"tape"}
    assert all("still referenced" in it.description for it in report.items)


def test_orphaned_nodes_are_found(prof):
    Ws = _weights()
    x = ag.Tensor.from_array(np.random.default_rng(7).standard_normal((B, H)))
    tape = ag.GradientTape()
    tape.watch(x)
    out = _forward(Ws, x)  # recorded, never differentiated
    del tape  # the tape dies; `out` keeps the graph and its saved values alive
    report = prof.detect_leaks()
    nodes = [it for it in report.items if it.kind == "node"]
    assert len(nodes) == 1 and nodes[0].nbytes >= LAYERS * ACT, str(report)
    del out
    assert not [it for it in prof.detect_leaks().items if it.kind == "node"]


def test_growth_across_iterations_is_found(prof):
    Ws = _weights()
    x = ag.Tensor.from_array(np.random.default_rng(8).standard_normal((B, H)))
    history = []
    for _ in range(4):
        with ag.GradientTape() as tape:
            loss = _forward(Ws, x)
        tape.gradient(loss, Ws)
        history.append(ag.Tensor.from_array(np.ones((512, 512))))  # 2 MiB kept per iteration
        prof.record_checkpoint("iteration")
    report = prof.detect_leaks()
    kinds = sorted(it.kind for it in report.items)
    assert kinds == ["memory growth", "tensor growth"], str(report)
    growth = next(it for it in report.items if it.kind == "memory growth")
    assert growth.nbytes == pytest.approx(3 * 2 * 2**20, rel=0.05)


def test_errors():
    p = GradientMemoryProfiler(device="cpu")
    with pytest.raises(ag.ArgumentError, match="start_profiling"):
        p.record_checkpoint("x")
    with p:
        with pytest.raises(ag.ArgumentError, match="no checkpoint labelled 'nope'"):
            p.get_memory_delta("start", "nope")
        with pytest.raises(ag.ArgumentError, match="label"):
            p.record_checkpoint(3)


@pytest.mark.gpu
def test_gpu_pool_delta_and_nvml():
    import cupy

    p = GradientMemoryProfiler(device="cuda")
    with p:
        p.record_checkpoint("before")
        a = cupy.ones(1024 * 1024)  # 8 MiB from the pool
        p.record_checkpoint("allocated")
        del a
        p.record_checkpoint("freed")
        assert p.get_memory_delta("before", "allocated") == pytest.approx(8.0, abs=0.01)
        assert p.get_memory_delta("allocated", "freed") == pytest.approx(-8.0, abs=0.01)
        assert p.get_peak_delta("before", "freed") == pytest.approx(8.0, abs=0.01)
        snap = p.checkpoint("allocated")
        assert snap.pool_total_bytes >= 8 * 2**20
        try:
            import pynvml  # noqa: F401
        except ImportError:
            assert snap.device_used_bytes is None
        else:
            assert snap.device_used_bytes > 8 * 2**20
        assert "CuPy pool" in p.report()


def test_cpu_pool_total_counts_the_host_pools_cached_blocks(prof):
    """On the CPU, pool_total_bytes is the traced bytes plus the blocks the host memory pool
    keeps for the next sweep (which tracemalloc no longer sees); the report says so."""
    pool = ag.host_memory_pool()
    if not pool.enabled:
        pytest.skip("host memory pool not compiled or turned off")
    pool.free_all_blocks()
    rng = np.random.default_rng(0)
    w = ag.Variable(rng.standard_normal((512, 512)))
    x = ag.Tensor.from_array(rng.standard_normal((512, 512)))
    with ag.GradientTape() as tape:
        loss = ag.tanh(x @ w).sum()
    grads = tape.gradient(loss, [w])
    del grads  # its 2 MiB block goes back to the pool
    snap = prof.record_checkpoint("after")
    assert pool.cached_bytes() >= 512 * 512 * 8
    assert snap.pool_total_bytes == snap.current_bytes + pool.cached_bytes()
    assert "host pool:" in prof.report()
    pool.free_all_blocks()
