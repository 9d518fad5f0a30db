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
from janus_deploy.schedule.runlog import RequestRecord

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = "throughput/driving/lte/*.list"  # below the shipped traces (net.traces.shipped_traces_dir)
BASELINE_R = 4  # ToMe's constant r of the device-only / cloud-only baselines (as the README's pipeline)
REPLAYED = ("janus-deploy", "janus-paper", "device-only", "cloud-only")  # simulator systems in the comparison
DECISION_MAP = "decision-map.png"


class DemoError(JanusError):
    """Something the demo needs (checkpoint, trace) is missing."""


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
    from janus_deploy.calibrate.digits import SMALL_MODEL_CHECKPOINT, SMALL_MODEL_NAME, SMALL_MODEL_OVERRIDES, make_digits, write_image_folder
    from janus_deploy.model import ModelSpec
    from janus_deploy.net.traces import load_trace, shipped_trace
    from janus_deploy.plan import ExportConfig, export_plan
    from janus_deploy.profile.measure import measure_profile
    from janus_deploy.profile.table import save_profile
    from janus_deploy.runtime.edge import EdgeRuntime, frames_from_images
    from janus_deploy.runtime.server import BackgroundServer, create_app

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = REPO_ROOT / SMALL_MODEL_CHECKPOINT
    if not ckpt.is_file():
        raise DemoError(f"the small digits checkpoint {ckpt} is missing; run tools/train_small_vit.py")
    trace_spec = trace or str(shipped_trace(DEFAULT_TRACE))

    say(f"1/7 export {SMALL_MODEL_NAME} {SMALL_MODEL_OVERRIDES} ({levels} levels, k={k}) → {out / 'plan'}")
    spec = ModelSpec(SMALL_MODEL_NAME, dict(SMALL_MODEL_OVERRIDES), str(ckpt))
    manifest, _ = export_plan(spec, out / "plan", ExportConfig(k=k, levels=levels, baseline_r=BASELINE_R),
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

        export_repository(manifest, out / "engines", out / "triton-repository", ExportOptions(platform="python", fuse=False),
                          force=True)  # every tail: fused would be one process per tail and codec
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

            results = rt.run(frames_from_images(out / "images", manifest.model_info.img_size, limit=requests),
                             progress=one_done)
            summary = rt.summary()
    # the images sit in class folders (DIR/<digit>/<i>.png): score the answers against them
    labelled = [(r.top1, int(Path(r.record.source or "").parent.name)) for r in results if r.top1 is not None]
    summary["top1_accuracy"] = sum(p == y for p, y in labelled) / len(labelled) if labelled else None
    summary["trace"] = {"spec": trace_spec, "name": link.name, "sample_interval_s": sample_interval_s}
    say("   compare with the baselines on the same frames and trace window (replayed through the simulator)")
    summary["comparison"] = compare_with_baselines(out / "requests.jsonl", link, manifest,
                                                   OrtRunner(manifest), out / "images")
    summary["decision_map"] = str(write_decision_map(out / "requests.jsonl", out / DECISION_MAP,
                                                     title=f"janus-deploy demo over {link.name}", trace=link))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _label_of(source: str) -> int:
    """The digit of an image written by :func:`write_image_folder` (``DIR/<digit>/<i>.png``)."""
    return int(Path(source).parent.name)


def observed_rtt_ms(records: list[RequestRecord]) -> float:
    """The median RTT sample of a run's exchanges (network time beyond the upload: the loopback
    and HTTP cost a replay charges per exchange); 0 when the run never sent anything."""
    import numpy as np

    rtts = [o.rtt_ms for r in records for o in r.observations if o.rtt_ms is not None]
    return float(np.median(rtts)) if rtts else 0.0


def compare_with_baselines(log: str | Path, trace: Any, manifest: Any, runner: Any, images: str | Path,
                           systems: tuple[str, ...] = REPLAYED) -> dict[str, Any]:
    """The run of ``log`` next to what the baselines would have done with the same frames (the
    images, in the run's order) over the same trace from the same start (trace time 0, as the
    run's shaper): the run's own row from its records, every other system replayed through the
    simulator with the run's profiles, controller settings, SLA and codec, the run's median RTT
    sample, and the runtime's deadline and probes. Top-1 of a replayed request is the answer of
    the level it chose on that frame (``runner``, the whole model: a split does not change the
    answer). Returns ``{"rows": [...], "rtt_ms": ..., "frames": N, "trace": name}``."""
    import numpy as np

    from janus_deploy.backends import run_segments
    from janus_deploy.images import normalize
    from janus_deploy.profile.table import profile_from_dict
    from janus_deploy.runtime.edge import frames_from_images
    from janus_deploy.runtime.transport import TransportOptions
    from janus_deploy.schedule.controller import ControllerConfig
    from janus_deploy.schedule.runlog import read_run_log
    from janus_deploy.sim.simulator import SimConfig, simulate

    run_log = read_run_log(log)
    header, records = run_log.header, run_log.records
    sla = header.sla_ms
    edge = profile_from_dict(header.edge_profile, where="run log edge_profile")
    cloud = profile_from_dict(header.cloud_profile, where="run log cloud_profile")
    ctrl = ControllerConfig.from_dict(header.controller)
    rtt = observed_rtt_ms(records)
    n = len(records)
    frames = list(frames_from_images(images, manifest.model_info.img_size, limit=n))
    if len(frames) != n:
        raise DemoError(f"{images} holds {len(frames)} images, the run answered {n}")
    labels = np.asarray([_label_of(src) for src, _ in frames])
    answered = [r for r in records if r.error is None]
    wall = (max(r.t + r.measured.total_ms / 1e3 for r in records) - min(r.t for r in records)
            if records else 0.0)

    def row(system: str, how: str, lat: list[float], seconds: float, top1: list[bool], sent: list[float],
            choices: list[str]) -> dict[str, Any]:
        within = sum(v <= sla + 1e-9 for v in lat)
        top = max(set(choices), key=choices.count) if choices else None
        return {"system": system, "how": how, "requests": len(lat),
                "violation_ratio": 1 - within / len(lat) if lat else None,
                "goodput_rps": within / seconds if seconds > 0 else None,
                "top1": float(np.mean(top1)) if top1 else None,
                "mean_bytes": float(np.mean(sent)) if sent else None,
                "most_chosen": top, "most_chosen_share": choices.count(top) / len(choices) if choices else None}

    rows = [row("janus-deploy", "ran", [r.measured.total_ms for r in answered], wall,
                [r.top1 == _label_of(r.source or "") for r in answered], [r.bytes for r in answered],
                [r.decision.label for r in answered if r.decision is not None])]
    cfg = SimConfig.with_policy(TransportOptions().policy, sla_ms=sla, systems=systems, requests=n, codec=header.codec,
                                controller=ctrl, cold_start_mbps=ctrl.cold_start_mbps, rtt_ms=rtt)
    sim = simulate(trace, edge, cloud, cfg, accuracy=header.accuracy)
    m = manifest.model_info
    answers: dict[int, np.ndarray] = {}

    def answer(profile_level: int) -> np.ndarray:
        if profile_level not in answers:
            lv = edge.levels[profile_level]
            level = manifest.find_level(lv.alpha, lv.policy)
            nseg = manifest.plan_level(level).num_segments
            answers[profile_level] = np.asarray([
                int(np.argmax(run_segments(runner, level, 0, nseg, [normalize(fr[None], m.mean, m.std)])[0][0]))
                for _, fr in frames])
        return answers[profile_level]

    for system in systems:
        lg = sim[system].log
        top1 = [bool(answer(li)[i] == labels[i]) for i, li in enumerate(lg.level_index)]
        rows.append(row(system, "replayed", lg.latency_ms, lg.elapsed_s, top1, lg.bytes, lg.labels))
    return {"rows": rows, "rtt_ms": rtt, "frames": n, "trace": getattr(trace, "name", str(trace)), "sla_ms": sla}


def write_decision_map(log: str | Path, path: str | Path, title: str = "", trace: Any = None) -> Path:
    """The decision map of a run (:func:`janus_deploy.sim.plots.plot_decision_map`) from its log:
    what the scheduler chose per request, the predicted and the measured latency, against the
    bandwidth it was given, and the options it weighed at the run's RTT."""
    from janus_deploy.profile.table import profile_from_dict
    from janus_deploy.schedule.controller import ControllerConfig, build_controller
    from janus_deploy.schedule.runlog import read_run_log
    from janus_deploy.sim.plots import DecisionSeries, plot_decision_map

    run_log = read_run_log(log)
    header, records = run_log.header, run_log.records
    ctrl = build_controller(profile_from_dict(header.edge_profile, where="run log edge_profile"),
                            profile_from_dict(header.cloud_profile, where="run log cloud_profile"),
                            ControllerConfig.from_dict(header.controller), accuracy=header.accuracy,
                            sla_ms=header.sla_ms, codec=header.codec)
    series = DecisionSeries.from_run_records(records, trace)
    import numpy as np

    used = [r.controller.rtt_ms for r in records if r.controller is not None]
    rtt = float(np.median(used)) if used else observed_rtt_ms(records)  # the RTT the controller decided with
    return plot_decision_map(series, ctrl.deploy, path, margin=ctrl.config.margin, rtt_ms=rtt,
                             title=title, measured="measured")
