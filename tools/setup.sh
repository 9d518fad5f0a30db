#!/usr/bin/env bash
# Create .venv (Python 3.11) and install janus-deploy with everything the demo and the tests use.
# torch/torchvision are pinned and installed first (timm needs torchvision; this pair installs
# from the local wheel cache on our machines, any other version downloads gigabytes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "installing torch==2.14.1 torchvision==0.29.1 ..."
  .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
echo "installing janus-deploy[all] ..."
.venv/bin/python -m pip install -q -e ".[all]"
.venv/bin/janus-deploy --version
