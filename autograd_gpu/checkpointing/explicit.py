"""An explicit recomputed segment: ``ag.checkpoint(fn, *args)``.

The segment is recorded as one node whose forward runs ``fn`` without recording (the first run's
op params are kept, so random ops draw the same seeds again) and whose vjp re-runs ``fn`` under
a fresh tape and backpropagates through it. Nothing inside ``fn`` is kept for the backward.
"""

from __future__ import annotations

from ..errors import ArgumentError, describe
from ..ops.context import STATE, Suspend, pop_hook, push_hook
from ..ops.registry import apply, defop
from ..tape import GradientTape
from ..tensor import Tensor, Variable

__all__ = ["checkpoint"]


class _Trace:
    """What the first run of a segment did: each op call's params (replayed verbatim, so random
    ops draw the same seeds), the tracked tensors it read from outside, its output, its cost."""

    __slots__ = ("calls", "out", "cost", "ext")

    def __init__(self):
        self.calls: list = []
        self.out = None
        self.cost = 0.0
        self.ext: list = []  # tensors fn reads from outside its arguments (closure weights)


class _Capture:
    """Hook: records each op call (first run) or substitutes the recorded params (replays)."""

    def __init__(self, trace, replay, externals=None):
        self.trace = trace
        self.replay = replay
        self.i = 0
        self.externals = externals  # dict id -> tensor, filled on the first run

    def __call__(self, phase, op, args, params, call):
        if phase != "forward":
            return call(args, params)
        calls = self.trace.calls
        if self.replay:
            if self.i < len(calls) and calls[self.i][0] is op:
                params = calls[self.i][1]
                self.i += 1
            else:
                self.i = len(calls) + 1  # the op sequence diverged: stop substituting
            return call(args, params)
        calls.append((op, params))
        if self.externals is not None:
            for a in args:
                if isinstance(a, Tensor) and (a._tapes or isinstance(a, Variable)):
                    self.externals.setdefault(id(a), a)
        out = call(args, params)
        try:
            metas = [(getattr(a, "shape", ()), getattr(a, "dtype", None)) for a in args]
            self.trace.cost += op.estimate_cost((out.shape, out.dtype), metas, params)
        except Exception:  # a cost model that cannot take these metas: cost unknown, not fatal
            pass
        return out

    def __enter__(self):
        push_hook(self)
        return self

    def __exit__(self, *exc):
        pop_hook(self)
        return False


def _run_fn(fn, xs, trace, replay, externals=None):
    with _Capture(trace, replay, externals), Suspend():
        y = fn(*xs)
    if not isinstance(y, Tensor):
        raise ArgumentError(
            f"checkpoint: argument 'fn' expected a function returning one Tensor, "
            f"got {describe(y)}"
        )
    return y


def _wrap(bk, a):
    return Tensor(a, bk) if hasattr(a, "dtype") and hasattr(a, "shape") else a


def _segment_cost(out, *xs, fn, trace, nargs):
    return trace.cost


@defop("checkpoint", params=("fn", "trace", "nargs"), cost=_segment_cost, register=False,
       saves=lambda n, params: tuple(range(n)))
class _Segment:
    """y = fn(*args), recorded as one node: the forward keeps only the inputs; the vjp re-runs
    fn under a fresh tape (with the first run's op params, so random ops repeat) and backprops."""

    def forward(bk, *arrays, fn, trace, nargs):
        if trace.out is not None:  # the first run already computed it (ag.checkpoint)
            out, trace.out = trace.out, None
        else:  # a replay (tape-level checkpointing): same params, same values
            out = _run_fn(fn, [_wrap(bk, a) for a in arrays[:nargs]], trace, True)._data
        return out, tuple(arrays)

    def vjp(F, g, saved, needs, *, fn, trace, nargs):
        bk = F.bk
        if F.is_raw:
            xs = [_wrap(bk, a) for a in saved[:nargs]]
            g = Tensor(g, bk)
        else:
            xs = list(saved[:nargs])
        xs += trace.ext  # fn reads these objects themselves (closures): differentiate those
        srcs = [x for x, nd in zip(xs, needs) if nd and isinstance(x, Tensor)]
        tape = GradientTape()
        try:
            for x in srcs:
                tape.watch(x)
            with tape, _Capture(trace, True):
                y = fn(*xs[:nargs])
            nb = g.ndim - y.ndim
            grads = tape.backward([(y, g)], [x._node for x in srcs], batch_nd=nb)
        finally:
            tape._finish()
        it = iter(grads)
        out = []
        for x, nd in zip(xs, needs):
            if nd and isinstance(x, Tensor):
                gx = next(it)
                out.append(None if gx is None else (gx._data if F.is_raw else gx))
            else:
                out.append(None)
        return tuple(out)

    def jvp(F, ts, saved, *, fn, trace, nargs):
        raise ArgumentError(
            "checkpoint: forward mode (a ForwardAccumulator or jvp) through an ag.checkpoint "
            "segment is not supported; call fn directly under forward mode"
        )


def checkpoint(fn, *args):
    """``fn(*args)`` as one recomputed segment: nothing inside ``fn`` is kept for the backward
    pass; its vjp re-runs ``fn`` (random ops repeat their seeds) and backpropagates through it.
    Tracked tensors and Variables that ``fn`` reads from outside (weights in a closure) get
    their gradients too. ``fn`` must return one Tensor; args are Tensors or Python numbers."""
    if not callable(fn):
        raise ArgumentError(f"checkpoint: argument 'fn' expected a callable, got {describe(fn)}")
    for i, a in enumerate(args):
        if not (isinstance(a, Tensor) or isinstance(a, (int, float)) or a is None):
            raise ArgumentError(
                f"checkpoint: argument args[{i}] expected a Tensor or a Python number, "
                f"got {describe(a)}"
            )
    if not STATE.recording or any(getattr(a, "_batched", False) for a in args):
        # nothing records: nothing to save, just run it; inside ag.vmap the per-example
        # values are views of a batch, and fn runs on them directly (no memory saving there)
        return fn(*args)
    trace = _Trace()
    externals: dict = {}
    y = _run_fn(fn, args, trace, False, externals)
    for a in args:
        externals.pop(id(a), None)
    trace.out = y._data
    trace.ext = list(externals.values())
    inputs = list(args) + trace.ext
    try:
        return apply(_Segment, *inputs, fn=fn, trace=trace, nargs=len(args))
    finally:
        trace.out = None
