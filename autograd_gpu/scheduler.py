"""HybridScheduler: forward, reverse or mixed mode for Jacobians and Hessians, chosen from a cost
model of the recorded graph.

A Jacobian of m outputs by n inputs costs about n forward sweeps (one per input direction) or m
reverse sweeps (one per output direction); both are batched and chunked, so a sweep over a chunk
of c directions costs the per-node Python/dispatch overhead once plus c times the node's work. The
model (units: microseconds on the machine the constants were measured on)::

    work      = sum over nodes of (op flops * T_FLOP + elements touched * T_ELEM)
    forward   = n * work * K_FWD + sweeps_f * nodes * T_CALL + n * (n + m) * T_ELEM
    reverse   = m * work * K_REV + sweeps_r * nodes * T_CALL * K_CALL_REV
                + m * (m + n) * T_ELEM + live * T_LIVE

where ``live`` is what the reverse sweep keeps alive (a chunk of cotangents for every node, an
upper bound of the pending frontier). Output/input size ratios beyond the thresholds
short-circuit the estimate (the estimates are then computed only if someone reads them).

``tape.last_schedule`` (and ``last_schedule()`` for the functional transforms) holds the decision.
"""

from __future__ import annotations

import math
import numbers
import threading
from dataclasses import dataclass

from .addons import register_config
from .errors import ArgumentError, describe
from .options import OptionEnum

__all__ = ["SchedulingStrategy", "SchedulerConfig", "Schedule", "HybridScheduler",
           "last_schedule"]

# Cost constants (us), fitted to measured Jacobian times of tanh(A @ sin(x)) * 2 for n, m in
# {8..2000} and of 60-op elementwise chains on a 2-core CPU with NumPy float64 (see
# bench/test_jacobian_bench.py). The decision only reads their ratios.
T_FLOP = 1.0e-4  # per flop of an op's cost estimate (BLAS-bound ops dominate this term)
T_ELEM = 2.5e-4  # per tangent/cotangent element read or written
T_CALL = 12.0  # Python/dispatch overhead per node per forward-replay sweep
K_FWD = 1.0
K_REV = 1.05  # vjp rules also touch the inputs' shapes (unbroadcast sums, transposed matmuls)
K_CALL_REV = 0.95  # the reverse sweep's per-node overhead relative to the replay's (measured)
T_LIVE = 1.0e-4  # per element the reverse sweep keeps alive


class SchedulingStrategy(OptionEnum):
    AUTO = "auto"
    FORWARD = "forward"
    REVERSE = "reverse"
    MIXED = "mixed"



@dataclass
class SchedulerConfig:
    """How Jacobians and Hessians choose their mode.

    ``forward_mode_threshold``: forward mode without estimating when outputs/inputs >= it;
    ``reverse_mode_threshold``: reverse mode when outputs/inputs <= it; ``enable_mixed_mode``:
    Hessians use forward-over-reverse under AUTO. ``memory_budget_mb`` bounds the tangent or
    cotangent batch of one chunked sweep; ``chunk_size`` fixes the chunk instead."""

    strategy: SchedulingStrategy | str = SchedulingStrategy.AUTO
    forward_mode_threshold: float = 10.0
    reverse_mode_threshold: float = 0.1
    enable_mixed_mode: bool = True
    memory_budget_mb: float = 256.0
    chunk_size: int | None = None

    def __post_init__(self):
        self.strategy = SchedulingStrategy.parse(self.strategy, "SchedulerConfig", "strategy")
        for name in ("forward_mode_threshold", "reverse_mode_threshold", "memory_budget_mb"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not v > 0:
                raise ArgumentError(f"SchedulerConfig: argument '{name}' expected a positive "
                                    f"number, got {v!r}")
            setattr(self, name, float(v))
        if self.reverse_mode_threshold > self.forward_mode_threshold:
            raise ArgumentError(
                "SchedulerConfig: argument 'reverse_mode_threshold' expected at most "
                f"forward_mode_threshold ({self.forward_mode_threshold}), got "
                f"{self.reverse_mode_threshold}")
        if self.chunk_size is not None and (not isinstance(self.chunk_size, numbers.Integral)
                                            or self.chunk_size < 1):
            raise ArgumentError("SchedulerConfig: argument 'chunk_size' expected None or an int "
                                f">= 1, got {self.chunk_size!r}")
        if self.strategy is SchedulingStrategy.MIXED and not self.enable_mixed_mode:
            raise ArgumentError("SchedulerConfig: strategy MIXED expected enable_mixed_mode=True, "
                                "got enable_mixed_mode=False")
        self.enable_mixed_mode = bool(self.enable_mixed_mode)

    @classmethod
    def coerce(cls, cfg, where="scheduler") -> SchedulerConfig:
        if cfg is None:
            return _DEFAULT_CONFIG
        if isinstance(cfg, cls):
            return cfg
        if isinstance(cfg, (str, SchedulingStrategy)):
            return cls(strategy=SchedulingStrategy.parse(cfg, where, "scheduler"))
        raise ArgumentError(f"{where}: argument 'scheduler' expected a SchedulerConfig or a "
                            f"strategy name, got {describe(cfg)}")


_DEFAULT_CONFIG = SchedulerConfig()


class Schedule:
    """One decision: which mode, the two cost estimates (us) and why.

    The estimates are computed when first read: a decision made by a size-ratio threshold or an
    explicit strategy does not need them, and the Jacobian should not pay for them."""

    def __init__(self, kind, mode, strategy, reason, n_inputs=0, n_outputs=0, nodes=0,
                 chunk_size=None, estimator=None, details=None):
        self.kind = kind  # "jacobian", "batch_jacobian", "hessian", "hvp"
        self.mode = mode  # "forward", "reverse", "forward-over-reverse", ...
        self.strategy = strategy
        self.reason = reason
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        self.nodes = nodes
        self.chunk_size = chunk_size
        self.details = details or {}
        self._estimator = estimator
        self._estimates = None

    def _costs(self):
        if self._estimates is None:
            self._estimates = self._estimator() if self._estimator is not None else (None, None)
            self._estimator = None
        return self._estimates

    @property
    def forward_cost(self) -> float | None:
        return self._costs()[0]

    @property
    def reverse_cost(self) -> float | None:
        return self._costs()[1]

    def __repr__(self) -> str:
        return (f"Schedule(kind={self.kind!r}, mode={self.mode!r}, strategy={self.strategy}, "
                f"forward_cost={self.forward_cost}, reverse_cost={self.reverse_cost}, "
                f"reason={self.reason!r})")

    def __str__(self) -> str:
        fwd, rev = self._costs()
        est = "" if fwd is None else f", forward ~{fwd:.0f}us vs reverse ~{rev:.0f}us"
        return (f"{self.kind}: {self.mode} mode ({self.strategy.value}; n_in={self.n_inputs}, "
                f"n_out={self.n_outputs}, {self.nodes} nodes{est}): {self.reason}")


_LAST = threading.local()


def last_schedule() -> Schedule | None:
    """The latest decision made in this thread (tape methods and functional transforms)."""
    return getattr(_LAST, "value", None)


def _remember(tape, sched):
    _LAST.value = sched
    if tape is not None:
        tape.last_schedule = sched
    return sched


def _itemsize(dtype) -> int:
    try:
        return int(dtype.itemsize)
    except AttributeError:
        return 8


def _size(shape) -> int:
    return math.prod(shape) if shape else 1


class GraphStats:
    """What the cost model reads from the relevant part of a recorded graph: the node count and
    the tangent/cotangent elements per direction now; the work (op cost estimates plus elements
    touched) when first needed. Keeps only shapes and parameters, never the saved arrays."""

    def __init__(self, nodes):
        self.nodes = len(nodes)
        self._metas = [(n.op, n.out_meta, n.in_meta, n.params,
                        tuple(p is not None for p in n.parents)) for n in nodes]
        self.elements = sum(_size(n.out_meta[0]) for n in nodes)
        self._work = None

    @property
    def work(self) -> float:
        """Estimated us of one direction through these nodes: op flops plus elements touched."""
        if self._work is None:
            flops = 0.0
            elems = 0
            for op, out_meta, in_meta, params, linked in self._metas:
                try:
                    c = op.estimate_cost(out_meta, in_meta, params)
                except Exception:  # a user cost function that cannot read metas: size-based
                    c = float(_size(out_meta[0]))
                flops += c
                elems += _size(out_meta[0]) + sum(
                    _size(m[0]) for m, lk in zip(in_meta, linked) if lk)
            self._work = flops * T_FLOP + elems * T_ELEM
            self._metas = None
        return self._work


class HybridScheduler:
    """Decides forward/reverse/mixed from a SchedulerConfig and the recorded graph."""

    def __init__(self, config: SchedulerConfig | None = None):
        self.config = SchedulerConfig.coerce(config, "HybridScheduler")

    # ---- estimates -------------------------------------------------------------------------
    def chunk_for(self, stats: GraphStats, directions: int, itemsize: int) -> int:
        if self.config.chunk_size is not None:
            return max(1, min(int(self.config.chunk_size), max(directions, 1)))
        budget = self.config.memory_budget_mb * (1 << 20) / max(itemsize, 1)
        per_dir = max(stats.elements, 1)
        return max(1, min(max(directions, 1), int(budget // per_dir)))

    def estimate(self, stats: GraphStats, n: int, m: int, itemsize: int):
        """(forward us, reverse us, forward chunk, reverse chunk) for an m x n Jacobian."""
        cf = self.chunk_for(stats, n, itemsize)
        cr = self.chunk_for(stats, m, itemsize)
        sweeps_f = math.ceil(max(n, 1) / cf)
        sweeps_r = math.ceil(max(m, 1) / cr)
        work = stats.work
        fwd = (n * work * K_FWD + sweeps_f * stats.nodes * T_CALL + n * (n + m) * T_ELEM)
        rev = (m * work * K_REV + sweeps_r * stats.nodes * T_CALL * K_CALL_REV
               + m * (m + n) * T_ELEM + cr * stats.elements * T_LIVE)
        return fwd, rev, cf, cr

    # ---- decisions -------------------------------------------------------------------------
    def plan_jacobian(self, stats: GraphStats, n: int, m: int, itemsize: int = 8,
                      kind="jacobian", mode=None) -> Schedule:
        """Pick the Jacobian's mode. ``mode`` (an explicit per-call request) beats the config."""
        cfg = self.config
        strategy = cfg.strategy if mode is None else SchedulingStrategy.parse(
            mode, f"GradientTape.{kind}", "mode")
        ratio = m / max(n, 1)

        def estimator():
            return self.estimate(stats, n, m, itemsize)[:2]

        def make(mode_, reason):
            chunk = self.chunk_for(stats, n if mode_ == "forward" else m, itemsize)
            return Schedule(kind, mode_, strategy, reason, n, m, stats.nodes, chunk, estimator)

        if strategy is SchedulingStrategy.FORWARD:
            return make("forward", "strategy FORWARD requested")
        if strategy is SchedulingStrategy.REVERSE:
            return make("reverse", "strategy REVERSE requested")
        tag = "MIXED (a Jacobian is one mode; mixed applies to Hessians): " \
            if strategy is SchedulingStrategy.MIXED else ""
        if ratio >= cfg.forward_mode_threshold:
            return make("forward", f"{tag}output/input size ratio {ratio:.3g} >= "
                                   f"forward_mode_threshold {cfg.forward_mode_threshold:g}")
        if ratio <= cfg.reverse_mode_threshold:
            return make("reverse", f"{tag}output/input size ratio {ratio:.3g} <= "
                                   f"reverse_mode_threshold {cfg.reverse_mode_threshold:g}")
        fwd, rev = estimator()
        sched = make("forward", f"{tag}estimated forward cost {fwd:.0f}us <= reverse "
                                f"{rev:.0f}us") if fwd <= rev else \
            make("reverse", f"{tag}estimated reverse cost {rev:.0f}us < forward {fwd:.0f}us")
        sched._estimates = (fwd, rev)
        return sched

    def plan_hessian(self, n: int, kind="hessian") -> Schedule:
        """Forward-over-reverse (MIXED, or AUTO with mixed mode enabled), reverse-over-reverse
        (REVERSE, or AUTO without mixed mode), forward-over-forward (FORWARD)."""
        cfg = self.config
        s = cfg.strategy
        if s is SchedulingStrategy.FORWARD:
            mode, why = "forward-over-forward", "strategy FORWARD requested"
        elif s is SchedulingStrategy.REVERSE:
            mode, why = "reverse-over-reverse", "strategy REVERSE requested"
        elif s is SchedulingStrategy.MIXED:
            mode, why = "forward-over-reverse", "strategy MIXED: forward mode over the gradient"
        elif cfg.enable_mixed_mode:
            mode, why = "forward-over-reverse", (
                "AUTO with mixed mode: a gradient costs one reverse sweep, and its n-direction "
                "Jacobian one batched forward sweep over it (no second tape)")
        else:
            mode, why = "reverse-over-reverse", "AUTO with enable_mixed_mode=False"
        return Schedule(kind, mode, s, why, n_inputs=n, n_outputs=1)


def _scheduler_config(value, tape):
    """GradientTape(scheduler=...): a SchedulerConfig or a strategy name, validated when the tape
    is made (an unknown strategy fails there, not at the first Jacobian); no add-on."""
    return SchedulerConfig.coerce(value, "GradientTape"), None


register_config("scheduler", _scheduler_config)
