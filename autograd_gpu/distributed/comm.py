"""The communicator interface every transport implements, and the world of one.

A communicator moves arrays of one kind (host or device) between the ranks of a job. Each
collective is non-blocking: it returns a :class:`Work` whose ``test()`` advances it and says
whether it is done; the caller (``group.Group``) waits for it against a deadline. Reductions
are in place on a C-contiguous buffer. A third transport implements the methods of
:class:`Communicator` (``allreduce``, ``broadcast``, ``allgather``, ``alltoall``, ``barrier``)
and is passed to ``dist.init(backend=...)``.

The reduction ops a communicator must support are ``"sum"``, ``"max"`` and ``"min"``; "mean" and
the fixed-order (deterministic) sum are built on them by the group.
"""

from __future__ import annotations

import time

from ..errors import AutogradError

__all__ = ["Communicator", "DistributedError", "LocalCommunicator", "Work", "DoneWork",
           "REDUCE_OPS"]

REDUCE_OPS = ("sum", "max", "min")


class DistributedError(AutogradError, RuntimeError):
    """A collective that cannot complete: a peer that did not arrive before the deadline, a
    model that differs between ranks, a launcher the library cannot join, a transport error."""

    __module__ = "autograd_gpu.distributed"  # where users import it from


class Work:
    """A collective in flight. ``test()`` advances it (non-blocking) and returns True once its
    result is in the output buffer. ``label`` names it in error messages; ``started`` is the
    ``time.monotonic()`` of its launch (its deadline counts from there)."""

    label = "collective"
    seq = -1
    done = False

    def __init__(self):
        self.started = time.monotonic()

    def test(self) -> bool:
        raise NotImplementedError

    def poller(self):
        """A callable without arguments that returns True once ``test()`` will: the wait loop
        calls it between its own bookkeeping, then ``test()`` once to finish the work. A
        transport may return its request's own test (MPI's ``Request.Test``), without the
        Python call around it: MPICH moves data only inside MPI calls, so the cost of each test
        sets the transfer's pace."""
        return self.test

    def cancel(self) -> None:
        """Give up on the result (the job is about to abort); nothing may be waited for."""

    def on_device_stream(self) -> bool:
        """True when the result is ordered on a device stream: a consumer on the current stream
        may use it without the host waiting (``enqueue_wait``)."""
        return False

    def enqueue_wait(self) -> None:
        """Make the current device stream wait for this work (device transports only)."""
        raise NotImplementedError


class DoneWork(Work):
    """A collective that completed when it was launched (a world of one, a host copy)."""

    def __init__(self, then=None):
        super().__init__()
        if then is not None:
            then()
        self.done = True

    def test(self) -> bool:
        return True


class Communicator:
    """One transport's view of the job: ``rank`` and ``size``, and non-blocking collectives on
    the arrays it ``supports``. All ranks must issue the same collectives in the same order with
    buffers of the same shape and dtype (the group checks what it can before launching)."""

    name = "communicator"
    rank = 0
    size = 1

    def supports(self, array) -> bool:
        """True when this transport can move ``array`` (a numpy or cupy array)."""
        raise NotImplementedError

    def allreduce(self, buf, op: str) -> Work:
        """Reduce ``buf`` over the ranks with ``op`` ("sum", "max", "min"), in place."""
        raise NotImplementedError

    def broadcast(self, buf, root: int) -> Work:
        """Overwrite ``buf`` on every rank with root's ``buf``."""
        raise NotImplementedError

    def allgather(self, send, recv) -> Work:
        """``recv[r] = send of rank r``; ``recv`` has shape ``(size,) + send.shape``."""
        raise NotImplementedError

    def alltoall(self, send, recv) -> Work:
        """``recv[r] = send[rank] of rank r``; both of shape ``(size, n)``."""
        raise NotImplementedError

    def barrier(self) -> Work:
        raise NotImplementedError

    # ---- job control (launched jobs) ---------------------------------------------------------
    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (an unrecoverable error on this one)."""
        raise SystemExit(code)

    def announce(self, seq: int) -> None:
        """Tell the other ranks that this one has reached collective number ``seq`` (what lets
        a rank that waits name the ranks that did not arrive). Optional."""

    def arrivals(self) -> list | None:
        """The last collective number each rank announced (this rank's own included), or None
        when the transport does not keep track."""
        return None

    def close(self) -> None:
        pass


class LocalCommunicator(Communicator):
    """The world of one: a process not started by a launcher. Every collective completes at
    once; a reduction over one rank leaves the buffer as it is."""

    name = "local"

    def supports(self, array) -> bool:
        return True

    def allreduce(self, buf, op: str) -> Work:
        return DoneWork()

    def broadcast(self, buf, root: int) -> Work:
        return DoneWork()

    def allgather(self, send, recv) -> Work:
        def copy():
            recv[0] = send
        return DoneWork(copy)

    def alltoall(self, send, recv) -> Work:
        def copy():
            recv[...] = send
        return DoneWork(copy)

    def barrier(self) -> Work:
        return DoneWork()

