"""Files are what the manifest (or ``engines.json``) says they are, checked before first use.

Every file a runner loads — a graph, the shared weight file, a serialized engine — has a sha256
recorded when it was written (``manifest.json`` for the plan's files, ``engines.json`` for
engines). Runners read a file once, check the bytes they read against that value and use those
same bytes (no second read between check and use), raising :class:`IntegrityError` that names
the file otherwise.

The weight file is memory-mapped, never copied: :func:`map_verified` hashes the mapping itself,
once per process (a second runner of the same, unchanged file reuses the result; the key is the
file's device, inode, size and modification time). ``hashlib`` releases the GIL while it hashes,
so a check in a worker thread does not stall an event loop.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
import time
from pathlib import Path

import numpy as np

from janus_deploy import JanusError

_CHUNK = 16 << 20


class IntegrityError(JanusError):
    """A file does not match the sha256 recorded for it (changed or damaged since it was written)."""


class CheckStats:
    """What a runner's checks cost: files, bytes hashed and seconds (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files = 0
        self.bytes = 0
        self.seconds = 0.0
        self.reused = 0  # weight-file checks answered by this process's earlier check

    def add(self, nbytes: int, seconds: float) -> None:
        with self._lock:
            self.files += 1
            self.bytes += nbytes
            self.seconds += seconds

    def as_dict(self) -> dict[str, float]:
        return {"files": self.files, "bytes": self.bytes, "seconds": round(self.seconds, 4), "reused": self.reused}


def sha256_of(data) -> str:
    """sha256 of a bytes-like object or a numpy array's buffer, hashed in place (no copy)."""
    mv = memoryview(data).cast("B")
    h = hashlib.sha256()
    for i in range(0, len(mv), _CHUNK):
        h.update(mv[i: i + _CHUNK])
    return h.hexdigest()


def _mismatch(path: Path, got: str, want: str, recorded_in: str, remedy: str) -> IntegrityError:
    return IntegrityError(f"{path} does not match the sha256 recorded in {recorded_in} "
                          f"(file {got[:12]}…, recorded {str(want)[:12]}…): it changed or was damaged after it was "
                          f"written; {remedy}")


def check_bytes(data, path: Path, want: str, recorded_in: str, remedy: str,
                stats: CheckStats | None = None) -> None:
    """Raise :class:`IntegrityError` naming ``path`` unless ``sha256(data) == want``."""
    t0 = time.perf_counter()
    got = sha256_of(data)
    if stats is not None:
        stats.add(len(memoryview(data).cast("B")), time.perf_counter() - t0)
    if got != want:
        raise _mismatch(path, got, want, recorded_in, remedy)


def read_verified(path: str | Path, want: str, recorded_in: str, remedy: str,
                  stats: CheckStats | None = None) -> bytes:
    """The bytes of ``path``, checked against ``want`` (the bytes to use: read once)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing (it is listed in {recorded_in}); {remedy}") from None
    except OSError as exc:
        raise IntegrityError(f"cannot read {path}: {exc.strerror}") from None
    check_bytes(data, path, want, recorded_in, remedy, stats)
    return data


_VERIFIED: dict[tuple, str] = {}  # (device, inode, size, mtime_ns) -> sha256 checked in this process
_VERIFIED_LOCK = threading.Lock()


def map_verified(path: str | Path, want: str, recorded_in: str, remedy: str,
                 stats: CheckStats | None = None) -> np.memmap:
    """A read-only memory map of ``path`` whose content is checked against ``want``, hashed at
    most once per process for an unchanged file (the mapping is what gets hashed: no copy)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing (it is listed in {recorded_in}); {remedy}") from None
    if st.st_size == 0:
        if want != hashlib.sha256(b"").hexdigest():
            raise _mismatch(path, hashlib.sha256(b"").hexdigest(), want, recorded_in, remedy)
        return np.zeros(0, np.uint8).view(np.memmap)
    blob = np.memmap(path, dtype=np.uint8, mode="r")
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _VERIFIED_LOCK:  # one thread hashes; another one asking for the same file waits for it
        if _VERIFIED.get(key) == want:
            if stats is not None:
                stats.reused += 1
            return blob
        _advise(blob, "MADV_SEQUENTIAL")  # hashed front to back: read ahead far (about 2x faster)
        try:
            check_bytes(blob, path, want, recorded_in, remedy, stats)
        finally:
            _advise(blob, "MADV_NORMAL")  # sessions read it in any order
        _VERIFIED[key] = want
    return blob


def _advise(blob: np.memmap, advice: str) -> None:
    mm = getattr(blob, "_mmap", None)
    if mm is not None and hasattr(mmap, advice) and hasattr(mm, "madvise"):
        mm.madvise(getattr(mmap, advice))


def forget_verified() -> None:
    """Drop this process's record of checked files (tests; the next map hashes again)."""
    with _VERIFIED_LOCK:
        _VERIFIED.clear()


__all__ = ["CheckStats", "IntegrityError", "check_bytes", "forget_verified", "map_verified", "read_verified",
           "sha256_of"]
