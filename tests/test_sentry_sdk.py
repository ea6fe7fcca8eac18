"""The real sentry-sdk (PyPI) pointed at a capturing aiohttp server on 127.0.0.1: what it actually
sends must decode, split, authenticate and map with agent/sentry/. The SDK is the judge of the wire
format; this test fails the day it changes in a way the package does not follow.

The server records each request's path, headers, query and raw body and answers 200 {"id": ...}.
It runs on its own loop in a thread, because `sentry_sdk.flush()` blocks the calling thread.
Run twice: Brotli (what sentry-python sends whenever `brotli` is importable) and gzip (what it sends
without it, forced here with its `transport_compression_algo` option).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web

from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.model import ErrorEvent
from agent.error_tracking.sink import ErrorSink
from agent.events.limits import Limits
from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig
from agent.metrics.store import MetricStore
from agent.sentry.auth import authenticate
from agent.sentry.decode import decode_body
from agent.sentry.envelope import Envelope, parse_envelope, parse_item_json
from agent.sentry.events import MESSAGE_TYPE, parse_sentry_event
from agent.sentry.items import log_levels, trace_metrics

sentry_sdk = pytest.importorskip("sentry_sdk")
crons = pytest.importorskip("sentry_sdk.crons")

LIMIT = 20 * 1024 * 1024
RELEASE = "loom-web@2.3.1"
ENVIRONMENT = "staging"


@dataclass
class Captured:
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes


class CaptureServer:
    """aiohttp on 127.0.0.1:0 in a thread of its own, recording every request."""

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()              # raw: the handler sees Content-Encoding undone by no one
        self.requests.append(Captured(request.path, dict(request.headers), dict(request.query), body))
        return web.json_response({"id": "0" * 32})

    async def _start(self) -> None:
        app = web.Application(client_max_size=LIMIT)
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        assert self._ready.wait(10), "the capture server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def divide(a: int, b: int) -> float:
    return a / b                                                   # the cause is raised here


def charge(order: int) -> float:
    card_secret = f"card-{order * 1000}-secret"                # only in `vars`: not in the source lines
    assert card_secret
    try:
        return divide(order, 0)
    except ZeroDivisionError as exc:
        raise ValueError(f"charge failed for order {order}") from exc   # the raised exception


def send_everything(port: int, algo: str) -> dict[str, bool]:
    """Everything the SDK can send, through its default transport; returns what this version supports."""
    supports = {"logs": hasattr(sentry_sdk, "logger"),
                "metrics": hasattr(getattr(sentry_sdk, "metrics", None), "count")}
    options: dict[str, Any] = {
        "dsn": f"http://publickey@127.0.0.1:{port}/1", "traces_sample_rate": 1.0, "release": RELEASE,
        "environment": ENVIRONMENT, "auto_enabling_integrations": False,   # no aiohttp instrumentation
        "_experiments": {"transport_compression_algo": algo}, "enable_logs": True,
        "include_local_variables": True,
    }
    sentry_sdk.init(**options)
    try:
        _capture_all(supports)
        sentry_sdk.flush(timeout=10)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()                                        # back to the no-op client
    return supports


def _capture_all(supports: dict[str, bool]) -> None:
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("feature", "payment")
        scope.set_extra("amount", 49.0)
        scope.set_user({"id": "user-42"})
        try:
            charge(42)
        except ValueError:
            sentry_sdk.capture_exception()
        sentry_sdk.capture_message("nightly export finished", level="warning")
        with sentry_sdk.start_transaction(op="task", name="checkout"), sentry_sdk.start_span(op="db", name="SELECT 1"):
            pass
        crons.capture_checkin(monitor_slug="nightly-export", status="ok", duration=1.5)
        if supports["logs"]:
            sentry_sdk.logger.info("payment {payment} done", payment="p-1")
        if supports["metrics"]:
            sentry_sdk.metrics.count("conversions", 1, attributes={"plan": "pro"})


@pytest.fixture(params=["br", "gzip"])
def captured(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[Captured], dict[str, bool]]]:
    if request.param == "br":
        pytest.importorskip("brotli")
    with CaptureServer() as server:
        supports = send_everything(server.port, request.param)
        yield request.param, list(server.requests), supports


def requests_text(requests: list[Captured]) -> str:
    return "".join(decode_body(req.body, req.headers.get("Content-Encoding"), LIMIT).decode() for req in requests)


def envelopes(requests: list[Captured]) -> list[Envelope]:
    """Each request decoded, split and authenticated as the route will."""
    parsed = []
    for req in requests:
        assert req.path == "/api/1/envelope/"
        assert req.headers["Content-Type"] == "application/x-sentry-envelope"
        envelope = parse_envelope(decode_body(req.body, req.headers.get("Content-Encoding"), LIMIT))
        assert authenticate(req.headers, req.query, envelope.header, "1") == "publickey"
        assert envelope.skipped == []
        parsed.append(envelope)
    return parsed


def events_of(parsed: list[Envelope]) -> list[ErrorEvent]:
    mapped = []
    for envelope in parsed:
        for item in envelope.items:
            if item.type == "event":
                event = parse_sentry_event(parse_item_json(item), now=time.time(), config=ErrorsConfig(),
                                           limits=Limits(), event_id=envelope.header.get("event_id"),
                                           index=item.index)
                assert event.event_id == envelope.header["event_id"]
                mapped.append(event)
    return mapped


@pytest.mark.slow
def test_the_real_sdk_is_understood(captured: tuple[str, list[Captured], dict[str, bool]]) -> None:
    algo, requests, supports = captured
    assert requests, "the SDK sent nothing"
    assert {req.headers.get("Content-Encoding") for req in requests} == {algo}
    parsed = envelopes(requests)
    types = [item.type for envelope in parsed for item in envelope.items]
    expected = {"event", "transaction", "check_in"} | ({"log"} if supports["logs"] else set()) | \
        ({"trace_metric"} if supports["metrics"] else set())
    assert expected <= set(types), types
    assert types.count("event") == 2

    error, message = events_of(parsed)
    assert (error.type, error.message) == ("ValueError", "charge failed for order 42")
    assert [(e.type, e.value) for e in error.causes] == [("ZeroDivisionError", "division by zero")]
    assert (error.release, error.environment, error.level) == (RELEASE, ENVIRONMENT, "error")
    assert (error.tags["feature"], error.extra["amount"], error.user_id) == ("payment", 49.0, "user-42")
    assert error.context.trace_id is not None and len(error.context.trace_id) == 32
    raising = error.frames[-1]
    assert (raising.function, raising.in_app, raising.filename) == ("charge", True, "tests/test_sentry_sdk.py")
    assert raising.context_line is not None and "raise ValueError" in raising.context_line
    assert any("card_secret" in line for line in raising.pre_context)
    cause = error.causes[0]
    assert (cause.frames[-1].function, cause.frames[-1].in_app) == ("divide", True)
    assert "return a / b" in (cause.frames[-1].context_line or "")
    assert "card-42000-secret" in requests_text(requests)
    assert raising.vars is not None and "card-42000-secret" in repr(raising.vars)
    ErrorSink(ErrorsConfig(), MetricStore(), Privacy(PrivacyConfig(), b"k" * 32)).scrub(error)
    assert raising.vars == {"order": "42"}          # the secret-named local is removed, as a property would be
    assert "card-42000-secret" not in repr(error)

    assert (message.type, message.message, message.level) == \
        (MESSAGE_TYPE, "nightly export finished", "warning")

    check_in = next(parse_item_json(i) for e in parsed for i in e.items if i.type == "check_in")
    assert (check_in["monitor_slug"], check_in["status"]) == ("nightly-export", "ok")
    transaction = next(parse_item_json(i) for e in parsed for i in e.items if i.type == "transaction")
    assert transaction["transaction"] == "checkout" and [s["op"] for s in transaction["spans"]] == ["db"]
    if supports["logs"]:
        log = next(parse_item_json(i) for e in parsed for i in e.items if i.type == "log")
        assert any(entry["body"] == "payment p-1 done" for entry in log["items"])
        assert log_levels(log)[("info", "unknown")] >= 1
    if supports["metrics"]:
        metric = next(parse_item_json(i) for e in parsed for i in e.items if i.type == "trace_metric")
        assert any(entry["name"] == "conversions" for entry in metric["items"])
        batch = trace_metrics(metric)                       # the /v1/metrics sample, without the SDK's attributes
        assert not batch.errors and RELEASE in batch.releases
        conversions = next(sample for _, sample in batch.samples if sample.name == "conversions")
        assert (conversions.kind, conversions.value, conversions.keys, conversions.values) == \
            ("counter", 1.0, ("plan",), ("pro",))


@pytest.mark.slow
def test_answers_are_what_the_sdk_expects_so_it_reports_no_loss() -> None:
    """The 200 {"id"} answer: the SDK records no lost event (a client report would say otherwise)."""
    with CaptureServer() as server:
        send_everything(server.port, "gzip")
        send_everything(server.port, "gzip")
        reports = [orjson.loads(item.payload) for envelope in envelopes(server.requests)
                   for item in envelope.items if item.type == "client_report"]
    assert all(not report.get("discarded_events") for report in reports), reports
