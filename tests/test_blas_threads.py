"""ag.blas_threads: limits NumPy's BLAS threads inside a block and restores them after."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure NumPy's BLAS is loaded
    return [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]


def test_limits_and_restores():
    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library that threadpoolctl can see")
    with ag.blas_threads(1) as info:
        assert _blas_threads() == [1] * len(before)
        assert info and all(d["num_threads"] == 1 for d in info)
        assert {"library", "version", "num_threads"} <= set(info[0])
    assert _blas_threads() == before


def test_none_leaves_the_setting_alone():
    before = _blas_threads()
    with ag.blas_threads(None) as info:
        assert _blas_threads() == before
        assert [d["num_threads"] for d in info] == before


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_count_raises(bad):
    with pytest.raises(ag.ArgumentError, match=r"blas_threads: argument 'n'"):
        with ag.blas_threads(bad):
            pass
