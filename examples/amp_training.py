"""Mixed-precision training: the digits MLP with autocast and dynamic loss scaling.

A tape built with ``ag.AmpConfig`` runs matmuls in float16 or bfloat16 while the parameters
stay float32 (master weights), keeps the loss in float32, scales the loss seed and unscales the
gradients, and flags a step with inf/NaN gradients so that the optimizer skips it. The example
trains the same model in float32 and under AMP and compares test accuracy.

    python examples/amp_training.py [--small] [--precision bfloat16|float16] [--epochs 20]

On the CPU, NumPy has no fast float16/bfloat16 matmul, so AMP is slower there; the point on a
CPU is the numerics. On a GPU the low-precision matmuls run on tensor cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import autograd_gpu as ag
from autograd_gpu.demo import build_mlp, load_digits_split


def train(cfg, args, data, device):
    X_tr, X_te, y_tr, y_te = data
    with ag.device(device):
        model = build_mlp(args.hidden, args.seed)
        params = model.parameters()
        opt = ag.optim.Adam(params, lr=args.lr)
        Xtr, ytr = ag.Tensor.from_array(X_tr), ag.Tensor.from_array(y_tr)
        rng = np.random.default_rng(args.seed)
        n, bs = len(y_tr), args.batch_size
        skipped = 0
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            order = ag.Tensor.from_array(rng.permutation(n))
            for i in range(0, n, bs):
                idx = order[i:i + bs]
                xb, yb = ag.take(Xtr, idx, axis=0), ag.take(ytr, idx, axis=0)
                with ag.GradientTape(amp=cfg) as tape:
                    loss = ag.nn.cross_entropy(model(xb), yb)
                grads = tape.gradient(loss, params)
                if not opt.step(grads):  # an overflow step: weights and Adam state untouched
                    skipped += 1
        seconds = time.perf_counter() - t0
        with ag.no_grad():
            pred = model(ag.Tensor.from_array(X_te)).numpy().argmax(-1)
    return {"accuracy": float((pred == y_te).mean()), "skipped": skipped, "seconds": seconds,
            "weight_dtype": str(params[0].dtype)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="8 epochs (the tests' smoke run)")
    ap.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float16"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.small:
        args.epochs, args.hidden = 8, 64
    device = ag.default_device() if args.device == "auto" else ag.Device(args.device)
    data = load_digits_split(args.seed)
    scaler = ag.LossScaler.dynamic(init_scale=2.0**16, growth_interval=100)
    amp = ag.AmpConfig(precision_mode=args.precision, loss_scaler=scaler,
                       autocast_ops=("matmul",),
                       keep_fp32_ops=("softmax", "log_softmax", "cross_entropy"))
    fp32 = train(None, args, data, device)
    mixed = train(amp, args, data, device)
    print(f"device {device}, {args.epochs} epochs")
    print(f"float32:          test accuracy {100 * fp32['accuracy']:.2f}% "
          f"({fp32['seconds']:.1f} s)")
    print(f"AMP {args.precision:<9}:   test accuracy {100 * mixed['accuracy']:.2f}% "
          f"({mixed['seconds']:.1f} s), weights stay {mixed['weight_dtype']}, "
          f"{mixed['skipped']} steps skipped on overflow, final loss scale {scaler.scale:g}")
    return {"fp32": fp32, "amp": mixed, "scaler": scaler}


if __name__ == "__main__":
    main()
