"""Accuracy per (level, codec, split): calibrate's codec cells (issue 22 item 3), checked against
requests through the server's data plane, and the table's checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from janus_deploy.backends import load_runner, run_segments
from janus_deploy.calibrate.accuracy import AccuracyError, check_codec_cells, validate_accuracy
from janus_deploy.calibrate.codecs import calibrate_codecs, codec_splits
from janus_deploy.images import normalize, synthetic_frames
from janus_deploy.runtime.dataplane import DataPlane
from janus_deploy.wire import v2 as wire
from janus_deploy.wire.codecs import compress, encode_payload


@pytest.fixture(scope="module")
def measured(plan):
    manifest, _, engines = plan
    runner = load_runner(manifest, engines, threads=1)
    frames = synthetic_frames(6, 224, seed=11)
    m = manifest.model
    # labels: the unpruned level's own predictions, so lossless paths score 1.0
    labels = np.asarray(run_segments(runner, 0, 0, len(manifest.level(0)["segments"]),
                                     [normalize(frames, m["mean"], m["std"])])[0]).argmax(-1)
    base = {"format_version": 1, "kind": "janus-deploy/accuracy", "plan_hash": manifest.hash, "num_images": 6,
            "levels": [{"policy": lv["policy"], "alpha": lv["alpha"], "accuracy": 1.0, "agreement": 1.0}
                       for lv in manifest.levels]}
    codecs = ["fp16", "fp16-zstd", "int8", "int4", "int4-zstd", "jpeg85", "jpeg70", "png"]
    table = calibrate_codecs(copy.deepcopy(base), manifest, runner, frames, labels, codecs, batch_size=4)
    return manifest, runner, frames, labels, table


def _served_accuracy(manifest, runner, frames, labels, level, split, codec):
    """Top-1 of the same frames sent as real requests through the server's data plane."""
    dp = DataPlane(manifest, runner)
    m = manifest.model
    hits = 0
    for f, y in zip(frames, labels):
        if split == 0:
            boundary = None
        else:
            x = normalize(f[None], m["mean"], m["std"])
            boundary = tuple(run_segments(runner, level, 0, manifest.edge_segments(split), [x]))
        tensors = encode_payload(split, f[None], boundary, codec)
        body, hlen = wire.encode_request(tensors)
        enc = None
        if codec.endswith("-zstd"):
            body, enc = compress(body, codec), "zstd"
        out, out_hlen = dp.infer(wire.model_name(level, split), body, enc, str(hlen))
        _, outs = wire.parse_response(out, out_hlen)
        hits += int(outs["logits"].argmax(-1)[0] == y)
    return hits / len(frames)


def test_cells_exist_where_the_codec_loses_and_match_served_requests(measured):
    manifest, runner, frames, labels, table = measured
    n = manifest.num_blocks
    token_splits = [s for s in manifest.candidates if 1 <= s <= n]
    assert table["codecs"] == sorted(["fp16", "fp16-zstd", "int8", "int4", "int4-zstd", "jpeg85", "jpeg70"])
    for lv in table["levels"]:
        cells = lv["codecs"]
        assert "png" not in cells  # lossless: nothing to measure
        assert set(cells["jpeg85"]) == {"0"} and set(cells["int4"]) == {str(s) for s in token_splits}
        assert cells["fp16-zstd"] == cells["fp16"] and cells["int4-zstd"] == cells["int4"]
    assert codec_splits(manifest, "png") == [] and codec_splits(manifest, "jpeg70") == [0]
    # independent path: the same requests through the data plane (the server's decode)
    for level, split, codec in [(1, 0, "jpeg70"), (2, token_splits[0], "int4"), (0, token_splits[-1], "int8"),
                                (1, token_splits[1], "int4-zstd")]:
        cell = table["levels"][level]["codecs"][codec][str(split)]["accuracy"]
        assert cell == pytest.approx(_served_accuracy(manifest, runner, frames, labels, level, split, codec), abs=1e-6)


def test_the_table_checks_the_codec_dimension(measured):
    manifest, _, _, _, table = measured
    validate_accuracy(copy.deepcopy(table))
    check_codec_cells(table, manifest.candidates, manifest.num_blocks)
    bad = copy.deepcopy(table)
    bad["levels"][0]["codecs"]["jpeg85"]["3"] = {"accuracy": 0.5}
    with pytest.raises(AccuracyError, match="frame codec has a cell at split 0 only"):
        validate_accuracy(bad)
    bad = copy.deepcopy(table)
    bad["levels"][0]["codecs"]["int9"] = {"1": {"accuracy": 0.5}}
    with pytest.raises(AccuracyError, match="unknown codec 'int9'"):
        validate_accuracy(bad)
    with pytest.raises(AccuracyError, match="not this plan's"):
        check_codec_cells(table, [0, manifest.candidates[-1]], manifest.num_blocks)
    old = copy.deepcopy(table)  # an old table (no codec dimension) still loads
    for lv in old["levels"]:
        del lv["codecs"]
    del old["codecs"]
    validate_accuracy(old)
