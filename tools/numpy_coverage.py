"""Generate docs/numpy-coverage.md: which NumPy/SciPy functions autograd_gpu differentiates.

The table covers every function in the lists of the "differentiable NumPy and SciPy surface"
work (elementwise and array functions, ag.linalg, ag.fft, ag.special, ag.stats, ag.signal,
ag.integrate) and every function of JAX's jax.numpy, jax.numpy.linalg, jax.numpy.fft,
jax.scipy.special, jax.scipy.linalg, jax.scipy.signal, jax.scipy.stats and
jax.experimental.ode. JAX's names come from a snapshot (tools/jax_api_snapshot.json, with the
JAX version and date it was taken from), so generating the table needs no JAX.

Everything is derived from the package itself except two small hand-kept tables: REASONS (why a
function is not supported: not differentiable, not an array function, data-dependent shapes,
...) and ALIASES (JAX's array-API spellings of functions ag has under NumPy's name). For a
supported function the table shows whether it is a primitive (a registry op of that name, or
the op a function declares as ``.op``) or a composition of primitives, and for primitives the
op's complex_ok flag, its ag.vmap batching declaration, and its GPU path (read from the op's
docstring: "DeviceError" there means CuPy lacks it, "host" a synchronisation).

    python tools/numpy_coverage.py             # write docs/numpy-coverage.md
    python tools/numpy_coverage.py --check     # exit 1 if the committed file differs
    python tools/numpy_coverage.py --snapshot  # refresh the JAX snapshot (needs JAX)

tests/test_numpy_coverage.py regenerates the file and fails when it differs from the committed
one, and when a function of the issue's lists is neither in ag nor given a reason.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tools" / "jax_api_snapshot.json"
OUTPUT = ROOT / "docs" / "numpy-coverage.md"

__all__ = ["ISSUE_LISTS", "REASONS", "ALIASES", "rows", "render", "missing_from_ag", "main"]

# ---- the issue's lists: (section, ag namespace, names) ---------------------------------------

_STATS = {
    "norm": "logpdf pdf cdf logcdf sf logsf",
    "t": "logpdf pdf cdf logcdf sf logsf",
    "beta": "logpdf pdf cdf logcdf sf logsf",
    "chi2": "logpdf pdf cdf logcdf sf logsf",
    "gamma": "logpdf pdf cdf logcdf sf logsf",
    "poisson": "logpmf pmf cdf logcdf sf logsf",
    "dirichlet": "logpdf pdf",  # scipy.stats.dirichlet has no cdf
    "multivariate_normal": "logpdf pdf cdf logcdf entropy",  # SciPy's has no sf
}

ISSUE_LISTS = [
    ("1. Elementwise", "", (
        "arcsin arccos arctan arctan2 sinh cosh arcsinh arccosh arctanh exp2 log2 log10 cbrt "
        "reciprocal sinc hypot logaddexp logaddexp2 fmax fmin mod remainder Tensor.__mod__ "
        "floor_divide copysign deg2rad radians rad2deg degrees nan_to_num real imag conj angle "
        "heaviside xlogy xlog1py").split()),
    ("2. Array functions", "", (
        "repeat tile roll rot90 tril triu diag diagonal trace kron cross diff gradient select "
        "sort partition argsort argmax argmin topk cumprod logcumsumexp median quantile "
        "percentile linspace meshgrid moveaxis atleast_1d atleast_2d atleast_3d split "
        "array_split outer inner dot vdot tensordot ravel Tensor.ravel").split()),
    ("3. ag.linalg", "linalg", (
        "norm svd svdvals eigh eigvalsh eig eigvals solve inv det slogdet pinv cholesky qr "
        "lstsq matrix_power multi_dot solve_triangular cho_factor cho_solve lu_factor lu_solve "
        "expm sqrtm solve_sylvester").split()),
    ("4. ag.fft", "fft", (
        "fft ifft fft2 ifft2 fftn ifftn rfft irfft rfft2 irfft2 rfftn irfftn fftshift "
        "ifftshift").split()),
    ("5. ag.special", "special", (
        "gammaln digamma psi polygamma gamma rgamma gammainc gammaincc beta betaln betainc "
        "multigammaln erfc erfinv erfcinv logit expit xlogy entr log_ndtr ndtr ndtri i0 i0e i1 "
        "i1e iv ive j0 j1 jn y0 y1 yn zeta logsumexp softmax log_softmax").split()),
    ("5. ag.stats", "stats", [f"{d}.{f}" for d, fs in _STATS.items() for f in fs.split()]),
    ("5. ag.signal and ag.integrate", "", ["signal.convolve", "integrate.odeint"]),
]

# ---- hand-kept: why a function is not supported ----------------------------------------------

_NOT_DIFF = "not differentiable: its output is integer or boolean (indices, counts, tests)"
_NOT_FN = "not an array function (dtype, printing, file or shape utility)"
_CONSTRUCTOR = ("an array constructor with no differentiable input (ag.Tensor.from_array, "
                "Tensor.zeros/ones/full/arange)")
_DATA_SHAPE = "output shape depends on the values (no fixed-shape derivative; JAX needs size=)"
_HIGHER = "takes a Python function (ag.vmap and ag ops cover the use)"
REASONS = {
    "stats.multivariate_normal.cdf": ("SciPy integrates it by randomized quasi-Monte Carlo "
                                      "(Genz): no derivative to take"),
    "stats.multivariate_normal.logcdf": "as multivariate_normal.cdf",
}
for _names, _why in (
    ("argwhere bincount bitwise_and bitwise_count bitwise_invert bitwise_left_shift bitwise_not "
     "bitwise_or bitwise_right_shift bitwise_xor count_nonzero diag_indices diag_indices_from "
     "digitize flatnonzero gcd lcm indices invert isclose iscomplex isin isinf isneginf "
     "isposinf isreal left_shift right_shift lexsort mask_indices nonzero packbits unpackbits "
     "ravel_multi_index unravel_index searchsorted signbit tril_indices tril_indices_from "
     "triu_indices triu_indices_from array_equal array_equiv allclose logical_xor nanargmax "
     "nanargmin histogram_bin_edges", _NOT_DIFF),
    ("can_cast promote_types result_type issubdtype isdtype iterable isscalar iscomplexobj "
     "isrealobj ndim shape size get_printoptions set_printoptions printoptions array_repr "
     "array_str load save savez fromfile frombuffer fromstring fromiter frompyfunc einsum_path "
     "broadcast_shapes ix_ copy", _NOT_FN),
    ("array asarray empty empty_like eye full full_like identity ones ones_like zeros "
     "zeros_like tri bartlett blackman hamming hanning kaiser arange fromfunction", _CONSTRUCTOR),
    ("unique unique_all unique_counts unique_inverse unique_values intersect1d setdiff1d "
     "setxor1d union1d extract compress trim_zeros histogram histogram2d histogramdd",
     _DATA_SHAPE),
    ("vectorize apply_along_axis apply_over_axes piecewise", _HIGHER),
):
    for _n in _names.split():
        REASONS[_n] = _why

# JAX's array-API spellings of NumPy names ag has
ALIASES = {
    "acos": "arccos", "acosh": "arccosh", "asin": "arcsin", "asinh": "arcsinh",
    "atan": "arctan", "atan2": "arctan2", "atanh": "arctanh", "absolute": "abs",
    "concat": "concatenate", "permute_dims": "transpose", "amax": "max", "amin": "min",
    "around": "round", "cumulative_sum": "cumsum", "cumulative_prod": "cumprod",
    "matrix_transpose": "swapaxes", "fabs": "abs", "positive": "astype", "rint": "round",
}

_UNSUPPORTED = "not implemented yet"


# ---- deriving a row ---------------------------------------------------------------------------


def _ag():
    sys.path.insert(0, str(ROOT))
    import autograd_gpu  # noqa: PLC0415 (the package is found from the repository root)

    return autograd_gpu


def _resolve(ag, path):
    """The public object at ``path`` under ag ('linalg.solve', 'Tensor.ravel'), or None."""
    obj = ag
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if callable(obj) else None


def _op_of(ag, fn, name):
    op = getattr(fn, "op", None)
    if op is not None and hasattr(op, "complex_ok"):
        return op
    return ag.REGISTRY.get(name)


def _batch(op):
    b = op.batch
    if b is None:
        return "loop"
    if isinstance(b, tuple):
        return "axes"
    return b if isinstance(b, str) else "rule"


def _gpu(op):
    doc = op.doc or ""
    if "DeviceError" in doc:
        return "CPU only (DeviceError on a GPU)"
    if "host" in doc:
        return "CuPy, host sync"
    return "CuPy"


def _details(ag, fn, name):
    """(kind, complex, batch, gpu) of a supported function."""
    op = _op_of(ag, fn, name)
    if op is None:
        return "composition", "its ops", "its ops", "its ops"
    return (f"primitive `{op.name}`", "yes" if op.complex_ok else "no", _batch(op), _gpu(op))


def _row(ag, label, path, reason_key):
    fn = _resolve(ag, path)
    if fn is not None:
        leaf = path.split(".")[-1]
        return (label, f"`ag.{path}`", "yes", *_details(ag, fn, leaf), "")
    why = REASONS.get(reason_key)
    if why is None and reason_key in ALIASES:
        target = ALIASES[reason_key]
        why = (f"alias of `{target}`" + (" (supported)" if _resolve(ag, target) else ""))
    if why is None:  # the same function in another ag namespace
        leaf = path.split(".")[-1]
        for ns in ("", "special.", "linalg.", "fft."):
            if f"{ns}{leaf}" != path and _resolve(ag, f"{ns}{leaf}") is not None:
                why = f"under another name: `ag.{ns}{leaf}` (supported)"
                break
    return (label, "", "no", "", "", "", "", why or _UNSUPPORTED)


def _issue_rows(ag):
    out = []
    for section, ns, names in ISSUE_LISTS:
        rows_ = []
        for n in names:
            path = f"{ns}.{n}" if ns else n
            rows_.append(_row(ag, n, path, path))
        out.append((f"Issue list {section}", rows_))
    return out


# JAX namespace -> ag namespace
_JAX_NS = [
    ("jax.numpy", ""), ("jax.numpy.linalg", "linalg"), ("jax.numpy.fft", "fft"),
    ("jax.scipy.special", "special"), ("jax.scipy.linalg", "linalg"),
    ("jax.scipy.signal", "signal"), ("jax.scipy.stats", "stats"),
    ("jax.experimental.ode", "integrate"),
]


def _jax_rows(ag, snap):
    out = []
    for ns, agns in _JAX_NS:
        rows_ = []
        for n in snap["namespaces"][ns]:
            path = f"{agns}.{n}" if agns else n
            key = n if ns == "jax.numpy" else f"{agns}.{n}"
            rows_.append(_row(ag, n, path, key))
        out.append((f"`{ns}`", rows_))
    rows_ = []
    for dist, fns in sorted(snap["stats"].items()):
        for f in fns:
            rows_.append(_row(ag, f"{dist}.{f}", f"stats.{dist}.{f}", f"stats.{dist}.{f}"))
    out.append(("`jax.scipy.stats` distributions", rows_))
    return out


def rows():
    """(section title, rows) for every table of the document."""
    ag = _ag()
    snap = json.loads(SNAPSHOT.read_text())
    return _issue_rows(ag) + _jax_rows(ag, snap), snap


def missing_from_ag() -> list:
    """Functions of the issue's lists that ag lacks and no reason covers."""
    ag = _ag()
    out = []
    for _, ns, names in ISSUE_LISTS:
        for n in names:
            path = f"{ns}.{n}" if ns else n
            if _resolve(ag, path) is None and path not in REASONS:
                out.append(path)
    return out


_HEAD = ("| function | in ag | supported | kind | complex | vmap batching | GPU | why not |\n"
         "|---|---|---|---|---|---|---|---|\n")


def render() -> str:
    tables, snap = rows()
    lines = [
        "# NumPy and SciPy coverage",
        "",
        "Generated by `python tools/numpy_coverage.py` from the op registry and the `ag` "
        "namespaces (do not edit: `tests/test_numpy_coverage.py` fails when this file differs "
        "from a fresh run). JAX's names are from a snapshot of JAX "
        f"{snap['jax_version']} taken {snap['date']} (`tools/jax_api_snapshot.json`).",
        "",
        "Columns: *kind* is `primitive` (a registry op with forward, vjp, jvp, sampler and "
        "cost, checked by `tests/test_registry_rules.py`) or `composition` (a function of "
        "primitives, differentiated through them; complex support, batching and GPU path are "
        "its ops'). *complex*: the op accepts complex inputs (JAX's convention). *vmap "
        "batching*: the op's `ag.vmap` declaration (`elementwise`, `leading`, `axes`, a `rule`, "
        "or `loop`: mapped one example at a time). *GPU*: CuPy runs it, with a host "
        "synchronisation, or it raises DeviceError on a GPU. Unsupported rows give the reason "
        "(hand-kept in the script; `not implemented yet` where none applies).",
        "",
    ]
    summary = []
    for title, rs in tables:
        yes = sum(1 for r in rs if r[2] == "yes")
        summary.append(f"| {title} | {yes} | {len(rs) - yes} |")
    lines += ["| table | supported | not supported |", "|---|---|---|", *summary, ""]
    for title, rs in tables:
        lines += [f"## {title}", "", _HEAD + "\n".join("| " + " | ".join(r) + " |" for r in rs),
                  ""]
    return "\n".join(lines)


# ---- the JAX snapshot -------------------------------------------------------------------------


def _public_functions(mod) -> list:
    return sorted(n for n in dir(mod) if not n.startswith("_")
                  and callable(getattr(mod, n)) and not inspect.isclass(getattr(mod, n))
                  and not inspect.ismodule(getattr(mod, n)))


def take_snapshot() -> dict:
    import importlib  # noqa: PLC0415 (only --snapshot needs JAX)

    import jax  # noqa: PLC0415 (optional: only --snapshot needs JAX)

    spaces = {}
    for ns, _ in _JAX_NS:
        spaces[ns] = _public_functions(importlib.import_module(ns))
    spaces["jax.experimental.ode"] = ["odeint"]  # the module's other names are its imports
    stats = importlib.import_module("jax.scipy.stats")
    dists = {}
    for n in dir(stats):
        m = getattr(stats, n)
        if not n.startswith("_") and inspect.ismodule(m):
            dists[n] = _public_functions(m)
    return {"jax_version": jax.__version__, "date": datetime.date.today().isoformat(),
            "namespaces": spaces, "stats": dists}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    ap.add_argument("--snapshot", action="store_true", help="refresh the JAX snapshot")
    a = ap.parse_args(argv)
    if a.snapshot:
        SNAPSHOT.write_text(json.dumps(take_snapshot(), indent=1, sort_keys=True) + "\n")
    text = render()
    if a.check:
        same = OUTPUT.exists() and OUTPUT.read_text() == text
        print("docs/numpy-coverage.md is " + ("up to date" if same else "out of date"))
        return 0 if same else 1
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
