#!/usr/bin/env bash
# Set up dlst-plugin on a fresh machine (Python 3.10+): torch, BasicSR 1.4.2, the plugin.
# Usage: bash scripts/install.sh [EXTRAS]   (default: test,faces,baselines,onnx,mmengine,spandrel,metrics; metrics = pyiqa)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-test,faces,baselines,onnx,mmengine,spandrel,metrics}"
PIP="python -m pip install --disable-pip-version-check -q"
C="-c requirements/constraints.txt"
# 1. torch first (BasicSR's sdist must be built against it, docs/design.md#toolchain)
$PIP torch==2.14.1 torchvision==0.29.1 'setuptools>=77' wheel
# 2. one OpenCV for basicsr (opencv-python) and the headless users
$PIP $C opencv-python opencv-python-headless
# 3. BasicSR from its sdist, built without isolation (else pip builds it with a multi-GB torch)
$PIP $C --no-build-isolation 'basicsr==1.4.2'
# 4. the plugin (a regular install: it carries the start-up hook for python -m basicsr.train)
$PIP $C --no-build-isolation ".[${EXTRAS}]"
python -c "import dlst_plugin, basicsr; print('dlst-plugin', dlst_plugin.__version__, '| basicsr', basicsr.__version__)"
