"""The host memory pool: large NumPy blocks freed by one training step, kept for the next.

A step frees the previous step's gradients and activations and allocates the same sizes again;
glibc hands freed memory at the top of its heap back to the kernel, and every page written
afterwards costs a page fault (see autograd_gpu/_hostpool.c for the measurement). The pool keeps
blocks of 256 KiB and more, up to a byte limit, and serves requests of exactly the same size
from them, as CuPy's pool does on the GPU.

It is active during the tape's reverse sweep on the NumPy backend (``GradientTape.gradient`` and
everything built on it), so gradients and recomputed activations are allocated from it and
return to it when they die, wherever that is. It needs the compiled extension
(``autograd_gpu._hostpool``); without it, or with ``AUTOGRAD_GPU_HOST_POOL_MB=0``, the sweep
allocates as NumPy does by default. ``AUTOGRAD_GPU_HOST_POOL_MB`` sets the limit (default 256).
"""

from __future__ import annotations

import contextlib
import os

from ..errors import ArgumentError

__all__ = ["ENV", "DEFAULT_LIMIT_MB", "HostMemoryPool", "POOL", "host_memory_pool"]

ENV = "AUTOGRAD_GPU_HOST_POOL_MB"
DEFAULT_LIMIT_MB = 256
_MB = 1 << 20


def _limit_from_env() -> int:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_LIMIT_MB * _MB
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise ArgumentError(
            f"host memory pool: environment variable {ENV} expected a number of MiB >= 0, "
            f"got {raw!r}"
        )
    return int(mb * _MB)


def _load():
    try:
        from .. import _hostpool  # optional: the compiled extension may be absent
    except ImportError:  # built without a C compiler: NumPy's allocator throughout
        return None
    if hasattr(os, "register_at_fork"):  # the cache's lock may be held by a parent's thread
        os.register_at_fork(after_in_child=_hostpool.after_fork_child)
    return _hostpool


class HostMemoryPool:
    """The process's pool of large host blocks (one per process; ``ag.host_memory_pool()``)."""

    def __init__(self):
        self._ext = _load()
        self._limit = _limit_from_env()
        if self._ext is not None:
            self._ext.set_limit(self._limit)

    @property
    def available(self) -> bool:
        """True when the compiled extension is present."""
        return self._ext is not None

    @property
    def enabled(self) -> bool:
        """True when sweeps allocate from the pool (extension present and limit > 0)."""
        return self._ext is not None and self._limit > 0

    @property
    def limit_bytes(self) -> int:
        return self._limit

    def set_limit(self, nbytes: int) -> None:
        """Keep at most ``nbytes`` of freed blocks (0 turns the pool off); evicts down to it."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ArgumentError(
                f"HostMemoryPool.set_limit: argument 'nbytes' expected an int >= 0, got {nbytes!r}"
            )
        self._limit = nbytes
        if self._ext is not None:
            self._ext.set_limit(nbytes)

    def stats(self) -> dict:
        """cached_bytes, cached_blocks, limit_bytes, min_block_bytes, max_blocks, hits, misses
        (all zero without the extension)."""
        if self._ext is None:
            return {"cached_bytes": 0, "cached_blocks": 0, "limit_bytes": self._limit,
                    "min_block_bytes": 0, "max_blocks": 0, "hits": 0, "misses": 0}
        return self._ext.stats()

    def cached_bytes(self) -> int:
        """Bytes of freed blocks the pool holds (not counted by tracemalloc)."""
        return self.stats()["cached_bytes"]

    def free_all_blocks(self) -> int:
        """Return every cached block to the system allocator; the bytes freed."""
        return self._ext.release() if self._ext is not None else 0

    def enter(self):
        """Make the pool this thread's NumPy allocator; returns what ``leave`` needs, or None
        when the pool is off (then ``leave`` is not needed)."""
        if self._limit and self._ext is not None:
            return self._ext.activate()
        return None

    def leave(self, token) -> None:
        if token is not None:
            self._ext.restore(token)

    @contextlib.contextmanager
    def scope(self):
        """The pool as this thread's NumPy allocator inside the block (enter/leave)."""
        token = self.enter()
        try:
            yield
        finally:
            self.leave(token)

    def __repr__(self) -> str:
        s = self.stats()
        state = "on" if self.enabled else ("off" if self.available else "not compiled")
        return (f"HostMemoryPool({state}, {s['cached_bytes'] / _MB:.1f} of "
                f"{self._limit / _MB:.0f} MiB cached in {s['cached_blocks']} blocks, "
                f"{s['hits']} hits, {s['misses']} misses)")


POOL = HostMemoryPool()


def host_memory_pool() -> HostMemoryPool:
    """The host memory pool (see the module docstring)."""
    return POOL
