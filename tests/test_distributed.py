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
        assert bool(res["board_shared"]) and int(res["board_by_message"]) == 0
        seq = int(res["board_seq"])
        assert seq > 10 and all(int(n) >= seq for n in res["board_arrivals"])
    assert int(a["board_seq"]) == int(b["board_seq"])  # the numbering agrees
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
@pytest.mark.parametrize("case", ["stall", "stall_messages"])
def test_rank_that_stalls_raises_distributed_error_at_the_deadline(tmp_path, case):
    """The arrival board both ways: shared memory (ranks on one machine) and messages (ranks on
    different machines)."""
    job = run_job(case, tmp_path, timeout=60, coll_timeout=2.0)
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


# ---- a world of one, in this process (no MPI) --------------------------------------------------

import autograd_gpu.distributed as dist  # noqa: E402
from autograd_gpu.distributed.comm import Communicator, DoneWork, Work  # noqa: E402
from autograd_gpu.distributed.launch import launch_info  # noqa: E402


@pytest.fixture
def one():
    dist.shutdown()
    g = dist.init(backend="local", timeout_s=5)
    yield g
    dist.shutdown()


def test_world_of_one_collectives(one):
    assert (dist.rank(), dist.world_size(), dist.local_rank()) == (0, 1, 0)
    t = ag.Tensor(np.arange(6.0).reshape(2, 3))
    for op in ("sum", "mean", "max", "min"):
        r = dist.all_reduce(t, op)
        np.testing.assert_array_equal(r.numpy(), t.numpy())
        assert r._data is not t._data  # a new tensor: the input is never written
    np.testing.assert_array_equal(dist.all_reduce(t, deterministic=True).numpy(), t.numpy())
    np.testing.assert_array_equal(dist.broadcast(t).numpy(), t.numpy())
    np.testing.assert_array_equal(dist.all_gather(t).numpy(), t.numpy()[None])
    dist.barrier()


def test_collective_argument_errors(one):
    t = ag.Tensor(np.arange(3.0))
    with pytest.raises(ag.ArgumentError, match="dist.all_reduce: argument 'op' expected one of"):
        dist.all_reduce(t, "avg")
    with pytest.raises(ag.DTypeError, match="op='mean' expected a floating tensor, got int64"):
        dist.all_reduce(ag.Tensor(np.arange(3)), "mean")
    with pytest.raises(ag.DTypeError, match="op='sum' of a bool tensor"):
        dist.all_reduce(ag.Tensor(np.array([True])))
    with pytest.raises(ag.ArgumentError, match="argument 't' expected a Tensor, got ndarray"):
        dist.all_gather(np.arange(3.0))
    with pytest.raises(ag.ArgumentError, match=r"argument 'root' expected a rank in 0..0, got 1"):
        dist.broadcast(t, root=1)


def test_init_arguments_and_state():
    dist.shutdown()
    with pytest.raises(dist.DistributedError, match="call dist.init\\(\\) first"):
        dist.rank()
    with pytest.raises(ag.ArgumentError, match="argument 'backend' expected one of"):
        dist.init(backend="gloo")
    with pytest.raises(ag.ArgumentError, match="argument 'timeout_s' expected a finite number"):
        dist.init(timeout_s=0)
    g = dist.init(timeout_s=7)
    try:
        assert g.size == 1 and g.host.name == "local" and dist.is_initialized()
        assert dist.init(timeout_s=3) is g and g.timeout_s == 3  # the same backend: kept
        with pytest.raises(dist.DistributedError, match="already initialised with backend 'auto'"):
            dist.init(backend="local")
    finally:
        dist.shutdown()
    assert not dist.is_initialized()


def test_launcher_environment():
    assert launch_info({}) is None
    info = launch_info({"PMI_RANK": "1", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1"})
    assert info == ("Hydra (MPICH, Intel MPI)", 1, 4, 1)
    info = launch_info({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2",
                        "SLURM_PROCID": "5", "SLURM_NTASKS": "8"})
    assert info.launcher == "Open MPI" and info.size == 2  # MPI's numbering over Slurm's
    assert launch_info({"RANK": "3", "WORLD_SIZE": "4"}).local_rank is None
    with pytest.raises(dist.DistributedError, match="RANK=4 of WORLD_SIZE=4"):
        launch_info({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(dist.DistributedError, match="PMI_SIZE='two' is not an integer"):
        launch_info({"PMI_RANK": "0", "PMI_SIZE": "two"})


def test_data_parallel_in_a_world_of_one_is_the_tape(one):
    X, y = W.data(1, 8)
    model = W.mlp(seed=0)
    ref = W.grads_of(model, X, y)
    dp = dist.DataParallel(model, bucket_mb=1e-3)
    assert len(dp.buckets) == 3 and dp.parameters() == model.parameters()
    for _ in range(2):
        with ag.GradientTape() as tape:
            loss = ag.nn.cross_entropy(dp(ag.Tensor(X)), ag.Tensor(y))
        grads = dp.gradient(tape, loss)
        for g, r in zip(grads, ref):
            assert g.numpy().tobytes() == r.tobytes()
    assert dp.last_step["buckets"] == 3 and dp.steps == 2
    # the bucket order is the ready order: the last layer's bias first
    assert [dp.named_parameters()[i][0] for i in dp.buckets[0].members][:2] == ["4.bias",
                                                                                 "4.weight"]


def test_data_parallel_unused_and_no_sync_in_a_world_of_one(one):
    X, y = W.data(5, 8)
    model = W.TwoHeads(seed=0)
    dp = dist.DataParallel(model)
    with dp.no_sync():
        with ag.GradientTape() as tape:
            loss = ag.nn.cross_entropy(model(ag.Tensor(X[:4]), ("a",)), ag.Tensor(y[:4]))
        first = dp.gradient(tape, loss)
    assert [g is None for g in first] == [False, False, False, False, True, True, True, True]
    with ag.GradientTape() as tape:
        loss = ag.nn.cross_entropy(model(ag.Tensor(X[4:]), ("a", "b")), ag.Tensor(y[4:]))
    second_local = None
    grads = dp.gradient(tape, loss)
    with ag.GradientTape() as tape:
        loss = ag.nn.cross_entropy(model(ag.Tensor(X[4:]), ("a", "b")), ag.Tensor(y[4:]))
    second_local = tape.gradient(loss, model.parameters()[:6])
    for i in range(6):
        want = second_local[i].numpy() + (first[i].numpy() if first[i] is not None else 0)
        np.testing.assert_array_equal(grads[i].numpy(), want)
    assert grads[6] is None and grads[7] is None  # head c: no step used it
    # the accumulator was emptied by the synchronised step
    with ag.GradientTape() as tape:
        loss = ag.nn.cross_entropy(model(ag.Tensor(X[4:]), ("a", "b")), ag.Tensor(y[4:]))
    again = dp.gradient(tape, loss)
    np.testing.assert_array_equal(again[0].numpy(), second_local[0].numpy())


def test_parameter_first_read_off_the_loss_path(one):
    """A parameter whose first-recorded reader no cotangent reaches is reported ready when the
    sweep passes that reader (its cotangent is final there), not filled from the tape's result
    at the end; the value must be right either way."""
    X, y = W.data(1, 8)
    model = W.mlp(seed=0)
    dp = dist.DataParallel(model, bucket_mb=1e-3)
    w0 = model.parameters()[0]
    with ag.GradientTape() as tape:
        side = ag.tanh(w0 * 2.0)  # recorded first, not part of the loss
        loss = ag.nn.cross_entropy(dp(ag.Tensor(X)), ag.Tensor(y))
    grads = dp.gradient(tape, loss)
    del side
    assert dp.last_step["filled_at_end"] == 0  # w0 was reported during the sweep
    ref = W.grads_of(model, X, y)
    for g, r in zip(grads, ref):
        assert g.numpy().tobytes() == r.tobytes()


class _Broken(Work):
    def test(self):
        raise RuntimeError("message truncated: 24 bytes received, 16 expected")


def test_transport_error_becomes_distributed_error(one):
    g = one
    with pytest.raises(dist.DistributedError, match=r"bucket x \(collective #\d+\) failed in "
                       r"the transport: message truncated"):
        g.wait([g.launch(_Broken, "bucket x")])
    with pytest.raises(dist.DistributedError, match="the process group is broken"):
        dist.barrier()


class _DoneAfter(Work):
    """Completes on its ``n``-th test; ``early``: its poller answers True ``early`` tests before
    test() does (a transport's poller that is only a hint)."""

    def __init__(self, n, early=0, started=None):
        super().__init__()
        if started is not None:
            self.started = started
        self.n, self.early = n, early
        self.tests = self.polls = 0

    def test(self):
        self.tests += 1
        self.done = self.done or self.tests + self.polls >= self.n
        return self.done

    def poller(self):
        def poll():
            self.polls += 1
            return self.tests + self.polls >= self.n - self.early
        return poll


def test_wait_polls_hot_from_the_start_of_the_wait_not_the_launch(one):
    """A bucket launched long before its wait (early in a long backward) is still in flight
    when the wait begins: the wait polls it without napping. Counting the nap threshold from
    the launch napped 1 ms per test once the work was 0.25 s old (200 tests: about 0.14 s)."""
    g = one
    w = _DoneAfter(200, started=time.monotonic() - 1.0)
    t0 = time.perf_counter()
    g.wait([w])
    assert w.done and time.perf_counter() - t0 < 0.05


def test_wait_finishes_through_test_after_an_early_poller(one):
    """The wait loop polls the work's poller() (MPI's own request test); once the poller says
    done, test() must agree before the wait returns: a poller that answers early hands the
    loop back to test()."""
    g = one
    w = _DoneAfter(50)
    g.wait([w])
    assert w.done and w.polls == 50 and w.tests == 1  # polled by the poller, finished by test
    w = _DoneAfter(50, early=10)
    g.wait([w])
    assert w.done and w.polls == 40  # done is set by test() alone, at the 50th call in all


def test_data_parallel_amp_in_a_world_of_one(one):
    scaler = ag.LossScaler.dynamic(init_scale=256.0, growth_interval=100)
    cfg = ag.AmpConfig(precision_mode="float16", loss_scaler=scaler)
    X, y = W.data(6, 8, dtype=np.float32)
    model = W.mlp(seed=0, dtype="float32")
    with ag.GradientTape(amp=cfg) as tape:
        loss = ag.nn.cross_entropy(model(ag.Tensor(X)), ag.Tensor(y))
    ref = tape.gradient(loss, model.parameters())
    dp = dist.DataParallel(model)
    with ag.GradientTape(amp=cfg) as tape:
        loss = ag.nn.cross_entropy(dp(ag.Tensor(X)), ag.Tensor(y))
    grads = dp.gradient(tape, loss)
    assert not grads.step_skipped and scaler.scale == 256.0 and scaler.steps == 2
    for g, r in zip(grads, ref):
        np.testing.assert_array_equal(g.numpy(), r.numpy())  # scale 256: exact
    X[0, 0] = 1e30
    with ag.GradientTape(amp=cfg) as tape:
        loss = ag.nn.cross_entropy(dp(ag.Tensor(X)), ag.Tensor(y))
    grads = dp.gradient(tape, loss)
    assert grads.step_skipped and tape.step_skipped and scaler.scale == 128.0
    assert scaler.steps == 3 and scaler.skipped_steps == 1  # advanced once, not twice


def test_data_parallel_argument_errors(one):
    model = W.mlp(seed=0)
    with pytest.raises(ag.ArgumentError, match="argument 'bucket_mb' expected a number of MiB"):
        dist.DataParallel(model, bucket_mb=0)
    with pytest.raises(ag.ArgumentError, match="argument 'model' expected an ag.nn.Module"):
        dist.DataParallel(3)
    p = model.parameters()[0]
    with pytest.raises(ag.ArgumentError,
                       match=r"parameter '\[1\] weight' is the same Variable as '\[0\] weight'"):
        dist.DataParallel([p, p])
    with pytest.raises(ag.ArgumentError, match="the model has no parameters"):
        dist.DataParallel(ag.nn.ReLU())
    dp = dist.DataParallel(model)
    with pytest.raises(ag.ArgumentError, match="argument 'tape' expected a GradientTape"):
        dp.gradient(None, None)


def test_shard_and_sampler():
    parts = [dist.shard(10, seed=3, rank=r, world_size=3) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]
    for epoch in range(3):
        got = [p.indices(epoch).tolist() for p in parts]
        order = parts[0].epoch_order(epoch).tolist()
        assert sorted(sum(got, [])) == sorted(order + order[:2])  # 2 repeats fill 12 places
        assert got[0] == (order + order[:2])[0::3]
    assert parts[0].indices(0).tolist() != parts[0].indices(1).tolist()
    dropped = [dist.shard(10, seed=3, drop_last=True, rank=r, world_size=3) for r in range(3)]
    flat = sum((p.indices(0).tolist() for p in dropped), [])
    assert len(flat) == 9 and len(set(flat)) == 9
    # drop_last=True deals the same parts as DataLoader's own sharding
    ds = ag.data.ArrayDataset(np.arange(10.0))
    for r in range(3):
        own = ag.data.DataLoader(ds, 2, shuffle=True, seed=3, num_shards=3, shard_index=r)
        assert own.indices(0).tolist() == dropped[r].indices(0).tolist()
    assert dist.shard(5, shuffle=False, rank=1, world_size=2).indices(0).tolist() == [1, 3, 0]
    with pytest.raises(ag.ArgumentError, match="pass both 'rank' and 'world_size'"):
        dist.shard(10, rank=0)
    with pytest.raises(ag.ArgumentError, match="needs an explicit 'seed'"):
        dist.shard(10, rank=0, world_size=2)
    with pytest.raises(ag.ArgumentError, match="argument 'rank' expected below world_size=2"):
        dist.shard(10, seed=0, rank=2, world_size=2)
    with pytest.raises(ag.ArgumentError, match="none each with drop_last=True"):
        dist.shard(2, seed=0, drop_last=True, rank=0, world_size=3)


class _Order:
    def __init__(self, idx):
        self.idx = np.asarray(idx)

    def indices(self, epoch):
        return self.idx

    def __len__(self):
        return len(self.idx)


def test_data_loader_with_a_sampler():
    ds = ag.data.ArrayDataset(np.arange(20.0) * 10)
    # [1, 12, 16, 4] spans 4 positions like a contiguous run: it was read as rows 1..4
    for order in ([1, 12, 16, 4, 7], [3, 4, 5, 6, 0]):
        loader = ag.data.DataLoader(ds, batch_size=4, sampler=_Order(order))
        got = np.concatenate([b[0].numpy() for b in loader])
        np.testing.assert_array_equal(got, np.array(order) * 10.0)
        assert len(loader) == 2
    with pytest.raises(ag.ArgumentError, match="leave shuffle=False and num_shards=1"):
        ag.data.DataLoader(ds, 4, shuffle=True, seed=0, sampler=_Order([1]))
    with pytest.raises(ag.ArgumentError, match="expected an object with indices"):
        ag.data.DataLoader(ds, 4, sampler=[1, 2])


# ---- deadlines, on a stand-in transport --------------------------------------------------------


class _Never(Work):
    def __init__(self, device=False):
        super().__init__()
        self._device = device

    def test(self):
        return False

    def on_device_stream(self):
        return self._device

    def enqueue_wait(self):
        pass


class _ThreeRanks(Communicator):
    """Rank 0 of a pretend world of three where rank 1 stopped two collectives ago."""

    name = "pretend"
    rank, size = 0, 3

    def __init__(self):
        self.seq = 0
        self.aborted = []

    def supports(self, array):
        return True

    def allgather(self, send, recv):
        def fill():
            recv[...] = send
        return DoneWork(fill)

    def allreduce(self, buf, op):
        return _Never()

    def announce(self, seq):
        self.seq = seq

    def arrivals(self):
        return [self.seq, self.seq - 2, self.seq]

    def abort(self, code=1):
        self.aborted.append(code)


def test_deadline_names_the_missing_rank_and_breaks_the_group():
    dist.shutdown()
    comm = _ThreeRanks()
    g = dist.init(backend=comm, timeout_s=0.3)
    try:
        t0 = time.monotonic()
        with pytest.raises(dist.DistributedError) as exc:
            dist.all_reduce(ag.Tensor(np.ones(3)))
        assert 0.3 <= time.monotonic() - t0 < 3
        msg = str(exc.value)
        assert msg.startswith("dist.all_reduce(sum, Tensor(shape=(3,), dtype=float64, "
                              "device=cpu)) (collective #4) did not complete within 0.3 s on "
                              "rank 0 of 3: rank 1 did not arrive (the last collective each "
                              "reached: rank 1 at #2)")
        with pytest.raises(dist.DistributedError, match="the process group is broken"):
            dist.barrier()
        # a device collective the host does not wait for: the watchdog aborts the job
        g.broken = None
        w = g.launch(lambda: _Never(device=True), "device work")
        g.watch(w)
        deadline = time.monotonic() + 5
        while not comm.aborted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert comm.aborted == [1]
        assert "device work (collective #5) did not complete within 0.3 s" in g.broken
    finally:
        dist.shutdown()


# ---- the NCCL communicator's logic, on a stand-in for CuPy and its NCCL -------------------------
# NCCL needs GPUs (one per rank): here two threads play two ranks, "device" arrays are NumPy
# arrays with CuPy's .data.ptr and .device, and the stand-in NCCL reads and writes the memory
# behind the pointers, so the communicator's pointer arithmetic, dtype and op codes and stream
# ordering are what is checked.

import ctypes  # noqa: E402
import threading  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from autograd_gpu.distributed.nccl import NCCL_DTYPES, NCCLCommunicator  # noqa: E402

_CODE_DTYPE = {v: k for k, v in NCCL_DTYPES.items()}


class _DevArray(np.ndarray):
    @property
    def data(self):
        return SimpleNamespace(ptr=self.ctypes.data)

    @property
    def device(self):
        return SimpleNamespace(id=0)


def _dev(a):
    return np.ascontiguousarray(a).view(_DevArray)


def _mem(ptr, count, code):
    dt = _CODE_DTYPE[code]
    raw = (ctypes.c_uint8 * (count * dt.itemsize)).from_address(ptr)
    return np.ctypeslib.as_array(raw).view(dt)


class _FakeCuda:
    """cupy.cuda: devices, streams that log what is enqueued on them, events."""

    def __init__(self, log):
        self.log = log
        self.local = threading.local()
        fake = self

        class Stream:
            def __init__(self, non_blocking=False, name="side"):
                self.name = name
                self.ptr = id(self)

            def record(self):
                ev = SimpleNamespace(done=True, stream=self.name)
                fake.log.append((threading.current_thread().name, "record", self.name))
                return ev

            def wait_event(self, ev):
                fake.log.append((threading.current_thread().name, "wait", self.name, ev.stream))

            def __enter__(self):
                fake.local.current = self

            def __exit__(self, *exc):
                fake.local.current = None

        self.Stream = Stream
        self.Device = lambda i: __import__("contextlib").nullcontext()

    def get_current_stream(self):
        cur = getattr(self.local, "current", None)
        return cur if cur is not None else self.Stream(name="current")


class _FakeNccl:
    """cupy.cuda.nccl for ranks that are threads of this process."""

    def __init__(self, size, log):
        self.size = size
        self.log = log
        self.barrier = threading.Barrier(size, timeout=10)
        self.slots = [None] * size
        self.local = threading.local()

    def NcclCommunicator(self, size, uid, rank):
        assert size == self.size and uid == (1, 2, 3)
        return _FakeComm(self, rank)

    def groupStart(self):
        self.local.ops = []

    def groupEnd(self):
        ops, self.local.ops = self.local.ops, None
        self.run(ops[0][1], ("group", ops))

    def run(self, rank, call):
        self.log.append((threading.current_thread().name, "nccl", call[0]))
        self.slots[rank] = call
        self.barrier.wait()
        if rank == 0:
            self._execute(list(self.slots))
        self.barrier.wait()

    def _execute(self, calls):
        kind = calls[0][0]
        assert all(c[0] == kind for c in calls), [c[0] for c in calls]
        if kind == "allreduce":
            _, _, _, count, code, op = calls[0]
            parts = [_mem(c[1], count, code).copy() for c in calls]
            acc = parts[0].copy()
            for p in parts[1:]:
                acc = {0: np.add, 2: np.maximum, 3: np.minimum}[op](acc, p)
            for c in calls:
                _mem(c[2], count, code)[...] = acc
        elif kind == "broadcast":
            root = calls[0][5]
            src = _mem(calls[root][1], calls[0][3], calls[0][4]).copy()
            for c in calls:
                _mem(c[2], c[3], c[4])[...] = src
        elif kind == "allgather":
            n = calls[0][3]
            for c in calls:
                out = _mem(c[2], n * self.size, c[4])
                for k, src in enumerate(calls):
                    out[k * n:(k + 1) * n] = _mem(src[1], n, src[4])
        elif kind == "group":
            sends = [op for c in calls for op in c[1] if op[0] == "send"]
            for c in calls:
                for op in c[1]:
                    if op[0] == "recv":
                        _, rank, peer, ptr, count, code = op
                        match = [s for s in sends if s[1] == peer and s[2] == rank]
                        src = match.pop(0)
                        sends.remove(src)
                        _mem(ptr, count, code)[...] = _mem(src[3], count, code)


class _FakeComm:
    def __init__(self, nccl, rank):
        self.n, self.rank = nccl, rank

    def allReduce(self, s, r, count, code, op, stream):
        self.n.log.append(("codes", code, op))
        self.n.run(self.rank, ("allreduce", s, r, count, code, op))

    def broadcast(self, s, r, count, code, root, stream):
        self.n.run(self.rank, ("broadcast", s, r, count, code, root))

    def allGather(self, s, r, count, code, stream):
        self.n.run(self.rank, ("allgather", s, r, count, code))

    def send(self, ptr, count, code, peer, stream):
        self.n.local.ops.append(("send", self.rank, peer, ptr, count, code))

    def recv(self, ptr, count, code, peer, stream):
        self.n.local.ops.append(("recv", self.rank, peer, ptr, count, code))

    def abort(self):
        self.n.log.append(("abort", self.rank))

    def destroy(self):
        pass


def _two_ranks(body):
    """Run ``body(comm, rank)`` on two thread-ranks; their results, in rank order."""
    log: list = []
    cuda = _FakeCuda(log)
    cp = SimpleNamespace(cuda=cuda, empty_like=np.empty_like, add=np.add, int32=np.int32,
                         zeros=lambda n, dtype: _dev(np.zeros(n, dtype)))
    nccl = _FakeNccl(2, log)
    out, errors = [None, None], []

    def run(r):
        try:
            comm = NCCLCommunicator((1, 2, 3), r, 2, 0, cupy=cp, nccl=nccl)
            out[r] = body(comm, r)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
            nccl.barrier.abort()

    threads = [threading.Thread(target=run, args=(r,), name=f"rank{r}") for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    return out, log


def test_nccl_collectives_on_a_stand_in():
    def body(comm, r):
        res = {}
        for dt in (np.float32, np.float64, np.float16, ag.dtypes.bfloat16, np.int64):
            buf = _dev((np.arange(5) * (r + 1)).astype(dt))
            w = comm.allreduce(buf, "sum")
            assert w.test() and w.on_device_stream()
            res[f"sum_{np.dtype(dt).name}"] = np.asarray(buf).astype(np.float64)
        buf = _dev(np.array([r, 5 - r], np.float32))
        comm.allreduce(buf, "max")
        res["max"] = np.asarray(buf).copy()
        flag = _dev(np.array([r == 1, False]))
        comm.allreduce(flag, "max")
        res["bool"] = np.asarray(flag).copy()
        b = _dev(np.full((2, 3), float(r)))
        comm.broadcast(b, 1)
        res["bcast"] = np.asarray(b).copy()
        send = _dev(np.array([r, 10 * r], np.int32))
        recv = _dev(np.zeros((2, 2), np.int32))
        comm.allgather(send, recv)
        res["gather"] = np.asarray(recv).copy()
        s = _dev(np.array([[r, r + 0.5], [10 + r, 10.5 + r]]))
        rv = _dev(np.zeros((2, 2)))
        comm.alltoall(s, rv)
        res["a2a"] = np.asarray(rv).copy()
        comm.barrier()
        return res

    (a, b), log = _two_ranks(body)
    for res in (a, b):
        for dt in ("float32", "float64", "float16", "bfloat16", "int64"):
            np.testing.assert_array_equal(res[f"sum_{dt}"], np.arange(5) * 3)
        np.testing.assert_array_equal(res["max"], [1, 5])
        np.testing.assert_array_equal(res["bool"], [True, False])
        np.testing.assert_array_equal(res["bcast"], np.ones((2, 3)))
        np.testing.assert_array_equal(res["gather"], [[0, 0], [1, 10]])
    np.testing.assert_array_equal(a["a2a"], [[0, 0.5], [1, 1.5]])  # row k: rank k's row 0
    np.testing.assert_array_equal(b["a2a"], [[10, 10.5], [11, 11.5]])
    codes = [e[1:] for e in log if e[0] == "codes"]
    # float32 7, float64 8, float16 6, bfloat16 9, int64 4; max is op 2; bool goes as uint8 (1)
    assert codes[:2 * 7:2] == [(7, 0), (8, 0), (6, 0), (9, 0), (4, 0), (7, 2), (1, 2)]
    # stream order, per rank: the side stream waits for the current stream, then NCCL, then
    # the completion event is recorded on the side stream
    mine = [e[1:] for e in log if e[0] == "rank0"]
    assert mine[:3] == [("record", "current"), ("wait", "side", "current"), ("nccl", "allreduce")]
    assert mine[3] == ("record", "side")


def test_nccl_fixed_order_sum_on_a_stand_in():
    vals = [np.array([1e16, 1.0, -1e16, 3.0, 2.0, 0.5]), np.array([1.0, 1e16, 1.0, -1.0, 5.0,
                                                                   0.25])]

    def body(comm, r):
        flat = _dev(vals[r].copy())
        comm.fixed_sum(flat)
        return np.asarray(flat).copy()

    (a, b), log = _two_ranks(body)
    np.testing.assert_array_equal(a, vals[0] + vals[1])
    assert a.tobytes() == b.tobytes()
    kinds = [e[2] for e in log if e[0] == "rank0" and e[1] == "nccl"]
    assert kinds == ["group", "allgather"]  # alltoall as grouped send/recv, add, allgather
