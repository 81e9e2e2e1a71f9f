"""BLAS threads on the CPU: ``with ag.blas_threads(1): ...``.

NumPy's matmul calls a BLAS library (OpenBLAS in NumPy's wheels) that starts one thread per core
by default. For the small matrices of a typical autograd_gpu CPU step, starting and waking those
threads costs more than they save, badly so on a machine whose cores are busy with other work.
Measured on a shared 2-core VM on 2026-12-07 (OpenBLAS 0.3.31, NumPy 2.4): a training step of a
3-layer MLP (width 256, batch 256, float32, AdamW) took a median 240 ms with OpenBLAS's default
2 threads against 16-18 ms with one, while other jobs kept the cores busy; with two busy loops
added, 47-51 ms against 11-12 ms. Large matrices on an idle machine do gain from more threads,
so the library never changes the setting by itself; this context manager (through
threadpoolctl, which finds the BLAS libraries loaded in the process) is the switch, and the
demo, the examples and ``python -m autograd_gpu.bench`` use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from threadpoolctl import threadpool_info, threadpool_limits

from .errors import ArgumentError

__all__ = ["blas_threads", "blas_info"]


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[list[dict]]:
    """Limit every BLAS library loaded in this process to ``n`` threads inside the block and
    restore the previous limits after it. ``None`` leaves the limits alone (a no-op block, so
    that a command-line option can pass its value straight through). Yields what
    threadpoolctl reports for the BLAS libraries inside the block (library, version,
    num_threads).

    The limit is process-wide: it affects every thread's BLAS calls, not only this one's."""
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ArgumentError(f"blas_threads: argument 'n' expected an int >= 1 or None, got {n!r}")
    if n is None:
        yield blas_info(threadpool_info())
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield blas_info(threadpool_info())


def blas_info(info: list[dict] | None = None) -> list[dict]:
    """The BLAS libraries loaded in this process: ``[{"library", "version", "num_threads"}]``
    (NumPy's OpenBLAS, and MKL or others when something else loaded them)."""
    if info is None:
        info = threadpool_info()
    return [{"library": d.get("internal_api"), "version": d.get("version"),
             "num_threads": d.get("num_threads")} for d in info if d.get("user_api") == "blas"]
