"""A refusing front between clients and the bundled tritonserver (issue 21 items 1 and 4).

The bundled tritonserver has no option that bounds a request's size or its decompressed size
(``tritonserver --help``: none of its 90 options does; gzip and deflate bodies are inflated
whole), and its only access check, ``--http-restricted-api``, takes the key on the command line,
where ``ps`` and ``/proc/PID/cmdline`` show it to every local user. So janus-deploy does not put
tritonserver on the network: it runs it in a network namespace of its own
(:mod:`janus_deploy.triton.isolate`; the fallback: loopback ports with a per-launch key), and
serves clients from this front, in the launching process, with the built-in server's rules:

* the bearer token (``--token`` / ``--token-file``) is checked here (:func:`bearer_refusal`);
  tritonserver never sees it (isolated, it needs no key; in the fallback its restricted API takes
  a random per-launch key only this front sends);
* bodies are read within the built-in server's limits (:class:`BodyReceiver`: ``--max-body-mb``,
  ``--max-json-mb`` from the headers, the in-flight budget ``--max-inflight-mb``, ``--body-timeout``);
* a compressed body (gzip, deflate, zstd) is inflated here, bounded (:func:`decompress` stops
  at the limit: a gzip bomb is 413 after inflating at most ``--max-body-mb``, or
  ``--max-json-mb`` for a JSON body), and forwarded uncompressed, so tritonserver never inflates;
* the connection cap and header deadline of :mod:`janus_deploy.runtime.limits` hold here too.

Everything else (paths, query, status, the V2 headers and bodies) passes through unchanged. The
front's client to tritonserver is aiohttp (the ``[triton]`` extra): per request it adds a third
of what httpx's async client adds (``tools/bench_triton_front.py``, ``docs/benchmarks.md``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from janus_deploy import JanusError
from janus_deploy.runtime.dataplane import DEFAULT_MAX_BODY_MB
from janus_deploy.runtime.limits import DEFAULT_MAX_JSON_MB, BodyBudget, BodyLimits, ConnectionGuard, ServerLimits
from janus_deploy.runtime.server import (
    DEFAULT_BODY_TIMEOUT_S,
    JSON_CONCURRENCY,
    MAX_ERROR_CHARS,
    PARSE_CONCURRENCY,
    BodyReceiver,
    ServerBusy,
    bearer_refusal,
)
from janus_deploy.wire.codecs import BodyTooLargeError, CodecError, UnsupportedEncodingError, decompress
from janus_deploy.wire.v2 import HEADER_LENGTH, WireError

log = logging.getLogger("janus_deploy.triton.front")

MiB = 1024 * 1024
UPSTREAM_KEY_HEADER = "janus-front-key"  # tritonserver's restricted-API header, sent only by the front
UPSTREAM_TIMEOUT_S = 300.0  # an inference on tritonserver (cold model loads included)
# request headers forwarded to tritonserver; everything else (Authorization, Content-Encoding,
# Content-Length, hop-by-hop headers) is the front's
FORWARD_REQUEST = ("content-type", "accept", HEADER_LENGTH.lower(), "triton-request-id")
FORWARD_RESPONSE = ("content-type", HEADER_LENGTH.lower())  # answers come back uncompressed (small: logits)


class FrontError(JanusError):
    """The front's options cannot work."""


@dataclass(frozen=True)
class FrontOptions:
    """The front's limits (the built-in server's flags of the same names, ``docs/runtime.md``)."""

    token: str | None = None
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    max_json_mb: float = DEFAULT_MAX_JSON_MB
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    limits: ServerLimits = field(default_factory=ServerLimits)

    def __post_init__(self) -> None:
        if not self.max_body_mb > 0:
            raise FrontError(f"--max-body-mb must be > 0, got {self.max_body_mb}")
        if not self.max_json_mb > 0:
            raise FrontError(f"--max-json-mb must be > 0, got {self.max_json_mb}")
        if not self.body_timeout_s > 0:
            raise FrontError(f"--body-timeout must be > 0 s, got {self.body_timeout_s}")
        if self.token is not None and not self.token:
            raise FrontError("--token must not be empty")

    @property
    def body_limits(self) -> BodyLimits:
        return BodyLimits(int(self.max_body_mb * MiB), int(self.max_json_mb * MiB))


class TritonFront:
    """The front's routes over one upstream tritonserver (``upstream``: its loopback URL;
    ``upstream_key``: the value of its restricted-API header, None for none; ``connect``: the
    factory of the sockets the client connects, aiohttp's ``socket_factory`` — for a tritonserver
    in a network namespace of its own, sockets made in that namespace; None: ordinary sockets)."""

    def __init__(self, upstream: str, upstream_key: str | None, options: FrontOptions,
                 connect: Callable[[Any], socket.socket] | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.upstream_key = upstream_key
        self.connect = connect
        self.options = options
        self.body_limits = options.body_limits
        self.budget = BodyBudget(options.limits.max_inflight)
        self.receiver = BodyReceiver(self.body_limits, self.budget, options.body_timeout_s)
        self.guard = ConnectionGuard(options.limits)
        self.client: Any = None
        self.inflate_limiter: Any = None
        self.json_limiter: Any = None
        self.stats = {"requests": 0, "refused": 0, "inflated": 0, "upstream_errors": 0}

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        import aiohttp

        self.inflate_limiter = anyio.CapacityLimiter(PARSE_CONCURRENCY)
        self.json_limiter = anyio.CapacityLimiter(JSON_CONCURRENCY)
        connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=30, socket_factory=self.connect)
        async with aiohttp.ClientSession(self.upstream, connector=connector, auto_decompress=False,
                                         timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S)) as client:
            self.client = client
            yield

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        if len(message) > MAX_ERROR_CHARS:
            message = message[: MAX_ERROR_CHARS - 1] + "…"
        if status < 500:
            self.stats["refused"] += 1
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def handle(self, request: Request) -> Response:
        """Every path: the token, the bounded body, then tritonserver's answer."""
        self.stats["requests"] += 1
        why = bearer_refusal(self.options.token, request.url.path, request.headers.get("authorization"))
        if why is not None:
            return self.error(401, why, {"WWW-Authenticate": 'Bearer realm="janus-deploy"'})
        ticket = self.budget.ticket()
        try:
            body = await self.body(request, ticket) if request.method in ("POST", "PUT") else b""
            return await self.forward(request, body)
        except ServerBusy as exc:
            return self.error(503, str(exc), {"Retry-After": "1"})
        except WireError as exc:
            return self.error(exc.status, str(exc))
        except ClientDisconnect:
            return self.error(400, "the client disconnected before the request body was complete")
        finally:
            ticket.release()

    async def body(self, request: Request, ticket: Any) -> bytes | bytearray:
        """The body received within the limits and inflated (bounded) in a worker thread."""
        json_only = HEADER_LENGTH.lower() not in request.headers
        raw = await self.receiver.receive(request, json_only, ticket)
        encoding = request.headers.get("content-encoding")
        limit = self.body_limits.json_limit if json_only else self.body_limits.max_body
        if (encoding or "identity").strip().lower() in ("", "identity"):
            if len(raw) > limit:  # a chunked body: its length was not in the headers
                raise self.body_limits.json_too_large(len(raw)) if json_only else self.body_limits.body_too_large(len(raw))
            return raw
        box = [raw]
        del raw
        limiter = self.json_limiter if json_only else self.inflate_limiter
        body, refused = await anyio.to_thread.run_sync(_inflate, box, encoding, limit, json_only, self.body_limits,
                                                        limiter=limiter)
        if body is None:
            raise WireError(*refused) if refused else WireError("the body did not inflate", 400)
        self.stats["inflated"] += 1
        ticket.resize(len(body))
        return body

    async def forward(self, request: Request, body: bytes | bytearray) -> Response:
        import aiohttp

        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARD_REQUEST}
        headers["accept-encoding"] = "identity"  # no compression on the loopback hop
        if self.upstream_key is not None:
            headers[UPSTREAM_KEY_HEADER] = self.upstream_key
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            async with self.client.request(request.method, path, data=bytes(body) if body else None,
                                           headers=headers) as r:
                content = await r.read()
                out = {k: v for k, v in r.headers.items() if k.lower() in FORWARD_RESPONSE}
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats["upstream_errors"] += 1
            log.warning("tritonserver did not answer %s: %s", request.url.path, exc)
            return self.error(502, f"Triton did not answer ({type(exc).__name__}); retry later")
        return Response(content, status_code=status, headers=out)


def _inflate(box: list, encoding: str | None, limit: int, json_only: bool, body_limits: BodyLimits
             ) -> tuple[bytes | bytearray | None, tuple[str, int] | None]:
    """Bounded inflate in a worker thread; errors returned, not raised (see server._parse: a
    raised error would keep the body alive across the thread boundary)."""
    raw = box.pop()
    try:
        return decompress(raw, encoding, limit), None
    except BodyTooLargeError as exc:
        if json_only:
            err = body_limits.json_too_large(f"more than {limit}")
            return None, (str(err), err.status)
        return None, (f"{exc} (the server's --max-body-mb limit)", 413)
    except UnsupportedEncodingError as exc:
        return None, (str(exc), 415)
    except CodecError as exc:
        return None, (str(exc), 400)


def create_front(upstream: str, upstream_key: str | None, options: FrontOptions,
                 connect: Callable[[Any], socket.socket] | None = None) -> FastAPI:
    """The front's app (see the module docstring; the arguments: :class:`TritonFront`); run it with
    :func:`janus_deploy.runtime.server.server_config` (which applies its connection limits)."""
    front = TritonFront(upstream, upstream_key, options, connect)
    app = FastAPI(title="janus-deploy Triton front", lifespan=front.lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.janus_limits = options.limits
    app.state.janus_guard = front.guard
    app.state.janus_front = front
    app.add_api_route("/{path:path}", front.handle, methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
    return app


__all__ = ["UPSTREAM_KEY_HEADER", "FrontError", "FrontOptions", "TritonFront", "create_front"]
