"""Scheduler: Algorithm 1 (paper mode) and the janus-deploy mode on a hand-computed plan.

Costs in paper mode: comm = x_s · D_M · 8 / 1000 / B ms with D_M = 4·D = 16 bytes, i.e.
0.128·x/B ms; at B = 0.0064 Mbit/s that is 20·x ms. janus-deploy (fp16): comm = bytes·8/1000/B;
at B = 0.0008 Mbit/s that is 10 ms per byte (frame 48 B → 480 ms, tokens 10·x B → 100·x ms).
"""

from __future__ import annotations

import statistics
import time

import pytest
from sched_fixtures import accuracy_table, profiles

from janus_deploy.profile.table import load_preset
from janus_deploy.schedule.scheduler import Scheduler, SchedulerError


@pytest.fixture(scope="module")
def tiny():
    return profiles()


# ---------------------------------------------------------------- paper mode (Algorithm 1)
# At B = 0.0064 (comm = 20·x ms), L(α, s) = head + 20·x_s + tail:
#   α=0   : s0 180+40=220, s1 100+180+30=310, s2 200+180+20=400, s3 300+180+10=490, s4 310
#   α=0.5 : s0 180+35=215, s1 100+140+25=265, s2 180+120+15=315, s3 250+100+8=358, s4 255
#   α=1   : s0 180+30=210, s1 100+100+20=220, s2 150+60+10=220,  s3 190+40+5=235,  s4 195
@pytest.mark.parametrize("sla, alpha, split, latency, meets", [
    (230, 0.0, 0, 220, True),     # α=0 already fits at its best split (cloud only)
    (217, 0.5, 0, 215, True),     # α=0 misses (220), α=0.5 fits
    (200, 1.0, 4, 195, True),     # only α=1's device-only split fits
    (190, 1.0, 4, 195, False),    # nothing fits → αmax at its fastest split
])
def test_algorithm1_hand_computed(tiny, sla, alpha, split, latency, meets):
    d = Scheduler(*tiny, mode="paper", sla_ms=sla).decide(0.0064)
    assert (d.alpha, d.policy, d.split) == (alpha, "exponential", split)
    assert d.predicted_ms == pytest.approx(latency)
    assert d.meets_sla is meets


def test_algorithm1_sends_tokens_at_split0_and_ignores_rtt(tiny):
    # s = 0 costs x_0·D_M = 9·16 = 144 bytes (the paper's simplification), not the 48-byte frame
    d = Scheduler(*tiny, mode="paper", sla_ms=230).decide(0.0064, rtt_ms=500.0, margin=0.5)
    assert d.split == 0
    assert d.breakdown["comm_ms"] == pytest.approx(144 * 8 / 1000 / 0.0064)  # 180 ms
    assert d.breakdown["rtt_ms"] == 0.0
    assert d.bytes == 48  # what actually crosses the wire is the frame


def test_algorithm1_outage_only_device_only_is_finite(tiny):
    d = Scheduler(*tiny, mode="paper", sla_ms=300).decide(0.0)
    assert (d.alpha, d.split, d.predicted_ms) == (0.5, 4, 255.0)  # α=0 device-only is 310


# ---------------------------------------------------------------- janus-deploy mode
# At B = 0.0008 (fp16; 10 ms per byte):
#   α=0   : s0 480+40=520, s1..s3 ≥ 900, s4 310
#   α=0.5 : s0 480+35=515, s1 100+700+25=825, s2 180+600+15=795, s3 250+500+8=758, s4 255
#   α=1   : s0 510, s1 100+500+20=620, s2 150+300+10=460, s3 190+200+5=395, s4 195
def test_deploy_without_accuracy_takes_lowest_alpha(tiny):
    d = Scheduler(*tiny, sla_ms=300).decide(0.0008)
    assert (d.alpha, d.split, d.predicted_ms) == (0.5, 4, 255.0)


def test_deploy_prefers_higher_accuracy_over_lower_alpha(tiny):
    acc = accuracy_table({("exponential", 0.0): 0.80, ("exponential", 0.5): 0.70,
                          ("exponential", 1.0): 0.75, ("constant", 1.0): 0.99})
    d = Scheduler(*tiny, acc, sla_ms=300).decide(0.0008)
    # α=0 does not fit; of the two that do, α=1 is more accurate (the paper would take α=0.5);
    # the constant level (0.99) is never a Janus choice
    assert (d.alpha, d.policy, d.split, d.predicted_ms) == (1.0, "exponential", 4, 195.0)
    assert d.accuracy == 0.75
    paper = Scheduler(*tiny, acc, mode="paper", sla_ms=300).decide(0.0008)
    assert (paper.alpha, paper.split) == (0.5, 4)


def test_deploy_accuracy_tie_goes_to_lower_latency(tiny):
    acc = accuracy_table({("exponential", 0.0): 0.8, ("exponential", 0.5): 0.75,
                          ("exponential", 1.0): 0.75})
    d = Scheduler(*tiny, acc, sla_ms=300).decide(0.0008)
    assert (d.alpha, d.split, d.predicted_ms) == (1.0, 4, 195.0)  # 195 < 255


def test_deploy_charges_rtt_only_when_sending(tiny):
    # B = 1000 Mbit/s: comm of the 48-byte frame = 48·8/1000/1000 = 0.000384 ms
    sched = Scheduler(*tiny, sla_ms=100)
    d = sched.decide(1000.0, rtt_ms=50.0)
    assert (d.alpha, d.split) == (0.0, 0)
    assert d.breakdown["rtt_ms"] == 50.0
    assert d.predicted_ms == pytest.approx(40 + 50 + 0.000384)
    # rtt 60: α=0 needs 100.000384 > 100, α=0.5 needs 95.000384
    d = sched.decide(1000.0, rtt_ms=60.0)
    assert (d.alpha, d.split) == (0.5, 0)
    # a device-only choice pays no RTT: at an outage only s = 4 is finite
    d = Scheduler(*tiny, sla_ms=300).decide(0.0, rtt_ms=60.0)
    assert (d.alpha, d.split, d.predicted_ms, d.breakdown["rtt_ms"]) == (0.5, 4, 255.0, 0.0)


def test_deploy_margin_shrinks_budget(tiny):
    sched = Scheduler(*tiny, sla_ms=300)
    assert sched.decide(0.0008, margin=0.0).alpha == 0.5  # 255 <= 300
    d = sched.decide(0.0008, margin=0.2)  # budget 240: α=0.5 (255) no longer fits
    assert (d.alpha, d.split, d.predicted_ms, d.meets_sla) == (1.0, 4, 195.0, True)


def test_deploy_nothing_fits_returns_fastest(tiny):
    d = Scheduler(*tiny, sla_ms=150).decide(0.0008)
    assert (d.alpha, d.split, d.predicted_ms, d.meets_sla) == (1.0, 4, 195.0, False)


def test_deploy_codec_time_and_bytes():
    edge, cloud = profiles(enc_ms=2.0, dec_ms=3.0)
    d = Scheduler(edge, cloud, sla_ms=1000, codec="fp32").decide(0.0008)
    # α=0 fp32: s0 frame 48 B → 480 + 2 + 3 + 40 = 525; s4 (nothing sent, no codec) 310;
    # both fit 1000 at the same α, so the lower latency wins
    assert (d.alpha, d.split, d.predicted_ms) == (0.0, 4, 310.0)
    d = Scheduler(edge, cloud, sla_ms=1000, codec="fp32").decide(1.0)
    # at 1 Mbit/s the 48-byte frame takes 0.384 ms: 0.384 + 2 + 3 + 40 = 45.384
    assert (d.alpha, d.split, d.bytes) == (0.0, 0, 48)
    assert d.predicted_ms == pytest.approx(45.384)


# ---------------------------------------------------------------- baselines
def test_baselines_use_constant_level(tiny):
    s = Scheduler(*tiny, sla_ms=300)
    dev = s.baseline("device-only", 0.0008, rtt_ms=20)
    cloud = s.baseline("cloud-only", 0.0008, rtt_ms=20)
    assert (dev.policy, dev.alpha, dev.split, dev.predicted_ms) == ("constant", 1.0, 4, 280.0)
    assert (cloud.split, cloud.bytes) == (0, 48)
    assert cloud.predicted_ms == pytest.approx(480 + 20 + 38)
    assert s.baseline("mixed", 0.0008, rtt_ms=20).split == 4  # 280 < 538
    assert s.baseline("mixed", 1000.0, rtt_ms=20).split == 0  # 58.0004 < 280
    assert dev.label == "r1@4"


def test_errors(tiny):
    with pytest.raises(SchedulerError, match="mode"):
        Scheduler(*tiny, mode="fast")
    with pytest.raises(SchedulerError, match="SLA"):
        Scheduler(*tiny, sla_ms=0)
    with pytest.raises(SchedulerError, match="bandwidth"):
        Scheduler(*tiny).decide(float("nan"))
    with pytest.raises(SchedulerError, match="bandwidth"):
        Scheduler(*tiny).baseline("mixed", -1.0)
    with pytest.raises(SchedulerError, match="margin"):
        Scheduler(*tiny).decide(1.0, margin=1.5)
    with pytest.raises(SchedulerError, match="codec"):
        Scheduler(*tiny, codec="int4")
    edge, _ = tiny
    with pytest.raises(SchedulerError, match="cloud profile"):
        Scheduler(edge, load_preset("vit_base_patch16_224-v100"))


@pytest.mark.slow  # a wall-clock bound: outside the default run; tools/bench_scheduler.py prints the figure
def test_decide_is_fast_on_vit_large_preset():
    edge = load_preset("vit_large_patch16_384-jetson-orin-nano")
    cloud = load_preset("vit_large_patch16_384-v100")
    for mode in ("paper", "janus-deploy"):
        s = Scheduler(edge, cloud, mode=mode, sla_ms=300)
        assert len(s.janus_levels) == 30 and len(s.candidates) == 15
        times = []
        for i in range(2000):
            t0 = time.perf_counter()
            s.decide(5.0 + i % 90, 30.0)
            times.append(time.perf_counter() - t0)
        assert statistics.median(times) < 100e-6, mode  # ~10 µs on a laptop; generous for CI
