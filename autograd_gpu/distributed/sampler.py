"""Each rank's part of every epoch: ``dist.shard(dataset_len, shuffle=True, seed=...)``.

Every rank draws the same permutation of the epoch (from ``(seed, epoch)``) and takes every
``world_size``-th sample of it from position ``rank``: the parts are disjoint and equally long
(the ranks must run the same number of steps, or one would wait forever for the others).
``drop_last=True`` leaves out the last ``len % world_size`` samples of the permutation;
``drop_last=False`` repeats its first samples to fill the last round instead, so every sample is
seen. With ``drop_last=True`` the parts are those of ``ag.data.DataLoader(..., num_shards=
world_size, shard_index=rank)``.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import random_state
from ..errors import ArgumentError
from .group import world

__all__ = ["ShardSampler", "shard"]


def _count(where: str, name: str, v, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        raise ArgumentError(f"{where}: argument '{name}' expected an int >= {low}, got {v!r}")
    return int(v)


class ShardSampler:
    """The sample indices of one rank (see the module docstring). ``indices(epoch)`` gives
    them; ``ag.data.DataLoader(dataset, batch_size, sampler=s)`` batches them, one epoch per
    pass. ``len(s)`` is the number of samples per epoch (the same on every rank)."""

    def __init__(self, dataset_len: int, shuffle: bool, seed: int | None, drop_last: bool,
                 rank: int, world_size: int):
        self.dataset_len = dataset_len
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        if drop_last:
            self.num_samples = dataset_len // world_size
        else:
            self.num_samples = -(-dataset_len // world_size)
        if self.num_samples == 0:
            raise ArgumentError(f"dist.shard: {dataset_len} samples give {world_size} ranks none "
                                "each with drop_last=True")

    def __len__(self) -> int:
        return self.num_samples

    def epoch_order(self, epoch: int):
        """The whole epoch's order, before it is dealt out (the same on every rank)."""
        n = self.dataset_len
        if self.shuffle:
            return np.random.default_rng([self.seed, int(epoch)]).permutation(n)
        return np.arange(n)

    def indices(self, epoch: int):
        """This rank's sample indices in ``epoch``, in order."""
        epoch = _count("ShardSampler.indices", "epoch", epoch, 0)
        order = self.epoch_order(epoch)
        total = self.num_samples * self.world_size
        if total <= len(order):
            order = order[:total]
        else:
            order = np.resize(order, total)  # repeats from the start
        return order[self.rank::self.world_size]

    def __repr__(self) -> str:
        return (f"ShardSampler(dataset_len={self.dataset_len}, rank={self.rank}, "
                f"world_size={self.world_size}, shuffle={self.shuffle}, seed={self.seed}, "
                f"drop_last={self.drop_last}, samples={self.num_samples})")


def shard(dataset_len: int, shuffle: bool = True, seed: int | None = None,
          drop_last: bool = False, *, rank: int | None = None,
          world_size: int | None = None) -> ShardSampler:
    """This rank's part of every epoch of a dataset of ``dataset_len`` samples.

    ``seed``: the permutations' seed, the same on every rank; None draws one on rank 0 (from
    the stream ``ag.manual_seed`` seeds) and broadcasts it. ``rank``/``world_size`` default to
    the process group's (``dist.init``); pass both to shard without one.
    """
    where = "dist.shard"
    dataset_len = _count(where, "dataset_len", dataset_len, 1)
    if (rank is None) != (world_size is None):
        raise ArgumentError(f"{where}: pass both 'rank' and 'world_size' or neither, got "
                            f"rank={rank!r}, world_size={world_size!r}")
    g = None
    if rank is None:
        g = world(where)
        rank, world_size = g.rank, g.size
    world_size = _count(where, "world_size", world_size, 1)
    rank = _count(where, "rank", rank, 0)
    if rank >= world_size:
        raise ArgumentError(f"{where}: argument 'rank' expected below world_size={world_size}, "
                            f"got {rank}")
    if seed is not None:
        seed = _count(where, "seed", seed, 0)
    elif shuffle:
        if g is None and world_size > 1:
            raise ArgumentError(f"{where}: shuffle without a process group needs an explicit "
                                "'seed', the same on every rank")
        seed = int(random_state.generator("distributed.shard").integers(2**63))
        if g is not None and g.size > 1:
            seed = g.bcast_object(seed, 0, f"{where}: rank 0's seed")
    return ShardSampler(dataset_len, bool(shuffle), seed, bool(drop_last), rank, world_size)
