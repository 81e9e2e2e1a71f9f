"""autograd_gpu.distributed: real jobs under ``mpiexec`` (tests/distributed_worker.py), each
with a timeout and a kill of its process group, compared with one process; the world of one,
the sampler, and the NCCL communicator's logic on a stand-in for CuPy's NCCL (no GPU here)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import autograd_gpu as ag

sys.path.insert(0, str(Path(__file__).parent))
import distributed_worker as W  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).parent / "distributed_worker.py"


def _mpiexec():
    exe = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
    if exe is None:
        return None
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return exe


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="mpi4py and mpiexec not installed "
                               "(pip install \"autograd_gpu[distributed]\")")


class Job:
    def __init__(self, rc, out, err, seconds):
        self.rc, self.out, self.err, self.seconds = rc, out, err, seconds


def run_job(case: str, outdir, n: int = 2, timeout: float = 90.0, coll_timeout: float = 60.0,
            script=WORKER, args=None) -> Job:
    """``mpiexec -n n python script case outdir``; on timeout the whole process group is
    killed (mpiexec and every rank) and the test fails."""
    argv = args if args is not None else [str(script), case, str(outdir), str(coll_timeout)]
    cmd = [MPIEXEC, "-n", str(n), sys.executable, *argv]
    env = dict(os.environ, AUTOGRAD_GPU_DEVICE="cpu", UCX_LOG_LEVEL="error",
               PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"mpiexec job {case!r} did not end within {timeout} s; killed.\n"
                    f"stdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return Job(proc.returncode, out, err, time.monotonic() - t0)


def _load(outdir, case, n=2):
    return [dict(np.load(Path(outdir) / f"{case}_{r}.npz")) for r in range(n)]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """One two-rank job runs every scenario that must succeed (start-up is paid once)."""
    if MPIEXEC is None:
        pytest.skip("mpi4py and mpiexec not installed")
    out = tmp_path_factory.mktemp("dist")
    job = run_job("suite", out)
    assert job.rc == 0, f"suite job failed ({job.rc}):\n{job.out[-3000:]}\n{job.err[-5000:]}"
    return out


def _close(a, b, tol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, what
    err = np.max(np.abs(a - b)) if a.size else 0.0
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    assert err <= tol * scale, f"{what}: max abs difference {err:.3g} (tolerance {tol:g})"


# ---- jobs that must succeed --------------------------------------------------------------------


@needs_mpi
def test_half_batches_equal_full_batch_mlp_and_cnn(suite):
    res = _load(suite, "equivalence")
    X, y = W.data(1, 16)
    ref = W.grads_of(W.mlp(seed=0), X, y)
    for bucket_mb in ("None", "0.0001"):
        for step in range(2):
            for r in range(2):
                for i, g in enumerate(ref):
                    _close(res[r][f"mlp_{bucket_mb}_{step}_{i}"], g, 1e-12,
                           f"MLP rank {r} bucket_mb={bucket_mb} step {step} parameter {i}")
    assert int(res[0]["mlp_0.0001_buckets"]) == 6  # one bucket per parameter: 6 allreduces
    assert int(res[0]["mlp_None_buckets"]) == 1
    Xc, yc = W.data(2, 8, shape=(2, 8, 8))
    refc = W.grads_of(W.cnn(seed=0), Xc, yc)
    for r in range(2):
        for i, g in enumerate(refc):
            _close(res[r][f"cnn_{i}"], g, 1e-12, f"CNN rank {r} parameter {i}")


@needs_mpi
def test_replicas_bitwise_identical_after_20_steps(suite):
    a, b = _load(suite, "replicas")
    assert a.keys() == b.keys() and len(a) == 6
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), f"parameter {k} differs between the ranks"
    # and they trained as one process on the full batches would have (float32)
    model = W.mlp(seed=0, dtype="float32")
    opt = ag.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    X, y = W.data(3, 64, dtype=np.float32)
    for step in range(20):
        rows = np.r_[(step % 4) * 8:(step % 4) * 8 + 8, 32 + (step % 4) * 8:32 + (step % 4) * 8 + 8]
        with ag.GradientTape() as tape:
            loss = ag.nn.cross_entropy(model(ag.Tensor(X[rows])), ag.Tensor(y[rows]))
        opt.step(tape.gradient(loss, model.parameters()))
    for i, p in enumerate(model.parameters()):
        _close(a[f"p{i}"], p.numpy(), 1e-5, f"parameter {i} after 20 steps")


@needs_mpi
def test_no_sync_accumulates_then_reduces_the_sum(suite):
    res = _load(suite, "no_sync")
    X, y = W.data(4, 16)
    model = W.mlp(seed=0)
    per_mb = [W.grads_of(model, X[4 * k:4 * k + 4], y[4 * k:4 * k + 4]) for k in range(4)]
    for round_ in range(2):
        for r in range(2):
            for i in range(6):
                _close(res[r][f"local_{round_}_{i}"], per_mb[2 * r][i], 1e-12,
                       f"no_sync returns rank {r}'s own gradient, parameter {i}")
                want = sum(per_mb[k][i] for k in range(4)) / 2  # sum over micro-batches, mean
                _close(res[r][f"sync_{round_}_{i}"], want, 1e-12,     # over ranks
                       f"round {round_} rank {r} parameter {i}")


@needs_mpi
def test_unused_parameters(suite):
    res = _load(suite, "unused")
    X, y = W.data(5, 8)
    model = W.TwoHeads(seed=0)
    names = [n for n, _ in model.named_parameters()]
    local = []
    for r in range(2):
        with ag.GradientTape() as tape:
            tape.watch(model.parameters())  # (head c is never read)
            loss = ag.nn.cross_entropy(model(ag.Tensor(X[4 * r:4 * r + 4]), W.heads_of(r)),
                                       ag.Tensor(y[4 * r:4 * r + 4]))
        local.append(tape.gradient(loss, model.parameters()))
    for step in range(2):
        for r in range(2):
            for i, name in enumerate(names):
                key = f"g_{step}_{i}"
                if name.startswith("c."):  # used by no rank: None, as from one process
                    assert key not in res[r], f"{name} should have no gradient"
                    continue
                parts = [lg[i].numpy() if lg[i] is not None else 0.0 for lg in local]
                want = (parts[0] + parts[1]) / 2  # b: rank 1's gradient over 2 ranks
                _close(res[r][key], want, 1e-12, f"rank {r} step {step} {name}")


@needs_mpi
def test_amp_overflow_on_one_rank_skips_the_step_everywhere(suite):
    a, b = _load(suite, "amp")
    assert a["skipped"].tolist() == [False, False, True, False, False]
    assert b["skipped"].tolist() == a["skipped"].tolist()
    # 1024 -> 2048 (2 clean steps) -> 1024 (overflow) -> 1024 -> 2048
    assert a["scales"].tolist() == [1024.0, 2048.0, 1024.0, 1024.0, 2048.0]
    assert b["scales"].tolist() == a["scales"].tolist()
    for k in a:
        if k.startswith("p"):
            assert np.isfinite(a[k]).all()
            assert a[k].tobytes() == b[k].tobytes(), f"{k} differs between the ranks"


@needs_mpi
def test_collectives_values(suite):
    a, b = _load(suite, "collectives")
    base = np.arange(7, dtype=np.float64)
    for res in (a, b):
        for dt in ("float64", "float32", "int64", "bfloat16"):
            np.testing.assert_array_equal(res[f"sum_{dt}"], base * 3)
            np.testing.assert_array_equal(res[f"max_{dt}"], base * 2)
        np.testing.assert_allclose(res["mean"], np.linspace(0, 1, 5) + 0.5, rtol=0, atol=1e-15)
        np.testing.assert_array_equal(res["min"], np.linspace(0, 1, 5))
        np.testing.assert_array_equal(res["fixed"], 2 * np.linspace(0, 1, 5) + 1)
        np.testing.assert_array_equal(res["bool_max"], [True, False])
        np.testing.assert_array_equal(res["bcast"], np.full((2, 3), 1.0))
        np.testing.assert_array_equal(res["gather"], [[0, 0], [1, 10]])
        msg = str(res["mismatch"])
        assert "every rank must pass the same shape" in msg and "(3,)" in msg and "(4,)" in msg
    # the shards: disjoint, equal, the whole epoch with one repeat (23 = 2 * 12 - 1)
    for key in ("shard0", "shard1"):
        both = np.concatenate([a[key], b[key]])
        assert len(a[key]) == len(b[key]) == 12
        assert sorted(set(both.tolist())) == list(range(23))
    assert a["shard0"].tolist() != a["shard1"].tolist()  # a new order every epoch
    np.testing.assert_array_equal(a["loader"], a["shard0"].astype(np.float64))
    np.testing.assert_array_equal(b["loader"], b["shard0"].astype(np.float64))


@needs_mpi
def test_strict_reduction_is_the_rank_order_sum_bit_for_bit(tmp_path):
    """Four ranks (a tree or pairwise sum would round differently), run twice: every rank and
    every run gets exactly ((g0 + g1) + g2) + g3, divided by 4."""
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        out.mkdir()
        job = run_job("strict", out, n=4)
        assert job.rc == 0, job.err[-4000:]
        runs.append(_load(out, "strict", n=4))
    res = runs[0]
    differs = False
    for i in range(6):
        g = [res[r][f"local_{i}"] for r in range(4)]
        want = (((g[0] + g[1]) + g[2]) + g[3]) / 4
        differs |= not np.array_equal(want, ((g[0] + g[1]) + (g[2] + g[3])) / 4)
        for run in runs:
            for r in range(4):
                assert run[r][f"red_{i}"].tobytes() == want.tobytes(), (
                    f"parameter {i}, rank {r}: not the rank-order sum")
    assert differs, "the data should make the order of the sum matter"


# ---- jobs that must fail, promptly and clearly -------------------------------------------------


@needs_mpi
def test_rank_that_raises_ends_the_job_with_its_error(tmp_path):
    job = run_job("raise", tmp_path, timeout=60)
    assert job.rc != 0
    assert "ValueError: boom on rank 1 before its backward" in job.err
    assert "Traceback" in job.err
    assert "rank 1 of 2 ended with an uncaught ValueError; aborting the job" in job.err
    assert job.seconds < 10, f"the job took {job.seconds:.1f} s to end"


@needs_mpi
def test_rank_that_stalls_raises_distributed_error_at_the_deadline(tmp_path):
    job = run_job("stall", tmp_path, timeout=60, coll_timeout=2.0)
    assert job.rc != 0
    err = job.err
    assert "DistributedError" in err
    assert "did not complete within 2 s on rank 0 of 2: rank 1 did not arrive" in err
    assert ("DataParallel.gradient step 0: allreduce of bucket 1 of 3 (4.bias, 4.weight, "
            "2.bias; 0.5 KiB of float64) (collective #6)") in err
    assert "rank 1 at #5" in err  # its last: the parameter broadcast
    assert job.seconds < 20, f"the job took {job.seconds:.1f} s (the stalled rank sleeps 60 s)"


@needs_mpi
def test_mismatched_models_at_init(tmp_path):
    job = run_job("mismatch", tmp_path, timeout=60)
    assert job.rc != 0
    assert ("DistributedError: DataParallel: the model differs between ranks: parameter 0 is "
            "'0.weight' (shape (6, 16), float32, cpu) on rank 0 but '0.weight' (shape (6, 17), "
            "float32, cpu) on rank 1") in job.err


@needs_mpi
def test_launcher_variables_without_an_mpi_job(tmp_path):
    env = dict(os.environ, RANK="0", WORLD_SIZE="2")
    for k in [k for k in env if k.startswith(("PMI_", "OMPI_", "MV2_", "SLURM_"))]:
        del env[k]
    code = "import autograd_gpu.distributed as d; d.init()"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode != 0
    assert ("the RANK/WORLD_SIZE launcher's variables say 2 processes, but MPI sees a world of "
            "1") in p.stderr


@needs_mpi
def test_example_ddp_digits(tmp_path):
    job = run_job("example", tmp_path, timeout=120,
                  args=[str(ROOT / "examples" / "ddp_digits.py"), "--epochs", "3"])
    assert job.rc == 0, job.err[-4000:]
    lines = [ln for ln in job.out.splitlines() if ln.startswith("test accuracy")]
    assert len(lines) == 1, job.out
    assert float(lines[0].split()[-1]) > 0.85
