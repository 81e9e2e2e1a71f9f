"""The op profiler: time, calls and bytes of every op, as a table or a Chrome trace.

::

    with ag.profiler.profile(sync=True) as prof:
        with ag.GradientTape() as tape:
            loss = model(x).sum()
        tape.gradient(loss, model.parameters())
    print(prof.table())
    prof.export_chrome_trace("trace.json")      # open in https://ui.perfetto.dev

It installs a hook on ``registry.apply`` (``ops.context.push_hook``), so it sees every primitive
run in this thread: forward calls (phase "forward") and the reverse rules run by the tape (phase
"vjp", whose own primitive calls nest inside). GPU work is asynchronous: with ``sync=False`` the
times are host launch times; ``sync=True`` synchronises the device before and after each op so
that the times are the op's device time (and the run is slower).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass

from ..ops.context import pop_hook, push_hook
from ..tensor import Tensor


@dataclass
class OpStats:
    """Totals for one (op, phase): ``total_ms`` includes nested ops, ``self_ms`` excludes them."""

    name: str
    phase: str
    calls: int = 0
    total_ms: float = 0.0
    self_ms: float = 0.0
    bytes: int = 0

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0


def _nbytes(result) -> int:
    if isinstance(result, Tensor):
        return int(result._data.nbytes)
    if isinstance(result, (tuple, list)):
        return sum(_nbytes(r) for r in result)
    return int(getattr(result, "nbytes", 0) or 0)


def _shapes(args):
    out = []
    for a in args:
        if isinstance(a, Tensor) or hasattr(a, "shape"):
            out.append(list(a.shape))
    return out


class Profile:
    """Records ops while active. Use through ``profile(...)``."""

    def __init__(self, sync: bool = False, record_shapes: bool = True):
        self.sync = bool(sync)
        self.record_shapes = bool(record_shapes)
        self.events: list[dict] = []
        self.stats: dict[tuple[str, str], OpStats] = {}
        self._stack: list[list[float]] = []  # per open op: [child time]
        self._t0 = 0.0
        self._active = False
        self._tid = threading.get_ident()
        self.wall_ms = 0.0

    # the hook ---------------------------------------------------------------------------------
    def __call__(self, phase, op, args, params, call):
        sync = self.sync
        bk = None
        if sync:
            bk = _backend_of(args)
            if bk is not None:
                bk.synchronize()
        self._stack.append([0.0])
        start = time.perf_counter()
        try:
            result = call(args, params)
        finally:
            if sync and bk is not None:
                bk.synchronize()
            end = time.perf_counter()
            child = self._stack.pop()[0]
        dur = (end - start) * 1000.0
        if self._stack:
            self._stack[-1][0] += dur
        key = (op.name, phase)
        st = self.stats.get(key)
        if st is None:
            st = self.stats[key] = OpStats(op.name, phase)
        nb = _nbytes(result)
        st.calls += 1
        st.total_ms += dur
        st.self_ms += dur - child
        st.bytes += nb
        ev = {"name": op.name if phase == "forward" else f"{op.name}.{phase}", "cat": phase,
              "ph": "X", "ts": (start - self._t0) * 1e6, "dur": dur * 1000.0, "pid": os.getpid(),
              "tid": self._tid, "args": {"bytes": nb}}
        if self.record_shapes:
            inputs = args if phase == "forward" else args[:1]
            ev["args"]["shapes"] = _shapes(inputs)
            if params:
                ev["args"]["params"] = {k: repr(v) for k, v in params.items()}
        self.events.append(ev)
        return result

    def __enter__(self) -> Profile:
        self._t0 = time.perf_counter()
        self._tid = threading.get_ident()
        self._active = True
        push_hook(self)
        return self

    def __exit__(self, *exc):
        pop_hook(self)
        self._active = False
        self.wall_ms = (time.perf_counter() - self._t0) * 1000.0
        return False

    # results ----------------------------------------------------------------------------------
    def key_averages(self) -> list[OpStats]:
        """Per (op, phase) totals, sorted by total time, largest first."""
        return sorted(self.stats.values(), key=lambda s: (-s.total_ms, s.name, s.phase))

    def total_ms(self, name: str, phase: str = "forward") -> float:
        st = self.stats.get((name, phase))
        return st.total_ms if st else 0.0

    def calls(self, name: str, phase: str = "forward") -> int:
        st = self.stats.get((name, phase))
        return st.calls if st else 0

    def table(self, limit: int | None = None) -> str:
        """A text table of ops sorted by total time."""
        rows = self.key_averages()
        if limit is not None:
            rows = rows[:limit]
        all_self = sum(s.self_ms for s in self.stats.values()) or 1.0
        head = (f"{'op':<22} {'phase':<8} {'calls':>7} {'total ms':>10} {'self ms':>10} "
                f"{'self %':>7} {'mean us':>9} {'MB out':>9}")
        lines = [head, "-" * len(head)]
        for s in rows:
            lines.append(
                f"{s.name[:22]:<22} {s.phase:<8} {s.calls:>7} {s.total_ms:>10.3f} "
                f"{s.self_ms:>10.3f} {100 * s.self_ms / all_self:>6.1f}% "
                f"{1000 * s.mean_ms:>9.1f} {s.bytes / 2**20:>9.3f}"
            )
        lines.append(f"{len(self.events)} op calls, {self.wall_ms:.3f} ms wall, "
                     f"sync={'on' if self.sync else 'off'}")
        return "\n".join(lines)

    def chrome_trace(self) -> dict:
        """The trace as a dict in the Trace Event Format (complete 'X' events, microseconds)."""
        meta = [{"name": "thread_name", "ph": "M", "pid": os.getpid(), "tid": self._tid,
                 "args": {"name": "autograd_gpu ops"}}]
        return {"traceEvents": meta + self.events, "displayTimeUnit": "ms",
                "otherData": {"sync": self.sync, "library": "autograd_gpu"}}

    def export_chrome_trace(self, path) -> str:
        """Write the trace as JSON, readable by Perfetto (ui.perfetto.dev) and chrome://tracing."""
        path = os.fspath(path)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.chrome_trace(), f)
        return path


def _backend_of(args):
    for a in args:
        if isinstance(a, Tensor):
            return a._bk
        if isinstance(a, (tuple, list)):
            bk = _backend_of(a)
            if bk is not None:
                return bk
    return None


def profile(sync: bool = False, record_shapes: bool = True) -> Profile:
    """Context manager that profiles every op run in this thread inside it."""
    return Profile(sync=sync, record_shapes=record_shapes)


__all__ = ["OpStats", "Profile", "profile"]
