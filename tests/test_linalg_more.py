"""ag.linalg: values against NumPy/SciPy, gradients against central differences of the NumPy/SciPy
function itself and against torch.linalg, repeated eigenvalues and singular values, batched
inputs, and bad input (singular matrices, shapes, dtypes, arguments).

The registry test (tests/test_registry_rules.py) checks each primitive's rules on its own
sampler; here the public functions are checked, compositions included (inv, cho_solve, lu_solve,
norm, lstsq, matrix_power, multi_dot, wide qr)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sl

import autograd_gpu as ag

L = ag.linalg
RNG = np.random.default_rng(20261207)
EPS = 1e-6


def T(a):
    return ag.Tensor.from_array(np.asarray(a))


def _flat(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _np(y):
    return [np.asarray(v.numpy() if isinstance(v, ag.Tensor) else v, dtype=float)
            for v in _flat(y)]


def well(shape, lo=0.6, hi=2.5):
    q1 = np.linalg.qr(RNG.standard_normal(shape))[0]
    q2 = np.linalg.qr(RNG.standard_normal(shape))[0]
    return (q1 * RNG.uniform(lo, hi, shape[:-1])[..., None, :]) @ q2


def spd(shape):
    q = np.linalg.qr(RNG.standard_normal(shape))[0]
    return (q * RNG.uniform(0.5, 3.0, shape[:-1])[..., None, :]) @ np.swapaxes(q, -1, -2)


def sep_sym(shape, gap=0.6):
    """Symmetric matrices with eigenvalues at least ``gap`` apart."""
    n = shape[-1]
    q = np.linalg.qr(RNG.standard_normal(shape))[0]
    w = np.arange(n) * gap + RNG.uniform(-0.1, 0.1, n) - 1.0
    return (q * w) @ np.swapaxes(q, -1, -2)


def sep_svd(m, n, lead=()):
    k = min(m, n)
    u = np.linalg.qr(RNG.standard_normal(lead + (m, k)))[0]
    v = np.linalg.qr(RNG.standard_normal(lead + (n, k)))[0]
    return (u * (2.5 - 0.6 * np.arange(k))) @ np.swapaxes(v, -1, -2)


def check_grad(f_ag, f_ref, xs, rtol=1e-5):
    """f_ag's values equal f_ref's, and the vjp of random cotangents matches central differences
    of f_ref (the NumPy/SciPy function) along random directions of every input."""
    ts = [T(x) for x in xs]
    with ag.GradientTape() as tape:
        tape.watch(ts)
        ys = _flat(f_ag(*ts))
    ref = _np(f_ref(*xs))
    assert len(ref) == len(ys)
    for y, r in zip(ys, ref):
        assert y.shape == r.shape, (y.shape, r.shape)
        np.testing.assert_allclose(y.numpy(), r, rtol=1e-9, atol=1e-10)
    us = [RNG.standard_normal(r.shape) for r in ref]
    grads = tape.gradient(ys, ts, output_gradients=[T(u) for u in us],
                          unconnected_gradients="zero")
    dirs = [RNG.standard_normal(np.shape(x)) for x in xs]
    plus = _np(f_ref(*[x + EPS * d for x, d in zip(xs, dirs)]))
    minus = _np(f_ref(*[x - EPS * d for x, d in zip(xs, dirs)]))
    fd = sum(float(np.sum(u * (p - m))) for u, p, m in zip(us, plus, minus)) / (2 * EPS)
    got = sum(float(np.sum(g.numpy() * d)) for g, d in zip(grads, dirs))
    assert got == pytest.approx(fd, rel=rtol, abs=rtol), (got, fd)
    return [g.numpy() for g in grads]


def _phased(v):
    """NumPy's vectors with the sign (phase) ag fixes (largest-modulus entry real and
    positive), so that values and central differences of NumPy follow ag's outputs."""
    from autograd_gpu.ops.decompositions import fix_phase

    return v * fix_phase(np, v)


def _eigh_ref(a, uplo="L"):
    w, v = np.linalg.eigh(a, uplo)
    return w, _phased(v)


def _eig_ref(a):
    w, v = np.linalg.eig(a)
    return w.astype(complex), _phased(v.astype(complex))


def _svd_ref(a, full_matrices=False):
    from autograd_gpu.ops.decompositions import fix_phase

    u, s, vh = np.linalg.svd(a, full_matrices=full_matrices)
    c = fix_phase(np, np.swapaxes(vh, -1, -2).conj())
    return u * c, s, vh * np.swapaxes(c, -1, -2).conj()


# ---- values and gradients against NumPy / SciPy -------------------------------------------

A3 = well((3, 3))
AB = well((2, 3, 3))
B32 = RNG.standard_normal((3, 2))
S4 = spd((4, 4))
SB = spd((2, 3, 3))

CASES = {
    "solve": (lambda a, b: L.solve(a, b), np.linalg.solve, [AB, RNG.standard_normal((2, 3, 2))]),
    "solve_vector": (L.solve, np.linalg.solve, [A3, RNG.standard_normal(3)]),
    "solve_broadcast": (L.solve, np.linalg.solve, [A3, RNG.standard_normal((4, 3, 2))]),
    "inv": (L.inv, np.linalg.inv, [AB]),
    "det": (L.det, np.linalg.det, [AB]),
    "slogdet": (lambda a: L.slogdet(a).logabsdet, lambda a: np.linalg.slogdet(a)[1],
                [AB * np.array([1, -1])[:, None, None]]),
    "cholesky": (L.cholesky, np.linalg.cholesky, [SB]),
    "cholesky_upper": (lambda a: L.cholesky(a, upper=True),
                       lambda a: np.linalg.cholesky(a, upper=True), [S4]),
    "eigh": (lambda a: tuple(L.eigh(a)), _eigh_ref, [sep_sym((2, 4, 4))]),
    "eigh_upper": (lambda a: tuple(L.eigh(a, UPLO="U")), lambda a: _eigh_ref(a, "U"),
                   [sep_sym((3, 3)) + np.tril(RNG.standard_normal((3, 3)), -1)]),
    "eigvalsh": (L.eigvalsh, np.linalg.eigvalsh, [sep_sym((4, 4))]),
    "svd_tall": (lambda a: tuple(L.svd(a, full_matrices=False)), _svd_ref,
                 [sep_svd(5, 3, (2,))]),
    "svd_wide": (lambda a: tuple(L.svd(a, full_matrices=False)), _svd_ref, [sep_svd(2, 4)]),
    "svd_square_full": (lambda a: tuple(L.svd(a)), lambda a: _svd_ref(a, True),
                        [sep_svd(3, 3)]),
    "svdvals": (L.svdvals, np.linalg.svdvals, [sep_svd(4, 3, (2,))]),
    "svd_no_uv": (lambda a: L.svd(a, compute_uv=False),
                  lambda a: np.linalg.svd(a, compute_uv=False), [sep_svd(3, 5)]),
    "qr_tall": (lambda a: tuple(L.qr(a)), np.linalg.qr, [RNG.standard_normal((2, 5, 3))]),
    "qr_wide": (lambda a: tuple(L.qr(a)), np.linalg.qr, [RNG.standard_normal((3, 5))]),
    "qr_complete_square": (lambda a: tuple(L.qr(a, "complete")),
                           lambda a: np.linalg.qr(a, "complete"), [well((4, 4))]),
    "qr_r": (lambda a: L.qr(a, "r"), lambda a: np.linalg.qr(a, "r"),
             [RNG.standard_normal((4, 3))]),
    "pinv_tall": (L.pinv, np.linalg.pinv, [sep_svd(5, 3, (2,))]),
    "pinv_wide": (L.pinv, np.linalg.pinv, [sep_svd(2, 4)]),
    "pinv_hermitian": (lambda a: L.pinv(a, hermitian=True),
                       lambda a: np.linalg.pinv(a, hermitian=True), [sep_sym((3, 3)) + 3.0]),
    "lstsq_tall": (lambda a, b: L.lstsq(a, b)[:2], lambda a, b: np.linalg.lstsq(a, b)[:2],
                   [sep_svd(5, 3), RNG.standard_normal((5, 2))]),
    "lstsq_wide_vector": (lambda a, b: L.lstsq(a, b)[0], lambda a, b: np.linalg.lstsq(a, b)[0],
                          [sep_svd(2, 4), RNG.standard_normal(2)]),
    "lstsq_s": (lambda a, b: L.lstsq(a, b)[3], lambda a, b: np.linalg.lstsq(a, b)[3],
                [sep_svd(4, 3), RNG.standard_normal(4)]),
    "matrix_power_5": (lambda a: L.matrix_power(a, 5), lambda a: np.linalg.matrix_power(a, 5),
                       [AB * 0.7]),
    "matrix_power_-2": (lambda a: L.matrix_power(a, -2), lambda a: np.linalg.matrix_power(a, -2),
                        [A3]),
    "multi_dot": (lambda *xs: L.multi_dot(xs), lambda *xs: np.linalg.multi_dot(xs),
                  [RNG.standard_normal(s) for s in [(4,), (4, 2), (2, 5), (5, 3), (3,)]]),
    "solve_triangular": (lambda a, b: L.solve_triangular(a, b, trans="T", lower=True),
                         lambda a, b: sl.solve_triangular(a, b, trans="T", lower=True),
                         [A3 + 3 * np.eye(3), RNG.standard_normal((3, 2))]),
    "solve_triangular_unit": (
        lambda a, b: L.solve_triangular(a, b, unit_diagonal=True),
        lambda a, b: sl.solve_triangular(a, b, unit_diagonal=True),
        [RNG.standard_normal((4, 4)), RNG.standard_normal(4)]),
    "solve_triangular_batch": (
        lambda a, b: L.solve_triangular(a, b, lower=True, trans=2),
        lambda a, b: sl.solve_triangular(a, b, lower=True, trans=2),
        [AB + 3 * np.eye(3), RNG.standard_normal((2, 3, 2))]),
    "cho_solve": (lambda a, b: L.cho_solve(L.cho_factor(a), b),
                  lambda a, b: sl.cho_solve(sl.cho_factor(a), b), [S4, RNG.standard_normal(4)]),
    "cho_solve_lower": (lambda a, b: L.cho_solve(L.cho_factor(a, lower=True), b),
                        lambda a, b: sl.cho_solve(sl.cho_factor(a, lower=True), b),
                        [S4, RNG.standard_normal((4, 3))]),
    "lu_factor": (lambda a: L.lu_factor(a)[0], lambda a: sl.lu_factor(a)[0],
                  [RNG.standard_normal((2, 4, 4))]),
    "lu_solve": (lambda a, b: L.lu_solve(L.lu_factor(a), b),
                 lambda a, b: sl.lu_solve(sl.lu_factor(a), b),
                 [well((4, 4)), RNG.standard_normal(4)]),
    "lu_solve_T": (lambda a, b: L.lu_solve(L.lu_factor(a), b, trans=1),
                   lambda a, b: sl.lu_solve(sl.lu_factor(a), b, trans=1),
                   [well((3, 3)), B32]),
    "expm": (L.expm, sl.expm, [RNG.uniform(-1, 1, (2, 3, 3))]),
    "sqrtm": (L.sqrtm, sl.sqrtm, [S4 + 0.2 * well((4, 4))]),
    "solve_sylvester": (L.solve_sylvester, sl.solve_sylvester,
                        [RNG.uniform(-.4, .4, (3, 3)) + 2 * np.eye(3),
                         RNG.uniform(-.4, .4, (2, 2)) + np.eye(2), RNG.standard_normal((3, 2))]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_gradients_against_numpy_and_scipy(name):
    f_ag, f_ref, xs = CASES[name]
    check_grad(f_ag, f_ref, xs)


# entries away from 0, where |x|^p with p < 1 is too steep for central differences
X345 = RNG.uniform(0.3, 2.0, (3, 4, 5)) * RNG.choice([-1.0, 1.0], (3, 4, 5))
NORM_CASES = [(None, None), (None, 1), (2, 0), (1, -1), (np.inf, 2), (-np.inf, 1), (0, -1),
              (3, 1), (0.5, 2), ("fro", (1, 2)), ("nuc", (2, 1)), (2, (0, 2)), (-2, (1, 2)),
              (1, (1, 2)), (-1, (2, 1)), (np.inf, (1, 2)), (-np.inf, (0, 1)), (None, (0, 1))]


@pytest.mark.parametrize("ord_, axis", NORM_CASES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_norm_against_numpy(ord_, axis, keepdims):
    check_grad(lambda x: L.norm(x, ord_, axis, keepdims),
               lambda x: np.linalg.norm(x, ord_, axis, keepdims), [X345])


@pytest.mark.parametrize("ord_", [None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf])
def test_matrix_norms_with_axis_none(ord_):
    check_grad(lambda x: L.norm(x, ord_), lambda x: np.linalg.norm(x, ord_), [sep_svd(3, 4)])


@pytest.mark.parametrize("ord_", [None, 1, 2, np.inf, -np.inf, 3])
def test_vector_norms_with_axis_none(ord_):
    check_grad(lambda x: L.norm(x, ord_), lambda x: np.linalg.norm(x, ord_),
               [RNG.standard_normal(5)])


def test_float32_inputs_compute_in_float32_like_numpy():
    a = well((3, 3)).astype(np.float32)
    b = RNG.standard_normal((3, 2)).astype(np.float32)
    for f, g in [(L.solve, np.linalg.solve), (L.lu_solve, None)]:
        if g is None:
            continue
        y = f(T(a), T(b))
        assert y.dtype == np.float32
        np.testing.assert_allclose(y.numpy(), g(a, b), rtol=1e-5)
    assert L.cholesky(T(spd((3, 3)).astype(np.float32))).dtype == np.float32
    assert L.eigh(T(sep_sym((3, 3)).astype(np.float32))).eigenvectors.dtype == np.float32
    assert L.svd(T(a)).S.dtype == np.float32
    assert L.expm(T(a)).dtype == np.float32


# ---- against torch.linalg -------------------------------------------------------------------

def _torch():
    torch = pytest.importorskip("torch")
    return torch


def _both(f_ag, f_torch, xs):
    """Gradients of sum(u * f(x)) from ag and from torch for the same cotangent u."""
    torch = _torch()
    ts = [T(x) for x in xs]
    with ag.GradientTape() as tape:
        tape.watch(ts)
        y = f_ag(*ts)
    u = RNG.standard_normal(y.shape)
    g_ag = tape.gradient(y, ts, output_gradients=T(u))
    tt = [torch.tensor(x, requires_grad=True) for x in xs]
    yt = f_torch(*tt)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    g_t = torch.autograd.grad(yt, tt, torch.from_numpy(u))
    for a, b in zip(g_ag, g_t):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-7, atol=1e-10)


def _svd_mix(lib_svd):
    """A sign-invariant function of U, S, Vh: U diag(S) Vh plus a product with U's squares."""
    def f(a, ones):
        u, s, vh = lib_svd(a)
        return (u * s[..., None, :]) @ vh + (u * u) @ ones
    return f


# name: (ag function, torch function taking torch first, inputs); PyTorch's functions of one
# triangle (cholesky, eigh) differentiate every entry, so both sides get symmetric matrices
TORCH_CASES = {
    "cholesky": (lambda a: L.cholesky(a + a.swapaxes(-1, -2) + T(8 * np.eye(3))),
                 lambda t, a: t.linalg.cholesky(a + a.mT + 8 * t.eye(3, dtype=a.dtype)),
                 [RNG.standard_normal((2, 3, 3))]),
    "eigh_vectors_squared": (lambda a: L.eigh(a + a.swapaxes(-1, -2))[1] ** 2,
                             lambda t, a: t.linalg.eigh(a + a.mT)[1] ** 2,
                             [RNG.standard_normal((2, 4, 4))]),
    "eigvalsh": (lambda a: L.eigvalsh(a + a.swapaxes(-1, -2)),
                 lambda t, a: t.linalg.eigvalsh(a + a.mT), [RNG.standard_normal((4, 4))]),
    "svd": (lambda a: _svd_mix(lambda x: L.svd(x, full_matrices=False))(a, T(np.ones((3, 3)))),
            lambda t, a: _svd_mix(lambda x: t.linalg.svd(x, full_matrices=False))(
                a, t.ones(3, 3, dtype=a.dtype)), [sep_svd(5, 3)]),
    "qr": (lambda a: L.qr(a)[0] * 2 + L.qr(a)[1].sum(),
           lambda t, a: t.linalg.qr(a)[0] * 2 + t.linalg.qr(a)[1].sum(),
           [RNG.standard_normal((2, 5, 3))]),
    "det": (L.det, lambda t, a: t.linalg.det(a), [AB]),
    "slogdet": (lambda a: L.slogdet(a)[1], lambda t, a: t.linalg.slogdet(a)[1], [AB]),
    "inv": (L.inv, lambda t, a: t.linalg.inv(a), [AB]),
    "solve": (L.solve, lambda t, a, b: t.linalg.solve(a, b),
              [AB, RNG.standard_normal((2, 3, 4))]),
    "pinv": (L.pinv, lambda t, a: t.linalg.pinv(a), [sep_svd(4, 3, (2,))]),
    "expm": (L.expm, lambda t, a: t.linalg.matrix_exp(a), [RNG.uniform(-1, 1, (2, 3, 3))]),
    "solve_triangular": (lambda a, b: L.solve_triangular(a, b, lower=False),
                         lambda t, a, b: t.linalg.solve_triangular(a.triu(), b, upper=True),
                         [A3 + 3 * np.eye(3), B32]),
    "matrix_norm_2": (lambda a: L.norm(a, 2, axis=(-2, -1)),
                      lambda t, a: t.linalg.matrix_norm(a, 2), [sep_svd(3, 4, (2,))]),
    "matrix_norm_nuc": (lambda a: L.norm(a, "nuc", axis=(-2, -1)),
                        lambda t, a: t.linalg.matrix_norm(a, "nuc"), [sep_svd(3, 4, (2,))]),
    "vector_norm_3": (lambda a: L.norm(a, 3, axis=-1),
                      lambda t, a: t.linalg.vector_norm(a, 3, dim=-1),
                      [RNG.standard_normal((3, 4))]),
    "matrix_power": (lambda a: L.matrix_power(a, 3),
                     lambda t, a: t.linalg.matrix_power(a, 3), [AB]),
    "multi_dot": (lambda a, b, c: L.multi_dot([a, b, c]),
                  lambda t, a, b, c: t.linalg.multi_dot([a, b, c]),
                  [RNG.standard_normal((3, 4)), RNG.standard_normal((4, 2)),
                   RNG.standard_normal((2, 5))]),
    "lu_factor": (lambda a: L.lu_factor(a)[0], lambda t, a: t.linalg.lu_factor(a)[0],
                  [well((2, 4, 4))]),
    # (PyTorch differentiates every entry of the factor; cho_solve reads one triangle)
    "cho_solve": (lambda a, b: L.cho_solve((a * T(np.tri(4)), True), b),
                  lambda t, a, b: t.cholesky_solve(b, a.tril(), upper=False),
                  [np.linalg.cholesky(S4), RNG.standard_normal((4, 2))]),
}


@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_gradients_against_torch_linalg(name):
    torch = _torch()
    f_ag, f_t, xs = TORCH_CASES[name]
    _both(f_ag, lambda *ts: f_t(torch, *ts), xs)


# ---- repeated eigenvalues and singular values -----------------------------------------------

def _degenerate_sym():
    """Q diag(1, 1, 2.5) Q^T: a repeated eigenvalue with eigenvectors that are not the axes."""
    q = np.linalg.qr(RNG.standard_normal((3, 3)))[0]
    return (q * np.array([1.0, 1.0, 2.5])) @ q.T


def test_eigenvalue_gradients_stay_finite_at_repeated_eigenvalues():
    a = _degenerate_sym()
    c = np.array([0.3, -1.2, 2.0])
    g = ag.grad(lambda x: (L.eigvalsh(x) * T(c)).sum())(T(a)).numpy()
    _, v = np.linalg.eigh(a)
    # JAX's rule gives V diag(c) V^T (lower triangle read: strict part doubled)
    s = (v * c) @ v.T
    np.testing.assert_allclose(g, np.tril(s + s.T, -1) + np.diag(np.diag(s)), atol=1e-12)
    # the sum over the repeated pair is differentiable there: central differences agree
    check_grad(lambda x: L.eigvalsh(x)[:2].sum(), lambda x: np.linalg.eigvalsh(x)[:2].sum(),
               [a])


def test_eigenvector_gradients_coupling_repeated_eigenvalues_are_nan_as_jax():
    # computed eigenvalues exactly equal (a rotated matrix's differ in the last bit, and then,
    # as in JAX, 1/(w_j - w_i) is merely huge)
    g = ag.grad(lambda x: L.eigh(x).eigenvectors[:, 0].sum())(T(np.diag([1.0, 1.0, 2.5])))
    assert np.isnan(g.numpy()).all()
    # the eigenvector of the simple eigenvalue does not couple the pair: finite and right
    a = _degenerate_sym()
    check_grad(lambda x: L.eigh(x).eigenvectors[:, 2], lambda x: _eigh_ref(x)[1][:, 2], [a])


def test_singular_value_gradients_stay_finite_at_repeated_singular_values():
    q1 = np.linalg.qr(RNG.standard_normal((4, 3)))[0]
    q2 = np.linalg.qr(RNG.standard_normal((3, 3)))[0]
    a = (q1 * np.array([2.0, 2.0, 0.5])) @ q2.T
    g = ag.grad(lambda x: L.svdvals(x).sum())(T(a)).numpy()
    np.testing.assert_allclose(g, q1 @ q2.T, atol=1e-12)  # the nuclear norm's U V^T
    check_grad(lambda x: L.svdvals(x)[:2].sum(), lambda x: np.linalg.svdvals(x)[:2].sum(), [a])
    exact = np.eye(4, 3) * np.array([2.0, 2.0, 0.5])
    g = ag.grad(lambda x: L.svd(x, full_matrices=False).U[:, 0].sum())(T(exact)).numpy()
    assert np.isnan(g).all()
    g = ag.grad(lambda x: L.norm(x, "nuc"))(T(np.eye(3))).numpy()
    np.testing.assert_allclose(g, np.eye(3))


def test_norms_have_zero_gradient_at_the_zero_vector_as_pytorch():
    torch = _torch()
    for ord_ in [None, 2, 3]:
        g = ag.grad(lambda x: L.norm(x, ord_))(T(np.zeros(4))).numpy()
        x = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        torch.linalg.vector_norm(x, 2 if ord_ is None else ord_).backward()
        np.testing.assert_array_equal(g, x.grad.numpy())
        np.testing.assert_array_equal(g, 0.0)
    g = ag.grad(lambda x: L.norm(x, "fro"))(T(np.zeros((2, 3)))).numpy()
    np.testing.assert_array_equal(g, 0.0)


def test_second_derivative_of_a_cholesky_log_determinant():
    """d^2/dt^2 log det(A + t E) = -tr(A^{-1} E A^{-1} E), through cholesky and solves."""
    a = spd((3, 3))
    e = RNG.standard_normal((3, 3))
    e = e + e.T

    def logdet(t):
        return 2.0 * ag.log(ag.einsum("ii->i", L.cholesky(T(a) + t * T(e)))).sum()

    t0 = T(np.array(0.0))
    h = ag.grad(ag.grad(logdet))(t0).to_scalar()
    ai = np.linalg.inv(a)
    assert h == pytest.approx(-np.trace(ai @ e @ ai @ e), rel=1e-9)


def test_second_derivatives_through_eigh_svd_and_expm_against_central_differences():
    def second(f, x, v):
        """d/dt <grad f(x + t v), v> at t = 0 by ag, and by central differences of ag.grad."""
        g = ag.grad(lambda y: (ag.grad(f)(y) * T(v)).sum())(T(x)).numpy()
        gp = ag.grad(f)(T(x + EPS * v)).numpy()
        gm = ag.grad(f)(T(x - EPS * v)).numpy()
        return float(np.sum(g * v)), float(np.sum((gp - gm) * v) / (2 * EPS))

    s = sep_sym((3, 3))
    for f, x in [(lambda y: (L.eigh(y)[1] ** 3).sum() + (L.eigh(y)[0] ** 2).sum(), s),
                 (lambda y: (L.svd(y, full_matrices=False)[0] ** 3).sum(), sep_svd(4, 3)),
                 (lambda y: (L.expm(y) ** 2).sum(), RNG.uniform(-1, 1, (3, 3))),
                 (lambda y: (L.pinv(y) ** 2).sum(), sep_svd(3, 2))]:
        got, fd = second(f, x, RNG.standard_normal(x.shape))
        assert got == pytest.approx(fd, rel=1e-5, abs=1e-6)


# ---- bad input ------------------------------------------------------------------------------

SINGULAR = np.array([[1.0, 2.0], [2.0, 4.0]])


@pytest.mark.parametrize("call, op", [
    (lambda: L.solve(T(SINGULAR), T(np.ones(2))), "solve"),
    (lambda: L.inv(T(SINGULAR)), "inv"),
    (lambda: L.inv(T(np.stack([np.eye(2), SINGULAR]))), "inv"),
    (lambda: L.cholesky(T(-np.eye(2))), "cholesky"),
    (lambda: L.cho_factor(T(SINGULAR - np.eye(2))), "cholesky"),
    (lambda: L.solve_triangular(T(np.triu(SINGULAR) * [[1, 1], [1, 0]]), T(np.ones(2))),
     "solve_triangular"),
])
def test_singular_matrices_raise_numpys_error_wrapped_naming_the_op(call, op):
    with pytest.raises(ag.LinAlgError, match=rf"^{op}: ") as info:
        call()
    assert isinstance(info.value, ag.AutogradError)
    assert isinstance(info.value, np.linalg.LinAlgError)  # what NumPy raises, still caught


def test_singular_determinants_are_numpys_values():
    assert L.det(T(SINGULAR)).to_scalar() == np.linalg.det(SINGULAR) == 0.0
    sign, logabs = L.slogdet(T(SINGULAR))
    assert sign.to_scalar() == 0.0 and logabs.to_scalar() == -np.inf
    # the gradient of det there is the adjugate, which the solve-based rule cannot form
    with pytest.raises(ag.LinAlgError, match="solve"):
        ag.grad(lambda a: L.det(a))(T(SINGULAR))


NON_SQUARE = T(np.ones((2, 3)))


@pytest.mark.parametrize("fn", [
    L.inv, L.det, L.slogdet, L.cholesky, L.eigh, L.eigvalsh, L.expm, L.sqrtm,
    lambda a: L.solve(a, T(np.ones(2))), lambda a: L.solve_triangular(a, T(np.ones(2))),
    L.lu_factor, lambda a: L.matrix_power(a, 2), lambda a: L.cho_solve((a, True), T(np.ones(2))),
    lambda a: L.solve_sylvester(a, T(np.eye(2)), T(np.ones((2, 2)))),
    lambda a: L.pinv(a, hermitian=True),
])
def test_non_square_matrices_raise_shape_error(fn):
    with pytest.raises(ag.ShapeError, match="square"):
        fn(NON_SQUARE)


@pytest.mark.parametrize("fn", [L.svd, L.qr, L.pinv, L.det, L.inv, L.svdvals, L.cholesky,
                                lambda a: L.lstsq(a, T(np.ones(3)))])
def test_vectors_where_matrices_are_expected_raise_shape_error(fn):
    with pytest.raises(ag.ShapeError):
        fn(T(np.ones(3)))


@pytest.mark.parametrize("call", [
    lambda: L.solve(T(np.eye(3)), T(np.ones(2))),
    lambda: L.solve(T(np.eye(3)), T(np.ones((2, 1)))),
    lambda: L.solve(T(np.ones((2, 3, 3)) + np.eye(3)), T(np.ones((3, 3, 1)))),
    lambda: L.lstsq(T(np.ones((2, 3, 3))), T(np.ones(3))),
    lambda: L.lstsq(T(np.eye(3)), T(np.ones(2))),
    lambda: L.multi_dot([T(np.ones((2, 3))), T(np.ones((2, 3)))]),
    lambda: L.multi_dot([T(np.ones((2, 3))), T(np.ones((3, 3, 3))), T(np.ones(3))]),
    lambda: L.solve_sylvester(T(np.eye(2)), T(np.eye(3)), T(np.ones((3, 2)))),
    lambda: L.norm(T(np.ones((2, 2, 2))), 2),
    lambda: L.norm(T(np.ones((2, 2))), axis=(0, 0)),
    lambda: L.norm(T(np.ones((2, 2))), axis=(0, 1, 1)),
])
def test_shapes_that_do_not_fit_raise_shape_error(call):
    with pytest.raises(ag.ShapeError):
        call()


@pytest.mark.parametrize("fn", [
    L.inv, L.det, L.cholesky, L.eigh, L.svd, L.qr, L.pinv, L.expm, L.lu_factor, L.norm,
    lambda a: L.solve(a, T(np.ones(2))), lambda a: L.solve_triangular(a, T(np.ones(2))),
    lambda a: L.lstsq(a, T(np.ones(2))),
])
@pytest.mark.parametrize("dtype", [np.int64, np.bool_])
def test_integer_input_raises_dtype_error(fn, dtype):
    with pytest.raises(ag.DTypeError):
        fn(T(np.eye(2).astype(dtype)))


def test_half_precision_is_refused_by_lapack_functions():
    with pytest.raises(ag.DTypeError, match="float32, float64"):
        L.inv(T(np.eye(2, dtype=np.float16)))


@pytest.mark.parametrize("call, match", [
    (lambda: L.eigh(T(np.eye(2)), UPLO="X"), "UPLO"),
    (lambda: L.qr(T(np.eye(2)), mode="raw"), "Householder"),
    (lambda: L.solve_triangular(T(np.eye(2)), T(np.ones(2)), trans=3), "trans"),
    (lambda: L.lu_solve((T(np.eye(2)), T(np.zeros(2, np.int32))), T(np.ones(2)), trans="X"),
     "trans"),
    (lambda: L.lu_solve((T(np.eye(2)), T(np.zeros(2))), T(np.ones(2))), "piv"),
    (lambda: L.matrix_power(T(np.eye(2)), 1.5), "integer"),
    (lambda: L.multi_dot([T(np.eye(2))]), "at least two"),
    (lambda: L.multi_dot([T(np.eye(2)), T(np.eye(2))], out=np.empty((2, 2))), "out"),
    (lambda: L.pinv(T(np.eye(2)), rcond=1e-3, rtol=1e-3), "both"),
    (lambda: L.norm(T(np.ones(3)), "fro", axis=0), "invalid norm order"),
    (lambda: L.norm(T(np.ones((2, 2))), 3), "invalid norm order"),
    (lambda: L.cho_solve(T(np.eye(2)), T(np.ones(2))), "c_and_lower"),
    (lambda: L.svd(T(np.eye(2)), full_matrices="yes"), "full_matrices"),
])
def test_bad_arguments_raise_argument_error(call, match):
    with pytest.raises(ag.ArgumentError, match=match):
        call()


def test_non_unique_factors_compute_but_refuse_gradients():
    a = RNG.standard_normal((4, 2))
    u, s, vh = L.svd(T(a))  # full_matrices=True: NumPy's values (the first k up to sign)
    np.testing.assert_allclose((u[:, :2] * s) @ vh[:2], a, atol=1e-12)
    np.testing.assert_allclose(np.abs(u.numpy()[:, :2]), np.abs(np.linalg.svd(a)[0][:, :2]))
    with pytest.raises(ag.ArgumentError, match="full_matrices=True with m != n"):
        ag.grad(lambda x: L.svd(x)[0].sum())(T(a))
    q, r = L.qr(T(a), mode="complete")
    np.testing.assert_allclose(q.numpy(), np.linalg.qr(a, mode="complete")[0])
    with pytest.raises(ag.ArgumentError, match="mode='complete'"):
        ag.grad(lambda x: L.qr(x, "complete")[1].sum())(T(a))


# ---- NumPy's functions on tensors reach ag.linalg -------------------------------------------

def test_numpy_linalg_calls_on_tensors_are_differentiable():
    a = well((3, 3))
    b = RNG.standard_normal(3)
    ta, tb = T(a), T(b)
    with ag.GradientTape() as tape:
        tape.watch([ta, tb])
        x = np.linalg.solve(ta, tb)
        w, v = np.linalg.eigh(ta + ta.swapaxes(-1, -2))
        y = (x * x).sum() + np.linalg.norm(ta, "nuc") + (w * w).sum() + np.linalg.det(ta)
    assert isinstance(x, ag.Tensor)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a, b))
    ga, gb = tape.gradient(y, [ta, tb])

    def ref(a, b):
        x = np.linalg.solve(a, b)
        w = np.linalg.eigvalsh(a + a.T)
        return (x * x).sum() + np.linalg.norm(a, "nuc") + (w * w).sum() + np.linalg.det(a)

    d = RNG.standard_normal((3, 3))
    fd = (ref(a + EPS * d, b) - ref(a - EPS * d, b)) / (2 * EPS)
    assert float(np.sum(ga.numpy() * d)) == pytest.approx(fd, rel=1e-6)
    np.testing.assert_allclose(gb.numpy(), 2 * np.linalg.solve(a.T, np.linalg.solve(a, b)))


# ---- complex inputs (the convention of docs/contributing.md) --------------------------------

def crandn(*shape):
    return RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)


def check_complex(f_ag, f_ref, xs, rtol=1e-5):
    """Values equal; for cotangents u and directions v with real and imaginary parts,
    Re(sum(vjp(u) * v)) = d/dt Re(sum(u * f(x + t v))) (central differences of f_ref)."""
    ts = [T(x) for x in xs]
    with ag.GradientTape() as tape:
        tape.watch(ts)
        ys = _flat(f_ag(*ts))
    ref = [np.asarray(r) for r in _flat(f_ref(*xs))]
    for y, r in zip(ys, ref):
        np.testing.assert_allclose(y.numpy(), r, rtol=1e-9, atol=1e-10)
    us = [crandn(*r.shape) if np.iscomplexobj(r) else RNG.standard_normal(r.shape) for r in ref]
    grads = tape.gradient(ys, ts, output_gradients=[T(u) for u in us],
                          unconnected_gradients="zero")
    dirs = [crandn(*np.shape(x)) if np.iscomplexobj(x) else RNG.standard_normal(np.shape(x))
            for x in xs]
    plus = _flat(f_ref(*[x + EPS * d for x, d in zip(xs, dirs)]))
    minus = _flat(f_ref(*[x - EPS * d for x, d in zip(xs, dirs)]))
    fd = sum(float(np.real(np.sum(u * (np.asarray(p) - np.asarray(m)))))
             for u, p, m in zip(us, plus, minus)) / (2 * EPS)
    got = sum(float(np.real(np.sum(g.numpy() * d))) for g, d in zip(grads, dirs))
    assert got == pytest.approx(fd, rel=rtol, abs=rtol), (got, fd)


CA = well((2, 3, 3)) + 0.3j * well((2, 3, 3))
CH = (lambda x: x @ np.swapaxes(x, -1, -2).conj() + 3 * np.eye(3))(crandn(2, 3, 3))

COMPLEX_CASES = {
    "solve": (L.solve, np.linalg.solve, [CA, crandn(2, 3, 2)]),
    "inv": (L.inv, np.linalg.inv, [CA]),
    "det": (L.det, np.linalg.det, [CA]),
    "slogdet": (lambda a: tuple(L.slogdet(a)), np.linalg.slogdet, [CA]),
    "cholesky": (L.cholesky, np.linalg.cholesky, [CH]),
    "cholesky_upper": (lambda a: L.cholesky(a, upper=True),
                       lambda a: np.linalg.cholesky(a, upper=True), [CH]),
    "eigh": (lambda a: tuple(L.eigh(a)), _eigh_ref, [CH + np.diag([0.0, 1.5, 3.0])]),
    "svd": (lambda a: tuple(L.svd(a, full_matrices=False)), _svd_ref, [crandn(4, 3)]),
    "svd_wide": (lambda a: tuple(L.svd(a, full_matrices=False)), _svd_ref, [crandn(2, 2, 4)]),
    "qr": (lambda a: tuple(L.qr(a)), np.linalg.qr, [crandn(2, 4, 3)]),
    "qr_wide": (lambda a: tuple(L.qr(a)), np.linalg.qr, [crandn(2, 3)]),
    "pinv": (L.pinv, np.linalg.pinv, [crandn(4, 3)]),
    "lstsq": (lambda a, b: L.lstsq(a, b)[:2], lambda a, b: np.linalg.lstsq(a, b)[:2],
              [crandn(4, 2), crandn(4)]),
    "norm_fro": (L.norm, np.linalg.norm, [crandn(3, 4)]),
    "norm_nuc": (lambda a: L.norm(a, "nuc"), lambda a: np.linalg.norm(a, "nuc"), [crandn(3, 4)]),
    "norm_1": (lambda a: L.norm(a, 1, axis=-1), lambda a: np.linalg.norm(a, 1, axis=-1),
               [crandn(3, 4)]),
    "expm": (L.expm, sl.expm, [0.5 * crandn(3, 3)]),
    "sqrtm": (L.sqrtm, sl.sqrtm, [CH[0]]),
    "solve_triangular_C": (lambda a, b: L.solve_triangular(a, b, trans="C", lower=True),
                           lambda a, b: sl.solve_triangular(a, b, trans="C", lower=True),
                           [CA[0] + 3 * np.eye(3), crandn(3, 2)]),
    "lu_solve": (lambda a, b: L.lu_solve(L.lu_factor(a), b, trans=2),
                 lambda a, b: sl.lu_solve(sl.lu_factor(a), b, trans=2), [CA[0], crandn(3)]),
    "cho_solve": (lambda a, b: L.cho_solve(L.cho_factor(a), b),
                  lambda a, b: sl.cho_solve(sl.cho_factor(a), b), [CH[1], crandn(3, 2)]),
    "eig": (lambda a: tuple(L.eig(a)), _eig_ref, [crandn(2, 3, 3)]),
    "solve_sylvester": (L.solve_sylvester, sl.solve_sylvester,
                        [CA[0] + 3 * np.eye(3), CA[1] + 3 * np.eye(3), crandn(3, 3)]),
}


@pytest.mark.parametrize("name", sorted(COMPLEX_CASES))
def test_complex_inputs_against_numpy_and_central_differences(name):
    f_ag, f_ref, xs = COMPLEX_CASES[name]
    check_complex(f_ag, f_ref, xs)


@pytest.mark.parametrize("a", [
    RNG.standard_normal((4, 4)),  # (a complex pair, with probability 0.56)
    np.array([[0.3, 0.7, 0.1], [-0.7, 0.3, 0.2], [0.0, 0.1, 1.5]]),  # a +- ib and one real
    # all real (not triangular: LAPACK orders a triangular matrix's eigenvalues otherwise than
    # its neighbours', so central differences of NumPy's eig would pair different eigenvalues)
    (lambda p: p @ np.diag([1.0, 2.0, 3.5]) @ np.linalg.inv(p))(well((3, 3))),
])
def test_eig_of_real_matrices_is_complex_and_differentiable(a):
    w, v = L.eig(T(a))
    assert w.dtype == np.complex128 and v.dtype == np.complex128
    check_complex(lambda x: tuple(L.eig(x)), _eig_ref, [a])
    g = ag.grad(lambda x: ag.real(L.eigvals(x) * L.eigvals(x)).sum())(T(a))
    assert g.dtype == np.float64  # a real input's gradient is real (the convention)


def test_complex_gradients_are_conjugates_of_pytorchs():
    """For a real loss, ag's gradient is dL/dx - i dL/dy (JAX's), PyTorch's its conjugate."""
    torch = _torch()
    a, b = CA[0], crandn(3)
    cases = [
        (lambda x: ag.real(L.det(x) * ag.conj(L.det(x))), lambda x: torch.linalg.det(x).abs() ** 2),
        (lambda x: (ag.real(L.inv(x)) ** 2).sum(), lambda x: (torch.linalg.inv(x).real ** 2).sum()),
        (lambda x: L.slogdet(x)[1], lambda x: torch.linalg.slogdet(x)[1]),
        (lambda x: L.norm(x, "nuc"), lambda x: torch.linalg.matrix_norm(x, "nuc")),
        (lambda x: (ag.imag(L.solve(x, T(b))) ** 2).sum(),
         lambda x: (torch.linalg.solve(x, torch.from_numpy(b)).imag ** 2).sum()),
        (lambda x: (L.eigvalsh(x + ag.conj(x).swapaxes(-1, -2)) ** 3).sum(),
         lambda x: (torch.linalg.eigvalsh(x + x.mH) ** 3).sum()),
        (lambda x: (ag.real(L.qr(x)[1]) ** 2).sum(),
         lambda x: (torch.linalg.qr(x)[1].real ** 2).sum()),
        (lambda x: (ag.real(L.eigvals(x)) ** 2).sum(),
         lambda x: (torch.linalg.eigvals(x).real ** 2).sum()),
    ]
    for f_ag, f_t in cases:
        g = ag.grad(f_ag)(T(a)).numpy()
        x = torch.tensor(a, requires_grad=True)
        f_t(x).backward()
        np.testing.assert_allclose(g, np.conj(x.grad.numpy()), rtol=1e-8, atol=1e-10)


def test_tensors_copy_and_pickle_after_an_op_used_scipy():
    """ag.linalg's ops reach SciPy through the backend (bk.scipy, cached on it): deepcopy and
    pickle of a tensor then failed ('cannot pickle module'), and a copy got a new backend
    object that apply refused next to the original ("expected device cpu ..., got cpu")."""
    import copy
    import pickle

    v = ag.Variable(np.arange(3.0))
    L.expm(T(np.eye(2)))  # an op that uses bk.scipy
    for v2 in (copy.deepcopy(v), pickle.loads(pickle.dumps(v)), copy.copy(v)):
        np.testing.assert_array_equal((v2 + v).numpy(), 2 * np.arange(3.0))


@pytest.mark.parametrize("name", ["cho_solve", "lu_solve", "lstsq_tall", "qr_wide", "inv",
                                  "matrix_power_-2", "multi_dot", "svd_no_uv", "eigh_upper"])
def test_forward_mode_through_compositions_against_central_differences(name):
    f_ag, f_ref, xs = CASES[name]
    dirs = [RNG.standard_normal(np.shape(x)) for x in xs]
    _, tans = ag.jvp(lambda *ts: f_ag(*ts), tuple(T(x) for x in xs), tuple(T(d) for d in dirs))
    plus = _np(f_ref(*[x + EPS * d for x, d in zip(xs, dirs)]))
    minus = _np(f_ref(*[x - EPS * d for x, d in zip(xs, dirs)]))
    for t, p, m in zip(_flat(tans), plus, minus):
        np.testing.assert_allclose(t.numpy(), (p - m) / (2 * EPS), rtol=1e-5, atol=1e-6)
