"""Fused CUDA kernels from ``autograd_gpu/kernels/*.cu``, compiled with NVRTC and cached.

Each entry maps a kernel name to the file that holds it. The op's xp path is its reference.
"""

from __future__ import annotations

from importlib import resources

# name -> (file stem, callable factory name). Filled by the GPU kernel families.
KERNELS: dict[str, tuple[str, str]] = {}


def kernel_source(stem: str) -> str:
    return resources.files("autograd_gpu").joinpath("kernels", f"{stem}.cu").read_text()


class KernelTable:
    def __init__(self, bk):
        self.bk = bk
        self._cache = {}

    def has(self, name: str) -> bool:
        return name in KERNELS

    def get(self, name: str):
        fn = self._cache.get(name)
        if fn is None:
            from . import kernel_impls

            stem, factory = KERNELS[name]
            fn = getattr(kernel_impls, factory)(self.bk, kernel_source(stem))
            self._cache[name] = fn
        return fn
