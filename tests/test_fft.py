"""ag.fft: values against numpy.fft (n/s, axes, norm, dtypes), the rules along real and
imaginary directions (central differences, the explicit DFT matrices for the real transforms'
Hermitian weighting, PyTorch's gradients), shifts, errors and NumPy's dispatch. The primitives'
rules are also checked by tests/test_registry_rules.py (real and complex128 samples)."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag

RNG = np.random.default_rng(7)
EPS = 1e-6
NORMS = (None, "backward", "ortho", "forward")


def T(a):
    return ag.Tensor.from_array(np.asarray(a))


def _c(shape):
    return RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)


def _r(shape):
    return RNG.standard_normal(shape)


# (function name, input maker, keyword arguments): crops, pads, axes and norms
CASES = [
    ("fft", _c, {}), ("fft", _r, {"n": 7}), ("fft", _c, {"n": 3, "axis": 0}),
    ("ifft", _c, {"n": 8, "norm": "ortho"}), ("ifft", _r, {"axis": -2, "norm": "forward"}),
    ("fft2", _c, {}), ("fft2", _c, {"s": (3, 7), "axes": (0, 2)}),
    ("ifft2", _c, {"s": (6, 2), "norm": "ortho"}),
    ("fftn", _c, {}), ("fftn", _r, {"s": (5, 3), "axes": (1, 2), "norm": "forward"}),
    ("fftn", _c, {"axes": (2, 0)}),
    ("ifftn", _c, {"axes": (1,), "norm": "ortho"}),
    ("ifftn", _c, {"s": (2, 2, 2), "axes": (0, 1, 2)}),
    ("rfft", _r, {}), ("rfft", _r, {"n": 9, "axis": 1}), ("rfft", _r, {"n": 2, "norm": "ortho"}),
    ("rfft2", _r, {"norm": "forward"}), ("rfft2", _r, {"s": (3, 6), "axes": (2, 0)}),
    ("rfftn", _r, {}), ("rfftn", _r, {"axes": (0, 1), "norm": "ortho"}),
    ("irfft", _c, {}), ("irfft", _c, {"n": 9}), ("irfft", _c, {"n": 4, "axis": 0}),
    ("irfft", _r, {"norm": "forward"}),
    ("irfft2", _c, {"norm": "ortho"}), ("irfft2", _c, {"s": (5, 7), "axes": (0, 2)}),
    ("irfftn", _c, {}), ("irfftn", _c, {"s": (2, 3, 8), "axes": (0, 1, 2), "norm": "forward"}),
]
SHAPE = (4, 3, 5)


def _case_id(c):
    return f"{c[0]}-{c[1].__name__}-{'-'.join(f'{k}={v}' for k, v in c[2].items())}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_values_match_numpy(case):
    name, make, kw = case
    x = make(SHAPE)
    y = getattr(ag.fft, name)(T(x), **kw)
    want = getattr(np.fft, name)(x, **kw)
    assert y.shape == want.shape and y.dtype == want.dtype, (y.shape, y.dtype, want.dtype)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_of_every_transform(norm):
    x, z = _r((6, 5)), _c((6, 5))
    for name in ("fft", "ifft", "fft2", "ifft2", "fftn", "ifftn"):
        np.testing.assert_allclose(getattr(ag.fft, name)(T(z), norm=norm).numpy(),
                                   getattr(np.fft, name)(z, norm=norm), atol=1e-12)
    for name in ("rfft", "rfft2", "rfftn"):
        np.testing.assert_allclose(getattr(ag.fft, name)(T(x), norm=norm).numpy(),
                                   getattr(np.fft, name)(x, norm=norm), atol=1e-12)
    for name in ("irfft", "irfft2", "irfftn"):
        np.testing.assert_allclose(getattr(ag.fft, name)(T(z), norm=norm).numpy(),
                                   getattr(np.fft, name)(z, norm=norm), atol=1e-12)


def test_dtypes():
    x = _r((4, 6))
    for dt, c in (("float32", np.complex64), ("float16", np.complex64),
                  ("bfloat16", np.complex64), ("float64", np.complex128)):
        t = ag.Tensor.from_array(x, dtype=dt)
        y = ag.fft.rfft(t)
        assert y.dtype == c, (dt, y.dtype)
        np.testing.assert_allclose(y.numpy(), np.fft.rfft(t.numpy().astype(np.float32)),
                                   rtol=1e-5, atol=1e-5)
        assert ag.fft.irfft(y).dtype == (np.float32 if c == np.complex64 else np.float64)
    ints = ag.Tensor.from_array(np.arange(6))
    assert ag.fft.fft(ints).dtype == np.complex128
    np.testing.assert_allclose(ag.fft.fft(ints).numpy(), np.fft.fft(np.arange(6)))
    z = ag.Tensor.from_array(_c((3, 4)).astype(np.complex64))
    assert ag.fft.fft(z).dtype == np.complex64 and ag.fft.irfft(z).dtype == np.float32


def test_shifts_match_numpy_and_their_gradients_are_the_inverse_shift():
    x = _r((4, 5, 3))
    for axes in (None, 0, (1, 2), -1):
        np.testing.assert_array_equal(ag.fft.fftshift(T(x), axes=axes).numpy(),
                                      np.fft.fftshift(x, axes=axes))
        np.testing.assert_array_equal(ag.fft.ifftshift(T(x), axes=axes).numpy(),
                                      np.fft.ifftshift(x, axes=axes))
    u = _r(x.shape)
    _, back = ag.vjp(lambda t: ag.fft.fftshift(t, axes=(0, 1)), T(x))
    np.testing.assert_array_equal(back(T(u))[0].numpy(), np.fft.ifftshift(u, axes=(0, 1)))
    z = _c((5, 2))
    np.testing.assert_array_equal(ag.fft.fftshift(T(z)).numpy(), np.fft.fftshift(z))


# ---- rules along real and imaginary directions ----------------------------------------------


def _vjp_and_fd(fn, x, u, v):
    """(Re <vjp(u), v>, d/dt Re <u, fn(x + t v)>) for a function of one array."""
    _, back = ag.vjp(fn, T(x))
    (g,) = back(T(u))
    lhs = float(np.real(np.sum(g.numpy() * v)))
    f = (np.asarray(fn(T(x + EPS * v)).numpy()) - np.asarray(fn(T(x - EPS * v)).numpy())) / (
        2 * EPS)
    return lhs, float(np.real(np.sum(u * f)))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_vjp_along_real_and_imaginary_directions(case):
    name, make, kw = case
    x = make(SHAPE)
    fn = getattr(ag.fft, name)
    y = fn(T(x), **kw).numpy()
    u = _c(y.shape) if np.iscomplexobj(y) else _r(y.shape)
    directions = [_r(SHAPE)] + ([1j * _r(SHAPE), _c(SHAPE)] if np.iscomplexobj(x) else [])
    for v in directions:
        lhs, rhs = _vjp_and_fd(lambda t: fn(t, **kw), x, u, v)
        assert lhs == pytest.approx(rhs, rel=1e-7, abs=1e-7), (name, kw, v.dtype)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_jvp_is_the_directional_derivative(case):
    name, make, kw = case
    x = make(SHAPE)
    fn = getattr(ag.fft, name)
    v = _c(SHAPE) if np.iscomplexobj(x) else _r(SHAPE)
    _, tan = ag.jvp(lambda t: fn(t, **kw), (T(x),), (T(v),))
    fd = (fn(T(x + EPS * v), **kw).numpy() - fn(T(x - EPS * v), **kw).numpy()) / (2 * EPS)
    np.testing.assert_allclose(tan.numpy(), fd, atol=1e-7)


def _dft(n):
    return np.fft.fft(np.eye(n), axis=0)  # W[k, j] = exp(-2 pi i j k / n)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
def test_rfft_cotangent_is_the_real_part_of_the_transpose(n, norm):
    """rfft = P c W on real x: the cotangent of a real input is Re(c W^T P^T u) (the
    transpose, not the conjugate transpose), whatever the Hermitian weighting inside."""
    c = {"backward": 1.0, "ortho": n ** -0.5, "forward": 1.0 / n}[norm]
    m = n // 2 + 1
    mat = c * _dft(n)[:m]
    u = _c((m,))
    _, back = ag.vjp(lambda t: ag.fft.rfft(t, norm=norm), T(_r((n,))))
    np.testing.assert_allclose(back(T(u))[0].numpy(), np.real(mat.T @ u), atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
def test_irfft_cotangent_along_real_and_imaginary_parts(n, norm):
    """irfft is real-linear: y = A Re(z) + B Im(z), with A's and B's columns the responses to
    unit real and imaginary inputs. The convention's cotangent is A^T u - i B^T u."""
    m = n // 2 + 1
    eye = np.eye(m)
    a = np.stack([np.fft.irfft(eye[k], n=n, norm=norm) for k in range(m)], axis=1)
    b = np.stack([np.fft.irfft(1j * eye[k], n=n, norm=norm) for k in range(m)], axis=1)
    u = _r((n,))
    _, back = ag.vjp(lambda t: ag.fft.irfft(t, n=n, norm=norm), T(_c((m,))))
    np.testing.assert_allclose(back(T(u))[0].numpy(), a.T @ u - 1j * (b.T @ u), atol=1e-12)


def test_real_loss_of_complex_input_gives_dx_minus_i_dy():
    z = _c((6,))
    w = _c((6,))

    def loss(t):
        return ag.sum(ag.fft.fft(t) * T(w))  # complex; its real part is the loss below

    _, back = ag.vjp(loss, T(z))
    (g,) = back(T(np.array(1.0 + 0j)))
    mat = _dft(6)
    dx = np.real(mat.T @ w)  # d/dx Re(w^T W z) along real unit vectors
    dy = np.real(1j * (mat.T @ w))
    np.testing.assert_allclose(g.numpy(), dx - 1j * dy, atol=1e-12)


try:
    import torch
except ImportError:  # the reference of the tests marked needs_torch below; CI installs it
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the reference) is not installed")


@needs_torch
@pytest.mark.parametrize("name, make, kw", [
    ("fft", _c, {}), ("fft", _r, {"n": 7, "norm": "ortho"}), ("ifft", _c, {"norm": "forward"}),
    ("fft2", _c, {"s": (3, 6)}), ("rfft", _r, {}), ("rfft", _r, {"n": 8, "norm": "forward"}),
    ("rfftn", _r, {"norm": "ortho"}), ("irfft", _c, {}), ("irfft", _c, {"n": 7}),
    ("irfftn", _c, {"norm": "ortho"}), ("irfft2", _c, {"s": (4, 6)}),
])
def test_gradients_match_pytorch(name, make, kw):
    """PyTorch's gradient of a real loss of complex z is dL/dx + i dL/dy, the conjugate of
    this library's (JAX's) dL/dx - i dL/dy; for real inputs they agree."""
    x = make(SHAPE)
    tkw = {("dim" if k in ("axis", "axes") else k): v for k, v in kw.items()}
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.fft, name)(xt, **tkw)
    w = _c(tuple(yt.shape)) if yt.is_complex() else _r(tuple(yt.shape))
    loss = (yt * torch.tensor(w)).real.sum() if yt.is_complex() else (yt * torch.tensor(w)).sum()
    (gt,) = torch.autograd.grad(loss, xt)
    y, back = ag.vjp(lambda t: getattr(ag.fft, name)(t, **kw), T(x))
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=1e-12)
    (g,) = back(T(w))
    np.testing.assert_allclose(g.numpy(), np.conj(gt.numpy()), atol=1e-11)


@needs_torch
def test_second_order_through_an_fft_energy():
    """d/dx of the gradient of sum(irfft(rfft(x) * k)^2) (a circular convolution's energy):
    Hessian-vector products against central differences of the gradient."""
    n = 8
    x, v = _r((n,)), _r((n,))
    k = _c((n // 2 + 1,))

    def energy(t):
        y = ag.fft.irfft(ag.fft.rfft(t) * T(k), n=n)
        return ag.sum(y * y)

    def grad_np(xv):
        return ag.grad(energy)(T(xv)).numpy()

    hv = ag.jvp(ag.grad(energy), (T(x),), (T(v),))[1].numpy()
    fd = (grad_np(x + EPS * v) - grad_np(x - EPS * v)) / (2 * EPS)
    np.testing.assert_allclose(hv, fd, atol=1e-6)


# ---- errors ---------------------------------------------------------------------------------


@needs_torch
def test_bad_arguments_raise():
    x = T(_r((4, 5)))
    with pytest.raises(ag.ArgumentError, match="fft: argument 'norm'"):
        ag.fft.fft(x, norm="unitary")
    with pytest.raises(ag.ShapeError, match=r"fft: argument 'n' expected lengths >= 1"):
        ag.fft.fft(x, n=0)
    with pytest.raises(ag.ArgumentError, match="rfft: argument 'n' expected an int"):
        ag.fft.rfft(x, n=2.5)
    with pytest.raises(ag.ShapeError, match="fftn: argument 'axes' has repeated axes"):
        ag.fft.fftn(x, axes=(0, 0))
    with pytest.raises(ag.ShapeError, match=r"fft2: argument 'axes' expected axes in \[-2, 2\)"):
        ag.fft.fft2(x, axes=(0, 2))
    with pytest.raises(ag.ShapeError, match="ifftn: argument 's' expected 2 lengths"):
        ag.fft.ifftn(x, s=(2, 3, 4), axes=(0, 1))
    with pytest.raises(ag.DTypeError, match="rfft: argument 'a' expected real values"):
        ag.fft.rfft(T(_c((4,))))
    with pytest.raises(ag.ShapeError, match="fft: argument 'a' expected at least 1 dimension"):
        ag.fft.fft(T(np.float64(1.0)))
    with pytest.raises(ag.ShapeError, match=r"irfft: argument 'n' expected lengths >= 1"):
        ag.fft.irfft(T(_c((1,))))  # n = 2 (m - 1) = 0, as NumPy refuses
    with pytest.raises(ag.ArgumentError, match="fft: argument 'a' expected a Tensor"):
        ag.fft.fft("signal")
    with pytest.raises(ag.ShapeError, match="fftshift: argument 'axes'"):
        ag.fft.fftshift(x, axes=3)


@needs_torch
def test_numpy_fft_on_tensors_dispatches_to_ag_fft():
    x = T(_r((8,)))
    with ag.GradientTape() as tape:
        tape.watch(x)
        y = np.fft.irfft(np.fft.rfft(x) * 2.0, n=8)
        s = ag.sum(y * y)
    assert isinstance(y, ag.Tensor)
    (g,) = tape.gradient(s, [x])
    np.testing.assert_allclose(g.numpy(), 8.0 * x.numpy(), atol=1e-12)
