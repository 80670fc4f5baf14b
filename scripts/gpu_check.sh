#!/usr/bin/env bash
# The one-command GPU check of pixcon, for a machine with an NVIDIA GPU, nvcc and torch and no
# network: it builds and installs pixcon for the GPU's own architecture (into a temporary
# directory: nothing of the system changes), runs the CUDA tests, builds the kernels' agreement
# test with nvcc and runs it plainly and under compute-sanitizer (memcheck, racecheck), then the
# GPU benchmark grid; every step is timed under a limit, so the whole run keeps to its budget
# (8 minutes by default), and a failed step does not stop the ones after it.
#
#   scripts/gpu_check.sh OUTDIR [--no-gpu] [--budget-s SECONDS]
#
# OUTDIR receives gpu_check.json and gpu_check.md (the report), gpu_check_logs.tar.gz (every
# step's output) and, when the benchmark ran, loss_suite_cuda_grid.{json,md} and its two plots.
# Without a GPU (no nvidia-smi, or torch.cuda.is_available() False, or --no-gpu) it runs the
# checks that need none (shell syntax, the Python helpers, nvcc compiling ops/cuda for sm_90)
# and writes a report that says so. Wheels in .whl/ (pytorch-metric-learning for the SupConLoss
# baseline; scikit-build-core >= 1.1 where the machine has an older one) are installed first
# when the checkout has them.
# Environment: PIXCON_PYTHON (default python3), PIXCON_GPU_CHECK_BUDGET_S (default 480),
# PIXCON_GPU_CHECK_KEEP=1 keeps the work directory (builds, logs).
# Exit status: 1 when a step failed, 0 otherwise (so also 0 without a GPU when the checks that
# need none pass), 2 for bad usage.
# shellcheck disable=SC2317  # the step functions are called through run_step's child bash
set -uo pipefail

usage() {
  echo "usage: scripts/gpu_check.sh OUTDIR [--no-gpu] [--budget-s SECONDS]"
}

OUTDIR=""
FORCE_NO_GPU=""
BUDGET=${PIXCON_GPU_CHECK_BUDGET_S:-480}
while [ $# -gt 0 ]; do
  case $1 in
    --no-gpu) FORCE_NO_GPU="forced by --no-gpu" ;;
    --budget-s) [ $# -ge 2 ] || { usage >&2; exit 2; }; BUDGET=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) [ -z "$OUTDIR" ] || { usage >&2; exit 2; }; OUTDIR=$1 ;;
  esac
  shift
done
[ -n "$OUTDIR" ] || { usage >&2; exit 2; }
case $BUDGET in ''|*[!0-9]*) echo "--budget-s: whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PIXCON_PYTHON:-python3}
HELPER=$ROOT/scripts/gpu_check_report.py
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd) || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pixcon-gpu-check.XXXXXX") || exit 2
if [ "${PIXCON_GPU_CHECK_KEEP:-0}" = 1 ]; then
  echo "work directory kept: $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi
LOGS=$WORK/logs
STEPS=$WORK/steps.tsv
mkdir -p "$LOGS" && : > "$STEPS"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
REPORT_RESERVE=15  # seconds kept for the report at the end
STEP_NO=0
# nvcc, compute-sanitizer and the Python environment's cmake are often off PATH
PY_BIN=$(dirname "$(command -v "$PY" || echo .)")
for dir in ${CUDA_HOME:+"$CUDA_HOME/bin"} /usr/local/cuda/bin "$PY_BIN"; do
  [ -d "$dir" ] && PATH=$PATH:$dir
done
export PATH ROOT PY HELPER WORK FORCE_NO_GPU
export PIXCON_GPU_CHECK_SCRIPT=$ROOT/scripts/gpu_check.sh

say() { printf '[gpu_check %4ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }

# run_step INDEX NAME CAP RESERVE DESCRIPTION FUNCTION [ARGS...]: runs FUNCTION in a child bash
# under `timeout`, its output in the step's log, and records the step. The limit is CAP seconds,
# cut so that RESERVE seconds of the budget stay for the steps after it; a step with under 5 s
# left is skipped. FUNCTION's exit status 77 means skipped, its reason on a 'skip: ...' line.
# Returns 0 (pass), 77 (skip) or 1 (fail).
run_step() {
  local index=$1 name=$2 cap=$3 reserve=$4 desc=$5
  shift 5
  local log t0 ms secs rc status limit
  log=$LOGS/$(printf '%02d' "$index")_$name.log
  limit=$((DEADLINE - $(date +%s) - REPORT_RESERVE - reserve))
  [ "$cap" -lt "$limit" ] && limit=$cap
  t0=$(date +%s%N)
  if [ "$limit" -lt 5 ]; then
    echo "skip: the check's ${BUDGET} s budget was spent before this step" > "$log"
    rc=77
  else
    say "[$index] $name (limit ${limit} s): $desc"
    STEP_LIMIT=$limit timeout -k 10 "$limit" bash -c '"$@"' _ "$@" > "$log" 2>&1
    rc=$?
  fi
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  secs=$((ms / 1000)).$(( (ms % 1000) / 100 ))
  case $rc in
    0) status=pass ;;
    77) status=skip ;;
    *) status=fail ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$index" "$name" "$status" "$secs" "$rc" \
    "$limit" "$log" "$desc" >> "$STEPS"
  say "[$index] $name: $status ($secs s)"
  case $status in
    pass) return 0 ;;
    skip) grep -i '^skip:' "$log" | tail -n 1 | sed 's/^/      /'; return 77 ;;
    *) tail -n 15 "$log" | sed 's/^/      | /'; return 1 ;;
  esac
}

step() {  # step NAME CAP RESERVE DESCRIPTION FUNCTION [ARGS...], numbered in order
  STEP_NO=$((STEP_NO + 1))
  run_step "$STEP_NO" "$@"
}

# ---- the steps: each runs in its own bash, so it sees only exported names ----

step_environment() {
  "$PY" "$HELPER" env "$WORK/env.json" ${FORCE_NO_GPU:+--no-gpu "$FORCE_NO_GPU"}
}

step_shell_syntax() {
  bash -n "$PIXCON_GPU_CHECK_SCRIPT" && echo "bash -n $PIXCON_GPU_CHECK_SCRIPT: no syntax error"
}

step_python_helpers() {
  "$PY" -c 'import sys; sys.path[:0] = sys.argv[1:]; import gpu_check_report, loss_suite
print("imported", gpu_check_report.__file__, "and", loss_suite.__file__)' \
    "$ROOT/scripts" "$ROOT/benchmarks" &&
    "$PY" "$ROOT/benchmarks/loss_suite.py" --gpu-grid --plan-only --gpu-memory-gb 80 \
      --gpu-name "H100 SXM"
}

step_nvcc_sm90() {
  command -v nvcc > /dev/null || { echo "skip: nvcc not found"; return 77; }
  nvcc --version | tail -n 1
  local src status=0
  for src in "$ROOT"/ops/cuda/*.cu; do
    echo "nvcc -std=c++17 -c -arch=sm_90 $src"
    nvcc -std=c++17 -c -arch=sm_90 -I"$ROOT/ops/include" "$src" \
      -o "$WORK/$(basename "$src" .cu)_sm90.o" || status=1
  done
  return "$status"
}

step_wheels() {
  if ! compgen -G "$ROOT/.whl/*.whl" > /dev/null; then
    echo "skip: no .whl/ in the checkout: pytorch-metric-learning is missing, so the SupConLoss" \
      "baseline is skipped"
    return 77
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/wheels" \
    "$ROOT"/.whl/*.whl && ls "$WORK/wheels"
}

step_build() {
  "$PY" -m pip install -v --no-build-isolation --no-deps --no-cache-dir --target "$WORK/site" \
    -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" -C cmake.define.PIXCON_CUDA=ON \
    -C build-dir="$WORK/build" "$ROOT" &&
    "$PY" -c 'import os, sys, pixcon, torch
site, where = os.path.realpath(sys.argv[1]), os.path.realpath(pixcon.__file__)
print("pixcon", pixcon.__version__, "imported from", where)
if not where.startswith(site + os.sep):
    sys.exit(f"not the build in {site}: another pixcon (an editable install?) shadows it")
z = torch.randn(8, 4, device="cuda"); y = torch.arange(8, device="cuda") % 2
print("one CUDA call:", pixcon.contrastive_loss(z, y)[0].sum().item())' "$WORK/site"
}

needs_pixcon() {
  [ "$BUILT" = 1 ] || { echo "skip: pixcon was not built (see the build step)"; return 77; }
}

step_selfcheck() {
  needs_pixcon || return
  "$PY" -m pixcon.selfcheck
}

step_cuda_tests() {
  needs_pixcon || return
  cd "$ROOT" && "$PY" -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider
}

step_agreement_build() {
  local generator=()
  command -v ninja > /dev/null && generator=(-G Ninja)
  cmake -S "$ROOT/scripts/gpu_agreement" -B "$WORK/agreement" "${generator[@]}" \
    -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" && cmake --build "$WORK/agreement" --parallel
}

needs_agreement() {
  [ -x "$WORK/agreement/test_cuda_gpu" ] ||
    { echo "skip: the agreement test was not built (see its build step)"; return 77; }
}

step_agreement() {
  needs_agreement || return
  "$WORK/agreement/test_cuda_gpu" --quick
}

step_sanitizer() {  # step_sanitizer memcheck|racecheck
  needs_agreement || return
  local sanitizer out rc
  sanitizer=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import gpu_check_report as r
print(r.find_compute_sanitizer() or "")' "$ROOT/scripts")
  [ -n "$sanitizer" ] || { echo "skip: compute-sanitizer not found"; return 77; }
  out=$("$sanitizer" --tool "$1" --error-exitcode 86 "$WORK/agreement/test_cuda_gpu" --few 2>&1)
  rc=$?
  printf '%s\n' "$out"
  # some virtualised GPUs refuse the sanitizer: that is no finding about the kernels
  if [ "$rc" -ne 0 ] && grep -qiE 'device (is )?not supported|unsupported device' <<< "$out" &&
    ! grep -qE 'ERROR SUMMARY: [1-9]|Invalid __|hazard' <<< "$out"; then
    echo "skip: compute-sanitizer refused the device"
    return 77
  fi
  return "$rc"
}

step_benchmark() {
  needs_pixcon || return
  # the grid stops itself within its budget; the rest of the step's limit covers the plots
  "$PY" "$ROOT/benchmarks/loss_suite.py" --gpu-grid --budget-s "$((STEP_LIMIT - 40))" \
    --out-dir "$WORK/bench"
}

export -f step_environment step_shell_syntax step_python_helpers step_nvcc_sm90 step_wheels \
  step_build needs_pixcon step_selfcheck step_cuda_tests step_agreement_build needs_agreement \
  step_agreement step_sanitizer step_benchmark

# ---- the run ----

say "pixcon GPU check of $ROOT into $OUTDIR, budget ${BUDGET} s"
step environment 120 60 "$PY scripts/gpu_check_report.py env (nvidia-smi, nvcc, torch)" \
  step_environment
GPU=$("$PY" "$HELPER" get "$WORK/env.json" gpu_available 2> /dev/null)
CUDA_ARCH=$("$PY" "$HELPER" get "$WORK/env.json" cuda_arch 2> /dev/null)
export CUDA_ARCH BUILT=0

if [ "$GPU" != True ] || [ -z "$CUDA_ARCH" ]; then
  say "NO GPU: $("$PY" "$HELPER" get "$WORK/env.json" no_gpu_reason 2> /dev/null ||
    echo "the environment probe failed") -- running the checks that need none"
  step shell_syntax 30 0 "bash -n scripts/gpu_check.sh" step_shell_syntax
  step python_helpers 120 0 \
    "import gpu_check_report, loss_suite; loss_suite.py --gpu-grid --plan-only --gpu-memory-gb 80" \
    step_python_helpers
  step nvcc_sm90 300 0 "nvcc -std=c++17 -c -arch=sm_90 ops/cuda/*.cu" step_nvcc_sm90
else
  step wheels 60 360 "pip install --no-index --target WORK/wheels .whl/*.whl" step_wheels
  export PYTHONPATH=$WORK/site:$WORK/wheels${PYTHONPATH:+:$PYTHONPATH}
  # the two builds share the CPUs: the agreement test's in the background
  STEP_NO=$((STEP_NO + 1))
  run_step "$STEP_NO" agreement_build 240 190 \
    "cmake -S scripts/gpu_agreement -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH && cmake --build" \
    step_agreement_build &
  agreement_pid=$!
  step build 240 180 "pip install --no-build-isolation --no-deps --target WORK/site \
-C cmake.define.CMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH ." step_build && BUILT=1
  wait "$agreement_pid"
  step selfcheck 60 170 "python -m pixcon.selfcheck" step_selfcheck
  step cuda_tests 180 150 "python -m pytest tests/test_cuda.py" step_cuda_tests
  step agreement 60 130 "test_cuda_gpu --quick" step_agreement
  step memcheck 90 100 "compute-sanitizer --tool memcheck test_cuda_gpu --few" \
    step_sanitizer memcheck
  step racecheck 90 90 "compute-sanitizer --tool racecheck test_cuda_gpu --few" \
    step_sanitizer racecheck
  step benchmark 300 0 "python benchmarks/loss_suite.py --gpu-grid --budget-s LIMIT-40" \
    step_benchmark
  for f in loss_suite_cuda_grid.json loss_suite_cuda_grid.md loss_suite_cuda_time.png \
    loss_suite_cuda_memory.png; do
    [ -f "$WORK/bench/$f" ] && cp "$WORK/bench/$f" "$OUTDIR/"
  done
fi

LOGGED=(logs steps.tsv)
[ -f "$WORK/env.json" ] && LOGGED+=(env.json)
tar -czf "$OUTDIR/gpu_check_logs.tar.gz" -C "$WORK" "${LOGGED[@]}"
BENCH_ARGS=()
GRID_JSON=$OUTDIR/loss_suite_cuda_grid.json
[ -f "$GRID_JSON" ] && BENCH_ARGS=(--bench "$GRID_JSON")
"$PY" "$HELPER" write --steps "$STEPS" --env "$WORK/env.json" --out-dir "$OUTDIR" \
  --started "$START" --budget-s "$BUDGET" --logs "$OUTDIR/gpu_check_logs.tar.gz" "${BENCH_ARGS[@]}"
status=$?
if [ ! -s "$OUTDIR/gpu_check.json" ] || [ ! -s "$OUTDIR/gpu_check.md" ]; then
  say "the report writer did not write $OUTDIR/gpu_check.json and gpu_check.md"
  exit 1
fi
[ "$GPU" = True ] || say "NO GPU: only the checks that need none ran (see $OUTDIR/gpu_check.md)"
say "done in $(( $(date +%s) - START )) s: $([ $status -eq 0 ] && echo PASS || echo FAIL)" \
  "-- $OUTDIR/gpu_check.md"
exit $status
