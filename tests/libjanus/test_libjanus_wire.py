"""libjanus's V2 wire code against janus_deploy.wire: request bodies byte for byte (the frame at
split 0, the boundary tensors with every codec, numpy's float16 rounding and int8 quantisation),
responses decoded to the same arrays, malformed responses refused by both."""

from __future__ import annotations

import ctypes as C
import json

import numpy as np
import pytest
from libjanus_support import DTYPES, Error, Lib, Output, Tensor, ensure_built

from janus_deploy.wire.codecs import encode_tokens
from janus_deploy.wire.v2 import WireError, encode_request, encode_response, parse_response


@pytest.fixture(scope="module")
def lib():
    ensure_built()
    return Lib()


def c_encode(fn, *args) -> tuple[bytes, int]:
    need, hl, err = C.c_size_t(), C.c_size_t(), Error()
    rc = fn(*args, None, 0, C.byref(need), C.byref(hl), C.byref(err))
    assert rc == 8, err.message  # JANUS_E_NOSPACE: the size query
    buf = C.create_string_buffer(need.value)
    rc = fn(*args, buf, need.value, C.byref(need), C.byref(hl), C.byref(err))
    assert rc == 0, err.message
    return buf.raw[: need.value], hl.value


def test_frame_body_is_the_edge_runtimes(lib):
    rng = np.random.default_rng(0)
    for h, w, rid in ((224, 224, "0"), (64, 48, "17"), (3, 5, None), (8, 8, 'id "quoted" \\ é ✓ 😀\n')):
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want, want_hl = encode_request({"frame": np.ascontiguousarray(frame[None])}, request_id=rid)
        got, hl = c_encode(lib.lib.janus_v2_encode_frame, frame.tobytes(), h, w, None if rid is None else rid.encode())
        assert (got, hl) == (want, want_hl)


def special_floats(rng, n):
    """float32 values with every exponent, subnormals, ties of the float16 rounding, overflow."""
    bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = np.where(np.isfinite(x), x, np.float32(1.0))
    ties = (np.arange(n, dtype=np.float32) % 2048 + 0.5).astype(np.float32) * np.float32(2.0 ** -24)
    extra = np.array([0.0, -0.0, 65504, 65519.99, 65520, -65520, 6e-8, 3e-8, 2.98e-8, 1e-45, 1.0 + 2**-11,
                      1.0 + 3 * 2**-11], dtype=np.float32)
    return np.concatenate([x, ties, extra]).astype(np.float32)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("codec", ["fp32", "fp16", "fp16-zstd", "int8"])
def test_token_bodies_match_the_codecs(lib, codec):
    rng = np.random.default_rng(1)
    shapes = [(145, 192), (1, 1), (7, 1024)]
    for x, d in shapes:
        tokens = (rng.standard_normal((1, x, d)) * rng.choice([1e-3, 1.0, 50.0], (1, x, 1))).astype(np.float32)
        if x > 2:
            tokens[0, 1] = 0.0  # an all-zero token: int8 scale 1
            tokens[0, 2, 0] = 1e4
        size = rng.integers(1, 9, (1, x, 1)).astype(np.float32)
        want, want_hl = encode_request(encode_tokens(tokens, size, codec), request_id="5")
        got, hl = c_encode(lib.lib.janus_v2_encode_tokens, codec.encode(), tokens.ctypes.data, size.ctypes.data, x, d,
                           b"5")
        assert hl == want_hl and got[:hl] == want[:hl]
        assert got == want, f"{codec} [{x}, {d}]: tensor bytes differ"
    # numpy's float16 rounding on every kind of float32 (one long token row)
    vals = special_floats(rng, 200_000)
    tokens = vals.reshape(1, 1, -1)
    size = np.ones((1, 1, 1), np.float32)
    want, _ = encode_request(encode_tokens(tokens, size, codec), request_id=None)
    got, _ = c_encode(lib.lib.janus_v2_encode_tokens, codec.encode(), tokens.ctypes.data, size.ctypes.data, 1,
                      tokens.shape[2], None)
    assert got == want


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_fp16_helpers(lib):
    vals = special_floats(np.random.default_rng(2), 20_000)
    half = vals.astype(np.float16)
    f = lib.lib.janus_fp16_from_float
    assert [f(float(v)) for v in vals] == [int(b) for b in half.view(np.uint16)]
    back = lib.lib.janus_fp16_to_float
    assert all(back(int(b)) == float(v) for b, v in zip(half.view(np.uint16), half.astype(np.float32)))


def c_decode(lib, body: bytes, hl: int | None):
    h, err = C.c_void_p(), Error()
    rc = lib.lib.janus_v2_decode_response(body, len(body), -1 if hl is None else hl, C.byref(h), C.byref(err))
    if rc:
        return rc, err.message.decode()
    out = {}
    for i in range(lib.lib.janus_v2_response_num_outputs(h)):
        o: Output = lib.lib.janus_v2_response_output(h, i).contents
        dt = np.dtype(DTYPES[o.dtype].lower().replace("fp", "float").replace("bool", "bool_")
                      if o.dtype != 0 else np.bool_)
        raw = C.string_at(o.data, o.nbytes)
        out[o.name.decode()] = np.frombuffer(raw, dtype=dt).reshape([o.shape[k] for k in range(o.ndim)])
    meta = {"id": (lib.lib.janus_v2_response_id(h) or b"").decode() or None,
            "model": (lib.lib.janus_v2_response_model(h) or b"").decode() or None}
    v = C.c_double()
    meta["janus_server_ms"] = v.value if lib.lib.janus_v2_response_parameter(h, b"janus_server_ms", C.byref(v)) else None
    lib.lib.janus_v2_response_free(h)
    return 0, (out, meta)


def test_responses_decode_to_the_same_arrays(lib):
    rng = np.random.default_rng(3)
    arrays = {
        "logits": rng.standard_normal((1, 1000)).astype(np.float32),
        "half": rng.standard_normal((2, 3)).astype(np.float16),
        "i8": rng.integers(-128, 128, (4,), dtype=np.int8),
        "u16": rng.integers(0, 65536, (2, 2), dtype=np.uint16),
        "i64": np.array([-(2**63), 2**63 - 1, 0], dtype=np.int64),
        "u64": np.array([2**64 - 1, 1], dtype=np.uint64),
        "f64": np.array([[1e300, -1e-300]], dtype=np.float64),
        "flags": np.array([True, False, True]),
        "empty": np.zeros((0, 3), np.float32),
    }
    for binary in (True, False, {"logits": True, "half": False, "u64": True}):
        if binary is False:  # JSON data: a uint64 above 2**53 is not every JSON reader's business
            arrays["u64"] = np.array([2**53, 1], dtype=np.uint64)
        body, hl = encode_response("janus_L2_S5", arrays, binary=binary, request_id="9",
                                   parameters={"janus_server_ms": 3.25, "note": "x"})
        _, want = parse_response(body, hl)
        rc, got = c_decode(lib, body, hl)
        assert rc == 0, got
        outs, meta = got
        assert meta == {"id": "9", "model": "janus_L2_S5", "janus_server_ms": 3.25}
        assert list(outs) == list(want)
        for k in want:
            assert outs[k].dtype == want[k].dtype and outs[k].shape == want[k].shape, k
            assert outs[k].tobytes() == want[k].tobytes(), k


def test_malformed_responses_refused_by_both(lib):
    logits = np.arange(4, dtype=np.float32)
    good, hl = encode_response("m", {"logits": logits[None]})
    head = json.loads(good[:hl])
    cases = [
        (good[:-1], hl), (good + b"\0", hl), (good, hl + 1), (good, None), (b"", None), (b"[1]", None),
        (b'{"outputs": []}', None), (b'{"outputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}', None),
        (b'{"outputs": [{"name": "x", "datatype": "BF16", "shape": [1], "data": [1]}]}', None),
        (b'{"outputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": []}]}', None),
        (b'{"outputs": [{"name": "x", "datatype": "FP32", "shape": [true], "data": [1]}]}', None),
        (b'{"outputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}, '
         b'{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}', None),
        (b'{"outputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1], '
         b'"parameters": {"binary_data_size": 4}}]}', None),
        (b'{"outputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}', None),
        (b'{"outputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}', None),
        (b'{"outputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]', None),
        (b'\xff\xfe{}', None),
    ]
    bad_size = dict(head)
    bad_size["outputs"] = [dict(head["outputs"][0], parameters={"binary_data_size": 15})]
    hb = json.dumps(bad_size).encode()
    cases.append((hb + logits.tobytes(), len(hb)))
    for body, h in cases:
        with pytest.raises(WireError):
            parse_response(body, h)
        rc, msg = c_decode(lib, body, h)
        assert rc == 9 and msg, (body[:80], h)  # JANUS_E_WIRE with a message


def test_encode_request_generic(lib):
    """A request of several named tensors (the generic entry point)."""
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    b = np.array([1.5], dtype=np.float64)
    shapes = [(C.c_int64 * 2)(2, 3), (C.c_int64 * 1)(1)]
    ts = (Tensor * 2)(Tensor(b"a", 7, 2, shapes[0], a.ctypes.data, a.nbytes),
                      Tensor(b"b", 11, 1, shapes[1], b.ctypes.data, b.nbytes))
    outs = (C.c_char_p * 2)(b"logits", b"probs")
    for binary_out in (0, 1):
        got, hl = c_encode(lib.lib.janus_v2_encode_request, ts, 2, b"r1", outs, 2, binary_out)
        want, want_hl = encode_request({"a": a, "b": b}, outputs=("logits", "probs"), binary_output=bool(binary_out),
                                       request_id="r1")
        assert (got, hl) == (want, want_hl)
