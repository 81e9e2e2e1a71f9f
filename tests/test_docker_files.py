"""What can be checked of the Docker image without a Docker engine (CI also builds the wheel
the way the image's build stage does: tools/check_docker_wheel.py, and lints the Dockerfile)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / "Dockerfile").exists():
    pytest.skip("no Dockerfile next to these tests (an installed copy)", allow_module_level=True)


def _tool():
    spec = importlib.util.spec_from_file_location("check_docker_wheel",
                                                  ROOT / "tools" / "check_docker_wheel.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stages(text):
    return re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, flags=re.M | re.I)


def test_build_stage_copies_the_sources_after_the_dependencies(tmp_path):
    tool = _tool()
    ins = tool.build_stage((ROOT / "Dockerfile").read_text())
    copies = [i for i in ins if i.upper().startswith("COPY")]
    deps = next(k for k, c in enumerate(copies) if "requirements.txt" in c)
    src = next(k for k, c in enumerate(copies) if "autograd_gpu" in c.split()[1:-1])
    assert deps < src  # editing the sources does not reinstall CuPy
    files = tool.stage_context(ins, tmp_path)
    for needed in ("/src/setup.py", "/src/pyproject.toml", "/src/README.md",
                   "/src/autograd_gpu/_native.c", "/src/autograd_gpu/_hostpool.c",
                   "/src/autograd_gpu/kernels/small.cu", "/src/docker/build_wheel.sh"):
        assert needed in files
    assert not [f for f in files if f.endswith(".so") or "__pycache__" in f]


def test_dockerignore_semantics():
    tool = _tool()
    pats = ["**/*.so", ".git", "*.egg-info", "build"]
    assert tool.ignored("autograd_gpu/_native.cpython-311-x86_64-linux-gnu.so", pats)
    assert tool.ignored(".git/config", pats) and tool.ignored("build/lib/x.py", pats)
    assert tool.ignored("autograd_gpu.egg-info/PKG-INFO", pats)
    assert not tool.ignored("autograd_gpu/_native.c", pats)
    assert not tool.ignored("autograd_gpu/build.py", pats)  # "build" is the root folder only


def test_stages_user_base_and_one_cuda():
    text = (ROOT / "Dockerfile").read_text()
    stages = {name.lower(): base for base, name in _stages(text) if name}
    assert {"build", "test", "runtime"} <= set(stages)
    assert _stages(text)[-1][1].lower() == "runtime"  # the default target
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, flags=re.M).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base)  # a full version, not a moving tag
    assert "nvidia/cuda" not in text  # CUDA comes from CuPy's pip libraries only
    for stage in ("test", "runtime"):
        body = text.split(f" AS {stage}", 1)[1].split("\nFROM ", 1)[0]
        user = re.findall(r"^USER\s+(\S+)", body, flags=re.M)
        assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "gcc" not in text.split(" AS runtime", 1)[1]
    # every pip install reads a pinned list (or the wheel just built)
    for line in re.findall(r"pip install[^\n\\&]*", text):
        assert " -r " in line or "/wheels/" in line, line
    assert "--out /out/loss_curve.png" in text.replace('", "', " ")


def test_pinned_requirements_match_pyproject():
    tomllib = pytest.importorskip("tomllib")

    lock = (ROOT / "docker" / "requirements.txt").read_text()
    entries = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n\s+--hash=sha256:[0-9a-f]{64}$", lock,
                         flags=re.M)
    names = {n.lower().replace("_", "-") for n, _ in entries}
    body = [ln for ln in lock.splitlines() if ln and not ln.startswith("#")]
    assert len(body) == 2 * len(entries)  # nothing unpinned or unhashed
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = py["project"]["optional-dependencies"]
    for req in py["project"]["dependencies"] + extras["cuda12"] + extras["examples"]:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower().replace("_", "-")
        assert name in names, f"{name} from pyproject.toml is not in docker/requirements.txt"
    cuda = {m for n in names for m in re.findall(r"-cu(\d+)$", n)}
    assert cuda == {"12"}  # one CUDA
    for extra in ("build-requirements.txt", "requirements-test.txt"):
        text = (ROOT / "docker" / extra).read_text()
        assert re.findall(r"==\S+ \\\n\s+--hash=sha256:", text)
