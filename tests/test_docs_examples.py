"""The examples in docs/manifest.md are what the exporter writes (issue 15): the level example's
token counts, reductions, segment shapes and payloads, the level-free example, and the table
that maps V2 split names (``janus_L{l}_S{s}``) to plan segment files (``L{l}_S{i}``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from janus_deploy import levels
from janus_deploy.model.load import ModelInfo
from janus_deploy.plan.export import payloads

DOC = Path(__file__).resolve().parents[1] / "docs" / "manifest.md"
# the documented settings: vit_tiny_patch16_224, k = 3, 8 exponential levels
INFO = ModelInfo(num_blocks=12, embed_dim=192, num_tokens=197, num_prefix_tokens=1, img_size=224, num_classes=1000,
                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
K, LEVELS = 3, 8


def json_blocks() -> list[str]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)
    return [re.sub(r"//[^\n]*", "", b) for b in blocks]


def test_level_example_is_what_the_exporter_computes():
    level = json.loads(json_blocks()[0])
    n, x0 = INFO.num_blocks, INFO.num_tokens
    grid = levels.level_grid(x0, n, "exponential", levels=LEVELS)
    assert level["alpha"] == grid[level["index"]]
    sched = levels.schedule("exponential", level["alpha"], x0, n, INFO.num_prefix_tokens)
    assert level["tokens"] == list(sched.tokens)
    assert level["reductions"] == list(sched.reductions)
    assert level["capped_blocks"] == list(sched.capped)
    cands = levels.candidate_splits(n, K)
    ranges = levels.segment_ranges(n, cands)
    seg = level["segments"][0]
    assert seg["blocks"] == list(ranges[seg["index"]]) and seg["file"] == f"L{level['index']:02d}_S00.onnx"
    x = sched.tokens[seg["blocks"][1]]
    assert seg["outputs"][0]["shape"] == ["batch", x, INFO.embed_dim]
    assert seg["outputs"][1]["shape"] == ["batch", x, 1]
    assert level["unsplit"]["outputs"][0]["shape"] == ["batch", INFO.num_classes]
    real = payloads(INFO, sched.tokens, cands)
    for s, p in level["payload"].items():
        assert {k: p[k] for k in ("elements", "bytes")} == {k: real[s][k] for k in ("elements", "bytes")}, s
        assert [t["shape"] for t in p["tensors"]] == [t["shape"] for t in real[s]["tensors"]], s


def test_level_free_example_matches_the_segments():
    text = json_blocks()[1]
    entry = json.loads("{" + text.strip() + "}")["level_free_segments"][0]
    ranges = levels.segment_ranges(INFO.num_blocks, levels.candidate_splits(INFO.num_blocks, K))
    first, last = ranges[entry["index"]]
    assert entry["blocks"] == [first, last] and entry["file"] == f"G_S{entry['index']:02d}.onnx"
    red = next(i for i in entry["inputs"] if i["name"] == "reductions")
    assert red["shape"] == [last - first + 1]


def test_split_to_segment_table():
    text = DOC.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| split point s") or
            line.startswith("| segment files the edge runs")]
    splits = [int(c) for c in rows[0].strip("|").split("|")[1:]]
    runs = [c.strip() for c in rows[1].strip("|").split("|")[1:]]
    n = INFO.num_blocks
    cands = levels.candidate_splits(n, K)
    assert splits == cands
    for s, cell in zip(splits, runs):
        count = levels.edge_segment_count(s, n, cands)
        numbers = [int(v) for v in re.findall(r"S(\d\d)", cell)]
        if count == 0:
            assert cell == "none"
        else:
            assert numbers[0] == 0 and numbers[-1] == count - 1, (s, cell)
