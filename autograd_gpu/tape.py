"""GradientTape: record eagerly, then sweep backwards in reverse recording order.

A tape records the ops whose inputs it tracks while it is recording: inside its ``with`` block,
or, when it is not used as a context, from its creation until its (non-persistent) ``gradient``
call. The reverse sweep (``sweep.py``) is iterative: it walks the recorded nodes backwards
(recording order is a topological order), releases each node's saved values as soon as the last
tape that needs them has used them, and runs the rules on raw arrays unless an outer tape or
accumulator could observe the computation, in which case it runs them through ``apply`` so that
the gradient is itself recorded (higher-order derivatives).

Features extend a tape only through add-ons (``addons.py``): checkpointing, mixed precision,
determinism checks and data-parallel reduction attach there; the tape knows none by name.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref

from . import dtypes as _dt
from .addons import TapeAddon, config_factory
from .errors import ArgumentError, DTypeError, ShapeError, TapeError, describe
from .ops.context import LIVE, STATE, Suspend, cross_thread_error, new_id, pop_hook, push_hook
from .ops.graph import Node
from .ops.registry import raw, tensors
from .sweep import ready_points, run_sweep, sweep_context
from .tensor import Tensor, TrackedTensor, Variable

__all__ = ["GradientTape", "no_grad", "stop_gradient", "live_tapes", "check_sources",
           "check_unconnected"]

_LIVE_TAPES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id -> tape


def live_tapes(since_id: int = 0) -> list:
    """Tapes alive now whose id is above ``since_id`` (ids only grow: ``ops.context.new_id()``
    before a stretch of code, then this, gives the tapes made during it)."""
    return [t for i, t in list(_LIVE_TAPES.items()) if i > since_id]


def _as_list(x, what):
    if isinstance(x, Tensor):
        return [x], True
    if isinstance(x, (list, tuple)):
        return list(x), False
    raise ArgumentError(
        f"GradientTape.gradient: argument '{what}' expected a Tensor or a list of Tensors, "
        f"got {describe(x)}"
    )


class _Recording:
    """A tape's recording lifecycle: where it records (the recording thread's tables), starting,
    pausing, resuming, stopping and moving to another thread, and its use as a context. The
    state (set by GradientTape.__init__): ``_live``, ``_used``, ``_in_context``, ``_nodes``,
    ``_hooks``, ``_addons``, ``_watched`` and the owner tables."""

    def _start(self):
        if self._used:
            raise TapeError(
                "GradientTape: this non-persistent tape was already used by gradient(); "
                "create a new tape or pass persistent=True"
            )
        self._live = True
        # the recording thread's table (a tape records in one thread; another thread may
        # stop it, e.g. by dropping the last reference, and must clean this table, not its own)
        self._owner, self._owner_hooks = STATE.recording, STATE.hooks
        self._owner_observers = STATE.observers
        LIVE[self.id] = threading.get_ident()
        self._record_here()
        for h in self._hooks:
            push_hook(h)
        STATE.refresh()

    def _record_here(self) -> None:
        self._owner[self.id] = self._nodes  # apply appends each recorded node here
        observe = _observer(self._addons)
        if observe is not None:
            self._owner_observers[self.id] = observe

    def _pause(self) -> bool:
        was = self._owner.pop(self.id, None) is not None
        self._owner_observers.pop(self.id, None)
        STATE.refresh()
        return was

    def _resume(self, was: bool):
        if was and self._live:
            self._record_here()
            STATE.refresh()

    def _stop(self):
        self._live = False
        self._owner.pop(self.id, None)
        self._owner_observers.pop(self.id, None)
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
            raise cross_thread_error("GradientTape.__enter__", [self.id])
        was = self._owner.pop(self.id, None) is not None
        self._owner_observers.pop(self.id, None)
        _remove_all(self._owner_hooks, self._hooks)
        for h in self._hooks:
            push_hook(h)
        self._owner, self._owner_hooks = STATE.recording, STATE.hooks
        self._owner_observers = STATE.observers
        LIVE[self.id] = threading.get_ident()
        if was:
            self._record_here()
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



class GradientTape(_Recording):
    """Records operations on watched tensors so that gradients can be computed.

    ``persistent=False`` (the default) allows one ``gradient`` call and then releases the graph.
    ``watch_accessed_variables=True``: as a context, the tape watches every Variable read inside.
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True, *,
                 checkpoint=None, amp=None, scheduler=None, deterministic=None, addons=()):
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
        self.last_schedule = None
        self._addons: list = []
        self._hooks: list = []  # the add-ons' interceptors
        for kw, value in (("checkpoint", checkpoint), ("amp", amp), ("scheduler", scheduler),
                          ("deterministic", deterministic)):
            cfg, addon = (None, None) if value is None else config_factory(kw)(value, self)
            setattr(self, f"{kw}_config", cfg)
            if addon is not None:
                self._attach(addon)
        for addon in addons:
            self._attach(addon)
        _LIVE_TAPES[self.id] = self
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

    # ---- add-ons ---------------------------------------------------------------------------
    def add_addon(self, addon: TapeAddon) -> TapeAddon:
        """Attach an add-on (see autograd_gpu.addons) to this tape from now on."""
        if not isinstance(addon, TapeAddon):
            raise ArgumentError(f"GradientTape.add_addon: argument 'addon' expected a TapeAddon, "
                                f"got {describe(addon)}")
        self._attach(addon)
        if self._live:
            for h in addon.interceptors:
                if LIVE.get(self.id) == threading.get_ident():
                    push_hook(h)
                else:
                    self._owner_hooks.append(h)
            if addon.records and self.id in self._owner:
                self._record_here()
        return addon

    def _attach(self, addon) -> None:
        self._addons.append(addon)
        self._hooks.extend(addon.interceptors)

    @property
    def addons(self) -> tuple:
        return tuple(self._addons)

    def addon(self, kind: str):
        """The attached add-on of that kind ("checkpoint", "amp", ...), or None."""
        return next((a for a in self._addons if a.kind == kind), None)

    @property
    def step_skipped(self) -> bool:
        """True when an add-on says the last gradient() must not be applied (an AMP overflow:
        the optimizer skips the step)."""
        return any(a.step_skipped for a in self._addons)

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
        if tensor._batched:  # inside ag.vmap: the tape tracks the physical tensor
            from .vmap import physical  # (a cycle: vmap builds on the tape's layers)

            phys, _ = physical(tensor)
            self.watch(phys)
            t = tensor
            while t._batched:
                t._node, t._tapes = phys._node, phys._tapes
                t = t._phys
            return tensor
        if not _dt.is_inexact(tensor.dtype):
            raise DTypeError(
                f"GradientTape.watch: argument 'tensor' expected a floating or complex dtype "
                f"(float16, bfloat16, float32, float64, complex64, complex128), got "
                f"{_dt.name(tensor.dtype)}: integer and bool tensors are never differentiable"
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
        ogl = output_gradients if isinstance(output_gradients, (list, tuple)) else [
            output_gradients]
        if any(getattr(t, "_batched", False) for t in tlist + slist + list(ogl)):
            from .vmap import batched_gradient  # (a cycle: vmap builds on the tape's layers)

            return batched_gradient(self, tlist, slist, output_gradients, unconnected_gradients)
        check_unconnected(unconnected_gradients, "GradientTape.gradient")
        seeds = []
        for t, seed in _seeds(tlist, output_gradients):
            for a in self._addons:
                seed = a.scale_seed(seed)
            seeds.append((t, seed))
        check_sources(slist, "GradientTape.gradient")
        want = [s._node for s in slist]
        watchers = [w for w in (a.watch_gradients(want, self._nodes) for a in self._addons)
                    if w is not None]
        on_ready = watchers[0] if len(watchers) == 1 else _all_of(watchers) if watchers \
            else None
        results = self.backward(seeds, want, batch_nd=0, on_ready=on_ready)
        out = []
        for s, g in zip(slist, results):
            if g is None and unconnected_gradients == "zero":
                g = Tensor(s._bk.xp.zeros(s.shape, dtype=s.dtype), s._bk)
            out.append(g)
        for a in self._addons:
            out = a.finish(out)  # AMP: unscale, check for inf/NaN (may mark the step skipped)
        if not self.persistent:
            self._finish()
        return out

    # ---- Jacobians (jacobians.py: the scheduler picks the mode from the recorded graph) -------
    def jacobian(self, target, source, mode="auto", unconnected_gradients="none",
                 chunk_size=None):
        """d target / d source, shape target.shape + source.shape; ``mode`` "auto" (the tape's
        SchedulerConfig decides; see ``tape.last_schedule``), "forward" or "reverse"; lists of
        targets and sources give nested lists (see jacobians.tape_jacobian)."""
        from .jacobians import tape_jacobian  # (a cycle: jacobians.py builds on the tape)

        return tape_jacobian(self, target, source, mode, unconnected_gradients, chunk_size)

    def batch_jacobian(self, target, source, mode="auto", unconnected_gradients="none"):
        """Per-example Jacobians for a leading batch axis (see jacobians.tape_batch_jacobian)."""
        from .jacobians import tape_batch_jacobian  # (a cycle: jacobians.py builds on the tape)

        return tape_batch_jacobian(self, target, source, mode, unconnected_gradients)

    def forward_gradient(self, source, target, tangent=None, unconnected_gradients="none",
                         chunk_size=None):
        """Forward mode over the recorded graph: the JVP J t with ``tangent``, else the full
        Jacobian from identity tangent batches (see jacobians.tape_forward_gradient)."""
        from .jacobians import tape_forward_gradient  # (a cycle: jacobians.py builds on the tape)

        return tape_forward_gradient(self, source, target, tangent, unconnected_gradients,
                                     chunk_size)

    def _check_usable(self, what):
        if self._used:
            raise TapeError(
                f"GradientTape.{what}: a non-persistent tape can compute gradients only once and "
                "has released its graph; pass persistent=True to GradientTape to call it again"
            )

    def backward(self, seeds, want, batch_nd=0, on_ready=None) -> list:
        """The reverse sweep. ``seeds``: (target tensor, seed array with ``batch_nd`` leading
        batch axes); ``want``: nodes whose cotangents to return. Returns one entry per ``want``
        (a Tensor or None). Saved values are released on the way for non-persistent tapes.
        ``on_ready(leaf, cotangent)`` is called for each wanted leaf as soon as its cotangent is
        final (None for a leaf the recorded graph does not use: before the sweep)."""
        st = STATE
        was = self._pause()
        swept = [h for h in self._hooks if all(h is not x for x in st.hooks)]
        for h in swept:  # a tape's hooks also watch its sweep after it stopped recording
            push_hook(h)
        bk = seeds[0][0]._bk if seeds else None
        try:
            if bk is None:
                return [None] * len(want)
            with bk.sweep_scope():  # (NumPy: arrays made here come from the host pool)
                return self._sweep(seeds, want, batch_nd, on_ready, bk)
        finally:
            self._resume(was)
            for h in swept:
                pop_hook(h)

    def _sweep(self, seeds, want, batch_nd, on_ready, bk) -> list:
        st = STATE
        differentiable = bool(st.recording or st.accumulators)
        F = tensors(bk) if differentiable else raw(bk)
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
        ready_at = None
        if on_ready is not None:
            ready_at, unused = ready_points(self._nodes, want)
            for leaf in unused:
                on_ready(leaf, grads.get(leaf))
        ctx = sweep_context(self.id, not self.persistent, F, self._restore, differentiable, bk,
                            batch_nd, ready_at, on_ready)
        run_sweep(self._nodes, grads, want_set, found, ctx, st.hooks)
        out = []
        for node in want:
            g = found.get(node)
            if g is None:
                g = grads.get(node)
            if g is not None and not isinstance(g, Tensor):
                if type(g) is not bk.array_type:
                    g = bk.xp.asarray(g)
                g = Tensor(g, bk)
            out.append(g)
        return out

    def _restore(self, node):
        """The saved values of a node whose values were released: recomputed by checkpointing,
        or a TapeError saying why they are gone."""
        if node.extra is not None:
            node.extra.restore(node)  # checkpointing: recompute the released values
        if node.saved is None:
            raise _released(node, self.id)
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
        for a in self._addons:
            a.on_release()

    def __repr__(self) -> str:
        state = "used" if self._used else ("recording" if self.is_recording else "idle")
        return f"GradientTape(id={self.id}, nodes={len(self._nodes)}, {state})"


def _observer(addons):
    """The function registry.apply calls with each node recorded on a tape whose add-ons watch
    recording, or None. It holds the add-ons, not the tape: a tape nobody references must still
    die (and stop recording) while it records."""
    recs = [a for a in addons if a.records]
    if not recs:
        return None

    def observe(node, arrays, out):
        for a in recs:
            a.on_record(node, arrays, out)

    return observe


def _seeds(tlist, output_gradients) -> list:
    """(target, seed) per target: ones, or the given output gradient checked against it."""
    if output_gradients is None:
        ogs = [None] * len(tlist)
    else:
        ogs, _ = _as_list(output_gradients, "output_gradients")
        if len(ogs) != len(tlist):
            raise ShapeError(
                f"GradientTape.gradient: argument 'output_gradients' expected {len(tlist)} "
                f"entries (one per target), got {len(ogs)}"
            )
    out = []
    for i, (t, og) in enumerate(zip(tlist, ogs)):
        if not isinstance(t, Tensor):
            raise ArgumentError(
                f"GradientTape.gradient: targets[{i}] expected a Tensor, got {describe(t)}"
            )
        if og is None:
            if _dt.is_complex(t.dtype):
                raise DTypeError(
                    f"GradientTape.gradient: targets[{i}] is complex ({_dt.name(t.dtype)}): "
                    "a complex target has no gradient of its own; pass output_gradients "
                    "(a cotangent), or use ag.grad(f, holomorphic=True) for a holomorphic f")
            out.append((t, t._bk.xp.ones(t.shape, dtype=t.dtype)))
            continue
        seed = og if isinstance(og, Tensor) else t._bk.xp.asarray(og)
        if not _dt.is_complex(t.dtype):
            _dt.check_real(seed.dtype, "GradientTape.gradient", f"output_gradients[{i}]")
        if not isinstance(og, Tensor) and seed.dtype != t.dtype:
            seed = seed.astype(t.dtype)
        if tuple(seed.shape) != t.shape:
            raise ShapeError(
                f"GradientTape.gradient: output_gradients[{i}] expected shape {t.shape} "
                f"(the target's), got {tuple(seed.shape)}"
            )
        out.append((t, seed))
    return out


def _released(node, tape_id) -> TapeError:
    """Why a node's saved values are gone when the sweep needs them."""
    if tape_id not in node.tapes:
        # only this tape's own sweep drops its claim on a node it recorded, and values are
        # freed only once no claim is left: an earlier gradient() of this tape got past this
        # node, then stopped (an exception or interrupt in a later rule)
        return TapeError(
            f"GradientTape.gradient: the saved values of op '{node.op.name}' were released by "
            "an earlier gradient() call on this non-persistent tape, which stopped part-way "
            "(an exception or interrupt inside its sweep); the sweep cannot run again: record "
            "the computation again, or use GradientTape(persistent=True) to keep saved values "
            "across gradient() calls")
    return TapeError(f"GradientTape.gradient: the saved values of op '{node.op.name}' were "
                     "released and could not be recomputed")


def _all_of(callbacks):
    """One ready callback that calls each add-on's, in attachment order."""
    def ready(leaf, g):
        for cb in callbacks:
            cb(leaf, g)
    return ready


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


class no_grad(Suspend):
    """Context (and decorator) in which nothing records and no tangents propagate."""

    def __call__(self, fn):
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
