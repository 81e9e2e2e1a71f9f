"""Collectives on tensors: ``all_reduce``, ``broadcast``, ``all_gather``, ``barrier``.

Each takes a Tensor on the CPU or a GPU and returns a new Tensor on the same device (the input
is never written); the transport follows the device (see ``Group.comm_for``). The results are
values, not recorded ops: like ``t.detach()``, they carry no gradient back to ``t``. Every rank
must call the same collectives in the same order; the shape, dtype, op and root are checked to
agree across ranks first (one 8-byte allgather), because a mismatch would otherwise give wrong
numbers or a hang.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import dtypes as _dt
from ..errors import ArgumentError, DTypeError, describe
from ..ops.context import deterministic_requested
from ..tensor import Tensor
from .group import Group, world

__all__ = ["all_reduce", "broadcast", "all_gather", "barrier", "rank", "world_size",
           "local_rank", "reduce_array", "OPS"]

OPS = ("sum", "mean", "max", "min")


def rank() -> int:
    """This process's rank, 0 .. world_size() - 1."""
    return world("dist.rank").rank


def world_size() -> int:
    """The number of processes in the job (1 when not launched)."""
    return world("dist.world_size").size


def local_rank() -> int:
    """This process's rank among the processes on its machine (which GPU it should take)."""
    return world("dist.local_rank").local_rank


def barrier() -> None:
    """Return once every rank has called it (or raise DistributedError at the deadline)."""
    g = world("dist.barrier")
    g.wait([g.launch(g.host.barrier, "dist.barrier")])


def _tensor(where: str, t) -> Tensor:
    if not isinstance(t, Tensor):
        raise ArgumentError(f"{where}: argument 't' expected a Tensor, got {describe(t)}")
    return t


def _contiguous_copy(t: Tensor):
    xp = t._bk.xp
    return xp.array(t._data, copy=True, order="C")


def _finish(g: Group, work, buf, bk) -> Tensor:
    if work.on_device_stream():
        work.enqueue_wait()  # the current stream waits on the device; the host goes on
        g.watch(work)
    else:
        g.wait([work])
    return Tensor(buf, bk)


def reduce_array(g: Group, buf, op: str, deterministic: bool, label: str):
    """Reduce a C-contiguous array in place (op "sum", "max", "min"): returns (work, result);
    ``result`` is ``buf`` itself, or for a fixed-order sum a padded copy viewed back to
    ``buf``'s shape once the work is done."""
    comm = g.comm_for(buf, label)
    if deterministic and op == "sum" and g.size > 1:
        n = buf.size
        pad = -n % g.size
        xp = np if isinstance(buf, np.ndarray) else _xp_of(buf)
        flat = xp.empty(n + pad, dtype=buf.dtype)
        flat[:n] = buf.reshape(-1)
        flat[n:] = 0
        work = g.launch(lambda: comm.fixed_sum(flat), label)
        return work, flat[:n].reshape(buf.shape)
    return g.launch(lambda: comm.allreduce(buf, op), label), buf


def _xp_of(arr):
    import cupy  # optional dependency (cupy)

    return cupy.get_array_module(arr)


def all_reduce(t: Tensor, op: str = "sum", *, deterministic: bool | None = None) -> Tensor:
    """The elementwise reduction of ``t`` over all ranks: "sum", "mean", "max" or "min".

    ``deterministic``: sum in rank order (reduce-scatter in rank order, then all-gather), so
    the result has the same bits on every rank and in every run; None (default) does so while
    a deterministic tape records or sweeps in this thread (DeterministicConfig WARN/STRICT).
    """
    where = "dist.all_reduce"
    t = _tensor(where, t)
    if op not in OPS:
        raise ArgumentError(f"{where}: argument 'op' expected one of {OPS}, got {op!r}")
    if op in ("sum", "mean") and t.dtype == np.bool_:
        raise DTypeError(f"{where}: op={op!r} of a bool tensor is not defined; cast it first "
                         "(max is a logical or, min a logical and)")
    if op == "mean" and not _dt.is_floating(t.dtype):
        raise DTypeError(f"{where}: op='mean' expected a floating tensor, got "
                         f"{_dt.name(t.dtype)}")
    det = deterministic_requested() if deterministic is None else bool(deterministic)
    g = world(where)
    g.agree(f"shape={t.shape} dtype={_dt.name(t.dtype)} op={op} fixed_order={det} "
            f"device={t.device.type}", where, "shape, dtype, op and device")
    buf = _contiguous_copy(t)
    work, out = reduce_array(g, buf, "sum" if op == "mean" else op, det,
                             f"{where}({op}, {describe(t)})")
    if op != "mean":
        return _finish(g, work, out, t._bk)
    res = _finish(g, work, out, t._bk)
    res._data /= g.size
    return res


def broadcast(t: Tensor, root: int = 0) -> Tensor:
    """Root's ``t`` on every rank (each rank passes a tensor of the same shape and dtype)."""
    where = "dist.broadcast"
    t = _tensor(where, t)
    g = world(where)
    if isinstance(root, bool) or not isinstance(root, numbers.Integral) \
            or not 0 <= root < g.size:
        raise ArgumentError(f"{where}: argument 'root' expected a rank in 0..{g.size - 1}, "
                            f"got {root!r}")
    g.agree(f"shape={t.shape} dtype={_dt.name(t.dtype)} root={int(root)} "
            f"device={t.device.type}", where, "shape, dtype, root and device")
    buf = _contiguous_copy(t)
    comm = g.comm_for(buf, where)
    work = g.launch(lambda: comm.broadcast(buf, int(root)), f"{where}(root={root}, "
                    f"{describe(t)})")
    return _finish(g, work, buf, t._bk)


def all_gather(t: Tensor) -> Tensor:
    """Every rank's ``t`` stacked in rank order: shape ``(world_size,) + t.shape``."""
    where = "dist.all_gather"
    t = _tensor(where, t)
    g = world(where)
    g.agree(f"shape={t.shape} dtype={_dt.name(t.dtype)} device={t.device.type}", where,
            "shape, dtype and device")
    send = _contiguous_copy(t)
    recv = t._bk.xp.empty((g.size,) + tuple(t.shape), dtype=t.dtype)
    comm = g.comm_for(send, where)
    work = g.launch(lambda: comm.allgather(send, recv), f"{where}({describe(t)})")
    return _finish(g, work, recv, t._bk)
