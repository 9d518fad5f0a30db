"""The simulator's fast engine: one system's whole per-request loop in libjanus (C), one call per
trace and system, with the same decisions, latencies and times as the Python loop to the last bit.

:func:`janus_deploy.sim.simulator.simulate` uses it by default (``engine="fast"``); what it runs is
``libjanus/src/sim.c``: the loop of ``_run_time_driven`` (deadline, cancellation, probes) and
``_run_paper``, the Trace arithmetic (the trace's own cumulative bits are passed in) and the C
controller (estimators, deflation, RTT tracker, margin, breaker, probes), which the libjanus parity
tests hold to the Python controller. The decision table handed to it is
:func:`~janus_deploy.schedule.table_file.build_table`'s, the one ``export-table`` writes.

:func:`unsupported` names what the C loop does not model (libjanus not built, or a simulator or
controller setting it does not know, such as a codec list, pipeline waits or a cloud-load factor
added later); the simulator then runs the Python loop and logs that reason. A C error (a bad
observation the Python controller would refuse too) also falls back, so the Python loop reports it.
"""

from __future__ import annotations

import ctypes as C
import dataclasses
import logging
import math
from typing import Any

import numpy as np

from janus_deploy.net.traces import Trace
from janus_deploy.profile.table import Profile
from janus_deploy.schedule import native
from janus_deploy.schedule.controller import ControllerConfig
from janus_deploy.schedule.scheduler import Scheduler

log = logging.getLogger("janus_deploy.sim")

ENGINES = ("fast", "python")

#: SimConfig / ControllerConfig fields the C loop models; any other field set away from its
#: default makes :func:`unsupported` refuse (a new setting is never silently ignored)
SIM_FIELDS = frozenset({"sla_ms", "systems", "requests", "fps", "paper_mode", "cold_start_mbps", "rtt_ms", "codec",
                        "frame_bytes", "controller", "timeout_factor", "min_timeout_ms", "exchange_ms", "probe_bytes",
                        "probe_exchange_ms"})
CONTROLLER_FIELDS = frozenset(f.name for f in dataclasses.fields(ControllerConfig)) & frozenset({
    "system", "estimator", "window", "cold_start_mbps", "margin", "deflate", "rtt_cold_ms", "rtt_fixed",
    "rtt_window", "rtt_estimate", "probe_interval_s", "breaker_failures", "breaker_open_s", "breaker_max_open_s"})


class _Err(C.Structure):
    _fields_ = [("code", C.c_int), ("message", C.c_char * 512)]


class _Config(C.Structure):  # janus_config
    _fields_ = [("sla_ms", C.c_double), ("codec", C.c_char_p), ("frame_bytes", C.c_int64), ("system", C.c_int),
                ("estimator", C.c_int), ("window", C.c_int), ("cold_start_mbps", C.c_double),
                ("ewma_alpha", C.c_double), ("margin", C.c_double), ("deflate", C.c_int),
                ("rtt_cold_ms", C.c_double), ("rtt_fixed", C.c_int), ("rtt_window", C.c_int),
                ("rtt_estimate", C.c_int), ("probe_interval_s", C.c_double), ("breaker_failures", C.c_int),
                ("breaker_open_s", C.c_double), ("breaker_max_open_s", C.c_double), ("cloud_load", C.c_int),
                ("cloud_window", C.c_int), ("cloud_half_life_s", C.c_double)]


class _Trace(C.Structure):
    _fields_ = [("samples", C.c_void_p), ("n", C.c_size_t), ("interval_s", C.c_double), ("cum", C.c_void_p)]


class _Options(C.Structure):
    _fields_ = [("sla_ms", C.c_double), ("paper_mode", C.c_int), ("requests", C.c_int64), ("fps", C.c_double),
                ("rtt_ms", C.c_double), ("exchange_ms", C.c_double), ("deadline", C.c_int),
                ("timeout_factor", C.c_double), ("min_timeout_ms", C.c_double), ("probe_bytes", C.c_double),
                ("probe_exchange_ms", C.c_double), ("local_ms", C.c_void_p)]


_D = C.POINTER(C.c_double)
_I = C.POINTER(C.c_int32)


class _Result(C.Structure):
    _fields_ = [("n", C.c_size_t), ("start_s", _D), ("bw_mbps", _D), ("est_mbps", _D), ("latency_ms", _D),
                ("predicted_ms", _D), ("level_index", _I), ("split", _I), ("bytes", C.POINTER(C.c_uint64)),
                ("elapsed_s", C.c_double)]


_LIB: Any = None
_LIB_ERROR: str | None = None


def _lib() -> Any:
    """libjanus with the simulation entry points typed; None (and :data:`_LIB_ERROR`) when absent."""
    global _LIB, _LIB_ERROR
    if _LIB is not None or _LIB_ERROR is not None:
        return _LIB
    path = native.library_path()
    try:
        lib = C.CDLL(str(path))
        vp, ip = C.c_void_p, C.c_int
        for name, res, args in (
                ("janus_table_load_memory", ip, [C.c_char_p, C.c_size_t, C.POINTER(vp), C.POINTER(_Err)]),
                ("janus_table_free", None, [vp]),
                ("janus_table_config", None, [vp, C.POINTER(_Config)]),
                ("janus_controller_new", ip, [vp, C.POINTER(_Config), C.POINTER(vp), C.POINTER(_Err)]),
                ("janus_controller_free", None, [vp]),
                ("janus_simulate", ip, [vp, C.POINTER(_Trace), C.POINTER(_Trace), C.POINTER(_Options),
                                        C.POINTER(_Result), C.POINTER(_Err)]),
                ("janus_sim_result_free", None, [C.POINTER(_Result)])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
    except (OSError, AttributeError) as exc:
        _LIB_ERROR = (f"libjanus at {path} cannot be loaded or lacks the simulation loop ({exc}); "
                      "rebuild it (pip install ., or python -c 'from janus_deploy.schedule import native; native.build()')")
        return None
    _LIB = lib
    return lib


def unsupported(config: Any) -> str | None:
    """Why the fast engine cannot run ``config`` (a SimConfig), None when it can."""
    for f in dataclasses.fields(config):
        if f.name in SIM_FIELDS:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(config, f.name) != default:
            return f"the fast engine does not model the simulator setting {f.name}={getattr(config, f.name)!r}"
    ctrl = config.controller
    for f in dataclasses.fields(ctrl):
        if f.name not in CONTROLLER_FIELDS and getattr(ctrl, f.name) != f.default:
            return f"the fast engine does not model the controller setting {f.name}={getattr(ctrl, f.name)!r}"
    if _lib() is None:
        return _LIB_ERROR
    return None


def _trace(tr: Trace, bandwidth: bool) -> tuple[_Trace, list[np.ndarray]]:
    samples = np.ascontiguousarray(tr.samples, dtype=np.float64)
    keep = [samples]
    cum = None
    if bandwidth:
        c = np.ascontiguousarray(tr.cumulative_bits, dtype=np.float64)
        keep.append(c)
        cum = c.ctypes.data
    return _Trace(samples.ctypes.data, len(samples), float(tr.interval_s), cum), keep


def _table(edge: Profile, cloud: Profile, config: Any, accuracy: Any, tables: dict[str, bytes] | None) -> bytes:
    """:func:`~janus_deploy.schedule.table_file.build_table`'s bytes for these profiles and
    scheduler settings; ``tables`` (one simulate() call's: the same profiles, accuracy and
    settings for every system) keeps it for the next system. The controller settings the table
    also stores are the defaults here: each run's are handed to libjanus in a janus_config."""
    from janus_deploy.schedule.table_file import build_table

    if tables is not None and "table" in tables:
        return tables["table"]
    data = build_table(edge, cloud, accuracy=accuracy, codec=config.codec, sla_ms=config.sla_ms,
                       frame_bytes=config.frame_bytes)
    if tables is not None:
        tables["table"] = data
    return data


def _config(lib: Any, table: Any, c: ControllerConfig) -> _Config:
    """The table's janus_config with every controller setting of ``c`` (as build_table packs them)."""
    from janus_deploy.schedule.controller import RTT_ESTIMATES, SYSTEMS
    from janus_deploy.schedule.estimators import ESTIMATORS

    out = _Config()
    lib.janus_table_config(table, C.byref(out))
    assert c.cold_start_mbps is not None  # resolved by the caller (ControllerConfig.for_trace)
    out.system, out.estimator, out.window = SYSTEMS.index(c.system), ESTIMATORS.index(c.estimator), c.window
    out.cold_start_mbps, out.margin, out.deflate = float(c.cold_start_mbps), float(c.margin), int(c.deflate)
    out.rtt_cold_ms, out.rtt_fixed, out.rtt_window = float(c.rtt_cold_ms), int(c.rtt_fixed), c.rtt_window
    out.rtt_estimate, out.probe_interval_s = RTT_ESTIMATES.index(c.rtt_estimate), float(c.probe_interval_s or 0.0)
    out.breaker_failures, out.breaker_open_s = c.breaker_failures, float(c.breaker_open_s)
    out.breaker_max_open_s = float(c.breaker_max_open_s)
    return out


def run_system(trace: Trace, ping: Trace | None, edge: Profile, cloud: Profile, config: Any, accuracy: Any,
               ctrl_config: ControllerConfig, deploy: Scheduler,
               tables: dict[str, bytes] | None = None) -> tuple[dict[str, Any], float] | None:
    """One system's loop in C: (the RequestLog's columns, simulated elapsed seconds), or None
    (logged) when libjanus refuses; ``ctrl_config`` is resolved (system, cold start, cold RTT);
    ``tables``: see :func:`_table`."""
    from janus_deploy.schedule.table_file import TableFileError

    lib = _lib()
    if lib is None:
        return None
    try:
        data = _table(edge, cloud, config, accuracy, tables)
    except TableFileError as exc:
        log.info("fast engine: no decision table (%s); the Python loop runs", exc)
        return None
    err, table, ctl = _Err(), C.c_void_p(), C.c_void_p()
    res = _Result()
    try:
        if lib.janus_table_load_memory(data, len(data), C.byref(table), C.byref(err)) or \
                lib.janus_controller_new(table, C.byref(_config(lib, table, ctrl_config)), C.byref(ctl), C.byref(err)):
            log.info("fast engine: libjanus refused the settings (%s); the Python loop runs", err.message.decode())
            return None
        cands = list(edge.candidates)
        local = np.ascontiguousarray([[edge.total_ms(li) - edge.head_ms(li, s) for s in cands]
                                      for li in range(len(edge.levels))], dtype=np.float64)
        policy = config.policy
        probe_extra = config.exchange_ms if config.probe_exchange_ms is None else config.probe_exchange_ms
        opt = _Options(float(config.sla_ms), int(bool(config.paper_mode)),
                       -1 if config.requests is None else int(config.requests), float(config.fps or 0.0),
                       float(config.rtt_ms), float(config.exchange_ms), int(policy is not None),
                       float(policy.timeout_factor) if policy else 0.0, float(policy.min_timeout_ms) if policy else 0.0,
                       float(config.probe_bytes or 0), float(probe_extra), local.ctypes.data)
        bw, keep_bw = _trace(trace, True)
        pg, keep_pg = _trace(ping, False) if ping is not None else (None, [])
        rc = lib.janus_simulate(ctl, C.byref(bw), C.byref(pg) if pg is not None else None, C.byref(opt),
                                C.byref(res), C.byref(err))
        del keep_bw, keep_pg
        if rc:
            log.info("fast engine: the C loop stopped (%s); the Python loop runs", err.message.decode())
            return None
        n = res.n
        cols = {name: np.ctypeslib.as_array(getattr(res, name), (n,)).copy() if n else np.zeros(0)
                for name in ("start_s", "bw_mbps", "est_mbps", "latency_ms", "predicted_ms", "level_index", "split",
                             "bytes")}
        return cols, float(res.elapsed_s)
    finally:
        lib.janus_sim_result_free(C.byref(res))
        if ctl:
            lib.janus_controller_free(ctl)
        if table:
            lib.janus_table_free(table)


def decision_columns(cols: dict[str, np.ndarray], deploy: Scheduler) -> dict[str, list[Any]]:
    """The RequestLog's per-decision columns (alpha with NaN for the constant policy, label,
    accuracy) from level and split, through the scheduler's own Decision of each option taken."""
    li, sp = cols["level_index"].astype(np.int64), cols["split"].astype(np.int64)
    if not len(li):
        return {"alpha": [], "labels": [], "accuracy": [], "codec": []}
    width = int(sp.max()) + 1
    key = li * width + sp
    taken = np.flatnonzero(np.bincount(key))  # the options chosen at least once
    lut = np.zeros(int(taken[-1]) + 1, dtype=np.int64)
    lut[taken] = np.arange(len(taken))
    alpha, labels, acc, codec = [], [], [], []
    for k in taken.tolist():
        d = deploy.evaluate(k // width, k % width, 1.0)
        alpha.append(d.alpha if d.policy != "constant" else math.nan)
        labels.append(d.label)
        acc.append(d.accuracy)
        codec.append(d.codec)
    idx = lut[key]
    return {"alpha": np.asarray(alpha, dtype=float)[idx].tolist(),
            "labels": np.asarray(labels, dtype=object)[idx].tolist(),
            "accuracy": np.asarray(acc, dtype=object)[idx].tolist(),
            "codec": np.asarray(codec, dtype=object)[idx].tolist()}


def skipped_frames(start_s: np.ndarray, fps: float) -> int:
    """With ``--fps``: the frame ticks that passed while a request ran, from the requests' start
    times (each starts on a tick ``k / fps``), as the Python loop counts them."""
    if len(start_s) < 2:
        return 0
    k = np.rint(np.asarray(start_s, dtype=np.float64) * fps).astype(np.int64)
    return int(k[-1] - k[0] - (len(k) - 1))
