"""pytest-benchmark settings for bench/: the CPU by default, and a warning in every run's summary
(and in --benchmark-json's output) that the absolute times are not the result.

pytest-benchmark times one benchmark after another. On a shared machine the speed drifts by 2x
within minutes (the development VM's did during 2026-11-26), so two of its rows may compare the
machine's moods rather than the code: sequential rows have shown FULL checkpointing, which
replays every op, faster than no checkpointing at all. The comparisons that count are the
``*_interleaved`` benchmarks: each of their rounds runs every side, and their ``extra_info``
holds the median and spread of the per-round ratios (shown with ``-s``, stored by
``--benchmark-json``).
"""

import os

import pytest

os.environ.setdefault("AUTOGRAD_GPU_DEVICE", "cpu")

WARNING = ("absolute times above were measured one benchmark after another: on a busy machine "
           "they are not comparable with each other or across runs. The result is the "
           "interleaved ratios (extra_info of the *_interleaved benchmarks: printed with -s, "
           "stored by --benchmark-json).")


def _load() -> str:
    if not hasattr(os, "getloadavg"):
        return ""
    return f" Load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores."


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's table
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if any(terminalreporter.stats.get(k) for k in ("passed", "failed")):
        terminalreporter.write_sep("=", "benchmark warning", yellow=True)
        terminalreporter.write_line(WARNING + _load(), yellow=True)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["autograd_gpu_note"] = WARNING + _load()


def _interleaved(benchmark, sides: dict, rounds: int, calls: int, per: float = 1.0) -> dict:
    """Runs ``rounds`` interleaved rounds as pytest-benchmark's rounds (its table then shows the
    time of one round, every side included) and stores, for each peer, the median and spread of
    the per-round ratios ours / peer in ``extra_info``. Process CPU time, as in
    ``python -m autograd_gpu.bench`` (why: that module's docstring). ``sides`` maps names to
    callables, "autograd_gpu" among them; ``per`` divides the stored best times (ops per call)."""
    import time

    from autograd_gpu.bench import ratio_stats

    times = {name: [] for name in sides}
    order = [list(sides)]

    def one_round():
        for name in order[0]:
            best = float("inf")
            for _ in range(calls):
                t0 = time.process_time()
                sides[name]()
                best = min(best, time.process_time() - t0)
            times[name].append(best)
        order[0] = order[0][::-1]  # alternate which side goes first

    for fn in sides.values():  # warm-up
        fn()
    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    ours = times["autograd_gpu"]
    info = {"timer": "process_time", "rounds": rounds, "calls_per_round": calls,
            "ours_best_s": min(ours) / per}
    for name in sides:
        if name == "autograd_gpu":
            continue
        st = ratio_stats(ours, times[name])
        info.update({f"ratio_{name}_median": st["median"], f"ratio_{name}_p25": st["p25"],
                     f"ratio_{name}_p75": st["p75"], f"{name}_best_s": min(times[name]) / per})
    benchmark.extra_info.update(info)
    return info


@pytest.fixture
def interleaved():
    """``interleaved(benchmark, sides, rounds, calls, per=1.0) -> extra_info``: see
    ``_interleaved``."""
    return _interleaved
