"""The process group: the job's communicators, numbered collectives, deadlines, job control.

Every collective the library issues goes through :meth:`Group.launch`, which numbers it (all
ranks issue collectives in the same order, so the numbers agree) and announces the number to
the other ranks; :meth:`Group.wait` polls the work until it completes or its deadline passes.
At the deadline the rank reads which collective every other rank last announced and raises a
:class:`DistributedError` naming the collective and the ranks that never reached it; the group is
then broken (every later collective raises) and the job is aborted when the error is not caught
or when the process exits. Device collectives the host does not wait for (NCCL) are watched by
a thread that aborts the job at their deadline, since the host may be blocked inside CUDA.

An exception nobody catches on one rank would leave the others waiting for it forever: once a
job has more than one rank, ``init`` installs a ``sys.excepthook`` that prints the traceback
and aborts the job (``MPI_Abort``), which ends every rank within seconds.
"""

from __future__ import annotations

import atexit
import math
import numbers
import os
import pickle
import socket
import sys
import threading
import time
import traceback
import zlib

import numpy as np

from ..errors import ArgumentError, AutogradError, describe
from .comm import Communicator, DistributedError, LocalCommunicator, Work
from .launch import LaunchInfo, launch_info
from .mpi import MPICommunicator, load_mpi
from .nccl import NCCLCommunicator, nccl_status

__all__ = ["Group", "init", "shutdown", "world", "is_initialized", "BACKENDS"]

BACKENDS = ("auto", "mpi", "nccl", "local")
# seconds an aborting rank waits after writing its traceback, so that the launcher has forwarded
# it before MPI_Abort ends every process of the job
_ABORT_GRACE_S = 0.5
# How Group.wait polls a work, counted from when it starts waiting for that work (not from the
# launch: a bucket launched early in a long backward must not be napped for at the end).
# MPICH moves a non-blocking collective's data only inside MPI calls, so the test rate is the
# transfer's speed (measured on the 2-core VM, 2 ranks, 2026-12-07):
# - for _HOT_S it yields the core (sched_yield) only every _HOT_POLLS tests: a small bucket
#   completes within it (a 64 KB allreduce takes 20-60 us), and a yield costs 0.5 us, as much as
#   a test; a yield per test made 64 KB allreduces 0.65-0.85x a raw MPI_Allreduce, one per 8
#   tests 0.87-0.98x. Never yielding is worse still when two ranks share a core: each waits out
#   the spin before the other may run (a 100 us spin: 0.17x at 64 KB with both ranks on one core)
# - then, until _SPIN_S, it yields between every two tests: with more ranks than free cores the
#   peer being waited for needs the core (a 4 MB allreduce polled without yielding took 25 ms at
#   load 15, with yielding 11 ms, level with MPI_Allreduce);
# - then it naps _MAX_NAP between tests (a peer still computing, or stalled): napping while a
#   transfer is in flight slows it down (a 20 ms window gave 16-32 MB allreduces 0.64x the
#   bandwidth of a raw Iallreduce + Wait)
_HOT_S = 100e-6
_HOT_POLLS = 8
_SPIN_S = 0.25
_MAX_NAP = 1e-3
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))


def _nap() -> None:
    time.sleep(_MAX_NAP)


class Group:
    """The job as this process sees it (``dist.init`` makes the one instance)."""

    def __init__(self, host: Communicator, backend: str, timeout_s: float,
                 info: LaunchInfo | None):
        self.host = host
        self.rank = host.rank
        self.size = host.size
        self.backend = backend
        self.timeout_s = float(timeout_s)
        self.launch_info = info
        self.local_rank = 0
        self.seq = 0
        self.broken: str | None = None
        self._device_comms: dict = {}
        self._watchdog: _Watchdog | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"Group(rank={self.rank}, size={self.size}, backend={self.backend!r}, "
                f"transport={self.host.name!r}, timeout_s={self.timeout_s:g})")

    # ---- which transport moves an array ------------------------------------------------------
    def comm_for(self, array, where: str) -> Communicator:
        if isinstance(array, np.ndarray):
            return self.host
        dev = int(array.device.id)
        comm = self._device_comms.get(dev)
        if comm is None:
            comm = self._device_comms[dev] = self._device_comm(array, dev, where)
        return comm

    def _device_comm(self, array, dev: int, where: str) -> Communicator:
        if self.backend == "custom":
            if not self.host.supports(array):
                raise DistributedError(f"{where}: the communicator {self.host.name!r} given to "
                                       f"dist.init does not move device arrays (cuda:{dev})")
            return self.host
        if self.backend in ("mpi", "local") or (self.backend == "auto" and self.size == 1):
            return self.host  # MPI stages through the host (or is CUDA-aware); one rank: nothing
        statuses = self.allgather_object(nccl_status(), f"{where}: NCCL availability")
        bad = [(r, why) for r, (ok, why) in enumerate(statuses) if not ok]
        if bad:
            if self.backend == "auto":
                return self.host
            raise DistributedError(
                f"{where}: backend 'nccl' needs NCCL on every rank; rank {bad[0][0]}: "
                f"{bad[0][1]}")
        from cupy.cuda import nccl  # optional dependency (cupy)

        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.bcast_object(uid, 0, f"{where}: NCCL unique id")
        return NCCLCommunicator(uid, self.rank, self.size, dev)

    # ---- numbering, deadlines ----------------------------------------------------------------
    def check_usable(self, where: str) -> None:
        if self.broken is not None:
            raise DistributedError(f"{where}: the process group is broken by an earlier failure "
                                   f"({self.broken}); the job must be restarted")

    def launch(self, start, label: str) -> Work:
        """Number and announce a collective, then start it: ``start() -> Work``."""
        if self.broken is not None:
            self.check_usable(label)
        with self._lock:
            self.seq += 1
            seq = self.seq
            self.host.announce(seq)
        try:
            work = start()
        except AutogradError:
            raise
        except Exception as exc:  # the transport's own error (an MPI error class, NCCL's)
            self.broken = f"{label}: the transport failed to start it ({exc})"
            raise DistributedError(self.broken) from exc
        work.seq = seq
        work.label = label
        return work

    def wait(self, works) -> None:
        """Wait for every work, each against its own deadline (launch time + timeout_s).

        One work at a time, in launch order (the earliest deadline is watched first), in a
        tight loop over the work's ``poller()``: yielding the core every ``_HOT_POLLS`` tests
        for ``_HOT_S``, then between every two tests until ``_SPIN_S``, then napping (see the
        constants for the measurements behind them). The clock is read every 16 tests."""
        for w in works:
            if w.done:
                continue
            try:
                poll = w.poller()
                if poll() and w.test():
                    continue
                self._poll(w, poll)
            except AutogradError:
                raise
            except Exception as exc:  # the transport's own error, e.g. buffers of different sizes
                self.broken = (f"{w.label} (collective #{w.seq}) failed in the transport: "
                               f"{exc}")
                raise DistributedError(self.broken) from exc

    def _poll(self, w: Work, poll) -> None:
        deadline = w.started + self.timeout_s
        now = time.monotonic()
        hot_until, spin_until = now + _HOT_S, now + _SPIN_S
        every = _HOT_POLLS - 1  # (a mask: a pause when polls & every == 0)
        pause = _yield
        polls = 0
        while True:
            while not poll():
                polls += 1
                if polls & every:
                    continue
                if not polls & 15:
                    now = time.monotonic()
                    if now > deadline:
                        raise DistributedError(self._timed_out(w))
                    if now > spin_until:
                        pause = _nap
                    elif now > hot_until:
                        every = 0
                pause()
            if w.test():
                return
            poll = w.test  # (a poller that answered early: the work's own test from here)

    def watch(self, work: Work) -> None:
        """A device work the host does not wait for: the watchdog thread enforces its
        deadline."""
        if work.done:
            return
        if self._watchdog is None:
            self._watchdog = _Watchdog(self)
            self._watchdog.start()
        self._watchdog.add(work)

    def _timed_out(self, work: Work) -> str:
        arrived = self._arrivals()
        if arrived is None:
            who = "this transport cannot tell which ranks reached it"
        else:
            missing = [r for r in range(self.size) if arrived[r] < work.seq]
            if missing:
                last = ", ".join(f"rank {r} at #{arrived[r]}" for r in missing[:8])
                more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
                who = (f"rank{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(str(r) for r in missing[:8])}{more} did not arrive (the "
                       f"last collective each reached: {last})")
            else:
                who = ("every rank reached it, but it did not complete (a transport failure, "
                       "or ranks that passed buffers of different sizes)")
        msg = (f"{work.label} (collective #{work.seq}) did not complete within "
               f"{self.timeout_s:g} s on rank {self.rank} of {self.size}: {who}; the job is "
               "aborted")
        self.broken = msg
        return msg

    def _arrivals(self):
        with self._lock:
            return self.host.arrivals()

    # ---- small objects (set-up: signatures, ids, plans), through the host transport ----------
    def allgather_object(self, obj, label: str) -> list:
        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
        n = np.array([data.size], dtype=np.int64)
        lens = np.empty((self.size, 1), dtype=np.int64)
        self.wait([self.launch(lambda: self.host.allgather(n, lens), label)])
        width = int(lens.max())
        send = np.zeros(width, dtype=np.uint8)
        send[:data.size] = data
        recv = np.empty((self.size, width), dtype=np.uint8)
        self.wait([self.launch(lambda: self.host.allgather(send, recv), label)])
        return [pickle.loads(recv[r, :int(lens[r, 0])].tobytes()) for r in range(self.size)]

    def bcast_object(self, obj, root: int, label: str):
        data = (np.frombuffer(pickle.dumps(obj), dtype=np.uint8) if self.rank == root
                else np.empty(0, dtype=np.uint8))
        n = np.array([data.size], dtype=np.int64)
        self.wait([self.launch(lambda: self.host.broadcast(n, root), label)])
        buf = data.copy() if self.rank == root else np.empty(int(n[0]), dtype=np.uint8)
        self.wait([self.launch(lambda: self.host.broadcast(buf, root), label)])
        return obj if self.rank == root else pickle.loads(buf.tobytes())

    def agree(self, key: str, label: str, what: str) -> None:
        """Raise on every rank unless every rank passed the same ``key`` (a description of its
        arguments: shape, dtype, op, root): a mismatch would otherwise give wrong numbers or
        hang. One 8-byte allgather; the descriptions travel only on a mismatch."""
        if self.size == 1:
            return
        mine = np.array([zlib.crc32(key.encode())], dtype=np.int64)
        every = np.empty((self.size, 1), dtype=np.int64)
        self.wait([self.launch(lambda: self.host.allgather(mine, every), label)])
        if (every == every[0]).all():
            return
        keys = self.allgather_object(key, label)
        first = next(r for r in range(self.size) if keys[r] != keys[0])
        raise DistributedError(f"{label}: every rank must pass the same {what}; rank 0 passed "
                               f"{keys[0]}, rank {first} passed {keys[first]}")

    # ---- job control -------------------------------------------------------------------------
    def abort(self, code: int = 1) -> None:
        for c in self._device_comms.values():
            if c is not self.host:
                c.abort(code)
        self.host.abort(code)

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        for c in self._device_comms.values():
            if c is not self.host:
                c.close()
        self._device_comms.clear()
        self.host.close()


class _Watchdog(threading.Thread):
    """Polls device works the host does not wait for; past a deadline it reports and aborts
    the job from this thread (the main thread may be blocked in a CUDA call)."""

    def __init__(self, group: Group):
        super().__init__(name="autograd_gpu.distributed watchdog", daemon=True)
        self.group = group
        self._works: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def add(self, work: Work) -> None:
        with self._lock:
            self._works.append(work)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        g = self.group
        period = min(0.5, g.timeout_s / 20)
        while not self._stop.wait(period):
            with self._lock:
                works, self._works = self._works, []
            now = time.monotonic()
            left = []
            for w in works:
                if w.test():
                    continue
                if now - w.started > g.timeout_s:
                    msg = g._timed_out(w)
                    sys.stderr.write(f"autograd_gpu.distributed: DistributedError: {msg}\n")
                    sys.stderr.flush()
                    g.abort(1)
                    return
                left.append(w)
            with self._lock:
                self._works = left + self._works


# ---- the one group ---------------------------------------------------------------------------
_WORLD: Group | None = None
_PREV_HOOK = None


def world(where: str) -> Group:
    if _WORLD is None:
        raise DistributedError(f"{where}: the process group is not initialised; call "
                               "dist.init() first (a world of one when the process was not "
                               "started by a launcher such as mpiexec)")
    return _WORLD


def is_initialized() -> bool:
    return _WORLD is not None


def _check_timeout(timeout_s) -> float:
    if (isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real)
            or not math.isfinite(timeout_s) or timeout_s <= 0):
        raise ArgumentError(f"dist.init: argument 'timeout_s' expected a finite number of "
                            f"seconds > 0, got {timeout_s!r}")
    return float(timeout_s)


def init(backend="auto", timeout_s: float = 300.0) -> Group:
    """Join the job the launcher started, or make a world of one (see the package docstring).

    backend: "auto" (MPI for host arrays, NCCL for GPU arrays when every rank has it, else MPI
        staged through the host), "mpi" (MPI for both), "nccl" (NCCL for GPU arrays; MPI for
        host arrays and set-up), "local" (a world of one, refused in a launched job), or a
        :class:`Communicator` instance (a third transport).
    timeout_s: every collective's deadline, counted from its launch.
    """
    global _WORLD
    timeout_s = _check_timeout(timeout_s)
    custom = isinstance(backend, Communicator)
    if not custom and backend not in BACKENDS:
        raise ArgumentError(f"dist.init: argument 'backend' expected one of {BACKENDS} or a "
                            f"Communicator, got {describe(backend)}")
    name = "custom" if custom else backend
    if _WORLD is not None:
        if _WORLD.backend == name and (not custom or _WORLD.host is backend):
            _WORLD.timeout_s = timeout_s
            return _WORLD
        raise DistributedError(f"dist.init: already initialised with backend "
                               f"{_WORLD.backend!r}; call dist.shutdown() before changing it")
    info = launch_info()
    launched = info is not None and info.size > 1
    if custom:
        host = backend
    elif backend == "local":
        if launched:
            raise DistributedError(f"dist.init: backend 'local' is a world of one, but the "
                                   f"{info.launcher} launcher started {info.size} processes")
        host = LocalCommunicator()
    elif launched or backend == "mpi":
        comm_world = load_mpi().COMM_WORLD
        if info is not None and comm_world.Get_size() != info.size:
            raise DistributedError(
                f"dist.init: the {info.launcher} launcher's variables say {info.size} "
                f"processes, but MPI sees a world of {comm_world.Get_size()}: the launcher did "
                "not start an MPI job (torchrun-style launchers do not); start the processes "
                "with mpiexec -n N, or srun with an MPI plugin")
        host = MPICommunicator(comm_world)
    else:
        host = LocalCommunicator()
    group = Group(host, name, timeout_s, info)
    if group.size > 1:
        hosts = group.allgather_object(socket.gethostname(), "dist.init: host names")
        group.local_rank = hosts[:group.rank].count(hosts[group.rank])
        _install_hooks(group)
    _WORLD = group
    return group


def shutdown() -> None:
    """Leave the group (a later ``init`` makes a new one); uninstalls the abort hook."""
    global _WORLD, _PREV_HOOK
    g, _WORLD = _WORLD, None
    if g is None:
        return
    if _PREV_HOOK is not None and sys.excepthook is _abort_hook:
        sys.excepthook = _PREV_HOOK
    _PREV_HOOK = None
    if g.broken is None:
        g.close()


def _abort_hook(tp, value, tb) -> None:
    g = _WORLD
    try:
        sys.stdout.flush()
        note = ("" if g is None else f"autograd_gpu.distributed: rank {g.rank} of {g.size} "
                f"ended with an uncaught {tp.__name__}; aborting the job\n")
        if _PREV_HOOK is None or _PREV_HOOK is sys.__excepthook__:
            # one write: the launcher forwards a rank's output in the pieces it reads, and the
            # pieces still in its pipe when MPI_Abort tears the job down are lost (a traceback
            # printed line by line arrived cut after its first frame, 2026-12-07)
            sys.stderr.write("".join(traceback.format_exception(tp, value, tb)) + note)
        else:
            _PREV_HOOK(tp, value, tb)
            sys.stderr.write(note)
        sys.stderr.flush()
        if g is not None and g.size > 1:
            time.sleep(_ABORT_GRACE_S)
    finally:
        if g is not None:
            g.abort(1)


def _install_hooks(group: Group) -> None:
    global _PREV_HOOK
    if sys.excepthook is not _abort_hook:
        _PREV_HOOK = sys.excepthook
        sys.excepthook = _abort_hook
    atexit.register(_at_exit)


def _at_exit() -> None:
    """Before mpi4py's MPI_Finalize (which runs after every atexit function): a group broken
    by a timeout has collectives that will never complete, which MPI_Finalize would wait for,
    so the job is aborted instead; a sound group is closed (its arrival board's posted
    receives cancelled and its shared window freed: requests still pending at MPI_Finalize
    are erroneous)."""
    g = _WORLD
    if g is None:
        return
    if g.broken is not None:
        sys.stderr.flush()
        g.abort(1)
    else:
        shutdown()
