import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from janus_deploy import levels
from janus_deploy.backends import EngineError, build_engines, load_runner, run_segments
from janus_deploy.cli.main import app
from janus_deploy.images import normalize, synthetic_frames
from janus_deploy.model import ModelSpec
from janus_deploy.plan import ExportConfig, Manifest, PlanError, export_plan, plan_size_bytes
from janus_deploy.backends.verify import Tolerance, verify_plan

cli = CliRunner()


def test_manifest_matches_policy(tiny_plan):
    m = tiny_plan
    x0, n = m.model["num_tokens"], m.model["num_blocks"]
    assert (x0, n, m.model["embed_dim"]) == (197, 12, 192)
    assert m.candidates == levels.candidate_splits(12, 3)
    assert m.data["segments"] == [list(r) for r in levels.segment_ranges(12, m.candidates)]
    grid = levels.level_grid(x0, n, levels=8)
    exp = [lv for lv in m.levels if lv["policy"] == "exponential"]
    assert [lv["alpha"] for lv in exp] == grid
    for lv in m.levels:
        assert lv["tokens"] == list(levels.schedule(lv["policy"], lv["alpha"], x0, n, 1).tokens)
    assert m.levels[-1]["policy"] == "constant" and m.levels[-1]["tokens"][1] == 197 - 8


def test_manifest_payloads_and_files(tiny_plan):
    m = tiny_plan
    lv = m.levels[5]
    d = m.model["embed_dim"]
    assert lv["payload"]["0"]["bytes"] == {"uint8": 224 * 224 * 3}
    for s in m.candidates[1:-1]:
        x = lv["tokens"][s]
        assert lv["payload"][str(s)]["bytes"] == {"float32": 4 * x * (d + 1), "float16": 2 * x * (d + 1)}
    assert lv["payload"]["13"]["bytes"]["float32"] == 0
    seg = lv["segments"][3]
    assert seg["blocks"] == [4, 5]
    assert seg["inputs"][0] == {"name": "tokens", "shape": ["batch", lv["tokens"][3], d], "dtype": "float32"}
    assert seg["outputs"][0]["shape"] == ["batch", lv["tokens"][5], d]
    assert len(seg["sha256"]) == 64


def test_weights_stored_once(tiny_plan):
    ratio = plan_size_bytes(tiny_plan.dir) / tiny_plan.model["weight_bytes"]
    assert ratio <= 1.15, ratio  # 9 levels x 9 graphs share one weight file


def test_segment_chain_matches_unsplit_graph_in_ort(tiny_plan):
    build_engines(tiny_plan, tiny_plan.dir / "eng", "ort")
    runner = load_runner(tiny_plan, tiny_plan.dir / "eng")
    x = normalize(synthetic_frames(2, 224), tiny_plan.model["mean"], tiny_plan.model["std"])
    for li in (0, 7):
        chain = run_segments(runner, li, 0, len(tiny_plan.levels[li]["segments"]), [x])[0]
        np.testing.assert_allclose(chain, runner.run_unsplit(li, x), atol=1e-4)
    # every level's sessions share the same in-memory weights
    runner.preload()
    assert runner.loaded() == 9 * 8 + 2  # every segment of every level + the two unsplit graphs run above
    # one OrtValue per weight, and every level's graphs name the same weights as level 0's
    import onnx

    from janus_deploy.plan.weights import external_initializers

    def names(entries):
        return {n for e in entries for n in external_initializers(onnx.load(str(tiny_plan.path(e["file"])), load_external_data=False))}

    every_level = names([e for lv in tiny_plan.levels for e in lv["segments"]])
    assert len(runner._values) == len(every_level) == len(names(tiny_plan.levels[0]["segments"])) > 0


def test_level_free_manifest_and_runner(tiny_plan, tmp_path):
    """Level-free graphs: one per segment, token counts symbolic, and in ORT they give every
    level's per-level chain with one session per segment."""
    from janus_deploy.backends.ort import OrtRunner

    m = tiny_plan
    lf = m.level_free_segments
    assert [e["blocks"] for e in lf] == m.data["segments"]
    assert lf[1]["inputs"] == [
        {"name": "tokens", "shape": ["batch", "tokens_in", 192], "dtype": "float32"},
        {"name": "size", "shape": ["batch", "tokens_in", 1], "dtype": "float32"},
        {"name": "reductions", "shape": [lf[1]["blocks"][1] - lf[1]["blocks"][0] + 1], "dtype": "int64"},
    ]
    assert lf[-1]["blocks"] == [13, 12] and [i["name"] for i in lf[-1]["inputs"]] == ["tokens", "size"]

    data = build_engines(m, tmp_path / "lf", "ort", graphs="level-free")
    merging = [li for li, lv in enumerate(m.levels) if any(lv["reductions"])]
    assert merging == list(range(1, len(m.levels)))  # level 0 (alpha = 0) merges nothing
    free_entries = [e for e in data["engines"] if e["file"].startswith("G_")]
    assert [e["segment"] for e in free_entries] == list(range(len(lf)))
    assert all(e["levels"] == merging for e in free_entries)
    assert [e["levels"] for e in data["engines"] if e["file"].startswith("L00_")] == [[0]] * len(lf)
    free, per_level = load_runner(m, tmp_path / "lf"), load_runner(m, tmp_path / "lf")
    per_level.graphs = "level"
    x = normalize(synthetic_frames(2, 224), m.model["mean"], m.model["std"])
    n = len(lf)
    for li in range(len(m.levels)):  # every level, including alpha_max's single-token blocks
        np.testing.assert_allclose(run_segments(free, li, 0, n, [x])[0], run_segments(per_level, li, 0, n, [x])[0],
                                   atol=1e-5, rtol=0)
    # one session per segment for the merging levels, level 0's own graphs for alpha = 0
    assert free.loaded() == 2 * n and per_level.loaded() == len(m.levels) * n
    # a session goes only when no level uses it any more
    free.unload(3, 2)
    assert free.loaded() == 2 * n
    for li in range(len(m.levels)):
        free.unload(li, 2)
    assert free.loaded() == 2 * n - 2
    run_segments(free, 3, 0, n, [x])
    assert free.loaded() == 2 * n - 1
    # verify's runner sends level 0 (r = 0 everywhere) through the level-free graphs too
    everywhere = OrtRunner(m, graphs="level-free", level_free_everywhere=True)
    np.testing.assert_allclose(run_segments(everywhere, 0, 0, n, [x])[0], run_segments(per_level, 0, 0, n, [x])[0],
                               atol=1e-5, rtol=0)
    assert everywhere.loaded() == n

    with pytest.raises(EngineError, match="unknown graph family"):
        OrtRunner(m, graphs="dynamic")


def test_verify_passes_then_detects_tampering(tiny_plan, tmp_path):
    x = normalize(synthetic_frames(2, 224), tiny_plan.model["mean"], tiny_plan.model["std"])
    from janus_deploy.backends.ort import OrtRunner

    reports = verify_plan(tiny_plan, OrtRunner(tiny_plan), x, tolerance=Tolerance())
    assert all(r.ok for r in reports) and len(reports) == 9
    assert all(r.top1_vs_torch == 1.0 and r.max_abs_vs_torch < 1e-3 for r in reports)

    copy = tmp_path / "plan"
    shutil.copytree(tiny_plan.dir, copy, ignore=shutil.ignore_patterns("eng"))
    seg = copy / tiny_plan.levels[2]["segments"][1]["file"]
    seg.write_bytes(seg.read_bytes() + b"\0")
    res = cli.invoke(app, ["verify", str(copy)])
    assert res.exit_code != 0 and "modified after export" in res.output
    seg.write_bytes(seg.read_bytes()[:-1])
    free = copy / tiny_plan.level_free_segments[1]["file"]
    free.write_bytes(free.read_bytes() + b"\0")
    res = cli.invoke(app, ["verify", str(copy)])
    assert res.exit_code != 0 and "G_S01.onnx was modified after export" in res.output

    (copy / "manifest.json").write_text('{"format_version": 2, "kind": "janus-deploy/plan"}')
    res = cli.invoke(app, ["verify", str(copy)])
    assert res.exit_code != 0 and "malformed" in res.output
    (copy / "manifest.json").write_text('{"format_version": 1, "kind": "janus-deploy/plan"}')  # an older plan
    res = cli.invoke(app, ["verify", str(copy)])
    assert res.exit_code != 0 and "format_version 1 is not supported" in res.output and "re-export" in res.output
    (copy / "manifest.json").write_text("{not json")
    res = cli.invoke(app, ["verify", str(copy)])
    assert res.exit_code != 0 and "not valid JSON" in res.output


def test_verify_cli_passes_and_writes_polygraphy_json(tiny_plan, tmp_path):
    res = cli.invoke(app, ["verify", str(tiny_plan.dir), "--num-images", "2", "--json", "--save-references", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{"):])["ok"] is True
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert [r["name"] for r in out["runs"]] == ["level graphs (ORT)", "level-free graphs (ORT)"]
    assert all(len(r["levels"]) == 9 for r in out["runs"])
    data = json.loads((tmp_path / "L08_S03.outputs.json").read_text())
    assert data["polygraphy_class"] == "RunResults"


def test_engines_for_another_plan_rejected(tiny_plan, tmp_path):
    other, _ = export_plan(ModelSpec("vit_tiny_patch16_224", {"depth": 2}), tmp_path / "p2", ExportConfig(k=3, levels=2))
    build_engines(other, tmp_path / "e2", "ort")
    with pytest.raises(EngineError, match="built for plan"):
        load_runner(tiny_plan, tmp_path / "e2")
    with pytest.raises(EngineError, match="fp32"):
        build_engines(other, tmp_path / "e3", "ort", precision="fp16")
    with pytest.raises(EngineError, match="unknown backend"):
        build_engines(other, tmp_path / "e4", "tensorflow")


def test_export_resumes_and_cli(tmp_path):
    out = tmp_path / "p"
    args = ["export", "--model", "vit_tiny_patch16_224", "--set", "depth=3", "--k", "2", "--levels", "3", "--out", str(out)]
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    first = Manifest.load(out)
    res = cli.invoke(app, args)
    assert res.exit_code == 0 and "0 graphs exported" in res.output and "unchanged" in res.output
    assert Manifest.load(out).hash == first.hash
    res = cli.invoke(app, ["inspect", str(out), "--json"])
    info = json.loads(res.stdout)
    assert info["candidates"] == levels.candidate_splits(3, 2) and len(info["levels"]) == 3


def test_export_bad_input(tmp_path):
    for args, msg in [
        (["--model", "resnet50"], "not supported"),
        (["--model", "vit_tiny_patch16_224", "--k", "0"], "k must be"),
        (["--model", "vit_tiny_patch16_224", "--checkpoint", str(tmp_path / "x.pth")], "does not exist"),
        (["--model", "vit_tiny_patch16_224", "--set", "depth"], "key=value"),
    ]:
        res = cli.invoke(app, ["export", *args, "--out", str(tmp_path / "o")])
        assert res.exit_code != 0
        assert msg in res.output, res.output
    with pytest.raises(PlanError, match="not a plan"):
        Manifest.load(tmp_path)


def test_interrupted_export_resumes_and_stale_weights_go(tmp_path):
    spec, cfg = ModelSpec("vit_tiny_patch16_224", {"depth": 3}), ExportConfig(k=2, levels=3)
    out = tmp_path / "p"

    def crash_after_five(name, done, total):
        if done == 5:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-export

    with pytest.raises(KeyboardInterrupt):
        export_plan(spec, out, cfg, progress=crash_after_five)
    assert not (out / "manifest.json").exists()
    manifest, stats = export_plan(spec, out, cfg)
    graphs = 3 * (3 + 1) + 3  # 3 levels x (3 segments + unsplit) + 3 level-free segments
    assert stats["reused"] == 5 and stats["exported"] == graphs - 5
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.backends.verify import verify_plan

    x = normalize(synthetic_frames(1, 224), manifest.model["mean"], manifest.model["std"])
    assert all(r.ok for r in verify_plan(manifest, OrtRunner(manifest), x))

    # a damaged weight index: everything is redone, nothing breaks
    (out / "weights.json").write_text("{broken")
    manifest, stats = export_plan(spec, out, cfg)
    assert stats["exported"] == graphs and all(r.ok for r in verify_plan(manifest, OrtRunner(manifest), x))

    # another model into the same folder: refused, unless forced; then the old weights do not linger
    with pytest.raises(PlanError, match="another model"):
        export_plan(ModelSpec("vit_tiny_patch16_224", {"depth": 2}), out, ExportConfig(k=1, levels=2))
    small, _ = export_plan(ModelSpec("vit_tiny_patch16_224", {"depth": 2}), out, ExportConfig(k=1, levels=2),
                           force=True)
    assert plan_size_bytes(out) <= 1.15 * small.model["weight_bytes"]
