"""What an exchange tells the controller over a real (kernel-buffered) link: the server's receive
time as the upload, and on a timeout only the bytes the server acknowledged (docs/testbed.md)."""

from __future__ import annotations

import socket
import sys
import types

import pytest

from janus_deploy.runtime.edge import EdgeRuntime
from janus_deploy.runtime.transport import Exchange, Transport


def observe(ex: Exchange):
    fake = types.SimpleNamespace(now=lambda: 1.0, controller=types.SimpleNamespace(rtt_estimate=lambda: 30.0))
    return EdgeRuntime.observations_of(fake, ex)  # type: ignore[arg-type]


def test_success_uses_the_servers_receive_time():
    # a kernel socket took the 12 KB body in 0.2 ms; the server saw it arrive over 4 ms
    ex = Exchange(True, 12000, 12000, 0.0002, 0.045, server={"janus_receive_ms": 4.0}, network_s=0.040)
    (o,) = observe(ex)
    assert o.kind == "transfer" and o.nbytes == 12000 and o.seconds == pytest.approx(0.004)
    assert o.rtt_ms == pytest.approx(36.0) and o.server_ok is True


def test_success_without_receive_time_keeps_the_old_estimate():
    ex = Exchange(True, 12000, 12000, 0.002, 0.045, network_s=0.040)
    (o,) = observe(ex)
    assert o.seconds == pytest.approx(0.010) and o.rtt_ms == pytest.approx(38.0)  # network − RTT est.; network − upload


@pytest.mark.parametrize("unacked, kind, nbytes", [(6000, "transfer", 4000), (0, "server", 0), (10000, "outage", 0)])
def test_timeout_counts_only_acknowledged_bytes(unacked, kind, nbytes):
    ex = Exchange(False, 10000, 10000, 0.0001, 0.1, kind="timeout", reason="late", unacked=unacked)
    (o,) = observe(ex)
    assert o.kind == kind and o.nbytes == nbytes
    if kind == "transfer":
        assert o.seconds == pytest.approx(0.1)
    if kind == "server":
        assert o.server_ok is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIOCOUTQ is Linux's")
def test_unacked_bytes_of_a_stalled_connection():
    srv = socket.create_server(("127.0.0.1", 0))
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c = socket.create_connection(srv.getsockname())
    peer, _ = srv.accept()  # never reads: what does not fit its window stays on our side
    c.setblocking(False)
    sent = 0
    try:
        while True:
            sent += c.send(bytes(65536))
    except BlockingIOError:
        pass
    t = Transport("http://127.0.0.1:9")
    try:
        t._sockets.append(c)
        assert 0 < t._unacked_bytes() <= sent
        c.close()
        assert t._unacked_bytes() == 0 and t._sockets == []
    finally:
        t.close()
        peer.close()
        srv.close()
