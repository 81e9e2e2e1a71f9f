"""The transforms and the NumPy/SciPy surface on the device: vmap and per-sample gradients,
jacobians in both modes, hessians and forward mode, odeint's adjoint, every checkpoint strategy,
FFT and convolution, the distributions, linear algebra in a GP likelihood, complex values and
pytrees, and data-parallel collectives over NCCL in a world of one.

Each case is one function run on a device and compared with the same function on NumPy in
float64; it runs twice, on "cpu" (which checks the case itself, on every CI run) and on "cuda"
(marked ``gpu``: deselected without a usable GPU, see conftest). Results must also stay on the
device they were computed on: a value that silently came back to the host would pass a value
comparison and still be a defect.
"""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.integrate import odeint

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
RTOL = 1e-9  # float64 on both sides; cuBLAS and cuSOLVER round differently from LAPACK


def on(dev, a):
    return ag.Tensor.from_array(np.asarray(a), device=dev)


def _leaves(tree):
    return [x for x in ag.tree_leaves(tree) if isinstance(x, ag.Tensor)]


def host(tree):
    """Every tensor leaf of ``tree`` as a NumPy array (a copy off the device)."""
    return [x.numpy() for x in _leaves(tree)]


def assert_on(tree, dev):
    leaves = _leaves(tree)
    assert leaves, "no tensor in the result"
    for x in leaves:
        assert x.device.type == dev, f"a result is on {x.device}, expected {dev}"


def compare(run, dev, rtol=RTOL, atol=1e-12):
    """run(dev) -> a pytree of tensors; on ``dev`` it must equal the NumPy result."""
    got = run(dev)
    assert_on(got, dev)
    ref = host(run("cpu"))
    out = host(got)
    assert len(out) == len(ref)
    for g, r in zip(out, ref):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)
    return out


RNG = np.random.default_rng(20261207)
X = RNG.normal(size=(6, 5))
W = RNG.normal(size=(5, 4)) / 2
B = RNG.normal(size=4)
Y = RNG.normal(size=(6, 4))


@pytest.mark.parametrize("dev", DEVICES)
def test_vmap_of_a_function_of_many_ops(dev):
    def f(x, w):
        h = ag.tanh(x @ w)
        z = ag.concatenate([ag.softmax(h, axis=-1), h[::2]], axis=0)
        return ag.logsumexp(z) + ag.cumsum(h, axis=0).max() + ag.where(h > 0, h, 0.1 * h).sum()

    def run(d):
        xs = on(d, np.stack([X[:3], X[3:]]))
        return ag.vmap(f, in_axes=(0, None))(xs, on(d, W))

    out = compare(run, dev)
    loop = [f(on("cpu", X[:3]), on("cpu", W)).numpy(), f(on("cpu", X[3:]), on("cpu", W)).numpy()]
    np.testing.assert_allclose(out[0], loop, rtol=1e-12)


@pytest.mark.parametrize("dev", DEVICES)
def test_per_sample_gradients_of_a_parameter_dict(dev):
    def loss(p, x, y):
        return ((ag.tanh(x @ p["w"] + p["b"]) - y) ** 2).sum()

    def run(d):
        p = {"w": on(d, W), "b": on(d, B)}
        return ag.vmap(ag.grad(loss), in_axes=(None, 0, 0))(p, on(d, X), on(d, Y))

    out = compare(run, dev)
    gw, gb = out if out[0].ndim == 3 else out[::-1]
    for i in range(len(X)):
        g = ag.grad(loss)({"w": on("cpu", W), "b": on("cpu", B)}, on("cpu", X[i]),
                          on("cpu", Y[i]))
        np.testing.assert_allclose(gw[i], g["w"].numpy(), rtol=1e-12)
        np.testing.assert_allclose(gb[i], g["b"].numpy(), rtol=1e-12)


@pytest.mark.parametrize("dev", DEVICES)
def test_jacobians_in_every_mode_hessian_hvp_and_jvp(dev):
    def f(x):
        return ag.stack([ag.sin(x).sum(), (x[:3] * x[2:]).sum(), ag.exp(x / 4).prod()])

    def g(x):
        return (ag.tanh(x) ** 3).sum() + (x[:-1] * x[1:]).sum()

    x0 = RNG.normal(size=5)

    def run(d):
        x = on(d, x0)
        jf = ag.jacobian(f, x, mode="forward")
        jr = ag.jacobian(f, x, mode="reverse")
        ja = ag.jacobian(f, x)
        h = ag.hessian(g, x)
        hv = ag.hvp(g, x, on(d, np.arange(5.0)))
        _, tangent = ag.jvp(f, (x,), (on(d, np.ones(5)),))
        return [jf, jr, ja, h, hv, tangent]

    jf, jr, ja, h, hv, tangent = compare(run, dev)
    np.testing.assert_allclose(jf, jr, rtol=1e-13)
    np.testing.assert_allclose(ja, jr, rtol=1e-13)
    np.testing.assert_allclose(hv, h @ np.arange(5.0), rtol=1e-12)
    np.testing.assert_allclose(tangent, jr.sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("dev", DEVICES)
def test_odeint_values_and_adjoint_gradients(dev):
    r0 = np.array([1.0, -0.5, -0.8])
    a0 = np.array([[-0.1, -0.4, 0.0], [0.3, -0.05, -0.2], [0.0, 0.25, -0.05]])

    def lv(y, t, r, a):
        return y * (r + a @ y)

    def run(d):
        ts = on(d, np.linspace(0.0, 5.0, 11))

        def loss(y0, r, a):
            return (odeint(lv, y0, ts, r, a, rtol=1e-10, atol=1e-10) ** 2).sum()

        y0, r, a = on(d, [1.0, 0.8, 0.5]), on(d, r0), on(d, a0)
        ys = odeint(lv, y0, ts, r, a, rtol=1e-10, atol=1e-10)
        value, grads = ag.value_and_grad(loss, argnums=(0, 1, 2))(y0, r, a)
        return [ys, value, *grads]

    # the adaptive step sizes follow the error estimate, which rounds differently on the two
    # sides, so the solutions agree to the tolerance asked, not to the last bit
    compare(run, dev, rtol=1e-7, atol=1e-9)


CKPT = [ag.CheckpointConfig("none"), ag.CheckpointConfig("selective", min_compute_cost=10),
        ag.CheckpointConfig("block", checkpoint_every_n=3), ag.CheckpointConfig("full"),
        ag.CheckpointConfig("auto", memory_budget_mb=0.05)]


@pytest.mark.parametrize("dev", DEVICES)
def test_every_checkpoint_strategy_gives_the_tapes_gradients(dev):
    ws = [RNG.normal(size=(8, 8)) / 3 for _ in range(8)]
    h0 = RNG.normal(size=(16, 8))

    def run(d, config):
        params = [ag.Variable(on(d, w)) for w in ws]
        with ag.GradientTape(checkpoint=config) as tape:
            h = on(d, h0)
            for w in params:
                h = ag.tanh(h @ w)
            loss = (h ** 2).sum()
        return tape.gradient(loss, params)

    ref = host(run("cpu", None))
    for config in CKPT:
        got = run(dev, config)
        assert_on(got, dev)
        for g, r in zip(host(got), ref):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15,
                                       err_msg=str(config.strategy))


@pytest.mark.parametrize("dev", DEVICES)
def test_fft_and_convolution_values_and_gradients(dev):
    sig, ker = RNG.normal(size=64), RNG.normal(size=9)
    img = RNG.normal(size=(6, 8)) + 1j * RNG.normal(size=(6, 8))

    def run(d):
        def loss(s, k, z):
            spec = ag.fft.rfft(s)
            back = ag.fft.irfft(spec * ag.conj(spec), n=64)
            z2 = ag.fft.ifft2(ag.fft.fft2(z) * 0.5)
            conv = ag.signal.convolve(s, k, mode="same", method="fft")
            direct = ag.signal.convolve(s, k, mode="valid", method="direct")
            return (back.sum() + (ag.abs(z2) ** 2).sum() + (conv ** 2).sum()
                    + ag.real(ag.fft.fftshift(ag.fft.fft(s))).sum() + direct.sum())

        s, k, z = on(d, sig), on(d, ker), on(d, img)
        value, grads = ag.value_and_grad(loss, argnums=(0, 1, 2))(s, k, z)
        return [value, *grads]

    out = compare(run, dev)
    assert np.iscomplexobj(out[3])  # the gradient of a complex input is complex


@pytest.mark.parametrize("dev", DEVICES)
def test_distributions_in_values_and_parameters(dev):
    x = np.abs(RNG.normal(size=7)) + 0.1
    u = np.clip(RNG.uniform(size=7), 0.05, 0.95)
    k = np.arange(7.0)
    simplex = np.array([0.2, 0.3, 0.5])
    cov = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 1.5]])

    def run(d):
        def loss(x, u, p, cov):
            s = ag.stats
            return (s.norm.logpdf(x, p[0], p[1]).sum() + s.norm.logcdf(x, p[0]).sum()
                    + s.gamma.logpdf(x, p[2]).sum() + s.t.logpdf(x, p[2], p[0]).sum()
                    + s.beta.logpdf(u, p[1], p[2]).sum() + s.chi2.logpdf(x, p[2]).sum()
                    + s.poisson.logpmf(on(d, k), p[1]).sum()
                    + s.dirichlet.logpdf(on(d, simplex), p)
                    + s.multivariate_normal.logpdf(x[:3], p, cov))

        args = on(d, x), on(d, u), on(d, [0.3, 1.7, 2.5]), on(d, cov)
        value, grads = ag.value_and_grad(loss, argnums=(0, 1, 2, 3))(*args)
        return [value, *grads]

    compare(run, dev)


@pytest.mark.parametrize("dev", DEVICES)
def test_gaussian_process_likelihood_through_linear_algebra(dev):
    pts = np.sort(RNG.uniform(-3, 3, size=20))
    obs = np.sin(pts) + 0.1 * RNG.normal(size=20)

    def run(d):
        def nll(log_len, log_noise):
            t = on(d, pts)
            k = ag.exp(-0.5 * (t[:, None] - t[None, :]) ** 2 / ag.exp(2 * log_len))
            k = k + ag.exp(2 * log_noise) * on(d, np.eye(20))
            c = ag.linalg.cholesky(k)
            alpha = ag.linalg.cho_solve((c, True), on(d, obs))
            sign, logdet = ag.linalg.slogdet(k)
            w = ag.linalg.eigh(k)[0]
            return 0.5 * (on(d, obs) @ alpha) + 0.5 * logdet + 1e-3 * ag.log(w).sum() \
                + 1e-3 * ag.linalg.norm(ag.linalg.solve(k, on(d, obs)))

        value, grads = ag.value_and_grad(nll, argnums=(0, 1))(on(d, 0.1), on(d, -1.0))
        return [value, *grads]

    compare(run, dev, rtol=1e-8)


@pytest.mark.parametrize("dev", DEVICES)
def test_forward_accumulator_over_nested_ops(dev):
    def run(d):
        x = on(d, X)
        with ag.ForwardAccumulator(x, on(d, np.ones_like(X))) as acc:
            y = ag.log_softmax(ag.tanh(x @ on(d, W)), axis=-1) * ag.sigmoid(x).sum()
            tangent = acc.jvp(y)
        return [y, tangent]

    compare(run, dev)


@pytest.mark.gpu
def test_nccl_collectives_and_data_parallel_in_a_world_of_one():
    import autograd_gpu.distributed as dist
    from autograd_gpu.distributed.nccl import NCCLCommunicator, nccl_status

    ok, why = nccl_status()
    if not ok:
        pytest.skip(f"NCCL not usable here: {why}")
    dist.shutdown()
    dist.init(backend="nccl", timeout_s=60)
    try:
        t = on("cuda", np.arange(4097, dtype=np.float32))
        for out in (dist.all_reduce(t), dist.all_reduce(t, "mean"), dist.all_reduce(t, "max"),
                    dist.all_reduce(t, deterministic=True), dist.broadcast(t),
                    dist.all_gather(t)[0]):
            assert out.device.type == "cuda"
            np.testing.assert_array_equal(out.numpy(), t.numpy())
        params = [ag.Variable(on("cuda", W)), ag.Variable(on("cuda", B))]
        assert isinstance(dist.group.world("test").comm_for(params[0]._data, "test"),
                          NCCLCommunicator)
        dp = dist.DataParallel(params, bucket_mb=1e-4)

        def step(grad_of):
            with ag.GradientTape() as tape:
                loss = ((ag.tanh(on("cuda", X) @ params[0] + params[1]) - on("cuda", Y)) ** 2
                        ).mean()
            return grad_of(tape, loss)

        plain = step(lambda tape, loss: tape.gradient(loss, params))
        for _ in range(2):
            reduced = step(dp.gradient)
            for g, r in zip(reduced, plain):
                assert g.device.type == "cuda"
                assert g.numpy().tobytes() == r.numpy().tobytes()
        assert dp.last_step["buckets"] == len(dp.buckets) >= 1
    finally:
        dist.shutdown()


# the primitives without derivative rules (and so without samplers: the registry-wide GPU parity
# test draws inputs from samplers), each against NumPy on inputs with ties, zeros, halves,
# negative zero, inf and NaN where they matter
SPECIAL = np.array([[0.5, -1.5, 2.5, -0.0, 3.0], [np.inf, -np.inf, np.nan, 1.0, -2.0]])
TIES = np.array([[1.0, -2.0, 1.0, 0.0, 3.5], [2.0, 2.0, -1.0, 0.0, -0.5]])
DISTINCT = np.array([[0.3, -1.2, 2.2, 0.1, 5.0], [4.0, -3.0, 0.7, 1.1, -0.2]])
NONDIFF = {
    "sign": (lambda x, y: ag.sign(x), lambda x, y: np.sign(x), SPECIAL),
    "floor": (lambda x, y: ag.floor(x), lambda x, y: np.floor(x), SPECIAL),
    "ceil": (lambda x, y: ag.ceil(x), lambda x, y: np.ceil(x), SPECIAL),
    "round": (lambda x, y: ag.round(x), lambda x, y: np.round(x), SPECIAL),
    "isfinite": (lambda x, y: ag.isfinite(x), lambda x, y: np.isfinite(x), SPECIAL),
    "isnan": (lambda x, y: ag.isnan(x), lambda x, y: np.isnan(x), SPECIAL),
    "equal": (ag.equal, np.equal, TIES),
    "not_equal": (ag.not_equal, np.not_equal, TIES),
    "less": (ag.less, np.less, TIES),
    "less_equal": (ag.less_equal, np.less_equal, TIES),
    "greater": (ag.greater, np.greater, TIES),
    "greater_equal": (ag.greater_equal, np.greater_equal, TIES),
    "logical_and": (lambda x, y: ag.logical_and(x > 0, y > 0),
                    lambda x, y: np.logical_and(x > 0, y > 0), TIES),
    "logical_or": (lambda x, y: ag.logical_or(x > 0, y > 0),
                   lambda x, y: np.logical_or(x > 0, y > 0), TIES),
    "logical_not": (lambda x, y: ag.logical_not(x > 0), lambda x, y: np.logical_not(x > 0), TIES),
    "floor_divide": (ag.floor_divide, np.floor_divide, DISTINCT),
    "heaviside": (ag.heaviside, np.heaviside, TIES),
    "argmax": (lambda x, y: ag.argmax(x, axis=1), lambda x, y: np.argmax(x, axis=1), TIES),
    "argmin": (lambda x, y: ag.argmin(x, axis=0), lambda x, y: np.argmin(x, axis=0), TIES),
    "all": (lambda x, y: ag.all(x > -1, axis=1), lambda x, y: np.all(x > -1, axis=1), TIES),
    "any": (lambda x, y: ag.any(x > 3, axis=0), lambda x, y: np.any(x > 3, axis=0), TIES),
    "argsort": (lambda x, y: ag.argsort(x, axis=1), lambda x, y: np.argsort(x, axis=1),
                DISTINCT),
    # argpartition's order around the kth place is unspecified: compare the values it places
    "argpartition": (lambda x, y: ag.take_along_axis(x, ag.argpartition(x, 2, axis=1), 1)[:, 2],
                     lambda x, y: np.partition(x, 2, axis=1)[:, 2], DISTINCT),
}


@pytest.mark.parametrize("dev", DEVICES)
def test_primitives_without_derivatives_match_numpy(dev):
    from autograd_gpu.ops.registry import REGISTRY

    no_sampler = {n for n, op in REGISTRY.items() if op.sample is None}
    assert no_sampler <= set(NONDIFF), f"not covered here: {sorted(no_sampler - set(NONDIFF))}"
    for name, (ours, theirs, data) in NONDIFF.items():
        y = data[::-1].copy()
        got = ours(on(dev, data), on(dev, y))
        assert_on(got, dev)
        want = np.asarray(theirs(data, y))
        np.testing.assert_array_equal(got.numpy(), want, err_msg=name)
        assert got.numpy().dtype == want.dtype, name
