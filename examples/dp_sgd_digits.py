"""Differentially private SGD on scikit-learn's digits: per-example gradients with ``ag.vmap``.

DP-SGD (Abadi et al., 2016) bounds how much any one training example can move the model: each
step computes every example's own gradient, clips it to norm at most ``C``, sums the clipped
gradients, adds Gaussian noise of standard deviation ``sigma * C`` and divides by the batch size.
The per-example gradients are one line, ``ag.vmap(ag.grad(loss), in_axes=(None, 0, 0))`` over
``ag.nn.functional_call``: one batched forward and backward, no Python loop over examples. The
same model, initial weights, batches (``ag.data.DataLoader``) and learning rate are trained with
plain SGD for comparison.

    python examples/dp_sgd_digits.py [--small] [--epochs 30] [--clip 1.0] [--sigma 1.0]
                                     [--out dp_sgd_digits.png] [--no-plot]

The PNG shows both runs' test accuracy per epoch. The privacy budget epsilon (at delta = 1e-5)
is the Renyi-DP accountant's bound for the subsampled Gaussian mechanism (Mironov, Talwar and
Zhang, 2019; integer orders): it assumes each batch is a Poisson sample with rate
batch / N, while the loader draws shuffled fixed-size batches, the usual approximation in
practice.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import autograd_gpu as ag
from autograd_gpu.demo import build_mlp, load_digits_split


def _loss(model):
    def loss(params, x, y):  # one example's loss (the batch axis is vmap's)
        return ag.cross_entropy(ag.nn.functional_call(model, params, x[None]), y[None])

    return loss


def dp_gradient(per_example: dict, clip: float, sigma: float, rng: np.random.Generator,
                device) -> tuple[dict, np.ndarray]:
    """The DP-SGD gradient from per-example gradients {name: (B, ...)}: each example's whole
    gradient (every parameter together) scaled to norm <= clip, summed, Gaussian noise of
    standard deviation sigma * clip added, divided by B. Also returns the per-example norms
    before clipping."""
    sq = None
    for g in per_example.values():
        s = (g * g).reshape((g.shape[0], -1)).sum(axis=1)
        sq = s if sq is None else sq + s
    norms = ag.sqrt(sq)
    scale = ag.minimum(clip / ag.maximum(norms, 1e-12), 1.0)  # (B,)
    out = {}
    for name, g in per_example.items():
        b = g.shape[0]
        clipped = (g * scale.reshape((b,) + (1,) * (g.ndim - 1))).sum(axis=0)
        noise = rng.standard_normal(tuple(clipped.shape)).astype(np.float32) * (sigma * clip)
        out[name] = (clipped + ag.Tensor.from_array(noise, device=device)) / float(b)
    return out, norms.numpy()


def accuracy(model, X: ag.Tensor, y: np.ndarray) -> float:
    with ag.no_grad():
        return float((model(X).numpy().argmax(-1) == y).mean())


def train(private: bool, args: argparse.Namespace, data: tuple, device: ag.Device) -> dict:
    X_tr, X_te, y_tr, y_te = data
    loader = ag.data.DataLoader(ag.data.ArrayDataset(X_tr, y_tr), batch_size=args.batch_size,
                                shuffle=True, seed=args.seed, drop_last=True, device=device)
    rng = np.random.default_rng(args.seed + 1)
    with ag.device(device):
        model = build_mlp(args.hidden, args.seed)
        params = dict(model.named_parameters())
        loss = _loss(model)
        per_example = ag.vmap(ag.grad(loss), in_axes=(None, 0, 0))
        Xte = ag.Tensor.from_array(X_te)
        accs, clipped_fraction, max_norm_after = [], [], 0.0
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            fractions = []
            for xb, yb in loader:
                values = {k: p.value() for k, p in params.items()}
                if private:
                    grads, norms = dp_gradient(per_example(values, xb, yb), args.clip,
                                               args.sigma, rng, device)
                    fractions.append(float((norms > args.clip).mean()))
                    max_norm_after = max(max_norm_after, float(np.minimum(norms,
                                                                          args.clip).max()))
                else:
                    grads = ag.grad(lambda p: ag.cross_entropy(
                        ag.nn.functional_call(model, p, xb), yb))(values)
                for name, p in params.items():
                    p.assign(p.value() - args.lr * grads[name])
            accs.append(accuracy(model, Xte, y_te))
            clipped_fraction.append(float(np.mean(fractions)) if fractions else 0.0)
        seconds = time.perf_counter() - t0
    return {"accuracy": accs[-1], "accuracies": accs, "seconds": seconds,
            "steps": args.epochs * len(loader), "clipped_fraction": clipped_fraction,
            "max_clipped_norm": max_norm_after}


def epsilon(q: float, sigma: float, steps: int, delta: float = 1e-5) -> float:
    """(epsilon, delta)-DP of ``steps`` compositions of the Poisson-subsampled Gaussian
    mechanism (sampling rate q, noise multiplier sigma), from its Renyi DP at integer orders
    alpha: RDP(alpha) = log(sum_k C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2)))
    / (alpha - 1), and epsilon = min over alpha of steps * RDP(alpha) + log(1/delta) /
    (alpha - 1)."""
    best = math.inf
    for alpha in range(2, 256):
        terms = [math.lgamma(alpha + 1) - math.lgamma(k + 1) - math.lgamma(alpha - k + 1)
                 + (alpha - k) * math.log1p(-q) + k * math.log(q)
                 + (k * k - k) / (2 * sigma * sigma) for k in range(alpha + 1)]
        top = max(terms)
        log_a = top + math.log(sum(math.exp(t - top) for t in terms))
        best = min(best, steps * log_a / (alpha - 1) + math.log(1 / delta) / (alpha - 1))
    return best


def plot(path: str, dp: dict, sgd: dict, args: argparse.Namespace, eps: float,
         device: ag.Device) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5))
    epochs = np.arange(1, len(dp["accuracies"]) + 1)
    ax.plot(epochs, 100 * np.asarray(sgd["accuracies"]), marker="o", ms=3,
            label=f"plain SGD (final {100 * sgd['accuracy']:.1f}%)")
    ax.plot(epochs, 100 * np.asarray(dp["accuracies"]), marker="s", ms=3, ls="--",
            label=f"DP-SGD, clip {args.clip:g}, noise {args.sigma:g} x clip "
                  f"(final {100 * dp['accuracy']:.1f}%; epsilon {eps:.2f} at delta 1e-5)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"digits MLP: DP-SGD against plain SGD (batch {args.batch_size}, "
                 f"lr {args.lr:g}, {device})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="6 epochs (the tests' smoke run)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--clip", type=float, default=1.0, help="per-example gradient norm bound C")
    ap.add_argument("--sigma", type=float, default=1.0,
                    help="noise multiplier: the noise's standard deviation is sigma * C")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads on the CPU (default 1; 0 = the library's default)")
    ap.add_argument("--out", default="dp_sgd_digits.png", help="the PNG to write")
    ap.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = ap.parse_args(argv)
    if args.small:
        args.epochs = 6
    device = ag.default_device() if args.device == "auto" else ag.Device(args.device)
    data = load_digits_split(args.seed)
    threads = args.blas_threads if device.type == "cpu" and args.blas_threads > 0 else None
    with ag.blas_threads(threads):
        sgd = train(False, args, data, device)
        dp = train(True, args, data, device)
    n = len(data[2])
    eps = epsilon(args.batch_size / n, args.sigma, dp["steps"])
    print(f"device {device}, {args.epochs} epochs of {n // args.batch_size} batches of "
          f"{args.batch_size}")
    print(f"plain SGD: test accuracy {100 * sgd['accuracy']:.2f}% ({sgd['seconds']:.1f} s)")
    print(f"DP-SGD:    test accuracy {100 * dp['accuracy']:.2f}% ({dp['seconds']:.1f} s), "
          f"clip {args.clip:g}, noise multiplier {args.sigma:g}, examples clipped in the last "
          f"epoch {100 * dp['clipped_fraction'][-1]:.0f}%, epsilon {eps:.2f} at delta 1e-5 "
          "(RDP accountant, Poisson sampling assumed)")
    path = None
    if not args.no_plot:
        path = plot(args.out, dp, sgd, args, eps, device)
        print(f"plot: {path}")
    return {"dp": dp, "sgd": sgd, "epsilon": eps, "plot": path, "device": str(device)}


if __name__ == "__main__":
    main()
