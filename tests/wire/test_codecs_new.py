"""Frame codecs (JPEG through libjpeg-turbo, PNG) and the 4-bit token codec (issue 22 items 1-2)."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard

from janus_deploy.images import synthetic_frames
from janus_deploy.wire import codecs as C


@pytest.fixture(scope="module")
def frames():
    return synthetic_frames(3, 64, seed=5)


@pytest.mark.parametrize("codec", ["jpeg95", "jpeg85", "jpeg70"])
def test_jpeg_round_trip_is_close_and_smaller_at_lower_quality(frames, codec):
    coded = C.encode_frame(frames, codec)
    assert coded.dtype == np.uint8 and coded.shape[0] == 3
    assert coded[0, :2].tobytes() == b"\xff\xd8"  # JPEG SOI marker: a real JPEG
    back = C.decode_frame(coded, 64, 64)
    assert back.shape == frames.shape and back.dtype == np.uint8
    err = np.abs(back.astype(int) - frames.astype(int)).mean()
    assert 0 < err < 40  # lossy but the image survives


def test_jpeg_quality_orders_size_and_error(frames):
    sizes, errs = [], []
    for c in ("jpeg95", "jpeg85", "jpeg70"):
        coded = C.encode_frame(frames[:1], c)
        sizes.append(coded.shape[1])
        errs.append(np.abs(C.decode_frame(coded, 64, 64).astype(int) - frames[:1].astype(int)).mean())
    assert sizes[0] > sizes[1] > sizes[2]
    assert errs[0] < errs[1] <= errs[2] + 1e-9
    assert sizes[0] < frames[0].nbytes  # smaller than the raw frame


def test_png_is_lossless_and_rows_are_zero_padded(frames):
    coded = C.encode_frame(frames, "png")
    lengths = [len(C._encode_image(np.ascontiguousarray(f), C.get_codec("png"))) for f in frames]
    assert coded.shape[1] == max(lengths)
    np.testing.assert_array_equal(C.decode_frame(coded, 64, 64), frames)


def test_decode_frame_refuses_wrong_size_and_garbage(frames):
    coded = C.encode_frame(frames[:1], "jpeg85")
    with pytest.raises(C.CodecError, match=r"frame_coded\[0\].*64x64.*takes 32x32"):
        C.decode_frame(coded, 32, 32)
    big = C.encode_frame(np.zeros((1, 512, 512, 3), np.uint8), "png")  # a bomb-ish image: refused before decoding
    with pytest.raises(C.CodecError, match="512x512"):
        C.decode_frame(big, 64, 64)
    with pytest.raises(C.CodecError, match="neither a JPEG nor a PNG"):
        C.decode_frame(np.zeros((1, 100), np.uint8), 64, 64)
    broken = coded[:, :40].copy()
    with pytest.raises(C.CodecError, match="frame_coded"):
        C.decode_frame(broken, 64, 64)
    with pytest.raises(C.CodecError, match="not a frame codec"):
        C.encode_frame(frames, "int8")
    with pytest.raises(C.CodecError, match="not tokens"):
        C.encode_tokens(np.zeros((1, 2, 4), np.float32), np.ones((1, 2, 1), np.float32), "jpeg85")


def _tokens(seed=0, x=17, d=192):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((2, x, d)).astype(np.float32) * np.exp(rng.standard_normal((1, 1, d))).astype(np.float32)
    return t, rng.integers(1, 5, (2, x, 1)).astype(np.float32)


def test_int4_round_trip_error_is_within_half_a_step():
    t, s = _tokens()
    wire = C.encode_tokens(t, s, "int4")
    assert wire["tokens_q4"].dtype == np.uint8 and wire["tokens_q4"].shape == (2, 17, 96)
    assert wire["group_scale"].shape == (2, 17, 192 // 32)
    tok, size = C.decode_tokens(wire)
    np.testing.assert_array_equal(size, s)
    # independent expectation: per group of 32 channels, the step is max|x| / 7 (fp16-rounded)
    g = t.reshape(2, 17, 6, 32)
    step = (np.abs(g).max(-1) / 7.0).astype(np.float16).astype(np.float32)
    err = np.abs(tok.reshape(2, 17, 6, 32) - g).max(-1)
    assert (err <= step * 0.5 * 1.01 + 1e-6).all()
    # and it is not the identity: 4 bits lose information
    assert np.abs(tok - t).max() > 0


def test_int4_bytes_match_payload_bytes_and_zstd_helps():
    t, s = _tokens(1, x=33, d=768)
    wire = C.encode_tokens(t[:1], s[:1], "int4")
    body = b"".join(a.tobytes() for a in wire.values())
    assert len(body) == C.payload_bytes(33, 768, "int4") == 33 * (384 + 2 * 24 + 2)
    assert C.payload_bytes(33, 768, "int4") < 0.6 * C.payload_bytes(33, 768, "int8")
    assert len(C.compress(body, "int4-zstd")) < len(body)
    assert zstandard.ZstdDecompressor().decompress(C.compress(body, "int4-zstd")) == body


def test_int4_zero_group_and_odd_width():
    t = np.zeros((1, 2, 64), np.float32)
    tok, _ = C.decode_tokens(C.encode_tokens(t, np.ones((1, 2, 1), np.float32), "int4"))
    np.testing.assert_array_equal(tok, t)
    with pytest.raises(C.CodecError, match="even"):
        C.encode_tokens(np.zeros((1, 2, 5), np.float32), np.ones((1, 2, 1), np.float32), "int4")


def test_int4_decode_refuses_malformed():
    t, s = _tokens()
    wire = C.encode_tokens(t, s, "int4")
    with pytest.raises(C.CodecError, match="group_scale"):
        C.decode_tokens({"tokens_q4": wire["tokens_q4"], "size": wire["size"]})
    with pytest.raises(C.CodecError, match="do not divide"):
        C.decode_tokens({**wire, "group_scale": wire["group_scale"][..., :5]})


def test_encode_payload_is_the_one_rule(frames):
    t, s = _tokens()
    assert set(C.encode_payload(0, frames[:1], None, "int8")) == {"frame"}
    assert set(C.encode_payload(0, frames[:1], None, "jpeg85")) == {C.FRAME_CODED}
    assert set(C.encode_payload(3, frames[:1], (t, s), "int4")) == {"tokens_q4", "group_scale", "size"}
    with pytest.raises(C.CodecError):
        C.encode_payload(3, frames[:1], None, "fp16")
