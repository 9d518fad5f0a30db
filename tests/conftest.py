import pytest

from janus_deploy.model import ModelSpec
from janus_deploy.plan import ExportConfig, export_plan


@pytest.fixture(scope="session")
def tiny_plan(tmp_path_factory):
    """vit_tiny, k = 3, 8 exponential levels + ToMe r = 8 baseline: the plan the issue asks for."""
    out = tmp_path_factory.mktemp("plan")
    manifest, _ = export_plan(ModelSpec("vit_tiny_patch16_224"), out, ExportConfig(k=3, levels=8, baseline_r=8))
    return manifest
