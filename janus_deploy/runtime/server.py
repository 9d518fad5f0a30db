"""The cloud half: a KServe V2 (Open Inference Protocol) REST server for a plan's tail models.

One V2 model per (level, split) tail, named ``janus_L{level}_S{split}``: it runs the segments of
plan level ``level`` that come after split point ``split`` (see ``docs/runtime.md``).

* split 0: input ``frame`` [B, H, W, 3] UINT8 (normalised here with the plan's mean/std), the
  whole model runs in the cloud.
* 1 <= split <= N: inputs ``tokens`` [B, x_s, D] (FP32 | FP16 | INT8), ``size`` [B, x_s, 1]
  (FP32 | FP16) and, for INT8 tokens, ``token_scale`` [B, x_s, 1] FP32.
* output ``logits`` [B, num_classes] FP32.

Bodies are V2 JSON or Triton's binary-tensor extension (:mod:`janus_deploy.wire.v2`),
optionally compressed (``Content-Encoding: zstd``, also gzip/deflate as the Triton client sends).
Needs the [serve] extra (fastapi, uvicorn). Engines load lazily and stay in an LRU bounded by
``max_loaded`` (level, segment) pairs (with per-level engines one session each; with level-free
ORT engines pairs share a session, which goes when no resident pair uses it); inference runs in a
worker thread pool so the event loop keeps serving while models compute.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from janus_deploy import JanusError, __version__
from janus_deploy.backends import load_runner, run_segments
from janus_deploy.images import normalize
from janus_deploy.plan.manifest import Manifest
from janus_deploy.wire.codecs import BodyTooLargeError, CodecError, decode_tokens, decompress
from janus_deploy.wire.v2 import model_name  # noqa: F401 - part of the server's API
from janus_deploy.wire.v2 import (
    HEADER_LENGTH,
    WireError,
    encode_response,
    parse_header_length,
    parse_request,
    requested_outputs,
    v2_datatype,
)

log = logging.getLogger("janus_deploy.runtime.server")

SERVER_NAME = "janus-deploy"
MODEL_VERSION = "1"
DEFAULT_MAX_LOADED = 128
DEFAULT_MAX_BODY_MB = 64.0
DEFAULT_MAX_BATCH = 64
DEFAULT_BODY_TIMEOUT_S = 60.0
GRACEFUL_SHUTDOWN_S = 5
TOKEN_DTYPES = ("FP32", "FP16", "INT8")
SIZE_DTYPES = ("FP32", "FP16")
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")


class ServerError(JanusError):
    """The server cannot start (bad plan, engines, or options)."""


@dataclass(frozen=True)
class TailModel:
    """One servable V2 model: the segments ``first_segment ..`` of one plan level."""

    name: str
    level: int
    split: int
    first_segment: int
    num_segments: int
    tokens: int  # x_s (0 for split 0)
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]

    @property
    def segment_keys(self) -> list[tuple[int, int]]:
        return [(self.level, s) for s in range(self.first_segment, self.num_segments)]

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name, "versions": [MODEL_VERSION], "platform": "janus-deploy",
            "inputs": [dict(i) for i in self.inputs], "outputs": [dict(o) for o in self.outputs],
            "parameters": {"level": self.level, "split": self.split, "tokens": self.tokens,
                           "segments": [self.first_segment, self.num_segments - 1]},
        }


def tail_models(manifest: Manifest) -> dict[str, TailModel]:
    """Every servable (level, split) of a plan: splits 0..N of the candidates (N+1 = device only)."""
    m = manifest.model
    n, d, img, classes = manifest.num_blocks, m["embed_dim"], m["img_size"], m["num_classes"]
    out: dict[str, TailModel] = {}
    outputs = ({"name": "logits", "datatype": "FP32", "shape": [-1, classes]},)
    for li, lv in enumerate(manifest.levels):
        nseg = len(lv["segments"])
        for s in manifest.candidates:
            if s > n:
                continue
            first = manifest.edge_segments(s)
            if s == 0:
                ins: tuple[dict[str, Any], ...] = (
                    {"name": "frame", "datatype": "UINT8", "shape": [-1, img, img, 3]},)
                x = 0
            else:
                x = lv["tokens"][s]
                ins = (
                    {"name": "tokens", "datatype": "FP32", "shape": [-1, x, d],
                     "parameters": {"datatypes": list(TOKEN_DTYPES)}},
                    {"name": "size", "datatype": "FP32", "shape": [-1, x, 1],
                     "parameters": {"datatypes": list(SIZE_DTYPES)}},
                    {"name": "token_scale", "datatype": "FP32", "shape": [-1, x, 1], "optional": True,
                     "parameters": {"required_when": "tokens is INT8"}},
                )
            name = model_name(li, s)
            out[name] = TailModel(name, li, s, first, nseg, x, ins, outputs)
    return out


# ------------------------------------------------------------------------------------------ LRU


class SessionLRU:
    """Keeps at most ``max_loaded`` (level, segment) engines resident, least recently used evicted
    first (the runner frees a session shared by several levels once none of them is resident). Sessions used by in-flight requests are pinned and never evicted, so the
    bound can be exceeded while more than ``max_loaded`` distinct sessions are in use at once."""

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
            load = getattr(self.runner, "session", None)
            if load is not None:
                load(*key)  # else the runner loads lazily on first run
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


# ------------------------------------------------------------------------------------------ app


@dataclass
class ServerState:
    manifest: Manifest
    runner: Any
    models: dict[str, TailModel]
    lru: SessionLRU
    token: str | None
    max_body: int
    max_batch: int
    concurrency: int
    limiter: Any = None
    stats: dict[str, int] = field(default_factory=lambda: {"infer_requests": 0, "ok": 0, "client_errors": 0,
                                                           "server_errors": 0})

    def infer(self, model: TailModel, tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, float, float]:
        """Runs in a worker thread: decode, run the tail segments; returns (logits, decode_ms, compute_ms)."""
        t0 = time.perf_counter()
        if model.split == 0:
            m = self.manifest.model
            inputs = [normalize(tensors["frame"], m["mean"], m["std"])]
        else:
            inputs = list(decode_tokens(tensors))
        t1 = time.perf_counter()
        with self.lru.use(model.segment_keys):
            out = run_segments(self.runner, model.level, model.first_segment, model.num_segments, inputs)
        t2 = time.perf_counter()
        logits = np.asarray(out[0], dtype=np.float32)
        return logits, (t1 - t0) * 1e3, (t2 - t1) * 1e3


def _validate(model: TailModel, tensors: dict[str, np.ndarray], max_batch: int, d: int, img: int) -> None:
    """Check input names, dtypes and shapes against the model (WireError 400 otherwise)."""

    def dt(name: str) -> str:
        return v2_datatype(tensors[name])

    if model.split == 0:
        want = {"frame"}
    else:
        want = {"tokens", "size"} | ({"token_scale"} if "tokens" in tensors and dt("tokens") == "INT8" else set())
    missing = sorted(want - set(tensors))
    extra = sorted(set(tensors) - want)
    if missing:
        raise WireError(f"model {model.name} needs input(s) {', '.join(missing)}"
                        + (" (INT8 tokens need token_scale)" if "token_scale" in missing else ""))
    if extra:
        raise WireError(f"model {model.name} has no input(s) {', '.join(extra)} "
                        f"(expects {', '.join(sorted(want))})")
    batch: int | None = None

    def check(name: str, allowed: Sequence[str], tail: tuple[int, ...]) -> None:
        nonlocal batch
        a = tensors[name]
        if dt(name) not in allowed:
            raise WireError(f"input {name!r} of {model.name} must be {' or '.join(allowed)}, got {dt(name)}")
        if a.ndim != 1 + len(tail) or tuple(a.shape[1:]) != tail:
            raise WireError(f"input {name!r} of {model.name} must have shape [B, {', '.join(map(str, tail))}], "
                            f"got {list(a.shape)}")
        b = a.shape[0]
        if not 1 <= b <= max_batch:
            raise WireError(f"input {name!r}: batch size {b} is outside 1..{max_batch}")
        if batch is not None and b != batch:
            raise WireError(f"inputs disagree on the batch size ({batch} vs {b})")
        batch = b

    if model.split == 0:
        check("frame", ("UINT8",), (img, img, 3))
        return
    x = model.tokens
    check("tokens", TOKEN_DTYPES, (x, d))
    check("size", SIZE_DTYPES, (x, 1))
    if "token_scale" in tensors:
        check("token_scale", ("FP32",), (x, 1))
    tok = tensors["tokens"]
    if tok.dtype.kind == "f" and not np.isfinite(tok).all():
        raise WireError(f"input 'tokens' of {model.name} holds NaN or infinite values")
    size = tensors["size"]
    if not (np.isfinite(size).all() and (size >= 1).all()):
        raise WireError(f"input 'size' of {model.name} must hold patch counts >= 1 (finite), "
                        "as the previous segment's size_out does")
    if "token_scale" in tensors and not np.isfinite(tensors["token_scale"]).all():
        raise WireError(f"input 'token_scale' of {model.name} holds NaN or infinite values")


def _decode_body(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc == "zstd":
        try:
            return decompress(body, "zstd", max_bytes)
        except BodyTooLargeError:
            raise WireError(f"the zstd body decompresses to more than the --max-body-mb limit "
                            f"({max_bytes} bytes)", 413) from None
        except CodecError as exc:
            raise WireError(str(exc)) from None
    if enc in ("gzip", "deflate"):
        d = zlib.decompressobj(zlib.MAX_WBITS | 16 if enc == "gzip" else zlib.MAX_WBITS)
        try:
            out = d.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            raise WireError(f"the {enc} body does not decompress: {exc}") from None
        if len(out) > max_bytes:
            raise WireError(f"the {enc} body decompresses to more than the --max-body-mb limit "
                            f"({max_bytes} bytes)", 413)
        return out
    raise WireError(f"unsupported Content-Encoding {encoding!r} (use zstd, gzip, deflate or none)", 415)


def create_app(
    plan_dir: str | Path,
    engine_dir: str | Path,
    *,
    max_loaded: int = DEFAULT_MAX_LOADED,
    token: str | None = None,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    max_batch: int = DEFAULT_MAX_BATCH,
    concurrency: int | None = None,
    threads: int = 0,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    runner: Any = None,
    preload: bool = False,
):
    """The FastAPI app serving every tail model of a plan (see module docstring).

    ``max_loaded``: most (level, segment) sessions kept resident (LRU). ``token``: require
    ``Authorization: Bearer <token>`` on every endpoint except the health checks.
    ``max_body_mb``: larger request bodies (before or after decompression) get 413.
    ``concurrency``: inferences running at once (default: CPU count). ``threads``: intra-op
    threads per session (0 = the runtime's default). ``body_timeout_s``: a request body not
    complete this long after its headers gets 408 (stalled or vanished clients do not hold a
    handler forever). ``runner``: an already loaded runner. ``preload``: load engines (up to
    ``max_loaded``) before serving instead of on first use.
    """
    manifest = Manifest.load(plan_dir)
    if runner is None:
        runner = load_runner(manifest, engine_dir, threads=threads)
    if max_body_mb <= 0:
        raise ServerError(f"--max-body-mb must be > 0, got {max_body_mb}")
    if token is not None and not token:
        raise ServerError("--token must not be empty")
    conc = int(concurrency or os.cpu_count() or 1)
    if conc < 1:
        raise ServerError(f"concurrency must be >= 1, got {concurrency}")
    state = ServerState(manifest, runner, tail_models(manifest), SessionLRU(runner, max_loaded), token,
                        int(max_body_mb * 1024 * 1024), int(max_batch), conc)
    if preload:
        state.lru.preload(sorted({k for m in state.models.values() for k in m.segment_keys}))
    d, img = manifest.model["embed_dim"], manifest.model["img_size"]

    @asynccontextmanager
    async def lifespan(app):
        state.limiter = anyio.CapacityLimiter(state.concurrency)
        yield

    app = FastAPI(title="janus-deploy V2 inference server", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.janus = state

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        if status >= 500:
            state.stats["server_errors"] += 1
        elif status >= 400:
            state.stats["client_errors"] += 1
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_exc(request: Request, exc: StarletteHTTPException):
        msg = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            msg = f"no such endpoint {request.method} {request.url.path}"
        elif exc.status_code == 405:
            msg = f"method {request.method} is not allowed on {request.url.path}"
        return error(exc.status_code, msg)

    @app.exception_handler(RequestValidationError)
    async def _validation_exc(request: Request, exc: RequestValidationError):
        return error(400, f"bad request: {exc.errors()}")

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if state.token is not None and request.url.path not in OPEN_PATHS:
            got = request.headers.get("authorization", "")
            scheme, _, cred = got.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(cred.strip().encode(), state.token.encode()):
                why = "missing Authorization header" if not got else "wrong bearer token"
                return error(401, f"unauthorized: {why} (send 'Authorization: Bearer <token>')",
                             {"WWW-Authenticate": 'Bearer realm="janus-deploy"'})
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 - never crash the server on one request
            log.exception("unhandled error on %s", request.url.path)
            return error(500, f"internal server error: {type(exc).__name__}: {exc}")

    # ---------------------------------------------------------------- health + metadata
    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata():
        return {
            "name": SERVER_NAME, "version": __version__, "extensions": ["binary_tensor_data"],
            "janus": {"plan_hash": manifest.hash, "model": manifest.model["name"],
                      "models": list(state.models), "max_loaded": state.lru.max_loaded,
                      "loaded_sessions": state.lru.resident, "loads": state.lru.loads,
                      "evictions": state.lru.evictions, "max_body_bytes": state.max_body,
                      "stats": dict(state.stats)},
        }

    def lookup(name: str, version: str | None = None) -> TailModel | JSONResponse:
        model = state.models.get(name)
        if model is None:
            hint = ""
            n1 = manifest.num_blocks + 1
            if name.endswith(f"_S{n1}"):
                hint = f" (split {n1} is device-only: nothing runs in the cloud)"
            return error(404, f"unknown model {name!r}{hint}; models are janus_L<level>_S<split> for "
                              f"levels 0..{len(manifest.levels) - 1} and splits "
                              f"{[s for s in manifest.candidates if s <= manifest.num_blocks]}")
        if version not in (None, "", MODEL_VERSION):
            return error(404, f"model {name!r} has no version {version!r} (only {MODEL_VERSION!r})")
        return model

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None):
        model = lookup(name, version)
        return model if isinstance(model, JSONResponse) else model.metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None):
        model = lookup(name, version)
        if isinstance(model, JSONResponse):
            return model
        return {"name": name, "ready": True}

    # ---------------------------------------------------------------- inference
    async def read_body(request: Request) -> bytes:
        cl = request.headers.get("content-length")
        if cl is not None:
            try:
                declared = int(cl)
            except ValueError:
                raise WireError(f"Content-Length must be an integer, got {cl!r}") from None
            if declared > state.max_body:
                raise WireError(f"request body of {declared} bytes is over the server's --max-body-mb "
                                f"limit ({state.max_body} bytes)", 413)
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > state.max_body:
                raise WireError(f"request body is over the server's --max-body-mb limit "
                                f"({state.max_body} bytes)", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/janus/probe")
    async def probe(request: Request):
        """Bandwidth probe of the edge runtime: reads and discards the body (same limits)."""
        t = time.perf_counter()
        try:
            with anyio.fail_after(body_timeout_s):
                raw = await read_body(request)
        except TimeoutError:
            return error(408, f"the probe body was not complete within {body_timeout_s:g} s")
        except ClientDisconnect:
            return error(400, "the client disconnected before the probe body was complete")
        except WireError as exc:
            return error(exc.status, str(exc))
        return {"bytes": len(raw), "receive_ms": round((time.perf_counter() - t) * 1e3, 3)}

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None):
        state.stats["infer_requests"] += 1
        t_start = time.perf_counter()
        model = lookup(name, version)
        if isinstance(model, JSONResponse):
            return model
        try:
            try:
                with anyio.fail_after(body_timeout_s):
                    raw = await read_body(request)
            except TimeoutError:
                raise WireError(f"the request body was not complete within {body_timeout_s:g} s", 408) from None
            t_recv = time.perf_counter()
            body = _decode_body(raw, request.headers.get("content-encoding"), state.max_body)
            hlen = parse_header_length(request.headers.get(HEADER_LENGTH.lower()), len(body))
            header, tensors = parse_request(body, hlen)
            outs = requested_outputs(header, ["logits"])
            _validate(model, tensors, state.max_batch, d, img)
        except ClientDisconnect:
            return error(400, "the client disconnected before the request body was complete")
        except WireError as exc:
            return error(exc.status, str(exc))
        t_parsed = time.perf_counter()
        try:
            logits, decode_ms, compute_ms = await anyio.to_thread.run_sync(
                state.infer, model, tensors, limiter=state.limiter)
        except (CodecError, WireError) as exc:
            return error(400, str(exc))
        except JanusError as exc:
            log.error("model %s failed: %s", name, exc)
            return error(500, f"model {name} failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - runtime errors from the engine
            log.exception("model %s failed", name)
            return error(500, f"model {name} failed: {type(exc).__name__}: {exc}")
        t_done = time.perf_counter()
        params = {
            "janus_receive_ms": round((t_recv - t_start) * 1e3, 3),
            "janus_parse_ms": round((t_parsed - t_recv) * 1e3, 3),
            "janus_queue_ms": round(max((t_done - t_parsed) * 1e3 - decode_ms - compute_ms, 0.0), 3),
            "janus_decode_ms": round(decode_ms, 3),
            "janus_compute_ms": round(compute_ms, 3),
            "janus_server_ms": round((t_done - t_recv) * 1e3, 3),
        }
        rid = header.get("id")
        out_body, out_hlen = encode_response(name, {"logits": logits}, binary=outs,
                                             request_id=rid if isinstance(rid, str) else None,
                                             parameters=params)
        state.stats["ok"] += 1
        if out_hlen is None:
            return Response(out_body, media_type="application/json")
        return Response(out_body, media_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(out_hlen)})

    return app


def serve(
    plan_dir: str | Path,
    engine_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_loaded: int = DEFAULT_MAX_LOADED,
    token: str | None = None,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    concurrency: int | None = None,
    threads: int = 0,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    log_level: str = "warning",
    access_log: bool = False,
    preload: bool = False,
    on_ready: Callable[[Any], None] | None = None,
) -> None:
    """Run the V2 server with uvicorn until interrupted. ``on_ready(app)`` runs once the app is
    built (the CLI prints its banner there)."""
    import uvicorn

    app = create_app(plan_dir, engine_dir, max_loaded=max_loaded, token=token, max_body_mb=max_body_mb,
                     concurrency=concurrency, threads=threads, body_timeout_s=body_timeout_s, preload=preload)
    if on_ready is not None:
        on_ready(app)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)


class BackgroundServer:
    """Run an app with uvicorn in a daemon thread (tests, benchmarks, embedding in a process).

    ``port=0`` picks a free port; :attr:`url` is the base URL once started.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        import uvicorn

        self.host = host
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                                    access_log=False, timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="janus-v2-server", daemon=True)
        self.port = port

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ServerError(f"the V2 server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["BackgroundServer", "ServerError", "SessionLRU", "TailModel", "create_app", "model_name", "serve", "tail_models"]
