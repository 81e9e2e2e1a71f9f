"""Checkpointing, autograd_gpu against PyTorch's ``checkpoint_sequential`` on the CPU under one
memory measure (issue 5's peer comparison without a GPU).

Run: python bench/checkpoint_rss.py [--batch 2048] [--width 128] [--json out.json]

tracemalloc cannot see PyTorch's buffers, so both libraries are measured by the kernel instead:
the process's peak resident set. Each library runs in its own child process, which

* fixes glibc's mmap threshold at 64 KiB (``mallopt``), so every activation-sized buffer is its
  own mapping and is returned to the kernel when freed (the resident set then follows the live
  buffers instead of the heap's high-water mark);
* runs each strategy's step once to warm up, resets the peak (``/proc/self/clear_refs`` 5), runs
  the step again and reads VmHWM - VmRSS-before: the step's peak extra memory;
* does that at batch B and 2B: peak activation memory = peak(2B) - peak(B), the measure of
  bench/test_checkpoint_bench.py (weights, gradients and library state cancel);
* times every strategy in 15 interleaved rounds at batch B: the overhead is the median of the
  per-round ratios to the library's own baseline.

autograd_gpu runs with its host pool as configured; the pool's cache is emptied before the base
is read, so the blocks it caches during the step count (they are resident); ``--no-pool`` turns
the pool off. PyTorch runs with its default CPU allocator.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import statistics
import subprocess
import sys
import time

DEPTH = 48
M_MMAP_THRESHOLD = -3
KB = 1024.0


def _fix_malloc():
    libc = ctypes.CDLL("libc.so.6")
    if libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024) != 1:
        raise RuntimeError("mallopt(M_MMAP_THRESHOLD) failed")


def _status_kb(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1))


def step_peak_mb(step, before=None) -> float:
    """Peak resident memory a call of ``step`` adds, in MB (after one warm-up call; ``before``
    runs just before the base is read)."""
    step()
    if before is not None:
        before()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kb("VmRSS")
    step()
    return (_status_kb("VmHWM") - base) / KB


def _ag_child(batch, width, pool):
    import numpy as np
    from test_checkpoint_bench import make_model, make_step, strategies  # this folder's bench

    import autograd_gpu as ag

    hp = ag.host_memory_pool()
    if not pool:
        hp.set_limit(0)
    Ws, bs = make_model(DEPTH, width)
    x2 = np.random.default_rng(1).standard_normal((2 * batch, width)).astype("float32")

    def make(x0, cfg):
        return make_step(Ws, bs, x0, cfg)

    def peak(x, cfg):
        return step_peak_mb(make(x, cfg), hp.free_all_blocks)

    none_act = peak(x2, None) - peak(x2[:batch], None)
    one, two = strategies(none_act), dict(strategies(2 * none_act))
    act = {name: none_act if cfg is None else peak(x2, two[name]) - peak(x2[:batch], cfg)
           for name, cfg in one}
    steps = {name: make(x2[:batch], cfg) for name, cfg in one}
    for fn in steps.values():  # AUTO follows its chain plan from the second step
        fn()
        fn()
    return act, _interleaved(steps)


def _torch_child(batch, width):
    import torch
    from torch.utils.checkpoint import checkpoint_sequential

    torch.manual_seed(0)
    layers = []
    for _ in range(DEPTH):
        layers += [torch.nn.Linear(width, width), torch.nn.Tanh()]
    net = torch.nn.Sequential(*layers)
    x2 = torch.randn(2 * batch, width)

    def make(x, segments):
        def step():
            net.zero_grad(set_to_none=True)
            if segments is None:
                y = net(x)
            else:
                y = checkpoint_sequential(net, segments, x.detach().requires_grad_(),
                                          use_reentrant=False)
            (y * y).sum().backward()
        return step

    names = {"plain": None, **{f"ckpt_seq_{s}": s for s in (4, 7, 12, 16, 24)}}
    act = {name: step_peak_mb(make(x2, s)) - step_peak_mb(make(x2[:batch], s))
           for name, s in names.items()}
    steps = {name: make(x2[:batch], s) for name, s in names.items()}
    for fn in steps.values():
        fn()
    return act, _interleaved(steps)


def _interleaved(steps, rounds=15):
    """Per strategy: the median time of ``rounds`` rounds (each runs every strategy once), in
    ms, and the round-by-round times (for the ratios to the baseline)."""
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def _rows(act, times, base):
    """Overhead = the median of the per-round ratios to the baseline (the VM's speed drifts
    between rounds; within a round every strategy sees the same speed)."""
    rows = []
    for n in act:
        ratios = [a / b for a, b in zip(times[n], times[base])]
        rows.append({"name": n, "act_mb": act[n], "saved_pct": 100.0 * (1 - act[n] / act[base]),
                     "ms": statistics.median(times[n]) * 1e3,
                     "overhead_pct": 100.0 * (statistics.median(ratios) - 1)})
    return rows


def run(batch=2048, width=128, pool=True) -> dict:
    """Both libraries' rows, each measured in its own child process."""
    out = {}
    for lib in ("autograd_gpu", "torch"):
        cmd = [sys.executable, __file__, "--child", lib, "--batch", str(batch),
               "--width", str(width)] + ([] if pool else ["--no-pool"])
        p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        if p.returncode != 0:
            out[lib] = {"error": (p.stderr or p.stdout)[-600:]}
            continue
        out[lib] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def format_table(res, batch, width) -> str:
    lines = [f"checkpointing on the CPU, one measure for both (peak resident set, batch "
             f"{2 * batch} minus {batch}), {DEPTH}-layer tanh MLP, width {width}, float32"]
    for lib, r in res.items():
        if "error" in r:
            lines.append(f"{lib}: {r['error']}")
            continue
        lines.append(f"{lib:<14}{'act MB':>9}{'saved':>8}{'ms':>9}{'time +':>8}")
        for row in r["rows"]:
            lines.append(f"  {row['name']:<12}{row['act_mb']:>9.1f}{row['saved_pct']:>7.1f}%"
                         f"{row['ms']:>9.1f}{row['overhead_pct']:>7.1f}%")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=["autograd_gpu", "torch"])
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--no-pool", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.child:
        _fix_malloc()
        if a.child == "torch":
            act, ms = _torch_child(a.batch, a.width)
            base = "plain"
        else:
            act, ms = _ag_child(a.batch, a.width, not a.no_pool)
            base = "none"
        print(json.dumps({"rows": _rows(act, ms, base)}))
        return
    res = run(a.batch, a.width, not a.no_pool)
    print(format_table(res, a.batch, a.width))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
