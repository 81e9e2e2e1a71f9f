"""Data-parallel training on scikit-learn's 8x8 digits: every rank trains the same MLP on its
own part of each epoch, and the gradients are averaged over the ranks during the backward.

    mpiexec -n 2 python examples/ddp_digits.py [--epochs 8] [--batch-size 32] [--device cpu]
    python examples/ddp_digits.py                  # a world of one: plain training

Each rank reads the same training set; ``dist.shard`` deals every epoch's shuffled order out
to the ranks (disjoint parts of equal length), so one step sees ``batch_size x world_size``
samples. ``dist.DataParallel`` broadcasts rank 0's initial weights, and ``dp.gradient`` returns
the gradients averaged over the ranks. With more than one GPU per machine each rank takes the
GPU of its local rank. At the end the ranks check that their weights are still bit for bit the
same, and rank 0 prints the test accuracy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import autograd_gpu as ag
import autograd_gpu.distributed as dist
from autograd_gpu.demo import build_mlp, load_digits_split


def weights_digest(model) -> int:
    """A checksum of the weights' bytes, to compare replicas across ranks."""
    import zlib

    crc = 0
    for p in model.parameters():
        crc = zlib.crc32(np.ascontiguousarray(p.numpy()).tobytes(), crc)
    return crc


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32, help="samples per rank and step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0, help="deadline of a collective (s)")
    args = ap.parse_args(argv)

    dist.init(timeout_s=args.timeout)
    rank, world = dist.rank(), dist.world_size()
    if args.device == "auto":
        device = ag.default_device()
        if device.type == "cuda":  # one GPU per rank on this machine
            import cupy

            device = ag.Device(f"cuda:{dist.local_rank() % cupy.cuda.runtime.getDeviceCount()}")
    else:
        device = ag.Device(args.device)

    X_tr, X_te, y_tr, y_te = load_digits_split(args.seed)
    sampler = dist.shard(len(X_tr), shuffle=True, seed=args.seed, drop_last=True)
    loader = ag.data.DataLoader(ag.data.ArrayDataset(X_tr, y_tr), batch_size=args.batch_size,
                                sampler=sampler, drop_last=True, device=device)
    with ag.device(device):
        # every rank builds the model; DataParallel replaces the weights with rank 0's
        model = build_mlp(seed=args.seed + 1000 * rank, device=device)
        dp = dist.DataParallel(model)
        opt = ag.optim.Adam(dp.parameters(), lr=args.lr)
        Xte = ag.Tensor.from_array(X_te, device=device)
        t0 = time.perf_counter()
        for epoch in range(args.epochs):
            for xb, yb in loader:
                with ag.GradientTape() as tape:
                    loss = ag.nn.cross_entropy(dp(xb), yb)
                opt.step(dp.gradient(tape, loss))
            mean_loss = dist.all_reduce(loss.detach(), "mean").to_scalar()
            if rank == 0:
                print(f"epoch {epoch + 1}/{args.epochs}: last step's loss averaged over "
                      f"{world} rank(s) {mean_loss:.4f}", flush=True)
        seconds = time.perf_counter() - t0
        with ag.no_grad():
            acc = float((model(Xte).numpy().argmax(-1) == y_te).mean())
    digests = dist.all_gather(ag.Tensor(np.array([weights_digest(model)], dtype=np.int64)))
    same = len(set(digests.numpy().ravel().tolist())) == 1
    if rank == 0:
        print(f"{world} rank(s) on {device}: {args.epochs} epochs of {len(loader)} steps "
              f"({args.batch_size} x {world} samples each) in {seconds:.1f} s; replicas "
              f"identical: {same}")
        print(f"test accuracy {acc:.4f}")
    if not same:
        raise SystemExit("the replicas' weights differ")
    return {"test_accuracy": acc, "seconds": seconds, "world_size": world, "same": same}


if __name__ == "__main__":
    main()
