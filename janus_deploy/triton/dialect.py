"""What the edge does differently when its V2 server is Triton (Triton's conventions win).

The edge learns the server's kind from ``GET /v2`` (Triton answers ``"name": "triton"``), then:

* **model names**: a Triton input has exactly one datatype, so a repository has one ensemble per
  codec: the edge sends split s > 0 to ``janus_L{l}_S{s}_{fp32|fp16|int8}`` (split 0 always
  sends the uint8 frame to ``janus_L{l}_S0``);
* **compression**: Triton decompresses gzip and deflate bodies, not zstd (501): ``fp16-zstd``
  bodies are gzip-compressed (level 1) instead;
* **probe**: Triton has no ``/janus/probe``: the probe is a V2 inference on ``janus_probe``
  (a uint8 tensor of the probe's size; the model answers its byte count);
* **server time**: Triton returns no timing parameters. The fused tails (the python platform's
  default layout) answer an extra output, ``janus_server_ms`` (:data:`SERVER_TIMING`): the time
  the tail model spent on the request, its batch included; the edge asks for every output
  (``binary_data_output``) and reads it as the built-in server's ``janus_server_ms``, so the
  controller learns the server's load from it (:mod:`janus_deploy.schedule.cloud_load`).
  Triton's queue before the model is not in it: it shows up in the RTT samples, which makes the
  scheduler more careful exactly when the fleet is loaded. Ensembles answer only the logits: the
  edge then takes the cloud profile's predicted decode + compute time as the server's share.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from janus_deploy.wire.v2 import HEADER_LENGTH, encode_request, model_name

TRITON = "triton"
SERVER_TIMING = "janus_server_ms"  # the fused tails' timing output (python_model.TIMING)
PROBE_MODEL = "janus_probe"
_WIRE = {"float32": "fp32", "float16": "fp16", "int8": "int8", "int4": "int4"}


def is_triton(metadata: Any) -> bool:
    """Whether a ``GET /v2`` answer comes from Triton Inference Server."""
    return isinstance(metadata, dict) and metadata.get("name") == TRITON


def tail_model(level: int, split: int, codec: Any) -> str:
    """The Triton ensemble that takes ``codec``'s tensors for tail (level, split): at split 0
    ``janus_L{l}_S0`` (the raw frame) or ``janus_L{l}_S0_coded`` (a frame codec's images, in
    repositories exported with ``--codecs ...,coded``), else ``janus_L{l}_S{s}_{fp32|fp16|int8|int4}``."""
    if split == 0:
        return f"{model_name(level, 0)}_coded" if getattr(codec, "kind", "tokens") == "frame" else model_name(level, 0)
    if codec.token_dtype not in _WIRE:
        from janus_deploy.wire.codecs import CodecError

        raise CodecError(f"a Triton repository has no models for codec {codec.name} at a split")
    return f"{model_name(level, split)}_{_WIRE[codec.token_dtype]}"


def request_outputs(triton: bool) -> dict[str, Any]:
    """``encode_request`` keywords: Triton is asked for every output in binary (the fused tails
    add :data:`SERVER_TIMING`; an ensemble has only the logits); the built-in server for the logits."""
    return {"outputs": None, "parameters": {"binary_data_output": True}} if triton else {}


def server_time_ms(outputs: dict[str, Any]) -> float | None:
    """The :data:`SERVER_TIMING` output of an answer, if it has a usable one (finite, >= 0)."""
    v = outputs.get(SERVER_TIMING)
    try:
        ms = float(np.asarray(v, dtype=np.float64).ravel()[0]) if v is not None else None
    except (TypeError, ValueError, IndexError):
        return None
    return ms if ms is not None and np.isfinite(ms) and ms >= 0 else None


def gzip_body(body: bytes) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return c.compress(body) + c.flush()


def probe_request(nbytes: int) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of a probe carrying ``nbytes`` bytes of tensor data."""
    body, hlen = encode_request({"data": np.zeros(int(nbytes), np.uint8)}, outputs=("bytes",),
                                binary_output=False)
    return (f"/v2/models/{PROBE_MODEL}/infer", body,
            {HEADER_LENGTH: str(hlen), "Content-Type": "application/octet-stream", "Content-Length": str(len(body))})


def assumed_server_ms(predicted: dict[str, Any] | None) -> float:
    """The cloud profile's decode + tail compute time of this request (ms)."""
    p = predicted or {}
    total = 0.0
    for k in ("decode_ms", "cloud_ms"):
        v = p.get(k)
        if isinstance(v, (int, float)) and np.isfinite(v):
            total += float(v)
    return total


__all__ = ["PROBE_MODEL", "SERVER_TIMING", "TRITON", "assumed_server_ms", "gzip_body", "is_triton", "probe_request",
           "request_outputs", "server_time_ms", "tail_model"]
