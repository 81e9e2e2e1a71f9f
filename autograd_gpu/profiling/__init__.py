"""Profiling: PerformanceBenchmark (timing statistics), the op profiler (``ag.profiler``) and,
when present, the GradientMemoryProfiler (``profiling/memory.py``)."""

from . import trace as profiler
from .benchmark import BenchmarkConfig, BenchmarkResult, PerformanceBenchmark

__all__ = ["BenchmarkConfig", "BenchmarkResult", "PerformanceBenchmark", "profiler"]

try:
    from .memory import GradientMemoryProfiler, LeakReport  # noqa: F401
except ModuleNotFoundError as _exc:  # written by another layer; absent in a partial build
    if _exc.name != f"{__name__}.memory":
        raise
else:
    __all__ += ["GradientMemoryProfiler", "LeakReport"]
