#!/usr/bin/env bash
# The whole test suite: set up from nothing, C unit tests of ops/ (plain and under
# AddressSanitizer + UBSan) with ctest, the CUDA kernels of ops/cuda run on the CPU under
# tests/emulation (plain, and under AddressSanitizer + UBSan), then the Python suite with pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# mmsegmentation 1.x for tests/test_mmseg.py (mmcv is built from source once, then cached)
bash scripts/install_mmseg.sh
for variant in plain asan; do
  dir=build/ctest-$variant
  sanitize=""
  [ "$variant" = asan ] && sanitize="address,undefined"
  cmake -S . -B "$dir" -G Ninja -DPIXCON_BUILD_SHIM=OFF -DPIXCON_CUDA=OFF -DPIXCON_SANITIZE="$sanitize" > /dev/null
  cmake --build "$dir"
  ctest --test-dir "$dir" --output-on-failure
done
cmake -S tests/emulation -B build/emulation -G Ninja > /dev/null
cmake --build build/emulation
ctest --test-dir build/emulation --output-on-failure
cmake -S tests/emulation -B build/emulation-asan -G Ninja -DPIXCON_EMU_SANITIZE=address,undefined \
  -DPIXCON_EMU_MUTANTS=OFF > /dev/null
cmake --build build/emulation-asan
build/emulation-asan/test_cuda_emulated
build/emulation-asan/test_sample_emulated
build/emulation-asan/test_cub_standin
status=0
.venv/bin/python -m pytest tests "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
