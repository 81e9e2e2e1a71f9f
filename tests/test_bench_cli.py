"""python -m autograd_gpu.bench: the interleaving, the ratio statistics, the checks of every
peer's numbers, and a quick end-to-end run writing JSON and a PNG."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu import bench as B


def test_ratio_stats_against_numpy():
    ours = [2.0, 3.0, 4.0, 10.0, 1.0]
    peer = [1.0, 1.0, 2.0, 4.0, 1.0]
    st = B.ratio_stats(ours, peer)
    r = np.array(ours) / np.array(peer)
    assert st["median"] == pytest.approx(np.median(r))
    assert st["p25"] == pytest.approx(np.percentile(r, 25))
    assert st["p75"] == pytest.approx(np.percentile(r, 75))
    assert (st["min"], st["max"], st["n"]) == (1.0, 3.0, 5)
    with pytest.raises(ag.ArgumentError, match="ratio_stats"):
        B.ratio_stats([1.0], [1.0, 2.0])


def test_interleave_alternates_and_keeps_the_best_call():
    log = []
    clock = [0.0]
    durations = {"a": iter([5.0, 3.0, 4.0, 2.0, 9.0, 1.0]), "b": iter([1.0] * 6)}

    def side(name):
        def fn():
            log.append(name)
            clock[0] += next(durations[name], 0.0)
        return fn

    times = B.interleave({"a": side("a"), "b": side("b")}, rounds=3, calls=2, warmup=0,
                         timer=lambda: clock[0])
    assert log == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    assert times == {"a": [3.0, 2.0, 1.0], "b": [1.0, 1.0, 1.0]}
    with pytest.raises(ag.ArgumentError, match="rounds"):
        B.interleave({"a": side("a")}, rounds=0)


def test_check_flags_a_wrong_peer():
    good = (lambda: None, lambda: np.array([1.0, 2.0, 3.0]))
    bad = (lambda: None, lambda: np.array([1.0, 2.0, 3.1]))
    short = (lambda: None, lambda: np.array([1.0, 2.0]))
    case = B.Case("t", "t", 1, "ms", 1e3, lambda: None, lambda: np.array([1.0, 2.0, 3.0]),
                  peers={"good": good, "bad": bad, "short": short}, rtol=1e-6)
    res = B.check(case)
    assert res["good"] == "ok"
    assert res["bad"].startswith("MISMATCH: 1 of 3 values differ")
    assert res["short"].startswith("MISMATCH: shape")


def test_every_case_agrees_with_the_hand_written_peer():
    env = B._Env(ag.Device("cpu"), ("numpy",), 1)
    cases = B.build_cases(env, B.CASES)
    assert [c.name for c in cases] == ["chain", "mlp", "jacobian 8x2000", "jacobian 2000x8"]
    for case in cases:
        assert B.check(case) == {"numpy": "ok"}, case.name


def _quick(tmp_path, *extra):
    return B.main(["--quick", "--rounds", "2", "--calls", "1", "--warmup", "0", "--quiet",
                   "--json", str(tmp_path / "b.json"), "--png", str(tmp_path / "b.png"),
                   *extra])


def test_quick_run_writes_table_json_and_png(tmp_path, capsys):
    report = _quick(tmp_path, "--cases", "jacobian", "--peers", "numpy")
    out = capsys.readouterr().out
    assert "jacobian 8x2000" in out and "numpy" in out and "process CPU time" in out
    assert "not comparable across runs" in out and report["mismatches"] == []
    data = json.loads((tmp_path / "b.json").read_text())
    m = data["machine"]
    assert m["versions"]["autograd_gpu"] == ag.__version__ and m["cpu_count"] >= 1
    assert m["settings"]["rounds"] == 2 and m["settings"]["timer"] == "cpu"
    row = data["results"][0]
    st = row["peers"]["numpy"]
    assert st["check"] == "ok" and st["n"] == 2 and len(st["ratios"]) == 2
    assert st["p25"] <= st["median"] <= st["p75"]
    import matplotlib.image

    img = matplotlib.image.imread(tmp_path / "b.png")
    assert img.shape[0] > 200 and img.shape[1] > 400


def test_cli_exits_2_on_a_mismatch(tmp_path, monkeypatch, capsys):
    right = B.jacobian_by_hand
    monkeypatch.setattr(B, "jacobian_by_hand", lambda xp, A, x: right(xp, A, x) * 1.001)
    monkeypatch.setattr(sys, "argv", ["bench", "--quick", "--rounds", "1", "--calls", "1",
                                      "--warmup", "0", "--quiet", "--cases", "jacobian",
                                      "--peers", "numpy", "--no-plot",
                                      "--json", str(tmp_path / "b.json")])
    with pytest.raises(SystemExit) as info:
        B.cli()
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert "MISMATCH" in captured.out and "jacobian 8x2000 vs numpy" in captured.err


@pytest.mark.parametrize("argv", [["--cases", "chain,nope"], ["--peers", "mxnet"],
                                  ["--rounds", "0"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        B.parse_args(argv)
    assert info.value.code == 2
