"""The pieces under the OTLP receiver, alone: the forwarding queue (agent/otlp/forward.py), bounded
inflating and OTLP JSON (agent/receiver/decode.py), severities (agent/receiver/logs.py)."""

from __future__ import annotations

import gzip
import zlib

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from agent.otlp.forward import EncodedQueue
from agent.receiver.decode import JSON, PROTOBUF, DecodeError, inflate, media_type, parse
from agent.receiver.logs import severity


def request(*names: str) -> bytes:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[
        Span(name=name, trace_id=b"t" * 16, span_id=b"s" * 8) for name in names])])]).SerializeToString()


def test_a_chunk_is_queued_whole_or_refused_whole() -> None:
    queue = EncodedQueue(max_items=5, batch_items=3, max_bytes=10_000)
    assert queue.put(request("a", "b", "c"), 3)
    assert not queue.put(request("d", "e", "f"), 3)          # 6 > 5 items: nothing of it
    assert (len(queue), queue.dropped) == (3, 0)
    assert queue.put(request("d", "e"), 2)
    small = EncodedQueue(max_items=100, batch_items=3, max_bytes=50)
    assert not small.put(b"x" * 51, 1) and small.put(b"x" * 50, 1)


def test_take_concatenates_chunks_into_one_request_up_to_the_batch_bytes() -> None:
    first, second, third = request("a"), request("b", "c"), request("d")
    queue = EncodedQueue(max_items=100, batch_items=100, batch_bytes=len(first) + len(second))
    for chunk, items in ((first, 1), (second, 2), (third, 1)):
        queue.put(chunk, items)
    batch = queue.take()
    assert batch is not None and batch.count == 3
    spans = [s.name for rs in ExportTraceServiceRequest.FromString(batch.body).resource_spans
             for ss in rs.scope_spans for s in ss.spans]
    assert spans == ["a", "b", "c"]
    last = queue.take()
    assert last is not None and (last.body, last.count) == (third, 1)
    assert queue.take() is None and (len(queue), queue.bytes) == (0, 0)


def test_a_chunk_larger_than_the_batch_bytes_still_leaves_alone() -> None:
    queue = EncodedQueue(max_items=100, batch_items=100, batch_bytes=10)
    queue.put(b"y" * 40, 1)
    queue.put(b"z" * 5, 1)
    assert [(b.body, b.count) for b in (queue.take(), queue.take())] == [(b"y" * 40, 1), (b"z" * 5, 1)]


def test_close_refuses_and_returns_what_was_left() -> None:
    queue = EncodedQueue(max_items=100, batch_items=10)
    queue.put(request("a", "b"), 2)
    assert queue.close() == 2 and len(queue) == 0
    assert not queue.put(request("c"), 1) and not queue.fits(0, 0)


def test_inflate_is_bounded_and_reads_every_gzip_member_and_both_deflates() -> None:
    body = b"span" * 1000
    assert inflate(gzip.compress(body[:2000]) + gzip.compress(body[2000:]), "gzip", 4000) == body
    assert inflate(zlib.compress(body), "deflate", 4000) == body
    raw = zlib.compressobj(wbits=-15)
    assert inflate(raw.compress(body) + raw.flush(), "Deflate", 4000) == body
    with pytest.raises(DecodeError) as info:
        inflate(gzip.compress(body), "gzip", 3999)
    assert info.value.status == 413
    with pytest.raises(DecodeError) as info:
        inflate(gzip.compress(body)[:-10], "gzip", 4000)
    assert info.value.status == 400 and "truncated" in info.value.message
    with pytest.raises(DecodeError) as info:
        inflate(body, "zstd", 4000)
    assert info.value.status == 415


def test_media_types_and_json_ids() -> None:
    assert media_type("application/json; charset=utf-8") == JSON
    assert media_type("Application/X-Protobuf") == PROTOBUF
    with pytest.raises(DecodeError):
        media_type("application/protobuf")
    message = parse(b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090A0B0C0D0E0F10",'
                    b'"spanId":"0102030405060708","parentSpanId":"","links":[{"traceId":"ff","spanId":"ee"}]}]}]}]}',
                    JSON, ExportTraceServiceRequest)
    span = message.resource_spans[0].scope_spans[0].spans[0]
    assert (span.trace_id, span.span_id, span.parent_span_id) == (bytes(range(1, 17)), bytes(range(1, 9)), b"")
    assert (span.links[0].trace_id, span.links[0].span_id) == (b"\xff", b"\xee")


@pytest.mark.parametrize(("number", "text", "expected"), [
    (1, "", "trace"), (4, "", "trace"), (5, "", "debug"), (9, "", "info"), (12, "", "info"), (13, "", "warn"),
    (17, "", "error"), (21, "", "fatal"), (24, "", "fatal"), (0, "WARNING", "warn"), (0, "critical", "fatal"),
    (0, "", "unspecified"), (0, "verbose", "unspecified"), (30, "", "unspecified"), (0, " Error ", "error")])
def test_severity_buckets(number: int, text: str, expected: str) -> None:
    assert severity(number, text) == expected
