"""One seed for every random draw of the library: ``ag.manual_seed(n)``.

Each purpose that draws random numbers has its own stream, derived from the one root seed with
NumPy's ``SeedSequence(root, spawn_key=(k,))``, ``k`` a fixed number per purpose (the CRC-32 of
its name). So the draws of one purpose never shift those of another (building one more layer does
not change the next dropout mask), and a program that calls ``manual_seed(n)`` once gets the same
numbers on every run. The purposes:

* ``"ops"``: the key of the counter-based seed stream that random ops (dropout) called without
  ``seed=`` take their seeds from (``ops/random.py``; its per-op-name streams hang off this key),
* ``"nn.init"``: ``ag.nn`` layers built without ``seed=``,
* ``"Tensor.randn"`` and ``"Tensor.rand"``: those factories called without ``seed=``,
* ``"data.DataLoader"``: the seed of a shuffling ``ag.data.DataLoader`` made without ``seed=``.

Before any ``manual_seed`` call the root is fresh OS entropy (different in every process).
``ag.set_global_seed`` and ``ag.nn.manual_seed`` are the same call under their older names.
"""

from __future__ import annotations

import numbers
import threading
import zlib

import numpy as np

from .errors import ArgumentError

_SEED_LIMIT = 1 << 64

_LOCK = threading.Lock()
# the root: an int (manual_seed's argument, or 128 bits of OS entropy before any call)
_ROOT: int = int(np.random.SeedSequence().entropy)
_GENERATORS: dict = {}  # purpose -> np.random.Generator, made on first use after each seeding


def _purpose_key(purpose: str) -> int:
    """A number per purpose, the same in every process (unlike hash(str))."""
    return zlib.crc32(purpose.encode())


def _sequence(root: int, purpose: str) -> np.random.SeedSequence:
    return np.random.SeedSequence(root, spawn_key=(_purpose_key(purpose),))


def check_seed(seed, fn: str, name: str = "seed") -> int:
    """``seed`` as an int in [0, 2**64), or an ArgumentError naming ``fn`` and the argument."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= seed < _SEED_LIMIT:
        raise ArgumentError(f"{fn}: argument '{name}' expected an int in [0, 2**64), "
                            f"got {seed!r}")
    return int(seed)


def generator(purpose: str) -> np.random.Generator:
    """The library's generator for ``purpose``: derived from the root seed, created on first
    use and shared by every caller of that purpose until the next ``manual_seed``. NumPy's
    Generator locks its bit generator per call, so threads may draw from it at once."""
    with _LOCK:
        gen = _GENERATORS.get(purpose)
        if gen is None:
            gen = np.random.Generator(np.random.PCG64(_sequence(_ROOT, purpose)))
            _GENERATORS[purpose] = gen
        return gen


def stream_key(purpose: str) -> int:
    """A 64-bit key for ``purpose`` derived from the root seed (for counter-based streams)."""
    with _LOCK:
        root = _ROOT
    return int(_sequence(root, purpose).generate_state(1, np.uint64)[0])


def derived_seed(seed: int, i: int) -> int:
    """The ``i``-th 64-bit seed derived from ``seed`` (distinct streams for distinct (seed, i),
    unlike arithmetic such as seed * k + i, which collides and leaves [0, 2**64))."""
    return int(np.random.SeedSequence(seed, spawn_key=(i,)).generate_state(1, np.uint64)[0])


def manual_seed(seed: int, *, operation_seeds: bool = False, _fn: str = "manual_seed") -> None:
    """Seed every random draw of the library with one int in [0, 2**64): random ops called
    without ``seed=`` (dropout), ``ag.nn`` layer initialisation, ``Tensor.randn`` /
    ``Tensor.rand`` and the order of a shuffling ``DataLoader`` without ``seed=``. Each of
    these draws from its own stream derived from ``seed`` (see the module docstring), rewound
    by every call.

    With ``operation_seeds=True`` each random op name gets its own seed stream as well
    (seed, op name, call count), so adding a random op of one kind does not shift the seeds
    drawn by the others. ``ag.set_global_seed`` and ``ag.nn.manual_seed`` are this call.

    NumPy's and CuPy's own global generators are not touched (``ag.DeterministicConfig`` with a
    ``global_seed`` seeds those too)."""
    global _ROOT
    seed = check_seed(seed, _fn)
    with _LOCK:
        _ROOT = seed
        _GENERATORS.clear()
    from .ops import random as _ops_random  # imports this module: resolved at call time

    _ops_random._reseed_stream(stream_key("ops"), bool(operation_seeds))


__all__ = ["manual_seed", "generator", "stream_key", "check_seed", "derived_seed"]
