"""``python -m autograd_gpu.bench``: autograd_gpu against the peers installed, interleaved.

    python -m autograd_gpu.bench [--quick] [--device cpu|cuda] [--rounds 15] [--threads 1]
                                 [--cases chain,mlp,jacobian] [--peers numpy,torch,jax]
                                 [--json bench.json] [--png bench.png] [--no-plot]

Cases (the ones docs/benchmarks.md reports):
* ``chain``: 1,000 tiny elementwise ops on 8 float32 values, forward + backward (250 repeats of
  ``y = y + tanh(sin(y)) * c``): the per-op overhead of recording and sweeping.
* ``mlp``: one training step of a ReLU MLP with MSE loss and plain SGD, float32 (CPU: batch 256,
  width 1024, 4 layers; GPU: batch 8192, width 4096, 6 layers).
* ``jacobian``: the Jacobian of ``tanh(A @ sin(x)) * 2``, float64, for x in R^8 -> R^2000 and
  R^2000 -> R^8, autograd_gpu's automatic mode choice against each peer's forward and reverse
  mode.

Peers, each used when importable: the same computation written by hand in NumPy (on a GPU,
CuPy), PyTorch eager (``torch.func`` for Jacobians), and JAX with ``jax.jit``. Before timing,
every peer's result is checked against autograd_gpu's; a disagreement is reported as MISMATCH
and the command exits with status 2.

Why interleaved: on a shared machine the speed drifts by 2x within minutes, so times measured one
after the other compare the machine's moods. Each round times every side (the best of
``--calls`` calls each), alternating which goes first; a side's ratio in a round is
autograd_gpu's time over the peer's in that round. The table gives the median of those ratios
and their spread (the 25th-75th percentile), below 1 meaning autograd_gpu is faster. Absolute
times are printed for orientation only: on a busy machine they are not comparable across runs.

Timer: on the CPU the default is the process's CPU time (``time.process_time``), on a GPU the
wall clock after a synchronize. On a busy machine a wall-clock time mostly measures the wait for
a core: on the 2-core development VM at load average 6.9 (2026-12-07), a 1,000-op chain step
took 26.6 ms by the wall clock and 2.9 ms of CPU time, while a 0.9 ms step, short enough to run
between two preemptions, lost nothing, so wall-clock ratios between a long and a short side
were off by up to 9x. CPU time counts the work done; with ``--threads`` above 1 it adds up every
thread's time, so measure latency with ``--timer wall`` on an idle machine.

``--threads`` (default 1) sets NumPy's BLAS threads (``ag.blas_threads``), PyTorch's intra-op
threads and, when JAX is imported by this command, XLA's CPU threads, so that every side uses the
same number of cores. ``--quick`` runs 5 rounds of 2 calls (under a minute on a 2-core machine
without peers): a smoke test of the command and a rough ratio, not a measurement to publish.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

import autograd_gpu as ag
from autograd_gpu.backend import backend_for
from autograd_gpu.blas import blas_info

from .ops import graph

__all__ = [
    "CASES", "PEERS", "quantile", "ratio_stats", "TIMERS", "interleave", "machine_info", "Case",
    "CHAIN_OPS", "CHAIN_REPS", "chain_inputs", "chain_by_hand", "MLP_LR", "mlp_sizes", "mlp_data",
    "mlp_step_by_hand", "make_ag_mlp_step", "JAC_SHAPES", "jacobian_data", "jacobian_by_hand",
    "build_cases", "check", "run", "format_table", "plot", "parse_args", "main", "cli",
]

CASES = ("chain", "mlp", "jacobian")
PEERS = ("numpy", "torch", "jax")


# ---- statistics and the interleaving loop -----------------------------------------------------


def quantile(xs: list[float], q: float) -> float:
    """Linear-interpolation quantile (NumPy's default) of a non-empty list."""
    return float(np.quantile(np.asarray(xs, dtype=float), q))


def ratio_stats(ours: list[float], peer: list[float]) -> dict:
    """Per-round ratios ours[i] / peer[i]: median, 25th and 75th percentiles, min, max, n."""
    if not ours or len(ours) != len(peer):
        raise ag.ArgumentError(f"ratio_stats: expected two equally long non-empty lists of "
                               f"times, got {len(ours)} and {len(peer)}")
    r = [a / b for a, b in zip(ours, peer)]
    return {"median": statistics.median(r), "p25": quantile(r, 0.25), "p75": quantile(r, 0.75),
            "min": min(r), "max": max(r), "n": len(r), "ratios": r}


TIMERS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleave(sides: dict[str, Callable[[], Any]], rounds: int, calls: int = 3,
               warmup: int = 2, progress: Callable[[str], None] | None = None,
               timer: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Times every side in each of ``rounds`` rounds: the best of ``calls`` calls, in seconds.

    Each callable must finish its work before returning (a GPU side synchronizes). Every side
    runs ``warmup`` untimed calls first (caches, compilation). Even rounds run the sides in the
    given order, odd rounds in reverse, so no side always follows the same neighbour. ``timer``
    is ``time.perf_counter`` (wall clock) or ``time.process_time`` (the process's CPU time, see
    the module docstring)."""
    if rounds < 1 or calls < 1:
        raise ag.ArgumentError(f"interleave: expected rounds >= 1 and calls >= 1, got "
                               f"rounds={rounds}, calls={calls}")
    names = list(sides)
    for name in names:
        for _ in range(warmup):
            sides[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            fn = sides[name]
            best = float("inf")
            for _ in range(calls):
                t0 = timer()
                fn()
                best = min(best, timer() - t0)
            times[name].append(best)
            if progress is not None:
                progress(name)
    return times


# ---- the machine ------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        return version(module)
    except PackageNotFoundError:
        return None


def machine_info(device: ag.Device) -> dict:
    """What produced the numbers: host, CPU, load, GPU, and the versions of every library."""
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "device": str(device),
        "versions": {"autograd_gpu": ag.__version__, "numpy": np.__version__},
        "blas": blas_info(),
        "compiled_node": _compiled_node(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = os.getloadavg()[0]
    for dist in ("torch", "jax", "jaxlib", "cupy-cuda12x", "cupy-cuda13x"):
        v = _version(dist)
        if v is not None:
            info["versions"][dist] = v
    if device.type == "cuda":
        import cupy  # optional dependency (cupy)

        props = cupy.cuda.runtime.getDeviceProperties(device.index)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    return info


def _compiled_node() -> bool:
    return graph.Node is not graph.PyNode


# ---- the cases --------------------------------------------------------------------------------


@dataclass
class Case:
    """One comparison: ``ours`` and each peer compute the same thing; ``result`` functions give
    the numbers the check compares (outside the timed calls)."""

    name: str
    title: str
    per: float  # divide a time by this for the unit
    unit: str  # "us/op", "ms", ...
    scale: float  # seconds -> unit
    ours: Callable[[], Any]
    ours_result: Callable[[], np.ndarray]
    peers: dict[str, tuple[Callable[[], Any], Callable[[], np.ndarray]]] = field(
        default_factory=dict)
    rtol: float = 1e-4
    atol: float = 0.0


class _Env:
    """The device and the peers this run uses (imported once)."""

    def __init__(self, device: ag.Device, peers: tuple[str, ...], threads: int | None):
        self.device = device
        self.gpu = device.type == "cuda"
        self.bk = backend_for(device)
        self.xp = self.bk.xp
        self.torch = self.jax = None
        self.skipped: dict[str, str] = {}
        if "torch" in peers:
            try:
                import torch  # optional dependency (torch)

                if threads is not None:
                    torch.set_num_threads(threads)
                if self.gpu and not torch.cuda.is_available():
                    self.skipped["torch"] = "installed without CUDA"
                else:
                    self.torch = torch
            except ImportError:
                self.skipped["torch"] = "not installed"
        if "jax" in peers:
            if threads == 1 and not self.gpu and "jax" not in sys.modules:
                # XLA reads its thread settings when it starts
                os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                                   "intra_op_parallelism_threads=1")
            try:
                import jax  # optional dependency (jax)

                jax.config.update("jax_enable_x64", True)
                platform_name = "gpu" if self.gpu else "cpu"
                try:
                    self.jax_device = jax.devices(platform_name)[0]
                    self.jax = jax
                except RuntimeError:
                    self.skipped["jax"] = f"no {platform_name} backend in this jaxlib"
            except ImportError:
                self.skipped["jax"] = "not installed"
        self.hand = "cupy" if self.gpu else "numpy"
        self.use_hand = "numpy" in peers

    def sync(self) -> None:
        self.bk.synchronize()

    def torch_device(self) -> str:
        return f"cuda:{self.device.index}" if self.gpu else "cpu"

    def torch_sync(self) -> None:
        if self.gpu:
            self.torch.cuda.synchronize()


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, ag.Tensor):
        return a.numpy()
    if type(a).__module__.startswith("cupy"):
        return a.get()
    if hasattr(a, "detach"):  # torch
        return a.detach().cpu().numpy()
    return np.asarray(a)


# chain -------------------------------------------------------------------------------------

CHAIN_OPS = 1000
CHAIN_REPS = CHAIN_OPS // 4


def chain_inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(0.1, 1.0, 8).astype(np.float32), np.full(8, 0.1, np.float32)


def chain_by_hand(xp, x, c):
    """The chain's forward and its backward written by hand (seed: ones)."""
    saved = []
    y = x
    for _ in range(CHAIN_REPS):
        t = xp.tanh(xp.sin(y))
        saved.append((y, t))
        y = y + t * c
    g = xp.ones_like(x)
    for y, t in reversed(saved):
        g = g + g * c * (1 - t * t) * xp.cos(y)
    return g


def _case_chain(env: _Env) -> Case:
    x0, c0 = chain_inputs()
    dev = env.device
    c = ag.Tensor.from_array(c0, device=dev)

    def ours_grad():
        tape = ag.GradientTape()
        x = tape.watch(ag.Tensor.from_array(x0, device=dev))
        y = x
        for _ in range(CHAIN_REPS):
            y = y + ag.tanh(ag.sin(y)) * c
        return tape.gradient(y, [x])[0]

    def ours():
        ours_grad()
        env.sync()

    case = Case("chain", f"chain of {CHAIN_OPS} tiny ops (8 float32), fwd+bwd", CHAIN_OPS,
                "us/op", 1e6, ours, lambda: _to_numpy(ours_grad()))
    if env.use_hand:
        xp = env.xp
        xh, ch = xp.asarray(x0), xp.asarray(c0)

        def hand():
            chain_by_hand(xp, xh, ch)
            env.sync()

        case.peers[env.hand] = (hand, lambda: _to_numpy(chain_by_hand(xp, xh, ch)))
    if env.torch is not None:
        torch = env.torch
        xt = torch.from_numpy(x0).to(env.torch_device())
        ct = torch.from_numpy(c0).to(env.torch_device())

        def torch_grad():
            x = xt.clone().requires_grad_(True)
            y = x
            for _ in range(CHAIN_REPS):
                y = y + torch.tanh(torch.sin(y)) * ct
            return torch.autograd.grad(y, [x], torch.ones_like(y))[0]

        def torch_step():
            torch_grad()
            env.torch_sync()

        case.peers["torch"] = (torch_step, lambda: _to_numpy(torch_grad()))
    if env.jax is not None:
        jax, jnp = env.jax, env.jax.numpy
        xj = jax.device_put(jnp.asarray(x0), env.jax_device)
        cj = jax.device_put(jnp.asarray(c0), env.jax_device)

        def total(x):
            y = x
            for _ in range(CHAIN_REPS):
                y = y + jnp.tanh(jnp.sin(y)) * cj
            return y.sum()

        jgrad = jax.jit(jax.grad(total))
        case.peers["jax.jit"] = (lambda: jgrad(xj).block_until_ready(),
                                 lambda: np.asarray(jgrad(xj)))
    return case


# mlp ---------------------------------------------------------------------------------------

MLP_LR = 1e-3


def mlp_sizes(gpu: bool) -> tuple[int, int, int]:
    """(batch, width, layers): the CPU and GPU models of docs/benchmarks.md."""
    return (8192, 4096, 6) if gpu else (256, 1024, 4)


def mlp_data(B: int, W: int, L: int):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, W)).astype(np.float32)
    y = rng.standard_normal((B, W)).astype(np.float32)
    ws = [(rng.standard_normal((W, W)) / np.sqrt(W)).astype(np.float32) for _ in range(L)]
    bs = [np.zeros(W, np.float32) for _ in range(L)]
    return x, y, ws, bs


def mlp_step_by_hand(xp, x, y, ws, bs) -> float:
    """One SGD step of the MLP written by hand (updates ws, bs in place); returns the loss."""
    L = len(ws)
    hs = [x]
    h = x
    for i in range(L):
        h = h @ ws[i] + bs[i]
        if i < L - 1:
            xp.maximum(h, 0, out=h)
        hs.append(h)
    d = h - y
    loss = (d * d).mean()
    g = d * (2.0 / d.size)
    for i in reversed(range(L)):
        gw = hs[i].T @ g
        gb = g.sum(axis=0)
        if i > 0:
            g = g @ ws[i].T
            g *= hs[i] > 0
        ws[i] -= MLP_LR * gw
        bs[i] -= MLP_LR * gb
    return loss


def make_ag_mlp_step(B: int, W: int, L: int, device="cpu"):
    """autograd_gpu's MLP step from the shared start: (step, params); step() returns the loss."""
    x0, y0, ws0, bs0 = mlp_data(B, W, L)
    x = ag.Tensor.from_array(x0, device=device)
    y = ag.Tensor.from_array(y0, device=device)
    params = [ag.Variable(a, device=device) for pair in zip(ws0, bs0) for a in pair]
    opt = ag.optim.SGD(params, lr=MLP_LR)

    def step():
        with ag.GradientTape() as tape:
            h = x
            for i in range(L):
                h = h @ params[2 * i] + params[2 * i + 1]
                if i < L - 1:
                    h = ag.relu(h)
            d = h - y
            loss = (d * d).mean()
        opt.step(tape.gradient(loss, params))
        return loss

    return step, params


def _case_mlp(env: _Env) -> Case:
    B, W, L = mlp_sizes(env.gpu)
    step, params = make_ag_mlp_step(B, W, L, env.device)

    def ours():
        step()
        env.sync()

    def ours_result():  # one step from the shared start: its loss and first weight
        s, p = make_ag_mlp_step(B, W, L, env.device)
        loss = s().to_scalar()
        return np.concatenate([[loss], p[0].numpy().ravel()[:4096]])

    case = Case("mlp", f"MLP training step (batch {B}, width {W}, {L} layers, float32, SGD)", 1,
                "ms", 1e3, ours, ours_result, rtol=2e-4, atol=1e-6)
    if env.use_hand:
        case.peers[env.hand] = _mlp_by_hand(env, B, W, L)
    if env.torch is not None:
        case.peers["torch"] = _mlp_torch(env, B, W, L)
    if env.jax is not None:
        case.peers["jax.jit"] = _mlp_jax(env, B, W, L)
    return case


def _mlp_by_hand(env: _Env, B, W, L):
    """(timed step, result) of the MLP step written out in the array library."""
    xp = env.xp

    def hand_state():
        x0, y0, ws0, bs0 = mlp_data(B, W, L)
        return (xp.asarray(x0), xp.asarray(y0), [xp.asarray(w) for w in ws0],
                [xp.asarray(b) for b in bs0])

    st = hand_state()

    def hand():
        mlp_step_by_hand(xp, *st)
        env.sync()

    def hand_result():
        s = hand_state()
        loss = float(mlp_step_by_hand(xp, *s))
        return np.concatenate([[loss], _to_numpy(s[2][0]).ravel()[:4096]])

    return hand, hand_result


def _mlp_torch(env: _Env, B, W, L):
    """(timed step, result) of the MLP step in PyTorch eager."""
    torch = env.torch
    tdev = env.torch_device()

    def torch_state():
        x0, y0, ws0, bs0 = mlp_data(B, W, L)
        t = [torch.from_numpy(a).to(tdev) for a in ws0 + bs0]
        for a in t:
            a.requires_grad_(True)
        return torch.from_numpy(x0).to(tdev), torch.from_numpy(y0).to(tdev), t

    def torch_step(state):
        x, y, p = state
        h = x
        for i in range(L):
            h = h @ p[i] + p[L + i]
            if i < L - 1:
                h = torch.relu(h)
        loss = ((h - y) ** 2).mean()
        grads = torch.autograd.grad(loss, p)
        with torch.no_grad():
            for a, g in zip(p, grads):
                a.sub_(MLP_LR * g)
        return loss

    tst = torch_state()

    def torch_timed():
        torch_step(tst)
        env.torch_sync()

    def torch_result():
        s = torch_state()
        loss = torch_step(s).item()
        return np.concatenate([[loss], _to_numpy(s[2][0]).ravel()[:4096]])

    return torch_timed, torch_result


def _mlp_jax(env: _Env, B, W, L):
    """(timed step, result) of the MLP step under jax.jit."""
    jax, jnp = env.jax, env.jax.numpy

    def loss_fn(p, x, y):
        h = x
        for i in range(L):
            h = h @ p[i] + p[L + i]
            if i < L - 1:
                h = jnp.maximum(h, 0)
        return jnp.mean((h - y) ** 2)

    @jax.jit
    def jax_step(p, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        return [a - MLP_LR * g for a, g in zip(p, grads)], loss

    def jax_state():
        x0, y0, ws0, bs0 = mlp_data(B, W, L)
        put = lambda a: jax.device_put(jnp.asarray(a), env.jax_device)  # noqa: E731
        return [put(a) for a in ws0 + bs0], put(x0), put(y0)

    jst = list(jax_state())

    def jax_timed():
        jst[0], loss = jax_step(*jst)
        loss.block_until_ready()

    def jax_result():
        p, x, y = jax_state()
        p, loss = jax_step(p, x, y)
        return np.concatenate([[float(loss)], np.asarray(p[0]).ravel()[:4096]])

    return jax_timed, jax_result


# jacobian ----------------------------------------------------------------------------------

JAC_SHAPES = ((8, 2000), (2000, 8))


def jacobian_data(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n * 10007 + m)
    return rng.standard_normal((m, n)) / np.sqrt(n), rng.standard_normal(n)


def jacobian_by_hand(xp, A, x):
    """d/dx of tanh(A @ sin(x)) * 2, written out."""
    z = A @ xp.sin(x)
    return (2 * (1 - xp.tanh(z) ** 2))[:, None] * A * xp.cos(x)[None, :]


def _case_jacobian(env: _Env, n: int, m: int) -> Case:
    A0, x0 = jacobian_data(n, m)
    A = ag.Tensor.from_array(A0, device=env.device)
    x = ag.Tensor.from_array(x0, device=env.device)

    def f(v):
        return (A @ v.sin()).tanh() * 2.0

    def ours():
        ag.jacobian(f, x, mode="auto")
        env.sync()

    case = Case(f"jacobian {n}x{m}", f"Jacobian of tanh(A sin x) * 2, R^{n} -> R^{m}, float64",
                1, "ms", 1e3, ours, lambda: ag.jacobian(f, x, mode="auto").numpy(),
                rtol=1e-9, atol=1e-12)
    if env.use_hand:
        xp = env.xp
        Ah, xh = xp.asarray(A0), xp.asarray(x0)

        def hand():
            jacobian_by_hand(xp, Ah, xh)
            env.sync()

        case.peers[env.hand] = (hand, lambda: _to_numpy(jacobian_by_hand(xp, Ah, xh)))
    if env.torch is not None:
        torch = env.torch
        from torch import func as tfunc  # optional dependency (torch)

        At = torch.from_numpy(A0).to(env.torch_device())
        xt = torch.from_numpy(x0).to(env.torch_device())

        def tf(v):
            return torch.tanh(At @ torch.sin(v)) * 2.0

        for kind, jac in (("jacfwd", tfunc.jacfwd(tf)), ("jacrev", tfunc.jacrev(tf))):
            def timed(jac=jac):
                jac(xt)
                env.torch_sync()

            case.peers[f"torch.{kind}"] = (timed, lambda jac=jac: _to_numpy(jac(xt)))
    if env.jax is not None:
        jax, jnp = env.jax, env.jax.numpy
        Aj = jax.device_put(jnp.asarray(A0), env.jax_device)
        xj = jax.device_put(jnp.asarray(x0), env.jax_device)

        def jf(v):
            return jnp.tanh(Aj @ jnp.sin(v)) * 2.0

        for kind, jac in (("jacfwd", jax.jit(jax.jacfwd(jf))), ("jacrev", jax.jit(jax.jacrev(jf)))):
            case.peers[f"jax.jit.{kind}"] = (lambda jac=jac: jac(xj).block_until_ready(),
                                             lambda jac=jac: np.asarray(jac(xj)))
    return case


def build_cases(env: _Env, names: tuple[str, ...]) -> list[Case]:
    cases = []
    for name in names:
        if name == "chain":
            cases.append(_case_chain(env))
        elif name == "mlp":
            cases.append(_case_mlp(env))
        elif name == "jacobian":
            cases += [_case_jacobian(env, n, m) for n, m in JAC_SHAPES]
    return cases


# ---- running, reporting -----------------------------------------------------------------------


def check(case: Case) -> dict[str, str]:
    """'ok' or 'MISMATCH: ...' per peer: each peer's numbers against autograd_gpu's."""
    ours = np.asarray(case.ours_result(), dtype=np.float64)
    out = {}
    for name, (_, result) in case.peers.items():
        theirs = np.asarray(result(), dtype=np.float64)
        if theirs.shape != ours.shape:
            out[name] = f"MISMATCH: shape {theirs.shape} against ours {ours.shape}"
            continue
        err = np.abs(theirs - ours)
        bound = case.atol + case.rtol * np.abs(ours)
        bad = int((err > bound).sum())
        out[name] = "ok" if bad == 0 else (f"MISMATCH: {bad} of {ours.size} values differ, "
                                           f"max abs difference {float(err.max()):.3g}")
    return out


class _Progress:
    """A progress bar on stderr (tqdm when installed, else a plain counter)."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.done = 0
        self.total = total
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm  # optional dependency (tqdm)

                self.bar = tqdm(total=total, file=sys.stderr, unit="timing",
                                desc="autograd_gpu.bench")
            except ImportError:
                pass

    def label(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text)

    def __call__(self, _name: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled:
            sys.stderr.write(f"\rautograd_gpu.bench: {self.done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\n")


def run(args: argparse.Namespace) -> dict:
    device = ag.default_device() if args.device == "auto" else ag.Device(args.device)
    threads = args.threads if args.threads > 0 else None
    timer = args.timer if args.timer != "auto" else ("wall" if device.type == "cuda" else "cpu")
    with ag.blas_threads(threads if device.type == "cpu" else None):
        env = _Env(device, tuple(args.peers), threads)
        info = machine_info(device)
        cases = build_cases(env, tuple(args.cases))
        total = sum(args.rounds * (1 + len(c.peers)) for c in cases)
        progress = _Progress(total, not args.quiet)
        results = []
        try:
            for case in cases:
                progress.label(case.name)
                checks = check(case)
                sides = {"autograd_gpu": case.ours}
                sides.update({p: fn for p, (fn, _) in case.peers.items()})
                times = interleave(sides, args.rounds, args.calls, args.warmup, progress,
                                   TIMERS[timer])
                ours = times["autograd_gpu"]
                row = {"case": case.name, "title": case.title, "unit": case.unit,
                       "ours_s": ours, "ours_median": statistics.median(ours) * case.scale
                       / case.per, "peers": {}}
                for peer in case.peers:
                    st = ratio_stats(ours, times[peer])
                    row["peers"][peer] = dict(
                        st, check=checks[peer], peer_s=times[peer],
                        peer_median=statistics.median(times[peer]) * case.scale / case.per)
                results.append(row)
        finally:
            progress.close()
    if hasattr(os, "getloadavg"):
        info["load_average_1min_end"] = os.getloadavg()[0]
    info["settings"] = {"rounds": args.rounds, "calls": args.calls, "warmup": args.warmup,
                        "threads": threads, "timer": timer, "quick": args.quick}
    info["peers_skipped"] = env.skipped
    return {"machine": info, "results": results}


def format_table(report: dict) -> str:
    m = report["machine"]
    v = m["versions"]
    s = m["settings"]
    blas = ", ".join(f"{b['library']} {b['version']}" for b in m["blas"]) or "no BLAS seen"
    lines = [
        f"autograd_gpu {v['autograd_gpu']} bench, {m['date_utc']} UTC, device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else ""),
        f"machine: {m['cpu']}, {m['cpu_count']} cores, {m['platform']}"
        + (f", load average {m['load_average_1min']:.2f} at the start"
           if "load_average_1min" in m else ""),
        "versions: Python " + m["python"] + ", " + ", ".join(
            f"{k} {val}" for k, val in v.items() if k != "autograd_gpu") + f" ({blas})"
        + (", compiled graph node" if m["compiled_node"] else ", pure-Python graph node"),
        f"method: {s['rounds']} interleaved rounds, best of {s['calls']} calls per side per "
        f"round, {'process CPU time' if s['timer'] == 'cpu' else 'wall-clock time'}, threads "
        f"{s['threads'] or 'library default'}"
        + (" (--quick: a smoke test, not a measurement)" if s["quick"] else ""),
    ]
    if m["peers_skipped"]:
        lines.append("peers not used: " + ", ".join(
            f"{k} ({why})" for k, why in m["peers_skipped"].items()))
    head = (f"{'case':<17} {'autograd_gpu':>14} {'peer':<17} {'peer time':>12} "
            f"{'ratio':>8} {'spread (p25-p75)':>17}  check")
    lines += ["", head, "-" * len(head)]
    for row in report["results"]:
        first = True
        ours = f"{row['ours_median']:.3g} {row['unit']}"
        if not row["peers"]:
            lines.append(f"{row['case']:<17} {ours:>14} {'(no peer)':<17}")
        for peer, st in row["peers"].items():
            theirs = f"{st['peer_median']:.3g} {row['unit']}"
            spread = f"{st['p25']:.3g}-{st['p75']:.3g}x"
            lines.append(
                f"{row['case'] if first else '':<17} {ours if first else '':>14} {peer:<17} "
                f"{theirs:>12} {st['median']:>7.3g}x {spread:>17}  {st['check']}")
            first = False
    lines += ["", "ratio: autograd_gpu's time over the peer's in the same round (median over "
                  "rounds); below 1 means autograd_gpu is faster.",
              "Times are medians over rounds, for orientation: on a busy machine absolute times "
              "are not comparable across runs; the interleaved ratios are."]
    return "\n".join(lines)


def plot(report: dict, path: str) -> str:
    import matplotlib  # optional dependency (matplotlib)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional dependency (matplotlib)

    labels, med, lo, hi, bad = [], [], [], [], []
    for row in report["results"]:
        for peer, st in row["peers"].items():
            labels.append(f"{row['case']}\nvs {peer}")
            med.append(st["median"])
            lo.append(st["median"] - st["p25"])
            hi.append(st["p75"] - st["median"])
            bad.append(st["check"] != "ok")
    m = report["machine"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(labels), 2) + 1.8))
    if labels:
        ypos = np.arange(len(labels))[::-1]
        colors = ["C3" if b else ("C2" if r < 1 else "C0") for r, b in zip(med, bad)]
        # bars grow from parity (1x) to the ratio, so a log axis shows faster and slower alike
        left = [min(r, 1.0) for r in med]
        width = [abs(r - 1.0) for r in med]
        ax.barh(ypos, width, left=left, color=colors, alpha=0.8)
        ax.errorbar(med, ypos, xerr=[lo, hi], fmt="none", ecolor="k", capsize=3)
        ax.set_yticks(ypos)
        ax.set_yticklabels(labels, fontsize=8)
        for y, r, h in zip(ypos, med, hi):
            ax.text(max(r + h, 1.0), y, f"  {r:.3g}x", va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(min(min(r - lo_ for r, lo_ in zip(med, lo)), 1.0) / 1.5,
                    max(max(r + h for r, h in zip(med, hi)), 1.0) * 4)
        ax.axvline(1.0, color="0.2", lw=1)
        from matplotlib.patches import Patch  # optional dependency (matplotlib)

        ax.legend(handles=[Patch(color="C2", alpha=0.8, label="autograd_gpu faster"),
                           Patch(color="C0", alpha=0.8, label="peer faster"),
                           Patch(color="C3", alpha=0.8, label="results differ (MISMATCH)")],
                  fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no peer installed", ha="center", transform=ax.transAxes)
    ax.set_xlabel("time ratio autograd_gpu / peer (median of interleaved rounds, bars: "
                  "25th-75th percentile; < 1: autograd_gpu faster)", fontsize=8)
    gpu = f" ({m['gpu']})" if "gpu" in m else ""
    timer = "process CPU time" if m["settings"]["timer"] == "cpu" else "wall-clock time"
    ax.set_title(f"autograd_gpu {m['versions']['autograd_gpu']} against its peers on "
                 f"{m['device']}{gpu}\n{m['cpu']}, {m['cpu_count']} cores, {m['date_utc']} UTC, "
                 f"{timer}, {m['settings']['rounds']} rounds", fontsize=9)
    ax.grid(alpha=0.3, axis="x", which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _list(choices: tuple[str, ...], what: str):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{what}: expected a comma-separated list of "
                                             f"{', '.join(choices)}, got {text!r}")
        return items

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m autograd_gpu.bench",
                                description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("--quick", action="store_true",
                   help="5 rounds of 2 calls: a smoke test, not a measurement")
    p.add_argument("--device", default="auto", help="auto (GPU when usable), cpu, cuda, cuda:N")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (15)")
    p.add_argument("--calls", type=int, default=None, help="calls per side per round (3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per side first")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for every side (BLAS, PyTorch, XLA); 0 = each library's "
                        "default")
    p.add_argument("--timer", choices=("auto", "cpu", "wall"), default="auto",
                   help="auto: process CPU time on the CPU, wall clock on a GPU")
    p.add_argument("--cases", type=_list(CASES, "--cases"), default=list(CASES))
    p.add_argument("--peers", type=_list(PEERS, "--peers"), default=list(PEERS),
                   help="peers to try, each used when importable (numpy = written by hand in "
                        "NumPy, or CuPy on a GPU)")
    p.add_argument("--json", default="bench.json", help="where to write the full results")
    p.add_argument("--png", default="bench.png", help="where to draw the ratio chart")
    p.add_argument("--no-plot", action="store_true", help="no PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 5 if args.quick else 15
    if args.calls is None:
        args.calls = 2 if args.quick else 3
    if args.rounds < 1 or args.calls < 1 or args.warmup < 0:
        p.error("--rounds and --calls must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    report = run(args)
    print(format_table(report))
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(f"results: {args.json}")
    if not args.no_plot:
        print(f"chart: {plot(report, args.png)}")
    report["mismatches"] = [(row["case"], peer) for row in report["results"]
                            for peer, st in row["peers"].items() if st["check"] != "ok"]
    return report


def cli() -> None:
    try:
        report = main()
    except ag.AutogradError as exc:
        sys.exit(f"autograd_gpu.bench: {type(exc).__name__}: {exc}")
    if report["mismatches"]:
        print("autograd_gpu.bench: results differ from autograd_gpu's for "
              + ", ".join(f"{case} vs {peer}" for case, peer in report["mismatches"]),
              file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
