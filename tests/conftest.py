import os

os.environ.setdefault("AUTOGRAD_GPU_DEVICE", "cpu")  # GPU tests ask for cuda explicitly

from hypothesis import HealthCheck, settings  # noqa: E402

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# "ci" (the default): the same examples on every run, so main's result does not depend on luck;
# "explore" (HYPOTHESIS_PROFILE=explore): fresh random examples, many more of them, to hunt for
# new counterexamples (a find becomes a fixed regression test).
settings.register_profile("ci", max_examples=12, deadline=None, derandomize=True,
                          suppress_health_check=_QUIET)
settings.register_profile("explore", max_examples=150, deadline=None,
                          suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def gpu_usable() -> bool:
    from autograd_gpu.backend.cupy_backend import cupy_status

    return cupy_status()[0]


_GPU_NOT_RUN: list = []  # [count, reason] once the GPU tests were set aside on this run


def pytest_collection_modifyitems(config, items):
    """Without a usable GPU the ``gpu`` tests are deselected, and one line at the end of the run
    says how many and why (as skips, ``-ra`` printed one SKIPPED line for each of them)."""
    if gpu_usable():
        return
    from autograd_gpu.backend.cupy_backend import cupy_status

    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    config.hook.pytest_deselected(items=gpu)
    items[:] = [item for item in items if "gpu" not in item.keywords]
    _GPU_NOT_RUN[:] = [len(gpu), cupy_status()[1]]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _GPU_NOT_RUN:
        n, reason = _GPU_NOT_RUN
        terminalreporter.write_line(f"{n} GPU tests not run (deselected): no usable GPU: {reason}",
                                    yellow=True)
