"""What a run needs around the edge runtime, for the CLI and for library users alike: the server
check before the first request, the check that the run's settings match the profile it plans
with, and the exit policy (did the run do its job?). The CLI's ``run`` and the demo call these;
nothing here prints or exits."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from janus_deploy import JanusError
from janus_deploy.schedule.runlog import RequestRecord


@dataclass(frozen=True)
class ServerCheck:
    """What ``GET /v2`` said before the first request. ``reachable``: it answered at all;
    ``line``: one line for the user; ``warning``: the line is a warning."""

    reachable: bool
    line: str
    warning: bool = False


def check_server(rt: Any, wait_s: float = 0.0) -> ServerCheck:
    """Ask the server what it serves before the first request, waiting up to ``wait_s`` for it to
    answer. JanusError when it refuses the token or serves another plan (the plan-hash refusal)."""
    url = rt.transport.server_url
    deadline = time.monotonic() + wait_s
    while True:
        status, info = rt.transport.server_metadata()
        if status is not None or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    if status is None:
        return ServerCheck(False, f"the server {url} is not reachable ({info}); requests run on this device "
                                  "until it answers", warning=True)
    if status in (401, 403):
        raise JanusError(f"the server {url} refused the token ({status}: {info}); "
                         "set JANUS_TOKEN or --token-file to the server's token")
    if status != 200:
        return ServerCheck(True, f"the server answered GET /v2 with {status}: {info}", warning=True)
    if not isinstance(info, dict):
        raise JanusError(f"the server {url} answered GET /v2 with 200 but {info}: "
                         "is --server the URL of a V2 server (`janus-deploy serve` or Triton)?")
    from janus_deploy.runtime.transport import served_plan
    from janus_deploy.triton import dialect

    served = served_plan(info)
    if served is None and dialect.is_triton(info):
        return ServerCheck(True, f"server {url} (triton {info.get('version', '')}) reachable; the plan hash is "
                                 "checked in each tail model's configuration before its answers are used")
    if served is None:
        if rt.transport.options.allow_unverified_plan:
            return ServerCheck(True, f"the server {url} does not say which plan it serves; its answers are used "
                                     "anyway (--allow-unverified-server)", warning=True)
        raise JanusError(f"the server {url} does not say which plan it serves (no plan hash in GET /v2); serve "
                         "this plan with `janus-deploy serve`, or pass --allow-unverified-server")
    if served != rt.manifest.hash:
        raise JanusError(f"the server {url} serves plan {served[:12]}, not this plan "
                         f"({rt.manifest.hash[:12]}); start `janus-deploy serve` with the same plan directory")
    return ServerCheck(True, f"server {url} serves this plan ({served[:12]})")


def settings_mismatch(device: dict[str, Any], *, edge_slowdown: float, threads: int,
                      device_name: str | None = None) -> list[str]:
    """The run's settings that differ from what the edge profile recorded it was measured with
    (edge slowdown, intra-op threads, device name), one line each naming both sides. A profile
    that did not record a setting (a preset, a linear model) is not judged on it."""
    out = []
    rec_slow = device.get("edge_slowdown")
    if rec_slow is not None and not math.isclose(float(rec_slow), float(edge_slowdown), rel_tol=1e-6):
        out.append(f"the edge profile was measured with --edge-slowdown {float(rec_slow):g} but this run uses "
                   f"--edge-slowdown {float(edge_slowdown):g}; pass the same factor (or re-profile)")
    rec_threads = device.get("threads")
    if rec_threads is not None and device.get("backend") != "linear-model" and int(rec_threads) != int(threads):
        out.append(f"the edge profile was measured with --threads {int(rec_threads)} but this run uses "
                   f"--threads {int(threads)}; pass the same count (or re-profile)")
    rec_name = device.get("name")
    if device_name is not None and rec_name is not None and rec_name != device_name:
        out.append(f"the edge profile was measured on device {rec_name!r} but this run names {device_name!r}")
    return out


@dataclass(frozen=True)
class Outcome:
    """The exit policy's answer: ``rc`` 0 when the run did its job, else the code and one line."""

    rc: int
    line: str | None = None


def run_outcome(summary: dict[str, Any], max_error_share: float = 0.0, server: ServerCheck | None = None,
                records: list[RequestRecord] | None = None) -> Outcome:
    """Did the run do its job? rc 2: a configuration error (the token); rc 3: too many errors,
    every answer a fallback, or a server that was never reached (not before the first request,
    and no request got an answer from it)."""
    n = summary["requests"] or 1
    if summary.get("config_error"):
        return Outcome(2, f"{summary['config_error']}: every request ran on this device; check the token "
                          "(JANUS_TOKEN or --token-file)")
    if summary["errors"] / n > max_error_share:
        return Outcome(3, f"{summary['errors']} of {summary['requests']} requests failed (more than "
                          f"--max-error-share {max_error_share:g}); see the log for the causes")
    if summary["answered"] and summary["fallbacks"] == summary["answered"]:
        kinds = ", ".join(f"{k}: {v}" for k, v in summary["fallback_kinds"].items())
        return Outcome(3, f"every request fell back to the device ({kinds}): the server never answered usably")
    served = any(r.server is not None for r in records or [])
    if server is not None and not server.reachable and not served:
        return Outcome(3, f"verdict: the server was never reached: {summary['requests']} request(s) ran on this "
                          "device only; start `janus-deploy serve` or fix --server")
    return Outcome(0)


def frame_source(manifest: Any, *, images: Any = None, video: Any = None, synthetic: int | None = None,
                 limit: int | None = None):
    """The frames of a run from exactly one source (a folder of images, a video, N synthetic
    frames), sized for the plan's model; JanusError unless exactly one is given."""
    from janus_deploy.runtime.edge import frames_from_images, frames_from_video, frames_synthetic

    if sum(s is not None for s in (images, video, synthetic)) != 1:
        raise JanusError("give exactly one of --images DIR, --video FILE or --synthetic N")
    img = manifest.model_info.img_size
    if images is not None:
        return frames_from_images(images, img, limit)
    if video is not None:
        return frames_from_video(video, img, limit)
    return frames_synthetic(int(synthetic), img)  # type: ignore[arg-type]  # checked above: one is set


def edge_runner(manifest: Any, engines: Any, *, edge_slowdown: float = 1.0, threads: int = 0,
                preload: bool = False) -> Any:
    """What runs the edge's segments: the engine folder as it is (the runtime loads it), or, for
    ``preload`` (every file checked and every engine loaded first) or an emulated slower edge
    (``edge_slowdown`` > 1), a runner built here."""
    if edge_slowdown <= 1 and not preload:
        return engines
    from janus_deploy.backends import load_runner
    from janus_deploy.backends.base import SlowedRunner

    runner = load_runner(manifest, engines, threads=threads)
    if preload:
        runner.check_files()
        runner.preload()
    return SlowedRunner(runner, edge_slowdown) if edge_slowdown > 1 else runner


# ------------------------------------------------------------------ frame sources at a rate

SOURCE_KINDS = ("video", "url", "images", "synthetic")
DEFAULT_FPS = 15.0  # images and synthetic frames have no rate of their own


def frames_from_av(location: str, img_size: int, limit: int | None = None) -> tuple[Any, float | None]:
    """(frames, the stream's own rate or None) of a video file or stream URL (RTSP, HTTP, ...)
    decoded by PyAV (FFmpeg), resized to the model's input: the optional ``video`` extra."""
    from pathlib import Path

    if "://" not in location and not Path(location).is_file():
        raise JanusError(f"video file {location} does not exist")
    try:
        import av  # the optional video extra (PyAV)
    except ImportError:
        raise JanusError("video files and stream URLs need PyAV: pip install 'janus-deploy[video]' "
                         "(or pip install av); or extract frames and use --images") from None
    import numpy as np
    from PIL import Image

    try:
        container = av.open(location, timeout=10.0) if "://" in location else av.open(location)
    except Exception as exc:  # noqa: BLE001 - PyAV raises its own classes (av.error.*, OSError subclasses)
        raise JanusError(f"PyAV cannot open {location}: {exc}") from None
    vs = next((s for s in container.streams if s.type == "video"), None)
    if vs is None:
        container.close()
        raise JanusError(f"{location} has no video stream")
    rate = float(vs.average_rate) if vs.average_rate else None
    name = location.rsplit("/", 1)[-1]

    def gen() -> Any:
        try:
            i = 0
            for fr in container.decode(vs):
                if not isinstance(fr, av.VideoFrame):
                    continue
                if limit and i >= limit:
                    return
                im = fr.to_image().convert("RGB").resize((img_size, img_size), Image.Resampling.BILINEAR)
                yield f"{name}#{i}", np.asarray(im, dtype=np.uint8)
                i += 1
        finally:
            container.close()

    return gen(), rate


def parse_source(spec: str) -> dict[str, Any]:
    """One ``--stream`` value: ``KIND=WHERE[,fps=F][,sla=MS][,limit=N]`` with KIND video (a
    file), url (a stream URL), images (a folder) or synthetic (a frame count)."""
    head, *opts = spec.split(",")
    kind, sep, where = head.partition("=")
    if not sep or kind not in SOURCE_KINDS or not where:
        raise JanusError(f"--stream {spec!r}: write KIND=WHERE[,fps=F][,sla=MS][,limit=N] with KIND one of "
                         f"{', '.join(SOURCE_KINDS)} (e.g. video=cam.mp4,fps=15 or synthetic=300)")
    out: dict[str, Any] = {"kind": kind, "where": where}
    for o in opts:
        k, sep, v = o.partition("=")
        if k not in ("fps", "sla", "limit") or not sep:
            raise JanusError(f"--stream {spec!r}: unknown option {o!r} (fps=F, sla=MS, limit=N)")
        try:
            out[k] = int(v) if k == "limit" else float(v)
        except ValueError:
            raise JanusError(f"--stream {spec!r}: {k} must be a number, got {v!r}") from None
        if not out[k] > 0:
            raise JanusError(f"--stream {spec!r}: {k} must be > 0")
    if kind == "synthetic" and not (where.isdigit() and int(where) > 0):
        raise JanusError(f"--stream {spec!r}: synthetic=N needs a frame count N >= 1")
    return out


def open_source(manifest: Any, spec: dict[str, Any], *, name: str, fps: float | None = None, seed: int = 0) -> Any:
    """A :class:`~janus_deploy.runtime.streams.Source` for one parsed ``--stream`` (or one copy
    of ``--images``/``--video``/``--synthetic`` for ``--streams N``): its rate is the spec's
    ``fps``, else ``fps`` (``--fps``), else the video's own, else :data:`DEFAULT_FPS`."""
    from janus_deploy.runtime.edge import frames_from_images, frames_synthetic
    from janus_deploy.runtime.streams import Source

    img = manifest.model_info.img_size
    kind, where, limit = spec["kind"], spec["where"], spec.get("limit")
    own = None
    if kind in ("video", "url"):
        frames, own = frames_from_av(str(where), img, limit)
    elif kind == "images":
        frames = frames_from_images(where, img, limit)
    else:
        frames = frames_synthetic(int(where), img, seed=seed)
    rate = spec.get("fps") or fps or own or DEFAULT_FPS
    return Source(name, frames, float(rate), spec.get("sla"), limit)
