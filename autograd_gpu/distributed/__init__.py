"""Data-parallel training across processes and machines: ``import autograd_gpu.distributed as
dist``.

The transports are the ones clusters already have: MPI through mpi4py for host (NumPy) arrays,
and for GPU arrays NCCL through CuPy (its unique id sent over MPI) or MPI staged through the
host (or a CUDA-aware MPI, ``AUTOGRAD_GPU_MPI_CUDA_AWARE=1``). The transport follows each
tensor's device. Install with ``pip install "autograd_gpu[distributed]"`` (mpi4py and MPICH) and
start a job with ``mpiexec -n 4 python train.py``::

    import autograd_gpu as ag
    import autograd_gpu.distributed as dist

    dist.init()                              # a world of one when not launched
    model = ...                              # the same construction on every rank
    dp = dist.DataParallel(model)            # rank 0's weights everywhere; same shapes checked
    sampler = dist.shard(len(ds), shuffle=True, seed=0)
    loader = ag.data.DataLoader(ds, batch_size=64, sampler=sampler)
    for xb, yb in loader:
        with ag.GradientTape() as tape:
            loss = ag.nn.cross_entropy(dp(xb), yb)
        opt.step(dp.gradient(tape, loss))    # averaged over ranks, reduced during the sweep

Collectives on tensors: ``all_reduce(t, op)``, ``broadcast(t, root)``, ``all_gather(t)``,
``barrier()``. Every collective has a deadline (``init(timeout_s=300)``): a rank that waits past
it raises :class:`DistributedError` naming the collective and the ranks that never reached it,
and the job is aborted; an exception nobody catches on one rank aborts the whole job too (the
hook ``init`` installs), so no rank waits forever for a dead peer. A third transport implements
:class:`Communicator` and is passed as ``init(backend=...)``.
"""

from __future__ import annotations

from .collectives import (
    OPS,
    all_gather,
    all_reduce,
    barrier,
    broadcast,
    local_rank,
    rank,
    world_size,
)
from .comm import Communicator, DistributedError, LocalCommunicator, Work
from .group import BACKENDS, Group, init, is_initialized, shutdown
from .launch import LaunchInfo, launch_info
from .parallel import DEFAULT_BUCKET_MB, DataParallel
from .sampler import ShardSampler, shard

__all__ = [
    "BACKENDS", "Communicator", "DEFAULT_BUCKET_MB", "DataParallel", "DistributedError", "Group",
    "LaunchInfo", "LocalCommunicator", "OPS", "ShardSampler", "Work", "all_gather", "all_reduce",
    "barrier", "broadcast", "init", "is_initialized", "launch_info", "local_rank", "rank",
    "shard", "shutdown", "world_size",
]
