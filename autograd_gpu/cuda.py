"""CUDA utilities: availability, synchronisation and CUDA-graph capture of a whole step.

``ag.cuda.graphed(step)`` runs ``step`` eagerly for a few warm-up calls (so that kernels are
compiled, cuBLAS handles and workspaces exist and lazily created state such as optimizer
buffers is allocated), then captures one call into a CUDA graph and from then on replays it:
one graph launch instead of hundreds of kernel launches from Python.

Rules for a graphed step (the usual ones for CUDA graphs):

* Inputs are Tensors with fixed shapes and dtypes (or constants that never change). Each call
  copies the new inputs into the captured input buffers before the replay.
* The outputs are the same Tensor objects on every call and are overwritten by the next replay;
  copy them (``t.numpy()``, or ``Tensor.from_array(t.data.copy())``) to keep a value.
* State must be updated in place (parameters, optimizer buffers, loss-scale counters). A step
  that rebinds a Variable to a new array would replay from the values captured at capture time.
* No host synchronisation inside the step (``float(loss)``, ``.numpy()``, ``.item()``), and no
  host-to-device copies of new data: CUDA cannot capture them, and capture fails with an error.
* Python control flow is frozen at capture: branches taken during capture are replayed.
* Random ops (dropout) cannot be captured: their seed is drawn on the host, so replays would
  repeat one mask. Capturing a step that runs one raises ``ArgumentError``.
* Host-side counters are not advanced by replays (``opt.step_count``, a loss scaler's
  counters). The fused Adam/AdamW kernels read the step count from a device counter that the
  step increments, so their bias correction does advance on every replay.
* Matmuls (float16/bfloat16/float32/float64) are captured through direct cuBLAS calls with a
  workspace owned by the graph (CuPy itself refuses cuBLAS calls during capture); ``einsum`` and
  integer matmuls still go through CuPy and cannot be captured.

Memory used inside the captured step comes from a private CuPy pool owned by the graph, so
nothing outside the step can be handed a buffer that a replay will overwrite.
"""

from __future__ import annotations

import functools

from .backend import cublas
from .backend.base import Device
from .backend.cupy_backend import cupy_status
from .backend.cupy_backend import device_count as _device_count
from .errors import ArgumentError, DeviceError
from .ops.context import pop_hook, push_hook
from .tensor import Tensor

__all__ = ["GraphedStep", "device_count", "empty_cache", "graphed", "is_available",
           "memory_info", "synchronize"]


def is_available() -> bool:
    """True when CuPy imports and a CUDA GPU is usable."""
    return cupy_status()[0]


def device_count() -> int:
    return _device_count()


def _cupy():
    ok, reason = cupy_status()
    if not ok:
        raise DeviceError(f"ag.cuda: no usable GPU ({reason})")
    import cupy  # optional dependency (cupy)

    return cupy


def synchronize(device=None) -> None:
    """Wait for all work queued on the device (default: the current one)."""
    cp = _cupy()
    if device is None:
        cp.cuda.Device().synchronize()
    else:
        cp.cuda.Device(Device(device).index or 0).synchronize()


def memory_info(device=None) -> dict:
    """Device memory in bytes: ``pool_used`` and ``pool_held`` (CuPy's pool: arrays alive, and
    that plus cached free blocks), ``device_free`` and ``device_total`` (the whole GPU)."""
    cp = _cupy()
    idx = 0 if device is None else (Device(device).index or 0)
    with cp.cuda.Device(idx):
        pool = cp.get_default_memory_pool()
        free, total = cp.cuda.runtime.memGetInfo()
        return {"pool_used": int(pool.used_bytes()), "pool_held": int(pool.total_bytes()),
                "device_free": int(free), "device_total": int(total)}


def empty_cache() -> None:
    """Return CuPy's cached free blocks (default pool and pinned pool) to the driver."""
    cp = _cupy()
    cp.get_default_memory_pool().free_all_blocks()
    cp.get_default_pinned_memory_pool().free_all_blocks()


def _refuse_random_ops(phase, op, args, params, call):
    """Hook active while a step is captured. A random op draws its seed on the host when it
    runs, so a captured graph would replay the same random numbers on every call (the same
    dropout mask each step): refuse loudly instead."""
    if phase == "forward" and "seed" in op.params:
        raise ArgumentError(
            f"ag.cuda.graphed: the step runs the random op '{op.name}', whose seed is drawn on "
            "the host; every replay of the captured graph would reuse the same random numbers. "
            "Graph a step without it (an evaluation step, or dropout p=0 / training=False), or "
            "run this step eagerly")
    return call(args, params)


def _flatten(obj, out):
    """Tensors in a nested structure of tuples/lists/dicts, in a fixed order."""
    if isinstance(obj, Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _flatten(o, out)
    elif isinstance(obj, dict):
        for k in obj:
            _flatten(obj[k], out)
    return out


class GraphedStep:
    """A callable that replays ``fn`` from a CUDA graph after ``warmup`` eager calls.

    Attributes: ``calls`` (calls so far), ``captured`` (bool), ``graph`` (the cupy Graph).
    """

    def __init__(self, fn, warmup: int = 3):
        if warmup < 1:
            raise ArgumentError(f"ag.cuda.graphed: argument 'warmup' expected >= 1, got {warmup}")
        self.fn = fn
        self.warmup = int(warmup)
        self.calls = 0
        self.graph = None
        self._pool = None
        self._stream = None
        self._static_in = None
        self._in_sig = None
        self._out = None
        self._cublas = None
        functools.update_wrapper(self, fn)

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def _signature(self, args, kwargs):
        ts = _flatten([list(args), kwargs], [])
        sig = tuple((t.shape, str(t.dtype), str(t.device)) for t in ts)
        return ts, sig

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            return self.fn(*args, **kwargs)
        if self.graph is None:
            return self._capture(args, kwargs)
        return self._replay(args, kwargs)

    def _capture(self, args, kwargs):
        cp = _cupy()
        ts, sig = self._signature(args, kwargs)
        for t in ts:
            if not t._bk.graph_capture:
                raise DeviceError(
                    f"ag.cuda.graphed: inputs must live on a GPU, got one on {t.device}")
        # Private copies of the inputs: the graph reads from these on every replay.
        static = {id(t): Tensor(t._data.copy(), t._bk) for t in ts}

        def swap(obj):
            if isinstance(obj, Tensor):
                return static.get(id(obj), obj)
            if isinstance(obj, list):
                return [swap(o) for o in obj]
            if isinstance(obj, tuple):
                return tuple(swap(o) for o in obj)
            if isinstance(obj, dict):
                return {k: swap(v) for k, v in obj.items()}
            return obj

        s_args, s_kwargs = swap(list(args)), swap(kwargs)
        cur = cp.cuda.get_current_stream()
        stream = cp.cuda.Stream(non_blocking=True)
        stream.wait_event(cur.record())
        pool = cp.cuda.MemoryPool()
        out = None
        # matmuls inside the capture call cuBLAS directly, bound to this stream and to a
        # workspace that lives as long as the graph (CuPy refuses cuBLAS calls in a capture)
        binding = cublas.Binding(stream.ptr)
        with cp.cuda.using_allocator(pool.malloc), stream, cublas.capturing(binding):
            stream.begin_capture()
            push_hook(_refuse_random_ops)
            try:
                out = self.fn(*s_args, **s_kwargs)
            except BaseException as exc:
                try:
                    stream.end_capture()
                except Exception:
                    pass
                if isinstance(exc, ArgumentError):
                    raise
                raise DeviceError(
                    "ag.cuda.graphed: capturing the step failed; a captured step must not "
                    "synchronise with the host (float(), .numpy(), .item()) or copy new data "
                    f"from the host ({type(exc).__name__}: {exc})") from exc
            finally:
                pop_hook(_refuse_random_ops)
            graph = stream.end_capture()
        self.graph, self._pool, self._stream = graph, pool, stream
        self._cublas = binding  # keeps the workspace the graph's GEMMs use alive
        self._static_in = [static[id(t)] for t in ts]
        self._in_sig = sig
        self._out = out
        # Capturing ran nothing: launch once so that this call performs its step.
        graph.launch(stream=cur)
        return out

    def _replay(self, args, kwargs):
        cp = _cupy()
        ts, sig = self._signature(args, kwargs)
        if sig != self._in_sig:
            raise ArgumentError(
                f"ag.cuda.graphed: inputs expected (shape, dtype, device) {self._in_sig} as at "
                f"capture, got {sig}; build a new graphed step for new shapes")
        cur = cp.cuda.get_current_stream()
        for src, dst in zip(ts, self._static_in):
            if src._data is not dst._data:
                dst._data[...] = src._data
        self.graph.launch(stream=cur)
        return self._out

    def __repr__(self) -> str:
        state = "captured" if self.captured else f"warm-up {self.calls}/{self.warmup}"
        return f"GraphedStep({getattr(self.fn, '__name__', self.fn)!r}, {state})"


def graphed(fn=None, *, warmup: int = 3):
    """Wrap a training step for CUDA-graph replay (see the module docstring). Usable as
    ``step = ag.cuda.graphed(step)`` or as a decorator ``@ag.cuda.graphed(warmup=5)``."""
    if fn is None:
        return lambda f: GraphedStep(f, warmup=warmup)
    return GraphedStep(fn, warmup=warmup)
