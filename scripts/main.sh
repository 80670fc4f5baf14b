#!/usr/bin/env bash
# The main job: set up from nothing, check pixcon against the reference, run a quick benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pixcon.selfcheck
.venv/bin/python -m pixcon.bench --quick --plot benchmarks/results/loss_throughput_quick.png \
  --json benchmarks/results/loss_throughput_quick.json
