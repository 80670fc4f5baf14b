#!/usr/bin/env bash
# Fuzzes the C API: builds tests/fuzz with clang (libFuzzer, AddressSanitizer + UBSan) and runs
# fuzz_loss, fuzz_sample and fuzz_kmeans for SECONDS each (default 60), starting from the committed
# corpus in tests/fuzz/corpus/. New inputs collect in build/fuzz/corpus-<target>; with
# --update-corpus they are merged (minimised) into the committed corpus afterwards. A finding
# stops the run with the fuzzer's report and leaves the input as build/fuzz/<target>-crash-*.
#   bash scripts/fuzz.sh 600                  # ten minutes per target
#   bash scripts/fuzz.sh 600 --update-corpus
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
update=${2:-}
CC=clang cmake -S tests/fuzz -B build/fuzz -G Ninja > /dev/null
cmake --build build/fuzz
for target in loss sample kmeans; do
  echo "== fuzz_$target for $seconds s"
  mkdir -p "build/fuzz/corpus-$target"
  "build/fuzz/fuzz_$target" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 \
    -artifact_prefix="build/fuzz/$target-" "build/fuzz/corpus-$target" "tests/fuzz/corpus/$target"
  if [ "$update" = --update-corpus ]; then
    "build/fuzz/fuzz_$target" -merge=1 "tests/fuzz/corpus/$target" "build/fuzz/corpus-$target"
  fi
done
echo "no finding"
