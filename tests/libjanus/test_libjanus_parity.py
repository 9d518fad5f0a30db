"""libjanus (C) against the Python scheduler on random cases: the same (level, split), the same
predicted latency (1e-9 relative; in practice bit for bit) and the same breakdown, bytes,
accuracy and verdict, over the ViT-L@384 and ViT-B presets (the measured profile's share is in
tests/runtime/test_libjanus_embed.py). `janus-decide` prints what `janus-deploy schedule --json`
prints, byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from libjanus_support import Lib, cases, compare, ensure_built, run_parity, vitb_accuracy
from typer.testing import CliRunner

from janus_deploy.cli.main import app
from janus_deploy.profile.table import resolve_profile
from janus_deploy.schedule.scheduler import Scheduler
from janus_deploy.schedule.table_file import build_table

VITL = ("vit_large_patch16_384-jetson-orin-nano", "vit_large_patch16_384-v100")
VITB = ("vit_base_patch16_224-jetson-orin-nano", "vit_base_patch16_224-v100")


@pytest.fixture(scope="module")
def lib():
    ensure_built()
    return Lib()


def test_parity_vit_large_384_presets(lib):
    edge, cloud = resolve_profile(VITL[0]), resolve_profile(VITL[1])
    total, exact = run_parity(lib, edge, cloud, None, 45_000, seed=1, codecs=["fp16", "fp32", "int8"])
    assert total == 45_000 and exact == total  # not only within 1e-9: bit for bit


def test_parity_vit_base_presets_with_accuracy_and_frame_override(lib):
    edge, cloud = resolve_profile(VITB[0]), resolve_profile(VITB[1])
    acc = vitb_accuracy(edge)
    total, exact = run_parity(lib, edge, cloud, acc, 25_000, seed=2, codecs=["fp16", "int8"])
    total2, exact2 = run_parity(lib, edge, cloud, None, 10_000, seed=3, codecs=["fp32"], frame_bytes=4 * 3 * 224 * 224)
    assert exact == total and exact2 == total2


def test_table_metadata(lib):
    edge, cloud = resolve_profile(VITL[0]), resolve_profile(VITL[1])
    t = lib.load_table(build_table(edge, cloud, sla_ms=250.0, codec="int8"))
    info = t.info()
    assert (info.num_levels, info.num_candidates, info.num_blocks) == (31, 15, 24)
    assert [info.candidates[i] for i in range(info.num_candidates)] == edge.candidates
    assert info.model_name.decode() == edge.model.name and info.has_names == 0
    const = edge.levels_of("constant")
    assert info.baseline_level == const[0]
    cfg = t.config()
    assert cfg.sla_ms == 250.0 and cfg.frame_bytes == -1 and cfg.margin == 0.1 and cfg.window == 5
    assert lib.lib.janus_table_codec(t.h, info.default_codec).decode() == "int8"
    t.close()


# ------------------------------------------------------------------------------ janus-decide


def decide_exe() -> str:
    exe = shutil.which("janus-decide", path=str(Path(sys.executable).parent))
    assert exe, "janus-decide is not on the venv's PATH (pip install -e . puts it there)"
    return exe


def schedule_json(sched: Scheduler, mode: str, bw: float, rtt: float, sla: float) -> dict:
    """What `janus-deploy schedule --json` prints for one case (cli/schedule_cmds.py)."""
    sched.sla_ms = sla
    d = sched.decide(bw, rtt_ms=rtt, margin=0.0)
    out = {"mode": mode, "sla_ms": sla, "bandwidth_mbps": bw, "rtt_ms": rtt, "codec": None, **d.to_dict()}
    out["codec"] = d.codec if mode == "janus-deploy" else None
    return out


def test_janus_decide_prints_what_schedule_prints(lib, tmp_path):
    edge, cloud = resolve_profile(VITL[0]), resolve_profile(VITL[1])
    table = tmp_path / "vitl.jdt"
    r = CliRunner().invoke(app, ["export-table", "--profile", VITL[0], "--cloud-profile", VITL[1], "--out", str(table)])
    assert r.exit_code == 0, r.output
    rng = np.random.default_rng(7)
    lines, want = [], []
    py = {m: Scheduler(edge, cloud, None, m) for m in ("janus-deploy", "paper")}
    for mode, bw, rtt, sla, _ in cases(rng, 3000):
        lines.append(f"{bw!r} {rtt!r} {sla!r} {mode}")
        want.append(json.dumps(schedule_json(py[mode], mode, bw, rtt, sla)))
    out = subprocess.run([decide_exe(), str(table)], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    got = out.stdout.splitlines()
    assert len(got) == len(want)
    diff = [(i, lines[i], w, g) for i, (w, g) in enumerate(zip(want, got)) if w != g]
    assert not diff, f"{len(diff)} lines differ, first: {diff[0]}"
    # the keys are exactly those of the real command
    real = CliRunner().invoke(app, ["schedule", "--profile", VITL[0], "--cloud-profile", VITL[1], "--bandwidth",
                                    "12.5", "--rtt", "20", "--sla", "300", "--json"])
    assert real.exit_code == 0, real.output
    one = subprocess.run([decide_exe(), str(table)], input="12.5 20 300 janus-deploy\n", capture_output=True,
                         text=True, timeout=30)
    assert json.loads(one.stdout) == json.loads(real.output)


def test_janus_decide_errors(lib, tmp_path):
    edge, cloud = resolve_profile(VITB[0]), resolve_profile(VITB[1])
    table = tmp_path / "t.jdt"
    table.write_bytes(build_table(edge, cloud))
    exe = decide_exe()
    for line, says in [("1 2 3", "line 2: expected"), ("x 2 3 paper", "line 2: bandwidth_mbps"),
                       ("-1 0 100 paper", "line 2: bandwidth must be >= 0"), ("1 0 0 paper", "line 2: the SLA"),
                       ("1 nan 100 janus-deploy", "line 2: rtt_ms"), ("1 0 100 fast", "line 2: unknown mode")]:
        r = subprocess.run([exe, str(table)], input=f"5 0 100 paper\n{line}\n7 0 100 paper\n", capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 2 and len(r.stdout.splitlines()) == 1, (line, r.stdout, r.stderr)
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and says in err[0], (line, r.stderr)
    bad = tmp_path / "bad.jdt"
    bad.write_bytes(table.read_bytes()[:-3])
    for path, says in [(bad, "truncated"), (tmp_path / "none.jdt", "cannot open"), (Path(__file__), "bad magic")]:
        r = subprocess.run([exe, str(path)], input="1 0 100 paper\n", capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and r.stdout == "" and says in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = subprocess.run([exe, "--codec", "fp8", str(table)], input="", capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "codec 'fp8' is not in the table" in r.stderr


def test_parity_when_every_option_ties(lib):
    """A degenerate plan where every option costs the same (zero compute, equal payloads): ties
    everywhere, the nothing-fits path with more near-minimum options than the C code keeps at hand
    (its full second pass), and numpy's first-index tie-breaking."""
    from janus_deploy.profile.table import profile_from_dict, profile_from_linear

    base = resolve_profile(VITB[0])
    levels = [(lv.policy, lv.alpha) for lv in base.levels]
    d = profile_from_linear(base.model, base.candidates, levels, 0.0, 0.0).to_dict()
    n1 = str(base.num_blocks + 1)
    for lv in d["levels"]:
        lv["head_ms"][n1] = 1e6  # device only never ties: every sending option does
        for payloads in lv["payload"].values():
            for s, p in payloads.items():
                p["bytes"] = 0 if s == n1 else 1000
    flat = profile_from_dict(d)
    total, exact = run_parity(lib, flat, flat, None, 6000, seed=21, codecs=["fp16"])
    assert exact == total


# ------------------------------------------------------------------------------ the codec dimension


def test_parity_with_the_codec_dimension(lib):
    """(level, split, codec) per request: C decides as Python on random cases, with a codec set of
    token and frame codecs and accuracy cells per (level, codec, split), with and without a frame
    override; the decision's codec (NULL at device only) is compared too."""
    from test_scheduler_codecs import _table, make_profiles

    edge, cloud = make_profiles()
    rng = np.random.default_rng(22)
    acc = _table(rng)
    sets = [["fp16", "int8", "int4", "jpeg95", "jpeg85", "jpeg70"], ["jpeg70", "int4", "fp32"], ["int8", "jpeg85"]]
    seen = set()
    for k, codecs in enumerate(sets):
        for frame_bytes in (None, 150_528 // 2):
            table = lib.load_table(build_table(edge, cloud, accuracy=acc, codecs=codecs, frame_bytes=frame_bytes))
            cs = table.scheduler(None, -1 if frame_bytes is None else frame_bytes)
            ref = Scheduler(edge, cloud, acc, "janus-deploy", None, 100.0, frame_bytes=frame_bytes, codecs=codecs)
            bad = []
            for _mode, bw, rtt, sla, margin in cases(rng, 1500):
                ref.sla_ms = sla
                want = ref.decide(bw, rtt_ms=rtt, margin=margin)
                got = cs.decide("janus-deploy", bw, rtt, margin, sla)
                why = compare(want, got)
                if why or want.predicted_ms != got.predicted_ms:
                    bad.append(f"set {k} bw={bw!r} rtt={rtt!r} sla={sla!r} margin={margin!r}: {why or 'not bit for bit'}")
                seen.add(want.codec)
            cs.close()
            table.close()
            assert not bad, f"{len(bad)} decisions differ, e.g.:\n" + "\n".join(bad[:5])
    assert {"int4", "jpeg70", None} <= seen  # the cases reach token, frame and device-only options


def test_one_codec_tables_have_no_codec_sections(lib):
    from test_scheduler_codecs import _table, make_profiles

    from janus_deploy.schedule.table_file import read_header

    edge, cloud = make_profiles()
    plain = read_header(build_table(edge, cloud))
    assert "CSET" not in plain.sections and "ACEL" not in plain.sections
    full = read_header(build_table(edge, cloud, accuracy=_table(np.random.default_rng(1)), codecs=["fp16", "int4"]))
    assert full.sections["CSET"][2] == 2 and "ACEL" in full.sections
