"""Fixtures of the testbed tests: a small plan with linear profiles, short traces."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    """A 2-block ViT at 32×32 (2 levels, k = 1) with ORT engines and linear profiles (edge: 25 ms a
    block, cloud: 0.5 ms): ``(plan_dir, engine_dir, edge_profile_path, cloud_profile_path)``."""
    from janus_deploy.backends import build_engines
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan
    from janus_deploy.profile.table import profile_from_linear, save_profile

    root = tmp_path_factory.mktemp("testbed-plan")
    manifest, _ = export_plan(ModelSpec("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2,
                                                                 "num_classes": 10}),
                              root / "plan", ExportConfig(k=1, levels=2))
    build_engines(manifest, root / "engines", "ort")
    mi = {k: manifest.model[k] for k in ("name", "num_blocks", "embed_dim", "num_tokens", "num_prefix_tokens",
                                         "img_size")}
    levels = [(lv["policy"], lv["alpha"]) for lv in manifest.levels]
    paths = []
    for name, a, b in (("edge", 25.0, 0.05), ("cloud", 0.5, 0.005)):
        prof = profile_from_linear(mi, manifest.candidates, levels, a, b, plan_hash=manifest.hash)
        paths.append(save_profile(prof, root / f"{name}.json"))
    return root / "plan", root / "engines", paths[0], paths[1]


@pytest.fixture
def short_traces(tmp_path):
    """A 2.5 s throughput trace (an outage included) and a ping trace, 0.5 s per sample."""
    bw = tmp_path / "bw.list"
    bw.write_text("###############################\nRun 1\n20,2,0,30,8\n")
    ping = tmp_path / "ping.list"
    ping.write_text("###############################\nRun 1\n25,30,60,25,28\n")
    return bw, ping
