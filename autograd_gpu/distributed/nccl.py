"""NCCL through CuPy (``cupy.cuda.nccl``) for device arrays.

Every collective runs on the communicator's own side stream: the side stream first waits for
the caller's current stream (whatever produced the buffer), the NCCL call is enqueued there,
and an event recorded after it marks completion. A consumer on the current stream waits for
that event on the device (``enqueue_wait``): the host never blocks, and computation enqueued
after the collective's launch overlaps it. The group's watchdog thread polls the events against
the deadline (the host thread may be blocked inside CUDA when a peer stalls).

NCCL refuses two ranks on one GPU, so one GPU runs only a world of one; the unique id that lets
the ranks find each other is made by rank 0 and sent to the others by the group (over MPI).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .comm import Communicator, DistributedError, Work

__all__ = ["NCCLCommunicator", "nccl_status", "NCCL_DTYPES"]

# NCCL's ncclDataType_t and ncclRedOp_t (nccl.h; the same numbers as cupy.cuda.nccl's)
NCCL_DTYPES = {
    np.dtype(np.int8): 0, np.dtype(np.uint8): 1, np.dtype(np.int32): 2,
    np.dtype(np.uint32): 3, np.dtype(np.int64): 4, np.dtype(np.uint64): 5,
    np.dtype(np.float16): 6, np.dtype(np.float32): 7, np.dtype(np.float64): 8,
    np.dtype(_dt.bfloat16): 9,
}
_UINT8 = 1
NCCL_OPS = {"sum": 0, "max": 2, "min": 3}


def nccl_status() -> tuple[bool, str]:
    """(usable, reason): CuPy imports, a GPU is usable and CuPy was built with NCCL."""
    try:
        import cupy  # optional dependency (cupy)
        from cupy.cuda import nccl  # optional dependency (cupy)
    except Exception as exc:  # ImportError, or CuPy's own errors without a driver
        return False, f"cupy.cuda.nccl does not import ({type(exc).__name__}: {exc})"
    if not getattr(nccl, "available", False):
        return False, ("CuPy has no NCCL (install the NCCL library that matches CuPy's CUDA: "
                       "pip install nvidia-nccl-cu13 for cupy-cuda13x, nvidia-nccl-cu12 for "
                       "cupy-cuda12x)")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False, "no CUDA device"
    except Exception as exc:
        return False, f"no usable CUDA device ({exc})"
    return True, "ok"


def _comm_id(unique_id):
    """The unique id in the type NcclCommunicator takes: CuPy 14's get_unique_id returns the 128
    bytes of ncclUniqueId and its NcclCommunicator accepts only bytes (a tuple raises TypeError);
    CuPy 13 and older returned and took a tuple of ints. The id travels pickled from rank 0, so
    it arrives as the type this CuPy made; a bytearray or memoryview is taken as bytes."""
    if isinstance(unique_id, (bytes, bytearray, memoryview)):
        return bytes(unique_id)
    return tuple(unique_id)


class _NcclWork(Work):
    """An NCCL call enqueued on the side stream; ``event`` is recorded after it. ``keep`` holds
    the buffers until the event has passed (CuPy's pool must not hand them out before)."""

    def __init__(self, event, keep):
        super().__init__()
        self._event = event
        self._keep = keep

    def test(self) -> bool:
        if not self.done and self._event.done:
            self.done = True
            self._keep = None
        return self.done

    def on_device_stream(self) -> bool:
        return True

    def enqueue_wait(self) -> None:
        import cupy  # optional dependency (cupy)

        cupy.cuda.get_current_stream().wait_event(self._event)


class NCCLCommunicator(Communicator):
    """One NCCL communicator for this process's GPU ``device`` (an int)."""

    name = "nccl"

    def __init__(self, unique_id: bytes | tuple, rank: int, size: int, device: int, cupy=None,
                 nccl=None):
        if cupy is None:
            import cupy  # optional dependency (cupy)
            from cupy.cuda import nccl  # optional dependency (cupy)
        self.cp = cupy
        self.nccl = nccl
        self.rank = rank
        self.size = size
        self.device = device
        with cupy.cuda.Device(device):
            try:
                self._comm = nccl.NcclCommunicator(size, _comm_id(unique_id), rank)
            except Exception as exc:
                raise DistributedError(
                    f"NCCL: creating the communicator for rank {rank} of {size} on cuda:{device} "
                    f"failed ({type(exc).__name__}: {exc}); NCCL needs one GPU per rank") from None
            self.stream = cupy.cuda.Stream(non_blocking=True)

    def supports(self, array) -> bool:
        dev = getattr(array, "device", None)
        return dev is not None and getattr(dev, "id", None) == self.device

    # ---- stream ordering ---------------------------------------------------------------------
    def _begin(self) -> None:
        self.stream.wait_event(self.cp.cuda.get_current_stream().record())

    def _end(self, keep) -> _NcclWork:
        return _NcclWork(self.stream.record(), keep)

    @staticmethod
    def _dtype(buf) -> int:
        code = NCCL_DTYPES.get(np.dtype(buf.dtype))
        if code is None:
            raise DistributedError(f"NCCL: no reduction for dtype {buf.dtype}")
        return code

    # ---- collectives -------------------------------------------------------------------------
    def allreduce(self, buf, op: str) -> Work:
        if buf.dtype == np.bool_:
            buf = buf.view(np.uint8)
        dt = self._dtype(buf)
        self._begin()
        ptr = buf.data.ptr
        self._comm.allReduce(ptr, ptr, buf.size, dt, NCCL_OPS[op], self.stream.ptr)
        return self._end(buf)

    def broadcast(self, buf, root: int) -> Work:
        self._begin()
        ptr = buf.data.ptr
        self._comm.broadcast(ptr, ptr, buf.nbytes, _UINT8, root, self.stream.ptr)
        return self._end(buf)

    def allgather(self, send, recv) -> Work:
        self._begin()
        self._comm.allGather(send.data.ptr, recv.data.ptr, send.nbytes, _UINT8, self.stream.ptr)
        return self._end((send, recv))

    def _alltoall_enqueue(self, send, recv) -> None:
        n = send.nbytes // self.size
        s0, r0 = send.data.ptr, recv.data.ptr
        self.nccl.groupStart()
        try:
            for p in range(self.size):
                self._comm.send(s0 + p * n, n, _UINT8, p, self.stream.ptr)
                self._comm.recv(r0 + p * n, n, _UINT8, p, self.stream.ptr)
        finally:
            self.nccl.groupEnd()

    def alltoall(self, send, recv) -> Work:
        self._begin()
        self._alltoall_enqueue(send, recv)
        return self._end((send, recv))

    def barrier(self) -> Work:
        with self.cp.cuda.Device(self.device):
            one = self.cp.zeros(1, dtype=self.cp.int32)
        return self.allreduce(one, "sum")

    def fixed_sum(self, flat) -> Work:
        """Sum in rank order, everything enqueued on the side stream: the alltoall (grouped
        sends and receives), the additions in rank order, the allgather."""
        cp = self.cp
        chunks = flat.reshape(self.size, -1)
        self._begin()
        with self.stream:
            recv = cp.empty_like(chunks)
            self._alltoall_enqueue(chunks, recv)
            acc = recv[0].copy()
            for r in range(1, self.size):
                cp.add(acc, recv[r], out=acc)
        self._comm.allGather(acc.data.ptr, chunks.data.ptr, acc.nbytes, _UINT8, self.stream.ptr)
        return self._end((flat, recv, acc))

    def abort(self, code: int = 1) -> None:
        try:
            self._comm.abort()
        except Exception:
            pass

    def close(self) -> None:
        try:
            self._comm.destroy()
        except Exception:
            pass
