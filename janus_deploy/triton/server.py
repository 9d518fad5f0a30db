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
bodies with the built-in server's rules, and forwards them uncompressed to tritonserver, whose
HTTP and gRPC ports bind loopback only. tritonserver has no option to bound a request or what it
inflates, and its access check takes its key on the command line, visible to every local user;
with the front that key is a random per-launch value (``--http-restricted-api=...:janus-front-key=KEY``)
only the front sends, and the user's token never reaches a command line. gRPC is not fronted:
it listens on loopback, open to local clients without a token, closed (the same key) with one.

``front=None`` runs tritonserver bare (the old layout): on ``host``, with ``--token`` as Triton's
own mechanism, ``--http-restricted-api`` / ``--grpc-restricted-protocol`` (every API except
health needs ``authorization: Bearer TOKEN``, 403 otherwise; gRPC clients send it as
``triton-grpc-protocol-authorization``) — the token is then on tritonserver's command line, and
nothing bounds what a compressed request inflates to.
"""

from __future__ import annotations

import dataclasses
import importlib.util
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
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from janus_deploy import JanusError, missing_extra_hint
from janus_deploy.triton.front import UPSTREAM_KEY_HEADER, FrontOptions

LOOPBACK = "127.0.0.1"
DEFAULT_FRONT = FrontOptions()  # the built-in server's default limits, no token

RESTRICTED_HTTP = "metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging"
RESTRICTED_GRPC = "metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging"
DEFAULT_READY_TIMEOUT_S = 300.0
EXIT_TIMEOUT_S = 5


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
    directory, removed at stop). ``http_threads``: Triton's HTTP thread count.
    """

    def __init__(self, repository: str | Path, *, host: str = "127.0.0.1", http_port: int = 8000,
                 grpc_port: int | None = None, metrics_port: int | None = None, token: str | None = None,
                 http_threads: int | None = None, log: str | Path | None = None, verbose: int = 0,
                 metrics_host: str = "127.0.0.1", front: FrontOptions | None = DEFAULT_FRONT) -> None:
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
        self.grpc_host = LOOPBACK if self.front is not None else host  # the front serves HTTP only
        self.http_port = http_port or free_port(host)
        # tritonserver's own HTTP port: the front's upstream on loopback, or the public port itself
        self.triton_http_port = free_port(LOOPBACK) if self.front is not None else self.http_port
        self.grpc_port = grpc_port if grpc_port is not None else (self.http_port + 1 if http_port else 0)
        self.grpc_port = self.grpc_port or free_port(self.grpc_host)
        self.metrics_port = metrics_port if metrics_port is not None else (self.http_port + 2 if http_port else 0)
        self.metrics_port = self.metrics_port or free_port(metrics_host)
        self.token = token
        # the key of tritonserver's restricted API behind the front: random per server, never the user's token
        self.upstream_key = secrets.token_hex(16) if self.front is not None else None
        self._front_server: Any = None
        self.http_threads = http_threads
        self.verbose = verbose
        self.work = Path(tempfile.mkdtemp(prefix="janus-triton-"))
        self.log_path = Path(log) if log else self.work / "tritonserver.log"
        self.shm_prefix = f"janus_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self.proc: subprocess.Popen | None = None
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
               f"--metrics-address={self.metrics_host}", f"--metrics-port={self.metrics_port}",
               "--allow-gpu-metrics=false", f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
               "--disable-auto-complete-config", "--strict-readiness=true", f"--log-verbose={self.verbose}"]
        if self.http_threads:
            cmd.append(f"--http-thread-count={self.http_threads}")
        if self.upstream_key is not None:  # behind the front: a per-launch key only the front sends
            cmd.append(f"--http-restricted-api={RESTRICTED_HTTP}:{UPSTREAM_KEY_HEADER}={self.upstream_key}")
            if self.token:  # gRPC (loopback, not fronted) is open to local clients only without a token
                cmd.append(f"--grpc-restricted-protocol={RESTRICTED_GRPC}:{UPSTREAM_KEY_HEADER}={self.upstream_key}")
        elif self.token:  # bare tritonserver (front=None): the token is on its command line
            cmd += [f"--http-restricted-api={RESTRICTED_HTTP}:authorization=Bearer {self.token}",
                    f"--grpc-restricted-protocol={RESTRICTED_GRPC}:authorization=Bearer {self.token}"]
        return cmd

    @property
    def url(self) -> str:
        """Where clients send requests (the front, or tritonserver itself with ``front=None``)."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def upstream_url(self) -> str:
        """tritonserver's own HTTP address (loopback behind the front)."""
        return f"http://{LOOPBACK if self.front is not None else self.host}:{self.triton_http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """tritonserver's exit code (None while it runs or before it started)."""
        return self.proc.returncode if self.proc is not None else None

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT_S) -> TritonServer:
        if self.alive():
            raise JanusError("this TritonServer is already running")
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.environment(), start_new_session=True)
        try:
            self.wait_ready(timeout)
            self._start_front()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_front(self) -> None:
        """The front on ``host:http_port`` (kept across a tritonserver restart)."""
        if self.front is None or self._front_server is not None:
            return
        from janus_deploy.runtime.server import BackgroundServer
        from janus_deploy.triton.front import create_front

        app = create_front(self.upstream_url, self.upstream_key, self.front)
        self._front_server = BackgroundServer(app, host=self.host, port=self.http_port).start()
        self._front_server.app = app

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if not self.alive():
                    raise TritonStartError(f"tritonserver exited with code {self.returncode} before it was "
                                           f"ready: {self.log_errors()}")
                try:
                    if client.get(f"{self.upstream_url}/v2/health/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
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

    def kill(self) -> None:
        """SIGKILL tritonserver and its stubs at once (a crash, for tests); :meth:`stop` cleans up."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def stop(self, timeout: float = EXIT_TIMEOUT_S + 10) -> None:
        """Graceful stop (SIGTERM), SIGKILL of the process group after ``timeout`` s; removes
        this server's /dev/shm regions. It can be started again (same ports)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(signal.SIGTERM)
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            try:  # stubs left behind by a crash or a stuck exit
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
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
          metrics_host: str = "127.0.0.1", front: FrontOptions | None = DEFAULT_FRONT) -> None:
    """``janus-deploy serve --engine triton``: export the plan's python-backend repository (to a
    temporary directory, or to ``repository`` when it does not exist yet; an existing one must
    have been exported for this plan), run tritonserver on it until SIGINT/SIGTERM, then stop it
    cleanly. ``on_ready(server, repository_path)`` runs once Triton is ready. ``front``: the
    limits of the front clients reach Triton through (module docstring; None: bare tritonserver)."""
    import threading

    from janus_deploy.plan.manifest import Manifest
    from janus_deploy.triton.repository import ExportOptions, export_repository, read_repository

    manifest = Manifest.load(plan_dir)
    find_bundle()
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
                       http_threads=http_threads, metrics_host=metrics_host, front=front)
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


__all__ = ["Bundle", "TritonServer", "TritonStartError", "TritonUnavailable", "find_bundle", "free_port", "serve"]
