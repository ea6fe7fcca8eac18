"""OTLP/gRPC: the TraceService, MetricsService and LogsService of opentelemetry-proto on a grpc.aio server.

The services are registered as generic handlers taking the request's bytes (not the generated
`*_pb2_grpc` servicers, which would decode before the receiver sees the call): a request that does not
decode is answered INVALID_ARGUMENT and counted (grpc's own decoding answers INTERNAL), and spans or log
records of which nothing was refused are forwarded as the bytes that came.

The same semantics as OTLP/HTTP (agent/receiver/ingest.py), in gRPC's codes:

- OK with the Export*ServiceResponse, `partial_success` when items were refused;
- UNAUTHENTICATED (ingest key, from the `authorization: Bearer <key>` or `x-loom-api-key` metadata),
  INVALID_ARGUMENT (a request that does not decode),
  RESOURCE_EXHAUSTED for a message above `max_body_bytes` (grpc's own max receive message size, counted
  by the library, not by the receiver's counters);
- UNAVAILABLE with RetryInfo (1 s) when the export queue cannot take the request: retryable by the
  spec, and the SDKs honour the delay (`google.rpc.retryinfo-bin`, and in `grpc-status-details-bin`).

The server runs on the agent's event loop; `grpc_ctx` starts it after the export and stops it first,
giving in-flight calls `STOP_GRACE_SECONDS`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from agent.receiver.config import ListenerConfig, ListenError
from agent.receiver.decode import PROTOBUF, DecodeError, parse
from agent.receiver.http import SIGNALS, response
from agent.receiver.ingest import RETRY_AFTER_SECONDS, Answer, OtlpIngest, Refused, presented_key

log = logging.getLogger("agent.receiver")

STOP_GRACE_SECONDS = 0.5           # in-flight calls get this long at shutdown (SIGTERM budget: agent/__main__.py)
CODES = {"unauthorized": grpc.StatusCode.UNAUTHENTICATED, "malformed": grpc.StatusCode.INVALID_ARGUMENT,
         "too_large": grpc.StatusCode.RESOURCE_EXHAUSTED, "queue_full": grpc.StatusCode.UNAVAILABLE,
         "unavailable": grpc.StatusCode.UNAVAILABLE}
# Calls in progress at once (each holds a message); more: RESOURCE_EXHAUSTED. Also each connection's HTTP/2
# SETTINGS_MAX_CONCURRENT_STREAMS: grpc's core reads a call's message before maximum_concurrent_rpcs refuses
# the call, so 150 concurrent 3.3 MB calls on one connection raised the agent's RSS by 490 MB; with the
# stream limit by 150 MB, the streams past it refused (UNAVAILABLE, which the SDKs retry). Each connection
# gets as many streams: under many connections at once the memory still grows with their number.
CALLS_AT_ONCE = 32
SERVICES = {"traces": trace_service_pb2, "metrics": metrics_service_pb2, "logs": logs_service_pb2}


def _retry_metadata(code: grpc.StatusCode, message: str) -> tuple[tuple[str, bytes], ...]:
    retry = RetryInfo(retry_delay=Duration(seconds=RETRY_AFTER_SECONDS))
    detail = AnyMessage()
    detail.Pack(retry)
    status = Status(code=code.value[0], message=message, details=[detail])
    return (("google.rpc.retryinfo-bin", retry.SerializeToString()),
            ("grpc-status-details-bin", status.SerializeToString()))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _export(ingest: OtlpIngest, signal: str) -> Callable[[bytes, grpc.aio.ServicerContext], Any]:
    """The Export method of `signal`'s service, given the request's bytes (decoded here: a request that
    does not decode is INVALID_ARGUMENT, and an untouched protobuf body is forwarded as it came)."""
    request_type = SIGNALS[signal][0]

    async def export(body: bytes, context: grpc.aio.ServicerContext) -> Any:
        metadata = dict(context.invocation_metadata() or ())
        try:
            ingest.authorize(signal, presented_key(_text(metadata.get("authorization")),
                                                   _text(metadata.get("x-loom-api-key"))))
            try:
                request = parse(body, PROTOBUF, request_type)
            except DecodeError as exc:
                raise ingest.refuse(signal, "malformed", exc.message) from None
            answer: Answer
            if signal == "traces":
                answer = ingest.traces(request, body, "grpc")
            elif signal == "logs":
                answer = ingest.logs(request, body, "grpc")
            else:
                answer = ingest.metrics(request, "grpc")
        except Refused as refused:
            code = CODES.get(refused.reason, grpc.StatusCode.INVALID_ARGUMENT)
            trailing = _retry_metadata(code, refused.message) if refused.retryable else ()
            await context.abort(code, refused.message, trailing_metadata=trailing)
        return response(signal, answer)
    return export


def build_grpc_server(ingest: OtlpIngest, max_message_bytes: int) -> grpc.aio.Server:
    """The three OTLP services (their names from opentelemetry-proto's descriptors), requests as bytes."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", 1024 * 1024),
                                      ("grpc.max_concurrent_streams", CALLS_AT_ONCE)],
                             maximum_concurrent_rpcs=CALLS_AT_ONCE)
    for signal, module in SERVICES.items():
        service = next(iter(module.DESCRIPTOR.services_by_name.values()))
        handler = grpc.unary_unary_rpc_method_handler(
            _export(ingest, signal), request_deserializer=None,
            response_serializer=SIGNALS[signal][1].SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name,
                                                                              {"Export": handler}),))
    return server


def grpc_ctx(ingest: OtlpIngest, config: ListenerConfig,
             max_message_bytes: int) -> Callable[[Any], AsyncIterator[None]]:
    """A cleanup_ctx running the OTLP/gRPC listener when enabled; a port that cannot be bound stops the agent
    at start with the reason."""
    async def otlp_grpc(_app: Any) -> AsyncIterator[None]:
        if not config.enabled:
            yield
            return
        server = build_grpc_server(ingest, max_message_bytes)
        host, port = config.listen
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            bound, error = 0, str(exc)
        else:
            error = "address in use or not available"
        if not bound:
            log.error("otlp_receiver: cannot listen on %s (otlp_receiver.grpc.listen): %s", address, error)
            raise ListenError(f"otlp_receiver.grpc.listen: cannot listen on {address}: {error}")
        await server.start()
        log.info("OTLP/gRPC receiver listening", extra={"address": f"{host}:{bound}"})
        ingest.ports["grpc"] = bound
        try:
            yield
        finally:
            await server.stop(STOP_GRACE_SECONDS)
    return otlp_grpc
