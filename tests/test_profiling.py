"""PerformanceBenchmark statistics and memory, and the op profiler's table and Chrome trace."""

import json
import statistics
import time

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.profiling import benchmark as B


def test_summarize_statistics_against_numpy():
    xs = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0]
    r = B.summarize("x", xs, ops_per_iteration=32)
    a = np.array(xs)
    assert r.mean_time_ms == pytest.approx(a.mean())
    assert r.median_time_ms == pytest.approx(np.median(a))
    assert r.std_time_ms == pytest.approx(a.std(ddof=1))
    assert r.p95_time_ms == pytest.approx(np.percentile(a, 95))
    assert (r.min_time_ms, r.max_time_ms) == (1.0, 9.0)
    half = 2.365 * a.std(ddof=1) / np.sqrt(8)  # t(0.975, 7)
    assert r.ci95_low_ms == pytest.approx(a.mean() - half, rel=1e-3)
    assert r.ci95_high_ms == pytest.approx(a.mean() + half, rel=1e-3)
    assert r.throughput_ops_per_sec == pytest.approx(32 * 1000 / a.mean())
    assert r.num_samples == 8 and "x:" in r.summary()


def test_summary_prints_the_95_percent_interval():
    """summary() shows the confidence interval it promises (it printed the standard deviation
    as "+/-" after p95), each figure labelled."""
    xs = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0]
    r = B.summarize("x", xs)
    text = r.summary()
    assert f"95% CI {r.ci95_low_ms:.3f}-{r.ci95_high_ms:.3f}" in text
    assert f"std {r.std_time_ms:.3f}" in text and f"p95 {r.p95_time_ms:.3f}" in text
    assert "+/-" not in text
    assert "95% CI n/a" in B.summarize("one", [2.0]).summary()


def test_t_quantiles():
    assert B.t95(1) == pytest.approx(12.706)
    assert B.t95(30) == pytest.approx(2.042)
    assert B.t95(1000) == pytest.approx(1.96, abs=0.01)


def test_start_end_measures_sleep_and_accumulates():
    bench = ag.PerformanceBenchmark(ag.BenchmarkConfig(measure_memory=False))
    assert bench.timer == "perf_counter" and bench.device == "cpu"
    bench.start_benchmark("sleep")
    time.sleep(0.02)
    r = bench.end_benchmark("sleep")
    assert r.num_samples == 1 and 19.0 <= r.mean_time_ms < 200.0
    assert r.peak_memory_mb is None
    bench.start_benchmark("sleep")
    time.sleep(0.005)
    r = bench.end_benchmark("sleep")
    assert r.num_samples == 2 and r.min_time_ms < r.max_time_ms
    with pytest.raises(ag.ArgumentError):
        bench.end_benchmark("never")
    bench.start_benchmark("a")
    with pytest.raises(ag.ArgumentError):
        bench.start_benchmark("a")


def test_peak_memory_of_a_known_allocation():
    bench = ag.PerformanceBenchmark(ag.BenchmarkConfig())
    bench.start_benchmark("alloc")
    buf = np.ones(4 * 2**20 // 8)  # 4 MiB, then freed
    del buf
    r = bench.end_benchmark("alloc")
    assert 3.9 <= r.peak_memory_mb <= 4.5


def test_run_counts_calls_and_reports():
    calls = []
    cfg = ag.BenchmarkConfig(num_warmup=3, num_iterations=7, ops_per_iteration=10)
    bench = ag.PerformanceBenchmark(cfg)
    r = bench.run("f", lambda: calls.append(np.ones(2**18)))
    assert len(calls) == 3 + 7 + 1  # warmup, timed, one memory pass
    assert r.num_samples == 7
    assert r.mean_time_ms > 0 and r.peak_memory_mb >= 2.0 - 0.01
    assert r.throughput_ops_per_sec == pytest.approx(10 * 1000 / statistics.fmean(r.samples_ms))
    table = bench.report()
    assert "f" in table.splitlines()[2] and "mean ms" in table


def test_no_statistics_or_throughput_when_off():
    cfg = ag.BenchmarkConfig(num_warmup=0, num_iterations=3, measure_throughput=False,
                             statistical_analysis=False, measure_memory=False)
    r = ag.PerformanceBenchmark(cfg).run("g", lambda: None)
    assert r.throughput_ops_per_sec is None and np.isnan(r.std_time_ms)


def small_step():
    x = ag.Tensor.randn((16, 8), seed=0, dtype="float64")
    w = ag.Variable(ag.Tensor.randn((8, 4), seed=1, dtype="float64"))
    with ag.GradientTape() as tape:
        loss = ag.tanh(x @ w).sum()
    (g,) = tape.gradient(loss, [w])
    return g


def test_profiler_counts_ops_and_bytes():
    with ag.profiler.profile() as prof:
        small_step()
        small_step()
    assert prof.calls("matmul") == 2 and prof.calls("tanh") == 2 and prof.calls("sum") == 2
    assert prof.calls("matmul", "vjp") == 2 and prof.calls("tanh", "vjp") == 2
    st = prof.stats[("matmul", "forward")]
    assert st.bytes == 2 * 16 * 4 * 8  # two float64 (16, 4) outputs
    assert st.total_ms > 0 and st.self_ms <= st.total_ms + 1e-9
    rows = prof.key_averages()
    assert [r.total_ms for r in rows] == sorted((r.total_ms for r in rows), reverse=True)
    table = prof.table()
    assert table.splitlines()[0].split()[:3] == ["op", "phase", "calls"]
    assert "matmul" in table and "vjp" in table
    # the hook is gone afterwards
    small_step()
    assert prof.calls("matmul") == 2


def test_profiler_sync_and_nested_vjp_ops():
    x = ag.Tensor.randn((5,), seed=0, dtype="float64")
    with ag.profiler.profile(sync=True) as prof:
        with ag.GradientTape() as outer:
            outer.watch(x)
            with ag.GradientTape() as inner:
                inner.watch(x)
                y = ag.tanh(x).sum()
            (g,) = inner.gradient(y, [x])  # differentiable sweep: its ops go through apply
            z = g.sum()
        outer.gradient(z, [x])
    assert prof.sync
    vjp = prof.stats[("tanh", "vjp")]
    assert vjp.calls >= 1
    # the tanh vjp ran primitives (through apply) that are recorded inside it
    assert vjp.self_ms <= vjp.total_ms
    assert sum(s.calls for s in prof.stats.values()) == len(prof.events)


def test_chrome_trace_json(tmp_path):
    with ag.profiler.profile() as prof:
        small_step()
    path = prof.export_chrome_trace(tmp_path / "trace.json")
    data = json.loads(open(path).read())
    events = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert {"matmul", "tanh", "sum", "matmul.vjp", "tanh.vjp"} <= {e["name"] for e in events}
    for e in events:
        assert set(e) >= {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"}
        assert e["dur"] >= 0 and e["ts"] >= 0 and e["cat"] in ("forward", "vjp")
    mm = next(e for e in events if e["name"] == "matmul")
    assert mm["args"]["shapes"] == [[16, 8], [8, 4]] and mm["args"]["bytes"] == 16 * 4 * 8
    assert any(e["ph"] == "M" for e in data["traceEvents"])


def test_memory_profiler_reexported_when_present():
    import importlib

    from autograd_gpu import profiling

    try:
        memory = importlib.import_module("autograd_gpu.profiling.memory")
    except ModuleNotFoundError:
        assert "GradientMemoryProfiler" not in profiling.__all__
    else:
        assert ag.GradientMemoryProfiler is memory.GradientMemoryProfiler
        assert ag.LeakReport is memory.LeakReport


@pytest.mark.gpu
def test_benchmark_on_gpu_uses_cuda_events_and_pool_peak():
    import cupy

    bench = ag.PerformanceBenchmark(ag.BenchmarkConfig(device="cuda", num_warmup=2,
                                                       num_iterations=5))
    assert bench.timer == "cuda_event" and bench.device == "cuda:0"
    a = cupy.ones((4096, 4096), dtype=cupy.float32)
    r = bench.run("matmul", lambda: a @ a)
    # 137 GFLOP: milliseconds of device time, far above the microseconds of the launch
    assert 0.1 < r.mean_time_ms < 500 and r.timer == "cuda_event"
    assert r.peak_memory_mb >= 64 - 0.5  # the 64 MiB result, from the pool's hook
    bench.start_benchmark("alloc")
    b = cupy.empty(32 * 2**20 // 4, dtype=cupy.float32)
    del b
    assert bench.end_benchmark("alloc").peak_memory_mb >= 32 - 0.5


@pytest.mark.gpu
def test_profiler_sync_measures_device_time_on_gpu():
    with ag.device("cuda"):
        x = ag.Tensor.randn((4096, 4096), seed=0)
        ag.matmul(x, x)  # warm up cuBLAS
        with ag.profiler.profile(sync=False) as fast:
            ag.matmul(x, x)
        with ag.profiler.profile(sync=True) as synced:
            ag.matmul(x, x)
    assert synced.total_ms("matmul") > fast.total_ms("matmul")
    assert synced.stats[("matmul", "forward")].bytes == 4096 * 4096 * 4
