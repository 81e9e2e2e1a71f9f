"""The program tests/test_distributed.py starts under ``mpiexec -n N``: one job per scenario.

    mpiexec -n 2 python tests/distributed_worker.py CASE OUTDIR

Each rank writes what it computed to ``OUTDIR/<case>_<rank>.npz``; the test compares it with
a single process's result (the model and data builders below are shared with the test, so both
sides build the same thing). The failure scenarios (raise, stall, mismatch) write nothing: the
test reads the job's exit status, its stderr and how long it took.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import autograd_gpu as ag

# ---- shared with the test ----------------------------------------------------------------------

WORLD = 2


def mlp(seed: int, dtype="float64"):
    ag.manual_seed(seed)
    return ag.nn.Sequential(ag.nn.Linear(6, 16, dtype=dtype), ag.nn.Tanh(),
                            ag.nn.Linear(16, 16, dtype=dtype), ag.nn.ReLU(),
                            ag.nn.Linear(16, 3, dtype=dtype))


def cnn(seed: int):
    ag.manual_seed(seed)
    return ag.nn.Sequential(ag.nn.Conv2d(2, 4, 3, padding=1, dtype="float64"), ag.nn.ReLU(),
                            ag.nn.MaxPool2d(2), ag.nn.Conv2d(4, 4, 3, padding=1, dtype="float64"),
                            ag.nn.Tanh(), ag.nn.Flatten(),
                            ag.nn.Linear(4 * 4 * 4, 3, dtype="float64"))


def data(seed: int, n: int, shape=(6,), dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) + shape).astype(dtype), rng.integers(0, 3, size=n)


def grads_of(model, X, y):
    """One process's gradients of the mean cross-entropy over (X, y)."""
    with ag.GradientTape() as tape:
        loss = ag.nn.cross_entropy(model(ag.Tensor(X)), ag.Tensor(y))
    return [g.numpy().copy() for g in tape.gradient(loss, model.parameters())]


class TwoHeads(ag.nn.Module):
    """A trunk and three heads: rank 0 uses head a, rank 1 heads a and b, no rank head c."""

    def __init__(self, seed):
        super().__init__()
        ag.manual_seed(seed)
        self.trunk = ag.nn.Linear(6, 8, dtype="float64")
        self.a = ag.nn.Linear(8, 3, dtype="float64")
        self.b = ag.nn.Linear(8, 3, dtype="float64")
        self.c = ag.nn.Linear(8, 3, dtype="float64")

    def forward(self, x, heads):
        h = ag.tanh(self.trunk(x))
        out = self.a(h)
        if "b" in heads:
            out = out + self.b(h)
        return out


def heads_of(rank):
    return ("a",) if rank == 0 else ("a", "b")


def strict_data(rank: int, n: int = 4):
    """Per-rank data whose gradients span many magnitudes, so the order of the sum over the
    ranks changes its last bits."""
    rng = np.random.default_rng(100 + rank)
    X = rng.normal(size=(n, 6)) * 10.0 ** rng.integers(-6, 7, size=(n, 1))
    return X, rng.integers(0, 3, size=n)


# ---- the scenarios -----------------------------------------------------------------------------


def _save(out, case, rank, **arrays):
    np.savez(os.path.join(out, f"{case}_{rank}.npz"), **arrays)


def _step(dp, X, y, **kw):
    with ag.GradientTape(**kw) as tape:
        loss = ag.nn.cross_entropy(dp(ag.Tensor(X)), ag.Tensor(y))
    return dp.gradient(tape, loss), tape


def case_equivalence(dist, out, r):
    """Half batches on each rank vs the full batch in one process (MLP, CNN), with the default
    buckets and with buckets small enough to give one per parameter."""
    X, y = data(1, 16)
    half = slice(8 * r, 8 * r + 8)
    res = {}
    for bucket_mb in (None, 1e-4):
        dp = dist.DataParallel(mlp(seed=r), bucket_mb=bucket_mb)  # rank 0's weights win
        for step in range(2):  # the second step runs on the settled bucket order
            grads, _ = _step(dp, X[half], y[half])
            for i, g in enumerate(grads):
                res[f"mlp_{bucket_mb}_{step}_{i}"] = g.numpy()
        res[f"mlp_{bucket_mb}_buckets"] = np.array(len(dp.buckets))
    Xc, yc = data(2, 8, shape=(2, 8, 8))
    dpc = dist.DataParallel(cnn(seed=r), bucket_mb=1e-3)
    grads, _ = _step(dpc, Xc[4 * r:4 * r + 4], yc[4 * r:4 * r + 4])
    for i, g in enumerate(grads):
        res[f"cnn_{i}"] = g.numpy()
    _save(out, "equivalence", r, **res)


def case_replicas(dist, out, r):
    """20 SGD steps (momentum, float32) on different data per rank: the replicas stay equal."""
    dp = dist.DataParallel(mlp(seed=r, dtype="float32"), bucket_mb=1e-3)
    opt = ag.optim.SGD(dp.parameters(), lr=0.1, momentum=0.9)
    X, y = data(3, 64, dtype=np.float32)
    for step in range(20):
        rows = slice(32 * r + (step % 4) * 8, 32 * r + (step % 4) * 8 + 8)
        grads, _ = _step(dp, X[rows], y[rows])
        opt.step(grads)
    _save(out, "replicas", r, **{f"p{i}": p.numpy() for i, p in enumerate(dp.parameters())})


def case_no_sync(dist, out, r):
    """Two micro-batches per rank, the first inside no_sync."""
    X, y = data(4, 16)
    dp = dist.DataParallel(mlp(seed=r), bucket_mb=1e-3)
    res = {}
    for round_ in range(2):  # the accumulator must be empty again after a synchronised step
        mb0 = slice(8 * r, 8 * r + 4)
        mb1 = slice(8 * r + 4, 8 * r + 8)
        with dp.no_sync():
            local, _ = _step(dp, X[mb0], y[mb0])
        grads, _ = _step(dp, X[mb1], y[mb1])
        for i, (lg, g) in enumerate(zip(local, grads)):
            res[f"local_{round_}_{i}"] = lg.numpy()
            res[f"sync_{round_}_{i}"] = g.numpy()
    _save(out, "no_sync", r, **res)


def case_unused(dist, out, r):
    X, y = data(5, 8)
    model = TwoHeads(seed=r)
    dp = dist.DataParallel(model, bucket_mb=1e-3)
    res = {}
    for step in range(2):
        with ag.GradientTape() as tape:
            loss = ag.nn.cross_entropy(model(ag.Tensor(X[4 * r:4 * r + 4]), heads_of(r)),
                                       ag.Tensor(y[4 * r:4 * r + 4]))
        grads = dp.gradient(tape, loss)
        for i, g in enumerate(grads):
            if g is not None:
                res[f"g_{step}_{i}"] = g.numpy()
    _save(out, "unused", r, **res)


def case_amp(dist, out, r):
    """float16 autocast with a dynamic scaler; on rank 1 step 2's input overflows float16."""
    scaler = ag.LossScaler.dynamic(init_scale=1024.0, growth_interval=2)
    cfg = ag.AmpConfig(precision_mode="float16", loss_scaler=scaler)
    dp = dist.DataParallel(mlp(seed=r, dtype="float32"), bucket_mb=1e-3)
    opt = ag.optim.SGD(dp.parameters(), lr=0.05)
    X, y = data(6, 16, dtype=np.float32)
    skipped, scales = [], []
    for step in range(5):
        xb = X[8 * r:8 * r + 8].copy()
        if step == 2 and r == 1:
            xb[0, 0] = 1e30  # inf once cast to float16: only this rank overflows
        grads, tape = _step(dp, xb, y[8 * r:8 * r + 8], amp=cfg)
        skipped.append(bool(grads.step_skipped) and tape.step_skipped)
        opt.step(grads)
        scales.append(scaler.scale)
    _save(out, "amp", r, skipped=np.array(skipped), scales=np.array(scales),
          **{f"p{i}": p.numpy() for i, p in enumerate(dp.parameters())})


def case_collectives(dist, out, r):
    n = dist.world_size()
    res = {}
    for dt in ("float64", "float32", "int64", "bfloat16"):
        t = ag.Tensor(np.arange(7, dtype=np.float64) * (r + 1)).astype(dt)
        res[f"sum_{dt}"] = dist.all_reduce(t).astype("float64").numpy()
        res[f"max_{dt}"] = dist.all_reduce(t, "max").astype("float64").numpy()
    t = ag.Tensor(np.linspace(0, 1, 5) + r)
    res["mean"] = dist.all_reduce(t, "mean").numpy()
    res["min"] = dist.all_reduce(t, "min").numpy()
    res["fixed"] = dist.all_reduce(t, deterministic=True).numpy()
    res["bool_max"] = dist.all_reduce(ag.Tensor(np.array([r == 1, False])), "max").numpy()
    res["bcast"] = dist.broadcast(ag.Tensor(np.full((2, 3), float(r))), root=n - 1).numpy()
    res["gather"] = dist.all_gather(ag.Tensor(np.array([r, 10 * r], dtype=np.int32))).numpy()
    try:  # shapes that differ between ranks: an error on every rank, not wrong numbers
        dist.all_reduce(ag.Tensor(np.zeros(3 + r)))
        res["mismatch"] = np.array("no error")
    except dist.DistributedError as exc:
        res["mismatch"] = np.array(str(exc))
    dist.barrier()
    # the arrival board: ranks on one machine post their collective numbers in shared memory
    # (no message per collective), and a read sees every rank at the barrier or beyond
    g = dist.group.world("test")
    board = g.host._board
    res["board_by_message"] = np.array(len(board._remote))
    res["board_shared"] = np.array(board._win is not None)
    res["board_seq"] = np.array(g.seq)
    res["board_arrivals"] = np.array(board.arrivals())
    sampler = dist.shard(23, shuffle=True, seed=5)
    res["shard0"] = sampler.indices(0)
    res["shard1"] = sampler.indices(1)
    loader = ag.data.DataLoader(ag.data.ArrayDataset(np.arange(23.0)), batch_size=4,
                                sampler=sampler)
    res["loader"] = np.concatenate([b[0].numpy() for b in loader])
    _save(out, "collectives", r, **res)


def case_suite(dist, out, r):
    for case in (case_collectives, case_equivalence, case_replicas, case_no_sync, case_unused,
                 case_amp):
        case(dist, out, r)


def case_strict(dist, out, r):
    """STRICT determinism: each rank's own gradient and the reduced one, for the test to check
    the reduction is the sum in rank order, bit for bit."""
    cfg = ag.DeterministicConfig(mode="strict", global_seed=7)
    model = mlp(seed=r)
    dp = dist.DataParallel(model, bucket_mb=1e-3)
    X, y = strict_data(r)
    local = grads_of(model, X, y)
    grads, _ = _step(dp, X, y, deterministic=cfg)
    _save(out, "strict", r, **{f"local_{i}": g for i, g in enumerate(local)},
          **{f"red_{i}": g.numpy() for i, g in enumerate(grads)})


def case_raise(dist, out, r):
    dp = dist.DataParallel(mlp(seed=0), bucket_mb=1e-3)
    X, y = data(7, 8)
    if r == 1:
        print(f"raising at {time.time():.3f}", flush=True)
        raise ValueError("boom on rank 1 before its backward")
    _step(dp, X[:4], y[:4])
    time.sleep(60)  # never reached: the job is aborted while this rank waits for rank 1


def case_stall(dist, out, r):
    dp = dist.DataParallel(mlp(seed=0), bucket_mb=1e-3)
    X, y = data(7, 8)
    if r == 1:
        time.sleep(60)  # a rank that stops calling collectives
    _step(dp, X[:4], y[:4])


case_stall_messages = case_stall  # with the arrival board of ranks on different machines


def case_mismatch(dist, out, r):
    ag.manual_seed(0)
    width = 16 if r == 0 else 17
    model = ag.nn.Sequential(ag.nn.Linear(6, width), ag.nn.ReLU(), ag.nn.Linear(width, 3))
    dist.DataParallel(model)


def main():
    import autograd_gpu.distributed as dist

    case, out = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    if case.endswith("_messages"):
        from autograd_gpu.distributed.mpi import ArrivalBoard  # (the board's switch)

        ArrivalBoard.shared_memory = False
    dist.init(timeout_s=timeout)
    globals()[f"case_{case}"](dist, out, dist.rank())
    dist.barrier()


if __name__ == "__main__":
    main()
