#!/usr/bin/env bash
# The main job: set up from nothing, check pixcon against the reference (float64, ~10 s), then
# run the quick DeepLabV3+ example: the paper's three settings (cross-entropy only; contrastive
# pretraining + fine-tuning; + pseudo labels) on generated scenes, on the CPU in about 5 minutes.
# Prints the three validation mIoUs; writes examples/deeplabv3plus/results/ (results.json, PNGs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pixcon.selfcheck
.venv/bin/python examples/deeplabv3plus/run.py --quick "$@"
