"""Inverse problem: recover a damped oscillator's frequency and damping from noisy data.

    x'' + 2 zeta omega x' + omega^2 x = 0,      x(0) = 1, x'(0) = 0

Synthetic observations of x(t) come from the true (omega, zeta) plus Gaussian noise. The model
integrates the ODE with a classic fourth-order Runge-Kutta scheme written with ag ops, so the
tape differentiates the loss through every integrator step; Adam then fits (omega, zeta) by
gradient descent on the mean squared misfit.

    python examples/inverse_oscillator.py            # 120 RK4 steps, 150 iterations
    python examples/inverse_oscillator.py --small    # a quick run (used by the tests)

Writes oscillator_fit.png (``--out``; ``--no-plot`` to skip): the noisy observations with the
true, initial and fitted trajectories, and the misfit and both parameters per iteration. Time is
in seconds and omega in rad/s; x is in units of the initial displacement x(0).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import autograd_gpu as ag

# A(omega, zeta) = B0 - omega^2 B1 - 2 zeta omega B2: the system matrix of s = (x, x')
B0 = np.array([[0.0, 1.0], [0.0, 0.0]])
B1 = np.array([[0.0, 0.0], [1.0, 0.0]])
B2 = np.array([[0.0, 0.0], [0.0, 1.0]])


def rk4(f, s0: ag.Tensor, dt: float, n: int) -> ag.Tensor:
    """Integrate s' = f(s) from s0 with n RK4 steps of size dt; returns the n states stacked."""
    s, out = s0, []
    for _ in range(n):
        k1 = f(s)
        k2 = f(s + (0.5 * dt) * k1)
        k3 = f(s + (0.5 * dt) * k2)
        k4 = f(s + dt * k3)
        s = s + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        out.append(s)
    return ag.stack(out)


def trajectory(omega: ag.Tensor | float, zeta: ag.Tensor | float, dt: float, n: int
               ) -> ag.Tensor:
    """Positions x(t_1..t_n) of the oscillator (omega, zeta may be Tensors or floats)."""
    b0, b1, b2 = (ag.Tensor.from_array(b) for b in (B0, B1, B2))
    A = b0 - (omega * omega) * b1 - (2.0 * zeta * omega) * b2
    s0 = ag.Tensor.from_array(np.array([1.0, 0.0]))
    states = rk4(lambda s: ag.matmul(A, s), s0, dt, n)
    return states[:, 0]


def exact(omega: float, zeta: float, t: np.ndarray) -> np.ndarray:
    """The closed-form underdamped solution, to check the integrator."""
    wd = omega * np.sqrt(1 - zeta**2)
    return np.exp(-zeta * omega * t) * (np.cos(wd * t) + zeta * omega / wd * np.sin(wd * t))


def plot(path: str, t, obs, clean, initial, fitted, history, args, result) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.plot(t, obs, "o", ms=3, color="0.45", label=f"observations (noise sd {args.noise:g})")
    ax.plot(t, clean, color="C0", lw=2.5, alpha=0.6,
            label=f"true: omega={args.omega:g} rad/s, zeta={args.zeta:g}")
    ax.plot(t, initial, "--", color="C3", label="initial guess: omega=1.6, zeta=0.4")
    ax.plot(t, fitted, color="C1", label=f"fitted: omega={result['omega']:.3f}, "
                                         f"zeta={result['zeta']:.3f}")
    ax.set_xlabel("time t (s)")
    ax.set_ylabel("displacement x(t) / x(0)")
    ax.set_title("damped oscillator: data and trajectories (RK4)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    it = np.arange(1, len(history["loss"]) + 1)
    ax2.semilogy(it, history["loss"], color="C0", label="misfit (mean squared error)")
    ax2.axhline(args.noise**2, color="0.5", ls=":", label="noise variance")
    ax2.set_xlabel("Adam iteration")
    ax2.set_ylabel("misfit (units of x(0) squared)")
    ax2.set_title("fit progress")
    ax2.grid(alpha=0.3, which="both")
    par = ax2.twinx()
    par.plot(it, history["omega"], color="C1", label="omega (rad/s)")
    par.plot(it, history["zeta"], color="C2", label="zeta (dimensionless)")
    par.set_ylabel("parameter value")
    lines = ax2.get_legend_handles_labels()
    more = par.get_legend_handles_labels()
    ax2.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="fewer steps and iterations")
    p.add_argument("--omega", type=float, default=2.0)
    p.add_argument("--zeta", type=float, default=0.15)
    p.add_argument("--noise", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="oscillator_fit.png", help="the PNG to write")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = p.parse_args(argv)
    n, dt, iters = (40, 0.15, 60) if args.small else (120, 0.05, 150)
    t = dt * np.arange(1, n + 1)
    with ag.device("cpu"):  # a few scalars per step: the host beats kernel launches here
        clean = trajectory(args.omega, args.zeta, dt, n).numpy()
        rng = np.random.default_rng(args.seed)
        obs_np = clean + args.noise * rng.standard_normal(n)
        obs = ag.Tensor.from_array(obs_np)
        omega = ag.Variable(np.float64(1.6), name="omega")  # initial guesses
        zeta = ag.Variable(np.float64(0.4), name="zeta")
        initial = trajectory(1.6, 0.4, dt, n).numpy()
        opt = ag.optim.Adam([omega, zeta], lr=0.05)
        t0 = time.perf_counter()
        history = {"loss": [], "omega": [], "zeta": []}
        for _ in range(iters):
            with ag.GradientTape() as tape:
                loss = ((trajectory(omega, zeta, dt, n) - obs) ** 2).mean()
            opt.step(tape.gradient(loss, [omega, zeta]))
            history["loss"].append(loss.to_scalar())
            history["omega"].append(omega.to_scalar())
            history["zeta"].append(zeta.to_scalar())
        elapsed = time.perf_counter() - t0
        fitted = trajectory(omega, zeta, dt, n).numpy()
    losses = history["loss"]
    result = {"omega": omega.to_scalar(), "zeta": zeta.to_scalar(), "loss": losses[-1],
              "initial_loss": losses[0], "rk4_max_error": float(np.abs(
                  clean - exact(args.omega, args.zeta, t)).max()), "seconds": elapsed,
              "history": history, "plot": None}
    print(f"RK4 vs closed form: max error {result['rk4_max_error']:.2e}")
    print(f"true   omega={args.omega:.4f} zeta={args.zeta:.4f}")
    print(f"fitted omega={result['omega']:.4f} zeta={result['zeta']:.4f} "
          f"(misfit {losses[0]:.3e} -> {losses[-1]:.3e}, noise variance {args.noise**2:.1e}; "
          f"{iters} iterations of {n} RK4 steps in {elapsed:.1f} s)")
    if not args.no_plot:
        result["plot"] = plot(args.out, t, obs_np, clean, initial, fitted, history, args, result)
        print(f"plot: {result['plot']}")
    return result


if __name__ == "__main__":
    main()
