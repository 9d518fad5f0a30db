"""The frame codecs' decode model of an unfused Triton repository is sized from the plan's typed
model (issue 20: it was handed ``Manifest.model_info`` and indexed it by string, a TypeError)."""

from __future__ import annotations

from janus_deploy.plan.manifest import PlanModel
from janus_deploy.triton.pbtxt import Batching
from janus_deploy.triton.repository import CODED_MODEL, _write_coded_decoder


def test_coded_decoder_takes_the_typed_model(tmp_path):
    model = PlanModel("tiny", 3, 4, 5, 1, 8, 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    _write_coded_decoder(tmp_path, model, 4, Batching())
    cfg = (tmp_path / CODED_MODEL / "config.pbtxt").read_text()
    assert 'string_value: "8,8"' in cfg  # janus_frame_decode: the plan's image size
    assert '{ name: "frame" data_type: TYPE_UINT8 dims: [ 8, 8, 3 ] }' in cfg
