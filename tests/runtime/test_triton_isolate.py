"""The namespace helper that keeps tritonserver unreachable past the front (triton/isolate.py),
with a stand-in server (python's http.server) so it is tested without the bundled tritonserver:
only sockets the helper makes reach the server, relayed ports work, and the server dies with
the launcher (issue 21 item 4)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from janus_deploy.triton import isolate
from janus_deploy.triton.server import free_port

UNAVAILABLE = isolate.probe()
needs_namespaces = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no namespaces here: {UNAVAILABLE}")

LAUNCHER = textwrap.dedent("""
    import json, socket, subprocess, sys, time
    helper, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    relay = socket.socket()
    relay.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    relay.bind(("127.0.0.1", 0))
    relay.listen()
    p = subprocess.Popen([sys.executable, "-I", "-S", helper, str(theirs.fileno())],
                         pass_fds=[theirs.fileno(), relay.fileno()], start_new_session=True)
    theirs.close()
    cmd = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    ours.send(json.dumps({"cmd": cmd, "env": {}, "log": log, "isolate": True,
                          "relays": [[relay.fileno(), port]], "stop_timeout": 5}).encode())
    reply = json.loads(ours.recv(65536))
    print(json.dumps({**reply, "helper": p.pid, "relay": relay.getsockname()[1]}), flush=True)
    relay.close()
    for _ in range(100):  # until http.server listens: a socket from the helper connects
        ours.send(b"socket")
        msg, fds, _, _ = socket.recv_fds(ours, 4096, 1)
        s = socket.socket(fileno=fds[0])
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            print(json.dumps({"status": s.recv(12).decode()}), flush=True)
            break
        except OSError:
            time.sleep(0.1)
        finally:
            s.close()
    time.sleep(600)  # until the test kills this launcher
""")


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1][:1] == "Z":  # a zombie is gone, its parent not yet told
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@needs_namespaces
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_only_the_launcher_reaches_the_server_and_it_dies_with_the_launcher(tmp_path, sig):
    port = free_port()
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER)
    launcher = subprocess.Popen([sys.executable, str(script), isolate.__file__, str(port), str(tmp_path / "log")],
                                stdout=subprocess.PIPE, text=True)
    try:
        reply = json.loads(launcher.stdout.readline())
        pid, helper = reply["pid"], reply["helper"]
        assert json.loads(launcher.stdout.readline())["status"].startswith("HTTP/1.0 200"), (tmp_path / "log").read_text()
        # its own network namespace: the port is not reachable from here, the relay is
        assert os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        with socket.create_connection(("127.0.0.1", reply["relay"]), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert s.recv(12).startswith(b"HTTP/1.0 200")
        launcher.send_signal(sig)
        launcher.wait(10)
        assert _gone(pid, 20), "the server outlived its launcher"
        assert _gone(helper, 10)
    finally:
        launcher.kill()
        launcher.wait()


def test_a_launch_that_cannot_isolate_says_why(tmp_path, monkeypatch):
    """The helper's answer when the namespaces fail (simulated: unshare refused) is one line."""
    monkeypatch.setattr(isolate, "_unshare", lambda libc, flags: 1)  # EPERM
    with pytest.raises(OSError, match=r"unshare\(CLONE_NEWUSER\|CLONE_NEWNET\): Operation not permitted"):
        isolate.enter_namespaces()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_an_unprivileged_user_gets_the_namespace_through_a_user_namespace():
    """The probe as uid 65534: the user-namespace path (only its own uid mapped), where the
    kernel allows unprivileged user namespaces."""
    allowed = Path("/proc/sys/user/max_user_namespaces").read_text().strip() != "0"
    restricted = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    allowed = allowed and not (restricted.exists() and restricted.read_text().strip() == "1")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-I", "-S",
                        isolate.__file__, "--probe"], capture_output=True, text=True, timeout=60)
    if allowed:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 1 and "unshare" in r.stderr and len(r.stderr.strip().splitlines()) == 1
