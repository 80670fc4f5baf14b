#!/usr/bin/env bash
# The main job: set up from nothing, check pixcon against the reference (float64, ~10 s), then
# run the quick DeepLabV3+ example: four settings (cross-entropy only; contrastive pretraining +
# fine-tuning; + pseudo labels; contrastive pretraining on k-means auxiliary labels + fine-tuning)
# on generated scenes, on the CPU in about 6 minutes.
# Prints the four validation mIoUs; writes examples/deeplabv3plus/results/ (results.json, PNGs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pixcon.selfcheck
.venv/bin/python examples/deeplabv3plus/run.py --quick "$@"
