"""tritonserver in namespaces of its own, so nothing outside janus-deploy can reach it (issue 21 item 4).

The bundled tritonserver's only access check (``--http-restricted-api``) takes its key on the
command line, which ``ps`` and ``/proc/PID/cmdline`` show to every local user. Instead of a key,
janus-deploy runs tritonserver in a new network namespace that holds only ``lo``: its HTTP,
gRPC and metrics ports exist only there. The front
(:mod:`janus_deploy.triton.front`), in the launching process, reaches it through sockets this
helper creates *inside* the namespace and passes over a Unix socket pair (a socket keeps the
namespace it was created in): the front's connections go straight to tritonserver over the
namespace's loopback, no relay in the data path. Ports the user asks for outside (metrics on
``--metrics-host``, gRPC on loopback without a token) are listening sockets the launcher binds in
its own namespace and hands to this helper, which relays each connection inside.

Root gets the namespaces directly (``CAP_SYS_ADMIN``); another user through a user namespace
that maps only its own uid and gid (as ``unshare -rn`` does, without becoming root). Where
neither works (a container without ``CAP_SYS_ADMIN`` and user namespaces off), :func:`probe`
says why and :mod:`janus_deploy.triton.server` falls back (docs/scale-out.md).

This file is also the helper process itself: ``python -I isolate.py CTL_FD`` (standard library
only, started by :class:`janus_deploy.triton.server.TritonServer`). It reads one launch message
from the socket pair (tritonserver's command, environment, log file, whether to isolate, the
relays), enters the namespaces, starts tritonserver (its own session; SIGKILL when this helper
dies), answers ``pid`` once and then one socket per ``socket`` request, and exits with
tritonserver's code once tritonserver has exited. When the launcher goes away (the socket pair
reads EOF: the launcher exited or was SIGKILLed), it stops tritonserver (SIGTERM, then SIGKILL of
its process group, the python-backend stubs included); a SIGKILLed helper takes tritonserver
along (``PR_SET_PDEATHSIG``), whose stubs exit when their parent is gone (they check every 0.3 s).
No PID namespace: after ``unshare(CLONE_NEWPID)`` a process can no longer start threads.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sH22x"  # struct ifreq: the name, then ifr_flags in the 24-byte union
MAX_MESSAGE = 1 << 20
LOOPBACK = "127.0.0.1"


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _unshare(libc: Any, flags: int) -> int:
    return 0 if libc.unshare(ctypes.c_int(flags)) == 0 else ctypes.get_errno()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def enter_namespaces() -> str:
    """Move this (single-threaded) process into a new network namespace with ``lo`` up. Returns
    how ("privileged" or "user namespace"); raises OSError saying why not."""
    libc = _libc()
    flags = CLONE_NEWNET
    err = _unshare(libc, flags) if os.geteuid() == 0 else -1
    how = "privileged"
    if err:
        uid, gid = os.geteuid(), os.getegid()
        err = _unshare(libc, flags | CLONE_NEWUSER)
        if err:
            raise OSError(err, f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(err)}")
        # the user's own uid and gid only (not root): what is needed to bring lo up, nothing more
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
        how = "user namespace"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        name, fl = struct.unpack(IFREQ, fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0)))
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", fl | IFF_UP))
    return how


def probe() -> str | None:
    """None when this machine lets tritonserver run isolated; otherwise why not (one line).
    Runs this file's ``--probe`` in a child (a namespace cannot be left again)."""
    try:
        r = subprocess.run([sys.executable, "-I", "-S", os.path.abspath(__file__), "--probe"], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the namespace probe did not run: {exc}"
    if r.returncode == 0:
        return None
    return (r.stderr.strip().splitlines() or [f"the namespace probe exited with code {r.returncode}"])[-1]


# --------------------------------------------------------------------------- the helper process
def _child_setup() -> None:
    os.setsid()
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def _relay(listener: socket.socket, port: int) -> None:
    """Each connection to ``listener`` (bound outside) to ``127.0.0.1:port`` here."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            up = socket.create_connection((LOOPBACK, port), timeout=10)
            up.settimeout(None)
        except OSError:
            conn.close()
            continue

        def run(a: socket.socket = conn, b: socket.socket = up) -> None:
            t = threading.Thread(target=_pump, args=(b, a), daemon=True)
            t.start()
            _pump(a, b)
            t.join()
            a.close()
            b.close()

        threading.Thread(target=run, daemon=True).start()


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    except OSError:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass


def _serve_control(ctl: socket.socket, proc: subprocess.Popen, stop_timeout: float) -> None:
    while True:
        try:
            msg = ctl.recv(64)
        except OSError:
            msg = b""
        if msg == b"socket":
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:
                ctl.send(json.dumps({"error": str(exc)}).encode())
                continue
            try:
                socket.send_fds(ctl, [b"{}"], [s.fileno()])
            finally:
                s.close()
        elif not msg:  # the launcher is gone: take tritonserver with it
            _stop(proc, stop_timeout)
            return


def helper(ctl_fd: int) -> int:
    ctl = socket.socket(fileno=ctl_fd)
    launch = json.loads(ctl.recv(MAX_MESSAGE))
    relays = [(socket.socket(fileno=fd), port) for fd, port in launch.get("relays", [])]
    if launch.get("isolate"):
        try:
            enter_namespaces()
        except OSError as exc:
            ctl.send(json.dumps({"error": f"tritonserver cannot run isolated here: {exc}"}).encode())
            return 3
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher decides when tritonserver stops
    with open(launch["log"], "ab") as log:
        try:
            proc = subprocess.Popen(launch["cmd"], env=launch["env"], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
        except OSError as exc:
            ctl.send(json.dumps({"error": f"tritonserver did not start: {exc}"}).encode())
            return 3
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    ctl.send(json.dumps({"pid": proc.pid}).encode())
    for listener, port in relays:
        threading.Thread(target=_relay, args=(listener, port), daemon=True).start()
    threading.Thread(target=_serve_control, args=(ctl, proc, float(launch.get("stop_timeout", 15))),
                     daemon=True).start()
    rc = proc.wait()
    try:  # stubs left behind by a crash or a stuck exit
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    return rc if rc >= 0 else 128 - rc


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"]:
        try:
            enter_namespaces()
            with socket.socket() as s:
                s.bind((LOOPBACK, 0))
                s.listen()
        except OSError as exc:
            print(f"no network namespace for tritonserver: {exc}", file=sys.stderr)
            return 1
        return 0
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: isolate.py CTL_FD | --probe (started by janus_deploy.triton.server)", file=sys.stderr)
        return 2
    return helper(int(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
