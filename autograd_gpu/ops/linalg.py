"""Linear algebra: matmul (vectors, matrices, batched with broadcasting), einsum, and the
composites outer, tensordot and dot."""

from __future__ import annotations

import builtins
import numbers

from ..dtypes import bfloat16
from ..errors import ArgumentError, ShapeError
from ..tensor import Tensor
from . import sampling as S
from ._util import as_tensor, axis_index
from .registry import apply, defop
from .shape import reshape


def _matmul_cost(out, a, b):
    k = a.shape[-1] if a.ndim else 1
    return 2.0 * out.size * k


def _one_matrix(x):
    """The single matrix of ``x`` when its batch axes repeat it (absent, of length 1, or
    stride-0 broadcasts: an unbatched operand or a lifted weight inside ag.vmap), else None."""
    if any(n == 0 for n in x.shape):
        return None
    if all(n == 1 or st == 0 for n, st in zip(x.shape[:-2], x.strides[:-2])):
        return x[(0,) * (x.ndim - 2)]
    return None


def _covers(batch, inner):
    """Whether batch shape ``batch`` is the broadcast of itself with ``inner`` (the product's
    batch axes are then exactly ``batch``'s: no output row is a broadcast copy)."""
    if len(inner) > len(batch):
        return False
    return all(p in (1, q) for p, q in zip(inner[::-1], batch[::-1]))


def _product(bk, a, b):
    """a @ b for arrays, choosing the kernel for shapes ag.vmap produces:

    - outer products, (..., m, 1) @ (..., 1, n) in a real floating dtype: the per-example weight
      gradients of vmap(grad). One product per element, the numbers of bk.matmul bit for bit
      (complex products are left to BLAS, whose fused multiply-adds round differently). A
      broadcast product instead of a stacked matmul with an inner length of 1: NumPy took 26 ms
      for (256, 256, 1) @ (256, 1, 256) float32, the product 12 ms (one thread, 2026-12-07);
    - a stack against one matrix repeated along the batch (an unbatched operand of a vmapped
      matmul, or a lifted weight: stride-0 batch axes). (..., m, k) @ one (k, n) is one GEMM
      with the batch folded into the rows; one (m, k) @ columns (..., k, 1) is one GEMM
      (..., k) @ (k, m). NumPy instead loops over the batch, one small product per entry, the
      repeated operand never copied but each call paying its overhead: (999, 1, 3) @ (3, 3)
      float64 took 30 us against 2.5 us folded, (B, 1, k) @ (B, k, n) with the matrix lifted
      0.69 ms against 0.34 ms at B = k = n = 256 (2026-12-07). The same sums; BLAS's blocking
      may round them differently.
    Per-sample gradients of a 64-256-256-10 MLP at batch 256 (bench/test_vmap_bench.py) went
    from 28.2 ms to 14.2 ms a call with the first two (best of 15 interleaved rounds)."""
    if a.ndim < 2 or b.ndim < 2:
        return bk.matmul(a, b)
    if a.shape[-1] == 1 and b.shape[-2] == 1 and a.dtype == b.dtype and a.dtype.kind == "f":
        return a * b
    if a.ndim > 2 or b.ndim > 2:
        B = _one_matrix(b)
        if B is not None and _covers(a.shape[:-2], b.shape[:-2]):
            k = a.shape[-1]
            return bk.matmul(a.reshape(-1, k), B).reshape(a.shape[:-1] + (B.shape[-1],))
        A = _one_matrix(a) if b.shape[-1] == 1 else None
        if A is not None and _covers(b.shape[:-2], a.shape[:-2]):
            cols = b.reshape(b.shape[:-2] + (b.shape[-2],)).reshape(-1, b.shape[-2])
            return bk.matmul(cols, A.T).reshape(b.shape[:-2] + (A.shape[0], 1))
    return bk.matmul(a, b)


@defop("matmul", cost=_matmul_cost, saves=("a", "b"), complex_ok=True)
class Matmul:
    """y = a @ b with NumPy's rules: 1-d operands are promoted and the added axis removed;
    leading (batch) axes broadcast."""

    def batch(F, args, dims):
        """Each operand in matrix form (a vector gets a unit axis, removed at the end) with the
        batch axis first, padded so that the batch axes line up; unbatched operands broadcast."""
        (a, b), (da, db) = args, dims
        ra, rb = a.ndim - (da is not None), b.ndim - (db is not None)
        mats = []
        for x, d, r, vec in ((a, da, ra, -2), (b, db, rb, -1)):
            if d is not None:
                x = F.to_front(x, d)
                core = tuple(x.shape[1:])
                if r == 1:
                    core = (1,) + core if vec == -2 else core + (1,)
                mats.append((x, (x.shape[0],), core))
            else:
                core = tuple(x.shape)
                if r == 1:
                    core = (1,) + core if vec == -2 else core + (1,)
                mats.append((x, (), core))
        lead = max(len(c) for _, _, c in mats) - 2
        ops = []
        for x, bshape, core in mats:
            pad = (1,) * (lead - (len(core) - 2)) if bshape else ()
            ops.append(F.reshape(x, bshape + pad + core))
        y = F.matmul(*ops)
        if rb == 1:
            y = F.squeeze(y, -1)
        if ra == 1:
            y = F.squeeze(y, -1 if rb == 1 else -2)
        return y, 0

    def forward(bk, a, b):
        y = _product(bk, a, b)
        if y.dtype != a.dtype and a.dtype == b.dtype:  # NumPy's bfloat16 matmul gives float32
            y = y.astype(a.dtype)
        return y, (a, b)

    def vjp(F, g, saved, needs):
        a, b = saved
        ga = gb = None
        if a.ndim == 1 and b.ndim == 1:  # y = <a, b>, g has only batch axes
            gx = F.reshape(g, g.shape + (1,))
            ga = gx * b if needs[0] else None
            gb = gx * a if needs[1] else None
            return ga, gb
        if a.ndim == 1:  # (k) @ (..., k, n) -> (..., n)
            if needs[0] and b.ndim == 2:  # one GEMM over the whole batch
                ga = F.matmul(g, F.swapaxes(b, a1=-1, a2=-2))
            elif needs[0]:
                ga = F.reshape(F.matmul(F.reshape(g, g.shape[:-1] + (1, g.shape[-1])),
                                        F.swapaxes(b, a1=-1, a2=-2)), g.shape[:-1] + (a.shape[0],))
            if needs[1]:
                gb = F.reshape(a, (a.shape[0], 1)) * F.reshape(g, g.shape[:-1] + (1, g.shape[-1]))
            return ga, gb
        if b.ndim == 1:  # (..., m, k) @ (k) -> (..., m)
            if needs[0]:
                ga = F.reshape(g, g.shape + (1,)) * b
            if needs[1] and a.ndim == 2:  # one GEMM over the whole batch
                gb = F.matmul(g, a)
            elif needs[1]:
                gb = F.reshape(F.matmul(F.reshape(g, g.shape[:-1] + (1, g.shape[-1])), a),
                               g.shape[:-1] + (b.shape[0],))
            return ga, gb
        if needs[0]:
            ga = F.matmul(g, F.swapaxes(b, a1=-1, a2=-2))
        if needs[1]:
            gb = F.matmul(F.swapaxes(a, a1=-1, a2=-2), g)
        return ga, gb

    def jvp(F, ts, saved):
        a, b = saved
        ta, tb = ts
        # a tangent batch must not line up with the other operand's broadcast axes
        if ta is not None and 2 <= a.ndim < b.ndim:
            ta = _pad(F, ta, a.shape, b.ndim)
        if tb is not None and 2 <= b.ndim < a.ndim:
            tb = _pad(F, tb, b.shape, a.ndim)
        out = None
        if ta is not None:
            out = F.matmul(ta, b) if not (a.ndim == 1 and b.ndim > 2) else _vec_mat(F, ta, b)
        if tb is not None:
            if b.ndim == 1:
                if a.ndim == 1:
                    t2 = F.matmul(tb, a)
                elif a.ndim == 2:  # (batch, k) @ (k, m): one GEMM, not a stack of mat-vecs
                    t2 = F.matmul(tb, F.swapaxes(a, a1=-1, a2=-2))
                else:
                    t2 = _mat_vec(F, a, tb)
            else:
                t2 = F.matmul(a, tb)
            out = t2 if out is None else out + t2
        return out

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        m, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
        kind = draw(st.sampled_from(["mm", "mv", "vm", "vv", "bmm", "bcast", "bmv", "bvm"]))
        shapes = {
            "mm": ((m, k), (k, n)), "mv": ((m, k), (k,)), "vm": ((k,), (k, n)), "vv": ((k,), (k,)),
            "bmm": ((2, m, k), (2, k, n)), "bcast": ((3, 1, m, k), (2, k, n)),
            # batched matrix-vector products: the vector's gradient sums over the batch
            "bmv": ((2, m, k), (k,)), "bvm": ((k,), (3, 2, k, n)),
        }[kind]
        return (draw(S.arrays(shapes[0])), draw(S.arrays(shapes[1]))), {}


def _pad(F, t, shape, ndim):
    nb = t.ndim - len(shape)
    return F.reshape(t, tuple(t.shape[:nb]) + (1,) * (ndim - len(shape)) + tuple(shape))


def _vec_mat(F, ta, b):
    """(batch..., k) tangent of a 1-d left operand times (..., k, n). The tangent gets a 1 for
    each of b's leading axes, so its batch never lines up with them (with a batch as long as
    one of b's axes, matmul broadcast one against the other: silently wrong)."""
    t = F.reshape(ta, ta.shape[:-1] + (1,) * (b.ndim - 2) + (1, ta.shape[-1]))
    y = F.matmul(t, b)
    return F.reshape(y, y.shape[:-2] + (y.shape[-1],))


def _mat_vec(F, a, tb):
    """(..., m, k) times a (batch..., k) tangent of a 1-d right operand (the tangent's batch
    kept apart from a's leading axes, as in _vec_mat)."""
    t = F.reshape(tb, tb.shape[:-1] + (1,) * (a.ndim - 2) + (tb.shape[-1], 1))
    y = F.matmul(a, t)
    return F.reshape(y, y.shape[:-2] + (y.shape[-2],))


def matmul(a, b):
    """a @ b (NumPy semantics)."""
    like = a if hasattr(a, "_bk") else b if hasattr(b, "_bk") else None
    return apply(Matmul, as_tensor(a, like, "a", "matmul"), as_tensor(b, like, "b", "matmul"))


# ---- einsum ---------------------------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _parse(subscripts):
    """'ab,bc->ac' (normalised: explicit letters, explicit output) -> (['ab', 'bc'], 'ac')."""
    ins, out = subscripts.split("->")
    return ins.split(","), out


def _fresh(used):
    """Letters not in ``used``, in order (for tangent batch axes and helper operands)."""
    return (c for c in _LETTERS if c not in used)


def _letter_sizes(terms, shapes):
    """Size of each letter: the largest over operands (size-1 axes broadcast, as in NumPy)."""
    sizes: dict = {}
    for term, shape in zip(terms, shapes):
        for c, n in zip(term, shape):
            if n != 1 or c not in sizes:
                sizes[c] = n
    return sizes


def _einsum_cost(out, *xs, subscripts):
    ins, _ = _parse(subscripts)
    sizes = _letter_sizes(ins, [x.shape for x in xs])
    n = 1
    for s in sizes.values():
        n *= s
    return 2.0 * n * builtins.max(len(xs) - 1, 1)


def _einsum_xp(bk, subscripts, *operands):
    # contraction-order search costs tens of microseconds: worth it only for large operands
    big = len(operands) > 1 and builtins.any(o.size > 4096 for o in operands)
    if builtins.any(o.dtype == bfloat16 for o in operands):  # NumPy's einsum has no bf16 loop
        y = bk.xp.einsum(subscripts, *(o.astype("float32") for o in operands),
                         optimize="greedy" if big else False)
        return y.astype(bfloat16)
    return bk.xp.einsum(subscripts, *operands, optimize="greedy" if big else False)


def _all_inputs(n, params):
    return tuple(range(n))


@defop("einsum", params=("subscripts",), cost=_einsum_cost, saves=_all_inputs, complex_ok=True)
class Einsum:
    """y = einsum(subscripts, *operands): for 'ab,bc->ac', y_ac = sum_b x0_ab x1_bc.

    subscripts is normalised (explicit letters, explicit output, no ellipsis). The cotangent of
    operand k is an einsum of g with the other operands that produces k's subscripts: a letter
    repeated in k (a diagonal) is routed through an identity matrix, a letter found only in k
    is broadcast by a vector of ones. Tangent and cotangent batches get fresh letters."""

    def batch(F, args, dims, *, subscripts):
        """A fresh letter for the batch axis, in front of each batched operand and the output."""
        ins, out = _parse(subscripts)
        z = next(_fresh(set(subscripts)))
        terms, ops = [], []
        for x, d, term in zip(args, dims, ins):
            if d is None:
                terms.append(term)
                ops.append(x)
            else:
                terms.append(z + term)
                ops.append(F.to_front(x, d))
        return F.apply(Einsum, *ops, subscripts=",".join(terms) + "->" + z + out), 0

    def forward(bk, *operands, subscripts):
        return _einsum_xp(bk, subscripts, *operands), operands

    def vjp(F, g, saved, needs, *, subscripts):
        ins, out = _parse(subscripts)
        sizes = _letter_sizes(ins, [x.shape for x in saved])
        fresh = _fresh(set(subscripts))
        batch = "".join(next(fresh) for _ in range(g.ndim - len(out)))
        grads = []
        for k, term in enumerate(ins):
            if not needs[k]:
                grads.append(None)
                continue
            terms, args = [batch + out], [g]
            for j, other in enumerate(ins):
                if j != k:
                    terms.append(other)
                    args.append(saved[j])
            have = set(out).union(*(ins[j] for j in range(len(ins)) if j != k))
            spec, seen = "", set()
            for c in term:
                if c in seen:  # a diagonal: y depends on x_..c..c.. only through c == c2
                    c2 = next(fresh)
                    terms.append(c + c2)
                    args.append(F.const(F.xp.eye(sizes[c], dtype=g.dtype)))
                    spec += c2
                    have.add(c)
                else:
                    seen.add(c)
                    spec += c
            for c in seen - have:  # summed out inside operand k alone: g is constant along c
                terms.append(c)
                args.append(F.const(F.xp.ones(sizes[c], dtype=g.dtype)))
            grads.append(F.einsum(*args, subscripts=",".join(terms) + "->" + batch + spec))
        return tuple(grads)

    def jvp(F, ts, saved, *, subscripts):
        ins, out = _parse(subscripts)
        fresh = _fresh(set(subscripts))
        total = None
        batch = None
        for k, t in enumerate(ts):
            if t is None:
                continue
            if batch is None:
                batch = "".join(next(fresh) for _ in range(t.ndim - len(ins[k])))
            terms = [batch + term if j == k else term for j, term in enumerate(ins)]
            args = [t if j == k else saved[j] for j in range(len(ins))]
            y = F.einsum(*args, subscripts=",".join(terms) + "->" + batch + out)
            total = y if total is None else total + y
        return total

    def sample(draw):
        # hypothesis: a test-only dependency (samplers run in tests)
        from hypothesis import strategies as st

        spec = draw(st.sampled_from([
            "ij,jk->ik", "ij->ji", "ii->", "ii->i", "ij->", "ij->i", "i,i->", "i,j->ij",
            "bij,bjk->bik", "ij,ij->ij", "ijk,jl->kli", "ab,bc,cd->ad", "iij->ij", "i,ij->j",
        ]))
        ins, out = _parse(spec)
        sizes = {c: draw(st.integers(1, 4)) for c in set(spec) - set(",->")}
        arrays = tuple(draw(S.arrays(tuple(sizes[c] for c in term))) for term in ins)
        return arrays, {"subscripts": spec}


def _split_term(term, op="einsum"):
    """'a...b' -> (explicit letters before the ellipsis, after it, has_ellipsis)."""
    if term.count("...") > 1:
        raise ArgumentError(f"{op}: argument 'subscripts' has more than one '...' in {term!r}")
    if "..." in term:
        pre, post = term.split("...")
        ell = True
    else:
        pre, post, ell = term, "", False
    for c in pre + post:
        if c not in _LETTERS:
            raise ArgumentError(
                f"{op}: argument 'subscripts' expected letters a-z, A-Z, ',', '->' and '...', "
                f"got {c!r} in {term!r}"
            )
    return pre, post, ell


def _normalise(subscripts, shapes):
    """Explicit, ellipsis-free subscripts for the primitive (NumPy's rules otherwise)."""
    if not isinstance(subscripts, str):
        raise ArgumentError(f"einsum: argument 'subscripts' expected a str, got {subscripts!r}")
    s = subscripts.replace(" ", "")
    if s.count("->") > 1:
        raise ArgumentError(f"einsum: argument 'subscripts' has more than one '->': {subscripts!r}")
    lhs, arrow, rhs = s.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ArgumentError(
            f"einsum: subscripts {subscripts!r} name {len(terms)} operand(s), got {len(shapes)}"
        )
    parts = [_split_term(t) for t in terms]
    explicit = set("".join(p + q for p, q, _ in parts)) | set(rhs.replace("...", ""))
    n_ell = 0
    for (pre, post, ell), shape, t in zip(parts, shapes, terms):
        k = len(shape) - len(pre) - len(post)
        if k < 0 or (k > 0 and not ell):
            raise ShapeError(
                f"einsum: operand term {t!r} names {len(pre) + len(post)} axes, got an operand "
                f"with shape {tuple(shape)}"
            )
        n_ell = builtins.max(n_ell, k)
    fresh = _fresh(explicit)
    try:
        ell_letters = "".join(next(fresh) for _ in range(n_ell))
    except StopIteration:
        raise ArgumentError("einsum: too many axes (at most 52 distinct letters)") from None
    ins = []
    for (pre, post, _), shape in zip(parts, shapes):
        k = len(shape) - len(pre) - len(post)
        ins.append(pre + ell_letters[n_ell - k:] + post)
    if arrow:
        pre, post, ell = _split_term(rhs)
        if n_ell and not ell:
            raise ShapeError(
                f"einsum: the operands have {n_ell} axes under '...', but the output "
                f"{rhs!r} has no '...' to hold them"
            )
        out = pre + (ell_letters if ell else "") + post
        if len(set(out)) != len(out):
            raise ArgumentError(f"einsum: output subscripts {rhs!r} repeat a letter")
        missing = set(out) - set("".join(ins))
        if missing:
            raise ArgumentError(
                f"einsum: output letters {sorted(missing)} do not appear in any operand"
            )
    else:
        counts: dict = {}
        for c in "".join(p + q for p, q, _ in parts):
            counts[c] = counts.get(c, 0) + 1
        out = ell_letters + "".join(sorted(c for c, n in counts.items() if n == 1))
    # sizes: equal within an operand (diagonals), equal or 1 across operands (broadcast)
    sizes: dict = {}
    for t, term, shape in zip(terms, ins, shapes):
        own: dict = {}
        for c, n in zip(term, shape):
            if own.setdefault(c, n) != n:
                raise ShapeError(
                    f"einsum: letter {c!r} repeats in operand {t!r} with sizes {own[c]} and {n}"
                )
            if n != 1:
                if sizes.setdefault(c, n) != n:
                    raise ShapeError(
                        f"einsum: letter {c!r} has size {sizes[c]} in one operand and {n} in "
                        f"another (operand {t!r}, shape {tuple(shape)})"
                    )
    return ",".join(ins) + "->" + out


def einsum(subscripts: str, *operands):
    """Einstein summation with NumPy's subscripts: explicit ('ij,jk->ik') or implicit
    ('ij,jk': the letters used once, sorted) output, '...' for broadcast axes, and repeated
    letters in an operand for diagonals and traces ('ii->', 'ii->i'). Not supported: a letter
    repeated in the output, NumPy's interleaved (operand, sublist) form, and the out/dtype/order
    arguments."""
    if not operands:
        raise ArgumentError("einsum: expected at least one operand after the subscripts")
    like = next((o for o in operands if hasattr(o, "_bk")), None)
    ts = []
    for i, o in enumerate(operands):
        t = as_tensor(o, like, f"operands[{i}]", "einsum")
        if not hasattr(t, "_bk"):
            t = Tensor.from_array(t) if like is None else Tensor(like._bk.xp.asarray(t), like._bk)
        ts.append(t)
    norm = _normalise(subscripts, [t.shape for t in ts])
    return apply(Einsum, *ts, subscripts=norm)


def outer(a, b):
    """Outer product of the flattened a and b: y_ij = a_i b_j (a composite of reshape and *)."""
    like = a if hasattr(a, "_bk") else b if hasattr(b, "_bk") else None
    a = _tensor(a, like, "a", "outer")
    b = _tensor(b, like, "b", "outer")
    return reshape(a, (-1, 1)) * reshape(b, (1, -1))


def tensordot(a, b, axes=2):
    """Sum of products over the last ``axes`` axes of a and the first ``axes`` axes of b, or over
    the axis lists ``axes = (axes_a, axes_b)`` (NumPy's semantics; a composite of einsum)."""
    like = a if hasattr(a, "_bk") else b if hasattr(b, "_bk") else None
    a = _tensor(a, like, "a", "tensordot")
    b = _tensor(b, like, "b", "tensordot")
    if isinstance(axes, numbers.Integral):
        top = builtins.min(a.ndim, b.ndim)
        if not 0 <= axes <= top:
            raise ShapeError(f"tensordot: argument 'axes' expected 0..{top} for shapes {a.shape} "
                             f"and {b.shape}, got {axes}")
        ax_a = list(range(a.ndim - axes, a.ndim))
        ax_b = list(range(axes))
    else:
        try:
            ax_a, ax_b = axes
        except (TypeError, ValueError):
            raise ArgumentError(f"tensordot: argument 'axes' expected an int or a pair of axis "
                                f"lists, got {axes!r}") from None
        ax_a = [ax_a] if isinstance(ax_a, numbers.Integral) else list(ax_a)
        ax_b = [ax_b] if isinstance(ax_b, numbers.Integral) else list(ax_b)
        if len(ax_a) != len(ax_b):
            raise ShapeError(f"tensordot: argument 'axes' pairs {len(ax_a)} axes of a with "
                             f"{len(ax_b)} of b")
        ax_a = [_axis(x, a.ndim, "tensordot") for x in ax_a]
        ax_b = [_axis(x, b.ndim, "tensordot") for x in ax_b]
        if len(set(ax_a)) != len(ax_a) or len(set(ax_b)) != len(ax_b):
            raise ShapeError(f"tensordot: argument 'axes' repeats an axis: {axes!r}")
    for i, j in zip(ax_a, ax_b):
        if a.shape[i] != b.shape[j]:
            raise ShapeError(f"tensordot: axis {i} of a (shape {a.shape}) and axis {j} of b "
                             f"(shape {b.shape}) differ in size")
    if a.ndim + b.ndim - len(ax_a) > len(_LETTERS):
        raise ArgumentError("tensordot: too many axes (at most 52)")
    la = _LETTERS[: a.ndim]
    lb = list(_LETTERS[a.ndim: a.ndim + b.ndim])
    for i, j in zip(ax_a, ax_b):
        lb[j] = la[i]
    lb = "".join(lb)
    out = "".join(c for i, c in enumerate(la) if i not in ax_a)
    out += "".join(c for j, c in enumerate(lb) if j not in ax_b)
    return apply(Einsum, a, b, subscripts=f"{la},{lb}->{out}")


def dot(a, b):
    """NumPy's dot: a product with scalars, an inner product of vectors, matrix products, and
    for N-d operands the sum over the last axis of a and the second-to-last of b."""
    like = a if hasattr(a, "_bk") else b if hasattr(b, "_bk") else None
    a = _tensor(a, like, "a", "dot")
    b = _tensor(b, like, "b", "dot")
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    jb = builtins.max(b.ndim - 2, 0)
    return tensordot(a, b, axes=([a.ndim - 1], [jb]))


def _tensor(x, like, name, op):
    t = as_tensor(x, like, name, op)
    if not hasattr(t, "_bk"):
        t = Tensor.from_array(t) if like is None else Tensor(like._bk.xp.asarray(t), like._bk)
    return t


def _axis(a, ndim, op):
    return axis_index(a, ndim, op, "axes")


__all__ = ["matmul", "einsum", "outer", "tensordot", "dot"]
