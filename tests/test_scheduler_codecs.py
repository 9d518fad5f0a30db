"""The scheduler's codec dimension (issue 22 item 4): (level, split, codec) per request.

The expectation is a brute force over every (level, split, codec) option written here from the
cost model's definition (docs/scheduler.md), not the scheduler's arrays."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from janus_deploy.profile.table import profile_from_dict, profile_from_linear
from janus_deploy.schedule.scheduler import Scheduler, SchedulerError

MODEL = {"name": "vit_tiny", "num_blocks": 12, "embed_dim": 192, "num_tokens": 197, "num_prefix_tokens": 1,
         "img_size": 224}
CANDS = [0, 1, 2, 3, 5, 8, 12, 13]
LEVELS = [("exponential", a) for a in (0.0, 0.12, 0.24, 0.36, 0.48)] + [("constant", 8.0)]
JPEG = {"jpeg95": (40_000, 1.5, 0.8), "jpeg85": (18_000, 1.2, 0.6), "jpeg70": (11_000, 1.1, 0.5)}


def _with_frame_codecs(prof, side: str):
    d = copy.deepcopy(prof.to_dict())
    for lv in d["levels"]:
        for c, (b, enc, dec) in JPEG.items():
            lv["payload"][c] = {"0": {"bytes": b, "encode_ms": enc if side == "edge" else 0.0,
                                      "decode_ms": dec if side == "cloud" else 0.0}}
        lv.pop("slower_than", None)
    for c in JPEG:
        d["codecs"][c] = {"lossless": False, "top1_agreement": None}
    return profile_from_dict(json.loads(json.dumps(d)))


def make_profiles():
    """(edge, cloud): linear profiles of a ViT-Ti-sized model with fp32/fp16/int8/int4 and hand-set JPEG payloads."""
    kw = dict(codecs=("fp32", "fp16", "int8", "int4"), default_codec="fp16")
    edge = profile_from_linear(MODEL, CANDS, LEVELS, 0.5, 0.04, device={"name": "edge"}, **kw)
    cloud = profile_from_linear(MODEL, CANDS, LEVELS, 0.05, 0.004, device={"name": "cloud"}, **kw)
    return _with_frame_codecs(edge, "edge"), _with_frame_codecs(cloud, "cloud")


@pytest.fixture(scope="module")
def profiles():
    return make_profiles()


def _table(rng, with_cells=True):
    """Accuracy per level falling with α, and per (level, codec, split) cells a bit below it."""
    levels = []
    for i, (pol, a) in enumerate(LEVELS):
        base = round(0.9 - 0.05 * i, 6)
        lv = {"policy": pol, "alpha": a, "accuracy": base, "agreement": 1.0}
        if with_cells:
            cells = {}
            for c in ("fp16", "int8", "int4"):
                cells[c] = {str(s): {"accuracy": round(base - rng.uniform(0, 0.03 if c == "int4" else 0.004), 6)}
                            for s in CANDS[1:-1]}
                cells[c]["0"] = {"accuracy": base}
            for c in JPEG:
                cells[c] = {"0": {"accuracy": round(base - rng.uniform(0, 0.02), 6)}}
            lv["codecs"] = cells
        levels.append(lv)
    return {"format_version": 1, "kind": "janus-deploy/accuracy", "plan_hash": None, "levels": levels,
            "codecs": ["fp16", "int8", "int4", *JPEG] if with_cells else None}


def _brute(edge, cloud, acc_table, codecs, bw, rtt, sla, margin):
    """Max accuracy within SLA·(1 − margin), ties to lower latency, then to the first option in
    (level by α, split, codec order); nothing fits: the fastest."""
    n = edge.num_blocks
    acc_level = {(lv["policy"], lv["alpha"]): lv["accuracy"] for lv in acc_table["levels"]}
    cells = {(lv["policy"], lv["alpha"]): lv.get("codecs", {}) for lv in acc_table["levels"]}
    best, fastest = None, None
    for li in edge.levels_of("exponential"):
        lv = edge.levels[li]
        cj = cloud.level_index(lv.policy, lv.alpha)
        for s in CANDS:
            raw_seen = False
            for c in (codecs if s <= n else [None]):
                if c is not None and c in JPEG and s != 0:
                    continue
                if s == 0 and c not in JPEG:
                    if raw_seen:  # token codecs share the raw frame's option
                        continue
                    raw_seen = True
                pe = edge.payload(li, s, c or "fp16")
                pc = cloud.payload(cj, s, c or "fp16")
                lat = edge.head_ms(li, s) + pe.encode_ms + pc.decode_ms + cloud.tail_ms(cj, s)
                lat += (pe.bytes * 8 / 1e3 / bw) + (rtt if s <= n else 0.0)
                a = acc_level[(lv.policy, lv.alpha)]
                if c is not None and str(s) in cells[(lv.policy, lv.alpha)].get(c, {}):
                    a = cells[(lv.policy, lv.alpha)][c][str(s)]["accuracy"]
                key = (-a, lat)
                if lat <= sla * (1 - margin) and (best is None or key < best[0]):
                    best = (key, li, s, c)
                if fastest is None or lat < fastest[0]:
                    fastest = (lat, li, s, c)
    if best is not None:
        return best[1], best[2], best[3]
    return fastest[1], fastest[2], fastest[3]


def test_decisions_match_a_brute_force_over_level_split_codec(profiles):
    edge, cloud = profiles
    rng = np.random.default_rng(22)
    codecs = ["fp16", "int8", "int4", "jpeg95", "jpeg85", "jpeg70"]
    table = _table(rng)
    sched = Scheduler(edge, cloud, table, codecs=codecs, sla_ms=100.0)
    chosen = set()
    for _ in range(400):
        bw, rtt, sla, margin = rng.uniform(0.5, 200), rng.uniform(0, 40), rng.uniform(20, 400), rng.uniform(0, 0.3)
        sched.sla_ms = sla
        d = sched.decide(bw, rtt, margin)
        want = _brute(edge, cloud, table, codecs, bw, rtt, sla, margin)
        assert (d.level_index, d.split, d.codec) == want, (bw, rtt, sla, margin)
        assert abs(d.predicted_ms - sched.evaluate(d.level_index, d.split, bw, rtt, codec=d.codec).predicted_ms
                   - (0 if d.split <= 12 else 0)) < 1e-9
        chosen.add(d.codec)
    assert {"int4", "jpeg70"} & chosen and None in chosen  # the dimension is used, device-only too


def test_one_codec_decides_as_without_the_dimension(profiles):
    edge, cloud = profiles
    rng = np.random.default_rng(3)
    table = _table(rng, with_cells=False)
    for codec in ("fp16", "int8"):
        plain = Scheduler(edge, cloud, table, codec=codec, sla_ms=150.0)
        one = Scheduler(edge, cloud, table, codec=codec, sla_ms=150.0, codecs=[codec])
        for _ in range(200):
            bw, rtt, margin = rng.uniform(0, 100), rng.uniform(0, 30), rng.uniform(0, 0.2)
            a, b = plain.decide(bw, rtt, margin), one.decide(bw, rtt, margin)
            assert a.to_dict() == b.to_dict()
            assert a.codec == (codec if a.split <= 12 else None)


def test_codec_cells_change_the_choice(profiles):
    """Same latencies: a table that measured int4's loss as large keeps int4 unused at a
    bandwidth where an equal-loss table picks it."""
    edge, cloud = profiles
    rng = np.random.default_rng(0)
    lossy = _table(rng)
    free = copy.deepcopy(lossy)
    for lv in free["levels"]:
        for c in ("fp16", "int8", "int4", *JPEG):
            for cell in lv["codecs"][c].values():
                cell["accuracy"] = lv["accuracy"]
    for lv in lossy["levels"]:
        for cell in lv["codecs"]["int4"].values():
            cell["accuracy"] = lv["accuracy"] - 0.5  # below every level device-only
    codecs = ["fp16", "int4"]
    picks_free = {Scheduler(edge, cloud, free, codecs=codecs, sla_ms=60).decide(bw, 5).codec for bw in (2, 5, 10, 20)}
    picks_lossy = {Scheduler(edge, cloud, lossy, codecs=codecs, sla_ms=60).decide(bw, 5).codec for bw in (2, 5, 10, 20)}
    assert "int4" in picks_free and "int4" not in picks_lossy


def test_codec_mistakes(profiles):
    edge, cloud = profiles
    table = _table(np.random.default_rng(1), with_cells=False)
    with pytest.raises(SchedulerError, match="no cells for codec.*int4.*calibrate --codecs"):
        Scheduler(edge, cloud, table, codecs=["fp16", "int4"])
    with pytest.raises(SchedulerError, match="sends frames at split 0 only"):
        Scheduler(edge, cloud, None, codec="jpeg85")
    with pytest.raises(SchedulerError, match="not in the profile"):
        Scheduler(edge, cloud, None, codecs=["fp16", "int2"])
    s = Scheduler(edge, cloud, None, codecs=["fp16", "jpeg85"])
    with pytest.raises(SchedulerError, match="no option at split 3"):  # a frame codec at a token split
        s.evaluate(0, 3, 10.0, codec="jpeg85")
    assert s.codec == "fp16" and Scheduler(edge, cloud, None, codecs=["jpeg85", "int8"]).codec == "int8"


def test_cloud_only_baseline_with_a_frame_codec(profiles):
    edge, cloud = profiles
    s = Scheduler(edge, cloud, None)
    raw = s.baseline("cloud-only", 10.0, 5.0)
    jpg = s.baseline("cloud-only", 10.0, 5.0, codec="jpeg85")
    assert raw.bytes == 3 * 224 * 224 and jpg.bytes == JPEG["jpeg85"][0] and jpg.codec == "jpeg85"
    assert jpg.predicted_ms < raw.predicted_ms
    assert jpg.breakdown["encode_ms"] == JPEG["jpeg85"][1] and jpg.breakdown["decode_ms"] == JPEG["jpeg85"][2]


def test_codec_cells_are_checked_against_the_plan():
    kw = dict(codecs=("fp16", "int4"), default_codec="fp16", plan_hash="ab" * 32)
    edge = profile_from_linear(MODEL, CANDS, LEVELS, 0.5, 0.04, **kw)
    cloud = profile_from_linear(MODEL, CANDS, LEVELS, 0.05, 0.004, **kw)
    table = _table(np.random.default_rng(4))
    for lv in table["levels"]:
        lv["codecs"] = {c: v for c, v in lv["codecs"].items() if c in ("fp16", "int4")}
    with pytest.raises(SchedulerError, match="codec cells carry no plan_hash"):
        Scheduler(edge, cloud, table, codecs=["fp16", "int4"])
    table["plan_hash"] = "cd" * 32
    with pytest.raises(SchedulerError, match="made for plan cdcd"):
        Scheduler(edge, cloud, table, codecs=["fp16", "int4"])
    table["plan_hash"] = "ab" * 32
    Scheduler(edge, cloud, table, codecs=["fp16", "int4"])
    table["levels"][0]["codecs"]["int4"]["4"] = {"accuracy": 0.5}  # 4 is not a candidate split
    with pytest.raises(SchedulerError, match=r"splits \[4\] that are not this plan's"):
        Scheduler(edge, cloud, table, codecs=["fp16", "int4"])


def test_a_codec_measured_above_the_lossless_path_is_not_preferred(profiles):
    """Sampling noise: a lossy cell above its level's accuracy counts as the level's, so with
    plenty of bandwidth the raw frame (lossless) is not traded for a noisy JPEG 'gain'."""
    edge, cloud = profiles
    table = _table(np.random.default_rng(5))
    for lv in table["levels"]:
        lv["codecs"]["jpeg70"]["0"]["accuracy"] = min(1.0, lv["accuracy"] + 0.05)
    s = Scheduler(edge, cloud, table, codecs=["fp16", "jpeg70"], sla_ms=1000.0)
    d = s.decide(1000.0, 1.0)
    assert d.accuracy == table["levels"][0]["accuracy"]
    assert (d.split, d.codec) != (0, "jpeg70") or d.predicted_ms <= s.evaluate(d.level_index, 0, 1000.0, 1.0).predicted_ms


def test_schedule_cli_codecs(tmp_path):
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app
    from janus_deploy.profile.table import save_profile

    edge, cloud = make_profiles()
    e, c = save_profile(edge, tmp_path / "e.json"), save_profile(cloud, tmp_path / "c.json")
    args = ["schedule", "--profile", str(e), "--cloud-profile", str(c), "--sla", "100", "--rtt", "5", "--json"]
    r = CliRunner().invoke(app, [*args, "--bandwidth", "4", "--codecs", "fp16,jpeg70"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    want = Scheduler(edge, cloud, None, codecs=["fp16", "jpeg70"], sla_ms=100).decide(4.0, 5.0, 0.0)
    assert (out["split"], out["codec"], out["bytes"]) == (want.split, want.codec, want.bytes)
    r = CliRunner().invoke(app, [*args, "--bandwidth", "4", "--codecs", "fp16,jpeg50"])
    assert r.exit_code == 2 and "unknown codec(s) jpeg50" in r.output
