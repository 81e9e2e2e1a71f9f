"""The tape add-on interface (autograd_gpu/addons.py): every hook is called at its point, in the
compiled and the Python paths alike, and an add-on never keeps a tape alive."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.addons import TapeAddon
from autograd_gpu.ops import registry
from autograd_gpu.ops.context import STATE


def T(v):
    return ag.Tensor.from_array(np.asarray(v, np.float64))


class Recorder(TapeAddon):
    kind = "recorder"
    records = True

    def __init__(self):
        self.events = []

    def on_record(self, node, arrays, out):
        self.events.append(("record", node.op.name, len(arrays), tuple(out.shape)))

    def scale_seed(self, seed):
        self.events.append(("seed",))
        return seed * 2.0

    def finish(self, grads):
        self.events.append(("finish", len(grads)))
        return [None if g is None else g * 0.5 for g in grads]

    def watch_gradients(self, want, nodes):
        self.ready = []
        return lambda leaf, g: self.ready.append((leaf, None if g is None else float(g.sum())))

    def on_release(self):
        self.events.append(("release",))


@pytest.fixture(params=["compiled", "python"])
def paths(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(registry, "_record", None)
        monkeypatch.setattr(registry, "native_sweep", None)
    return request.param


def test_every_hook_is_called_at_its_point(paths):
    x, w, unused = T([1.0, 2.0]), T([3.0, -1.0]), T([5.0])
    rec = Recorder()
    with ag.GradientTape(addons=[rec]) as tape:
        tape.watch([x, w, unused])
        y = (x * w).sum() + (x * 2.0).sum()
    assert [e[1] for e in rec.events] == ["mul", "sum", "mul", "sum", "add"]
    assert rec.events[0] == ("record", "mul", 2, (2,))
    gx, gw, gu = tape.gradient(y, [x, w, unused])
    # the seed was doubled and the results halved: the true gradients
    np.testing.assert_allclose(gx.numpy(), [5.0, 1.0])
    np.testing.assert_allclose(gw.numpy(), [1.0, 2.0])
    assert gu is None
    assert rec.events[-3:] == [("seed",), ("finish", 3), ("release",)]
    # each leaf once; the unused one first (known before the sweep), with None
    assert rec.ready[0] == (unused._node, None)
    # (seeded with 2: before finish's 0.5) d/dw = x, d/dx = w + 2
    assert sorted(r[1] for r in rec.ready[1:]) == [2 * 3.0, 2 * 6.0]
    assert tape.addon("recorder") is rec and tape.addons == (rec,)


def test_ready_leaves_are_reported_as_soon_as_their_last_consumer_is_swept(paths):
    a, b = T([1.0]), T([2.0])
    order = []

    class Watch(TapeAddon):
        def watch_gradients(self, want, nodes):
            return lambda leaf, g: order.append(("ready", leaf))

    with ag.GradientTape(addons=[Watch()]) as tape:
        tape.watch([a, b])
        h = ag.exp(a)            # a's only consumer: recorded first, swept last
        z = ag.sin(b) * h        # b's only consumer
        y = (z * 3.0).sum()
    tape.gradient(y, [a, b])
    seen = [leaf for _, leaf in order]
    assert seen == [b._node, a._node]  # b's final before a's rule ran


def test_add_addon_on_a_recording_tape():
    x = T([1.0, 2.0])
    rec = Recorder()
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = x * 2.0
        tape.add_addon(rec)
        z = (y * y).sum()
    assert [e[1] for e in rec.events if e[0] == "record"] == ["mul", "sum"]
    with pytest.raises(ag.ArgumentError, match="TapeAddon"):
        tape.add_addon(object())
    del z


@pytest.mark.parametrize("kw", [{"checkpoint": ag.CheckpointConfig("block")},
                                {"amp": ag.AmpConfig()}, {"addons": [Recorder()]}])
def test_a_tape_with_addons_that_nobody_holds_dies_and_stops_recording(kw):
    x = T([1.0, 2.0])
    tape = ag.GradientTape(**kw)
    tape.watch(x)
    _ = x * 2.0
    ref = weakref.ref(tape)
    del tape, _
    gc.collect()
    assert ref() is None
    assert not STATE.recording and not STATE.observers and not STATE.hooks
    assert not (x * 3.0).is_tracked


def test_unknown_tape_arguments_are_refused():
    with pytest.raises(ag.ArgumentError, match="'amp' expected an AmpConfig"):
        ag.GradientTape(amp="fp16")
    with pytest.raises(ag.ArgumentError):
        ag.GradientTape(scheduler="upward")


def test_a_leaf_whose_first_reader_gets_no_cotangent_is_reported_there(paths):
    """Its first-recorded reader is off the loss path: the sweep passes it without a rule, and
    the leaf's cotangent is final there, so it must be reported there, not at the end."""
    a = T([1.0, 2.0])
    order = []

    class Watch(TapeAddon):
        def watch_gradients(self, want, nodes):
            return lambda leaf, g: order.append((leaf, None if g is None else float(g.sum())))

    with ag.GradientTape(addons=[Watch()]) as tape:
        tape.watch(a)
        _ = ag.exp(a)  # a's first reader: not on the loss path
        y = (a * 3.0).sum()
    (g,) = tape.gradient(y, [a])
    assert order == [(a._node, 6.0)] and float(g.sum()) == 6.0


def test_every_addon_watching_gradients_is_called(paths):
    a = T([1.0])
    seen = []

    class Watch(TapeAddon):
        def __init__(self, tag):
            self.tag = tag

        def watch_gradients(self, want, nodes):
            return lambda leaf, g: seen.append(self.tag)

    with ag.GradientTape(addons=[Watch("first"), Watch("second")]) as tape:
        tape.watch(a)
        y = (a * 2.0).sum()
    tape.gradient(y, [a])
    assert seen == ["first", "second"]
