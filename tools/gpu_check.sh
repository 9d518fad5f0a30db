#!/usr/bin/env bash
# GPU checks end to end (needs an NVIDIA GPU with TensorRT >= 10 and the [trt] extra):
# build TensorRT fp16 engines for a vit_tiny plan, check parity against ONNX Runtime
# (top-1 agreement, cosine >= 0.999) and print per-engine latency; then run the GPU-marked tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "no NVIDIA GPU here (nvidia-smi not found): nothing to check" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
if ! "$PY" -c "import tensorrt" 2>/dev/null; then
  echo "TensorRT is not installed for $PY: pip install 'janus-deploy[trt]' (or use JetPack on Jetson)" >&2
  exit 3
fi
"$PY" tools/gpu_check.py "${1:-/tmp/janus-gpu-check}"
"$PY" -m pytest -m gpu -q tests
