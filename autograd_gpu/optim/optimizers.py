"""Optimizers: SGD (momentum, Nesterov, weight decay, dampening), Adam and AdamW.

``opt.step(grads)`` takes one gradient per parameter, in the order of ``params`` (the order of
``model.parameters()`` and of ``tape.gradient(loss, model.parameters())``); ``None`` entries are
skipped. Updates run on the backend arrays (``bk.xp``), outside any tape, and replace each
parameter's array: values saved by ops recorded before the step keep the old array.

Fused GPU kernels. When the parameter's backend runs the optimizers' kernel family
(``optim/kernels.py``: ``kernels.FAMILY.ready(bk)``), float32 updates call its fused
``sgd_momentum`` or ``adam`` instead of the xp path below, which is its reference (the contracts
are in that module's docstring); the kernels update their array arguments in place.

Loss scaling. A step is skipped (no parameter, state or step-count change) when the gradients
come from an AMP tape that found an inf or NaN (``grads.step_skipped``, see ``ag.amp``), when
``step(grads, scaler=s)`` is given a loss scaler whose ``found_inf`` is true, or with
``step(grads, skip=True)``. ``step`` returns True when it applied the update.
"""

from __future__ import annotations

import math
import numbers
import sys

import numpy as np

from .. import dtypes as _dt
from ..errors import ArgumentError, DeviceError, DTypeError, ShapeError, describe
from ..tensor import Tensor, Variable
from . import kernels

__all__ = ["scaler_says_skip", "Optimizer", "SGD", "Adam", "AdamW"]


def _check_params(params, who):
    params = list(params)
    if not params:
        raise ArgumentError(f"{who}: argument 'params' expected a non-empty list of Variables")
    seen = set()
    for i, p in enumerate(params):
        if not isinstance(p, Variable):
            raise ArgumentError(
                f"{who}: params[{i}] expected a Variable (ag.nn.Parameter), got {describe(p)}"
            )
        if id(p) in seen:
            raise ArgumentError(f"{who}: params[{i}] appears more than once")
        seen.add(id(p))
    return params


def _nonnegative(who, name, v) -> float:
    """A hyper-parameter that must be a finite real number >= 0 (not a bool)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise ArgumentError(f"{who}: argument '{name}' expected a finite number >= 0, got {v!r}")
    return float(v)


def _flag(who, name, v) -> bool:
    if not isinstance(v, (bool, np.bool_)) and v not in (0, 1):
        raise ArgumentError(f"{who}: argument '{name}' expected True or False, got {v!r}")
    return bool(v)


def _betas(who, v) -> tuple:
    ok = isinstance(v, (tuple, list)) and len(v) == 2 and all(
        not isinstance(b, bool) and isinstance(b, numbers.Real) and 0.0 <= b < 1.0 for b in v)
    if not ok:
        raise ArgumentError(f"{who}: argument 'betas' expected two numbers in [0, 1), got {v!r}")
    return (float(v[0]), float(v[1]))


def _count(who, name, v) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
        raise ArgumentError(f"{who}: '{name}' expected an int >= 0, got {v!r}")
    return int(v)


def scaler_says_skip(scaler) -> bool:
    """True when an AMP loss scaler marks the current step to be skipped (inf/NaN found)."""
    if scaler is None:
        return False
    for name in ("found_inf", "skip_step", "should_skip"):
        flag = getattr(scaler, name, None)
        if flag is None:
            continue
        if callable(flag):
            flag = flag()
        if isinstance(flag, Tensor):
            flag = flag.to_scalar()
        return bool(flag)
    raise ArgumentError(
        f"step: argument 'scaler' expected a loss scaler with a 'found_inf' flag, "
        f"got {describe(scaler)}"
    )


class Optimizer:
    """Base class: parameter list, step counting, skip handling and state (de)serialisation."""

    _state_keys: tuple[str, ...] = ()

    def __init__(self, params, lr: float, **hyperparameters):
        who = type(self).__name__
        self.params = _check_params(params, who)
        checked = self._check_hyperparameters(who, {"lr": lr, **hyperparameters})
        for k, v in checked.items():
            setattr(self, k, v)
        self.step_count = 0
        self._dev_steps: dict = {}  # backend -> (0-d device step counter, step_count it holds)
        self.skipped_steps = 0
        # per-parameter state: a dict of backend arrays (created lazily at the first step)
        self.state: list[dict] = [{} for _ in self.params]

    def _grads(self, grads):
        who = type(self).__name__
        if isinstance(grads, Tensor):
            grads = [grads]
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ShapeError(
                f"{who}.step: argument 'grads' expected {len(self.params)} entries (one per "
                f"parameter, in order), got {len(grads)}"
            )
        out = []
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is None:
                out.append(None)
                continue
            if isinstance(g, Tensor):
                if g._bk is not p._bk:
                    raise DeviceError(
                        f"{who}.step: grads[{i}] expected device {p.device} (its parameter's), "
                        f"got {g.device}"
                    )
                arr = g._data
            elif isinstance(g, p._bk.array_type):
                arr = g
            else:
                raise ArgumentError(
                    f"{who}.step: grads[{i}] expected a Tensor or None, got {describe(g)}"
                )
            if tuple(arr.shape) != p.shape:
                raise ShapeError(
                    f"{who}.step: grads[{i}] expected shape {p.shape} (its parameter's), "
                    f"got {tuple(arr.shape)}"
                )
            out.append(arr)
        return out

    def step(self, grads, scaler=None, skip: bool = False) -> bool:
        """Apply one update. Returns False (and changes nothing) for a skipped step."""
        flagged = bool(getattr(grads, "step_skipped", False))
        arrays = self._grads(grads)
        if skip or flagged or scaler_says_skip(scaler):
            self.skipped_steps += 1
            return False
        self.step_count += 1
        for i, (p, g) in enumerate(zip(self.params, arrays)):
            if g is not None:
                self._update(i, p, g)
        return True

    def _update(self, i, p, g):
        raise NotImplementedError

    @staticmethod
    def _work_dtype(p):
        # half-precision parameters keep float32 optimizer state and arithmetic
        return _dt.float32 if p.dtype.itemsize < 4 else p.dtype

    def hyperparameters(self) -> dict:
        return {"lr": self.lr}

    def _check_hyperparameters(self, who: str, hp: dict) -> dict:
        """Validate a full set of hyper-parameters (names as in ``hyperparameters()``) and return
        them normalised. The one check behind the constructor and ``load_state_dict``; a
        subclass extends it with its own names."""
        return {"lr": _nonnegative(who, "lr", hp["lr"])}

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Hyper-parameters, step counts and per-parameter state as host (numpy) arrays."""
        state = [{k: p_state[k] if not hasattr(p_state[k], "shape") else _host(p_state[k])
                  for k in p_state} for p_state in self.state]
        return {"type": type(self).__name__, "hyperparameters": self.hyperparameters(),
                "step_count": self.step_count, "skipped_steps": self.skipped_steps,
                "state": state}

    def load_state_dict(self, sd: dict) -> None:
        """Restore from ``state_dict()``; validates everything first, changes nothing on error."""
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(sd, dict) or sd.get("type") != type(self).__name__:
            raise ArgumentError(f"{who}: expected a state dict of a {type(self).__name__}, "
                                f"got {describe(sd)}")
        state = sd.get("state")
        if not isinstance(state, list) or len(state) != len(self.params):
            got = f"{len(state)} entries" if isinstance(state, list) else describe(state)
            raise ShapeError(f"{who}: 'state' expected a list of {len(self.params)} dicts (one "
                             f"per parameter), got {got}")
        hyper = sd.get("hyperparameters", {})
        if not isinstance(hyper, dict):
            raise ArgumentError(f"{who}: 'hyperparameters' expected a dict, got {describe(hyper)}")
        current = self.hyperparameters()
        for k in hyper:
            if k not in current:
                raise ArgumentError(f"{who}: unknown hyper-parameter {k!r} (expected some of "
                                    f"{sorted(current)})")
        merged = {**current, **hyper}
        checked = self._check_hyperparameters(who, merged)
        # names a subclass lists in hyperparameters() but does not check keep their value as is
        hyper = {k: checked.get(k, v) for k, v in merged.items()}
        step_count = _count(who, "step_count", sd.get("step_count", 0))
        skipped = _count(who, "skipped_steps", sd.get("skipped_steps", 0))
        new_state = []
        for i, (p, st) in enumerate(zip(self.params, state)):
            if not isinstance(st, dict):
                raise ArgumentError(f"{who}: state[{i}] expected a dict, got {describe(st)}")
            entry = {}
            for k, v in st.items():
                if k not in self._state_keys:
                    raise ArgumentError(f"{who}: parameter {i} has unknown state {k!r} "
                                        f"(expected some of {list(self._state_keys)})")
                entry[k] = _state_array(who, f"state {k!r} of parameter {i}", v, p.shape)
            new_state.append(entry)
        # everything is valid: only now convert and assign
        for p, entry in zip(self.params, new_state):
            for k, v in entry.items():
                entry[k] = p._bk.asarray(v.astype(self._work_dtype(p), copy=True))
        self.state = new_state
        for k, v in hyper.items():
            setattr(self, k, v)
        self.step_count = step_count
        self._dev_steps.clear()  # device step counters restart from step_count
        self.skipped_steps = skipped

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} params, {hp})"


def _host(arr):
    return arr.get() if hasattr(arr, "get") and not isinstance(arr, np.ndarray) else np.array(arr)


def _state_array(who, what, v, shape):
    """An optimizer state entry as a host array, after checking its declared shape and dtype
    (an array's attributes, read before any copy): ``shape``, and a real floating dtype (a
    complex or integer buffer would be cast, silently losing a part or meaning)."""
    if isinstance(v, (list, tuple)):
        try:
            v = np.asarray(v)
        except ValueError as exc:
            raise ArgumentError(f"{who}: {what} expected an array, got a ragged list") from exc
    is_array = isinstance(v, (np.ndarray, Tensor)) or type(v).__module__.startswith("cupy")
    if not is_array:
        raise ArgumentError(f"{who}: {what} expected an array, got {describe(v)}")
    if tuple(v.shape) != tuple(shape):
        raise ShapeError(f"{who}: {what} expected shape {tuple(shape)}, got {tuple(v.shape)}")
    dt = np.dtype(v.dtype)
    if not (dt.kind == "f" or dt == _dt.bfloat16):
        raise DTypeError(f"{who}: {what} expected a floating dtype, got {dt}")
    return v.numpy() if isinstance(v, Tensor) else _host(v)


class SGD(Optimizer):
    """Stochastic gradient descent (PyTorch's formulation)::

        g = grad + weight_decay * p
        buf = g (first step) | momentum * buf + (1 - dampening) * g
        p -= lr * (g + momentum * buf  if nesterov else  buf)        (g when momentum == 0)
    """

    _state_keys = ("momentum_buffer",)

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def hyperparameters(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def _check_hyperparameters(self, who: str, hp: dict) -> dict:
        out = super()._check_hyperparameters(who, hp)
        for k in ("momentum", "dampening", "weight_decay"):
            out[k] = _nonnegative(who, k, hp[k])
        out["nesterov"] = _flag(who, "nesterov", hp["nesterov"])
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ArgumentError(f"{who}: nesterov=True expected momentum > 0 and dampening == 0, "
                                f"got momentum={out['momentum']}, dampening={out['dampening']}")
        return out

    def _update(self, i, p, g):
        bk, xp, st = p._bk, p._bk.xp, self.state[i]
        wd, mom = self.weight_decay, self.momentum
        wdt = self._work_dtype(p)
        if _fused_ok(p) and kernels.FAMILY.ready(bk):
            # one fused pass (plain SGD too: w -= lr * g would be two kernels)
            buf = first = None
            if mom:
                first = "momentum_buffer" not in st
                if first:
                    st["momentum_buffer"] = xp.zeros(p.shape, dtype=wdt)
                buf = st["momentum_buffer"]
            kernels.sgd_momentum(bk, _own(p), g.astype(wdt, copy=False), buf, lr=self.lr,
                                 momentum=mom, dampening=self.dampening, weight_decay=wd,
                                 nesterov=self.nesterov, first=bool(first))
            return
        in_place = wdt == p.dtype
        w = _own(p) if in_place else p._data.astype(wdt)
        g = g.astype(wdt, copy=False)
        if wd:
            g = g + wd * w
        if mom:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = g.copy()
            else:
                buf *= mom
                buf += (1.0 - self.dampening) * g
            g = g + mom * buf if self.nesterov else buf
        w -= self.lr * g
        if not in_place:
            p._data = w.astype(p.dtype)


def _fused_ok(p) -> bool:
    """The fused optimizer kernels (kernels/optim.cu) update float32, C-contiguous parameters
    in place; other dtypes (float64, half-precision with float32 state) take the array path."""
    return p.dtype == _dt.float32 and p._data.flags.c_contiguous


def _own(p):
    """``p``'s array, made safe to update in place: when anything besides ``p`` still holds it
    (a saved value of a live persistent tape, a user's reference), ``p`` gets a private copy
    first, so those keep the old values. Usually nothing does and no copy is made."""
    if sys.getrefcount(p._data) > 2:  # p's slot and getrefcount's own argument
        p._data = p._data.copy()
    return p._data


class Adam(Optimizer):
    """Adam (Kingma and Ba) with bias correction; ``weight_decay`` adds an L2 term to the
    gradient (as in PyTorch's Adam)::

        g = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
        p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    """

    _state_keys = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def hyperparameters(self) -> dict:
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _check_hyperparameters(self, who: str, hp: dict) -> dict:
        out = super()._check_hyperparameters(who, hp)
        out["betas"] = _betas(who, hp["betas"])
        out["eps"] = _nonnegative(who, "eps", hp["eps"])
        out["weight_decay"] = _nonnegative(who, "weight_decay", hp["weight_decay"])
        return out

    def _update(self, i, p, g):
        bk, xp, st = p._bk, p._bk.xp, self.state[i]
        b1, b2 = self.betas
        t, lr, wd = self.step_count, self.lr, self.weight_decay
        wdt = self._work_dtype(p)
        if "exp_avg" not in st:
            st["exp_avg"] = xp.zeros(p.shape, dtype=wdt)
            st["exp_avg_sq"] = xp.zeros(p.shape, dtype=wdt)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        if _fused_ok(p) and kernels.FAMILY.ready(bk):
            kernels.adam(bk, _own(p), g.astype(wdt, copy=False), m, v, lr=lr, beta1=b1,
                         beta2=b2, eps=self.eps, weight_decay=wd, decoupled=self._decoupled,
                         step=self._device_step(bk))
            return
        in_place = wdt == p.dtype
        w = _own(p) if in_place else p._data.astype(wdt)
        g = g.astype(wdt, copy=False)
        if wd and self._decoupled:
            w *= 1.0 - lr * wd
        elif wd:
            g = g + wd * w
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        denom = xp.sqrt(v / (1.0 - b2**t)) + self.eps
        w -= (lr / (1.0 - b1**t)) * m / denom
        if not in_place:
            p._data = w.astype(p.dtype)

    def _device_step(self, bk):
        """The step count as a 0-d float32 array on ``bk``'s device, incremented there once per
        step. The fused kernel reads it from device memory, so a step captured by
        ag.cuda.graphed advances the bias correction on every replay (a host int would be
        frozen into the graph; ``step_count`` itself, a host int, is not advanced by replays).
        Restarted from ``step_count`` after load_state_dict; exact up to 2**24 steps."""
        steps = self._dev_steps
        d = steps.get(bk)
        if d is not None and d[1] == self.step_count:
            return d[0]  # already advanced for this step (another parameter)
        if d is not None and d[1] == self.step_count - 1:
            arr = d[0]
            arr += 1  # on the device: replayed by a captured graph
        else:
            arr = bk.xp.full((), float(self.step_count), dtype=np.float32)
        steps[bk] = (arr, self.step_count)
        return arr


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): before the Adam step,
    ``p *= 1 - lr * weight_decay``; the gradient itself carries no decay term."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
