"""Payload codecs: what crosses the uplink at a split point, as named tensors plus an optional
lossless byte compressor.

A codec turns the boundary tensors ``(tokens [B, x, D] float32, size [B, x, 1] float32)`` into
named wire tensors (KServe V2 inputs) and back:

* ``fp32``: tokens FP32, size FP32 (lossless).
* ``fp16``: tokens FP16, size FP16 (sizes are small integers: exact; tokens lose precision).
* ``fp16-zstd``: fp16 tensors, the request body compressed with zstd (``Content-Encoding: zstd``).
* ``int8``: tokens INT8 with one symmetric FP32 scale per token (``token_scale [B, x, 1]``),
  size FP16.
* ``int4``: 4-bit tokens, two per byte (``tokens_q4`` UINT8 ``[B, x, D/2]``: value ``q + 8`` with
  q in -7..7, element ``2i`` in the low nibble), one symmetric FP16 scale per group of
  :func:`int4_group` channels (``group_scale [B, x, D/G]``), size FP16. ``int4-zstd``: the same,
  the body compressed with zstd.

Token codecs send, at split 0, the uint8 frame ``[B, H, W, 3]`` (compressed with zstd by the
compressing codecs), never the embedded tokens. *Frame codecs* (``kind == "frame"``) exist at
split 0 only: ``jpeg95``, ``jpeg85``, ``jpeg70`` (libjpeg-turbo through ``simplejpeg``, 4:2:0
chroma below quality 90, 4:4:4 from 90) and ``png`` (lossless, Pillow) send the encoded image
as ``frame_coded`` UINT8 ``[B, L]`` (one encoded image per row, zero-padded to the longest: both
decoders stop at the image's end marker); :func:`decode_frame` reads the image's header first
and refuses any image whose size is not the model's before decoding it (no decompression bomb).
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
    token_dtype: str  # "float32" | "float16" | "int8" | "int4" ("" for frame codecs)
    size_dtype: str
    compress: str | None  # "zstd" or None
    lossless: bool
    kind: str = "tokens"  # "tokens": every split (the raw frame at 0); "frame": split 0 only
    image: str | None = None  # frame codecs: "jpeg" | "png"
    quality: int | None = None  # jpeg quality


CODECS = {
    "fp32": Codec("fp32", "float32", "float32", None, True),
    "fp16": Codec("fp16", "float16", "float16", None, False),
    "fp16-zstd": Codec("fp16-zstd", "float16", "float16", "zstd", False),
    "int8": Codec("int8", "int8", "float16", None, False),
    "int4": Codec("int4", "int4", "float16", None, False),
    "int4-zstd": Codec("int4-zstd", "int4", "float16", "zstd", False),
    "jpeg95": Codec("jpeg95", "", "", None, False, "frame", "jpeg", 95),
    "jpeg85": Codec("jpeg85", "", "", None, False, "frame", "jpeg", 85),
    "jpeg70": Codec("jpeg70", "", "", None, False, "frame", "jpeg", 70),
    "png": Codec("png", "", "", None, True, "frame", "png"),
}
DEFAULT_CODEC = "fp16"
TOKEN_CODECS = tuple(n for n, c in CODECS.items() if c.kind == "tokens")
FRAME_CODECS = tuple(n for n, c in CODECS.items() if c.kind == "frame")
INT4_GROUP = 32  # channels per int4 scale (when it divides the width; else one group per token)
FRAME_CODED = "frame_coded"  # the wire tensor of a frame codec


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise CodecError(f"unknown codec {name!r}; choose one of {', '.join(CODECS)}") from None


def is_frame_codec(name: str) -> bool:
    """A codec that exists at split 0 only (an encoded image); unknown names are not."""
    c = CODECS.get(name)
    return c is not None and c.kind == "frame"


def int4_group(dim: int) -> int:
    """Channels per int4 scale for tokens of width ``dim``."""
    return INT4_GROUP if dim % INT4_GROUP == 0 else dim


def payload_bytes(tokens: int, dim: int, codec: str | Codec) -> int:
    """Uncompressed wire bytes of ``tokens`` boundary tokens of width ``dim`` (one image):
    the token tensor, the size vector and, for int8, one fp32 scale per token (int4: one fp16
    scale per group)."""
    c = codec if isinstance(codec, Codec) else get_codec(codec)
    if c.compress is not None:
        raise CodecError(f"codec {c.name} compresses: its size is measured, not computed")
    if c.kind == "frame":
        raise CodecError(f"codec {c.name} encodes images: its size is measured, not computed")
    if c.token_dtype == "int4":
        return tokens * (dim // 2 + 2 * (dim // int4_group(dim)) + 2)
    width = {"float32": 4, "float16": 2, "int8": 1}
    extra = 4 if c.token_dtype == "int8" else 0
    return tokens * (dim * width[c.token_dtype] + width[c.size_dtype] + extra)


def _int4_encode(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dim = tokens.shape[-1]
    if dim % 2:
        raise CodecError(f"int4 packs two channels per byte: the token width {dim} must be even")
    g = int4_group(dim)
    grouped = tokens.reshape(*tokens.shape[:-1], dim // g, g).astype(np.float32, copy=False)
    scale = (np.abs(grouped).max(axis=-1) / 7.0).astype(np.float16)
    s32 = scale.astype(np.float32)
    s32 = np.where(s32 == 0, 1.0, s32)  # an all-zero group (or one whose scale underflows fp16)
    q = np.clip(np.rint(grouped / s32[..., None]), -7, 7).astype(np.int16) + 8
    q = q.reshape(tokens.shape).astype(np.uint8)
    packed = q[..., 0::2] | (q[..., 1::2] << 4)
    return np.ascontiguousarray(packed), np.where(scale == 0, np.float16(1.0), scale)


def _int4_decode(packed: np.ndarray, scale: np.ndarray) -> np.ndarray:
    if packed.dtype != np.uint8 or scale.ndim != packed.ndim or packed.shape[:-1] != scale.shape[:-1]:
        raise CodecError("int4 payload: tokens_q4 must be UINT8 [B, x, D/2] and group_scale [B, x, D/G]")
    groups = scale.shape[-1]
    dim = 2 * packed.shape[-1]
    if groups < 1 or dim % groups:
        raise CodecError(f"int4 payload: {groups} scale groups do not divide {dim} channels")
    q = np.empty((*packed.shape[:-1], dim), np.int8)
    q[..., 0::2] = (packed & 0x0F).astype(np.int8) - 8
    q[..., 1::2] = (packed >> 4).astype(np.int8) - 8
    g = dim // groups
    out = q.reshape(*q.shape[:-1], groups, g).astype(np.float32) * scale.astype(np.float32)[..., None]
    return out.reshape(*q.shape[:-1], dim)


def encode_tokens(tokens: np.ndarray, size: np.ndarray, codec: str | Codec) -> dict[str, np.ndarray]:
    """Boundary tensors -> named wire tensors."""
    c = codec if isinstance(codec, Codec) else get_codec(codec)
    if c.kind == "frame":
        raise CodecError(f"codec {c.name} encodes frames at split 0, not tokens")
    if c.token_dtype == "int4":
        packed, scale = _int4_encode(tokens)
        return {"tokens_q4": packed, "group_scale": scale, "size": size.astype(np.float16)}
    if c.token_dtype == "int8":
        scale = np.abs(tokens).max(axis=-1, keepdims=True) / 127.0
        scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
        q = np.clip(np.rint(tokens / scale), -127, 127).astype(np.int8)
        return {"tokens": q, "token_scale": scale, "size": size.astype(np.float16)}
    return {"tokens": tokens.astype(c.token_dtype), "size": size.astype(c.size_dtype)}


def decode_tokens(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Named wire tensors -> float32 ``(tokens, size)``; the codec is read off the dtypes
    (int4: off the ``tokens_q4`` name)."""
    if "tokens_q4" in tensors:
        if "group_scale" not in tensors or "size" not in tensors:
            raise CodecError("int4 tokens (tokens_q4) need group_scale and size tensors")
        tok = _int4_decode(tensors["tokens_q4"], tensors["group_scale"])
        return tok, tensors["size"].astype(np.float32, copy=False)
    try:
        tokens, size = tensors["tokens"], tensors["size"]
    except KeyError as exc:
        raise CodecError(f"payload lacks tensor {exc.args[0]!r} (expected tokens and size)") from None
    if tokens.dtype == np.int8:
        if "token_scale" not in tensors:
            raise CodecError("INT8 tokens need a token_scale tensor (one FP32 scale per token)")
        tokens = tokens.astype(np.float32) * tensors["token_scale"].astype(np.float32)
    return tokens.astype(np.float32, copy=False), size.astype(np.float32, copy=False)


def encode_frame(frame: np.ndarray, codec: str | Codec) -> np.ndarray:
    """uint8 frames ``[B, H, W, 3]`` -> ``frame_coded`` UINT8 ``[B, L]`` with a frame codec."""
    c = codec if isinstance(codec, Codec) else get_codec(codec)
    if c.kind != "frame":
        raise CodecError(f"codec {c.name} is not a frame codec ({', '.join(FRAME_CODECS)})")
    if frame.dtype != np.uint8 or frame.ndim != 4 or frame.shape[-1] != 3:
        raise CodecError(f"frames must be uint8 [B, H, W, 3], got {frame.dtype} {list(frame.shape)}")
    blobs = [_encode_image(np.ascontiguousarray(f), c) for f in frame]
    out = np.zeros((len(blobs), max(len(b) for b in blobs)), np.uint8)
    for i, b in enumerate(blobs):
        out[i, :len(b)] = np.frombuffer(b, np.uint8)
    return out


def _encode_image(img: np.ndarray, c: Codec) -> bytes:
    if c.image == "jpeg":
        import simplejpeg

        q = int(c.quality or 85)
        return simplejpeg.encode_jpeg(img, quality=q, colorspace="RGB", colorsubsampling="444" if q >= 90 else "420")
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode_frame(coded: np.ndarray, height: int, width: int) -> np.ndarray:
    """``frame_coded`` UINT8 ``[B, L]`` (JPEG or PNG rows, told apart by their magic bytes) ->
    uint8 ``[B, height, width, 3]``. Each image's size is read from its header and checked before
    it is decoded; :class:`CodecError` names the row and what is wrong."""
    if coded.dtype != np.uint8 or coded.ndim != 2:
        raise CodecError(f"frame_coded must be UINT8 [B, L], got {coded.dtype} {list(coded.shape)}")
    out = np.empty((coded.shape[0], height, width, 3), np.uint8)
    for i, row in enumerate(coded):
        data = row.tobytes()
        try:
            out[i] = _decode_image(data, height, width)
        except CodecError as exc:
            raise CodecError(f"frame_coded[{i}]: {exc}") from None
    return out


def _decode_image(data: bytes, height: int, width: int) -> np.ndarray:
    if data[:2] == b"\xff\xd8":
        import simplejpeg

        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            if (h, w) != (height, width):
                raise CodecError(f"the JPEG is {w}x{h}, the model takes {width}x{height}")
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError as exc:
            raise CodecError(f"the JPEG does not decode: {exc}") from None
    if data[:8] == _PNG_MAGIC:
        import io

        from PIL import Image

        try:
            with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
                if im.size != (width, height):
                    raise CodecError(f"the PNG is {im.size[0]}x{im.size[1]}, the model takes {width}x{height}")
                return np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as exc:
            raise CodecError(f"the PNG does not decode: {exc}") from None
    raise CodecError("neither a JPEG nor a PNG image (frame codecs send jpeg or png)")


def encode_payload(split: int, frame: np.ndarray, boundary: tuple[np.ndarray, np.ndarray] | None,
                   codec: str | Codec) -> dict[str, np.ndarray]:
    """The wire tensors one request sends with ``codec``: at split 0 the frame (``frame``,
    uint8 ``[B, H, W, 3]``) raw or as a frame codec's images, else the ``boundary`` tensors
    ``(tokens, size)`` encoded. The one home of this rule (edge runtime, profile, calibrate)."""
    c = codec if isinstance(codec, Codec) else get_codec(codec)
    if split == 0:
        return {FRAME_CODED: encode_frame(frame, c)} if c.kind == "frame" else {"frame": np.ascontiguousarray(frame)}
    if boundary is None:
        raise CodecError("a split > 0 sends the boundary tensors: give (tokens, size)")
    return encode_tokens(boundary[0], boundary[1], c)


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
