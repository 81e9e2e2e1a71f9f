"""Fingerprint of every checkpointing strategy: per config, the checkpoint stats (replay counts,
anchors, drops) and a SHA-256 of the loss and the gradients, on the benchmark model and on the
models and configs of tests/test_checkpoint.py. A refactoring of the planners must leave every
line unchanged (compare two runs with ``--compare``).

Run: python bench/checkpoint_fingerprint.py [--out now.json] [--compare before.json]
     [--skip full]

Budgets are fixed numbers of MB (fractions of NONE's activation memory as measured on each
model: 25.0 MB for the benchmark's 48 x 128 x 1024 float32 tanh stack, 50 units of 0.5 MB), so
the configs do not depend on a measurement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "tests")]

import autograd_gpu as ag  # noqa: E402
from autograd_gpu.checkpoint import CheckpointBudgetError, checkpoint_stats  # noqa: E402

C = ag.CheckpointConfig


def digest(loss, grads) -> str:
    h = hashlib.sha256(np.asarray(loss).tobytes())
    for g in grads:
        h.update(b"none" if g is None else np.ascontiguousarray(g).tobytes())
    return h.hexdigest()[:16]


def summary(stats) -> dict:
    if not stats:
        return {}
    out = {k: stats[k] for k in ("recorded", "dropped", "anchors", "replayed_ops", "restores")}
    out["replayed_cost"] = round(float(stats["replayed_cost"]), 3)
    out["by_op"] = dict(sorted(stats["replayed_by_op"].items()))
    return out


def bench_model(rows, skip):
    from test_checkpoint_bench import make_model, make_step

    Ws, bs = make_model()
    x0 = np.random.default_rng(1).standard_normal((1024, 128)).astype("float32")
    none_mb = 25.0
    cfgs = [("none", None), ("block3", C("block", checkpoint_every_n=3)),
            ("block6", C("block", checkpoint_every_n=6)),
            ("block21", C("block", checkpoint_every_n=21)), ("selective", C("selective")),
            ("full", C("full"))]
    cfgs += [(f"auto{int(f * 100)}", C("auto", memory_budget_mb=f * none_mb))
             for f in (0.8, 0.5, 0.3, 0.28, 0.25, 0.22, 0.2, 0.18)]
    for name, cfg in cfgs:
        if name in skip:
            continue
        step = make_step(Ws, bs, x0, cfg)
        for k in range(2 if name.startswith("auto") else 1):  # AUTO: online, then planned
            grads = [g.numpy() for g in step()]
            rows[f"bench/{name}/step{k}"] = {"hash": digest(0, grads),
                                             "stats": summary(step.stats)}


def test_models(rows, skip):
    import test_checkpoint as tc

    model = tc.MLP()
    x_small = np.random.default_rng(1).standard_normal((64, tc.WIDTH))
    x_big = np.random.default_rng(4).standard_normal((1024, tc.WIDTH))
    for x0, tag in ((x_small, "mlp64"), (x_big, "mlp1024")):
        cfgs = [None] + list(tc.STRATEGIES)
        if tag == "mlp1024":
            cfgs += [C("auto", memory_budget_mb=b) for b in (1.5, 2.5, 4.0, 8.0)]
        for cfg in cfgs:
            name = "none" if cfg is None else (f"{cfg.strategy.value}-{cfg.checkpoint_every_n}-"
                                               f"{cfg.min_compute_cost}-{cfg.memory_budget_mb}")
            if cfg is not None and cfg.strategy.value in skip:
                continue
            for k in range(2):
                try:
                    loss, grads, stats = tc.step(model, x0, cfg)
                except CheckpointBudgetError as e:
                    rows[f"{tag}/{name}/step{k}"] = {"error": str(e)[:80]}
                    break
                rows[f"{tag}/{name}/step{k}"] = {"hash": digest(loss, grads),
                                                 "stats": summary(stats)}
    for depth, seed in ((48, 5), (80, 9), (48, 4)):
        run = tc._tanh_chain(depth)
        x0 = np.random.default_rng(seed).standard_normal((1024, 16))
        none_mb = (depth + 2) * 1024 * 16 * 8 / tc.MB
        rows[f"chain{depth}-{seed}/none"] = {"hash": digest(0, run(x0, None)[0])}
        for f in (0.18, 0.22, 0.25, 0.28, 0.3, 0.5, 0.8):
            cfg = C("auto", memory_budget_mb=f * none_mb)
            for k in range(3):
                g, s = run(x0, cfg)
                rows[f"chain{depth}-{seed}/auto{f}/step{k}"] = {"hash": digest(0, g),
                                                                "stats": summary(s)}
        for cfg in (C("block", checkpoint_every_n=4), C("selective"), C("full")):
            if cfg.strategy.value in skip:
                continue
            g, s = run(x0, cfg)
            rows[f"chain{depth}-{seed}/{cfg.strategy.value}"] = {"hash": digest(0, g),
                                                                 "stats": summary(s)}


def random_graphs(rows, skip):
    import test_checkpoint as tc

    for seed in range(24):
        run, act = tc._random_graph(seed)
        loss, grads, _ = run(None)
        rows[f"random{seed}/none"] = {"hash": digest(loss, grads)}
        cfgs = [C("block", checkpoint_every_n=n) for n in (1, 2, 3, 5)]
        cfgs += [C("selective"), C("selective", min_compute_cost=2), C("full")]
        cfgs += [C("auto", memory_budget_mb=k * act) for k in (8, 14, 24, 60)]
        for i, cfg in enumerate(cfgs):
            if cfg.strategy.value in skip:
                continue
            key = f"random{seed}/{i}-{cfg.strategy.value}"
            try:
                loss, grads, stats = run(cfg)
            except CheckpointBudgetError as e:
                rows[key] = {"error": str(e)[:80]}
                continue
            rows[key] = {"hash": digest(loss, grads), "stats": summary(stats)}


def persistent(rows, skip):
    """Persistent tapes swept twice (restored values dropped again), and reset()."""
    import test_checkpoint as tc

    model = tc.MLP()
    x0 = np.random.default_rng(1).standard_normal((64, tc.WIDTH))
    for cfg in (C("block", checkpoint_every_n=4), C("full"), C("selective", min_compute_cost=10),
                C("auto", memory_budget_mb=0.3), C("auto", memory_budget_mb=0.6)):
        if cfg.strategy.value in skip:
            continue
        x = ag.Tensor.from_array(x0)
        with ag.GradientTape(persistent=True, checkpoint=cfg) as tape:
            model(x)
            tape.reset()
            loss = model(x)
        out = []
        for _ in range(2):
            out += [g.numpy() for g in tape.gradient(loss, model.params())]
        rows[f"persistent/{cfg.strategy.value}-{cfg.memory_budget_mb}"] = {
            "hash": digest(loss.numpy(), out), "stats": summary(checkpoint_stats(tape))}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--compare", default=None)
    ap.add_argument("--skip", nargs="*", default=[], help="strategies to leave out, e.g. full")
    a = ap.parse_args(argv)
    skip = set(a.skip)
    rows: dict = {}
    for part in (bench_model, test_models, random_graphs, persistent):
        part(rows, skip)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1, sort_keys=True)
    print(f"{len(rows)} rows")
    if a.compare:
        with open(a.compare) as f:
            before = json.load(f)
        diff = 0
        for key in sorted(set(before) | set(rows)):
            if key not in rows and any(s in key for s in skip):
                continue
            if before.get(key) != rows.get(key):
                diff += 1
                print(f"DIFF {key}\n  before {before.get(key)}\n  now    {rows.get(key)}")
        print(f"{diff} rows differ of {len(rows)}")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
