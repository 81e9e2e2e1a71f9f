"""Batches for training loops: ``ag.data.ArrayDataset`` and ``ag.data.DataLoader``.

    ds = ag.data.ArrayDataset(X, y)                      # host arrays, equal first axes
    loader = ag.data.DataLoader(ds, batch_size=64, shuffle=True, seed=0)
    for epoch in range(10):
        for xb, yb in loader:                            # ag.Tensors on the loader's device
            ...

Each pass over the loader is one epoch. With ``shuffle`` the order of epoch ``e`` is a
permutation drawn from ``(seed, e)``: two runs with the same seed see the same batches, and
every epoch a different order. ``transform(*arrays)`` runs on each batch's host arrays before
they reach the device (scaling, augmentation, a dtype change). ``num_shards``/``shard_index``
give each of several processes a disjoint, equally long part of every epoch (data-parallel
training): every shard must use the same seed, so they draw the same permutation.

On the CPU the loader is a plain iterator: the batch is gathered from the dataset's arrays and
wrapped in Tensors. On a GPU it prefetches: while the consumer's stream computes on batch k,
batches k+1..k+prefetch are gathered on the host into page-locked (pinned) buffers and copied to
the device on a side CUDA stream, so the host-to-device copies overlap the compute instead of
stalling it (a copy from pageable memory is synchronous for the host). The ordering rules that
make this safe are in ``_CudaPrefetcher``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import random_state
from .backend import Device, default_device
from .errors import ArgumentError, ShapeError
from .tensor import Tensor

__all__ = ["ArrayDataset", "DataLoader"]


def _host_array(a: Any, i: int) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.numpy()
    if type(a).__module__.startswith("cupy"):
        return a.get()
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"ArrayDataset: argument {i} expected an array, got "
                            f"{type(a).__name__} ({exc})") from None
    if arr.dtype == object:
        raise ArgumentError(f"ArrayDataset: argument {i} expected a numeric array, got dtype "
                            f"object (a ragged list?)")
    return arr


class ArrayDataset:
    """Samples ``(a[i], b[i], ...)`` from arrays that share their first axis.

    The arrays are kept on the host (NumPy; a Tensor or CuPy array is copied there once): the
    loader moves each batch to its device. ``ds[i]`` is a tuple of the i-th rows; ``ds[idx]``
    with an index array or slice is a tuple of batches."""

    def __init__(self, *arrays: Any):
        if not arrays:
            raise ArgumentError("ArrayDataset: expected at least one array, got none")
        hosts = [_host_array(a, i) for i, a in enumerate(arrays)]
        for i, a in enumerate(hosts):
            if a.ndim == 0:
                raise ShapeError(f"ArrayDataset: argument {i} expected an array with a first "
                                 f"(sample) axis, got a scalar")
        n = hosts[0].shape[0]
        for i, a in enumerate(hosts[1:], start=1):
            if a.shape[0] != n:
                raise ShapeError(
                    f"ArrayDataset: every array needs the same number of samples (first axis); "
                    f"argument 0 has {n}, argument {i} has {a.shape[0]} (shape {a.shape})")
        self.arrays: tuple[np.ndarray, ...] = tuple(hosts)

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])

    def __getitem__(self, index: Any) -> tuple[np.ndarray, ...]:
        return tuple(a[index] for a in self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.arrays)
        return f"ArrayDataset({len(self)} samples: {shapes})"


def _check_int(name: str, value: Any, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ArgumentError(f"DataLoader: argument '{name}' expected an int >= {low}, "
                            f"got {value!r}")
    return int(value)


class DataLoader:
    """Iterate over a dataset in batches of Tensors on ``device``.

    dataset: an ``ArrayDataset``, or any object with ``len()`` whose ``dataset[i]`` returns a
        tuple of arrays (or one array) per sample; those samples are stacked into batches.
    batch_size: samples per batch. ``drop_last``: leave out the last, smaller batch.
    shuffle, seed: a new order every epoch, reproducible from ``seed`` (``None``: drawn once
        from the library's stream that ``ag.manual_seed`` seeds, so each loader differs and a
        seeded program repeats).
    transform: ``transform(*host_arrays) -> array or tuple of arrays``, applied to each batch on
        the host before it goes to the device.
    device: where the batches go (default: ``ag.default_device()`` when the loader is made).
    prefetch: on a GPU, how many batches are copied ahead on the side stream (0: copy each
        batch when it is asked for, on the consumer's stream). Ignored on the CPU.
    num_shards, shard_index: this process's part of each epoch when ``num_shards`` processes
        share the data: the epoch's order is cut to a multiple of ``num_shards`` samples and
        shard ``s`` takes every ``num_shards``-th sample from position ``s``; all shards have the
        same number of batches.
    sampler: an object whose ``indices(epoch)`` gives the sample indices of each epoch, in
        order, and whose ``len()`` is their number (``autograd_gpu.distributed.shard``); it
        replaces ``shuffle`` and ``num_shards``.
    """

    def __init__(self, dataset: Any, batch_size: int = 32, *, shuffle: bool = False,
                 seed: int | None = None, drop_last: bool = False,
                 transform: Callable[..., Any] | None = None, device: str | Device | None = None,
                 prefetch: int = 2, num_shards: int = 1, shard_index: int = 0, sampler=None):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise ArgumentError("DataLoader: argument 'dataset' expected an ArrayDataset or an "
                                f"object with __len__ and __getitem__, got "
                                f"{type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.prefetch = _check_int("prefetch", prefetch, 0)
        self.num_shards = _check_int("num_shards", num_shards, 1)
        self.shard_index = _check_int("shard_index", shard_index, 0)
        if self.shard_index >= self.num_shards:
            raise ArgumentError(f"DataLoader: argument 'shard_index' expected an int below "
                                f"num_shards={self.num_shards}, got {shard_index}")
        if transform is not None and not callable(transform):
            raise ArgumentError(f"DataLoader: argument 'transform' expected a callable, got "
                                f"{type(transform).__name__}")
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0
                                 or isinstance(seed, bool)):
            raise ArgumentError(f"DataLoader: argument 'seed' expected an int >= 0 or None, "
                                f"got {seed!r}")
        if shuffle and self.num_shards > 1 and seed is None:
            # each process would draw its own order and the shards would overlap
            raise ArgumentError("DataLoader: shuffle with num_shards > 1 needs an explicit "
                                "'seed', the same on every shard, so that all shards cut one "
                                "permutation")
        if sampler is not None:
            if not callable(getattr(sampler, "indices", None)) or not hasattr(sampler, "__len__"):
                raise ArgumentError(f"DataLoader: argument 'sampler' expected an object with "
                                    f"indices(epoch) and __len__ (dist.shard), got "
                                    f"{type(sampler).__name__}")
            if shuffle or self.num_shards > 1:
                raise ArgumentError("DataLoader: argument 'sampler' decides the order and the "
                                    "shard; leave shuffle=False and num_shards=1 with it")
        self.sampler = sampler
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.seed = (int(random_state.generator("data.DataLoader").integers(2**63))
                     if seed is None else int(seed))
        self.device = Device(device if device is not None else default_device())
        self.epoch = 0  # the next pass's epoch number (each __iter__ advances it)

    # ---- sizes and order ---------------------------------------------------------------------

    def _samples_per_epoch(self) -> int:
        if self.sampler is not None:
            return len(self.sampler)
        n = len(self.dataset)
        return (n - n % self.num_shards) // self.num_shards

    def __len__(self) -> int:
        """Batches per epoch."""
        m = self._samples_per_epoch()
        return m // self.batch_size if self.drop_last else -(-m // self.batch_size)

    def indices(self, epoch: int) -> np.ndarray:
        """The sample indices this loader (this shard) visits in ``epoch``, in order."""
        n = len(self.dataset)
        if self.sampler is not None:
            order = np.asarray(self.sampler.indices(epoch))
        elif self.shuffle:
            order = np.random.default_rng([self.seed, int(epoch)]).permutation(n)
        else:
            order = np.arange(n)
        if self.num_shards > 1:
            order = order[:n - n % self.num_shards][self.shard_index::self.num_shards]
        if self.drop_last:
            order = order[:len(order) - len(order) % self.batch_size]
        return order

    # ---- batches -----------------------------------------------------------------------------

    def _host_batch(self, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        return self._host_batch_owned(idx)[0]

    def _host_batch_owned(self, idx: np.ndarray) -> tuple[tuple[np.ndarray, ...], bool]:
        """The batch's host arrays, and whether the loader made them (a gather: a Tensor may
        take them without a copy) rather than sharing the dataset's memory (a slice) or
        receiving them from the transform (which may return arrays it keeps)."""
        ds = self.dataset
        owned = self.transform is None
        if isinstance(ds, ArrayDataset):
            # a run of consecutive indices is a slice: a view, no gather (not when a transform
            # could write into it: a gather is a copy)
            if (self.transform is None and len(idx) and not self.shuffle
                    and self.sampler is None and idx[-1] - idx[0] == len(idx) - 1):
                arrays = ds[int(idx[0]):int(idx[-1]) + 1]
                owned = False
            else:
                arrays = ds[idx]
        else:
            samples = [ds[int(i)] for i in idx]
            if not isinstance(samples[0], tuple):
                samples = [(s,) for s in samples]
            arrays = tuple(np.stack([np.asarray(s[j]) for s in samples])
                           for j in range(len(samples[0])))
        if self.transform is not None:
            out = self.transform(*arrays)
            arrays = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return tuple(a if isinstance(a, np.ndarray) else np.asarray(a) for a in arrays), owned

    def _index_batches(self, epoch: int) -> Iterator[np.ndarray]:
        order = self.indices(epoch)
        for i in range(0, len(order), self.batch_size):
            yield order[i:i + self.batch_size]

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        epoch = self.epoch
        self.epoch += 1
        if self.device.type == "cpu":
            return self._cpu_batches(epoch)
        host = (self._host_batch(idx) for idx in self._index_batches(epoch))
        return _CudaPrefetcher(self.device, self.prefetch).run(host)

    def _cpu_batches(self, epoch: int) -> Iterator[tuple[Tensor, ...]]:
        for idx in self._index_batches(epoch):
            arrays, owned = self._host_batch_owned(idx)
            # a gathered batch is the loader's own: no second copy (from_array copies by
            # default so that a tensor never shares memory its creator may write into later)
            yield tuple(Tensor.from_array(a, device=self.device, copy=not owned)
                        for a in arrays)

    def __repr__(self) -> str:
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={self.device}, "
                f"{len(self)} batches per epoch)")


class _PinnedSlot:
    """Page-locked host buffers for one batch in flight, and the event of the last copy that
    read them."""

    __slots__ = ("buffers", "event")

    def __init__(self):
        self.buffers: list = []
        self.event = None

    def take(self, cupyx, i: int, a: np.ndarray) -> np.ndarray:
        while len(self.buffers) <= i:
            self.buffers.append(None)
        buf = self.buffers[i]
        if buf is None or buf.nbytes < a.nbytes:
            buf = cupyx.empty_pinned((max(a.nbytes, 1),), dtype=np.uint8)
            self.buffers[i] = buf
        return buf[:a.nbytes].view(a.dtype).reshape(a.shape)


class _CudaPrefetcher:
    """Copies host batches to a GPU on a side stream, ``depth`` batches ahead.

    Per batch: (1) its pinned slot is reused only after the copy that last read it finished
    (``event.synchronize()``); (2) the host batch is written into the slot; (3) the side stream
    waits for everything queued so far on the consumer's stream, then allocates the device
    arrays and copies into them. Step 3's wait is what makes the memory pool safe: the arrays
    are allocated on the side stream, so a block a previous batch used comes back to the side
    stream when the consumer drops it; any kernel that read it was queued on the consumer's
    stream before the drop, hence before this wait. (4) Before a batch is handed out, the
    consumer's stream waits for its copy's event, so no kernel reads it early. The consumer is
    the stream current when the iteration starts; a batch used on another stream needs that
    stream to wait for the consumer's first.
    """

    def __init__(self, device: Device, depth: int, cp: Any = None, cupyx: Any = None):
        if cp is None:
            import cupy as cp  # optional dependency (cupy)
            import cupyx  # optional dependency (cupy)
        self.cp, self.cupyx = cp, cupyx
        self.device = device
        self.depth = depth

    def wrap(self, arrays: Sequence[Any], copy: bool = True) -> tuple[Tensor, ...]:
        return tuple(Tensor.from_array(a, device=self.device, copy=copy) for a in arrays)

    def run(self, host_batches: Iterator[Sequence[np.ndarray]]) -> Iterator[tuple[Tensor, ...]]:
        if self.depth == 0:  # synchronous copies on the consumer's stream
            for b in host_batches:
                yield self.wrap(b)
            return
        gpu = self.cp.cuda.Device(self.device.index)
        with gpu:  # (not held across the yields: the consumer's code runs between them)
            consumer = self.cp.cuda.get_current_stream()
            side = self.cp.cuda.Stream(non_blocking=True)
        slots = [_PinnedSlot() for _ in range(self.depth + 1)]
        pending: deque = deque()
        k = 0
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.depth:
                b = next(host_batches, None)
                if b is None:
                    exhausted = True
                    break
                with gpu:
                    pending.append(self._issue(b, slots[k % len(slots)], consumer, side))
                k += 1
            if not pending:
                return
            arrays, done = pending.popleft()
            consumer.wait_event(done)
            yield self.wrap(arrays, copy=False)  # device arrays made for this batch alone

    def _issue(self, batch: Sequence[np.ndarray], slot: _PinnedSlot, consumer, side):
        cp = self.cp
        if slot.event is not None:
            slot.event.synchronize()
        pinned = []
        for i, a in enumerate(batch):
            p = slot.take(self.cupyx, i, a)
            np.copyto(p, a)
            pinned.append(p)
        side.wait_event(consumer.record())
        out = []
        with side:
            for p in pinned:
                d = cp.empty(p.shape, dtype=p.dtype)
                d.set(p, stream=side)
                out.append(d)
            done = side.record()
        slot.event = done
        return out, done
