"""ag.integrate: odeint, an adaptive solve of dy/dt = func(y, t, *args), differentiable by the
adjoint method (as jax.experimental.ode.odeint; scipy.integrate's name).

    ys = ag.integrate.odeint(func, y0, t, *args, rtol=1.4e-8, atol=1.4e-8, mxstep=inf,
                             hmax=inf)

The forward solve is JAX's: Dormand-Prince 5(4) steps (the 4th-order embedded solution gives
the error estimate), accepted when the RMS of error / (atol + rtol max(|y0|, |y1|)) is <= 1,
the next step h * min(10, max(0.9 ratio^(-1/5), 0.2)) (0.2 only after a rejection), the first
step from Hairer-Norsett-Wanner's estimate (II.4); outputs at the times t from each step's
4th-order interpolant (so steps are not cut at the output times). mxstep bounds the steps
(attempted, per output interval), hmax the step size. Exceeding mxstep, or a step size that
falls below the rounding of t (a step that could not advance t), raises ODEIntegrationError
(JAX returns values from an unfinished solve). A step whose error estimate is not finite
(func overflowed) is rejected and the step shrunk.

Gradients with respect to y0, t and args come from the adjoint method: the primitive saves
only ys (the values at the output times), and its vjp solves the augmented system
(y, a, t-cotangent, args-cotangents)' = (-f, -a^T df/dy, ..) backwards between consecutive
output times, starting each interval from the saved y(t_i) and adding the output cotangent at
each t_i; the vector-Jacobian products of func are its own rules (see _odetrace: func traced
once and replayed on arrays, or called under ag.vjp). Memory is independent of the number of
steps. The gradients are those of the exact solution, accurate to the tolerances (not the
derivative of the discrete forward solve).

y0 and args are pytrees (nested tuples, lists, dicts of tensors or numbers), as in JAX; func
returns the same structure as y0. y0 and the tensor leaves of args must be floating (real).
Only reverse mode: forward-mode derivatives (ag.jvp, a ForwardAccumulator) and second-order
derivatives through odeint raise TapeError (JAX's odeint is reverse mode only too).

The stepping loop is in Python: on a GPU each step reads its error ratio on the host (one
synchronisation per step).
"""

from __future__ import annotations

import math
import numbers
import weakref

from . import _odetrace as _tr
from . import dtypes as _dt
from .errors import (
    ArgumentError,
    AutogradError,
    DTypeError,
    ShapeError,
    TapeError,
    VmapError,
    describe,
)
from .functional import vjp
from .ops import api as _api
from .ops.context import Suspend
from .ops.registry import Op, apply
from .pytree import tree_flatten, tree_unflatten
from .tensor import Tensor
from .vmap import vmap

__all__ = ["odeint", "ODEIntegrationError"]


class ODEIntegrationError(AutogradError, RuntimeError):
    """odeint could not reach an output time: mxstep steps were not enough, or the step size
    fell to zero (a stiff or blowing-up problem)."""


# Dormand-Prince 5(4) (JAX's odeint's tableau)
_ALPHA = (1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_BETA = (
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_C_ERR = (35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
          -2187 / 6784 - -12231 / 42400, 11 / 84 - 649 / 6300, -1.0 / 60.0)
_C_MID = (6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2,
          -2691868925 / 45128329728 / 2, 187940372067 / 1594534317056 / 2,
          -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2)


class _Tableau:
    """The tableau as arrays of the state's dtype on its device (one dot per stage)."""

    def __init__(self, xp, dtype):
        self.beta = [xp.asarray(row, dtype=dtype) for row in _BETA]
        self.err = xp.asarray(_C_ERR, dtype=dtype)
        self.mid = xp.asarray(_C_MID, dtype=dtype)


# ---- the forward solve on arrays --------------------------------------------------------------


class _Solver:
    """Adaptive Dormand-Prince on backend arrays; ``fun(y, t) -> dy/dt`` (arrays, t a float)."""

    def __init__(self, fun, xp, dtype, n, rtol, atol, mxstep, hmax, rows=None):
        self.fun, self.xp = fun, xp
        self.rtol, self.atol, self.mxstep, self.hmax = rtol, atol, mxstep, hmax
        self.tab = _Tableau(xp, dtype)
        self.k = xp.empty((7, n), dtype=dtype)
        self.heads = [self.k[:i + 1] for i in range(6)]  # the stages each stage combines
        # rows: the state is that many independent systems side by side; a step must satisfy
        # each one's error norm (the largest RMS ratio decides)
        self.rows = rows

    def _norm(self, v):
        return float(self.xp.sqrt(self.xp.sum(v * v)))

    def initial_step(self, y0, f0, t0):
        """Hairer-Norsett-Wanner II.4, as JAX's initial_step_size (order 4)."""
        scale = self.atol + self.xp.abs(y0) * self.rtol
        d0, d1 = self._norm(y0 / scale), self._norm(f0 / scale)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        f1 = self.fun(y0 + h0 * f0, t0 + h0)
        d2 = self._norm((f1 - f0) / scale) / h0
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / 5.0)
        return min(100.0 * h0, h1, self.hmax)

    def step(self, y0, f0, t0, dt):
        """One Dormand-Prince step: (y1, f1, error estimate); the stages stay in self.k."""
        k, fun = self.k, self.fun
        k[0] = f0
        yi = y0
        for i, (row, head) in enumerate(zip(self.tab.beta, self.heads)):
            yi = y0 + (row * dt) @ head
            k[i + 1] = fun(yi, t0 + _ALPHA[i] * dt)
        return yi, k[6].copy(), (self.tab.err * dt) @ k

    def error_ratio(self, err, y0, y1):
        xp = self.xp
        tol = self.atol + self.rtol * xp.maximum(xp.abs(y0), xp.abs(y1))
        r = err / tol
        if self.rows:
            ratio = float(xp.sqrt(xp.max(xp.mean((r * r).reshape(self.rows, -1), axis=1))))
        else:  # RMS (a dot product: NumPy's mean costs more than the arithmetic here)
            ratio = math.sqrt(float(r @ r) / r.size) if r.size else 0.0
        return ratio if math.isfinite(ratio) else math.inf

    def interpolant(self, y0, y1, dt):
        """The 4th-order polynomial through the last step (JAX's interp_fit_dopri), as
        coefficients (a, b, c, d, e) of s in [0, 1]."""
        k = self.k
        y_mid = y0 + dt * (self.tab.mid @ k)
        dy0, dy1 = dt * k[0], dt * k[6]
        a = -2.0 * dy0 + 2.0 * dy1 - 8.0 * y0 - 8.0 * y1 + 16.0 * y_mid
        b = 5.0 * dy0 - 3.0 * dy1 + 18.0 * y0 + 14.0 * y1 - 32.0 * y_mid
        c = -4.0 * dy0 + dy1 - 11.0 * y0 - 5.0 * y1 + 16.0 * y_mid
        return a, b, c, dy0, y0

    def solve(self, y0, ts, f0=None, dt=None, land=False):
        """y at each time of ``ts`` (floats, non-decreasing) from y0 at ts[0], as rows of one
        array, and the step size to continue with. ``land``: cut the last step of each
        interval at its output time instead of stepping past it and interpolating (the
        adjoint's intervals, where the state jumps at each output time anyway)."""
        t = ts[0]
        f = self.fun(y0, t) if f0 is None else f0
        if dt is None:
            dt = self.initial_step(y0, f, t)
        y, last_t, coeffs = y0, t, None
        chunks = [y0[None]]
        i = 1
        while i < len(ts):
            y, f, t, last_t, dt, coeffs = self._advance(y, f, t, last_t, dt, coeffs, ts[i],
                                                        land)
            j = i + 1  # every output time this step reached, at once
            while j < len(ts) and ts[j] <= t:
                j += 1
            chunks.append(self._emit(y, t, last_t, coeffs, ts[i:j], land))
            i = j
        return self.xp.concatenate(chunks), dt

    def _advance(self, y, f, t, last_t, dt, coeffs, target, land):
        """Steps until t >= target (JAX's inner loop; at most mxstep of them)."""
        n = 0
        while t < target:
            if n >= self.mxstep:
                raise ODEIntegrationError(
                    f"odeint: mxstep={self.mxstep:g} steps did not reach t={target!r} "
                    f"(stopped at t={t!r}); raise mxstep or loosen rtol/atol")
            h = min(dt, target - t) if land else dt
            if not t + h > t:  # h is 0, or below t's rounding: a step could never advance t
                raise ODEIntegrationError(
                    f"odeint: the step size fell to {h!r} at t={t!r} before reaching "
                    f"t={target!r} (a stiff or singular problem, or non-finite values)")
            n += 1
            y1, f1, err = self.step(y, f, t, h)
            ratio = self.error_ratio(err, y, y1)
            if ratio <= 1.0:
                if land:
                    t_new = target if h == target - t else t + h
                else:
                    t_new = t + h
                    if t_new >= target:
                        coeffs = self.interpolant(y, y1, h)
                y, f, last_t, t = y1, f1, t, t_new
            dt = min(self.hmax, _next_step(h, ratio) if h == dt or ratio > 1.0 else dt)
        return y, f, t, last_t, dt, coeffs

    def _emit(self, y, t, last_t, coeffs, targets, land):
        """The rows for output times in (last_t, t]: the interpolant at each (one polynomial
        evaluation for all of them), or y itself where the step landed on them."""
        if land or coeffs is None:
            return self.xp.broadcast_to(y, (len(targets),) + y.shape)
        s = self.xp.asarray([(v - last_t) / (t - last_t) for v in targets],
                            dtype=y.dtype)[:, None]
        return _polyval(coeffs, s)


def _next_step(dt, ratio):
    """JAX's optimal_step_size: safety 0.9, growth at most 10, shrink at most 0.2 after a
    rejection (and none after an acceptance), exponent 1/5."""
    if ratio == 0.0:
        return dt * 10.0
    lower = 1.0 if ratio < 1.0 else 0.2
    return dt * min(10.0, max(ratio ** (-0.2) * 0.9, lower))


def _polyval(coeffs, s):
    a, b, c, d, e = coeffs
    return (((a * s + b) * s + c) * s + d) * s + e


# ---- func on flat arrays --------------------------------------------------------------------


class _Dynamics:
    """func(y, t, *args) on a flat state: ``value(y, t, args)`` and ``vjp(y, t, args, ct)`` on
    backend arrays, through a traced program or eager calls (see _odetrace)."""

    def __init__(self, func, y_def, y_metas, arg_def, arg_slots, bk, t_dtype, trace):
        self.func, self.y_def, self.y_metas = func, y_def, y_metas
        self.arg_def, self.arg_slots = arg_def, arg_slots
        self.bk, self.t_dtype, self.trace = bk, t_dtype, trace
        self.impl = None
        self.traced = False
        self.why_eager = None
        self.signature = None  # the traced program's (steps, output spec): _transitions' cache

    def flat_fn(self, y, t, *arg_tensors):
        """func on Tensors: a flat state in, the flat derivative out."""
        leaves, at = [], 0
        for shape, size in self.y_metas:
            part = y if len(self.y_metas) == 1 else y[at:at + size]
            leaves.append(part if shape == (size,) else _api.reshape(part, shape))
            at += size
        it = iter(arg_tensors)
        args = [next(it) if s is _TENSOR else s for s in self.arg_slots]
        res = self.func(tree_unflatten(self.y_def, leaves), t,
                        *tree_unflatten(self.arg_def, args))
        return _ravel_output(res, self.y_def, self.y_metas)

    def _t(self, t):
        return self.bk.xp.asarray(t, dtype=self.t_dtype)

    def prepare(self, y0, t0, args):
        """Trace func at y0 and at the first-step probe point, and choose the program or eager
        calls (the checks of _odetrace's docstring)."""
        self.impl, self.traced, self.why_eager, self.signature = None, False, None, None
        trace = self.trace
        n_in = 2 + len(args)
        first = [y0, self._t(t0), *args]

        def second(f0):
            y1, t1 = _probe(self.bk.xp, y0, f0, t0)
            return [y1, self._t(t1), *args]

        prog, why, _, recd = _tr.compile_checked(self.flat_fn, first, second, self.bk,
                                                 recording=True)
        if not trace:
            self.why_eager = "trace=False"
        elif prog is None:
            self.why_eager = why
        else:
            self.impl, self.traced = prog, True
            self.signature = (recd[0].steps, recd[1])
        if self.impl is None:
            self.impl = _tr.Eager(self.flat_fn, self.bk, n_in)

    def value(self, y, t, args):
        return self.impl.value([y, self._t(t), *args])

    def value_fn(self, args):
        """``value`` with args fixed, as the solver's ``fun(y, t)`` (fewer calls per
        evaluation)."""
        value, asarray, t_dtype = self.impl.value, self.bk.xp.asarray, self.t_dtype
        return lambda y, t: value([y, asarray(t, dtype=t_dtype), *args])

    def value_many(self, ys, ts, args):
        """func at each (ys[k], ts[k]), stacked."""
        return self.bk.xp.stack([self.value(y, t, args) for y, t in zip(ys, ts)])

    def vjp(self, y, t, args, ct):
        return self.impl.vjp([y, self._t(t), *args], ct)


_TENSOR = object()  # marks the argument leaves that are the primitive's inputs


def _probe(xp, y0, f0, t0):
    """The point Hairer-Norsett-Wanner's first-step estimate probes: y0 + h0 f0 at t0 + h0."""
    d0 = float(xp.sqrt(xp.sum(y0 * y0)))
    d1 = float(xp.sqrt(xp.sum(f0 * f0)))
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 or not math.isfinite(d1) else 0.01 * d0 / d1
    return y0 + h0 * f0, t0 + h0


def _ravel_output(res, y_def, y_metas):
    leaves, tdef = tree_flatten(res)
    if tdef != y_def or len(leaves) != len(y_metas):
        raise ShapeError(f"odeint: func expected to return the structure of y0 ({y_def}), got "
                         f"{tdef}")
    flat = []
    for i, (leaf, (shape, size)) in enumerate(zip(leaves, y_metas)):
        if not isinstance(leaf, Tensor) or tuple(leaf.shape) != shape:
            got = tuple(leaf.shape) if isinstance(leaf, Tensor) else describe(leaf)
            raise ShapeError(f"odeint: func's output leaf {i} expected a tensor of y0's shape "
                             f"{shape}, got {got}")
        flat.append(leaf if shape == (size,) else _api.reshape(leaf, (size,)))
    return flat[0] if len(flat) == 1 else _api.concatenate(flat)


# ---- the primitive ----------------------------------------------------------------------------


def _host_times(bk, ts):
    return [float(v) for v in bk.to_numpy(ts).tolist()]


def _solver(fun, bk, dtype, n, p, rows=None):
    return _Solver(fun, bk.xp, dtype, n, p["rtol"], p["atol"], p["mxstep"], p["hmax"], rows)


class _OdeintImpl:
    """ys = y(t) for dy/dt = func(y, t, *args), y(t[0]) = y0 (ag.integrate.odeint). Saves ys
    only; the vjp is the adjoint solve (module docstring). The stepping loop reads each step's
    error ratio on the host (a synchronisation per step on a GPU). Not in the registry: func is
    a parameter, so the registry's sampled checks do not apply (tests/test_odeint.py checks
    it)."""

    runs_user_code = True  # func's own errors pass through the registry as raised

    @staticmethod
    def forward(bk, y0, ts, *args, dyn, rtol, atol, mxstep, hmax):
        p = {"rtol": rtol, "atol": atol, "mxstep": mxstep, "hmax": hmax}
        th = _host_times(bk, ts)
        _check_times(th)
        # traced here, on the arrays of this call (under ag.vmap the op runs once per example,
        # and the wrapper's inputs are batched values)
        dyn.prepare(y0, th[0], list(args))
        solver = _solver(dyn.value_fn(args), bk, y0.dtype, y0.shape[0], p)
        out, _ = solver.solve(y0, th)
        return out, (out, ts, *args)

    @staticmethod
    def vjp(F, g, saved, needs, dyn, **p):
        arrays = [g, *saved]
        if any(isinstance(a, Tensor) for a in arrays):  # a recorded sweep: differentiable?
            if any(isinstance(a, Tensor) and (a._tapes or a._fw) for a in arrays):
                raise TapeError("odeint: second-order derivatives through odeint are not "
                                "implemented (its vjp, the adjoint solve, is not recorded)")
            arrays = [a._data if isinstance(a, Tensor) else a for a in arrays]
        g, ys, ts, *args = arrays
        bk = F.bk
        trans = _transitions(dyn, ys, ts, args, bk, p)
        flat = g.reshape((-1,) + tuple(g.shape[-2:]))  # a batch of cotangents: a Jacobian
        if trans is not None:
            per = [_recurrence(trans, flat[b], args, bk) for b in range(flat.shape[0])]
        else:
            per = [_adjoint(dyn, ys, ts, args, flat[b], bk, p) for b in range(flat.shape[0])]
        if g.ndim > 2:
            res = [bk.xp.stack([r[i] for r in per]).reshape(
                tuple(g.shape[:-2]) + tuple(per[0][i].shape)) for i in range(len(per[0]))]
        else:
            res = per[0]
        if isinstance(saved[0], Tensor):
            res = [None if r is None else Tensor(r, bk) for r in res]
        return tuple(r if nd else None for r, nd in zip(res, needs))

    @staticmethod
    def jvp(F, ts, saved, **p):
        raise TapeError("odeint: forward-mode derivatives (ag.jvp, ForwardAccumulator) are not "
                        "implemented: odeint is differentiated in reverse mode only, as JAX's "
                        "(use ag.grad, ag.vjp or ag.jacobian(..., mode='reverse'))")


_ODEINT = Op("odeint", _OdeintImpl, ("dyn", "rtol", "atol", "mxstep", "hmax"),
             lambda out, *ins, **p: 60.0 * float(out.size), True, True, False,
             saves=lambda n, params: ("out", 1, *range(2, n)))


def _adjoint(dyn, ys, ts, args, g, bk, p):
    """The cotangents of (y0, ts, *args) from the output cotangent g (T, n): the augmented
    state (y, a = y-cotangent, t0-cotangent, args-cotangents) solved backwards in s = -t over
    each output interval, as JAX's odeint's reverse pass (each interval starts from the saved
    y(t_i); the step size carries over from one interval to the next)."""
    xp = bk.xp
    nt, n = ys.shape
    th = _host_times(bk, ts)
    sizes = [a.size for a in args]
    m = sum(sizes)
    dtype = ys.dtype

    def aug(z, s):
        f, cts = dyn.vjp(z[:n], -s, args, z[n:2 * n])
        out = xp.zeros(z.shape, dtype)
        out[:n] = -f
        if cts[0] is not None:
            out[n:2 * n] = cts[0]
        if cts[1] is not None:
            out[2 * n] = cts[1]
        at = 2 * n + 1
        for c, size in zip(cts[2:], sizes):
            if c is not None:
                out[at:at + size] = c.reshape(size)
            at += size
        return out

    solver = _solver(aug, bk, dtype, 2 * n + 1 + m, p)
    y_bar = xp.array(g[-1], dtype=dtype)
    t0_bar = 0.0
    a_bar = xp.zeros(m, dtype)
    ts_bar = xp.zeros(nt, dtype)
    dt = None
    for i in range(nt - 1, 0, -1):
        z = xp.concatenate([ys[i], y_bar, xp.zeros(1, dtype), a_bar])
        f0 = aug(z, -th[i])
        t_bar = -xp.sum(f0[:n] * g[i])  # f(y_i, t_i) . g_i
        ts_bar[i] = t_bar
        t0_bar = t0_bar - t_bar
        z[2 * n] = t0_bar
        zs, dt = solver.solve(z, [-th[i], -th[i - 1]], f0=f0, dt=dt, land=True)
        z1 = zs[-1]
        y_bar = z1[n:2 * n] + g[i - 1]
        t0_bar = z1[2 * n]
        a_bar = z1[2 * n + 1:]
    ts_bar[0] = t0_bar
    out, at = [y_bar, ts_bar], 0
    for a, size in zip(args, sizes):
        out.append(a_bar[at:at + size].reshape(a.shape).astype(a.dtype, copy=False))
        at += size
    return out


# the interval-parallel adjoint: at most this many numbers in the batched state (else the
# sequential solve, whose state is one interval's)
_PARALLEL_LIMIT = 4_000_000


def _interval_rhs(dyn, shape, sizes):
    """The batched augmented right-hand side on Tensors: (z (bt * width,), s (0-d), t_end (bt,),
    length (bt,), *args) -> dz/ds. func's value and its Jacobians' products with the n rows of
    each interval come from ag.vmap over intervals of ag.vjp (the rows mapped by an inner
    vmap). The interval times and func's arguments are inputs, not constants, so that its
    program serves later calls with other values (_RHS_CACHE)."""
    bt, n, width = shape

    def one(y, t, rows, *arg_t):
        out, pull = vjp(dyn.flat_fn, y, t, *arg_t)
        return (out, *vmap(pull)(rows))

    def rhs(z, s, t_end, length, *arg_t):
        batched = vmap(one, in_axes=(0, 0, 0) + (None,) * len(arg_t))
        zz = _api.reshape(z, (bt, width))
        # d/ds = length * d/dt: the rows enter scaled (the products are linear in them), so
        # that only func's value is scaled apart, not the whole width (a pass over the state
        # less per evaluation: 28 of 440 us with 1,000 outputs, 2026-12-07)
        rows = _api.reshape(zz[:, n:n + n * n], (bt, n, n)) * _api.reshape(length, (bt, 1, 1))
        f, cy, ct, *ca = batched(zz[:, :n], t_end - s * length, rows, *arg_t)
        parts = [f * _api.reshape(-length, (bt, 1)), _api.reshape(cy, (bt, n * n))]
        # each argument's block of Theta (row j: that argument's cotangent for row j) apart,
        # so that one concatenation builds the whole derivative
        parts.extend(_api.reshape(c, (bt, n * size)) for c, size in zip(ca, sizes))
        parts.append(_api.reshape(ct, (bt, n)))
        return _api.reshape(_api.concatenate(parts, axis=1), (bt * width,))

    return rhs


def _transitions(dyn, ys, ts, args, bk, p):
    """The adjoint's linear maps over every output interval at once, or None where this does
    not apply (one time, a state too large, a func ag.vmap cannot map).

    Over interval i (t_i back to t_{i-1}) the adjoint is linear in its start value a_i: the
    end value is Phi_i^T a_i, the args-cotangent increment Theta_i^T a_i and the t0-cotangent
    increment tau_i . a_i, where row j of (Phi_i, Theta_i, tau_i) is the augmented solve
    started from e_j. All intervals' rows (with y re-integrated from ys[i]) are one batched
    system in normalised time (t = t_i - s (t_i - t_{i-1}), s in [0, 1]), solved with one
    step sequence that meets every interval's error norm; the output cotangents are then
    combined by a short recurrence (_recurrence). It is JAX's adjoint system, n rows at a
    time. The batched right-hand side is traced and replayed like func (_odetrace), so a
    step costs a few dozen array operations on the whole batch; its program is kept for later
    calls with the same func (_RHS_CACHE)."""
    xp = bk.xp
    nt, n = ys.shape
    sizes = [a.size for a in args]
    bt, width = nt - 1, n + n * n + n * sum(sizes) + n
    if bt < 1 or bt * width > _PARALLEL_LIMIT or dyn.why_eager is not None:
        return None
    th = _host_times(bk, ts)
    t_end = xp.asarray(th[1:], dtype=ts.dtype)
    length = xp.asarray([b - a for a, b in zip(th, th[1:])], dtype=ts.dtype)
    rhs_t = _interval_rhs(dyn, (bt, n, width), sizes)
    z0 = xp.concatenate([ys[1:], xp.tile(xp.eye(n, dtype=ys.dtype).reshape(1, -1), (bt, 1)),
                         xp.zeros((bt, width - n - n * n), ys.dtype)], axis=1).reshape(-1)
    s0 = xp.asarray(0.0, dtype=ts.dtype)
    probe = 1e-3  # the second trace point: a thousandth into the normalised solve
    key = _rhs_key(dyn, bk, (bt, n, width), ys, ts, args)
    prog = _cached_rhs(dyn, key)
    if prog is not None:
        f0 = prog.value([z0, s0, t_end, length, *args])
    else:
        try:
            prog, _, f0 = _tr.compile_checked(
                rhs_t, [z0, s0, t_end, length, *args],
                lambda f: [z0 + probe * f, xp.asarray(probe, ts.dtype), t_end, length, *args],
                bk)
        except VmapError:  # value-dependent Python in func: the sequential solve
            return None
        if prog is not None:
            _store_rhs(dyn, key, prog)
    fs = -f0.reshape(bt, width)[:, :n] / xp.where(length == 0, 1.0, length)[:, None]
    if bool(xp.any(length == 0)):  # repeated times: f there is not in the scaled f0
        fs = xp.where((length == 0)[:, None], dyn.value_many(ys[1:], th[1:], args), fs)
    if prog is not None:
        def rhs(z, s):
            return prog.value([z, xp.asarray(s, dtype=ts.dtype), t_end, length, *args])
    else:
        fixed = [Tensor(a, bk) for a in (t_end, length, *args)]

        def rhs(z, s):
            with Suspend():
                return rhs_t(Tensor(z, bk), Tensor(xp.asarray(s, dtype=ts.dtype), bk),
                             *fixed)._data
    solver = _solver(rhs, bk, ys.dtype, bt * width, p, rows=bt)
    zs, _ = solver.solve(z0, [0.0, 1.0], f0=f0, land=True)
    z1 = zs[-1].reshape(bt, width)
    phi = z1[:, n:n + n * n].reshape(bt, n, n)
    blocks, at = [], n + n * n  # each argument's block (_interval_rhs), side by side
    for size in sizes:
        blocks.append(z1[:, at:at + n * size].reshape(bt, n, size))
        at += n * size
    theta = (xp.concatenate(blocks, axis=2) if blocks
             else xp.zeros((bt, n, 0), dtype=z1.dtype))
    return phi, theta, z1[:, -n:], fs


# Programs of the batched right-hand side, per func (weakly: an entry goes with its func), for
# later odeint calls with the same func. Tracing it (vmap of vjp of func, twice, and the checks)
# cost 7 ms of a 34 ms value-and-gradient with 1,000 output times (2026-12-07). An entry is
# used only where every shape, dtype, structure and non-tensor argument match and func's
# recording at this call (dyn.signature: its ops, parameters and constants, at two points) is
# the one the program was built from: the program is vmap and vjp of those primitives, and
# the interval times and arguments are its inputs. What the key cannot see: a func that records
# the same primitives as before but would record others under vmap or vjp (branching on the
# transform it runs under) gets the program built for the first; none is known, and
# trace=False bypasses the cache.
_RHS_CACHE = weakref.WeakKeyDictionary()
_RHS_PER_FUNC = 4


def _rhs_key(dyn, bk, shape, ys, ts, args):
    slots = tuple(s._data if isinstance(s, Tensor) else s for s in dyn.arg_slots)
    return (bk, shape, ys.dtype, ts.dtype, dyn.y_def, tuple(dyn.y_metas), dyn.arg_def, slots,
            tuple((tuple(a.shape), a.dtype) for a in args))


def _cached_rhs(dyn, key):
    try:
        entries = _RHS_CACHE.get(dyn.func, ())
    except TypeError:  # func cannot be weakly referenced or hashed: no cache
        return None
    steps, spec = dyn.signature
    for k, (steps2, spec2), prog in entries:
        if _tr.same_values(k, key) and _tr.same_steps(steps2, spec2, steps, spec):
            return prog
    return None


def _store_rhs(dyn, key, prog):
    try:
        entries = _RHS_CACHE.setdefault(dyn.func, [])
    except TypeError:
        return
    entries.insert(0, (key, dyn.signature, prog))
    del entries[_RHS_PER_FUNC:]


def _recurrence(trans, g, args, bk):
    """(y0, ts, *args) cotangents from the interval maps and one output cotangent g (T, n)."""
    xp = bk.xp
    phi, theta, tau, fs = trans
    bt, n = fs.shape
    starts = xp.empty((bt, n), dtype=g.dtype)  # the adjoint where each interval starts
    a = g[-1]
    for i in range(bt, 0, -1):
        starts[i - 1] = a
        a = a @ phi[i - 1] + g[i - 1]
    t_bar = xp.sum(fs * g[1:], axis=1)
    ts_bar = xp.concatenate([xp.reshape(xp.sum(tau * starts) - xp.sum(t_bar), (1,)), t_bar])
    a_bar = xp.einsum("bj,bjm->m", starts, theta)
    out, at = [a, ts_bar], 0
    for arg in args:
        out.append(a_bar[at:at + arg.size].reshape(arg.shape).astype(arg.dtype, copy=False))
        at += arg.size
    return out


# ---- the public function ----------------------------------------------------------------------


def _check_options(rtol, atol, mxstep, hmax):
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not v >= 0:
            raise ArgumentError(f"odeint: argument '{name}' expected a non-negative real "
                                f"number, got {v!r}")
    if rtol == 0 and atol == 0:
        raise ArgumentError("odeint: rtol and atol are both 0 (no step would be accepted)")
    if (not isinstance(mxstep, numbers.Real) or isinstance(mxstep, bool) or not mxstep >= 1
            or (math.isfinite(mxstep) and mxstep != int(mxstep))):
        raise ArgumentError(f"odeint: argument 'mxstep' expected a positive integer or inf, "
                            f"got {mxstep!r}")
    if not isinstance(hmax, numbers.Real) or isinstance(hmax, bool) or not hmax > 0:
        raise ArgumentError(f"odeint: argument 'hmax' expected a positive real number or inf, "
                            f"got {hmax!r}")
    return float(rtol), float(atol), float(mxstep), float(hmax)


def _leaf_tensor(x, like, what):
    if isinstance(x, Tensor):
        return x
    if type(x).__module__.startswith(("numpy", "cupy")) or isinstance(x, (list, tuple)):
        return Tensor.from_array(x, device=None if like is None else like.device)
    raise ArgumentError(f"odeint: {what} expected a tensor or an array, got {describe(x)}")


def _state(y0):
    """y0's leaves as one flat tensor, with the tree and each leaf's (shape, size)."""
    leaves, y_def = tree_flatten(y0)
    if not leaves:
        raise ArgumentError("odeint: argument 'y0' expected at least one tensor leaf, got none")
    like = next((x for x in leaves if isinstance(x, Tensor)), None)
    ts = []
    for i, x in enumerate(leaves):
        if isinstance(x, numbers.Real) and not isinstance(x, bool):
            x = Tensor.from_array(float(x), dtype="float64",
                                  device=None if like is None else like.device)
        t = _leaf_tensor(x, like, f"y0 leaf {i}")
        if not _dt.is_floating(t.dtype):
            raise DTypeError(f"odeint: y0 leaf {i} expected a real floating dtype, got "
                             f"{_dt.name(t.dtype)}")
        ts.append(t)
    dtype = ts[0].dtype
    for t in ts[1:]:
        dtype = t._bk.xp.result_type(dtype, t.dtype)
    ts = [t if t.dtype == dtype else _api.astype(t, dtype) for t in ts]
    metas = [(tuple(t.shape), int(t.size)) for t in ts]
    flat = [t if t.ndim == 1 else _api.reshape(t, (t.size,)) for t in ts]
    y = flat[0] if len(flat) == 1 else _api.concatenate(flat)
    return y, y_def, metas


def _arguments(args, like):
    """The floating tensor leaves of args (the primitive's inputs) and every leaf's slot:
    _TENSOR for those, the value itself for the rest (numbers and integer tensors, constants
    to func)."""
    leaves, arg_def = tree_flatten(tuple(args))
    inputs, slots = [], []
    for i, x in enumerate(leaves):
        if isinstance(x, numbers.Number) or x is None or isinstance(x, str):
            slots.append(x)
            continue
        t = _leaf_tensor(x, like, f"args leaf {i}")
        if t._bk is not like._bk:
            raise ArgumentError(f"odeint: args leaf {i} lives on {t.device}, y0 on "
                                f"{like.device} (move it with .to(...))")
        if _dt.is_floating(t.dtype):
            inputs.append(t)
            slots.append(_TENSOR)
        elif t.dtype.kind == "c":
            raise DTypeError(f"odeint: args leaf {i} is complex ({_dt.name(t.dtype)}); odeint "
                             f"takes real arguments")
        else:
            slots.append(t)
    return inputs, slots, arg_def


def _times(t, like):
    t = _leaf_tensor(t, like, "argument 't'")
    if t.ndim != 1 or t.shape[0] < 1:
        raise ShapeError(f"odeint: argument 't' expected a 1-d array of output times, got shape "
                         f"{tuple(t.shape)}")
    if not _dt.is_floating(t.dtype):
        t = _api.astype(t, "float64")
    return t


def _check_times(th):
    if any(not math.isfinite(v) for v in th):
        raise ArgumentError("odeint: argument 't' expected finite times, got "
                            f"{[v for v in th if not math.isfinite(v)][:3]}")
    if any(b < a for a, b in zip(th, th[1:])):
        raise ArgumentError("odeint: argument 't' expected non-decreasing times (JAX's "
                            "odeint integrates forward in time), got a decrease")


def odeint(func, y0, t, *args, rtol=1.4e-8, atol=1.4e-8, mxstep=math.inf, hmax=math.inf,
           trace=True):
    """The solution of dy/dt = func(y, t, *args), y(t[0]) = y0, at the times t (non-
    decreasing), with a leading axis over t on each leaf (jax.experimental.ode.odeint's
    signature and algorithm; see the module docstring). Differentiable in y0, t and the
    floating tensor leaves of args by the adjoint method (reverse mode). ``trace=False`` calls
    func eagerly at every evaluation instead of replaying its recording (for a func whose
    structure depends on values in a way the trace checks cannot see; _odetrace)."""
    if not callable(func):
        raise ArgumentError(f"odeint: argument 'func' expected a callable, got {describe(func)}")
    p = dict(zip(("rtol", "atol", "mxstep", "hmax"), _check_options(rtol, atol, mxstep, hmax)))
    y, y_def, metas = _state(y0)
    ts = _times(t, y)
    inputs, slots, arg_def = _arguments(args, y)
    dyn = _Dynamics(func, y_def, metas, arg_def, slots, y._bk, ts.dtype, bool(trace))
    ys = apply(_ODEINT, y, ts, *inputs, dyn=dyn, **p)
    nt = ts.shape[0]
    leaves, at = [], 0
    for shape, size in metas:
        part = ys if len(metas) == 1 else ys[:, at:at + size]
        leaves.append(part if shape == (size,) else _api.reshape(part, (nt,) + shape))
        at += size
    return tree_unflatten(y_def, leaves)


odeint.op = _ODEINT  # the primitive behind it (tools/numpy_coverage.py reads it)
