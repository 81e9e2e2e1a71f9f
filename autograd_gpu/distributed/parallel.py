"""DataParallel: every rank holds the same model, sweeps its own part of the batch, and gets
the gradient averaged over the ranks, reduced while its own sweep is still running.

How a step goes (``dp.gradient(tape, loss)``):

1. The model's parameters are laid out in buckets of about ``bucket_mb`` MiB, in the order the
   sweep finishes their gradients (reverse recording order: taken from rank 0's first step and
   kept; before that, reverse registration order). Every rank has the same buckets.
2. The tape's add-on hook (``TapeAddon.watch_gradients``) reports each parameter's gradient as
   soon as the sweep has finished it; it is copied into its bucket, and once a bucket is full its
   allreduce starts at once (buckets start in bucket order on every rank, which the transports
   need), so the communication runs while the sweep computes the rest. Parameters the step did
   not use are reported before the sweep (zeros in the bucket: nothing is searched for at the
   end). Each bucket also carries one "used" flag per parameter, so a parameter no rank used
   comes back as None (as from a single process) without another collective.
3. The tape's ``finish`` hook waits for the buckets (against the deadline) and returns views of
   them divided by the world size.

``with dp.no_sync():`` gradient() reduces nothing: it returns this rank's gradients and adds them
to an accumulator, which the next synchronised gradient() adds in before reducing (gradient
accumulation over micro-batches, as DDP's no_sync). Under AMP the loss-scaled gradients are
reduced and unscaled after; the overflow flag is agreed over the ranks (a MAX allreduce) and
the loss scaler is advanced with the agreed flag, so every rank skips the same steps and keeps
the same scale. Under ``DeterministicConfig`` WARN or STRICT the sum runs in rank order
(alltoall in rank order, add, allgather): the same bits on every rank and in every run.
"""

from __future__ import annotations

import contextlib
import numbers
import time

import numpy as np

from .. import dtypes as _dt
from ..addons import TapeAddon
from ..amp import AmpGradients
from ..errors import ArgumentError, TapeError, describe
from ..tape import GradientTape
from ..tensor import Tensor, Variable
from .comm import DistributedError
from .group import Group, world

__all__ = ["DataParallel", "DEFAULT_BUCKET_MB"]

# Measured on the 2-core VM (MPICH 5.0 shared memory, 2 ranks, float32): allreduce bandwidth
# peaks at 1-4 MB and falls beyond 16 MB; DDP's 25 MB suits NCCL on GPUs
DEFAULT_BUCKET_MB = {"cpu": 2.0, "cuda": 25.0}


def _named_parameters(model, where: str) -> list:
    if hasattr(model, "named_parameters") and callable(model.named_parameters):
        named = list(model.named_parameters())
    elif isinstance(model, Variable):
        named = [(model.name or "0", model)]
    elif isinstance(model, dict):
        named = list(model.items())
    elif isinstance(model, (list, tuple)):
        named = [(f"[{i}] {p.name}" if getattr(p, "name", None) else f"[{i}]", p)
                 for i, p in enumerate(model)]
    else:
        raise ArgumentError(f"{where}: argument 'model' expected an ag.nn.Module, a Variable, or "
                            f"a list or dict of Variables, got {describe(model)}")
    for name, p in named:
        if not isinstance(p, Variable):
            raise ArgumentError(f"{where}: parameter {name!r} expected a Variable (ag.nn."
                                f"Parameter), got {describe(p)}")
        if not _dt.is_floating(p.dtype):
            raise ArgumentError(f"{where}: parameter {name!r} expected a floating dtype, got "
                                f"{_dt.name(p.dtype)}")
    if not named:
        raise ArgumentError(f"{where}: the model has no parameters")
    seen: dict = {}
    for name, p in named:
        if id(p) in seen:
            raise ArgumentError(f"{where}: parameter {name!r} is the same Variable as "
                                f"{seen[id(p)]!r}; list each parameter once")
        seen[id(p)] = name
    return named


class _Bucket:
    """Parameters ``members`` (indices, in ready order) of one device and dtype in one flat
    buffer: their gradients, then one used-flag per member, then zeros up to a multiple of the
    world size (the fixed-order sum cuts the buffer in equal chunks)."""

    def __init__(self, index: int, key):
        self.index = index
        self.key = key  # (device, dtype)
        self.members: list[int] = []
        self.offsets: list[int] = []
        self.numel = 0

    def add(self, i: int, n: int) -> None:
        self.members.append(i)
        self.offsets.append(self.numel)
        self.numel += n

    def close(self, world_size: int) -> None:
        self.flag_offset = self.numel
        used = self.numel + len(self.members)
        self.total = used + (-used % world_size)

    def describe(self, count: int, param_names: list) -> None:
        """``what``: the bucket as its collective's label names it (written once per plan, not
        at each launch)."""
        names = [param_names[i] for i in self.members]
        shown = ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")
        dtype = self.key[1]
        self.what = (f"bucket {self.index + 1} of {count} ({shown}; "
                     f"{_size(self.total * dtype.itemsize)} of {_dt.name(dtype)})")


def _plan(order, params, names, cap_bytes: float, world_size: int) -> tuple[list, list, list]:
    """(buckets, bucket index per parameter, position in its bucket per parameter); ``names``:
    the parameters' names, for the buckets' labels."""
    buckets: list[_Bucket] = []
    cur = None
    for i in order:
        p = params[i]
        key = (p.device, np.dtype(p.dtype))
        nbytes = p.size * p.dtype.itemsize
        if cur is None or cur.key != key or (cur.members and
                                              (cur.numel * p.dtype.itemsize + nbytes > cap_bytes)):
            cur = _Bucket(len(buckets), key)
            buckets.append(cur)
        cur.add(i, p.size)
    where = [0] * len(params)
    slot = [0] * len(params)
    for b in buckets:
        b.close(world_size)
        b.describe(len(buckets), names)
        for k, i in enumerate(b.members):
            where[i] = b.index
            slot[i] = k
    return buckets, where, slot


class DataParallel:
    """Data-parallel training of ``model`` over the ranks of the job (``dist.init`` first).

    ``DataParallel(model, bucket_mb=None)``: ``model`` an ``ag.nn.Module`` (or a list or dict of
    Variables). Rank 0's parameter values are broadcast to every rank, after checking that every
    rank has the same parameter names, shapes and dtypes (``DistributedError`` naming the first
    difference). ``bucket_mb``: the size of a communication bucket in MiB (default 2 on the CPU,
    25 on a GPU). ``deterministic``: sum in rank order (default: when the tape has a
    DeterministicConfig in WARN or STRICT mode).

    ``grads = dp.gradient(tape, loss)``: the gradients of ``loss`` with respect to the model's
    parameters (in ``parameters()`` order), averaged over the ranks; None for a parameter no
    rank used. Every rank calls it once per step.

    ``dp.last_step``: figures of the last synchronised step: ``buckets``, ``bytes``,
    ``sweep_s`` (until the tape's finish), ``exposed_s`` (waiting for the buckets after the
    sweep: the communication the backward did not hide), ``total_s``, ``launch_s`` (each
    bucket's launch, from the start of the step) and ``filled_at_end`` (parameters whose first
    reader the sweep never reached, so they were reported only at the end).
    """

    def __init__(self, model, bucket_mb: float | None = None, *,
                 deterministic: bool | None = None):
        where = "DataParallel"
        self.group: Group = world(where)
        self.module = model
        self._named = _named_parameters(model, where)
        self.params = [p for _, p in self._named]
        if bucket_mb is not None and (isinstance(bucket_mb, bool)
                                      or not isinstance(bucket_mb, numbers.Real)
                                      or not bucket_mb > 0 or bucket_mb == float("inf")):
            raise ArgumentError(f"{where}: argument 'bucket_mb' expected a number of MiB > 0 or "
                                f"None, got {bucket_mb!r}")
        if deterministic is not None and not isinstance(deterministic, bool):
            raise ArgumentError(f"{where}: argument 'deterministic' expected a bool or None, "
                                f"got {deterministic!r}")
        self.bucket_mb = bucket_mb
        self.deterministic = deterministic
        self._check_same_model()
        self._broadcast_parameters()
        order = list(range(len(self.params)))[::-1]  # until rank 0's first step says better
        self._set_plan(order)
        self._plan_settled = self.group.size == 1
        self._sync = True
        self._acc: list | None = None
        self._acc_skipped = False
        self.steps = 0
        self.last_step: dict = {}

    # ---- set-up ------------------------------------------------------------------------------
    def _signature(self) -> list:
        return [(n, tuple(p.shape), _dt.name(p.dtype), p.device.type) for n, p in self._named]

    def _check_same_model(self) -> None:
        g = self.group
        if g.size == 1:
            return
        sigs = g.allgather_object(self._signature(), "DataParallel: parameter check")
        ref = sigs[0]
        for r in range(1, g.size):
            diff = _first_difference(ref, sigs[r], r)
            if diff:
                raise DistributedError(f"DataParallel: the model differs between ranks: {diff}")

    def _broadcast_parameters(self) -> None:
        """Rank 0's values to every rank: one broadcast per (device, dtype) group."""
        g = self.group
        if g.size == 1:
            return
        groups: dict = {}
        for p in self.params:
            groups.setdefault((p.device, np.dtype(p.dtype)), []).append(p)
        for (_, dtype), ps in groups.items():
            xp = ps[0]._bk.xp
            flat = xp.empty(sum(p.size for p in ps), dtype=dtype)
            off = 0
            for p in ps:
                flat[off:off + p.size] = p._data.reshape(-1)
                off += p.size
            comm = g.comm_for(flat, "DataParallel")
            work = g.launch(lambda: comm.broadcast(flat, 0), "DataParallel: broadcast of rank "
                            f"0's parameters ({len(ps)} {dtype} parameters)")
            g.wait([work])
            if g.rank != 0:
                off = 0
                for p in ps:
                    p._data = flat[off:off + p.size].reshape(p.shape).copy()
                    off += p.size

    def _set_plan(self, order) -> None:
        cap = self.bucket_mb
        if cap is None:
            cap = DEFAULT_BUCKET_MB["cpu" if self.params[0].device.type == "cpu" else "cuda"]
        names = [n for n, _ in self._named]
        self.buckets, self._bucket_of, self._slot_of = _plan(order, self.params, names,
                                                             cap * 2**20, self.group.size)

    # ---- the public interface ----------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def parameters(self) -> list:
        return list(self.params)

    def named_parameters(self) -> list:
        return list(self._named)

    @contextlib.contextmanager
    def no_sync(self):
        """gradient() inside reduces nothing and accumulates this rank's gradients; the first
        gradient() after it reduces the sum (gradient accumulation)."""
        was, self._sync = self._sync, False
        try:
            yield self
        finally:
            self._sync = was

    def gradient(self, tape, loss, output_gradients=None, unconnected_gradients="none") -> list:
        """The gradients of ``loss`` with respect to ``parameters()``, averaged over the ranks
        (see the class docstring); ``tape``: the GradientTape that recorded ``loss``."""
        if not isinstance(tape, GradientTape):
            raise ArgumentError(f"DataParallel.gradient: argument 'tape' expected a "
                                f"GradientTape, got {describe(tape)}")
        self.group.check_usable("DataParallel.gradient")
        addon = next((a for a in tape.addons
                      if isinstance(a, _ReduceAddon) and a.dp is self), None)
        if addon is None:
            addon = tape.add_addon(_ReduceAddon(self))
        for p in self.params:
            if p._node is None:  # never read by any tape: unused, but a valid source
                tape.watch(p)
        addon.step = _Step(self, tape, self._sync)
        try:
            return tape.gradient(loss, self.params, output_gradients=output_gradients,
                                 unconnected_gradients=unconnected_gradients)
        finally:
            addon.step = None

    # ---- after a synchronised step -----------------------------------------------------------
    def _settle_plan(self, order: list) -> None:
        """Rank 0's ready order of the first step becomes every rank's bucket order."""
        g = self.group
        order = g.bcast_object(order, 0, "DataParallel: bucket order from rank 0's first step")
        if sorted(order) != list(range(len(self.params))):
            raise DistributedError(f"DataParallel: rank 0's ready order {order[:8]}... is not a "
                                   "permutation of the parameters")
        self._set_plan(order)
        self._plan_settled = True


def _size(nbytes: int) -> str:
    if nbytes < 2**20:
        return f"{nbytes / 2**10:.1f} KiB"
    return f"{nbytes / 2**20:.2f} MiB"


def _first_difference(ref: list, other: list, r: int) -> str | None:
    for k, (a, b) in enumerate(zip(ref, other)):
        if a != b:
            return (f"parameter {k} is {a[0]!r} (shape {a[1]}, {a[2]}, {a[3]}) on rank 0 but "
                    f"{b[0]!r} (shape {b[1]}, {b[2]}, {b[3]}) on rank {r}")
    if len(ref) != len(other):
        longer, n = (ref, 0) if len(ref) > len(other) else (other, r)
        k = min(len(ref), len(other))
        return (f"rank 0 has {len(ref)} parameters, rank {r} has {len(other)} (the first one "
                f"only rank {n} has: {longer[k][0]!r})")
    return None


class _ReduceAddon(TapeAddon):
    """The tape add-on of one DataParallel: inert unless ``dp.gradient`` armed it (``step``)."""

    kind = "data_parallel"

    def __init__(self, dp: DataParallel):
        self.dp = dp
        self.step: _Step | None = None

    def watch_gradients(self, want, nodes):
        st = self.step
        return None if st is None else st.begin(want)

    def finish(self, grads: list) -> list:
        st, self.step = self.step, None
        return grads if st is None else st.finish(grads)


class _Step:
    """One call of ``dp.gradient``: the buckets' buffers, what has arrived, the works."""

    def __init__(self, dp: DataParallel, tape, sync: bool):
        self.dp = dp
        self.g = dp.group
        self.tape = tape
        self.sync = sync
        self.amp = None
        amp = tape.addon("amp")
        if amp is not None and amp.scaler.enabled:
            self.amp = amp
            # the scaler as it was before this step: its finish (which runs before ours, an
            # earlier add-on) advances it on this rank's own overflow flag; ours redoes that
            # with the flag agreed over the ranks
            self.scaler_state = amp.scaler.state_dict()
            self.scale = amp.scaler.scale
            if list(tape.addons).index(amp) > next(i for i, a in enumerate(tape.addons)
                                                   if getattr(a, "dp", None) is dp):
                raise TapeError("DataParallel.gradient: the tape's AMP add-on is attached "
                                "after the data-parallel one; its finish would see reduced "
                                "gradients it cannot unscale correctly")
        else:
            self.scale = 1.0
        cfg = getattr(tape, "deterministic_config", None)
        det = dp.deterministic
        if det is None:
            det = cfg is not None and cfg.enabled
        self.fixed_order = bool(det)
        self.t0 = time.perf_counter()

    # ---- before the sweep --------------------------------------------------------------------
    def begin(self, want):
        dp = self.dp
        params = dp.params
        if len(want) != len(params) or any(w is not p._node for w, p in zip(want, params)):
            raise TapeError("DataParallel.gradient: the tape's sweep was asked for other "
                            "sources than the model's parameters")
        if not self.sync:
            return None
        self.index = {p._node: i for i, p in enumerate(params)}
        nb = len(dp.buckets)
        self.flats = [None] * nb
        self.pending = [len(b.members) for b in dp.buckets]
        self.delivered = [False] * len(params)
        self.used = [False] * len(params)
        self.order: list = []
        self.works: list = [None] * nb
        self.launch_t = [0.0] * nb
        self.next_launch = 0
        self.recorded = False
        return self.ready

    # ---- during the sweep --------------------------------------------------------------------
    def _flat(self, b: int):
        flat = self.flats[b]
        if flat is None:
            bucket = self.dp.buckets[b]
            xp = self.dp.params[bucket.members[0]]._bk.xp
            flat = self.flats[b] = xp.empty(bucket.total, dtype=bucket.key[1])
            flat[bucket.flag_offset + len(bucket.members):] = 0
        return flat

    def ready(self, node, g) -> None:
        i = self.index.get(node)
        if i is None or self.delivered[i]:
            return
        self._deliver(i, g, self.scale)
        self._progress()

    def _deliver(self, i: int, g, acc_scale: float) -> None:
        dp = self.dp
        self.delivered[i] = True
        self.order.append(i)
        b = dp._bucket_of[i]
        bucket = dp.buckets[b]
        k = dp._slot_of[i]
        p = dp.params[i]
        flat = self._flat(b)
        off = bucket.offsets[k]
        view = flat[off:off + p.size].reshape(p.shape)
        acc = None if dp._acc is None else dp._acc[i]
        xp = p._bk.xp
        if isinstance(g, Tensor):
            if g._tapes:
                self.recorded = True
            g = g._data
        if g is None and acc is None:
            view[...] = 0
        else:
            if acc is not None and acc_scale != 1.0:
                acc = acc * acc_scale  # kept unscaled; the bucket holds loss-scaled values
            if g is None:
                xp.copyto(view, acc)
            elif acc is None:
                xp.copyto(view, g)
            else:
                xp.add(g, acc, out=view)
            self.used[i] = True
        self.pending[b] -= 1
        if self.pending[b] == 0:
            self._launch_ready()

    def _launch_ready(self) -> None:
        dp = self.dp
        nb = len(dp.buckets)
        while self.next_launch < nb and self.pending[self.next_launch] == 0:
            self._launch(self.next_launch)
            self.next_launch += 1

    def _launch(self, b: int) -> None:
        g = self.g
        bucket = self.dp.buckets[b]
        flat = self._flat(b)
        # the used-flags in one write (one host-to-device copy on a GPU, not one per parameter)
        flags = np.array([self.used[i] for i in bucket.members], dtype=flat.dtype)
        xp = self.dp.params[bucket.members[0]]._bk.xp
        flat[bucket.flag_offset:bucket.flag_offset + len(flags)] = xp.asarray(flags)
        comm = g.comm_for(flat, "DataParallel.gradient")
        label = (f"DataParallel.gradient step {self.dp.steps}: "
                 f"{'fixed-order sum' if self.fixed_order else 'allreduce'} of {bucket.what}")
        if self.fixed_order and g.size > 1:
            work = g.launch(lambda: comm.fixed_sum(flat), label)
        else:
            work = g.launch(lambda: comm.allreduce(flat, "sum"), label)
        self.works[b] = work
        self.launch_t[b] = time.perf_counter() - self.t0

    def _progress(self) -> None:
        """Let MPI move the buckets in flight (MPICH progresses only inside MPI calls)."""
        for w in self.works:
            if w is not None and not w.done:
                w.test()
                return

    # ---- after the sweep ---------------------------------------------------------------------
    def finish(self, grads: list) -> list:
        if not self.sync:
            return self._finish_local(grads)
        dp, g = self.dp, self.g
        t_sweep = time.perf_counter() - self.t0
        # parameters whose first consumer the sweep never reached (no cotangent flowed there)
        # come from the tape's result; AMP's finish, which ran first, unscaled them
        late = [i for i, d in enumerate(self.delivered) if not d]
        for i, gi in enumerate(grads):
            if not self.delivered[i]:
                if isinstance(gi, Tensor) and self.amp is not None and gi is not None:
                    gi = gi._data * self.scale
                self._deliver(i, gi, self.scale)
        self._launch_ready()
        works = [w for w in self.works if w is not None]
        t_wait = time.perf_counter()
        device = works and works[0].on_device_stream()
        if device:
            for w in works:
                w.enqueue_wait()
                g.watch(w)
        else:
            g.wait(works)
        t_done = time.perf_counter()
        out = self._unpack()
        skipped = False
        if self.amp is not None:
            skipped = self._agree_overflow(self._local_overflow(out))
        if dp._acc is not None:
            skipped = skipped or dp._acc_skipped
            dp._acc = None
            dp._acc_skipped = False
        if not dp._plan_settled:
            dp._settle_plan(self.order)
        dp.steps += 1
        dp.last_step = {
            "buckets": len(dp.buckets), "bytes": sum(int(f.nbytes) for f in self.flats
                                                     if f is not None),
            "sweep_s": t_sweep, "exposed_s": t_done - t_wait,
            "total_s": time.perf_counter() - self.t0, "launch_s": list(self.launch_t),
            "filled_at_end": len(late),
        }
        if self.recorded:
            raise TapeError("DataParallel.gradient: an outer tape or accumulator records this "
                            "sweep (a higher-order gradient); the reduced gradients would be cut "
                            "from it. Reduce first-order gradients only")
        return self._result(out, skipped)

    def _unpack(self) -> list:
        dp = self.dp
        div = self.g.size * self.scale
        out: list = [None] * len(dp.params)
        need_flags = not all(self.used)
        for b, bucket in enumerate(dp.buckets):
            flat = self.flats[b]
            n = bucket.flag_offset
            flat[:n] /= div
            flags = None
            if need_flags and not all(self.used[i] for i in bucket.members):
                flags = flat[n:n + len(bucket.members)]
                if not isinstance(flags, np.ndarray):
                    flags = flags.get()  # (only in steps where this rank left a parameter unused)
            for k, i in enumerate(bucket.members):
                if flags is not None and flags[k] == 0:
                    continue  # no rank used it: None, as from one process
                p = dp.params[i]
                off = bucket.offsets[k]
                out[i] = Tensor(flat[off:off + p.size].reshape(p.shape), p._bk)
        return out

    def _local_overflow(self, out: list) -> bool:
        found = False
        for b, flat in enumerate(self.flats):
            if flat is None:
                continue
            xp = self.dp.params[self.dp.buckets[b].members[0]]._bk.xp
            if not bool(xp.isfinite(flat).all()):  # (AMP synchronises once per step anyway)
                found = True
        return found

    def _agree_overflow(self, found: bool) -> bool:
        """Every rank's overflow flag, MAX-reduced; the scaler is advanced with the agreed
        flag (from its state before this step)."""
        g = self.g
        flag = np.array([1 if found else 0], dtype=np.int32)
        if g.size > 1:
            g.wait([g.launch(lambda: g.host.allreduce(flag, "max"),
                             f"DataParallel.gradient step {self.dp.steps}: AMP overflow flag")])
        agreed = bool(flag[0])
        scaler = self.amp.scaler
        scaler.load_state_dict(self.scaler_state)
        scaler.update(agreed)
        self.amp.step_skipped = agreed
        return agreed

    def _result(self, out: list, skipped: bool) -> list:
        if self.amp is None:
            return out
        return AmpGradients(out, skipped, self.scale)

    def _finish_local(self, grads: list) -> list:
        """A no_sync step: this rank's gradients, added to the accumulator."""
        dp = self.dp
        skipped = False
        if self.amp is not None:
            skipped = self._agree_overflow(bool(self.amp.step_skipped))
            dp._acc_skipped = dp._acc_skipped or skipped
        if dp._acc is None:
            dp._acc = [None] * len(dp.params)
        if not skipped:
            for i, gi in enumerate(grads):
                if gi is None:
                    continue
                if gi._tapes:
                    raise TapeError("DataParallel.gradient: an outer tape records this sweep "
                                    "(a higher-order gradient); no_sync accumulates values only")
                a = dp._acc[i]
                dp._acc[i] = gi._data.copy() if a is None else a + gi._data
        dp.steps += 1
        return self._result(list(grads), skipped) if self.amp is not None else list(grads)
