"""Per-thread execution state consulted by ``registry.apply``: the tapes recording now, the
forward-mode accumulators, and interceptors (profiler, autocast, anomaly and determinism checks).

Higher layers register themselves here, so imports only point down. ``mode`` is the single
attribute the fast path reads: None means no tape, no accumulator and no hook, so apply records
nothing; otherwise it is a plain snapshot of the four containers (reading a threading.local
attribute costs about three times a plain one, and the recording path reads several per op).
"""

from __future__ import annotations

import itertools
import threading

from ..errors import TapeError

__all__ = [
    "new_id", "Mode", "ThreadState", "STATE", "LIVE", "cross_thread_error", "push_hook",
    "pop_hook", "deterministic_requested", "Suspend",
]

_ids = itertools.count(1)


def new_id() -> int:
    """A process-unique id for a tape or accumulator (never reused, so stale ids are inert)."""
    return next(_ids)


class Mode:
    """What observes ops in this thread now (the containers themselves, not copies: tapes and
    hooks that change them in place need no refresh; replacing one needs ``refresh``)."""

    __slots__ = ("recording", "autowatch", "accumulators", "hooks", "observers")

    def __init__(self, st):
        self.recording = st.recording
        self.autowatch = st.autowatch
        self.accumulators = st.accumulators
        self.hooks = st.hooks
        self.observers = st.observers


class ThreadState(threading.local):
    def __init__(self):
        self.recording: dict[int, object] = {}  # tape id -> tape, tapes recording in this thread
        self.autowatch: list = []  # context tapes that watch the Variables read inside them
        self.accumulators: list = []  # active ForwardAccumulators, innermost last
        self.hooks: list = []  # interceptors: hook(phase, op, args, params, call) -> result
        # tape id -> observe(node, arrays, out), for recording tapes whose add-ons watch what
        # is recorded (checkpointing): called after the node is appended
        self.observers: dict[int, object] = {}
        self.mode = None

    def refresh(self) -> None:
        active = self.recording or self.accumulators or self.hooks
        self.mode = Mode(self) if active else None


STATE = ThreadState()

# tape id -> ident of the thread it records in, for every live tape (started, not yet stopped).
# A tape records only in its own thread; an op in another thread on a tensor such a tape tracks
# raises (see cross_thread_error) instead of silently recording nothing.
LIVE: dict[int, int] = {}


def cross_thread_error(op_name: str, tapes) -> Exception | None:
    """The TapeError for an op in this thread on a tensor tracked by a tape that records in
    another thread, or None."""
    me = threading.get_ident()
    for tid in tapes:
        owner = LIVE.get(tid)
        if owner is not None and owner != me:
            names = {t.ident: t.name for t in threading.enumerate()}
            return TapeError(
                f"{op_name}: an input is tracked by GradientTape {tid}, which records in thread "
                f"{names.get(owner, owner)!r}, but this op runs in thread "
                f"{threading.current_thread().name!r}: a tape records only in one thread. Enter "
                "the tape (`with tape:`) in the thread that computes, or create it there")
    return None


def push_hook(hook) -> None:
    STATE.hooks.append(hook)
    STATE.refresh()


def pop_hook(hook) -> None:
    hooks = STATE.hooks
    for i in range(len(hooks) - 1, -1, -1):
        if hooks[i] is hook:
            del hooks[i]
            break
    STATE.refresh()


def deterministic_requested() -> bool:
    """True while a tape in deterministic mode records or sweeps in this thread: an op whose GPU
    path accumulates with atomics must then take its deterministic kernel (autograd_gpu.
    determinism installs a hook with ``deterministic = True``)."""
    return any(getattr(h, "deterministic", False) for h in STATE.hooks)


class Suspend:
    """Context that stops all recording and forward-mode propagation in this thread
    (``ag.no_grad``). Hooks stay (a profiler still sees the ops)."""

    def __enter__(self):
        st = STATE
        self._saved = (st.recording, st.autowatch, st.accumulators)
        st.recording, st.autowatch, st.accumulators = {}, [], []
        st.refresh()
        return self

    def __exit__(self, *exc):
        st = STATE
        st.recording, st.autowatch, st.accumulators = self._saved
        st.refresh()
        return False
