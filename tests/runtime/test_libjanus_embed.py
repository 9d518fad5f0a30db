"""libjanus with the demo's plan (the digits ViT of `janus-deploy demo`, exported small): a C
program compiled against the installed header and library runs 20 of the digits through the
embedded runtime (janus_embed.h) against the loopback server and answers as `janus-deploy run`
does; `export-table --plan` names every model and engine; and the C decision core decides as the
Python scheduler on profiles measured here (the measured share of the 100,000-case parity)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from libjanus_support import SRC, Lib, compile_c, ensure_built, run_parity
from typer.testing import CliRunner

from janus_deploy.backends import build_engines, load_runner, run_segments
from janus_deploy.calibrate.digits import (SMALL_MODEL_CHECKPOINT, SMALL_MODEL_NAME, SMALL_MODEL_OVERRIDES,
                                           write_image_folder)
from janus_deploy.cli.main import app
from janus_deploy.images import normalize, synthetic_frames
from janus_deploy.levels import edge_segment_count
from janus_deploy.model import ModelSpec
from janus_deploy.plan import ExportConfig, export_plan
from janus_deploy.profile.measure import measure_profile
from janus_deploy.profile.table import profile_from_dict, profile_from_linear, save_profile
from janus_deploy.schedule.runlog import read_run_log
from janus_deploy.runtime.edge import frames_from_images
from janus_deploy.runtime.server import BackgroundServer, create_app
from janus_deploy.schedule import native

FRAMES = 20
SLA_MS = 10_000.0
FAR_MS = 1e5  # an option this slow never fits the SLA
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """The demo's digits ViT (its committed checkpoint), 2 levels, k = 1, ORT engines, and 20
    held-out digits as an image folder: (manifest, plan_dir, engine_dir, image_dir)."""
    root = tmp_path_factory.mktemp("demo-plan")
    spec = ModelSpec(SMALL_MODEL_NAME, dict(SMALL_MODEL_OVERRIDES), str(REPO / SMALL_MODEL_CHECKPOINT))
    manifest, _ = export_plan(spec, root / "plan", ExportConfig(k=1, levels=2))
    build_engines(manifest, root / "engines", "ort")
    write_image_folder(root / "images", "test", limit=FRAMES)
    return manifest, root / "plan", root / "engines", root / "images"


@pytest.fixture(scope="module")
def local(plan):
    return load_runner(plan[0], plan[2], threads=1)


@pytest.fixture(scope="module")
def server(plan):
    _, plan_dir, engines, _ = plan
    with BackgroundServer(create_app(plan_dir, engines, threads=1, concurrency=2)) as srv:
        yield srv


def one_option_profiles(manifest, level: int, split: int):
    """Edge and cloud profiles of the plan under which only (level, split) fits the SLA, whatever
    the bandwidth estimate (above 0.1 Mbit/s) and the timing noise: the same decisions on every
    path, so answers can be compared request by request."""
    mi = {k: manifest.model[k] for k in ("name", "num_blocks", "embed_dim", "num_tokens", "num_prefix_tokens", "img_size")}
    levels = [(lv["policy"], lv["alpha"]) for lv in manifest.levels]
    n = manifest.num_blocks
    out = []
    for side in ("edge", "cloud"):
        d = profile_from_linear(mi, manifest.candidates, levels, 1.0, 0.01, plan_hash=manifest.hash).to_dict()
        for li, lv in enumerate(d["levels"]):
            for s in manifest.candidates:
                mine = li == level
                head = 0.0 if s == 0 else float(s) if mine and s <= split else FAR_MS
                tail = 0.0 if s == n + 1 else float(n + 1 - s) if mine and s >= split else FAR_MS
                lv["head_ms"][str(s)] = head if side == "edge" else 0.0
                lv["tail_ms"][str(s)] = tail if side == "cloud" else 0.0
        out.append(profile_from_dict(d))
    return out


def reference(manifest, runner, frame, level):
    x = normalize(frame[None], manifest.model["mean"], manifest.model["std"])
    return run_segments(runner, level, 0, len(manifest.level(level)["segments"]), [x])[0][0]


def test_embedded_runtime_answers_like_janus_deploy_run(plan, local, server, tmp_path):
    ensure_built()
    if not (native.build_info() or {}).get("embed"):
        pytest.skip("libjanus_embed was not built (this Python has no shared libpython)")
    manifest, plan_dir, engines, images = plan
    level, split = 0, manifest.candidates[len(manifest.candidates) // 2]  # α = 0, a middle split
    edge, cloud = one_option_profiles(manifest, level, split)
    edge_json, cloud_json = save_profile(edge, tmp_path / "edge.json"), save_profile(cloud, tmp_path / "cloud.json")
    img = manifest.model["img_size"]
    sources = list(frames_from_images(images, img, FRAMES))  # what `run --images` sends, in its order
    frames = [f for _, f in sources]
    labels = [int(Path(src).parent.name) for src, _ in sources]
    raw = tmp_path / "frames.raw"
    raw.write_bytes(np.stack(frames).tobytes())

    # the Python edge runtime, as the command line runs it
    run_log = tmp_path / "run.jsonl"
    r = CliRunner().invoke(app, ["run", str(plan_dir), "--engines", str(engines), "--profile", str(edge_json),
                                 "--cloud-profile", str(cloud_json), "--server", server.url, "--sla", str(SLA_MS),
                                 "--images", str(images), "--limit", str(FRAMES), "--rtt", "1", "--codec", "fp32",
                                 "--threads", "1", "--log", str(run_log), "--json"])
    assert r.exit_code == 0, r.output

    # a C program built against the installed header and library, through the embedded runtime
    exe = compile_c([SRC / "tests" / "embed_run.c"], tmp_path / "embed_run", *native.cflags(), *native.libs(embed=True))
    c_log, logits_out = tmp_path / "c.jsonl", tmp_path / "logits.f32"
    options = {"controller": {"rtt_cold_ms": 1.0, "rtt_fixed": True}, "threads": 1}  # = run --rtt 1 --threads 1
    out = subprocess.run([str(exe), str(plan_dir), str(engines), str(edge_json), str(cloud_json), server.url,
                          str(SLA_MS), str(raw), str(FRAMES), str(img), str(img), str(logits_out), str(c_log),
                          json.dumps(options)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("frame ")]
    assert len(lines) == FRAMES and all("fallback=- error=-" in ln for ln in lines), out.stdout
    cost = re.search(r"cost open_ms=([\d.]+) rss_mb=([\d.]+) infer_ms=([\d.]+)", out.stdout)
    print(f"embedded runtime: open {cost.group(1)} ms, RSS {cost.group(2)} MB after open, "
          f"{cost.group(3)} ms per frame")
    summary = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("summary "))[8:])
    assert summary["requests"] == FRAMES and summary["answered"] == FRAMES and summary["fallbacks"] == 0

    # the same answers, request by request
    py_recs = read_run_log(run_log).records
    c_run = read_run_log(c_log)  # whole: the embedded runtime's close wrote the trailer
    c_header, c_recs = c_run.header, c_run.records
    assert c_header.plan_hash == manifest.hash and len(py_recs) == len(c_recs) == FRAMES
    for i, (a, b) in enumerate(zip(py_recs, c_recs)):
        for key in ("label", "level", "split", "model", "alpha"):
            assert getattr(a.decision, key) == getattr(b.decision, key), (i, key)
        assert a.decision.split == split and a.decision.level == level
        assert a.top1 == b.top1 and a.bytes == b.bytes, i
        assert a.fallback is None and b.fallback is None and a.error is None and b.error is None
    logits = np.fromfile(logits_out, dtype=np.float32).reshape(FRAMES, -1)
    assert logits.shape[1] == manifest.model["num_classes"]
    for i, frame in enumerate(frames):
        ref = reference(manifest, local, frame, level)
        np.testing.assert_allclose(logits[i], ref, atol=1e-4)
        assert int(np.argmax(logits[i])) == py_recs[i].top1
        assert re.search(rf"top1={py_recs[i].top1} level={level} split={split} ", lines[i]), lines[i]
    # real answers: the trained digits model reads the digits
    assert np.mean([int(np.argmax(x)) == y for x, y in zip(logits, labels)]) >= 0.75
    # and the embedded run's log replays through the simulator's controller
    rep = CliRunner().invoke(app, ["replay", str(c_log), "--json"])
    assert rep.exit_code == 0 and json.loads(rep.output)["decisions_reproduced"] == 1.0, rep.output


def test_parity_on_measured_profiles(plan, local):
    """20,000 random cases on profiles measured here (codec encode/decode times, zstd payloads)."""
    manifest = plan[0]
    ensure_built()
    frames = synthetic_frames(2, manifest.model["img_size"], seed=3)
    edge, _ = measure_profile(manifest, local, frames, device_name="edge-test", threads=1, warmup=1, runs=2)
    cloud, _ = measure_profile(manifest, local, frames, device_name="cloud-test", warmup=1, runs=2)
    assert edge.source == "measured"
    total, exact = run_parity(Lib(), edge, cloud, None, 20_000, seed=11, codecs=["fp32", "fp16", "fp16-zstd", "int8", "int4"])
    assert total == 20_000 and exact == total


def test_embed_example_of_the_docs_runs(plan, server, tmp_path):
    """docs/c-api.md's embedded-runtime example, as written, against the loopback server."""
    from libjanus_support import doc_examples

    ensure_built()
    if not (native.build_info() or {}).get("embed"):
        pytest.skip("libjanus_embed was not built (this Python has no shared libpython)")
    manifest, plan_dir, engines, _ = plan
    edge, cloud = one_option_profiles(manifest, 1, manifest.candidates[1])
    edge_json, cloud_json = save_profile(edge, tmp_path / "edge.json"), save_profile(cloud, tmp_path / "cloud.json")
    src = tmp_path / "embed.c"
    src.write_text(doc_examples()["embed.c"])
    exe = compile_c([src], tmp_path / "embed", *native.cflags(), *native.libs(embed=True))
    img = manifest.model["img_size"]
    out = subprocess.run([str(exe), str(plan_dir), str(engines), str(edge_json), str(cloud_json), server.url,
                          str(SLA_MS), "2", str(img)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    label = f"@{manifest.candidates[1]}"
    assert len([ln for ln in lines if ln.startswith("frame ") and label in ln and "janus_L1_S" in ln]) == 2, out.stdout
    assert json.loads(lines[-1])["answered"] == 2


def test_export_table_names_models_and_engines(plan, tmp_path):
    """`export-table --plan [--engines]`: the V2 model of every (level, split) and the engine file of
    every segment the edge runs, as the plan and engines.json name them (read back through C)."""
    manifest, plan_dir, engines, _ = plan
    edge, cloud = one_option_profiles(manifest, 0, manifest.candidates[1])
    edge_json, cloud_json = save_profile(edge, tmp_path / "edge.json"), save_profile(cloud, tmp_path / "cloud.json")
    ensure_built()
    n, cands = manifest.num_blocks, manifest.candidates
    for extra in ([], ["--engines", str(engines)]):
        table = tmp_path / "t.jdt"
        r = CliRunner().invoke(app, ["export-table", "--profile", str(edge_json), "--cloud-profile", str(cloud_json),
                                     "--plan", str(plan_dir), *extra, "--out", str(table), "--force"])
        assert r.exit_code == 0 and "with model and engine names" in r.output, r.output
        with Lib().load_table_file(table) as t:
            assert t.info().has_names == 1 and t.info().plan_hash.decode() == manifest.hash
            s = t.scheduler()
            for li, lv in enumerate(manifest.levels):
                for split in cands:
                    d = s.evaluate("janus-deploy", li, split, 10.0, 1.0, 100.0)
                    k = edge_segment_count(split, n, cands)
                    assert d.plan_level == li and d.num_engines == k
                    assert (d.model.decode() if d.model else None) == (f"janus_L{li}_S{split}" if split <= n else None)
                    assert (d.engine_list or []) == [seg["file"] for seg in lv["segments"][:k]]
            s.close()
    bad = CliRunner().invoke(app, ["export-table", "--profile", str(edge_json), "--cloud-profile", str(cloud_json),
                                   "--engines", str(engines), "--out", str(tmp_path / "x.jdt")])
    assert bad.exit_code == 2 and "give --plan too" in bad.output
