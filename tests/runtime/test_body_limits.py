"""The V2 server's body rules as an object (runtime/limits.py BodyLimits), without FastAPI."""

from __future__ import annotations

import pytest

from janus_deploy.runtime.limits import BodyLimits
from janus_deploy.wire.v2 import WireError

L = BodyLimits(max_body=1000, max_json=100)


def status(fn, *args):
    with pytest.raises(WireError) as info:
        fn(*args)
    return info.value.status, str(info.value)


def test_json_limit_is_the_smaller_of_the_two():
    assert L.json_limit == 100 and BodyLimits(50, 100).json_limit == 50


def test_declared_lengths():
    assert L.declared(None, None, None, True) is None  # chunked: checked while streaming
    assert L.declared("1000", None, "10", False) == 1000  # binary tensors: only the JSON header is bounded
    assert L.declared("100", None, None, True) == 100
    assert L.declared("500", "zstd", None, True) == 500  # compressed JSON: checked after decompression


@pytest.mark.parametrize("args, code, fragment", [
    (("1001", None, None, False), 413, "--max-body-mb"),
    (("101", None, None, True), 413, "--max-json-mb"),
    (("101", "identity", None, True), 413, "--max-json-mb"),
    (("500", None, "101", False), 413, "--max-json-mb"),
    (("9" * 5000, None, None, False), 400, "Content-Length"),
    (("-1", None, None, False), 400, "Content-Length"),
    (("12a", None, None, False), 400, "Content-Length"),
    (("500", None, "9" * 5000, False), 400, "digits"),
    (("500", None, "x", False), 400, "integer"),
])
def test_declared_refusals(args, code, fragment):
    got, msg = status(L.declared, *args)
    assert got == code and fragment in msg, msg


def test_streamed_bodies():
    L.check_streamed(1000)
    assert status(L.check_streamed, 1001)[0] == 413
