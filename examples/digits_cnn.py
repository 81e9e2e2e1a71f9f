"""A small convolutional network on scikit-learn's 8x8 digits.

    Conv2d(1, 16, 3, pad 1) - ReLU - MaxPool 2 - Conv2d(16, 32, 3, pad 1) - ReLU - MaxPool 2
    - Flatten - Dropout - Linear(128, 10)

trained with AdamW on NCHW batches, on the GPU when one is usable. Saves the trained weights to
an .npz file and reloads them into a fresh model to show that the accuracy survives the trip.

    python examples/digits_cnn.py [--epochs 12] [--small] [--device cpu|cuda] [--save PATH]
"""

from __future__ import annotations

import argparse
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


def evaluate(model, X, y) -> float:
    model.eval()
    with ag.no_grad():
        pred = model(X).numpy().argmax(-1)
    model.train()
    return float((pred == y).mean())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--small", action="store_true", help="4 epochs (the tests' smoke run)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--save", default=None, help="where to save the weights (.npz)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    epochs = 4 if args.small else args.epochs
    device = ag.default_device() if args.device == "auto" else ag.Device(args.device)
    X_tr, X_te, y_tr, y_te = load_digits_split(args.seed)
    X_tr, X_te = X_tr.reshape(-1, 1, 8, 8), X_te.reshape(-1, 1, 8, 8)
    with ag.device(device):
        Xte = ag.Tensor.from_array(X_te)
        model = build_cnn(args.seed)
        opt = ag.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        params = model.parameters()
        rng = np.random.default_rng(args.seed)
        bs, n = args.batch_size, len(y_tr)
        t0 = time.perf_counter()
        for epoch in range(epochs):
            order = rng.permutation(n)
            for i in range(0, n, bs):
                idx = order[i:i + bs]
                xb = ag.Tensor.from_array(X_tr[idx])
                yb = ag.Tensor.from_array(y_tr[idx])
                with ag.GradientTape() as tape:
                    loss = nn.cross_entropy(model(xb), yb)
                opt.step(tape.gradient(loss, params))
            print(f"epoch {epoch + 1}/{epochs}: last batch loss {loss.to_scalar():.4f}, "
                  f"test accuracy {100 * evaluate(model, Xte, y_te):.2f}%")
        seconds = time.perf_counter() - t0
        acc = evaluate(model, Xte, y_te)

        path = args.save or os.path.join(tempfile.mkdtemp(), "digits_cnn.npz")
        model.save(path)
        fresh = build_cnn(args.seed + 100)
        fresh.load(path)
        reloaded = evaluate(fresh, Xte, y_te)
    print(f"device {device}: {epochs} epochs in {seconds:.1f} s; test accuracy "
          f"{100 * acc:.2f}% ({model.num_parameters()} parameters); "
          f"reloaded from {path}: {100 * reloaded:.2f}%")
    return {"test_accuracy": acc, "reloaded_accuracy": reloaded, "seconds": seconds,
            "device": str(device), "path": path}


if __name__ == "__main__":
    main()
