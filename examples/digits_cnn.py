"""A small convolutional network on scikit-learn's 8x8 digits.

    Conv2d(1, 16, 3, pad 1) - ReLU - MaxPool 2 - Conv2d(16, 32, 3, pad 1) - ReLU - MaxPool 2
    - Flatten - Dropout - Linear(128, 10)

trained with AdamW on NCHW batches (ag.data.DataLoader), on the GPU when one is usable. Saves the
trained weights to an .npz file (a temporary folder, removed afterwards, unless ``--save``
names the file) and reloads them into a fresh model to show that the accuracy survives the trip.
Writes the test set's confusion matrix as a PNG.

    python examples/digits_cnn.py [--epochs 12] [--small] [--device cpu|cuda] [--save PATH]
                                  [--out digits_cnn_confusion.png] [--no-plot]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

import numpy as np

import autograd_gpu as ag
from autograd_gpu.demo import load_digits_split

nn = ag.nn


def build_cnn(seed: int = 0) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, seed=seed), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, seed=seed + 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.1, seed=seed), nn.Linear(32 * 2 * 2, 10, seed=seed + 2),
    )


def predict(model: nn.Module, X: ag.Tensor) -> np.ndarray:
    model.eval()
    with ag.no_grad():
        pred = model(X).numpy().argmax(-1)
    model.train()
    return pred


def evaluate(model: nn.Module, X: ag.Tensor, y: np.ndarray) -> float:
    return float((predict(model, X) == y).mean())


def confusion(y: np.ndarray, pred: np.ndarray, k: int = 10) -> np.ndarray:
    """counts[i, j]: test images of digit i predicted as j."""
    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (y, pred), 1)
    return counts


def plot_confusion(path: str, counts: np.ndarray, acc: float, device: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(counts, cmap="Blues")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"digits CNN, test set ({counts.sum()} images, {device}): "
                 f"accuracy {100 * acc:.1f}%", fontsize=10)
    fig.colorbar(im, ax=ax, label="number of test images")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--small", action="store_true", help="4 epochs (the tests' smoke run)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--save", default=None, help="where to save the weights (.npz); default: a "
                                                  "temporary folder, removed at the end")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads on the CPU (default 1; 0 = the library's default)")
    ap.add_argument("--out", default="digits_cnn_confusion.png", help="the PNG to write")
    ap.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = ap.parse_args(argv)
    epochs = 4 if args.small else args.epochs
    device = ag.default_device() if args.device == "auto" else ag.Device(args.device)
    X_tr, X_te, y_tr, y_te = load_digits_split(args.seed)
    X_tr, X_te = X_tr.reshape(-1, 1, 8, 8), X_te.reshape(-1, 1, 8, 8)
    loader = ag.data.DataLoader(ag.data.ArrayDataset(X_tr, y_tr), batch_size=args.batch_size,
                                shuffle=True, seed=args.seed, device=device)
    threads = args.blas_threads if device.type == "cpu" and args.blas_threads > 0 else None
    with ag.device(device), ag.blas_threads(threads), contextlib.ExitStack() as stack:
        Xte = ag.Tensor.from_array(X_te)
        model = build_cnn(args.seed)
        opt = ag.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        params = model.parameters()
        t0 = time.perf_counter()
        for epoch in range(epochs):
            for xb, yb in loader:
                with ag.GradientTape() as tape:
                    loss = nn.cross_entropy(model(xb), yb)
                opt.step(tape.gradient(loss, params))
            print(f"epoch {epoch + 1}/{epochs}: last batch loss {loss.to_scalar():.4f}, "
                  f"test accuracy {100 * evaluate(model, Xte, y_te):.2f}%")
        seconds = time.perf_counter() - t0
        pred = predict(model, Xte)
        acc = float((pred == y_te).mean())

        if args.save:
            path = args.save
        else:  # removed when the block ends, the weights having been reloaded
            path = os.path.join(stack.enter_context(tempfile.TemporaryDirectory()),
                                "digits_cnn.npz")
        model.save(path)
        fresh = build_cnn(args.seed + 100)
        fresh.load(path)
        reloaded = evaluate(fresh, Xte, y_te)
    counts = confusion(y_te, pred)
    print(f"device {device}: {epochs} epochs in {seconds:.1f} s; test accuracy "
          f"{100 * acc:.2f}% ({model.num_parameters()} parameters); "
          f"reloaded from {path if args.save else 'a temporary .npz'}: {100 * reloaded:.2f}%")
    plot = None
    if not args.no_plot:
        plot = plot_confusion(args.out, counts, acc, str(device))
        print(f"confusion matrix: {plot}")
    return {"test_accuracy": acc, "reloaded_accuracy": reloaded, "seconds": seconds,
            "device": str(device), "path": path, "confusion": counts, "plot": plot}


if __name__ == "__main__":
    main()
