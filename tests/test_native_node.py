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
    parent = cls(None, None, (), None, (), frozenset({1}), 0, ((3,), a.dtype), None)
    metas = (parent.out_meta, ((), None))  # a constant input's meta is stored
    n = cls("op", {"k": 1}, (parent, None), metas, (a, out, 2.0), frozenset({1, 2}), 1,
            ((3,), a.dtype), (id(a), id(np.ones(1)), id(out)))
    assert (n.op, n.params, n.parents, n.gen, n.site, n.extra) == (
        "op", {"k": 1}, (parent, None), 1, None, None)
    assert n.needs is n.parents and n.in_meta is metas
    both = cls("op", {}, (parent, parent), None, (), frozenset({1}), 1, parent.out_meta, None)
    assert both.in_meta == (parent.out_meta, parent.out_meta)  # derived: every input tracked
    assert n.saved_map == (0, OUTPUT, CONST)  # by identity; a Python number is a constant
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
        n = cls(None, {"a": 1}, (), None, (np.ones(2),), frozenset({3}), 0, ((2,), None), None)
        n.extra = "kept"
        m = copy.deepcopy(n)
        assert (m.params, m.tapes, m.gen, m.out_meta, m.extra) == (
            {"a": 1}, frozenset({3}), 0, ((2,), None), "kept")
        assert np.array_equal(m.saved[0], n.saved[0]) and m.saved[0] is not n.saved[0]
