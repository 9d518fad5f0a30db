"""The server's data plane: from a V2 request body to a V2 response body, without HTTP.

:class:`DataPlane` owns the plan's tail models (:mod:`janus_deploy.wire.spec`), the runner and
a :class:`SessionLRU` of resident engines. :meth:`DataPlane.parse` (decompress, parse, validate)
and :meth:`DataPlane.run` (decode the payload codec, run the tail segments, check the logits)
are plain synchronous calls: the HTTP routes (:mod:`janus_deploy.runtime.server`) run them in
worker threads, and anything else (tests, Triton's python backend, a benchmark) can call them
directly.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.backends import run_segments
from janus_deploy.images import normalize
from janus_deploy.runtime.limits import DEFAULT_MAX_JSON_MB, BodyLimits
from janus_deploy.wire.codecs import (
    FRAME_CODED,
    BodyTooLargeError,
    CodecError,
    UnsupportedEncodingError,
    decode_frame,
    decode_tokens,
    decompress,
)
from janus_deploy.wire.spec import TailSpec, entry_check, tail_models, validate_inputs
from janus_deploy.wire.v2 import WireError, encode_response, parse_header_length, parse_request, requested_outputs

DEFAULT_MAX_LOADED = 128
DEFAULT_MAX_BODY_MB = 64.0
DEFAULT_MAX_BATCH = 64
MiB = 1024 * 1024


class ServerError(JanusError):
    """The server cannot start (bad plan, engines, or options)."""


class ModelFailure(JanusError):
    """A tail model ran but its answer is unusable (HTTP 500)."""


class SessionLRU:
    """Keeps at most ``max_loaded`` (level, segment) engines resident, least recently used evicted
    first (the runner frees a session shared by several levels once none of them is resident).
    Sessions used by in-flight requests are pinned and never evicted, so the bound can be exceeded
    while more than ``max_loaded`` distinct sessions are in use at once."""

    def __init__(self, runner: Any, max_loaded: int) -> None:
        if int(max_loaded) != max_loaded or max_loaded < 1:
            raise ServerError(f"--max-loaded must be an integer >= 1, got {max_loaded}")
        self.runner = runner
        self.max_loaded = int(max_loaded)
        self._lock = threading.Lock()
        self._order: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._pins: dict[tuple[int, int], int] = {}
        self._resident: set[tuple[int, int]] = set()
        self._key_locks: dict[tuple[int, int], threading.Lock] = {}
        self.loads = 0
        self.evictions = 0

    @property
    def resident(self) -> int:
        return len(self._resident)

    @contextmanager
    def use(self, keys: Sequence[tuple[int, int]]) -> Iterator[None]:
        with self._lock:
            for k in keys:
                self._pins[k] = self._pins.get(k, 0) + 1
                self._order[k] = None
                self._order.move_to_end(k)
        try:
            for k in keys:
                self._ensure(k)
            with self._lock:
                self._evict()
            yield
        finally:
            with self._lock:
                for k in keys:
                    self._pins[k] -= 1
                self._evict()

    def preload(self, keys: Sequence[tuple[int, int]]) -> None:
        """Load engines ahead of the first requests, up to ``max_loaded`` (avoids cold starts)."""
        for key in keys:
            if self.resident >= self.max_loaded:
                break
            self._ensure(key)
            with self._lock:
                self._order[key] = None

    def _ensure(self, key: tuple[int, int]) -> None:
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._resident:
                    return
            self.runner.load(*key)
            with self._lock:
                self._resident.add(key)
                self.loads += 1

    def _evict(self) -> None:
        if len(self._resident) <= self.max_loaded:
            return
        for key in list(self._order):
            if len(self._resident) <= self.max_loaded:
                break
            if key in self._resident and self._pins.get(key, 0) == 0:
                self.runner.unload(*key)
                self._resident.discard(key)
                self.evictions += 1


@dataclass
class Request:
    """A parsed, validated inference request."""

    model: TailSpec
    header: dict[str, Any]
    tensors: dict[str, np.ndarray]
    binary_outputs: dict[str, bool]

    @property
    def nbytes(self) -> int:
        """Bytes the decoded tensors hold (what the request keeps in memory until answered)."""
        return sum(int(t.nbytes) for t in self.tensors.values())


@dataclass
class Answer:
    logits: np.ndarray
    decode_ms: float
    compute_ms: float


@dataclass
class DataPlane:
    """Tail models of one plan served by one runner (see the module docstring)."""

    manifest: Any
    runner: Any
    max_loaded: int = DEFAULT_MAX_LOADED
    max_body: int = int(DEFAULT_MAX_BODY_MB * MiB)
    max_batch: int = DEFAULT_MAX_BATCH
    max_json: int = int(DEFAULT_MAX_JSON_MB * MiB)
    models: dict[str, TailSpec] = field(init=False)
    lru: SessionLRU = field(init=False)

    def __post_init__(self) -> None:
        if self.max_body <= 0:
            raise ServerError(f"--max-body-mb must be > 0, got {self.max_body / MiB:g}")
        if self.max_json <= 0:
            raise ServerError(f"--max-json-mb must be > 0, got {self.max_json / MiB:g}")
        if self.max_batch < 1:
            raise ServerError(f"the maximum batch must be >= 1, got {self.max_batch}")
        # engines with a fixed batch range (TensorRT's optimization profile, engines.json's
        # max_batch) cap the batch a request may carry: a larger one is a 4xx, never a crash
        engine_max = getattr(self.runner, "max_batch", None)
        if isinstance(engine_max, int) and 1 <= engine_max < self.max_batch:
            self.max_batch = engine_max
        self.models = tail_models(self.manifest)
        self.lru = SessionLRU(self.runner, self.max_loaded)

    def preload(self) -> None:
        """Check every file the runner may load (sha256), then load engines up to the LRU bound."""
        self.runner.check_files()
        self.lru.preload(sorted({k for m in self.models.values() for k in m.segment_keys}))

    def lookup(self, name: str) -> TailSpec:
        """The tail model called ``name`` (WireError 404 with the valid names otherwise)."""
        model = self.models.get(name)
        if model is not None:
            return model
        m = self.manifest
        n1 = m.num_blocks + 1
        hint = f" (split {n1} is device-only: nothing runs in the cloud)" if name.endswith(f"_S{n1}") else ""
        raise WireError(f"unknown model {name!r}{hint}; models are janus_L<level>_S<split> for levels "
                        f"0..{len(m.levels) - 1} and splits {[s for s in m.candidates if s <= m.num_blocks]}", 404)

    @property
    def body_limits(self) -> BodyLimits:
        return BodyLimits(self.max_body, self.max_json)

    @property
    def json_limit(self) -> int:
        return self.body_limits.json_limit

    def json_too_large(self, nbytes: int | str) -> WireError:
        return self.body_limits.json_too_large(nbytes)

    def parse(self, model: TailSpec, raw: bytes | bytearray, content_encoding: str | None,
              header_length: str | None) -> Request:
        """Decompress, parse and validate a request body (WireError with the HTTP status). Each
        input's name, datatype and shape are checked before its data is decoded."""
        json_only = header_length is None
        limit = self.json_limit if json_only else self.max_body
        try:
            body = decompress(raw, content_encoding, limit)
        except BodyTooLargeError as exc:
            if json_only:
                raise self.json_too_large(f"more than {limit}") from None
            raise WireError(f"{exc} (the server's --max-body-mb limit)", 413) from None
        except UnsupportedEncodingError as exc:
            raise WireError(str(exc), 415) from None
        except CodecError as exc:
            raise WireError(str(exc)) from None
        if len(body) > limit:  # an uncompressed body (the HTTP route refuses these before reading them)
            raise self.json_too_large(len(body)) if json_only else WireError(
                f"request body of {len(body)} bytes is over the server's --max-body-mb limit ({limit} bytes)", 413)
        hlen = parse_header_length(header_length, len(body))
        if hlen is not None and hlen > self.json_limit:
            raise self.json_too_large(hlen)
        header, tensors = parse_request(body, hlen, check=entry_check(model, self.max_batch))
        outs = requested_outputs(header, ["logits"])
        validate_inputs(model, tensors, self.max_batch)
        return Request(model, header, tensors, outs)

    def run(self, req: Request) -> Answer:
        """Decode the payload, run the tail segments; WireError 400 for payloads that decode to
        non-finite values (e.g. INT8 scales that overflow), ModelFailure for non-finite logits."""
        model, tensors = req.model, req.tensors
        t0 = time.perf_counter()
        if model.split == 0:
            m = self.manifest.model_info
            frame = tensors.get("frame")
            if frame is None:  # a frame codec's JPEG/PNG rows
                try:
                    frame = decode_frame(tensors[FRAME_CODED], int(m.img_size), int(m.img_size))
                except CodecError as exc:
                    raise WireError(f"{model.name}: {exc}") from None
            inputs = [normalize(frame, m.mean, m.std)]
        else:
            try:
                inputs = list(decode_tokens(tensors))
            except CodecError as exc:
                raise WireError(str(exc)) from None
            if not np.isfinite(inputs[0]).all():
                raise WireError(f"the tokens sent to {model.name} decode to NaN or infinite values "
                                "(an INT8 token_scale too large for FP32?)")
        t1 = time.perf_counter()
        with self.lru.use(model.segment_keys):
            out = run_segments(self.runner, model.level, model.first_segment, model.num_segments, inputs)
        t2 = time.perf_counter()
        logits = np.asarray(out[0], dtype=np.float32)
        if not np.isfinite(logits).all():
            raise ModelFailure(f"model {model.name} produced NaN or infinite logits")
        return Answer(logits, (t1 - t0) * 1e3, (t2 - t1) * 1e3)

    def respond(self, req: Request, answer: Answer, parameters: dict[str, Any]) -> tuple[bytes, int | None]:
        """The V2 response body and its binary header length (None: all JSON)."""
        rid = req.header.get("id")
        return encode_response(req.model.name, {"logits": answer.logits}, binary=req.binary_outputs,
                               request_id=rid if isinstance(rid, str) else None, parameters=parameters)

    def infer(self, name: str, raw: bytes, content_encoding: str | None = None,
              header_length: str | None = None) -> tuple[bytes, int | None]:
        """The whole data plane in one call (no timing parameters): body in, body out."""
        req = self.parse(self.lookup(name), raw, content_encoding, header_length)
        return self.respond(req, self.run(req), {})


__all__ = ["Answer", "DataPlane", "ModelFailure", "Request", "ServerError", "SessionLRU"]
