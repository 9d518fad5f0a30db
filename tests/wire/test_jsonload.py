"""wire.jsonload: the same documents as json.loads, refused where json.loads refuses them, and
parsed in slices that let other threads run."""

from __future__ import annotations

import json
import random
import threading
import time

import numpy as np
import pytest

from janus_deploy.wire import jsonload as J
from janus_deploy.wire.v2 import json_values


def plain(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [plain(v) for v in x]
    return x


def documents():
    rng = random.Random(3)
    yield {"inputs": [{"name": "t", "datatype": "FP32", "shape": [1, 20_000], "data": [rng.random() for _ in range(20_000)]}]}
    yield {"inputs": [{"name": "t", "data": [[rng.randint(-9, 9) for _ in range(300)] for _ in range(50)]}]}
    yield {"s": "[1,2," + "3," * 2000 + "4]", "data": [1] * 5000, "shape": list(range(2000)), "x": [[], {}, None, True]}
    yield {"data": [2 ** 70] * 300 + [1] * 300, "id": "\u00e9\x00\n\"\\", "nested": [[[1.5e300, -0.0, 1e-300] * 200]]}
    yield {"data": [" 1", "2"] * 400, "w": [1, 2, 3]}
    yield [0.5] * 20_000  # a list longer than one slice at the top


@pytest.mark.parametrize("doc", list(documents()), ids=range(6))
def test_same_result_as_json_loads(doc):
    for text in (json.dumps(doc), json.dumps(doc, indent=2), json.dumps(doc, separators=(",", ":"))):
        for raw in (text, text.encode(), text.encode("utf-16"), bytearray(text.encode())):
            assert plain(J.loads(raw)) == json.loads(raw)


def test_long_number_lists_under_data_are_arrays_elsewhere_lists():
    got = J.loads(json.dumps({"data": list(range(1000)), "shape": list(range(1000)), "rows": {"data": [[0.5] * 300] * 3}}))
    assert isinstance(got["data"], np.ndarray) and got["data"].dtype == np.int64
    assert isinstance(got["shape"], list)
    assert all(isinstance(r, np.ndarray) for r in got["rows"]["data"])


@pytest.mark.parametrize("bad", [
    "[" + "1," * 40_000 + "]",  # trailing comma, across slices
    "[" + ",1" * 40_000 + "]",
    "[" + "1," * 20_000 + ",1" * 20_000 + "]",
    "[" + "1 2," * 20_000 + "1]",
    "[" + "01," * 20_000 + "1]",
    "[" + "+1," * 20_000 + "1]",
    "[" + "1e," * 20_000 + "1]",
    "[" + "1," * 20_000 + "1",
    "[" + ",".join(["1"] * (J.CHUNK // 2 + 10)) + ",]",  # a slice boundary right at the trailing comma
])
def test_refuses_what_json_refuses(bad):
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(J.JsonError):
        J.loads(bad)


def test_bounded_structure_depth_and_numbers():
    with pytest.raises(J.JsonError) as e:
        J.loads(json.dumps({"s": "x" * (J.STRUCTURE_LIMIT + 10)}))
    assert e.value.kind == "too_large"
    with pytest.raises(J.JsonError) as e:
        J.loads("[" + "[]," * 200_000 + "[]]")
    assert e.value.kind == "too_large"
    with pytest.raises(J.JsonError) as e:
        J.loads("[" * 50_000 + "]" * 50_000)
    assert e.value.kind == "depth"
    with pytest.raises(J.JsonError) as e:
        J.loads("[" + "7" * 20_000 + "]")
    assert e.value.kind == "number"
    with pytest.raises(J.JsonError) as e:
        J.loads("[" + "1" * (J.CHUNK + J.MAX_NUMBER + 10) + ",1]")
    assert e.value.kind == "number"


def test_json_values_never_wraps_integers():
    assert json_values(np.array([0, 255]), np.dtype(np.uint8)).tolist() == [0, 255]
    for bad in (np.array([300]), np.array([-1.0]), [256], np.array([np.nan])):
        with pytest.raises((OverflowError, ValueError)):
            json_values(bad, np.dtype(np.uint8))
    assert json_values([[1.5, 2.5]], np.dtype(np.float32)).dtype == np.float32


def test_other_threads_run_while_a_large_document_parses():
    """json.loads holds the GIL from start to end; loads lets a waiting thread in between slices."""
    doc = ('{"data":[' + ",".join(["7"] * 1_500_000) + "]}").encode()

    def gaps(fn):
        """(longest time the main thread could not run while fn parsed, parse time)"""
        span, wakes = {}, []

        def work():
            time.sleep(0.05)
            span["s"] = time.perf_counter()
            fn(doc)
            span["e"] = time.perf_counter()

        t = threading.Thread(target=work)
        t.start()
        while t.is_alive():
            time.sleep(0.001)
            wakes.append(time.perf_counter())
        t.join()
        inside = [span["s"]] + [w for w in wakes if span["s"] < w < span["e"]] + [span["e"]]
        return max(b - a for a, b in zip(inside, inside[1:])), span["e"] - span["s"]

    plain_gap, plain_s = gaps(lambda d: json.loads(d.decode()))
    sliced_gap, sliced_s = gaps(J.loads)
    assert plain_gap > 0.8 * plain_s  # one hold, start to end
    assert sliced_gap < 0.25 * sliced_s and sliced_gap < plain_gap / 2, (sliced_gap, sliced_s, plain_gap)
