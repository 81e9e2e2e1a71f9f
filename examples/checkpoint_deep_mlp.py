"""Gradient checkpointing on a deep tanh MLP: the same gradients for less activation memory.

A GradientTape given a ``CheckpointConfig`` drops saved activations while recording and
recomputes them during the backward sweep. This example runs one forward+backward step under
every strategy (NONE, SELECTIVE, BLOCK at two spacings, FULL, AUTO at three budgets), checks that
each gives NONE's gradients bit for bit, and measures what each saves and what it costs.

Model (the default is the one of docs/benchmarks.md's CPU checkpointing table): ``depth`` layers
``h = tanh(h @ W + b)``, width 128, batch 1024, float32, loss ``sum(h * h)``, on the CPU.

Measures (the same as that table, so the figures can be compared):
* activation memory = tracemalloc's peak during one step at batch 2B minus the peak at batch B.
  Everything that scales with the batch (activations, cotangents, a rule's temporaries) counts
  once; weights, their gradients and graph objects cancel. "saved" is relative to NONE.
* time = per strategy, the median over ``--rounds`` interleaved rounds (each round runs every
  strategy once, so all see the same machine speed) of its time divided by NONE's in that round.
  AUTO is warmed for two steps first: from its second step it follows the plan it learned. The
  time is the process's CPU time by default (``--timer wall`` for the wall clock, which that
  table used on a quieter machine): with one BLAS thread it counts the step's work, where on a
  busy machine the wall clock mostly counts the waits for a core (5 wall-clock rounds at load 11
  put SELECTIVE, which replays nothing, 33% below NONE).

    python examples/checkpoint_deep_mlp.py [--small] [--depth 48 --width 128 --batch 1024]
                                          [--rounds 15] [--out checkpoint_tradeoff.png]

The PNG plots each strategy's memory saved against its extra time.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

import autograd_gpu as ag
from autograd_gpu.checkpoint import checkpoint_stats

MB = 2.0**20


def make_model(depth: int, width: int, seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    Ws = [ag.Variable((rng.standard_normal((width, width)) / np.sqrt(width)).astype("float32"))
          for _ in range(depth)]
    bs = [ag.Variable(0.01 * rng.standard_normal(width).astype("float32")) for _ in range(depth)]
    return Ws, bs


def make_step(Ws: list, bs: list, x: np.ndarray, cfg: ag.CheckpointConfig | None):
    """One forward + backward step as a function; ``step.stats`` holds the last step's
    checkpointing statistics (replayed ops among them)."""
    params = Ws + bs

    def step():
        with ag.GradientTape(checkpoint=cfg) as tape:
            h = ag.Tensor.from_array(x)
            for w, b in zip(Ws, bs):
                h = ag.tanh(h @ w + b)
            loss = (h * h).sum()
        grads = tape.gradient(loss, params)
        step.stats = checkpoint_stats(tape)
        return grads

    step.stats = {}
    return step


def peak_mb(step) -> float:
    """tracemalloc's peak during one call above the memory in use when it started (after one
    untraced call, so that caches and AUTO's plan are in place)."""
    step()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        step()
        return (tracemalloc.get_traced_memory()[1] - base) / MB
    finally:
        tracemalloc.stop()


def strategies(depth: int, none_act_mb: float, budgets=(0.50, 0.30, 0.25)) -> dict:
    """name -> config. BLOCK keeps every n-th recorded op (3 a layer: matmul, bias add, tanh):
    n=6 keeps a tanh output every 2nd layer, n=3*round(sqrt(depth)) the classic sqrt spacing.
    AUTO's budgets are fractions of NONE's activation memory."""
    C = ag.CheckpointConfig
    sqrt_n = 3 * max(1, round(depth ** 0.5))
    out = {
        "NONE": None,
        "SELECTIVE": C("selective"),
        "BLOCK n=6": C("block", checkpoint_every_n=6),
        f"BLOCK n={sqrt_n}": C("block", checkpoint_every_n=sqrt_n),
        "FULL": C("full"),
    }
    for frac in budgets:
        out[f"AUTO {100 * frac:.0f}%"] = C("auto", memory_budget_mb=frac * none_act_mb)
    return out


def plot(path: str, rows: dict, title: str, rounds: int, timer: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.2))
    for i, (name, r) in enumerate(rows.items()):
        ax.scatter(r["saved_pct"], r["overhead_pct"], s=60, color=f"C{i}", zorder=3,
                   label=f"{name}: {r['act_mb']:.1f} MB, {r['replays']} ops replayed")
        # names alternate above and below their points: neighbours (NONE and SELECTIVE, BLOCK
        # and AUTO at similar savings) would otherwise print over each other
        ax.annotate(name, (r["saved_pct"], r["overhead_pct"]), textcoords="offset points",
                    xytext=(6, 6 if i % 2 == 0 else -12), fontsize=8, color=f"C{i}")
    # outside the axes: inside, it covered a strategy's point
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              title="activation memory, replays per step", title_fontsize=8)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_xlabel("activation memory saved (% of NONE's; peak(2B) - peak(B), tracemalloc)")
    ax.set_ylabel(f"extra {timer} time per step (% of NONE's; median of {rounds} rounds)",
                  fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(x=0.2, y=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true",
                    help="a 16-layer, width-64, batch-256 model and 5 rounds")
    ap.add_argument("--depth", type=int, default=48)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (15)")
    ap.add_argument("--timer", choices=("cpu", "wall"), default="cpu",
                    help="process CPU time (default) or wall-clock time")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads (default 1: steadier times on a busy machine; 0 = the "
                         "library's default)")
    ap.add_argument("--out", default="checkpoint_tradeoff.png", help="the PNG to write")
    ap.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = ap.parse_args(argv)
    depth, width, batch = (16, 64, 256) if args.small else (args.depth, args.width, args.batch)
    rounds = args.rounds or (5 if args.small else 15)
    with ag.device("cpu"), ag.blas_threads(args.blas_threads or None):
        # tracemalloc sees NumPy's allocations; on a GPU CuPy's pool would be the measure
        Ws, bs = make_model(depth, width)
        x2 = np.random.default_rng(1).standard_normal((2 * batch, width)).astype("float32")
        x = x2[:batch]
        none_act = peak_mb(make_step(Ws, bs, x2, None)) - peak_mb(make_step(Ws, bs, x, None))
        # the small model's activations are too close to one layer's working set for 25%
        budgets = (0.60, 0.45, 0.35) if args.small else (0.50, 0.30, 0.25)
        configs = strategies(depth, none_act, budgets)
        configs_2x = strategies(depth, 2 * none_act, budgets)  # AUTO's budget scales with B
        steps = {name: make_step(Ws, bs, x, cfg) for name, cfg in configs.items()}
        reference = [g.numpy() for g in steps["NONE"]()]
        rows: dict = {}
        for name, cfg in configs.items():
            grads = [g.numpy() for g in steps[name]()]
            steps[name]()  # AUTO follows its learned chain plan from the second step
            act = none_act if cfg is None else (
                peak_mb(make_step(Ws, bs, x2, configs_2x[name])) - peak_mb(steps[name]))
            rows[name] = {"act_mb": act, "replays": steps[name].stats.get("replayed_ops", 0),
                          "bitwise_equal": all(np.array_equal(a, b)
                                               for a, b in zip(grads, reference))}
        clock = time.process_time if args.timer == "cpu" else time.perf_counter
        times: dict = {name: [] for name in steps}
        for _ in range(rounds):
            for name, step in steps.items():
                t0 = clock()
                step()
                times[name].append(clock() - t0)
    for name, r in rows.items():
        ratios = [a / b for a, b in zip(times[name], times["NONE"])]
        r["ms"] = 1e3 * statistics.median(times[name])
        r["overhead_pct"] = 100.0 * (statistics.median(ratios) - 1.0)
        r["saved_pct"] = 100.0 * (1.0 - r["act_mb"] / none_act)
    title = (f"{depth}-layer tanh MLP with bias, width {width}, batch {batch}, float32, CPU: "
             "activation memory against time")
    print(title)
    print("memory: peak(batch 2B) - peak(batch B) of one step (tracemalloc); time: median of "
          f"{rounds} interleaved rounds' ratios to NONE ({args.timer} time)"
          + (" (the model and measures of docs/benchmarks.md's CPU table)"
             if (depth, width, batch) == (48, 128, 1024) else ""))
    print(f"{'strategy':<12} {'act MB':>8} {'saved':>7} {'median ms':>10} {'time':>7} "
          f"{'replays':>8} {'grads equal':>12}")
    for name, r in rows.items():
        print(f"{name:<12} {r['act_mb']:>8.2f} {r['saved_pct']:>6.1f}% {r['ms']:>10.1f} "
              f"{r['overhead_pct']:>+6.0f}% {r['replays']:>8} {str(r['bitwise_equal']):>12}")
    path = None
    if not args.no_plot:
        path = plot(args.out, rows, title, rounds, args.timer)
        print(f"plot: {path}")
    return {"rows": rows, "plot": path, "none_act_mb": none_act,
            "model": {"depth": depth, "width": width, "batch": batch}}


if __name__ == "__main__":
    main()
