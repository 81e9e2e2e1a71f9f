"""GradientTape: record eagerly, then sweep backwards by generation.

A tape records the ops whose inputs it tracks while it is recording: inside its ``with`` block,
or, when it is not used as a context, from its creation until its (non-persistent) ``gradient``
call. The reverse sweep is iterative (a heap ordered by node generation), releases each node's
saved values as soon as the last tape that needs them has used them, and runs the rules on raw
arrays unless an outer tape or accumulator could observe the computation, in which case it runs
them through ``apply`` so that the gradient is itself recorded (higher-order derivatives).
"""

from __future__ import annotations

import contextlib
import threading
import weakref

from . import dtypes as _dt
from .backend import NUMPY
from .backend.host_pool import POOL as HOST_POOL
from .errors import ArgumentError, DTypeError, ShapeError, TapeError, describe
from .ops.context import LIVE, STATE, Suspend, new_id, pop_hook, push_hook
from .ops.graph import Node
from .ops.registry import native_sweep, raw, saved_tensors, sum_to, tensors
from .tensor import Tensor, TrackedTensor, Variable

_EMPTY = frozenset()


def _as_list(x, what):
    if isinstance(x, Tensor):
        return [x], True
    if isinstance(x, (list, tuple)):
        return list(x), False
    raise ArgumentError(
        f"GradientTape.gradient: argument '{what}' expected a Tensor or a list of Tensors, "
        f"got {describe(x)}"
    )


class GradientTape:
    """Records operations on watched tensors so that gradients can be computed.

    ``persistent=False`` (the default) allows one ``gradient`` call and then releases the graph.
    ``watch_accessed_variables=True``: as a context, the tape watches every Variable read inside.
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True, *,
                 checkpoint=None, amp=None, scheduler=None, deterministic=None):
        if not isinstance(persistent, bool):
            raise ArgumentError(f"GradientTape: argument 'persistent' expected a bool, "
                                f"got {persistent!r}")
        self.id = new_id()
        self.persistent = persistent
        self.watch_accessed_variables = bool(watch_accessed_variables)
        self._nodes: list[Node] = []
        self._used = False
        self._live = False
        self._in_context = False
        self._watched: list = []  # weakrefs to tensors whose _tapes hold our id (cleaned at stop)
        self.checkpoint_config = checkpoint
        self.amp_config = amp
        self.scheduler_config = scheduler
        self.deterministic_config = deterministic
        self.last_schedule = None
        self._hooks: list = []  # interceptors active while recording and during our sweeps
        self._amp = None  # amp._AmpTape: loss scaling in gradient()
        for hook in _TAPE_INIT_HOOKS:
            hook(self)
        self._start()

    # ---- configuration constructors (guide style) -------------------------------------------
    @classmethod
    def with_checkpoint_config(cls, cfg, **kw) -> "GradientTape":
        return cls(checkpoint=cfg, **kw)

    @classmethod
    def with_amp_config(cls, cfg, **kw) -> "GradientTape":
        return cls(amp=cfg, **kw)

    @classmethod
    def with_scheduler_config(cls, cfg, **kw) -> "GradientTape":
        return cls(scheduler=cfg, **kw)

    @classmethod
    def with_deterministic_config(cls, cfg, **kw) -> "GradientTape":
        return cls(deterministic=cfg, **kw)

    # ---- recording state -------------------------------------------------------------------
    def _start(self):
        if self._used:
            raise TapeError(
                "GradientTape: this non-persistent tape was already used by gradient(); "
                "create a new tape or pass persistent=True"
            )
        self._live = True
        # the recording thread's table (a tape records in one thread; another thread may
        # stop it, e.g. by dropping the last reference, and must clean this table, not its own)
        self._owner = STATE.recording
        self._owner_hooks = STATE.hooks
        LIVE[self.id] = threading.get_ident()
        STATE.recording[self.id] = self._nodes  # apply appends each recorded node here
        for h in self._hooks:
            push_hook(h)
        STATE.refresh()

    def _pause(self) -> bool:
        was = self._owner.pop(self.id, None) is not None
        STATE.refresh()
        return was

    def _resume(self, was: bool):
        if was and self._live:
            self._owner[self.id] = self._nodes
            STATE.refresh()

    def _stop(self):
        self._live = False
        self._owner.pop(self.id, None)
        LIVE.pop(self.id, None)
        _remove_all(self._owner_hooks, self._hooks)
        try:
            STATE.autowatch.remove(self)
        except ValueError:
            pass
        STATE.refresh()
        for ref in self._watched:
            v = ref()
            if v is not None and self.id in v._tapes:
                v._tapes = v._tapes - {self.id}
        self._watched = []

    def add_hook(self, hook) -> None:
        """Install an interceptor (see ops.context.push_hook) for this tape: active while the tape
        records and during its gradient sweeps (AMP autocast, determinism checks)."""
        self._hooks.append(hook)
        if self._live:
            push_hook(hook)

    @property
    def step_skipped(self) -> bool:
        """True when the last gradient() of this AMP tape overflowed: the optimizer must skip
        the step (see autograd_gpu.amp)."""
        return self._amp is not None and self._amp.step_skipped

    @property
    def is_recording(self) -> bool:
        return self.id in STATE.recording

    def __enter__(self) -> "GradientTape":
        if not self._live:
            self._start()
        elif LIVE.get(self.id) != threading.get_ident():
            self._move_here()
        self._in_context = True
        if self.watch_accessed_variables:
            STATE.autowatch.append(self)
        return self

    def __exit__(self, *exc):
        self._in_context = False
        self._stop()
        return False

    def _move_here(self) -> None:
        """Entering a tape created (and so recording) in another thread: it records here from
        now on. A tape inside its ``with`` block in another thread cannot move."""
        if self._in_context:
            from .ops.context import cross_thread_error

            raise cross_thread_error("GradientTape.__enter__", [self.id])
        was = self._owner.pop(self.id, None) is not None
        _remove_all(self._owner_hooks, self._hooks)
        for h in self._hooks:
            push_hook(h)
        self._owner, self._owner_hooks = STATE.recording, STATE.hooks
        LIVE[self.id] = threading.get_ident()
        if was:
            STATE.recording[self.id] = self._nodes
        STATE.refresh()

    def __del__(self):
        try:
            if self._live:
                self._stop()
        except Exception:
            pass

    @contextlib.contextmanager
    def stop_recording(self):
        """Ops inside this block are not recorded on this tape (other tapes are unaffected)."""
        was = self._pause()
        try:
            yield
        finally:
            self._resume(was)

    def reset(self) -> None:
        """Forget everything recorded so far; the tape keeps recording if it was."""
        self._release_all()
        self._used = False
        if not self._live:
            self._start()

    # ---- watching --------------------------------------------------------------------------
    def watch(self, tensor):
        """Track ``tensor`` (or each tensor of a list). Returns it as a TrackedTensor (the same
        object: a plain Tensor becomes tracked in place, as TensorFlow's watch does)."""
        if isinstance(tensor, (list, tuple)):
            return type(tensor)(self.watch(t) for t in tensor)
        if not isinstance(tensor, Tensor):
            raise ArgumentError(
                f"GradientTape.watch: argument 'tensor' expected a Tensor, got {describe(tensor)}"
            )
        if not _dt.is_floating(tensor.dtype):
            raise DTypeError(
                f"GradientTape.watch: argument 'tensor' expected a floating dtype (float16, "
                f"bfloat16, float32, float64), got {_dt.name(tensor.dtype)}: integer and bool "
                "tensors are never differentiable"
            )
        if type(tensor) is Tensor:
            tensor.__class__ = TrackedTensor
        if tensor._node is None:
            tensor._node = Node.leaf(tensor.shape, tensor.dtype)
        if self.id not in tensor._tapes:
            tensor._tapes = tensor._tapes | {self.id}
            self._watched.append(weakref.ref(tensor))
        return tensor

    def _autowatch(self, var) -> None:
        if self.id not in var._tapes and self._live:
            self.watch(var)

    def watched_variables(self) -> list:
        return [v for v in (r() for r in self._watched) if isinstance(v, Variable)]

    # ---- gradients -------------------------------------------------------------------------
    def gradient(self, targets, sources, output_gradients=None,
                 unconnected_gradients="none") -> list:
        """d(sum of targets, weighted by output_gradients)/d(each source).

        Returns a list with one entry per source: a Tensor, or for a source the targets do not
        depend on, None (``unconnected_gradients="none"``) or zeros (``"zero"``). A tensor
        listed twice gets its total derivative twice (the tape differentiates tensors, not
        argument positions; ``ag.grad`` with argnums gives per-position partials).
        """
        self._check_usable("gradient")
        tlist, _ = _as_list(targets, "targets")
        slist, _ = _as_list(sources, "sources")
        check_unconnected(unconnected_gradients, "GradientTape.gradient")
        if output_gradients is None:
            ogs = [None] * len(tlist)
        else:
            ogs, _ = _as_list(output_gradients, "output_gradients")
            if len(ogs) != len(tlist):
                raise ShapeError(
                    f"GradientTape.gradient: argument 'output_gradients' expected {len(tlist)} "
                    f"entries (one per target), got {len(ogs)}"
                )
        seeds = []
        for i, (t, og) in enumerate(zip(tlist, ogs)):
            if not isinstance(t, Tensor):
                raise ArgumentError(
                    f"GradientTape.gradient: targets[{i}] expected a Tensor, got {describe(t)}"
                )
            if og is None:
                seed = t._bk.xp.ones(t.shape, dtype=t.dtype)
            else:
                seed = og if isinstance(og, Tensor) else t._bk.xp.asarray(og)
                _dt.check_real(seed.dtype, "GradientTape.gradient", f"output_gradients[{i}]")
                if not isinstance(og, Tensor) and seed.dtype != t.dtype:
                    seed = seed.astype(t.dtype)
                if tuple(seed.shape) != t.shape:
                    raise ShapeError(
                        f"GradientTape.gradient: output_gradients[{i}] expected shape {t.shape} "
                        f"(the target's), got {tuple(seed.shape)}"
                    )
            if self._amp is not None:
                seed = self._amp.scale_seed(seed)
            seeds.append((t, seed))
        check_sources(slist, "GradientTape.gradient")
        results = self.backward(seeds, [s._node for s in slist], batch_nd=0)
        out = []
        for s, g in zip(slist, results):
            if g is None and unconnected_gradients == "zero":
                g = Tensor(s._bk.xp.zeros(s.shape, dtype=s.dtype), s._bk)
            out.append(g)
        if self._amp is not None:
            out = self._amp.unscale(out)  # and checks for inf/NaN: may mark the step skipped
        if not self.persistent:
            self._finish()
        return out

    def _check_usable(self, what):
        if self._used:
            raise TapeError(
                f"GradientTape.{what}: a non-persistent tape can compute gradients only once and "
                "has released its graph; pass persistent=True to GradientTape to call it again"
            )

    def backward(self, seeds, want, batch_nd=0) -> list:
        """The reverse sweep. ``seeds``: (target tensor, seed array with ``batch_nd`` leading
        batch axes); ``want``: nodes whose cotangents to return. Returns one entry per ``want``
        (a Tensor or None). Saved values are released on the way for non-persistent tapes."""
        tid = self.id
        st = STATE
        was = self._pause()
        swept = [h for h in self._hooks if all(h is not x for x in st.hooks)]
        for h in swept:  # a tape's hooks also watch its sweep after it stopped recording
            push_hook(h)
        pooled = None
        try:
            differentiable = bool(st.recording or st.accumulators)
            bk = seeds[0][0]._bk if seeds else None
            if bk is None:
                return [None] * len(want)
            if bk is NUMPY:  # arrays made here come from (and die into) the host pool
                pooled = HOST_POOL.enter()
            F = tensors(bk) if differentiable else raw(bk)
            release = not self.persistent
            want_set = set(want)
            grads: dict = {}
            found: dict = {}
            for t, seed in seeds:
                node = t._node
                if node is None:  # an untracked target contributes nothing
                    continue
                if differentiable:
                    g = seed if isinstance(seed, Tensor) else Tensor(seed, bk)
                else:
                    g = seed._data if isinstance(seed, Tensor) else seed
                grads[node] = grads[node] + g if node in grads else g
            hooks = st.hooks
            if native_sweep is not None and not hooks:  # the loop below, in C (_native.c)
                native_sweep(self._nodes, grads, want_set, found, tid, release, F,
                             self._restore, saved_tensors if differentiable else None, bk,
                             sum_to, batch_nd, _EMPTY)
            else:
                # Recording order is a topological order: sweep it backwards. Nodes without a
                # cotangent are skipped at the cost of one dict lookup.
                for node in reversed(self._nodes):
                    g = grads.pop(node, None)
                    if g is None:
                        continue
                    if node in want_set:
                        found[node] = g
                    saved = node.saved
                    if saved is None:
                        saved = self._restore(node)
                    if differentiable:
                        saved = saved_tensors(node, bk)
                    parents = node.parents
                    if hooks:
                        gis = _hooked_vjp(hooks, node, F, g, saved, parents)
                    elif node.params:
                        gis = node.op.vjp(F, g, saved, parents, **node.params)
                    else:
                        gis = node.op.vjp(F, g, saved, parents)
                    g = saved = None  # not held while the sums below allocate
                    if release:
                        if len(node.tapes) == 1:  # only this tape: free the saved values now
                            node.tapes = _EMPTY
                            node.saved = None
                            node.extra = None  # checkpoint bookkeeping goes with them
                        else:
                            node.drop_tape(tid)
                    for p, gi in zip(parents, gis):
                        if p is None or gi is None:
                            continue
                        if (p.op is None or tid not in p.tapes) and p not in want_set:
                            continue  # a leaf or another tape's node that nobody asked for
                        # a tracked input's (shape, dtype) is its parent's output meta
                        shape, dtype = p.out_meta
                        gshape = gi.shape
                        if (gshape[batch_nd:] if batch_nd else gshape) != shape:
                            gi = sum_to(F, gi, shape, batch_nd)
                        gd = gi.dtype
                        if gd is not dtype and gd != dtype:
                            gi = F.astype(gi, dtype=dtype)
                        if p in grads:
                            grads[p] = grads[p] + gi
                        else:
                            grads[p] = gi
                    gis = gi = None  # not held through the next node's restore and rule
            for node in want:
                if node not in found and node in grads:
                    found[node] = grads[node]
            out = []
            for node in want:
                g = found.get(node)
                if g is not None and not isinstance(g, Tensor):
                    if type(g) is not bk.array_type:
                        g = bk.xp.asarray(g)
                    g = Tensor(g, bk)
                out.append(g)
            return out
        finally:
            HOST_POOL.leave(pooled)
            self._resume(was)
            for h in swept:
                pop_hook(h)

    def _restore(self, node):
        """The saved values of a node whose values were released: recomputed by checkpointing,
        or a TapeError saying why they are gone."""
        if node.extra is not None:
            node.extra.restore(node)  # checkpointing: recompute the released values
        if node.saved is None:
            if self.id not in node.tapes:
                # only this tape's own sweep drops its claim on a node it recorded, and values
                # are freed only once no claim is left: an earlier gradient() of this tape got
                # past this node, then stopped (an exception or interrupt in a later rule)
                raise TapeError(
                    f"GradientTape.gradient: the saved values of op '{node.op.name}' were "
                    "released by an earlier gradient() call on this non-persistent tape, which "
                    "stopped part-way (an exception or interrupt inside its sweep); the sweep "
                    "cannot run again: record the computation again, or use "
                    "GradientTape(persistent=True) to keep saved values across gradient() calls"
                )
            raise TapeError(
                f"GradientTape.gradient: the saved values of op '{node.op.name}' were released "
                "and could not be recomputed"
            )
        return node.saved

    def _finish(self):
        self._release_all()
        self._used = True
        self._stop()

    def _release_all(self):
        tid = self.id
        for node in self._nodes:
            node.drop_tape(tid)
        self._nodes.clear()
        if self._amp is not None:
            self._amp.autocast.cache.clear()

    def __repr__(self) -> str:
        state = "used" if self._used else ("recording" if self.is_recording else "idle")
        return f"GradientTape(id={self.id}, nodes={len(self._nodes)}, {state})"


def _remove_all(hooks: list, mine: list) -> None:
    """Take each of ``mine`` off a thread's hook list (the last occurrence of each)."""
    for h in mine:
        for i in range(len(hooks) - 1, -1, -1):
            if hooks[i] is h:
                del hooks[i]
                break


def check_unconnected(value, where: str) -> bool:
    """Validate an ``unconnected_gradients`` argument; True means "zero"."""
    if value not in ("none", "zero", None):
        raise ArgumentError(f"{where}: argument 'unconnected_gradients' expected 'none' or "
                            f"'zero', got {value!r}")
    return value == "zero"


def check_sources(sources, where: str) -> None:
    """Every source must be a Tensor some tape tracks (else its gradient could only be None)."""
    for i, s in enumerate(sources):
        if not isinstance(s, Tensor):
            raise ArgumentError(f"{where}: sources[{i}] expected a Tensor, got {describe(s)}")
        if s._node is None:
            raise TapeError(
                f"{where}: sources[{i}] ({describe(s)}) is not tracked by any tape; call "
                "tape.watch(x) on it (or make it a Variable) before computing with it"
            )


def _hooked_vjp(hooks, node, F, g, saved, needs):
    def run(i, args, params):
        if i < 0:
            return node.op.vjp(F, args[0], args[1], needs, **params)
        return hooks[i]("vjp", node.op, args, params, lambda a, p: run(i - 1, a, p))

    return run(len(hooks) - 1, (g, saved, node), node.params)


# Hooks later layers install to initialise per-tape features (checkpointing, AMP, scheduling).
_TAPE_INIT_HOOKS: list = []


class no_grad(Suspend):
    """Context (and decorator) in which nothing records and no tangents propagate."""

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with no_grad():
                return fn(*a, **k)

        return wrapper


def stop_gradient(x):
    """The same values with no connection to any tape or accumulator."""
    if isinstance(x, (list, tuple)):
        return type(x)(stop_gradient(t) for t in x)
    if not isinstance(x, Tensor):
        raise ArgumentError(f"stop_gradient: argument 'x' expected a Tensor, got {describe(x)}")
    return Tensor(x._data, x._bk)
