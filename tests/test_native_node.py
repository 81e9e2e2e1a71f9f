"""The compiled graph node (autograd_gpu/_native.c) and its pure-Python twin (ops/graph.PyNode):
the same data and behaviour; the compiled one is invisible to the cyclic GC, so a long recorded
graph costs the collector nothing; deep graphs free without deep recursion; the fallback is
used without the extension or with AUTOGRAD_GPU_PURE_PYTHON=1."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.ops import graph
from autograd_gpu.ops.graph import CONST, OUTPUT, PyNode

try:
    from autograd_gpu import _native
except ImportError:  # a source checkout without the compiled extension
    _native = None

native = pytest.mark.skipif(graph.Node is PyNode, reason="the compiled node is not in use "
                            "(not compiled here, or AUTOGRAD_GPU_PURE_PYTHON=1)")
NODE_TYPES = [PyNode] + ([graph.Node] if graph.Node is not PyNode else [])


@pytest.mark.parametrize("cls", NODE_TYPES, ids=lambda c: c.__module__ + "." + c.__name__)
def test_node_types_hold_the_same_data_and_behave_alike(cls):
    a, out = np.ones(3), np.zeros(3)
    parent = cls(None, None, (), None, (), (), frozenset({1}), ((3,), a.dtype))
    metas = (parent.out_meta, ((), None))  # a constant input's meta is stored
    n = cls("op", {"k": 1}, (parent, None), metas, (a, out, 2.0), (0, OUTPUT, CONST),
            frozenset({1, 2}), ((3,), a.dtype))
    assert (n.op, n.params, n.parents, n.site, n.extra, n.fw) == (
        "op", {"k": 1}, (parent, None), None, None, None)
    assert n.in_meta is metas
    both = cls("op", {}, (parent, parent), None, (), (), frozenset({1}), parent.out_meta)
    assert both.in_meta == (parent.out_meta, parent.out_meta)  # derived: every input tracked
    assert n.saved_map == (0, OUTPUT, CONST)  # the op's declared layout, as given
    assert not n.is_leaf and parent.is_leaf
    n.drop_tape(1)
    assert n.tapes == frozenset({2}) and n.saved is not None
    n.drop_tape(2)
    assert n.tapes == frozenset() and n.saved is None and n.extra is None
    leaf = graph.Node.leaf((2,), np.float32)
    assert leaf.out_meta == ((2,), np.float32) and leaf.saved_map == () and leaf.in_meta == ()
    assert repr(leaf).startswith("Node(leaf")
    w = weakref.ref(n)
    del n
    assert w() is None
    with pytest.raises(TypeError):
        cls("op", {}, (), None, ())  # too few arguments


@native
def test_compiled_node_is_used_and_not_tracked_by_the_collector():
    assert graph.Node is _native.Node
    x = ag.Tensor.from_array(np.ones(4))
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = x
        for _ in range(50):
            y = ag.tanh(y) * 1.5
    assert not gc.is_tracked(y._node)
    gc.collect()
    # the parents tuples hold only untracked nodes: the collector untracks them as well
    assert not any(gc.is_tracked(n.parents) for n in tape._nodes)


@native
def test_a_deep_graph_of_compiled_nodes_frees_without_recursion():
    x = ag.Tensor.from_array(np.ones(2))
    tape = ag.GradientTape()
    tape.watch(x)
    y = x
    for _ in range(200_000):
        y = y * 1.0
    first = weakref.ref(tape._nodes[0])
    del tape
    assert first() is not None  # y still holds the whole chain
    del y  # frees 200,000 nodes, each the only parent of the next
    assert first() is None


def test_pure_python_fallback_runs_the_tape_tests():
    env = dict(os.environ, AUTOGRAD_GPU_PURE_PYTHON="1")
    code = ("import autograd_gpu.ops.graph as g; assert g.Node is g.PyNode; "
            "import pytest, sys; sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider', "
            f"{os.path.join(os.path.dirname(__file__), 'test_tape.py')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_watched_variables_and_their_nodes_copy_and_pickle():
    """copy.deepcopy of a model (an EMA copy, a target network) copies its Variables, and a
    Variable a tape has read carries a leaf node."""
    import copy
    import pickle

    v = ag.Variable(np.arange(3.0))
    with ag.GradientTape() as tape:
        loss = (v * v).sum()
    tape.gradient(loss, [v])
    for v2 in (copy.deepcopy(v), pickle.loads(pickle.dumps(v))):
        assert np.array_equal(v2.numpy(), v.numpy())
        assert v2._node is not v._node and v2._node.out_meta == v._node.out_meta
    for cls in NODE_TYPES:
        n = cls(None, {"a": 1}, (), None, (np.ones(2),), (CONST,), frozenset({3}), ((2,), None))
        n.extra = "kept"
        m = copy.deepcopy(n)
        assert (m.params, m.tapes, m.saved_map, m.out_meta, m.extra) == (
            {"a": 1}, frozenset({3}), (CONST,), ((2,), None), "kept")
        assert np.array_equal(m.saved[0], n.saved[0]) and m.saved[0] is not n.saved[0]


# ---- the compiled recording path (_native.record) against the Python one ----------------------

def _with_and_without(module, attr, fn):
    """[fn() with ``module.attr`` as it is (the compiled part when in use), fn() with it set to
    None (the Python path)]."""
    runs = []
    for compiled in (True, False):
        saved = getattr(module, attr)
        if not compiled:
            setattr(module, attr, None)
        try:
            runs.append(fn())
        finally:
            setattr(module, attr, saved)
    return runs


def _record_both(fn, *arrays):
    """Run fn on tracked copies of ``arrays`` twice: through apply (the compiled path when it
    is in use) and with registry._record switched off (the Python path). Returns, per run, the
    output and the tape's nodes."""
    from autograd_gpu.ops import registry

    def run():
        xs = [ag.Tensor.from_array(a) for a in arrays]
        with ag.GradientTape(persistent=True) as tape:
            for x in xs[:-1]:  # the last one stays an untracked constant
                tape.watch(x)
            out = fn(*xs)
        return out, list(tape._nodes)

    return _with_and_without(registry, "_record", run)


RECORD_CASES = {
    "unary": (lambda x, c: ag.tanh(ag.sin(x)), [np.linspace(-1, 1, 6), np.ones(6)]),
    "binary, scalar": (lambda x, c: (x * 2.0 - 1) / 3, [np.arange(4.0), np.ones(4)]),
    "binary, constant tensor": (lambda x, c: x * c + c, [np.arange(4.0), np.full(4, 0.5)]),
    "broadcast": (lambda x, y, c: x + y * c, [np.ones((3, 4)), np.arange(4.0), np.full(4, 2.0)]),
    "0-d output": (lambda x, c: (x * x).sum() * 2.0, [np.arange(3.0), np.ones(1)]),
    "x * x": (lambda x, c: x * x, [np.arange(3.0) + 1, np.ones(3)]),
    "matmul": (lambda w, x, c: ag.relu(x @ w + c), [np.eye(3), np.ones((2, 3)), np.ones(3)]),
    "float32": (lambda x, c: ag.tanh(x) * c, [np.ones(5, np.float32), np.ones(5, np.float32)]),
}


@native
@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_compiled_recording_builds_what_the_python_path_builds(case):
    fn, arrays = RECORD_CASES[case]
    (out_c, nodes_c), (out_p, nodes_p) = _record_both(fn, *arrays)
    assert type(out_c) is type(out_p) and out_c.dtype == out_p.dtype
    assert np.array_equal(out_c.numpy(), out_p.numpy())
    assert len(nodes_c) == len(nodes_p) > 0
    for a, b in zip(nodes_c, nodes_p):
        assert a.op is b.op and a.params == b.params
        assert a.in_meta == b.in_meta and a.out_meta == b.out_meta
        assert [p is None for p in a.parents] == [p is None for p in b.parents]
        assert a.saved_map == b.saved_map and len(a.saved) == len(b.saved)
        assert len(a.tapes) == len(b.tapes) == 1


@native
def test_compiled_recording_declines_what_it_does_not_handle():
    from autograd_gpu import _native
    from autograd_gpu.ops.context import STATE
    from autograd_gpu.ops.registry import REGISTRY

    add, mul = REGISTRY["add"], REGISTRY["mul"]
    v = ag.Variable(np.ones(3))
    x = ag.Tensor.from_array(np.ones(3))
    with ag.GradientTape() as tape:
        tape.watch(x)
        mode = STATE.mode
        n0 = len(tape._nodes)
        # a Variable (autowatch), a list, a forward that raises (shapes), too many inputs
        assert _native.record(add, (x, v), {}, mode) is NotImplemented
        assert _native.record(add, (x, [1.0]), {}, mode) is NotImplemented
        bad = ag.Tensor.from_array(np.ones(4))
        assert _native.record(mul, (x, bad), {}, mode) is NotImplemented
        assert _native.record(add, (x,) * 9, {}, mode) is NotImplemented
        assert len(tape._nodes) == n0  # declined before any side effect
        with pytest.raises(ag.ShapeError):  # and the Python path gives the translated error
            x * bad
        y = _native.record(add, (x, 1.0), {}, mode)
        assert y is not NotImplemented and len(tape._nodes) == n0 + 1
    with ag.GradientTape():  # x is tracked only by a tape that no longer records
        assert _native.record(add, (x, x), {}, STATE.mode) is NotImplemented


# ---- the compiled sweep (_native.sweep) against the Python loop in sweep.py --------------------

def _sweep_both(fn):
    """fn() -> list of gradient results (Tensors, None, or nested lists); run with the compiled
    sweep and with registry.native_sweep switched off (the Python loop)."""
    from autograd_gpu.ops import registry

    return _with_and_without(registry, "native_sweep", fn)


def _flat(x):
    if isinstance(x, (list, tuple)):
        return [y for v in x for y in _flat(v)]
    return [None if x is None else np.asarray(x.numpy() if hasattr(x, "numpy") else x)]


def _fan_out():
    x = ag.Variable(np.linspace(-1, 1, 6))
    with ag.GradientTape() as tape:
        a = ag.sin(x)
        y = a * a + ag.tanh(a) * x  # a and x each feed several nodes: accumulation
    return tape.gradient(y, [x, a])  # an intermediate wanted too


def _broadcast_and_cast():
    w = ag.Variable(np.ones(4, np.float32))
    x = ag.Variable(np.arange(12.0).reshape(3, 4))  # float64
    with ag.GradientTape() as tape:
        y = (x * w).sum(axis=1) + ag.logsumexp(x, axis=0).sum()  # params; w broadcast, cast
    return tape.gradient(y, [w, x], output_gradients=[np.array([1.0, 2.0, 3.0])])


def _second_order():
    x = ag.Variable(np.array([0.3, -0.7, 1.1]))
    with ag.GradientTape() as outer:
        with ag.GradientTape() as inner:
            y = (ag.sin(x) * x).sum()
        (g,) = inner.gradient(y, [x])  # a differentiable sweep (saved values wrapped)
        s = (g * g).sum()
    return [g, outer.gradient(s, [x])]


def _two_tapes_persistent():
    x = ag.Variable(np.array([1.0, 2.0]))
    with ag.GradientTape(persistent=True) as t1, ag.GradientTape() as t2:
        y = ag.exp(x) * ag.cos(x)
    return [t2.gradient(y, [x]), t1.gradient(y, [x]), t1.gradient(y * 1.0, [x])]


def _checkpointed():
    rng = np.random.default_rng(0)
    ws = [ag.Variable(rng.standard_normal((5, 5)) / 3) for _ in range(6)]
    x = ag.Tensor.from_array(rng.standard_normal((4, 5)))
    with ag.GradientTape(checkpoint=ag.CheckpointConfig("block", checkpoint_every_n=3)) as tape:
        h = x
        for w in ws:
            h = ag.dropout(ag.tanh(h @ w), 0.2, seed=7)
        loss = (h * h).sum()
    return tape.gradient(loss, ws)


def _jacobian_batched():
    def f(x):
        return ag.tanh(x) * x.sum()
    return [ag.jacobian(f, ag.Tensor.from_array(np.array([0.1, 0.2, 0.3])), mode="reverse")]


def _unconnected():
    x, z = ag.Variable(np.ones(3)), ag.Variable(np.ones(2))
    with ag.GradientTape() as tape:
        tape.watch(z)  # watched, never used
        y = (x * 2.0).sum()
    return tape.gradient(y, [x, z], unconnected_gradients="zero")


SWEEP_CASES = {f.__name__.strip("_"): f for f in (
    _fan_out, _broadcast_and_cast, _second_order, _two_tapes_persistent, _checkpointed,
    _jacobian_batched, _unconnected)}


@native
@pytest.mark.parametrize("case", sorted(SWEEP_CASES))
def test_compiled_sweep_gives_what_the_python_loop_gives(case):
    compiled, python = _sweep_both(SWEEP_CASES[case])
    a, b = _flat(compiled), _flat(python)
    assert len(a) == len(b) > 0
    for u, v in zip(a, b):
        assert (u is None) == (v is None)
        if u is not None:
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u, v)


@native
def test_compiled_sweep_stops_on_a_rule_error_and_frees_nothing_twice():
    def vjp(g, inputs, output):
        raise ValueError("bad rule")

    bad = ag.custom_op(lambda xp, a: a * 2.0, vjp, name="bad_rule_in_sweep")
    x = ag.Variable(np.ones(3))
    with ag.GradientTape() as tape:
        y = ag.sin(bad(x))
    with pytest.raises(ValueError, match="bad rule"):
        tape.gradient(y, [x])
    with ag.GradientTape() as tape:  # the engine is usable afterwards
        y = ag.sin(x)
    np.testing.assert_allclose(tape.gradient(y, [x])[0].numpy(), np.cos(1.0) * np.ones(3))


@native
def test_hooks_take_the_python_loop():
    from autograd_gpu.ops import registry as tape_mod

    calls = []
    saved = tape_mod.native_sweep
    tape_mod.native_sweep = lambda *a: calls.append(a)  # would record a call if used
    try:
        x = ag.Variable(np.ones(2))
        with ag.profiler.profile():  # a hook watches the sweep
            with ag.GradientTape() as tape:
                y = ag.exp(x)
            (g,) = tape.gradient(y, [x])
    finally:
        tape_mod.native_sweep = saved
    assert calls == [] and np.allclose(g.numpy(), np.e)


# ---- the contract between _native.c and the Python code -----------------------------------------

@native
def test_the_contract_names_exist_on_the_python_side():
    from autograd_gpu.ops import registry

    table = _native.contract()
    assert {"Tensor slots", "Mode", "Op", "SweepContext"} <= set(table)
    assert registry._contract_problems(table) == []


@native
def test_a_contract_mismatch_falls_back_to_python_with_a_warning():
    from autograd_gpu.ops import registry

    class Renamed:  # the extension as it would be if it read a slot this code does not have
        @staticmethod
        def contract():
            t = _native.contract()
            t["Tensor slots"] = list(t["Tensor slots"]) + ["_grad"]
            return t

    try:
        with pytest.warns(RuntimeWarning, match=r"Tensor slots\._grad"):
            assert registry.enable_native(Renamed) is False
        assert registry._record is None and registry.native_sweep is None
        x = ag.Tensor.from_array(np.arange(3.0))  # the Python paths still give gradients
        with ag.GradientTape() as tape:
            tape.watch(x)
            y = (x * x).sum()
        np.testing.assert_allclose(tape.gradient(y, [x])[0].numpy(), [0.0, 2.0, 4.0])
    finally:
        assert registry.enable_native() is True


def _count_python_paths(monkeypatch):
    from autograd_gpu import sweep
    from autograd_gpu.ops import registry

    calls = {"record": 0, "sweep": 0}
    record, loop = registry._apply_observed, sweep.python_sweep

    def counted_record(*a, **k):
        calls["record"] += 1
        return record(*a, **k)

    def counted_sweep(*a, **k):
        calls["sweep"] += 1
        return loop(*a, **k)

    monkeypatch.setattr(registry, "_apply_observed", counted_record)
    monkeypatch.setattr(sweep, "python_sweep", counted_sweep)
    return calls


@native
@pytest.mark.parametrize("case", ["elementwise", "matmul", "reductions", "nested", "batched",
                                  "checkpoint"])
def test_common_recording_and_sweep_cases_take_the_compiled_path(case, monkeypatch):
    x = ag.Tensor.from_array(np.linspace(-1, 1, 12).reshape(3, 4))
    w = ag.Tensor.from_array(np.linspace(0.5, 1.5, 8).reshape(4, 2))
    tapes = []
    kw = {"checkpoint": ag.CheckpointConfig("block", checkpoint_every_n=2)} \
        if case == "checkpoint" else {}
    outer = ag.GradientTape(persistent=True)  # (nested: a second recording tape)
    outer.watch([x, w]) if case == "nested" else outer._finish()
    tape = ag.GradientTape(persistent=case == "batched", **kw)
    tape.watch([x, w])
    calls = _count_python_paths(monkeypatch)
    if case == "elementwise":
        y = ag.tanh(x * 2.0 - 1.0) / 3.0 + ag.exp(-x)
    elif case == "matmul":
        y = ag.sigmoid(x @ w) * (x @ w)
    elif case == "reductions":
        y = (x - x.mean(axis=1, keepdims=True)).sum(axis=0) + x.max()
    else:
        y = ag.sin(x) * x + ag.cos(x @ w).sum()
    tapes.append(tape)
    assert calls["record"] == 0, f"{case}: recording took the Python path"
    if case == "batched":
        tape.jacobian(y, x, mode="reverse")
    else:
        tape.gradient(y, [x, w], unconnected_gradients="zero")
    assert calls["sweep"] == 0, f"{case}: the sweep took the Python loop"
    if case == "nested":
        outer._finish()
