"""The pipelined multi-stream runtime over loopback: every frame one outcome, overlap, replay."""

from __future__ import annotations

import pytest
from linear_profiles import profiles

from janus_deploy.report import read_run_log
from janus_deploy.runtime.edge import EdgeRuntime
from janus_deploy.runtime.server import BackgroundServer, create_app
from janus_deploy.runtime.session import open_source, parse_source
from janus_deploy.runtime.streams import StreamRuntime
from janus_deploy.runtime.transport import TransportOptions
from janus_deploy.schedule.controller import ControllerConfig
from janus_deploy.schedule.pipeline import PipelineConfig
from janus_deploy.sim.simulator import replay_log


@pytest.fixture(scope="module")
def server(plan):
    _, plan_dir, engines = plan
    with BackgroundServer(create_app(plan_dir, engines, threads=1, concurrency=2)) as srv:
        yield srv


def edge(plan, local, url, log, sla_ms=2000.0):
    manifest = plan[0]
    e, c = profiles(manifest)
    return EdgeRuntime(manifest, local, e, c, server_url=url, sla_ms=sla_ms, codec="fp32",
                       transport=TransportOptions(), log=log)


def sources(manifest, n, frames, fps):
    return [open_source(manifest, parse_source(f"synthetic={frames}"), name=f"cam{i}", fps=fps, seed=i)
            for i in range(n)]


def test_every_frame_one_outcome_and_replay_reproduces(plan, local, server, tmp_path):
    log = tmp_path / "streams.jsonl"
    with edge(plan, local, server.url, log) as rt:
        sr = StreamRuntime(rt, sources(plan[0], 2, 12, 40.0), PipelineConfig(drop="none"))
        records = sr.run()
        summary = sr.summary()
    frames = [r for r in records if r.kind != "probe"]
    assert len(frames) == 24 and summary["frames"] == 24
    assert all(r.outcome in ("answered", "fallback") and r.error is None for r in frames)
    # a reachable server answers every offloaded frame: none falls back (each answer carries
    # the id of the frame that asked, which the exchange checks)
    offloaded = [r for r in frames if r.decision.split <= plan[0].num_blocks]
    assert offloaded and all(r.outcome == "answered" and r.fallback is None and r.server for r in offloaded), \
        [r.fallback for r in offloaded if r.fallback is not None][:3]
    assert {r.stream for r in frames} == {"cam0", "cam1"}
    assert all(r.top1 is not None and r.measured.total_ms > 0 for r in frames)
    assert summary["streams"]["cam0"]["frames"] == 12 and summary["dropped"] == 0
    logged = read_run_log(log).records
    assert len([r for r in logged if r.kind != "probe"]) == 24
    out = replay_log(log)
    assert out["requests"] == 24 and out["decisions_reproduced"] == 1.0, out["mismatches"]


def test_serial_drops_what_arrives_while_busy(plan, local, server, tmp_path):
    # 200 fps is faster than one frame's round trip: serial must drop, and say why
    with edge(plan, local, server.url, tmp_path / "serial.jsonl") as rt:
        sr = StreamRuntime(rt, sources(plan[0], 1, 30, 200.0), PipelineConfig(serial=True))
        records = sr.run()
        summary = sr.summary()
    frames = [r for r in records if r.kind != "probe"]
    assert len(frames) == 30
    dropped = [r for r in frames if r.outcome == "dropped"]
    assert dropped and all(r.drop_reason == "busy" and r.decision is None for r in dropped)
    assert summary["dropped"] == len(dropped) and summary["answered"] == 30 - len(dropped)


def test_source_specs_are_checked():
    from janus_deploy import JanusError

    assert parse_source("video=cam.mp4,fps=15,sla=200") == {"kind": "video", "where": "cam.mp4", "fps": 15.0,
                                                              "sla": 200.0}
    for bad, why in (("cam.mp4", "KIND=WHERE"), ("synthetic=0", "frame count"), ("images=d,fps=x", "number"),
                     ("images=d,speed=2", "unknown option")):
        with pytest.raises(JanusError, match=why):
            parse_source(bad)


def test_video_source_through_pyav(plan, tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    path = tmp_path / "cam.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=12)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            img = np.full((48, 64, 3), 40 * i, dtype=np.uint8)
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
    src = open_source(plan[0], parse_source(f"video={path},limit=4"), name="cam")
    assert src.fps == pytest.approx(12.0)  # the video's own rate
    frames = list(src.frames)
    assert len(frames) == 4 and frames[0][1].shape == (224, 224, 3) and frames[0][1].dtype == np.uint8
    assert frames[3][1].mean() > frames[0][1].mean() + 50  # decoded, not blank: frame 3 is brighter
    assert open_source(plan[0], parse_source(f"video={path},fps=5"), name="c").fps == 5.0


def test_missing_video_is_one_clear_error(plan, tmp_path):
    from janus_deploy import JanusError

    with pytest.raises(JanusError, match="does not exist"):
        open_source(plan[0], parse_source(f"video={tmp_path / 'nope.mp4'}"), name="cam")


def _cli_run(plan, server, tmp_path):
    """A typer app with `run` and the arguments every camera run here shares (plan, engines,
    profiles written to ``tmp_path``, the server); returns ``invoke(more_args)``."""
    import json

    import typer
    from typer.testing import CliRunner

    from janus_deploy.cli.runtime_cmds import register

    manifest, plan_dir, engines = plan
    e, c = profiles(manifest)
    for name, p in (("edge", e), ("cloud", c)):
        (tmp_path / f"{name}.json").write_text(json.dumps(p.to_dict()))
    app = typer.Typer()
    register(app)
    args = ["run", str(plan_dir), "--engines", str(engines), "--profile", str(tmp_path / "edge.json"),
            "--cloud-profile", str(tmp_path / "cloud.json"), "--server", server.url]
    return lambda more: CliRunner().invoke(app, args + more)


def test_cli_run_cameras(plan, server, tmp_path):
    import json

    invoke = _cli_run(plan, server, tmp_path)
    log = tmp_path / "cams.jsonl"
    r = invoke(["--sla", "2000", "--codec", "fp32", "--stream", "synthetic=6,fps=30", "--stream", "synthetic=4,sla=1500",
                "--fps", "20", "--log", str(log), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert out["frames"] == 10 and set(out["streams"]) == {"cam0", "cam1"}
    assert out["streams"]["cam0"]["frames"] == 6 and out["goodput_fps"] > 0
    assert replay_log(log)["decisions_reproduced"] == 1.0
    bad = invoke(["--sla", "2000", "--stream", "synthetic=3", "--synthetic", "3"])
    assert bad.exit_code != 0 and "not both" in str(bad.exception) + bad.output


def test_cli_run_cameras_that_answer_nothing_exit_3(plan, server, tmp_path):
    invoke = _cli_run(plan, server, tmp_path)
    # a 0.5 ms SLA: no option can meet it, so --drop stale drops every frame as late
    r = invoke(["--sla", "0.5", "--codec", "fp32", "--synthetic", "4", "--streams", "2", "--fps", "20", "--json"])
    assert r.exit_code == 3, r.output
    assert "no frame of 8 was answered" in r.output and "late: 8" in r.output


def test_failed_exchanges_fall_back_on_the_edge(plan, local, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manifest = plan[0]
    e, c = profiles(manifest)
    with EdgeRuntime(manifest, local, e, c, server_url=f"http://127.0.0.1:{port}", sla_ms=2000.0, codec="fp32",
                     transport=TransportOptions(probe_rtt=False), log=tmp_path / "down.jsonl",
                     controller=ControllerConfig(probe_interval_s=None)) as rt:  # no cold-start probe: it sends
        sr = StreamRuntime(rt, sources(manifest, 2, 3, 20.0), PipelineConfig(drop="none"))
        records = [r for r in sr.run() if r.kind != "probe"]
    assert len(records) == 6 and all(r.top1 is not None and r.error is None for r in records)
    fell = [r for r in records if r.outcome == "fallback"]
    assert fell and all(r.fallback.kind == "unreachable" and r.measured.fallback_ms > 0 for r in fell)
    assert all(r.outcome == "answered" and r.decision.split == manifest.num_blocks + 1
               for r in records if r.outcome != "fallback")  # the rest ran device-only
    assert replay_log(tmp_path / "down.jsonl")["decisions_reproduced"] == 1.0


def test_the_collector_skips_what_lives_through_the_run(plan, local, server, tmp_path):
    # a full collection walking every object stalls all threads (uplink, answers) for 50-150 ms on
    # the demo plan: what exists at the start of the run is frozen while it runs, then unfrozen
    import gc

    seen = []
    with edge(plan, local, server.url, tmp_path / "gc.jsonl") as rt:
        sr = StreamRuntime(rt, sources(plan[0], 1, 4, 50.0), PipelineConfig(drop="none"))
        before = gc.get_freeze_count()
        sr.run(progress=lambda rec: seen.append(gc.get_freeze_count()))
    assert len(seen) == 4 and min(seen) > before + 1000
    assert gc.get_freeze_count() == 0


def test_the_server_freezes_what_start_up_made(plan):
    # a full collection over the server's start-up heap stalls every request (~10 ms on the demo plan)
    import gc

    from janus_deploy.runtime.server import serve
    from janus_deploy.triton.server import free_port

    class Ready(Exception):
        pass

    def ready(app):
        assert gc.get_freeze_count() > 1000
        raise Ready

    _, plan_dir, engines = plan
    try:
        with pytest.raises(Ready):
            serve(plan_dir, engines, port=free_port(), on_ready=ready)
    finally:
        gc.unfreeze()
