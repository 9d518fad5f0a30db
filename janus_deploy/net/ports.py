"""Is a TCP port free to listen on? Asked before a server loads anything, so a busy port is one
clear error at once, not a traceback (or a server's own log line) after the models are loaded."""

from __future__ import annotations

import errno
import socket

from janus_deploy import JanusError


class PortError(JanusError):
    """A server cannot listen where it was asked to."""


def check_port_free(host: str, port: int, what: str = "--port") -> None:
    """Raise :class:`PortError` unless ``host:port`` can be bound now (the socket is closed again
    at once; ``SO_REUSEADDR`` as uvicorn sets it, so a port in TIME_WAIT counts as free)."""
    if not 0 < int(port) < 65536:
        raise PortError(f"{what} {port} is not a TCP port; give a number in 1..65535 (e.g. 8000)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortError(f"cannot listen on {host!r}: {exc.strerror}; give an address of this machine "
                        "(127.0.0.1, 0.0.0.0 or one of its interfaces)") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortError(f"port {port} on {host} is already in use (another server is running there); "
                                f"stop it or choose another {what}") from None
            if exc.errno == errno.EACCES:
                raise PortError(f"no permission to listen on port {port} of {host} (ports below 1024 need root); "
                                f"choose another {what}, e.g. 8000") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise PortError(f"{host} is not an address of this machine; give one of its addresses "
                                "(127.0.0.1, 0.0.0.0 or an interface's)") from None
            raise PortError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another {what}") from None
