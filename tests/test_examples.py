"""Smoke runs of the demo and of every example on small sizes, each asserting what it shows."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import autograd_gpu as ag

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("sklearn")


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: BLAS threads only cost time (a lot on a busy CI machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def load_example(name, *needed):
    missing = [n for n in needed if not hasattr(ag, n)]
    assert not missing, f"examples/{name}.py needs ag.{missing}, which do not exist"
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_demo_reaches_95_percent(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from autograd_gpu import demo

    out = tmp_path / "curve.png"
    result = demo.main(["--epochs", "15", "--quiet", "--device", "cpu", "--out", str(out)])
    assert result["test_accuracy"] >= 0.95  # (no timing asserts: the machine may be busy)
    assert result["train_loss"][-1] < result["train_loss"][0] / 10
    assert len(result["epoch_times"]) == 15
    text = capsys.readouterr().out
    assert "device: cpu" in text and "test accuracy" in text and "time per epoch" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[0] > 100 and img.shape[1] > 100


def test_demo_command_line(tmp_path):
    env = dict(os.environ, AUTOGRAD_GPU_DEVICE="cpu")
    proc = subprocess.run([sys.executable, "-m", "autograd_gpu.demo", "--epochs", "2",
                           "--no-plot", "--quiet"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    acc = float(proc.stdout.split("test accuracy: ")[1].split("%")[0])
    assert acc > 80.0 and "device: cpu" in proc.stdout
    assert not (tmp_path / "loss_curve.png").exists()


def _assert_png(path, min_size=200):
    """A PNG file that matplotlib reads back, of a plausible size."""
    import matplotlib.image

    path = Path(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    img = matplotlib.image.imread(path)
    assert img.shape[0] >= min_size and img.shape[1] >= min_size
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_demo_small_from_the_command_line(tmp_path):
    """``python -m autograd_gpu.demo --small`` (it was refused as an unknown flag): results on
    stdout, the progress bar on stderr, the PNG where --out says."""
    pytest.importorskip("matplotlib")
    env = dict(os.environ, AUTOGRAD_GPU_DEVICE="cpu")
    proc = subprocess.run([sys.executable, "-m", "autograd_gpu.demo", "--small", "--out",
                           str(tmp_path / "demo.png")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "10 epochs" in proc.stdout and "test accuracy" in proc.stdout
    assert "epoch/s" not in proc.stdout and "it/s" not in proc.stdout  # no bar on stdout
    assert "digits MLP on cpu" in proc.stderr and "10/10" in proc.stderr
    _assert_png(tmp_path / "demo.png")


def test_inverse_oscillator_recovers_parameters(tmp_path):
    pytest.importorskip("matplotlib")
    mod = load_example("inverse_oscillator", "stack")
    r = mod.main(["--small", "--out", str(tmp_path / "osc.png")])
    _assert_png(r["plot"])
    assert len(r["history"]["omega"]) == 60
    assert r["rk4_max_error"] < 1e-3  # the integrator itself
    assert abs(r["omega"] - 2.0) < 0.05 and abs(r["zeta"] - 0.15) < 0.02
    assert r["loss"] < 2 * 0.02**2 < r["initial_loss"]


def test_sensitivity_forward_jacobian(tmp_path):
    pytest.importorskip("matplotlib")
    mod = load_example("sensitivity_jacobian", "jacobian", "ForwardAccumulator", "stack")
    r = mod.main(["--small", "--out", str(tmp_path / "sir.png")])
    _assert_png(r["plot"])
    assert r["jacobian"].shape == (40, 3)
    assert r["max_fwd_rev_diff"] < 1e-10
    assert r["max_fd_rel_error"] < 1e-6
    assert r["jvp_error"] < 1e-12
    s = r["normalized_sensitivity_at_peak"]
    assert s["beta"] > 0.5 and s["gamma"] < -0.5  # more transmission up, faster recovery down


def test_custom_op_check(tmp_path):
    pytest.importorskip("matplotlib")
    mod = load_example("custom_op_check", "custom_op", "NumericalChecker", "jvp")
    r = mod.main(["--small", "--out", str(tmp_path / "custom.png")])
    _assert_png(r["plot"])
    x = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(mod.tape_derivative(mod.log_cosh, x), np.tanh(x), atol=1e-12)
    assert r["good"].is_valid and r["composite"].is_valid
    assert not r["bad"].is_valid and r["bad"].max_error > 0.1
    assert r["jvp_error"] < 1e-12 and r["stable_error"] < 1e-9


def test_digits_cnn(tmp_path):
    pytest.importorskip("matplotlib")
    mod = load_example("digits_cnn", "conv2d", "max_pool2d")
    r = mod.main(["--small", "--device", "cpu", "--save", str(tmp_path / "cnn.npz"),
                  "--out", str(tmp_path / "cm.png")])
    assert r["test_accuracy"] >= 0.9
    assert r["reloaded_accuracy"] == r["test_accuracy"]
    assert (tmp_path / "cnn.npz").exists()
    cm = r["confusion"]
    assert cm.shape == (10, 10) and cm.sum() == 360
    assert np.trace(cm) / cm.sum() == pytest.approx(r["test_accuracy"])
    _assert_png(r["plot"])


def test_digits_cnn_leaves_no_temporary_folder(tmp_path, monkeypatch):
    """Without --save the weights go to a temporary folder that is removed afterwards (every
    run left one behind)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mod = load_example("digits_cnn", "conv2d", "max_pool2d")
    r = mod.main(["--small", "--device", "cpu", "--no-plot"])
    assert r["plot"] is None and r["reloaded_accuracy"] == r["test_accuracy"]
    assert not Path(r["path"]).exists()
    assert list(tmp_path.iterdir()) == []



def test_checkpoint_deep_mlp(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    mod = load_example("checkpoint_deep_mlp", "CheckpointConfig")
    r = mod.main(["--small", "--rounds", "1", "--out", str(tmp_path / "ckpt.png")])
    rows = r["rows"]
    assert {"NONE", "SELECTIVE", "BLOCK n=6", "FULL"} <= set(rows)
    assert sum(name.startswith("AUTO") for name in rows) == 3
    assert all(row["bitwise_equal"] for row in rows.values())
    none = rows["NONE"]["act_mb"]
    assert none == pytest.approx(r["none_act_mb"]) and rows["NONE"]["saved_pct"] == 0.0
    assert rows["BLOCK n=6"]["act_mb"] < 0.8 * none and rows["BLOCK n=12"]["act_mb"] < 0.8 * none
    for name, row in rows.items():
        if name.startswith("AUTO"):  # the budget holds, measured
            frac = float(name.split()[1].rstrip("%")) / 100
            assert row["act_mb"] <= frac * none + 1e-9
            assert row["replays"] > 0
    assert rows["SELECTIVE"]["act_mb"] < 1.1 * none
    assert rows["FULL"]["replays"] > 0
    out = capsys.readouterr().out
    # the printout names its model and its measures
    assert "16-layer tanh MLP with bias, width 64, batch 256, float32" in out
    assert "peak(batch 2B) - peak(batch B)" in out and "interleaved rounds" in out
    _assert_png(r["plot"])


def test_amp_training(tmp_path):
    pytest.importorskip("matplotlib")
    mod = load_example("amp_training", "AmpConfig", "LossScaler")
    r = mod.main(["--small", "--device", "cpu", "--out", str(tmp_path / "amp.png")])
    _assert_png(r["plot"])
    assert len(r["amp"]["epoch_loss"]) == len(r["fp32"]["epoch_loss"]) == 8
    assert len(r["amp"]["scales"]) == r["amp"]["steps"] and r["fp32"]["scales"] == []
    assert r["amp"]["epoch_loss"][-1] < r["amp"]["epoch_loss"][0] / 5
    assert r["amp"]["weight_dtype"] == "float32"
    assert r["amp"]["accuracy"] >= r["fp32"]["accuracy"] - 0.02
    assert r["fp32"]["accuracy"] >= 0.9
    assert np.isfinite(r["scaler"].scale) and r["scaler"].scale >= 1.0


def test_dp_sgd_digits(tmp_path):
    """DP-SGD (per-example gradients by ag.vmap, clipped, noised) learns, below plain SGD; every
    example's clipped gradient is within the bound; the accountant's epsilon is finite."""
    pytest.importorskip("matplotlib")
    mod = load_example("dp_sgd_digits", "vmap")
    r = mod.main(["--small", "--device", "cpu", "--out", str(tmp_path / "dp.png")])
    _assert_png(r["plot"])
    dp, sgd = r["dp"], r["sgd"]
    assert len(dp["accuracies"]) == len(sgd["accuracies"]) == 6
    assert sgd["accuracy"] >= 0.93 and dp["accuracy"] >= 0.8
    assert dp["accuracy"] <= sgd["accuracy"] + 0.02  # the noise costs accuracy
    assert dp["max_clipped_norm"] <= 1.0 + 1e-6 and 0 < dp["clipped_fraction"][0] <= 1
    assert 0 < r["epsilon"] < 20
    # the accountant against a published figure: q = 256/60000, sigma 1.1, 60 epochs is about
    # epsilon 3 at delta 1e-5 (integer orders give a slightly looser bound than fractional)
    assert 2.9 < mod.epsilon(256 / 60000, 1.1, 60 * 60000 // 256) < 3.1


def _run_python_blocks(doc, tmp_path, monkeypatch):
    """Runs every ```python block of ``doc`` in order, in one namespace, from ``tmp_path``
    (paths under /tmp/ are moved there); a block naming an ``ag.`` attribute that does not
    exist fails. Returns (blocks, how many ran)."""
    import re

    text = (ROOT / doc).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    ran = 0
    for block in blocks:
        code = block.replace("/tmp/", f"{tmp_path}/")
        wanted = set(re.findall(r"\bag\.([A-Za-z_]\w*)", code))
        missing = sorted(n for n in wanted if not hasattr(ag, n))
        assert not missing, f"{doc}: a block uses ag.{missing[0]}, which does not exist"
        exec(compile(code, doc, "exec"), ns)
        ran += 1
    return blocks, ran


def test_guide_snippets_run(tmp_path, monkeypatch, capsys):
    """Every ```python block of docs/guide.md runs, in order, in one namespace."""
    blocks, ran = _run_python_blocks("docs/guide.md", tmp_path, monkeypatch)
    assert ran == len(blocks) >= 20
    out = capsys.readouterr().out
    assert "Gradient: [[2. 4.]" in out and "caught:" in out
    assert (tmp_path / "guide_trace.json").exists() and (tmp_path / "guide_model.npz").exists()


def test_readme_snippets_run(tmp_path, monkeypatch, capsys):
    """Every ```python block of README.md runs, in order, in one namespace (none skipped): the
    quick start, training with ag.data, measuring and profiling."""
    with ag.blas_threads(1):
        blocks, ran = _run_python_blocks("README.md", tmp_path, monkeypatch)
    assert ran == len(blocks) >= 3
    out = capsys.readouterr().out
    assert "train_step:" in out and "95% CI" in out
    assert (tmp_path / "digits.npz").exists() and (tmp_path / "trace.json").exists()


@pytest.mark.gpu
def test_demo_and_cnn_on_gpu(tmp_path, capsys):
    from autograd_gpu import demo

    r = demo.main(["--epochs", "15", "--quiet", "--device", "cuda", "--out",
                   str(tmp_path / "gpu.png")])
    assert r["device"] == "cuda:0" and r["test_accuracy"] >= 0.95
    mod = load_example("digits_cnn", "conv2d")
    r = mod.main(["--small", "--device", "cuda", "--save", str(tmp_path / "cnn.npz"),
                  "--out", str(tmp_path / "cm.png")])
    assert r["test_accuracy"] >= 0.9 and r["reloaded_accuracy"] == r["test_accuracy"]
    print(capsys.readouterr().out)
