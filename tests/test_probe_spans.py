"""Each probe is an OpenTelemetry span: unit-level with the SDK, and exported over OTLP by the agent."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from agent.probe_spans import emit_probe_span
from tests.procs import AgentProcess, free_port, loopback_http_server, wait_until


def test_span_has_phases_as_events_and_error_status() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    target = ProbeTarget("api", "http", "http://127.0.0.1:1/", None, 15, 5, 0, {}, None)
    result = ProbeResult(False, 0.25, Reason.STATUS, "status 503", phases={"resolve": 0.01, "connect": 0.04},
                         status_code=503)
    emit_probe_span(provider.get_tracer("t"), target, result, 1_700_000_000.0, attempts=2)
    (span,) = exporter.get_finished_spans()
    assert span.name == "probe http"
    assert span.end_time - span.start_time == 250_000_000
    assert [e.name for e in span.events] == ["phase.resolve", "phase.connect"]
    assert span.events[1].timestamp - span.start_time == 50_000_000
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "status"
    assert span.attributes["http.response.status_code"] == 503
    assert span.attributes["loom.probe.attempts"] == 2


class OtlpSink:
    """An OTLP/HTTP trace receiver on 127.0.0.1 (port 0), decoding with opentelemetry-proto."""

    def __init__(self) -> None:
        self.spans: list = []
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    async def _traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_agent_exports_probe_spans_over_otlp_http(tmp_path: Path) -> None:
    sink = OtlpSink()
    try:
        with loopback_http_server() as url:
            agent = AgentProcess(tmp_path, {
                "telemetry": {"otlp": {"endpoint": f"http://127.0.0.1:{sink.port}"}},
                "targets": [{"name": "web", "kind": "http", "url": url + "/", "interval": "1s", "timeout": "500ms"},
                            {"name": "dead", "kind": "tcp", "address": f"127.0.0.1:{free_port()}",
                             "interval": "1s", "timeout": "500ms"}]})
            try:
                # BatchSpanProcessor flushes every 5 s, and at shutdown
                wait_until(lambda: len({s.name for s in sink.spans}) == 2, 15, what="spans of both targets")
            finally:
                assert agent.stop() == 0
        by_target = {}
        for span in sink.spans:
            attrs = {a.key: a.value for a in span.attributes}
            by_target[attrs["loom.probe.target"].string_value] = (span, attrs)
        web_span, web_attrs = by_target["web"]
        assert web_span.name == "probe http" and web_attrs["loom.probe.success"].bool_value
        assert {e.name for e in web_span.events} >= {"phase.connect", "phase.processing"}
        dead_span, dead_attrs = by_target["dead"]
        assert dead_attrs["error.type"].string_value == "connect"
        assert dead_span.status.code == 2        # STATUS_CODE_ERROR
    finally:
        sink.stop()
