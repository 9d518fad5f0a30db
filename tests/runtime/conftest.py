import pytest

from janus_deploy.backends import build_engines, load_runner
from janus_deploy.model.load import ModelSpec
from janus_deploy.plan.export import ExportConfig, export_plan


@pytest.fixture(scope="session")
def plan(tmp_path_factory):
    """vit_tiny, k = 3, 3 levels, with ORT engines: (manifest, plan_dir, engine_dir)."""
    root = tmp_path_factory.mktemp("runtime-plan")
    manifest, _ = export_plan(ModelSpec("vit_tiny_patch16_224"), root / "plan", ExportConfig(k=3, levels=3))
    build_engines(manifest, root / "engines", "ort")
    return manifest, root / "plan", root / "engines"


@pytest.fixture(scope="session")
def local(plan):
    """A local runner of the same engines, to compare the server's answers with."""
    manifest, _, engines = plan
    return load_runner(manifest, engines, threads=1)
