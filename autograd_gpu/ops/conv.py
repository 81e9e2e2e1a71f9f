"""Convolution, pooling and embedding primitives (NCHW layout, xp-generic).

A convolution is lowered to im2col: a strided *view* of the padded input holds every window
(``as_strided``, no copy), one reshape copies the windows into a (channel x tap, N*Ho*Wo) matrix,
and one matmul per group does the arithmetic. Its two adjoints are primitives of their own, so
that every gradient is differentiable again; with y = conv2d(x, w) (bilinear in x and w):

    conv2d_transpose_input(g, w) = J_x^T g   (col2im of g @ w: a transposed convolution)
    conv2d_weight(x, g)          = J_w^T g   (windows of x contracted with g)

and the three close under differentiation: <conv2d(x, w), g> = <x, T_x(g, w)> = <w, T_w(x, g)>.

The primitives take exactly 4-d operands. A cotangent or tangent with leading batch axes is folded
by the rules into an axis the primitive already sums or maps over (N, or the channels of the
batched weight), so a Jacobian is one convolution, not a loop.

Pooling acts on the last two axes and takes any leading axes. Max pooling records, per output, the
position of the maximum inside its window (an int array in [0, kh*kw), a constant); its gradient
scatters g to those positions and the adjoint of that scatter gathers them back.

Embedding picks rows of a (V, D) table; its gradient is a scatter-add of the cotangent's rows into
a zero (V, D) table (``bk.scatter_add``), whose adjoint is the row gather again.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..dtypes import is_floating
from ..errors import ArgumentError, DTypeError, ShapeError, describe
from ..tensor import Tensor
from . import sampling as S
from ._util import as_tensor, check_values, tsum
from .context import deterministic_requested
from .registry import apply, defop
from .shape import reshape

# ---------------------------------------------------------------------------------------------
# array helpers (forward passes only)


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _out_len(n, k, s, d, lo, hi) -> int:
    return (n + lo + hi - d * (k - 1) - 1) // s + 1


def _pad2(xp, x, padding, value=0.0):
    """Pad the last two axes by ((top, bottom), (left, right))."""
    (pt, pb), (pl, pr) = padding
    if not (pt or pb or pl or pr):
        return x
    h, w = x.shape[-2:]
    out = xp.full(tuple(x.shape[:-2]) + (h + pt + pb, w + pl + pr), value, dtype=x.dtype)
    out[..., pt:pt + h, pl:pl + w] = x  # cheaper than xp.pad's general path
    return out


def _windows(xp, x, k, stride, dilation, out_hw):
    """A read-only view lead + (Ho, Wo, kh, kw) of every window of the last two axes of x."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = k, stride, dilation, out_hw
    st = x.strides
    shape = tuple(x.shape[:-2]) + (ho, wo, kh, kw)
    strides = tuple(st[:-2]) + (st[-2] * sh, st[-1] * sw, st[-2] * dh, st[-1] * dw)
    return xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)


def _tap(i, j, stride, dilation, out_hw):
    """Index of the padded-input positions read by kernel tap (i, j) for every output."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_hw
    return (..., slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (wo - 1) + 1, sw))


def _conv_out_hw(hw, k, stride, padding, dilation):
    return tuple(_out_len(hw[a], k[a], stride[a], dilation[a], *padding[a]) for a in (0, 1))


def _bmm(xp, a, b):
    """a @ b over a leading group axis. NumPy's stacked matmul can miss BLAS (8x slower than a
    2-d product measured here), so groups go one 2-d product at a time on the CPU (and for
    bfloat16 on CuPy, whose strided-batched matmul rejects it)."""
    if xp.__name__ == "numpy":
        mm = xp.matmul
    else:
        from ..backend.cupy_backend import gpu_matmul as mm  # capturable in ag.cuda.graphed
    if a.shape[0] == 1:
        out = mm(a[0], b[0])[None]
    elif xp.__name__ == "numpy" or a.dtype.kind == "V":  # CuPy's batched GEMM lacks bfloat16
        out = xp.stack([mm(a[i], b[i]) for i in range(a.shape[0])])
    else:
        out = mm(a, b)
    # ml_dtypes' bfloat16 matmul returns float32 on the CPU: keep the operands' dtype
    return out.astype(xp.result_type(a.dtype, b.dtype), copy=False)


def _cols(xp, x, k, stride, padding, dilation, groups):
    """im2col, channels first: (G, Cig*kh*kw, N*Ho*Wo) matrix of the windows of x, and
    (Ho, Wo). Rows are (channel, tap), so each tap's block is contiguous for col2im."""
    n, c = x.shape[0], x.shape[1]
    xpd = _pad2(xp, x, padding)
    out_hw = _conv_out_hw(xpd.shape[-2:], k, stride, ((0, 0), (0, 0)), dilation)
    ho, wo = out_hw
    win = _windows(xp, xpd, k, stride, dilation, out_hw)  # (N, C, Ho, Wo, kh, kw), a view
    cig = c // groups
    win = win.reshape(n, groups, cig, ho, wo, k[0], k[1])
    cols = win.transpose(1, 2, 5, 6, 0, 3, 4).reshape(groups, cig * k[0] * k[1], n * ho * wo)
    return cols, out_hw


def _channels_first(xp, g, groups):
    """(N, C, H, W) -> (G, C / G, N*H*W), one copy."""
    n, c, h, w = g.shape
    return xp.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(groups, c // groups, n * h * w)


def _conv_forward(xp, x, w, stride, padding, dilation, groups):
    co, cig, kh, kw = w.shape
    n = x.shape[0]
    cols, (ho, wo) = _cols(xp, x, (kh, kw), stride, padding, dilation, groups)
    y = _bmm(xp, w.reshape(groups, co // groups, cig * kh * kw), cols)  # (G, Cog, N*Ho*Wo)
    return xp.ascontiguousarray(y.reshape(co, n, ho, wo).transpose(1, 0, 2, 3))


def _conv_transpose_forward(xp, g, w, in_hw, stride, padding, dilation, groups):
    """col2im of w^T g: the adjoint of conv2d with respect to its input."""
    n, co, ho, wo = g.shape
    _, cig, kh, kw = w.shape
    wm = w.reshape(groups, co // groups, cig * kh * kw).transpose(0, 2, 1)
    cols = _bmm(xp, wm, _channels_first(xp, g, groups))  # (G, Cig*kh*kw, N*Ho*Wo)
    cols = cols.reshape(groups * cig, kh, kw, n, ho, wo)
    (pt, pb), (pl, pr) = padding
    h, w_ = in_hw
    out = xp.zeros((groups * cig, n, h + pt + pb, w_ + pl + pr), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[_tap(i, j, stride, dilation, (ho, wo))] += cols[:, i, j]
    return xp.ascontiguousarray(out[..., pt:pt + h, pl:pl + w_].transpose(1, 0, 2, 3))


def _conv_weight_forward(xp, x, g, k, stride, padding, dilation, groups):
    """Windows of x contracted with g over (N, Ho, Wo): the adjoint of conv2d w.r.t. w."""
    n, co, ho, wo = g.shape
    cols, out_hw = _cols(xp, x, k, stride, padding, dilation, groups)
    if out_hw != (ho, wo):
        raise ShapeError(f"conv2d_weight: argument 'g' expected spatial size {out_hw}, "
                         f"got {(ho, wo)}")
    gw = _bmm(xp, _channels_first(xp, g, groups), cols.transpose(0, 2, 1))  # (G, Cog, K)
    return gw.reshape(co, cols.shape[1] // (k[0] * k[1]), k[0], k[1])


# ---------------------------------------------------------------------------------------------
# rule helpers: fold one batched operand (leading axes beyond 4-d) into the primitive


def _conv_b(F, x, w, p):
    """conv2d where x or w (not both) may carry leading batch axes."""
    bx, bw = x.ndim - 4, w.ndim - 4
    if bw > 0:
        lead, (co, cig, kh, kw) = tuple(w.shape[:bw]), tuple(w.shape[bw:])
        nb = _prod(lead)
        wt = F.transpose(F.reshape(w, (nb, co, cig, kh, kw)), axes=(1, 0, 2, 3, 4))
        y = F.conv2d(x, F.reshape(wt, (co * nb, cig, kh, kw)), **p)  # channel co * nb + b
        n, _, ho, wo = y.shape
        y = F.transpose(F.reshape(y, (n, co, nb, ho, wo)), axes=(2, 0, 1, 3, 4))
        return F.reshape(y, lead + (n, co, ho, wo))
    if bx > 0:
        lead, core = tuple(x.shape[:bx]), tuple(x.shape[bx:])
        y = F.conv2d(F.reshape(x, (_prod(lead) * core[0],) + core[1:]), w, **p)
        return F.reshape(y, lead + (core[0],) + tuple(y.shape[1:]))
    return F.conv2d(x, w, **p)


def _tx_b(F, g, w, in_hw, p):
    """conv2d_transpose_input where g or w may carry leading batch axes."""
    bg, bw = g.ndim - 4, w.ndim - 4
    if bw > 0:
        lead, (co, cig, kh, kw) = tuple(w.shape[:bw]), tuple(w.shape[bw:])
        nb = _prod(lead)
        # input channel c = grp * Cig + ci becomes grp * (Cig * nb) + ci * nb + b
        wt = F.transpose(F.reshape(w, (nb, co, cig, kh, kw)), axes=(1, 2, 0, 3, 4))
        y = F.conv2d_transpose_input(g, F.reshape(wt, (co, cig * nb, kh, kw)), in_hw=in_hw, **p)
        n, c = y.shape[0], y.shape[1] // nb
        y = F.transpose(F.reshape(y, (n, c, nb) + tuple(in_hw)), axes=(2, 0, 1, 3, 4))
        return F.reshape(y, lead + (n, c) + tuple(in_hw))
    if bg > 0:
        lead, core = tuple(g.shape[:bg]), tuple(g.shape[bg:])
        y = F.conv2d_transpose_input(F.reshape(g, (_prod(lead) * core[0],) + core[1:]), w,
                                     in_hw=in_hw, **p)
        return F.reshape(y, lead + (core[0],) + tuple(y.shape[1:]))
    return F.conv2d_transpose_input(g, w, in_hw=in_hw, **p)


def _tw_b(F, x, g, k, p):
    """conv2d_weight where x or g may carry leading batch axes."""
    bx, bg = x.ndim - 4, g.ndim - 4
    if bg > 0:
        lead, (n, co, ho, wo) = tuple(g.shape[:bg]), tuple(g.shape[bg:])
        nb = _prod(lead)
        gt = F.transpose(F.reshape(g, (nb, n, co, ho, wo)), axes=(1, 2, 0, 3, 4))
        gw = F.conv2d_weight(x, F.reshape(gt, (n, co * nb, ho, wo)), w_hw=k, **p)
        cig = gw.shape[1]
        gw = F.transpose(F.reshape(gw, (co, nb, cig) + tuple(k)), axes=(1, 0, 2, 3, 4))
        return F.reshape(gw, lead + (co, cig) + tuple(k))
    if bx > 0:
        lead, (n, c, h, w_) = tuple(x.shape[:bx]), tuple(x.shape[bx:])
        nb = _prod(lead)
        xt = F.transpose(F.reshape(x, (nb, n, c, h, w_)), axes=(1, 2, 0, 3, 4))
        gw = F.conv2d_weight(F.reshape(xt, (n, c * nb, h, w_)), g, w_hw=k, **p)
        co, cig = gw.shape[0], gw.shape[1] // nb
        gw = F.transpose(F.reshape(gw, (co, cig, nb) + tuple(k)), axes=(2, 0, 1, 3, 4))
        return F.reshape(gw, lead + (co, cig) + tuple(k))
    return F.conv2d_weight(x, g, w_hw=k, **p)


def _geom(stride, padding, dilation, groups):
    return {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def _conv_cost(out, x, w, **p):
    return 2.0 * out.size * _prod(w.shape[1:])


def _tx_cost(out, g, w, **p):
    return 2.0 * g.size * _prod(w.shape[1:])


def _tw_cost(out, x, g, **p):
    return 2.0 * g.size * _prod(out.shape[1:])


def _conv_sample(draw):
    """Shapes and geometry of a valid convolution: (x shape, w shape, params)."""
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    i = st.integers
    groups = draw(i(1, 2))
    cig, cog = draw(i(1, 2)), draw(i(1, 2))
    k = (draw(i(1, 3)), draw(i(1, 3)))
    stride = (draw(i(1, 2)), draw(i(1, 2)))
    dilation = (draw(i(1, 2)), draw(i(1, 2)))
    padding = ((draw(i(0, 2)), draw(i(0, 1))), (draw(i(0, 1)), draw(i(0, 2))))
    hw = tuple(max(1, dilation[a] * (k[a] - 1) + 1 - sum(padding[a]) + draw(i(0, 3)))
               for a in (0, 1))
    n = draw(i(1, 2))
    xs = (n, groups * cig) + hw
    ws = (groups * cog, cig) + k
    return xs, ws, _geom(stride, padding, dilation, groups)


class _ConvRuleF:
    """The namespace the rule helpers above (``_conv_b``, ``_tx_b``, ``_tw_b``) expect, over a
    batching rule's ``F``: the three convolution primitives go through ``F.apply`` (recorded,
    and batched again by outer vmap levels)."""

    def __init__(self, F):
        self.F = F

    def __getattr__(self, name):
        return getattr(self.F, name)

    def conv2d(self, x, w, **p):
        return self.F.apply(Conv2d, x, w, **p)

    def conv2d_transpose_input(self, g, w, **p):
        return self.F.apply(Conv2dTransposeInput, g, w, **p)

    def conv2d_weight(self, x, g, **p):
        return self.F.apply(Conv2dWeight, x, g, **p)


def _conv_batch(F, op, args, dims, params):
    """vmap of a convolution primitive. One batched operand: its batch axis goes in front and
    the rule helpers fold it into an axis the primitive maps over (N, or the weight's output
    channels), one op. Both batched (per-example weights: ``vmap(grad)`` of a CNN lifts the
    weight to one copy per example): the batch becomes groups, one grouped op over B * groups
    groups, as a per-example loop of B convolutions would compute but with one im2col."""
    (a, b), (da, db) = args, dims
    a, b = F.to_front(a, da), F.to_front(b, db)
    if da is not None and db is not None:
        return _grouped(F, op, a, b, params), 0
    G = _ConvRuleF(F)
    if op is Conv2d:
        return _conv_b(G, a, b, params), 0
    if op is Conv2dTransposeInput:
        return _tx_b(G, a, b, params["in_hw"], _geom_of(params)), 0
    return _tw_b(G, a, b, params["w_hw"], _geom_of(params)), 0


def _geom_of(params):
    return {k: params[k] for k in ("stride", "padding", "dilation", "groups")}


def _grouped(F, op, a, b, params):
    """Both operands with a leading batch axis B: example e's channels become groups
    e * groups ... e * groups + groups - 1 of one op with B * groups groups."""
    B = a.shape[0]
    p = dict(params, groups=params["groups"] * B)

    def nb_c(t):  # (B, N, C, H, W) -> (N, B * C, H, W)
        t = F.transpose(t, (1, 0, 2, 3, 4))
        return F.reshape(t, (t.shape[0], B * t.shape[2]) + tuple(t.shape[3:]))

    def w_flat(w):  # (B, O, Cig, kh, kw) -> (B * O, Cig, kh, kw)
        return F.reshape(w, (B * w.shape[1],) + tuple(w.shape[2:]))

    if op is Conv2dWeight:  # (x, g) -> (B * O, Cig, kh, kw)
        w = F.apply(op, nb_c(a), nb_c(b), **p)
        return F.reshape(w, (B, w.shape[0] // B) + tuple(w.shape[1:]))
    y = F.apply(op, nb_c(a), w_flat(b), **p)  # (N, B * C', H', W')
    y = F.reshape(y, (y.shape[0], B, y.shape[1] // B) + tuple(y.shape[2:]))
    return F.transpose(y, (1, 0, 2, 3, 4))


@defop("conv2d", params=("stride", "padding", "dilation", "groups"), cost=_conv_cost,
       saves=("x", "w"))
class Conv2d:
    """y[n, o, i, j] = sum_{c, a, b} x_pad[n, g(o) * Cig + c, i * sh + a * dh, j * sw + b * dw]
    * w[o, c, a, b]; x (N, C, H, W), w (Co, C / groups, kh, kw); padding ((t, b), (l, r))."""

    def batch(F, args, dims, **params):
        """One batched operand folds into N or the weight's channels (one op); both batched
        (per-example weights) become groups (see _conv_batch)."""
        return _conv_batch(F, Conv2d, args, dims, params)

    def forward(bk, x, w, *, stride, padding, dilation, groups):
        return _conv_forward(bk.xp, x, w, stride, padding, dilation, groups), (x, w)

    def vjp(F, g, saved, needs, *, stride, padding, dilation, groups):
        x, w = saved
        p = _geom(stride, padding, dilation, groups)
        gx = _tx_b(F, g, w, tuple(x.shape[-2:]), p) if needs[0] else None
        gw = _tw_b(F, x, g, tuple(w.shape[-2:]), p) if needs[1] else None
        return gx, gw

    def jvp(F, ts, saved, *, stride, padding, dilation, groups):
        x, w = saved
        tx, tw = ts
        p = _geom(stride, padding, dilation, groups)
        return tsum(None if tx is None else _conv_b(F, tx, w, p),
                    None if tw is None else _conv_b(F, x, tw, p))

    def sample(draw):
        xs, ws, p = _conv_sample(draw)
        return (draw(S.arrays(xs)), draw(S.arrays(ws))), p


@defop("conv2d_transpose_input", params=("in_hw", "stride", "padding", "dilation", "groups"),
       cost=_tx_cost, saves=("g", "w"))
class Conv2dTransposeInput:
    """x = J_x^T g for y = conv2d(x, w): x_pad[n, c, i*sh + a*dh, j*sw + b*dw] += g[n, o, i, j]
    * w[o, c', a, b] (a transposed convolution), cropped to in_hw = (H, W)."""

    def batch(F, args, dims, **params):
        """One batched operand folds into N or the weight's channels (one op); both batched
        (per-example weights) become groups (see _conv_batch)."""
        return _conv_batch(F, Conv2dTransposeInput, args, dims, params)

    def forward(bk, g, w, *, in_hw, stride, padding, dilation, groups):
        y = _conv_transpose_forward(bk.xp, g, w, in_hw, stride, padding, dilation, groups)
        return y, (g, w)

    def vjp(F, u, saved, needs, *, in_hw, stride, padding, dilation, groups):
        g, w = saved
        p = _geom(stride, padding, dilation, groups)
        gg = _conv_b(F, u, w, p) if needs[0] else None
        gw = _tw_b(F, u, g, tuple(w.shape[-2:]), p) if needs[1] else None
        return gg, gw

    def jvp(F, ts, saved, *, in_hw, stride, padding, dilation, groups):
        g, w = saved
        tg, tw = ts
        p = _geom(stride, padding, dilation, groups)
        return tsum(None if tg is None else _tx_b(F, tg, w, in_hw, p),
                    None if tw is None else _tx_b(F, g, tw, in_hw, p))

    def sample(draw):
        xs, ws, p = _conv_sample(draw)
        ho_wo = _conv_out_hw(xs[2:], ws[2:], p["stride"], p["padding"], p["dilation"])
        gs = (xs[0], ws[0]) + ho_wo
        return (draw(S.arrays(gs)), draw(S.arrays(ws))), dict(p, in_hw=tuple(xs[2:]))


@defop("conv2d_weight", params=("w_hw", "stride", "padding", "dilation", "groups"),
       cost=_tw_cost, saves=("x", "g"))
class Conv2dWeight:
    """w = J_w^T g for y = conv2d(x, w): w[o, c, a, b] = sum_{n, i, j} g[n, o, i, j]
    * x_pad[n, g(o) * Cig + c, i*sh + a*dh, j*sw + b*dw]; w_hw = (kh, kw)."""

    def batch(F, args, dims, **params):
        """One batched operand folds into the channels (one op); both batched (per-example
        weight gradients) become groups."""
        return _conv_batch(F, Conv2dWeight, args, dims, params)

    def forward(bk, x, g, *, w_hw, stride, padding, dilation, groups):
        y = _conv_weight_forward(bk.xp, x, g, w_hw, stride, padding, dilation, groups)
        return y, (x, g)

    def vjp(F, v, saved, needs, *, w_hw, stride, padding, dilation, groups):
        x, g = saved
        p = _geom(stride, padding, dilation, groups)
        gx = _tx_b(F, g, v, tuple(x.shape[-2:]), p) if needs[0] else None
        gg = _conv_b(F, x, v, p) if needs[1] else None
        return gx, gg

    def jvp(F, ts, saved, *, w_hw, stride, padding, dilation, groups):
        x, g = saved
        tx, tg = ts
        p = _geom(stride, padding, dilation, groups)
        return tsum(None if tx is None else _tw_b(F, tx, g, w_hw, p),
                    None if tg is None else _tw_b(F, x, tg, w_hw, p))

    def sample(draw):
        xs, ws, p = _conv_sample(draw)
        ho_wo = _conv_out_hw(xs[2:], ws[2:], p["stride"], p["padding"], p["dilation"])
        gs = (xs[0], ws[0]) + ho_wo
        return (draw(S.arrays(xs)), draw(S.arrays(gs))), dict(p, w_hw=tuple(ws[2:]))


# ---------------------------------------------------------------------------------------------
# pooling (last two axes; any leading axes)


def _pool_out_hw(hw, kernel, stride, padding):
    return tuple((hw[a] + 2 * padding[a] - kernel[a]) // stride[a] + 1 for a in (0, 1))


def _sym(padding):
    return ((padding[0], padding[0]), (padding[1], padding[1]))


_ONE = (1, 1)


def _pool_cost(out, *xs, kernel, **p):
    return float(out.size * kernel[0] * kernel[1])


def _pool_grad_cost(out, g, *xs, kernel, **p):
    return float(g.size * kernel[0] * kernel[1])


def _scatter_taps(xp, g, sel, in_hw, kernel, stride, padding):
    """Sum g into the padded input at the kernel taps: tap k receives g where sel(k) holds (or
    everywhere, scaled, when sel is a number). Cropped to in_hw."""
    ho, wo = g.shape[-2:]
    h, w = in_hw
    out = xp.zeros(tuple(g.shape[:-2]) + (h + 2 * padding[0], w + 2 * padding[1]), dtype=g.dtype)
    kh, kw = kernel
    for i in range(kh):
        for j in range(kw):
            idx = _tap(i, j, stride, _ONE, (ho, wo))
            if isinstance(sel, numbers.Number):
                out[idx] += g
            else:
                out[idx] += xp.where(sel == i * kw + j, g, 0).astype(g.dtype, copy=False)
    out = out[..., padding[0]:padding[0] + h, padding[1]:padding[1] + w]
    if isinstance(sel, numbers.Number) and sel != 1:
        out = out * xp.asarray(sel, dtype=out.dtype)
    return xp.ascontiguousarray(out)


def _pool_sample(draw):
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    i = st.integers
    kernel = (draw(i(1, 3)), draw(i(1, 3)))
    stride = (draw(i(1, 3)), draw(i(1, 3)))
    padding = (draw(i(0, kernel[0] // 2)), draw(i(0, kernel[1] // 2)))
    hw = tuple(max(1, kernel[a] - 2 * padding[a]) + draw(i(0, 3)) for a in (0, 1))
    lead = (draw(i(1, 2)), draw(i(1, 2)))
    shape = lead + hw
    return shape, {"kernel": kernel, "stride": stride, "padding": padding}


@defop("max_pool2d", params=("kernel", "stride", "padding"), cost=_pool_cost, saves=(None, None),
       batch="leading")
class MaxPool2d:
    """y[..., i, j] = max_{a, b} x_pad[..., i*sh + a, j*sw + b] (padding with -inf); the
    gradient flows to the first maximum of each window."""

    def forward(bk, x, *, kernel, stride, padding):
        xp = bk.xp
        xpd = _pad2(xp, x, _sym(padding), value=-float("inf"))
        out_hw = _pool_out_hw(x.shape[-2:], kernel, stride, padding)
        kh, kw = kernel
        # a running maximum over the taps (no window copy); ties keep the first tap, NaN wins
        y = xpd[_tap(0, 0, stride, _ONE, out_hw)].copy()
        amax = xp.zeros(y.shape, dtype=xp.int32)
        for k in range(1, kh * kw):
            s = xpd[_tap(k // kw, k % kw, stride, _ONE, out_hw)]
            upd = (s > y) | (xp.isnan(s) & ~xp.isnan(y))
            y = xp.where(upd, s, y)
            amax = xp.where(upd, k, amax).astype(xp.int32, copy=False)
        return y.astype(x.dtype, copy=False), (amax, tuple(x.shape[-2:]))

    def vjp(F, g, saved, needs, *, kernel, stride, padding):
        amax, in_hw = saved
        return (F.max_pool2d_scatter(g, amax, in_hw=tuple(in_hw), kernel=kernel, stride=stride,
                                     padding=padding),)

    def jvp(F, ts, saved, *, kernel, stride, padding):
        amax, in_hw = saved
        return F.max_pool2d_gather(ts[0], amax, kernel=kernel, stride=stride, padding=padding)

    def sample(draw):
        shape, p = _pool_sample(draw)
        return (draw(S.distinct_arrays(shape)),), p


def _amax_sample(draw):
    """(g-like shape, input hw, amax int array, params) for the max-pool gradient primitives."""
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    shape, p = _pool_sample(draw)
    out_hw = _pool_out_hw(shape[-2:], p["kernel"], p["stride"], p["padding"])
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    k = p["kernel"][0] * p["kernel"][1]
    amax = rng.integers(0, k, size=shape[:-2] + out_hw).astype(np.int64)
    return shape, out_hw, amax, p


@defop("max_pool2d_scatter", params=("in_hw", "kernel", "stride", "padding"),
       cost=_pool_grad_cost, saves=("amax",), batch="leading")
class MaxPool2dScatter:
    """x[..., i*sh + a, j*sw + b] += g[..., i, j] where amax[i, j] == a * kw + b (cropped to
    in_hw); the gradient of max_pool2d. amax (int, trailing dims of g) is a constant."""

    def forward(bk, g, amax, *, in_hw, kernel, stride, padding):
        return _scatter_taps(bk.xp, g, amax, in_hw, kernel, stride, padding), (amax,)

    def vjp(F, u, saved, needs, *, in_hw, kernel, stride, padding):
        (amax,) = saved
        return F.max_pool2d_gather(u, amax, kernel=kernel, stride=stride, padding=padding), None

    def jvp(F, ts, saved, *, in_hw, kernel, stride, padding):
        (amax,) = saved
        return F.max_pool2d_scatter(ts[0], amax, in_hw=in_hw, kernel=kernel, stride=stride,
                                    padding=padding)

    def sample(draw):
        shape, out_hw, amax, p = _amax_sample(draw)
        g = draw(S.arrays(shape[:-2] + out_hw))
        return (g, amax), dict(p, in_hw=tuple(shape[-2:]))


@defop("max_pool2d_gather", params=("kernel", "stride", "padding"), cost=_pool_cost,
       saves=("amax", None), batch="leading")
class MaxPool2dGather:
    """y[..., i, j] = x_pad[..., i*sh + a, j*sw + b] with a * kw + b = amax[i, j] (zero padding):
    the adjoint of max_pool2d_scatter, and max_pool2d's tangent map."""

    def forward(bk, x, amax, *, kernel, stride, padding):
        xp = bk.xp
        xpd = _pad2(xp, x, _sym(padding))
        out_hw = _pool_out_hw(x.shape[-2:], kernel, stride, padding)
        lead = tuple(x.shape[:-2])
        if tuple(amax.shape[-2:]) != out_hw:
            raise ShapeError(f"max_pool2d_gather: argument 'amax' expected trailing dims "
                             f"{out_hw}, got {tuple(amax.shape)}")
        y = xp.zeros(lead + out_hw, dtype=x.dtype)
        kh, kw = kernel
        for i in range(kh):
            for j in range(kw):
                y = xp.where(amax == i * kw + j, xpd[_tap(i, j, stride, _ONE, out_hw)], y)
        return y.astype(x.dtype, copy=False), (amax, tuple(x.shape[-2:]))

    def vjp(F, v, saved, needs, *, kernel, stride, padding):
        amax, in_hw = saved
        return F.max_pool2d_scatter(v, amax, in_hw=tuple(in_hw), kernel=kernel, stride=stride,
                                    padding=padding), None

    def jvp(F, ts, saved, *, kernel, stride, padding):
        amax, _ = saved
        return F.max_pool2d_gather(ts[0], amax, kernel=kernel, stride=stride, padding=padding)

    def sample(draw):
        shape, out_hw, amax, p = _amax_sample(draw)
        return (draw(S.arrays(shape)), amax), p


@defop("avg_pool2d", params=("kernel", "stride", "padding"), cost=_pool_cost, saves=(None,),
       batch="leading")
class AvgPool2d:
    """y[..., i, j] = sum_{a, b} x_pad[..., i*sh + a, j*sw + b] / (kh * kw) (zero padding,
    counted in the mean)."""

    def forward(bk, x, *, kernel, stride, padding):
        xp = bk.xp
        xpd = _pad2(xp, x, _sym(padding))
        out_hw = _pool_out_hw(x.shape[-2:], kernel, stride, padding)
        kh, kw = kernel
        y = None
        for i in range(kh):
            for j in range(kw):
                s = xpd[_tap(i, j, stride, _ONE, out_hw)]
                y = s.copy() if y is None else y + s
        y = y * xp.asarray(1.0 / (kh * kw), dtype=y.dtype)
        return xp.ascontiguousarray(y), (tuple(x.shape[-2:]),)

    def vjp(F, g, saved, needs, *, kernel, stride, padding):
        return (F.avg_pool2d_grad(g, in_hw=tuple(saved[0]), kernel=kernel, stride=stride,
                                  padding=padding),)

    def jvp(F, ts, saved, *, kernel, stride, padding):
        return F.avg_pool2d(ts[0], kernel=kernel, stride=stride, padding=padding)

    def sample(draw):
        shape, p = _pool_sample(draw)
        return (draw(S.arrays(shape)),), p


@defop("avg_pool2d_grad", params=("in_hw", "kernel", "stride", "padding"), cost=_pool_grad_cost,
       batch="leading")
class AvgPool2dGrad:
    """x[..., i*sh + a, j*sw + b] += g[..., i, j] / (kh * kw), cropped to in_hw: the adjoint of
    avg_pool2d."""

    def forward(bk, g, *, in_hw, kernel, stride, padding):
        scale = 1.0 / (kernel[0] * kernel[1])
        return _scatter_taps(bk.xp, g, scale, in_hw, kernel, stride, padding), ()

    def vjp(F, u, saved, needs, *, in_hw, kernel, stride, padding):
        return (F.avg_pool2d(u, kernel=kernel, stride=stride, padding=padding),)

    def jvp(F, ts, saved, *, in_hw, kernel, stride, padding):
        return F.avg_pool2d_grad(ts[0], in_hw=in_hw, kernel=kernel, stride=stride,
                                 padding=padding)

    def sample(draw):
        shape, p = _pool_sample(draw)
        out_hw = _pool_out_hw(shape[-2:], p["kernel"], p["stride"], p["padding"])
        return (draw(S.arrays(shape[:-2] + out_hw)),), dict(p, in_hw=tuple(shape[-2:]))


# ---------------------------------------------------------------------------------------------
# embedding


def _embedding_sample(draw):
    # hypothesis: a test-only dependency (samplers run in tests)
    from hypothesis import strategies as st

    v, d = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    ishape = draw(S.shapes(min_dims=0, max_dims=2))
    # small V makes repeated indices likely, which the scatter must accumulate
    return draw(S.ints(ishape, 0, v)), v, d


def _axis_to(F, x, src, dst):
    """x with axis ``src`` moved to position ``dst`` (one transpose, none when equal)."""
    if src == dst:
        return x
    perm = [i for i in range(x.ndim) if i != src]
    perm.insert(dst, src)
    return F.transpose(x, tuple(perm))


def _row_offsets(idx, B, rows):
    """b * rows for example b, shaped to broadcast against idx (B, *k), in idx's dtype."""
    xp = idx._bk.xp
    off = (xp.arange(B) * rows).astype(idx.dtype).reshape((B,) + (1,) * (idx.ndim - 1))
    return Tensor(off, idx._bk)


@defop("embedding", cost=lambda out, idx, w, **p: float(out.size), saves=("indices", None))
class Embedding:
    """y[..., *k, :] = w[..., indices[*k], :]; w (..., V, D), indices integer of any shape."""

    def batch(F, args, dims):
        """Batched indices into a shared table: leading index axes (one take). A per-example
        table (vmap(grad) lifts a shared one): its batch is a leading table axis, which the
        forward keeps; with per-example indices too, the B tables are stacked into one of B * V
        rows and example b's indices offset by b * V (one take)."""
        (idx, w), (di, dw) = args, dims
        if dw is None:  # the output is w's leading axes, then idx's: the batch follows them
            return F.apply(Embedding, F.to_front(idx, di), w), w.ndim - 2
        w = F.to_front(w, dw)  # (B, L..., V, D)
        if di is None:
            return F.apply(Embedding, idx, w), 0
        idx = F.to_front(idx, di)  # (B, *k)
        nl = w.ndim - 3
        B, V = w.shape[0], w.shape[-2]
        w = _axis_to(F, w, 0, nl)  # (L..., B, V, D)
        w = F.reshape(w, tuple(w.shape[:nl]) + (B * V, w.shape[-1]))
        return F.apply(Embedding, F.add(idx, _row_offsets(idx, B, V)), w), nl

    def forward(bk, indices, w):
        return bk.xp.take(w, indices, axis=-2), (indices, w.shape[-2])

    def vjp(F, g, saved, needs):
        indices, v = saved
        return None, F.embedding_grad(g, indices, num=v)

    def jvp(F, ts, saved):
        indices, _ = saved
        return F.embedding(indices, ts[1])

    def sample(draw):
        idx, v, d = _embedding_sample(draw)
        return (idx, draw(S.arrays((v, d)))), {}


@defop("embedding_grad", params=("num",),
       cost=lambda out, g, idx, **p: float(g.size + out.size),
       deterministic=lambda bk, params: bk.deterministic_scatter
       or hasattr(bk, "deterministic_scatter_add"), saves=("indices",))
class EmbeddingGrad:
    """w[..., v, :] = sum_{k: indices[k] == v} g[..., *k, :] for v < num (a segment sum; repeated
    indices accumulate): the adjoint of embedding. On a GPU the scatter uses atomics unless a
    deterministic tape asks for ``bk.deterministic_scatter_add``."""

    def batch(F, args, dims, *, num):
        """A batched cotangent: a leading axis the forward keeps. Per-example indices: the
        scatter goes into one (B * num, D) table, example b's indices offset by b * num."""
        (g, idx), (dg, di) = args, dims
        if di is None:
            return F.apply(EmbeddingGrad, F.to_front(g, dg), idx, num=num), 0
        idx = F.to_front(idx, di)  # (B, *k)
        g = F.front(g, dg)  # (B, L..., *k, D)
        B = idx.shape[0]
        nl = g.ndim - idx.ndim - 1
        g = _axis_to(F, g, 0, nl)  # (L..., B, *k, D)
        out = F.apply(EmbeddingGrad, g, F.add(idx, _row_offsets(idx, B, num)), num=B * num)
        return F.reshape(out, tuple(out.shape[:nl]) + (B, num, out.shape[-1])), nl

    def forward(bk, g, indices, *, num):
        xp = bk.xp
        d = g.shape[-1]
        lead = tuple(g.shape[: g.ndim - indices.ndim - 1])
        nb, m = _prod(lead), _prod(indices.shape)
        rows = xp.ascontiguousarray(xp.moveaxis(g.reshape(nb, m, d), 1, 0))  # (m, nb, d)
        out = xp.zeros((num, nb, d), dtype=g.dtype)
        scatter = bk.scatter_add  # atomics on a GPU
        if not bk.deterministic_scatter and deterministic_requested():
            scatter = getattr(bk, "deterministic_scatter_add", scatter)  # (WARN mode if absent)
        scatter(out, indices.reshape(m), rows)
        out = xp.moveaxis(out, 1, 0).reshape(lead + (num, d))
        return xp.ascontiguousarray(out), (indices,)

    def vjp(F, u, saved, needs, *, num):
        (indices,) = saved
        return F.embedding(indices, u), None

    def jvp(F, ts, saved, *, num):
        (indices,) = saved
        return F.embedding_grad(ts[0], indices, num=num)

    def sample(draw):
        idx, v, d = _embedding_sample(draw)
        return (draw(S.arrays(idx.shape + (d,))), idx), {"num": v}


# ---------------------------------------------------------------------------------------------
# public functions


def _pair(v, name, op, lo=1):
    if isinstance(v, numbers.Integral):
        v = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(
            isinstance(a, numbers.Integral) for a in v):
        v = (int(v[0]), int(v[1]))
    else:
        raise ArgumentError(f"{op}: argument '{name}' expected an int or a pair of ints, "
                            f"got {v!r}")
    if min(v) < lo:
        raise ArgumentError(f"{op}: argument '{name}' expected values >= {lo}, got {v!r}")
    return v


def _float_tensor(x, like, name, op, ndim=None):
    x = as_tensor(x, like, name, op)
    if not hasattr(x, "_bk"):
        raise ArgumentError(f"{op}: argument '{name}' expected a Tensor, got {describe(x)}")
    if not is_floating(x.dtype):
        raise DTypeError(f"{op}: argument '{name}' expected a floating dtype, got {x.dtype}")
    if ndim is not None and x.ndim not in ndim:
        want = " or ".join(f"{d}-d" for d in ndim)
        raise ShapeError(f"{op}: argument '{name}' expected a {want} tensor, got shape {x.shape}")
    return x


def _conv_padding(padding, k, dilation, stride, hw, op):
    """Normalise padding to ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0), (0, 0))
        if mode == "same":  # output size ceil(H / stride), extra padding at the bottom/right
            out = []
            for a in (0, 1):
                need = (-(-hw[a] // stride[a]) - 1) * stride[a] + dilation[a] * (k[a] - 1) + 1
                total = max(need - hw[a], 0)
                out.append((total // 2, total - total // 2))
            return tuple(out)
        raise ArgumentError(f"{op}: argument 'padding' expected 'same', 'valid', an int or "
                            f"pairs, got {padding!r}")
    if (isinstance(padding, (tuple, list)) and len(padding) == 2
            and all(isinstance(p, (tuple, list)) for p in padding)):
        pads = tuple(_pair(tuple(p), "padding", op, lo=0) for p in padding)
        return pads
    ph, pw = _pair(padding, "padding", op, lo=0)
    return ((ph, ph), (pw, pw))


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """2-d cross-correlation (NCHW):
    y[n, o] = bias[o] + sum_c sum_{a, b} x_pad[n, c, i*s + a*d, j*s + b*d] * weight[o, c, a, b].

    x (N, C_in, H, W); weight (C_out, C_in / groups, kH, kW); bias (C_out,) or None. stride and
    dilation: int or pair; padding: int, pair, ((top, bottom), (left, right)), 'valid' or 'same'
    (output size ceil(H / stride)).
    """
    op = "conv2d"
    x = _float_tensor(x, weight if hasattr(weight, "_bk") else None, "x", op, (4,))
    weight = _float_tensor(weight, x, "weight", op, (4,))
    stride = _pair(stride, "stride", op)
    dilation = _pair(dilation, "dilation", op)
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ArgumentError(f"{op}: argument 'groups' expected a positive int, got {groups!r}")
    groups = int(groups)
    n, c, h, w = x.shape
    co, cig, kh, kw = weight.shape
    if c % groups or co % groups:
        raise ShapeError(f"{op}: argument 'groups' expected to divide C_in={c} and C_out={co}, "
                         f"got groups={groups}")
    if cig * groups != c:
        raise ShapeError(f"{op}: argument 'weight' expected C_in / groups = {c // groups} input "
                         f"channels (x {x.shape}, groups={groups}), got weight {weight.shape}")
    padding = _conv_padding(padding, (kh, kw), dilation, stride, (h, w), op)
    for a, name in ((0, "height"), (1, "width")):
        span = dilation[a] * ((kh, kw)[a] - 1) + 1
        padded = (h, w)[a] + sum(padding[a])
        if span > padded:
            raise ShapeError(f"{op}: kernel {name} {span} (with dilation) exceeds the padded "
                             f"input {name} {padded} (x {x.shape}, weight {weight.shape}, "
                             f"padding {padding})")
    y = apply(Conv2d, x, weight, stride=stride, padding=padding, dilation=dilation,
              groups=groups)
    if bias is not None:
        bias = _float_tensor(bias, x, "bias", op, (1,))
        if bias.shape != (co,):
            raise ShapeError(f"{op}: argument 'bias' expected shape ({co},), got {bias.shape}")
        y = y + reshape(bias, (1, co, 1, 1))
    return y


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1,
                     groups: int = 1):
    """2-d transposed convolution (the adjoint of conv2d with respect to its input), NCHW:
    x (N, C_in, H, W); weight (C_in, C_out / groups, kH, kW); output height
    (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1 (same for width).
    """
    op = "conv_transpose2d"
    x = _float_tensor(x, weight if hasattr(weight, "_bk") else None, "x", op, (4,))
    weight = _float_tensor(weight, x, "weight", op, (4,))
    stride = _pair(stride, "stride", op)
    dilation = _pair(dilation, "dilation", op)
    pad = _pair(padding, "padding", op, lo=0)
    opad = _pair(output_padding, "output_padding", op, lo=0)
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ArgumentError(f"{op}: argument 'groups' expected a positive int, got {groups!r}")
    groups = int(groups)
    n, ci, h, w = x.shape
    if weight.shape[0] != ci or ci % groups:
        raise ShapeError(f"{op}: argument 'weight' expected {ci} input channels divisible by "
                         f"groups={groups} (x {x.shape}), got weight {weight.shape}")
    for a in (0, 1):
        if opad[a] >= max(stride[a], dilation[a]):
            raise ArgumentError(f"{op}: argument 'output_padding' expected < max(stride, "
                                f"dilation) = {max(stride[a], dilation[a])}, got {opad}")
    k = tuple(weight.shape[2:])
    out_hw = tuple((x.shape[2 + a] - 1) * stride[a] - 2 * pad[a] + dilation[a] * (k[a] - 1)
                   + opad[a] + 1 for a in (0, 1))
    if min(out_hw) < 1:
        raise ShapeError(f"{op}: output size {out_hw} is empty (x {x.shape}, weight "
                         f"{weight.shape}, padding {pad})")
    y = apply(Conv2dTransposeInput, x, weight, in_hw=out_hw, stride=stride,
              padding=((pad[0], pad[0]), (pad[1], pad[1])), dilation=dilation, groups=groups)
    if bias is not None:
        co = y.shape[1]
        bias = _float_tensor(bias, x, "bias", op, (1,))
        if bias.shape != (co,):
            raise ShapeError(f"{op}: argument 'bias' expected shape ({co},), got {bias.shape}")
        y = y + reshape(bias, (1, co, 1, 1))
    return y


def _pool_args(x, kernel_size, stride, padding, op):
    x = _float_tensor(x, None, "x", op, (3, 4))
    kernel = _pair(kernel_size, "kernel_size", op)
    stride = kernel if stride is None else _pair(stride, "stride", op)
    padding = _pair(padding, "padding", op, lo=0)
    for a in (0, 1):
        if padding[a] > kernel[a] // 2:
            raise ArgumentError(f"{op}: argument 'padding' expected at most half the kernel "
                                f"{kernel}, got {padding}")
    hw = x.shape[-2:]
    for a in (0, 1):
        if kernel[a] > hw[a] + 2 * padding[a]:
            raise ShapeError(f"{op}: kernel {kernel} exceeds the padded input "
                             f"{tuple(hw[b] + 2 * padding[b] for b in (0, 1))} (x {x.shape})")
    return x, kernel, stride, padding


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """y[..., i, j] = max over the window x_pad[..., i*s:i*s + k, j*s:j*s + k] (-inf padding);
    x (N, C, H, W) or (C, H, W); stride defaults to kernel_size. The gradient goes to the first
    maximum of each window."""
    x, kernel, stride, padding = _pool_args(x, kernel_size, stride, padding, "max_pool2d")
    return apply(MaxPool2d, x, kernel=kernel, stride=stride, padding=padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """y[..., i, j] = mean over the window x_pad[..., i*s:i*s + k, j*s:j*s + k] (zero padding,
    counted); x (N, C, H, W) or (C, H, W); stride defaults to kernel_size."""
    x, kernel, stride, padding = _pool_args(x, kernel_size, stride, padding, "avg_pool2d")
    return apply(AvgPool2d, x, kernel=kernel, stride=stride, padding=padding)


def embedding(indices, weight):
    """y[*k, :] = weight[indices[*k], :]: rows of weight (V, D) picked by integer indices of any
    shape; result indices.shape + (D,). The gradient scatter-adds rows (repeats accumulate)."""
    op = "embedding"
    weight = _float_tensor(weight, None, "weight", op, (2,))
    indices = as_tensor(indices, weight, "indices", op)
    if not hasattr(indices, "_bk"):
        indices = as_tensor([indices], weight, "indices", op)
        indices = reshape(indices, ())
    if indices.dtype.kind not in "iu":
        raise DTypeError(f"{op}: argument 'indices' expected an integer dtype, "
                         f"got {indices.dtype}")
    v = weight.shape[0]
    if indices._bk.is_host and indices.size:  # (a bounds check would cost a sync on a GPU)
        xp = indices._bk.xp
        vals = check_values(indices)
        lo, hi = int(xp.min(vals)), int(xp.max(vals))
        if lo < 0 or hi >= v:
            raise ShapeError(f"{op}: argument 'indices' expected values in [0, {v}), got values "
                             f"in [{lo}, {hi}]")
    return apply(Embedding, indices, weight)


__all__ = ["conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "embedding"]
