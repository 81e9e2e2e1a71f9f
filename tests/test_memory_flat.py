"""Long runs keep their memory flat: each scenario of bench/memory_flat.py (a training loop,
a ForwardAccumulator over a long-lived parameter, ag.hessian, AUTO checkpointing, AMP) runs a
few hundred steps; what the later steps leave behind must stay within one-time caches (a leak
of the size of the smallest tensor involved, 64 x 64 float32, would add 16 KB a step)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "bench" / "memory_flat.py"
_spec = importlib.util.spec_from_file_location("memory_flat", _PATH)
memory_flat = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(memory_flat)


@pytest.mark.parametrize("name", sorted(memory_flat.SCENARIOS))
def test_memory_stays_flat_over_a_long_run(name):
    r = memory_flat.measure(memory_flat.SCENARIOS[name], steps=300, warmup=30)
    grown = r["bytes_at_end"] - r["bytes_after_first_tenth"]
    assert grown < 64_000, f"{name}: {grown} bytes kept over {r['steps']} steps"
