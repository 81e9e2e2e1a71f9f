"""Data-parallel benchmark, CPU, two processes: bench/ddp_bench.py under pytest-benchmark.

    pytest bench/test_ddp_bench.py --benchmark-only -s

One ``mpiexec -n 2`` job runs autograd_gpu's DataParallel and PyTorch DDP on gloo side by side,
interleaved; ``extra_info`` holds the step-time ratio (target <= 1.0), the overlap fraction, the
scaling efficiencies, and the bucket bandwidth against a raw mpi4py allreduce (target >= 0.9 at
the bucket sizes); the table's time is the whole job's.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ddp_bench  # noqa: E402


def _ready() -> str | None:
    if shutil.which("mpiexec", path=os.path.dirname(sys.executable)) is None:
        return "mpiexec not installed (pip install \"autograd_gpu[distributed]\")"
    try:
        import mpi4py  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} not installed"
    return None


@pytest.mark.skipif(_ready() is not None, reason=str(_ready()))
def test_ddp_step_against_torch_ddp(benchmark, tmp_path):
    out = str(tmp_path / "ddp_bench.json")
    reports = []
    benchmark.pedantic(lambda: reports.append(ddp_bench.main(["--rounds", "5", "--steps", "3",
                                                               "--out", out])),
                       rounds=1, iterations=1)
    rep = reports[-1]
    m = rep["median_s"]
    ratios = [a / b for a, b in zip(rep["rounds"]["ag_dp"], rep["rounds"]["torch_ddp"])]
    bw = {mb: b["ratio_vs_mpi4py"] for mb, b in rep["bandwidth"].items()}  # median of rounds
    benchmark.extra_info.update({
        "ratio_dp_step_vs_torch_ddp_median": statistics.median(ratios),
        "overlap_fraction": 1 - m["exposed"] / m["comm_alone"],
        "scaling_efficiency_autograd_gpu": m["ag_alone"] / m["ag_dp"],
        "scaling_efficiency_torch": m["torch_alone"] / m["torch_ddp"],
        "bucket_bandwidth_vs_mpi4py": bw, "load_start": rep["load_start"],
        "load_end": rep["load_end"],
    })
    # the numbers agree before anything is timed
    assert rep["gradient_error_vs_float64"]["autograd_gpu"] < 1e-5
