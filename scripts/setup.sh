#!/usr/bin/env bash
# Creates .venv (if missing), installs torch, the build/test tools and the example's packages
# from PyPI, and builds and installs pixcon into it. Idempotent; every other script runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch>=2.10" numpy "scikit-build-core>=1.1" ninja \
  pytest "pytorch-metric-learning>=2.5" expecttest tqdm matplotlib scipy nvidia-cuda-cuobjdump \
  "segmentation-models-pytorch==0.6.0" "scikit-learn>=1.5"
# No build isolation: the shim is compiled against the torch installed above.
.venv/bin/python -m pip install --quiet --no-build-isolation --editable .
.venv/bin/python -c "import pixcon; print('pixcon', pixcon.__version__, 'built; CPU tier:', pixcon.cpu_isa())"
