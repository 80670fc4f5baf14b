#!/usr/bin/env bash
# Installs mmsegmentation 1.x, mmengine and mmcv with its compiled ops into .venv for
# pixcon.mmseg and tests/test_mmseg.py, from PyPI, leaving torch as it is. Idempotent: does
# nothing when the pinned versions already import. scripts/test.sh runs it after
# scripts/setup.sh.
#
# Why these pins:
# - mmsegmentation 1.2.2 (the last 1.x) refuses mmcv >= 2.2.0 at import, so mmcv is 2.1.0.
# - mmseg's models import mmcv.ops, which needs mmcv's compiled extension: mmcv-lite has none,
#   and PyPI has no mmcv wheel for a current torch, so mmcv is built here from its sdist
#   against the installed torch (CPU ops only; DeepLabV3+ uses none of them). mmcv 2.1.0's
#   setup.py asks for C++17 while the headers of the torch installed here (2.15) require C++20:
#   the build switches that one flag. The wheel is cached per torch version, so later environments reuse it.
# - setuptools < 81: mmengine (configs' `mmseg::` scope) and mmcv's setup.py import
#   pkg_resources, which setuptools 81 removed; torch needs setuptools >= 77.0.3.
# - ftfy and regex: mmseg.utils imports them, but mmsegmentation does not declare them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MMCV_VERSION=2.1.0
MMSEG_VERSION=1.2.2
MMENGINE_VERSION=0.10.7

if "$PY" - "$MMCV_VERSION" "$MMSEG_VERSION" "$MMENGINE_VERSION" > /dev/null 2>&1 <<'EOF'
import sys
import mmcv, mmcv.ops, mmengine, mmseg, pkg_resources, ftfy, regex
assert (mmcv.__version__, mmseg.__version__, mmengine.__version__) == tuple(sys.argv[1:])
EOF
then
  echo "mmcv $MMCV_VERSION (with ops), mmsegmentation $MMSEG_VERSION, mmengine $MMENGINE_VERSION: installed"
  exit 0
fi

torch_version=$("$PY" -c "import torch; print(torch.__version__)")
py_tag=$("$PY" -c "import sys; print(f'cp{sys.version_info.major}{sys.version_info.minor}')")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Every pip call below is held to the installed torch.
echo "torch==$torch_version" > "$work/constraints.txt"
pip_install() { "$PY" -m pip install --quiet --constraint "$work/constraints.txt" "$@"; }

pip_install "setuptools>=77.0.3,<81" "mmengine==$MMENGINE_VERSION" \
  "mmsegmentation==$MMSEG_VERSION" ftfy regex

cache=${PIXCON_MMCV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pixcon/mmcv-$MMCV_VERSION-torch-$torch_version-$py_tag}
wheel=$(ls "$cache"/mmcv-"$MMCV_VERSION"-*.whl 2> /dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  echo "building mmcv $MMCV_VERSION with its CPU ops against torch $torch_version (about 15 minutes on 2 idle cores)"
  # Preparing the sdist's metadata runs its setup.py, which imports torch: no build isolation.
  "$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    "mmcv==$MMCV_VERSION" -d "$work"
  tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
  src="$work/mmcv-$MMCV_VERSION"
  sed -i "s/extra_compile_args\['cxx'\] = \['-std=c++17'\]/extra_compile_args['cxx'] = ['-std=c++20']/" "$src/setup.py"
  grep -q "'-std=c++20'" "$src/setup.py" || { echo "mmcv's setup.py changed: C++ standard flag not found" >&2; exit 1; }
  mkdir -p "$cache"
  # No visible GPU, so the extension is built for the CPU even on a CUDA machine (a CUDA
  # build of all mmcv ops takes hours). CFLAGS: Python's own flags (which setuptools replaces
  # by CFLAGS when it is set) with -g0, as debug info doubles the compile time. PATH: ninja.
  cflags="$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('CFLAGS') or '')") -g0"
  CUDA_VISIBLE_DEVICES="" MMCV_WITH_OPS=1 CFLAGS="$cflags" MAX_JOBS="$(nproc)" PATH="$PWD/.venv/bin:$PATH" \
    "$PY" -m pip wheel --quiet --no-deps --no-build-isolation "$src" -w "$cache"
  wheel=$(ls "$cache"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)
fi
# Forced: an mmcv 2.1.0 built against another torch may be installed (its ops then fail to load).
pip_install --force-reinstall --no-deps "$wheel"
pip_install "$wheel"
"$PY" -c "import mmcv, mmcv.ops, mmengine, mmseg; print(f'mmcv {mmcv.__version__} (with ops), mmsegmentation {mmseg.__version__}, mmengine {mmengine.__version__}: installed')"
