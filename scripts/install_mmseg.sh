#!/usr/bin/env bash
# Installs mmsegmentation 1.x, mmengine and mmcv with its compiled ops for pixcon.mmseg and
# tests/test_mmseg.py, from PyPI, leaving torch as it is. Idempotent: does nothing when the
# pinned versions already import. scripts/test.sh runs it after scripts/setup.sh.
#
# Environment:
# - PIXCON_MMSEG: which line to install. "upstream" (the default, what CI tests): OpenMMLab's
#   mmsegmentation 1.2.2, mmengine 0.10.7, mmcv 2.1.0. "onedl": the maintained community fork,
#   onedl-mmsegmentation 1.4.2, onedl-mmengine 0.10.12, onedl-mmcv 2.3.6, which keeps the import
#   names mmseg, mmengine and mmcv; installing one line first removes the other's packages, as
#   both would own the same modules.
# - PIXCON_PYTHON: the Python whose environment receives them (default: the checkout's .venv).
# - PIXCON_MMCV_CACHE: the folder of the built mmcv wheel (default below).
#
# Why these pins:
# - mmsegmentation 1.2.2 (upstream's last 1.x) refuses mmcv >= 2.2.0 at import, so mmcv is 2.1.0.
# - mmseg's models import mmcv.ops, which needs mmcv's compiled extension: mmcv-lite has none,
#   and PyPI has no mmcv (or onedl-mmcv) wheel for a current torch, so mmcv is built here from
#   its sdist against the installed torch (CPU ops only; DeepLabV3+ uses none of them). Both
#   setup.py ask for C++17 while the headers of the torch installed here (2.15) require C++20:
#   the build switches that one flag. The wheel is cached per torch version and Python, so later
#   environments reuse it.
# - upstream: setuptools < 81, as mmengine 0.10.7 (configs' `mmseg::` scope) and mmcv 2.1.0's
#   setup.py import pkg_resources, which setuptools 81 removed; torch needs setuptools >= 77.0.3.
#   onedl: no pkg_resources, and onedl-mmcv's build asks for setuptools >= 80.
# - upstream: ftfy and regex, which mmseg.utils imports but mmsegmentation 1.2.2 does not declare.
set -euo pipefail
PY=${PIXCON_PYTHON:-}
# A relative path names a file from where the script was started, before the cd below.
case $PY in */*) PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY") ;; esac
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

case ${PIXCON_MMSEG:-upstream} in
  upstream)
    MMCV_DIST=mmcv MMCV_VERSION=2.1.0
    MMSEG_DIST=mmsegmentation MMSEG_VERSION=1.2.2
    MMENGINE_DIST=mmengine MMENGINE_VERSION=0.10.7
    OTHER_DISTS=(onedl-mmcv onedl-mmsegmentation onedl-mmengine)
    EXTRA_PACKAGES=("setuptools>=77.0.3,<81" ftfy regex)
    EXTRA_MODULES=(pkg_resources ftfy regex)
    ;;
  onedl)
    MMCV_DIST=onedl-mmcv MMCV_VERSION=2.3.6
    MMSEG_DIST=onedl-mmsegmentation MMSEG_VERSION=1.4.2
    MMENGINE_DIST=onedl-mmengine MMENGINE_VERSION=0.10.12
    OTHER_DISTS=(mmcv mmsegmentation mmengine)
    EXTRA_PACKAGES=("setuptools>=80")
    EXTRA_MODULES=()
    ;;
  *)
    echo "PIXCON_MMSEG: 'upstream' or 'onedl', got '$PIXCON_MMSEG'" >&2
    exit 2
    ;;
esac
summary="$MMCV_DIST $MMCV_VERSION (with ops), $MMSEG_DIST $MMSEG_VERSION, $MMENGINE_DIST $MMENGINE_VERSION"

# The line's distributions at their versions, none of the other line's, and the modules import.
# Arguments: DIST==VERSION, or DIST== for a distribution that must be absent, or a module.
# -W ignore: importing pkg_resources warns that it is deprecated.
installed() {
  "$PY" -W ignore - "$MMCV_DIST==$MMCV_VERSION" "$MMSEG_DIST==$MMSEG_VERSION" \
    "$MMENGINE_DIST==$MMENGINE_VERSION" "${OTHER_DISTS[@]/%/==}" "${EXTRA_MODULES[@]}" <<'EOF'
import importlib, sys
from importlib.metadata import PackageNotFoundError, version
import mmcv, mmcv.ops, mmengine, mmseg, mmseg.models
for arg in sys.argv[1:]:
    name, is_dist, wanted = arg.partition("==")
    if not is_dist:
        importlib.import_module(name)
        continue
    try:
        found = version(name)
    except PackageNotFoundError:
        found = ""
    assert found == wanted, f"{name}: {found or 'not installed'}, wanted {wanted or 'none'}"
EOF
}

if installed > /dev/null 2>&1; then
  echo "$summary: installed"
  exit 0
fi

torch_version=$("$PY" -c "import torch; print(torch.__version__)")
py_tag=$("$PY" -c "import sys; print(f'cp{sys.version_info.major}{sys.version_info.minor}')")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Every pip call below is held to the installed torch.
echo "torch==$torch_version" > "$work/constraints.txt"
pip_install() { "$PY" -m pip install --quiet --constraint "$work/constraints.txt" "$@"; }

# -qq: pip's warning for each of them that is not installed is expected.
"$PY" -m pip uninstall -qq --yes "${OTHER_DISTS[@]}"
pip_install "${EXTRA_PACKAGES[@]}" "$MMENGINE_DIST==$MMENGINE_VERSION" "$MMSEG_DIST==$MMSEG_VERSION"

# The sdist's file names spell the distribution with underscores (onedl_mmcv-2.3.6.tar.gz).
mmcv_file=${MMCV_DIST//-/_}-$MMCV_VERSION
cache=${PIXCON_MMCV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pixcon/$MMCV_DIST-$MMCV_VERSION-torch-$torch_version-$py_tag}
wheel=$(find "$cache" -name "$mmcv_file-*.whl" 2> /dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  echo "building $MMCV_DIST $MMCV_VERSION with its CPU ops against torch $torch_version (about 15 minutes on 2 idle cores)"
  # Preparing the sdist's metadata runs its setup.py, which imports torch: no build isolation.
  "$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    "$MMCV_DIST==$MMCV_VERSION" -d "$work"
  tar -xzf "$work/$mmcv_file.tar.gz" -C "$work"
  src="$work/$mmcv_file"
  sed -i "s/extra_compile_args\['cxx'\] = \['-std=c++17'\]/extra_compile_args['cxx'] = ['-std=c++20']/" "$src/setup.py"
  grep -q "'-std=c++20'" "$src/setup.py" || { echo "$MMCV_DIST's setup.py changed: C++ standard flag not found" >&2; exit 1; }
  mkdir -p "$cache"
  # No visible GPU, so the extension is built for the CPU even on a CUDA machine (a CUDA
  # build of all mmcv ops takes hours). CFLAGS: Python's own flags (which setuptools replaces
  # by CFLAGS when it is set) with -g0, as debug info doubles the compile time. PATH: ninja,
  # installed next to the Python.
  cflags="$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('CFLAGS') or '')") -g0"
  CUDA_VISIBLE_DEVICES="" MMCV_WITH_OPS=1 CFLAGS="$cflags" MAX_JOBS="$(nproc)" PATH="$(dirname "$PY"):$PATH" \
    "$PY" -m pip wheel --quiet --no-deps --no-build-isolation "$src" -w "$cache"
  wheel=$(find "$cache" -name "$mmcv_file-*.whl" | head -n 1)
fi
# Forced: the same mmcv built against another torch may be installed (its ops then fail to load).
pip_install --force-reinstall --no-deps "$wheel"
pip_install "$wheel"
installed
echo "$summary: installed"
