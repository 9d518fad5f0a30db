"""The cloud half: HTTP routes of a KServe V2 (Open Inference Protocol) REST server.

The routes are thin: everything from a request body to a response body is the data plane
(:mod:`janus_deploy.runtime.dataplane`), and the tail models' names, inputs and outputs are
:mod:`janus_deploy.wire.spec`'s (see ``docs/runtime.md``). Bodies are V2 JSON or Triton's
binary-tensor extension (:mod:`janus_deploy.wire.v2`), optionally compressed
(``Content-Encoding: zstd``, also gzip/deflate as the Triton client sends).

Needs fastapi and uvicorn (base dependencies of the runtime install). Body decompression, parsing, validation and
inference all run in worker threads (bounded by ``concurrency``), so the event loop keeps
answering health checks while bodies are decoded and models compute. Request bodies held in
memory are bounded by a byte budget, JSON by its own size limit (it is parsed holding the GIL),
and connections by a cap, a header deadline and uvicorn's keep-alive timeout
(:mod:`janus_deploy.runtime.limits`; the knobs are in ``docs/runtime.md``).
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
from janus_deploy.runtime.dataplane import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_MAX_JSON_MB,
    DEFAULT_MAX_LOADED,
    Answer,
    DataPlane,
    ServerError,
    SessionLRU,
)
from janus_deploy.runtime.dataplane import Request as DataRequest
from janus_deploy.runtime.limits import BodyBudget, BodyLimits, ConnectionGuard, ServerLimits, Ticket, quiet_accept_errors, uvicorn_config
from janus_deploy.wire.spec import MODEL_VERSION, TailSpec, tail_models
from janus_deploy.wire.v2 import HEADER_LENGTH, WireError, header_length_value, model_name

log = logging.getLogger("janus_deploy.runtime.server")

SERVER_NAME = "janus-deploy"
DEFAULT_BODY_TIMEOUT_S = 60.0
GRACEFUL_SHUTDOWN_S = 5
PARSE_CONCURRENCY = 2  # binary bodies decompressed/parsed at once (each may briefly hold up to --max-body-mb more)
JSON_CONCURRENCY = 1  # JSON bodies parsed at once: two parsing threads and the event loop share one GIL
SMALL_JSON = 64 * 1024  # a binary request's JSON header up to this size parses with the binary bodies
MAX_ERROR_CHARS = 400
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
TailModel = TailSpec  # the name before the data plane moved out


def bearer_refusal(token: str | None, path: str, authorization: str | None) -> str | None:
    """Why a request is refused without the bearer ``token`` (None: let through). The health
    checks (:data:`OPEN_PATHS`) are always open."""
    if token is None or path in OPEN_PATHS:
        return None
    got = authorization or ""
    scheme, _, cred = got.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(cred.strip().encode(), token.encode()):
        return None
    why = "missing Authorization header" if not got else "wrong bearer token"
    return f"unauthorized: {why} (send 'Authorization: Bearer <token>')"


class ServerBusy(WireError):
    """The in-flight body budget had no room for a body within the body timeout (503)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 503)


class BodyReceiver:
    """Reads request bodies within the body rules (:class:`BodyLimits`), the in-flight byte
    budget and the body timeout; shared by the V2 routes and the Triton front
    (:mod:`janus_deploy.triton.front`)."""

    def __init__(self, body_limits: BodyLimits, budget: BodyBudget, timeout_s: float) -> None:
        self.body_limits = body_limits
        self.budget = budget
        self.timeout_s = timeout_s

    async def read(self, request: Request, declared: int | None) -> bytearray:
        """The body into one buffer (sized by Content-Length: no list of chunks, no join)."""
        if declared is None:
            buf = bytearray()
            async for chunk in request.stream():
                self.body_limits.check_streamed(len(buf) + len(chunk))
                buf += chunk
            return buf
        buf, pos = bytearray(declared), 0
        view = memoryview(buf)
        async for chunk in request.stream():
            end = pos + len(chunk)
            if end > declared:  # h11 frames bodies by Content-Length; never more
                raise WireError("the request body is longer than its Content-Length")
            view[pos:end] = chunk
            pos = end
        view.release()
        if pos < declared:
            del buf[pos:]
        return buf

    async def receive(self, request: Request, json_only: bool, ticket: Ticket) -> bytearray:
        """Reserve the body's bytes in the in-flight budget (:class:`ServerBusy` if that takes
        longer than the body timeout), then read it (WireError 408 if it is not complete by
        then; 413 from the headers alone where they announce too much). The caller releases
        ``ticket`` once the request is answered."""
        h = request.headers
        declared = self.body_limits.declared(h.get("content-length"), h.get("content-encoding"),
                                             h.get(HEADER_LENGTH.lower()), json_only)
        timeout = self.timeout_s
        deadline = anyio.current_time() + timeout
        try:
            with anyio.fail_after(timeout):
                await ticket.acquire(declared if declared is not None else self.body_limits.max_body)
        except TimeoutError:
            raise ServerBusy(f"server busy: {self.budget.used} bytes of request bodies in flight (the server's "
                             f"--max-inflight-mb limit is {self.budget.limit}); retry") from None
        try:
            with anyio.fail_after(max(deadline - anyio.current_time(), 0.0)):
                return await self.read(request, declared)
        except TimeoutError:
            raise WireError(f"the request body was not complete within {timeout:g} s", 408) from None


class V2Endpoints:
    """The V2 routes, one small method each, over a :class:`DataPlane` (KServe's endpoints /
    dataplane split): a method turns an HTTP request into data-plane calls and their result or
    error into an HTTP response. What the routes keep beside the data plane lives here: the
    token, the worker-thread limiters, the in-flight body budget, the connection guard and the
    request counters. :func:`create_app` binds the methods to their paths."""

    def __init__(self, plane: DataPlane, *, token: str | None, concurrency: int, limits: ServerLimits,
                 body_timeout_s: float) -> None:
        self.plane = plane
        self.token = token
        self.concurrency = concurrency
        self.body_timeout_s = body_timeout_s
        self.body_limits = plane.body_limits
        self.limiter: Any = None  # anyio limiters: made inside the event loop (lifespan)
        self.parse_limiter: Any = None
        self.json_limiter: Any = None
        self.budget = BodyBudget(limits.max_inflight)
        self.receiver = BodyReceiver(self.body_limits, self.budget, body_timeout_s)
        self.guard = ConnectionGuard(limits)
        self.stats = {"infer_requests": 0, "ok": 0, "client_errors": 0, "server_errors": 0, "busy": 0}

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        self.limiter = anyio.CapacityLimiter(self.concurrency)
        self.parse_limiter = anyio.CapacityLimiter(min(self.concurrency, PARSE_CONCURRENCY))
        self.json_limiter = anyio.CapacityLimiter(JSON_CONCURRENCY)
        quiet_accept_errors(asyncio.get_running_loop())
        yield

    # ------------------------------------------------------------------ errors and auth
    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        """The one error body (``{"error": message}``), counted as a client or server error."""
        if len(message) > MAX_ERROR_CHARS:  # messages quote client input only in short form; a last guard
            message = message[: MAX_ERROR_CHARS - 1] + "…"
        if status >= 500:
            self.stats["server_errors"] += 1
        elif status >= 400:
            self.stats["client_errors"] += 1
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def http_exception(self, request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        msg = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            msg = f"no such endpoint {request.method} {request.url.path}"
        elif exc.status_code == 405:
            msg = f"method {request.method} is not allowed on {request.url.path}"
        return self.error(exc.status_code, msg)

    async def validation_exception(self, request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return self.error(400, f"bad request: {exc.errors()}")

    def unauthorized(self, request: Request) -> JSONResponse | None:
        """401 unless the request carries the bearer token (health checks are always open)."""
        why = bearer_refusal(self.token, request.url.path, request.headers.get("authorization"))
        if why is None:
            return None
        return self.error(401, why, {"WWW-Authenticate": 'Bearer realm="janus-deploy"'})

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Auth, then the route; an unexpected error is one 500 line, never a crash."""
        refused = self.unauthorized(request)
        if refused is not None:
            return refused
        try:
            return await call_next(request)
        except Exception:  # noqa: BLE001 - never crash the server on one request
            log.exception("unhandled error on %s", request.url.path)
            return self.error(500, "internal server error (the server's log has the details)")

    # ------------------------------------------------------------------ health and metadata
    async def live(self) -> dict[str, Any]:
        return {"live": True}

    async def ready(self) -> dict[str, Any]:
        return {"ready": True}

    async def server_metadata(self) -> dict[str, Any]:
        plane, budget = self.plane, self.budget
        return {
            "name": SERVER_NAME, "version": __version__, "extensions": ["binary_tensor_data"],
            "janus": {"plan_hash": plane.manifest.hash, "model": plane.manifest.model_info.name,
                      "models": list(plane.models), "max_loaded": plane.lru.max_loaded,
                      "loaded_sessions": plane.lru.resident, "loads": plane.lru.loads,
                      "evictions": plane.lru.evictions, "max_body_bytes": plane.max_body,
                      "max_json_bytes": plane.json_limit, "stats": dict(self.stats),
                      "connections": self.guard.as_dict(),
                      "bodies": {"inflight_bytes": budget.used, "peak_bytes": budget.peak,
                                 "limit_bytes": budget.limit, "waited": budget.waited}},
        }

    def lookup(self, name: str, version: str | None = None) -> TailSpec:
        """The tail model (WireError 404 for an unknown name or a version other than ours)."""
        model = self.plane.lookup(name)
        if version not in (None, "", MODEL_VERSION):
            raise WireError(f"model {name!r} has no version {version!r} (only {MODEL_VERSION!r})", 404)
        return model

    async def model_metadata(self, name: str, version: str | None = None) -> Any:
        try:
            return self.lookup(name, version).metadata()
        except WireError as exc:
            return self.error(exc.status, str(exc))

    async def model_ready(self, name: str, version: str | None = None) -> Any:
        try:
            self.lookup(name, version)
        except WireError as exc:
            return self.error(exc.status, str(exc))
        return {"name": name, "ready": True}

    # ------------------------------------------------------------------ bodies
    async def receive(self, request: Request, json_only: bool, ticket: Ticket) -> bytearray | JSONResponse:
        """The body (:meth:`BodyReceiver.receive`); 503 with Retry-After when the in-flight
        budget had no room for it in time."""
        try:
            return await self.receiver.receive(request, json_only, ticket)
        except ServerBusy as exc:
            self.stats["busy"] += 1
            return self.error(503, str(exc), {"Retry-After": "1"})

    # ------------------------------------------------------------------ probe and inference
    async def probe(self, request: Request) -> Any:
        """Bandwidth probe of the edge runtime: reads and discards the body (same limits)."""
        t = time.perf_counter()
        ticket = self.budget.ticket()
        try:
            raw = await self.receive(request, False, ticket)
            if isinstance(raw, JSONResponse):
                return raw
            return {"bytes": len(raw), "receive_ms": round((time.perf_counter() - t) * 1e3, 3)}
        except WireError as exc:
            return self.error(exc.status, str(exc).replace("request body", "probe body"))
        except ClientDisconnect:
            return self.error(400, "the client disconnected before the probe body was complete")
        finally:
            ticket.release()

    async def infer(self, name: str, request: Request, version: str | None = None) -> Response:
        """Receive and parse the body (worker threads), run the tail, answer with the timings."""
        self.stats["infer_requests"] += 1
        t_start = time.perf_counter()
        ticket = self.budget.ticket()
        try:
            model = self.lookup(name, version)
            got = await self.parsed_request(model, request, ticket)
            if isinstance(got, JSONResponse):
                return got
            req, t_recv = got
            t_parsed = time.perf_counter()
            answer = await self.run_model(req)
            if isinstance(answer, JSONResponse):
                return answer
            times = _timings(t_start, t_recv, t_parsed, time.perf_counter(), answer)
            return self.response(req, answer, times)
        except ClientDisconnect:
            return self.error(400, "the client disconnected before the request body was complete")
        except WireError as exc:
            return self.error(exc.status, str(exc))
        finally:
            ticket.release()

    async def parsed_request(self, model: TailSpec, request: Request, ticket: Ticket
                             ) -> tuple[DataRequest, float] | JSONResponse:
        """The body received and parsed in a worker thread (JSON-heavy bodies one at a time),
        with the time it was complete; the ticket then holds what the decoded tensors keep."""
        hlen = request.headers.get(HEADER_LENGTH.lower())
        got = await self.receive(request, hlen is None, ticket)
        if isinstance(got, JSONResponse):
            return got
        t_recv = time.perf_counter()
        box = [got]  # the worker takes the body out: freed when it is done with it
        del got
        big_json = hlen is None or header_length_value(hlen) > SMALL_JSON
        req, refused = await anyio.to_thread.run_sync(
            _parse, self.plane, model, box, request.headers.get("content-encoding"), hlen,
            limiter=self.json_limiter if big_json else self.parse_limiter)
        if refused is not None:
            return self.error(*refused)
        ticket.resize(req.nbytes)  # what the request keeps until it is answered: its decoded tensors
        return req, t_recv

    async def run_model(self, req: DataRequest) -> Answer | JSONResponse:
        """The tail run in a worker thread (bounded by ``concurrency``); its failures as 4xx/500."""
        name = req.model.name
        try:
            answer, failed = await anyio.to_thread.run_sync(_run, self.plane, req, limiter=self.limiter)
        except Exception as exc:  # noqa: BLE001 - runtime errors from the engine
            log.exception("model %s failed", name)
            return self.error(500, f"model {name} failed: {type(exc).__name__}")
        if failed is None:
            return answer
        if failed[0] >= 500:
            log.error("model %s failed: %s", name, failed[1])
            return self.error(500, f"model {name} failed: {failed[1]}")
        return self.error(*failed)

    def response(self, req: DataRequest, answer: Answer, parameters: dict[str, float]) -> Response:
        out_body, out_hlen = self.plane.respond(req, answer, parameters)
        self.stats["ok"] += 1
        if out_hlen is None:
            return Response(out_body, media_type="application/json")
        return Response(out_body, media_type="application/octet-stream", headers={HEADER_LENGTH: str(out_hlen)})


def _timings(t_start: float, t_recv: float, t_parsed: float, t_done: float, answer: Answer) -> dict[str, float]:
    """The server's timing parameters of one answer (ms; ``docs/runtime.md``)."""
    return {
        "janus_receive_ms": round((t_recv - t_start) * 1e3, 3),
        "janus_parse_ms": round((t_parsed - t_recv) * 1e3, 3),
        "janus_queue_ms": round(max((t_done - t_parsed) * 1e3 - answer.decode_ms - answer.compute_ms, 0.0), 3),
        "janus_decode_ms": round(answer.decode_ms, 3),
        "janus_compute_ms": round(answer.compute_ms, 3),
        "janus_server_ms": round((t_done - t_recv) * 1e3, 3),
    }


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
    max_json_mb: float = DEFAULT_MAX_JSON_MB,
    limits: ServerLimits | None = None,
) -> FastAPI:
    """The FastAPI app serving every tail model of a plan (see module docstring).

    ``max_loaded``: most (level, segment) sessions kept resident (LRU). ``token``: require
    ``Authorization: Bearer <token>`` on every endpoint except the health checks.
    ``max_body_mb``: larger request bodies (before or after decompression) get 413.
    ``concurrency``: inferences running at once (default: CPU count). ``threads``: intra-op
    threads per session (0 = the runtime's default). ``body_timeout_s``: a request body not
    complete this long after its headers gets 408 (stalled or vanished clients do not hold a
    handler forever). ``runner``: an already loaded runner. ``preload``: check every file
    against its sha256 and load engines (up to ``max_loaded``) before serving instead of on first
    use. ``max_json_mb``: most JSON per request (a JSON-only body, or the JSON header of a binary
    one; larger gets 413). ``limits``: connections, header deadline, keep-alive and the in-flight
    body budget (:class:`~janus_deploy.runtime.limits.ServerLimits`).
    """
    limits = limits or ServerLimits()
    manifest = Manifest.load(plan_dir)
    conc = int(concurrency or os.cpu_count() or 1)
    if conc < 1:
        raise ServerError(f"concurrency must be >= 1, got {concurrency}")
    if runner is None:  # TensorRT: one execution context per concurrent inference
        runner = load_runner(manifest, engine_dir, threads=threads, concurrency=conc)
    if max_body_mb <= 0:
        raise ServerError(f"--max-body-mb must be > 0, got {max_body_mb}")
    if token is not None and not token:
        raise ServerError("--token must not be empty")
    if not max_json_mb > 0:
        raise ServerError(f"--max-json-mb must be > 0, got {max_json_mb}")
    plane = DataPlane(manifest, runner, max_loaded=max_loaded, max_body=int(max_body_mb * 1024 * 1024),
                      max_batch=int(max_batch), max_json=int(max_json_mb * 1024 * 1024))
    if preload:
        plane.preload()
    endpoints = V2Endpoints(plane, token=token, concurrency=conc, limits=limits, body_timeout_s=body_timeout_s)
    return build_app(endpoints, limits)


def build_app(endpoints: V2Endpoints, limits: ServerLimits) -> FastAPI:
    """The FastAPI app with ``endpoints``' methods on the V2 paths."""
    app = FastAPI(title="janus-deploy V2 inference server", version=__version__, lifespan=endpoints.lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.janus = endpoints.plane  # the data plane (models, runner, LRU)
    app.state.janus_limits = limits
    app.state.janus_guard = endpoints.guard  # the connection cap and header deadline (uvicorn_config uses it)
    app.state.janus_routes = endpoints
    app.add_exception_handler(StarletteHTTPException, endpoints.http_exception)
    app.add_exception_handler(RequestValidationError, endpoints.validation_exception)
    app.middleware("http")(endpoints.middleware)
    e = endpoints
    for path, method, route in (
        ("/v2/health/live", "GET", e.live),
        ("/v2/health/ready", "GET", e.ready),
        ("/v2", "GET", e.server_metadata),
        ("/v2/models/{name}", "GET", e.model_metadata),
        ("/v2/models/{name}/versions/{version}", "GET", e.model_metadata),
        ("/v2/models/{name}/ready", "GET", e.model_ready),
        ("/v2/models/{name}/versions/{version}/ready", "GET", e.model_ready),
        ("/janus/probe", "POST", e.probe),
        ("/v2/models/{name}/infer", "POST", e.infer),
        ("/v2/models/{name}/versions/{version}/infer", "POST", e.infer),
    ):
        app.add_api_route(path, route, methods=[method])
    return app


def _parse(plane: DataPlane, model: TailSpec, box: list, encoding: str | None, hlen: str | None):
    """``plane.parse`` of the body in ``box`` (taken out, so that the body is freed as soon as this
    returns, not when the worker thread drops its arguments), returning ``(request, None)`` or
    ``(None, (status, message))``: a WireError raised across the thread boundary would keep the
    body alive until the garbage collector runs (its traceback holds the parse frames, and
    asyncio's future and the awaiting frame hold it in a cycle): 60 MB per refused 60 MB body,
    measured."""
    raw = box.pop()
    try:
        return plane.parse(model, raw, encoding, hlen), None
    except WireError as exc:
        return None, (exc.status, str(exc))


def _run(plane: DataPlane, req: Any):
    """``plane.run`` returning ``(answer, None)`` or ``(None, (status, message))`` (see _parse)."""
    try:
        return plane.run(req), None
    except WireError as exc:
        return None, (exc.status, str(exc))
    except JanusError as exc:  # ModelFailure, EngineError, IntegrityError: the server's side
        return None, (500, str(exc))


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
    max_json_mb: float = DEFAULT_MAX_JSON_MB,
    limits: ServerLimits | None = None,
) -> None:
    """Run the V2 server with uvicorn until interrupted. ``on_ready(app)`` runs once the app is
    built (the CLI prints its banner there). A busy port is a :class:`PortError` before anything loads."""
    import uvicorn

    from janus_deploy.net.ports import check_port_free

    check_port_free(host, port)
    app = create_app(plan_dir, engine_dir, max_loaded=max_loaded, token=token, max_body_mb=max_body_mb,
                     concurrency=concurrency, threads=threads, body_timeout_s=body_timeout_s, preload=preload,
                     max_json_mb=max_json_mb, limits=limits)
    # what start-up made (modules, the app, preloaded sessions) lives as long as the server: frozen,
    # the cycle collector's full passes do not walk it (on the demo plan a pass over those 66 000
    # objects stalls every request for ~10 ms; frozen, 0.0 ms)
    gc.freeze()
    if on_ready is not None:
        on_ready(app)
    uvicorn.Server(server_config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                                 timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)).run()


def server_config(app: Any, **kwargs: Any):
    """The uvicorn ``Config`` of an app from :func:`create_app`, with its limits applied."""
    import uvicorn

    limits = getattr(app.state, "janus_limits", None) if hasattr(app, "state") else None
    if limits is None:
        return uvicorn.Config(app, **kwargs)
    return uvicorn_config(app, limits, app.state.janus_guard, **kwargs)


class BackgroundServer:
    """Run an app with uvicorn in a daemon thread (tests, benchmarks, embedding in a process).

    ``port=0`` picks a free port; :attr:`url` is the base URL once started.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        import uvicorn

        self.host = host
        self.server = uvicorn.Server(server_config(app, host=host, port=port, log_level=log_level,
                                                   access_log=False, timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="janus-v2-server", daemon=True)
        self.port = port

    def start(self, timeout: float = 30.0) -> BackgroundServer:
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

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["BackgroundServer", "BodyReceiver", "DataPlane", "ServerBusy", "ServerError", "ServerLimits", "SessionLRU",
           "TailModel", "V2Endpoints", "bearer_refusal", "build_app", "create_app", "model_name", "serve", "server_config",
           "tail_models"]
