"""The least recomputation any checkpointing schedule needs on issue 5's model, by exact dynamic
programming (no benchmark: a bound to compare the measured strategies with).

Run: python bench/checkpoint_bound.py [--layers 48] [--work 3]

Model (a chain of L layers x -> tanh(x W + b); what one layer's backward needs is its input and
its output, the states s[i-1] and s[i], one activation unit each):

* The forward runs once and may keep any states for free (s[0], the batch, is the caller's).
* The backward reverses layers L, L-1, ..., 1. Reversing layer i needs s[i-1] and s[i] in
  memory; s[i] is there already (it was the input of layer i + 1), so a layer whose input is kept
  costs no recomputation. A state that is not kept is rebuilt by replaying layers forward from a
  kept one, and a replay may keep states on the way (the recursive schedules of revolve).
* Memory = kept states (at most ``m`` at once, besides the live s[i]) + ``work`` units: the
  cotangent and the step in flight (3 while a replay runs: cotangent, replay input and output).

F(n, m): the fewest layer replays to reverse n layers whose first input is kept and whose last
output is live, with m free slots: F(1, m) = 0, F(n, 0) = n (n - 1) / 2 (replay from the start
for every layer), F(n, m) = min_j j + F(n - j, m - 1) + F(j, m) (replay j layers and keep that
state, reverse the n - j after it with one slot fewer, then the first j with the slot back).
G(n, m) is the same for the first sweep, whose forward is free: G(n, m) = min_j G(n - j, m - 1)
+ F(j, m). AUTO plans a chain it has seen with this very DP
(``autograd_gpu.checkpointing.chain.chain_plan``), which this script calls. The time a schedule
adds is about replays / L x (forward share of a step), a third on this model (a schedule that
replayed every layer once measured +33% on an H100 on 2026-11-26).
"""

from __future__ import annotations

import argparse

from autograd_gpu.checkpointing.chain import chain_plan


def first_sweep_cost(n: int, m: int) -> int:
    """G(n, m) of the module docstring: the fewest layer replays with ``m`` kept states. The
    same DP AUTO plans chains with (``autograd_gpu.checkpointing.chain.chain_plan``)."""
    return 0 if n <= 1 else chain_plan(n, m)[1]


def table(layers=48, work=3, forward_share=1 / 3, slots=range(3, 15)) -> list:
    """Rows: slots, units (slots + live state + work), saved_pct against keeping every state
    (layers + 2 units: NONE never replays, so its step holds the cotangent and the rule's result,
    50 units for 48 layers as measured), replays (layers), time_pct (replays x forward share /
    layers)."""
    none_units = layers + 2
    rows = []
    for m in slots:
        r = first_sweep_cost(layers, m)
        units = m + 1 + work
        rows.append({"slots": m, "units": units, "saved_pct": 100.0 * (1 - units / none_units),
                     "replays": r, "time_pct": 100.0 * forward_share * r / layers})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--work", type=int, default=3)
    a = ap.parse_args(argv)
    print(f"least layer replays for a {a.layers}-layer chain, working set {a.work} units")
    print(f"{'kept':>5}{'units':>7}{'saved':>8}{'replays':>9}{'time +':>8}")
    for r in table(a.layers, a.work):
        print(f"{r['slots']:>5}{r['units']:>7}{r['saved_pct']:>7.0f}%{r['replays']:>9}"
              f"{r['time_pct']:>7.0f}%")


if __name__ == "__main__":
    main()
