"""OTLP export of log records: the record model, a bounded queue, the flusher and the exporters.

The agent's own logging is not exported (it goes to stderr, agent/logs.py); what is exported are
the application's log records it relays (Sentry `log` / `otel_log` items, agent/sentry/logs.py).
They follow the span path: `LogQueue.put` on the event loop appends to a bounded deque or counts
the record dropped (never blocks); agent/otlp/export.py `LogsExport` (the traces' flusher) sends
batches of up to `batch_size` every `flush_interval` (sooner when a batch is full) through one
`Sender` (one export in flight, retries with backoff, counted as loom_agent_export*{signal="logs"}).

The body is written by agent/otlp/log_encoding.py; over HTTP the SDK's OTLPLogExporter sends it
(its session, headers, compression, size limit), over gRPC the SDK's gRPC log exporter sends the
same bytes parsed back into its request message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from agent.otlp.forward import Encoded
from agent.otlp.log_encoding import encode_logs

log = logging.getLogger("agent.otlp")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One OTLP log record, as exported (attributes already scrubbed by the producer)."""

    resource: Resource
    scope: InstrumentationScope | None
    time_ns: int
    severity_number: int           # OTel's 1-24 (0: unspecified)
    severity_text: str
    body: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    trace_id: int = 0
    span_id: int = 0
    observed_ns: int = 0


class DirectLogExporter(HttpLogExporter):
    """The SDK's OTLP/HTTP log exporter, posting the bytes of agent/otlp/log_encoding.py."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not all(hasattr(self, part) for part in ("_client", "_max_request_size", "_shutdown")):
            raise ImportError("this opentelemetry-exporter-otlp-proto-http differs from 1.45: "
                              "agent/otlp/logs.py must follow it")

    def export(self, batch: Sequence[Any]) -> bool:  # type: ignore[override]
        """True when the collector accepted the batch."""
        if self._shutdown:
            return False
        try:
            body = encode_logs(batch)
        except Exception as error:  # a batch that cannot be encoded is a failed export
            log.error("Failed to encode log batch: %s", error)
            return False
        if 0 < self._max_request_size < len(body):
            log.warning("Dropping log batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                        len(body), self._max_request_size)
            return False
        return bool(self._client.export(body).success)

    def export_encoded(self, batch: Encoded) -> bool:
        """Post an already serialized request (records the OTLP receiver forwards, agent/otlp/forward.py)."""
        if self._shutdown:
            return False
        if 0 < self._max_request_size < len(batch.body):
            log.warning("Dropping forwarded log batch: %d bytes exceed max_request_size %d bytes.",
                        len(batch.body), self._max_request_size)
            return False
        return bool(self._client.export(batch.body).success)


def grpc_log_exporter(**kwargs: Any) -> Any:
    """The SDK's gRPC log exporter, sending the direct encoder's bytes (parsed into its request)."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

    class DirectGrpcLogExporter(GrpcExporter):
        def _translate_data(self, data: Sequence[Any]) -> ExportLogsServiceRequest:
            if isinstance(data, Encoded):
                return ExportLogsServiceRequest.FromString(data.body)
            return ExportLogsServiceRequest.FromString(encode_logs(data))

        def export(self, batch: Sequence[Any]) -> bool:  # type: ignore[override]
            return super().export(batch).name == "SUCCESS"

        def export_encoded(self, batch: Encoded) -> bool:
            return self.export(batch)  # type: ignore[arg-type]

    return DirectGrpcLogExporter(**kwargs)


class LogQueue:
    """Records waiting for export: bounded, never blocking, each refused one counted in `dropped`."""

    def __init__(self, max_size: int, batch_size: int):
        if max_size < 1 or batch_size < 1:
            raise ValueError("max_size and batch_size must be at least 1")
        self.max_size, self.batch_size = max_size, batch_size
        self.dropped = 0
        self._limit = max_size
        self._records: deque[LogRecord] = deque()
        self._wake: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self._records)

    def put(self, records: Sequence[LogRecord]) -> int:
        """Queue what fits (on the event loop); returns how many were refused (counted in `dropped`)."""
        room = max(0, self._limit - len(self._records))
        taken = records[:room]
        self._records.extend(taken)
        refused = len(records) - len(taken)
        self.dropped += refused
        if self._wake is not None and len(self._records) >= self.batch_size:
            self._wake.set()
        return refused

    def wake_with(self, loop: asyncio.AbstractEventLoop | None, event: asyncio.Event | None = None) -> None:
        """Set `event` when a full batch is waiting (records are put on the loop itself); None: stop."""
        self._wake = event if loop is not None else None

    def take(self, limit: int) -> list[LogRecord]:
        records = self._records
        return [records.popleft() for _ in range(min(limit, len(records)))]

    def close(self) -> int:
        """Refuse (and count) every record from now on; discard and return the number still queued."""
        self._limit = 0
        left = len(self._records)
        self._records.clear()
        return left
