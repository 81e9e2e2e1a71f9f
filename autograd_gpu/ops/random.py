"""Counter-based randomness: dropout, and the seed stream random ops draw from.

A random op takes its seed as a parameter and derives every random number from (seed, position)
with a counter-based generator (Philox: NumPy's Philox-4x64 on the CPU; on a GPU the fused
Philox-4x32-10 kernel in kernels/dropout.cu, or cuRAND's Philox-4x32-10 when kernels are off).
Replaying a recorded op (checkpointing) therefore reproduces its numbers exactly, on the same
device. CPU and GPU masks for one seed differ (two different Philox variants).

Ops called without a seed take the next one from a process-wide stream that is itself counter
based: seed_i = splitmix64(key, i). The key is the "ops" stream of the library's one seed
(``ag.manual_seed``, see ``random_state.py``), which also rewinds the counter, so a program that
seeds once gets the same sequence of op seeds on every run. With ``operation_seeds=True`` each op
name has its own stream: seed = splitmix64(key(op), count(op)). ``set_global_seed`` is
``ag.manual_seed`` under its older name.
"""

from __future__ import annotations

import numbers
import threading

from .. import random_state
from ..dtypes import is_floating
from ..errors import ArgumentError, DTypeError, describe
from . import sampling as S
from ._util import as_tensor
from .registry import apply, defop, elementwise

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(key: int, i: int) -> int:
    """The i-th output of the splitmix64 sequence started at ``key`` (a 64-bit bijective mix)."""
    z = (key + (i + 1) * _GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class _SeedStream:
    """(key, counters) behind a lock: threads share one stream and never get the same seed."""

    def __init__(self):
        self.lock = threading.Lock()
        self.key = random_state.stream_key("ops")  # before manual_seed: differs per process
        self.counter = 0
        self.per_op: dict | None = None  # op name -> counter, with operation_seeds


_STREAM = _SeedStream()


def _check_seed(seed, fn: str, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= _M64:
        raise ArgumentError(f"{fn}: argument '{name}' expected an int in [0, 2**64), "
                            f"got {seed!r}")
    return int(seed)


def _op_key(key: int, op: str) -> int:
    """A key per op name, stable across processes (unlike hash(str))."""
    for b in op.encode():
        key = _splitmix64(key ^ b, 0)
    return key


def set_global_seed(seed: int, operation_seeds: bool = False) -> None:
    """``ag.manual_seed(seed, operation_seeds=...)`` under its older name: seeds every random
    draw of the library (random ops without an explicit seed, ``ag.nn`` layer initialisation,
    ``Tensor.randn``/``Tensor.rand`` without ``seed=``) and rewinds their streams.

    With ``operation_seeds=True`` each op name gets its own counter-based stream
    (seed, op name, call count), so adding a random op of one kind does not shift the seeds
    drawn by the others."""
    random_state.manual_seed(seed, operation_seeds=operation_seeds, _fn="set_global_seed")


def _reseed_stream(key: int, operation_seeds: bool) -> None:
    """Set the op seed stream's key and rewind its counters (called by ``manual_seed``)."""
    with _STREAM.lock:
        _STREAM.key, _STREAM.counter = key, 0
        _STREAM.per_op = {} if operation_seeds else None


def next_seed(op: str = "random") -> int:
    """The next op seed from the global stream: splitmix64(key, counter), counter += 1 (per op
    name when the stream was seeded with ``operation_seeds=True``)."""
    with _STREAM.lock:
        key, per_op = _STREAM.key, _STREAM.per_op
        if per_op is None:
            i = _STREAM.counter
            _STREAM.counter = i + 1
        else:
            i = per_op.get(op, 0)
            per_op[op] = i + 1
            key = _op_key(key, op)
    return _splitmix64(key, i)


def get_rng_state() -> tuple:
    """(key, counter, per-op counters or None) of the global seed stream, to save and restore."""
    with _STREAM.lock:
        per_op = None if _STREAM.per_op is None else dict(_STREAM.per_op)
        return (_STREAM.key, _STREAM.counter, per_op)


def set_rng_state(state) -> None:
    """Restore a state returned by ``get_rng_state``."""
    if not (isinstance(state, (tuple, list)) and len(state) == 3
            and (state[2] is None or isinstance(state[2], dict))):
        raise ArgumentError(f"set_rng_state: argument 'state' expected a state from "
                            f"get_rng_state(), got {state!r}")
    key = _check_seed(state[0], "set_rng_state", "state[0]")
    counter = _check_seed(state[1], "set_rng_state", "state[1]")
    per_op = None if state[2] is None else {
        str(k): _check_seed(v, "set_rng_state", "state[2]") for k, v in state[2].items()}
    with _STREAM.lock:
        _STREAM.key, _STREAM.counter, _STREAM.per_op = key, counter, per_op



def uniform_array(bk, seed: int, shape):
    """float32 array of U[0, 1) numbers, a pure function of (seed, shape, backend): the
    backend's counter-based Philox stream (NumpyBackend.uniform, CupyBackend.uniform)."""
    return bk.uniform(seed, shape)


@defop("dropout", params=("p", "seed"), cost=elementwise(3), saves=(None,))
class Dropout:
    """y = x * m, m = [u >= p] / (1 - p) with u = Philox(seed)[position] ~ U[0, 1): inverted
    dropout, E[y] = x. The mask m is a saved constant."""

    def batch(F, args, dims, *, p, seed):
        """randomness="different": one draw over the whole batch (independent per example);
        "same": one example's mask, shared by every example; "error" raises."""
        x = F.to_front(args[0], dims[0])
        if F.random_mode("dropout") == "different":
            return F.apply(Dropout, x, p=p, seed=seed), 0
        ones = x[0] * 0.0 + 1.0
        return x * F.apply(Dropout, ones, p=p, seed=seed), 0

    def forward(bk, x, *, p, seed):
        m = bk.dropout_mask(x.shape, p, seed, x.dtype)  # (GPU: the fused Philox4x32-10 kernel)
        return x * m, (m,)

    def vjp(F, g, saved, needs, *, p, seed):
        return (g * saved[0],)

    def jvp(F, ts, saved, *, p, seed):
        return ts[0] * saved[0]

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        x = draw(S.arrays(draw(S.shapes())))
        p = draw(st.sampled_from([0.1, 0.5, 0.8]))
        return (x,), {"p": p, "seed": draw(st.integers(0, 2**64 - 1))}


def dropout(x, p: float = 0.5, training: bool = True, seed: int | None = None):
    """Inverted dropout: y = x * [u >= p] / (1 - p), u ~ U[0, 1) from a counter-based generator
    keyed by ``seed`` (drawn from the global stream, ``next_seed()``, when None). The same seed
    gives the same mask on one device, so replaying the op reproduces it. ``training=False`` or
    p == 0 returns x unchanged."""
    op = "dropout"
    x = as_tensor(x, None, "x", op)
    if not hasattr(x, "_bk"):
        raise ArgumentError(f"{op}: argument 'x' expected a Tensor, got {describe(x)}")
    if not is_floating(x.dtype):
        raise DTypeError(f"{op}: argument 'x' expected a floating dtype, got {x.dtype}")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise ArgumentError(f"{op}: argument 'p' expected a number in [0, 1), got {p!r}")
    if not training or p == 0:
        return x
    seed = next_seed(op) if seed is None else _check_seed(seed, op)
    return apply(Dropout, x, p=float(p), seed=seed)


__all__ = ["dropout", "set_global_seed", "next_seed", "get_rng_state", "set_rng_state"]
