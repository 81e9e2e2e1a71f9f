"""PerformanceBenchmark: time code with statistics, throughput and peak memory.

Timing uses CUDA events on the GPU (when the benchmark's device is a cuda device: the time the
GPU spent between the two events, which includes the host time of launching work) and
``time.perf_counter`` on the CPU. Peak memory is read from ``tracemalloc`` on the CPU (NumPy
reports its allocations there) and from a CuPy memory hook on the GPU (bytes handed out by the
memory pool, so the peak includes blocks freed in between).
"""

from __future__ import annotations

import math
import statistics
import time
import tracemalloc
from dataclasses import dataclass, field

from ..backend import Device, backend_for, default_device
from ..errors import ArgumentError

__all__ = [
    "t95", "BenchmarkConfig", "BenchmarkResult", "percentile", "summarize", "PerformanceBenchmark",
]

# two-sided 95% Student-t quantiles for 1..30 degrees of freedom (above 30: the normal 1.96
# within 2%)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        return float("nan")
    return _T95[df - 1] if df <= len(_T95) else 1.96 + 2.4 / df


@dataclass
class BenchmarkConfig:
    """What PerformanceBenchmark measures. ``ops_per_iteration`` scales the throughput (e.g. a
    batch size, to report samples per second); ``device`` defaults to ``ag.default_device()``."""

    num_warmup: int = 10
    num_iterations: int = 100
    measure_throughput: bool = True
    measure_memory: bool = True
    statistical_analysis: bool = True
    ops_per_iteration: float = 1.0
    device: str | None = None

    def __post_init__(self):
        for name in ("num_warmup", "num_iterations"):
            v = getattr(self, name)
            low = 0 if name == "num_warmup" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ArgumentError(f"BenchmarkConfig: argument '{name}' expected an int >= "
                                    f"{low}, got {v!r}")
        if not isinstance(self.ops_per_iteration, (int, float)) or self.ops_per_iteration <= 0:
            raise ArgumentError("BenchmarkConfig: argument 'ops_per_iteration' expected a "
                                f"number > 0, got {self.ops_per_iteration!r}")


@dataclass
class BenchmarkResult:
    """Statistics of the samples of one benchmark name (times in milliseconds).

    ``std_time_ms`` is the sample standard deviation; ``ci95_low_ms``/``ci95_high_ms`` a 95%
    Student-t confidence interval of the mean; ``throughput_ops_per_sec`` is
    ``ops_per_iteration * 1000 / mean_time_ms`` (None unless measured); ``peak_memory_mb`` the
    largest peak over the samples above the memory in use when each sample started.
    """

    name: str
    num_samples: int
    mean_time_ms: float
    median_time_ms: float
    std_time_ms: float
    min_time_ms: float
    max_time_ms: float
    p95_time_ms: float
    ci95_low_ms: float
    ci95_high_ms: float
    throughput_ops_per_sec: float | None
    peak_memory_mb: float | None
    device: str
    timer: str
    samples_ms: list = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """One line: the mean with its 95% confidence interval (Student t, of the mean), the
        median, p95, the standard deviation of the samples, n, device and timer, then ops/s and
        peak memory when measured. Without statistics (one sample, or
        ``statistical_analysis=False``) the interval reads "n/a"."""
        if math.isnan(self.ci95_low_ms) or math.isnan(self.ci95_high_ms):
            ci = "95% CI n/a"
        else:
            ci = f"95% CI {self.ci95_low_ms:.3f}-{self.ci95_high_ms:.3f}"
        s = (f"{self.name}: {self.mean_time_ms:.3f} ms mean ({ci}), median "
             f"{self.median_time_ms:.3f}, p95 {self.p95_time_ms:.3f}, std {self.std_time_ms:.3f}"
             f" (n={self.num_samples}, {self.device}, {self.timer})")
        if self.throughput_ops_per_sec is not None:
            s += f", {self.throughput_ops_per_sec:,.0f} ops/s"
        if self.peak_memory_mb is not None:
            s += f", peak {self.peak_memory_mb:.2f} MB"
        return s


def percentile(sorted_values, q: float) -> float:
    """Linear-interpolation percentile (NumPy's default) of an ascending list."""
    n = len(sorted_values)
    if n == 1:
        return sorted_values[0]
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(name, samples_ms, *, ops_per_iteration=1.0, measure_throughput=True,
              statistical_analysis=True, peak_memory_mb=None, device="cpu",
              timer="perf_counter") -> BenchmarkResult:
    """A BenchmarkResult from a list of times in milliseconds."""
    n = len(samples_ms)
    if n == 0:
        raise ArgumentError(f"benchmark {name!r}: no samples recorded")
    xs = sorted(samples_ms)
    mean = statistics.fmean(xs)
    nan = float("nan")
    if statistical_analysis and n > 1:
        std = statistics.stdev(xs)
        half = t95(n - 1) * std / math.sqrt(n)
        median, p95, lo, hi = statistics.median(xs), percentile(xs, 95.0), mean - half, mean + half
    elif statistical_analysis:
        std, median, p95, lo, hi = 0.0, xs[0], xs[0], nan, nan
    else:
        std = median = p95 = lo = hi = nan
    thr = None
    if measure_throughput:
        thr = ops_per_iteration * 1000.0 / mean if mean > 0 else float("inf")
    return BenchmarkResult(name, n, mean, median, std, xs[0], xs[-1], p95, lo, hi, thr,
                           peak_memory_mb, device, timer, list(samples_ms))


class _CupyPeak:
    """Tracks bytes handed out by CuPy's memory pool (a cupy MemoryHook; peaks are relative to
    the start of the hook)."""

    def __init__(self, cupy):
        from cupy.cuda import memory_hook  # optional dependency (cupy)

        outer = self

        class Hook(memory_hook.MemoryHook):
            name = "autograd_gpu_peak"

            def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
                outer.used += mem_size
                if outer.used > outer.peak:
                    outer.peak = outer.used

            def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
                outer.used -= mem_size

        self.used = 0
        self.peak = 0
        self.hook = Hook()

    def __enter__(self):
        self.hook.__enter__()
        return self

    def __exit__(self, *exc):
        return self.hook.__exit__(*exc)


class _Open:
    """One started sample: its timer start and memory tracking."""

    __slots__ = ("t0", "ev0", "mem", "mem0", "started_tracemalloc", "measured")


class PerformanceBenchmark:
    """Time code by name::

        bench = ag.PerformanceBenchmark(ag.BenchmarkConfig(num_warmup=5, num_iterations=50))
        bench.start_benchmark("backward_pass")
        grads = tape.gradient(loss, params)
        result = bench.end_benchmark("backward_pass")    # statistics over every sample so far

        result = bench.run("step", step_fn)              # warmup + num_iterations samples

    Each start/end pair adds one sample to its name; ``end_benchmark`` returns the statistics of
    all samples of that name. ``results()`` gives them all and ``report()`` a table. With
    ``measure_memory``, start/end samples are timed while memory is traced (tracemalloc slows
    allocation-heavy CPU code); ``run`` times without tracing and measures memory in one extra
    call.
    """

    def __init__(self, config: BenchmarkConfig | None = None):
        if config is not None and not isinstance(config, BenchmarkConfig):
            raise ArgumentError("PerformanceBenchmark: argument 'config' expected a "
                                f"BenchmarkConfig, got {type(config).__name__}")
        self.config = config if config is not None else BenchmarkConfig()
        self.device = str(Device(self.config.device or default_device()))
        self._bk = backend_for(self.device)
        self._gpu = not self._bk.is_host
        self._open: dict[str, _Open] = {}
        self._samples: dict[str, list[float]] = {}
        self._peaks: dict[str, float] = {}
        self._measure_memory = bool(self.config.measure_memory)

    @property
    def timer(self) -> str:
        return "cuda_event" if self._gpu else "perf_counter"

    def start_benchmark(self, name: str) -> None:
        """Begin one sample of ``name`` (raises if that name is already started)."""
        if name in self._open:
            raise ArgumentError(f"start_benchmark: {name!r} is already started")
        o = _Open()
        o.mem = None
        o.started_tracemalloc = False
        o.measured = self._measure_memory
        if o.measured:
            if self._gpu:
                o.mem = _CupyPeak(self._bk.xp).__enter__()
            else:
                if not tracemalloc.is_tracing():
                    tracemalloc.start()
                    o.started_tracemalloc = True
                tracemalloc.reset_peak()
                o.mem0 = tracemalloc.get_traced_memory()[0]
        if self._gpu:
            cp = self._bk.xp
            o.ev0 = cp.cuda.Event()
            o.ev0.record()
        o.t0 = time.perf_counter()
        self._open[name] = o

    def end_benchmark(self, name: str) -> BenchmarkResult:
        """End the sample of ``name`` started last; returns statistics over all its samples."""
        t1 = time.perf_counter()
        o = self._open.pop(name, None)
        if o is None:
            raise ArgumentError(f"end_benchmark: {name!r} was not started (call start_benchmark)")
        if self._gpu:
            cp = self._bk.xp
            ev1 = cp.cuda.Event()
            ev1.record()
            ev1.synchronize()
            ms = float(cp.cuda.get_elapsed_time(o.ev0, ev1))
        else:
            ms = (t1 - o.t0) * 1000.0
        self._samples.setdefault(name, []).append(ms)
        if o.measured:
            if self._gpu:
                o.mem.__exit__(None, None, None)
                peak = o.mem.peak / 2**20
            else:
                peak = max(0, tracemalloc.get_traced_memory()[1] - o.mem0) / 2**20
                if o.started_tracemalloc:
                    tracemalloc.stop()
            self._peaks[name] = max(self._peaks.get(name, 0.0), peak)
        return self.result(name)

    def run(self, name: str, fn, *args, **kwargs) -> BenchmarkResult:
        """Call ``fn(*args, **kwargs)`` ``num_warmup`` times untimed, then ``num_iterations``
        times timed one by one; returns the statistics."""
        if not callable(fn):
            raise ArgumentError(f"PerformanceBenchmark.run: argument 'fn' expected a callable, "
                                f"got {type(fn).__name__}")
        for _ in range(int(self.config.num_warmup)):
            fn(*args, **kwargs)
        self._bk.synchronize()
        n = int(self.config.num_iterations)
        if n < 1:
            raise ArgumentError("run: BenchmarkConfig.num_iterations expected at least 1")
        self._samples.pop(name, None)
        self._peaks.pop(name, None)
        # tracing memory slows allocations (tracemalloc especially), so the timed samples run
        # without it and one more call measures the peak
        measure = self._measure_memory
        self._measure_memory = False
        try:
            for _ in range(n):
                self.start_benchmark(name)
                fn(*args, **kwargs)
                self.end_benchmark(name)
        finally:
            self._measure_memory = measure
        if measure:
            timed = list(self._samples[name])
            self.start_benchmark(name)
            fn(*args, **kwargs)
            self.end_benchmark(name)
            self._samples[name] = timed
        return self.result(name)

    def result(self, name: str) -> BenchmarkResult:
        if name not in self._samples:
            raise ArgumentError(f"result: no samples for {name!r}")
        c = self.config
        return summarize(name, self._samples[name], ops_per_iteration=c.ops_per_iteration,
                         measure_throughput=c.measure_throughput,
                         statistical_analysis=c.statistical_analysis,
                         peak_memory_mb=self._peaks.get(name) if c.measure_memory else None,
                         device=self.device, timer=self.timer)

    def results(self) -> dict[str, BenchmarkResult]:
        return {n: self.result(n) for n in self._samples}

    def reset(self) -> None:
        self._open.clear()
        self._samples.clear()
        self._peaks.clear()

    def report(self) -> str:
        """A text table of every benchmark, one row per name."""
        head = (f"{'name':<24} {'n':>5} {'mean ms':>10} {'median':>10} {'p95':>10} "
                f"{'std':>9} {'ops/s':>12} {'peak MB':>9}")
        rows = [head, "-" * len(head)]
        for r in self.results().values():
            thr = "-" if r.throughput_ops_per_sec is None else f"{r.throughput_ops_per_sec:,.0f}"
            mem = "-" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.2f}"
            rows.append(f"{r.name[:24]:<24} {r.num_samples:>5} {r.mean_time_ms:>10.3f} "
                        f"{r.median_time_ms:>10.3f} {r.p95_time_ms:>10.3f} {r.std_time_ms:>9.3f} "
                        f"{thr:>12} {mem:>9}")
        return "\n".join(rows)
