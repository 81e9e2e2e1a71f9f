"""The optional C extension, autograd_gpu._native (the graph node and the common recording
case; see autograd_gpu/_native.c). Everything else about the build is in pyproject.toml.
``optional=True``: without a C compiler the install still succeeds, and the package uses its
pure-Python twins (autograd_gpu/ops/graph.py, autograd_gpu/ops/registry.py)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("autograd_gpu._native", ["autograd_gpu/_native.c"], optional=True)])
