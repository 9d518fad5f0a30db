#!/usr/bin/env bash
# GPU check (issue 25 item 7), one verdict line per step; expected run time 5-8 minutes, within a
# 10-minute window (timeout 540 s). Needs an NVIDIA GPU; with TensorRT 10/11 and cuda-python
# (the [trt] extra) it checks the TensorRT path, without TensorRT it runs the ONNX Runtime CUDA
# checks it can (and int8 Q/DQ on the CPU) and says TensorRT was NOT tested. Steps: versions; fp32/fp16
# engines; segments and chains vs ORT; batches 1, 8, max+1, 4 -> 16; two threads; device memory; int8
# (Q/DQ, strongly typed) vs the same graphs in ORT; level-free (weights-once) engines and their memory.
# Never run yet: written without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "FAIL 0 gpu: no NVIDIA GPU here (nvidia-smi not found)" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
PYTHONPATH=$PWD timeout 540 "$PY" tools/gpu_check.py "${1:-/tmp/janus-gpu-check}"
