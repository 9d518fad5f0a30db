"""libjanus for the tests: the installed library (rebuilt in place when its sources changed since
the install, as `pip install -e .` would), ctypes bindings of janus.h, and compile helpers.

The bindings mirror janus.h's structs field for field; they exist only to drive the C library
from tests with the Python implementation as the reference.
"""

from __future__ import annotations

import ctypes as C
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from janus_deploy.schedule import native
from janus_deploy.schedule.scheduler import Scheduler
from janus_deploy.schedule.table_file import build_table

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "libjanus"
POLICY = ("exponential", "linear", "constant")
SYSTEMS = ("device-only", "cloud-only", "mixed", "janus-paper", "janus-deploy")
ESTIMATORS = ("harmonic", "ewma", "robustmpc")
KINDS = ("transfer", "rate", "outage", "server", "unauthorized")
REASONS = ("scheduler", "breaker-open", "unauthorized")
MODE = {"janus-deploy": 0, "paper": 1}
CLOUD_LOADS = ("extra", "factor", "off")  # janus_cloud_load


def ensure_built() -> Path:
    """The package's libjanus, rebuilt in place (atomically) when the sources changed."""
    if not native.is_current(SRC, native.install_dir()):
        native.build(SRC, native.install_dir(), log=lambda m: None)
    return native.install_dir()


def cc() -> str:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc") or "cc"


def compile_c(sources: list[Path | str], out: Path, *flags: str) -> Path:
    cmd = [cc(), "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off",
           *[str(s) for s in sources], "-o", str(out), *flags]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}"
    return out


class Error(C.Structure):
    _fields_ = [("code", C.c_int), ("message", C.c_char * 512)]


class Decision(C.Structure):
    _fields_ = [("level_index", C.c_int), ("policy", C.c_int), ("alpha", C.c_double), ("split", C.c_int),
                ("predicted_ms", C.c_double), ("meets_sla", C.c_int),
                ("edge_ms", C.c_double), ("encode_ms", C.c_double), ("comm_ms", C.c_double),
                ("rtt_ms", C.c_double), ("decode_ms", C.c_double), ("cloud_ms", C.c_double),
                ("bytes", C.c_uint64), ("accuracy", C.c_double), ("plan_level", C.c_int),
                ("model", C.c_char_p), ("num_engines", C.c_int), ("engines", C.POINTER(C.c_char_p)),
                ("codec", C.c_char_p)]

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "policy": POLICY[self.policy], "level_index": self.level_index,
                "split": self.split, "predicted_ms": self.predicted_ms, "meets_sla": bool(self.meets_sla),
                "bytes": self.bytes, "accuracy": None if math.isnan(self.accuracy) else self.accuracy,
                "codec": self.codec.decode() if self.codec else None,
                "breakdown": {"edge_ms": self.edge_ms, "encode_ms": self.encode_ms, "comm_ms": self.comm_ms,
                              "rtt_ms": self.rtt_ms, "decode_ms": self.decode_ms, "cloud_ms": self.cloud_ms}}

    @property
    def engine_list(self) -> list[str] | None:
        if not self.engines:
            return None
        return [self.engines[i].decode() for i in range(self.num_engines)]


class Config(C.Structure):
    _fields_ = [("sla_ms", C.c_double), ("codec", C.c_char_p), ("frame_bytes", C.c_int64), ("system", C.c_int),
                ("estimator", C.c_int), ("window", C.c_int), ("cold_start_mbps", C.c_double),
                ("ewma_alpha", C.c_double), ("margin", C.c_double), ("deflate", C.c_int),
                ("rtt_cold_ms", C.c_double), ("rtt_fixed", C.c_int), ("rtt_window", C.c_int),
                ("rtt_estimate", C.c_int), ("probe_interval_s", C.c_double), ("breaker_failures", C.c_int),
                ("breaker_open_s", C.c_double), ("breaker_max_open_s", C.c_double), ("cloud_load", C.c_int),
                ("cloud_window", C.c_int), ("cloud_half_life_s", C.c_double)]


class Choice(C.Structure):
    _fields_ = [("decision", Decision), ("estimate_mbps", C.c_double), ("bandwidth_mbps", C.c_double),
                ("rtt_ms", C.c_double), ("recent_error", C.c_double), ("reason", C.c_int),
                ("cloud_factor", C.c_double), ("cloud_extra_ms", C.c_double)]


class Observation(C.Structure):
    _fields_ = [("t", C.c_double), ("kind", C.c_int), ("nbytes", C.c_double), ("seconds", C.c_double),
                ("mbps", C.c_double), ("rtt_ms", C.c_double), ("server_ok", C.c_int), ("probe", C.c_int),
                ("server_ms", C.c_double), ("expected_ms", C.c_double), ("server_compute_ms", C.c_double)]


class State(C.Structure):
    _fields_ = [("breaker_open", C.c_int), ("consecutive_failures", C.c_int), ("breaker_opened", C.c_int),
                ("config_error", C.c_int), ("estimate_mbps", C.c_double), ("rtt_ms", C.c_double),
                ("observations", C.c_longlong)]


class Exchange(C.Structure):
    _fields_ = [("kind", C.c_int), ("sent", C.c_double), ("unacked", C.c_double), ("body_bytes", C.c_double),
                ("upload_s", C.c_double), ("network_s", C.c_double), ("elapsed_s", C.c_double),
                ("server_receive_ms", C.c_double), ("probe", C.c_int)]


class TableInfo(C.Structure):
    _fields_ = [("model_name", C.c_char_p), ("plan_hash", C.c_char_p), ("edge_device", C.c_char_p),
                ("cloud_device", C.c_char_p), ("accuracy_metric", C.c_char_p), ("num_blocks", C.c_int),
                ("embed_dim", C.c_int), ("num_tokens", C.c_int), ("num_prefix_tokens", C.c_int),
                ("img_height", C.c_int), ("img_width", C.c_int), ("num_levels", C.c_int),
                ("num_candidates", C.c_int), ("candidates", C.POINTER(C.c_int)), ("num_segments", C.c_int),
                ("num_codecs", C.c_int), ("default_codec", C.c_int), ("baseline_level", C.c_int),
                ("has_names", C.c_int)]


class Tensor(C.Structure):
    _fields_ = [("name", C.c_char_p), ("dtype", C.c_int), ("ndim", C.c_int), ("shape", C.POINTER(C.c_int64)),
                ("data", C.c_void_p), ("nbytes", C.c_size_t)]


class Output(C.Structure):
    _fields_ = [("name", C.c_char_p), ("dtype", C.c_int), ("ndim", C.c_int), ("shape", C.c_int64 * 8),
                ("data", C.c_void_p), ("nbytes", C.c_size_t)]


DTYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64")


class JanusCError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Lib:
    """ctypes view of libjanus.so."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path or native.library_path())
        L = self.lib = C.CDLL(str(self.path))
        vp, ip, dp = C.c_void_p, C.c_int, C.c_double
        E = C.POINTER(Error)
        sig = {
            "janus_table_load": (ip, [C.c_char_p, C.POINTER(vp), E]),
            "janus_table_load_memory": (ip, [C.c_char_p, C.c_size_t, C.POINTER(vp), E]),
            "janus_table_free": (None, [vp]),
            "janus_table_get_info": (None, [vp, C.POINTER(TableInfo)]),
            "janus_table_config": (None, [vp, C.POINTER(Config)]),
            "janus_table_codec": (C.c_char_p, [vp, ip]),
            "janus_scheduler_new": (ip, [vp, C.c_char_p, C.c_int64, C.POINTER(vp), E]),
            "janus_scheduler_free": (None, [vp]),
            "janus_scheduler_codec": (C.c_char_p, [vp]),
            "janus_decide": (ip, [vp, ip, dp, dp, dp, dp, C.POINTER(Decision), E]),
            "janus_baseline": (ip, [vp, ip, dp, dp, dp, C.POINTER(Decision), E]),
            "janus_decide_loaded": (ip, [vp, ip, dp, dp, dp, dp, dp, dp, C.POINTER(Decision), E]),
            "janus_baseline_loaded": (ip, [vp, ip, dp, dp, dp, dp, dp, C.POINTER(Decision), E]),
            "janus_server_ms_expected": (ip, [vp, ip, ip, C.POINTER(dp), E]),
            "janus_evaluate": (ip, [vp, ip, ip, ip, dp, dp, dp, C.POINTER(Decision), E]),
            "janus_controller_new": (ip, [vp, C.POINTER(Config), C.POINTER(vp), E]),
            "janus_controller_free": (None, [vp]),
            "janus_controller_decide": (ip, [vp, dp, C.POINTER(Choice), E]),
            "janus_controller_observe": (ip, [vp, C.POINTER(Observation), C.POINTER(dp), E]),
            "janus_controller_observe_exchange": (ip, [vp, dp, C.POINTER(Exchange), C.POINTER(dp), E]),
            "janus_controller_probe_due": (ip, [vp, dp]),
            "janus_controller_get_state": (None, [vp, C.POINTER(State)]),
            "janus_controller_scheduler": (vp, [vp]),
            "janus_observation_init": (None, [C.POINTER(Observation), dp, ip]),
            "janus_status_name": (C.c_char_p, [ip]),
            "janus_v2_encode_request": (ip, [C.POINTER(Tensor), C.c_size_t, C.c_char_p, C.POINTER(C.c_char_p),
                                             C.c_size_t, ip, vp, C.c_size_t, C.POINTER(C.c_size_t),
                                             C.POINTER(C.c_size_t), E]),
            "janus_v2_encode_frame": (ip, [C.c_char_p, ip, ip, C.c_char_p, vp, C.c_size_t, C.POINTER(C.c_size_t),
                                           C.POINTER(C.c_size_t), E]),
            "janus_v2_encode_tokens": (ip, [C.c_char_p, vp, vp, ip, ip, C.c_char_p, vp, C.c_size_t,
                                            C.POINTER(C.c_size_t), C.POINTER(C.c_size_t), E]),
            "janus_v2_decode_response": (ip, [C.c_char_p, C.c_size_t, C.c_int64, C.POINTER(vp), E]),
            "janus_v2_response_free": (None, [vp]),
            "janus_v2_response_num_outputs": (C.c_size_t, [vp]),
            "janus_v2_response_output": (C.POINTER(Output), [vp, C.c_size_t]),
            "janus_v2_response_id": (C.c_char_p, [vp]),
            "janus_v2_response_model": (C.c_char_p, [vp]),
            "janus_v2_response_parameter": (ip, [vp, C.c_char_p, C.POINTER(dp)]),
            "janus_fp16_from_float": (C.c_uint16, [C.c_float]),
            "janus_fp16_to_float": (C.c_float, [C.c_uint16]),
        }
        for name, (res, args) in sig.items():
            fn = getattr(L, name)
            fn.restype, fn.argtypes = res, args

    @staticmethod
    def check(rc: int, err: Error) -> None:
        if rc:
            raise JanusCError(rc, err.message.decode())

    def load_table(self, data: bytes) -> Table:
        h, err = C.c_void_p(), Error()
        self.check(self.lib.janus_table_load_memory(data, len(data), C.byref(h), C.byref(err)), err)
        return Table(self, h)

    def load_table_file(self, path: Path) -> Table:
        h, err = C.c_void_p(), Error()
        self.check(self.lib.janus_table_load(str(path).encode(), C.byref(h), C.byref(err)), err)
        return Table(self, h)

    def load_status(self, data: bytes) -> tuple[int, str]:
        """(status, message) of loading ``data``; frees the table when it loads."""
        h, err = C.c_void_p(), Error()
        rc = self.lib.janus_table_load_memory(data, len(data), C.byref(h), C.byref(err))
        if rc == 0:
            self.lib.janus_table_free(h)
        return rc, err.message.decode()


class Table:
    def __init__(self, lib: Lib, handle: C.c_void_p) -> None:
        self.lib, self.h = lib, handle

    def info(self) -> TableInfo:
        out = TableInfo()
        self.lib.lib.janus_table_get_info(self.h, C.byref(out))
        return out

    def config(self) -> Config:
        out = Config()
        self.lib.lib.janus_table_config(self.h, C.byref(out))
        return out

    def scheduler(self, codec: str | None = None, frame_bytes: int = -1) -> CScheduler:
        h, err = C.c_void_p(), Error()
        self.lib.check(self.lib.lib.janus_scheduler_new(self.h, codec.encode() if codec else None, frame_bytes,
                                                        C.byref(h), C.byref(err)), err)
        return CScheduler(self, h)

    def controller(self, **changes) -> CController:
        cfg = self.config()
        for k, v in changes.items():
            if k == "system":
                v = SYSTEMS.index(v)
            elif k == "estimator":
                v = ESTIMATORS.index(v)
            elif k == "rtt_estimate":
                v = ("max", "median").index(v)
            elif k == "cloud_load":
                v = CLOUD_LOADS.index(v)
            elif k == "probe_interval_s" and v is None:
                v = 0.0
            elif k == "codec" and v is not None:
                v = v.encode()
            setattr(cfg, k, v)
        h, err = C.c_void_p(), Error()
        self.lib.check(self.lib.lib.janus_controller_new(self.h, C.byref(cfg), C.byref(h), C.byref(err)), err)
        return CController(self, h)

    def close(self) -> None:
        if self.h:
            self.lib.lib.janus_table_free(self.h)
            self.h = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class CScheduler:
    def __init__(self, table: Table, handle) -> None:
        self.table, self.h, self.L = table, handle, table.lib

    def decide(self, mode: str, bw: float, rtt: float, margin: float, sla: float) -> Decision:
        d, err = Decision(), Error()
        self.L.check(self.L.lib.janus_decide(self.h, MODE[mode], bw, rtt, margin, sla, C.byref(d), C.byref(err)), err)
        return d

    def baseline(self, system: str, bw: float, rtt: float, sla: float) -> Decision:
        d, err = Decision(), Error()
        self.L.check(self.L.lib.janus_baseline(self.h, SYSTEMS.index(system), bw, rtt, sla, C.byref(d),
                                               C.byref(err)), err)
        return d

    def decide_loaded(self, mode: str, bw: float, rtt: float, margin: float, sla: float, factor: float,
                      extra: float) -> Decision:
        d, err = Decision(), Error()
        self.L.check(self.L.lib.janus_decide_loaded(self.h, MODE[mode], bw, rtt, margin, sla, factor, extra, C.byref(d),
                                                    C.byref(err)), err)
        return d

    def baseline_loaded(self, system: str, bw: float, rtt: float, sla: float, factor: float, extra: float) -> Decision:
        d, err = Decision(), Error()
        self.L.check(self.L.lib.janus_baseline_loaded(self.h, SYSTEMS.index(system), bw, rtt, sla, factor, extra,
                                                      C.byref(d), C.byref(err)), err)
        return d

    def server_ms(self, level: int, split: int) -> float:
        out, err = C.c_double(), Error()
        self.L.check(self.L.lib.janus_server_ms_expected(self.h, level, split, C.byref(out), C.byref(err)), err)
        return out.value

    def evaluate(self, mode: str, level: int, split: int, bw: float, rtt: float, sla: float) -> Decision:
        d, err = Decision(), Error()
        self.L.check(self.L.lib.janus_evaluate(self.h, MODE[mode], level, split, bw, rtt, sla, C.byref(d),
                                               C.byref(err)), err)
        return d

    def close(self) -> None:
        if self.h:
            self.L.lib.janus_scheduler_free(self.h)
            self.h = None


class CController:
    def __init__(self, table: Table, handle) -> None:
        self.table, self.h, self.L = table, handle, table.lib

    def decide(self, t: float) -> Choice:
        ch, err = Choice(), Error()
        self.L.check(self.L.lib.janus_controller_decide(self.h, t, C.byref(ch), C.byref(err)), err)
        return ch

    def observe(self, obs) -> float | None:
        """``obs``: a janus_deploy Observation."""
        o = Observation()
        self.L.lib.janus_observation_init(C.byref(o), obs.t, KINDS.index(obs.kind))
        o.nbytes, o.seconds = obs.nbytes, obs.seconds
        o.mbps = math.nan if obs.mbps is None else obs.mbps
        o.rtt_ms = math.nan if obs.rtt_ms is None else obs.rtt_ms
        o.server_ok = -1 if obs.server_ok is None else int(obs.server_ok)
        o.probe = int(obs.probe)
        for name in ("server_ms", "expected_ms", "server_compute_ms"):
            v = getattr(obs, name, None)
            setattr(o, name, math.nan if v is None else v)
        sample, err = C.c_double(), Error()
        self.L.check(self.L.lib.janus_controller_observe(self.h, C.byref(o), C.byref(sample), C.byref(err)), err)
        return None if math.isnan(sample.value) else sample.value

    def observe_exchange(self, t: float, ex: Exchange) -> float | None:
        sample, err = C.c_double(), Error()
        self.L.check(self.L.lib.janus_controller_observe_exchange(self.h, t, C.byref(ex), C.byref(sample),
                                                                  C.byref(err)), err)
        return None if math.isnan(sample.value) else sample.value

    def probe_due(self, t: float) -> bool:
        return bool(self.L.lib.janus_controller_probe_due(self.h, t))

    def state(self) -> State:
        s = State()
        self.L.lib.janus_controller_get_state(self.h, C.byref(s))
        return s

    def close(self) -> None:
        if self.h:
            self.L.lib.janus_controller_free(self.h)
            self.h = None


# ------------------------------------------------------------------------------ shared by the tests


def vitb_accuracy(edge):
    """An accuracy table with ties and holes: ranks by accuracy, equal ranks, unranked rows."""
    rng = np.random.default_rng(5)
    out = {}
    for lv in edge.levels:
        if rng.random() < 0.15:
            continue  # no value: ranked after every level that has one
        out[(lv.policy, lv.alpha)] = float(rng.choice([0.81, 0.8, 0.79, 0.75])) if rng.random() < 0.5 else \
            float(round(0.85 - 0.002 * lv.alpha * 100, 4))
    return out


def _close(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def compare(py, c) -> str | None:
    """None when the C decision equals the Python one; else what differs."""
    if (py.level_index, py.split) != (c.level_index, c.split):
        return f"(level, split) python {(py.level_index, py.split)} C {(c.level_index, c.split)}"
    if not _close(py.predicted_ms, c.predicted_ms):
        return f"predicted python {py.predicted_ms!r} C {c.predicted_ms!r}"
    cd = c.to_dict()
    for k, v in py.breakdown.items():
        if not _close(v, cd["breakdown"][k]):
            return f"{k} python {v!r} C {cd['breakdown'][k]!r}"
    for k in ("alpha", "policy", "meets_sla", "bytes", "accuracy", "codec"):
        if getattr(py, k) != cd[k]:
            return f"{k} python {getattr(py, k)!r} C {cd[k]!r}"
    return None


def cases(rng: np.random.Generator, n: int) -> list[tuple[str, float, float, float, float]]:
    """(mode, bandwidth Mbit/s, RTT ms, SLA ms, margin): log-uniform bandwidths with outages and
    unlimited links mixed in, RTTs with zeros, SLAs from 10 ms to 10 s."""
    out = []
    for _ in range(n):
        mode = "paper" if rng.random() < 0.3 else "janus-deploy"
        u = rng.random()
        bw = 0.0 if u < 0.03 else math.inf if u < 0.05 else float(10 ** rng.uniform(-2, 3.3))
        rtt = 0.0 if rng.random() < 0.2 else float(rng.uniform(0, 150))
        sla = float(10 ** rng.uniform(1, 4))
        margin = 0.0 if rng.random() < 0.3 else float(rng.uniform(0, 0.6))
        out.append((mode, bw, rtt, sla, margin))
    return out


def run_parity(lib, edge, cloud, accuracy, n, seed, codecs, frame_bytes=None):
    """``n`` random cases spread over ``codecs``; returns (cases, exact) and fails on a mismatch."""
    data = build_table(edge, cloud, accuracy=accuracy, frame_bytes=frame_bytes)
    table = lib.load_table(data)
    rng = np.random.default_rng(seed)
    exact = 0
    total = 0
    bad = []
    for codec in codecs:
        py = {m: Scheduler(edge, cloud, accuracy, m, codec, 100.0, frame_bytes=frame_bytes)
              for m in ("janus-deploy", "paper")}
        cs = table.scheduler(codec, -1 if frame_bytes is None else frame_bytes)
        for mode, bw, rtt, sla, margin in cases(rng, n // len(codecs)):
            ref = py[mode]
            ref.sla_ms = sla  # the SLA is a plain attribute of the scheduler: one per case here
            want = ref.decide(bw, rtt_ms=rtt, margin=margin)
            got = cs.decide(mode, bw, rtt, margin, sla)
            why = compare(want, got)
            total += 1
            if why:
                bad.append(f"{codec} {mode} bw={bw!r} rtt={rtt!r} sla={sla!r} margin={margin!r}: {why}")
            elif want.predicted_ms == got.predicted_ms and want.breakdown == got.to_dict()["breakdown"]:
                exact += 1
        # the baselines (when the profiles have their one constant level) and forced options too
        for _ in range(300):
            system = ("device-only", "cloud-only", "mixed")[int(rng.integers(3))]
            bw, rtt, sla = float(10 ** rng.uniform(-2, 3)), float(rng.uniform(0, 100)), float(10 ** rng.uniform(1, 4))
            py["janus-deploy"].sla_ms = sla
            if len(edge.levels_of("constant")) == 1:
                why = compare(py["janus-deploy"].baseline(system, bw, rtt), cs.baseline(system, bw, rtt, sla))
                if why:
                    bad.append(f"baseline {system} bw={bw!r}: {why}")
            mode = ("janus-deploy", "paper")[int(rng.integers(2))]
            li = int(rng.integers(len(edge.levels)))
            s = int(rng.choice(edge.candidates))
            py[mode].sla_ms = sla
            why = compare(py[mode].evaluate(li, s, bw, rtt), cs.evaluate(mode, li, s, bw, rtt, sla))
            if why:
                bad.append(f"evaluate {mode} level {li} split {s}: {why}")
        cs.close()
    table.close()
    assert not bad, f"{len(bad)} of {total} decisions differ, e.g.:\n" + "\n".join(bad[:10])
    return total, exact


def doc_examples() -> dict[str, str]:
    """The C examples of docs/c-api.md: ``<!-- example: NAME.c -->`` followed by a ```c block."""
    import re

    text = (REPO / "docs" / "c-api.md").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"<!-- example: (\S+\.c) -->\n```c\n(.*?)```", text, re.S)}
