"""The host memory pool (autograd_gpu/_hostpool.c, backend/host_pool.py): large NumPy blocks
freed by one reverse sweep are reused by the next, exactly-sized, within a byte limit; small
arrays and everything outside a sweep keep NumPy's own allocator."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.backend.host_pool import POOL, HostMemoryPool

pytestmark = pytest.mark.skipif(not POOL.available,
                                reason="autograd_gpu._hostpool not compiled here")

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # numpy < 2 spelling (not supported by the package, kept for clarity)
    from numpy.core.multiarray import get_handler_name

BIG = 1 << 20  # bytes: above the pool's 256 KiB floor
N32 = BIG // 4  # float32 elements in BIG bytes


@pytest.fixture
def pool():
    """The process's pool, emptied and at its default limit before and after."""
    limit = POOL.limit_bytes
    POOL.free_all_blocks()
    POOL.set_limit(64 << 20)
    yield POOL
    POOL.set_limit(limit)
    POOL.free_all_blocks()


def _in_pool(fn):
    token = POOL.enter()
    try:
        return fn()
    finally:
        POOL.leave(token)


def test_a_freed_large_block_serves_the_next_request_of_its_size(pool):
    a = _in_pool(lambda: np.empty(N32, np.float32))
    assert get_handler_name(a) == "autograd_gpu_host_pool"
    addr = a.ctypes.data
    del a
    assert pool.stats()["cached_blocks"] == 1
    hits = pool.stats()["hits"]
    b = _in_pool(lambda: np.empty(N32, np.float32))
    assert b.ctypes.data == addr and pool.stats()["hits"] == hits + 1
    c = _in_pool(lambda: np.empty(N32 + 1, np.float32))  # another size: a fresh block
    assert c.ctypes.data != addr
    assert pool.stats()["cached_blocks"] == 0


def test_zeros_from_a_reused_block_are_zero(pool):
    a = _in_pool(lambda: np.empty(N32, np.float32))
    a[:] = 7.0
    addr = a.ctypes.data
    del a
    z = _in_pool(lambda: np.zeros(N32, np.float32))  # calloc through the pool
    assert z.ctypes.data == addr
    assert not z.any()


def test_small_arrays_and_arrays_made_outside_keep_numpys_allocator(pool):
    small = _in_pool(lambda: np.empty(1000, np.float32))
    outside = np.empty(N32, np.float32)
    assert get_handler_name(outside) == "default_allocator"
    del small, outside
    assert pool.stats()["cached_blocks"] == 0
    assert get_handler_name() == "default_allocator"  # enter/leave restored the default


def test_a_block_returns_to_the_pool_wherever_its_array_dies(pool):
    arrays = [_in_pool(lambda: np.empty(N32, np.float32)) for _ in range(3)]
    assert pool.cached_bytes() == 0
    done = threading.Event()

    def drop():
        arrays.clear()  # freed on another thread, outside any sweep
        done.set()

    threading.Thread(target=drop).start()
    done.wait(5)
    assert pool.stats()["cached_blocks"] == 3 and pool.cached_bytes() == 3 * BIG


def test_the_limit_bounds_what_is_kept_and_evicts_the_oldest_first(pool):
    pool.set_limit(3 * BIG)
    a0, a1, a2 = (_in_pool(lambda n=n: np.empty(N32 + n, np.float32)) for n in range(3))
    addrs = [a.ctypes.data for a in (a0, a1, a2)]
    del a0, a1
    del a2  # 3 MiB + 12 bytes would exceed the limit: a0's block, the oldest, is evicted
    assert pool.stats()["cached_blocks"] == 2
    assert pool.cached_bytes() == 2 * BIG + 12
    assert _in_pool(lambda: np.empty(N32 + 2, np.float32)).ctypes.data == addrs[2]
    assert _in_pool(lambda: np.empty(N32 + 1, np.float32)).ctypes.data == addrs[1]
    hits = pool.stats()["hits"]
    _in_pool(lambda: np.empty(N32, np.float32))  # a0's size: evicted, so a miss
    assert pool.stats()["hits"] == hits
    too_big = _in_pool(lambda: np.empty(4 * N32, np.float32))
    del too_big  # larger than the whole limit: freed, not kept
    assert pool.cached_bytes() <= 3 * BIG
    pool.set_limit(0)  # off: evicts everything, and sweeps no longer enter it
    assert pool.cached_bytes() == 0 and not pool.enabled and pool.enter() is None


def test_free_all_blocks_returns_the_bytes(pool):
    arrays = [_in_pool(lambda: np.empty(N32, np.float32)) for _ in range(2)]
    arrays.clear()
    assert pool.free_all_blocks() == 2 * BIG
    assert pool.stats()["cached_blocks"] == 0 and pool.cached_bytes() == 0


def test_tracemalloc_sees_arrays_from_the_pool_and_not_its_cache(pool):
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        a = _in_pool(lambda: np.empty(N32, np.float32))
        assert tracemalloc.get_traced_memory()[0] - base >= BIG
        del a
        assert tracemalloc.get_traced_memory()[0] - base < BIG // 8
        assert pool.cached_bytes() == BIG
    finally:
        tracemalloc.stop()


def _mlp_step(params, x, y):
    with ag.GradientTape() as tape:
        h = x
        for i in range(0, len(params), 2):
            h = ag.relu(h @ params[i] + params[i + 1])
        loss = ((h - y) ** 2).mean()
    return tape.gradient(loss, params)


def test_sweeps_reuse_blocks_and_give_the_same_gradients_as_without_the_pool(pool):
    rng = np.random.default_rng(0)
    x = ag.Tensor.from_array(rng.standard_normal((256, 512)))
    y = ag.Tensor.from_array(rng.standard_normal((256, 512)))
    params = [ag.Variable(rng.standard_normal(s) / 20) for s in [(512, 512), (512,)] * 2]
    pool.set_limit(0)
    ref = [g.numpy() for g in _mlp_step(params, x, y)]
    pool.set_limit(64 << 20)
    for _ in range(3):
        grads = _mlp_step(params, x, y)
        for g, r in zip(grads, ref):
            np.testing.assert_array_equal(g.numpy(), r)
        del grads
    s = pool.stats()
    assert s["hits"] > 0 and 0 < s["cached_bytes"] <= 64 << 20
    assert get_handler_name() == "default_allocator"  # the sweep left the default in place


def test_the_sweep_restores_the_allocator_when_a_rule_raises(pool):
    seen = []

    def vjp(g, inputs, output):
        seen.append(get_handler_name())
        raise RuntimeError("rule failed")

    boom = ag.custom_op(lambda xp, a: a * 1.0, vjp, name="boom_in_pool")
    x = ag.Variable(np.ones(4))
    with ag.GradientTape() as tape:
        y = boom(x)
    with pytest.raises(RuntimeError, match="rule failed"):
        tape.gradient(y, [x])
    assert seen == ["autograd_gpu_host_pool"]
    assert get_handler_name() == "default_allocator"


def test_threads_allocating_and_freeing_concurrently(pool):
    errors = []

    def work(seed):
        try:
            rng = np.random.default_rng(seed)
            for _ in range(200):
                n = N32 + int(rng.integers(0, 4))
                a = _in_pool(lambda n=n: np.full(n, seed, np.float32))
                assert a[0] == seed and a[-1] == seed
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s = pool.stats()
    assert s["cached_blocks"] <= s["max_blocks"] and s["cached_bytes"] <= s["limit_bytes"]


def test_set_limit_rejects_bad_values():
    with pytest.raises(ag.ArgumentError, match="set_limit.*nbytes.*int >= 0.*-1"):
        POOL.set_limit(-1)
    with pytest.raises(ag.ArgumentError, match="nbytes"):
        POOL.set_limit(1.5)


def _run(env_value, code, cwd):
    """``python -c code`` from ``cwd`` (not the checkout: ``-c`` puts the working directory first
    on sys.path, and a checkout's source tree has no compiled extension in CI)."""
    env = dict(os.environ, AUTOGRAD_GPU_HOST_POOL_MB=env_value)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=cwd)


def test_the_environment_sets_the_limit_or_turns_the_pool_off(tmp_path):
    code = "import autograd_gpu as ag; p = ag.host_memory_pool(); print(p.enabled, p.limit_bytes)"
    assert _run("0", code, tmp_path).stdout.split() == ["False", "0"]
    assert _run("8", code, tmp_path).stdout.split() == ["True", str(8 << 20)]
    bad = _run("lots", code, tmp_path)
    assert bad.returncode != 0
    assert "AUTOGRAD_GPU_HOST_POOL_MB" in bad.stderr and "'lots'" in bad.stderr


def test_repr_and_stats_without_the_extension():
    p = HostMemoryPool.__new__(HostMemoryPool)
    p._ext, p._limit = None, 1 << 20
    assert not p.available and not p.enabled and p.enter() is None
    assert p.cached_bytes() == 0 and p.free_all_blocks() == 0
    assert "not compiled" in repr(p)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_can_use_the_pool(pool):
    """The child gets a fresh lock (a parent's thread may have held the old one at the fork)."""
    arrays = [_in_pool(lambda: np.empty(N32, np.float32)) for _ in range(2)]
    arrays.clear()
    pid = os.fork()
    if pid == 0:  # the child: allocate from and free into the inherited cache, then leave
        ok = 0
        try:
            a = _in_pool(lambda: np.full(N32, 3.0, np.float32))
            ok = int(a[0] == 3.0 and POOL.stats()["hits"] > 0)
            del a
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
