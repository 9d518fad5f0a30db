"""Several edges behind one server on the testbed: the fleet over kernel-shaped links, next to the
fleet simulator on the same windows (issue 24).

:func:`run_testbed_fleet` (``janus-deploy testbed --fleet N``):

1. one network namespace holds the cloud: the built-in server (``serve --preload
   --concurrency K``) listening on every edge's link; each edge gets its own veth pair into it
   (:meth:`~janus_deploy.testbed.netns.Netns.add_veth`, its own /30) whose edge-side egress a
   ``tbf`` qdisc shapes by that edge's own window of the trace: edge i replays the trace rotated
   by ``i × duration / N``, as :func:`~janus_deploy.sim.fleet.simulate_fleet` gives edge i (the
   ping trace alike: ``netem`` on the cloud side of each pair, or one user-space relay per edge);
2. one exchange cost is calibrated over the first (unshaped) link, as the one-edge testbed does;
3. per controller (``aware``: the controller's ``--cloud-load``, the default one when that is
   ``off``; ``unaware``: ``off``) the N edges, one :class:`~janus_deploy.runtime.edge.EdgeRuntime`
   each (its own controller, its own profiled runner state) in threads of this process, start
   together and send for the window's duration, back to back or at ``fps``;
4. the fleet simulator runs the same fleet (same profiles, controllers, windows, SLA, exchange
   policy and calibrated cost; the server as ``K`` instances without batching, the built-in
   server's);
5. returns per controller the per-edge and fleet reports and the server's, in the fleet
   simulator's own types (:class:`~janus_deploy.sim.fleet.FleetResult`, :func:`fleet_metrics`),
   for the kernel run and the simulator, and their differences.

The edges run in this (the root) namespace, each reaching the server through its own veth pair:
its own link, its own shaping, its own address; the kernel, the CPU and the server are shared,
as in a fleet behind one server. Everything is torn down on return, on errors and on Ctrl-C /
SIGTERM; a ``kill -9`` leaves names :func:`~janus_deploy.testbed.netns.sweep_stale` removes at
the next start (every pair is named after this process).
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from janus_deploy.net.traces import Trace
from janus_deploy.schedule.runlog import RequestRecord
from janus_deploy.sim.fleet import MODES, FleetResult, fleet_controller, fleet_metrics, merge_logs, rotated
from janus_deploy.sim.simulator import RequestLog
from janus_deploy.testbed.netns import KernelDelay, KernelLink, Netns, TestbedError, check_privileges, sweep_stale, temp_dir
from janus_deploy.testbed.run import (
    ProfiledRunner,
    TestbedConfig,
    _Cloud,
    _EdgeSide,
    _info,
    _priority,
    _rtt_mode,
    _sigterm_as_interrupt,
)

MAX_EDGES = 64  # one veth pair, one tbf replay thread and one edge thread each
MAX_SECONDS = 600.0


@dataclass(frozen=True)
class FleetSettings:
    """``edges`` edges behind one server with ``instances`` parallel tails (``serve --concurrency``),
    for each of ``modes`` (``aware``, ``unaware``) for the trace window's duration."""

    edges: int
    modes: Sequence[str] = MODES
    instances: int = 1

    def validate(self, cfg: TestbedConfig) -> FleetSettings:
        if int(self.edges) != self.edges or not 1 <= self.edges <= MAX_EDGES:
            raise TestbedError(f"--fleet must be an integer from 1 to {MAX_EDGES} edges, got {self.edges}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise TestbedError(f"--fleet-modes: unknown {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
        if int(self.instances) != self.instances or self.instances < 1:
            raise TestbedError(f"--instances must be an integer >= 1, got {self.instances}")
        if cfg.streams:
            raise TestbedError("--fleet and --streams cannot be combined: a fleet's edges are single-stream")
        if cfg.server_engine != "builtin":
            raise TestbedError("--fleet runs the built-in server (--server-engine builtin): its answers report the "
                               "queue and compute the fleet report needs")
        if cfg.trace.duration_s > MAX_SECONDS:
            raise TestbedError(f"a fleet runs for the trace window's duration, {cfg.trace.duration_s:g} s here; "
                               f"give --trace-seconds (at most {MAX_SECONDS:g})")
        return self


def _windows(cfg: TestbedConfig, n: int) -> tuple[list[Trace], list[Trace | None]]:
    """Edge i's throughput and ping windows: rotated by ``i × duration / n`` (simulate_fleet's rule)."""
    step = cfg.trace.duration_s / n
    ping = cfg.ping
    return ([rotated(cfg.trace, i * step) for i in range(n)],
            [rotated(ping, (i * step) % ping.duration_s) if ping is not None else None for i in range(n)])


def records_log(records: Sequence[RequestRecord], offset_s: float) -> RequestLog:
    """A runtime run's request records as the simulator's :class:`RequestLog` (what
    :func:`fleet_metrics` reads): start since ``offset_s``, the link and the scheduler's bandwidth,
    the decision, measured and predicted latency, bytes and codec. Failed requests are left out."""
    log = RequestLog()
    for r in records:
        if r.kind != "request" or r.error is not None or r.decision is None or r.measured.total_ms is None:
            continue
        d = r.decision
        log.start_s.append(r.t - offset_s)
        log.bw_mbps.append(r.link.trace_mbps if r.link is not None and r.link.trace_mbps is not None else math.nan)
        log.est_mbps.append(r.controller.bandwidth_mbps if r.controller is not None else math.nan)
        log.alpha.append(d.alpha if d.policy != "constant" else math.nan)
        log.split.append(d.split)
        log.latency_ms.append(r.measured.total_ms)
        predicted = r.predicted.total_ms if r.predicted is not None else None
        log.predicted_ms.append(predicted if predicted is not None else math.nan)
        log.labels.append(d.label)
        log.accuracy.append(None)  # the run knows its answers (top1), not the table's expected accuracy
        log.level_index.append(d.profile_level)
        log.bytes.append(r.bytes)
        log.codec.append(d.codec if r.bytes else None)
    return log


def fleet_result(mode: str, per_edge: Sequence[Sequence[RequestRecord]], offsets: Sequence[float], sla_ms: float,
                 seconds: float, instances: int) -> FleetResult:
    """One mode's kernel run in the fleet simulator's report types: every edge's and the fleet's
    :func:`fleet_metrics`, and the server's from its answers (``janus_queue_ms``; utilisation:
    decode + compute over ``seconds × instances``; the built-in server runs one request a batch)."""
    logs = [records_log(rs, off) for rs, off in zip(per_edge, offsets)]
    fallbacks = [sum(1 for r in rs if r.kind == "request" and r.fallback is not None) for rs in per_edge]
    edges = [fleet_metrics(lg, sla_ms, seconds, fb) for lg, fb in zip(logs, fallbacks)]
    fleet = fleet_metrics(merge_logs(logs), sla_ms, seconds, sum(fallbacks))
    fleet["edges"] = len(per_edge)
    answers = [r.server for rs in per_edge for r in rs if r.server and "janus_queue_ms" in r.server]
    waits = np.asarray([s["janus_queue_ms"] for s in answers]) if answers else np.zeros(1)
    busy_s = sum(s.get("janus_compute_ms", 0.0) + s.get("janus_decode_ms", 0.0) for s in answers) / 1e3
    server = {"instances": instances, "max_batch": 1, "requests": len(answers), "batches": len(answers),
              "mean_batch": 1.0 if answers else None, "utilisation": busy_s / (seconds * instances),
              "queue_ms_p50": float(np.percentile(waits, 50)), "queue_ms_p95": float(np.percentile(waits, 95))}
    return FleetResult(mode, edges, fleet, server, logs)


def _drive(side: _EdgeSide, runners: list[Any], urls: list[str], token: str, traces: list[Trace], mode: str,
           start_clocks: Callable[[float], None], checks: Callable[[], None],
           progress: Callable[[str, int, int], None] | None) -> tuple[list[list[RequestRecord]], list[float]]:
    """The N edges of one mode for the window's duration; every edge's records and clock offset."""
    from janus_deploy.runtime.edge import EdgeRuntime
    from janus_deploy.runtime.transport import TransportOptions

    cfg = side.cfg
    base = fleet_controller(cfg.controller, mode)
    seconds = cfg.trace.duration_s
    rts = []
    with ExitStack() as stack:
        for i, url in enumerate(urls):
            log = (cfg.log_dir / f"{mode}-edge{i}.jsonl") if cfg.log_dir else None
            rt = stack.enter_context(EdgeRuntime(
                side.manifest, runners[i], side.edge, side.cloud, server_url=url, sla_ms=cfg.sla_ms, accuracy=side.acc,
                codec=cfg.codec, controller=base.for_trace(traces[i]),
                transport=TransportOptions(token=token, timeout_factor=cfg.timeout_factor), log=log))
            side.check_server(rt)  # also opens the connection before the clocks start
            rts.append(rt)
        failed: list[BaseException] = []
        t0 = time.monotonic() + 0.05
        offsets = [rt.now() + (t0 - time.monotonic()) for rt in rts]
        end = t0 + seconds

        def edge(i: int) -> None:
            k = i
            try:
                while not failed:
                    now = time.monotonic()
                    if cfg.fps:  # the next frame tick (ticks passed meanwhile are skipped, as the simulator's)
                        tick = t0 + math.ceil((now - t0) * cfg.fps - 1e-9) / cfg.fps
                        if tick >= end:
                            return
                        if tick > now:
                            time.sleep(tick - now)
                    elif now >= end:
                        return
                    source, frame = side.frames[k % len(side.frames)]
                    rts[i].infer(frame, source=source)
                    k += 1
            except BaseException as exc:  # noqa: BLE001 - re-raised in the driving thread below
                failed.append(exc)

        start_clocks(t0)
        threads = [threading.Thread(target=edge, args=(i,), name=f"edge{i}", daemon=True) for i in range(len(rts))]
        for t in threads:
            t.start()
        while True:
            alive = [t for t in threads if t.is_alive()]
            if not alive:
                break
            alive[0].join(0.5)  # the link, the server and the relays are checked every half second
            try:
                checks()
            except BaseException as exc:  # noqa: BLE001 - stops the edges, re-raised below
                failed.append(exc)
            if progress is not None:
                progress(mode, min(int(time.monotonic() - t0), int(seconds)), int(seconds))
        if failed:
            raise failed[0]
        checks()
        records = [rt.records for rt in rts]
    return records, offsets


def _simulated(side: _EdgeSide, fleet: FleetSettings, calibration: dict[str, Any]) -> dict[str, FleetResult]:
    """The fleet simulator on the same windows, controllers, exchange policy and calibrated cost."""
    from janus_deploy.runtime.transport import TransportOptions
    from janus_deploy.sim.fleet import FleetConfig, ServerModel, simulate_fleet
    from janus_deploy.sim.simulator import SimConfig

    cfg = side.cfg
    policy = TransportOptions(timeout_factor=cfg.timeout_factor).policy
    sim = SimConfig.with_policy(policy, sla_ms=cfg.sla_ms, systems=("janus-deploy",), fps=cfg.fps, rtt_ms=0.0,
                                codec=cfg.codec, controller=side.ctrl, exchange_ms=calibration.get("exchange_ms", 0.0),
                                probe_exchange_ms=calibration.get("probe_exchange_ms"))
    return simulate_fleet(cfg.trace, side.edge, side.cloud,
                          FleetConfig(edges=fleet.edges, sim=sim, server=ServerModel(instances=fleet.instances),
                                      modes=tuple(fleet.modes)), accuracy=side.acc, ping=cfg.ping)


def as_dict(result: FleetResult) -> dict[str, Any]:
    """A mode's report as JSON: ``{"fleet", "server", "edges"}`` (``simulate --fleet --json``'s shape)."""
    return {"fleet": result.fleet, "server": result.server, "edges": result.edges}


def differences(kernel: FleetResult, sim: FleetResult) -> dict[str, Any]:
    """Simulator − kernel: violations (points), goodput and offloaded share, fleet-wide."""
    a, b = kernel.fleet, sim.fleet

    def rel(k: str) -> float | None:
        return None if not a.get(k) or b.get(k) is None else b[k] / a[k] - 1.0

    return {"violation_points": 100 * ((b["violation_ratio"] or 0.0) - (a["violation_ratio"] or 0.0)),
            "goodput_rel": rel("goodput_rps"), "offloaded_points": 100 * ((b["offloaded"] or 0.0) - (a["offloaded"] or 0.0))}


def run_testbed_fleet(cfg: TestbedConfig, fleet: FleetSettings, *, say: Callable[[str], None] = lambda s: None,
                      progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """The whole fleet run (module docstring); returns ``{"testbed", "kernel", "simulated",
    "differences"}``, ``kernel``/``simulated`` keyed by mode, each :func:`as_dict`'s shape, and the
    :class:`FleetResult` objects under ``"results"`` (``{"kernel": {mode: ...}, "simulated": ...}``)."""
    from janus_deploy.runtime.edge import EdgeRuntime  # noqa: F401 - fail before any namespace is made if the runtime cannot load

    cfg.validate()
    fleet.validate(cfg)
    check_privileges()
    side = _EdgeSide.load(cfg)
    if cfg.log_dir is not None:
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
    n = fleet.edges
    runners = ([ProfiledRunner(side.runner.inner, side.manifest, side.edge) for _ in range(n)]
               if isinstance(side.runner, ProfiledRunner) else [side.runner] * n)  # one chain state per edge
    traces, pings = _windows(cfg, n)
    rtt = _rtt_mode(cfg)
    swept = sweep_stale()
    if swept:
        say(f"swept what killed testbeds left behind: {', '.join(swept)}")
    info = _info(cfg, side.ctrl, rtt, swept)
    info.update(fleet=n, instances=fleet.instances, modes=list(fleet.modes), seconds=cfg.trace.duration_s,
                requests=None)  # time-driven: each edge sends for the window's duration
    results: dict[str, dict[str, FleetResult]] = {"kernel": {}}
    with _sigterm_as_interrupt(), _priority(cfg.nice), ExitStack() as stack:
        tmp = Path(temp_dir())
        stack.callback(shutil.rmtree, tmp, True)
        ns = stack.enter_context(Netns())
        veths = [ns.veths[0], *(ns.add_veth() for _ in range(n - 1))]
        info.update(namespace=ns.name, edges=[{"edge_if": v.host_if, "edge_ip": v.host_ip, "cloud_ip": v.ns_ip,
                                               "trace": tr.name} for v, tr in zip(veths, traces)])
        say(f"namespace {ns.name}: {n} edges, each its own veth pair and link, one server inside; starting it")
        cloud = _Cloud(ns, cfg, tmp, rtt, links=list(zip(veths, pings)), concurrency=fleet.instances)
        stack.callback(cloud.stop)
        cloud.start()
        delays = []
        if rtt == "netem":
            for v, p in zip(veths, pings):
                d = KernelDelay(ns.name, v.ns_if, p)  # type: ignore[arg-type]  # pings are set when rtt is netem
                stack.callback(d.remove)
                d.install()
                delays.append(d)
        say(f"server ready at {', '.join(cloud.urls)}; RTT: {info['rtt']}")
        if cfg.calibrate:
            cloud.hold(0.0)
            for d in delays:
                d.set_rtt(0.0)
            info["calibration"] = side.calibrate(cloud.urls[0], cloud.token)
            say(f"calibration: one exchange costs {info['calibration']['exchange_ms']:.2f} ms beyond link and RTT")
            cloud.start_clock(math.inf)
            for d, p in zip(delays, pings):
                d.set_rtt(p.samples[0])  # type: ignore[union-attr]  # pings are set when rtt is netem
        links = [KernelLink(v.host_if, tr) for v, tr in zip(veths, traces)]
        for link in links:
            stack.callback(link.remove)
            link.install()

        def clocks(t0: float) -> None:
            for link in links:
                link.start(t0)
            cloud.start_clock(t0)
            for d in delays:
                d.start(t0)

        def checks() -> None:
            for link in links:
                link.check()
            cloud.check()
            for d in delays:
                d.check()

        for mode in fleet.modes:
            say(f"{mode}: {n} edges for {cfg.trace.duration_s:g} s, tbf on {', '.join(v.host_if for v in veths)}")
            records, offsets = _drive(side, runners, cloud.urls, cloud.token, traces, mode, clocks, checks, progress)
            results["kernel"][mode] = fleet_result(mode, records, offsets, cfg.sla_ms, cfg.trace.duration_s,
                                                   fleet.instances)
        info["kernel_links"] = [link.stats() for link in links]
    info["teardown"] = "namespace, every veth pair and qdisc removed"
    out: dict[str, Any] = {"testbed": info, "kernel": {m: as_dict(r) for m, r in results["kernel"].items()}}
    if cfg.simulated:
        results["simulated"] = _simulated(side, fleet, info.get("calibration") or {})
        out["simulated"] = {m: as_dict(r) for m, r in results["simulated"].items()}
        out["differences"] = {m: differences(results["kernel"][m], results["simulated"][m]) for m in fleet.modes}
    out["results"] = results
    return out


__all__ = ["FleetSettings", "MAX_EDGES", "as_dict", "differences", "fleet_result", "records_log", "run_testbed_fleet"]
