"""One seed, ``ag.manual_seed(n)``, for every random draw of the library: dropout (random ops
without ``seed=``), ``ag.nn`` layer initialisation, ``Tensor.randn``/``Tensor.rand`` and a
shuffling ``DataLoader`` without ``seed=``; the older names ``ag.set_global_seed`` and
``ag.nn.manual_seed`` are the same call."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu import nn, random_state
from autograd_gpu.ops import random as R


@pytest.fixture(autouse=True)
def _restore_op_stream():
    state = R.get_rng_state()
    yield
    R.set_rng_state(state)


def _draws():
    """One draw from every random source of the library, as host arrays."""
    x = ag.Tensor.ones((6, 7), dtype="float64")
    return {
        "dropout": ag.dropout(x, 0.5).numpy(),
        "nn.Dropout": nn.Dropout(0.3)(x).numpy(),
        "Linear": nn.Linear(5, 4).weight.numpy(),
        "Conv2d": nn.Conv2d(2, 3, 3).weight.numpy(),
        "Embedding": nn.Embedding(7, 3).weight.numpy(),
        "randn": ag.Tensor.randn((3, 4)).numpy(),
        "rand": ag.Tensor.rand((3, 4), dtype="float64").numpy(),
        "DataLoader": np.concatenate([b.numpy() for (b,) in ag.data.DataLoader(
            ag.data.ArrayDataset(np.arange(20.0)), batch_size=5, shuffle=True,
            device="cpu")]),
    }


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("seed_fn", [ag.manual_seed, ag.set_global_seed, nn.manual_seed],
                         ids=["manual_seed", "set_global_seed", "nn.manual_seed"])
def test_one_seed_repeats_every_source(seed_fn):
    seed_fn(1234)
    first = _draws()
    second = _draws()  # the streams advance: a second round differs from the first
    for k in first:
        assert not np.array_equal(first[k], second[k]), k
    seed_fn(1234)
    _assert_same(_draws(), first)
    _assert_same(_draws(), second)


def test_aliases_are_the_same_call():
    ag.manual_seed(77)
    a = _draws()
    ag.set_global_seed(77)
    _assert_same(_draws(), a)
    nn.manual_seed(77)
    _assert_same(_draws(), a)
    assert ag.manual_seed is random_state.manual_seed


def test_different_seeds_differ_in_every_source():
    ag.manual_seed(1)
    a = _draws()
    ag.manual_seed(2)
    b = _draws()
    for k in a:
        assert not np.array_equal(a[k], b[k]), k


def test_sources_have_their_own_streams():
    """Drawing from one source does not shift another's numbers (per-purpose streams)."""
    ag.manual_seed(5)
    w = nn.Linear(5, 4).weight.numpy()
    r = ag.Tensor.randn((3,)).numpy()
    ag.manual_seed(5)
    ag.Tensor.randn((1000,))  # many draws from randn and rand first
    ag.Tensor.rand((1000,))
    ag.dropout(ag.Tensor.ones((50,)), 0.5)
    np.testing.assert_array_equal(nn.Linear(5, 4).weight.numpy(), w)
    ag.manual_seed(5)
    nn.Linear(50, 50)  # layer draws do not shift randn
    np.testing.assert_array_equal(ag.Tensor.randn((3,)).numpy(), r)


def test_explicit_seeds_unchanged_and_independent_of_the_global_seed():
    a = ag.Tensor.randn((4,), seed=3).numpy()
    np.testing.assert_array_equal(a, np.random.default_rng(3).standard_normal(4)
                                  .astype(np.float32))
    ag.manual_seed(9)
    np.testing.assert_array_equal(ag.Tensor.randn((4,), seed=3).numpy(), a)
    w = nn.Linear(3, 2, seed=4).weight.numpy()
    ag.manual_seed(10)
    np.testing.assert_array_equal(nn.Linear(3, 2, seed=4).weight.numpy(), w)


def test_operation_seeds_keyword():
    ag.manual_seed(3, operation_seeds=True)
    d = R.next_seed("dropout")
    ag.manual_seed(3, operation_seeds=True)
    R.next_seed("other")
    assert R.next_seed("dropout") == d
    ag.set_global_seed(3, operation_seeds=True)
    assert R.next_seed("dropout") == d


def test_seeded_dropout_layer_masks():
    x = ag.Tensor.ones((8, 8), dtype="float64")
    a, b = nn.Dropout(0.5, seed=2**64 - 1), nn.Dropout(0.5, seed=2**64 - 1)
    m1, m2 = a(x).numpy(), a(x).numpy()
    assert not np.array_equal(m1, m2)  # a new mask per call
    np.testing.assert_array_equal(b(x).numpy(), m1)  # the same sequence for the same seed
    np.testing.assert_array_equal(b(x).numpy(), m2)
    # seeds were derived as seed * 1_000_003 + call: (0, 1_000_003) collided with (1, 0) and
    # large seeds left [0, 2**64); SeedSequence keys them apart
    assert random_state.derived_seed(0, 1_000_003) != random_state.derived_seed(1, 0)
    with pytest.raises(ag.ArgumentError, match="Dropout.*seed"):
        nn.Dropout(0.5, seed=-1)


@pytest.mark.parametrize("fn, name", [(ag.manual_seed, "manual_seed"),
                                      (ag.set_global_seed, "set_global_seed"),
                                      (nn.manual_seed, "nn.manual_seed")])
@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "7", True, None])
def test_bad_seeds_refused_by_name(fn, name, bad):
    with pytest.raises(ag.ArgumentError, match=f"{name}: argument 'seed'"):
        fn(bad)


def test_tensor_seed_argument_validated():
    with pytest.raises(ag.ArgumentError, match="Tensor.randn"):
        ag.Tensor.randn((2,), seed=-1)
    with pytest.raises(ag.ArgumentError, match="Tensor.rand"):
        ag.Tensor.rand((2,), seed=True)


def test_threads_draw_distinct_numbers_from_the_shared_stream():
    ag.manual_seed(0)
    out = []

    def work():
        out.append(ag.Tensor.randn((1000,), dtype="float64").numpy())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = np.concatenate(out)
    assert len(np.unique(flat)) == flat.size  # no two threads got the same numbers
    ag.manual_seed(0)
    serial = np.concatenate([ag.Tensor.randn((1000,), dtype="float64").numpy()
                             for _ in range(4)])
    np.testing.assert_array_equal(np.sort(flat), np.sort(serial))


def test_deterministic_config_seeds_everything():
    cfg = ag.DeterministicConfig(mode="warn", global_seed=21, operation_seeds=False)
    cfg.apply()
    a = _draws()
    ag.manual_seed(21)
    _assert_same(_draws(), a)
