"""Data-parallel benchmark on the CPU: autograd_gpu.distributed against PyTorch DDP on gloo,
both in the same two-process job, interleaved round by round.

    python bench/ddp_bench.py [--ranks 2] [--rounds 7] [--steps 5] [--bw-rounds 9]
                              [--out ddp_bench.json]

The parent starts ``mpiexec -n RANKS python bench/ddp_bench.py --worker ...``; in it every rank
builds the same MLP (batch 256 per rank, width 1024, 4 layers, ReLU, MSE, SGD, float32, one BLAS
thread per rank as with 2 ranks on 2 cores), checks that both libraries give the same averaged
gradients from the same start, then times in rounds, alternating which side goes first:

* ``ag_dp``: a DataParallel step (``dp.gradient`` reducing during the sweep);
  ``torch_ddp``: a DistributedDataParallel step over gloo (its default 25 MB buckets);
* ``ag_alone`` / ``torch_alone``: the same step in one process (rank 0 alone while the other
  ranks wait in ``dist.barrier``, which sleeps after 2 ms): scaling efficiency =
  alone / data-parallel step time (weak scaling: each rank keeps its 256 samples);
* ``comm_alone``: the step's buckets reduced back to back with nothing else running.
  Overlap fraction = 1 - exposed / comm_alone, exposed = the time ``dp.gradient`` waits for
  the buckets after the sweep (``dp.last_step["exposed_s"]``).

Then the bucket bandwidth: one bucket of each size reduced through the library's path
(``Group.launch`` + ``Group.wait``: numbering, the arrival board, the deadline loop) against a raw
``mpi4py`` ``Allreduce`` of the same bytes, a raw ``Iallreduce`` + ``Wait`` (MPI's non-blocking
algorithm, which the library's path uses: it separates MPI's algorithms from the library's
overhead), and gloo's ``all_reduce``, interleaved (``--bw-rounds`` rounds per size, the order
reversed every round); ours / raw is the median of the rounds' ratios.

Times are wall-clock medians over rounds (a distributed step's waiting is part of its cost);
the load average is recorded with them: on a shared 2-core machine they move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
B, W, L = 256, 1024, 4
LR = 1e-3
SIZES_MB = (0.0625, 0.25, 1, 2, 4, 8, 16, 32)


def _median(xs):
    return statistics.median(xs) if xs else None


# ---- the worker (one rank) ---------------------------------------------------------------------


def _data(rank):
    rng = np.random.default_rng(1)
    ws = [(rng.standard_normal((W, W)) / np.sqrt(W)).astype(np.float32) for _ in range(L)]
    bs = [np.zeros(W, np.float32) for _ in range(L)]
    rr = np.random.default_rng(100 + rank)
    x = rr.standard_normal((B, W)).astype(np.float32)
    y = rr.standard_normal((B, W)).astype(np.float32)
    return x, y, ws, bs


def _ag_side(rank, dist, ag):
    x0, y0, ws, bs = _data(rank)
    x, y = ag.Tensor(x0), ag.Tensor(y0)
    params = [ag.Variable(a.copy(), name=f"{k}{i}") for i in range(L)
              for k, a in (("w", ws[i]), ("b", bs[i]))]
    dp = dist.DataParallel(params)
    opt = ag.optim.SGD(params, lr=LR)

    def loss_of(p):
        h = x
        for i in range(L):
            h = h @ p[2 * i] + p[2 * i + 1]
            if i < L - 1:
                h = ag.relu(h)
        d = h - y
        return (d * d).mean()

    def dp_step():
        with ag.GradientTape() as tape:
            loss = loss_of(params)
        grads = dp.gradient(tape, loss)
        opt.step(grads)
        return grads

    alone_params = [ag.Variable(p.numpy().copy()) for p in params]
    alone_opt = ag.optim.SGD(alone_params, lr=LR)

    def alone_step():
        with ag.GradientTape() as tape:
            loss = loss_of(alone_params)
        alone_opt.step(tape.gradient(loss, alone_params))

    return dp, dp_step, alone_step, params


def _torch_side(rank, size, torch, port):
    import torch.distributed as td
    from torch.nn.parallel import DistributedDataParallel as DDP

    td.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                          world_size=size)
    x0, y0, ws, bs = _data(rank)
    x, y = torch.from_numpy(x0), torch.from_numpy(y0)

    def build():
        layers = []
        for i in range(L):
            lin = torch.nn.Linear(W, W)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(ws[i].T.copy()))  # torch computes x @ W.T
                lin.bias.copy_(torch.from_numpy(bs[i]))
            layers.append(lin)
            if i < L - 1:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)

    model = DDP(build())
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    alone = build()
    alone_opt = torch.optim.SGD(alone.parameters(), lr=LR)

    def ddp_step():
        opt.zero_grad(set_to_none=True)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()

    def alone_step():
        alone_opt.zero_grad(set_to_none=True)
        loss = ((alone(x) - y) ** 2).mean()
        loss.backward()
        alone_opt.step()

    return td, model, ddp_step, alone_step


def _reference(size):
    """The gradients averaged over the ranks' batches, in float64 (NumPy)."""
    total = None
    for r in range(size):
        x0, y0, ws, bs = _data(r)
        hs = [x0.astype(np.float64)]
        h = hs[0]
        for i in range(L):
            h = h @ ws[i].astype(np.float64) + bs[i]
            if i < L - 1:
                h = np.maximum(h, 0)
            hs.append(h)
        g = (h - y0) * (2.0 / h.size)
        out = [None] * (2 * L)
        for i in reversed(range(L)):
            out[2 * i], out[2 * i + 1] = hs[i].T @ g, g.sum(0)
            if i > 0:
                g = (g @ ws[i].T.astype(np.float64)) * (hs[i] > 0)
        total = out if total is None else [a + b for a, b in zip(total, out)]
    return [t / size for t in total]


def _check_gradients(rank, size, dp_step, model, torch):
    """Both sides' first averaged gradients from the same start against float64 (max over
    parameters of max |error| / max |reference|). float32 rounding can flip a ReLU whose input
    is near 0, which moves a few entries of the lower layers' gradients: such differences are
    the peers', not a reduction error."""
    grads = dp_step()
    model.zero_grad()
    x0, y0, _, _ = _data(rank)
    loss = ((model(torch.from_numpy(x0)) - torch.from_numpy(y0)) ** 2).mean()
    loss.backward()
    ref = _reference(size)
    tg = [p.grad.numpy() for p in model.module.parameters()]
    ours = theirs = 0.0
    for i in range(2 * L):
        scale = float(np.max(np.abs(ref[i]))) + 1e-30
        t = tg[i].T if i % 2 == 0 else tg[i]
        ours = max(ours, float(np.max(np.abs(grads[i].numpy() - ref[i]))) / scale)
        theirs = max(theirs, float(np.max(np.abs(t - ref[i]))) / scale)
    return ours, theirs


def _comm_alone(g, dp):
    """The step's buckets (their sizes and dtypes) reduced back to back, nothing else."""
    bufs = [np.zeros(b.total, dtype=b.key[1]) for b in dp.buckets]
    t0 = time.perf_counter()
    works = [g.launch(lambda buf=buf: g.host.allreduce(buf, "sum"), "bench bucket")
             for buf in bufs]
    g.wait(works)
    return time.perf_counter() - t0


def _time(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def worker(args):
    import torch

    import autograd_gpu as ag
    import autograd_gpu.distributed as dist

    torch.set_num_threads(1)
    # one core per rank, for the whole worker: the block object must stay referenced, since
    # dropping it closes the generator and restores the default threads at once
    blas_limit = ag.blas_threads(1)
    blas_limit.__enter__()
    g = dist.init(timeout_s=300)
    rank, size = g.rank, g.size
    from mpi4py import MPI

    raw = MPI.COMM_WORLD.Dup()
    dp, dp_step, ag_alone, _ = _ag_side(rank, dist, ag)
    td, model, ddp_step, torch_alone = _torch_side(rank, size, torch, args.port)
    err_ours, err_torch = _check_gradients(rank, size, dp_step, model, torch)
    for _ in range(2):  # warm-up (the host pool, gloo's buffers)
        dp_step()
        ddp_step()
    times = {k: [] for k in ("ag_dp", "torch_ddp", "ag_alone", "torch_alone", "comm_alone",
                             "exposed", "sweep")}
    sides = ["ag", "torch"]
    for r in range(args.rounds):
        for side in sides:
            dist.barrier()
            if side == "ag":
                exposed, sweep = [], []
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    dp_step()
                    exposed.append(dp.last_step["exposed_s"])
                    sweep.append(dp.last_step["sweep_s"])
                times["ag_dp"].append((time.perf_counter() - t0) / args.steps)
                times["exposed"].append(statistics.median(exposed))
                times["sweep"].append(statistics.median(sweep))
            else:
                times["torch_ddp"].append(_time(ddp_step, args.steps))
        sides.reverse()
        dist.barrier()
        times["comm_alone"].append(statistics.median(_comm_alone(g, dp) for _ in range(3)))
        for side in ("ag", "torch") if r % 2 == 0 else ("torch", "ag"):
            dist.barrier()
            if rank == 0:
                t = _time(ag_alone if side == "ag" else torch_alone, args.steps)
                times[f"{side}_alone"].append(t)
            dist.barrier()
    # bucket bandwidth: the library's path against raw mpi4py and gloo, interleaved per size,
    # the order reversed every round; the ratio is the median of the rounds' ratios (the load
    # of a shared machine moves between rounds more than within one)
    bw = {}
    for mb in SIZES_MB:
        n = int(mb * 2**20) // 4
        buf = np.ones(n, np.float32)
        tbuf = torch.ones(n)
        reps = max(3, min(50, int(64 / mb)))
        cases = {
            "ours_s": lambda: g.wait([g.launch(lambda: g.host.allreduce(buf, "sum"), "bench")]),
            "mpi4py_s": lambda: raw.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM),
            "mpi4py_nonblocking_s": lambda: raw.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM).Wait(),
            "gloo_s": lambda: td.all_reduce(tbuf),
        }
        got = {k: [] for k in cases}
        order = list(cases)
        for _ in range(args.bw_rounds):
            for k in order:
                dist.barrier()
                got[k].append(_time(cases[k], reps))
            order.reverse()
        bw[str(mb)] = {"bytes": n * 4, **{k: _median(v) for k, v in got.items()},
                       "ratio_vs_mpi4py": _median([a / b for a, b in zip(got["mpi4py_s"],
                                                                        got["ours_s"])]),
                       "rounds": got}
    if rank == 0:
        report = {
            "ranks": size, "batch_per_rank": B, "width": W, "layers": L,
            "buckets": len(dp.buckets), "bucket_mb": [round(b.total * 4 / 2**20, 3)
                                                      for b in dp.buckets],
            "gradient_error_vs_float64": {"autograd_gpu": err_ours, "torch": err_torch},
            "median_s": {k: _median(v) for k, v in times.items()}, "rounds": times,
            "bandwidth": bw, "load_end": os.getloadavg()[0],
        }
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    dist.barrier()
    td.destroy_process_group()


# ---- the parent --------------------------------------------------------------------------------


def summarize(rep: dict) -> str:
    m = rep["median_s"]
    lines = [f"{rep['ranks']} ranks, MLP batch {rep['batch_per_rank']}/rank, width "
             f"{rep['width']}, {rep['layers']} layers; {rep['buckets']} buckets "
             f"{rep['bucket_mb']} MiB; load average {rep['load_start']:.2f} at start, "
             f"{rep['load_end']:.2f} at end",
             "averaged gradients against float64: max |error| / max |value| autograd_gpu "
             f"{rep['gradient_error_vs_float64']['autograd_gpu']:.1e}, PyTorch DDP "
             f"{rep['gradient_error_vs_float64']['torch']:.1e}"]
    r_dp = [a / b for a, b in zip(rep["rounds"]["ag_dp"], rep["rounds"]["torch_ddp"])]
    lines.append(f"step: autograd_gpu DP {1e3 * m['ag_dp']:.1f} ms, PyTorch DDP (gloo) "
                 f"{1e3 * m['torch_ddp']:.1f} ms: ratio {statistics.median(r_dp):.3f} "
                 f"(per-round {min(r_dp):.2f}..{max(r_dp):.2f}; target <= 1.0)")
    lines.append(f"one process: autograd_gpu {1e3 * m['ag_alone']:.1f} ms, PyTorch "
                 f"{1e3 * m['torch_alone']:.1f} ms; scaling efficiency (alone / DP step): "
                 f"autograd_gpu {m['ag_alone'] / m['ag_dp']:.2f}, PyTorch "
                 f"{m['torch_alone'] / m['torch_ddp']:.2f}")
    lines.append(f"communication: buckets alone {1e3 * m['comm_alone']:.2f} ms, exposed in the "
                 f"step {1e3 * m['exposed']:.2f} ms: overlap fraction "
                 f"{1 - m['exposed'] / m['comm_alone']:.2f} (sweep {1e3 * m['sweep']:.1f} ms)")
    lines.append("bucket bandwidth (GB/s, medians over rounds): size, ours, raw mpi4py "
                 "Allreduce, ours / raw (the median of the rounds' ratios), raw Iallreduce + Wait "
                 "(the non-blocking algorithm ours uses), gloo")
    for mb, b in rep["bandwidth"].items():
        gb = [b["bytes"] / b[k] / 1e9 for k in ("ours_s", "mpi4py_s", "mpi4py_nonblocking_s",
                                                 "gloo_s")]
        lines.append(f"  {float(mb):7.4g} MB  {gb[0]:6.2f}  {gb[1]:6.2f}  "
                     f"{b['ratio_vs_mpi4py']:5.2f}  {gb[2]:6.2f}  {gb[3]:6.2f}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--bw-rounds", type=int, default=9,
                    help="interleaved rounds per bucket size of the bandwidth comparison")
    ap.add_argument("--out", default="ddp_bench.json")
    ap.add_argument("--port", type=int, default=0, help="gloo's rendezvous port (0: a free one)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                           + os.environ.get("PATH", ""))
    if mpiexec is None:
        raise SystemExit("mpiexec not found: pip install \"autograd_gpu[distributed]\"")
    if args.port == 0:
        import socket

        with socket.socket() as sock:  # a port nothing listens on now
            sock.bind(("127.0.0.1", 0))
            args.port = sock.getsockname()[1]
    load_start = os.getloadavg()[0]
    out = os.path.abspath(args.out)
    cmd = [mpiexec, "-n", str(args.ranks), sys.executable, os.path.abspath(__file__),
           "--worker", "--rounds", str(args.rounds), "--steps", str(args.steps),
           "--bw-rounds", str(args.bw_rounds), "--out", out,
           "--port", str(args.port)]
    env = dict(os.environ, AUTOGRAD_GPU_DEVICE="cpu", UCX_LOG_LEVEL="error",
               OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    subprocess.run(cmd, env=env, check=True, timeout=1800)
    with open(out) as f:
        rep = json.load(f)
    rep["load_start"] = load_start
    with open(out, "w") as f:
        json.dump(rep, f, indent=1)
    print(summarize(rep))
    return rep


if __name__ == "__main__":
    main()
