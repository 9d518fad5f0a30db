"""Payload codecs: what crosses the uplink at a split point, as named tensors plus an optional
lossless byte compressor.

A codec turns the boundary tensors ``(tokens [B, x, D] float32, size [B, x, 1] float32)`` into
named wire tensors (KServe V2 inputs) and back:

* ``fp32``: tokens FP32, size FP32 (lossless).
* ``fp16``: tokens FP16, size FP16 (sizes are small integers: exact; tokens lose precision).
* ``fp16-zstd``: fp16 tensors, the request body compressed with zstd (``Content-Encoding: zstd``).
* ``int8``: tokens INT8 with one symmetric FP32 scale per token (``token_scale [B, x, 1]``),
  size FP16.

At split 0 the payload is the uint8 frame ``[B, H, W, 3]`` (compressed with zstd by the
compressing codecs), never the embedded tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from janus_deploy import JanusError


class CodecError(JanusError):
    """Unknown codec, or wire tensors that do not decode."""


class BodyTooLargeError(CodecError):
    """A compressed body decompresses to more than the allowed bytes (a decompression bomb)."""


@dataclass(frozen=True)
class Codec:
    name: str
    token_dtype: str
    size_dtype: str
    compress: str | None  # "zstd" or None
    lossless: bool


CODECS = {
    "fp32": Codec("fp32", "float32", "float32", None, True),
    "fp16": Codec("fp16", "float16", "float16", None, False),
    "fp16-zstd": Codec("fp16-zstd", "float16", "float16", "zstd", False),
    "int8": Codec("int8", "int8", "float16", None, False),
}
DEFAULT_CODEC = "fp16"


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise CodecError(f"unknown codec {name!r}; choose one of {', '.join(CODECS)}") from None


def payload_bytes(tokens: int, dim: int, codec: str | Codec) -> int:
    """Uncompressed wire bytes of ``tokens`` boundary tokens of width ``dim`` (one image):
    the token tensor, the size vector and, for int8, one fp32 scale per token."""
    c = codec if isinstance(codec, Codec) else get_codec(codec)
    if c.compress is not None:
        raise CodecError(f"codec {c.name} compresses: its size is measured, not computed")
    width = {"float32": 4, "float16": 2, "int8": 1}
    extra = 4 if c.token_dtype == "int8" else 0
    return tokens * (dim * width[c.token_dtype] + width[c.size_dtype] + extra)


def encode_tokens(tokens: np.ndarray, size: np.ndarray, codec: str | Codec) -> dict[str, np.ndarray]:
    """Boundary tensors -> named wire tensors."""
    c = codec if isinstance(codec, Codec) else get_codec(codec)
    if c.token_dtype == "int8":
        scale = np.abs(tokens).max(axis=-1, keepdims=True) / 127.0
        scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
        q = np.clip(np.rint(tokens / scale), -127, 127).astype(np.int8)
        return {"tokens": q, "token_scale": scale, "size": size.astype(np.float16)}
    return {"tokens": tokens.astype(c.token_dtype), "size": size.astype(c.size_dtype)}


def decode_tokens(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Named wire tensors -> float32 ``(tokens, size)``; the codec is read off the dtypes."""
    try:
        tokens, size = tensors["tokens"], tensors["size"]
    except KeyError as exc:
        raise CodecError(f"payload lacks tensor {exc.args[0]!r} (expected tokens and size)") from None
    if tokens.dtype == np.int8:
        if "token_scale" not in tensors:
            raise CodecError("INT8 tokens need a token_scale tensor (one FP32 scale per token)")
        tokens = tokens.astype(np.float32) * tensors["token_scale"].astype(np.float32)
    return tokens.astype(np.float32, copy=False), size.astype(np.float32, copy=False)


def compress(body: bytes, codec: str | Codec) -> bytes:
    c = codec if isinstance(codec, Codec) else get_codec(codec)
    if c.compress is None:
        return body
    import zstandard

    return zstandard.ZstdCompressor(level=1).compress(body)


class UnsupportedEncodingError(CodecError):
    """A ``Content-Encoding`` this side cannot undo."""


ENCODINGS = ("identity", "zstd", "gzip", "deflate")


def decompress(body: bytes | bytearray, encoding: str | None, max_bytes: int) -> bytes | bytearray:
    """Undo ``Content-Encoding`` (zstd, gzip, deflate or none); refuses outputs over ``max_bytes``
    (decompression bombs). Multi-frame zstd and multi-member gzip bodies are whole bodies too
    (RFC 1952 allows members to be concatenated; zstd streams may hold several frames)."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc == "zstd":
        return _unzstd(body, max_bytes)
    if enc in ("gzip", "deflate"):
        return _unzlib(body, enc, max_bytes)
    raise UnsupportedEncodingError(f"unsupported Content-Encoding {encoding!r} (use zstd, gzip, deflate or none)")


def _unzstd(body: bytes | bytearray, max_bytes: int) -> bytearray:
    import zstandard

    out = bytearray()
    try:
        with zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True) as reader:
            while len(out) <= max_bytes:
                chunk = reader.read(min(1 << 20, max_bytes + 1 - len(out)))
                if not chunk:
                    break
                out += chunk
    except zstandard.ZstdError as exc:
        raise CodecError(f"the zstd body does not decompress: {exc}") from None
    if len(out) > max_bytes:
        raise BodyTooLargeError(f"the zstd body decompresses to more than {max_bytes} bytes")
    return out  # the buffer itself: a copy would double a large body


def _unzlib(body: bytes | bytearray, enc: str, max_bytes: int) -> bytearray:
    import zlib

    wbits = zlib.MAX_WBITS | 16 if enc == "gzip" else zlib.MAX_WBITS
    out = bytearray()
    data = body
    try:
        while data:
            d = zlib.decompressobj(wbits)
            out += d.decompress(data, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                break
            if not d.eof:
                if d.unconsumed_tail:
                    raise BodyTooLargeError(f"the {enc} body decompresses to more than {max_bytes} bytes")
                raise CodecError(f"the {enc} body is truncated")
            data = d.unused_data if enc == "gzip" else b""  # gzip: the next member, if any
            if enc == "deflate" and d.unused_data:
                raise CodecError("the deflate body has trailing bytes after its stream")
    except zlib.error as exc:
        raise CodecError(f"the {enc} body does not decompress: {exc}") from None
    if len(out) > max_bytes:
        raise BodyTooLargeError(f"the {enc} body decompresses to more than {max_bytes} bytes")
    return out  # the buffer itself: a copy would double a large body


def split_body(raw: bytes, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out, offset = {}, 0
    for name, arr in like.items():
        n = arr.nbytes
        out[name] = np.frombuffer(raw[offset: offset + n], dtype=arr.dtype).reshape(arr.shape)
        offset += n
    return out
