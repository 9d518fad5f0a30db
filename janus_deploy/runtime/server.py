"""The cloud half: HTTP routes of a KServe V2 (Open Inference Protocol) REST server.

The routes are thin: everything from a request body to a response body is the data plane
(:mod:`janus_deploy.runtime.dataplane`), and the tail models' names, inputs and outputs are
:mod:`janus_deploy.wire.spec`'s (see ``docs/runtime.md``). Bodies are V2 JSON or Triton's
binary-tensor extension (:mod:`janus_deploy.wire.v2`), optionally compressed
(``Content-Encoding: zstd``, also gzip/deflate as the Triton client sends).

Needs the [serve] extra (fastapi, uvicorn). Body decompression, parsing, validation and
inference all run in worker threads (bounded by ``concurrency``), so the event loop keeps
answering health checks while bodies are decoded and models compute.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from janus_deploy import JanusError, __version__
from janus_deploy.backends import load_runner
from janus_deploy.plan.manifest import Manifest
from janus_deploy.runtime.dataplane import (DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_MB, DEFAULT_MAX_LOADED, DataPlane,
                                            ModelFailure, ServerError, SessionLRU)
from janus_deploy.wire.spec import MODEL_VERSION, TailSpec, tail_models
from janus_deploy.wire.v2 import HEADER_LENGTH, WireError, model_name

log = logging.getLogger("janus_deploy.runtime.server")

SERVER_NAME = "janus-deploy"
DEFAULT_BODY_TIMEOUT_S = 60.0
GRACEFUL_SHUTDOWN_S = 5
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
TailModel = TailSpec  # the name before the data plane moved out


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
    plane = DataPlane(manifest, runner, max_loaded=max_loaded, max_body=int(max_body_mb * 1024 * 1024),
                      max_batch=int(max_batch))
    if preload:
        plane.preload()
    state = _RouteState(plane, token, conc)

    @asynccontextmanager
    async def lifespan(app):
        state.limiter = anyio.CapacityLimiter(state.concurrency)
        yield

    app = FastAPI(title="janus-deploy V2 inference server", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.janus = plane  # the data plane (models, runner, LRU); routes keep their own state

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
                      "models": list(plane.models), "max_loaded": plane.lru.max_loaded,
                      "loaded_sessions": plane.lru.resident, "loads": plane.lru.loads,
                      "evictions": plane.lru.evictions, "max_body_bytes": plane.max_body,
                      "stats": dict(state.stats)},
        }

    def lookup(name: str, version: str | None = None) -> TailSpec | JSONResponse:
        try:
            model = plane.lookup(name)
        except WireError as exc:
            return error(exc.status, str(exc))
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
            if declared > plane.max_body:
                raise WireError(f"request body of {declared} bytes is over the server's --max-body-mb "
                                f"limit ({plane.max_body} bytes)", 413)
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > plane.max_body:
                raise WireError(f"request body is over the server's --max-body-mb limit "
                                f"({plane.max_body} bytes)", 413)
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
            req = await anyio.to_thread.run_sync(
                plane.parse, model, raw, request.headers.get("content-encoding"),
                request.headers.get(HEADER_LENGTH.lower()), limiter=state.limiter)
        except ClientDisconnect:
            return error(400, "the client disconnected before the request body was complete")
        except WireError as exc:
            return error(exc.status, str(exc))
        t_parsed = time.perf_counter()
        try:
            answer = await anyio.to_thread.run_sync(plane.run, req, limiter=state.limiter)
        except WireError as exc:
            return error(exc.status, str(exc))
        except JanusError as exc:  # ModelFailure, EngineError
            log.error("model %s failed: %s", name, exc)
            return error(500, f"model {name} failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - runtime errors from the engine
            log.exception("model %s failed", name)
            return error(500, f"model {name} failed: {type(exc).__name__}")
        t_done = time.perf_counter()
        params = {
            "janus_receive_ms": round((t_recv - t_start) * 1e3, 3),
            "janus_parse_ms": round((t_parsed - t_recv) * 1e3, 3),
            "janus_queue_ms": round(max((t_done - t_parsed) * 1e3 - answer.decode_ms - answer.compute_ms, 0.0), 3),
            "janus_decode_ms": round(answer.decode_ms, 3),
            "janus_compute_ms": round(answer.compute_ms, 3),
            "janus_server_ms": round((t_done - t_recv) * 1e3, 3),
        }
        out_body, out_hlen = plane.respond(req, answer, params)
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


class _RouteState:
    """What the routes keep beside the data plane: auth, the inference limiter, counters."""

    def __init__(self, plane: DataPlane, token: str | None, concurrency: int) -> None:
        self.plane = plane
        self.token = token
        self.concurrency = concurrency
        self.limiter: Any = None
        self.stats = {"infer_requests": 0, "ok": 0, "client_errors": 0, "server_errors": 0}


__all__ = ["BackgroundServer", "DataPlane", "ServerError", "SessionLRU", "TailModel", "create_app", "model_name",
           "serve", "tail_models"]
