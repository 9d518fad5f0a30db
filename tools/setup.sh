#!/usr/bin/env bash
# Create .venv (Python 3.11) and install janus-deploy with everything the demo and the tests use.
# torch/torchvision are pinned and installed first (timm needs torchvision; this pair installs
# from the local wheel cache on our machines, any other version downloads gigabytes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}  # the full suite runs on 3.11; the package itself supports 3.10 (vermin in .ci/run)
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
# `serve --engine triton` and the Triton tests run the tritonserver bundled in nvidia-pytriton
# (Linux x86_64, glibc >= 2.35). Its metadata pins numpy<2 for PyTriton's own Python API, which
# janus-deploy does not use (its python-backend models pass tensors by DLPack, correct under
# numpy 2), so the wheel goes in without its dependencies and numpy stays as it is.
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] && ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('pytriton') is None)" >/dev/null 2>&1; then
  echo "installing nvidia-pytriton==0.7.0 (the bundled tritonserver, --no-deps) ..."
  .venv/bin/python -m pip install -q --no-deps nvidia-pytriton==0.7.0
fi
.venv/bin/janus-deploy --version
