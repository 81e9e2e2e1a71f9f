"""ag.signal.convolve: values against scipy.signal.convolve (modes, methods, 1 to 3 dimensions,
swapped sizes, complex, dtypes), gradients against central differences along real and
imaginary directions, the direct and FFT methods against each other and PyTorch's conv1d/conv2d
(correlations), batched sweeps (jacobian, vmap), errors. The convolve primitive's rules are also
checked by tests/test_registry_rules.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

import autograd_gpu as ag

RNG = np.random.default_rng(3)
EPS = 1e-6
MODES = ("full", "same", "valid")
METHODS = ("direct", "fft", "auto")
SHAPES = [((9,), (4,)), ((4,), (9,)), ((5, 6), (2, 3)), ((2, 3), (4, 5)), ((3, 4, 2), (2, 2, 2)),
          ((1,), (1,)), ((6,), (6,))]


def T(a):
    return ag.Tensor.from_array(np.asarray(a))


def _arr(shape, cplx=False):
    x = RNG.standard_normal(shape)
    return x + 1j * RNG.standard_normal(shape) if cplx else x


@pytest.mark.parametrize("shapes", SHAPES, ids=str)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
def test_values_match_scipy(shapes, mode, method):
    a, b = _arr(shapes[0]), _arr(shapes[1])
    if mode == "valid" and not (all(p >= q for p, q in zip(*shapes)) or
                                all(q >= p for p, q in zip(*shapes))):
        with pytest.raises(ag.ShapeError, match="for mode 'valid' one input must be"):
            ag.signal.convolve(T(a), T(b), mode=mode, method=method)
        return
    y = ag.signal.convolve(T(a), T(b), mode=mode, method=method)
    want = ss.convolve(a, b, mode=mode, method=method)
    assert y.shape == want.shape and y.dtype == want.dtype
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_complex_and_mixed_inputs(method):
    a, b = _arr((7,), True), _arr((3,))
    for x, z in ((a, b), (b, a), (a, _arr((4,), True))):
        np.testing.assert_allclose(ag.signal.convolve(T(x), T(z), method=method).numpy(),
                                   ss.convolve(x, z, method=method), atol=1e-12)


def test_dtypes():
    a = ag.Tensor.from_array(_arr((8,)), dtype="float32")
    b = ag.Tensor.from_array(_arr((3,)), dtype="float32")
    for method in ("direct", "fft"):
        y = ag.signal.convolve(a, b, method=method)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y.numpy(), ss.convolve(a.numpy(), b.numpy()), rtol=1e-5,
                                   atol=1e-5)
    assert ag.signal.convolve(a, T(_arr((3,)))).dtype == np.float64
    for dt in ("float16", "bfloat16"):
        h = ag.Tensor.from_array(_arr((2, 5)), dtype=dt)
        k = ag.Tensor.from_array(_arr((2, 2)), dtype=dt)
        want = ss.convolve(h.numpy().astype(np.float32), k.numpy().astype(np.float32))
        for method in ("direct", "fft"):
            y = ag.signal.convolve(h, k, method=method)
            assert y.dtype == h.dtype, (dt, method, y.dtype)
            np.testing.assert_allclose(y.numpy().astype(np.float32), want, rtol=2e-2, atol=2e-2)


def test_auto_chooses_as_scipy():
    small_a, small_b = _arr((20,)), _arr((5,))
    big_a, big_b = _arr((5000,)), _arr((4000,))
    for x, z in ((small_a, small_b), (big_a, big_b)):
        for mode in MODES:
            assert ss.choose_conv_method(x, z, mode=mode) in ("direct", "fft")
            np.testing.assert_allclose(ag.signal.convolve(T(x), T(z), mode=mode).numpy(),
                                       ss.convolve(x, z, mode=mode), atol=1e-9)
    assert ss.choose_conv_method(small_a, small_b) == "direct"
    assert ss.choose_conv_method(big_a, big_b) == "fft"


def test_scalars_and_empty_inputs():
    y = ag.signal.convolve(T(np.float64(2.0)), T(np.float64(3.0)))
    assert y.shape == () and float(y.numpy()) == 6.0
    for method in METHODS:
        with pytest.raises(ag.ShapeError, match="convolve: expected non-empty inputs"):
            ag.signal.convolve(T(np.zeros((0, 3))), T(_arr((3, 3))), method=method)


# ---- gradients ------------------------------------------------------------------------------


def _check_vjp(f, a, b, cplx_dirs):
    """Re <vjp(u), v> against d/dt Re <u, f(a + t va, b + t vb)>, directions real and (for
    complex inputs) imaginary."""
    y, back = ag.vjp(f, T(a), T(b))
    u = _arr(y.shape, np.iscomplexobj(y.numpy()))
    ga, gb = back(T(u))
    dirs = [(_arr(a.shape), _arr(b.shape))]
    if cplx_dirs:
        dirs += [(1j * _arr(a.shape), 1j * _arr(b.shape)), (_arr(a.shape, True),
                                                             _arr(b.shape, True))]
    for va, vb in dirs:
        lhs = float(np.real(np.sum(ga.numpy() * va) + np.sum(gb.numpy() * vb)))
        fp = f(T(a + EPS * va), T(b + EPS * vb)).numpy()
        fm = f(T(a - EPS * va), T(b - EPS * vb)).numpy()
        rhs = float(np.real(np.sum(u * (fp - fm) / (2 * EPS))))
        assert lhs == pytest.approx(rhs, rel=1e-7, abs=1e-7)


@pytest.mark.parametrize("shapes", [s for s in SHAPES if s[0] != (2, 3)], ids=str)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ("direct", "fft"))
def test_gradients_match_central_differences(shapes, mode, method):
    a, b = _arr(shapes[0]), _arr(shapes[1])

    def f(x, z):
        return ag.signal.convolve(x, z, mode=mode, method=method)

    _check_vjp(f, a, b, False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ("direct", "fft"))
def test_complex_gradients_along_real_and_imaginary_directions(mode, method):
    a, b = _arr((7, 3), True), _arr((3, 2), True)
    _check_vjp(lambda x, z: ag.signal.convolve(x, z, mode=mode, method=method), a, b, True)


@pytest.mark.parametrize("mode", MODES)
def test_direct_and_fft_methods_give_the_same_gradients(mode):
    a, b, = _arr((11, 4)), _arr((3, 3))
    u = _arr(ss.convolve(a, b, mode=mode).shape)
    grads = []
    for method in ("direct", "fft"):
        _, back = ag.vjp(lambda x, z, m=method: ag.signal.convolve(x, z, mode=mode, method=m),
                         T(a), T(b))
        grads.append([g.numpy() for g in back(T(u))])
    for g1, g2 in zip(*grads):
        np.testing.assert_allclose(g1, g2, atol=1e-12)


def test_jacobian_and_vmap_batch_the_direct_primitive():
    """Batched cotangents (a reverse-mode Jacobian) and vmap run the primitive with a leading
    batch: the rows equal the explicit convolution matrix."""
    a, b = _arr((6,)), _arr((3,))
    for mode in MODES:
        jac = ag.jacobian(lambda x: ag.signal.convolve(x, T(b), mode=mode, method="direct"),
                          T(a), mode="reverse").numpy()
        cols = [ss.convolve(e, b, mode=mode) for e in np.eye(6)]
        np.testing.assert_allclose(jac, np.stack(cols, axis=1), atol=1e-12)
        jf = ag.jacobian(lambda z: ag.signal.convolve(T(a), z, mode=mode, method="direct"),
                         T(b), mode="forward").numpy()
        np.testing.assert_allclose(jf, np.stack([ss.convolve(a, e, mode=mode)
                                                 for e in np.eye(3)], axis=1), atol=1e-12)
    xs = _arr((4, 6))
    ys = ag.vmap(lambda x: ag.signal.convolve(x, T(b), method="direct"))(T(xs)).numpy()
    np.testing.assert_allclose(ys, np.stack([ss.convolve(x, b) for x in xs]), atol=1e-12)


def test_second_order_direct():
    a, b = _arr((5,)), _arr((3,))
    v = _arr((5,))

    def energy(x):
        y = ag.signal.convolve(x, T(b), method="direct")
        return ag.sum(y * y)

    hv = ag.jvp(ag.grad(energy), (T(a),), (T(v),))[1].numpy()
    mat = np.stack([ss.convolve(e, b) for e in np.eye(5)], axis=1)
    np.testing.assert_allclose(hv, 2 * mat.T @ mat @ v, atol=1e-10)


try:
    import torch
except ImportError:  # the reference of the tests marked needs_torch below; CI installs it
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the reference) is not installed")


@needs_torch
@pytest.mark.parametrize("method", ("direct", "fft"))
def test_values_and_gradients_match_pytorch_conv(method):
    """PyTorch's conv1d/conv2d are correlations: the full convolution is conv with the kernel
    flipped and padded by its length - 1."""
    f = torch.nn.functional
    for shape_a, shape_b in (((12,), (4,)), ((6, 7), (3, 2))):
        a, b = _arr(shape_a), _arr(shape_b)
        at = torch.tensor(a, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        conv = f.conv1d if len(shape_a) == 1 else f.conv2d
        pad = tuple(n - 1 for n in shape_b)
        yt = conv(at[None, None], torch.flip(bt, list(range(len(shape_b))))[None, None],
                  padding=pad)[0, 0]
        w = _arr(tuple(yt.shape))
        gat, gbt = torch.autograd.grad((yt * torch.tensor(w)).sum(), [at, bt])
        y, back = ag.vjp(lambda x, z: ag.signal.convolve(x, z, method=method), T(a), T(b))
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=1e-12)
        ga, gb = back(T(w))
        np.testing.assert_allclose(ga.numpy(), gat.numpy(), atol=1e-11)
        np.testing.assert_allclose(gb.numpy(), gbt.numpy(), atol=1e-11)


# ---- errors ---------------------------------------------------------------------------------


@needs_torch
def test_bad_arguments_raise():
    a, b = T(_arr((5,))), T(_arr((3,)))
    with pytest.raises(ag.ArgumentError, match="convolve: argument 'mode'"):
        ag.signal.convolve(a, b, mode="circular")
    with pytest.raises(ag.ArgumentError, match="convolve: argument 'method'"):
        ag.signal.convolve(a, b, method="winograd")
    with pytest.raises(ag.ShapeError, match="the same number of dimensions"):
        ag.signal.convolve(a, T(_arr((3, 1))))
    with pytest.raises(ag.DTypeError, match="convolve: argument 'in2' expected a floating"):
        ag.signal.convolve(a, ag.Tensor.from_array(np.arange(3)))
    with pytest.raises(ag.ArgumentError, match="convolve: argument 'in1' expected a Tensor"):
        ag.signal.convolve("abc", b)
