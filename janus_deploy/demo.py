"""The main job end to end on the embedded default (CPU, ONNX Runtime, loopback):

export the committed small digits ViT → build ORT engines → calibrate accuracy per level →
profile the edge (1 thread, emulated N× slower, like a Jetson-class device) and the cloud (all threads) → start the V2 server → run the edge
client over a shipped LTE uplink trace with the calibration task's images → summary.

Everything is written under one output folder. `janus-deploy demo` is a thin wrapper over
:func:`run_demo`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from janus_deploy import JanusError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = "throughput/driving/lte/*.list"


class DemoError(JanusError):
    """Something the demo needs (checkpoint, trace) is missing."""


def find_traces_dir() -> Path:
    """The shipped 5G/LTE uplink traces: $JANUS_TRACES, or ../shared/traces/uplink-5g-lte."""
    import os

    candidates = [os.environ.get("JANUS_TRACES"), REPO_ROOT.parent / "shared" / "traces" / "uplink-5g-lte"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise DemoError("the 5G/LTE uplink traces were not found: set JANUS_TRACES to the uplink-5g-lte folder "
                    "or pass --trace PATH")


def run_demo(
    out: str | Path,
    *,
    requests: int = 200,
    sla_ms: float = 100.0,
    levels: int = 8,
    k: int = 2,
    trace: str | None = None,
    sample_interval_s: float = 0.05,
    runs: int = 20,
    edge_slowdown: float = 8.0,
    engine: str = "builtin",
    say: Callable[[str], None] = print,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline; returns the edge runtime's summary (also in ``out/summary.json``).

    ``say`` announces each stage; ``progress(stage, done, total)`` follows the long ones.
    ``engine``: the cloud half's server, ``builtin`` or ``triton`` (the bundled tritonserver).
    """
    if engine not in ("builtin", "triton"):
        raise DemoError(f"unknown engine {engine!r}; choose builtin or triton")
    if engine == "triton":
        from janus_deploy.triton.server import find_bundle

        find_bundle()  # fail before the long stages when Triton cannot run here

    def step(stage: str):
        return None if progress is None else (lambda done, total, *_: progress(stage, done, total))

    from janus_deploy.backends import build_engines
    from janus_deploy.backends.base import SlowedRunner
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.calibrate.accuracy import calibrate, save_accuracy
    from janus_deploy.calibrate.digits import (SMALL_MODEL_CHECKPOINT, SMALL_MODEL_NAME, SMALL_MODEL_OVERRIDES,
                                               make_digits, write_image_folder)
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan
    from janus_deploy.profile.measure import measure_profile
    from janus_deploy.profile.table import save_profile
    from janus_deploy.runtime.edge import EdgeRuntime, frames_from_images
    from janus_deploy.runtime.server import BackgroundServer, create_app
    from janus_deploy.net.traces import load_trace

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = REPO_ROOT / SMALL_MODEL_CHECKPOINT
    if not ckpt.is_file():
        raise DemoError(f"the small digits checkpoint {ckpt} is missing; run tools/train_small_vit.py")
    trace_spec = trace or str(find_traces_dir() / DEFAULT_TRACE)

    say(f"1/7 export {SMALL_MODEL_NAME} {SMALL_MODEL_OVERRIDES} ({levels} levels, k={k}) → {out / 'plan'}")
    spec = ModelSpec(SMALL_MODEL_NAME, dict(SMALL_MODEL_OVERRIDES), str(ckpt))
    manifest, _ = export_plan(spec, out / "plan", ExportConfig(k=k, levels=levels),
                              progress=step("export") and (lambda _file, d, t: progress("export", d, t)))
    say("2/7 build ONNX Runtime engines (CPU)")
    build_engines(manifest, out / "engines", "ort", device_name="this-cpu", progress=step("build engines"))
    say("3/7 calibrate accuracy per level on the digits task (held-out split)")
    frames, labels = make_digits("test")
    if requests > len(frames):
        say(f"    the held-out split has {len(frames)} images: sending {len(frames)} requests, not {requests}")
        requests = len(frames)
    acc = calibrate(manifest, frames, labels, progress=step("calibrate"))
    save_accuracy(acc, out / "accuracy.json")
    say(f"4/7 profile the edge (1 thread, emulated {edge_slowdown:g}x slower) and the cloud (all threads)")
    codec_frames = frames[:8]
    edge_runner = SlowedRunner(OrtRunner(manifest, threads=1), edge_slowdown)
    edge, _ = measure_profile(manifest, edge_runner, codec_frames, device_name=f"edge-1-thread-x{edge_slowdown:g}", progress=step("profile edge"),
                              threads=1, warmup=3, runs=runs)
    cloud, _ = measure_profile(manifest, OrtRunner(manifest), codec_frames, device_name="cloud-all-threads", progress=step("profile cloud"),
                               warmup=3, runs=runs)
    save_profile(edge, out / "edge-profile.json")
    save_profile(cloud, out / "cloud-profile.json")
    say(f"5/7 write {requests} test images → {out / 'images'}")
    write_image_folder(out / "images", "test", limit=requests)
    link = load_trace(trace_spec, interval_s=sample_interval_s)
    say(f"6/7 start the V2 server ({engine}) on loopback; replay uplink trace {link.name} "
        f"(mean {link.mean():.1f} Mbit/s, one sample per {sample_interval_s * 1e3:.0f} ms)")
    if engine == "triton":
        from janus_deploy.triton.repository import ExportOptions, export_repository
        from janus_deploy.triton.server import TritonServer

        export_repository(manifest, out / "engines", out / "triton-repository", ExportOptions(platform="python"),
                          force=True)
        cloud_server: Any = TritonServer(out / "triton-repository", http_port=0)
    else:
        cloud_server = BackgroundServer(create_app(out / "plan", out / "engines", preload=True))
    with cloud_server as server:
        say(f"7/7 edge client → {server.url}, SLA {sla_ms} ms")
        with EdgeRuntime(manifest, edge_runner, edge, cloud, server_url=server.url,
                         sla_ms=sla_ms, accuracy=out / "accuracy.json", trace=link,
                         log=out / "requests.jsonl") as rt:
            from janus_deploy.runtime.session import check_server

            check = check_server(rt, wait_s=10.0)  # the plan-hash refusal, as `run` does
            say(("warning: " if check.warning else "") + check.line)
            count = [0]

            def one_done(_result) -> None:
                count[0] += 1
                if progress:
                    progress("requests", count[0], requests)

            results = rt.run(frames_from_images(out / "images", manifest.model["img_size"], limit=requests),
                             progress=one_done)
            summary = rt.summary()
    # the images sit in class folders (DIR/<digit>/<i>.png): score the answers against them
    labelled = [(r.top1, int(Path(r.record["source"]).parent.name)) for r in results if r.top1 is not None]
    summary["top1_accuracy"] = sum(p == y for p, y in labelled) / len(labelled) if labelled else None
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
