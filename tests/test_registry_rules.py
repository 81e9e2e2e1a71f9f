"""The registry-wide rules test (DESIGN.md section 6).

For every differentiable primitive, on inputs drawn by its own sampler, in float64:
  * vjp and jvp against central differences along random directions,
  * the adjoint identity <u, J v> = <J^T u, v>,
  * batched tangents/cotangents against one-at-a-time sweeps,
  * a second-order check: the gradient of <vjp(u), w> against central differences of it,
  * forward-over-reverse: the tangent of vjp(u) under a ForwardAccumulator (with inputs the inner
    tape does not watch, as a closure would hold them) against central differences of the vjp,
  * the declared saved layout (``saves=``) against what the forward returns,
  * inputs that share one buffer give what separate copies give (values, first and second
    order): saved values are known by position, never by the identity of an array.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import autograd_gpu as ag
from autograd_gpu.backend import backend_for
from autograd_gpu.ops.graph import OUTPUT
from autograd_gpu.ops.registry import REGISTRY, apply, call_jvp, raw

DIFF_OPS = sorted(n for n, op in REGISTRY.items() if op.differentiable)
EPS = 1e-6

# ops that cannot hold one buffer in two differentiable inputs: one array input, or inputs whose
# shapes or dtypes never agree
NO_SHARED_PAIR = {n: "one array input" for n in DIFF_OPS if REGISTRY[n].arity == 1}
NO_SHARED_PAIR.update({
    "conv2d": "x is (N, C, H, W), w is (O, C/groups, kh, kw)",
    "conv2d_transpose_input": "g and w have different ranks' meanings and shapes",
    "conv2d_weight": "x and g have different shapes",
    "cross_entropy": "labels are integers",
    "embedding": "indices are integers",
    "embedding_grad": "indices are integers",
    "getitem": "index arrays are integers",
    "scatter_add": "index arrays are integers",
    "max_pool2d_gather": "amax is integer",
    "max_pool2d_scatter": "amax is integer",
    "permute": "the permutations are integers",
})
# ag.special: orders and parameters without a derivative are drawn as integers or numbers
NO_SHARED_PAIR.update({n: "one differentiable input (orders and parameters are integers)" for n in
                       ("polygamma", "jn", "yn", "gammainc", "gammaincc", "betainc", "iv", "ive",
                        "zeta")})


def _is_diff_input(a):
    return isinstance(a, np.ndarray) and a.dtype in (np.float64, np.complex128)


def _tensors(inputs):
    return [ag.Tensor.from_array(a, device="cpu") if isinstance(a, np.ndarray) else a
            for a in inputs]


def _forward(op, inputs, params):
    return apply(op, *_tensors(inputs), **params).numpy()


def _shift(inputs, dirs, h):
    return [np.asarray(a + h * d) if d is not None else a for a, d in zip(inputs, dirs)]


def _fd(fn, inputs, dirs):
    return (fn(_shift(inputs, dirs, EPS)) - fn(_shift(inputs, dirs, -EPS))) / (2 * EPS)


def _vjp(op, inputs, params, u, persistent=False):
    ts = _tensors(inputs)
    tape = ag.GradientTape(persistent=persistent)
    diff = [t for t, a in zip(ts, inputs) if _is_diff_input(a)]
    tape.watch(diff)
    y = apply(op, *ts, **params)
    grads = tape.gradient(y, diff, output_gradients=ag.Tensor.from_array(u, device="cpu"),
                          unconnected_gradients="zero")
    return [g.numpy() for g in grads]


def _jvp(op, inputs, params, tangents):
    bk = backend_for("cpu")
    out, saved = op.forward(bk, *inputs, **params)
    out = np.asarray(out)
    metas = [(np.shape(a), getattr(a, "dtype", None)) for a in inputs]
    t = call_jvp(op, raw(bk), tuple(tangents), saved, params, metas, out.ndim)
    return np.broadcast_to(np.asarray(t), t.shape[: t.ndim - out.ndim] + out.shape) \
        if t is not None else None


def _close(a, b, scale):
    return abs(a - b) <= 1e-6 * (1.0 + scale)


@pytest.mark.parametrize("name", DIFF_OPS)
def test_op_declares_rules_sampler_and_cost(name):
    op = REGISTRY[name]
    missing = [k for k in ("forward", "vjp", "jvp", "sample", "cost") if getattr(op, k) is None]
    assert not missing, f"op {name!r} lacks {missing}"
    assert op.doc, f"op {name!r} has no docstring with its formula"


@pytest.mark.parametrize("name", DIFF_OPS)
@given(data=st.data())
def test_rules_match_central_differences(name, data):
    op = REGISTRY[name]
    inputs, params = op.sample(data.draw)
    inputs = list(inputs)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    y = _forward(op, inputs, params)
    # a complex_ok op may give complex outputs for real inputs (fftn, rfftn): the cotangents are
    # then complex, and the identity Re(<u, J v>) = <vjp(u), v> (docs/contributing.md)
    cplx = bool(op.complex_ok) and y.dtype == np.complex128
    assert y.dtype == np.float64 or cplx, \
        f"{name}: sampler must produce float64 outputs, got {y.dtype}"
    u = _rand_like(rng, y.shape, cplx)
    dirs = [rng.standard_normal(np.shape(a)) if _is_diff_input(a) else None for a in inputs]
    diff_idx = [i for i, d in enumerate(dirs) if d is not None]
    if not diff_idx:
        pytest.skip("sampler drew no differentiable input")

    fd = _fd(lambda xs: _forward(op, xs, params), inputs, dirs)
    ref = float(np.real(np.sum(u * fd)))
    scale = float(np.sum(np.abs(u * fd))) + 1.0

    # reverse mode
    grads = _vjp(op, inputs, params, u)
    for i, g in zip(diff_idx, grads):
        assert g.shape == np.shape(inputs[i]), f"{name}: vjp shape {g.shape} for input {i}"
    vjp_val = sum(float(np.sum(g * dirs[i])) for i, g in zip(diff_idx, grads))
    assert _close(vjp_val, ref, scale), f"{name}: vjp {vjp_val} vs central differences {ref}"

    # forward mode
    tan = _jvp(op, inputs, params, dirs)
    jvp_val = float(np.real(np.sum(u * tan)))
    assert tan.shape == y.shape, f"{name}: jvp shape {tan.shape}, output {y.shape}"
    assert _close(jvp_val, ref, scale), f"{name}: jvp {jvp_val} vs central differences {ref}"
    assert _close(jvp_val, vjp_val, scale), f"{name}: adjoint identity {jvp_val} vs {vjp_val}"

    # batched tangents and cotangents
    dirs2 = [None if d is None else rng.standard_normal(d.shape) for d in dirs]
    batch_t = [None if d is None else np.stack([d, d2]) for d, d2 in zip(dirs, dirs2)]
    tb = _jvp(op, inputs, params, batch_t)
    assert np.allclose(tb[0], tan, atol=1e-9), f"{name}: batched jvp[0] differs"
    assert np.allclose(tb[1], _jvp(op, inputs, params, dirs2), atol=1e-9), f"{name}: jvp[1]"
    u2 = _rand_like(rng, y.shape, cplx)
    ts = _tensors(inputs)
    tape = ag.GradientTape()
    diff = [ts[i] for i in diff_idx]
    tape.watch(diff)
    yt = apply(op, *ts, **params)
    seeds = [(yt, np.stack([u, u2]))]
    gb = tape.backward(seeds, [t._node for t in diff], batch_nd=1)
    g2 = _vjp(op, inputs, params, u2)
    for k, g in enumerate(gb):
        # None: a structurally zero gradient (relu_grad's in x)
        g = np.zeros((2,) + grads[k].shape) if g is None else g.numpy()
        assert np.allclose(g[0], grads[k], atol=1e-9), f"{name}: batched vjp[0]"
        assert np.allclose(g[1], g2[k], atol=1e-9), f"{name}: batched vjp[1]"

    # second order: d/dx <vjp_x(u), w> along v
    ws = [rng.standard_normal(np.shape(inputs[i])) for i in diff_idx]

    def h_of(xs):
        gs = _vjp(op, xs, params, u)
        return np.asarray(sum(float(np.sum(g * w)) for g, w in zip(gs, ws)))

    fd2 = float(_fd(h_of, inputs, dirs))
    ts = _tensors(inputs)
    diff = [ts[i] for i in diff_idx]
    with ag.GradientTape() as outer:
        outer.watch(diff)
        with ag.GradientTape() as inner:
            inner.watch(diff)
            yt = apply(op, *ts, **params)
        gs = inner.gradient(yt, diff, output_gradients=ag.Tensor.from_array(u, device="cpu"),
                            unconnected_gradients="zero")
        h = None
        for g, w in zip(gs, ws):
            term = (g * ag.Tensor.from_array(w, device="cpu")).sum()
            h = term if h is None else h + term
    hs = outer.gradient(h, diff, unconnected_gradients="zero")
    so = sum(float(np.sum(g.numpy() * dirs[i])) for i, g in zip(diff_idx, hs))
    scale2 = abs(fd2) + sum(float(np.sum(np.abs(g.numpy() * dirs[i])))
                            for i, g in zip(diff_idx, hs)) + 1.0
    assert abs(so - fd2) <= 1e-5 * scale2, f"{name}: second order {so} vs {fd2}"


def _draw_case(op, data):
    inputs, params = op.sample(data.draw)
    inputs = list(inputs)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    diff_idx = [i for i, a in enumerate(inputs) if _is_diff_input(a)]
    return inputs, params, rng, diff_idx


@pytest.mark.parametrize("name", sorted(n for n, op in REGISTRY.items() if op.sample))
@given(data=st.data())
def test_declared_saved_layout_matches_the_forward(name, data):
    op = REGISTRY[name]
    inputs, params = op.sample(data.draw)
    bk = backend_for("cpu")
    arrs = [np.asarray(a) if isinstance(a, np.ndarray) else a for a in inputs]
    out, saved = op.forward(bk, *arrs, **params)
    codes = op.codes_for(len(arrs), params)
    assert isinstance(saved, tuple), f"{name}: saved values must be a tuple"
    assert len(saved) == len(codes), f"{name}: saved {len(saved)} values, declares {codes}"
    for k, (s, c) in enumerate(zip(saved, codes)):
        if c == OUTPUT:
            assert s is out, f"{name}: saved slot {k} is declared the output but is not"
        elif c >= 0 and isinstance(arrs[c], np.ndarray):
            assert s is arrs[c], f"{name}: saved slot {k} is declared input {c} but is not"


def _shared_case(op, data):
    """The op's sample with input j made the same array as an earlier input i (both
    differentiable): of the same shape, or for a broadcasting op any shape (one input's array
    then serves as both). None when the sample has no such pair."""
    inputs, params, rng, diff_idx = _draw_case(op, data)
    for jj, j in enumerate(diff_idx):
        for i in diff_idx[:jj]:
            if inputs[i].shape == inputs[j].shape or op.broadcasting:
                inputs[j] = inputs[i]
                return inputs, params, rng, diff_idx, (i, j)
    return None


def _grads_and_second(op, ts, diff, params, u, ws, dirs):
    """First-order gradients of <op(ts), u> and the second-order directional derivative
    d/dt <grad, w> along dirs, for the watched tensors ``diff``."""
    with ag.GradientTape() as outer:
        outer.watch(diff)
        with ag.GradientTape() as inner:
            inner.watch(diff)
            y = apply(op, *ts, **params)
        gs = inner.gradient(y, diff, output_gradients=ag.Tensor.from_array(u, device="cpu"),
                            unconnected_gradients="zero")
        h = None
        for g, w in zip(gs, ws):
            term = (g * ag.Tensor.from_array(w, device="cpu")).sum()
            h = term if h is None else h + term
    hs = outer.gradient(h, diff, unconnected_gradients="zero")
    return y.numpy(), [g.numpy() for g in gs], [g.numpy() for g in hs]


@pytest.mark.parametrize("name", DIFF_OPS)
@given(data=st.data())
def test_inputs_sharing_one_buffer_act_as_separate_copies(name, data):
    op = REGISTRY[name]
    if name in NO_SHARED_PAIR:
        pytest.skip(NO_SHARED_PAIR[name])
    case = _shared_case(op, data)
    assume(case is not None)
    inputs, params, rng, diff_idx, (i, j) = case
    y = _forward(op, [np.copy(a) if isinstance(a, np.ndarray) else a for a in inputs], params)
    u = rng.standard_normal(y.shape)
    ws = [rng.standard_normal(np.shape(inputs[k])) for k in diff_idx]
    dirs = [rng.standard_normal(np.shape(inputs[k])) for k in diff_idx]
    bk = backend_for("cpu")

    def run(share):
        arrs = [np.copy(a) if isinstance(a, np.ndarray) else a for a in inputs]
        if share:
            arrs[j] = arrs[i]  # one buffer, two tensors
        ts = [ag.Tensor(a, bk) if isinstance(a, np.ndarray) else a for a in arrs]
        diff = [ts[k] for k in diff_idx]
        tape = ag.GradientTape()  # first order alone: the rules run on raw arrays
        tape.watch(diff)
        y = apply(op, *ts, **params)
        first = tape.gradient(y, diff, output_gradients=ag.Tensor.from_array(u, device="cpu"),
                              unconnected_gradients="zero")
        return ([g.numpy() for g in first],
                *_grads_and_second(op, ts, diff, params, u, ws, dirs))

    shared, copies = run(True), run(False)
    for a, b in zip(shared, copies):
        for x, z in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            assert np.allclose(x, z, rtol=1e-12, atol=1e-12, equal_nan=True), \
                f"{name}: inputs {i} and {j} sharing one buffer differ from separate copies"


@pytest.mark.parametrize("name", DIFF_OPS)
@given(data=st.data())
def test_forward_over_reverse_matches_central_differences_of_the_vjp(name, data):
    """The tangent of vjp_0(u) (the inner tape watches only the first differentiable input; the
    others reach the rules as constants, the way a closure holds them) under an accumulator
    that moves every differentiable input, against central differences of that vjp."""
    op = REGISTRY[name]
    inputs, params, rng, diff_idx = _draw_case(op, data)
    if not diff_idx:
        pytest.skip("sampler drew no differentiable input")
    y = _forward(op, inputs, params)
    u = rng.standard_normal(y.shape)
    dirs = [rng.standard_normal(np.shape(a)) if k in diff_idx else None
            for k, a in enumerate(inputs)]
    first = diff_idx[0]

    def vjp_first(xs):
        ts = _tensors(xs)
        tape = ag.GradientTape()
        tape.watch(ts[first])
        yt = apply(op, *ts, **params)
        (g,) = tape.gradient(yt, [ts[first]],
                             output_gradients=ag.Tensor.from_array(u, device="cpu"),
                             unconnected_gradients="zero")
        return g.numpy()

    fd = _fd(vjp_first, inputs, dirs)
    ts = _tensors(inputs)
    primals = [ts[k] for k in diff_idx]
    tangents = [ag.Tensor.from_array(dirs[k], device="cpu") for k in diff_idx]
    with ag.ForwardAccumulator(primals, tangents) as acc:
        tape = ag.GradientTape()
        tape.watch(ts[first])
        yt = apply(op, *ts, **params)
        (g,) = tape.gradient(yt, [ts[first]],
                             output_gradients=ag.Tensor.from_array(u, device="cpu"),
                             unconnected_gradients="zero")
    t = acc.jvp(g, unconnected_gradients="zero").numpy()
    scale = float(np.max(np.abs(fd), initial=0.0)) + 1.0
    assert np.allclose(t, fd, rtol=0, atol=1e-5 * scale), \
        f"{name}: forward-over-reverse {t} vs central differences of the vjp {fd}"


COMPLEX_OPS = sorted(n for n in DIFF_OPS if REGISTRY[n].complex_ok)


def _complexify(inputs, rng):
    """The sample with its float64 inputs made complex128 (a small imaginary part, so domains
    that hold on the real line - log's and sqrt's x > 0 - stay away from branch cuts)."""
    return [np.asarray(a + 1j * rng.uniform(-0.4, 0.4, np.shape(a)))
            if isinstance(a, np.ndarray) and a.dtype == np.float64 else a for a in inputs]


def _rand_like(rng, shape, complex_):
    r = rng.standard_normal(shape)
    return r + 1j * rng.standard_normal(shape) if complex_ else r


@pytest.mark.parametrize("name", COMPLEX_OPS)
@given(data=st.data())
def test_complex_rules_match_central_differences(name, data):
    """complex128 inputs: the vjp satisfies Re(sum(vjp(u) * v)) = d/dt Re(sum(u * f(z + t v)))
    (the convention of docs/contributing.md) and the jvp is d/dt f(z + t v), both along
    directions v with real and imaginary parts."""
    op = REGISTRY[name]
    inputs, params = op.sample(data.draw)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    inputs = _complexify(list(inputs), rng)
    diff_idx = [i for i, a in enumerate(inputs) if isinstance(a, np.ndarray)
                and a.dtype == np.complex128]
    assume(diff_idx)
    y = _forward(op, inputs, params)
    u = _rand_like(rng, y.shape, np.iscomplexobj(y))
    dirs = [_rand_like(rng, np.shape(a), True) if i in diff_idx else None
            for i, a in enumerate(inputs)]
    fd_f = _fd(lambda xs: _forward(op, xs, params), inputs, dirs)  # d/dt f(z + t v)
    ref = float(np.real(np.sum(u * fd_f)))
    scale = float(np.sum(np.abs(u * fd_f))) + 1.0
    grads = _vjp(op, inputs, params, u)
    vjp_val = sum(float(np.real(np.sum(g * dirs[i]))) for i, g in zip(diff_idx, grads))
    assert _close(vjp_val, ref, scale), f"{name}: complex vjp {vjp_val} vs central diff. {ref}"
    tan = _jvp(op, inputs, params, dirs)
    assert np.allclose(tan, fd_f, atol=1e-6 * (1.0 + float(np.max(np.abs(fd_f), initial=0)))), \
        f"{name}: complex jvp {tan} vs central differences {fd_f}"


NON_COMPLEX_OPS = sorted(n for n in DIFF_OPS if not REGISTRY[n].complex_ok)


@pytest.mark.parametrize("name", NON_COMPLEX_OPS)
@given(data=st.data())
def test_ops_without_complex_rules_refuse_complex_inputs(name, data):
    """A complex value must never pass through a real rule (its imaginary part would be lost
    or its gradient wrong without an error)."""
    op = REGISTRY[name]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    for _ in range(5):  # (a sampler may draw integer-only inputs: nothing to refuse then)
        inputs, params = op.sample(data.draw)
        inputs = _complexify(list(inputs), rng)
        if any(isinstance(a, np.ndarray) and a.dtype == np.complex128 for a in inputs):
            break
    else:
        return
    with pytest.raises(ag.DTypeError):
        _forward(op, inputs, params)


# ---- vmap: every op against a loop over examples -------------------------------------------------

B_SIZE = 3


def _examples(inputs, rng, n):
    """n examples of one sample: float inputs perturbed per example (forward values only are
    compared, so kinks do not matter), other inputs repeated."""
    return [[np.asarray(a + 0.01 * k * rng.standard_normal(np.shape(a)))
             if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in inputs]
            for k in range(n)]


def _stacked(examples, axes):
    out = []
    for i, a in enumerate(examples[0]):
        if axes[i] is None:
            out.append(a)
        else:
            out.append(np.stack([ex[i] for ex in examples], axis=axes[i]))
    return out


def _axes_for(inputs, in_axis, only_first=False):
    axes, first = [], True
    for a in inputs:
        if not isinstance(a, np.ndarray) or (only_first and not first):
            axes.append(None)
            continue
        first = False
        nd = a.ndim
        ax = in_axis if -(nd + 1) <= in_axis <= nd else 0
        axes.append(ax)
    return axes


def _apply_np(op, xs, params):
    return apply(op, *_tensors(xs), **params)


@pytest.mark.parametrize("name", sorted(n for n, op in REGISTRY.items() if op.sample))
def test_every_op_declares_a_batching_rule(name):
    assert REGISTRY[name].batch is not None, f"op {name!r} has no batching rule (defop batch=)"


@pytest.mark.parametrize("name", sorted(n for n, op in REGISTRY.items() if op.sample))
@settings(max_examples=max(4, settings.default.max_examples // 3))  # (each runs 5 vmaps)
@given(data=st.data())
def test_vmap_of_each_op_equals_a_loop_over_examples(name, data):
    """vmap(op) at in_axes 0, 1 and -1, with only the first array input mapped, and nested
    twice, against stacking the op over the examples."""
    import warnings

    op = REGISTRY[name]
    inputs, params = op.sample(data.draw)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    inputs = list(inputs)
    if not any(isinstance(a, np.ndarray) for a in inputs):
        return
    exs = _examples(inputs, rng, B_SIZE)
    ref = [_apply_np(op, ex, params).numpy() for ex in exs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (the loop fallback's notice)
        for in_axis, only_first in ((0, False), (1, False), (-1, False), (0, True)):
            axes = _axes_for(inputs, in_axis, only_first)
            if only_first:
                exs_k = [[ex[i] if axes[i] is not None else exs[0][i] for i in range(len(ex))]
                         for ex in exs]
                want = np.stack([_apply_np(op, ex, params).numpy() for ex in exs_k])
            else:
                exs_k, want = exs, np.stack(ref)
            got = ag.vmap(lambda *xs: apply(op, *xs, **params), in_axes=tuple(axes),
                          randomness="same")(*_tensors(_stacked(exs_k, axes)))
            assert np.allclose(got.numpy(), want, rtol=1e-12, atol=1e-12, equal_nan=True), \
                f"{name}: vmap at in_axes {axes} differs from the loop"
        # nested twice: a (2, B) grid of examples
        grid = [_examples(ex, rng, 2) for ex in exs]  # grid[b][c]
        axes = _axes_for(inputs, 0)
        inner = [_stacked(row, axes) for row in grid]  # per b: stacked over c
        both = _stacked(inner, axes)  # (B, 2, ...)
        want = np.stack([np.stack([_apply_np(op, ex, params).numpy() for ex in row])
                         for row in grid])
        f = ag.vmap(ag.vmap(lambda *xs: apply(op, *xs, **params), in_axes=tuple(axes),
                            randomness="same"), in_axes=tuple(axes), randomness="same")
        got = f(*_tensors(both))
        assert np.allclose(got.numpy(), want, rtol=1e-12, atol=1e-12, equal_nan=True), \
            f"{name}: nested vmap differs from the loop"
