"""Python wrappers of the fused CUDA kernels in ``autograd_gpu/kernels/*.cu``.

Sources are compiled with NVRTC through ``cupy.RawModule`` (templates instantiated for float,
double, __half and __nv_bfloat16 by ``name_expressions``) once per (file, device) and cached;
CuPy also caches the binaries on disk. Every launch goes to the current CuPy stream, takes its
memory from CuPy's pool and never waits for the device, so all of them can be captured into a
CUDA graph (``ag.cuda.graphed``).

``bk.kernel(name)`` (see ``kernels.KERNELS``) returns one of these callables; arrays are cupy
arrays, shapes are arbitrary with the reduced axis last, dtypes float16, bfloat16, float32 or
float64 unless noted (anything else raises TypeError). The numpy reference of each is its op's
xp path.

Per-op kernels
  softmax_lastdim(x) -> y                         y = softmax(x, axis=-1)
  log_softmax_lastdim(x) -> y                     y = log_softmax(x, axis=-1)
  softmax_lastdim_grad(g, y) -> dx                dx = y * (g - sum(g * y, -1))
  log_softmax_lastdim_grad(g, y) -> dx            dx = g - exp(y) * sum(g, -1)
  cross_entropy(logits, labels, ignore_index=None, label_smoothing=0.0, want_dlogits=True)
        -> (loss, lse, dlogits), one pass: with q = (1 - s) onehot(label) + s / C,
        lse = logsumexp(logits[..., :]), loss = lse - (1 - s) logits[label] - s mean(logits)
        (float32; float64 for float64 logits; NaN loss and lse for a label outside [0, C);
        loss 0 where label == ignore_index), dlogits = softmax(logits) - q: d loss / d logits
        in the logits' dtype (None unless want_dlogits).
  cross_entropy_dlogits(logits, labels, lse, ignore_index=None, label_smoothing=0.0)
        -> dlogits = e / sum(e) - q with e = exp(logits - lse), from the saved lse (the op's
        backward; the division cancels lse's rounding).
  cross_entropy_grad(g, dlogits) -> dx            dx = dlogits * g[..., None]
  layer_norm(x, gamma=None, beta=None, eps=1e-5) -> (y, mean, rstd)
        over the last axis; mean/rstd have shape x.shape[:-1] (float32, float64 for float64)
  layer_norm_grad(g, x, gamma, mean, rstd, need_params=True) -> (dx, dgamma, dbeta)
        dgamma = sum(g * xhat), dbeta = sum(g) over all leading axes (None if not needed)
  layer_norm_grad_y(g, y, rstd) -> dx             dx = rstd * (g - mean(g) - y * mean(g * y)),
                                                  the backward of the affine-free layer norm
                                                  from its output (the op's saved values)
  bias_act(x, b, act) -> y                        y = act(x + b), b over the last axis (or
                                                  None); act in "relu", "gelu" (tanh form),
                                                  "tanh"
  bias_act_grad(g, x, b, act) -> (dx, db)         dx = g * act'(x + b); db = sum of dx over
                                                  the leading axes (None when b is None)
  scatter_add(target, index, values) -> target    deterministic target[index] += values, in
                                                  place (sort-based segment sum; no atomics)
  dropout(x, p, seed, offset=0) -> (y, mask)      Philox mask: y = x * keep / (1 - p), mask
                                                  bool; the same (seed, offset) gives the same
                                                  mask (see ``philox_uniform``, its CPU twin)
  dropout_mask(shape, p, seed, offset=0, dtype=float32) -> m   m = keep / (1 - p)
  relu(x) -> y or None                            maximum(x, 0)      } C-contiguous arrays aligned
  relu_grad(g, x) -> dx or None                   0 where x <= 0 else g } to 4 elements, same
  add_rowvec(x, b) -> y or None                   x + b, b over the last } dtype (None otherwise);
                                                  axis, its length % 4 == 0 } self-checked
  cast(x, dtype) -> y or None                     x.astype(dtype) for C-contiguous, 16-byte
                                                  aligned x between float32 and float16 or
                                                  bfloat16 (None for anything else: the caller
                                                  uses astype); each direction checks itself
                                                  bit for bit against NumPy on first use
  small_scalar(op, x, s) -> y or None             x + s, x - s, s - x, x * s, x / s, s / x  }
                                                  (op add, sub, rsub, mul, div, rdiv; s of } arrays
                                                  x's dtype)                               } under
  small_unary(op, x) -> y or None                 cupy.<op>(x): negative, exp, expm1, log, } 65,536
                                                  log1p, sqrt, abs, sin, cos, tan, tanh   } elems,
  small_act_grad(op, g, t) -> dx or None          g - g t t (tanh), g (t - t t) (sigmoid) } float32
                                                  or float64, C-contiguous (None otherwise); each
                                                  (op, dtype) checks itself on first use against
                                                  the CuPy kernel it replaces (see small.cu)

Multi-tensor helpers (plain functions taking the backend first): ``global_norm(bk, arrays)``,
``clip_by_global_norm(bk, arrays, max_norm)``, ``scale(bk, arrays, coef)``,
``unscale_and_check(bk, arrays, inv_scale) -> found_inf``, ``sgd_momentum_(bk, ...)``,
``adam_(bk, ...)``. Through ``bk.kernel(name)``: "global_norm", "clip_by_global_norm" and
"unscale_and_check" with ``bk`` bound; "sgd_momentum" and "adam" with the per-parameter keyword
contract of optim/optimizers.py (``make_sgd_momentum``, ``make_adam``), lists accepted too.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from .. import dtypes as _dt

_CTYPE = {
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    np.dtype(np.float16): "__half",
    _dt.bfloat16: "__nv_bfloat16",
}
_ACTS = {"relu": 0, "gelu": 1, "gelu_tanh": 1, "tanh": 2}

# kernels of each source file that are templates over the storage type
_TEMPLATES = {
    "softmax": ("softmax_fwd", "softmax_bwd"),
    "cross_entropy": ("ce_fwd", "ce_dlogits", "ce_bwd"),
    "layer_norm": ("ln_fwd", "ln_bwd_dx", "ln_bwd_y", "ln_bwd_params"),
    "bias_act": ("bias_act_fwd", "bias_act_bwd"),
    "segment_sum": ("segment_sum",),
    "multi_tensor": ("l2norm_partial", "mt_scale", "unscale_check"),
    "dropout": ("dropout_fwd",),
    "optim": (),
    "cast": (),
    "elementwise": ("relu_fwd", "relu_bwd", "add_rowvec"),
    "small": (),
}
_PLAIN = {"dropout": ("philox_words",), "optim": ("sgd_momentum", "adam"),
          "cast": ("cast_f32_bf16", "cast_bf16_f32", "cast_f32_f16", "cast_f16_f32"),
          "small": tuple(f"small_{k}_{t}" for k in ("scalar", "unary", "act_grad")
                         for t in ("f32", "f64"))}

_lock = threading.Lock()
_modules: dict = {}
MT_SLOTS = 8  # tensors per multi-tensor launch (common.cuh)


def _ctype(dtype) -> str:
    try:
        return _CTYPE[np.dtype(dtype)]
    except KeyError:
        raise TypeError(
            f"fused kernel: expected float16, bfloat16, float32 or float64, got "
            f"{_dt.name(dtype)}"
        ) from None


def _acc(dtype):
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def module(stem: str, device_index: int = 0):
    """The compiled RawModule of ``kernels/<stem>.cu`` for a device (compiled once, cached)."""
    key = (stem, device_index)
    mod = _modules.get(key)
    if mod is None:
        with _lock:
            mod = _modules.get(key)
            if mod is None:
                import cupy

                from .kernels import kernel_source

                names = [f"{k}<{c}>" for k in _TEMPLATES[stem] for c in _CTYPE.values()]
                names += list(_PLAIN.get(stem, ()))
                with cupy.cuda.Device(device_index):
                    mod = cupy.RawModule(code=kernel_source(stem), options=("-std=c++17",),
                                         name_expressions=names)
                _modules[key] = mod
    return mod


_compiled: dict = {}


def ensure_compiled(stem: str, device_index: int = 0) -> None:
    """Compile ``kernels/<stem>.cu`` now (raises the compiler's error if it fails)."""
    key = (stem, device_index)
    if key not in _compiled:
        first = _TEMPLATES[stem][0] if _TEMPLATES[stem] else None
        _fn(stem, first or _PLAIN[stem][0], None if first is None else "float", device_index)
        _compiled[key] = True


@functools.cache
def _fn(stem: str, name: str, ctype: str | None, device_index: int):
    expr = name if ctype is None else f"{name}<{ctype}>"
    return module(stem, device_index).get_function(expr)


def _k(bk, stem, name, dtype=None):
    return _fn(stem, name, None if dtype is None else _ctype(dtype), bk.index)


def _i64(v):
    return np.int64(v)


def _rows_block(C: int) -> int:
    """Threads per row for the row kernels: a power of two in [32, 512], about C / 2."""
    t = 32
    while t < 512 and t * 2 <= C:
        t *= 2
    return t


def _grid(n: int, block: int = 256, cap: int = 65536) -> int:
    return max(1, min((n + block - 1) // block, cap))


def _contig(xp, a):
    return a if a.flags.c_contiguous else xp.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------
# softmax / log_softmax


def _softmax_fwd(bk, x, log):
    xp = bk.xp
    x = _contig(xp, x)
    y = xp.empty_like(x)
    if x.size == 0:
        return y
    C = x.shape[-1] if x.ndim else 1
    rows = x.size // C
    t = _rows_block(C)
    _k(bk, "softmax", "softmax_fwd", x.dtype)(
        (min(rows, 1 << 20),), (t,), (x, y, _i64(rows), np.int32(C), np.int32(log)))
    return y


def _softmax_bwd(bk, g, y, log):
    xp = bk.xp
    if g.shape != y.shape or g.dtype != y.dtype:  # batched cotangents: broadcast y, match dtype
        g = g.astype(y.dtype, copy=False)
        y = xp.broadcast_to(y, g.shape)
    g, y = _contig(xp, g), _contig(xp, y)
    dx = xp.empty_like(g)
    if g.size == 0:
        return dx
    C = g.shape[-1] if g.ndim else 1
    rows = g.size // C
    _k(bk, "softmax", "softmax_bwd", g.dtype)(
        (min(rows, 1 << 20),), (_rows_block(C),),
        (g, y, dx, _i64(rows), np.int32(C), np.int32(log)))
    return dx


def make_softmax(bk, src=None):
    return lambda x: _softmax_fwd(bk, x, 0)


def make_log_softmax(bk, src=None):
    return lambda x: _softmax_fwd(bk, x, 1)


def make_softmax_grad(bk, src=None):
    return lambda g, y: _softmax_bwd(bk, g, y, 0)


def make_log_softmax_grad(bk, src=None):
    return lambda g, y: _softmax_bwd(bk, g, y, 1)


# ---------------------------------------------------------------------------------------------
# cross entropy


def _labels(xp, labels, lead):
    if tuple(labels.shape) != lead:
        raise ValueError(f"cross_entropy kernel: labels of shape {tuple(labels.shape)}, "
                         f"expected {lead} (the logits' shape without the class axis)")
    return _contig(xp, labels.astype(np.int64, copy=False))


def _ignore(ignore_index):
    return (_i64(0), np.int32(0)) if ignore_index is None else (_i64(ignore_index), np.int32(1))


def cross_entropy(bk, logits, labels, ignore_index=None, label_smoothing=0.0,
                  want_dlogits=True):
    """(loss, lse, dlogits) in one pass over the logits; see the module docstring. ``loss`` and
    ``lse`` have the labels' shape (float32, float64 for float64 logits); ``dlogits`` is None
    unless ``want_dlogits``."""
    xp = bk.xp
    x = _contig(xp, logits)
    C = x.shape[-1]
    lead = x.shape[:-1]
    lab = _labels(xp, labels, lead)
    acc = _acc(x.dtype)
    loss = xp.empty(lead, dtype=acc)
    lse = xp.empty(lead, dtype=acc)
    dlog = xp.empty_like(x) if want_dlogits else None
    rows = x.size // C if C else 0
    if rows and C:
        _k(bk, "cross_entropy", "ce_fwd", x.dtype)(
            (min(rows, 1 << 20),), (_rows_block(C),),
            (x, lab, loss, lse, x if dlog is None else dlog, _i64(rows), np.int32(C),
             *_ignore(ignore_index), np.float64(label_smoothing), np.int32(want_dlogits)))
    return loss, lse, dlog


def cross_entropy_dlogits(bk, logits, labels, lse, ignore_index=None, label_smoothing=0.0):
    """d loss / d logits = e / sum(e) - q, e = exp(logits - lse), from the lse the forward
    saved (any shape holding one value per row, e.g. keepdims; float32, float64 for float64)."""
    xp = bk.xp
    x = _contig(xp, logits)
    C = x.shape[-1]
    lead = x.shape[:-1]
    lab = _labels(xp, labels, lead)
    ls = _contig(xp, lse.astype(_acc(x.dtype), copy=False)).reshape(lead)
    dlog = xp.empty_like(x)
    rows = x.size // C if C else 0
    if rows and C:
        _k(bk, "cross_entropy", "ce_dlogits", x.dtype)(
            (min(rows, 1 << 20),), (_rows_block(C),),
            (x, lab, ls, dlog, _i64(rows), np.int32(C), *_ignore(ignore_index),
             np.float64(label_smoothing)))
    return dlog


def cross_entropy_grad(bk, g, dlogits):
    """dx = dlogits * g[..., None]; g has the loss's shape (or leading batch axes before it)."""
    xp = bk.xp
    lead = dlogits.shape[:-1]
    if tuple(g.shape) != lead:  # batched or broadcast cotangent: plain broadcasting
        return (dlogits * xp.expand_dims(g, -1)).astype(dlogits.dtype, copy=False)
    acc = _acc(dlogits.dtype)
    gr = _contig(xp, g.astype(acc, copy=False))
    d = _contig(xp, dlogits)
    dx = xp.empty_like(d)
    n = d.size
    if n:
        _k(bk, "cross_entropy", "ce_bwd", d.dtype)(
            (_grid(n),), (256,), (d, gr, dx, _i64(n), np.int32(d.shape[-1])))
    return dx


# ---------------------------------------------------------------------------------------------
# layer norm


def _param(xp, p, dtype, C, what):
    if p is None:
        return None
    if p.size != C:
        raise ValueError(f"layer_norm kernel: {what} has {p.size} elements, expected {C}")
    return _contig(xp, p.astype(dtype, copy=False).reshape(C))


def layer_norm(bk, x, gamma=None, beta=None, eps=1e-5):
    """(y, mean, rstd) of layer normalisation over the last axis."""
    xp = bk.xp
    x = _contig(xp, x)
    C = x.shape[-1]
    rows = x.size // C if C else 0
    acc = _acc(x.dtype)
    y = xp.empty_like(x)
    mean = xp.empty(x.shape[:-1], dtype=acc)
    rstd = xp.empty(x.shape[:-1], dtype=acc)
    gm = _param(xp, gamma, x.dtype, C, "gamma")
    bt = _param(xp, beta, x.dtype, C, "beta")
    if rows and C:
        _k(bk, "layer_norm", "ln_fwd", x.dtype)(
            (min(rows, 1 << 20),), (_rows_block(C),),
            (x, x if gm is None else gm, x if bt is None else bt, y, mean, rstd, _i64(rows),
             np.int32(C), np.float64(eps), np.int32(gm is not None), np.int32(bt is not None)))
    return y, mean, rstd


def layer_norm_grad(bk, g, x, gamma, mean, rstd, need_params=True):
    """(dx, dgamma, dbeta); dgamma/dbeta are None when ``need_params`` is false."""
    xp = bk.xp
    x = _contig(xp, x)
    g = _contig(xp, g.astype(x.dtype, copy=False))
    if g.shape != x.shape:
        raise ValueError(f"layer_norm_grad kernel: g of shape {g.shape}, expected {x.shape}")
    C = x.shape[-1]
    rows = x.size // C if C else 0
    gm = _param(xp, gamma, x.dtype, C, "gamma")
    mean, rstd = _contig(xp, mean), _contig(xp, rstd)
    dx = xp.empty_like(x)
    if rows and C:
        _k(bk, "layer_norm", "ln_bwd_dx", x.dtype)(
            (min(rows, 1 << 20),), (_rows_block(C),),
            (g, x, x if gm is None else gm, mean, rstd, dx, _i64(rows), np.int32(C),
             np.int32(gm is not None)))
    if not need_params:
        return dx, None, None
    acc = _acc(x.dtype)
    rpc = 64
    chunks = max(1, (rows + rpc - 1) // rpc)
    if chunks > 2048:  # keep the partial buffers small
        chunks = 2048
        rpc = (rows + chunks - 1) // chunks
    pg = xp.zeros((chunks, C), dtype=acc)
    pb = xp.zeros((chunks, C), dtype=acc)
    if rows and C:
        _k(bk, "layer_norm", "ln_bwd_params", x.dtype)(
            ((C + 127) // 128, chunks), (128,),
            (g, x, mean, rstd, pg, pb, _i64(rows), np.int32(C), _i64(rpc)))
    return dx, pg.sum(axis=0).astype(x.dtype), pb.sum(axis=0).astype(x.dtype)


def layer_norm_grad_y(bk, g, y, rstd):
    """dx = rstd * (g - mean(g) - y * mean(g * y)) over the last axis: the backward of a layer
    norm without affine part from its output y and rstd (one value per row of y, in any shape
    holding them, e.g. keepdims). ``g`` may carry leading batch axes (y and rstd broadcast)."""
    xp = bk.xp
    dt = y.dtype
    C = y.shape[-1] if y.ndim else 1
    rs = rstd.astype(dt, copy=False).reshape(y.shape[:-1])
    if g.shape != y.shape:
        y = xp.broadcast_to(y, g.shape)
        rs = xp.broadcast_to(rs, g.shape[:-1])
    g = _contig(xp, g.astype(dt, copy=False))
    y, rs = _contig(xp, y), _contig(xp, rs)
    rows = g.size // C if C else 0
    dx = xp.empty_like(g)
    if rows and C:
        _k(bk, "layer_norm", "ln_bwd_y", dt)(
            (min(rows, 1 << 20),), (_rows_block(C),), (g, y, rs, dx, _i64(rows), np.int32(C)))
    return dx


# ---------------------------------------------------------------------------------------------
# bias + activation


def _act_code(act):
    try:
        return _ACTS[act]
    except KeyError:
        raise ValueError(f"bias_act kernel: act expected one of {sorted(_ACTS)}, got {act!r}") \
            from None


def bias_act(bk, x, b, act="relu"):
    xp = bk.xp
    code = _act_code(act)
    x = _contig(xp, x)
    C = x.shape[-1] if x.ndim else 1
    bb = None if b is None else _contig(xp, b.astype(x.dtype, copy=False).reshape(-1))
    if bb is not None and bb.size != C:
        raise ValueError(f"bias_act kernel: bias has {bb.size} elements, expected {C}")
    y = xp.empty_like(x)
    if x.size:
        _k(bk, "bias_act", "bias_act_fwd", x.dtype)(
            (_grid(x.size),), (256,),
            (x, x if bb is None else bb, y, _i64(x.size), np.int32(C), np.int32(code),
             np.int32(bb is not None)))
    return y


def bias_act_grad(bk, g, x, b, act="relu"):
    xp = bk.xp
    code = _act_code(act)
    x = _contig(xp, x)
    g = _contig(xp, g.astype(x.dtype, copy=False))
    C = x.shape[-1] if x.ndim else 1
    bb = None if b is None else _contig(xp, b.astype(x.dtype, copy=False).reshape(-1))
    dz = xp.empty_like(x)
    if x.size:
        _k(bk, "bias_act", "bias_act_bwd", x.dtype)(
            (_grid(x.size),), (256,),
            (g, x, x if bb is None else bb, dz, _i64(x.size), np.int32(C), np.int32(code),
             np.int32(bb is not None)))
    db = None
    if b is not None:
        acc = _acc(x.dtype)
        db = dz.reshape(-1, C).astype(acc, copy=False).sum(axis=0).astype(x.dtype).reshape(b.shape)
    return dz, db


# ---------------------------------------------------------------------------------------------
# deterministic scatter-add (sort-based segment sum)


def deterministic_scatter_add(bk, target, index, values):
    """``target[index] += values`` in place, duplicates summed in a fixed order (no atomics).

    ``index``: an integer array selecting along axis 0 (``values.shape == index.shape +
    target.shape[1:]``; negative entries count from the end), or any other numpy-style index
    (tuples of integer arrays, slices, integers, boolean masks), which is reduced to flat
    positions first. ``target`` must be C-contiguous (it is updated in place).
    """
    xp = bk.xp
    if not target.flags.c_contiguous:
        raise ValueError("scatter_add kernel: target must be C-contiguous (updated in place)")
    _ctype(target.dtype)
    if (hasattr(index, "dtype") and index.dtype.kind in "iu" and target.ndim >= 1
            and not isinstance(index, tuple)):
        M = target.shape[0]
        idx = xp.asarray(index).astype(np.int64, copy=False).reshape(-1)
        D = target.size // M if M else 0
        vals = xp.broadcast_to(values, tuple(index.shape) + target.shape[1:])
        flat_target = target.reshape(M, D) if M else target
    else:
        # general index: the flat position of every selected element
        size = target.size
        pos_dtype = np.int32 if size < 2**31 else np.int64
        pos = xp.arange(size, dtype=pos_dtype).reshape(target.shape)[index]
        M, D = size, 1
        idx = pos.astype(np.int64, copy=False).reshape(-1)
        vals = xp.broadcast_to(values, pos.shape)
        flat_target = target.reshape(-1)
    K = idx.size
    if K == 0 or D == 0:
        return target
    vals = _contig(xp, vals.astype(target.dtype, copy=False)).reshape(K * D)
    idx = xp.where(idx < 0, idx + M, idx)
    order = xp.argsort(idx)  # stable: duplicates keep their original order
    sorted_idx = idx[order]
    total = K * D
    _k(bk, "segment_sum", "segment_sum", target.dtype)(
        (_grid(total, 256, 1 << 20),), (256,),
        (sorted_idx, order, vals, flat_target, _i64(K), _i64(D), _i64(M)))
    return target


# ---------------------------------------------------------------------------------------------
# dropout (Philox4x32-10)

_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)


def philox4x32_10(ctr, key):
    """Philox4x32-10 on numpy arrays: ``ctr`` uint32 (..., 4), ``key`` (k0, k1). The CPU twin of
    the device generator in dropout.cu (bit-identical)."""
    c = [np.asarray(ctr[..., i], dtype=np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0] & 0xFFFFFFFF), np.uint64(key[1] & 0xFFFFFFFF)
    m0, m1 = np.uint64(_PHILOX_M[0]), np.uint64(_PHILOX_M[1])
    mask = np.uint64(0xFFFFFFFF)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(_PHILOX_W[0])) & mask
            k1 = (k1 + np.uint64(_PHILOX_W[1])) & mask
        p0 = m0 * c[0]
        p1 = m1 * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & mask
        hi1, lo1 = p1 >> np.uint64(32), p1 & mask
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return np.stack(c, axis=-1).astype(np.uint32)


def philox_words(n: int, seed: int, offset: int = 0) -> np.ndarray:
    """The first ``n`` 32-bit words of the stream (seed, offset): word i is lane i % 4 of the
    block with counter (i // 4, offset) (each 64 bits, low word first)."""
    groups = (n + 3) // 4
    g = np.arange(groups, dtype=np.uint64)
    ctr = np.empty((groups, 4), dtype=np.uint32)
    ctr[:, 0] = (g & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    ctr[:, 1] = (g >> np.uint64(32)).astype(np.uint32)
    ctr[:, 2] = np.uint32(offset & 0xFFFFFFFF)
    ctr[:, 3] = np.uint32((offset >> 32) & 0xFFFFFFFF)
    seed &= (1 << 64) - 1
    return philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32)).reshape(-1)[:n]


def philox_uniform(shape, seed: int, offset: int = 0) -> np.ndarray:
    """float32 uniforms in [0, 1) with 24 random bits, the same values the GPU draws."""
    shape = tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    w = philox_words(n, seed, offset)
    return ((w >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)).reshape(shape)


def dropout_keep_numpy(shape, p: float, seed: int, offset: int = 0) -> np.ndarray:
    """The keep mask (bool) the GPU dropout kernel draws for (shape, p, seed, offset)."""
    return philox_uniform(shape, seed, offset) >= np.float32(p)


def _seed(v):
    return np.uint64(int(v) & ((1 << 64) - 1))


def dropout(bk, x, p, seed, offset=0):
    """(y, mask): y = x * keep / (1 - p), mask = keep (bool)."""
    xp = bk.xp
    x = _contig(xp, x)
    y = xp.empty_like(x)
    mask = xp.empty(x.shape, dtype=np.bool_)
    n = x.size
    if n:
        _k(bk, "dropout", "dropout_fwd", x.dtype)(
            (_grid((n + 3) // 4),), (256,),
            (x, y, mask, _i64(n), np.float64(p), _seed(seed), _seed(offset), np.int32(0)))
    return y, mask


def dropout_mask(bk, shape, p, seed, offset=0, dtype=np.float32):
    """m = keep / (1 - p) as an array of ``dtype`` (dropout's backward: dx = g * m)."""
    xp = bk.xp
    dtype = _dt.as_dtype(dtype)
    m = xp.empty(tuple(shape), dtype=dtype)
    n = m.size
    if n:
        dummy = xp.empty((1,), dtype=np.uint8)
        _k(bk, "dropout", "dropout_fwd", dtype)(
            (_grid((n + 3) // 4),), (256,),
            (m, m, dummy, _i64(n), np.float64(p), _seed(seed), _seed(offset), np.int32(1)))
    return m


def philox_words_device(bk, n, seed, offset=0):
    """The generator's raw words on the device (for the parity test against ``philox_words``)."""
    xp = bk.xp
    groups = (n + 3) // 4
    out = xp.empty(groups * 4, dtype=np.uint32)
    if groups:
        _k(bk, "dropout", "philox_words")(
            (_grid(groups),), (256,), (out, _i64(groups), _seed(seed), _seed(offset)))
    return out[:n]


# ---------------------------------------------------------------------------------------------
# multi-tensor launches


def _ptr(a):
    return np.uint64(0 if a is None else a.data.ptr)


def _groups(arrays):
    """Non-empty arrays grouped by dtype, then in chunks of MT_SLOTS: [(dtype, [indices])]."""
    by = {}
    for i, a in enumerate(arrays):
        if a.size:
            by.setdefault(np.dtype(a.dtype), []).append(i)
    out = []
    for dt, idx in by.items():
        for s in range(0, len(idx), MT_SLOTS):
            out.append((dt, idx[s:s + MT_SLOTS]))
    return out


def _slots(lists, idx):
    """Kernel arguments: for each list, MT_SLOTS pointers (0 where unused); then the sizes."""
    args = []
    for lst in lists:
        ptrs = [_ptr(lst[i]) for i in idx] + [np.uint64(0)] * (MT_SLOTS - len(idx))
        args += ptrs
    sizes = [np.uint64(lists[0][i].size) for i in idx] + [np.uint64(0)] * (MT_SLOTS - len(idx))
    return args + sizes


def _blocks(arrays, idx, block=256, per_thread=4, cap=1024):
    n = max(arrays[i].size for i in idx)
    return max(1, min((n + block * per_thread - 1) // (block * per_thread), cap))


def _check_inplace(arrays, what):
    for i, a in enumerate(arrays):
        if not a.flags.c_contiguous:
            raise ValueError(f"{what}: array {i} must be C-contiguous (it is updated in place)")


def _device_scalar(xp, v, dtype=np.float32):
    if type(v).__module__.startswith("cupy"):
        return v.astype(dtype, copy=False).reshape(())
    return xp.full((), v, dtype=dtype)  # a fill kernel: no host-to-device copy


def global_norm(bk, arrays):
    """sqrt(sum of squares of every element of every array), a 0-d float32 device array
    (float64 if any array is float64). One launch per MT_SLOTS tensors; deterministic."""
    xp = bk.xp
    arrays = [_contig(xp, a) for a in arrays]
    groups = _groups(arrays)
    out_dt = np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32
    if not groups:
        return xp.zeros((), dtype=out_dt)
    bpt = max(_blocks(arrays, idx) for _, idx in groups)
    total = xp.zeros((), dtype=np.float64 if out_dt == np.float64 else np.float32)
    for acc in {_acc(dt) for dt, _ in groups}:
        mine = [(dt, idx) for dt, idx in groups if _acc(dt) == acc]
        part = xp.zeros(sum(len(idx) for _, idx in mine) * bpt, dtype=acc)
        base = 0
        for dt, idx in mine:
            _k(bk, "multi_tensor", "l2norm_partial", dt)(
                (bpt, len(idx)), (256,), tuple(_slots([arrays], idx)) + (part, _i64(base)))
            base += len(idx) * bpt
        total = total + part.sum()
    return xp.sqrt(total).astype(out_dt, copy=False)


def scale(bk, arrays, coef, inplace=False, _mode=0, _max_norm=0.0):
    """Each array times ``coef`` (a number or a 0-d device array). Returns the scaled arrays
    (the same objects when ``inplace``)."""
    xp = bk.xp
    arrays = list(arrays)
    if inplace:
        _check_inplace(arrays, "scale")
        outs = arrays
    else:
        arrays = [_contig(xp, a) for a in arrays]
        outs = [xp.empty_like(a) for a in arrays]
    c = _device_scalar(xp, coef, np.float64)
    for dt, idx in _groups(arrays):
        _k(bk, "multi_tensor", "mt_scale", dt)(
            (_blocks(arrays, idx), len(idx)), (256,),
            tuple(_slots([arrays, outs], idx)) + (c, np.float64(_max_norm), np.int32(_mode)))
    return outs


def clip_by_global_norm(bk, arrays, max_norm, inplace=False):
    """(clipped arrays, global norm): arrays * min(1, max_norm / (norm + 1e-6)), the factor
    computed on the device (no host synchronisation)."""
    norm = global_norm(bk, arrays)
    outs = scale(bk, arrays, norm, inplace=inplace, _mode=1, _max_norm=float(max_norm))
    return outs, norm


def unscale_and_check(bk, arrays, inv_scale):
    """In place: each array *= inv_scale (number or 0-d device array). Returns ``found_inf``,
    a 0-d float32 device array: 1.0 if any element (before scaling) was inf or NaN, else 0.0."""
    xp = bk.xp
    arrays = list(arrays)
    _check_inplace(arrays, "unscale_and_check")
    found = xp.zeros((), dtype=np.float32)
    inv = _device_scalar(xp, inv_scale)
    for dt, idx in _groups(arrays):
        _k(bk, "multi_tensor", "unscale_check", dt)(
            (_blocks(arrays, idx), len(idx)), (256,), tuple(_slots([arrays], idx)) + (inv, found))
    return found


def _check_f32(lists, what):
    for lst in lists:
        for a in lst:
            if a.dtype != np.float32:
                raise TypeError(f"{what}: expected float32 arrays, got {_dt.name(a.dtype)}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{what}: arrays must be C-contiguous (updated in place)")


def sgd_momentum_(bk, params, grads, bufs, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                  nesterov=False, first=False):
    """In place, float32: the SGD step of optim.cu (PyTorch's convention). ``bufs`` are the
    momentum buffers (ignored when momentum == 0; pass ``first=True`` on the first step, which
    sets buf = d instead of reading it)."""
    params, grads = list(params), [_contig(bk.xp, g) for g in grads]
    bufs = list(bufs) if bufs is not None else [None] * len(params)
    _check_f32([params, grads] + ([bufs] if momentum else []), "sgd_momentum_")
    kern = _k(bk, "optim", "sgd_momentum")
    for _, idx in _groups(params):
        kern((_blocks(params, idx), len(idx)), (256,),
             tuple(_slots([params, grads, bufs], idx))
             + (np.float32(lr), np.float32(momentum), np.float32(dampening),
                np.float32(weight_decay), np.int32(bool(nesterov)), np.int32(bool(first))))
    return params


def adam_(bk, params, grads, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999,
          eps=1e-8, weight_decay=0.0, adamw=False):
    """In place, float32: one Adam (``adamw=False``, L2 penalty in the gradient) or AdamW
    (decoupled decay) step. ``step`` is the 1-based step count: an int, or a 0-d device array
    (the caller increments it on the device, as a captured CUDA graph needs)."""
    xp = bk.xp
    params, grads = list(params), [_contig(xp, g) for g in grads]
    exp_avg, exp_avg_sq = list(exp_avg), list(exp_avg_sq)
    _check_f32([params, grads, exp_avg, exp_avg_sq], "adam_")
    s = _device_scalar(xp, step)
    kern = _k(bk, "optim", "adam")
    for _, idx in _groups(params):
        kern((_blocks(params, idx), len(idx)), (256,),
             tuple(_slots([params, grads, exp_avg, exp_avg_sq], idx))
             + (np.float32(lr), np.float32(beta1), np.float32(beta2), np.float32(eps),
                np.float32(weight_decay), np.int32(bool(adamw)), s))
    return params


def _as_list(x):
    return (list(x), True) if isinstance(x, (list, tuple)) else ([x], False)


def make_sgd_momentum(bk, src=None):
    """``bk.kernel("sgd_momentum")(param, grad, buf, *, lr, momentum=0, dampening=0,
    weight_decay=0, nesterov=False, first=False)``: one array each, or lists of them (one launch
    per MT_SLOTS tensors). In place; returns ``param``. The contract of optim/optimizers.py."""

    def sgd_momentum(param, grad, buf, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                     nesterov=False, first=False):
        ps, _ = _as_list(param)
        gs, _ = _as_list(grad)
        bs = None if buf is None else _as_list(buf)[0]
        sgd_momentum_(bk, ps, gs, bs, lr, momentum=momentum, dampening=dampening,
                      weight_decay=weight_decay, nesterov=nesterov, first=first)
        return param

    return sgd_momentum


def make_adam(bk, src=None):
    """``bk.kernel("adam")(param, grad, m, v, *, lr, beta1, beta2, eps, weight_decay,
    decoupled=False, step)``: one array each, or lists. ``decoupled=True`` is AdamW; ``step``
    an int or a 0-d device array. In place; returns ``param``."""

    def adam(param, grad, m, v, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
             decoupled=False, step):
        ps, _ = _as_list(param)
        adam_(bk, ps, _as_list(grad)[0], _as_list(m)[0], _as_list(v)[0], step, lr=lr,
              beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, adamw=decoupled)
        return param

    return adam


# ---------------------------------------------------------------------------------------------
# NumPy references with the same contracts (the xp paths of the ops, written against the kernel
# signatures): the CPU tests run the ops' kernel branches through these, and they document what
# each kernel computes.


def _np_acc(x):
    return x.astype(_acc(x.dtype))


def _ref_softmax(x, log=False):
    xf = _np_acc(x)
    z = xf - xf.max(-1, keepdims=True)
    lse = np.log(np.exp(z).sum(-1, keepdims=True))
    return (z - lse if log else np.exp(z - lse)).astype(x.dtype)


def _ref_softmax_grad(g, y, log=False):
    g = g.astype(y.dtype)
    gf, yf = _np_acc(g), _np_acc(np.broadcast_to(y, g.shape))
    if log:
        return (gf - np.exp(yf) * gf.sum(-1, keepdims=True)).astype(y.dtype)
    return (yf * (gf - (gf * yf).sum(-1, keepdims=True))).astype(y.dtype)


def _ref_cross_entropy(x, labels, ignore_index=None, label_smoothing=0.0, want_dlogits=True):
    xf = _np_acc(x)
    C = x.shape[-1]
    m = xf.max(-1, keepdims=True)
    lse_all = (np.log(np.exp(xf - m).sum(-1, keepdims=True)) + m)[..., 0]
    valid = (labels >= 0) & (labels < C)
    lab = np.where(valid, labels, 0)
    picked = np.take_along_axis(xf, lab[..., None], -1)[..., 0]
    s = label_smoothing
    ign = np.zeros(labels.shape, bool) if ignore_index is None else labels == ignore_index
    loss = np.where(valid, lse_all - (1 - s) * picked - s * xf.mean(-1), np.nan)
    loss = np.where(ign, 0.0, loss).astype(xf.dtype)
    lse = np.where(valid | ign, lse_all, np.nan).astype(xf.dtype)
    dlog = _ref_ce_dlogits(x, labels, lse, ignore_index, s) if want_dlogits else None
    return loss, lse, dlog


def _ref_ce_dlogits(x, labels, lse, ignore_index=None, label_smoothing=0.0):
    xf = _np_acc(x)
    C = x.shape[-1]
    valid = (labels >= 0) & (labels < C)
    q = (np.arange(C) == labels[..., None]) * (1 - label_smoothing) + label_smoothing / C
    e = np.exp(xf - lse.reshape(labels.shape)[..., None])
    d = e / e.sum(-1, keepdims=True) - q
    d = np.where(valid[..., None], d, np.nan)
    if ignore_index is not None:
        d = np.where((labels == ignore_index)[..., None], 0.0, d)
    return d.astype(x.dtype)


def _ref_layer_norm(x, gamma=None, beta=None, eps=1e-5):
    xf = _np_acc(x)
    mean = xf.mean(-1, keepdims=True)
    var = ((xf - mean) ** 2).mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (xf - mean) * rstd
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype), mean[..., 0], rstd[..., 0]


def _ref_layer_norm_grad_y(g, y, rstd):
    rs = _np_acc(rstd.reshape(y.shape[:-1]))[..., None]
    gf, yf = _np_acc(g.astype(y.dtype)), _np_acc(np.broadcast_to(y, g.shape))
    dx = rs * (gf - gf.mean(-1, keepdims=True) - yf * (gf * yf).mean(-1, keepdims=True))
    return dx.astype(y.dtype)


def _ref_dropout_mask(shape, p, seed, offset=0, dtype=np.float32):
    dtype = _dt.as_dtype(dtype)
    keep = dropout_keep_numpy(shape, p, seed, offset)
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    return np.where(keep, scale, 0.0).astype(dtype)


def _ref_scatter_add(target, index, values):
    np.add.at(target, index, values)
    return target


def _ref_ce_grad(g, dlogits):
    acc = _acc(dlogits.dtype)
    return (dlogits.astype(acc) * np.expand_dims(g.astype(acc), -1)).astype(dlogits.dtype)


def _ref_layer_norm_grad(g, x, gamma, mean, rstd, need_params=True):
    xf, gf = _np_acc(x), _np_acc(g.astype(x.dtype))
    xh = (xf - mean[..., None]) * rstd[..., None]
    gh = gf * (1.0 if gamma is None else _np_acc(gamma.astype(x.dtype)))
    dx = rstd[..., None] * (gh - gh.mean(-1, keepdims=True)
                            - xh * (gh * xh).mean(-1, keepdims=True))
    if not need_params:
        return dx.astype(x.dtype), None, None
    lead = tuple(range(x.ndim - 1))
    return (dx.astype(x.dtype), (gf * xh).sum(lead).astype(x.dtype),
            gf.sum(lead).astype(x.dtype))


def _ref_act(z, act):
    code = _act_code(act)
    if code == 0:
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    if code == 2:
        t = np.tanh(z)
        return t, 1 - t * t
    k = np.sqrt(2 / np.pi)
    t = np.tanh(k * (z + 0.044715 * z**3))
    return (0.5 * z * (1 + t),
            0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z))


def _ref_bias_act(x, b, act="relu"):
    z = _np_acc(x) + (0 if b is None else _np_acc(b.astype(x.dtype)))
    return _ref_act(z, act)[0].astype(x.dtype)


def _ref_bias_act_grad(g, x, b, act="relu"):
    z = _np_acc(x) + (0 if b is None else _np_acc(b.astype(x.dtype)))
    dz = (_np_acc(g.astype(x.dtype)) * _ref_act(z, act)[1]).astype(x.dtype)
    db = None if b is None else _np_acc(dz).reshape(-1, x.shape[-1]).sum(0).astype(
        x.dtype).reshape(b.shape)
    return dz, db


def _ref_dropout(x, p, seed, offset=0):
    keep = dropout_keep_numpy(x.shape, p, seed, offset)
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    return np.where(keep, _np_acc(x) * scale, 0.0).astype(x.dtype), keep


NUMPY_REFERENCES = {
    "cross_entropy_grad": _ref_ce_grad,
    "layer_norm_grad": _ref_layer_norm_grad,
    "bias_act": _ref_bias_act,
    "bias_act_grad": _ref_bias_act_grad,
    "dropout": _ref_dropout,
    "softmax_lastdim": _ref_softmax,
    "log_softmax_lastdim": lambda x: _ref_softmax(x, True),
    "softmax_lastdim_grad": _ref_softmax_grad,
    "log_softmax_lastdim_grad": lambda g, y: _ref_softmax_grad(g, y, True),
    "cross_entropy": _ref_cross_entropy,
    "cross_entropy_dlogits": _ref_ce_dlogits,
    "layer_norm": _ref_layer_norm,
    "layer_norm_grad_y": _ref_layer_norm_grad_y,
    "dropout_mask": _ref_dropout_mask,
    "scatter_add": _ref_scatter_add,
}


# ---------------------------------------------------------------------------------------------
# dtype conversion (the casts of mixed precision)

_CAST_NAMES = {
    (np.dtype(np.float32), _dt.bfloat16): "cast_f32_bf16",
    (_dt.bfloat16, np.dtype(np.float32)): "cast_bf16_f32",
    (np.dtype(np.float32), np.dtype(np.float16)): "cast_f32_f16",
    (np.dtype(np.float16), np.dtype(np.float32)): "cast_f16_f32",
}


def _cast_probe(src):
    """Values that exercise rounding (ties, subnormals, overflow, NaN, signed zero) and the
    element-wise tail (1031 = 4 * 257 + 3 elements)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1031) * np.exp2(rng.integers(-30, 30, 1031))
    x[:12] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-40, 65504.0, 65520.0, 3.4e38,
              1.0 + 2.0**-8, 1.0 + 3 * 2.0**-9]
    with np.errstate(over="ignore"):  # overflow to inf is part of the probe
        return x.astype(np.float32).astype(src)


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    nan = np.isnan(a.astype(np.float32))
    if not np.array_equal(nan, np.isnan(b.astype(np.float32))):
        return False
    ia = a.view(np.uint16 if a.itemsize == 2 else np.uint32)
    ib = b.view(np.uint16 if b.itemsize == 2 else np.uint32)
    return bool(np.array_equal(ia[~nan], ib[~nan]))


def cast_(bk, x, dst):
    """The cast kernel for contiguous, 16-byte aligned ``x`` (no checks; see ``make_cast``)."""
    dst = np.dtype(dst)
    name = _CAST_NAMES[(np.dtype(x.dtype), dst)]
    y = bk.xp.empty(x.shape, dtype=dst)
    n = x.size
    _k(bk, "cast", name)((_grid((n + 3) // 4, 256, 4096),), (256,), (x, y, _i64(n)))
    return y


def _vec_ok(*arrays) -> bool:
    """C-contiguous and aligned for 4-element vector loads."""
    return all(a.flags.c_contiguous and a.data.ptr % (4 * a.itemsize) == 0 for a in arrays)


class _SelfCheck:
    """First use of a kernel per key: run it and its reference on a probe on the device and
    compare on the host; a kernel that disagrees, or whose launch raises, is reported once and
    not used again (its op keeps the reference path). Skipped while a stream captures (no host
    copies allowed there): the kernel then waits for an eager call."""

    def __init__(self, xp, what):
        self.xp, self.what, self.state = xp, what, {}

    def ok(self, key, check) -> bool:
        ok = self.state.get(key)
        if ok is None:
            xp = self.xp
            if xp.cuda.runtime.streamIsCapturing(xp.cuda.get_current_stream().ptr):
                return False
            why = "disagrees with its reference on its self-check"
            try:
                ok = bool(check())
            except Exception as exc:  # a launch that cannot run is not used either
                ok = False
                why = f"failed its self-check ({type(exc).__name__}: {exc})"
            self.state[key] = ok
            if not ok:
                import warnings

                warnings.warn(f"autograd_gpu: the {self.what} kernel ({key}) {why}; that case "
                              "uses the reference path", RuntimeWarning, stacklevel=3)
        return ok


def _probe_values(dtype, n=4099):
    rng = np.random.default_rng(1)
    h = rng.standard_normal(n) * 3
    h[:6] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30]
    with np.errstate(over="ignore"):
        return h.astype(np.float32).astype(dtype)


def _equal_values(a, b) -> bool:
    """Equal as numbers (NaN where the other is NaN; 0.0 equals -0.0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def _ew_launch(bk, name, dtype, args, n):
    _k(bk, "elementwise", name, dtype)((_grid((n + 3) // 4, 256, 8192),), (256,), args)


def _vec_kernel(kernel, accepts, extra, probes, reference):
    """A factory for one kernel of elementwise.cu: ``f(*arrays)`` returns the kernel's result
    (an array shaped like the first argument), or None when ``accepts(*arrays)`` is false or the
    kernel failed its self-check against ``reference`` on ``probes(dtype)`` for that dtype."""

    def make(bk, src=None):
        xp = bk.xp
        chk = _SelfCheck(xp, kernel)

        def run(*arrays):
            a = arrays[0]
            y = xp.empty_like(a)
            _ew_launch(bk, kernel, a.dtype, (*arrays, y, _i64(a.size), *extra(*arrays)), a.size)
            return y

        def f(*arrays):
            if not (accepts(*arrays) and _vec_ok(*arrays)):
                return None
            d = arrays[0].dtype

            def check():
                ps = [xp.asarray(p) for p in probes(d)]
                return _equal_values(xp.asnumpy(run(*ps)), xp.asnumpy(reference(xp, *ps)))

            return run(*arrays) if chk.ok(d.str, check) else None

        return f

    return make


def _same_kind(*arrays) -> bool:
    a = arrays[0]
    return all(b.shape == a.shape and b.dtype == a.dtype for b in arrays[1:])


make_relu = _vec_kernel(
    "relu_fwd", _same_kind, lambda x: (), lambda d: [_probe_values(d)],
    lambda xp, x: xp.maximum(x, 0))
make_relu_grad = _vec_kernel(  # a select: a NaN x passes g, an inf g where x <= 0 gives 0
    "relu_bwd", _same_kind, lambda g, x: (),
    lambda d: [_probe_values(d)[::-1].copy(), _probe_values(d)],
    lambda xp, g, x: xp.where(x <= 0, 0, g))
make_add_rowvec = _vec_kernel(
    "add_rowvec",
    lambda x, b: (b.ndim == 1 and x.ndim >= 1 and x.shape[-1] == b.shape[0]
                  and b.shape[0] % 4 == 0 and x.dtype == b.dtype),
    lambda x, b: (_i64(b.shape[0]),),
    lambda d: [_probe_values(d, 4096).reshape(64, 64), _probe_values(d, 64)[::-1].copy()],
    lambda xp, x, b: x + b)


def make_cast(bk, src=None):
    xp = bk.xp
    chk = _SelfCheck(xp, "cast")

    def cast(x, dtype):
        dst = np.dtype(dtype)
        key = (np.dtype(x.dtype), dst)
        if key not in _CAST_NAMES or not x.flags.c_contiguous or x.data.ptr % 16:
            return None

        def check():
            h = _cast_probe(key[0])
            got = xp.asnumpy(cast_(bk, xp.asarray(h), dst))
            with np.errstate(over="ignore"):
                return _same_bits(got, h.astype(dst))

        return cast_(bk, x, dst) if chk.ok(_CAST_NAMES[key], check) else None

    return cast


# ---------------------------------------------------------------------------------------------
# small arrays (kernels/small.cu): one launch through a short host path

SMALL_MAX = 1 << 16  # elements: below it an elementwise op costs its launch's host time
SMALL_OPS = {
    "small_scalar": ("add", "sub", "rsub", "mul", "div", "rdiv"),
    "small_unary": ("negative", "exp", "expm1", "log", "log1p", "sqrt", "abs", "sin", "cos",
                    "tan", "tanh"),
    "small_act_grad": ("tanh", "sigmoid"),
}


def _small_reference(xp, family, op):
    """The CuPy kernel a small kernel replaces (its reference on the self-check)."""
    if family == "small_unary":
        return getattr(xp, op)
    from .cupy_backend import _elementwise

    return _elementwise(op)  # scalar: (x, s); act_grad: (g, t)


def _make_small(family):
    """A factory for one kernel family of small.cu: ``f(op, *arrays, *scalars)`` returns the
    result, or None when the op, dtype, size or layout is not covered or when the kernel failed
    its self-check for that (op, dtype); the caller then runs the reference."""
    nin = 2 if family == "small_act_grad" else 1
    codes = {op: np.int32(i) for i, op in enumerate(SMALL_OPS[family])}
    suffix = {"f": "f32", "d": "f64"}

    def make(bk, src=None):
        xp = bk.xp
        ndarray = xp.ndarray
        # CuPy keeps C-contiguity as a plain attribute (``flags`` builds an object per call)
        fast_contig = hasattr(ndarray, "_c_contiguous")
        chk = _SelfCheck(xp, family)
        ready: dict = {}  # (op, dtype char) -> (function, op code) once checked, or False

        def launch(fn, code, arrays, extra):
            a = arrays[0]
            y = ndarray(a.shape, a.dtype)
            n = a.size
            if n:
                fn(((n + 255) >> 8,), (256,), (*arrays, y, *extra, np.int64(n), code))
            return y

        def resolve(op, ch):
            """(function, op code) for a case that passed its self-check; False for one that is
            not covered or failed it (remembered: float16 under AMP asks on every call); None
            while a stream captures (asked again later)."""
            if ch not in suffix or op not in codes:
                ready[(op, ch)] = False
                return False
            code = codes[op]
            d = np.dtype(ch)
            ref = _small_reference(xp, family, op)
            got = {}

            def check():  # loading the function counts as part of the check
                fn = got["fn"] = _k(bk, "small", f"{family}_{suffix[ch]}")
                p = _probe_values(d)
                ps = [xp.asarray(p)] if nin == 1 else [xp.asarray(p[::-1].copy()),
                                                      xp.asarray(np.tanh(p))]
                extras = [(d.type(1.01),), (d.type(-0.3),)] if family == "small_scalar" \
                    else [()]
                return all(_equal_values(xp.asnumpy(launch(fn, code, ps, e)),
                                         xp.asnumpy(ref(*ps, *e))) for e in extras)

            if not chk.ok((op, d.str), check):
                if chk.state.get((op, d.str)) is False:
                    ready[(op, ch)] = False
                    return False
                return None
            hit = ready[(op, ch)] = (got["fn"], code)
            return hit

        def f(op, *args):
            a = args[0]
            if a.size >= SMALL_MAX:
                return None
            ch = a.dtype.char
            hit = ready.get((op, ch))
            if hit is None:
                hit = resolve(op, ch)
            if not hit or not (a._c_contiguous if fast_contig else a.flags.c_contiguous):
                return None
            if nin == 2:
                b = args[1]
                if b.shape != a.shape or b.dtype != a.dtype or not (
                        b._c_contiguous if fast_contig else b.flags.c_contiguous):
                    return None
            return launch(hit[0], hit[1], args[:nin], args[nin:])

        return f

    return make


make_small_scalar = _make_small("small_scalar")
make_small_unary = _make_small("small_unary")
make_small_act_grad = _make_small("small_act_grad")
