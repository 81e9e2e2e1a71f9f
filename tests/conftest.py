import os

import pytest

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


def pytest_collection_modifyitems(config, items):
    if gpu_usable():
        return
    from autograd_gpu.backend.cupy_backend import cupy_status

    skip = pytest.mark.skip(reason=f"no usable GPU: {cupy_status()[1]}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
