"""Gradient checkpointing on a deep tanh MLP: the same gradients for less activation memory.

A GradientTape given a ``CheckpointConfig`` drops saved activations while recording and
recomputes them during the backward sweep. This example runs one forward+backward of a deep MLP
under several strategies, checks that every strategy's gradients equal the plain tape's, and
measures each one's peak memory and time with ``ag.PerformanceBenchmark``.

    python examples/checkpoint_deep_mlp.py [--small] [--depth 48 --width 512 --batch 1024]
"""

from __future__ import annotations

import argparse

import numpy as np

import autograd_gpu as ag

nn = ag.nn


def build(depth: int, width: int, seed: int = 0) -> nn.Module:
    layers = []
    for i in range(depth):
        layers += [nn.Linear(width, width, seed=seed + i, dtype="float64"), nn.Tanh()]
    return nn.Sequential(*layers)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="a 16-layer, width-64 model")
    ap.add_argument("--depth", type=int, default=48)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--iterations", type=int, default=3)
    args = ap.parse_args(argv)
    depth, width, batch = (16, 64, 256) if args.small else (args.depth, args.width, args.batch)
    with ag.device("cpu"):  # tracemalloc sees NumPy's allocations; on a GPU use CuPy's pool
        model = build(depth, width)
        params = model.parameters()
        x = ag.Tensor.randn((batch, width), seed=1, dtype="float64")
        # one (batch, width) array a layer: a tanh's output is also the next matmul's saved input
        activation_mb = depth * batch * width * 8 / 2**20
        # BLOCK keeps every n-th recorded op (3 a layer: matmul, bias add, tanh); keeping a tanh
        # every ~sqrt(depth) layers is the classic spacing (every layer, n=3, would keep them all)
        every = 3 * max(1, round(depth ** 0.5))
        frac = 2 if args.small else 3

        def step(cfg):
            with ag.GradientTape(checkpoint=cfg) as tape:
                loss = (model(x) ** 2).mean()
            return tape.gradient(loss, params)

        strategies = {
            "none": None,
            f"block (n={every})": ag.CheckpointConfig(strategy="block",
                                                  checkpoint_every_n=every),
            # nothing to gain on this model (see docs/guide.md), and nothing lost
            "selective": ag.CheckpointConfig(strategy="selective", min_compute_cost=50),
            # (the small model's activations are too close to one step's working set for 1/3)
            f"auto (1/{frac} budget)": ag.CheckpointConfig(strategy="auto",
                                                          memory_budget_mb=activation_mb / frac),
        }
        reference = [g.numpy() for g in step(None)]
        bench = ag.PerformanceBenchmark(ag.BenchmarkConfig(
            num_warmup=1, num_iterations=args.iterations, measure_memory=True))
        rows = {}
        for name, cfg in strategies.items():
            grads = [g.numpy() for g in step(cfg)]
            same = all(np.array_equal(a, b) for a, b in zip(grads, reference))
            r = bench.run(name, step, cfg)
            rows[name] = {"peak_mb": r.peak_memory_mb, "ms": r.median_time_ms,
                          "bitwise_equal": same}
    base = rows["none"]
    print(f"{depth}-layer tanh MLP, width {width}, batch {batch} (float64, CPU); "
          f"activations ~{activation_mb:.0f} MB")
    print(f"{'strategy':<22} {'peak MB':>9} {'saved':>7} {'median ms':>10} {'time':>7} "
          f"{'grads equal':>12}")
    for name, r in rows.items():
        print(f"{name:<22} {r['peak_mb']:>9.1f} {1 - r['peak_mb'] / base['peak_mb']:>7.0%} "
              f"{r['ms']:>10.1f} {r['ms'] / base['ms']:>6.2f}x {str(r['bitwise_equal']):>12}")
    return rows


if __name__ == "__main__":
    main()
