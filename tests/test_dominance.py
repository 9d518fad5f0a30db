"""Levels that do not pay: the profile's slower-than-lighter flags and the scheduler's skip, on the
hand-written plan of tests/sched_fixtures.py with the edge made slower at α = 0.5.

Hand-computed (levels: 0 = α 0 [9,9,9,9], 1 = α 0.5 [9,7,6,5], 2 = α 1 [9,5,3,2], 3 = r1 [9,8,7,6];
fewer merges = at least as many tokens after every block):

edge head_ms        s=0  1    2    3    4
  α 0               0    100  200  300  310
  α 0.5 (slowed)    0    110  210  305  315
  α 1               0    100  150  190  195
  r1                0    100  190  270  280

* α 0.5 has fewer merges than α 0 and r1 and is slower than both at s = 1..4 (device only too);
  α 1 (lighter: α 0, α 0.5, r1) and r1 (lighter: α 0) are nowhere slower; α 0 has no lighter level.
* Scheduler, fixed ms = edge head + cloud tail (no codec time), fp16 bytes 10·x (frame 48 at s=0):
    α 0:   [40, 130, 220, 310, 310]  bytes [48, 90, 90, 90, 0]
    α 0.5: [35, 135, 225, 313, 315]  bytes [48, 70, 60, 50, 0]
    α 1:   [30, 120, 160, 195, 195]  bytes [48, 50, 30, 20, 0]
  Without an accuracy table a level may only be beaten by one with fewer merges: α 0.5 loses to
  α 0 only at s = 4 (310 < 315 ms, both send nothing); at s = 1..3 α 0 sends more bytes, at s = 0
  it is slower. With equal accuracies α 1 beats α 0 and α 0.5 at every split (faster, no more
  bytes): both are skipped entirely.
"""

import math

import pytest

from janus_deploy.profile.dominance import SlowerThan, fewer_merges
from janus_deploy.profile.table import ProfileError, profile_from_dict
from janus_deploy.schedule.scheduler import Scheduler
from tests.sched_fixtures import accuracy_table, profile_dict

SLOWED = [0.0, 110.0, 210.0, 305.0, 315.0]


def _edge_dict():
    d = profile_dict("edge")
    d["levels"][1]["head_ms"] = {str(s): v for s, v in enumerate(SLOWED)}
    return d


def _profiles():
    return profile_from_dict(_edge_dict()), profile_from_dict(profile_dict("cloud"))


def test_fewer_merges():
    assert fewer_merges([9, 9, 9, 9], [9, 7, 6, 5]) and fewer_merges([9, 8, 7, 6], [9, 7, 6, 5])
    assert not fewer_merges([9, 7, 6, 5], [9, 7, 6, 5])  # the same schedule
    assert not fewer_merges([9, 8, 7, 6], [9, 9, 9, 9]) and not fewer_merges([9, 5, 3, 2], [9, 7, 6, 5])


def test_profile_flags_levels_slower_than_lighter_ones():
    edge, cloud = _profiles()
    flags = edge.slower_than_lighter()
    both = (1, 2, 3, 4)
    assert flags == [[], [SlowerThan("exponential", 0.0, True, both, ()), SlowerThan("constant", 1.0, True, both, ())],
                     [], []]
    assert cloud.slower_than_lighter() == [[], [], [], []]  # the fixture's cloud tails all shrink with merging


def test_flags_are_saved_checked_and_optional():
    edge, _ = _profiles()
    saved = edge.to_dict()
    assert [("slower_than" in lv) for lv in saved["levels"]] == [False, True, False, False]
    assert saved["levels"][1]["slower_than"][0] == {"policy": "exponential", "alpha": 0.0, "total": True,
                                                    "head": [1, 2, 3, 4], "tail": []}
    assert profile_from_dict(saved).to_dict() == saved  # round trip
    saved["levels"][1]["slower_than"][0]["head"] = [1]
    with pytest.raises(ProfileError, match=r"levels\[1\].slower_than disagrees"):
        profile_from_dict(saved)
    # a profile written before the flags existed (the fixture has none) loads and gets them computed
    assert "slower_than" not in str(_edge_dict()) and profile_from_dict(_edge_dict()).slower_than_lighter()[1]


def test_scheduler_skips_without_accuracy_table():
    edge, cloud = _profiles()
    s = Scheduler(edge, cloud, sla_ms=1000.0)
    assert s.skipped == {1: [4]} and s.skipped_levels == []


def test_scheduler_skips_levels_beaten_at_equal_accuracy():
    edge, cloud = _profiles()
    acc = accuracy_table({("exponential", 0.0): 0.9, ("exponential", 0.5): 0.9, ("exponential", 1.0): 0.9})
    s = Scheduler(edge, cloud, accuracy=acc, sla_ms=1000.0)
    assert s.skipped == {0: [0, 1, 2, 3, 4], 1: [0, 1, 2, 3, 4]} and s.skipped_levels == [0, 1]
    for bw in (0.0, 0.01, 1.0, 100.0, math.inf):
        assert s.decide(bw).alpha == 1.0


def test_more_accurate_levels_are_not_skipped():
    edge, cloud = _profiles()
    acc = accuracy_table({("exponential", 0.0): 0.95, ("exponential", 0.5): 0.9, ("exponential", 1.0): 0.8})
    s = Scheduler(edge, cloud, accuracy=acc, sla_ms=1000.0)
    assert s.skipped == {1: [4]}
    assert Scheduler(edge, cloud, mode="paper", sla_ms=1000.0).skipped == {}  # Algorithm 1 stays exact


@pytest.mark.parametrize("sla", [40.0, 130.0, 200.0, 320.0, 1000.0])
def test_decisions_never_take_a_skipped_option(sla):
    edge, cloud = _profiles()
    for acc in (None, accuracy_table({("exponential", 0.0): 0.9, ("exponential", 0.5): 0.9,
                                      ("exponential", 1.0): 0.8})):
        s = Scheduler(edge, cloud, accuracy=acc, sla_ms=sla)
        for bw in (0.0, 0.001, 0.01, 0.1, 1.0, 10.0, math.inf):
            for rtt in (0.0, 20.0):
                d = s.decide(bw, rtt)
                if d.meets_sla:
                    assert d.split not in s.skipped.get(d.level_index, [])


def test_inspect_prints_why(tmp_path):
    """`inspect --profile` names the level that does not pay and what is slower (a linear profile
    of a 2-block plan with level 1's latencies made 1.5x slower by hand)."""
    import json

    from typer.testing import CliRunner

    from janus_deploy.cli.main import app
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan

    plan = tmp_path / "plan"
    export_plan(ModelSpec("vit_tiny_patch16_224", {"depth": 2}), plan, ExportConfig(k=1, levels=3))
    prof = tmp_path / "p.json"
    cli = CliRunner()
    assert cli.invoke(app, ["profile", str(plan), "--out", str(prof), "--device-name", "dev",
                            "--from-linear", "0.5,0.01"]).exit_code == 0
    d = json.loads(prof.read_text())
    slow = d["levels"][1]
    for key in ("head_ms", "tail_ms"):
        slow[key] = {s: 1.5 * v for s, v in slow[key].items()}
    prof.write_text(json.dumps(d))
    r = cli.invoke(app, ["inspect", str(plan), "--profile", str(prof)])
    assert r.exit_code == 0, r.output
    alpha = d["levels"][1]["alpha"]
    assert f"{alpha:g} is slower than 0 (fewer merges): device-only" in " ".join(r.output.split())
    r = cli.invoke(app, ["inspect", str(plan), "--profile", str(prof), "--json"])
    levels = json.loads(r.output)["profile"]["levels"]
    assert [bool(lv["slower_than"]) for lv in levels] == [False, True, False]
    assert levels[1]["slower_than"][0]["alpha"] == 0.0 and levels[1]["slower_than"][0]["total"]
