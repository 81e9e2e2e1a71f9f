"""GradientMemoryProfiler: memory at labelled points, peaks, leaks, and what the tapes keep.

Where the numbers come from:

* CPU: ``tracemalloc`` (NumPy reports its array buffers there). The profiler starts it when it is
  not already tracing (and stops it again in ``stop_profiling``). Peaks between checkpoints come
  from ``tracemalloc.get_traced_memory()`` with ``reset_peak``.
* GPU: CuPy's default memory pool (``used_bytes``: bytes handed out to arrays, ``total_bytes``:
  bytes the pool holds), a CuPy memory hook for the peak (the pool's used bytes after every
  allocation), and NVML (``import pynvml`` from nvidia-ml-py, when installed) for the device's
  used memory, which includes other processes and the CUDA context.

Leak detection (``detect_leaks``) looks for what should be gone after a training step:

* tapes created while profiling that are still alive: a finished tape that is not the newest, a
  tape still recording that is not the newest, or a tape that holds recorded nodes with saved
  values while not recording (a kept persistent tape holds its whole graph);
* graph nodes that still hold saved values although no live tape can use them (a tape that died
  before ``gradient`` while its outputs are still referenced);
* growth across iterations: live tensors or memory (the pool on a GPU) growing at every
  checkpoint with the same label (or at every checkpoint when all labels differ).

``report()`` prints the checkpoints and a per-op table of the memory the tapes keep: the bytes of
saved arrays (each array counted once) and checkpoint anchors, per op name.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from dataclasses import dataclass, field

from ..backend import Device, default_device
from ..backend.host_pool import POOL as HOST_POOL
from ..errors import ArgumentError
from ..ops.context import new_id
from ..tape import GradientTape, live_tapes
from ..tensor import Tensor

_MB = 1024.0 * 1024.0
@dataclass
class MemorySnapshot:
    """Memory at one ``record_checkpoint``. Bytes are absolute; ``peak_bytes`` is the highest
    value since the previous checkpoint."""

    label: str
    time_s: float
    current_bytes: int
    peak_bytes: int
    # bytes the pool holds: CuPy's on a GPU; on the CPU the traced bytes plus the host pool's
    # cached blocks (autograd_gpu/backend/host_pool.py), which tracemalloc does not see
    pool_total_bytes: int | None = None
    device_used_bytes: int | None = None  # GPU: NVML's used memory of the device
    live_tensors: int = 0
    live_tapes: int = 0
    kept_bytes: int = 0  # bytes of saved values and anchors held by tracked tapes
    kept_by_op: dict = field(default_factory=dict)

    @property
    def current_mb(self) -> float:
        return self.current_bytes / _MB

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / _MB


@dataclass
class LeakItem:
    kind: str  # "tape", "node", "tensor growth", "memory growth"
    description: str
    nbytes: int = 0


@dataclass
class LeakReport:
    """``num_suspicious`` findings, each described in ``items``."""

    num_suspicious: int
    items: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.num_suspicious > 0

    def __str__(self) -> str:
        if not self.items:
            return "LeakReport: nothing suspicious"
        lines = [f"LeakReport: {self.num_suspicious} suspicious"]
        lines += [f"  [{it.kind}] {it.description}" for it in self.items]
        return "\n".join(lines)


class GradientMemoryProfiler:
    """Memory at labelled checkpoints, peaks, leak detection and per-op kept memory.

    ``device``: "cpu" or "cuda[:N]" (default: ``ag.default_device()``). Usable as a context
    manager (``start_profiling`` / ``stop_profiling``)."""

    def __init__(self, device=None, growth_threshold_mb: float = 1.0):
        dev = default_device() if device is None else Device(str(device))
        self.device = dev
        self.gpu = str(dev).startswith("cuda")
        self.growth_threshold_mb = float(growth_threshold_mb)
        self.snapshots: list[MemorySnapshot] = []
        self._ids = (0, None)  # tapes made while profiling have ids in this range (see tape.py)
        self._profiling = False
        self._started_tracemalloc = False
        self._t0 = 0.0
        self._peak = 0
        self._base = 0
        self._pool = None
        self._hook = None
        self._nvml = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start_profiling(self) -> GradientMemoryProfiler:
        """Start measuring (resets earlier checkpoints) and record the checkpoint "start"."""
        if self._profiling:
            self.stop_profiling()
        self.snapshots = []
        self._ids = (new_id(), None)
        if self.gpu:
            self._start_gpu()
        else:
            if not tracemalloc.is_tracing():
                tracemalloc.start()
                self._started_tracemalloc = True
            tracemalloc.reset_peak()
        self._profiling = True
        self._t0 = time.perf_counter()
        cur = self._current()
        self._base = cur
        self._peak = cur
        self.record_checkpoint("start")
        return self

    def stop_profiling(self) -> None:
        if not self._profiling:
            return
        self._profiling = False
        self._ids = (self._ids[0], new_id())
        if self._hook is not None:
            self._hook.__exit__(None, None, None)
            self._hook = None
        if self._started_tracemalloc:
            tracemalloc.stop()
            self._started_tracemalloc = False

    def __enter__(self):
        return self.start_profiling()

    def __exit__(self, *exc):
        self.stop_profiling()
        return False

    def _start_gpu(self) -> None:
        import cupy  # optional dependency (cupy)
        from cupy.cuda import memory_hook  # optional dependency (cupy)

        pool = cupy.get_default_memory_pool()
        self._pool = pool
        outer = self

        class _PeakHook(memory_hook.MemoryHook):
            name = "autograd_gpu_memory_profiler"

            def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
                used = pool.used_bytes()
                if used > outer._peak_interval:
                    outer._peak_interval = used

        self._peak_interval = pool.used_bytes()
        self._hook = _PeakHook()
        self._hook.__enter__()
        try:
            import pynvml  # optional dependency (nvidia-ml-py)

            pynvml.nvmlInit()
            index = self.device.index if getattr(self.device, "index", None) is not None else 0
            self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(index))
        except Exception:  # nvidia-ml-py missing or NVML unusable: pool numbers only
            self._nvml = None

    # ---- measurements ------------------------------------------------------------------------
    def _current(self) -> int:
        if self.gpu:
            return int(self._pool.used_bytes())
        return tracemalloc.get_traced_memory()[0]

    def _interval_peak(self) -> int:
        """Highest bytes since the last call (then restarts the interval)."""
        if self.gpu:
            p = max(self._peak_interval, self._current())
            self._peak_interval = self._current()
            return int(p)
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        return p

    def _require(self, what: str) -> None:
        if not self._profiling:
            raise ArgumentError(
                f"GradientMemoryProfiler.{what}: expected a profiler that is profiling; call "
                "start_profiling() first"
            )

    def record_checkpoint(self, label: str) -> MemorySnapshot:
        """Measure now under ``label`` (labels may repeat: one per iteration, for instance)."""
        self._require("record_checkpoint")
        if not isinstance(label, str):
            raise ArgumentError(
                f"GradientMemoryProfiler.record_checkpoint: argument 'label' expected a str, "
                f"got {label!r}"
            )
        peak = self._interval_peak()
        cur = self._current()
        self._peak = max(self._peak, peak, cur)
        table = _kept_table(self._live_tapes())
        tensors = _count_tensors()
        snap = MemorySnapshot(
            label=label, time_s=time.perf_counter() - self._t0, current_bytes=cur,
            peak_bytes=max(peak, cur), live_tensors=tensors,
            live_tapes=len(self._live_tapes()),
            kept_bytes=sum(r["kept_bytes"] for r in table.values()), kept_by_op=table,
        )
        if self.gpu:
            snap.pool_total_bytes = int(self._pool.total_bytes())
            if self._nvml is not None:
                nv, handle = self._nvml
                snap.device_used_bytes = int(nv.nvmlDeviceGetMemoryInfo(handle).used)
        else:
            snap.pool_total_bytes = cur + HOST_POOL.cached_bytes()
        self.snapshots.append(snap)
        self._interval_peak()  # the next interval starts now, without this call's own scans
        return snap

    def checkpoint(self, label: str) -> MemorySnapshot:
        """The latest snapshot recorded under ``label``."""
        for s in reversed(self.snapshots):
            if s.label == label:
                return s
        raise ArgumentError(
            f"GradientMemoryProfiler: no checkpoint labelled {label!r}; recorded: "
            f"{sorted({s.label for s in self.snapshots})}"
        )

    def get_memory_delta(self, a: str, b: str) -> float:
        """Memory at checkpoint ``b`` minus memory at checkpoint ``a``, in MB (1 MB = 2**20 B)."""
        return (self.checkpoint(b).current_bytes - self.checkpoint(a).current_bytes) / _MB

    def get_peak_delta(self, a: str, b: str) -> float:
        """Highest memory between checkpoints ``a`` and ``b`` above the memory at ``a``, in MB."""
        sa, sb = self.checkpoint(a), self.checkpoint(b)
        i, j = self.snapshots.index(sa), self.snapshots.index(sb)
        if j < i:
            raise ArgumentError(
                f"GradientMemoryProfiler.get_peak_delta: checkpoint {b!r} was recorded before {a!r}"
            )
        peak = max(s.peak_bytes for s in self.snapshots[i + 1: j + 1]) if j > i else \
            sa.current_bytes
        return (peak - sa.current_bytes) / _MB

    @property
    def peak_mb(self) -> float:
        """Highest memory seen since ``start_profiling``, above the memory at the start, in MB
        (up to the last checkpoint; call ``record_checkpoint`` to include the latest work)."""
        return (self._peak - self._base) / _MB

    # ---- what the tapes keep -----------------------------------------------------------------
    def _live_tapes(self) -> list:
        """The tapes made while profiling that are still alive."""
        first, last = self._ids
        return [t for t in live_tapes(first) if last is None or t.id < last]

    def op_memory_table(self, tapes=None) -> list:
        """Rows (dicts: op, nodes, kept_bytes, saved_bytes, anchor_bytes, dropped), largest first,
        for ``tapes`` (default: the live tapes created while profiling)."""
        if tapes is None:
            tapes = self._live_tapes()
        elif not isinstance(tapes, (list, tuple)):
            tapes = [tapes]
        table = _kept_table(tapes)
        rows = [dict(op=k, **v) for k, v in table.items()]
        rows.sort(key=lambda r: (-r["kept_bytes"], r["op"]))
        return rows

    # ---- leaks -------------------------------------------------------------------------------
    def detect_leaks(self) -> LeakReport:
        """Look for tapes, nodes and growth that suggest memory kept by mistake (see the module
        docstring). Runs the garbage collector first."""
        self._require("detect_leaks")
        gc.collect()
        items = _tape_leaks(self._live_tapes())
        items += _orphan_node_leaks()
        items += _growth_leaks(self.snapshots, self.growth_threshold_mb * _MB,
                               "CuPy pool" if self.gpu else "memory (tracemalloc)")
        return LeakReport(len(items), items)

    # ---- report ------------------------------------------------------------------------------
    def report(self) -> str:
        """Checkpoints, peak, and the per-op table of memory kept by tapes (at the checkpoint
        where the tapes kept the most, and now)."""
        src = "CuPy pool" + (" + NVML" if self._nvml else "") if self.gpu else "tracemalloc"
        lines = [f"GradientMemoryProfiler on {self.device} ({src})"]
        if self.snapshots:
            base = self.snapshots[0].current_bytes
            lines.append(f"{'checkpoint':<24}{'MB':>10}{'delta MB':>10}{'peak MB':>10}"
                         f"{'kept MB':>10}{'tensors':>9}{'tapes':>7}")
            for s in self.snapshots:
                delta = (s.current_bytes - base) / _MB
                lines.append(
                    f"{s.label[:23]:<24}{s.current_mb:>10.3f}{delta:>10.3f}"
                    f"{s.peak_mb:>10.3f}{s.kept_bytes / _MB:>10.3f}{s.live_tensors:>9}"
                    f"{s.live_tapes:>7}"
                )
            lines.append(f"peak above start: {self.peak_mb:.3f} MB")
            top = max(self.snapshots, key=lambda s: s.kept_bytes)
            if top.kept_bytes:
                lines.append(f"memory kept by tapes at '{top.label}':")
                lines += _format_table(top.kept_by_op)
        if not self.gpu and HOST_POOL.enabled:
            lines.append(f"host pool: {HOST_POOL.cached_bytes() / _MB:.3f} MB of freed blocks "
                         "cached for reuse (not in tracemalloc's figures)")
        live = _kept_table(self._live_tapes())
        if any(r["nodes"] for r in live.values()):
            lines.append("memory kept by live tapes now:")
            lines += _format_table(live)
        return "\n".join(lines)



def _tape_leaks(tapes) -> list:
    """Tapes alive that should not be: finished but still holding nodes, used but not the
    newest, or recording while newer tapes exist."""
    items: list = []
    newest = tapes[-1] if tapes else None
    for t in tapes:
        kept = _kept_table([t])
        nbytes = sum(r["kept_bytes"] for r in kept.values())
        nodes = len(t._nodes)
        state = "persistent" if t.persistent else "non-persistent"
        if nodes and not t.is_recording:
            items.append(LeakItem(
                "tape", f"tape id={t.id} ({state}, not recording) is still alive holding "
                f"{nodes} recorded nodes and {nbytes / _MB:.3f} MB of saved values; drop "
                "the reference (or call tape.reset()) when its gradients are taken", nbytes))
        elif t is not newest and t._used:
            items.append(LeakItem(
                "tape", f"tape id={t.id} ({state}) finished its gradient() but is still "
                "referenced (only the newest tape should be alive after a step)"))
        elif t is not newest and t.is_recording:
            items.append(LeakItem(
                "tape", f"tape id={t.id} is still recording although newer tapes exist: "
                "it records every op on the values it tracks and never releases them"))
    return items


def _orphan_node_leaks() -> list:
    """Graph nodes holding saved values for tapes that no longer exist."""
    live_ids = {obj.id for obj in gc.get_objects()
                if issubclass(type(obj), GradientTape) and not obj._used}
    orphan_nodes, orphan_bytes, seen = 0, 0, set()
    for obj in _live_nodes():
        if obj.saved is None or obj.op is None or not obj.tapes or obj.tapes & live_ids:
            continue
        b = 0
        for s in obj.saved:
            if hasattr(s, "nbytes") and hasattr(s, "dtype") and id(s) not in seen:
                seen.add(id(s))
                b += int(s.nbytes)
        if b:
            orphan_nodes += 1
            orphan_bytes += b
    if not orphan_nodes:
        return []
    return [LeakItem(
        "node", f"{orphan_nodes} graph nodes hold {orphan_bytes / _MB:.3f} MB of saved "
        "values for tapes that no longer exist (a tape dropped before gradient() while "
        "its outputs are still referenced)", orphan_bytes)]


def _growth_leaks(snapshots, threshold_bytes: float, where: str) -> list:
    """Live tensors or memory that grow at every repeat of a checkpoint label (or at every
    checkpoint when no label repeats)."""
    snaps = [s for s in snapshots if s.label != "start"]
    groups: dict = {}
    for s in snaps:
        groups.setdefault(s.label, []).append(s)
    series = [(lab, g) for lab, g in groups.items() if len(g) >= 3]
    if not series and len(snaps) >= 3 and len(groups) == len(snaps):
        series = [("every checkpoint", snaps)]
    items = []
    for lab, g in series:
        n = len(g) - 1
        dt = [b.live_tensors - a.live_tensors for a, b in zip(g, g[1:])]
        if all(d > 0 for d in dt):
            items.append(LeakItem(
                "tensor growth", f"live tensors grow at every checkpoint '{lab}': "
                f"{g[0].live_tensors} -> {g[-1].live_tensors} over {n} iterations "
                f"({sum(dt) / n:.1f} per iteration)"))
        dm = [b.current_bytes - a.current_bytes for a, b in zip(g, g[1:])]
        total = g[-1].current_bytes - g[0].current_bytes
        if all(d > 0 for d in dm) and total > threshold_bytes:
            items.append(LeakItem(
                "memory growth", f"{where} grows at every checkpoint '{lab}': "
                f"+{total / _MB:.3f} MB over {n} iterations ({total / n / _MB:.3f} MB per "
                "iteration)", total))
    return items


def _kept_table(tapes) -> dict:
    """op name -> {nodes, kept_bytes, saved_bytes, anchor_bytes, dropped}: each array once."""
    seen: set = set()
    table: dict = {}
    for tape in tapes:
        for node in list(tape._nodes):
            if node.op is None:
                continue
            row = table.get(node.op.name)
            if row is None:
                row = table[node.op.name] = {"nodes": 0, "kept_bytes": 0, "saved_bytes": 0,
                                             "anchor_bytes": 0, "dropped": 0}
            row["nodes"] += 1
            saved = node.saved
            if saved is None:
                if node.extra is not None:
                    row["dropped"] += 1
            else:
                for s in saved:
                    if hasattr(s, "nbytes") and hasattr(s, "dtype") and id(s) not in seen:
                        seen.add(id(s))
                        row["saved_bytes"] += int(s.nbytes)
            anchor = getattr(node.extra, "value", None)
            if anchor is not None and id(anchor) not in seen:
                seen.add(id(anchor))
                row["anchor_bytes"] += int(anchor.nbytes)
            row["kept_bytes"] = row["saved_bytes"] + row["anchor_bytes"]
    return table



def _format_table(table: dict) -> list:
    rows = sorted(table.items(), key=lambda kv: (-kv[1]["kept_bytes"], kv[0]))
    out = [f"  {'op':<16}{'nodes':>7}{'kept MB':>10}{'saved MB':>10}{'anchors MB':>11}"
           f"{'dropped':>9}"]
    for name, r in rows:
        out.append(f"  {name[:15]:<16}{r['nodes']:>7}{r['kept_bytes'] / _MB:>10.3f}"
                   f"{r['saved_bytes'] / _MB:>10.3f}{r['anchor_bytes'] / _MB:>11.3f}"
                   f"{r['dropped']:>9}")
    total = sum(r["kept_bytes"] for r in table.values())
    out.append(f"  {'total':<16}{sum(r['nodes'] for r in table.values()):>7}"
               f"{total / _MB:>10.3f}")
    return out


def _live_nodes() -> list:
    """Every graph node a live tensor or tape can reach. Nodes themselves may be invisible to
    gc.get_objects() (the compiled node is not GC-tracked: autograd_gpu/_native.c), so they are
    found from the tensors and tapes, which are, walking parents iteratively."""
    seen: set = set()
    stack = []
    for obj in gc.get_objects():
        t = type(obj)
        if issubclass(t, Tensor):
            if obj._node is not None:
                stack.append(obj._node)
        elif issubclass(t, GradientTape):
            stack.extend(obj._nodes)
    out = []
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        out.append(n)
        stack.extend(p for p in n.parents if p is not None and p not in seen)
    return out


def _count_tensors() -> int:
    # type(), not isinstance(): isinstance reads __class__, which lazy proxies answer by
    # importing modules
    return sum(1 for o in gc.get_objects() if issubclass(type(o), Tensor))


__all__ = ["GradientMemoryProfiler", "LeakReport", "LeakItem", "MemorySnapshot"]
