"""ag.data: ArrayDataset and DataLoader (batches, order, sharding, transforms, errors) and the
GPU prefetcher's ordering rules, checked against a recording stand-in for CuPy."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu import data as D


def _ds(n=10):
    X = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    return ag.data.ArrayDataset(X, y), X, y


def _epoch(loader):
    return [tuple(t.numpy() for t in batch) for batch in loader]


def test_batches_in_order_cover_everything():
    ds, X, y = _ds(10)
    loader = ag.data.DataLoader(ds, batch_size=4, device="cpu")
    assert len(loader) == 3
    batches = _epoch(loader)
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), X)
    xb, yb = next(iter(loader))
    assert isinstance(xb, ag.Tensor) and xb.device == "cpu" and xb.dtype == np.float32
    assert yb.dtype == np.int64


def test_batches_never_share_memory_the_dataset_can_change():
    """An in-order batch is a slice of the dataset's array: its tensor must hold a copy, or a
    later write into the dataset would change a value a tape may have saved."""
    ds, X, _ = _ds(10)
    xb, _ = next(iter(ag.data.DataLoader(ds, batch_size=4)))
    before = xb.numpy().copy()
    ds.arrays[0][:4] += 100.0
    np.testing.assert_array_equal(xb.numpy(), before)


def test_drop_last():
    ds, _, _ = _ds(10)
    loader = ag.data.DataLoader(ds, batch_size=4, drop_last=True, device="cpu")
    assert len(loader) == 2
    assert [b[1].tolist() for b in _epoch(loader)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(ag.data.DataLoader(ds, batch_size=20, drop_last=True)) == 0
    assert _epoch(ag.data.DataLoader(ds, batch_size=20, drop_last=True)) == []


def test_shuffle_is_a_permutation_new_every_epoch_and_reproducible():
    ds, X, _ = _ds(50)
    a = ag.data.DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    b = ag.data.DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    e0, e1 = _epoch(a), _epoch(a)
    order0 = np.concatenate([bt[1] for bt in e0])
    order1 = np.concatenate([bt[1] for bt in e1])
    assert sorted(order0.tolist()) == list(range(50)) and sorted(order1.tolist()) == list(range(50))
    assert order0.tolist() != order1.tolist() and order0.tolist() != list(range(50))
    np.testing.assert_array_equal(np.concatenate([bt[1] for bt in _epoch(b)]), order0)
    # rows stay paired with their labels
    for xb, yb in e0:
        np.testing.assert_array_equal(xb, X[yb])
    c = ag.data.DataLoader(ds, batch_size=8, shuffle=True, seed=4)
    assert np.concatenate([bt[1] for bt in _epoch(c)]).tolist() != order0.tolist()
    np.testing.assert_array_equal(a.indices(0), order0)


def test_seedless_loaders_differ():
    ds, _, _ = _ds(200)
    a = ag.data.DataLoader(ds, batch_size=200, shuffle=True)
    b = ag.data.DataLoader(ds, batch_size=200, shuffle=True)
    assert a.indices(0).tolist() != b.indices(0).tolist()


def test_transform_runs_on_each_batch_and_leaves_the_dataset_alone():
    ds, X, y = _ds(10)

    def scale(xb, yb):
        xb *= 2.0  # in place: must not reach the dataset
        return xb, yb + 100

    batches = _epoch(ag.data.DataLoader(ds, batch_size=5, transform=scale))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), 2.0 * X)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y + 100)
    np.testing.assert_array_equal(ds.arrays[0], X)  # untouched
    single = _epoch(ag.data.DataLoader(ds, batch_size=5, transform=lambda xb, yb: xb[:, :1]))
    assert len(single[0]) == 1 and single[0][0].shape == (5, 1)


def test_shards_are_disjoint_equal_and_share_one_permutation():
    ds, _, _ = _ds(23)
    seen = []
    for s in range(3):
        loader = ag.data.DataLoader(ds, batch_size=4, shuffle=True, seed=9, num_shards=3,
                                    shard_index=s)
        assert len(loader) == 2  # 23 -> 21 samples, 7 a shard, batches of 4
        seen.append(np.concatenate([b[1] for b in _epoch(loader)]))
    assert all(len(s) == 7 for s in seen)
    union = np.concatenate(seen)
    assert len(set(union.tolist())) == 21  # disjoint
    perm = np.random.default_rng([9, 0]).permutation(23)[:21]
    assert sorted(union.tolist()) == sorted(perm.tolist())


def test_generic_dataset_items_are_stacked():
    class Squares:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.array([i, i * i], np.float32), np.int64(i)

    batches = _epoch(ag.data.DataLoader(Squares(), batch_size=2))
    assert batches[0][0].tolist() == [[0, 0], [1, 1]] and batches[2][1].tolist() == [4]


def test_dataset_from_tensors_and_lists():
    ds = ag.data.ArrayDataset(ag.Tensor.from_array(np.ones((4, 2))), [1, 2, 3, 4])
    assert len(ds) == 4 and ds.arrays[1].tolist() == [1, 2, 3, 4]
    assert [a.tolist() for a in ds[1]] == [[1.0, 1.0], 2]
    assert "4 samples" in repr(ds)


@pytest.mark.parametrize("make, err, pattern", [
    (lambda: ag.data.ArrayDataset(), ag.ArgumentError, "at least one array"),
    (lambda: ag.data.ArrayDataset(np.ones((3, 2)), np.ones(4)), ag.ShapeError,
     r"argument 0 has 3, argument 1 has 4"),
    (lambda: ag.data.ArrayDataset(np.float32(1.0)), ag.ShapeError, "scalar"),
    (lambda: ag.data.ArrayDataset([[1, 2], [3]]), ag.ArgumentError, "argument 0"),
    (lambda: ag.data.DataLoader([1, 2], batch_size=0), ag.ArgumentError, "'batch_size'"),
    (lambda: ag.data.DataLoader(object()), ag.ArgumentError, "'dataset'"),
    (lambda: ag.data.DataLoader(_ds()[0], seed=-1), ag.ArgumentError, "'seed'"),
    (lambda: ag.data.DataLoader(_ds()[0], transform=3), ag.ArgumentError, "'transform'"),
    (lambda: ag.data.DataLoader(_ds()[0], num_shards=2, shard_index=2), ag.ArgumentError,
     "'shard_index'"),
    (lambda: ag.data.DataLoader(_ds()[0], shuffle=True, num_shards=2), ag.ArgumentError,
     "same on every shard"),
    (lambda: ag.data.DataLoader(_ds()[0], device="tpu"), ag.DeviceError, "spec"),
])
def test_bad_arguments(make, err, pattern):
    with pytest.raises(err, match=pattern):
        make()


# ---- the GPU prefetcher's protocol, on a recording stand-in for CuPy ----------------------


class _Log(list):
    pass


class _FakeEvent:
    count = 0

    def __init__(self, log, stream):
        _FakeEvent.count += 1
        self.id = f"ev{_FakeEvent.count}@{stream.name}"
        self.log = log

    def synchronize(self):
        self.log.append(("sync", self.id))


class _FakeStream:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def record(self):
        ev = _FakeEvent(self.log, self)
        self.log.append(("record", self.name, ev.id))
        return ev

    def wait_event(self, ev):
        self.log.append(("wait", self.name, ev.id))

    def __enter__(self):
        self.log.append(("enter", self.name))
        return self

    def __exit__(self, *exc):
        self.log.append(("exit", self.name))


class _FakeDevArray:
    def __init__(self, log, shape, dtype):
        self.log, self.value = log, np.empty(shape, dtype)

    def set(self, pinned, stream):
        self.log.append(("copy", stream.name, id(pinned.base if pinned.base is not None
                                                  else pinned)))
        self.value[...] = pinned  # what the asynchronous copy will have written


class _FakeCuda:
    def __init__(self, log):
        self.log = log
        self.main = _FakeStream(log, "main")
        self.cuda = self

    def Device(self, index):
        return _FakeStream(self.log, f"device{index}")

    def get_current_stream(self):
        return self.main

    def Stream(self, non_blocking):
        assert non_blocking
        return _FakeStream(self.log, "side")

    def empty(self, shape, dtype):
        return _FakeDevArray(self.log, shape, dtype)


class _FakeCupyx:
    def __init__(self, log):
        self.log, self.buffers = log, []

    def empty_pinned(self, shape, dtype):
        buf = np.zeros(shape, dtype)
        self.buffers.append(buf)
        self.log.append(("pinned", id(buf)))
        return buf


def _fake_prefetch(depth, batches):
    log = _Log()
    pf = D._CudaPrefetcher(ag.Device("cuda:0"), depth, cp=_FakeCuda(log), cupyx=_FakeCupyx(log))
    out = []
    pf.wrap = lambda arrays, copy=True: tuple(a.value.copy() for a in arrays)
    for got in pf.run(iter(batches)):
        log.append(("yield",))
        out.append(got)
    return out, log, pf


def test_prefetcher_delivers_every_batch_unchanged():
    ds, X, y = _ds(37)
    loader = ag.data.DataLoader(ds, batch_size=5, shuffle=True, seed=1)
    host = list(loader._host_batch(i) for i in loader._index_batches(0))
    for depth in (1, 2, 3):
        out, _, _ = _fake_prefetch(depth, host)
        assert len(out) == len(host) == 8
        for (xa, ya), (xb, yb) in zip(out, host):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def test_prefetcher_orders_copies_and_waits():
    batches = [(np.full((4, 2), k, np.float32), np.full(4, k, np.int64)) for k in range(6)]
    out, log, pf = _fake_prefetch(2, batches)
    assert [int(o[1][0]) for o in out] == list(range(6))
    # every copy runs on the side stream after the side stream waited for the main stream
    copies = [i for i, e in enumerate(log) if e[0] == "copy"]
    assert copies and all(log[i][1] == "side" for i in copies)
    waits_side = [i for i, e in enumerate(log) if e[:2] == ("wait", "side")]
    assert len(waits_side) == 6
    for w, first_copy in zip(waits_side, copies[::2]):
        assert w < first_copy
        assert log[w - 1][:2] == ("record", "main") and log[w - 1][2] == log[w][2]
    # before each batch is handed out, the main stream waits for the event recorded after
    # that batch's copies
    yields = [i for i, e in enumerate(log) if e == ("yield",)]
    side_records = [e[2] for e in log if e[:2] == ("record", "side")]
    main_waits = [(i, e[2]) for i, e in enumerate(log) if e[:2] == ("wait", "main")]
    assert [ev for _, ev in main_waits] == side_records
    for (i, _), y in zip(main_waits, yields):
        assert i < y
    # 3 slots of pinned buffers (depth + 1), two arrays each, reused: a slot is written again
    # only after the event of its previous copy was synchronized
    assert len([e for e in log if e[0] == "pinned"]) == 6
    syncs = [e[1] for e in log if e[0] == "sync"]
    assert syncs == side_records[:3]  # batches 3, 4, 5 reuse the slots of batches 0, 1, 2
    # the prefetcher runs ahead: batch k+2 is issued before batch k+1 is handed out
    assert log.index(("yield",)) > copies[3]


def test_prefetch_depth_zero_copies_on_demand():
    batches = [(np.ones(3, np.float32) * k,) for k in range(3)]
    log = _Log()
    pf = D._CudaPrefetcher(ag.Device("cuda:0"), 0, cp=_FakeCuda(log), cupyx=_FakeCupyx(log))
    pf.wrap = lambda arrays, copy=True: tuple(np.asarray(a) for a in arrays)
    out = list(pf.run(iter(batches)))
    assert [o[0][0] for o in out] == [0.0, 1.0, 2.0] and log == []


@pytest.mark.gpu
def test_gpu_loader_matches_cpu_loader():
    import cupy as cp

    ds, X, y = _ds(1000)
    for prefetch in (0, 2):
        gpu = ag.data.DataLoader(ds, batch_size=64, shuffle=True, seed=5, device="cuda",
                                 prefetch=prefetch, transform=lambda a, b: (a * 0.5, b))
        cpu = ag.data.DataLoader(ds, batch_size=64, shuffle=True, seed=5, device="cpu",
                                 transform=lambda a, b: (a * 0.5, b))
        for _ in range(2):  # two epochs: slots and pooled device blocks are reused
            total = None
            for (xg, yg), (xc, yc) in zip(gpu, cpu):
                assert xg.device == "cuda:0" and isinstance(xg.data, cp.ndarray)
                s = (xg * 2.0).sum()  # compute on the consumer stream right after the copy
                total = s if total is None else total + s
                np.testing.assert_array_equal(xg.numpy(), xc.numpy())
                np.testing.assert_array_equal(yg.numpy(), yc.numpy())
            assert total.to_scalar() == pytest.approx(float(X.sum()))
