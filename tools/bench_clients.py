"""Client threads for the benchmarks: a client that dies is counted, and a run whose clients
failed exits non-zero (a benchmark must not report 0 requests and 0 errors with rc 0)."""

from __future__ import annotations

import sys
import threading
import traceback
from typing import Any, Callable


def start_clients(target: Callable[..., Any], arg_tuples: list[tuple]) -> tuple[list[threading.Thread], list[str]]:
    """Start one daemon thread per argument tuple; returns (threads, crashes): each crash is
    one line (``ExceptionType: message``) appended when a client's target raised."""
    crashes: list[str] = []

    def guarded(*a: Any) -> None:
        try:
            target(*a)
        except BaseException as exc:  # noqa: BLE001 - reported, and it fails the run
            crashes.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3, file=sys.stderr)

    threads = [threading.Thread(target=guarded, args=a, daemon=True) for a in arg_tuples]
    for t in threads:
        t.start()
    return threads, crashes


def client_failure(requests: int, errors: int, crashes: list[str], offloaded: int | None = None) -> str | None:
    """Why a run's clients failed (None when they did not): a client crashed, no request was
    made, every request failed, or (``offloaded`` given: an edge-mode run) no request reached the
    server."""
    if crashes:
        return f"{len(crashes)} client(s) crashed, first: {crashes[0]}"
    if requests == 0:
        return "the clients made no request"
    if errors >= requests:
        return f"every request failed ({errors} of {requests})"
    if offloaded == 0:
        return f"no request of {requests} was answered by the server (all ran on the device)"
    return None


def exit_if_failed(requests: int, errors: int, crashes: list[str], offloaded: int | None = None) -> None:
    why = client_failure(requests, errors, crashes, offloaded)
    if why is not None:
        print(f"error: {why}", file=sys.stderr)
        raise SystemExit(1)
