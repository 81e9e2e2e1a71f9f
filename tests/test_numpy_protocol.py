"""NumPy's functions, ufuncs and operators on tensors dispatch to ag ops (recorded, so
differentiable) or raise TypeError naming the nearest op; never a plain array whose gradient is
silently zero or None. Also the operators %, //, divmod, ** and @ with an array on the left, and
NumPy's method signatures (t.sum(axis, dtype, out, keepdims) and friends)."""

from __future__ import annotations

import types

import numpy as np
import pytest

import autograd_gpu as ag

EPS = 1e-6


def T(v):
    return ag.Tensor.from_array(np.asarray(v, np.float64))


def _grad(fn, *xs):
    """Gradients of sum(fn(*xs)) for the tensors xs (None where unconnected)."""
    with ag.GradientTape() as tape:
        tape.watch(list(xs))
        y = fn(*xs)
        assert isinstance(y, ag.Tensor), f"expected a Tensor, got {type(y).__name__}"
        s = y.sum() if y.ndim else y
    return tape.gradient(s, list(xs))


A = np.array([[0.5, 1.5, 2.5], [3.5, -0.5, 1.25]])
X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]) * 0.7


# ---- the cases, each failing on the old code --------------------------------------------

def test_np_sin_is_recorded():
    (g,) = _grad(lambda x: np.sin(x), T(X))
    np.testing.assert_allclose(g.numpy(), np.cos(X))


def test_np_sum_with_axis_is_recorded():
    y = np.sum(T(X), axis=0)
    assert isinstance(y, ag.Tensor) and y.shape == (3,)
    (g,) = _grad(lambda x: np.sum(x, axis=0), T(X))
    np.testing.assert_allclose(g.numpy(), np.ones_like(X))
    (g,) = _grad(lambda x: np.mean(x, axis=1, keepdims=True), T(X))
    np.testing.assert_allclose(g.numpy(), np.full_like(X, 1 / 3))


@pytest.mark.parametrize("left", [A, A[0], np.float64(1.5), np.array(1.5)],
                         ids=["2d", "broadcast", "numpy-scalar", "0d"])
def test_ndarray_times_tensor_is_recorded(left):
    for fn in (lambda x: left * x, lambda x: np.multiply(left, x), lambda x: x * left):
        (g,) = _grad(fn, T(X))
        np.testing.assert_allclose(g.numpy(), np.broadcast_to(left, X.shape))


def test_tensor_mod_ndarray_is_recorded_with_numpys_sign_convention():
    b = np.array([2.0, -1.5, 0.75])
    y = T(X) % b
    assert isinstance(y, ag.Tensor)
    np.testing.assert_allclose(y.numpy(), np.remainder(X, b))
    gx, gb = ag.grad(lambda x, d: (x % d).sum(), argnums=(0, 1))(T(X), T(b))
    np.testing.assert_allclose(gx.numpy(), np.ones_like(X))
    np.testing.assert_allclose(gb.numpy(), -np.floor_divide(X, b).sum(axis=0))
    (g,) = _grad(lambda x: b % x, T(X[:, :3] + 0.1))  # __rmod__ through np.remainder
    np.testing.assert_allclose(g.numpy(), -np.floor_divide(b, X + 0.1))


def test_floor_divide_and_divmod():
    x = T(X)
    q = x // 1.3
    assert isinstance(q, ag.Tensor)
    np.testing.assert_array_equal(q.numpy(), X // 1.3)
    np.testing.assert_array_equal((4.0 // x).numpy(), 4.0 // X)
    q2, r2 = divmod(x, 1.3)
    np.testing.assert_array_equal(q2.numpy(), X // 1.3)
    np.testing.assert_allclose(r2.numpy(), X % 1.3)
    q3, r3 = divmod(4.0, x)
    np.testing.assert_allclose(r3.numpy(), 4.0 % X)
    q4, r4 = np.divmod(A, x)
    np.testing.assert_allclose(r4.numpy(), np.remainder(A, X))
    (g,) = _grad(lambda t: divmod(t, 1.3)[1], x)
    np.testing.assert_allclose(g.numpy(), np.ones_like(X))
    (g,) = _grad(lambda t: t // 1.3 + 0 * t, x)  # the quotient has derivative 0
    np.testing.assert_allclose(g.numpy(), np.zeros_like(X))


def test_pow_and_matmul_with_an_array_on_the_left():
    base = np.abs(A) + 0.5
    (g,) = _grad(lambda x: base ** x, T(X))
    np.testing.assert_allclose(g.numpy(), base ** X * np.log(base))
    (g,) = _grad(lambda x: 2.0 ** x, T(X))
    np.testing.assert_allclose(g.numpy(), 2.0 ** X * np.log(2.0))
    m = np.arange(4.0).reshape(2, 2) + 1
    (g,) = _grad(lambda x: m @ x, T(X))
    np.testing.assert_allclose(g.numpy(), m.T @ np.ones((2, 3)))


def test_numpy_reductions_and_ufunc_methods_are_recorded():
    (g,) = _grad(lambda x: np.add.reduce(x), T(X))
    np.testing.assert_allclose(g.numpy(), np.ones_like(X))
    (g,) = _grad(lambda x: np.maximum.reduce(x, axis=1), T(X))
    np.testing.assert_allclose(g.numpy(), [[0, 0, 1], [0, 0, 1]])
    (g,) = _grad(lambda x: np.multiply.outer(x[0], x[1]), T(X))
    np.testing.assert_allclose(g.numpy(), [np.full(3, X[1].sum()), np.full(3, X[0].sum())])
    y = np.add.accumulate(T(X), axis=1)
    np.testing.assert_allclose(y.numpy(), np.add.accumulate(X, axis=1))


def test_numpy_binary_ufuncs_with_an_array_operand():
    for fn in (np.add, np.subtract, np.multiply, np.divide, np.power, np.maximum, np.minimum):
        y = fn(np.abs(A) + 0.1, T(X))
        assert isinstance(y, ag.Tensor), fn.__name__
        np.testing.assert_allclose(y.numpy(), fn(np.abs(A) + 0.1, X), err_msg=fn.__name__)
    ga, gx = ag.grad(lambda a, x: np.add(a, x).sum(), argnums=(0, 1))(T(A), T(X))
    np.testing.assert_allclose(gx.numpy(), np.ones_like(X))


def test_numpy_method_signatures_as_numpy_calls_them():
    x = T(X)
    assert x.sum(0, None, None, True).shape == (1, 3)
    np.testing.assert_allclose(x.std(0, None, None, 1).numpy(), X.std(0, None, None, 1))
    np.testing.assert_allclose(x.var(1, None, None, 1, True).numpy(), X.var(1, None, None, 1, True))
    np.testing.assert_allclose(x.max(1, None, True).numpy(), X.max(1, None, True))
    assert x.mean(dtype=np.float32).dtype == np.float32
    np.testing.assert_allclose(x.reshape(3, 2).numpy(), X.reshape(3, 2))
    np.testing.assert_allclose(x.reshape((3, 2)).numpy(), X.reshape((3, 2)))
    np.testing.assert_allclose(x.transpose(1, 0).numpy(), X.transpose(1, 0))


# ---- the dispatch table, entry by entry ---------------------------------------------------------

def _pos(rng, shape):
    """Values in (0.15, 0.4) or (0.6, 0.85): positive, and away from 0, 1/2 and 1, so that
    floor, round, mod and clip(0.5, 0.9) have no jump within central differences' reach, and in
    the domain of log, sqrt, arcsin, arctanh, ..."""
    u = rng.uniform(0.15, 0.4, shape)
    return np.where(rng.uniform(size=shape) < 0.5, u, u + 0.45)


def _distinct(rng, shape):
    """Positive values pairwise at least 0.05 apart (max/min have no ties)."""
    n = int(np.prod(shape))
    return (0.2 + 0.05 * rng.permutation(n)).reshape(shape)


_BOOL_UFUNCS = {"logical_and", "logical_or", "logical_xor", "logical_not", "bitwise_and",
                "bitwise_or", "bitwise_xor", "invert"}
# domains for ufuncs outside (0.15, 0.85) (an op added to ag later may need one here)
_DOMAINS = {"arccosh": (1.2, 2.5)}


# SciPy's special functions whose leading arguments are orders or parameters without a
# derivative (ag.special gives a tracked one a NaN gradient): integers, so they are not watched
_PARAMETER_UFUNCS = {"gammainc": 1, "gammaincc": 1, "betainc": 2, "iv": 1, "ive": 1, "yn": 1}


def _ufunc_case(uf, rng):
    if uf.__name__ in _PARAMETER_UFUNCS:
        params = [rng.integers(1, 4, (3,)) for _ in range(_PARAMETER_UFUNCS[uf.__name__])]
        x = _pos(rng, (2, 3))
        return [*params, x], lambda f, *a: f(*a)
    if uf.__name__ in _BOOL_UFUNCS:
        return [rng.uniform(size=(2, 3)) < 0.5 for _ in range(uf.nin)], lambda f, *a: f(*a)
    if uf.signature is not None:
        if uf.__name__ != "matmul":
            pytest.fail(f"no case for the generalised ufunc {uf.__name__}: add one")
        return [_pos(rng, (2, 3)), _pos(rng, (3, 4))], lambda f, *a: f(*a)
    lo, hi = _DOMAINS.get(uf.__name__, (None, None))
    first = _pos(rng, (2, 3)) if lo is None else rng.uniform(lo, hi, (2, 3))
    if uf.nin == 1:
        return [first], lambda f, a: f(a)
    return [first, rng.uniform(1.1, 1.9, (3,))], lambda f, a, b: f(a, b)


def _reduce_case(uf, method, rng):
    if uf.__name__ in _BOOL_UFUNCS:
        x = rng.uniform(size=(3, 4)) < 0.5
    else:
        x = _distinct(rng, (3, 4))
    if method == "reduce":
        return [x], lambda f, a: f.reduce(a, axis=1, keepdims=True)
    return [x], lambda f, a: f.accumulate(a, axis=1)


def _ints(v):
    return np.array(v, dtype=np.int64)


# NumPy functions (not ufuncs): inputs and the call, as one would write it with arrays
_FUNCTION_CASES = {
    # numpy.fft (ag.fft): complex outputs are compared by value, real ones also differentiated
    "numpy.fft.fft": (lambda r: [_pos(r, (2, 5))], lambda f, x: f(x, 6, axis=1, norm="ortho")),
    "numpy.fft.ifft": (lambda r: [_pos(r, (2, 5))], lambda f, x: f(x, axis=0)),
    "numpy.fft.fft2": (lambda r: [_pos(r, (2, 3, 4))], lambda f, x: f(x, s=(2, 5))),
    "numpy.fft.ifft2": (lambda r: [_pos(r, (3, 4))], lambda f, x: f(x, norm="forward")),
    "numpy.fft.fftn": (lambda r: [_pos(r, (2, 3, 4))], lambda f, x: f(x, axes=(0, 2))),
    "numpy.fft.ifftn": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, s=(3, 3), axes=(0, 1))),
    "numpy.fft.rfft": (lambda r: [_pos(r, (2, 5))], lambda f, x: f(x, 7)),
    "numpy.fft.irfft": (lambda r: [_pos(r, (2, 5))], lambda f, x: f(x, 9, norm="ortho")),
    "numpy.fft.rfft2": (lambda r: [_pos(r, (3, 4))], lambda f, x: f(x, axes=(1, 0))),
    "numpy.fft.irfft2": (lambda r: [_pos(r, (3, 4))], lambda f, x: f(x, s=(3, 5))),
    "numpy.fft.rfftn": (lambda r: [_pos(r, (2, 3, 4))], lambda f, x: f(x, norm="forward")),
    "numpy.fft.irfftn": (lambda r: [_pos(r, (2, 3, 4))], lambda f, x: f(x, axes=(0, 1))),
    "numpy.fft.fftshift": (lambda r: [_pos(r, (3, 4))], lambda f, x: f(x, axes=1)),
    "numpy.fft.ifftshift": (lambda r: [_pos(r, (3, 5))], lambda f, x: f(x)),
    "numpy.all": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x > 0.5, axis=0)),
    "numpy.any": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x > 0.5, axis=1, keepdims=True)),
    "numpy.amax": (lambda r: [_distinct(r, (2, 3))], lambda f, x: f(x, axis=1)),
    "numpy.amin": (lambda r: [_distinct(r, (2, 3))], lambda f, x: f(x, axis=0)),
    "numpy.max": (lambda r: [_distinct(r, (2, 3))], lambda f, x: f(x, axis=(0, 1))),
    "numpy.min": (lambda r: [_distinct(r, (2, 3))], lambda f, x: f(x, 1, keepdims=True)),
    "numpy.argmax": (lambda r: [_distinct(r, (2, 3))], lambda f, x: f(x, axis=1)),
    "numpy.argmin": (lambda r: [_distinct(r, (2, 3))], lambda f, x: f(x)),
    "numpy.around": (lambda r: [_pos(r, (2, 3)) * 4], lambda f, x: f(x)),
    "numpy.round": (lambda r: [_pos(r, (2, 3)) * 4], lambda f, x: f(x, 0)),
    "numpy.astype": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, np.float64)),
    "numpy.broadcast_to": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, (4, 2, 3))),
    "numpy.clip": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, 0.5, 0.9)),
    "numpy.concatenate": (lambda r: [_pos(r, (2, 3)), _pos(r, (2, 2))],
                          lambda f, x, y: f([x, y], axis=1)),
    "numpy.cumsum": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, axis=1)),
    "numpy.dot": (lambda r: [_pos(r, (2, 3)), _pos(r, (3, 4))], lambda f, x, y: f(x, y)),
    "numpy.einsum": (lambda r: [_pos(r, (2, 3)), _pos(r, (3, 4))],
                     lambda f, x, y: f("ij,jk->ik", x, y)),
    "numpy.expand_dims": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, 1)),
    "numpy.flip": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, axis=0)),
    "numpy.mean": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, axis=0, keepdims=True)),
    "numpy.outer": (lambda r: [_pos(r, (2, 3)), _pos(r, (4,))], lambda f, x, y: f(x, y)),
    "numpy.pad": (lambda r: [_pos(r, (2, 3))],
                  lambda f, x: f(x, ((1, 0), (0, 2)), constant_values=0.5)),
    "numpy.prod": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, axis=1)),
    "numpy.ravel": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x)),
    "numpy.reshape": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, (3, 2))),
    "numpy.split": (lambda r: [_pos(r, (2, 4))], lambda f, x: f(x, [1, 3], axis=1)),
    "numpy.squeeze": (lambda r: [_pos(r, (1, 2, 1, 3))], lambda f, x: f(x, axis=2)),
    "numpy.stack": (lambda r: [_pos(r, (2, 3)), _pos(r, (2, 3))],
                    lambda f, x, y: f([x, y], axis=1)),
    "numpy.std": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, axis=1, ddof=1)),
    "numpy.var": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, 0, None, None, 1)),
    "numpy.sum": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, axis=0)),
    "numpy.swapaxes": (lambda r: [_pos(r, (2, 3, 4))], lambda f, x: f(x, 0, 2)),
    "numpy.take": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, [2, 0, 0], axis=1)),
    "numpy.take_along_axis": (lambda r: [_pos(r, (2, 3))],
                              lambda f, x: f(x, _ints([[2, 0], [1, 1]]), axis=1)),
    "numpy.tensordot": (lambda r: [_pos(r, (2, 3, 4)), _pos(r, (3, 4, 2))],
                        lambda f, x, y: f(x, y, axes=2)),
    "numpy.transpose": (lambda r: [_pos(r, (2, 3, 4))], lambda f, x: f(x, (1, 2, 0))),
    "numpy.where": (lambda r: [_pos(r, (2, 3)), _pos(r, (2, 3))],
                    lambda f, x, y: f(x > 0.5, x, y)),
    # the elementwise and array functions of ops/elementwise_more.py and ops/arrays.py
    "numpy.angle": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, deg=True)),
    "numpy.argpartition": (lambda r: [_distinct(r, (2, 5))], lambda f, x: f(x, 2, axis=1)),
    "numpy.argsort": (lambda r: [_distinct(r, (2, 3))], lambda f, x: f(x, axis=0)),
    "numpy.array_split": (lambda r: [_pos(r, (2, 5))], lambda f, x: f(x, 3, axis=1)),
    "numpy.atleast_1d": (lambda r: [_pos(r, ()), _pos(r, (2,))], lambda f, x, y: f(x, y)),
    "numpy.atleast_2d": (lambda r: [_pos(r, (3,))], lambda f, x: f(x)),
    "numpy.atleast_3d": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x)),
    "numpy.cross": (lambda r: [_pos(r, (2, 3)), _pos(r, (3,))], lambda f, x, y: f(x, y)),
    "numpy.cumprod": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, axis=1)),
    "numpy.diag": (lambda r: [_pos(r, (3,))], lambda f, x: f(x, k=1)),
    "numpy.diagonal": (lambda r: [_pos(r, (2, 3, 4))], lambda f, x: f(x, 1, 0, 2)),
    "numpy.diff": (lambda r: [_pos(r, (2, 4))], lambda f, x: f(x, 2, axis=1, prepend=0.5)),
    "numpy.gradient": (lambda r: [_pos(r, (3, 4))], lambda f, x: f(x, 0.5, 2.0, edge_order=2)),
    "numpy.imag": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x)),
    "numpy.inner": (lambda r: [_pos(r, (2, 3)), _pos(r, (4, 3))], lambda f, x, y: f(x, y)),
    "numpy.kron": (lambda r: [_pos(r, (2, 3)), _pos(r, (2, 2))], lambda f, x, y: f(x, y)),
    "numpy.linspace": (lambda r: [_pos(r, (2,)), _pos(r, (2,)) + 1.0],
                       lambda f, x, y: f(x, y, 5, axis=1)),
    "numpy.median": (lambda r: [_distinct(r, (2, 4))], lambda f, x: f(x, axis=1)),
    "numpy.meshgrid": (lambda r: [_pos(r, (3,)), _pos(r, (2,))],
                       lambda f, x, y: f(x, y, indexing="ij")),
    "numpy.moveaxis": (lambda r: [_pos(r, (2, 3, 4))], lambda f, x: f(x, 0, -1)),
    "numpy.nan_to_num": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, nan=1.0)),
    "numpy.partition": (lambda r: [_distinct(r, (2, 5))], lambda f, x: f(x, 2, axis=1)),
    "numpy.percentile": (lambda r: [_distinct(r, (2, 5))], lambda f, x: f(x, [20, 70], axis=1)),
    "numpy.quantile": (lambda r: [_distinct(r, (2, 5))],
                       lambda f, x: f(x, 0.3, axis=0, keepdims=True)),
    "numpy.real": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x)),
    "numpy.repeat": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, [1, 0, 2], axis=1)),
    "numpy.roll": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, 1, axis=1)),
    "numpy.rot90": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, 3)),
    "numpy.select": (lambda r: [_pos(r, (2, 3)), _pos(r, (2, 3))],
                     lambda f, x, y: f([x > 0.5, y > 0.5], [x, y], 0.25)),
    "numpy.sinc": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x)),
    "numpy.sort": (lambda r: [_distinct(r, (2, 3))], lambda f, x: f(x, axis=0)),
    "numpy.tile": (lambda r: [_pos(r, (2, 3))], lambda f, x: f(x, (2, 1))),
    "numpy.trace": (lambda r: [_pos(r, (3, 3))], lambda f, x: f(x, 1)),
    "numpy.tril": (lambda r: [_pos(r, (3, 3))], lambda f, x: f(x, -1)),
    "numpy.triu": (lambda r: [_pos(r, (3, 3))], lambda f, x: f(x, k=1)),
    "numpy.vdot": (lambda r: [_pos(r, (2, 3)), _pos(r, (3, 2))], lambda f, x, y: f(x, y)),
}


def _square(r, n=3, batch=()):
    """Well-conditioned matrices: positive entries plus 2 on the diagonal."""
    return _pos(r, batch + (n, n)) + 2.0 * np.eye(n)


def _rotation(r):
    """A real 3 x 3 matrix with eigenvalues near 0.3 +- 0.7i and 1.5."""
    return np.array([[0.3, 0.7, 0.1], [-0.7, 0.3, 0.2], [0.0, 0.1, 1.5]]) + 0.1 * _pos(r, (3, 3))


def _spd(r, n=3):
    x = _pos(r, (n, n))
    return x @ x.T + np.eye(n)


# numpy.linalg (ag.linalg); the eigenvector signs of NumPy's LAPACK are the ones ag returns
_FUNCTION_CASES.update({
    "numpy.linalg.cholesky": (lambda r: [_spd(r)], lambda f, x: f(x)),
    "numpy.linalg.det": (lambda r: [_square(r, 3, (2,))], lambda f, x: f(x)),
    "numpy.linalg.slogdet": (lambda r: [_square(r)], lambda f, x: f(x)),
    "numpy.linalg.inv": (lambda r: [_square(r)], lambda f, x: f(x)),
    "numpy.linalg.solve": (lambda r: [_square(r), _pos(r, (3,))], lambda f, x, y: f(x, y)),
    # (eigenvectors and singular vectors squared: ag fixes their signs, NumPy's LAPACK not)
    "numpy.linalg.eigh": (lambda r: [_spd(r)],
                          lambda f, x: (lambda w, v: (w, v * v))(*f(x, "U"))),
    "numpy.linalg.eigvalsh": (lambda r: [_spd(r)], lambda f, x: f(x)),
    "numpy.linalg.svd": (lambda r: [_pos(r, (4, 3))], lambda f, x: (
        lambda u, s, vh: (u * u, s, vh * vh))(*f(x, full_matrices=False))),
    "numpy.linalg.svdvals": (lambda r: [_pos(r, (3, 4))], lambda f, x: f(x)),
    "numpy.linalg.qr": (lambda r: [_pos(r, (4, 3))], lambda f, x: f(x)),
    "numpy.linalg.pinv": (lambda r: [_pos(r, (4, 3))], lambda f, x: f(x)),
    "numpy.linalg.lstsq": (lambda r: [_pos(r, (4, 3)), _pos(r, (4,))],
                           lambda f, x, y: f(x, y, rcond=None)),
    "numpy.linalg.matrix_power": (lambda r: [_square(r)], lambda f, x: f(x, 3)),
    "numpy.linalg.multi_dot": (lambda r: [_pos(r, (3,)), _pos(r, (3, 4)), _pos(r, (4, 2))],
                               lambda f, x, y, z: f([x, y, z])),
    "numpy.linalg.norm": (lambda r: [_pos(r, (3, 4))], lambda f, x: f(x, "nuc")),
    # (a complex pair, so that NumPy's results are complex too, as ag's always are)
    "numpy.linalg.eig": (lambda r: [_rotation(r)], lambda f, x: (lambda w, v: (
        np.real(w), np.imag(w), np.real(v * np.conj(v))))(*f(x))),
    "numpy.linalg.eigvals": (lambda r: [_rotation(r)], lambda f, x: f(x)),
})


def _table():
    from autograd_gpu.ops.numpy_protocol import dispatch_table

    return dispatch_table()


def _case(name, entry, rng):
    obj, method, _fn = entry
    if method is not None:
        return _reduce_case(obj, method, rng)
    if isinstance(obj, np.ufunc):
        return _ufunc_case(obj, rng)
    if name not in _FUNCTION_CASES:
        pytest.fail(f"{name} dispatches to an ag op but has no case in _FUNCTION_CASES: add one")
    make, call = _FUNCTION_CASES[name]
    return make(rng), call


def _outputs(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


@pytest.mark.parametrize("name", list(_table()))
def test_dispatch_table_entry_matches_numpy_value_and_central_differences(name):
    entry = _table()[name]
    obj = entry[0]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    inputs, call = _case(name, entry, rng)
    ref = _outputs(call(obj, *inputs))
    assert all(np.all(np.isfinite(r)) for r in ref if np.asarray(r).dtype.kind == "f"), \
        f"{name}: the case's inputs are outside the function's domain (non-finite values)"
    ts = [ag.Tensor.from_array(a) for a in inputs]
    diff = [t for t, a in zip(ts, inputs) if a.dtype == np.float64]
    with ag.GradientTape() as tape:
        tape.watch(diff)
        out = _outputs(call(obj, *ts))
        assert len(out) == len(ref)
        for y, r in zip(out, ref):
            assert isinstance(y, ag.Tensor), f"{name} returned {type(y).__name__}, not a Tensor"
            np.testing.assert_allclose(y.numpy(), r, rtol=1e-12, atol=1e-12, err_msg=name)
            assert y.dtype == np.asarray(r).dtype, f"{name}: dtype {y.dtype} vs NumPy's"
        ws = [rng.standard_normal(np.shape(r)) for r in ref]
        fl = [k for k, r in enumerate(ref) if np.asarray(r).dtype == np.float64]
        loss = None
        for k in fl:
            term = (out[k] * ag.Tensor.from_array(ws[k])).sum()
            loss = term if loss is None else loss + term
    if not diff or loss is None:
        return
    grads = tape.gradient(loss, diff, unconnected_gradients="zero")
    dirs = [rng.standard_normal(a.shape) if a.dtype == np.float64 else None for a in inputs]

    def f(xs):
        ys = _outputs(call(obj, *xs))
        return sum(float(np.sum(ws[k] * ys[k])) for k in fl)

    fd = (f([a + EPS * d if d is not None else a for a, d in zip(inputs, dirs)])
          - f([a - EPS * d if d is not None else a for a, d in zip(inputs, dirs)])) / (2 * EPS)
    got = sum(float(np.sum(g.numpy() * d)) for g, d in zip(grads, [d for d in dirs
                                                                   if d is not None]))
    assert abs(got - fd) <= 1e-6 * (1 + abs(fd)), f"{name}: gradient {got} vs central {fd}"


def test_every_numpy_name_that_ag_defines_as_an_op_dispatches():
    """Drift guard: a NumPy ufunc or function whose name ag defines as a function dispatches
    (or is a query), so an op added to ag later cannot be missed by the protocol."""
    from autograd_gpu.ops.numpy_protocol import QUERIES

    table = _table()
    missing = []
    for n in dir(np):
        obj = getattr(np, n)
        if not (isinstance(obj, np.ufunc) or hasattr(obj, "_implementation")):
            continue
        fn = getattr(ag, n, None)
        if not isinstance(fn, types.FunctionType) or fn.__module__.split(".")[1] != "ops":
            continue
        qual = f"numpy.{obj.__name__}"
        if qual not in table and obj.__name__ not in QUERIES:
            missing.append(n)
    assert not missing, f"ag defines these NumPy names but NumPy's calls do not reach them: " \
                        f"{missing}"


def test_ops_added_to_ag_later_are_picked_up_by_name(monkeypatch):
    def sinh(x):
        return (ag.exp(x) - ag.exp(-x)) * 0.5

    sinh.__module__ = "autograd_gpu.ops.elementwise"
    monkeypatch.setattr(ag, "sinh", sinh, raising=False)
    (g,) = _grad(lambda x: np.sinh(x), T(X))
    np.testing.assert_allclose(g.numpy(), np.cosh(X))

    linalg = types.ModuleType("autograd_gpu.linalg")

    def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002
        assert ord is None
        return ag.sqrt((x * x).sum(axis=axis, keepdims=keepdims))

    norm.__module__ = "autograd_gpu.linalg"
    linalg.norm = norm
    monkeypatch.setattr(ag, "linalg", linalg, raising=False)
    (g,) = _grad(lambda x: np.linalg.norm(x), T(X))
    np.testing.assert_allclose(g.numpy(), X / np.linalg.norm(X))
    with pytest.raises(TypeError, match=r"numpy\.linalg\.det.*ag\.linalg\.norm"):
        np.linalg.det(T(X[:, :2]))


# ---- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("call, nearest", [
    (lambda t: np.ldexp(t, 2), r"numpy\.ldexp.*nearest ag op by name is ag\.exp\b"),
    (lambda t: np.fmod(t, 2.0), r"numpy\.fmod.*ag\.mod\b"),
    (lambda t: np.nextafter(t, 1.0), r"numpy\.nextafter"),
    (lambda t: np.nancumprod(t), r"numpy\.nancumprod.*ag\.cumprod"),
    (lambda t: np.nanmean(t), r"numpy\.nanmean.*nearest ag op by name is ag\.mean\b"),
    (lambda t: np.linalg.tensorinv(t), r"numpy\.linalg\.tensorinv"),
])
def test_functions_without_an_op_raise_typeerror_naming_the_nearest_op(call, nearest):
    with pytest.raises(TypeError, match=nearest) as info:
        call(T(np.eye(2) + 0.5))
    assert isinstance(info.value, ag.AutogradError)


def test_a_ufunc_from_outside_numpy_is_refused():
    add = np.frompyfunc(lambda a, b: a + b, 2, 1)
    with pytest.raises(ag.ArgumentError, match="outside NumPy and SciPy"):
        add(T(X), T(X))
    with pytest.raises(ag.ArgumentError, match="outside NumPy and SciPy"):
        add.reduce(T(X))


def test_out_where_order_and_in_place_are_refused():
    x = T(X)
    with pytest.raises(ag.ArgumentError, match=r"numpy\.sin: argument 'out'.*immutable"):
        np.sin(x, out=np.empty_like(X))
    with pytest.raises(ag.ArgumentError, match=r"numpy\.sum: argument 'out'"):
        np.sum(x, out=np.empty(()))
    with pytest.raises(ag.ArgumentError, match="'out'"):
        x.sum(out=np.empty(()))
    arr = np.ones_like(X)
    with pytest.raises(ag.ArgumentError, match=r"numpy\.add: argument 'out'"):
        arr += x  # would write the values into arr, cut from the tape
    np.testing.assert_array_equal(arr, np.ones_like(X))
    with pytest.raises(ag.ArgumentError, match="'where'"):
        np.add(x, 1.0, where=X > 1)
    with pytest.raises(ag.ArgumentError, match="'where'"):
        np.sum(x, where=X > 1)
    np.testing.assert_allclose(np.sum(x, where=True).numpy(), X.sum())
    with pytest.raises(ag.ArgumentError, match="'order'"):
        np.reshape(x, (3, 2), order="F")
    with pytest.raises(ag.ArgumentError, match="'order'"):
        x.reshape(3, 2, order="F")
    with pytest.raises(ag.ArgumentError, match=r"numpy\.add\.at.*immutable.*index_add"):
        np.add.at(x, [0], 1.0)
    with pytest.raises(ag.ArgumentError, match="'initial'"):
        np.max(x, initial=10.0)
    with pytest.raises(ag.ArgumentError, match="'decimals'"):
        np.round(x, 2)
    with pytest.raises(ag.ArgumentError, match="'mode'"):
        np.pad(x, 1, mode="edge")


def test_dtype_is_honoured():
    x = T(X)
    assert np.sum(x, dtype=np.float32).dtype == np.float32
    assert np.add(x, 1, dtype=np.float32).dtype == np.float32
    assert np.sin(x, dtype=np.float32).dtype == np.float32
    assert np.add.reduce(x, dtype=np.float32).dtype == np.float32
    assert x.sum(dtype=np.float32).dtype == np.float32
    assert x.cumsum(0, np.float32).dtype == np.float32
    i = ag.Tensor.from_array(np.array([1, 2, 4]))
    assert np.mean(i, dtype=np.float64).dtype == np.float64
    # NumPy's own casting rule: float64 -> int64 is not same_kind
    with pytest.raises(ag.DTypeError, match="same_kind"):
        np.add(x, 1, dtype=np.int64)
    with pytest.raises(ag.DTypeError, match="casting"):
        np.add(x, T(X).astype(np.float32), casting="no")
    with pytest.raises(ag.DTypeError):
        x.astype(np.int64, casting="safe")
    # the cast is differentiable
    (g,) = _grad(lambda t: np.sum(t * t, dtype=np.float32), x)
    assert g.dtype == np.float64
    np.testing.assert_allclose(g.numpy(), 2 * X, rtol=1e-6)


def test_numpy_method_signatures_table():
    x, a = T(X), X
    calls = [
        ("sum", (), {}), ("sum", (1,), {"keepdims": True}), ("sum", (None, None, None, False), {}),
        ("sum", (), {"initial": 0}),
        ("mean", (0,), {}), ("mean", (), {"axis": (0, 1), "keepdims": True}),
        ("prod", (1, None, None, True), {}), ("max", (0,), {}), ("min", (1, None, True), {}),
        ("std", (), {"ddof": 1}), ("std", (0, None, None, 1), {}), ("var", (), {"ddof": 1}),
        ("argmax", (1,), {}), ("argmin", (None, None), {"keepdims": False}),
        ("argmax", (0,), {"keepdims": True}),
        ("any", (0,), {}), ("all", (None,), {"keepdims": True}), ("cumsum", (1,), {}),
        ("clip", (1.0, 3.0), {}), ("clip", (), {"min": 2.0}), ("astype", (np.float32,), {}),
        ("reshape", (3, 2), {}), ("reshape", ((3, 2),), {}), ("reshape", (-1,), {}),
        ("transpose", (), {}), ("transpose", (1, 0), {}), ("transpose", ((1, 0),), {}),
        ("round", (), {}), ("take", ([0, 2],), {"axis": 1}), ("take", ([0, 5],), {}),
        ("ravel", (), {}), ("dot", (np.ones((3, 2)),), {}), ("squeeze", (), {}),
        ("swapaxes", (0, 1), {}),
    ]
    for name, args, kw in calls:
        want = getattr(a, name)(*args, **kw)
        got = getattr(x, name)(*args, **kw)
        assert isinstance(got, ag.Tensor), (name, args, kw)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, err_msg=f"{name}{args}{kw}")
        assert got.dtype == want.dtype, (name, args, kw, got.dtype, want.dtype)
    np.testing.assert_allclose(x.var(correction=1).numpy(), np.var(X, correction=1))
    # and the gradient flows through them
    (g,) = _grad(lambda t: t.std(0, None, None, 1), x)
    np.testing.assert_allclose(g.numpy(), (X - X.mean(0)) / (X.std(0, ddof=1) * (2 - 1)))


def test_queries_give_numpys_answers():
    x = T(X)
    assert np.shape(x) == (2, 3) and np.ndim(x) == 2 and np.size(x) == 6 and np.size(x, 1) == 3
    assert np.result_type(x, np.float32) == np.float64
    assert np.result_type(x.astype(np.float32), 1.0) == np.float32
    assert np.can_cast(x, np.float32) is False
    assert not np.iscomplexobj(x) and np.isrealobj(x)
    assert np.may_share_memory(x, x.numpy()) and not np.may_share_memory(x, X.copy())
    assert np.shares_memory(x, x.numpy())
    assert np.allclose(x, X) and np.array_equal(x, X) and not np.array_equal(x, X + 1)
    close = np.isclose(x, X[0])
    assert isinstance(close, ag.Tensor)
    np.testing.assert_array_equal(close.numpy(), np.isclose(X, X[0]))
    assert np.count_nonzero(x > 2) == int(np.count_nonzero(X > 2))


def test_variables_forward_mode_and_second_order_through_numpy():
    v = ag.Variable(X, name="w")
    with ag.GradientTape() as tape:
        y = np.sum(np.sin(v) * A)
    (g,) = tape.gradient(y, [v])
    np.testing.assert_allclose(g.numpy(), np.cos(X) * A)
    x = T(X)
    with ag.ForwardAccumulator(x, T(np.ones_like(X))) as acc:
        y = np.exp(x) % 7.0
    np.testing.assert_allclose(acc.jvp(y).numpy(), np.exp(X))
    d2 = ag.grad(ag.grad(lambda t: np.sum(np.sin(t))))(T(0.3))
    np.testing.assert_allclose(d2.numpy(), -np.sin(0.3))


# ---- devices ------------------------------------------------------------------------------------

def _other_device_tensor(values):
    """A tensor that reports another device: the NumPy backend under another name and device
    (the device checks run before any array op, so no GPU is needed to reach them)."""
    from autograd_gpu.backend.base import Device
    from autograd_gpu.backend.numpy_backend import NumpyBackend

    class OtherDevice(NumpyBackend):  # a device whose arrays are not host arrays
        name = "other-device"
        is_host = False

        def __init__(self):
            super().__init__()
            self.device = Device("cuda:0")

    return ag.Tensor(np.asarray(values, np.float64), OtherDevice())


@pytest.mark.parametrize("call", [
    lambda a, t: a * t, lambda a, t: np.multiply(a, t), lambda a, t: np.add(t, a),
    lambda a, t: a % t, lambda a, t: a ** t, lambda a, t: np.maximum(a, t),
    lambda a, t: np.concatenate([a, t]), lambda a, t: np.where(a > 0, t, a),
    lambda a, t: np.dot(a, t), lambda a, t: np.array_equal(a, t),
])
def test_numpy_array_with_a_tensor_on_another_device_raises_device_error(call):
    t = _other_device_tensor([1.0, 2.0, 3.0])
    with pytest.raises(ag.DeviceError):
        call(np.array([0.5, 1.5, 2.5]), t)


@pytest.mark.gpu
def test_cupy_arrays_and_gpu_tensors_through_numpy():
    import cupy as cp

    x = ag.Tensor.from_array(X, device="cuda")
    c = cp.asarray(A)
    y = np.sin(x)
    assert isinstance(y, ag.Tensor) and y.device == x.device
    np.testing.assert_allclose(y.numpy(), np.sin(X))
    for fn in (lambda t: np.multiply(t, c), lambda t: c * t, lambda t: np.add(c, t),
               lambda t: t % c, lambda t: np.sum(t * c, axis=0)):
        with ag.GradientTape() as tape:
            tape.watch(x)
            out = fn(x)
            assert isinstance(out, ag.Tensor) and out.device == x.device
            s = out.sum()
        (g,) = tape.gradient(s, [x])
        assert g is not None and g.device == x.device
    (g,) = _grad(lambda t: c * t, x)
    np.testing.assert_allclose(g.numpy(), A)
    assert np.shape(x) == X.shape and np.may_share_memory(x, X) is False
    for call in (lambda t: np.ones(3) * t[0], lambda t: np.add(np.ones(3), t[0]),
                 lambda t: np.concatenate([np.ones((1, 3)), t])):
        with pytest.raises(ag.DeviceError):
            call(x)

