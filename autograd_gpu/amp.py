"""Mixed precision: autocast to float16/bfloat16 and loss scaling.

A tape built with an :class:`AmpConfig` (``GradientTape(amp=cfg)`` or
``GradientTape.with_amp_config(cfg)``) does two things:

* **Autocast.** While it records, every op goes through a hook that picks the dtype the op runs
  in: ops named in ``autocast_ops`` run in the low precision (float16 or bfloat16), ops named in
  ``keep_fp32_ops`` run in float32 (float16/bfloat16 inputs are cast up; float64 stays), and any
  other op follows its inputs: when its floating inputs disagree, the widest wins (float64 over
  float32; float16 with bfloat16 meet in float32). Casts are ordinary differentiable ``astype``
  ops, so gradients flow back through them and reach each source in the source's own dtype
  (float32 master weights stay float32). A cast of the same tensor to the same dtype is made once
  and reused for the tape's life (keyed weakly by the tensor's identity: a weight used in several
  matmuls is cast once).

* **Loss scaling.** ``tape.gradient`` multiplies the seed of each target by ``scaler.scale``,
  runs the sweep, then unscales every gradient and checks all of them for inf/NaN in one pass
  (on a GPU with the fused kernel of kernels/amp.cu, declared below; one host synchronisation
  per call). On overflow the step is marked skipped and a dynamic scaler backs
  off; after ``growth_interval`` clean steps it grows. Each ``gradient`` call on such a tape is
  one step of the scaler's state machine.

Skipping a step (the protocol the optimizers follow): the list ``tape.gradient`` returns is an
:class:`AmpGradients` (a ``list``) whose ``step_skipped`` attribute is true after an overflow;
``tape.step_skipped`` and ``scaler.found_inf`` say the same. ``opt.step(grads)`` calls
:func:`should_skip` (``getattr(grads, "step_skipped", False)``) and, when it is true, leaves every
parameter and every optimizer state untouched. Code that rebuilds the list (clipping, gradient
accumulation) must carry the flag over, or test ``tape.step_skipped`` itself.

The loss should be a float32 value (it is, when it comes out of float32 ops such as a softmax
kept in float32): a float16 loss times a scale of 65536 overflows at once, which a dynamic
scaler survives by backing off, but a static one does not.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np

from . import dtypes as _dt
from .addons import TapeAddon, register_config
from .backend.kernels import multi_tensor as _mt
from .backend.kernels.loader import KernelFamily
from .errors import ArgumentError, describe
from .ops.elementwise import AsType
from .ops.registry import REGISTRY, apply
from .options import OptionEnum
from .tensor import Tensor

__all__ = ["AmpConfig", "AmpGradients", "LossScaler", "PrecisionMode", "should_skip"]


class PrecisionMode(OptionEnum):
    """The low precision autocast ops run in."""

    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"

    @property
    def dtype(self):
        return _dt.float16 if self is PrecisionMode.FLOAT16 else _dt.bfloat16

    @classmethod
    def _aliases(cls) -> dict:
        return {cls.FLOAT16: ("float16", "fp16", "half"), cls.BFLOAT16: ("bfloat16", "bf16")}



# ---------------------------------------------------------------------------------------------
# loss scaling

_KINDS = ("dynamic", "static", "none")
_STATE_KEYS = ("kind", "scale", "growth_factor", "backoff_factor", "growth_interval",
               "min_scale", "max_scale", "growth_tracker", "skipped_steps", "steps", "found_inf")


class LossScaler:
    """Loss scale and its state machine. Build one with :meth:`dynamic`, :meth:`static` or
    :meth:`none`; it is shared by every tape made with the same AmpConfig, so its state carries
    over from step to step.

    State: ``scale`` (current), ``found_inf`` (the last step overflowed), ``skipped_steps``,
    ``growth_tracker`` (clean steps since the scale last changed), ``steps``.

    Dynamic rule, once per step: overflow -> ``scale = max(scale * backoff_factor, min_scale)``,
    tracker reset, step skipped; clean -> tracker + 1, and when it reaches ``growth_interval``
    ``scale = min(scale * growth_factor, max_scale)`` and the tracker resets. A static scaler
    keeps its scale but still skips overflowing steps. ``none()`` does not scale, unscale or
    check (no host synchronisation).
    """

    def __init__(self, kind: str = "dynamic", scale: float = 65536.0, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000,
                 min_scale: float = 1.0, max_scale: float = 2.0 ** 24):
        if kind not in _KINDS:
            raise ArgumentError(f"LossScaler: argument 'kind' expected one of {_KINDS}, "
                                f"got {kind!r}")
        if kind == "none":
            scale = 1.0
        _positive("scale", scale)
        _positive("min_scale", min_scale)
        _positive("max_scale", max_scale)
        if not growth_factor > 1.0:
            raise ArgumentError(f"LossScaler: argument 'growth_factor' expected > 1, "
                                f"got {growth_factor!r}")
        if not 0.0 < backoff_factor < 1.0:
            raise ArgumentError(f"LossScaler: argument 'backoff_factor' expected in (0, 1), "
                                f"got {backoff_factor!r}")
        if not (isinstance(growth_interval, int) and growth_interval >= 1):
            raise ArgumentError(f"LossScaler: argument 'growth_interval' expected an int >= 1, "
                                f"got {growth_interval!r}")
        if min_scale > max_scale:
            raise ArgumentError(f"LossScaler: expected min_scale <= max_scale, got "
                                f"min_scale={min_scale}, max_scale={max_scale}")
        if kind == "dynamic" and not min_scale <= scale <= max_scale:
            raise ArgumentError(f"LossScaler: argument 'init_scale' expected within "
                                f"[{min_scale}, {max_scale}], got {scale}")
        self.kind = kind
        self.scale = float(scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.growth_tracker = 0
        self.skipped_steps = 0
        self.steps = 0
        self.found_inf = False

    # ---- constructors (guide style) ---------------------------------------------------------
    @classmethod
    def dynamic(cls, init_scale: float = 65536.0, growth_factor: float = 2.0,
                backoff_factor: float = 0.5, growth_interval: int = 2000,
                min_scale: float = 1.0, max_scale: float = 2.0 ** 24) -> LossScaler:
        return cls("dynamic", init_scale, growth_factor, backoff_factor, growth_interval,
                   min_scale, max_scale)

    @classmethod
    def static(cls, scale: float) -> LossScaler:
        return cls("static", scale, min_scale=min(1.0, scale), max_scale=max(2.0 ** 24, scale))

    @classmethod
    def none(cls) -> LossScaler:
        return cls("none")

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    # ---- the state machine ------------------------------------------------------------------
    def update(self, found_inf: bool) -> None:
        """Advance one step: ``found_inf`` says whether this step's gradients overflowed."""
        found_inf = bool(found_inf)
        self.steps += 1
        self.found_inf = found_inf
        if found_inf:
            self.skipped_steps += 1
        if self.kind != "dynamic":
            return
        if found_inf:
            self.scale = max(self.scale * self.backoff_factor, self.min_scale)
            self.growth_tracker = 0
        else:
            self.growth_tracker += 1
            if self.growth_tracker >= self.growth_interval:
                self.scale = min(self.scale * self.growth_factor, self.max_scale)
                self.growth_tracker = 0

    def unscale_and_check(self, grads: list, bk) -> tuple[list, bool]:
        """(gradients divided by the current scale, whether any holds an inf or NaN).

        ``grads``: backend arrays or None, owned by the caller's sweep (they are unscaled in
        place where that is safe). One pass over the data and one host synchronisation: on a
        GPU the fused kernel (``fused_unscale_and_check``, in place on private C-contiguous
        copies where needed) when the backend runs it, else the xp path.
        """
        idx = [i for i, g in enumerate(grads) if g is not None]
        if not idx:
            return list(grads), False
        inv = 1.0 / self.scale
        res = list(grads)
        if KERNELS.ready(bk):
            arrays = _private_contiguous(bk.xp, [grads[i] for i in idx])
            flag = fused_unscale_and_check(bk, arrays, inv)
            outs = arrays
        else:
            outs, flag = _unscale_and_check_xp(bk.xp, [grads[i] for i in idx], inv)
        found = bool(flag)  # the step's one host synchronisation
        for i, o in zip(idx, outs):
            res[i] = o
        return res, found

    # ---- save / restore ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in _STATE_KEYS}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ArgumentError(f"LossScaler.load_state_dict: argument 'state' expected a dict, "
                                f"got {describe(state)}")
        missing = [k for k in _STATE_KEYS if k not in state]
        extra = [k for k in state if k not in _STATE_KEYS]
        if missing or extra:
            raise ArgumentError(
                f"LossScaler.load_state_dict: argument 'state' expected keys {_STATE_KEYS}, "
                f"got missing {missing} and unknown {extra}"
            )
        new = LossScaler(state["kind"], state["scale"], state["growth_factor"],
                         state["backoff_factor"], int(state["growth_interval"]),
                         state["min_scale"], state["max_scale"])
        new.growth_tracker = int(state["growth_tracker"])
        new.skipped_steps = int(state["skipped_steps"])
        new.steps = int(state["steps"])
        new.found_inf = bool(state["found_inf"])
        self.__dict__.update(new.__dict__)

    def __repr__(self) -> str:
        if self.kind == "none":
            return "LossScaler.none()"
        return (f"LossScaler({self.kind}, scale={self.scale:g}, found_inf={self.found_inf}, "
                f"skipped_steps={self.skipped_steps}, growth_tracker={self.growth_tracker})")


def _positive(name, v):
    if not (isinstance(v, (int, float)) and v > 0 and v != float("inf")):
        raise ArgumentError(f"LossScaler: argument '{name}' expected a finite number > 0, "
                            f"got {v!r}")


def _root(a):
    while a.base is not None and hasattr(a.base, "flags"):
        a = a.base
    return a


def _private_contiguous(xp, arrays):
    """The arrays, each C-contiguous and sharing memory with no other one in the list (a
    sweep may hand the same cotangent, or views of one buffer, to several sources), so that an
    in-place unscale touches every value exactly once."""
    seen = set()
    out = []
    for a in arrays:
        r = id(_root(a))
        if r in seen or not a.flags.c_contiguous:
            a = xp.array(a, order="C", copy=True)
            r = id(a)
        seen.add(r)
        out.append(a)
    return out


def _unscale_and_check_xp(xp, arrays, inv_scale):
    """The reference path of the fused kernel: multiply, then one reduction per array, stacked
    so that the caller's single ``bool()`` is the only synchronisation."""
    outs = [a * inv_scale for a in arrays]  # weak scalar: keeps each array's dtype
    finite = [xp.isfinite(o).all() for o in outs]
    flag = ~xp.stack(finite).all() if len(finite) > 1 else ~finite[0]
    return outs, flag


def _ref_unscale_and_check(arrays, inv_scale):
    """NumPy: each array *= inv_scale in place; 1.0 if any value was inf or NaN, else 0.0."""
    bad = any(not np.isfinite(a.astype(np.float64)).all() for a in arrays)
    for a in arrays:
        a[...] = (a.astype(np.float64) * float(inv_scale)).astype(a.dtype)
    return np.float32(bad)


KERNELS = KernelFamily(
    "amp", source="amp", templates=("unscale_check",), entries=("fused_unscale_and_check",),
    references={"fused_unscale_and_check": _ref_unscale_and_check},
    callers=("LossScaler.unscale_and_check",))


def fused_unscale_and_check(bk, arrays, inv_scale):
    """In place: each array *= inv_scale (a number or a 0-d device array). Returns
    ``found_inf``, a 0-d float32 device array: 1.0 if any element (before scaling) was inf or
    NaN, else 0.0. One launch per MT_SLOTS arrays of a dtype."""
    xp = bk.xp
    arrays = list(arrays)
    _mt.check_inplace(arrays, "unscale_and_check")
    found = xp.zeros((), dtype=np.float32)
    inv = _mt.device_scalar(xp, inv_scale)
    for dt, idx in _mt.groups(arrays):
        KERNELS.kernel(bk, "unscale_check", dt)(
            (_mt.blocks(arrays, idx), len(idx)), (256,),
            tuple(_mt.slots([arrays], idx)) + (inv, found))
    return found


class AmpGradients(list):
    """The gradient list of an AMP tape: a list, plus what the step's optimizer needs to know.

    ``step_skipped``: the gradients overflowed; the optimizer must not apply them.
    ``scale``: the loss scale the sweep used (already divided out of the values).
    """

    def __init__(self, items, step_skipped: bool = False, scale: float = 1.0):
        super().__init__(items)
        self.step_skipped = bool(step_skipped)
        self.scale = float(scale)

    @property
    def found_inf(self) -> bool:
        return self.step_skipped


def should_skip(grads) -> bool:
    """Whether an optimizer must skip the step these gradients belong to."""
    return bool(getattr(grads, "step_skipped", False))


# ---------------------------------------------------------------------------------------------
# configuration


def _op_names(value, what) -> frozenset:
    if isinstance(value, str):
        value = (value,)
    try:
        names = frozenset(value)
    except TypeError as exc:
        raise ArgumentError(f"AmpConfig: argument '{what}' expected a sequence of op names, "
                            f"got {value!r}") from exc
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ArgumentError(f"AmpConfig: argument '{what}' expected op names (str), got {bad!r}")
    unknown = sorted(n for n in names if n not in REGISTRY)
    if unknown:  # a name no primitive has would silently never match
        raise ArgumentError(f"AmpConfig: argument '{what}' expected names of primitives (e.g. "
                            f"'matmul', 'conv2d', 'softmax'), got unknown {unknown}")
    return names


@dataclass
class AmpConfig:
    """Mixed-precision settings for a tape (see the module docstring).

    The loss scaler defaults to ``LossScaler.dynamic()``; it holds the state across steps, so
    reuse one AmpConfig for every step of a training run.
    """

    enabled: bool = True
    precision_mode: PrecisionMode = PrecisionMode.FLOAT16
    loss_scaler: LossScaler = field(default_factory=LossScaler.dynamic)
    autocast_ops: tuple = ("matmul", "conv2d")
    keep_fp32_ops: tuple = ("softmax", "layer_norm")

    def __post_init__(self):
        self.enabled = bool(self.enabled)
        self.precision_mode = PrecisionMode.parse(
            self.precision_mode, "AmpConfig", "precision_mode"
        )
        if self.loss_scaler is None:
            self.loss_scaler = LossScaler.none()
        if not isinstance(self.loss_scaler, LossScaler):
            raise ArgumentError(f"AmpConfig: argument 'loss_scaler' expected a LossScaler, "
                                f"got {describe(self.loss_scaler)}")
        low = _op_names(self.autocast_ops, "autocast_ops")
        high = _op_names(self.keep_fp32_ops, "keep_fp32_ops")
        both = sorted(low & high)
        if both:
            raise ArgumentError(f"AmpConfig: ops {both} are in both autocast_ops and "
                                "keep_fp32_ops")
        self.autocast_ops = tuple(sorted(low))
        self.keep_fp32_ops = tuple(sorted(high))

    @property
    def dtype(self):
        """The low-precision dtype."""
        return self.precision_mode.dtype

    @property
    def scaler(self) -> LossScaler:
        return self.loss_scaler


# ---------------------------------------------------------------------------------------------
# the per-tape machinery

_LOW = frozenset({_dt.float16, _dt.bfloat16})


class _CastCache:
    """Casts made on one tape: (id(source), dtype) -> entry. An entry dies with its source (weak
    reference callback) and is only reused while the source still holds the same array, is
    tracked by the same tapes, and the cast's node still propagates for the same tapes (a tape
    reset releases it)."""

    __slots__ = ("_d",)

    def __init__(self):
        self._d = {}

    def cast(self, x: Tensor, dtype) -> Tensor:
        key = (id(x), dtype)
        e = self._d.get(key)
        if e is not None:
            ref, data, tapes, out, node_tapes = e
            if (ref() is x and x._data is data and x._tapes is tapes
                    and (out._node is None or out._node.tapes == node_tapes)):
                return out
        out = apply(AsType, x, dtype=dtype)
        d = self._d
        ref = weakref.ref(x, lambda _r, k=key: d.pop(k, None))
        d[key] = (ref, x._data, x._tapes, out,
                  None if out._node is None else frozenset(out._node.tapes))
        return out

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        """Drop every cast (the tape released its graph). The entries hold their sources' arrays,
        and an optimizer updates a parameter in place only when nothing else holds its array."""
        self._d.clear()


def _backend(args):
    return next(a._bk for a in args if isinstance(a, Tensor))


def _promotes_to(dtypes, want) -> bool:
    try:
        return np.result_type(*dtypes) == want
    except TypeError:  # bfloat16 with float16: no NumPy promotion (DTypePromotionError)
        return False


class _Autocast:
    """The 'forward' hook that casts an op's floating inputs (see the module docstring)."""

    def __init__(self, cfg: AmpConfig):
        self.low = cfg.dtype
        self.low_ops = frozenset(cfg.autocast_ops)
        self.fp32_ops = frozenset(cfg.keep_fp32_ops)
        self.cache = _CastCache()

    def target(self, name, dtypes):
        """The dtype an op named ``name`` runs in, given its floating inputs' dtypes (None: as
        they are)."""
        if name in self.low_ops:
            return self.low
        if name in self.fp32_ops:
            return _dt.float32 if dtypes & _LOW else None
        if len(dtypes) < 2:
            return None
        return _dt.float64 if _dt.float64 in dtypes else _dt.float32

    def __call__(self, phase, op, args, params, call):
        if phase != "forward" or op is AsType:
            return call(args, params)
        dtypes = {a._data.dtype for a in args
                  if isinstance(a, Tensor) and a._data.dtype in _dt.FLOATING}
        want = self.target(op.name, dtypes) if dtypes else None
        if want is None:
            return call(args, params)
        if dtypes != {want} and op.broadcasting and op.name not in self.fp32_ops \
                and _promotes_to(dtypes, want) and _backend(args).mixed_floats_ok(dtypes):
            # an elementwise op on mixed floats computes in the promoted dtype by itself, in
            # one kernel that converts as it reads: no separate cast pass over the low input
            # (the tape casts that input's cotangent back to its dtype, as a cast's vjp would)
            return call(args, params)
        if dtypes != {want}:
            keep64 = op.name in self.fp32_ops  # float32 ops only lift the low precisions
            cast = self.cache.cast
            args = tuple(
                cast(a, want)
                if isinstance(a, Tensor) and a._data.dtype in _dt.FLOATING
                and a._data.dtype != want and not (keep64 and a._data.dtype == _dt.float64)
                else a
                for a in args
            )
        out = call(args, params)
        if want is self.low and out._data.dtype != want and out._data.dtype in _dt.FLOATING:
            # NumPy computes bfloat16 matmuls in float32 and returns float32: round the result
            # so that the op's output really is in the low precision
            out = apply(AsType, out, dtype=want)
        return out


class _AmpTape(TapeAddon):
    """An AMP tape's add-on: autocast while it records and sweeps, seed scaling, unscaling and
    the skip flag."""

    kind = "amp"

    def __init__(self, cfg: AmpConfig):
        self.config = cfg
        self.scaler = cfg.loss_scaler
        self.autocast = _Autocast(cfg)
        self.interceptors = (self.autocast,)
        self.step_skipped = False
        self._scale = 1.0

    def scale_seed(self, seed):
        """The seed (an array, or a Tensor from output_gradients) times the loss scale."""
        self._scale = s = self.scaler.scale if self.scaler.enabled else 1.0
        if s == 1.0:
            return seed
        return seed * s  # a Tensor seed goes through apply (recorded if it is tracked)

    def on_release(self) -> None:
        self.autocast.cache.clear()

    def finish(self, grads: list) -> AmpGradients:
        """Unscale, and check for inf/NaN (an overflow marks the step skipped)."""
        scaler = self.scaler
        if not scaler.enabled:
            return AmpGradients(grads)
        bk = next((g._bk for g in grads if g is not None), None)
        if bk is None:
            scaler.update(False)
            self.step_skipped = False
            return AmpGradients(grads, scale=self._scale)
        # (a recorded gradient keeps its array: the fused kernel unscales in place)
        raw, found = scaler.unscale_and_check(
            [None if g is None else g._data.copy() if g._tapes else g._data for g in grads], bk)
        scaler.update(found)
        self.step_skipped = found
        inv = 1.0 / self._scale
        # A gradient an outer tape records (higher order) is unscaled by a recorded multiply so
        # that it stays differentiable; the others take the unscaled arrays.
        out = [None if a is None else (g * inv if g._tapes else Tensor(a, bk))
               for g, a in zip(grads, raw)]
        return AmpGradients(out, found, self._scale)


def _amp_config(cfg, tape):
    """GradientTape(amp=...): an AmpConfig; an enabled one gives the tape an _AmpTape add-on."""
    if not isinstance(cfg, AmpConfig):
        raise ArgumentError(f"GradientTape: argument 'amp' expected an AmpConfig, "
                            f"got {describe(cfg)}")
    return cfg, (_AmpTape(cfg) if cfg.enabled else None)


register_config("amp", _amp_config)
