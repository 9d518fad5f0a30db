"""KServe V2 / Open Inference Protocol bodies with Triton's binary-tensor extension.

Shared by the cloud server (:mod:`janus_deploy.runtime.server`) and the edge client
(:mod:`janus_deploy.runtime.edge`). Pure numpy + json, no HTTP.

A request or response body is a JSON header, optionally followed by raw tensor bytes::

    {"inputs": [{"name": "tokens", "datatype": "FP16", "shape": [1, 91, 192],
                 "parameters": {"binary_data_size": 34944}}, ...],
     "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]}
    <34944 bytes of tokens, row-major little-endian><next input's bytes>...

The HTTP header ``Inference-Header-Content-Length`` gives the JSON header's byte length (absent
when the whole body is JSON). Tensors without ``binary_data_size`` carry their values in
``data`` (a flat or nested row-major list), as plain V2 requires.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.wire import jsonload

HEADER_LENGTH = "Inference-Header-Content-Length"

#: V2 datatype name -> numpy dtype (little-endian). BYTES and BF16 are not supported.
V2_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
_NP_TO_V2 = {dt: name for name, dt in V2_DTYPES.items()}
MAX_DIMS = 32  # numpy's limit is 64; no V2 tensor here has more than 4
MAX_DIM = 1 << 40  # a dimension (and binary_data_size) above this is no tensor anyone sends
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = 6
_REPR.maxlevel = 2


def short(value: Any) -> str:
    """A client-sent value as it appears in an error message: a repr cut to a few dozen
    characters (error answers stay short whatever was sent)."""
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError):  # e.g. an int too long to print
        return f"<{type(value).__name__}>"


class WireError(JanusError):
    """A V2 body that cannot be encoded or decoded; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def model_name(level: int, split: int) -> str:
    """V2 model name of the tail of plan level ``level`` after split point ``split``."""
    return f"janus_L{level}_S{split}"


def v2_datatype(arr: np.ndarray) -> str:
    """The V2 datatype name of an array (``FP32``, ``UINT8``, ...)."""
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    try:
        return _NP_TO_V2[np.dtype(dt)]
    except KeyError:
        raise WireError(f"numpy dtype {arr.dtype} has no V2 datatype") from None


def numpy_dtype(datatype: Any) -> np.dtype:
    """The numpy dtype of a V2 datatype name (WireError for anything else, a non-string included)."""
    try:
        return V2_DTYPES[datatype]
    except (KeyError, TypeError):
        raise WireError(
            f"unsupported datatype {short(datatype)} (supported: {', '.join(V2_DTYPES)})"
        ) from None


def _le_bytes(arr: np.ndarray) -> bytes:
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a.tobytes()


def _tensor_entry(name: str, arr: np.ndarray, binary: bool, chunks: list[bytes]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "datatype": v2_datatype(arr), "shape": list(arr.shape)}
    if binary:
        raw = _le_bytes(arr)
        entry["parameters"] = {"binary_data_size": len(raw)}
        chunks.append(raw)
    else:
        entry["data"] = np.asarray(arr).reshape(-1).tolist()
    return entry


def _assemble(header: dict[str, Any], chunks: list[bytes]) -> tuple[bytes, int | None]:
    head = json.dumps(header, separators=(",", ":")).encode()
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)


def encode_request(
    inputs: Mapping[str, np.ndarray],
    *,
    outputs: Sequence[str] | None = ("logits",),
    binary: bool = True,
    binary_output: bool = True,
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode an inference request; returns ``(body, header_length)`` (``None`` for pure JSON)."""
    chunks: list[bytes] = []
    header: dict[str, Any] = {}
    if request_id is not None:
        header["id"] = str(request_id)
    if parameters:
        header["parameters"] = dict(parameters)
    header["inputs"] = [_tensor_entry(n, a, binary, chunks) for n, a in inputs.items()]
    if outputs:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": bool(binary_output)}} for n in outputs]
    return _assemble(header, chunks)


def encode_response(
    model_name: str,
    outputs: Mapping[str, np.ndarray],
    *,
    binary: Mapping[str, bool] | bool = True,
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    model_version: str = "1",
) -> tuple[bytes, int | None]:
    """Encode an inference response; returns ``(body, header_length)``."""
    chunks: list[bytes] = []
    header: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        header["id"] = request_id
    if parameters:
        header["parameters"] = dict(parameters)
    header["outputs"] = [
        _tensor_entry(n, a, binary if isinstance(binary, bool) else bool(binary.get(n, False)), chunks)
        for n, a in outputs.items()
    ]
    return _assemble(header, chunks)


MAX_LENGTH_DIGITS = 18  # a byte count up to 10**18 - 1: longer is no length any body can have


def header_length_value(value: str) -> int:
    """A byte count from a length header: digits only, at most :data:`MAX_LENGTH_DIGITS` of them
    (so a 5000-digit value is a short WireError, never Python's int-size limit), else WireError."""
    text = value.strip() if isinstance(value, str) else ""
    if not text.isdigit() or not text.isascii():
        raise WireError(f"{HEADER_LENGTH} must be an integer >= 0, got {short(str(value))}")
    if len(text) > MAX_LENGTH_DIGITS:
        raise WireError(f"{HEADER_LENGTH} has {len(text)} digits; a byte count has at most {MAX_LENGTH_DIGITS}")
    return int(text)


def parse_header_length(value: str | None, body_len: int) -> int | None:
    """Validate the ``Inference-Header-Content-Length`` header value against the body length."""
    if value is None:
        return None
    n = header_length_value(value)
    if n > body_len:
        raise WireError(
            f"body is truncated: {HEADER_LENGTH} says the JSON header has {n} bytes but the body "
            f"has only {body_len}"
        )
    return n


def _load_header(body: bytes | bytearray, header_length: int | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON header (any malformed JSON, however deep or large, is a short WireError) and the
    binary section after it (a view, not a copy)."""
    if header_length is None:
        head, rest = body, memoryview(b"")
    else:
        head, rest = bytes(memoryview(body)[:header_length]), memoryview(body)[header_length:]
    if not head:
        raise WireError("the request has an empty JSON header")
    hint = "" if header_length is not None else f" (binary tensors need the {HEADER_LENGTH} header)"
    try:
        header = jsonload.loads(head)  # in slices: a large body does not stall the other threads
    except UnicodeDecodeError:
        raise WireError(f"the JSON header is not UTF-8 text{hint}") from None
    except jsonload.JsonError as exc:
        if exc.kind == "too_large":
            raise WireError(f"{exc}; send tensors with the binary tensor extension ({HEADER_LENGTH})", 413) from None
        if exc.kind == "depth":
            raise WireError("the JSON header is nested too deeply") from None
        if exc.kind == "number":
            raise WireError(f"the JSON header holds a number too long to parse ({exc})") from None
        raise WireError(f"the JSON header does not parse: {exc}{hint}") from None
    if not isinstance(header, dict):
        raise WireError(f"the JSON header must be an object, got {type(header).__name__}")
    return header, rest


def _shape(entry: Mapping[str, Any], where: str) -> tuple[int, ...]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise WireError(f"{where}: 'shape' must be a list of integers, got {short(shape)}")
    if len(shape) > MAX_DIMS:
        raise WireError(f"{where}: shape has {len(shape)} dimensions (at most {MAX_DIMS})")
    if any(d < 0 for d in shape):
        raise WireError(f"{where}: shape {short(shape)} has a negative dimension")
    if any(d > MAX_DIM for d in shape):
        raise WireError(f"{where}: shape {short(shape)} has a dimension over {MAX_DIM}")
    return tuple(shape)


#: ``check(name, datatype, shape)`` runs on each tensor's header entry before its data is decoded
EntryCheck = Callable[[str, str, tuple[int, ...]], None]


def json_values(data: Any, dtype: np.dtype) -> np.ndarray:
    """A tensor's JSON ``data`` (nested lists, numpy arrays from :mod:`jsonload`, or both) as
    ``dtype``; integers out of an integer type's range are an OverflowError, never wrapped."""
    src = data if isinstance(data, np.ndarray) else np.asarray(data)
    if dtype.kind in "iu" and src.dtype.kind in "iuf" and src.size:
        if src.dtype.kind == "f" and not np.isfinite(src).all():
            raise ValueError("NaN or infinite values for an integer type")
        info = np.iinfo(dtype)
        lo, hi = src.min(), src.max()
        if lo < info.min or hi > info.max:
            raise OverflowError(f"values {short(lo.item())}..{short(hi.item())} are out of range")
    return src.astype(dtype)


def _decode_tensors(entries: Any, rest: memoryview, key: str, *, copy: bool,
                    check: EntryCheck | None = None) -> dict[str, np.ndarray]:
    if not isinstance(entries, list) or not entries:
        raise WireError(f"the JSON header needs a non-empty {key!r} list")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise WireError(f"{key}[{i}] must be an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise WireError(f"{key}[{i}] needs a string 'name'")
        where = f"{key[:-1]} {short(name)}"
        if name in out:
            raise WireError(f"{where} appears twice")
        dtype = numpy_dtype(entry.get("datatype"))
        shape = _shape(entry, where)
        if check is not None:
            check(name, entry["datatype"], shape)
        count = math.prod(shape)
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise WireError(f"{where}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_DIM:
                raise WireError(f"{where}: binary_data_size must be an integer in 0..{MAX_DIM}, got {short(size)}")
            if "data" in entry:
                raise WireError(f"{where} has both 'data' and binary_data_size")
            want = count * dtype.itemsize
            if size != want:
                raise WireError(
                    f"{where}: binary_data_size is {size} bytes but shape {short(list(shape))} of "
                    f"{entry['datatype']} needs {want}"
                )
            if offset + size > len(rest):
                raise WireError(
                    f"body is truncated: {where} needs {size} bytes at offset {offset} of the binary "
                    f"section but only {max(len(rest) - offset, 0)} remain"
                )
            arr = np.frombuffer(rest[offset: offset + size], dtype=dtype).reshape(shape)
            out[name] = arr.copy() if copy else arr
            offset += size
        else:
            if "data" not in entry:
                raise WireError(f"{where} has neither 'data' nor a binary_data_size parameter")
            try:
                arr = json_values(entry["data"], dtype)
            except (TypeError, ValueError, OverflowError, RecursionError) as exc:
                raise WireError(f"{where}: 'data' is not a list of {entry['datatype']} values "
                                f"({short(str(exc))})") from None
            if arr.size != count:
                raise WireError(f"{where}: 'data' holds {arr.size} values but shape {list(shape)} needs {count}")
            out[name] = arr.reshape(shape)
    if offset != len(rest):
        raise WireError(
            f"the body has {len(rest) - offset} trailing bytes that no {key[:-1]} claims "
            "(binary_data_size values do not add up to the body length)"
        )
    return out


def parse_request(body: bytes | bytearray, header_length: int | None,
                  check: EntryCheck | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Decode a V2 inference request into ``(header, {input name: array})``; ``check`` sees each
    input's name, datatype and shape before its data is decoded (a server refuses a tensor it
    cannot use before copying it)."""
    header, rest = _load_header(body, header_length)
    return header, _decode_tensors(header.get("inputs"), rest, "inputs", copy=True, check=check)


def parse_response(body: bytes, header_length: int | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Decode a V2 inference response into ``(header, {output name: array})``."""
    header, rest = _load_header(body, header_length)
    return header, _decode_tensors(header.get("outputs"), rest, "outputs", copy=False)


def requested_outputs(header: Mapping[str, Any], available: Sequence[str]) -> dict[str, bool]:
    """``{output name: binary?}`` asked for by a request (all outputs when it names none)."""
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise WireError("request 'parameters' must be an object")
    default_binary = bool(params.get("binary_data_output", False))
    outs = header.get("outputs")
    if outs is None:
        return {n: default_binary for n in available}
    if not isinstance(outs, list):
        raise WireError("request 'outputs' must be a list")
    result: dict[str, bool] = {}
    for i, o in enumerate(outs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise WireError(f"outputs[{i}] must be an object with a string 'name'")
        if o["name"] not in available:
            raise WireError(f"unknown output {short(o['name'])}; this model has {', '.join(available)}")
        p = o.get("parameters") or {}
        if not isinstance(p, dict):
            raise WireError(f"outputs[{i}].parameters must be an object")
        if p.get("shared_memory_region") is not None:
            raise WireError("shared-memory outputs are not supported by this server")
        result[o["name"]] = bool(p.get("binary_data", default_binary))
    return result or {n: default_binary for n in available}


__all__ = [
    "HEADER_LENGTH", "V2_DTYPES", "WireError", "encode_request", "encode_response", "numpy_dtype",
    "parse_header_length", "parse_request", "parse_response", "requested_outputs", "short", "v2_datatype",
]
