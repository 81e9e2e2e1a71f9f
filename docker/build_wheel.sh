#!/bin/sh
# Build autograd_gpu's wheel from a source tree, and refuse a wheel without its compiled parts.
#
#   docker/build_wheel.sh SOURCE_DIR WHEEL_DIR        (PYTHON=... picks the interpreter)
#
# setup.py marks both C extensions optional so that a user without a compiler can still install
# the package (pure-Python node, NumPy's allocator). An image build must not fall back silently:
# without gcc or Python's headers pip still succeeds, with a wheel that lacks the .so files.
# The Docker build stage and CI's Dockerfile check both run this script.
set -eu
src=${1:?usage: build_wheel.sh SOURCE_DIR WHEEL_DIR}
out=${2:?usage: build_wheel.sh SOURCE_DIR WHEEL_DIR}
python=${PYTHON:-python}
# no build isolation: the pinned build requirements (docker/build-requirements.txt) are already
# installed, so the build uses exactly those instead of whatever PyPI has that day
"$python" -m pip wheel --no-deps --no-build-isolation --wheel-dir "$out" "$src"
"$python" - "$out" <<'PY'
import glob
import sys
import zipfile

wheels = glob.glob(f"{sys.argv[1]}/autograd_gpu-*.whl")
if len(wheels) != 1:
    sys.exit(f"build_wheel.sh: expected one autograd_gpu wheel in {sys.argv[1]}, found {wheels}")
names = zipfile.ZipFile(wheels[0]).namelist()
found = {ext: [n for n in names if n.startswith(f"autograd_gpu/{ext}.") and n.endswith(".so")]
         for ext in ("_native", "_hostpool")}
missing = [ext for ext, hits in found.items() if not hits]
if missing:
    sys.exit(f"build_wheel.sh: {wheels[0]} lacks the compiled extension(s) {missing}: the C "
             "compiler or Python's headers were missing when it was built")
print(f"build_wheel.sh: {wheels[0]} has " + ", ".join(h[0] for h in found.values()))
PY
