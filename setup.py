"""The optional C extensions: autograd_gpu._native (the graph node and the common recording
case; see autograd_gpu/_native.c) and autograd_gpu._hostpool (the host memory pool for reverse
sweeps; built against NumPy's C API, hence numpy in pyproject's build requirements). Everything
else about the build is in pyproject.toml. ``optional=True``: without a C compiler the install
still succeeds; the package then uses its pure-Python twins (autograd_gpu/ops/graph.py,
autograd_gpu/ops/registry.py) and NumPy's own allocator."""

import numpy
from setuptools import Extension, setup

setup(ext_modules=[
    Extension("autograd_gpu._native", ["autograd_gpu/_native.c"], optional=True),
    Extension("autograd_gpu._hostpool", ["autograd_gpu/_hostpool.c"], optional=True,
              include_dirs=[numpy.get_include()]),
])
