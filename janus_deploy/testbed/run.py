"""The testbed run: one trace window over a kernel-shaped link, the user-space shaper and the simulator.

:func:`run_testbed` (``janus-deploy testbed`` is a thin wrapper):

1. creates a network namespace and a veth pair (:class:`~janus_deploy.testbed.netns.Netns`) and
   starts the built-in V2 server inside it (``ip netns exec ... janus-deploy serve --preload``,
   a subprocess; a random bearer token); with a ping trace, the RTT comes from ``netem`` on the
   cloud side's egress where the kernel has it, else from a user-space relay on the reply path
   (:mod:`janus_deploy.testbed.delay`); the report says which;
2. **kernel** run: ``tbf`` on the edge-side veth replays the trace sample by sample
   (:class:`~janus_deploy.testbed.netns.KernelLink`) while an :class:`EdgeRuntime` outside the
   namespace sends N requests, unpaced in user space;
3. **user_space** run: the qdisc comes off and the same runtime settings send N requests paced
   by the user-space token bucket (:class:`~janus_deploy.net.shaper.TraceShaper`) over the same
   window, through the same server and RTT;
4. **simulated**: :func:`~janus_deploy.sim.simulator.simulate` runs the same controller settings,
   profiles, SLA and N over the same window;
5. returns the three run reports (:func:`janus_deploy.report.run_report`'s schema), their
   differences from the kernel run, and whether the simulator met the targets of
   ``docs/testbed.md``.

The trace window starts at ``--trace-start`` seconds (time 0 of every run is its first request)
and loops at the end of the trace, as everywhere else. Everything the namespace holds is torn down
on return, on errors and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.net.traces import MBPS, MS, Trace
from janus_deploy.report import REPORT_KEYS, report_differences
from janus_deploy.schedule.controller import ControllerConfig
from janus_deploy.schedule.runlog import RequestRecord
from janus_deploy.testbed.netns import (
    KernelDelay,
    KernelLink,
    Netns,
    TestbedError,
    Veth,
    check_privileges,
    netem_available,
    stop_process,
    sweep_stale,
    temp_dir,
)

SERVER_PORT = 8000
CALIBRATION_REQUESTS = 30
CHAIN_GAP_S = 0.002  # a segment called this soon after the previous one continues its chain
RELAY_PORT = 8080
TARGETS = {"violation_ratio_points": 2.0, "latency_ms_p50_rel": 0.10, "latency_ms_p95_rel": 0.10,
           "throughput_rps_rel": 0.10}


@dataclass
class TestbedConfig:
    """What one testbed run needs (``janus-deploy testbed`` options in brackets).

    ``trace``/``ping``: the windows (see :func:`window`), time 0 = the first request.
    ``controller``: the control loop's settings (default: :class:`ControllerConfig` with the
    trace's mean as cold start), shared by the runtime runs and the simulator.
    ``edge_timing``: ``profile`` (every edge segment takes its profiled time, :class:`ProfiledRunner`)
    or ``real`` (the engines' own time × ``edge_slowdown``). ``threads``: the edge's sessions. ``frames``: uint8 frames sent in
    turn (default: 16 synthetic ones). ``user_space``/``simulated``: also run those.
    """

    __test__ = False  # not a pytest class

    plan: Path
    engines: Path
    edge_profile: Any
    cloud_profile: Any
    trace: Trace
    sla_ms: float
    requests: int
    ping: Trace | None = None
    accuracy: Any = None
    codec: str | None = None
    controller: ControllerConfig | None = None
    fps: float | None = None
    edge_slowdown: float = 1.0
    threads: int = 1
    server_threads: int = 0
    frames: list[tuple[str, np.ndarray]] | None = None
    timeout_factor: float = 1.0
    user_space: bool = True
    simulated: bool = True
    log_dir: Path | None = None
    ready_timeout_s: float = 180.0
    rtt_mode: str = "auto"  # auto | netem | user-space
    calibrate: bool = True  # measure the exchange cost for the simulator first
    edge_timing: str = "profile"  # profile (ProfiledRunner) | real (× edge_slowdown)
    nice: int | None = None  # scheduling priority of the testbed's processes (None: unchanged)
    server_engine: str = "builtin"  # builtin | triton (``serve --engine``)
    streams: int | None = None  # cameras at ``fps`` through the pipelined runtime (``requests`` frames each)
    drop: str = "stale"  # their drop policy (stale | none)
    serial: bool = False  # one frame at a time, the rest dropped

    def validate(self) -> TestbedConfig:
        if self.trace.unit != MBPS:
            raise TestbedError(f"--trace needs a throughput trace (Mbit/s); {self.trace.name} is in {self.trace.unit}")
        if not any(v > 0 for v in self.trace.samples):
            raise TestbedError(f"trace {self.trace.name} has no nonzero bandwidth sample: nothing could ever be sent")
        if self.ping is not None and self.ping.unit != MS:
            raise TestbedError(f"--ping needs RTT samples in ms; {self.ping.name} is in {self.ping.unit}")
        if self.requests < 1:
            raise TestbedError(f"--requests must be >= 1, got {self.requests}")
        if not (math.isfinite(self.sla_ms) and self.sla_ms > 0):
            raise TestbedError(f"--sla must be > 0 ms, got {self.sla_ms}")
        if self.fps is not None and not self.fps > 0:
            raise TestbedError(f"--fps must be > 0, got {self.fps}")
        if self.streams is not None and (self.streams < 1 or self.fps is None):
            raise TestbedError("--streams needs a count >= 1 and --fps (each camera's rate)")
        if self.drop not in ("stale", "none"):
            raise TestbedError(f"unknown --drop {self.drop!r}; choose stale or none")
        if self.edge_timing not in ("profile", "real"):
            raise TestbedError(f"unknown edge timing {self.edge_timing!r}; choose profile or real")
        if self.edge_timing == "profile" and self.edge_slowdown != 1.0:
            raise TestbedError("--edge-slowdown applies to --edge-timing real only (with profile timing every "
                               "segment takes its profiled time)")
        if self.server_engine not in ("builtin", "triton"):
            raise TestbedError(f"unknown --server-engine {self.server_engine!r}; choose builtin or triton")
        if self.nice is not None and not -20 <= self.nice <= 19:
            raise TestbedError(f"--nice must be in -20..19, got {self.nice}")
        if self.rtt_mode not in ("auto", "netem", "user-space"):
            raise TestbedError(f"unknown RTT mode {self.rtt_mode!r}; choose auto, netem or user-space")
        return self


def window(trace: Trace, start_s: float) -> Trace:
    """``trace`` from ``start_s`` seconds on (rotated: it still loops over the whole trace)."""
    if start_s < 0:
        raise TestbedError(f"--trace-start must be >= 0 s, got {start_s}")
    k = int(start_s / trace.interval_s) % len(trace)
    if k == 0:
        return trace
    return Trace(trace.samples[k:] + trace.samples[:k], trace.interval_s,
                 f"{trace.name} from {k * trace.interval_s:g} s", trace.unit)


# --------------------------------------------------------------------------- signals


@contextmanager
def _priority(nice: int | None) -> Iterator[None]:
    """Run the testbed's own processes and threads at ``nice`` (inherited by the server, the relay,
    tc and the replay threads started inside); restored on exit."""
    if nice is None:
        yield
        return
    old = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:
        raise TestbedError(f"cannot set --nice {nice}: {exc.strerror}") from None
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, old)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C (so every finally block tears down)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------- processes in the namespace


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class _Cloud:
    """The server (and the RTT relays, if any) inside the namespace. ``links``: the veth pairs the
    edges reach it by, each with its ping window (default: the namespace's one pair and
    ``cfg.ping``); with several, the server listens on all of them, and with a user-space RTT each
    link gets its own relay. ``concurrency``: the server's ``--concurrency`` (default: serve's)."""

    def __init__(self, ns: Netns, cfg: TestbedConfig, tmp: Path, rtt: str, *,
                 links: Sequence[tuple[Veth, Trace | None]] | None = None, concurrency: int | None = None) -> None:
        self.ns, self.cfg, self.tmp, self.rtt = ns, cfg, tmp, rtt
        self.links = list(links) if links is not None else [(ns.veths[0], cfg.ping)]
        self.concurrency = concurrency
        self.token = secrets.token_hex(16)
        self.server: subprocess.Popen | None = None
        self.relays: list[subprocess.Popen] = []
        self.server_log = tmp / "server.log"
        host = "127.0.0.1" if rtt == "user-space" else (ns.ns_ip if len(self.links) == 1 else "0.0.0.0")
        self.server_addr = (host, SERVER_PORT)
        port = RELAY_PORT if rtt == "user-space" else SERVER_PORT
        self.urls = [f"http://{v.ns_ip}:{port}" for v, _ in self.links]
        self.url = self.urls[0]

    def start(self) -> None:
        cfg = self.cfg
        argv = [sys.executable, "-m", "janus_deploy.cli.main", "serve", str(cfg.plan), "--engines", str(cfg.engines),
                "--host", self.server_addr[0], "--port", str(SERVER_PORT), "--preload", "--threads",
                str(cfg.server_threads), "--engine", cfg.server_engine,
                *(["--concurrency", str(self.concurrency)] if self.concurrency else [])]
        env = dict(os.environ, JANUS_TOKEN=self.token)
        with open(self.server_log, "w") as log:
            self.server = self.ns.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        if self.rtt == "user-space":
            for k, (veth, ping) in enumerate(self.links):
                self.relays.append(self._start_relay(k, veth, ping))
        self._wait_ready()

    def _start_relay(self, k: int, veth: Veth, ping: Trace | None) -> subprocess.Popen:
        rtt_file = self.tmp / f"rtt{k}.json"
        rtt_file.write_text(json.dumps(ping.samples if ping is not None else [0.0]))
        interval = ping.interval_s if ping is not None else 1.0
        relay = self.ns.popen(
            [sys.executable, "-m", "janus_deploy.testbed.delay", "--listen", f"{veth.ns_ip}:{RELAY_PORT}",
             "--target", f"127.0.0.1:{SERVER_PORT}", "--rtt-file", str(rtt_file), "--interval", str(interval)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        line = relay.stdout.readline()  # type: ignore[union-attr]  # the relay is started with PIPE streams
        if not line.startswith("listening"):
            err = relay.stderr.read() if relay.poll() is not None else ""  # type: ignore[union-attr]  # the relay is started with PIPE streams
            raise TestbedError(f"the RTT relay did not start: {(err or line).strip().splitlines()[-1:] or '?'}")
        return relay

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.cfg.ready_timeout_s
        for url in self.urls:
            with httpx.Client(base_url=url, trust_env=False, timeout=2.0) as client:
                while True:
                    if self.server is not None and self.server.poll() is not None:
                        raise TestbedError(f"the server in the namespace exited with {self.server.returncode}: "
                                           f"{_tail(self.server_log) or 'no output'}")
                    try:
                        if client.get("/v2/health/ready").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TestbedError(f"the server in the namespace was not ready after {self.cfg.ready_timeout_s:g} s "
                                           f"({_tail(self.server_log) or 'no output'})")
                    time.sleep(0.2)

    def _tell(self, line: str) -> None:
        for relay in self.relays:
            try:
                relay.stdin.write(line + "\n")  # type: ignore[union-attr]  # the relay is started with PIPE streams
                relay.stdin.flush()  # type: ignore[union-attr]  # the relay is started with PIPE streams
            except OSError as exc:
                raise TestbedError(f"the RTT relay is gone ({exc})") from None

    def start_clock(self, t0: float) -> None:
        self._tell(f"start {t0!r}")

    def hold(self, rtt_ms: float) -> None:
        self._tell(f"hold {rtt_ms!r}")

    def check(self) -> None:
        for name, p in (("server", self.server), *(("RTT relay", r) for r in self.relays)):
            if p is not None and p.poll() is not None:
                raise TestbedError(f"the {name} in the namespace exited with {p.returncode}"
                                   + (f": {_tail(self.server_log)}" if name == "server" else ""))

    def stop(self) -> None:
        for p in self.relays:
            if p.stdin:
                try:
                    p.stdin.close()
                except OSError:
                    pass
            stop_process(p)
        if self.server is not None:
            stop_process(self.server)


# --------------------------------------------------------------------------- the edge side


class ProfiledRunner:
    """An edge whose every segment takes (at least) its profiled time: it runs the real segment
    and sleeps the rest of ``head_ms[c_{i+1}] − head_ms[c_i]``, the time the simulator charges.
    On a shared machine a slowed runner (:class:`~janus_deploy.backends.base.SlowedRunner`)
    multiplies every contention hiccup by its factor; this one absorbs them up to the profiled
    time, so the testbed compares the network and not the neighbours' load. Consecutive segments
    of one chain (called back to back) share one deadline, so a late wake-up in one is made up
    by the next and a chain ends one wake-up late at most."""

    def __init__(self, runner: Any, manifest: Any, profile: Any) -> None:
        self.inner, self.manifest, self.profile = runner, manifest, profile
        self._cands = sorted(profile.candidates)
        self._ms: dict[tuple[int, int], float] = {}
        self._last: tuple[int, int, float, float] | None = None  # level, segment, returned at, due

    def target_ms(self, level: int, segment: int) -> float:
        key = (level, segment)
        if key not in self._ms:
            lv = self.manifest.plan_level(level)
            pli = self.profile.level_index(lv.policy, lv.alpha)
            c = self._cands
            self._ms[key] = self.profile.head_ms(pli, c[segment + 1]) - self.profile.head_ms(pli, c[segment])
        return self._ms[key]

    def run_segment(self, level: int, segment: int, inputs: Any) -> list[np.ndarray]:
        t0 = time.perf_counter()
        last = self._last
        chained = last is not None and last[:2] == (level, segment - 1) and t0 - last[2] < CHAIN_GAP_S
        due = (last[3] if chained else t0) + self.target_ms(level, segment) / 1e3  # type: ignore[index]  # last is not None when chained
        out = self.inner.run_segment(level, segment, inputs)
        rest = due - time.perf_counter()
        if rest > 0:
            time.sleep(rest)
        self._last = (level, segment, time.perf_counter(), due)
        return out

    def run_unsplit(self, level: int, image: np.ndarray) -> np.ndarray:
        return self.inner.run_unsplit(level, image)

    def __getattr__(self, name: str) -> Any:  # load, preload, unload, loaded
        return getattr(self.inner, name)


def _edge_runner(cfg: TestbedConfig, manifest: Any, edge: Any) -> Any:
    from janus_deploy.backends import load_runner
    from janus_deploy.backends.base import SlowedRunner

    runner = load_runner(manifest, cfg.engines, threads=cfg.threads)
    runner.preload()  # a fallback must not pay a session load (the profile does not)
    if cfg.edge_timing == "profile":
        return ProfiledRunner(runner, manifest, edge)
    return SlowedRunner(runner, cfg.edge_slowdown) if cfg.edge_slowdown > 1 else runner


def _controller(cfg: TestbedConfig) -> ControllerConfig:
    """The given settings, or the defaults; the cold start by ControllerConfig.for_trace (as ``run``)."""
    return (cfg.controller or ControllerConfig()).for_trace(cfg.trace)


def _link_fidelity(records: list[RequestRecord], trace: Trace, offset_s: float) -> dict[str, Any]:
    """Receiver-measured upload rate (body bytes / the server's receive time) over the trace's
    mean over that time, for offloaded requests whose body took >= 2 ms to arrive."""
    ratios = []
    for r in records:
        recv_ms = (r.server or {}).get("janus_receive_ms")
        if not r.bytes or not recv_ms or recv_ms < 2.0:
            continue
        t_send = r.t - offset_s + ((r.measured.edge_ms or 0.0) + (r.measured.encode_ms or 0.0)) / 1e3
        if t_send < 0:
            continue
        want = trace.mean_rate(t_send, t_send + recv_ms / 1e3)
        if want > 0:
            ratios.append(r.bytes * 8 / (recv_ms / 1e3) / 1e6 / want)
    if not ratios:
        return {"requests": 0, "receiver_over_trace_median": None}
    return {"requests": len(ratios), "receiver_over_trace_median": float(np.median(ratios)),
            "receiver_over_trace_p10": float(np.percentile(ratios, 10)),
            "receiver_over_trace_p90": float(np.percentile(ratios, 90))}


@dataclass
class _EdgeSide:
    """What every runtime run of one testbed shares: the settings, the plan, the edge's runner,
    the profiles, the accuracy table and the controller settings."""

    cfg: TestbedConfig
    manifest: Any
    runner: Any
    edge: Any
    cloud: Any
    acc: Any
    ctrl: ControllerConfig

    @classmethod
    def load(cls, cfg: TestbedConfig) -> _EdgeSide:
        """Profiles, accuracy and the runner loaded; synthetic frames when none are given."""
        from janus_deploy.plan.manifest import Manifest
        from janus_deploy.profile.table import Profile, resolve_profile

        manifest = Manifest.load(cfg.plan)
        edge = cfg.edge_profile if isinstance(cfg.edge_profile, Profile) else resolve_profile(str(cfg.edge_profile))
        cloud = cfg.cloud_profile if isinstance(cfg.cloud_profile, Profile) else resolve_profile(str(cfg.cloud_profile))
        acc = cfg.accuracy
        if isinstance(acc, (str, Path)):
            from janus_deploy.calibrate.accuracy import load_accuracy

            acc = load_accuracy(acc)
        side = cls(cfg, manifest, _edge_runner(cfg, manifest, edge), edge, cloud, acc, _controller(cfg))
        if cfg.frames is None:
            cfg.frames = _synthetic(manifest)
        return side

    @property
    def frames(self) -> list[tuple[str, np.ndarray]]:
        assert self.cfg.frames is not None  # filled by load()
        return self.cfg.frames

    def runtime(self, url: str, token: str, *, sla_ms: float | None = None, shaper: Any = None,
                log: Path | None = None, timeout_factor: float = 1.0) -> Any:
        from janus_deploy.runtime.edge import EdgeRuntime
        from janus_deploy.runtime.transport import TransportOptions

        cfg = self.cfg
        return EdgeRuntime(self.manifest, self.runner, self.edge, self.cloud, server_url=url,
                           sla_ms=cfg.sla_ms if sla_ms is None else sla_ms, accuracy=self.acc, codec=cfg.codec,
                           controller=self.ctrl, transport=TransportOptions(token=token, timeout_factor=timeout_factor),
                           trace=shaper, log=log)

    def check_server(self, rt: Any) -> None:
        status, info = rt.transport.server_metadata()
        if status != 200:
            raise TestbedError(f"the server in the namespace answered GET /v2 with {status}: {info}")
        served = ((info.get("janus") or {}) if isinstance(info, dict) else {}).get("plan_hash")
        if served not in (None, self.manifest.hash):
            raise TestbedError(f"the server serves plan {str(served)[:12]}, not {self.manifest.hash[:12]}")

    def drive(self, url: str, token: str, kind: str, start_clocks: Callable[[float], None],
              checks: Callable[[], None], progress: Callable[[str, int, int], None] | None) -> dict[str, Any]:
        """N requests through one EdgeRuntime; its summary with the link fidelity and wall time."""
        from janus_deploy.net.shaper import TraceShaper

        cfg = self.cfg
        shaper = TraceShaper(cfg.trace) if kind == "user_space" else None
        log = (cfg.log_dir / f"{kind}.jsonl") if cfg.log_dir else None
        with self.runtime(url, token, shaper=shaper, log=log, timeout_factor=cfg.timeout_factor) as rt:
            self.check_server(rt)
            if cfg.streams:
                return _drive_streams(cfg, self.frames, rt, kind, start_clocks, checks, progress)
            t0 = time.monotonic()
            offset = rt.now()
            if shaper is not None:
                shaper.start(t0)
            start_clocks(t0)
            for i in range(cfg.requests):
                _pace(cfg.fps, t0)
                source, frame = self.frames[i % len(self.frames)]
                rt.infer(frame, source=source)
                if i % 16 == 0:
                    checks()
                if progress is not None:
                    progress(kind, i + 1, cfg.requests)
            checks()
            rep = rt.summary()
            rep["link"] = _link_fidelity(rt.records, cfg.trace, offset)
            rep["elapsed_s"] = time.monotonic() - t0
            rep["probes"] = sum(1 for r in rt.records if r.probe is not None)
        return rep

    def calibrate(self, url: str, token: str) -> dict[str, Any]:
        """The fixed cost of one exchange beyond link and RTT, measured before the runs: cloud-only
        requests over the unshaped veth with no added RTT; the median of the runtime's RTT samples
        (network time − upload); the same for probes, whose answer the server times differently. The
        simulator charges them with every RTT (``SimConfig.exchange_ms``, ``probe_exchange_ms``)."""
        samples, probes = [], []
        with self.runtime(url, token, sla_ms=max(self.cfg.sla_ms, 1000.0)) as rt:
            for i in range(CALIBRATION_REQUESTS):
                res = rt.infer(self.frames[i % len(self.frames)][1], force=(0, 0))
                obs = res.record.observations
                if res.fallback is None and obs and obs[0].rtt_ms is not None:
                    samples.append(obs[0].rtt_ms)
                ex = rt.transport.probe(1.0)  # the probe's answer is not an inference's: its own cost
                if ex.ok:
                    probes.append(rt.observations_of(ex, probe=True)[0].rtt_ms)
        if len(samples) < CALIBRATION_REQUESTS // 2 or len(probes) < CALIBRATION_REQUESTS // 2:
            raise TestbedError(f"the calibration exchanges failed ({CALIBRATION_REQUESTS - len(samples)} requests and "
                               f"{CALIBRATION_REQUESTS - len(probes)} probes of {CALIBRATION_REQUESTS}): the server in "
                               "the namespace does not answer usably")
        return {"requests": len(samples), "exchange_ms": float(np.median(samples)),
                "p10_ms": float(np.percentile(samples, 10)), "p90_ms": float(np.percentile(samples, 90)),
                "probe_exchange_ms": float(np.median(probes))}


def _pace(fps: float | None, t0: float) -> None:
    """Sleep until the next frame tick at ``fps`` (no pacing without one)."""
    if not fps:
        return
    t = time.monotonic() - t0
    tick = math.ceil(t * fps - 1e-9) / fps
    if tick > t:
        time.sleep(tick - t)


def _drive_streams(cfg: TestbedConfig, frames: list[tuple[str, np.ndarray]], rt: Any, kind: str,
                   start_clocks: Callable[[float], None], checks: Callable[[], None],
                   progress: Callable[[str, int, int], None] | None) -> dict[str, Any]:
    """``cfg.streams`` cameras (``cfg.requests`` frames each, at ``cfg.fps``) through the
    pipelined runtime on ``rt``; its report (camera figures included) with the link fidelity."""
    import itertools
    import threading

    from janus_deploy.runtime.streams import Source, StreamRuntime
    from janus_deploy.schedule.pipeline import PipelineConfig

    assert frames and cfg.fps is not None and cfg.streams
    sources = [Source(f"cam{i}", itertools.islice(itertools.cycle(frames[i:] + frames[:i]), cfg.requests), cfg.fps,
                      None, cfg.requests) for i in range(cfg.streams)]
    sr = StreamRuntime(rt, sources, PipelineConfig(drop=cfg.drop, serial=cfg.serial))
    t0: list[float] = []
    done = [0]
    total = cfg.streams * cfg.requests
    stop = threading.Event()

    failed: list[BaseException] = []

    def watch() -> None:  # the kernel link and the server are checked while the cameras run
        while not stop.wait(0.5):
            try:
                checks()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the driving thread below
                failed.append(exc)
                return

    def show(rec: RequestRecord) -> None:
        if rec.kind != "probe":
            done[0] += 1
            if progress is not None:
                progress(kind, done[0], total)

    def started() -> None:
        t0.append(time.monotonic())
        start_clocks(t0[0])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        records = sr.run(progress=show, on_start=started)
    finally:
        stop.set()
        watcher.join(2.0)
    if failed:
        raise failed[0]
    checks()
    rep = sr.summary()
    rep["link"] = _link_fidelity([r for r in records if r.kind != "probe"], cfg.trace, sr.t0)
    rep["elapsed_s"] = time.monotonic() - t0[0] if t0 else None
    rep["probes"] = sum(1 for r in records if r.kind == "probe")
    return rep


def _synthetic(manifest: Any, n: int = 16) -> list[tuple[str, np.ndarray]]:
    from janus_deploy.images import synthetic_frames

    return [(f"synthetic:{i}", f) for i, f in enumerate(synthetic_frames(n, manifest.model_info.img_size, seed=0))]


# --------------------------------------------------------------------------- comparison


def compare(kernel: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``other − kernel``: the headline figures (:func:`report_differences`), the prediction
    error, and each configuration's share in both."""
    out = report_differences(kernel, other)
    a, b = kernel.get("median_abs_pred_err_pct"), other.get("median_abs_pred_err_pct")
    out["median_abs_pred_err_pct"] = None if a is None or b is None else b - a
    ca, cb = kernel.get("choices") or {}, other.get("choices") or {}
    ta, tb = sum(ca.values()) or 1, sum(cb.values()) or 1
    out["choice_shares"] = {k: {"kernel": ca.get(k, 0) / ta, "other": cb.get(k, 0) / tb}
                            for k in sorted(set(ca) | set(cb), key=lambda k: -(ca.get(k, 0) + cb.get(k, 0)))}
    return out


def targets(diff: dict[str, Any]) -> dict[str, Any]:
    """Did the simulator come within the targets of the kernel run (``TARGETS``)?"""
    vr = diff.get("violation_ratio")
    got = {"violation_ratio_points": None if vr is None else abs(vr) * 100}
    for k in ("latency_ms_p50_rel", "latency_ms_p95_rel", "throughput_rps_rel"):
        v = diff.get(k)
        got[k] = None if v is None else abs(v)
    return {k: {"got": g, "limit": lim, "met": g is not None and g <= lim}
            for k, lim in TARGETS.items() for g in (got[k],)}


# --------------------------------------------------------------------------- entry point


def _rtt_mode(cfg: TestbedConfig) -> str:
    """How the ping trace's RTT is added: none, netem (kernel) or user-space (the relay)."""
    if cfg.ping is None:
        return "none"
    netem = cfg.rtt_mode != "user-space" and netem_available()
    if cfg.rtt_mode == "netem" and not netem:
        raise TestbedError("--rtt-mode netem: this kernel has no netem qdisc (sch_netem); use --rtt-mode auto")
    return "netem" if netem else "user-space"


def _info(cfg: TestbedConfig, ctrl: ControllerConfig, rtt: str, swept: list[str]) -> dict[str, Any]:
    """The report's ``testbed`` entry before the runs (the runs add namespace, link and calibration)."""
    return {
        "trace": cfg.trace.name, "sample_interval_s": cfg.trace.interval_s, "trace_mean_mbps": cfg.trace.mean(),
        "ping": cfg.ping.name if cfg.ping else None,
        "rtt": {"none": "none (no --ping)", "netem": "netem on the cloud side's egress (kernel)",
                "user-space": "user space, on the reply path (this kernel has no netem)"}[rtt],
        "requests": cfg.requests, "sla_ms": cfg.sla_ms, "fps": cfg.fps, "controller": ctrl.to_dict(),
        "edge_timing": cfg.edge_timing if cfg.edge_timing == "profile" else f"real x{cfg.edge_slowdown:g}",
        "nice": cfg.nice, "server_engine": cfg.server_engine,
        "streams": cfg.streams, "drop": cfg.drop if cfg.streams else None, "serial": cfg.serial,
        "stale_removed": swept,
    }


def _simulated(side: _EdgeSide, calibration: dict[str, Any]) -> dict[str, Any]:
    """The simulator over the same window, with the runtime's exchange policy and the calibrated costs."""
    from janus_deploy.runtime.transport import TransportOptions
    from janus_deploy.sim.simulator import SimConfig, simulate

    cfg = side.cfg
    policy = TransportOptions(timeout_factor=cfg.timeout_factor).policy  # the runtime's exchange policy
    sim = SimConfig.with_policy(policy, sla_ms=cfg.sla_ms, systems=("janus-deploy",), requests=cfg.requests,
                                fps=cfg.fps, streams=cfg.streams, drop=cfg.drop, serial=cfg.serial, rtt_ms=0.0,
                                codec=cfg.codec, controller=side.ctrl, exchange_ms=calibration.get("exchange_ms", 0.0),
                                probe_exchange_ms=calibration.get("probe_exchange_ms"))
    res = simulate(cfg.trace, side.edge, side.cloud, sim, accuracy=side.acc, ping=cfg.ping)["janus-deploy"]
    return dict(res.metrics, elapsed_s=res.log.elapsed_s)


def run_testbed(cfg: TestbedConfig, *, say: Callable[[str], None] = lambda s: None,
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """The whole testbed run (module docstring); returns ``{"testbed", "kernel", "simulated",
    "user_space", "differences", "targets"}``."""
    from janus_deploy.runtime.edge import EdgeRuntime  # noqa: F401 - fail before any namespace is made if the runtime cannot load

    cfg.validate()
    check_privileges()
    side = _EdgeSide.load(cfg)
    if cfg.log_dir is not None:
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
    rtt = _rtt_mode(cfg)
    swept = sweep_stale()
    if swept:
        say(f"swept what killed testbeds left behind: {', '.join(swept)}")
    info = _info(cfg, side.ctrl, rtt, swept)
    out: dict[str, Any] = {"testbed": info}
    with _sigterm_as_interrupt(), _priority(cfg.nice), ExitStack() as stack:
        tmp = Path(temp_dir())
        stack.callback(shutil.rmtree, tmp, True)
        ns = stack.enter_context(Netns())
        info.update(namespace=ns.name, edge_if=ns.host_if, edge_ip=ns.host_ip, cloud_ip=ns.ns_ip)
        say(f"namespace {ns.name}: edge {ns.host_ip} ({ns.host_if}) ↔ cloud {ns.ns_ip}; starting the server inside")
        cloud_side = _Cloud(ns, cfg, tmp, rtt)
        stack.callback(cloud_side.stop)
        cloud_side.start()
        delay = None
        if rtt == "netem":
            delay = KernelDelay(ns.name, ns.ns_if, cfg.ping)  # type: ignore[arg-type]  # cfg.ping is set when rtt is netem
            stack.callback(delay.remove)
            delay.install()
        say(f"server ready at {cloud_side.url}; RTT: {info['rtt']}")
        if cfg.calibrate:
            cloud_side.hold(0.0)
            if delay is not None:
                delay.set_rtt(0.0)
            info["calibration"] = side.calibrate(cloud_side.url, cloud_side.token)
            say(f"calibration: one exchange costs {info['calibration']['exchange_ms']:.2f} ms beyond link and RTT, "
                f"a probe {info['calibration']['probe_exchange_ms']:.2f} ms")
            cloud_side.start_clock(math.inf)  # the RTT trace's first sample until a run starts
            if delay is not None:
                delay.set_rtt(cfg.ping.samples[0])  # type: ignore[union-attr]  # cfg.ping is set when rtt is netem

        def clocks(t0: float) -> None:
            cloud_side.start_clock(t0)
            if delay is not None:
                delay.start(t0)

        # 1. kernel-shaped uplink
        link = KernelLink(ns.host_if, cfg.trace)
        stack.callback(link.remove)
        link.install()

        def kernel_clocks(t0: float) -> None:
            link.start(t0)
            clocks(t0)

        def kernel_checks() -> None:
            link.check()
            cloud_side.check()
            if delay is not None:
                delay.check()

        say(f"kernel run: tbf on {ns.host_if} replays {cfg.trace.name} ({cfg.requests} requests)")
        out["kernel"] = side.drive(cloud_side.url, cloud_side.token, "kernel", kernel_clocks, kernel_checks, progress)
        info["kernel_link"] = link.stats()
        link.remove()
        # 2. user-space shaper over the same window, same server and RTT
        if cfg.user_space:
            say(f"user-space run: the token bucket paces the upload ({cfg.requests} requests)")
            def checks() -> None:
                cloud_side.check()
                if delay is not None:
                    delay.check()

            out["user_space"] = side.drive(cloud_side.url, cloud_side.token, "user_space", clocks, checks, progress)
    info["teardown"] = "namespace, veth pair and qdiscs removed"
    # 3. the simulator over the same window
    if cfg.simulated:
        out["simulated"] = _simulated(side, info.get("calibration") or {})
    kernel = out["kernel"]
    out["differences"] = {f"{k}_vs_kernel": compare(kernel, out[k]) for k in ("simulated", "user_space") if k in out}
    if "simulated" in out:
        out["targets"] = targets(out["differences"]["simulated_vs_kernel"])
    missing = [k for k in REPORT_KEYS if k not in kernel]
    if missing:  # the one schema: a change to run_report must show up here
        raise JanusError(f"the kernel run's report lacks {missing}")
    return out


__all__ = ["TARGETS", "TestbedConfig", "TestbedError", "compare", "run_testbed", "targets", "window"]
