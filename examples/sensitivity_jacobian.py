"""Sensitivity analysis with forward-mode Jacobians: how an epidemic curve responds to its
parameters.

An SIR model (fractions susceptible s, infected i, recovered r)::

    s' = -beta s i,     i' = beta s i - gamma i,     s(0) = 1 - i0, i(0) = i0

is integrated with RK4 for T steps. The output is the infected fraction at every step (T values);
the inputs are three parameters p = (beta, gamma, i0). With few inputs and many outputs, forward
mode computes the whole T x 3 Jacobian in one batched sweep (three tangents at once), where
reverse mode would need T sweeps. The example computes it with ``ag.jacobian(mode="forward")``,
checks it against reverse mode and central differences, gets one directional derivative with
``ag.ForwardAccumulator``, and prints the normalised sensitivities (p_j / i_t) di_t/dp_j at the
epidemic's peak.

    python examples/sensitivity_jacobian.py [--small] [--out sir_sensitivity.png] [--no-plot]

The PNG shows the epidemic curve and, for each parameter, the normalised sensitivity of the
infected fraction over time, with central differences at every few steps on top. Time is in days
(beta and gamma are rates per day).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import autograd_gpu as ag


def infected_curve(p: ag.Tensor, dt: float, n: int) -> ag.Tensor:
    """i(t_1..t_n) for p = (beta, gamma, i0), integrated with RK4."""
    beta, gamma, i0 = p[0], p[1], p[2]

    def f(s, i):
        new = beta * s * i
        return -new, new - gamma * i

    s, i = 1.0 - i0, i0
    out = []
    for _ in range(n):
        k1s, k1i = f(s, i)
        k2s, k2i = f(s + 0.5 * dt * k1s, i + 0.5 * dt * k1i)
        k3s, k3i = f(s + 0.5 * dt * k2s, i + 0.5 * dt * k2i)
        k4s, k4i = f(s + dt * k3s, i + dt * k3i)
        s = s + dt / 6.0 * (k1s + 2.0 * k2s + 2.0 * k3s + k4s)
        i = i + dt / 6.0 * (k1i + 2.0 * k2i + 2.0 * k3i + k4i)
        out.append(i)
    return ag.stack(out)


def central_differences(fn, p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """The T x 3 Jacobian by central differences, one column per parameter."""
    cols = []
    for j in range(p.size):
        e = np.zeros_like(p)
        e[j] = eps
        up = fn(ag.Tensor.from_array(p + e)).numpy()
        down = fn(ag.Tensor.from_array(p - e)).numpy()
        cols.append((up - down) / (2 * eps))
    return np.stack(cols, axis=-1)


def plot(path: str, t: np.ndarray, curve: np.ndarray, J: np.ndarray, J_num: np.ndarray,
         p0: np.ndarray, peak: int) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7.5, 7), sharex=True)
    ax.plot(t, 100 * curve, color="C3")
    ax.axvline(t[peak], color="0.5", ls=":")
    ax.set_ylabel("infected (% of the population)")
    ax.set_title(f"SIR epidemic: beta={p0[0]:g}/day, gamma={p0[1]:g}/day, i0={p0[2]:g}")
    ax.grid(alpha=0.3)
    # normalised sensitivity (p_j / i_t) di_t/dp_j: the % change of i_t per % change of p_j
    rel = J * p0[None, :] / curve[:, None]
    rel_num = J_num * p0[None, :] / curve[:, None]
    every = max(1, len(t) // 20)
    for j, name in enumerate(("beta", "gamma", "i0")):
        ax2.plot(t, rel[:, j], color=f"C{j}", label=f"{name} (forward-mode Jacobian)")
        ax2.plot(t[::every], rel_num[::every, j], "x", color=f"C{j}", ms=5)
    ax2.plot([], [], "x", color="0.3", label="central differences")
    ax2.axhline(0, color="0.3", lw=0.8)
    ax2.axvline(t[peak], color="0.5", ls=":", label="epidemic peak")
    ax2.set_xlabel("time (days)")
    ax2.set_ylabel("(p / i) di/dp (dimensionless)")
    ax2.set_title("normalised sensitivity of the infected fraction to each parameter")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="fewer integration steps")
    ap.add_argument("--out", default="sir_sensitivity.png", help="the PNG to write")
    ap.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = ap.parse_args(argv)
    n, dt = (40, 1.0) if args.small else (160, 0.25)
    p0 = np.array([0.5, 0.2, 0.01])  # beta, gamma, i0 (R0 = 2.5)
    with ag.device("cpu"):
        p = ag.Tensor.from_array(p0)
        fn = lambda q: infected_curve(q, dt, n)

        t0 = time.perf_counter()
        J_fwd = ag.jacobian(fn, p, mode="forward").numpy()
        t_fwd = time.perf_counter() - t0
        t0 = time.perf_counter()
        J_rev = ag.jacobian(fn, p, mode="reverse").numpy()
        t_rev = time.perf_counter() - t0
        J_num = central_differences(fn, p0)

        # one directional derivative (d/d beta + d/d gamma) in the same pass as the primal
        v = np.array([1.0, 1.0, 0.0])
        with ag.ForwardAccumulator(p, ag.Tensor.from_array(v)) as acc:
            curve = fn(p)
            jvp = acc.jvp(curve).numpy()

    curve = curve.numpy()
    peak = int(curve.argmax())
    rel = J_fwd[peak] * p0 / curve[peak]
    result = {
        "jacobian": J_fwd, "peak_step": peak, "peak_infected": float(curve[peak]),
        "max_fwd_rev_diff": float(np.abs(J_fwd - J_rev).max()),
        "max_fd_rel_error": float(np.abs(J_fwd - J_num).max() / np.abs(J_num).max()),
        "jvp_error": float(np.abs(jvp - J_fwd @ v).max()),
        "normalized_sensitivity_at_peak": dict(zip(("beta", "gamma", "i0"), rel.tolist())),
        "seconds_forward": t_fwd, "seconds_reverse": t_rev, "plot": None,
    }
    print(f"SIR, {n} RK4 steps: peak infected {curve[peak]:.4f} at t = {(peak + 1) * dt:.1f}")
    print(f"Jacobian {J_fwd.shape}: forward mode {1000 * t_fwd:.0f} ms, reverse mode "
          f"{1000 * t_rev:.0f} ms; max |forward - reverse| = {result['max_fwd_rev_diff']:.1e}, "
          f"relative error against central differences {result['max_fd_rel_error']:.1e}")
    print("normalised sensitivity of the peak, (p / i) di/dp:")
    for k, s in result["normalized_sensitivity_at_peak"].items():
        print(f"  {k:>5}: {s:+.3f}")
    if not args.no_plot:
        t = dt * np.arange(1, n + 1)
        result["plot"] = plot(args.out, t, curve, J_fwd, J_num, p0, peak)
        print(f"plot: {result['plot']}")
    return result


if __name__ == "__main__":
    main()
