"""ag.stats against scipy.stats (values), central differences (gradients) and
torch.distributions (values and gradients, where it has the same function)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as ss

import autograd_gpu as ag
from autograd_gpu import stats

try:  # optional: the PyTorch comparisons skip without it
    import torch
except ImportError:  # pragma: no cover
    torch = None


def T(a):
    return ag.Tensor.from_array(np.asarray(a, dtype=np.float64))


X = np.array([-3.0, -0.5, 0.0, 1e-12, 0.3, 2.0, 7.0, 40.0])
XB = np.array([-0.1, 0.0, 1e-3, 0.2, 0.5, 0.9, 1.0, 1.3])
K = np.array([-1.0, 0.0, 1.0, 2.5, 3.0, 10.0, 30.0])
CONT = ["logpdf", "pdf", "cdf", "logcdf", "sf", "logsf"]

# (ag distribution, scipy distribution, x values, parameters after x)
CASES = {
    "norm": (stats.norm, ss.norm, X, (0.5, 2.0)),
    "t": (stats.t, ss.t, X, (3.5, 0.5, 2.0)),
    "t_heavy": (stats.t, ss.t, X, (0.7,)),
    "t_light": (stats.t, ss.t, X, (250.0, -0.2)),
    "beta": (stats.beta, ss.beta, XB, (2.5, 0.7)),
    "beta_loc": (stats.beta, ss.beta, X, (0.6, 3.0, -4.0, 50.0)),
    "chi2": (stats.chi2, ss.chi2, X, (3.0, 0.1, 1.5)),
    "chi2_2": (stats.chi2, ss.chi2, X, (2.0,)),
    "gamma": (stats.gamma, ss.gamma, X, (2.2, -1.0, 0.7)),
    "gamma_small": (stats.gamma, ss.gamma, X, (0.4,)),
}


def _np(t):
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)


@pytest.mark.parametrize("fn", CONT)
@pytest.mark.parametrize("case", sorted(CASES))
def test_continuous_values_match_scipy(case, fn):
    ours, theirs, x, params = CASES[case]
    got = _np(getattr(ours, fn)(T(x), *params))
    want = getattr(theirs, fn)(x, *params)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("fn", ["logpmf", "pmf", "cdf", "logcdf", "sf", "logsf"])
@pytest.mark.parametrize("mu", [0.2, 3.3, 40.0])
def test_poisson_values_match_scipy(fn, mu):
    got = _np(getattr(stats.poisson, fn)(T(K), mu))
    want = getattr(ss.poisson, fn)(K, mu)
    # logcdf far right: ours is log1p(-sf) (-5.9e-20 at k = 30, mu = 3.3, the exact value to
    # 16 digits), SciPy's log(cdf) rounds to 0 or -4.4e-16
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    # integer counts and a shift
    got = _np(getattr(stats.poisson, fn)(ag.Tensor.from_array(np.arange(6)), mu, loc=1))
    np.testing.assert_allclose(got, getattr(ss.poisson, fn)(np.arange(6), mu, loc=1),
                               rtol=1e-9, atol=1e-15)


def test_tails_are_accurate():
    # far tails: log forms keep digits that 1 - p loses
    np.testing.assert_allclose(_np(stats.norm.logsf(T([40.0]))), ss.norm.logsf(40.0),
                               rtol=1e-12)
    np.testing.assert_allclose(_np(stats.t.sf(T([1e6]), 3.0)), ss.t.sf(1e6, 3.0), rtol=1e-10)
    np.testing.assert_allclose(_np(stats.t.logcdf(T([1e3]), 3.0)), ss.t.logcdf(1e3, 3.0),
                               rtol=1e-8)
    np.testing.assert_allclose(_np(stats.gamma.logcdf(T([60.0]), 2.0)), ss.gamma.logcdf(60.0, 2.0),
                               rtol=1e-10)


def test_invalid_parameters_give_nan_as_scipy():
    for ours, theirs, args in [
        (stats.norm.logpdf, ss.norm.logpdf, (1.0, 0.0, -1.0)),
        (stats.t.cdf, ss.t.cdf, (1.0, -2.0)),
        (stats.beta.logpdf, ss.beta.logpdf, (0.5, -1.0, 2.0)),
        (stats.gamma.cdf, ss.gamma.cdf, (0.5, 0.0)),
        (stats.poisson.logpmf, ss.poisson.logpmf, (2.0, -1.0)),
    ]:
        got = _np(ours(T([args[0]]), *args[1:]))
        assert np.isnan(got).all() and np.isnan(theirs(*args))


def test_python_numbers_give_float64_tensors():
    r = stats.norm.logpdf(0.3)
    assert isinstance(r, ag.Tensor) and r.dtype == np.float64
    np.testing.assert_allclose(_np(r), ss.norm.logpdf(0.3), rtol=1e-14)


def test_float32_inputs_stay_float32():
    x = ag.Tensor.from_array(np.array([0.1, 0.5], np.float32))
    r = stats.gamma.logpdf(x, 2.0)
    assert r.dtype == np.float32
    np.testing.assert_allclose(_np(r), ss.gamma.logpdf([0.1, 0.5], 2.0), rtol=1e-5)


# ---- gradients against central differences of SciPy -------------------------------------


def _central(f, args, i, h=1e-6):
    a = [np.array(v, dtype=np.float64) for v in args]
    up = [v.copy() for v in a]
    dn = [v.copy() for v in a]
    out = np.zeros_like(a[i])
    for j in np.ndindex(a[i].shape):
        up[i][j] += h
        dn[i][j] -= h
        out[j] = (np.sum(f(*up)) - np.sum(f(*dn))) / (2 * h)
        up[i][j] = a[i][j]
        dn[i][j] = a[i][j]
    return out


def _grads(f, args):
    ts = [T(a) for a in args]
    g = ag.grad(lambda *xs: ag.sum(f(*xs)), argnums=tuple(range(len(ts))))(*ts)
    return [_np(gi) for gi in g]


GRAD_CASES = [
    # (name, ag function, scipy function, args (x first), which args to check)
    ("norm.logpdf", stats.norm.logpdf, ss.norm.logpdf, ([-1.0, 0.2, 3.0], 0.4, 1.7), (0, 1, 2)),
    ("norm.cdf", stats.norm.cdf, ss.norm.cdf, ([-1.0, 0.2, 3.0], 0.4, 1.7), (0, 1, 2)),
    ("norm.logsf", stats.norm.logsf, ss.norm.logsf, ([-1.0, 0.2, 9.0], 0.4, 1.7), (0, 1, 2)),
    ("t.logpdf", stats.t.logpdf, ss.t.logpdf, ([-1.0, 0.2, 3.0], 2.5, 0.4, 1.7), (0, 1, 2, 3)),
    ("t.cdf", stats.t.cdf, ss.t.cdf, ([-4.0, -0.3, 0.2, 3.0, 30.0], 2.5, 0.1, 1.7), (0, 2, 3)),
    ("t.logsf", stats.t.logsf, ss.t.logsf, ([-4.0, -0.3, 0.2, 3.0], 4.5), (0,)),
    ("beta.logpdf", stats.beta.logpdf, ss.beta.logpdf, ([0.1, 0.45, 0.8], 2.5, 1.7), (0, 1, 2)),
    ("beta.cdf", stats.beta.cdf, ss.beta.cdf, ([0.1, 0.45, 0.8], 2.5, 1.7), (0,)),
    ("beta.logsf", stats.beta.logsf, ss.beta.logsf, ([0.1, 0.45, 0.8], 2.5, 1.7, -0.1, 1.3),
     (0, 3, 4)),
    ("chi2.logpdf", stats.chi2.logpdf, ss.chi2.logpdf, ([0.5, 2.0, 7.0], 3.5, 0.1, 1.2),
     (0, 1, 2, 3)),
    ("chi2.sf", stats.chi2.sf, ss.chi2.sf, ([0.5, 2.0, 7.0], 3.5), (0,)),
    ("gamma.logpdf", stats.gamma.logpdf, ss.gamma.logpdf, ([0.5, 2.0, 7.0], 2.2, 0.1, 1.2),
     (0, 1, 2, 3)),
    ("gamma.logcdf", stats.gamma.logcdf, ss.gamma.logcdf, ([0.5, 2.0, 7.0], 2.2, 0.1, 1.2),
     (0, 2, 3)),
    ("poisson.logpmf", stats.poisson.logpmf, ss.poisson.logpmf, ([0.0, 2.0, 7.0], 3.1), (1,)),
    ("poisson.cdf", stats.poisson.cdf, ss.poisson.cdf, ([0.0, 2.0, 7.0], 3.1), (1,)),
    ("poisson.logsf", stats.poisson.logsf, ss.poisson.logsf, ([0.0, 2.0, 7.0], 3.1), (1,)),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradients_match_central_differences(case):
    _, ours, theirs, args, which = case
    args = [np.asarray(a, dtype=np.float64) for a in args]
    got = _grads(ours, args)
    for i in which:
        want = _central(theirs, args, i)
        np.testing.assert_allclose(got[i], want, rtol=2e-6, atol=1e-8, err_msg=f"argument {i}")


def test_t_cdf_at_zero_has_the_density_as_derivative():
    # z == 0 exactly: both betainc forms meet inf * 0 in the chain rule; the value there is
    # 1/2 + z pdf(0), whose first derivative is pdf(0) and second 0
    for df in (0.7, 3.0, 40.0):
        x = T(0.0)
        g = ag.grad(lambda v: stats.t.cdf(v, df))(x)
        np.testing.assert_allclose(_np(g), ss.t.pdf(0.0, df), rtol=1e-12)
        g2 = ag.grad(ag.grad(lambda v: stats.t.cdf(v, df)))(x)
        assert _np(g2) == 0.0
        # and near zero the gradient is finite and continuous
        g_near = ag.grad(lambda v: stats.t.cdf(v, df))(T(1e-9))
        np.testing.assert_allclose(_np(g_near), ss.t.pdf(1e-9, df), rtol=1e-9)


def test_second_derivative_of_logpdf_in_scale():
    # d^2/ds^2 of the normal logpdf at x = 0: 1/s^2 - 3 x^2 / s^4 -> 1/s^2
    h = ag.grad(ag.grad(lambda s: stats.norm.logpdf(T(0.0), 0.0, s)))(T(1.5))
    np.testing.assert_allclose(_np(h), 1 / 1.5 ** 2, rtol=1e-12)


def test_cdf_gradient_in_shape_parameters_is_nan():
    # betainc/gammainc have no derivative in their parameters here: NaN, never a silent 0
    for f, args in [(stats.beta.cdf, (0.3, 2.0, 3.0)), (stats.gamma.cdf, (0.3, 2.0)),
                    (stats.chi2.sf, (0.3, 2.0)), (stats.t.cdf, (0.3, 2.0))]:
        ts = [T(a) for a in args]
        g = ag.grad(lambda *xs: ag.sum(f(*xs)), argnums=tuple(range(len(ts))))(*ts)
        assert np.isfinite(_np(g[0])).all()
        assert np.isnan(_np(g[1])).all()


# ---- dirichlet and multivariate normal --------------------------------------------------


def test_dirichlet_matches_scipy_and_central_differences():
    alpha = np.array([1.5, 2.0, 0.7])
    xd = np.array([[0.2, 0.3], [0.5, 0.1], [0.3, 0.6]])
    np.testing.assert_allclose(_np(stats.dirichlet.logpdf(T(xd), T(alpha))),
                               ss.dirichlet.logpdf(xd, alpha), rtol=1e-12)
    np.testing.assert_allclose(_np(stats.dirichlet.pdf(T(xd[:, 0]), T(alpha))),
                               ss.dirichlet.pdf(xd[:, 0], alpha), rtol=1e-12)
    np.testing.assert_allclose(_np(stats.dirichlet.logpdf(T(xd[:2]), T(alpha))),
                               ss.dirichlet.logpdf(xd[:2], alpha), rtol=1e-12)
    g = _grads(lambda a: stats.dirichlet.logpdf(T(xd), a), [alpha])[0]
    np.testing.assert_allclose(g, _central(lambda a: ss.dirichlet.logpdf(xd, a), [alpha], 0),
                               rtol=1e-6)
    # off the simplex: -inf (SciPy raises)
    assert _np(stats.dirichlet.logpdf(T([0.5, 0.6, 0.1]), T(alpha))) == -np.inf


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + d * np.eye(d)


def test_multivariate_normal_matches_scipy():
    rng = np.random.default_rng(0)
    c, m, x = _spd(rng, 4), rng.normal(size=4), rng.normal(size=(5, 4))
    mvn, smvn = stats.multivariate_normal, ss.multivariate_normal
    np.testing.assert_allclose(_np(mvn.logpdf(T(x), T(m), T(c))), smvn.logpdf(x, m, c),
                               rtol=1e-12)
    np.testing.assert_allclose(_np(mvn.pdf(T(x[0]), T(m), T(c))), smvn.pdf(x[0], m, c),
                               rtol=1e-12)
    assert mvn.pdf(T(x[0]), T(m), T(c)).shape == ()
    np.testing.assert_allclose(_np(mvn.entropy(T(m), T(c))), smvn.entropy(m, c), rtol=1e-12)
    np.testing.assert_allclose(_np(mvn.logpdf(T(x), T(m), T(np.diag(c)))),
                               smvn.logpdf(x, m, np.diag(c)), rtol=1e-12)
    np.testing.assert_allclose(_np(mvn.logpdf(T(x[:, 0]), 0.3, 2.0)),
                               smvn.logpdf(x[:, 0], 0.3, 2.0), rtol=1e-12)
    np.testing.assert_allclose(_np(mvn.logpdf(T(x.reshape(5, 1, 4)), T(m), T(c))),
                               smvn.logpdf(x, m, c), rtol=1e-12)
    # a singular covariance with allow_singular: SciPy's pseudo-density, -inf off the support
    b = rng.normal(size=(4, 2))
    s = b @ b.T
    xs = rng.normal(size=(3, 2)) @ b.T
    np.testing.assert_allclose(_np(mvn.logpdf(T(xs), None, T(s), allow_singular=True)),
                               smvn.logpdf(xs, None, s, allow_singular=True), rtol=1e-8)
    assert (_np(mvn.logpdf(T(x), None, T(s), allow_singular=True)) == -np.inf).all()


def test_multivariate_normal_gradients():
    rng = np.random.default_rng(1)
    c, m, x = _spd(rng, 3), rng.normal(size=3), rng.normal(size=(4, 3))
    got = _grads(stats.multivariate_normal.logpdf, [x, m, c])

    def sym(fun):  # SciPy reads a symmetric cov; perturb symmetrically like our symmetric part
        return lambda xx, mm, cc: fun(xx, mm, 0.5 * (cc + cc.T))

    want = [_central(sym(ss.multivariate_normal.logpdf), [x, m, c], i) for i in range(3)]
    for i in range(3):
        np.testing.assert_allclose(got[i], want[i], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got[2], got[2].T, rtol=1e-14)  # a symmetric gradient
    ge = _grads(lambda cc: stats.multivariate_normal.entropy(None, cc), [c])[0]
    np.testing.assert_allclose(ge, 0.5 * np.linalg.inv(c), rtol=1e-10)


def test_multivariate_normal_errors():
    mvn = stats.multivariate_normal
    with pytest.raises(ag.LinAlgError):
        mvn.logpdf(T([0.0, 0.0]), T([0.0, 0.0]), T([[1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ag.ShapeError):
        mvn.logpdf(T([0.0, 0.0, 0.0]), T([0.0, 0.0]), T(np.eye(2)))
    with pytest.raises(ag.ShapeError):
        mvn.logpdf(T([0.0, 0.0]), T([0.0, 0.0]), T(np.ones((2, 3))))
    with pytest.raises(ag.ShapeError):
        mvn.logpdf(T([0.0, 0.0]), T([0.0, 0.0]), T(np.eye(3)))


def test_bad_input():
    with pytest.raises(ag.DTypeError, match="norm.logpdf.*'x'"):
        stats.norm.logpdf(ag.Tensor.from_array(np.array([1, 2])))
    with pytest.raises(ag.DTypeError, match="gamma.cdf.*'a'"):
        stats.gamma.cdf(T([1.0]), ag.Tensor.from_array(np.array([1, 2])))
    with pytest.raises(ag.ArgumentError):
        stats.norm.logpdf("x")
    with pytest.raises(ag.ShapeError):
        stats.dirichlet.logpdf(T([0.5, 0.5]), T([[1.0, 1.0]]))
    with pytest.raises(ag.ShapeError):
        stats.dirichlet.logpdf(T([0.2, 0.2, 0.2, 0.4]), T([1.0, 1.0]))


# ---- torch.distributions ----------------------------------------------------------------

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


def _torch_grads(dist_fn, method, args):
    ts = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in args]
    out = getattr(dist_fn(*ts[1:]), method)(ts[0]).sum()
    out.backward()
    return float(out), [t.grad.numpy() for t in ts]


TORCH_CASES = [
    ("norm.logpdf", stats.norm.logpdf, lambda m, s: torch.distributions.Normal(m, s),
     "log_prob", ([-1.0, 0.2, 3.0], 0.4, 1.7)),
    ("norm.cdf", stats.norm.cdf, lambda m, s: torch.distributions.Normal(m, s), "cdf",
     ([-1.0, 0.2, 3.0], 0.4, 1.7)),
    ("t.logpdf", stats.t.logpdf, lambda df, m, s: torch.distributions.StudentT(df, m, s),
     "log_prob", ([-1.0, 0.2, 3.0], 2.5, 0.4, 1.7)),
    ("beta.logpdf", stats.beta.logpdf, lambda a, b: torch.distributions.Beta(a, b),
     "log_prob", ([0.1, 0.45, 0.8], 2.5, 1.7)),
    ("chi2.logpdf", stats.chi2.logpdf, lambda df: torch.distributions.Chi2(df), "log_prob",
     ([0.5, 2.0, 7.0], 3.5)),
    ("gamma.logpdf", stats.gamma.logpdf, lambda a: torch.distributions.Gamma(a, 1.0),
     "log_prob", ([0.5, 2.0, 7.0], 2.2)),
    ("poisson.logpmf", stats.poisson.logpmf, lambda mu: torch.distributions.Poisson(mu),
     "log_prob", ([0.0, 2.0, 7.0], 3.1)),
]


@needs_torch
@pytest.mark.parametrize("case", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_against_torch_distributions(case):
    _, ours, make, method, args = case
    args = [np.asarray(a, dtype=np.float64) for a in args]
    want_val, want_grads = _torch_grads(make, method, args)
    ts = [T(a) for a in args]
    val = ag.sum(ours(*ts))
    np.testing.assert_allclose(_np(val), want_val, rtol=1e-12)
    which = range(1, len(args)) if case[0] == "poisson.logpmf" else range(len(args))
    got = _grads(ours, args)
    for i in which:
        np.testing.assert_allclose(got[i], want_grads[i], rtol=1e-10, atol=1e-12)


@needs_torch
def test_against_torch_dirichlet_and_mvn():
    rng = np.random.default_rng(2)
    alpha = np.array([1.5, 2.0, 0.7])
    x = np.array([0.2, 0.5, 0.3])
    ta = torch.tensor(alpha, requires_grad=True)
    lp = torch.distributions.Dirichlet(ta).log_prob(torch.tensor(x))
    lp.backward()
    g = _grads(lambda a: stats.dirichlet.logpdf(T(x), a), [alpha])[0]
    np.testing.assert_allclose(_np(stats.dirichlet.logpdf(T(x), T(alpha))), float(lp),
                               rtol=1e-12)
    np.testing.assert_allclose(g, ta.grad.numpy(), rtol=1e-10)
    c, m, xs = _spd(rng, 3), rng.normal(size=3), rng.normal(size=(4, 3))
    tc = torch.tensor(c, requires_grad=True)
    tm = torch.tensor(m, requires_grad=True)
    d = torch.distributions.MultivariateNormal(tm, covariance_matrix=tc)
    (d.log_prob(torch.tensor(xs)).sum() + d.entropy()).backward()
    got = _grads(lambda mm, cc: ag.sum(stats.multivariate_normal.logpdf(T(xs), mm, cc))
                 + stats.multivariate_normal.entropy(mm, cc), [m, c])
    np.testing.assert_allclose(got[0], tm.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(got[1], tc.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_namespaces_list_their_functions():
    assert stats.norm.functions == ("logpdf", "pdf", "cdf", "logcdf", "sf", "logsf", "ppf",
                                    "isf")
    assert set(stats.poisson.functions) == {"logpmf", "pmf", "cdf", "logcdf", "sf", "logsf"}
    assert set(stats.multivariate_normal.functions) == {"logpdf", "pdf", "entropy"}
    assert stats.norm.logpdf.__name__ == "norm.logpdf"
    assert math.isclose(float(_np(stats.norm.ppf(T(0.975)))), ss.norm.ppf(0.975), rel_tol=1e-12)
