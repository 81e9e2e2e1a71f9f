"""Memory over long runs: each scenario runs N steps, and the traced memory (tracemalloc, plus
the host pool's cached blocks, which tracemalloc cannot see) is sampled after warm-up and at the
end; the slope is the bytes each step leaves behind. A flat run keeps it near zero.

    python bench/memory_flat.py --steps 10000        # every scenario, 10,000 steps each

Scenarios: a training loop (MLP, AdamW), a ForwardAccumulator over a long-lived parameter,
ag.hessian, AUTO checkpointing, AMP (bfloat16 autocast with dynamic loss scaling).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc

import numpy as np

import autograd_gpu as ag

nn = ag.nn


def _mlp(seed=0):
    return nn.Sequential(nn.Linear(32, 64, seed=seed), nn.Tanh(), nn.Linear(64, 10, seed=seed + 1))


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = ag.Tensor.from_array(rng.standard_normal((n, 32)).astype(np.float32))
    y = ag.Tensor.from_array(rng.integers(0, 10, n))
    return x, y


def training_loop():
    model, (x, y) = _mlp(), _data()
    opt = ag.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        with ag.GradientTape() as tape:
            loss = nn.cross_entropy(model(x), y)
        opt.step(tape.gradient(loss, model.parameters()))
    return step


def forward_accumulator():
    w = ag.Variable(np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32))
    x = ag.Tensor.from_array(np.ones((8, 64), np.float32))
    ones = np.ones((64, 64), np.float32)

    def step():  # a fresh tangent each use, as ag.jvp makes one
        with ag.ForwardAccumulator(w, ag.Tensor.from_array(ones)) as acc:
            y = ag.tanh(x @ w).sum()
        acc.jvp(y)
    return step


def hessian():
    x = ag.Tensor.from_array(np.linspace(-1, 1, 16))

    def step():
        ag.hessian(lambda v: (ag.sin(v) * v).sum() + (v * v).sum() ** 2, x)
    return step


def auto_checkpointing():
    rng = np.random.default_rng(2)
    ws = [ag.Variable(rng.standard_normal((32, 32)) / 6) for _ in range(12)]
    x = ag.Tensor.from_array(rng.standard_normal((64, 32)))
    cfg = ag.CheckpointConfig("auto", memory_budget_mb=0.15)

    def step():
        with ag.GradientTape(checkpoint=cfg) as tape:
            h = x
            for w in ws:
                h = ag.tanh(h @ w)
            loss = (h * h).sum()
        tape.gradient(loss, ws)
    return step


def amp():
    model, (x, y) = _mlp(3), _data(seed=3)
    opt = ag.optim.SGD(model.parameters(), lr=1e-2)
    cfg = ag.AmpConfig(precision_mode="bfloat16")

    def step():
        with ag.GradientTape(amp=cfg) as tape:
            loss = nn.cross_entropy(model(x), y)
        grads = tape.gradient(loss, model.parameters())
        if not tape.step_skipped:
            opt.step(grads)
    return step


SCENARIOS = {"training loop": training_loop, "ForwardAccumulator": forward_accumulator,
             "hessian": hessian, "AUTO checkpointing": auto_checkpointing, "AMP": amp}


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] + ag.host_memory_pool().cached_bytes()


def measure(make, steps, warmup=50) -> dict:
    """Bytes per step over ``steps`` steps after ``warmup`` (the slope between the samples
    taken after a tenth and at the end, so one-time caches do not count)."""
    step = make()
    for _ in range(warmup):
        step()
    tracemalloc.start()
    try:
        first = steps // 10
        for _ in range(first):
            step()
        a = _traced()
        for _ in range(steps - first):
            step()
        b = _traced()
    finally:
        tracemalloc.stop()
    return {"steps": steps, "bytes_after_first_tenth": a, "bytes_at_end": b,
            "bytes_per_step": (b - a) / max(1, steps - first)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--json", default=None, help="write the results here too")
    args = p.parse_args(argv)
    ag.blas_threads(1)
    out = {}
    for name, make in SCENARIOS.items():
        r = measure(make, args.steps)
        out[name] = r
        print(f"{name:20s} {r['steps']:6d} steps: {r['bytes_per_step']:8.2f} bytes/step "
              f"(traced {r['bytes_after_first_tenth'] / 1e6:.2f} -> "
              f"{r['bytes_at_end'] / 1e6:.2f} MB)", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
