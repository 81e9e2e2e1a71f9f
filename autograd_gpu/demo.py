"""Demo: train an MLP on scikit-learn's handwritten digits and plot the loss curve.

    python -m autograd_gpu.demo [--small] [--epochs 30] [--device auto|cpu|cuda]
                                [--out loss_curve.png] [--no-plot] [--blas-threads 1]

Uses the GPU when one is usable (CuPy), else NumPy. Needs the ``examples`` extra
(scikit-learn, tqdm, matplotlib): ``pip install ".[examples]"``. Results go to stdout, the
progress bar to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import autograd_gpu as ag

__all__ = [
    "load_digits_split", "build_mlp", "accuracy", "parse_args", "train", "plot", "main", "cli",
]


def load_digits_split(seed: int = 0, test_size: float = 0.2
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits (1797 8x8 images with values 0..16) scaled to [0, 1] and centred with the
    training mean; a stratified split. (Dividing by per-pixel standard deviations would blow up
    the border pixels that are constant in the training set.)"""
    from sklearn.datasets import load_digits  # optional dependency (scikit-learn)
    from sklearn.model_selection import train_test_split  # optional dependency (scikit-learn)

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X.astype(np.float32), y, test_size=test_size,
                                              random_state=seed, stratify=y)
    X_tr, X_te = X_tr / 16.0, X_te / 16.0
    mu = X_tr.mean(0)
    return X_tr - mu, X_te - mu, y_tr.astype(np.int64), y_te.astype(np.int64)


def build_mlp(hidden: int = 128, seed: int = 0, device: str | ag.Device | None = None
              ) -> ag.nn.Module:
    nn = ag.nn
    return nn.Sequential(
        nn.Linear(64, hidden, seed=seed, device=device), nn.ReLU(),
        nn.Linear(hidden, hidden, seed=seed + 1, device=device), nn.ReLU(),
        nn.Linear(hidden, 10, seed=seed + 2, device=device),
    )


def accuracy(model: ag.nn.Module, X: ag.Tensor, y: np.ndarray) -> float:
    with ag.no_grad():
        pred = model(X).numpy().argmax(-1)
    return float((pred == y).mean())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m autograd_gpu.demo", description=__doc__.split(
        "\n")[0])
    p.add_argument("--small", action="store_true",
                   help="a quick run: at most 10 epochs (still about 95%% test accuracy)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (GPU when usable), cpu, cuda, cuda:N")
    p.add_argument("--out", default="loss_curve.png", help="where to save the loss-curve PNG")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="BLAS threads on the CPU (default 1: for matrices this small, thread "
                        "start-up costs more than it saves, badly so on a busy machine; 0 = "
                        "leave the library default); see ag.blas_threads")
    args = p.parse_args(argv)
    if args.small:
        args.epochs = min(args.epochs, 10)
    return args


def train(args: argparse.Namespace) -> dict:
    from tqdm import tqdm  # optional dependency (tqdm)

    device = ag.default_device() if args.device == "auto" else ag.Device(args.device)
    X_tr, X_te, y_tr, y_te = load_digits_split(args.seed)
    loader = ag.data.DataLoader(ag.data.ArrayDataset(X_tr, y_tr), batch_size=args.batch_size,
                                shuffle=True, seed=args.seed, device=device)
    with ag.device(device):
        Xte, yte = ag.Tensor.from_array(X_te), ag.Tensor.from_array(y_te)
        model = build_mlp(args.hidden, args.seed)
        opt = ag.optim.Adam(model.parameters(), lr=args.lr)
        params = model.parameters()
        n = len(y_tr)
        losses, test_losses, accs, epoch_times = [], [], [], []
        # progress on stderr: stdout carries the results, so a pipe or a log keeps them clean
        bar = tqdm(range(args.epochs), desc=f"digits MLP on {device}", unit="epoch",
                   disable=args.quiet, file=sys.stderr)
        for _ in bar:
            t0 = time.perf_counter()
            total = None
            for xb, yb in loader:
                with ag.GradientTape() as tape:
                    loss = ag.nn.cross_entropy(model(xb), yb)
                opt.step(tape.gradient(loss, params))
                part = loss.detach() * yb.shape[0]
                total = part if total is None else total + part
            train_loss = total.to_scalar() / n  # one host sync per epoch
            epoch_times.append(time.perf_counter() - t0)
            with ag.no_grad():
                test_losses.append(ag.nn.cross_entropy(model(Xte), yte).to_scalar())
            losses.append(train_loss)
            accs.append(accuracy(model, Xte, y_te))
            bar.set_postfix(loss=f"{train_loss:.4f}", test_acc=f"{accs[-1]:.3f}")
        bar.close()
    return {"device": str(device), "train_loss": losses, "test_loss": test_losses,
            "test_accuracy": accs[-1] if accs else float("nan"), "accuracies": accs,
            "epoch_times": epoch_times, "model": model}


def plot(result: dict, path: str) -> str:
    """Two panels: train and test loss per epoch (log scale), and test accuracy per epoch."""
    import matplotlib  # optional dependency (matplotlib)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional dependency (matplotlib)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(result["train_loss"]) + 1)
    ax.plot(epochs, result["train_loss"], marker="o", ms=3, label="train (mean over the epoch)")
    ax.plot(epochs, result["test_loss"], marker="o", ms=3, label="test (after the epoch)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss (nats per sample)")
    ax.set_yscale("log")
    ax.set_title("loss")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    ax2.plot(epochs, 100 * np.asarray(result["accuracies"]), marker="o", ms=3, color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy (%)")
    ax2.set_title(f"test accuracy, {100 * result['test_accuracy']:.1f}% at the end")
    ax2.grid(alpha=0.3)
    fig.suptitle(f"autograd_gpu: 3-layer MLP on scikit-learn digits ({result['device']}, "
                 f"{len(epochs)} epochs)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = ag.default_device() if args.device == "auto" else ag.Device(args.device)
    threads = args.blas_threads if device.type == "cpu" and args.blas_threads > 0 else None
    with ag.blas_threads(threads):
        result = train(args)
    times = result["epoch_times"]
    print(f"device: {result['device']}")
    if times:
        steady = times[1:] or times
        print(f"time per epoch: {1000 * np.mean(steady):.1f} ms "
              f"(first epoch {1000 * times[0]:.1f} ms, {len(times)} epochs)")
    print(f"test accuracy: {100 * result['test_accuracy']:.2f}%")
    if not args.no_plot:
        print(f"loss curve: {plot(result, args.out)}")
    return result


def cli() -> None:
    """Entry point: errors the library detects (a GPU asked for but unusable, a bad flag value)
    print as one line instead of a traceback."""
    try:
        main()
    except ag.AutogradError as exc:
        sys.exit(f"autograd_gpu.demo: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    cli()
