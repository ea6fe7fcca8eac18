"""agent/sentry/envelope.py: splitting Sentry envelopes, hostile ones included, and legacy /store/ bodies.

Each hostile input must end in one EnvelopeError naming where it failed (a clear 4xx), or in one
skipped item whose siblings survive: never an exception of another type (a 500) and never a lost item.
"""

from __future__ import annotations

import json

import pytest

from agent.sentry.envelope import (
    KIB,
    MAX_HEADER_BYTES,
    MIB,
    TOO_LARGE,
    TOO_MANY_SESSIONS,
    EnvelopeError,
    EnvelopeLimits,
    parse_envelope,
    parse_item_json,
    parse_store_body,
)

HEADER = b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","dsn":"http://key@127.0.0.1:9464/1"}'


def item(kind: str, payload: bytes, *, length: bool = True, **headers: object) -> bytes:
    head: dict[str, object] = {"type": kind, **headers}
    if length:
        head["length"] = len(payload)
    return json.dumps(head).encode() + b"\n" + payload + b"\n"


def envelope(*items: bytes, header: bytes = HEADER) -> bytes:
    return header + b"\n" + b"".join(items)


def fails(data: bytes, limits: EnvelopeLimits | None = None) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(data, limits or EnvelopeLimits())
    return caught.value


# --- well-formed ------------------------------------------------------------------------------------

def test_items_with_and_without_length_keep_their_bytes_and_order() -> None:
    binary = b"\x00\x01\n\xff line\nbreaks"
    data = envelope(item("event", b'{"message":"hi"}'), item("attachment", binary, filename="a.bin"),
                    item("session", b'{"sid":"x"}', length=False))
    parsed = parse_envelope(data)
    assert parsed.header["event_id"] == "9ec79c33ec9942ab8353589fcb2e04dc"
    assert [(i.index, i.type, i.payload) for i in parsed.items] == [
        (0, "event", b'{"message":"hi"}'), (1, "attachment", binary), (2, "session", b'{"sid":"x"}')]
    assert parsed.items[1].headers["filename"] == "a.bin"
    assert parsed.skipped == []


@pytest.mark.parametrize("tail", [b"", b"\n", b"\n\n"])
def test_a_trailing_newline_or_none_is_the_same_envelope(tail: bytes) -> None:
    data = envelope(item("event", b"{}")).rstrip(b"\n") + tail
    assert [(i.type, i.payload) for i in parse_envelope(data).items] == [("event", b"{}")]


def test_the_last_payload_without_length_and_without_newline_runs_to_the_end() -> None:
    data = HEADER + b'\n{"type":"event"}\n{"a":1}'
    assert parse_envelope(data).items[0].payload == b'{"a":1}'


def test_an_empty_payload_and_a_header_only_envelope() -> None:
    assert parse_envelope(HEADER).items == []
    assert parse_envelope(HEADER + b"\n").items == []
    parsed = parse_envelope(envelope(item("client_report", b""), item("event", b"{}")))
    assert [(i.type, i.payload) for i in parsed.items] == [("client_report", b""), ("event", b"{}")]


def test_blank_lines_between_items_are_tolerated() -> None:
    data = envelope(item("event", b"{}"), b"\n", item("session", b"{}"))
    assert [i.type for i in parse_envelope(data).items] == ["event", "session"]


def test_unknown_item_types_are_returned_beside_their_siblings_never_fatal() -> None:
    kinds = ["event", "replay_recording", "some_future_type", "profile_chunk", "feedback", "x.y-z"]
    data = envelope(*(item(kind, b'{"n":%d}' % n) for n, kind in enumerate(kinds)))
    parsed = parse_envelope(data)
    assert [i.type for i in parsed.items] == kinds
    assert [parse_item_json(i)["n"] for i in parsed.items] == list(range(len(kinds)))


def test_what_the_real_sdk_serialises_splits_into_its_items() -> None:
    sdk_envelope = pytest.importorskip("sentry_sdk.envelope")
    env = sdk_envelope.Envelope(headers={"event_id": "abc", "sent_at": "2026-01-01T00:00:00Z"})
    env.add_event({"event_id": "abc", "message": "hello\nworld"})
    env.add_checkin({"check_in_id": "c1", "monitor_slug": "nightly", "status": "ok"})
    env.add_item(sdk_envelope.Item(payload=b"raw\nbytes\n", type="attachment", filename="log.txt"))
    parsed = parse_envelope(env.serialize())
    assert [i.type for i in parsed.items] == ["event", "check_in", "attachment"]
    assert parse_item_json(parsed.items[0])["message"] == "hello\nworld"
    assert parsed.items[2].payload == b"raw\nbytes\n"


# --- malformed: one EnvelopeError naming the place ---------------------------------------------------

@pytest.mark.parametrize("data, field, status", [
    (b"", "header", 400),
    (b" \n\n", "header", 400),
    (b"not json\n" + item("event", b"{}"), "header", 400),
    (b'["an","array"]\n' + item("event", b"{}"), "header", 400),
    (b'{"event_id": \n' + item("event", b"{}"), "header", 400),
    (envelope(b"{nope\n{}\n"), "items[0].header", 400),
    (envelope(b'"event"\n{}\n'), "items[0].header", 400),
    (envelope(b'{"length":2}\n{}\n'), "items[0].type", 400),
    (envelope(b'{"type":7,"length":2}\n{}\n'), "items[0].type", 400),
    (envelope(b'{"type":"","length":2}\n{}\n'), "items[0].type", 400),
    (envelope(item("event", b"{}"), b'{"type":"event","length":100}\n{"truncated":'), "items[1].length", 400),
    (envelope(b'{"type":"event","length":4}\n{}\n'), "items[0].length", 400),     # past the end
    (envelope(b'{"type":"event","length":1}\n{}\n'), "items[0].length", 400),     # lands inside the payload
    (envelope(b'{"type":"event","length":-1}\n{}\n'), "items[0].length", 400),
    (envelope(b'{"type":"event","length":"2"}\n{}\n'), "items[0].length", 400),
    (envelope(b'{"type":"event","length":2.0}\n{}\n'), "items[0].length", 400),
])
def test_malformed_envelopes_name_where_they_failed(data: bytes, field: str, status: int) -> None:
    error = fails(data)
    assert (error.field, error.status) == (field, status)
    assert str(error).startswith(f"{field}: ")


def test_a_wrong_length_in_the_middle_does_not_silently_misread_the_rest() -> None:
    good = item("event", b'{"a":1}')
    wrong = b'{"type":"attachment","length":5}\n0123456789\n'
    assert fails(envelope(good, wrong, good)).field == "items[1].length"


def test_a_truncated_body_is_an_error_not_a_shorter_envelope() -> None:
    data = envelope(item("event", b'{"message":"' + b"x" * 100 + b'"}'))
    for cut in (len(HEADER) + 30, len(data) - 10):
        assert fails(data[:cut]).field in ("items[0].length", "items[0].header")


def test_a_header_line_past_the_bound_is_refused_before_it_is_parsed() -> None:
    huge = b'{"type":"event","pad":"' + b"x" * MAX_HEADER_BYTES + b'"}'
    assert fails(envelope(huge + b"\n{}\n")).field == "items[0].header"
    assert fails(b"{" + b" " * MAX_HEADER_BYTES + b"}\n").field == "header"


def test_ten_thousand_items_are_refused_at_the_bound_with_413() -> None:
    data = envelope(*[item("client_report", b"{}")] * 10_000)
    error = fails(data)
    assert (error.field, error.status) == ("items", 413)
    assert len(parse_envelope(data, EnvelopeLimits(max_items=10_000)).items) == 10_000


# --- bounded per item ---------------------------------------------------------------------------------

def test_an_oversized_item_is_skipped_with_its_reason_and_its_siblings_kept() -> None:
    big_event = b'{"pad":"' + b"x" * MIB + b'"}'
    big_check_in = b'{"pad":"' + b"x" * (100 * KIB) + b'"}'
    data = envelope(item("session", b'{"a":1}'), item("event", big_event), item("check_in", big_check_in),
                    item("check_in", b'{"ok":1}'), item("log", b'{"items":[]}', length=False))
    parsed = parse_envelope(data)
    assert [(i.index, i.type) for i in parsed.items] == [(0, "session"), (3, "check_in"), (4, "log")]
    assert [(s.index, s.type, s.size, s.reason) for s in parsed.skipped] == [
        (1, "event", len(big_event), TOO_LARGE), (2, "check_in", len(big_check_in), TOO_LARGE)]


def test_item_limits_are_parameters_and_apply_to_unlisted_types() -> None:
    limits = EnvelopeLimits(max_item_bytes=10, item_bytes={"event": 4})
    parsed = parse_envelope(envelope(item("event", b'"12"'), item("event", b'"123"'),
                                     item("replay_event", b'"12345678"'), item("replay_event", b'"123456789"')), limits)
    assert [i.index for i in parsed.items] == [0, 2]
    assert [(s.index, s.reason) for s in parsed.skipped] == [(1, TOO_LARGE), (3, TOO_LARGE)]


def test_more_than_the_session_bound_are_skipped_the_first_kept() -> None:
    data = envelope(*[item("session", b'{"n":%d}' % n) for n in range(103)], item("event", b"{}"))
    parsed = parse_envelope(data)
    assert [i.type for i in parsed.items] == ["session"] * 100 + ["event"]
    assert [(s.index, s.reason) for s in parsed.skipped] == [(n, TOO_MANY_SESSIONS) for n in (100, 101, 102)]


def test_an_item_payload_that_is_not_json_names_the_item() -> None:
    parsed = parse_envelope(envelope(item("event", b"{}"), item("event", b"{broken")))
    assert parse_item_json(parsed.items[0]) == {}
    with pytest.raises(EnvelopeError) as caught:
        parse_item_json(parsed.items[1])
    assert caught.value.field == "items[1].payload"


# --- legacy /store/ ----------------------------------------------------------------------------------

def test_a_store_body_is_one_event_object() -> None:
    assert parse_store_body(b'{"message":"hi","level":"info"}') == {"message": "hi", "level": "info"}


@pytest.mark.parametrize("body, status", [(b"nope", 400), (b"[1,2]", 400), (b"", 400), (b'"text"', 400),
                                          (b'{"pad":"' + b"x" * MIB + b'"}', 413)])
def test_a_store_body_that_is_not_one_event_is_refused(body: bytes, status: int) -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_store_body(body)
    assert (caught.value.field, caught.value.status) == ("body", status)
