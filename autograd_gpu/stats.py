"""ag.stats: probability distributions on tensors, differentiable, as scipy.stats names and
signatures them (and as jax.scipy.stats does).

Each distribution is a namespace of functions: ``ag.stats.norm.logpdf(x, loc=0, scale=1)``,
``ag.stats.gamma.cdf(x, a, loc=0, scale=1)``, ``ag.stats.poisson.logpmf(k, mu, loc=0)``,
``ag.stats.multivariate_normal.logpdf(x, mean=None, cov=1)``. Every function is a composition
of ag ops and ag.special primitives (gammaln, betaln, betainc, gammainc, gammaincc, ndtr,
log_ndtr, xlogy, xlog1py): gradients come from those ops' rules, and so do higher
derivatives. multivariate_normal goes through ag.linalg.cholesky and solve_triangular.

Arguments are tensors, NumPy/CuPy arrays or Python numbers, broadcast against each other as
SciPy broadcasts them. Differentiable arguments must be floating (an integer tensor raises
DTypeError; poisson's counts k may be integer). Values follow SciPy's conventions: outside the
support a density is 0 (logpdf -inf), cdf 0 or 1; a non-positive scale gives NaN.

Derivatives: in x, loc, scale and every shape parameter of the densities (logpdf/pdf,
logpmf/pmf, multivariate_normal's mean and cov, entropy). The distribution functions
(cdf/sf/logcdf/logsf) are differentiable in x, loc and scale and in poisson's mu; their
derivative in a shape parameter that enters a regularized incomplete gamma or beta function as
its parameter (gamma's a, chi2's df, beta's a and b, t's df) is not implemented by those
primitives: where such a parameter is tracked, its gradient is NaN (never a silent zero; JAX
raises for betainc's, computes gammainc's). ag.special documents the NaN convention.

Differences from SciPy: dirichlet returns -inf (pdf 0) for x outside the simplex instead of
raising ValueError (the check would make a GPU wait for the host; JAX does the same);
multivariate_normal has no cdf/logcdf (SciPy integrates it by randomized quasi-Monte Carlo,
which has no derivative), and its entropy needs a positive-definite cov.
"""

from __future__ import annotations

import math
import numbers

from . import dtypes as _dt
from . import linalg as _la
from . import special as _sp
from .errors import ArgumentError, DTypeError, ShapeError, describe
from .ops import api as _api
from .ops._util import as_tensor
from .tensor import Tensor

__all__ = ["norm", "t", "beta", "chi2", "gamma", "poisson", "dirichlet", "multivariate_normal",
           "Distribution"]

_LOG_2PI = math.log(2.0 * math.pi)
_HALF_LOG_2PI = 0.5 * _LOG_2PI
_LN2 = math.log(2.0)
_NAN = float("nan")
_INF = float("inf")


class Distribution:
    """A namespace of a distribution's functions (``norm.logpdf``, ``norm.cdf``, ...)."""

    def __init__(self, name: str, doc: str, **functions):
        self.name = name
        self.__doc__ = doc
        self._functions = tuple(functions)
        for k, fn in functions.items():
            fn.__name__ = fn.__qualname__ = f"{name}.{k}"
            setattr(self, k, fn)

    @property
    def functions(self) -> tuple:
        """The names of the functions this distribution has."""
        return self._functions

    def __repr__(self) -> str:
        return f"ag.stats.{self.name}({', '.join(self._functions)})"


# ---- arguments ------------------------------------------------------------------------------


def _first_tensor(args):
    for a in args:
        if isinstance(a, Tensor):
            return a
    return None


def _arg(x, fn, name, like, integer_ok=False):
    """A numeric argument: a Python real number stays one; arrays and lists become tensors on
    ``like``'s device; a tensor must be floating (integer ones only where ``integer_ok``: they
    are cast to float64)."""
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    t = as_tensor(x, like, name, fn)
    if not isinstance(t, Tensor):
        raise ArgumentError(f"{fn}: argument '{name}' expected a tensor or a real number, got "
                            f"{describe(x)}")
    if _dt.is_floating(t.dtype):
        return t
    if integer_ok and t.dtype.kind in "iu":
        return _api.astype(t, "float64")
    raise DTypeError(f"{fn}: argument '{name}' expected a floating dtype (float16, bfloat16, "
                     f"float32, float64), got {_dt.name(t.dtype)} (cast it with .astype)")


def _args(fn, names, values, integer_ok=()):
    """The arguments converted (see _arg); the first becomes a float64 tensor when none is a
    tensor, so that every result is a tensor."""
    like = _first_tensor(values)
    out = [_arg(v, fn, n, like, n in integer_ok) for n, v in zip(names, values)]
    if _first_tensor(out) is None:
        out[0] = Tensor.from_array(out[0], dtype="float64")
    return out


def _nan_unless(cond, value):
    """value where cond, NaN elsewhere (cond a Python bool or a boolean tensor)."""
    if isinstance(cond, bool):
        return value if cond else value * _NAN
    return _api.where(cond, value, _NAN)


def _positive(p):
    """p > 0: a Python bool for a number, a boolean tensor for a tensor."""
    return p > 0 if isinstance(p, float) else _api.greater(p, 0.0)


def _both(c1, c2):
    if isinstance(c1, bool):
        return c2 if c1 else False
    if isinstance(c2, bool):
        return c1 if c2 else False
    return _api.logical_and(c1, c2)


def _standardize(x, loc, scale):
    return (x - loc) / scale


def _safe(cond, x, fill):
    """x where cond, else ``fill``: the input of a branch that is only used where cond holds,
    so that the unused branch computes nothing infinite (its zero cotangent times an infinite
    derivative would be NaN)."""
    return _api.where(cond, x, fill)


def _log(v):
    return _api.log(v)


def _gammaln(v):
    """gammaln of a tensor, or of a Python number in Python (a number would become a float64
    tensor and promote a float32 result)."""
    return math.lgamma(v) if isinstance(v, float) and v > 0 else _sp.gammaln(v)


def _betaln(a, b):
    if isinstance(a, float) and isinstance(b, float) and a > 0 and b > 0:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return _sp.betaln(a, b)


def _log_pair(p, q):
    """log(p) given p and its complement q = 1 - p, each computed directly: log(p) where
    p <= 1/2, log1p(-q) above (log(p) would round p's last digits away: SciPy's logcdf of a
    gamma at its far right is -4.5e-24, not 0). Each branch gets a safe input where unused."""
    upper = _api.greater(p, 0.5)
    return _api.where(upper, _api.log1p(-_safe(upper, q, 0.5)),
                      _api.log(_safe(upper, 0.5, p)))


# ---- norm -----------------------------------------------------------------------------------


def _norm(fn, x, loc, scale):
    x, loc, scale = _args(f"norm.{fn}", ("x", "loc", "scale"), (x, loc, scale))
    return _standardize(x, loc, scale), scale


def _norm_logpdf(x, loc=0, scale=1):
    z, scale = _norm("logpdf", x, loc, scale)
    return _nan_unless(_positive(scale), -0.5 * _api.square(z) - _log_of(scale) - _HALF_LOG_2PI)


def _log_of(p):
    return math.log(p) if isinstance(p, float) and p > 0 else (
        _NAN if isinstance(p, float) else _api.log(p))


def _norm_pdf(x, loc=0, scale=1):
    return _api.exp(_norm_logpdf(x, loc, scale))


def _norm_cdf(x, loc=0, scale=1):
    z, scale = _norm("cdf", x, loc, scale)
    return _nan_unless(_positive(scale), _sp.ndtr(z))


def _norm_logcdf(x, loc=0, scale=1):
    z, scale = _norm("logcdf", x, loc, scale)
    return _nan_unless(_positive(scale), _sp.log_ndtr(z))


def _norm_sf(x, loc=0, scale=1):
    z, scale = _norm("sf", x, loc, scale)
    return _nan_unless(_positive(scale), _sp.ndtr(-z))


def _norm_logsf(x, loc=0, scale=1):
    z, scale = _norm("logsf", x, loc, scale)
    return _nan_unless(_positive(scale), _sp.log_ndtr(-z))


def _norm_ppf(q, loc=0, scale=1):
    q, loc, scale = _args("norm.ppf", ("q", "loc", "scale"), (q, loc, scale))
    return _nan_unless(_positive(scale), loc + scale * _sp.ndtri(q))


def _norm_isf(q, loc=0, scale=1):
    q, loc, scale = _args("norm.isf", ("q", "loc", "scale"), (q, loc, scale))
    return _nan_unless(_positive(scale), loc - scale * _sp.ndtri(q))


norm = Distribution(
    "norm", "The normal distribution N(loc, scale^2) (scipy.stats.norm): logpdf, pdf, cdf, "
    "logcdf, sf, logsf, ppf, isf. cdf/sf through ag.special.ndtr, logcdf/logsf through "
    "log_ndtr (accurate far in the tails), ppf/isf through ndtri.",
    logpdf=_norm_logpdf, pdf=_norm_pdf, cdf=_norm_cdf, logcdf=_norm_logcdf, sf=_norm_sf,
    logsf=_norm_logsf, ppf=_norm_ppf, isf=_norm_isf)


# ---- Student's t ----------------------------------------------------------------------------


def _t_args(fn, x, df, loc, scale):
    x, df, loc, scale = _args(f"t.{fn}", ("x", "df", "loc", "scale"), (x, df, loc, scale))
    return _standardize(x, loc, scale), df, scale


def _t_logpdf(x, df, loc=0, scale=1):
    z, df, scale = _t_args("logpdf", x, df, loc, scale)
    half = (df + 1.0) * 0.5
    out = (_gammaln(half) - _gammaln(df * 0.5) - 0.5 * _log_any(df * math.pi)
           - _log_of(scale) - half * _api.log1p(_api.square(z) / df))
    return _nan_unless(_both(_positive(scale), _positive(df)), out)


def _log_any(v):
    return math.log(v) if isinstance(v, float) and v > 0 else _api.log(v)


def _t_pdf(x, df, loc=0, scale=1):
    return _api.exp(_t_logpdf(x, df, loc, scale))


def _t_lower(z, df):
    """P(T <= z) for Student's t with df degrees of freedom, from the regularized incomplete
    beta function in two well-conditioned forms: for |z| >= 1/2 the tail probability
    tail = betainc(df/2, 1/2, df / (df + z^2)) / 2 (tail or 1 - tail: accurate however small
    the tail); for |z| < 1/2 the centre form 1/2 + sign(z) betainc(1/2, df/2, z^2 / (df + z^2))
    / 2 (its argument has no cancellation, its value stays within [0.3, 0.7], and its
    derivative is accurate however small z). At z == 0 exactly the chain rule of either form
    meets an infinite derivative times zero, so there the value is 1/2 + z pdf(0): the right
    value, first and second derivative."""
    z2 = _api.square(z)
    centre_side = _api.less(z2, 0.25)
    zero = _api.equal(z, 0.0)
    z2_tail = _safe(centre_side, 1.0, z2)  # >= 1/4 in the branch's domain
    tail = 0.5 * _sp.betainc(df * 0.5, 0.5, df / (df + z2_tail))
    lower_tail = _api.where(_api.less(z, 0.0), tail, 1.0 - tail)
    zc = _safe(_api.logical_and(centre_side, _api.logical_not(zero)), z, 0.25)
    z2c = _api.square(zc)
    centre = 0.5 + 0.5 * _api.sign(zc) * _sp.betainc(0.5, df * 0.5, z2c / (df + z2c))
    pdf0 = _api.exp(_gammaln((df + 1.0) * 0.5) - _gammaln(df * 0.5)
                    - 0.5 * _api.log(df * math.pi))
    at_zero = 0.5 + z * pdf0
    return _api.where(zero, at_zero, _api.where(centre_side, centre, lower_tail))


def _t_cdf_of(fn, x, df, loc, scale, sign):
    z, df, scale = _t_args(fn, x, df, loc, scale)
    if isinstance(df, float):
        df = Tensor.from_array(df, dtype=_first_tensor((z,)).dtype,
                               device=_first_tensor((z,)).device)
    p = _t_lower(sign * z, df)
    return _nan_unless(_both(_positive(scale), _api.greater(df, 0.0)), p)


def _t_cdf(x, df, loc=0, scale=1):
    return _t_cdf_of("cdf", x, df, loc, scale, 1.0)


def _t_sf(x, df, loc=0, scale=1):
    return _t_cdf_of("sf", x, df, loc, scale, -1.0)


def _t_logcdf(x, df, loc=0, scale=1):
    return _log_pair(_t_cdf_of("logcdf", x, df, loc, scale, 1.0),
                     _t_cdf_of("logcdf", x, df, loc, scale, -1.0))


def _t_logsf(x, df, loc=0, scale=1):
    return _log_pair(_t_cdf_of("logsf", x, df, loc, scale, -1.0),
                     _t_cdf_of("logsf", x, df, loc, scale, 1.0))


t = Distribution(
    "t", "Student's t distribution with df degrees of freedom (scipy.stats.t): logpdf, pdf, "
    "cdf, logcdf, sf, logsf. cdf/sf through ag.special.betainc (see _t_lower for the forms); "
    "their derivative in df is NaN where df is tracked (betainc's parameters have none here).",
    logpdf=_t_logpdf, pdf=_t_pdf, cdf=_t_cdf, logcdf=_t_logcdf, sf=_t_sf, logsf=_t_logsf)


# ---- beta -----------------------------------------------------------------------------------


def _beta_args(fn, x, a, b, loc, scale):
    x, a, b, loc, scale = _args(f"beta.{fn}", ("x", "a", "b", "loc", "scale"),
                                (x, a, b, loc, scale))
    valid = _both(_both(_positive(a), _positive(b)), _positive(scale))
    return _standardize(x, loc, scale), a, b, scale, valid


def _beta_logpdf(x, a, b, loc=0, scale=1):
    y, a, b, scale, valid = _beta_args("logpdf", x, a, b, loc, scale)
    inside = _api.logical_and(_api.greater_equal(y, 0.0), _api.less_equal(y, 1.0))
    ys = _safe(inside, y, 0.5)
    dens = (_sp.xlogy(a - 1.0, ys) + _api.xlog1py(b - 1.0, -ys) - _betaln(a, b)
            - _log_of(scale))
    return _nan_unless(valid, _api.where(inside, dens, -_INF))


def _beta_pdf(x, a, b, loc=0, scale=1):
    return _api.exp(_beta_logpdf(x, a, b, loc, scale))


def _beta_cdf(x, a, b, loc=0, scale=1):
    y, a, b, scale, valid = _beta_args("cdf", x, a, b, loc, scale)
    return _nan_unless(valid, _sp.betainc(a, b, _api.clip(y, 0.0, 1.0)))


def _beta_sf(x, a, b, loc=0, scale=1):
    y, a, b, scale, valid = _beta_args("sf", x, a, b, loc, scale)
    return _nan_unless(valid, _sp.betainc(b, a, 1.0 - _api.clip(y, 0.0, 1.0)))


def _beta_logcdf(x, a, b, loc=0, scale=1):
    return _log_pair(_beta_cdf(x, a, b, loc, scale), _beta_sf(x, a, b, loc, scale))


def _beta_logsf(x, a, b, loc=0, scale=1):
    return _log_pair(_beta_sf(x, a, b, loc, scale), _beta_cdf(x, a, b, loc, scale))


beta = Distribution(
    "beta", "The beta distribution on [loc, loc + scale] (scipy.stats.beta): logpdf, pdf, cdf, "
    "logcdf, sf, logsf. cdf = betainc(a, b, y), sf = betainc(b, a, 1 - y) (no cancellation); "
    "their derivative in a and b is NaN where tracked.",
    logpdf=_beta_logpdf, pdf=_beta_pdf, cdf=_beta_cdf, logcdf=_beta_logcdf, sf=_beta_sf,
    logsf=_beta_logsf)


# ---- gamma and chi2 -------------------------------------------------------------------------


def _gamma_family(fn, x, a, loc, scale, names):
    x, a, loc, scale = _args(fn, ("x", names[0], "loc", "scale"), (x, a, loc, scale))
    valid = _both(_positive(a), _positive(scale))
    return _standardize(x, loc, scale), a, scale, valid


def _gamma_logpdf_std(y, a, scale, valid):
    inside = _api.greater_equal(y, 0.0)
    ys = _safe(inside, y, 1.0)
    dens = _sp.xlogy(a - 1.0, ys) - ys - _gammaln(a) - _log_of(scale)
    return _nan_unless(valid, _api.where(inside, dens, -_INF))


def _gamma_logpdf(x, a, loc=0, scale=1):
    return _gamma_logpdf_std(*_gamma_family("gamma.logpdf", x, a, loc, scale, ("a",)))


def _gamma_pdf(x, a, loc=0, scale=1):
    return _api.exp(_gamma_logpdf(x, a, loc, scale))


def _gamma_p(fn, x, a, loc, scale, upper, names=("a",), half=False):
    y, a, scale, valid = _gamma_family(fn, x, a, loc, scale, names)
    if half:  # chi2(df) is gamma(df / 2, scale 2)
        y, a = y * 0.5, a * 0.5
    yc = _api.maximum(y, 0.0)
    p = _sp.gammaincc(a, yc) if upper else _sp.gammainc(a, yc)
    return _nan_unless(valid, p)


def _gamma_cdf(x, a, loc=0, scale=1):
    return _gamma_p("gamma.cdf", x, a, loc, scale, False)


def _gamma_sf(x, a, loc=0, scale=1):
    return _gamma_p("gamma.sf", x, a, loc, scale, True)


def _gamma_logcdf(x, a, loc=0, scale=1):
    return _log_pair(_gamma_p("gamma.logcdf", x, a, loc, scale, False),
                     _gamma_p("gamma.logcdf", x, a, loc, scale, True))


def _gamma_logsf(x, a, loc=0, scale=1):
    return _log_pair(_gamma_p("gamma.logsf", x, a, loc, scale, True),
                     _gamma_p("gamma.logsf", x, a, loc, scale, False))


gamma = Distribution(
    "gamma", "The gamma distribution with shape a (scipy.stats.gamma): logpdf, pdf, cdf, logcdf, "
    "sf, logsf. cdf = gammainc(a, y), sf = gammaincc(a, y); their derivative in a is NaN where "
    "a is tracked.",
    logpdf=_gamma_logpdf, pdf=_gamma_pdf, cdf=_gamma_cdf, logcdf=_gamma_logcdf, sf=_gamma_sf,
    logsf=_gamma_logsf)


def _chi2_logpdf(x, df, loc=0, scale=1):
    y, df, scale, valid = _gamma_family("chi2.logpdf", x, df, loc, scale, ("df",))
    k = df * 0.5
    inside = _api.greater_equal(y, 0.0)
    ys = _safe(inside, y, 1.0)
    dens = (_sp.xlogy(k - 1.0, ys) - 0.5 * ys - _gammaln(k) - k * _LN2 - _log_of(scale))
    return _nan_unless(valid, _api.where(inside, dens, -_INF))


def _chi2_pdf(x, df, loc=0, scale=1):
    return _api.exp(_chi2_logpdf(x, df, loc, scale))


def _chi2_cdf(x, df, loc=0, scale=1):
    return _gamma_p("chi2.cdf", x, df, loc, scale, False, ("df",), True)


def _chi2_sf(x, df, loc=0, scale=1):
    return _gamma_p("chi2.sf", x, df, loc, scale, True, ("df",), True)


def _chi2_logcdf(x, df, loc=0, scale=1):
    return _log_pair(_gamma_p("chi2.logcdf", x, df, loc, scale, False, ("df",), True),
                     _gamma_p("chi2.logcdf", x, df, loc, scale, True, ("df",), True))


def _chi2_logsf(x, df, loc=0, scale=1):
    return _log_pair(_gamma_p("chi2.logsf", x, df, loc, scale, True, ("df",), True),
                     _gamma_p("chi2.logsf", x, df, loc, scale, False, ("df",), True))


chi2 = Distribution(
    "chi2", "The chi-squared distribution with df degrees of freedom (scipy.stats.chi2): "
    "logpdf, pdf, cdf, logcdf, sf, logsf (gamma(df/2) with scale 2); the cdf's derivative in "
    "df is NaN where df is tracked.",
    logpdf=_chi2_logpdf, pdf=_chi2_pdf, cdf=_chi2_cdf, logcdf=_chi2_logcdf, sf=_chi2_sf,
    logsf=_chi2_logsf)


# ---- poisson --------------------------------------------------------------------------------


def _poisson_args(fn, k, mu, loc):
    k, mu, loc = _args(f"poisson.{fn}", ("k", "mu", "loc"), (k, mu, loc), integer_ok=("k",))
    return k - loc, mu


def _poisson_logpmf(k, mu, loc=0):
    k, mu = _poisson_args("logpmf", k, mu, loc)
    support = _api.logical_and(_api.greater_equal(k, 0.0), _api.equal(_api.floor(k), k))
    ks = _safe(support, k, 0.0)
    out = _sp.xlogy(ks, mu) - _gammaln(ks + 1.0) - mu
    return _nan_unless(_mu_valid(mu), _api.where(support, out, -_INF))


def _mu_valid(mu):
    return mu >= 0 if isinstance(mu, float) else _api.greater_equal(mu, 0.0)


def _poisson_pmf(k, mu, loc=0):
    return _api.exp(_poisson_logpmf(k, mu, loc))


def _poisson_p(fn, k, mu, loc, upper):
    """cdf = Q(floor(k) + 1, mu) (gammaincc), sf = P(floor(k) + 1, mu), differentiable in mu
    (d cdf / d mu = -pmf(floor(k), mu)); k < 0: cdf 0, sf 1."""
    k, mu = _poisson_args(fn, k, mu, loc)
    if isinstance(mu, float):
        mu = Tensor.from_array(mu, dtype=k.dtype, device=k.device)
    neg = _api.less(k, 0.0)
    n1 = _api.floor(_safe(neg, 0.0, k)) + 1.0
    mus = _safe(_api.greater(mu, 0.0), mu, 1.0)
    p = _sp.gammainc(n1, mus) if upper else _sp.gammaincc(n1, mus)
    p = _api.where(_api.equal(mu, 0.0), 0.0 if upper else 1.0, p)  # mu == 0: all mass at 0
    p = _api.where(neg, 1.0 if upper else 0.0, p)
    return _nan_unless(_mu_valid(mu), p)


def _poisson_cdf(k, mu, loc=0):
    return _poisson_p("cdf", k, mu, loc, False)


def _poisson_sf(k, mu, loc=0):
    return _poisson_p("sf", k, mu, loc, True)


def _poisson_logcdf(k, mu, loc=0):
    return _log_pair(_poisson_p("logcdf", k, mu, loc, False),
                     _poisson_p("logcdf", k, mu, loc, True))


def _poisson_logsf(k, mu, loc=0):
    return _log_pair(_poisson_p("logsf", k, mu, loc, True),
                     _poisson_p("logsf", k, mu, loc, False))


poisson = Distribution(
    "poisson", "The Poisson distribution with mean mu (scipy.stats.poisson): logpmf, pmf, cdf, "
    "logcdf, sf, logsf. k may be an integer tensor; a non-integer or negative k has pmf 0. "
    "cdf = gammaincc(floor(k) + 1, mu) and sf = gammainc(floor(k) + 1, mu), differentiable in "
    "mu; the derivative in k is that of the formula (logpmf: the continuous extension, as "
    "JAX's; cdf/sf: 0, a step function).",
    logpmf=_poisson_logpmf, pmf=_poisson_pmf, cdf=_poisson_cdf, logcdf=_poisson_logcdf,
    sf=_poisson_sf, logsf=_poisson_logsf)


# ---- dirichlet ------------------------------------------------------------------------------


def _dirichlet_args(fn, x, alpha):
    like = _first_tensor((x, alpha))
    alpha = _arg(alpha, fn, "alpha", like)
    x = _arg(x, fn, "x", like)
    if not isinstance(alpha, Tensor) or alpha.ndim != 1:
        got = alpha.shape if isinstance(alpha, Tensor) else "a number"
        raise ShapeError(f"{fn}: argument 'alpha' expected a 1-d array of K >= 2 "
                         f"concentrations, got {got}")
    kk = alpha.shape[0]
    if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] not in (kk, kk - 1):
        got = x.shape if isinstance(x, Tensor) else "a number"
        raise ShapeError(f"{fn}: argument 'x' expected K = {kk} (or K - 1) components along "
                         f"its first axis, got shape {got}")
    if x.shape[0] == kk - 1:  # SciPy completes the last component
        last = 1.0 - _api.sum(x, axis=0, keepdims=True)
        x = _api.concatenate([x, last], axis=0)
    a = _api.reshape(alpha, (kk,) + (1,) * (x.ndim - 1))
    return x, a


def _dirichlet_logpdf(x, alpha):
    x, a = _dirichlet_args("dirichlet.logpdf", x, alpha)
    tol = 1e-9 if x.dtype.itemsize >= 8 else 1e-5
    inside = _api.logical_and(_api.all(_api.greater_equal(x, 0.0), axis=0),
                              _api.all(_api.less_equal(x, 1.0), axis=0))
    on_simplex = _api.logical_and(
        inside, _api.less_equal(_api.abs(_api.sum(x, axis=0) - 1.0), tol))
    xs = _api.where(_api.expand_dims(on_simplex, 0), x, 0.5)
    lnb = _api.sum(_gammaln(a), axis=0) - _gammaln(_api.sum(a, axis=0))
    out = _api.sum(_sp.xlogy(a - 1.0, xs), axis=0) - lnb
    valid = _api.all(_api.greater(a, 0.0))
    return _api.where(valid, _api.where(on_simplex, out, -_INF), _NAN)


def _dirichlet_pdf(x, alpha):
    return _api.exp(_dirichlet_logpdf(x, alpha))


dirichlet = Distribution(
    "dirichlet", "The Dirichlet distribution with concentrations alpha (K,) "
    "(scipy.stats.dirichlet): logpdf, pdf. x holds the K components along its first axis "
    "((K,) or (K, N...)), or K - 1 of them (the last is 1 - their sum), as SciPy; -inf outside "
    "the simplex (SciPy raises).",
    logpdf=_dirichlet_logpdf, pdf=_dirichlet_pdf)


# ---- multivariate normal --------------------------------------------------------------------


def _mvn_params(fn, mean, cov, like):
    """(mean (d,) tensor or None, cov (d, d) tensor, d). cov may be a number (times the
    identity), a 1-d array (a diagonal) or a (d, d) matrix, as SciPy takes it."""
    mean = None if mean is None else _arg(mean, fn, "mean", like)
    cov = _arg(cov, fn, "cov", like)
    like = _first_tensor((like, mean, cov))
    if isinstance(mean, float):
        mean = Tensor.from_array(mean, dtype="float64", device=None if like is None
                                 else like.device)
    if mean is not None and mean.ndim > 1:
        raise ShapeError(f"{fn}: argument 'mean' expected a 1-d array, got shape {mean.shape}")
    cov_nd = 0 if isinstance(cov, float) else cov.ndim
    if cov_nd > 2 or (cov_nd == 2 and cov.shape[0] != cov.shape[1]):
        raise ShapeError(f"{fn}: argument 'cov' expected a number, a 1-d diagonal or a square "
                         f"matrix, got shape {cov.shape}")
    d = (mean.shape[0] if mean is not None and mean.ndim == 1 else
         cov.shape[0] if cov_nd else 1)
    if mean is not None and mean.ndim == 1 and cov_nd and cov.shape[0] != d:
        raise ShapeError(f"{fn}: argument 'cov' expected {d} rows to match mean's length "
                         f"{d}, got shape {cov.shape}")
    dt = _first_tensor((like, mean, cov))
    eye = _eye(d, dt)
    if cov_nd == 0:
        cov = eye * cov
    elif cov_nd == 1:
        cov = eye * _api.reshape(cov, (1, d)) if cov.shape[0] in (d, 1) else _bad_diag(fn, d)
    else:  # the symmetric part: the gradient is then symmetric, as JAX's and PyTorch's
        cov = 0.5 * (cov + _api.swapaxes(cov, -1, -2))
    return mean, cov, d


def _bad_diag(fn, d):
    raise ShapeError(f"{fn}: argument 'cov' expected a diagonal of length {d}")


def _eye(d, like):
    xp = like._bk.xp
    dtype = like.dtype if _dt.is_floating(like.dtype) else "float64"
    return Tensor(xp.eye(d, dtype=dtype), like._bk)


def _diag(mat, eye):
    return _api.sum(mat * eye, axis=-1)


def _mvn_logpdf(x, mean=None, cov=1, allow_singular=False):
    fn = "multivariate_normal.logpdf"
    x = _arg(x, fn, "x", _first_tensor((mean, cov)))
    if isinstance(x, float):
        x = Tensor.from_array(x, dtype="float64")
    mean, cov, d = _mvn_params(fn, mean, cov, x)
    if d == 1 and x.ndim <= 1:  # SciPy: a 1-d x of a 1-d distribution holds points
        x = _api.reshape(x, tuple(x.shape) + (1,))
    elif x.ndim == 0 or x.shape[-1] != d:
        raise ShapeError(f"{fn}: argument 'x' expected a last axis of length {d} (the "
                         f"dimension), got shape {x.shape}")
    dev = x if mean is None else x - mean
    lead = tuple(dev.shape[:-1])
    rows = _api.reshape(dev, (-1, d))
    if allow_singular:
        out = _mvn_logpdf_psd(rows, cov, d)
    else:
        low = _la.cholesky(cov)
        z = _la.solve_triangular(low, _api.swapaxes(rows, 0, 1), lower=True)
        half_logdet = _api.sum(_api.log(_diag(low, _eye(d, low))))
        out = (-0.5 * _api.sum(_api.square(z), axis=0) - half_logdet - d * _HALF_LOG_2PI)
    return _squeeze(_api.reshape(out, lead))


def _mvn_logpdf_psd(rows, cov, d):
    """SciPy's allow_singular=True: the density on the support of a positive semi-definite cov
    (eigenvalues below SciPy's cutoff 1e6 eps max|s| are dropped: pseudo-determinant and
    pseudo-inverse), -inf off it. Through ag.linalg.eigh: the gradient in cov is NaN where
    dropped eigenvalues repeat (eigenvector derivatives there are undefined)."""
    s, u = _la.eigh(cov)
    xp = s._bk.xp
    eps = 1e6 * float(xp.finfo(s.dtype).eps) * float(xp.max(xp.abs(s._data)))
    keep = _api.greater(s, eps)
    s_safe = _api.where(keep, s, 1.0)
    rank = _api.sum(_api.astype(keep, s.dtype))
    log_pdet = _api.sum(_api.where(keep, _api.log(s_safe), 0.0))
    proj = _api.matmul(rows, u)  # coordinates in the eigenbasis
    maha = _api.sum(_api.where(keep, _api.square(proj) / s_safe, 0.0), axis=-1)
    off = _api.sum(_api.where(keep, 0.0, _api.square(proj)), axis=-1)
    scale = _api.sum(_api.square(rows), axis=-1) + 1.0
    out = -0.5 * (rank * _LOG_2PI + log_pdet + maha)
    return _api.where(_api.less_equal(off, 1e-8 * scale * float(d)), out, -_INF)


def _squeeze(v):
    axes = tuple(i for i, s in enumerate(v.shape) if s == 1)
    return _api.squeeze(v, axis=axes) if axes else v


def _mvn_pdf(x, mean=None, cov=1, allow_singular=False):
    return _api.exp(_mvn_logpdf(x, mean, cov, allow_singular))


def _mvn_entropy(mean=None, cov=1):
    fn = "multivariate_normal.entropy"
    like = _first_tensor((mean, cov))
    if like is None and isinstance(cov, numbers.Real):
        cov = Tensor.from_array(float(cov), dtype="float64")
    _, cov, d = _mvn_params(fn, mean, cov, like)
    low = _la.cholesky(cov)
    return 0.5 * d * (1.0 + _LOG_2PI) + _api.sum(_api.log(_diag(low, _eye(d, low))))


multivariate_normal = Distribution(
    "multivariate_normal", "The multivariate normal distribution N(mean, cov) "
    "(scipy.stats.multivariate_normal): logpdf, pdf, entropy. cov is a number, a diagonal or "
    "a (d, d) matrix (its symmetric part is used); logpdf = -|L^-1 (x - mean)|^2 / 2 - "
    "sum(log diag L) - d log(2 pi) / 2 with L = cholesky(cov) (ag.linalg.cholesky and "
    "solve_triangular), so a cov that is not positive definite raises ag.LinAlgError unless "
    "allow_singular=True (SciPy's pseudo-inverse and pseudo-determinant, through eigh). x is "
    "(..., d); the result's size-1 axes are squeezed, as SciPy's. No cdf (see the module "
    "docstring).",
    logpdf=_mvn_logpdf, pdf=_mvn_pdf, entropy=_mvn_entropy)
