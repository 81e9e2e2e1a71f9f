"""Mixed-precision training: the digits MLP with autocast and dynamic loss scaling.

A tape built with ``ag.AmpConfig`` runs matmuls in float16 or bfloat16 while the parameters
stay float32 (master weights), keeps the loss in float32, scales the loss seed and unscales the
gradients, and flags a step with inf/NaN gradients so that the optimizer skips it. The example
trains the same model on the same batches in float32 and under AMP and compares them.

    python examples/amp_training.py [--small] [--precision bfloat16|float16] [--epochs 20]
                                    [--out amp_training.png] [--no-plot]

The PNG shows both runs' training loss per epoch and test accuracy, and the loss scale over the
AMP run's steps with the skipped (overflow) steps marked.

On the CPU, NumPy has no fast float16/bfloat16 matmul, so AMP is slower there; the point on a
CPU is the numerics. On a GPU the low-precision matmuls run on tensor cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import autograd_gpu as ag
from autograd_gpu.demo import build_mlp, load_digits_split


def train(cfg: ag.AmpConfig | None, args: argparse.Namespace, data: tuple,
          device: ag.Device) -> dict:
    X_tr, X_te, y_tr, y_te = data
    # the same seed for both runs: float32 and AMP see the same batches in the same order
    loader = ag.data.DataLoader(ag.data.ArrayDataset(X_tr, y_tr), batch_size=args.batch_size,
                                shuffle=True, seed=args.seed, device=device)
    scaler = None if cfg is None else cfg.loss_scaler
    with ag.device(device):
        model = build_mlp(args.hidden, args.seed)
        params = model.parameters()
        opt = ag.optim.Adam(params, lr=args.lr)
        Xte = ag.Tensor.from_array(X_te)
        skipped_steps, scales, epoch_loss, accs = [], [], [], []
        step = 0
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            total = None
            for xb, yb in loader:
                with ag.GradientTape(amp=cfg) as tape:
                    loss = ag.nn.cross_entropy(model(xb), yb)
                grads = tape.gradient(loss, params)
                if not opt.step(grads):  # an overflow step: weights and Adam state untouched
                    skipped_steps.append(step)
                if scaler is not None:
                    scales.append(float(scaler.scale))
                part = loss.detach().astype("float32") * yb.shape[0]
                total = part if total is None else total + part
                step += 1
            epoch_loss.append(total.to_scalar() / len(y_tr))
            with ag.no_grad():
                pred = model(Xte).numpy().argmax(-1)
            accs.append(float((pred == y_te).mean()))
        seconds = time.perf_counter() - t0
    return {"accuracy": accs[-1], "accuracies": accs, "epoch_loss": epoch_loss,
            "skipped": len(skipped_steps), "skipped_steps": skipped_steps, "scales": scales,
            "steps": step, "seconds": seconds, "weight_dtype": str(params[0].dtype)}


def plot(path: str, fp32: dict, mixed: dict, precision: str, device: ag.Device) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4))
    epochs = np.arange(1, len(fp32["epoch_loss"]) + 1)
    ax.plot(epochs, fp32["epoch_loss"], marker="o", ms=3, label="float32")
    ax.plot(epochs, mixed["epoch_loss"], marker="s", ms=3, ls="--", label=f"AMP {precision}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training cross-entropy (nats per sample)")
    ax.set_title("training loss")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    ax2.plot(epochs, 100 * np.asarray(fp32["accuracies"]), marker="o", ms=3, label="float32")
    ax2.plot(epochs, 100 * np.asarray(mixed["accuracies"]), marker="s", ms=3, ls="--",
             label=f"AMP {precision}")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy (%)")
    ax2.set_title(f"test accuracy (final: float32 {100 * fp32['accuracy']:.1f}%, "
                  f"AMP {100 * mixed['accuracy']:.1f}%)")
    ax2.legend()
    ax2.grid(alpha=0.3)
    steps = np.arange(1, len(mixed["scales"]) + 1)
    ax3.semilogy(steps, mixed["scales"], color="C1", base=2, label="loss scale")
    if mixed["skipped_steps"]:
        sk = np.asarray(mixed["skipped_steps"])
        ax3.semilogy(sk + 1, np.asarray(mixed["scales"])[sk], "x", color="C3", base=2,
                     label=f"skipped step (overflow): {len(sk)}")
    ax3.set_xlabel("optimizer step")
    ax3.set_ylabel("loss scale (factor, log2 axis)")
    ax3.set_title(f"dynamic loss scaling ({precision})")
    ax3.legend()
    ax3.grid(alpha=0.3, which="both")
    for a in (ax, ax2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"digits MLP, float32 against AMP {precision} autocast ({device}; weights stay "
                 "float32)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="8 epochs (the tests' smoke run)")
    ap.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float16"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads on the CPU (default 1; 0 = the library's default)")
    ap.add_argument("--out", default="amp_training.png", help="the PNG to write")
    ap.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = ap.parse_args(argv)
    if args.small:
        args.epochs, args.hidden = 8, 64
    device = ag.default_device() if args.device == "auto" else ag.Device(args.device)
    data = load_digits_split(args.seed)
    scaler = ag.LossScaler.dynamic(init_scale=2.0**16, growth_interval=100)
    amp = ag.AmpConfig(precision_mode=args.precision, loss_scaler=scaler,
                       autocast_ops=("matmul",),
                       keep_fp32_ops=("softmax", "log_softmax", "cross_entropy"))
    threads = args.blas_threads if device.type == "cpu" and args.blas_threads > 0 else None
    with ag.blas_threads(threads):
        fp32 = train(None, args, data, device)
        mixed = train(amp, args, data, device)
    print(f"device {device}, {args.epochs} epochs")
    print(f"float32:          test accuracy {100 * fp32['accuracy']:.2f}% "
          f"({fp32['seconds']:.1f} s)")
    print(f"AMP {args.precision:<9}:   test accuracy {100 * mixed['accuracy']:.2f}% "
          f"({mixed['seconds']:.1f} s), weights stay {mixed['weight_dtype']}, "
          f"{mixed['skipped']} steps skipped on overflow, final loss scale {scaler.scale:g}")
    path = None
    if not args.no_plot:
        path = plot(args.out, fp32, mixed, args.precision, device)
        print(f"plot: {path}")
    return {"fp32": fp32, "amp": mixed, "scaler": scaler, "plot": path}


if __name__ == "__main__":
    main()
