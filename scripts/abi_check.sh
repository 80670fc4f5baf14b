#!/usr/bin/env bash
# One build for every torch >= 2.10: builds the wheel once (`pip wheel .` against the torch of the
# project's .venv, made by scripts/setup.sh), then installs it into fresh virtual environments with
# torch 2.10.0 and with the newest torch on PyPI, and in each runs the self-check and the CPU test
# subset, and reports whether pixcon's CUDA kernels load there (they serve only a torch of the CUDA
# major version they were built for; elsewhere the CPU ops work and CUDA calls say why).
# Minutes, and a few GB of downloads (each torch with its CUDA libraries); not part of CI.
#
#   bash scripts/abi_check.sh [WORKDIR] [TORCH_SPEC ...]     (default specs: "torch==2.10.0" "torch")
#
# Exit status: 0 when every environment passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${1:-build/abi-check}
shift || true
SPECS=("$@")
[ ${#SPECS[@]} -gt 0 ] || SPECS=("torch==2.10.0" "torch")
PYTHON=${PYTHON:-python3}
# the tests of the CPU ops that need nothing beyond torch, numpy, scipy and pytorch-metric-learning
CPU_TESTS=(tests/test_contrastive_loss.py tests/test_autograd.py tests/test_edge_cases.py
  tests/test_errors.py tests/test_dtypes.py tests/test_reference.py tests/test_nn.py
  tests/test_sampling.py tests/test_threads.py tests/test_build.py tests/test_cuda_loading.py)

mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)
[ -x .venv/bin/python ] || bash scripts/setup.sh
echo "== building the wheel against $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
rm -rf "$WORK/dist"
.venv/bin/python -m pip wheel --quiet --no-build-isolation --no-deps -w "$WORK/dist" . || exit 1
WHEEL=$(ls "$WORK"/dist/pixcon-*.whl)
echo "wheel: $(basename "$WHEEL")"
unzip -p "$WHEEL" '*/METADATA' | grep -E '^(Version|Requires-Dist): ' | grep -v 'extra ==' | sed 's/^/  /'

status=0
summary=()
for spec in "${SPECS[@]}"; do
  name=$(echo "$spec" | tr -c 'A-Za-z0-9.\n' '_')
  venv=$WORK/venv-$name
  echo "== $spec in a fresh virtual environment ($venv)"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv" || exit 1
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  if ! "$venv/bin/python" -m pip install --quiet "$spec" numpy scipy pytest expecttest \
      "pytorch-metric-learning>=2.5"; then
    echo "FAIL: installing $spec"
    status=1; summary+=("$spec: install failed"); continue
  fi
  "$venv/bin/python" -m pip install --quiet --no-deps "$WHEEL" || exit 1
  report=$("$venv/bin/python" -c '
import pixcon, torch
s = pixcon.cuda_status()
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), pixcon {pixcon.__version__}, CPU tier {pixcon.cpu_isa()}: "
      + ("CUDA kernels loaded" if s.loaded else "CPU ops only; CUDA: " + s.reason))') || report="import pixcon FAILED"
  echo "$report"
  ok=1
  (cd "$venv" && "$venv/bin/python" -m pixcon.selfcheck) || ok=0
  # from the checkout's tests, importing the installed wheel (the sources live in python/, not on sys.path)
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "${CPU_TESTS[@]}" || ok=0
  if [ $ok = 1 ]; then summary+=("PASS $spec: $report"); else summary+=("FAIL $spec: $report"); status=1; fi
done

echo "== summary ($(basename "$WHEEL"))"
printf '%s\n' "${summary[@]}"
exit $status
