"""``python -m autograd_gpu``: the digits demo (same flags as ``python -m autograd_gpu.demo``)."""

from .demo import cli

__all__: list = []

cli()
