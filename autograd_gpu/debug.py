"""``ag.detect_anomaly()``: raise at the first NaN or inf that any op produces, and at a saved
array written in place between the forward and the backward pass.

Inside the context every op's output (forward) and every rule's gradients (backward) are checked;
the error names the op, where its forward was called from, and its inputs' shapes and dtypes.
Each node recorded inside it also keeps a checksum of its saved arrays, compared before its rule
runs: on the CPU the library's own handles are read-only, but an array passed with
``from_array(..., copy=False)``, a GPU array or one shared through DLPack can still be written.
Each check synchronises with the device, so this is a debugging tool, not a training mode.
"""

from __future__ import annotations

import contextlib
import os
import traceback
import weakref

import numpy
import numpy as np

from .backend import backend_of_array
from .errors import AnomalyError, ArgumentError
from .ops.context import pop_hook, push_hook
from .tensor import Tensor

_PKG = os.path.dirname(os.path.abspath(__file__))


def _call_site() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not os.path.abspath(frame.filename).startswith(_PKG):
            return f"{frame.filename}:{frame.lineno} in {frame.name}: {frame.line}"
    return "<inside autograd_gpu>"


def _bad(arr) -> str | None:
    """'NaN'/'inf' if a floating array holds one, else None."""
    dt = getattr(arr, "dtype", None)
    if dt is None or dt.kind not in "fc" and str(dt) != "bfloat16":
        return None
    xp = _xp(arr)
    if bool(xp.isnan(arr).any()):
        return "NaN"
    if bool(xp.isinf(arr).any()):
        return "inf"
    return None


def _xp(arr):
    if type(arr).__module__.startswith("cupy"):
        import cupy  # optional dependency (cupy)

        return cupy
    return numpy


def _describe_inputs(args) -> str:
    parts = []
    for a in args:
        d = a._data if isinstance(a, Tensor) else a
        if hasattr(d, "shape"):
            flag = _bad(d)
            parts.append(f"{tuple(d.shape)} {d.dtype}" + (f" (already has {flag})" if flag else ""))
        else:
            parts.append(repr(d))
    return ", ".join(parts)


def _checksums(node) -> tuple:
    """Per saved slot: a checksum of its array (None for a number or a shape)."""
    bk = None
    out = []
    for s in node.saved or ():
        if isinstance(s, (np.ndarray, np.generic)) or type(s).__module__.startswith("cupy"):
            if bk is None:
                bk = backend_of_array(s)
            out.append(bk.checksum(s))
        else:
            out.append(None)
    return tuple(out)


class _AnomalyHook:
    def __init__(self, check_forward: bool, check_backward: bool):
        self.check_forward = check_forward
        self.check_backward = check_backward
        self.sums = weakref.WeakKeyDictionary()  # node -> checksums of its saved arrays

    def on_record(self, node):
        node.site = _call_site()
        if self.check_backward and node.saved:
            self.sums[node] = _checksums(node)

    def _check_saved(self, op, node) -> None:
        """The node's saved arrays are still what its forward saved (a checkpointing replay
        rebuilds them: not compared)."""
        before = self.sums.get(node)
        if before is None or node.extra is not None or node.saved is None:
            return
        for k, (a, b) in enumerate(zip(before, _checksums(node))):
            if a != b:
                code = node.saved_map[k]
                what = "its output" if code == -2 else f"input {code}" if code >= 0 \
                    else "a constant it computed"
                raise AnomalyError(
                    f"detect_anomaly: saved value {k} of op '{op.name}' ({what}) was written in "
                    f"place after the op recorded it, so its gradient would be wrong; its "
                    f"forward was called at {node.site}. Pass a copy (Tensor.from_array copies "
                    "by default) or do not write into arrays a tape may still need")

    def __call__(self, phase, op, args, params, call):
        if phase == "vjp" and self.check_backward and len(args) > 2:
            self._check_saved(op, args[2])
        if (phase == "forward" and self.check_forward) or (
                phase == "vjp" and self.check_backward):
            # NumPy's RuntimeWarning ("invalid value encountered in log") would only precede
            # the AnomalyError below, which names the op and where it was called
            with np.errstate(all="ignore"):
                out = call(args, params)
        else:
            out = call(args, params)
        if phase == "forward" and self.check_forward:
            flag = _bad(out._data)
            if flag:
                raise AnomalyError(
                    f"detect_anomaly: op '{op.name}' produced {flag} in its forward pass, called "
                    f"at {_call_site()}; inputs: {_describe_inputs(args)}; params: {params}"
                )
        elif phase == "vjp" and self.check_backward:
            node = args[2] if len(args) > 2 else None
            for i, gi in enumerate(out):
                if gi is None:
                    continue
                flag = _bad(gi._data if isinstance(gi, Tensor) else gi)
                if flag:
                    site = getattr(node, "site", None) or "<recorded before detect_anomaly>"
                    shapes = ", ".join(str(m[0]) for m in getattr(node, "in_meta", ()))
                    raise AnomalyError(
                        f"detect_anomaly: the gradient of op '{op.name}' for input {i} has "
                        f"{flag}; its forward was called at {site}; input shapes: ({shapes}); "
                        f"params: {params}"
                    )
        return out


@contextlib.contextmanager
def detect_anomaly(check_forward: bool = True, check_backward: bool = True):
    """Context in which a NaN or inf produced by any op raises AnomalyError at once."""
    for name, v in (("check_forward", check_forward), ("check_backward", check_backward)):
        if not isinstance(v, bool):
            raise ArgumentError(f"detect_anomaly: argument '{name}' expected a bool, got {v!r}")
    hook = _AnomalyHook(check_forward, check_backward)
    push_hook(hook)
    try:
        yield hook
    finally:
        pop_hook(hook)


__all__ = ["detect_anomaly"]
