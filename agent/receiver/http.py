"""OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` on the receiver's own listener.

Its own aiohttp application and site (not the agent's API: another port, another error model), built by
the composition root and run as a cleanup context like StatsD's listener. Answers as the OTLP/HTTP
spec says, in the request's encoding (protobuf or JSON):

- 200 with the Export*ServiceResponse; `partial_success` (rejected_spans / rejected_data_points /
  rejected_log_records and error_message) when items of the request were refused;
- 400 (malformed body), 401 (ingest key), 413 (larger than `max_body_bytes`, compressed or not),
  415 (another Content-Type or Content-Encoding), each with a google.rpc.Status body, never a 500;
- 503 with Retry-After when the export queue cannot take the request (the SDKs retry 429/502/503/504).

aiohttp's automatic decompression is off for this listener: the body is read raw within the bound and
inflated with a bound on the output (agent/receiver/decode.py), so a gzip bomb is a 413. At most
BODIES_AT_ONCE requests hold a body at a time (the others wait with their bytes in the socket, aiohttp
pausing the reads), so the receiver's memory stays under about BODIES_AT_ONCE x 2 x max_body_bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from agent.receiver.config import ListenerConfig, ListenError
from agent.receiver.decode import JSON, PROTOBUF, DecodeError, inflate, media_type, parse, to_json
from agent.receiver.ingest import RETRY_AFTER_SECONDS, Answer, OtlpIngest, Refused, presented_key

log = logging.getLogger("agent.receiver")

SHUTDOWN_SECONDS = 0.5             # in-flight requests get this long at shutdown (SIGTERM budget: agent/__main__.py)
BODIES_AT_ONCE = 8                 # requests reading and decoding a body at once; the others wait (memory bound)
READ_SECONDS = 60.0                # the whole body must arrive within this (a stalled client gets 408)
STATUSES = {"unauthorized": 401, "malformed": 400, "too_large": 413, "unsupported_media_type": 415,
            "queue_full": 503, "unavailable": 503, "timeout": 408}
# gRPC's codes in google.rpc.Status.code
_RPC_CODES = {"unauthorized": 16, "malformed": 3, "too_large": 8, "unsupported_media_type": 3, "queue_full": 14,
              "unavailable": 14, "timeout": 4}
SIGNALS: dict[str, tuple[type[Message], type[Message], str]] = {
    "traces": (ExportTraceServiceRequest, ExportTraceServiceResponse, "rejected_spans"),
    "metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse, "rejected_data_points"),
    "logs": (ExportLogsServiceRequest, ExportLogsServiceResponse, "rejected_log_records"),
}


def response(signal: str, answer: Answer) -> Message:
    """The Export*ServiceResponse, with partial_success when items were refused."""
    message = SIGNALS[signal][1]()
    if answer.rejected or answer.message:
        partial = message.partial_success
        setattr(partial, SIGNALS[signal][2], answer.rejected)
        partial.error_message = answer.message
    return message


def answer_type(content_type: str) -> str:
    """The encoding of every answer to a request, refusals too (a 401 before the body is looked at): the
    spec's "the same Content-Type as the request", protobuf when the request's is neither of OTLP's."""
    return JSON if content_type.split(";", 1)[0].strip().lower() == JSON else PROTOBUF


def _encode(message: Message, kind: str) -> bytes:
    return message.SerializeToString() if kind == PROTOBUF else to_json(message)


def _refusal(refused: Refused, kind: str) -> web.Response:
    status = Status(code=_RPC_CODES.get(refused.reason, 2), message=refused.message)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if refused.retryable else None
    return web.Response(status=STATUSES.get(refused.reason, 400), body=_encode(status, kind),
                        content_type=kind, headers=headers)


async def _read(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise DecodeError(f"the request body is larger than {limit} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(READ_SECONDS):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise DecodeError(f"the request body is larger than {limit} bytes", 413)
                chunks.append(chunk)
    except TimeoutError:
        raise DecodeError(f"the request body did not arrive within {READ_SECONDS:g} s", 408) from None
    except (ValueError, OSError, HttpProcessingError, web.RequestPayloadError) as exc:
        raise DecodeError("cannot read the request body: " + " ".join(str(exc).split())) from None
    return b"".join(chunks)


def handler(ingest: OtlpIngest, signal: str, limit: int, bodies: asyncio.Semaphore) -> Callable[[web.Request], Any]:
    request_type = SIGNALS[signal][0]

    async def handle(request: web.Request) -> web.StreamResponse:
        kind = answer_type(request.headers.get("Content-Type", ""))
        try:
            ingest.authorize(signal, presented_key(request.headers.get("Authorization"),
                                                   request.headers.get("X-Loom-Api-Key")))
            media_type(request.headers.get("Content-Type", ""))
            async with bodies:
                raw = await _read(request, limit)
                body = inflate(raw, request.headers.get("Content-Encoding", ""), limit)
                del raw
                message = parse(body, kind, request_type)
                if signal == "traces":
                    answer = ingest.traces(message, body if kind == PROTOBUF else None, "http")
                elif signal == "logs":
                    answer = ingest.logs(message, body if kind == PROTOBUF else None, "http")
                else:
                    answer = ingest.metrics(message, "http")
        except DecodeError as exc:
            reason = "timeout" if exc.status == 408 else exc.reason
            refused = ingest.refuse(signal, reason, exc.message)
            return _refusal(refused, kind)
        except Refused as refused:
            return _refusal(refused, kind)
        return web.Response(body=_encode(response(signal, answer), kind), content_type=kind)
    return handle


def build_http_app(ingest: OtlpIngest, limit: int) -> web.Application:
    app = web.Application(client_max_size=limit)
    bodies = asyncio.Semaphore(BODIES_AT_ONCE)
    for signal in SIGNALS:
        app.router.add_post(f"/v1/{signal}", handler(ingest, signal, limit, bodies))
    return app


def http_ctx(ingest: OtlpIngest, config: ListenerConfig,
             limit: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx running the OTLP/HTTP listener when enabled; a port that cannot be bound stops the agent
    at start with the reason. The bound port is in `ingest.ports` (listen port 0 in tests)."""
    async def otlp_http(_app: web.Application) -> AsyncIterator[None]:
        if not config.enabled:
            yield
            return
        runner = web.AppRunner(build_http_app(ingest, limit), auto_decompress=False, access_log=None,
                               shutdown_timeout=SHUTDOWN_SECONDS)
        await runner.setup()
        site = web.TCPSite(runner, *config.listen)
        try:
            await site.start()
        except OSError as exc:
            log.error("otlp_receiver: cannot listen on %s:%d (otlp_receiver.http.listen): %s", *config.listen,
                      exc.strerror or exc)
            await runner.cleanup()
            raise ListenError(exc.errno, f"otlp_receiver.http.listen: {exc.strerror or exc}") from exc
        port = runner.addresses[0][1]
        log.info("OTLP/HTTP receiver listening", extra={"address": f"{config.listen[0]}:{port}"})
        ingest.ports["http"] = port
        try:
            yield
        finally:
            await runner.cleanup()
    return otlp_http
