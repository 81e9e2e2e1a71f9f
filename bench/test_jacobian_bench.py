"""Jacobian benchmark on the CPU: autograd_gpu AUTO/FORWARD/REVERSE against torch.func.jacfwd /
jacrev and jax.jacfwd / jacrev (eager and jit-compiled), in one run.

    f(x) = tanh(A @ sin(x)) * 2,  A: (m, n),  float64,  (n, m) in {(8, 2000), (2000, 8)}

Run (peers are optional: ``pip install -e .[bench]``)::

    .venv/bin/python -m pytest bench/test_jacobian_bench.py -q -s

Each case is timed by pytest-benchmark (one after another); ``test_report_ratios`` prints, per
shape, the median time of every entry and the ratio of our AUTO mode to the fastest peer mode
(eager peers, and jit'd JAX separately), and checks that every entry computed the same Jacobian.
Those are sequential times: on a shared machine the ratios to trust are
``test_jacobian_interleaved``'s (every side in each round; medians and spreads of the per-round
ratios in its extra_info, printed with -s), which also runs under ``--benchmark-only``.
"""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag

SHAPES = [(8, 2000), (2000, 8)]
DTYPE = np.float64
RESULTS: dict = {}  # (n, m) -> {name: median seconds}
VALUES: dict = {}  # (n, m) -> {name: Jacobian as numpy}

try:
    import torch
    from torch import func as torch_func
except ImportError:  # optional peer
    torch = None
try:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
except ImportError:  # optional peer
    jax = None


def _data(n, m):
    rng = np.random.default_rng(n * 10007 + m)
    A = rng.standard_normal((m, n)).astype(DTYPE) / np.sqrt(n)
    x = rng.standard_normal(n).astype(DTYPE)
    return A, x


def _reference(A, x):
    z = A @ np.sin(x)
    return (2 * (1 - np.tanh(z) ** 2))[:, None] * A * np.cos(x)[None, :]


def _ours(A, x, mode):
    """``mode``: auto/forward/reverse (ag.jacobian: f recorded on a tape, then identity seed
    batches swept through it), accumulator (f run under a ForwardAccumulator whose tangents are
    the identity batch: the engine's own vmap over jvp, nothing recorded), vmap_jvp / vmap_vjp
    (ag.vmap over ag.jvp / over a vjp_fn, as a user writes jacfwd / jacrev)."""
    At = ag.Tensor.from_array(A, device="cpu")
    xt = ag.Tensor.from_array(x, device="cpu")
    n, m = x.size, A.shape[0]
    eye_n = ag.Tensor.from_array(np.eye(n), device="cpu")
    eye_m = ag.Tensor.from_array(np.eye(m), device="cpu")

    def f(v):
        return (At @ v.sin()).tanh() * 2.0

    if mode == "accumulator":
        def run():  # (the identity built per call, as ag.jacobian builds its seeds)
            eye = ag.Tensor.from_array(np.eye(n), device="cpu")
            with ag.ForwardAccumulator(xt, eye, batch_nd=1) as acc:
                y = f(xt)
            return acc.jvp(y).numpy().T
    elif mode == "vmap_jvp":
        def run():
            return ag.vmap(lambda t: ag.jvp(f, (xt,), (t,))[1], out_axes=1)(eye_n).numpy()
    elif mode == "vmap_vjp":
        def run():
            _, pull = ag.vjp(f, xt)
            return ag.vmap(lambda u: pull(u)[0])(eye_m).numpy()
    else:
        def run():
            return ag.jacobian(f, xt, mode=mode).numpy()
    return run


def _torch(A, x, kind):
    At, xt = torch.from_numpy(A), torch.from_numpy(x)

    def f(v):
        return torch.tanh(At @ torch.sin(v)) * 2.0

    jac = torch_func.jacfwd(f) if kind == "jacfwd" else torch_func.jacrev(f)
    return lambda: jac(xt).numpy()


def _jax(A, x, kind, jit):
    Aj, xj = jnp.asarray(A), jnp.asarray(x)

    def f(v):
        return jnp.tanh(Aj @ jnp.sin(v)) * 2.0

    jac = jax.jacfwd(f) if kind == "jacfwd" else jax.jacrev(f)
    if jit:
        jac = jax.jit(jac)
    return lambda: np.asarray(jac(xj).block_until_ready())


def _cases():
    out = []
    for n, m in SHAPES:
        for mode in ("auto", "forward", "reverse", "accumulator", "vmap_jvp", "vmap_vjp"):
            out.append(pytest.param(n, m, f"ours.{mode}", id=f"{n}x{m}-ours-{mode}"))
        for kind in ("jacfwd", "jacrev"):
            out.append(pytest.param(n, m, f"torch.{kind}", id=f"{n}x{m}-torch-{kind}"))
            out.append(pytest.param(n, m, f"jax.{kind}", id=f"{n}x{m}-jax-{kind}"))
            out.append(pytest.param(n, m, f"jax.jit.{kind}", id=f"{n}x{m}-jaxjit-{kind}"))
    return out


def _make(n, m, name):
    A, x = _data(n, m)
    lib, *rest = name.split(".")
    if lib == "ours":
        return _ours(A, x, rest[0])
    if lib == "torch":
        if torch is None:
            pytest.skip("torch is not installed")
        return _torch(A, x, rest[0])
    if jax is None:
        pytest.skip("jax is not installed")
    return _jax(A, x, rest[-1], jit=rest[0] == "jit")


@pytest.mark.parametrize("n,m,name", _cases())
def test_jacobian(benchmark, n, m, name):
    fn = _make(n, m, name)
    J = fn()  # warm-up (and compilation for jit'd JAX)
    A, x = _data(n, m)
    np.testing.assert_allclose(J, _reference(A, x), rtol=1e-9, atol=1e-12)
    benchmark.extra_info.update(n=n, m=m, dtype=np.dtype(DTYPE).name)
    benchmark(fn)
    RESULTS.setdefault((n, m), {})[name] = benchmark.stats.stats.median


def test_report_ratios():
    """Print the table (run with -s). AUTO's ratio to the fastest peer mode, per shape."""
    if not RESULTS:
        pytest.skip("no benchmark ran (run the whole file)")
    lines = []
    for (n, m), res in sorted(RESULTS.items()):
        lines.append(f"f: R^{n} -> R^{m} ({np.dtype(DTYPE).name}, CPU), median times:")
        for name, t in sorted(res.items(), key=lambda kv: kv[1]):
            lines.append(f"  {name:18s} {t * 1e6:12.1f} us")
        ours = res.get("ours.auto")
        eager = {k: v for k, v in res.items()
                 if not k.startswith("ours") and not k.startswith("jax.jit")}
        jitted = {k: v for k, v in res.items() if k.startswith("jax.jit")}
        for label, peers in (("eager peers", eager), ("jit'd JAX", jitted)):
            if ours is not None and peers:
                best = min(peers, key=peers.get)
                lines.append(f"  AUTO / fastest {label} ({best}): {ours / peers[best]:.2f}x")
        for new, old in (("ours.accumulator", "ours.forward"), ("ours.vmap_jvp", "ours.forward"),
                         ("ours.vmap_vjp", "ours.reverse")):
            if new in res and old in res:
                lines.append(f"  {new} / {old}: {res[new] / res[old]:.2f}x")
        forced = [v for k, v in res.items() if k in ("ours.forward", "ours.reverse")]
        if ours is not None and forced:
            lines.append(f"  AUTO / best of our forced modes: {ours / min(forced):.2f}x")
    print("\n" + "\n".join(lines))
    # AUTO must not lose to the mode it could have chosen (the scheduler's job), beyond noise
    for res in RESULTS.values():
        if "ours.auto" in res and "ours.forward" in res and "ours.reverse" in res:
            assert res["ours.auto"] <= 1.5 * min(res["ours.forward"], res["ours.reverse"])


@pytest.mark.parametrize("n,m", SHAPES, ids=[f"{n}x{m}" for n, m in SHAPES])
def test_jacobian_interleaved(benchmark, interleaved, n, m):
    """AUTO against every installed peer mode (the Jacobian written by hand in NumPy,
    torch.func jacfwd/jacrev, jit'd JAX jacfwd/jacrev), 15 interleaved rounds of 3 calls; each
    peer's Jacobian is checked against ours first."""
    from autograd_gpu.bench import _case_jacobian, _Env, check

    case = _case_jacobian(_Env(ag.Device("cpu"), ("numpy", "torch", "jax"), 1), n, m)
    assert all(v == "ok" for v in check(case).values()), check(case)
    sides = {"autograd_gpu": case.ours}
    sides.update({name: fn for name, (fn, _) in case.peers.items()})
    info = interleaved(benchmark, sides, rounds=15, calls=3)
    benchmark.extra_info.update(n=n, m=m, dtype="float64")
    print(f"\ninterleaved Jacobian R^{n} -> R^{m} (process CPU time), AUTO / peer: " + "; ".join(
        f"{k[6:-7]} {v:.3g}x" for k, v in info.items() if k.endswith("_median")))


@pytest.mark.parametrize("n,m,mode", [(n, m, mode) for n, m in SHAPES
                                      for mode in ("forward", "reverse")],
                         ids=[f"{n}x{m}-{mode}" for n, m in SHAPES
                              for mode in ("forward", "reverse")])
def test_jacobian_vmap_interleaved(benchmark, interleaved, n, m, mode):
    """vmap formulations of the Jacobian against ag.jacobian's (f recorded once, identity seed
    batches swept through the tape), 15 interleaved rounds of 3 calls, one BLAS thread. Forward:
    f run under a ForwardAccumulator with the identity tangent batch (the engine's vmap over jvp)
    and a user's ag.vmap over ag.jvp. Reverse: a user's ag.vmap over a vjp_fn. The ratios (-s)
    are ag.jacobian's time over each variant's (above 1: the variant is faster)."""
    A, x = _data(n, m)
    ref = _reference(A, x)
    if mode == "forward":
        sides = {"autograd_gpu": _ours(A, x, "forward"),
                 "accumulator": _ours(A, x, "accumulator"), "vmap_jvp": _ours(A, x, "vmap_jvp")}
    else:
        sides = {"autograd_gpu": _ours(A, x, "reverse"), "vmap_vjp": _ours(A, x, "vmap_vjp")}
    for name, fn in sides.items():
        np.testing.assert_allclose(fn(), ref, rtol=1e-9, atol=1e-12, err_msg=name)
    with ag.blas_threads(1):
        info = interleaved(benchmark, sides, rounds=15, calls=3)
    benchmark.extra_info.update(n=n, m=m, dtype="float64")
    print(f"\ninterleaved Jacobian R^{n} -> R^{m} {mode} (process CPU time), ag.jacobian "
          f"mode={mode!r} / variant: " + "; ".join(
              f"{k[6:-7]} {v:.3g}x (p25 {info[k[:-7] + '_p25']:.3g}, p75 "
              f"{info[k[:-7] + '_p75']:.3g})" for k, v in info.items() if k.endswith("_median")))
