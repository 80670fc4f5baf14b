#!/usr/bin/env bash
# The whole test suite: set up from nothing, C unit tests of ops/ (plain, under
# AddressSanitizer + UBSan, and under ThreadSanitizer) with ctest, the CUDA kernels of ops/cuda run on the CPU under
# tests/emulation (plain, under AddressSanitizer + UBSan, under ThreadSanitizer), the fuzz targets
# of tests/fuzz for a bounded time, then the Python suite with pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# mmsegmentation 1.x for tests/test_mmseg.py (mmcv is built from source once, then cached)
bash scripts/install_mmseg.sh
# (ThreadSanitizer with clang and its OpenMP runtime, whose own synchronisation TSan understands:
# the kernels' hand-written waits between rounds must show as race-free)
for variant in plain asan tsan; do
  dir=build/ctest-$variant
  sanitize=""
  compiler=cc
  case $variant in
    asan) sanitize="address,undefined" ;;
    tsan) sanitize="thread"; compiler=clang ;;
  esac
  CC=$compiler cmake -S . -B "$dir" -G Ninja -DPIXCON_BUILD_SHIM=OFF -DPIXCON_CUDA=OFF \
    -DPIXCON_SANITIZE="$sanitize" > /dev/null
  cmake --build "$dir"
  TSAN_OPTIONS="ignore_noninstrumented_modules=1" ctest --test-dir "$dir" --output-on-failure
done
# the CUDA kernels under the CPU emulation: plain (with the planted-bug mutants and the nvcc
# compile), under AddressSanitizer + UBSan, and under ThreadSanitizer (the emulated threads are real,
# so a missing barrier is a reported race)
for variant in plain asan tsan; do
  dir=build/emulation
  options=()
  case $variant in
    asan) dir=build/emulation-asan; options=(-DPIXCON_EMU_SANITIZE=address,undefined -DPIXCON_EMU_MUTANTS=OFF) ;;
    tsan) dir=build/emulation-tsan; options=(-DPIXCON_EMU_SANITIZE=thread -DPIXCON_EMU_MUTANTS=OFF) ;;
  esac
  cmake -S tests/emulation -B "$dir" -G Ninja "${options[@]}" > /dev/null
  cmake --build "$dir"
  ctest --test-dir "$dir" --output-on-failure
done
# the fuzz targets of the C API, 15 s each over the committed corpus, and the planted bug they
# must find (clang's libFuzzer, AddressSanitizer + UBSan)
CC=clang cmake -S tests/fuzz -B build/fuzz -G Ninja -DPIXCON_FUZZ_SECONDS=15 > /dev/null
cmake --build build/fuzz
ctest --test-dir build/fuzz --output-on-failure
status=0
.venv/bin/python -m pytest tests "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
