"""An OTLP receiver for tests: HTTP/protobuf or gRPC on 127.0.0.1 (port 0), recording every request.

It can misbehave on demand: answer "unavailable" (HTTP 503 / gRPC UNAVAILABLE) for the next N
requests or until told otherwise, hang (hold each request until released), or go down (close its
listening socket) and come back up on the same port. Both servers run in their own threads, so a
test's event loop only ever talks to it over the network, like to a real collector.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as lpb
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as lgrpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

REQUEST_TYPES = {"traces": tpb.ExportTraceServiceRequest, "metrics": mpb.ExportMetricsServiceRequest,
                 "logs": lpb.ExportLogsServiceRequest}
RESPONSE_TYPES = {"traces": tpb.ExportTraceServiceResponse, "metrics": mpb.ExportMetricsServiceResponse,
                  "logs": lpb.ExportLogsServiceResponse}
HANG_LIMIT = 60.0          # a hung request is released after this long at the latest


@dataclass
class Received:
    signal: str                 # "traces" | "metrics" | "logs"
    message: Any                # the decoded Export*ServiceRequest
    accepted: bool              # False: answered unavailable, or hung
    headers: dict[str, str] = field(default_factory=dict)
    path: str = ""


class OtlpReceiver:
    def __init__(self, protocol: str = "http/protobuf"):
        if protocol not in ("http/protobuf", "grpc"):
            raise ValueError(protocol)
        self.protocol = protocol
        self.port = 0
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._mode = "ok"
        self._unavailable_left: int | None = None
        self._release = threading.Event()
        self._server: Any = None
        self.up()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- behaviour -------------------------------------------------------------------------------
    def answer_ok(self) -> None:
        self._set_mode("ok")

    def answer_unavailable(self, times: int | None = None) -> None:
        """503 / UNAVAILABLE for the next `times` requests (None: until told otherwise)."""
        self._set_mode("unavailable", times)

    def hang(self) -> None:
        """Hold every request without answering until the mode changes or the receiver stops."""
        self._set_mode("hang")

    def _set_mode(self, mode: str, times: int | None = None) -> None:
        with self._lock:
            self._mode, self._unavailable_left = mode, times
            self._release.set()
            self._release = threading.Event()

    def _decide(self) -> tuple[str, threading.Event]:
        with self._lock:
            mode = self._mode
            if mode == "unavailable" and self._unavailable_left is not None:
                self._unavailable_left -= 1
                if self._unavailable_left <= 0:
                    self._mode, self._unavailable_left = "ok", None
            return mode, self._release

    def handle(self, signal: str, body: bytes, headers: dict[str, str], path: str = "") -> str:
        """Record one request; return what to answer: "ok", "unavailable" or "hung"."""
        message = REQUEST_TYPES[signal].FromString(body)
        mode, release = self._decide()
        with self._lock:
            self.received.append(Received(signal, message, mode == "ok", headers, path))
        if mode == "hang":
            release.wait(HANG_LIMIT)
            return "hung"
        return mode

    # -- reading what arrived --------------------------------------------------------------------
    def accepted(self, signal: str) -> list[Any]:
        with self._lock:
            return [r.message for r in self.received if r.signal == signal and r.accepted]

    def attempts(self, signal: str) -> int:
        with self._lock:
            return sum(1 for r in self.received if r.signal == signal)

    def spans(self) -> list[Any]:
        return [span for request in self.accepted("traces") for rs in request.resource_spans
                for ss in rs.scope_spans for span in ss.spans]

    def log_records(self) -> list[Any]:
        return [record for request in self.accepted("logs") for rl in request.resource_logs
                for sl in rl.scope_logs for record in sl.log_records]

    def latest_metrics(self) -> dict[str, Any]:
        """Metric name -> the pb2 Metric of the last accepted metrics request."""
        requests = self.accepted("metrics")
        if not requests:
            return {}
        return {m.name: m for rm in requests[-1].resource_metrics for sm in rm.scope_metrics for m in sm.metrics}

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: timed out after {timeout}s waiting for {what}")
            time.sleep(0.02)

    # -- lifecycle -------------------------------------------------------------------------------
    def up(self) -> None:
        """Listen (again, on the same port after down())."""
        if self._server is None:
            self._server = (_GrpcServer if self.protocol == "grpc" else _HttpServer)(self, self.port)

    def down(self) -> None:
        """Close the listening socket: connections are refused until up()."""
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def stop(self) -> None:
        self._set_mode("ok")          # releases hung requests
        self.down()

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _HttpServer:
    def __init__(self, receiver: OtlpReceiver, port: int):
        handler = type("Handler", (_HttpHandler,), {"receiver": receiver})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        receiver.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    receiver: OtlpReceiver
    signals = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        signal = self.signals.get(self.path)
        if signal is None:
            self._answer(404, b"")
            return
        outcome = self.receiver.handle(signal, body, dict(self.headers), self.path)
        if outcome == "ok":
            self._answer(200, RESPONSE_TYPES[signal]().SerializeToString())
        elif outcome == "unavailable":
            self._answer(503, b"")
        # hung: the client gave up long ago; close without an answer

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _GrpcServer:
    def __init__(self, receiver: OtlpReceiver, port: int):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        tgrpc.add_TraceServiceServicer_to_server(_GrpcService(receiver, "traces"), self.server)
        mgrpc.add_MetricsServiceServicer_to_server(_GrpcService(receiver, "metrics"), self.server)
        lgrpc.add_LogsServiceServicer_to_server(_GrpcService(receiver, "logs"), self.server)
        bound = self.server.add_insecure_port(f"127.0.0.1:{port}")
        if not bound:
            raise OSError(f"gRPC receiver cannot bind 127.0.0.1:{port}")
        receiver.port = bound
        self.server.start()

    def close(self) -> None:
        self.server.stop(grace=None).wait(5)


class _GrpcService(tgrpc.TraceServiceServicer, mgrpc.MetricsServiceServicer, lgrpc.LogsServiceServicer):
    def __init__(self, receiver: OtlpReceiver, signal: str):
        self.receiver, self.signal = receiver, signal

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - gRPC's naming
        headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        outcome = self.receiver.handle(self.signal, request.SerializeToString(), headers)
        if outcome == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "receiver told to be unavailable")
        return RESPONSE_TYPES[self.signal]()
