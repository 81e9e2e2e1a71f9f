#!/usr/bin/env bash
# Fetch, on a machine that reaches PyPI, the wheels tools/gpu_check.sh installs on the GPU
# machine (which reaches no registry): mpi4py and MPICH, for bench/gpu_suite.py's two-rank MPI
# part. They land in .whl/ (git-ignored through .git/info/exclude); name .whl in the device
# tool's carry. The GPU image runs Python 3.12 (read there on 2026-11-17).
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PYVER=${PYVER:-3.12}
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  "mpi4py==4.1.2" "mpich==5.0.2"
ls -la .whl
