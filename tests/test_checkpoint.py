"""Gradient checkpointing (autograd_gpu/checkpoint.py, autograd_gpu/checkpointing/): every
strategy gives NONE's gradients bit for bit, memory really goes down, AUTO keeps its budget,
ag.checkpoint segments."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.checkpoint import (
    CheckpointBudgetError,
    CheckpointConfig,
    CheckpointStrategy,
    checkpoint_stats,
)
from autograd_gpu.checkpointing.chain import ChainPlan, chain_plan, revolve_cost, split
from autograd_gpu.checkpointing.records import droppable_bytes
from autograd_gpu.ops.random import set_global_seed

DEPTH, WIDTH = 50, 16
MB = 1024.0 * 1024.0


class MLP:
    """50 x (matmul, + bias, tanh, dropout): four recorded ops per layer. Width 16 and a large
    batch make activations (batch x 16 float64) dominate the weights (16 x 16)."""

    def __init__(self, depth=DEPTH, width=WIDTH, p=0.1, seed=0):
        rng = np.random.default_rng(seed)
        self.W = [ag.Variable(rng.standard_normal((width, width)) / np.sqrt(width))
                  for _ in range(depth)]
        self.b = [ag.Variable(0.1 * rng.standard_normal(width)) for _ in range(depth)]
        self.p = p

    def params(self):
        return self.W + self.b

    def __call__(self, h):
        for i, (w, b) in enumerate(zip(self.W, self.b)):
            h = ag.dropout(ag.tanh(h @ w + b), p=self.p, seed=1000 + i)
        return (h * h).sum()


def step(model, x0, cfg):
    """One forward + backward; returns (loss, grads as numpy, checkpoint stats)."""
    x = ag.Tensor.from_array(x0)
    with ag.GradientTape(checkpoint=cfg) as tape:
        loss = model(x)
    grads = tape.gradient(loss, model.params())
    return loss.numpy(), [g.numpy() for g in grads], checkpoint_stats(tape)


def measured_peak(model, x0, cfg) -> float:
    """tracemalloc peak of one step above the memory before it, in MB (after a warm-up step)."""
    step(model, x0, cfg)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        step(model, x0, cfg)
        return (tracemalloc.get_traced_memory()[1] - base) / MB
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def model():
    return MLP()


@pytest.fixture(scope="module")
def x_small():
    return np.random.default_rng(1).standard_normal((64, WIDTH))


@pytest.fixture(scope="module")
def reference(model, x_small):
    return step(model, x_small, None)


STRATEGIES = [
    CheckpointConfig("block", checkpoint_every_n=3),
    CheckpointConfig("block", checkpoint_every_n=7),
    CheckpointConfig("selective", min_compute_cost=10),  # matmul (2*16 flops/elt) kept
    CheckpointConfig("full"),
    CheckpointConfig("auto", memory_budget_mb=0.15),  # tight: fallback, replayed several times
    CheckpointConfig("auto", memory_budget_mb=0.3),  # greedy segments: each op replayed once
    CheckpointConfig("auto", memory_budget_mb=0.6),
    CheckpointConfig("auto", memory_budget_mb=1.5),  # everything fits: nothing recomputed
]


@pytest.mark.parametrize("cfg", STRATEGIES, ids=lambda c: f"{c.strategy.value}-"
                         f"{c.checkpoint_every_n}-{c.memory_budget_mb}")
def test_gradients_equal_none_bitwise(model, x_small, reference, cfg):
    loss0, grads0, _ = reference
    loss, grads, stats = step(model, x_small, cfg)
    assert np.array_equal(loss, loss0)
    assert len(grads) == len(grads0) == 2 * DEPTH
    for g, g0 in zip(grads, grads0):
        assert np.array_equal(g, g0)
    assert stats["recorded"] == 4 * DEPTH + 2
    if cfg.memory_budget_mb == 1.5:
        assert stats["dropped"] == 0 and stats["replayed_ops"] == 0
    elif cfg.memory_budget_mb in (0.3, 0.6):  # one replay per segment, the last one none
        assert 0 < stats["replayed_ops"] <= stats["recorded"]
    else:  # checkpointing really happened: values were dropped and recomputed
        assert stats["dropped"] > 0 and stats["replayed_ops"] > 0


def test_none_strategy_and_strings():
    assert CheckpointConfig("selective").strategy is CheckpointStrategy.SELECTIVE
    assert CheckpointConfig(strategy="BLOCK").strategy is CheckpointStrategy.BLOCK
    tape = ag.GradientTape(checkpoint=CheckpointConfig("none"))
    assert tape.addon("checkpoint") is None
    tape2 = ag.GradientTape.with_checkpoint_config("full")
    assert tape2.checkpoint_config.strategy is CheckpointStrategy.FULL
    assert tape2.addon("checkpoint") is not None


@pytest.mark.parametrize("kw, word", [
    ({"strategy": "sometimes"}, "strategy"),
    ({"strategy": "block", "checkpoint_every_n": 0}, "checkpoint_every_n"),
    ({"strategy": "selective", "min_compute_cost": -1}, "min_compute_cost"),
    ({"strategy": "auto"}, "memory_budget_mb"),
    ({"strategy": "auto", "memory_budget_mb": -2}, "memory_budget_mb"),
])
def test_config_errors(kw, word):
    with pytest.raises(ag.ArgumentError, match=word):
        CheckpointConfig(**kw)


def test_block_n3_peak_at_most_half_of_none(model):
    x0 = np.random.default_rng(2).standard_normal((1024, WIDTH))
    none = measured_peak(model, x0, None)
    block = measured_peak(model, x0, CheckpointConfig("block", checkpoint_every_n=3))
    # NONE keeps 3 batch x 16 float64 arrays per layer (tanh output, dropout mask and output)
    assert none > 3 * DEPTH * 1024 * WIDTH * 8 / MB * 0.95
    assert block <= 0.5 * none, (block, none)


def test_memory_is_freed_during_the_forward(model):
    """Dropping happens at record time: after the forward (before any gradient) a FULL tape
    holds only a few arrays while NONE holds all activations."""
    x0 = np.random.default_rng(3).standard_normal((1024, WIDTH))
    held = {}
    for name, cfg in (("none", None), ("full", CheckpointConfig("full"))):
        x = ag.Tensor.from_array(x0)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            with ag.GradientTape(checkpoint=cfg) as tape:
                loss = model(x)
            held[name] = (tracemalloc.get_traced_memory()[0] - base) / MB
        finally:
            tracemalloc.stop()
        tape.gradient(loss, model.params())
    act = 1024 * WIDTH * 8 / MB
    assert held["none"] > 140 * act
    assert held["full"] < 0.1 * held["none"]


@pytest.mark.parametrize("budget", [1.5, 2.5, 4.0, 8.0])
def test_auto_stays_under_budget(model, budget):
    x0 = np.random.default_rng(4).standard_normal((1024, WIDTH))
    # memory that does not scale with the batch (graph objects, weight gradients): the same
    # step with a batch of one under NONE
    overhead = measured_peak(model, x0[:1], None)
    none = measured_peak(model, x0, None)
    peak = measured_peak(model, x0, CheckpointConfig("auto", memory_budget_mb=budget))
    assert none > 15.0  # the budgets are well below NONE's peak
    assert peak - overhead <= budget, (peak, overhead, budget)
    _, grads, stats = step(model, x0, CheckpointConfig("auto", memory_budget_mb=budget))
    _, grads0, _ = step(model, x0, None)
    assert all(np.array_equal(g, g0) for g, g0 in zip(grads, grads0))
    assert stats["dropped"] > 0


def test_auto_recomputes_less_with_more_budget(model):
    x0 = np.random.default_rng(5).standard_normal((1024, WIDTH))
    replayed = [step(model, x0, CheckpointConfig("auto", memory_budget_mb=b))[2]["replayed_ops"]
                for b in (1.5, 3.0, 30.0)]
    assert replayed[0] > replayed[1] > replayed[2] == 0


def test_auto_impossible_budget_says_so(model):
    x0 = np.random.default_rng(6).standard_normal((1024, WIDTH))
    with pytest.raises(CheckpointBudgetError) as info:
        step(model, x0, CheckpointConfig("auto", memory_budget_mb=0.2))
    assert isinstance(info.value, ag.AutogradError)
    msg = str(info.value)
    assert "memory_budget_mb=0.2" in msg and "working set" in msg and "op '" in msg


def test_selective_replays_only_cheap_ops(model, x_small, reference):
    cfg = CheckpointConfig("selective", min_compute_cost=10)
    x = ag.Tensor.from_array(x_small)
    with ag.GradientTape(checkpoint=cfg) as tape:
        loss = model(x)
    kinds = {}
    for n in tape._nodes:
        kinds.setdefault(n.op.name, set()).add(n.saved is None)
    assert kinds["matmul"] == {False}  # expensive: kept
    assert kinds["tanh"] == {True} and kinds["dropout"] == {True}  # cheap: dropped
    grads = tape.gradient(loss, model.params())
    assert all(np.array_equal(g.numpy(), g0) for g, g0 in zip(grads, reference[1]))
    by_op = checkpoint_stats(tape)["replayed_by_op"]
    assert "matmul" not in by_op and by_op["tanh"] == DEPTH


def _selective_step(layer, depth, x0, cfg, seed=7):
    """A forward + backward of ``depth`` x ``layer(h, w, b)``; (grads, stats, tracemalloc peak
    MB of the step, after a warm-up)."""
    rng = np.random.default_rng(seed)
    Ws = [ag.Variable(rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)) for _ in range(depth)]
    bs = [ag.Variable(0.1 * rng.standard_normal(WIDTH)) for _ in range(depth)]

    def run():
        x = ag.Tensor.from_array(x0)
        with ag.GradientTape(checkpoint=cfg) as tape:
            h = x
            for w, b in zip(Ws, bs):
                h = layer(h, w, b)
            loss = (h * h).sum()
        grads = tape.gradient(loss, Ws + bs)
        return [g.numpy() for g in grads], checkpoint_stats(tape)

    run()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        grads, stats = run()
        peak = (tracemalloc.get_traced_memory()[1] - base) / MB
    finally:
        tracemalloc.stop()
    return grads, stats, peak


SELECTIVE_LAYERS = {
    # the tanh's output is the next matmul's saved input: nothing to drop, nothing to replay
    "tanh-mlp": lambda h, w, b: ag.tanh(h @ w + b),
    # gelu saves its input (the bias add's output), rebuilt from the anchored matmul output
    "gelu-ffn": lambda h, w, b: ag.gelu(h @ w + b),
    # a residual stream: every value's replay reaches back through all earlier branches
    "residual": lambda h, w, b: h + ag.tanh(h @ w + b),
}


# matmul (2 x 16 flops per output element) is expensive; tanh (4), gelu (12) and adds are cheap
SELECTIVE_CFG = CheckpointConfig("selective", min_compute_cost=20)


@pytest.mark.parametrize("kind", sorted(SELECTIVE_LAYERS))
def test_selective_holds_no_more_than_none_and_never_replays_a_matmul(kind):
    x0 = np.random.default_rng(2).standard_normal((2048, WIDTH))
    layer = SELECTIVE_LAYERS[kind]
    grads0, _, peak0 = _selective_step(layer, 30, x0, None)
    grads, stats, peak = _selective_step(layer, 30, x0, SELECTIVE_CFG)
    assert all(np.array_equal(g, g0) for g, g0 in zip(grads, grads0))
    assert "matmul" not in stats["replayed_by_op"]
    # (it used to keep every matmul output on top: 1.9x NONE's peak on the tanh MLP)
    assert peak <= 1.1 * peak0, (peak, peak0)
    if kind == "tanh-mlp":  # only the last tanh (before h * h) stays dropped, and the caller
        # still holds its output: nothing is replayed; one anchor in case the caller had not
        assert stats["replayed_ops"] == 0 and stats["dropped"] == 2 and stats["anchors"] == 1
    else:  # the gelu's input, or the tanh output no later node saves: replayed per layer
        assert stats["replayed_by_op"]["add"] >= 30 and stats["anchors"] >= 30


def test_selective_bounds_the_starts_of_a_residual_stream():
    """Each residual add's replay would reach back through every earlier branch; a value whose
    replay needs more than MAX_STARTS anchors is anchored itself, so the bookkeeping stays
    bounded on deep residual networks."""
    from autograd_gpu.checkpointing.selective import MAX_STARTS

    x = ag.Tensor.from_array(np.random.default_rng(3).standard_normal((8, WIDTH)))
    rng = np.random.default_rng(4)
    with ag.GradientTape(checkpoint=SELECTIVE_CFG) as tape:
        tape.watch(x)
        h = x
        for _ in range(40):
            w = ag.Tensor.from_array(rng.standard_normal((WIDTH, WIDTH)) / 4)
            h = h + ag.tanh(h @ w)
        widest = max(len(n.extra.starts) for n in tape._nodes)
        loss = (h * h).sum()
    assert widest <= MAX_STARTS == 8  # unbounded, the stream's last value would need 40
    (g,) = tape.gradient(loss, [x])
    with ag.GradientTape() as ref:
        ref.watch(x)
        h = x
        rng = np.random.default_rng(4)
        for _ in range(40):
            w = ag.Tensor.from_array(rng.standard_normal((WIDTH, WIDTH)) / 4)
            h = h + ag.tanh(h @ w)
        loss = (h * h).sum()
    assert np.array_equal(g.numpy(), ref.gradient(loss, [x])[0].numpy())


def test_block_keeps_every_nth_op(model, x_small):
    x = ag.Tensor.from_array(x_small)
    with ag.GradientTape(checkpoint=CheckpointConfig("block", checkpoint_every_n=3)) as tape:
        loss = model(x)
    dropped = 0
    for i, n in enumerate(tape._nodes):
        if n.saved is None:
            dropped += 1
            assert (i + 1) % 3 != 0
        elif (i + 1) % 3 != 0:
            # kept off the grid only when dropping frees nothing: saved values that are
            # inputs from outside the graph (x, weights) or none at all (add)
            assert droppable_bytes(n, n.extra.ext) == 0, (i, n)
    # ops that keep graph values: matmul (its input h; not the first one, whose input is x),
    # tanh (y), dropout (mask), the final mul (h, h)
    holders = {4 * k + j for k in range(DEPTH) for j in (0, 2, 3)} - {0} | {4 * DEPTH}
    assert dropped == len([i for i in holders if (i + 1) % 3]) == 100
    tape.gradient(loss, model.params())


def test_graph_released_after_gradient(model, x_small):
    """No checkpoint bookkeeping (kept arrays) outlives the gradient call."""
    x = ag.Tensor.from_array(x_small)
    with ag.GradientTape(checkpoint=CheckpointConfig("auto", memory_budget_mb=0.3)) as tape:
        loss = model(x)
    tape.gradient(loss, model.params())
    node, count = loss._node, 0
    while node is not None and node.op is not None:
        assert node.saved is None and node.extra is None
        count += 1
        node = next((p for p in node.parents if p is not None), None)
    assert count == 4 * DEPTH + 2


def test_persistent_tape_twice_and_nested_tapes(model, x_small, reference):
    x = ag.Tensor.from_array(x_small)
    with ag.GradientTape(persistent=True,
                         checkpoint=CheckpointConfig("block", checkpoint_every_n=4)) as tape:
        loss = model(x)
    for _ in range(2):
        grads = tape.gradient(loss, model.params())
        assert all(np.array_equal(g.numpy(), g0) for g, g0 in zip(grads, reference[1]))
    # restored values are dropped again as the sweep moves on: most nodes hold nothing
    held = sum(n.saved is not None and n.op.name != "add" for n in tape._nodes)
    assert held < 0.5 * len(tape._nodes)
    # an outer tape without checkpointing shares the nodes the inner one drops
    x = ag.Tensor.from_array(x_small)
    with ag.GradientTape() as outer:
        with ag.GradientTape(checkpoint=CheckpointConfig("full")) as inner:
            loss = model(x)
    g_inner = inner.gradient(loss, model.params())
    g_outer = outer.gradient(loss, model.params())
    for a, b, c in zip(g_inner, g_outer, reference[1]):
        assert np.array_equal(a.numpy(), c) and np.array_equal(b.numpy(), c)


@pytest.mark.parametrize("budget", [0.3, 0.6])
def test_auto_persistent_tape_twice_and_outer_tape(model, x_small, reference, budget):
    """Anchors held by consumer nodes stay for a second gradient() of a persistent tape, and an
    outer tape sees the values the inner AUTO tape dropped."""
    cfg = CheckpointConfig("auto", memory_budget_mb=budget)
    x = ag.Tensor.from_array(x_small)
    with ag.GradientTape(persistent=True, checkpoint=cfg) as tape:
        loss = model(x)
    for _ in range(2):
        grads = tape.gradient(loss, model.params())
        assert all(np.array_equal(g.numpy(), g0) for g, g0 in zip(grads, reference[1]))
    assert checkpoint_stats(tape)["replayed_ops"] > 0
    x = ag.Tensor.from_array(x_small)
    with ag.GradientTape() as outer:
        with ag.GradientTape(checkpoint=cfg) as inner:
            loss = model(x)
    for t in (inner, outer):
        grads = t.gradient(loss, model.params())
        assert all(np.array_equal(g.numpy(), g0) for g, g0 in zip(grads, reference[1]))


def test_reset_starts_the_plan_over(model, x_small, reference):
    cfg = CheckpointConfig("auto", memory_budget_mb=0.6)
    x = ag.Tensor.from_array(x_small)
    with ag.GradientTape(checkpoint=cfg) as tape:
        model(x)
        tape.reset()
        plan = tape.addon("checkpoint").plan
        assert plan.mode == "retain" and plan.segments.held == 0
        loss = model(x)
    grads = tape.gradient(loss, model.params())
    assert all(np.array_equal(g.numpy(), g0) for g, g0 in zip(grads, reference[1]))
    stats = checkpoint_stats(tape)
    assert stats["recorded"] == 2 * (4 * DEPTH + 2) and stats["replayed_ops"] > 0


def test_second_order_through_checkpointed_tape():
    x = ag.Tensor.from_array(np.array([0.3, -0.7, 1.1]))
    with ag.GradientTape() as t2:
        t2.watch(x)
        with ag.GradientTape(checkpoint=CheckpointConfig("full")) as t1:
            t1.watch(x)
            y = ag.sin(ag.tanh(x) * 2.0).sum()
        (g,) = t1.gradient(y, [x])
        s = g.sum()
    (h,) = t2.gradient(s, [x])
    xv = x.numpy()
    u, du = np.tanh(xv), 1 - np.tanh(xv) ** 2
    np.testing.assert_allclose(g.numpy(), np.cos(2 * u) * 2 * du, rtol=1e-12)
    d2 = -np.sin(2 * u) * 4 * du**2 + np.cos(2 * u) * 2 * (-2 * u * du)
    np.testing.assert_allclose(h.numpy(), d2, rtol=1e-12)


# ---- ag.checkpoint ------------------------------------------------------------------------


def _segment_model(seed=0):
    rng = np.random.default_rng(seed)
    Ws = [ag.Variable(rng.standard_normal((8, 8)) / np.sqrt(8)) for _ in range(6)]

    def block(h, i):  # reads its weights from a closure; dropout seeds come from the stream
        h = ag.tanh(h @ Ws[2 * i])
        return ag.dropout(ag.tanh(h @ Ws[2 * i + 1]), p=0.25)

    return Ws, block


@pytest.mark.parametrize("use_ck", [False, True])
def test_explicit_checkpoint_segments(use_ck):
    x0 = np.random.default_rng(7).standard_normal((5, 8))
    results = []
    for ck in (False, use_ck):
        Ws, block = _segment_model()
        set_global_seed(123)
        x = ag.Tensor.from_array(x0)
        with ag.GradientTape() as tape:
            tape.watch(x)
            h = x
            for i in range(3):
                h = ag.checkpoint(block, h, i) if ck else block(h, i)
            loss = (h * h).sum()
        recorded = len(tape._nodes)
        grads = tape.gradient(loss, [x] + Ws)
        results.append((loss.numpy(), [g.numpy() for g in grads], recorded))
    (l0, g0, n0), (l1, g1, n1) = results
    assert np.array_equal(l0, l1)
    assert all(g is not None for g in g1)
    for a, b in zip(g0, g1):
        assert np.array_equal(a, b)
    if use_ck:
        assert n1 == 3 + 2  # one node per segment, then mul and sum
        assert n0 == 3 * 5 + 2


def test_explicit_checkpoint_saves_only_inputs_and_second_order():
    x = ag.Tensor.from_array(np.array([0.3, -0.2, 0.9]))
    with ag.GradientTape() as t2:
        t2.watch(x)
        with ag.GradientTape() as t1:
            t1.watch(x)
            y = ag.checkpoint(lambda v, c: (ag.sin(v) * v * c).sum(), x, 2.0)
        node = y._node
        assert node.op.name == "checkpoint" and node.saved[0] is x._data
        (g,) = t1.gradient(y, [x])
        s = g.sum()
    (h,) = t2.gradient(s, [x])
    xv = x.numpy()
    np.testing.assert_allclose(g.numpy(), 2 * (np.cos(xv) * xv + np.sin(xv)), rtol=1e-13)
    np.testing.assert_allclose(h.numpy(), 2 * (-np.sin(xv) * xv + 2 * np.cos(xv)), rtol=1e-13)


def test_explicit_checkpoint_inside_a_block_tape_replays_same_masks():
    """A tape-level replay of a segment node re-runs fn with the recorded op params."""
    x0 = np.random.default_rng(8).standard_normal((5, 8))
    out = []
    for cfg in (None, CheckpointConfig("full")):
        Ws, block = _segment_model()
        set_global_seed(99)
        x = ag.Tensor.from_array(x0)
        with ag.GradientTape(checkpoint=cfg) as tape:
            tape.watch(x)
            h = ag.tanh(x)
            for i in range(3):
                h = ag.exp(ag.checkpoint(block, h, i) * 0.5)
            loss = h.sum()
        out.append([g.numpy() for g in tape.gradient(loss, [x] + Ws)])
    for a, b in zip(*out):
        assert np.array_equal(a, b)


def test_explicit_checkpoint_errors_and_no_tape():
    with pytest.raises(ag.ArgumentError, match="fn"):
        ag.checkpoint(3, ag.Tensor.from_array(np.ones(2)))
    x = ag.Tensor.from_array(np.ones(2))
    with ag.GradientTape() as tape:
        tape.watch(x)
        with pytest.raises(ag.ArgumentError, match="one Tensor"):
            ag.checkpoint(lambda v: (v, v), x)
    y = ag.checkpoint(lambda v: v * 3.0, x)  # nothing records: just runs fn
    assert np.array_equal(y.numpy(), np.full(2, 3.0))


# ---- the schedule -------------------------------------------------------------------------


def _simulate(n, f):
    """Reverse n chain steps with the schedule of split: (forward evaluations, max slots)."""
    evals, max_slots = 0, 0
    checkpoints = [0]  # positions whose state is stored (0: the input)
    for target in range(n, 0, -1):  # restore step `target` (needs state target-1)
        checkpoints = [c for c in checkpoints if c < target]
        while True:
            a = checkpoints[-1]
            m = target - a
            free = f - (len(checkpoints) - 1)
            if m == 1 or free <= 0:
                break
            j = split(m, free)
            evals += j
            checkpoints.append(a + j)
            max_slots = max(max_slots, len(checkpoints) - 1)
        evals += target - checkpoints[-1]  # advance to target-1, then run target with saving
    return evals, max_slots


@pytest.mark.parametrize("n, f", [(1, 0), (5, 0), (8, 1), (12, 2), (20, 3), (30, 4), (9, 8)])
def test_revolve_schedule(n, f):
    evals, slots = _simulate(n, f)
    assert slots <= f
    assert evals == revolve_cost(n, f)
    assert revolve_cost(n, 0) == n * (n + 1) // 2
    assert revolve_cost(n, max(n - 1, 0)) == 2 * n - 1
    if 0 < f < n - 2:  # one more slot saves forward evaluations until every state fits
        assert revolve_cost(n, f) < revolve_cost(n, f - 1)


def test_revolve_known_values():
    # hand-checked: one slot for 3 steps: advance 1, keep it, reverse 2 with none (1+3), then 1
    assert revolve_cost(3, 1) == 5
    # 10 steps, 2 slots: the optimum of j + T(10-j, 1) + T(j, 2) over j
    brute = min(j + revolve_cost(10 - j, 1) + revolve_cost(j, 2) for j in range(1, 10))
    assert revolve_cost(10, 2) == brute


def _tanh_chain(depth=48, width=16, seed=0):
    rng = np.random.default_rng(seed)
    Ws = [ag.Variable(rng.standard_normal((width, width)) / np.sqrt(width)) for _ in range(depth)]
    bs = [ag.Variable(0.1 * rng.standard_normal(width)) for _ in range(depth)]

    def run(x0, cfg):
        x = ag.Tensor.from_array(x0, copy=False)  # (the measures count activations only)
        with ag.GradientTape(checkpoint=cfg) as tape:
            h = x
            for w, b in zip(Ws, bs):
                h = ag.tanh(h @ w + b)
            loss = (h * h).sum()
        grads = tape.gradient(loss, Ws + bs)
        return [g.numpy() for g in grads], checkpoint_stats(tape)

    return run


def _chain_peak(run, x0, cfg) -> float:
    run(x0, cfg)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        run(x0, cfg)
        return (tracemalloc.get_traced_memory()[1] - base) / MB
    finally:
        tracemalloc.stop()


def _auto_chain(depth, seed, fraction):
    """A tanh chain, its input, the measuring overhead (a batch-1 step), an AUTO config at
    ``fraction`` of NONE's activation memory and NONE's gradients."""
    run = _tanh_chain(depth)
    x0 = np.random.default_rng(seed).standard_normal((1024, 16))
    overhead = _chain_peak(run, x0[:1], None)
    none = _chain_peak(run, x0, None) - overhead
    cfg = CheckpointConfig("auto", memory_budget_mb=fraction * none)
    return run, x0, overhead, cfg, run(x0, None)[0]


def test_auto_greedy_segments_replay_each_op_at_most_once():
    """A quarter of NONE's activation memory on an 80-layer chain (matmul, + bias, tanh): greedy
    segments (about sqrt(2 * 80) layers at the peak) restore each segment with a single replay,
    and the last one is never replayed."""
    depth = 80
    run, x0, overhead, cfg, grads0 = _auto_chain(depth, 9, 0.25)
    grads, stats = run(x0, cfg)
    assert all(np.array_equal(g, g0) for g, g0 in zip(grads, grads0))
    assert stats["recorded"] == 3 * depth + 2
    assert stats["dropped"] > 0 and stats["anchors"] > 0
    assert 0 < stats["replayed_ops"] <= stats["recorded"]
    for name, count in stats["replayed_by_op"].items():
        assert count <= depth, (name, count)  # each layer's op at most once
    peak = _chain_peak(run, x0, cfg) - overhead
    assert peak <= cfg.memory_budget_mb, (peak, cfg.memory_budget_mb)



@pytest.mark.parametrize("fraction, most", [(0.5, 0.65), (0.8, 0.45)])
def test_auto_leaves_the_end_of_the_chain_unreplayed_at_generous_budgets(fraction, most):
    """At a generous budget AUTO closes the oldest nodes as the forward goes, not whole
    segments, so the part never replayed (the open segment when the forward ends) is as large as
    the budget allows: on a 48-layer chain at half of NONE's memory about 60% of the ops are
    replayed (closing whole segments replayed 80%), at 80% about 37% (72%)."""
    run, x0, overhead, cfg, grads0 = _auto_chain(48, 4, fraction)
    grads, stats = run(x0, cfg)
    assert all(np.array_equal(g, g0) for g, g0 in zip(grads, grads0))
    assert 0 < stats["replayed_ops"] <= most * stats["recorded"], stats
    assert _chain_peak(run, x0, cfg) - overhead <= cfg.memory_budget_mb

def test_full_holds_the_least_memory_and_replays_each_restore_from_the_inputs():
    """FULL keeps nothing but the tape's inputs and rebuilds each node's saved values from them
    when the sweep reaches the node, restoring that node only: the least activation memory of
    every strategy (peak(2B) - peak(B), as the benchmarks measure it), under 12% of NONE's on a
    48-layer chain (5 units of NONE's 50: the batch, the cotangent, a replay's input and output,
    a rule's result), NONE's gradients bit for bit, at n^2 / 2 replays. (FULL used to restore
    every dropped node with one replay from the inputs at the first restore: 141 replays and
    NONE's memory.)"""
    depth = 48
    run = _tanh_chain(depth)
    x2 = np.random.default_rng(7).standard_normal((2048, 16))
    x0 = x2[:1024]
    none_mb = _chain_peak(run, x2, None) - _chain_peak(run, x0, None)
    act = {}
    for name, cfg, cfg2 in [
        ("full", CheckpointConfig("full"), None),
        ("block3", CheckpointConfig("block", checkpoint_every_n=3), None),
        ("block21", CheckpointConfig("block", checkpoint_every_n=21), None),
        ("selective", CheckpointConfig("selective"), None),
        ("auto25", CheckpointConfig("auto", memory_budget_mb=0.25 * none_mb),
         CheckpointConfig("auto", memory_budget_mb=0.5 * none_mb)),  # the budget scales too
    ]:
        act[name] = _chain_peak(run, x2, cfg2 or cfg) - _chain_peak(run, x0, cfg)
    assert act["full"] <= 0.12 * none_mb, (act, none_mb)
    assert all(act["full"] < v for k, v in act.items() if k != "full"), act
    grads0, _ = run(x0, None)
    grads, stats = run(x0, CheckpointConfig("full"))
    assert all(np.array_equal(g, g0) for g, g0 in zip(grads, grads0))
    # layer k's tanh (its output; the last one's is the caller's h, alive) and layer k + 1's
    # matmul (its input) each replay layers 1..k from the batch: 3k ops each
    assert stats["replayed_ops"] == sum(2 * 3 * k for k in range(1, depth)) == 6768
    assert stats["replayed_by_op"] == {"matmul": 2256, "add": 2256, "tanh": 2256}


# ---- random graphs: every strategy against NONE -----------------------------------------------

def _random_graph(seed, width=8, batch=512, n_ops=40):
    """A random DAG over a pool of live values: unary activations (tanh, sigmoid, relu, exp of a
    bounded value, sin), dropout (a seeded mask: replays must draw it again), binary ops between
    any two live values (add, mul, sub: residual connections and fan-out), matmuls with one of a
    few shared weights, sums with broadcasting back. Returns run(cfg) -> (loss, grads)."""
    rng = np.random.default_rng(seed)
    Ws = [ag.Variable(rng.standard_normal((width, width)) / np.sqrt(width)) for _ in range(3)]
    b = ag.Variable(0.1 * rng.standard_normal(width))
    x0 = rng.standard_normal((batch, width))
    plan = []
    n_vals = 1
    for i in range(n_ops):
        kind = rng.choice(["unary", "unary", "binary", "matmul", "matmul", "dropout", "bias",
                           "rowsum"])
        a = int(rng.integers(max(0, n_vals - 6), n_vals))  # mostly recent values: deep chains
        c = int(rng.integers(0, n_vals))  # any value: long skips
        plan.append((str(kind), a, c, int(rng.integers(0, 5)), int(rng.integers(0, 3)), i))
        n_vals += 1

    def run(cfg):
        with ag.GradientTape(checkpoint=cfg) as tape:
            for v in Ws + [b]:
                tape.watch(v)  # a weight the graph never reads has a None gradient
            vals = [ag.Tensor.from_array(x0)]
            for kind, a, c, k, w, i in plan:
                va, vc = vals[a], vals[c]
                if kind == "unary":
                    f = (ag.tanh, ag.sigmoid, ag.relu, lambda t: ag.exp(ag.tanh(t)), ag.sin)[k]
                    y = f(va)
                elif kind == "binary":
                    y = (va + vc, va * vc, va - vc, va * 0.5 + vc, ag.maximum(va, vc))[k]
                elif kind == "matmul":
                    y = va @ Ws[w]
                elif kind == "dropout":
                    y = ag.dropout(va, p=0.25, seed=100 + i)
                elif kind == "bias":
                    y = ag.tanh(va + b)
                else:
                    y = va * ag.tanh(va.sum(axis=1, keepdims=True))
                vals.append(y)
            loss = sum((v * v).mean() for v in vals[-3:])
            del vals, va, vc, y  # only the tape keeps values now: replays must rebuild them
        grads = tape.gradient(loss, Ws + [b])
        return loss.numpy(), [None if g is None else g.numpy() for g in grads], \
            checkpoint_stats(tape) or {}

    act_mb = batch * width * 8 / MB
    return run, act_mb


@pytest.mark.parametrize("seed", range(24))
def test_random_graphs_give_none_gradients_under_every_strategy(seed):
    run, act = _random_graph(seed)
    loss0, grads0, _ = run(None)
    configs = [CheckpointConfig("block", checkpoint_every_n=n) for n in (1, 2, 3, 5)]
    configs += [CheckpointConfig("selective"), CheckpointConfig("selective", min_compute_cost=2),
                CheckpointConfig("full")]
    configs += [CheckpointConfig("auto", memory_budget_mb=k * act) for k in (8, 14, 24, 60)]
    replayed = 0
    for cfg in configs:
        try:
            loss, grads, stats = run(cfg)
        except CheckpointBudgetError:
            assert cfg.strategy is CheckpointStrategy.AUTO  # a budget below one step's need
            continue
        replayed += stats.get("replayed_ops", 0)
        assert np.array_equal(loss, loss0), cfg
        for g, g0 in zip(grads, grads0):
            assert (g is None) == (g0 is None), cfg
            if g is not None:
                assert np.array_equal(g, g0), cfg
    assert replayed > 0  # values really were dropped and rebuilt


# ---- AUTO plans a chain from the previous step ------------------------------------------------

@pytest.mark.parametrize("fraction", [0.18, 0.25, 0.28])
def test_auto_plans_a_chain_from_the_previous_step(fraction):
    """From the second step with the same config AUTO places a chain's checkpoints by the exact
    DP learned from the first step's recording: fewer replays than the online planner at tight
    budgets, NONE's gradients bit for bit, and the budget still holds (measured)."""
    run, x0, overhead, cfg, grads0 = _auto_chain(48, 5, fraction)
    g1, s1 = run(x0, cfg)  # the online planner; the plan is learned from this recording
    plan = cfg._auto_chain_plan
    assert plan is not None and plan.replays < s1["replayed_ops"]
    assert len(plan.sig) == s1["recorded"] and len(plan.keep) > 0
    g2, s2 = run(x0, cfg)  # follows it
    assert s2["replayed_ops"] < s1["replayed_ops"]
    assert plan.followed is not None and plan.followed["replayed_ops"] == s2["replayed_ops"]
    for g in (g1, g2):
        assert all(np.array_equal(a, b) for a, b in zip(g, grads0))
    assert cfg._auto_chain_plan is plan
    assert _chain_peak(run, x0, cfg) - overhead <= cfg.memory_budget_mb


def test_auto_chain_plan_is_dropped_when_the_graph_or_budget_changes():
    run48, run40 = _tanh_chain(48), _tanh_chain(40, seed=1)
    x0 = np.random.default_rng(6).standard_normal((1024, 16))
    none = _chain_peak(run48, x0, None) - _chain_peak(run48, x0[:1], None)
    cfg = CheckpointConfig("auto", memory_budget_mb=0.25 * none)
    run48(x0, cfg)
    assert cfg._auto_chain_plan is not None
    # a shorter chain matches the plan's first 120 ops, then its loss differs: the plan is
    # forgotten there and the online planner goes on from the anchors placed so far
    ref40, _ = run40(x0, None)
    g, _ = run40(x0, cfg)
    assert all(np.array_equal(a, b) for a, b in zip(g, ref40))
    assert cfg._auto_chain_plan is None
    run40(x0, cfg)  # learns the 40-layer chain
    plan = cfg._auto_chain_plan
    assert plan is not None and len(plan.sig) == 3 * 40 + 2
    # another batch size differs from the first op on: that step learns its own plan
    g, _ = run40(x0[:512], cfg)
    assert cfg._auto_chain_plan is not plan and cfg._auto_chain_plan.sig[0][1] == 512 * 16 * 8
    run40(x0, cfg)  # back to the full batch: relearned from this step (the online planner)
    plan = cfg._auto_chain_plan
    assert plan.sig[0][1] == 1024 * 16 * 8
    cfg.memory_budget_mb *= 1.5  # a plan is made for one budget
    g, s = run40(x0, cfg)
    assert all(np.array_equal(a, b) for a, b in zip(g, ref40))
    assert plan.followed is None and cfg._auto_chain_plan is not plan  # relearned, not followed


def test_auto_learns_no_plan_for_graphs_that_are_not_chains():
    """A residual stream (a node reads a value older than its predecessor) and dropout (its mask
    is an output-sized saved constant the chain plan does not count) keep the online planner."""
    rng = np.random.default_rng(2)
    Ws = [ag.Variable(rng.standard_normal((16, 16)) / 4) for _ in range(24)]
    x0 = rng.standard_normal((512, 16))

    def run(cfg, kind):
        with ag.GradientTape(checkpoint=cfg) as tape:
            h = ag.Tensor.from_array(x0)
            for i, w in enumerate(Ws):
                z = ag.tanh(h @ w)
                h = h + z if kind == "residual" else ag.dropout(z, 0.1, seed=i)
            loss = (h * h).sum()
        return [g.numpy() for g in tape.gradient(loss, Ws)], checkpoint_stats(tape)

    for kind in ("residual", "dropout"):
        ref, _ = run(None, kind)
        cfg = CheckpointConfig("auto", memory_budget_mb=0.6)
        for _ in range(2):
            g, stats = run(cfg, kind)
            assert all(np.array_equal(a, b) for a, b in zip(g, ref)), kind
        assert stats["replayed_ops"] > 0, kind
        assert getattr(cfg, "_auto_chain_plan", None) is None, kind


def test_chain_plan_is_followed_only_while_it_beats_the_online_planner():
    keep, steps = chain_plan(48, 7)
    assert steps == 44 and len(keep) == 7  # bench/checkpoint_bound.py's table: 7 kept, 44
    assert chain_plan(10, 9) == (frozenset(range(9)), 0)  # room for every state: no replay
    p = ChainPlan(100.0, (), keep, 130, {"replayed_ops": 200})
    assert p.better(100.0) and not p.better(99.0)
    p.followed = {"replayed_ops": 210}  # measured worse than the online planner: not again
    assert not p.better(100.0)
    assert not ChainPlan(100.0, (), keep, 200, {"replayed_ops": 200}).better(100.0)
