"""MPI through mpi4py: host arrays directly, device arrays staged through the host (or passed
as they are to a CUDA-aware MPI).

Every collective is MPI's non-blocking one (``Iallreduce``, ``Ibcast``, ...) on a duplicate of
the job's communicator, so the library's traffic never matches a user's own MPI calls. Types MPI
has no reduction for are handled here: float16 and bfloat16 buffers are summed in float32 and
rounded back (as NCCL accumulates them), booleans travel as bytes; data movement of any dtype
goes as raw bytes.

MPICH progresses a non-blocking collective only while the process is inside an MPI call, so the
caller tests its work at points it reaches anyway (``DataParallel`` at each gradient the sweep
finishes, the group in its wait loop).
"""

from __future__ import annotations

import os
import time

import numpy as np

from .. import dtypes as _dt
from .comm import Communicator, DistributedError, Work

__all__ = ["MPICommunicator", "ArrivalBoard", "load_mpi"]

CUDA_AWARE_ENV = "AUTOGRAD_GPU_MPI_CUDA_AWARE"
_SIXTEEN = (np.dtype(np.float16), np.dtype(_dt.bfloat16))


def load_mpi():
    """mpi4py's MPI module, or a DistributedError saying how to install it."""
    try:
        from mpi4py import MPI  # optional dependency (mpi4py)
    except ImportError as exc:
        raise DistributedError(
            f"autograd_gpu.distributed: MPI is needed for a launched job or backend='mpi', and "
            f"mpi4py does not import ({exc}); install it with pip install "
            "\"autograd_gpu[distributed]\" (mpi4py and MPICH)") from None
    return MPI


class _MPIWork(Work):
    """An MPI request; ``then`` runs once it completes (staging back, rounding back).

    Every attribute is a slot, Work's included (no instance dict is made: one of these is made
    per bucket, and with two ranks sharing a core each one's Python work between MPI calls
    shows in the transfer time)."""

    __slots__ = ("started", "seq", "label", "done", "_req", "_then", "_keep")

    def __init__(self, req, then=None, keep=None):
        self.started = time.monotonic()  # (Work.__init__, without the call)
        self.seq, self.label, self.done = -1, "collective", False
        self._req = req
        self._then = then
        self._keep = keep  # buffers MPI reads or writes until completion

    def test(self) -> bool:
        if self.done:
            return True
        if self._req.Test():
            self.done = True
            then, self._then, self._keep = self._then, None, None
            if then is not None:
                then()
        return self.done

    def poller(self):
        # (mpi4py's Test frees a completed request and leaves MPI_REQUEST_NULL behind, whose
        # Test is True, so test() still finishes the work after the poller saw it complete)
        return self.test if self.done else self._req.Test


class _FixedSum(Work):
    """A sum in rank order: an alltoall hands rank r the r-th chunk of every rank's buffer, r
    adds them up in rank order, an allgather puts the chunks back together. The two phases run
    on separate channels, and each work launches its second phase only after its predecessor
    did, so every rank issues the phases in the same order whatever their timing."""

    def __init__(self, owner: MPICommunicator, flat, prev):
        super().__init__()
        size = owner.size
        self._owner = owner
        self._flat = flat
        self._chunks = flat.reshape(size, -1)
        self._recv = np.empty_like(self._chunks)
        self._first = owner.alltoall(self._chunks, self._recv)
        self._second = None
        self._prev = prev

    def _launch_second(self) -> None:
        recv = self._recv
        acc = recv[0].copy()
        for r in range(1, recv.shape[0]):
            np.add(acc, recv[r], out=acc)
        self._acc = acc
        self._second = self._owner.second.allgather(acc, self._chunks)

    def launched_second(self) -> bool:
        return self._second is not None

    def test(self) -> bool:
        if self.done:
            return True
        if self._second is None:
            prev = self._prev
            if prev is not None:
                prev.test()
                if not prev.launched_second():
                    return False
                self._prev = None
            if not self._first.test():
                return False
            self._launch_second()
        if self._second.test():
            self.done = True
            self._recv = self._acc = self._chunks = None
        return self.done


class MPICommunicator(Communicator):
    """MPI on a duplicate of ``comm`` (mpi4py's Intracomm)."""

    name = "mpi"

    def __init__(self, comm, cuda_aware: bool | None = None, board: bool = True):
        self.MPI = load_mpi()
        self.comm = comm.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self._ops = {"sum": self.MPI.SUM, "max": self.MPI.MAX, "min": self.MPI.MIN}
        self._in_place = self.MPI.IN_PLACE
        if cuda_aware is None:
            cuda_aware = os.environ.get(CUDA_AWARE_ENV, "").strip() in ("1", "true", "yes")
        self.cuda_aware = bool(cuda_aware)
        self._board = ArrivalBoard(comm.Dup(), self.MPI) if board and self.size > 1 else None
        self._second = None
        self._last_fixed = None

    @property
    def second(self) -> MPICommunicator:
        """A second channel (another duplicate) for the fixed-order sum's second phase."""
        if self._second is None:
            self._second = MPICommunicator(self.comm, self.cuda_aware, board=False)
        return self._second

    def supports(self, array) -> bool:
        return True  # host arrays directly, device arrays staged (or CUDA-aware)

    # ---- staging -----------------------------------------------------------------------------
    def _host(self, buf, read: bool = True):
        """(an array MPI can take, a function that copies it back into ``buf`` or None)."""
        if isinstance(buf, np.ndarray):
            return buf, None
        if self.cuda_aware:
            import cupy  # optional dependency (cupy)

            cupy.cuda.get_current_stream().synchronize()  # MPI reads it outside stream order
            return buf, None
        host = buf.get() if read else np.empty(buf.shape, buf.dtype)

        def back():
            buf.set(host)
        return host, back

    # ---- collectives -------------------------------------------------------------------------
    def allreduce(self, buf, op: str) -> Work:
        dt = buf.dtype
        if type(buf) is np.ndarray and dt.itemsize != 2 and dt.kind != "b":
            # the common case (a host bucket of float32/float64) straight to MPI: no staging,
            # no conversion
            return _MPIWork(self.comm.Iallreduce(self._in_place, buf, self._ops[op]), keep=buf)
        host, back = self._host(buf)
        work = host
        if dt.itemsize == 2 and dt in _SIXTEEN:
            work = host.astype(np.float32)
        elif dt.kind == "b":
            work = host.view(np.uint8)
        req = self.comm.Iallreduce(self._in_place, work, self._ops[op])
        if work is host and back is None:
            return _MPIWork(req, keep=work)

        def then():
            if work is not host:
                np.copyto(host, work, casting="unsafe")
            if back is not None:
                back()
        return _MPIWork(req, then, keep=(host, work))

    def broadcast(self, buf, root: int) -> Work:
        host, back = self._host(buf)
        req = self.comm.Ibcast(_bytes(host), root=root)
        return _MPIWork(req, back, keep=host)

    def allgather(self, send, recv) -> Work:
        hsend, _ = self._host(send)
        hrecv, back = self._host(recv, read=False)
        req = self.comm.Iallgather(_bytes(hsend), _bytes(hrecv))
        return _MPIWork(req, back, keep=(hsend, hrecv))

    def alltoall(self, send, recv) -> Work:
        hsend, _ = self._host(send)
        hrecv, back = self._host(recv, read=False)
        req = self.comm.Ialltoall(_bytes(hsend), _bytes(hrecv))
        return _MPIWork(req, back, keep=(hsend, hrecv))

    def barrier(self) -> Work:
        return _MPIWork(self.comm.Ibarrier())

    def fixed_sum(self, flat) -> Work:
        """Sum ``flat`` (1-D, a multiple of ``size`` long) over the ranks in rank order, in
        place: the same bits on every rank and in every run."""
        if not isinstance(flat, np.ndarray):
            host, back = self._host(flat)
            inner = self.fixed_sum(host)

            class _Staged(Work):
                def test(self_):
                    if not self_.done and inner.test():
                        back()
                        self_.done = True
                    return self_.done
            return _Staged()
        work = _FixedSum(self, flat, self._last_fixed)
        self._last_fixed = work
        return work

    # ---- job control -------------------------------------------------------------------------
    def abort(self, code: int = 1) -> None:
        self.MPI.COMM_WORLD.Abort(code)

    def announce(self, seq: int) -> None:
        if self._board is not None:
            self._board.announce(seq)

    def arrivals(self) -> list | None:
        return None if self._board is None else self._board.arrivals()

    def close(self) -> None:
        if self._board is not None:
            self._board.close()
            self._board = None
        if self._second is not None:
            self._second.close()
        try:
            self.comm.Free()
        except Exception:
            pass


def _bytes(a: np.ndarray):
    """A C-contiguous array as its raw bytes (any dtype, bfloat16 included)."""
    if not a.flags.c_contiguous:
        raise DistributedError(f"MPI: expected a C-contiguous buffer, got strides {a.strides}")
    return a.reshape(-1).view(np.uint8)


class ArrivalBoard:
    """Which collective each rank has reached, read by a rank whose wait passes a deadline to
    name the ranks that never reached that collective.

    Ranks on this machine share one window of MPI shared memory, a 64-bit slot per rank: a rank
    announces a collective by storing its number in its slot (a plain store, nothing for MPI to
    move) and reads the others' slots only at a deadline. A rank on another machine is sent the
    number instead (8 bytes, MPI's eager path: the receiver need not be listening), and reads the
    ones that came in whenever it announces its own. Sending to every peer cost the 2-rank job
    20-60 us per collective on 2 cores (64 KB allreduces 0.72x a raw Iallreduce + Wait, 1 MB
    0.89x, 2026-12-07): the messages go through the same progress engine as the collective.
    ``shared_memory = False`` sends to every peer, as to ranks on other machines (the tests
    exercise both paths on one machine)."""

    TAG = 17
    shared_memory = True

    def __init__(self, comm, MPI):
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.last = [-1] * self.size
        self._node = self._win = None
        self._slots: dict = {}  # rank -> its one-element view of the shared window
        if self.shared_memory:
            self._share()
        self._mine = self._slots.get(self.rank)
        self._remote = [p for p in range(self.size) if p != self.rank and p not in self._slots]
        self._bufs = {p: np.zeros(1, np.int64) for p in self._remote}
        self._recvs = [self._post(p) for p in self._remote]
        self._sends: list = []

    def _share(self) -> None:
        """The window over the ranks on this machine (collective over ``comm``)."""
        MPI = self.MPI
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        if node.Get_size() == 1:
            node.Free()
            return
        win = MPI.Win.Allocate_shared(8, 8, comm=node)
        win.Lock_all(MPI.MODE_NOCHECK)  # one passive epoch, for Sync at a deadline
        ranks = node.Get_group().Translate_ranks(list(range(node.Get_size())),
                                                 self.comm.Get_group())
        for i, r in enumerate(ranks):
            mem, _ = win.Shared_query(i)
            self._slots[r] = np.frombuffer(mem, dtype=np.int64, count=1)
        self._slots[self.rank][0] = -1
        win.Sync()
        node.Barrier()  # every slot holds -1 before anyone can read it
        self._node, self._win = node, win

    def _post(self, peer):
        return self.comm.Irecv(self._bufs[peer], source=peer, tag=self.TAG)

    def announce(self, seq: int) -> None:
        self.last[self.rank] = seq
        if self._mine is not None:
            self._mine[0] = seq
        if not self._remote:
            return
        msg = np.array([seq], np.int64)
        sends = self._sends
        for p in self._remote:
            sends.append(self.comm.Isend(msg, dest=p, tag=self.TAG))
        sends.append(msg)  # (kept alive until the sends complete)
        if len(sends) > 64:
            reqs = [r for r in sends if not isinstance(r, np.ndarray)]
            if self.MPI.Request.Testall(reqs):
                sends.clear()
        self._drain()

    def _drain(self) -> None:
        MPI = self.MPI
        while self._recvs:
            done = MPI.Request.Testsome(self._recvs)
            if not done:
                return
            for i in done:
                p = self._remote[i]
                self.last[p] = max(self.last[p], int(self._bufs[p][0]))
                self._recvs[i] = self._post(p)

    def arrivals(self) -> list:
        self._drain()
        if self._win is not None:
            self._win.Sync()  # (a memory barrier: the peers' latest stores)
            for p, slot in self._slots.items():
                self.last[p] = max(self.last[p], int(slot[0]))
        return list(self.last)

    def close(self) -> None:
        for r in self._recvs:
            try:
                r.Cancel()
                r.Wait()
            except Exception:
                pass
        self._recvs = []
        try:  # (eager sends are complete; never block on a peer at shutdown)
            self.MPI.Request.Testall([r for r in self._sends if not isinstance(r, np.ndarray)])
        except Exception:
            pass
        self._sends = []
        self._slots, self._mine = {}, None
        if self._win is not None:
            try:
                self._win.Unlock_all()
                self._win.Free()
                self._node.Free()
            except Exception:
                pass
            self._win = self._node = None
        try:
            self.comm.Free()
        except Exception:
            pass
