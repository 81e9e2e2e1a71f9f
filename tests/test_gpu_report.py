"""tools/gpu_report_md.py: the markdown it writes from a gpu_check report, for a run whose parts
all failed (the CPU machine's run: no CuPy) and for a complete one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "gpu_report_md", os.path.join(ROOT, "tools", "gpu_report_md.py"))
md = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(md)

FULL = {
    "commit": "0123456789abcdef", "date": "2026-12-08T10:00:00Z",
    "device": {"name": "NVIDIA H200", "driver": "580.159.03", "memory_total": "143771 MiB"},
    "versions": {"cupy": "14.2.0", "torch": "2.11.0", "numpy": "2.5.2"},
    "tests": {"counts": {"PASSED": 770, "FAILED": 1}, "seconds": 181, "timed_out": False,
              "failed": ["tests/test_x.py::test_y"],
              "failure_reasons": {"tests/test_x.py::test_y": "AssertionError: 1 != 2"}},
    "bench": {"results": {"parts": {
        "mlp_fp32": {"autograd_gpu_ms": 94.3, "torch_ms": 94.1, "cupy_handwritten_ms": 95.0,
                     "ratio_vs_torch": 1.002, "returncode": 0},
        "mlp_tf32": {"skipped": "suite budget spent (12 s left)"},
        "chain": {"autograd_gpu_eager_us_per_op": 12.5, "torch_eager_us_per_op": 19.0,
                  "eager_ratio_vs_torch": 0.658,
                  "autograd_gpu_eager_us_per_op_without_small_kernels": 16.0,
                  "host_us_per_op": 11.0, "numpy_backend_us_per_op": 4.1,
                  "kernel_launches_per_op": 1.5, "gpu_work_items_per_op": 1.6,
                  "launch_us_cupy_a_plus_a": 6.5, "returncode": 0},
        "checkpoint": {"shape": {"layers": 48, "batch": 8192, "width": 2048},
                       "autograd_gpu": [{"name": "none", "saved_pct": 0.0, "overhead_pct": 0.0,
                                         "replayed_ops": 0, "grads_equal": True},
                                        {"name": "full", "error": "MemoryError: x"}],
                       "torch": [{"name": "checkpoint_sequential_7", "saved_pct": 77.0,
                                  "overhead_pct": 26.0}], "returncode": 0},
        "kernels": {"softmax_fused_ms": 0.34, "softmax_xp_ms": 1.17, "softmax_torch_ms": 0.4,
                    "returncode": 0},
        "distributed": {"nccl_dp_step_ms": 50.0, "plain_step_ms": 49.0, "nccl_dp_overhead": 1.02,
                        "mpi_staged": "skipped: mpiexec not installed", "returncode": 0},
        "per_sample_grads": {"error": "RuntimeError: boom\nmore", "returncode": 1},
    }}},
}


def test_a_complete_report_becomes_tables():
    out = md.render(FULL)
    assert "NVIDIA H200 (143771 MiB), driver 580.159.03, CuPy 14.2.0" in out
    assert "commit 0123456789ab" in out
    assert "1 failed, 770 passed" in out and "FAILED `tests/test_x.py::test_y`" in out
    assert "| MLP step, fp32 | 94.30 ms | 94.10 ms | 95.00 ms | 1.002x |" in out
    assert "| MLP step, TF32 | skipped: suite budget spent (12 s left) |" in out
    assert "| eager, small-array kernels on | 12.50 | 19.00 | 0.658x |" in out
    assert "| eager, small-array kernels off | 16.00 |" in out
    assert "1.50 kernel launches per op" in out and "cupy_a_plus_a 6.50" in out
    assert "| none | 0% | 0% | 0 | yes |" in out and "| full | error: MemoryError: x" in out
    assert "| PyTorch checkpoint_sequential_7 | 77% | 26% |" in out
    assert "| softmax | 0.34 | 1.17 | 0.40 |" in out
    assert "(skipped: mpiexec not installed)" in out
    assert "Per-sample gradients: error: RuntimeError: boom" in out and "more" not in out


def test_a_run_without_cupy_says_so_for_every_part(tmp_path):
    parts = {k: {"error": "ModuleNotFoundError: No module named 'cupy'", "returncode": 1}
             for k in ("mlp_fp32", "mlp_tf32", "amp_bf16", "chain", "checkpoint", "kernels",
                       "distributed", "per_sample_grads")}
    report = {"tests": {"counts": {}, "returncode": 99}, "bench": {"results": {"parts": parts}}}
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(report))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gpu_report_md.py"),
                          str(path)], capture_output=True, text=True, check=True).stdout
    assert out.count("error: ModuleNotFoundError") == 8
    assert "Machine: ? (?), driver ?" in out and "none recorded" in out
