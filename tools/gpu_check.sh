#!/usr/bin/env bash
# GPU verification in one go: the @pytest.mark.gpu tests, then bench/gpu_suite.py; everything
# lands under $OUT (default /tmp/autograd_gpu_check): gpu-YYYY-MM-DD.json (the report: commit,
# device, driver, versions, every test's outcome and count, every benchmark figure; it is the
# file to commit as bench/results/), gpu_tests.log, gpu_bench.json, gpu_bench.log, env.txt,
# setup.log. Each stage has its own time limit, so one hang does not lose the rest; the
# report is written even when a stage fails. Needs no install:
#   COMMIT=<sha> OUT=/some/dir tools/gpu_check.sh   (python3, or $PYTHON; PYTHONPATH=repo root)
# COMMIT names the commit measured (a copied working tree has no .git; without it the script
# asks git, else writes "unknown"). Packages the GPU machine lacks travel as wheels in .whl/
# (tools/gpu_wheels.sh fetches them: mpi4py and MPICH for the two-rank MPI part).
# tools/gpu_report_md.py turns the report into the tables of docs/benchmarks.md.
# Limits (seconds) can be overridden: TEST_TIMEOUT (default 240), BENCH_BUDGET (190); the whole
# run stays under about 8 minutes. PROFILE=1 adds bench/gpu_profile.py (gpu_profile.txt);
# BENCH_PARTS=chain,checkpoint runs only those parts of the suite, TEST_IDS="tests/a.py::b ..."
# only those tests (a second run after a fix: BENCH_BUDGET=0 skips the suite).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/autograd_gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1
TEST_TIMEOUT=${TEST_TIMEOUT:-240}
BENCH_BUDGET=${BENCH_BUDGET:-190}
T0=$(date +%s)
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
REPORT="$OUT/gpu-$(date -u +%F).json"

# Carried wheels (.whl/, see tools/gpu_wheels.sh): pure-Python packages go to /tmp/site; MPICH's
# wheel keeps mpiexec and libmpi in its data folder, which pip --target drops, so it is unpacked
# and mpi4py is pointed at its libmpi.
if ls .whl/*.whl >/dev/null 2>&1; then
  for w in .whl/*.whl; do
    case "$(basename "$w")" in
      mpich-*) rm -rf /tmp/mpich && mkdir -p /tmp/mpich && unzip -q -o "$w" 'mpich-*.data/data/*' \
                 -d /tmp/mpich && MPICH=$(echo /tmp/mpich/mpich-*.data/data) \
                 && export PATH="$MPICH/bin:$PATH" MPI4PY_LIBMPI="$MPICH/lib/libmpi.so.12" ;;
      *) "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
           --target /tmp/site "$w" >> "$OUT/setup.log" 2>&1 \
           && export PYTHONPATH="/tmp/site:$PYTHONPATH" ;;
    esac
  done
fi

# The compiled parts (autograd_gpu/_native.c, _hostpool.c; *.so files are git-ignored, so a
# copied working tree has none): built in place when a C compiler is there, else the pure-Python
# node and NumPy's allocator are used. env.txt says which.
timeout 120 "$PY" setup.py -q build_ext --inplace >> "$OUT/setup.log" 2>&1

{
  echo "date: $(date -u +%FT%TZ)"; echo "python: $($PY --version 2>&1)"; echo "commit: $COMMIT"
  echo "mpiexec: $(command -v mpiexec || echo none)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm \
    --format=csv 2>&1 | head -5
  timeout 60 "$PY" - <<'PYEOF' 2>&1
import importlib
for m in ("numpy", "ml_dtypes", "cupy", "torch", "scipy", "mpi4py", "hypothesis",
          "pytest"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:
        print(m, "MISSING", type(e).__name__, e)
from autograd_gpu.backend.cupy_backend import cupy_status
print("cupy_status", cupy_status())
from autograd_gpu.ops import graph
print("graph node:", "compiled" if graph.Node is not graph.PyNode else "pure Python")
from autograd_gpu.backend.host_pool import POOL
print("host pool:", POOL)
PYEOF
} > "$OUT/env.txt" 2>&1

# 1. GPU tests, in $SHARDS parallel pytest processes on the one GPU (NVRTC/JIT compiles on a bare
# machine dominate, and they are CPU-bound). Each shard logs verbosely as it goes, so a killed
# shard still leaves its results; the logs are joined into gpu_tests.log.
SHARDS=${SHARDS:-6}
PT_EXTRA=()
if "$PY" -c "import pytest_timeout" 2>/dev/null; then PT_EXTRA=(--timeout=120); fi
if [ -n "${TEST_IDS:-}" ]; then  # a rerun of chosen tests (ids as pytest prints them)
  printf '%s\n' $TEST_IDS > "$OUT/.ids"
else
  timeout 60 "$PY" -m pytest -m gpu tests --collect-only -q -p no:cacheprovider -o addopts="" \
    2>/dev/null | grep '::' > "$OUT/.ids" || true
fi
pids=()
for ((i = 0; i < SHARDS; i++)); do
  awk -v n="$SHARDS" -v i="$i" 'NR % n == i' "$OUT/.ids" > "$OUT/.ids$i"
  [ -s "$OUT/.ids$i" ] || continue
  timeout -k 10 "$TEST_TIMEOUT" "$PY" -m pytest -v -p no:cacheprovider -o addopts="" -rfE \
    --tb=short "${PT_EXTRA[@]}" $(cat "$OUT/.ids$i") > "$OUT/.log$i" 2>&1 &
  pids+=($!)
done
TEST_RC=0
for p in "${pids[@]}"; do wait "$p" || TEST_RC=$?; done
[ -s "$OUT/.ids" ] || TEST_RC=99   # collection failed
cat "$OUT"/.log* > "$OUT/gpu_tests.log" 2>/dev/null
rm -f "$OUT"/.ids* "$OUT"/.log*
T1=$(date +%s)

# 2. benchmark suite (each part in its own child with its own limit; JSON written per part)
timeout -k 10 $((BENCH_BUDGET + 30)) "$PY" bench/gpu_suite.py --out "$OUT/gpu_bench.json" \
  --budget "$BENCH_BUDGET" ${BENCH_PARTS:+--parts "$BENCH_PARTS"} > "$OUT/gpu_bench.log" 2>&1
BENCH_RC=$?
T2=$(date +%s)

# 3. optional (PROFILE=1): kernel-level tables of the MLP step against PyTorch (gpu_profile.txt)
if [ "${PROFILE:-0}" = 1 ]; then
  timeout -k 10 "${PROFILE_TIMEOUT:-150}" "$PY" bench/gpu_profile.py --out "$OUT" \
    > "$OUT/gpu_profile.log" 2>&1 || echo "profile: rc=$?"
  { echo; echo "===== log"; cat "$OUT/gpu_profile.log"; } >> "$OUT/gpu_profile.txt"
  rm -f "$OUT/gpu_profile.log"
fi

# 4. the report
timeout 60 "$PY" - "$OUT" "$REPORT" "$COMMIT" "$TEST_RC" "$BENCH_RC" $((T1 - T0)) $((T2 - T1)) \
  <<'PYEOF'
import json, os, re, sys
out, report_path, commit = sys.argv[1:4]
test_rc, bench_rc, t_tests, t_bench = map(int, sys.argv[4:])
def read(name):
    try:
        with open(os.path.join(out, name), errors="replace") as f:
            return f.read()
    except OSError:
        return ""
log = read("gpu_tests.log")
results = {}
for m in re.finditer(r"^(tests/\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", log, re.M):
    results[m.group(1)] = m.group(2)
counts = {}
for v in results.values():
    counts[v] = counts.get(v, 0) + 1
failed = sorted(k for k, v in results.items() if v in ("FAILED", "ERROR"))
# short failure reasons from the -rfE summary
reasons = {}
for m in re.finditer(r"^(FAILED|ERROR) (tests/\S+)(?: - (.*))?$", log, re.M):
    reasons[m.group(2)] = (m.group(3) or "")[:400]
tails = [m.group(0).strip() for m in re.finditer(
    r"^=+ .*\d+ (passed|failed|skipped|errors?|deselected).* =+\s*$", log, re.M)]
try:
    bench = json.loads(read("gpu_bench.json") or "{}")
except Exception as e:
    bench = {"read_error": str(e)}
env = read("env.txt")
smi = re.search(r"^name, driver_version.*\n(.+)$", env, re.M)
gpu = [f.strip() for f in smi.group(1).split(",")] if smi else []
versions = dict(re.findall(r"^(numpy|ml_dtypes|cupy|torch|scipy|mpi4py|hypothesis|pytest) (\S+)",
                           env, re.M))
report = {
    "commit": commit,
    "date": (re.search(r"^date: (\S+)", env, re.M) or [None, None])[1],
    "device": {"name": gpu[0] if gpu else None, "driver": gpu[1] if len(gpu) > 1 else None,
               "memory_total": gpu[2] if len(gpu) > 2 else None},
    "versions": versions,
    "tests": {"returncode": test_rc, "timed_out": test_rc in (124, 137), "seconds": t_tests,
              "counts": counts, "failed": failed[:200],
              "failure_reasons": {k: reasons.get(k, "") for k in failed[:200]},
              "shard_summaries": tails},
    "bench": {"returncode": bench_rc, "seconds": t_bench, "results": bench},
    "env": read("env.txt")[-4000:],
}
with open(report_path, "w") as f:
    json.dump(report, f, indent=1, default=str)
print(json.dumps({"commit": commit, "device": report["device"], "tests": {k: report["tests"][k] for k in
                            ("returncode", "seconds", "counts", "shard_summaries")},
                  "bench_rc": bench_rc}, default=str))
PYEOF
echo "--- tests: rc=$TEST_RC in $((T1 - T0)) s; bench: rc=$BENCH_RC in $((T2 - T1)) s"
grep -E "^(FAILED|ERROR) " "$OUT/gpu_tests.log" | head -40
tail -8 "$OUT/gpu_bench.log"
echo "report: $REPORT"
