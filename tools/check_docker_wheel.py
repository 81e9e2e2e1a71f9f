"""CI's check of the Dockerfile's build stage without a Docker engine: build the wheel from the
files that stage copies, with the script it runs, and require both compiled extensions.

    python tools/check_docker_wheel.py [--keep DIR]

1. Reads the Dockerfile's ``build`` stage: its WORKDIR and every ``COPY`` from the build context
   (not ``--from``), and copies exactly those files into an empty folder laid out as the stage
   would see them, leaving out what .dockerignore leaves out (a compiled extension built in
   place in the checkout among them, which would otherwise mask a failed compile).
2. Makes a virtual environment with the build stage's pinned build requirements
   (docker/build-requirements.txt). Those are pinned for the image's CPython 3.12; where this
   interpreter cannot have a pinned version (NumPy drops old Pythons), the newest version it
   can have is used, and the output says so.
3. Runs docker/build_wheel.sh on that folder, as the stage does, which fails unless the wheel
   holds ``autograd_gpu/_native.*.so`` and ``autograd_gpu/_hostpool.*.so``.

A Dockerfile that stops copying setup.py, or a .dockerignore that drops a C file, fails here.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]


def build_stage(dockerfile: str) -> list[str]:
    """The instructions of the stage named ``build`` (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", dockerfile)
    stage: list[str] | None = None
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"FROM\s", line, re.I):
            stage = out if re.search(r"\sAS\s+build\s*$", line, re.I) else None
            continue
        if stage is not None:
            stage.append(line)
    if not out:
        raise SystemExit("check_docker_wheel: the Dockerfile has no stage named 'build'")
    return out


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore match, for the patterns this repository uses: a pattern is
    matched against the path from the context root; a leading ``**/`` matches at any depth; a
    match of a parent folder excludes everything under it."""
    parts = PurePosixPath(rel).parts
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for pat in patterns:
            if pat.startswith("**/"):
                if fnmatch.fnmatchcase(parts[i - 1], pat[3:]):
                    return True
            elif fnmatch.fnmatchcase(prefix, pat.rstrip("/")):
                return True
    return False


def dockerignore() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    return [ln.strip() for ln in path.read_text().splitlines()
            if ln.strip() and not ln.strip().startswith("#") and not ln.startswith("!")]


def stage_context(instructions: list[str], dest_root: Path) -> list[str]:
    """Copies what the stage's COPY instructions copy; returns the copied files (relative)."""
    patterns = dockerignore()
    workdir = PurePosixPath("/")
    copied: list[str] = []
    for ins in instructions:
        word, _, rest = ins.partition(" ")
        if word.upper() == "WORKDIR":
            workdir = workdir / rest.strip()
            continue
        if word.upper() != "COPY":
            continue
        args = [a for a in shlex.split(rest) if not a.startswith("--chown")]
        if any(a.startswith("--from") for a in args):
            continue
        *sources, target = args
        target_path = workdir / target
        for src in sources:
            matches = sorted(glob.glob(str(ROOT / src)))
            if not matches:
                raise SystemExit(f"check_docker_wheel: COPY source {src!r} does not exist")
            for m in matches:
                rel = os.path.relpath(m, ROOT)
                many = len(sources) > 1 or target.endswith("/")
                where = target_path / PurePosixPath(rel).name if many else target_path
                for f in _files(Path(m)):
                    frel = os.path.relpath(f, ROOT)
                    if ignored(frel, patterns):
                        continue
                    inner = os.path.relpath(f, m) if Path(m).is_dir() else ""
                    dst = PurePosixPath(where) / inner if inner else PurePosixPath(where)
                    out = dest_root / str(dst).lstrip("/")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, out)
                    copied.append(str(dst))
    return copied


def _files(path: Path):
    if path.is_dir():
        for dirpath, _, names in os.walk(path):
            for n in names:
                yield Path(dirpath) / n
    else:
        yield path


def build_env(where: Path) -> Path:
    """A virtual environment with docker/build-requirements.txt's pins (or, per package, the
    newest version this interpreter can install where the pin is out of its reach)."""
    venv.create(where, with_pip=True)
    py = where / "bin" / "python"
    reqs = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)",
                      (ROOT / "docker" / "build-requirements.txt").read_text(), flags=re.M)
    for name, version in reqs:
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{name}=={version}"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"check_docker_wheel: {name}=={version} (the image's pin, for CPython 3.12) "
                  f"does not install on Python {sys.version.split()[0]}; using the newest "
                  f"{name} this Python can have")
            subprocess.run([str(py), "-m", "pip", "install", "-q", name], check=True)
    return py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", help="build in this folder and keep it (default: a temporary one)")
    args = ap.parse_args()
    instructions = build_stage((ROOT / "Dockerfile").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        context = base / "fs"
        copied = stage_context(instructions, context)
        src = next((PurePosixPath(ln.split(None, 1)[1].strip()) for ln in instructions
                    if ln.upper().startswith("WORKDIR")), None)
        if src is None:
            raise SystemExit("check_docker_wheel: the build stage sets no WORKDIR")
        print(f"check_docker_wheel: the build stage copies {len(copied)} files into {src}")
        for needed in ("setup.py", "pyproject.toml", "autograd_gpu/_native.c",
                       "autograd_gpu/_hostpool.c", "docker/build_wheel.sh"):
            if not (context / str(src).lstrip("/") / needed).exists():
                raise SystemExit(f"check_docker_wheel: the build stage does not copy {needed}")
        py = build_env(base / "buildenv")
        r = subprocess.run(["sh", str(context / str(src).lstrip("/") / "docker" /
                                  "build_wheel.sh"), str(context / str(src).lstrip("/")),
                            str(base / "wheels")], env=dict(os.environ, PYTHON=str(py)))
        if r.returncode != 0:
            raise SystemExit("check_docker_wheel: the build stage's wheel build failed (see "
                             "above)")


if __name__ == "__main__":
    main()
