"""An ODE right-hand side as a program of primitives, for ag.integrate.odeint.

odeint evaluates func thousands of times (six times per Runge-Kutta step, and its
vector-Jacobian product as often on the way back). Called eagerly, each evaluation pays every
op's Python dispatch and, for the vjp, a tape. Instead func is traced once per odeint call: an
interceptor (ops/context.push_hook) records each primitive it applies - the op, its parameters,
and for each input the value it came from (func's own inputs, an earlier op's output, or a
constant) - and the recording is replayed on arrays: op.forward for values, then op.vjp (the
registry's first-order rules on raw arrays, as a tape's first-order sweep runs them) for the
vector-Jacobian product. Replay runs the same primitives on the same arrays as the eager call,
so its values are the eager values bit for bit.

A trace is only valid if func's structure does not depend on its inputs' values, as JAX
requires of the functions it traces. Three checks guard that, and any failure makes odeint
call func eagerly instead (correct, slower):
  1. Reading a traced value into Python (bool, float, int, index, item, numpy, tolist,
     __array__, data, dlpack, repr) during the trace: Python control flow may depend on it.
  2. func is traced at two points (the initial state and the point the initial step-size
     estimate probes); the two recordings must have the same ops, parameters and constants
     (a constant that differs was computed from a value outside the ops, e.g. from
     ``Tensor._data``).
  3. Replaying the first recording at the second point must give the second call's output.
A value that changes structure only between points the checks never see (a branch taken
later in the solve, through a path none of the checks observe) is not detected: pass
``trace=False`` to odeint for such a func.

A tensor func reads from its closure that a tape tracks (or an accumulator carries a tangent
for) would get no gradient through odeint: the trace sees it and odeint raises TapeError
asking for it to be passed in ``*args`` (JAX converts closures to arguments instead).
"""

from __future__ import annotations

from functools import partial
from operator import itemgetter

import numpy as _np

from .errors import TapeError
from .ops.context import Suspend, pop_hook, push_hook
from .ops.registry import raw, sum_to
from .tape import GradientTape
from .tensor import Tensor

__all__ = ["Traced", "trace", "Program", "Eager", "same_recording", "same_steps", "same_values",
           "compile_checked", "closure_error"]

_MISSING = object()


class Traced(Tensor):
    """A value inside a trace: reading it into Python marks the trace invalid (see the
    module docstring, check 1); everything else is a Tensor's behaviour."""

    __slots__ = ("_recorder",)

    def _mark(self, what):
        rec = getattr(self, "_recorder", None)
        if rec is not None and rec.read is None:
            rec.read = what

    def __bool__(self):
        self._mark("bool")
        return super().__bool__()

    def __float__(self):
        self._mark("float")
        return super().__float__()

    def __int__(self):
        self._mark("int")
        return super().__int__()

    def __index__(self):
        self._mark("index")
        return super().__index__()

    def to_scalar(self):
        self._mark("item")
        return super().to_scalar()

    item = to_scalar

    def numpy(self):
        self._mark("numpy")
        return super().numpy()

    def tolist(self):
        self._mark("tolist")
        return super().tolist()

    def __array__(self, dtype=None, copy=None):
        self._mark("__array__")
        return super().__array__(dtype, copy)

    @property
    def data(self):
        self._mark("data")
        return Tensor.data.fget(self)

    def __dlpack__(self, *args, **kwargs):
        self._mark("dlpack")
        return super().__dlpack__(*args, **kwargs)

    def __repr__(self):
        self._mark("repr")
        return super().__repr__()


def _traced(t, rec):
    out = Traced(t._data, t._bk)
    out._recorder = rec
    return out


class _Recorder:
    """The interceptor that records one call of func (see the module docstring)."""

    def __init__(self, inputs):
        self.slot = {id(x): i for i, x in enumerate(inputs)}
        self.by_array = {id(x._data): i for i, x in enumerate(inputs)}
        self.keep = list(inputs)  # ids stay unique while the recording lives
        self.metas = [(tuple(x.shape), x.dtype) for x in inputs]
        self.steps = []  # (op, specs, params, differentiable)
        self.read = None
        self.closure = []

    def _spec(self, a):
        """('s', k): slot k; ('x', k): slot k's value without its derivative (stop_gradient
        shares the array); ('c', array): a constant; ('n', number): a Python number."""
        if not isinstance(a, Tensor):
            return ("n", a)
        k = self.slot.get(id(a))
        if k is not None:
            return ("s", k)
        k = self.by_array.get(id(a._data))
        if k is not None:
            return ("x", k)
        if a._tapes or a._fw:
            self.closure.append(a)
        return ("c", a._data)

    def __call__(self, phase, op, args, params, call):
        if phase != "forward":
            return call(args, params)
        specs = tuple(self._spec(a) for a in args)
        out = call(args, params)
        if not isinstance(out, Tensor):  # not a primitive's single output: cannot replay
            self.read = self.read or f"{op.name} returned {type(out).__name__}"
            return out
        k = len(self.metas)
        tr = _traced(out, self)
        # keep the graph links: func may differentiate inside (ag.grad, ag.vjp in func)
        tr._node, tr._tapes, tr._fw = out._node, out._tapes, out._fw
        self.slot[id(tr)] = k
        self.by_array.setdefault(id(tr._data), k)
        self.keep.append(tr)
        self.metas.append((tuple(out.shape), out.dtype))
        self.steps.append((op, specs, dict(params), bool(op.differentiable)))
        return tr


def trace(fn, arrays, bk):
    """Run ``fn(*tensors)`` once on Traced copies of ``arrays``, recording it. Returns
    (recorder, output spec, output array)."""
    ins = [Traced(a, bk) for a in arrays]
    rec = _Recorder(ins)
    for t in ins:
        t._recorder = rec
    # An idle tape of our own, recording: a vjp or grad that func runs inside then sweeps in
    # its recorded mode (tape.py: any recording tape makes sweeps differentiable), so that its
    # rules go through apply, where the interceptor sees them (a first-order sweep calls them
    # on arrays, unseen). It watches nothing and keeps nothing.
    with Suspend(), GradientTape(watch_accessed_variables=False):
        push_hook(rec)
        try:
            out = fn(*ins)
        finally:
            pop_hook(rec)
    if not isinstance(out, Tensor):
        raise TypeError(f"expected func's output as tensors, got {type(out).__name__}")
    return rec, rec._spec(out), out._data


def _same(a, b) -> bool:
    """Parameters or constants equal (arrays by value, NaN equal to NaN; a device array is
    compared on its device through its own module's array_equal)."""
    if a is b:
        return True
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        if not (hasattr(b, "shape") and a.shape == b.shape and a.dtype == b.dtype):
            return False
        if isinstance(a, _np.ndarray):
            return bool(_np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        eq = (a == b) | ((a != a) & (b != b)) if a.dtype.kind in "fc" else (a == b)
        return bool(eq.all())
    if isinstance(a, (tuple, list)):
        return (isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b)))
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(_same(a[k], b[k]) for k in a))
    try:
        return bool(a == b)
    except Exception:  # an object without a truth value for ==: treat as different
        return False


def same_recording(r1, s1, r2, s2) -> bool:
    """Whether two recordings of func are the same program (ops, parameters, constants)."""
    return same_steps(r1.steps, s1, r2.steps, s2)


def same_steps(steps1, s1, steps2, s2) -> bool:
    """same_recording on the recordings' steps (a recorder's ``steps``: they hold the ops,
    parameters and constants, not the traced values)."""
    if len(steps1) != len(steps2) or not _same_spec(s1, s2):
        return False
    for (op1, sp1, p1, _), (op2, sp2, p2, _) in zip(steps1, steps2):
        if op1 is not op2 or len(sp1) != len(sp2) or not _same(p1, p2):
            return False
        if not all(_same_spec(a, b) for a, b in zip(sp1, sp2)):
            return False
    return True


def _same_spec(a, b) -> bool:
    return a[0] == b[0] and (a[1] == b[1] if a[0] in "sx" else _same(a[1], b[1]))


class Program:
    """A recording replayed on arrays: ``value(arrays)`` (a generated function, see
    _straight_line) and ``vjp(arrays, ct)``.

    The value table holds func's inputs, then the recording's constants, then one output per
    step, so that every step reads its inputs with one itemgetter (the replay's cost per
    primitive is the primitive's own Python and array work)."""

    def __init__(self, rec, out_spec, bk, n_inputs):
        self.n_inputs = n_inputs
        self.F = raw(bk)
        self.arr_t, self.asarray = bk.array_type, bk.xp.asarray
        consts = []

        def slot(spec):  # a step input's position in the value table
            if spec[0] in "sx":
                k = spec[1]
                return k if k < n_inputs else k + len_consts[0]
            consts.append(spec[1])
            return -len(consts)  # fixed below, once the number of constants is known

        len_consts = [0]
        for _, specs, _, _ in rec.steps:
            len_consts[0] += sum(1 for sp in specs if sp[0] not in "sx")
        len_consts[0] += 0 if out_spec[0] in "sx" else 1
        self.n_fixed = n_inputs + len_consts[0]
        needs = [True] * n_inputs + [False] * len_consts[0]
        # rules receive, per input, a truthy token of the value it came from (a tape passes the
        # parent nodes: Mul's rule tells x * x from x * y by identity) or None
        tokens = [object() for _ in range(self.n_fixed + len(rec.steps))]
        metas = list(rec.metas[:n_inputs]) + [None] * len_consts[0]
        self.steps = []
        plan = []
        for op, specs, params, diff in rec.steps:
            idx = [slot(sp) for sp in specs]
            idx = tuple(n_inputs + (-i - 1) if i < 0 else i for i in idx)
            flows = tuple(tokens[i] if sp[0] == "s" and needs[i] else None
                          for i, sp in zip(idx, specs))
            get = itemgetter(*idx) if len(idx) > 1 else (lambda v, i=idx[0]: (v[i],))
            fwd = partial(op.forward, bk, **params)
            val = partial(op.value(bk), **params) if op.value is not None else None
            # per input: (slot, (shape, dtype)) where a cotangent flows into it, else None
            sums = tuple((i, metas[i]) if f is not None else None for i, f in zip(idx, flows))
            self.steps.append((get, fwd, val, partial(op.vjp, self.F, **params), flows, sums))
            plan.append((idx, fwd, val))
            needs.append(diff and any(f is not None for f in flows))
            metas.append(rec.metas[len(metas) - len_consts[0]])
        self.out = out_spec[1] if out_spec[0] in "sx" else None
        if self.out is None:
            consts.append(self.asarray(out_spec[1]))
        elif self.out >= n_inputs:
            self.out += len_consts[0]
        self.consts = consts
        self.needs, self.metas = needs, metas
        self.value = self._straight_line(plan)

    def _table(self, arrays):
        vals = list(arrays)
        vals.extend(self.consts)
        return vals

    def _result(self, vals):
        return vals[self.out] if self.out is not None else self.consts[-1]

    def _straight_line(self, plan):
        """``value`` as one generated Python function: a line per step calling its rule on
        named locals. The loop below (a table, an itemgetter and a tuple per step) costs about
        as much as the NumPy work of a small func: 3.0 us against 1.6 us for y * (r + a @ y)
        on 3 numbers (2026-12-07), and odeint evaluates func six times per step. The names
        are generated from positions only."""
        n_in, n_fixed = self.n_inputs, self.n_fixed
        env = {"arr_t": self.arr_t, "asarray": self.asarray}
        lines = ["def value(arrays):"]
        if n_in:
            lines.append("    " + "".join(f"v{i}, " for i in range(n_in)) + "= arrays")
        for j, c in enumerate(self.consts):
            env[f"v{n_in + j}"] = c
        for j, (idx, fwd, val) in enumerate(plan):
            k = n_fixed + j
            env[f"f{j}"] = val if val is not None else fwd
            call = f"f{j}({', '.join(f'v{i}' for i in idx)})" + ("" if val is not None else "[0]")
            lines.append(f"    v{k} = {call}")
            lines.append(f"    if type(v{k}) is not arr_t:")
            lines.append(f"        v{k} = asarray(v{k})")
        if self.out is not None:
            lines.append(f"    return v{self.out}")
        else:
            env["out_const"] = self.consts[-1]
            lines.append("    return out_const")
        exec(compile("\n".join(lines), "<odeint replay>", "exec"), env)  # noqa: S102
        return env["value"]

    def value_loop(self, arrays):
        """``value`` by a loop over the steps (what _straight_line's function unrolls)."""
        vals = self._table(arrays)
        arr_t, asarray, append = self.arr_t, self.asarray, vals.append
        for get, fwd, val, _, _, _ in self.steps:
            out = val(*get(vals)) if val is not None else fwd(*get(vals))[0]
            append(out if type(out) is arr_t else asarray(out))
        return self._result(vals)

    def vjp(self, arrays, ct):
        """(func's output, the cotangent of each input: an array or None)."""
        vals = self._table(arrays)
        arr_t, asarray, append = self.arr_t, self.asarray, vals.append
        saved = []
        for get, fwd, _, _, _, _ in self.steps:
            out, sv = fwd(*get(vals))
            append(out if type(out) is arr_t else asarray(out))
            saved.append(sv)
        grads = [None] * len(vals)
        if self.out is not None and self.needs[self.out]:
            grads[self.out] = ct
        self._sweep(grads, saved)
        return self._result(vals), grads[:self.n_inputs]

    def _sweep(self, grads, saved):
        F, needs, base = self.F, self.needs, self.n_fixed
        steps = self.steps
        for j in range(len(steps) - 1, -1, -1):
            g = grads[base + j]
            if g is None or not needs[base + j]:
                continue
            _, _, _, vjp, flows, sums = steps[j]
            gis = vjp(g, saved[j], flows)
            for gi, into in zip(gis, sums):
                if into is None or gi is None:
                    continue
                k, (shape, dtype) = into
                if gi.shape != shape:
                    gi = sum_to(F, gi, shape, 0)
                if gi.dtype != dtype:
                    gi = gi.astype(dtype)
                grads[k] = gi if grads[k] is None else grads[k] + gi


class Eager:
    """func called on tensors at every evaluation (the fallback; see the module docstring)."""

    def __init__(self, fn, bk, n_inputs):
        self.fn, self.bk, self.n_inputs = fn, bk, n_inputs

    def value(self, arrays):
        with Suspend():
            return self.fn(*[Tensor(a, self.bk) for a in arrays])._data

    def vjp(self, arrays, ct):
        from .functional import vjp  # (a cycle: functional builds on the ops this uses)

        with Suspend():
            ins = [Tensor(a, self.bk) for a in arrays]
            out, pull = vjp(self.fn, *ins)
            gs = pull(Tensor(ct, self.bk))
        return out._data, [None if g is None else g._data for g in gs]


def closure_error(rec) -> TapeError:
    t = rec.closure[0]
    return TapeError(
        f"odeint: func reads a tensor of shape {tuple(t.shape)} from outside its arguments "
        f"that a tape tracks (or a forward-mode accumulator carries a tangent for); odeint "
        f"would not differentiate through it. Pass it to odeint in *args (func(y, t, *args))")


def same_values(a, b) -> bool:
    """Replayed and eager outputs equal (they run the same primitives on the same arrays)."""
    return _same(a, b)


def compile_checked(fn, first, second, bk, recording=False):
    """A Program for ``fn`` when the checks of the module docstring pass: ``fn`` is traced at
    the arrays ``first`` and at ``second(output at first)``. Returns (program or None, why
    not, the output at ``first``), and with ``recording`` the first recording and its output
    spec as a fourth item (None where the program is); a closure over a tracked tensor raises
    TapeError."""
    rec, spec, out1 = trace(fn, first, bk)

    def done(prog, why):
        if not recording:
            return prog, why, out1
        return prog, why, out1, (None if prog is None else (rec, spec))

    if rec.closure:
        raise closure_error(rec)
    if rec.read is not None:
        return done(None, f"func reads a value into Python ({rec.read})")
    pts = second(out1)
    rec2, spec2, _ = trace(fn, pts, bk)
    if rec2.read is not None or not same_recording(rec, spec, rec2, spec2):
        return done(None, "func's recording differs between two points")
    prog = Program(rec, spec, bk, len(first))
    with Suspend():  # func itself, with no interceptor of ours watching
        eager = fn(*[Tensor(a, bk) for a in pts])._data
    if not same_values(prog.value(pts), eager):
        return done(None, "the replayed recording differs from func's value")
    return done(prog, None)
