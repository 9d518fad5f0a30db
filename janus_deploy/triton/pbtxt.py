"""``config.pbtxt`` text for the models a janus-deploy Triton repository holds.

Written by hand (protobuf text format of Triton's ``model_config.proto``) so exporting needs no
Triton package; the tests parse every file with ``tritonclient.grpc.model_config_pb2``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from onnx import TensorProto

#: ONNX element type -> Triton data type
TRITON_DTYPES = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.FLOAT16: "TYPE_FP16", TensorProto.INT8: "TYPE_INT8",
                 TensorProto.UINT8: "TYPE_UINT8", TensorProto.INT64: "TYPE_INT64", TensorProto.INT32: "TYPE_INT32"}
#: V2 datatype (wire.spec) -> Triton data type
V2_TO_TRITON = {"FP32": "TYPE_FP32", "FP16": "TYPE_FP16", "INT8": "TYPE_INT8", "UINT8": "TYPE_UINT8",
                "INT64": "TYPE_INT64"}


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # TYPE_*
    dims: tuple[int, ...]  # without the batch dimension when max_batch_size > 0

    def render(self) -> str:
        return (f'{{ name: {json.dumps(self.name)} data_type: {self.data_type} '
                f'dims: [ {", ".join(str(d) for d in self.dims)} ] }}')


@dataclass(frozen=True)
class Batching:
    """Dynamic batching and instance groups of one model."""

    dynamic: bool = True
    preferred: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    instances: int = 1
    kind: str = "KIND_CPU"  # KIND_CPU | KIND_GPU


@dataclass(frozen=True)
class Step:
    model: str
    inputs: dict[str, str]  # model input -> ensemble tensor
    outputs: dict[str, str]  # model output -> ensemble tensor


@dataclass
class ModelConfig:
    name: str
    max_batch_size: int
    inputs: Sequence[Tensor]
    outputs: Sequence[Tensor]
    platform: str | None = None  # onnxruntime_onnx | tensorrt_plan | ensemble
    backend: str | None = None  # python
    default_model_filename: str | None = None
    batching: Batching | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    steps: Sequence[Step] = ()
    warmup: bool = False  # one batch-1 request of random data at load (first runs are slow)

    def render(self) -> str:
        out = [f"name: {json.dumps(self.name)}"]
        if self.platform:
            out.append(f"platform: {json.dumps(self.platform)}")
        if self.backend:
            out.append(f"backend: {json.dumps(self.backend)}")
        if self.default_model_filename:
            out.append(f"default_model_filename: {json.dumps(self.default_model_filename)}")
        out.append(f"max_batch_size: {self.max_batch_size}")
        out.append("input [\n  " + ",\n  ".join(t.render() for t in self.inputs) + "\n]")
        out.append("output [\n  " + ",\n  ".join(t.render() for t in self.outputs) + "\n]")
        b = self.batching
        if b is not None:
            out.append(f"instance_group [ {{ count: {b.instances} kind: {b.kind} }} ]")
            if b.dynamic and self.max_batch_size > 0:
                pref = "".join(f" preferred_batch_size: {p}" for p in b.preferred)
                out.append(f"dynamic_batching {{{pref} max_queue_delay_microseconds: {b.max_queue_delay_us} }}")
        if self.warmup:
            lead = "batch_size: 1 " if self.max_batch_size > 0 else ""
            ins = " ".join(f"inputs {{ key: {json.dumps(t.name)} value {{ data_type: {t.data_type} "
                           f"dims: [ {', '.join(str(max(d, 1)) for d in t.dims)} ] random_data: true }} }}"
                           for t in self.inputs)
            out.append(f'model_warmup [ {{ name: "janus_warmup" {lead}{ins} }} ]')
        for k, v in self.parameters.items():
            out.append(f"parameters {{ key: {json.dumps(k)} value {{ string_value: {json.dumps(v)} }} }}")
        if self.steps:
            steps = []
            for s in self.steps:
                maps = [f"input_map {{ key: {json.dumps(k)} value: {json.dumps(v)} }}" for k, v in s.inputs.items()]
                maps += [f"output_map {{ key: {json.dumps(k)} value: {json.dumps(v)} }}" for k, v in s.outputs.items()]
                steps.append(f"  {{\n    model_name: {json.dumps(s.model)}\n    model_version: -1\n    "
                             + "\n    ".join(maps) + "\n  }")
            out.append("ensemble_scheduling {\n step [\n" + ",\n".join(steps) + "\n ]\n}")
        return "\n".join(out) + "\n"


__all__ = ["Batching", "ModelConfig", "Step", "Tensor", "TRITON_DTYPES", "V2_TO_TRITON"]
