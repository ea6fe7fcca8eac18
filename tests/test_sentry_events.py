"""agent/sentry/events.py: a Sentry event payload -> ErrorEvent (and what the model has no place for),
validated with /v1/errors' limits; rejections name the field in Sentry's terms."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.fingerprint import derived_fingerprint, fingerprint
from agent.events.limits import Limits
from agent.events.validate import EventError
from agent.sentry.events import MAX_EXCEPTIONS, MESSAGE_TYPE, VARS_FRAMES, build_sentry_error, parse_sentry_event

NOW = 1767261600.0 + 60          # a minute after the sample event
CONFIG = ErrorsConfig()
LIMITS = Limits()
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def frame(function: str, lineno: int, *, in_app: bool = True, line: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"filename": "app/payments.py", "abs_path": "/srv/app/payments.py", "module": "app.payments",
            "function": function, "lineno": lineno, "colno": 4, "in_app": in_app,
            "pre_context": ["def charge(card):", "    amount = card.amount"],
            "context_line": line if line is not None else f"    {function}()",
            "post_context": ["    return amount"], "vars": {"card": "<Card>", "password": "hunter2"},
            "platform": "python", "package": None, **extra}


def sentry_event() -> dict[str, Any]:
    return {
        "event_id": "9ec79c33-ec99-42ab-8353-589fcb2e04dc",
        "timestamp": "2026-01-01T10:00:00.123456Z",
        "platform": "python", "server_name": "web-1", "modules": {"flask": "3.1"}, "breadcrumbs": {"values": []},
        "level": "error",
        "exception": {"values": [
            {"type": "ZeroDivisionError", "value": "division by zero", "module": None,
             "mechanism": {"type": "chained", "handled": True},
             "stacktrace": {"frames": [frame("split", 10), frame("divide", 20, line="    return a / b")]}},
            {"type": "PaymentError", "value": "charge failed for order 42", "module": "app.errors",
             "mechanism": {"type": "generic", "handled": False},
             "stacktrace": {"frames": [frame("handler", 5, in_app=False), frame("charge", 30,
                                                                                 line="    raise PaymentError()")]}},
        ]},
        "tags": {"feature": "payment", "region": "eu"},
        "extra": {"amount": 49.0, "sys.argv": ["app.py"]},
        "user": {"id": 42, "email": "someone@example.com", "ip_address": "203.0.113.9", "username": "sam"},
        "release": "web@2.3.1", "environment": "production",
        "fingerprint": ["{{ default }}", "eu", 7],
        "contexts": {"trace": {"trace_id": TRACE_ID, "span_id": SPAN_ID, "op": "http.server"},
                     "runtime": {"name": "CPython"}},
        "sdk": {"name": "sentry.python", "version": "2.76.0"},
        "request": {"url": "https://shop.example/pay?token=secret#x", "method": "POST",
                    "headers": {"User-Agent": "Mozilla/5.0", "Cookie": "session=abc", "Authorization": "Bearer t"},
                    "cookies": {"session": "abc"}, "data": {"card": "4111"}},
        "logentry": {"message": "payment %s failed for %s", "params": ["p-1", "order 42"]},
    }


def mapped(payload: Any, **kwargs: Any) -> Any:
    return build_sentry_error(payload, NOW, CONFIG, LIMITS, **kwargs)


def rejected(payload: Any, **kwargs: Any) -> EventError:
    with pytest.raises(EventError) as caught:
        parse_sentry_event(payload, now=NOW, config=CONFIG, limits=LIMITS, **kwargs)
    return caught.value


def with_(path: str, value: Any, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the event with the value at a dotted path (numbers index lists)."""
    event = copy.deepcopy(payload or sentry_event())
    *parents, last = path.split(".")
    node: Any = event
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is ...:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return event


# --- the full mapping -------------------------------------------------------------------------------

def test_the_raised_exception_is_the_last_value_its_causes_come_before() -> None:
    error = mapped(sentry_event())
    assert (error.type, error.message) == ("PaymentError", "charge failed for order 42")
    assert [(e.type, e.value, e.mechanism, e.handled, e.module) for e in error.causes] == [
        ("ZeroDivisionError", "division by zero", "chained", True, None)]
    assert (error.mechanism, error.handled, error.causes_omitted) == ("generic", False, 0)


def test_frames_keep_order_in_app_and_positions_and_their_source_lines_beside() -> None:
    result = mapped(sentry_event())
    assert [(f.function, f.lineno, f.colno, f.in_app, f.filename, f.abs_path, f.module) for f in result.frames] \
        == [("handler", 5, 4, False, "app/payments.py", "/srv/app/payments.py", "app.payments"),
            ("charge", 30, 4, True, "app/payments.py", "/srv/app/payments.py", "app.payments")]
    assert [f.context_line for f in result.frames] == ["    handler()", "    raise PaymentError()"]
    assert result.frames[1].pre_context == ("def charge(card):", "    amount = card.amount")
    assert result.frames[1].post_context == ("    return amount",)
    cause = result.causes[0]
    assert [f.function for f in cause.frames] == ["split", "divide"]
    assert cause.frames[1].context_line == "    return a / b"


def test_vars_are_kept_for_the_sink_to_scrub() -> None:
    result = mapped(sentry_event())
    assert [f.vars for f in result.frames] == [{"card": "<Card>", "password": "hunter2"}] * 2


def test_everything_else_of_the_event() -> None:
    result = mapped(sentry_event())
    error = result
    assert error.tags == {"feature": "payment", "region": "eu"} and error.feature == "payment"
    assert error.extra == {"amount": 49.0, "sys.argv": ["app.py"]}
    assert (error.user_id, error.release, error.environment, error.level) == ("42", "web@2.3.1", "production", "error")
    assert error.fingerprint == ("{{ default }}", "eu", "7")
    assert error.event_id == "9ec79c33ec9942ab8353589fcb2e04dc"
    assert error.timestamp == pytest.approx(1767261600.123456)
    assert (error.context.trace_id, error.context.span_id) == (TRACE_ID, SPAN_ID)
    assert (error.context.ip, error.context.library) == ("203.0.113.9", "sentry.python/2.76.0")
    assert (error.context.page, error.context.user_agent) == ("https://shop.example/pay", "Mozilla/5.0")
    assert result.log_message == "payment p-1 failed for order 42"
    assert result.request == {"method": "POST", "url": "https://shop.example/pay",
                              "headers": {"User-Agent": "Mozilla/5.0"}}
    text = repr(result)
    assert "session=abc" not in text and "Bearer t" not in text and "4111" not in text and "token=secret" not in text


def test_breadcrumbs_keep_the_last_hundred_and_leave_malformed_ones_out() -> None:
    crumbs = [{"timestamp": 1767261500.0 + i, "category": "http", "type": "http", "level": "info",
               "message": f"GET /p/{i}", "data": {"status_code": 200}} for i in range(120)]
    crumbs[-1] = "not a crumb"
    crumbs[-2] = {"message": "deep", "data": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}}
    result = mapped(with_("breadcrumbs", {"values": crumbs}))
    assert len(result.breadcrumbs) == 99
    assert result.breadcrumbs[0] == {"timestamp": 1767261520.0, "category": "http", "type": "http", "level": "info",
                                     "message": "GET /p/20", "data": {"status_code": 200}}
    assert result.breadcrumbs[-1] == {"message": "deep", "dataDropped": True}
    assert mapped(with_("breadcrumbs", "junk")).breadcrumbs == []


def test_the_default_part_of_a_fingerprint_stands_for_the_derived_one() -> None:
    error = mapped(sentry_event())
    assert fingerprint(error) != derived_fingerprint(error)
    plain = mapped(with_("fingerprint", ["{{default}}"]))
    assert fingerprint(plain) != fingerprint(error)
    other_region = mapped(with_("fingerprint", ["{{ default }}", "us", 7]))
    assert fingerprint(other_region) != fingerprint(error)


def test_tags_as_a_list_of_pairs() -> None:
    error = mapped(with_("tags", [["feature", "search"], ["n", 3], ["flag", True], ["gone", None]]))
    assert error.tags == {"feature": "search", "n": "3", "flag": "true"}


@pytest.mark.parametrize("timestamp, expected", [(1767261600.5, 1767261600.5), ("2026-01-01T10:00:00Z", 1767261600.0),
                                                 ("2026-01-01T10:00:00.25", 1767261600.25),
                                                 ("2026-01-01T11:00:00+01:00", 1767261600.0)])
def test_timestamps_as_seconds_or_rfc_3339_offset_less_being_utc(timestamp: Any, expected: float) -> None:
    now = 1767261600.0
    assert build_sentry_error(with_("timestamp", timestamp), now, CONFIG, LIMITS).timestamp == expected


def test_no_timestamp_is_now_and_the_envelope_event_id_is_the_fallback() -> None:
    error = mapped(with_("event_id", ..., with_("timestamp", ...)), event_id="envelope-id")
    assert (error.timestamp, error.event_id) == (NOW, "envelope-id")


@pytest.mark.parametrize("level, expected", [("warn", "warning"), ("critical", "fatal"), ("log", "info"),
                                             ("fatal", "fatal"), ("debug", "debug")])
def test_levels_with_sentrys_aliases(level: str, expected: str) -> None:
    assert mapped(with_("level", level)).level == expected


def test_the_user_is_the_id_else_the_email_else_the_username_and_auto_ip_is_not_an_ip() -> None:
    assert mapped(with_("user", {"email": "a@b.example", "username": "sam"})).user_id == "a@b.example"
    only_name = mapped(with_("user", {"username": "sam", "ip_address": "{{auto}}"}))
    assert (only_name.user_id, only_name.context.ip) == ("sam", None)
    assert mapped(with_("user", ...)).user_id is None


# --- other shapes --------------------------------------------------------------------------------------

def test_a_message_event_from_capture_message() -> None:
    error = mapped({"message": "hello world", "level": "info", "event_id": "abc"})
    assert (error.type, error.message, error.level, error.frames) == (MESSAGE_TYPE, "hello world", "info", [])


@pytest.mark.parametrize("entry, expected", [
    ({"formatted": "done", "message": "%s"}, "done"),
    ({"message": "user %(name)s paid %(amount)d%%", "params": {"name": "sam", "amount": 5}}, "user sam paid 5%"),
    ({"message": "%s and %s", "params": ["one"]}, "one and %s"),
    ({"message": "no params %s"}, "no params %s"),
])
def test_logentry_formatting(entry: dict[str, Any], expected: str) -> None:
    assert mapped({"logentry": entry}).message == expected
    assert mapped({"message": entry}).message == expected


def test_a_template_repeating_a_large_parameter_is_filled_only_to_the_message_limit() -> None:
    """`%(a)s` 100,000 times with a 1 MB `a` would be 100 GB of message before the cut; here 5,000 times
    20 KB is 100 MB unbounded."""
    import tracemalloc
    entry = {"message": "%(a)s" * 5_000, "params": {"a": "x" * 20_000}}
    tracemalloc.start()
    try:
        error = mapped({"logentry": entry})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.message == "x" * CONFIG.max_message_length and error.message_truncated
    assert peak < 20_000_000
    listed = mapped({"logentry": {"message": "%s " * 200, "params": ["y" * 100_000] * 100}})
    assert listed.message == "y" * CONFIG.max_message_length and listed.message_truncated


def test_a_message_event_takes_the_stack_of_the_crashed_or_current_thread() -> None:
    threads = {"values": [{"id": 1, "stacktrace": {"frames": [frame("idle", 1)]}},
                          {"id": 2, "current": True, "stacktrace": {"frames": [frame("work", 2)]}}]}
    result = mapped({"message": "slow", "threads": threads})
    assert [f.function for f in result.frames] == ["work"]
    assert result.frames[0].context_line == "    work()"
    assert [f.function for f in mapped({"message": "x", "stacktrace": {"frames": [frame("top", 3)]}}).frames] \
        == ["top"]


def test_exception_as_a_bare_list_or_a_legacy_object_and_a_missing_type() -> None:
    assert mapped({"exception": [{"type": "A", "value": "a"}, {"type": "B", "value": "b"}]}).type == "B"
    assert mapped({"exception": {"type": "Legacy", "value": "v"}}).type == "Legacy"
    error = mapped({"exception": {"values": [{"value": "Script error."}]}})
    assert (error.type, error.message) == ("Error", "Script error.")


def test_a_long_chain_keeps_the_exceptions_nearest_the_raise() -> None:
    values = [{"type": f"E{i}", "value": str(i)} for i in range(MAX_EXCEPTIONS + 5)]
    result = mapped({"exception": {"values": values}})
    assert result.causes_omitted == 5 and len(result.causes) == MAX_EXCEPTIONS - 1
    assert (result.causes[0].type, result.type) == ("E5", f"E{MAX_EXCEPTIONS + 4}")


def test_a_deep_stack_keeps_both_ends_with_their_sources_aligned() -> None:
    frames = [frame(f"f{i}", i + 1, line=f"line {i}") for i in range(CONFIG.max_frames + 20)]
    result = mapped({"exception": {"values": [{"type": "RecursionError", "stacktrace": {"frames": frames}}]}})
    assert result.frames_omitted == 20 and len(result.frames) == CONFIG.max_frames
    assert [f.context_line for f in result.frames] == [f"line {int(f.function[1:])}" for f in result.frames]
    assert result.frames[-1].function == f"f{CONFIG.max_frames + 19}"


def test_long_source_lines_and_contexts_are_cut_not_refused() -> None:
    long = frame("f", 1, line="x" * 10_000, pre_context=[f"p{i}" for i in range(30)])
    result = mapped({"exception": {"values": [{"type": "E", "stacktrace": {"frames": [long]}}]}})
    assert len(result.frames[0].context_line or "") == LIMITS.max_string_length
    assert result.frames[0].pre_context == tuple(f"p{i}" for i in range(20, 30))


def test_a_long_message_is_cut_and_marked_like_v1_errors() -> None:
    error = mapped(with_("exception.values.1.value", "m" * (CONFIG.max_message_length + 1)))
    assert error.message_truncated and len(error.message) == CONFIG.max_message_length


# --- rejections in Sentry's terms ----------------------------------------------------------------------

@pytest.mark.parametrize("path, value, field", [
    ("exception.values.1.stacktrace.frames.1.lineno", "30", "exception.values[1].stacktrace.frames[1].lineno"),
    ("exception.values.0.stacktrace.frames.0.in_app", "yes", "exception.values[0].stacktrace.frames[0].in_app"),
    ("exception.values.1.stacktrace.frames.0.context_line", 5,
     "exception.values[1].stacktrace.frames[0].context_line"),
    ("exception.values.1.stacktrace.frames.0.pre_context", "one line",
     "exception.values[1].stacktrace.frames[0].pre_context"),
    ("exception.values.0.stacktrace.frames", {"not": "a list"}, "exception.values[0].stacktrace.frames"),
    ("exception.values.1.type", "T" * 300, "exception.values[1].type"),
    ("exception.values.1.value", 12, "exception.values[1].value"),
    ("exception.values.0.mechanism.handled", "no", "exception.values[0].mechanism.handled"),
    ("exception.values", "nope", "exception.values"),
    ("exception", 5, "exception"),
    ("tags", [["only-name"]], "tags[0]"),
    ("tags", {"bad name": "x"}, "tags"),
    ("tags", {"feature": "x" * 201}, "tags.feature"),
    ("extra", {"deep": {"a": {"b": {"c": {"d": {"e": 1}}}}}}, "extra.deep.a.b.c.d"),
    ("release", "me@example.com", "release"),
    ("environment", "prod env", "environment"),
    ("level", "loud", "level"),
    ("fingerprint", [], "fingerprint"),
    ("timestamp", "yesterday", "timestamp"),
    ("timestamp", 1.0, "timestamp"),
    ("contexts.trace.trace_id", "xyz", "contexts.trace.trace_id"),
    ("contexts.trace.span_id", "0" * 16, "contexts.trace.span_id"),
    ("contexts.trace", "nope", "contexts.trace"),
    ("user", "sam", "user"),
    ("user.id", {"nested": 1}, "user.id"),
    ("user.ip_address", "not-an-ip", "user.ip_address"),
    ("event_id", "x" * 200, "event_id"),
])
def test_an_invalid_field_is_named_in_sentrys_terms(path: str, value: Any, field: str) -> None:
    error = rejected(with_(path, value), index=3)
    assert (error.index, error.field) == (3, field)
    assert str(error).startswith(f"items[3].{field}: ")


def test_a_cause_frame_without_any_name_is_refused_like_v1_errors() -> None:
    error = rejected(with_("exception.values.0.stacktrace.frames.0", {"lineno": 3, "instruction_addr": "0x1"}))
    assert error.field == "exception.values[0].stacktrace.frames[0]"


def test_a_payload_that_is_not_an_object() -> None:
    assert rejected(["not", "an", "event"]).message.startswith("must be an object")


def test_unknown_keys_are_ignored_not_errors() -> None:
    event = with_("exception.values.1.stacktrace.frames.1.new_frame_key", {"x": 1},
                  with_("brand_new_top_level_key", [1, 2, 3]))
    assert mapped(event).type == "PaymentError"


def test_local_variables_are_kept_for_the_ten_frames_nearest_the_raise() -> None:
    frames = [frame(f"f{i}", i + 1) for i in range(VARS_FRAMES + 5)]
    result = mapped({"exception": {"values": [{"type": "E", "stacktrace": {"frames": frames}}]}})
    assert [f.vars is not None for f in result.frames] == [False] * 5 + [True] * VARS_FRAMES
    assert all(f.context_line for f in result.frames)          # the source lines stay on every frame


def test_a_synthetic_exception_carrying_a_messages_stack_is_a_message_event() -> None:
    """@sentry/node's captureMessage: one exception the SDK made (mechanism.synthetic) and the message beside it."""
    payload = {"message": "nightly export finished", "level": "warning",
               "exception": {"values": [{"value": "nightly export finished",
                                         "mechanism": {"type": "generic", "handled": True, "synthetic": True},
                                         "stacktrace": {"frames": [frame("exportAll", 12)]}}]}}
    result = mapped(payload)
    assert (result.type, result.message, result.level) == (MESSAGE_TYPE, "nightly export finished", "warning")
    assert [f.function for f in result.frames] == ["exportAll"] and result.causes == []
    raised = copy.deepcopy(payload)
    raised["exception"]["values"][0]["mechanism"]["synthetic"] = False
    assert mapped(raised).type == "Error"
