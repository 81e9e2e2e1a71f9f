import os

import pytest

os.environ.setdefault("AUTOGRAD_GPU_DEVICE", "cpu")  # GPU tests ask for cuda explicitly

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
settings.load_profile("ci")


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
