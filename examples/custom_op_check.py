"""Write a custom op with its own derivative rules and check it with NumericalChecker.

``log_cosh(x) = log(cosh(x))`` is a smooth absolute value (a robust regression loss). The
direct formula overflows for |x| > 710, so the op computes the stable form

    log_cosh(x) = |x| + log1p(exp(-2|x|)) - log(2),     d/dx log_cosh(x) = tanh(x)

and states its reverse (vjp) and forward (jvp) rules. ``ag.NumericalChecker`` compares the tape
gradient with central differences; a deliberately wrong rule is caught the same way.

    python examples/custom_op_check.py [--small] [--out custom_op_check.png] [--no-plot]

The PNG shows log_cosh, the derivative each rule gives through the tape, and central
differences of the forward: the wrong rule's curve leaves the differences, the right one sits
on them.
"""

from __future__ import annotations

import argparse

import numpy as np

import autograd_gpu as ag


def _forward(xp, x):
    a = xp.abs(x)
    return a + xp.log1p(xp.exp(-2.0 * a)) - np.log(2.0)


log_cosh = ag.custom_op(
    _forward,
    vjp=lambda g, inputs, output: (g * ag.tanh(inputs[0]),),
    jvp=lambda tangents, inputs, output: tangents[0] * ag.tanh(inputs[0]),
    name="log_cosh",
)

# the same forward with a wrong derivative (sigmoid instead of tanh): the checker must object
log_cosh_wrong = ag.custom_op(
    _forward, vjp=lambda g, inputs, output: (g * ag.sigmoid(inputs[0]),), name="log_cosh_wrong",
)


def tape_derivative(op, x: np.ndarray) -> np.ndarray:
    """d op(x_i) / d x_i for every point, through the op's own vjp (one reverse sweep of the
    sum, since op is elementwise)."""
    xt = ag.Tensor.from_array(x)
    with ag.GradientTape() as tape:
        tape.watch(xt)
        y = op(xt).sum()
    (g,) = tape.gradient(y, [xt])
    return g.numpy()


def plot(path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.linspace(-4.0, 4.0, 161)
    value = log_cosh(ag.Tensor.from_array(x)).numpy()
    eps = 1e-6
    up = log_cosh(ag.Tensor.from_array(x + eps)).numpy()
    down = log_cosh(ag.Tensor.from_array(x - eps)).numpy()
    fd = (up - down) / (2 * eps)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax.plot(x, value, color="C0", label="log_cosh(x), stable form")
    ax.plot(x, np.abs(x) - np.log(2.0), ":", color="0.5", label="|x| - log 2 (asymptote)")
    ax.set_xlabel("x")
    ax.set_ylabel("log(cosh(x))")
    ax.set_title("the custom op's forward")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax2.plot(x, tape_derivative(log_cosh, x), color="C2", lw=2,
             label="tape gradient, correct rule (tanh)")
    ax2.plot(x, tape_derivative(log_cosh_wrong, x), color="C3", lw=2,
             label="tape gradient, wrong rule (sigmoid)")
    ax2.plot(x[::8], fd[::8], "kx", ms=5, label="central differences of the forward")
    ax2.set_xlabel("x")
    ax2.set_ylabel("d log_cosh / dx")
    ax2.set_title("derivative rules against central differences")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle("ag.custom_op: a wrong vjp is visible to NumericalChecker (and in this plot)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="a smaller input")
    ap.add_argument("--out", default="custom_op_check.png", help="the PNG to write")
    ap.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = ap.parse_args(argv)
    n = 8 if args.small else 64
    x = np.random.default_rng(0).uniform(-3.0, 3.0, size=n)
    checker = ag.NumericalChecker(eps=1e-6, atol=1e-7, rtol=1e-6)

    good = checker.check_gradient_central(lambda t: log_cosh(t).sum(), x)
    bad = checker.check_gradient_central(lambda t: log_cosh_wrong(t).sum(), x)
    # a composite through the op: a weighted robust loss
    w = ag.Tensor.from_array(np.linspace(0.5, 1.5, n))
    composite = checker.check_gradient_central(lambda t: (w * log_cosh(t * t - 1.0)).mean(), x)

    # forward rule against the reverse rule: J v through jvp equals <grad, v> for a sum
    xt = ag.Tensor.from_array(x)
    v = ag.Tensor.from_array(np.ones(n))
    _, tangent = ag.jvp(lambda t: log_cosh(t).sum(), (xt,), (v,))
    jvp_error = abs(tangent.to_scalar() - float(np.tanh(x).sum()))

    # stability where the naive formula overflows
    big = log_cosh(ag.Tensor.from_array(np.array([-1000.0, 0.0, 1000.0]))).numpy()
    expected_big = np.array([1000.0 - np.log(2.0), 0.0, 1000.0 - np.log(2.0)])

    result = {"good": good, "bad": bad, "composite": composite, "jvp_error": jvp_error,
              "stable_error": float(np.abs(big - expected_big).max())}
    print(f"log_cosh, correct rules:     valid={good.is_valid} (max error {good.max_error:.1e})")
    print(f"log_cosh, wrong vjp:         valid={bad.is_valid} (max error {bad.max_error:.1e})")
    print(f"weighted loss through it:    valid={composite.is_valid} "
          f"(max error {composite.max_error:.1e})")
    print(f"forward rule vs reverse rule: |difference| = {jvp_error:.1e}")
    print(f"log_cosh(+-1000) = {big[0]:.6f} (stable form; the direct formula gives inf)")
    result["plot"] = None if args.no_plot else plot(args.out)
    if result["plot"]:
        print(f"plot: {result['plot']}")
    return result


if __name__ == "__main__":
    main()
