"""A network namespace, a veth pair and a kernel-shaped uplink for the testbed.

:class:`Netns` creates namespace ``jtb<pid>n<seq>`` and a veth pair: ``<name>e`` stays on this
side (the edge), ``<name>c`` moves into the namespace (the cloud); each end gets one address of a
free private /30 in ``10.213.0.0/16`` (the namespace's own, nothing else is routed). Leaving the
context (normally, on an exception, on Ctrl-C) kills every process left in the namespace and
deletes it, which deletes the veth pair and every qdisc on it; :meth:`Netns.add_veth` joins the
namespace by more pairs (a fleet: one per edge), named and removed alike. :func:`sweep_stale` removes
namespaces and links of testbeds whose process died without cleaning up (``kill -9``).

:class:`KernelLink` shapes the edge-side veth's egress (the uplink: edge → cloud) with a ``tbf``
qdisc and replays a throughput trace on it sample by sample from a background thread, through
one long-lived ``tc -batch -`` process (a ``tc`` fork per change would cost ~6 ms). An outage
sample (0 Mbit/s) becomes a 1 kbit/s rate: nothing of consequence gets through and TCP keeps
its connection (what a radio outage does), so requests time out and bytes queued during the
outage drain when the link returns.

:class:`KernelDelay` adds the ping trace's RTT with ``netem`` on the cloud-side veth's egress
(the reply path, so the uplink's TCP also sees it in its ACKs), where the kernel has ``netem``
(:func:`netem_available`); the testbed falls back to a user-space delay on the reply path
(:mod:`janus_deploy.testbed.delay`) where it does not.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): :func:`check_privileges` says so in one line.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from janus_deploy import JanusError
from janus_deploy.net.traces import MBPS, Trace

PREFIX = "jtb"
SUBNET = ipaddress.IPv4Network("10.213.0.0/16")
OUTAGE_BPS = 1000  # an outage sample is replayed as 1 kbit/s
MIN_RATE_BPS = 1000
BURST_S = 0.0  # token bucket depth: this much of the current rate ...
MIN_BURST_BYTES = 2 * 1514  # ... but at least two full frames (one starves the link on a busy CPU)
QUEUE_BYTES = 1 << 20  # tbf queue (bytes waiting for tokens): 1 MiB, a deep cellular buffer
# a full TCP segment on the veth: 1448 payload bytes (MSS with timestamps) in a 1514-byte frame
FRAME_OVERHEAD = 1514 / 1448
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
_seq = itertools.count()


class TestbedError(JanusError):
    """The testbed cannot be set up or torn down."""

    __test__ = False  # not a pytest class


# --------------------------------------------------------------------------- privileges, tools


def _capabilities() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def check_privileges() -> None:
    """TestbedError (one line) unless this process may create namespaces, links and qdiscs."""
    caps = _capabilities()
    if os.geteuid() != 0 and not (caps >> CAP_NET_ADMIN & 1 and caps >> CAP_SYS_ADMIN & 1):
        raise TestbedError("the testbed needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create a network namespace, "
                           "a veth pair and qdiscs; run it as root (e.g. sudo janus-deploy testbed ...)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise TestbedError(f"the testbed needs the `{tool}` command (iproute2); install iproute2")


def run_cmd(argv: Sequence[str], *, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run an ``ip``/``tc`` command; TestbedError with its own message when it fails."""
    try:
        r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TestbedError(f"`{' '.join(argv)}` failed: {exc}") from None
    if check and r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise TestbedError(f"`{' '.join(argv)}` failed: {msg[-1] if msg else f'exit {r.returncode}'}")
    return r


def namespaces() -> list[str]:
    """Names of the network namespaces (``ip netns list``)."""
    r = run_cmd(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def links() -> list[str]:
    """Names of this namespace's network interfaces."""
    r = run_cmd(["ip", "-o", "link", "show"], check=False)
    out = []
    for line in r.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            out.append(parts[1].strip().split("@")[0])
    return out


def leftovers(prefix: str = PREFIX) -> dict[str, list[str]]:
    """Testbed namespaces and links that exist now (empty lists after a clean teardown)."""
    return {"namespaces": [n for n in namespaces() if n.startswith(prefix)],
            "links": [n for n in links() if n.startswith(prefix)]}


def _pid_of(name: str) -> int | None:
    m = re.match(rf"{PREFIX}(\d+)[nq]\d+", name)
    return int(m.group(1)) if m else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TMP_PREFIX = "janus-testbed-"


def temp_dir() -> str:
    """A fresh work folder ``/tmp/janus-testbed-<pid>-*``: the pid lets :func:`sweep_stale`
    remove it after this process dies without cleaning up."""
    import tempfile

    return tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")


def sweep_stale() -> list[str]:
    """Delete testbed namespaces (and the processes inside), links and work folders whose
    creating process is gone; returns their names."""
    import shutil
    import tempfile

    gone = []
    root = tempfile.gettempdir()
    for entry in sorted(os.listdir(root)):
        m = re.match(rf"{TMP_PREFIX}(\d+)-", entry)
        if m and os.path.isdir(os.path.join(root, entry)) and not _alive(int(m.group(1))):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
            gone.append(os.path.join(root, entry))
    for ns in namespaces():
        pid = _pid_of(ns)
        if pid is not None and not _alive(pid):
            _kill_namespace_pids(ns)
            run_cmd(["ip", "netns", "delete", ns], check=False)
            gone.append(ns)
    for link in links():
        pid = _pid_of(link)
        if pid is not None and not _alive(pid):
            run_cmd(["ip", "link", "delete", link], check=False)
            gone.append(link)
    return gone


def _kill_namespace_pids(ns: str) -> None:
    r = run_cmd(["ip", "netns", "pids", ns], check=False)
    pids = [int(p) for p in r.stdout.split() if p.isdigit() and int(p) != os.getpid()]
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3.0
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p) and not _zombie(p)]
            if pids:
                time.sleep(0.05)
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _free_subnet() -> ipaddress.IPv4Network:
    used: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    r = run_cmd(["ip", "-o", "-4", "addr", "show"], check=False)
    for line in r.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            used.add(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    start = (os.getpid() * 7 + next(_seq)) % 16384
    subnets = list(SUBNET.subnets(new_prefix=30))
    for i in range(len(subnets)):
        net = subnets[(start + i) % len(subnets)]
        if not any(net.overlaps(u) for u in used):
            return net
    raise TestbedError(f"no free /30 in {SUBNET} for the testbed's veth pair")


# --------------------------------------------------------------------------- namespace + veth


@dataclass(frozen=True)
class Veth:
    """One veth pair between this namespace (``host_if``, ``host_ip``) and the testbed's
    (``ns_if``, ``ns_ip``), on a /30 of its own: an edge's link to the cloud."""

    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str


class Netns:
    """A network namespace joined to this one by a veth pair (module docstring); :meth:`add_veth`
    joins it by more (a fleet: one pair, one shaped link, per edge)."""

    def __init__(self) -> None:
        self.name = f"{PREFIX}{os.getpid()}n{next(_seq)}"
        self.host_if, self.ns_if = f"{self.name}e", f"{self.name}c"
        self.host_ip = self.ns_ip = ""
        self.created = False
        self.extra: list[Veth] = []
        self._procs: list[subprocess.Popen] = []

    @property
    def veths(self) -> list[Veth]:
        """Every pair: the first (``host_if`` ...) and those of :meth:`add_veth`."""
        return [Veth(self.host_if, self.ns_if, self.host_ip, self.ns_ip), *self.extra]

    def add_veth(self) -> Veth:
        """Another veth pair into the namespace, on its own free /30. Its names carry this
        process's id as the first pair's do (``jtb<pid>n<seq>e``/``c``), so :meth:`down` and
        :func:`sweep_stale` remove it alike (deleting the namespace deletes the pair)."""
        if not self.created:
            raise TestbedError("add_veth needs the namespace up first")
        base = f"{PREFIX}{os.getpid()}n{next(_seq)}"
        net = _free_subnet()
        a, b = list(net.hosts())[:2]
        v = Veth(f"{base}e", f"{base}c", str(a), str(b))
        self.extra.append(v)  # from here on, down() deletes it
        self._wire(v.host_if, v.ns_if, str(a), str(b))
        return v

    def _wire(self, host_if: str, ns_if: str, host_ip: str, ns_ip: str) -> None:
        """A veth pair: ``host_if`` here at ``host_ip``/30, ``ns_if`` in the namespace at ``ns_ip``/30, both up."""
        run_cmd(["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if])
        run_cmd(["ip", "link", "set", ns_if, "netns", self.name])
        run_cmd(["ip", "addr", "add", f"{host_ip}/30", "dev", host_if])
        run_cmd(["ip", "link", "set", host_if, "up"])
        run_cmd(["ip", "-n", self.name, "addr", "add", f"{ns_ip}/30", "dev", ns_if])
        run_cmd(["ip", "-n", self.name, "link", "set", ns_if, "up"])

    def up(self) -> Netns:
        net = _free_subnet()
        a, b = list(net.hosts())[:2]
        self.host_ip, self.ns_ip = str(a), str(b)
        self.created = True  # from here on, down() has something to undo
        run_cmd(["ip", "netns", "add", self.name])
        self._wire(self.host_if, self.ns_if, str(a), str(b))
        run_cmd(["ip", "-n", self.name, "link", "set", "lo", "up"])
        return self

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start a process inside the namespace (killed by :meth:`down` at the latest)."""
        p = subprocess.Popen(self.argv(argv), **kw)
        self._procs.append(p)
        return p

    def down(self) -> None:
        """Kill what runs in the namespace, delete it (and with it the veth pair and its qdiscs)."""
        if not self.created:
            return
        for p in self._procs:
            stop_process(p)
        if self.name in namespaces():
            _kill_namespace_pids(self.name)
            run_cmd(["ip", "netns", "delete", self.name], check=False)
        left = links()
        for dev in (self.host_if, *(v.host_if for v in self.extra)):
            if dev in left:
                run_cmd(["ip", "link", "delete", dev], check=False)
        self.created = False

    def __enter__(self) -> Netns:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.down()


def stop_process(p: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if p.poll() is not None:
        return
    try:
        p.terminate()
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------- trace replay


class _TcBatch:
    """One ``tc -force -batch -`` process fed one command line at a time."""

    def __init__(self, netns: str | None = None) -> None:
        argv = ["tc", *(["-n", netns] if netns else []), "-force", "-batch", "-"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.errors: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.strip() and len(self.errors) < 20:
                self.errors.append(line.strip())

    def send(self, line: str) -> None:
        if self.proc.poll() is not None:
            raise TestbedError(f"the tc batch process exited ({'; '.join(self.errors[-2:]) or 'no message'})")
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise TestbedError(f"the tc batch process is gone ({exc})") from None

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        stop_process(self.proc, 2.0)


class _Replayer:
    """A thread applying ``apply(sample)`` at ``t0 + k·interval`` for k = 0, 1, ... (looping)."""

    def __init__(self, trace: Trace, apply: Any, name: str) -> None:
        self.trace, self.apply, self.name = trace, apply, name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0: float | None = None
        self.changes = 0
        self.max_lag_s = 0.0
        self.error: BaseException | None = None

    def start(self, t0: float) -> None:
        self.stop()
        self._stop.clear()
        self.t0 = t0
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        n, dt = len(self.trace.samples), self.trace.interval_s
        prev = None
        k = 0
        try:
            while not self._stop.is_set():
                due = self.t0 + k * dt  # type: ignore[operator]  # t0 is set before the loop starts
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                v = self.trace.samples[k % n]
                if v != prev:
                    self.apply(v)
                    self.changes += 1
                    prev = v
                self.max_lag_s = max(self.max_lag_s, time.monotonic() - due)
                k += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the owner
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None


def tbf_spec(mbps: float) -> str:
    """The tbf parameters replaying ``mbps`` (module docstring: outages, burst, queue). tbf counts
    whole frames; the trace is TCP goodput, so the rate is scaled by ``FRAME_OVERHEAD``."""
    bps = OUTAGE_BPS if mbps <= 0 else max(int(round(mbps * 1e6 * FRAME_OVERHEAD)), MIN_RATE_BPS)
    burst = max(int(bps / 8 * BURST_S), MIN_BURST_BYTES)
    return f"tbf rate {bps}bit burst {burst} limit {QUEUE_BYTES}"


class KernelLink:
    """The uplink shaped by the kernel: ``tbf`` on ``dev``'s egress replaying ``trace``."""

    def __init__(self, dev: str, trace: Trace) -> None:
        if trace.unit != MBPS:
            raise TestbedError(f"--trace needs a throughput trace in Mbit/s; {trace.name} is in {trace.unit}")
        self.dev, self.trace = dev, trace
        self._batch: _TcBatch | None = None
        self._replay = _Replayer(trace, self.set_rate, f"tbf-{dev}")
        self.installed = False

    def install(self, mbps: float | None = None) -> None:
        """Put the tbf qdisc on the device at ``mbps`` (default: the trace's first sample)."""
        rate = self.trace.samples[0] if mbps is None else mbps
        run_cmd(["tc", "qdisc", "replace", "dev", self.dev, "root", "handle", "1:", *tbf_spec(rate).split()])
        self.installed = True
        self._batch = _TcBatch()

    def set_rate(self, mbps: float) -> None:
        if self._batch is None:
            raise TestbedError("the kernel link is not installed")
        self._batch.send(f"qdisc change dev {self.dev} root handle 1: {tbf_spec(mbps)}")

    def start(self, t0: float) -> None:
        """Replay the trace from trace time 0 = ``t0`` (time.monotonic)."""
        self._replay.start(t0)

    def check(self) -> None:
        """TestbedError if the replay thread or tc failed."""
        if self._replay.error is not None:
            raise TestbedError(f"the trace replay failed: {self._replay.error}")
        if self._batch is not None and self._batch.errors:
            raise TestbedError(f"tc refused a rate change: {self._batch.errors[0]}")

    def stats(self) -> dict[str, Any]:
        return {"qdisc": "tbf", "device": self.dev, "rate_changes": self._replay.changes,
                "max_lag_ms": round(self._replay.max_lag_s * 1e3, 3)}

    def remove(self) -> None:
        """Stop replaying and take the qdisc off (the link is unshaped again)."""
        self._replay.stop()
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        if self.installed:
            run_cmd(["tc", "qdisc", "del", "dev", self.dev, "root"], check=False)
            self.installed = False


# --------------------------------------------------------------------------- netem RTT


def netem_available() -> bool:
    """Does this kernel have the netem qdisc? (tried on a throw-away dummy device)"""
    dev = f"{PREFIX}{os.getpid()}q{next(_seq)}"
    if run_cmd(["ip", "link", "add", dev, "type", "dummy"], check=False).returncode != 0:
        return False
    try:
        return run_cmd(["tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"],
                       check=False).returncode == 0
    finally:
        run_cmd(["ip", "link", "delete", dev], check=False)


def netem_spec(rtt_ms: float) -> str:
    return f"netem delay {max(float(rtt_ms), 0.0):.3f}ms limit 100000"


class KernelDelay:
    """The RTT added by ``netem`` on the cloud side's egress (the reply path), replaying a ping trace."""

    def __init__(self, netns: str, dev: str, ping: Trace) -> None:
        self.netns, self.dev, self.ping = netns, dev, ping
        self._batch: _TcBatch | None = None
        self._replay = _Replayer(ping, self.set_rtt, f"netem-{dev}")

    def install(self) -> None:
        run_cmd(["tc", "-n", self.netns, "qdisc", "replace", "dev", self.dev, "root", "handle", "1:",
                 *netem_spec(self.ping.samples[0]).split()])
        self._batch = _TcBatch(self.netns)

    def set_rtt(self, rtt_ms: float) -> None:
        if self._batch is None:
            raise TestbedError("the netem delay is not installed")
        self._batch.send(f"qdisc change dev {self.dev} root handle 1: {netem_spec(rtt_ms)}")

    def start(self, t0: float) -> None:
        self._replay.start(t0)

    def check(self) -> None:
        if self._replay.error is not None:
            raise TestbedError(f"the RTT replay failed: {self._replay.error}")
        if self._batch is not None and self._batch.errors:
            raise TestbedError(f"tc refused a netem change: {self._batch.errors[0]}")

    def remove(self) -> None:
        self._replay.stop()
        if self._batch is not None:
            self._batch.close()
            self._batch = None


__all__ = ["KernelDelay", "KernelLink", "Netns", "PREFIX", "TestbedError", "Veth", "check_privileges", "leftovers",
           "netem_available", "run_cmd", "stop_process", "sweep_stale", "tbf_spec", "temp_dir"]
