"""Optimal checkpointing of a chain, by dynamic programming, and AUTO's plans for chains.

T(n, f): forward evaluations to reverse a chain of ``n`` steps with ``f`` free slots for
checkpoints. T(1, f) = 1, T(n, 0) = n (n + 1) / 2 (replay from the start for every step), and
T(n, f) = min_j j + T(n - j, f - 1) + T(j, f): advance j steps and keep a checkpoint, reverse
the tail with one slot fewer, then the head with the slot back. Revolve solves the same
recursion in closed form; a table also handles slots that run out part way and is easy to audit.

G(n, m), the first sweep (whose forward is free): G(1, m) = 0, G(n, 0) = F(n, 0) and
G(n, m) = min_j G(n - j, m - 1) + F(j, m), with F = T - n (the kept state at a step's end makes
that step's own evaluation unnecessary). AUTO plans a chain it has seen with it
(``ChainTracker``); ``bench/checkpoint_bound.py`` tabulates it.
"""

from __future__ import annotations

import threading

from ..ops.graph import CONST, OUTPUT
from .records import PARENT, nbytes

__all__ = ["split", "revolve_cost", "chain_plan", "ChainPlan", "ChainTracker"]

# optimal checkpoint placement for a chain: T[f][n] and the first split J[f][n]
_T: list = []
_J: list = []
_DP_MAX_N = 100  # beyond it: equal spacing (the DP costs O(n^2 f) the first time)
_DP_LOCK = threading.Lock()
_CHAIN_DP_MAX = 3_000_000  # AUTO plans a chain of n states with m slots while n^2 m is below
# this (the DP's work: about 0.3 s of Python at the limit, once per config)


def split(n: int, f: int) -> int:
    """Steps to advance before storing a checkpoint, to reverse ``n`` steps with ``f`` free slots
    at the least number of forward evaluations (T of the module docstring)."""
    if f >= n - 1:
        return 1
    if n > _DP_MAX_N:
        return max(1, n // (f + 1))
    with _DP_LOCK:
        _fill(n, f)
        return _J[f][n]


def _fill(n: int, f: int) -> None:
    """Extend the tables T[g][m], J[g][m] to m <= n for every g <= f."""
    while len(_T) <= f:
        _T.append([0, 1])  # T(0, g) = 0, T(1, g) = 1
        _J.append([0, 0])
    for g in range(f + 1):
        T, J = _T[g], _J[g]
        prev = _T[g - 1] if g else None  # already filled up to n (g ascends)
        while len(T) <= n:
            m = len(T)
            if g == 0:
                T.append(m * (m + 1) // 2)
                J.append(0)
                continue
            best, bj = None, 1
            for j in range(1, m):
                c = j + prev[m - j] + T[j]
                if best is None or c < best:
                    best, bj = c, j
            T.append(best)
            J.append(bj)


def revolve_cost(n: int, f: int) -> int:
    """Forward evaluations the schedule of ``split`` needs to reverse ``n`` steps with ``f``
    free slots (the DP value T(n, f))."""
    if n <= 0:
        return 0
    if f >= n - 1:
        return 2 * n - 1
    with _DP_LOCK:
        _fill(n, f)
        return _T[f][n]


def chain_plan(n: int, m: int) -> tuple:
    """The states to keep (step positions, 0-based: state i ends step i) so that reversing a
    chain of ``n`` steps with at most ``m`` kept states at once needs the fewest step replays,
    and that number (G of the module docstring)."""
    with _DP_LOCK:
        _fill(n, m)
        F = [[_T[g][k] - k for k in range(n + 1)] for g in range(m + 1)]
    G = [[0] * (n + 1) for _ in range(m + 1)]
    J = [[0] * (n + 1) for _ in range(m + 1)]
    G[0] = list(F[0])
    for g in range(1, m + 1):
        prev, Fg, Gg, Jg = G[g - 1], F[g], G[g], J[g]
        for k in range(2, n + 1):
            best, bj = None, 1
            for j in range(1, k):
                c = prev[k - j] + Fg[j]
                if best is None or c < best:
                    best, bj = c, j
            Gg[k], Jg[k] = best, bj
    keep, pos, k, g = [], 0, n, m
    while k > 1 and g > 0:
        j = J[g][k]
        pos += j
        keep.append(pos - 1)
        k -= j
        g -= 1
    return frozenset(keep), G[m][n]


class ChainPlan:
    """AUTO's plan for a chain, learned from a step with the config it is stored on
    (``config._auto_chain_plan``)."""

    __slots__ = ("budget", "sig", "keep", "replays", "online", "followed")

    def __init__(self, budget, sig, keep, replays, online):
        self.budget = budget  # the budget it was made for (bytes)
        self.sig = sig  # per node, in recording order: (op name, output bytes, bytes of saved
        # constants, saves its output, saves an input from the graph)
        self.keep = keep  # positions whose outputs the forward keeps (anchors)
        self.replays = replays  # replays the plan needs (the DP's count)
        self.online = online  # stats of the step it was learned from (the online planner's)
        self.followed = None  # stats of the first step that followed it to its sweep

    def better(self, budget) -> bool:
        """Whether a new recording with ``budget`` should follow it: made for that budget, and
        fewer replays than the online planner's, predicted and, once a step followed it,
        measured."""
        if budget != self.budget:
            return False
        online = self.online["replayed_ops"]
        if self.followed is not None:
            return self.followed["replayed_ops"] < online
        return self.replays < online


class ChainTracker:
    """One AUTO recording and chain plans: follows the plan learned from an earlier step with
    the same config while the recording matches it op by op, or notes the recording's signature
    (and whether it is a chain) to learn a plan from when the sweep starts."""

    def __init__(self, cfg, budget, start):
        self.cfg = cfg
        self.start = start  # the first position of this recording
        self.learned = None  # the plan being followed
        self.sig: list | None = None  # this recording's signature, to learn from
        self.chain = True
        self.cur = None  # the signature entry of the node just recorded
        lp = getattr(cfg, "_auto_chain_plan", None)
        if lp is not None and lp.better(budget):
            self.learned = lp
        else:
            self.sig = []

    @property
    def active(self) -> bool:
        return self.sig is not None or self.learned is not None

    def note(self, node, rec, ext) -> None:
        """Note this node in the recording's signature (op, output bytes, bytes of saved
        constants), and whether the graph is still a chain: every node reads only the node
        recorded just before it (the first reads none)."""
        codes = node.saved_map
        const = sum(nbytes(v) for v, code in zip(node.saved or (), codes) if code == CONST)
        saves_in = any(code >= 0 and ext[code] is PARENT for code in codes)
        self.cur = (node.op.name, rec.nbytes, const, OUTPUT in codes, saves_in)
        if self.sig is None:
            return
        self.sig.append(self.cur)
        parents = [p for p, e in zip(node.parents, ext) if e is PARENT]
        if (not parents and rec.pos != self.start) or any(
                p.extra.pos != rec.pos - 1 for p in parents):
            self.chain = False

    def follow(self, pos):
        """While a plan is followed and the node at ``pos`` matches it: whether the plan keeps
        its output (True/False). None when no plan is (or is any longer) followed: at the first
        node that differs the plan is forgotten (a recording that differs from its first op on,
        another batch size, is learned instead)."""
        lp = self.learned
        if lp is None:
            return None
        k = pos - self.start
        if k < len(lp.sig) and lp.sig[k] == self.cur:
            return k in lp.keep
        self.learned = None
        self.cfg._auto_chain_plan = None
        if k == 0:
            self.sig = [self.cur]
        return None

    def sweep(self, budget, free, stats) -> None:
        """The sweep restores a node: the forward is over. Learn from this recording (``free``:
        the bytes the kept states may take), or judge the followed plan by this step."""
        if self.sig is not None:
            self._learn(budget, free, stats)
        elif self.learned is not None and self.learned.followed is None:
            self.learned.followed = stats  # a whole step followed it: judge it by this one

    def _learn(self, budget, free, stats) -> None:
        """If the graph was a chain, plan its checkpoints for the next step with this config."""
        sig, self.sig = self.sig, None
        if not self.chain or len(sig) < 4:
            return
        n = len(sig)
        unit = max(e[1] for e in sig)
        if unit <= 0 or any(e[2] * 8 > unit for e in sig):
            return  # a saved constant as large as an output (a dropout's mask): not counted
        # the chain's states: outputs some rule saves (a tanh's, the matmul input after it),
        # and the last output; a step runs from one state to the next (a layer's matmul, bias
        # add and tanh), and reversing it needs the states at both ends
        ends = [k for k in range(n) if sig[k][3] or (k + 1 < n and sig[k + 1][4]) or k == n - 1]
        # kept states at once, besides the live one and the step in flight (the reserve)
        m = int(free // unit) - 1
        m = min(m, len(ends))
        if m < 1 or len(ends) < 4 or len(ends) ** 2 * m > _CHAIN_DP_MAX:
            return
        keep, steps = chain_plan(len(ends), m)
        self.cfg._auto_chain_plan = ChainPlan(
            budget, tuple(sig), frozenset(ends[q] for q in keep),
            round(steps * n / len(ends)), stats)
