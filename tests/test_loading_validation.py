"""Safe loading and argument validation.

Model files: every .npz entry's header and sizes are checked against the model before its data
is read (zip bombs, headers claiming terabytes, lying sizes, byte order); saves clean up what a
killed save left and create files with the usual mode. Optimizer state dicts: hyper-parameters
pass the constructors' checks, state arrays their declared shape and dtype. Also: a NaN memory
budget, custom_op / custom_gradient rules returning wrong shapes, the message of a retried
interrupted tape, and softmax / log_softmax / logsumexp / std on empty inputs (PyTorch's
answers)."""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu import nn, optim
from autograd_gpu.nn import module as M

T = ag.Tensor.from_array


def make_model(seed=0):
    return nn.Sequential(nn.Linear(3, 4, seed=seed), nn.ReLU(), nn.Linear(4, 2, seed=seed + 1))


def snapshot(model):
    return [p.numpy().copy() for p in model.parameters()]


def assert_unchanged(model, snap):
    for p, s in zip(model.parameters(), snap):
        np.testing.assert_array_equal(p.numpy(), s)


# ---- .npz archives written by hand (so that sizes and headers can lie) -------------------------


def npy_header(shape, descr="<f4", fortran=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    return buf.getvalue()


def write_zip(path, members):
    """members: (name, data as stored, method 0|8, crc, declared size, declared stored size)."""
    out, central = bytearray(), bytearray()
    for name, data, method, crc, size, csize in members:
        fn = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, csize,
                           size, len(fn), 0) + fn + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21,
                               crc, csize, size, len(fn), 0, 0, 0, 0, 0, offset) + fn
    cd_offset = len(out)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                                 len(central), cd_offset, 0)
    with open(path, "wb") as f:
        f.write(out)


def stored(name, payload):
    return (name, payload, 0, zlib.crc32(payload), len(payload), len(payload))


def deflated_zeros(name, header, n_zero_bytes, block=1 << 24):
    """A deflated member: ``header`` then ``n_zero_bytes`` zero bytes (a multiple of ``block``),
    compressed at deflate's best ratio (~1030:1) without ever holding the data: after a full
    flush, every further block of zeros compresses to the same bytes."""
    assert n_zero_bytes % block == 0 and n_zero_bytes >= 2 * block
    zeros = bytes(block)
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = co.compress(header + zeros) + co.flush(zlib.Z_FULL_FLUSH)
    again = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    probe = co.copy()
    assert probe.compress(zeros) + probe.flush(zlib.Z_FULL_FLUSH) == again
    reps = n_zero_bytes // block - 1
    data = first + again * (reps - 1) + co.compress(zeros) + co.flush()
    crc = zlib.crc32(header)
    for _ in range(n_zero_bytes // block):
        crc = zlib.crc32(zeros, crc)
    return (name, data, 8, crc, len(header) + n_zero_bytes, len(data))


def model_members(model, skip=()):
    """The model's own entries, stored as np.savez would."""
    out = []
    for name, arr in model.state_dict().items():
        if name in skip:
            continue
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arr)
        out.append(stored(name + ".npy", buf.getvalue()))
    return out


# ---- model files: every entry checked before its data is read ------------------------------


def test_zip_bomb_refused_before_decompressing(tmp_path):
    """1 MB on disk, 1 GiB of zeros declared for an entry the model holds as 3 x 4 floats."""
    m = make_model()
    snap = snapshot(m)
    gib = 1 << 30
    bomb = deflated_zeros("0.weight.npy", npy_header((gib // 4,)), gib)
    path = tmp_path / "bomb.npz"
    write_zip(path, [bomb] + model_members(m, skip=("0.weight",)))
    assert path.stat().st_size < 1_200_000
    with zipfile.ZipFile(path) as z:  # a well-formed archive: the data really is there
        assert z.getinfo("0.weight.npy").file_size == gib + len(npy_header((gib // 4,)))
    for load in (lambda: m.load(path),
                 lambda: nn.load_npz(path, expected=m.state_dict())):
        tracemalloc.start()
        try:
            with pytest.raises(nn.StateDictError,
                               match=r"'0.weight' expected shape \(3, 4\), got \(268435456,\)"):
                load()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB while refusing a zip bomb"
    assert_unchanged(m, snap)


def test_header_claiming_8_tib_is_a_state_dict_error_not_memory_error(tmp_path):
    m = make_model()
    snap = snapshot(m)
    header = npy_header((1 << 41,))  # 2**41 float32: 8 TiB
    assert len(header) < 250
    path = tmp_path / "huge.npz"
    write_zip(path, [stored("0.weight.npy", header)] + model_members(m, skip=("0.weight",)))
    with pytest.raises(nn.StateDictError,
                       match=r"'0.weight' expected shape \(3, 4\), got \(2199023255552,\)"):
        m.load(path)
    # without a model to compare against, the sizes still give it away before any allocation
    with pytest.raises(nn.StateDictError, match="accounts for 8796093022"):
        nn.load_npz(path)
    assert_unchanged(m, snap)


def test_sizes_that_do_not_add_up_are_refused(tmp_path):
    m = make_model()
    members = model_members(m)
    name, data, method, crc, size, csize = members[0]
    cases = {
        # the zip directory declares more data than the header accounts for
        "long.npz": (name, data + b"\0" * 8, 0, zlib.crc32(data + b"\0" * 8), size + 8,
                     csize + 8),
        # stored bytes that are not in the file
        "absent.npz": (name, data, 0, crc, 2**32 - 16, 2**32 - 16),
        # a stored entry whose stored size differs from its size
        "stored.npz": (name, data, 0, crc, size, csize + 5),
        # a deflated entry declaring 5000:1 (deflate cannot exceed 1032:1)
        "ratio.npz": (name, zlib.compress(data)[2:-4], 8, crc, 5000 * 40, 40),
    }
    for fname, bad in cases.items():
        write_zip(tmp_path / fname, [bad] + members[1:])
    expect = {"long.npz": "declares .* bytes, but its header", "absent.npz": "the file has",
              "stored.npz": "stored uncompressed", "ratio.npz": "not a ratio deflate"}
    for fname, match in expect.items():
        for load in (lambda: m.load(tmp_path / fname), lambda: nn.load_npz(tmp_path / fname)):
            with pytest.raises(nn.StateDictError, match=match):
                load()


def test_corrupt_and_truncated_data_refused(tmp_path):
    m = make_model()
    members = model_members(m)
    name, data, method, crc, size, csize = members[0]
    write_zip(tmp_path / "crc.npz", [(name, data, 0, crc ^ 1, size, csize)] + members[1:])
    with pytest.raises(nn.StateDictError, match="CRC|could not be read"):
        m.load(tmp_path / "crc.npz")
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = comp.compress(data) + comp.flush()
    cut = deflated[: len(deflated) // 2]
    write_zip(tmp_path / "cut.npz", [(name, cut, 8, crc, size, len(cut))] + members[1:])
    with pytest.raises(nn.StateDictError):
        m.load(tmp_path / "cut.npz")


def test_non_strict_load_does_not_read_unexpected_entries(tmp_path):
    m = make_model()
    gib = 1 << 30
    bomb = deflated_zeros("extra.npy", npy_header((gib // 4,)), gib)
    path = tmp_path / "extra.npz"
    src = make_model(7)
    write_zip(path, model_members(src, skip=("2.bias",)) + [bomb])
    with pytest.raises(nn.StateDictError, match="names do not match"):
        m.load(path)
    tracemalloc.start()
    try:
        missing, unexpected = m.load(path, strict=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (missing, unexpected) == (["2.bias"], ["extra"])
    assert peak < 8 << 20
    np.testing.assert_array_equal(m[0].weight.numpy(), src[0].weight.numpy())


def test_fortran_order_and_compressed_files_load(tmp_path):
    src, m = make_model(3), make_model(0)
    sd = src.state_dict()
    np.savez_compressed(tmp_path / "c.npz", **sd)
    m.load(tmp_path / "c.npz")
    assert_unchanged(m, [sd[k] for k in sd])
    fortran = {k: np.asfortranarray(v) for k, v in sd.items()}
    np.savez(tmp_path / "f.npz", **fortran)
    m2 = make_model(1)
    m2.load(tmp_path / "f.npz")
    assert_unchanged(m2, [sd[k] for k in sd])
    got = nn.load_npz(tmp_path / "f.npz")
    for k in sd:
        np.testing.assert_array_equal(got[k], sd[k])


def test_big_endian_refused_naming_the_byte_order(tmp_path):
    m = make_model()
    sd = m.state_dict()
    sd["0.bias"] = sd["0.bias"].astype(">f4")
    np.savez(tmp_path / "be.npz", **sd)
    msg = (r"'0.bias' expected dtype float32, got float32 in big-endian byte order \('>f4'\); "
           r"convert it")
    with pytest.raises(nn.StateDictError, match=msg):
        m.load(tmp_path / "be.npz")
    with pytest.raises(nn.StateDictError, match=msg):
        m.load_state_dict(sd)


def test_load_npz_expected_argument_checked():
    with pytest.raises(nn.StateDictError, match="expected"):
        nn.load_npz("x.npz", expected=[1, 2])


# ---- saving: stale temporary files and the file mode -------------------------------------------


def _temps(folder, base="w.npz"):
    return sorted(f for f in os.listdir(folder) if f.startswith(base + ".")
                  and f.endswith(".npz.tmp"))


@pytest.mark.skipif(os.name != "posix", reason="kills a child process with SIGKILL")
def test_killed_saves_leave_temps_that_the_next_save_removes(tmp_path):
    path = tmp_path / "w.npz"
    child = textwrap.dedent(f"""
        import os, signal, numpy as np
        from autograd_gpu import nn

        def dying_savez(f, **arrays):
            f.write(b"partial" * 1000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        np.savez = dying_savez
        nn.Linear(3, 4, seed=0).save({str(path)!r})
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()
    first = _temps(tmp_path)
    assert len(first) == 1 and not path.exists()
    for _ in range(3):  # each killed save removed the one before it: one file, not four
        r = subprocess.run([sys.executable, "-c", child], capture_output=True)
        assert r.returncode == -signal.SIGKILL, r.stderr.decode()
        left = _temps(tmp_path)
        assert len(left) == 1 and left != first
        first = left
    # a temp of another target and an unrelated file stay
    (tmp_path / "other.npz.00000000.1.ab.1.npz.tmp").write_bytes(b"x")
    (tmp_path / "w.npz.bak").write_bytes(b"x")
    m = nn.Linear(3, 4, seed=1)
    m.save(path)
    assert _temps(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["other.npz.00000000.1.ab.1.npz.tmp", "w.npz",
                                            "w.npz.bak"]
    fresh = nn.Linear(3, 4, seed=2)
    fresh.load(path)
    np.testing.assert_array_equal(fresh.weight.numpy(), m.weight.numpy())


@pytest.mark.skipif(os.name != "posix", reason="probes process ids")
def test_temps_of_live_saves_and_other_hosts_are_kept(tmp_path):
    path = tmp_path / "w.npz"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = f"w.npz.{M._HOST}.{sleeper.pid}.0badc0de.1.npz.tmp"
        other_host = f"w.npz.{'0' * 8 if M._HOST != '0' * 8 else '1' * 8}.1.0badc0de.1.npz.tmp"
        reused_pid = f"w.npz.{M._HOST}.{os.getpid()}.0badc0de.1.npz.tmp"  # an earlier process
        for name in (live, other_host, reused_pid):
            (tmp_path / name).write_bytes(b"x")
        make_model().save(path)
        assert _temps(tmp_path) == sorted([live, other_host])
    finally:
        sleeper.kill()
        sleeper.wait()
    make_model().save(path)  # its writer is gone now
    assert _temps(tmp_path) == [other_host]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        make_model().save(tmp_path / "a.npz")
        assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        make_model().save(tmp_path / "b.npz")
        assert (tmp_path / "b.npz").stat().st_mode & 0o777 == 0o600
        os.umask(0o022)
        os.chmod(tmp_path / "b.npz", 0o640)  # overwriting keeps a file's mode
        make_model().save(tmp_path / "b.npz")
        assert (tmp_path / "b.npz").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_concurrent_saves_in_threads_do_not_collide(tmp_path):
    import threading

    path = tmp_path / "w.npz"
    errors = []

    def work(seed):
        try:
            for _ in range(5):
                make_model(seed).save(path)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and _temps(tmp_path) == []
    make_model(9).load(path)


# ---- optimizer state dicts -----------------------------------------------------------------------


def _sgd_and_sd():
    p = nn.Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    opt.step([T(np.full(3, 0.5))])
    return opt, opt.state_dict()


BAD_HYPER = [
    (optim.SGD, "lr", -1e9), (optim.SGD, "lr", "fast"), (optim.SGD, "lr", float("nan")),
    (optim.SGD, "lr", True), (optim.SGD, "momentum", float("inf")),
    (optim.SGD, "weight_decay", -0.1), (optim.SGD, "nesterov", "yes"),
    (optim.Adam, "betas", (1.5, 0.9)), (optim.Adam, "betas", "ab"), (optim.Adam, "betas", (0.9,)),
    (optim.Adam, "eps", float("nan")), (optim.AdamW, "weight_decay", -1.0),
    (optim.AdamW, "lr", None),
]


@pytest.mark.parametrize("cls, key, value", BAD_HYPER)
def test_bad_hyperparameters_refused_alike_by_constructor_and_load(cls, key, value):
    p = nn.Parameter(np.ones(3))
    good = cls([p], lr=0.01)
    good.step([T(np.full(3, 0.5))])
    sd = good.state_dict()
    with pytest.raises(ag.ArgumentError, match=f"argument '{key}'") as from_ctor:
        cls([nn.Parameter(np.ones(3))], **{key: value})
    target = cls([p], lr=0.5)
    target.step([T(np.full(3, 0.25))])
    before = (target.hyperparameters(), target.step_count,
              {k: v.copy() for k, v in target.state[0].items()})
    bad = dict(sd, hyperparameters=dict(sd["hyperparameters"], **{key: value}))
    with pytest.raises(ag.ArgumentError, match=f"argument '{key}'") as from_load:
        target.load_state_dict(bad)
    # the same check: the same message but for the function's name
    assert str(from_ctor.value).split(": ", 1)[1] == str(from_load.value).split(": ", 1)[1]
    assert target.hyperparameters() == before[0] and target.step_count == before[1]
    for k, v in before[2].items():
        np.testing.assert_array_equal(target.state[0][k], v)


def test_nesterov_rule_checked_on_load():
    opt, sd = _sgd_and_sd()
    with pytest.raises(ag.ArgumentError, match="nesterov=True expected momentum > 0"):
        opt.load_state_dict(dict(sd, hyperparameters=dict(sd["hyperparameters"], nesterov=True,
                                                          dampening=0.5)))


def test_betas_from_a_json_round_trip_accepted():
    p = nn.Parameter(np.ones(3))
    opt = optim.Adam([p])
    opt.step([T(np.ones(3))])
    sd = opt.state_dict()
    sd["hyperparameters"]["betas"] = [0.8, 0.99]  # JSON has no tuples
    opt.load_state_dict(sd)
    assert opt.betas == (0.8, 0.99)


@pytest.mark.parametrize("field, value", [("step_count", -1), ("step_count", "7"),
                                          ("step_count", True), ("skipped_steps", 1.5)])
def test_bad_step_counts_refused(field, value):
    opt, sd = _sgd_and_sd()
    with pytest.raises(ag.ArgumentError, match=field):
        opt.load_state_dict(dict(sd, **{field: value}))
    assert opt.step_count == 1


@pytest.mark.parametrize("value, err, match", [
    (np.zeros(3, dtype=np.complex128), ag.DTypeError, "floating dtype, got complex128"),
    (np.zeros(3, dtype=np.int64), ag.DTypeError, "floating dtype, got int64"),
    (np.zeros(4), ag.ShapeError, r"expected shape \(3,\), got \(4,\)"),
    (T(np.zeros(4)), ag.ShapeError, r"expected shape \(3,\), got \(4,\)"),
    ("zeros", ag.ArgumentError, "expected an array"),
    ([[0.0], [0.0, 1.0]], ag.ArgumentError, "ragged"),
])
def test_bad_state_arrays_refused_before_conversion(value, err, match):
    opt, sd = _sgd_and_sd()
    buf = opt.state[0]["momentum_buffer"].copy()
    with pytest.raises(err, match=match):
        opt.load_state_dict(dict(sd, state=[{"momentum_buffer": value}]))
    np.testing.assert_array_equal(opt.state[0]["momentum_buffer"], buf)


def test_state_given_as_tensor_or_list_loads():
    opt, sd = _sgd_and_sd()
    want = sd["state"][0]["momentum_buffer"]
    for value in (T(want), want.tolist()):
        opt.load_state_dict(dict(sd, state=[{"momentum_buffer": value}]))
        np.testing.assert_array_equal(opt.state[0]["momentum_buffer"], want)


def test_state_entries_not_dicts_refused():
    opt, sd = _sgd_and_sd()
    with pytest.raises(ag.ArgumentError, match=r"state\[0\] expected a dict"):
        opt.load_state_dict(dict(sd, state=[np.zeros(3)]))
    with pytest.raises(ag.ArgumentError, match="hyperparameters' expected a dict"):
        opt.load_state_dict(dict(sd, hyperparameters=[("lr", 0.1)]))


# ---- CheckpointConfig ----------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), -1.0, 0])
def test_checkpoint_budget_must_be_finite_and_positive(budget):
    with pytest.raises(ag.ArgumentError, match="memory_budget_mb.*finite number > 0"):
        ag.CheckpointConfig(strategy="auto", memory_budget_mb=budget)


def test_checkpoint_min_compute_cost_nan_refused():
    with pytest.raises(ag.ArgumentError, match="min_compute_cost"):
        ag.CheckpointConfig(min_compute_cost=float("nan"))


# ---- custom_op and custom_gradient rules -------------------------------------------------------


def test_custom_op_vjp_of_the_wrong_shape_raises_shape_error():
    sq = ag.custom_op(lambda xp, x: x * x,
                      lambda g, ins, out: (g * 2 * ins[0] * T(np.ones((2, 3))),), name="sq")
    x = T(np.array([1.0, 2.0, 3.0]))
    # before: summed over the extra axis, [4, 8, 12] (twice the gradient), with no error
    with pytest.raises(ag.ShapeError, match=r"sq: .*shape \(2, 3\) for input 0 \(shape \(3,\)\)"):
        ag.grad(lambda v: sq(v).sum())(x)
    small = ag.custom_op(lambda xp, x: x * x, lambda g, ins, out: ((g * ins[0]).sum(),),
                         name="small")
    with pytest.raises(ag.ShapeError, match=r"small: .*shape \(\) for input 0"):
        ag.grad(lambda v: small(v).sum())(x)
    # forward mode through the transposed vjp refuses it too
    with pytest.raises(ag.ShapeError, match="sq: "):
        ag.jvp(lambda v: sq(v), (x,), (T(np.ones(3)),))


def test_custom_op_cotangent_of_the_output_shape_for_a_broadcast_input_is_summed():
    """The documented case: input y broadcasts against x, the rule returns the output's shape
    and the engine sums over the broadcast axes."""
    mul = ag.custom_op(lambda xp, x, y: x * y, lambda g, ins, out: (g * ins[1], g * ins[0]),
                       name="mymul")
    gx, gy = ag.grad(lambda a, b: mul(a, b).sum(), argnums=(0, 1))(T(np.array([1.0, 2, 3])),
                                                                    T(np.array(2.0)))
    np.testing.assert_allclose(gx.numpy(), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(gy.numpy(), 6.0)


def test_custom_op_batched_vjp_shapes_checked():
    def vjp(g, ins, out):  # drops the batch axis: wrong for batched=True
        return (g.sum(axis=0) * 2.0,) if g.ndim > out.ndim else (g * 2.0,)

    dbl = ag.custom_op(lambda xp, x: 2.0 * x, vjp, name="dbl", batched=True)
    with pytest.raises(ag.ShapeError, match=r"dbl: .*expected shape \(3, 3\)"):
        ag.jacobian(lambda v: dbl(v), T(np.ones(3)), mode="reverse")
    ok = ag.custom_op(lambda xp, x: 2.0 * x, lambda g, ins, out: (g * 2.0,), name="ok",
                      batched=True)
    np.testing.assert_allclose(ag.jacobian(ok, T(np.ones(3)), mode="reverse").numpy(),
                               2 * np.eye(3))


def test_custom_gradient_wrong_shape_is_a_shape_error_not_value_error():
    @ag.custom_gradient
    def total(x):
        return x.sum(), lambda g: g * T(np.ones(2))  # (2,) for a (3,) input

    with pytest.raises(ag.ShapeError, match=r"total: .*shape \(2,\) for input 0 \(shape \(3,\)\)"):
        ag.grad(total)(T(np.ones(3)))

    @ag.custom_gradient
    def scaled(x):
        return x * 2.0, lambda g: 2.0  # a number, not a sequence of gradients

    with pytest.raises(ag.ShapeError, match=r"scaled: .*shape \(\) for input 0"):
        ag.grad(lambda v: scaled(v).sum())(T(np.ones(3)))

    @ag.custom_gradient
    def as_array(x):
        return x * 2.0, lambda g: np.full(3, 2.0)  # one array for one input: accepted

    np.testing.assert_allclose(ag.grad(lambda v: as_array(v).sum())(T(np.ones(3))).numpy(),
                               [2.0, 2.0, 2.0])


# ---- a retried interrupted tape ------------------------------------------------------------------


@pytest.mark.parametrize("pure", [False, True], ids=["native", "python"])
def test_retrying_an_interrupted_tape_names_its_own_earlier_sweep(pure, monkeypatch):
    calls = []

    def vjp(g, ins, out):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt("stop")
        return (g * 2.0,)

    flaky = ag.custom_op(lambda xp, a: a * 2.0, vjp, name="flaky")
    phases = []
    x = T(np.array([1.0, 2.0]))
    if pure:
        from autograd_gpu.ops.context import pop_hook, push_hook

        def passthrough(phase, op, args, params, call):  # any hook selects the Python sweep
            phases.append(phase)
            return call(args, params)

        push_hook(passthrough)
    try:
        with ag.GradientTape() as tape:
            tape.watch(x)
            y = flaky(x.exp()).sin().sum()
        with pytest.raises(KeyboardInterrupt):
            tape.gradient(y, [x])
        with pytest.raises(ag.TapeError) as info:
            tape.gradient(y, [x])
    finally:
        if pure:
            pop_hook(passthrough)
    assert ("vjp" in phases) == pure
    msg = str(info.value)
    assert "earlier gradient() call on this non-persistent tape" in msg
    assert "stopped part-way" in msg and "another tape" not in msg


# ---- empty inputs: PyTorch's answers -------------------------------------------------------------

try:
    import torch
except ImportError:  # the reference of the tests marked needs_torch below; CI installs it
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the reference) is not installed")

EMPTY_CASES = [((0,), -1), ((0, 3), -1), ((0, 3), 0), ((3, 0), -1), ((3, 0), 0),
               ((2, 0, 3), 1), ((2, 0, 3), -1)]


def _both(shape, dtype=np.float64):
    a = np.zeros(shape, dtype=dtype)
    return T(a), torch.from_numpy(a.copy()).requires_grad_(True)


@needs_torch
@pytest.mark.parametrize("shape, axis", EMPTY_CASES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp", "std0", "std1"])
def test_empty_inputs_match_pytorch(name, shape, axis):
    ours = {
        "softmax": lambda v: ag.softmax(v, axis),
        "log_softmax": lambda v: ag.log_softmax(v, axis),
        "logsumexp": lambda v: ag.logsumexp(v, axis),
        "std0": lambda v: ag.std(v, axis),
        "std1": lambda v: ag.std(v, axis, ddof=1),
    }[name]
    theirs = {
        "softmax": lambda v: torch.softmax(v, axis),
        "log_softmax": lambda v: torch.log_softmax(v, axis),
        "logsumexp": lambda v: torch.logsumexp(v, axis),
        "std0": lambda v: torch.std(v, axis, correction=0),
        "std1": lambda v: torch.std(v, axis, correction=1),
    }[name]
    x, xt = _both(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch warns that std has no degrees of freedom
        want = theirs(xt)
    got = ours(x)
    assert got.shape == tuple(want.shape) and got.dtype == np.float64
    np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
    # gradients: an empty array of x's shape, as PyTorch's
    g = ag.grad(lambda v: ours(v).sum())(x)
    (gt,) = torch.autograd.grad(want.sum(), xt, allow_unused=True)
    assert g is not None and g.shape == shape == tuple(gt.shape)


@needs_torch
def test_empty_inputs_keepdims_none_axis_and_float32():
    x, xt = _both((0, 3), np.float32)
    got = ag.logsumexp(x, keepdims=True)
    assert got.shape == (1, 1) and got.dtype == np.float32 and got.numpy()[0, 0] == -np.inf
    assert float(ag.logsumexp(x).numpy()) == float(torch.logsumexp(xt.detach(), (0, 1)))
    assert np.isnan(ag.std(x).numpy()) and ag.std(x).dtype == np.float32
    assert ag.std(x, axis=1, keepdims=True).shape == (0, 1)
    with pytest.raises(ag.DTypeError, match="std"):  # the other checks still apply
        ag.std(T(np.zeros((0, 3), dtype=np.int64)))
    with pytest.raises(ag.ArgumentError, match="ddof"):
        ag.std(x, ddof=-1)

