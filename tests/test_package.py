"""Package hygiene: one version string, the license and the typing marker ship."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import autograd_gpu as ag

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(ag.__file__).resolve().parent  # the installed copy (CI and the image: a wheel)


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text()


def test_version_comes_from_the_metadata():
    assert ag.__version__ == importlib.metadata.version("autograd_gpu")


def test_version_has_one_source():
    """pyproject.toml holds the version; no module repeats it (a copy drifts)."""
    m = re.search(r'^version = "([^"]+)"', _pyproject(), flags=re.M)
    assert m, "pyproject.toml has no static version"
    quoted = re.compile(r"""__version__\s*=\s*["']""")
    for path in PACKAGE.rglob("*.py"):
        assert not quoted.search(path.read_text()), f"{path} hard-codes __version__"


def test_version_without_metadata_says_unknown(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert ag._read_version() == "0+unknown"


def test_license_and_typing_marker_ship():
    text = _pyproject()
    assert 'license = "MIT"' in text and "LICENSE" in text
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (PACKAGE / "py.typed").exists()  # shipped with the installed package
    package_data = text.split("[tool.setuptools.package-data]")[1].split("\n\n")[0]
    assert '"py.typed"' in package_data


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is 3.11+")
def test_pyproject_parses():
    import tomllib

    data = tomllib.loads(_pyproject())
    assert data["project"]["license"] == "MIT"


def test_cpu_run_reports_gpu_tests_in_one_line(tmp_path):
    """Without a GPU the gpu-marked tests are set aside with one summary line, not one SKIPPED
    line each (a CPU run printed 35 of them)."""
    import subprocess

    from autograd_gpu.backend.cupy_backend import cupy_status

    if cupy_status()[0]:
        pytest.skip("a GPU is usable here: the GPU tests run")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "tests" / "test_gpu_kernels.py"),
                        str(ROOT / "tests" / "test_package.py") + "::test_pyproject_parses"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    summary = [ln for ln in lines if "GPU tests not run (deselected): no usable GPU" in ln]
    assert len(summary) == 1 and int(summary[0].split()[0]) > 0
    assert not [ln for ln in lines if ln.startswith("SKIPPED") and "GPU" in ln]


def test_bench_extra_pulls_no_cuda_build():
    """``pip install ".[bench]"`` must not bring PyPI's CUDA torch (and its nvidia-* wheels)
    onto a CPU machine: torch is installed separately, as the README says."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads(_pyproject())["project"]["optional-dependencies"]
    names = [re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in extras["bench"]]
    assert "torch" not in names and not any(n.startswith("nvidia") for n in names)
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in readme
