"""Run a real Triton Inference Server on a janus-deploy repository: the ``tritonserver`` binary
bundled in the ``nvidia-pytriton`` wheel, python backend only (Linux x86_64, glibc >= 2.35).

:class:`TritonServer` assembles the python backend directory (``libtriton_python.so``,
``triton_python_backend_utils.py`` and the stub of *this* interpreter's Python version), starts
``tritonserver`` in its own process group with the environment the stub needs (this interpreter's
``libpython`` first on ``LD_LIBRARY_PATH``, its ``bin`` first on ``PATH``: otherwise the stub
loads another Python and fails or hangs at model load), waits until ``/v2/health/ready``, and
stops it (SIGTERM, then SIGKILL of the group), removing its ``/dev/shm`` regions (a unique
``shm-region-prefix-name`` per server) and its work directory.

By default clients reach tritonserver through a front (:mod:`janus_deploy.triton.front`) on
``host:http_port``, in this process: it checks the bearer token, bounds and inflates request
bodies with the built-in server's rules, and forwards them uncompressed to tritonserver.
tritonserver has no option to bound a request or what it inflates, and its only access check
takes its key on the command line, visible to every local user, so it must not be reachable
past the front at all: it runs in a network namespace of its own that holds only ``lo``
(:mod:`janus_deploy.triton.isolate`; ``isolation="auto"``, the default), with no key on its
command line; the front's connections are sockets made inside that namespace. Metrics are
relayed to ``metrics_host:metrics_port``; gRPC (not fronted) to ``127.0.0.1:grpc_port`` without
a token, and not at all with one (it could not be checked). Where no namespace can be made
(:func:`isolation_unavailable` says why), ``"auto"`` logs one warning and falls back to the
loopback layout with a random per-launch restricted-API key (``janus-front-key``) that only the
front sends — on tritonserver's command line, so a local user can bypass the front —;
``"require"`` refuses to start instead; ``"off"`` always uses that loopback layout.

Every layout starts tritonserver through the helper process of :mod:`.isolate` (its own session),
which stops tritonserver when this process goes away, even by SIGKILL: no orphan tritonserver.

``front=None`` runs tritonserver bare (the old layout): on ``host``, with ``--token`` as Triton's
own mechanism, ``--http-restricted-api`` / ``--grpc-restricted-protocol`` (every API except
health needs ``authorization: Bearer TOKEN``, 403 otherwise; gRPC clients send it as
``triton-grpc-protocol-authorization``) — the token is then on tritonserver's command line, and
nothing bounds what a compressed request inflates to.
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import importlib.util
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from janus_deploy import JanusError, missing_extra_hint
from janus_deploy.triton import isolate
from janus_deploy.triton.front import UPSTREAM_KEY_HEADER, FrontOptions

log = logging.getLogger("janus_deploy.triton.server")

LOOPBACK = "127.0.0.1"
DEFAULT_FRONT = FrontOptions()  # the built-in server's default limits, no token

RESTRICTED_HTTP = "metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging"
RESTRICTED_GRPC = "metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging"
DEFAULT_READY_TIMEOUT_S = 300.0
EXIT_TIMEOUT_S = 5
CONTROL_TIMEOUT_S = 30.0  # the helper's answers (a pid, a socket): microseconds unless it is wedged
ISOLATION = ("auto", "require", "off")
HOW_TO_ISOLATE = ("allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0, "
                  "kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0) "
                  "or give the container CAP_SYS_ADMIN")


class TritonUnavailable(JanusError):
    """The bundled tritonserver cannot run here (not installed, wrong OS, glibc too old)."""


class TritonStartError(JanusError):
    """tritonserver started but did not become ready (the message quotes its log)."""


@dataclass(frozen=True)
class Bundle:
    binary: Path
    libs: Path
    backend: Path  # tritonserver/backends/python
    stub: Path


def _glibc() -> tuple[int, int] | None:
    try:
        name, ver = (os.confstr("CS_GNU_LIBC_VERSION") or "").split()
        major, minor = ver.split(".")[:2]
        return int(major), int(minor)
    except (ValueError, OSError, AttributeError):
        return None


def find_bundle() -> Bundle:
    """The bundled tritonserver and python backend (TritonUnavailable with the reason otherwise)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise TritonUnavailable(f"the bundled tritonserver runs on Linux x86_64 only (this is {sys.platform} "
                                f"{platform.machine()})")
    glibc = _glibc()
    if glibc is None or glibc < (2, 35):
        raise TritonUnavailable(f"the bundled tritonserver needs glibc >= 2.35 (this system has "
                                f"{'.'.join(map(str, glibc)) if glibc else 'no glibc'})")
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonUnavailable("the nvidia-pytriton wheel is not installed: "
                                "pip install --no-deps nvidia-pytriton==0.7.0 (tools/setup.sh does)")
    pkg = Path(list(spec.submodule_search_locations)[0])
    root = pkg / "tritonserver"
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    b = Bundle(root / "bin" / "tritonserver", pkg.parent / "nvidia_pytriton.libs", root / "backends" / "python",
               root / "python_backend_stubs" / pyver / "triton_python_backend_stub")
    for p in (b.binary, b.libs, b.backend / "libtriton_python.so", b.stub):
        if not p.exists():
            raise TritonUnavailable(f"the nvidia-pytriton wheel lacks {p} (python {pyver} stub); reinstall it")
    return b


@functools.lru_cache(maxsize=1)
def isolation_unavailable() -> str | None:
    """None when tritonserver can run in a network namespace of its own here, else why not
    (probed once per process: :func:`janus_deploy.triton.isolate.probe`)."""
    return isolate.probe()


def decide_isolation(fronted: bool, isolation: str) -> tuple[bool, str | None]:
    """Whether tritonserver runs in a network namespace of its own, and when it should but cannot
    (``auto`` without namespaces) the warning why not; ``require`` without namespaces raises."""
    if isolation not in ISOLATION:
        raise JanusError(f"unknown Triton isolation {isolation!r}; choose {', '.join(ISOLATION)}")
    if not fronted or isolation == "off":
        return False, None
    why = isolation_unavailable()
    if why is None:
        return True, None
    if isolation == "require":
        raise TritonUnavailable(f"{why}; tritonserver would be reachable past the front (its key on its "
                                f"command line): {HOW_TO_ISOLATE}, or choose another --triton-isolation")
    return False, (f"{why}: tritonserver runs on loopback with its per-launch key on its command line, so a "
                   f"local user can reach it past the front; for isolation {HOW_TO_ISOLATE} "
                   f"(--triton-isolation require refuses to start without it)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _cuda_noise(line: str) -> bool:
    """Errors a CPU-only machine always logs (no CUDA driver): not why a start failed."""
    return any(k in line for k in ("CUDA driver version", "CudaDriverHelper", "unable to create stream",
                                   "pinned memory pool"))


class TritonServer:
    """One tritonserver process serving ``repository`` (see module docstring).

    Ports of 0 are picked free. ``log``: file for tritonserver's output (default: in the work
    directory, removed at stop). ``http_threads``: Triton's HTTP thread count. ``isolation``:
    ``auto`` | ``require`` | ``off``, how tritonserver is kept from everyone but the front.
    """

    def __init__(self, repository: str | Path, *, host: str = "127.0.0.1", http_port: int = 8000,
                 grpc_port: int | None = None, metrics_port: int | None = None, token: str | None = None,
                 http_threads: int | None = None, log: str | Path | None = None, verbose: int = 0,
                 metrics_host: str = "127.0.0.1", front: FrontOptions | None = DEFAULT_FRONT,
                 isolation: str = "auto") -> None:
        self.repository = Path(repository).resolve()
        if not (self.repository / "janus-repository.json").is_file():
            from janus_deploy.triton.repository import read_repository

            read_repository(self.repository)  # raises the clear message
        if token is not None and (not token or any(c in token for c in " ,:=\n")):
            raise JanusError("--token for Triton must be non-empty without spaces, commas, colons or '='")
        self.bundle = find_bundle()
        if front is not None:
            try:
                import aiohttp  # noqa: F401 - the front's client to tritonserver: one line before anything starts
            except ImportError as exc:
                raise TritonUnavailable(missing_extra_hint(exc, "the Triton front") or str(exc)) from None
        self.host = host
        self.metrics_host = metrics_host  # per-model request counts: loopback unless the user says otherwise
        self.front = dataclasses.replace(front, token=token) if front is not None and token is not None else front
        # behind the front: tritonserver in a network namespace of its own, or (fallback) on loopback with a key
        self.isolated, self.isolation_note = decide_isolation(self.front is not None, isolation)
        self.grpc_host = LOOPBACK if self.front is not None else host  # the front serves HTTP only
        self.http_port = http_port or free_port(host)
        # tritonserver's own HTTP port: the front's upstream on loopback, or the public port itself
        self.triton_http_port = free_port(LOOPBACK) if self.front is not None else self.http_port
        self.grpc_port = grpc_port if grpc_port is not None else (self.http_port + 1 if http_port else 0)
        self.grpc_port = self.grpc_port or free_port(self.grpc_host)
        self.metrics_port = metrics_port if metrics_port is not None else (self.http_port + 2 if http_port else 0)
        self.metrics_port = self.metrics_port or free_port(metrics_host)
        self.token = token
        # isolated, gRPC is relayed out of the namespace only without a token (the relay cannot check one)
        self.grpc_served = not (self.isolated and token)
        # the key of tritonserver's restricted API behind a non-isolated front: random, never the user's token
        self.upstream_key = secrets.token_hex(16) if self.front is not None and not self.isolated else None
        self._front_server: Any = None
        self.http_threads = http_threads
        self.verbose = verbose
        self.work = Path(tempfile.mkdtemp(prefix="janus-triton-"))
        self.log_path = (Path(log) if log else self.work / "tritonserver.log").resolve()
        self.shm_prefix = f"janus_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self.proc: subprocess.Popen | None = None  # the helper (janus_deploy/triton/isolate.py)
        self.triton_pid: int | None = None
        self._ctl: socket.socket | None = None
        self._ctl_lock = threading.Lock()
        self._log_file: Any = None

    # ------------------------------------------------------------------ process
    def _backend_dir(self) -> Path:
        d = self.work / "backends" / "python"
        d.mkdir(parents=True, exist_ok=True)
        for src in (self.bundle.backend / "libtriton_python.so", self.bundle.backend / "triton_python_backend_utils.py",
                    self.bundle.stub):
            if not (d / src.name).exists():
                (d / src.name).symlink_to(src)
        return d.parent

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, str(self.bundle.libs),
                                                             env.get("LD_LIBRARY_PATH", "")) if p)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.pop("PYTHONHOME", None)
        return env

    def command(self) -> list[str]:
        cmd = [str(self.bundle.binary), f"--model-repository={self.repository}",
               f"--backend-directory={self._backend_dir()}",
               f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
               f"--http-address={LOOPBACK if self.front is not None else self.host}",
               f"--http-port={self.triton_http_port}",
               f"--grpc-address={self.grpc_host}", f"--grpc-port={self.grpc_port}",
               # isolated: inside the namespace (relayed to metrics_host outside)
               f"--metrics-address={LOOPBACK if self.isolated else self.metrics_host}",
               f"--metrics-port={self.metrics_port}",
               "--allow-gpu-metrics=false", f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
               "--disable-auto-complete-config", "--strict-readiness=true", f"--log-verbose={self.verbose}"]
        if self.http_threads:
            cmd.append(f"--http-thread-count={self.http_threads}")
        if self.upstream_key is not None:  # behind a non-isolated front: a per-launch key only the front sends
            cmd.append(f"--http-restricted-api={RESTRICTED_HTTP}:{UPSTREAM_KEY_HEADER}={self.upstream_key}")
            if self.token:  # gRPC (loopback, not fronted) is open to local clients only without a token
                cmd.append(f"--grpc-restricted-protocol={RESTRICTED_GRPC}:{UPSTREAM_KEY_HEADER}={self.upstream_key}")
        elif self.token and self.front is None:  # bare tritonserver: the token is on its command line
            cmd += [f"--http-restricted-api={RESTRICTED_HTTP}:authorization=Bearer {self.token}",
                    f"--grpc-restricted-protocol={RESTRICTED_GRPC}:authorization=Bearer {self.token}"]
        return cmd

    @property
    def url(self) -> str:
        """Where clients send requests (the front, or tritonserver itself with ``front=None``)."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def upstream_url(self) -> str:
        """tritonserver's own HTTP address (loopback behind the front; when isolated, the
        loopback of its namespace: reach it with :meth:`upstream_connection`)."""
        return f"http://{LOOPBACK if self.front is not None else self.host}:{self.triton_http_port}"

    @property
    def grpc_url(self) -> str | None:
        """Where gRPC clients connect (None: not served outside tritonserver's namespace)."""
        return f"{self.grpc_host}:{self.grpc_port}" if self.grpc_served else None

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """tritonserver's process id (its python-backend stubs are its children)."""
        return self.triton_pid if self.alive() else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """tritonserver's exit code (None while it runs or before it started; 128 + N after signal N)."""
        return self.proc.returncode if self.proc is not None else None

    def _relays(self) -> list[tuple[socket.socket, int]]:
        """Isolated: listening sockets bound here (this namespace) for the ports users reach,
        each relayed by the helper to the same port inside tritonserver's namespace."""
        if not self.isolated:
            return []
        wanted = [(self.metrics_host, self.metrics_port, "--metrics-port")]
        if self.grpc_served:
            wanted.append((self.grpc_host, self.grpc_port, "--grpc-port"))
        out: list[tuple[socket.socket, int]] = []
        try:
            for host, port, flag in wanted:
                s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
                out.append((s, port))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError as exc:
                    raise TritonStartError(f"cannot listen on {host}:{port} ({flag}): {exc.strerror}") from None
                s.listen(64)
        except BaseException:
            for s, _ in out:
                s.close()
            raise
        return out

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT_S) -> TritonServer:
        if self.alive():
            raise JanusError("this TritonServer is already running")
        if self.isolation_note:
            log.warning("warning: %s", self.isolation_note)
        self._log_file = open(self.log_path, "ab")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        relays = self._relays()
        try:
            fds = [theirs.fileno(), *(s.fileno() for s, _ in relays)]
            self.proc = subprocess.Popen([sys.executable, "-I", "-S", isolate.__file__, str(theirs.fileno())],
                                         pass_fds=fds, stdout=self._log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            theirs.close()
            for s, _ in relays:
                s.close()  # the helper holds them now
        ours.settimeout(CONTROL_TIMEOUT_S)
        self._ctl = ours
        try:
            launch = {"cmd": self.command(), "env": self.environment(), "log": str(self.log_path),
                      "isolate": self.isolated, "relays": [[fd, port] for fd, (_, port) in zip(fds[1:], relays)],
                      "stop_timeout": EXIT_TIMEOUT_S + 10}
            ours.send(json.dumps(launch).encode())
            try:
                reply = json.loads(ours.recv(65536) or b"{}")
            except (OSError, ValueError) as exc:
                reply = {"error": f"no answer from the helper ({exc})"}
            if "pid" not in reply:
                raise TritonStartError(f"{reply.get('error', 'the helper exited')} ({self.log_errors()})")
            self.triton_pid = int(reply["pid"])
            self.wait_ready(timeout)
            self._start_front()
        except BaseException:
            self.stop()
            raise
        return self

    # ------------------------------------------------------------------ reaching tritonserver
    def upstream_socket(self, addr_info: Any = None) -> socket.socket:
        """A new, unconnected TCP socket in tritonserver's network namespace (made by the helper):
        connect it to ``127.0.0.1:triton_http_port``. The front's connection factory (aiohttp's
        ``socket_factory``, whose argument ``addr_info`` it ignores)."""
        with self._ctl_lock:
            ctl = self._ctl
            if ctl is None or not self.alive():
                raise ConnectionRefusedError("tritonserver is not running")
            ctl.send(b"socket")
            msg, fds, _, _ = socket.recv_fds(ctl, 4096, 1)
        if not fds:
            raise OSError(f"tritonserver's helper gave no socket: {msg[:200]!r}")
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM, fileno=fds[0])

    def upstream_connection(self, timeout: float = 60.0) -> http.client.HTTPConnection:
        """An HTTP connection straight to tritonserver (past the front; for checks and tests)."""
        srv = self

        class _Connection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = srv.upstream_socket()
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client's own connect
                self.sock.settimeout(self.timeout)
                self.sock.connect((LOOPBACK, srv.triton_http_port))

        return _Connection(LOOPBACK, self.triton_http_port, timeout=timeout)

    def _start_front(self) -> None:
        """The front on ``host:http_port`` (kept across a tritonserver restart)."""
        if self.front is None or self._front_server is not None:
            return
        from janus_deploy.runtime.server import BackgroundServer
        from janus_deploy.triton.front import create_front

        app = create_front(self.upstream_url, self.upstream_key, self.front, connect=self.upstream_socket)
        self._front_server = BackgroundServer(app, host=self.host, port=self.http_port).start()
        self._front_server.app = app

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise TritonStartError(f"tritonserver exited with code {self.returncode} before it was "
                                       f"ready: {self.log_errors()}")
            conn = self.upstream_connection(timeout=2.0)
            try:
                conn.request("GET", "/v2/health/ready")
                if conn.getresponse().status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            if time.monotonic() > deadline:
                raise TritonStartError(f"tritonserver was not ready after {timeout:g} s: {self.log_errors()}")
            time.sleep(0.2)

    def log_errors(self, lines: int = 6) -> str:
        """The last error lines of tritonserver's log (or its last lines), on one line."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        errs = [ln.strip() for ln in text if (ln[:1] == "E" or "error" in ln.lower()) and not _cuda_noise(ln)]
        pick = (errs or [ln.strip() for ln in text if ln.strip()])[-lines:]
        return " | ".join(pick)[-2000:] + f" (log: {self.log_path})"

    def _signal_triton(self, sig: int, group: bool) -> None:
        if self.triton_pid is None or not self.alive():  # the helper reaps tritonserver: its pid is ours to signal
            return
        try:
            if group:
                os.killpg(self.triton_pid, sig)
            else:
                os.kill(self.triton_pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL tritonserver and its stubs at once (a crash, for tests); :meth:`stop` cleans up."""
        self._signal_triton(signal.SIGKILL, group=True)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def stop(self, timeout: float = EXIT_TIMEOUT_S + 10) -> None:
        """Graceful stop (SIGTERM), SIGKILL of the process group after ``timeout`` s; removes
        this server's /dev/shm regions. It can be started again (same ports)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self._signal_triton(signal.SIGTERM, group=False)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:  # a stuck exit: tritonserver's group, then the helper
                self._signal_triton(signal.SIGKILL, group=True)
                self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        with self._ctl_lock:
            if self._ctl is not None:
                self._ctl.close()
                self._ctl = None
        if self._front_server is not None:
            self._front_server.stop()
            self._front_server = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        for p in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            try:
                p.unlink()
            except OSError:
                pass

    def cleanup(self) -> None:
        """Remove the work directory (backend links and, unless given, the log)."""
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self.cleanup()


def serve(plan_dir: str | Path, engine_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
          grpc_port: int | None = None, metrics_port: int | None = None, token: str | None = None,
          http_threads: int | None = None, repository: str | Path | None = None, options: Any = None,
          ready_timeout: float = DEFAULT_READY_TIMEOUT_S, on_ready: Any = None,
          metrics_host: str = "127.0.0.1", front: FrontOptions | None = DEFAULT_FRONT,
          isolation: str = "auto") -> None:
    """``janus-deploy serve --engine triton``: export the plan's python-backend repository (to a
    temporary directory, or to ``repository`` when it does not exist yet; an existing one must
    have been exported for this plan), run tritonserver on it until SIGINT/SIGTERM, then stop it
    cleanly. ``on_ready(server, repository_path)`` runs once Triton is ready. ``front``: the
    limits of the front clients reach Triton through (module docstring; None: bare tritonserver);
    ``isolation``: how tritonserver is kept from everyone but the front (module docstring)."""
    import threading

    from janus_deploy.plan.manifest import Manifest
    from janus_deploy.triton.repository import ExportOptions, export_repository, read_repository

    manifest = Manifest.load(plan_dir)
    find_bundle()
    decide_isolation(front is not None, isolation)  # ``require`` without namespaces: refused before the export
    tmp: Path | None = None
    if repository is not None and Path(repository).exists() and any(Path(repository).iterdir()):
        meta = read_repository(repository)
        if meta.get("plan_hash") != manifest.hash:
            raise JanusError(f"the repository {repository} was exported for plan {str(meta.get('plan_hash'))[:12]}, "
                             f"not this plan ({manifest.hash[:12]}); export it again with `janus-deploy export-triton`")
        if meta.get("platform") != "python":
            raise JanusError(f"the repository {repository} is for Triton's {meta.get('platform')} backend; the bundled "
                             "tritonserver runs python-backend repositories only (export with --platform python)")
        repo = Path(repository)
    else:
        if repository is None:
            tmp = Path(tempfile.mkdtemp(prefix="janus-triton-repo-"))
            repo = tmp / "repository"
        else:
            repo = Path(repository)
        export_repository(manifest, engine_dir, repo, options or ExportOptions(platform="python", fuse=False))
    srv = TritonServer(repo, host=host, http_port=port, grpc_port=grpc_port, metrics_port=metrics_port, token=token,
                       http_threads=http_threads, metrics_host=metrics_host, front=front, isolation=isolation)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        srv.start(timeout=ready_timeout)
        if on_ready is not None:
            on_ready(srv, repo)
        while not stop.wait(0.5):
            if not srv.alive():
                raise TritonStartError(f"tritonserver exited with code {srv.returncode}: {srv.log_errors()}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        srv.stop()
        srv.cleanup()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["ISOLATION", "Bundle", "TritonServer", "TritonStartError", "TritonUnavailable", "decide_isolation",
           "find_bundle", "free_port", "isolation_unavailable", "serve"]
