"""Error-event validation (agent/error_tracking/validate.py): the Sentry-like shapes it accepts, every bad input
a FieldError naming the field (never echoing the value), oversized stacks and messages cut and marked,
batches all or nothing, the `errors:` config block, and a property test that arbitrary JSON never
raises anything but EventError."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.error_tracking.config import ErrorsConfig, parse_errors
from agent.error_tracking.validate import parse_error, parse_error_batch
from agent.events.validate import BatchError, EventError, Limits
from agent.config.node import Node

NOW = 1_795_514_405.0                     # 2026-11-24T10:00:05Z
CONFIG = ErrorsConfig()
LIMITS = Limits()
TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

# the documentation's Sentry.captureException(error, {tags: {feature: 'payment'}, extra: {userId, amount}})
GOOD: dict[str, Any] = {
    "type": "TypeError", "message": "Cannot read properties of undefined (reading 'amount')",
    "stacktrace": {"frames": [
        {"filename": "webpack:///src/pages/checkout.tsx", "function": "CheckoutPage", "lineno": 12, "colno": 3,
         "inApp": True},
        {"filename": "webpack:///src/lib/payment.ts", "function": "chargeCard", "lineno": 88, "colno": 17,
         "inApp": True}]},
    "tags": {"feature": "payment"}, "extra": {"userId": "user_42", "amount": 49.0},
    "userId": "user_42", "release": "web@1.4.2", "environment": "production", "eventId": "err-1",
    "timestamp": "2026-11-24T10:00:00Z", "context": {"traceId": TRACE_ID, "spanId": SPAN_ID}}


def body(**changes: Any) -> dict[str, Any]:
    """GOOD with keys replaced; a value of `...` removes the key."""
    out = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def parse(obj: Any, config: ErrorsConfig = CONFIG, **kwargs: Any):
    return parse_error(obj, now=NOW, config=config, limits=LIMITS, **kwargs)


def field_of(obj: Any, config: ErrorsConfig = CONFIG) -> str:
    with pytest.raises(EventError) as caught:
        parse(obj, config)
    return caught.value.field


# --- accepted shapes ------------------------------------------------------------------------------

def test_the_documentation_example_is_typed():
    error = parse(GOOD)
    assert (error.type, error.message) == ("TypeError", GOOD["message"])
    assert error.timestamp == 1_795_514_400.0 and error.received_at == NOW
    assert [(f.filename, f.function, f.lineno, f.colno, f.in_app) for f in error.frames] == [
        ("webpack:///src/pages/checkout.tsx", "CheckoutPage", 12, 3, True),
        ("webpack:///src/lib/payment.ts", "chargeCard", 88, 17, True)]
    assert error.tags == {"feature": "payment"} and error.feature == "payment"
    assert error.extra == {"userId": "user_42", "amount": 49.0}
    assert (error.user_id, error.release, error.environment, error.event_id) == ("user_42", "web@1.4.2", "production",
                                                                                 "err-1")
    assert (error.level, error.fingerprint, error.frames_omitted, error.message_truncated) == ("error", None, 0, False)
    assert (error.context.trace_id, error.context.span_id) == (TRACE_ID, SPAN_ID)


def test_snake_case_frames_directly_and_the_minimum():
    error = parse({"type": "ValueError", "frames": [{"abs_path": "/srv/app/pay.py", "function": "charge",
                                                       "in_app": False, "module": "app.pay"}],
                   "user_id": 42, "event_id": 7, "level": "fatal"})
    (frame,) = error.frames
    assert (frame.abs_path, frame.module, frame.in_app, frame.filename) == ("/srv/app/pay.py", "app.pay", False, None)
    assert (error.user_id, error.event_id, error.level, error.message) == ("42", "7", "fatal", "")
    bare = parse({"type": "Error"})
    assert bare.frames == [] and bare.timestamp == NOW and bare.user_id is None and bare.tags == {}


def test_an_empty_frame_string_counts_as_absent():
    (frame,) = parse(body(stacktrace={"frames": [{"filename": "bundle.js", "function": "", "lineno": 1}]})).frames
    assert (frame.filename, frame.function) == ("bundle.js", None)
    assert field_of(body(stacktrace={"frames": [{"function": "", "filename": ""}]})) == "stacktrace.frames[0]"


def test_user_object_gives_its_id_else_its_email_and_nothing_else_is_kept():
    user = {"id": "u_9", "email": "a@example.com", "ip_address": "192.0.2.1"}
    assert parse(body(userId=..., user=user)).user_id == "u_9"
    assert parse(body(userId=..., user={"email": "a@example.com", "username": "al"})).user_id == "a@example.com"
    assert parse(body(userId=..., user={"username": "al"})).user_id is None


def test_nulls_count_as_absent_and_tag_numbers_become_text():
    error = parse(body(message=None, release=None, tags={"feature": "x", "retry": 3, "beta": True, "ratio": 0.5,
                                                         "gone": None}))
    assert error.message == "" and error.release is None
    assert error.tags == {"feature": "x", "retry": "3", "beta": "true", "ratio": "0.5"}


def test_fingerprint_as_a_string_or_a_list():
    assert parse(body(fingerprint="payment-timeout")).fingerprint == ("payment-timeout",)
    assert parse(body(fingerprint=["{{ default }}", "eu"])).fingerprint == ("{{ default }}", "eu")


def test_dnt_header_and_context_dnt():
    assert parse(GOOD, dnt_header=True).context.dnt is True
    assert parse(body(context={"dnt": True})).context.dnt is True
    assert parse(GOOD).context.dnt is False


# --- oversized stacks and messages: cut and marked, never a 400 ----------------------------------

def frames(n: int) -> list[dict[str, Any]]:
    return [{"filename": f"src/f{i}.ts", "function": f"fn{i}", "lineno": i} for i in range(n)]


def test_an_oversized_stack_keeps_its_first_and_last_halves_and_says_how_many_were_omitted():
    config = ErrorsConfig(max_frames=10)
    error = parse(body(stacktrace={"frames": frames(25)}), config)
    assert [f.lineno for f in error.frames] == [0, 1, 2, 3, 4, 20, 21, 22, 23, 24]
    assert (error.frames_omitted, error.frames_omitted_at) == (15, 5)
    exact = parse(body(stacktrace={"frames": frames(10)}), config)
    assert len(exact.frames) == 10 and exact.frames_omitted == 0


def test_a_stack_over_the_default_limit_of_100_frames_is_cut_to_100():
    error = parse(body(stacktrace={"frames": frames(5000)}))
    assert len(error.frames) == 100 and error.frames_omitted == 4900
    assert error.frames[-1].lineno == 4999                 # the frame that raised survives


def test_every_frame_is_validated_even_those_that_are_omitted():
    stack = frames(25)
    stack[12]["lineno"] = "twelve"
    assert field_of(body(stacktrace={"frames": stack}), ErrorsConfig(max_frames=10)) == "stacktrace.frames[12].lineno"


def test_a_long_message_is_cut_and_marked():
    error = parse(body(message="x" * 9000))
    assert len(error.message) == 8192 and error.message_truncated is True
    assert parse(body(message="x" * 8192)).message_truncated is False


# --- every bad input names its field ---------------------------------------------------------------

PII = "alice@example.com 4111 1111 1111 1111"
BAD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("not an object", [GOOD], ""),
    ("no type", body(type=...), "type"),
    ("type of the wrong type", body(type=["TypeError"]), "type"),
    ("empty type", body(type="  "), "type"),
    ("type too long", body(type="E" * 257), "type"),
    ("message of the wrong type", body(message={"text": PII}), "message"),
    ("unknown key", body(exception={"values": []}), "exception"),
    ("camel and snake of one key", body(user_id="u_2"), "user_id"),
    ("stacktrace and frames", body(frames=[]), "frames"),
    ("stacktrace not an object", body(stacktrace=[]), "stacktrace"),
    ("unknown stacktrace key", body(stacktrace={"frames": [], "registers": {}}), "stacktrace.registers"),
    ("frames not an array", body(stacktrace={"frames": {"0": {}}}), "stacktrace.frames"),
    ("frame not an object", body(stacktrace={"frames": ["at x (a.js:1)"]}), "stacktrace.frames[0]"),
    ("frame with no place", body(stacktrace={"frames": [{"lineno": 3}]}), "stacktrace.frames[0]"),
    ("unknown frame key", body(stacktrace={"frames": [{"filename": "a", "registers": {"pw": PII}}]}),
     "stacktrace.frames[0].registers"),
    ("vars not an object", body(stacktrace={"frames": [{"filename": "a", "vars": [PII]}]}),
     "stacktrace.frames[0].vars"),
    ("context line not a string", body(stacktrace={"frames": [{"filename": "a", "context_line": [PII]}]}),
     "stacktrace.frames[0].context_line"),
    ("pre_context not an array", body(stacktrace={"frames": [{"filename": "a", "pre_context": PII}]}),
     "stacktrace.frames[0].pre_context"),
    ("a source line not a string", body(stacktrace={"frames": [{"filename": "a", "postContext": ["ok", {"x": PII}]}]}),
     "stacktrace.frames[0].post_context[1]"),
    ("filename of the wrong type", body(stacktrace={"frames": [{"filename": 3}]}), "stacktrace.frames[0].filename"),
    ("filename too long", body(stacktrace={"frames": [{"filename": "a" * 5000}]}), "stacktrace.frames[0].filename"),
    ("lineno a string", body(stacktrace={"frames": [{"filename": "a", "lineno": "12"}]}),
     "stacktrace.frames[0].lineno"),
    ("lineno a fraction", body(stacktrace={"frames": [{"filename": "a", "lineno": 1.5}]}),
     "stacktrace.frames[0].lineno"),
    ("lineno negative", body(stacktrace={"frames": [{"filename": "a", "lineno": -1}]}), "stacktrace.frames[0].lineno"),
    ("lineno a boolean", body(stacktrace={"frames": [{"filename": "a", "lineno": True}]}),
     "stacktrace.frames[0].lineno"),
    ("colno too large", body(frames=[{"function": "f", "colno": 2**40}], stacktrace=...), "frames[0].colno"),
    ("inApp not a boolean", body(frames=[{"function": "f", "inApp": "yes"}], stacktrace=...), "frames[0].in_app"),
    ("tags not an object", body(tags=["feature:payment"]), "tags"),
    ("a tag name with a space", body(tags={"my tag": "x"}), "tags"),
    ("a tag name that is an e-mail", body(tags={"alice@example.com": "x"}), "tags"),
    ("a tag value too long", body(tags={"feature": "p" * 201}), "tags.feature"),
    ("a tag value an object", body(tags={"feature": {"name": "payment"}}), "tags.feature"),
    ("too many tags", body(tags={f"t{i}": "x" for i in range(51)}), "tags"),
    ("extra not an object", body(extra=[1, 2]), "extra"),
    ("extra too deep", body(extra={"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}), "extra.a.b.c.d.e"),
    ("extra string too long", body(extra={"note": "n" * 5000}), "extra.note"),
    ("extra integer out of range", body(extra={"n": 2**70}), "extra.n"),
    ("user id of the wrong type", body(userId=["user_42"]), "user_id"),
    ("empty user id", body(userId=""), "user_id"),
    ("user id too long", body(userId="u" * 257), "user_id"),
    ("user not an object", body(userId=..., user="user_42"), "user"),
    ("user.id of the wrong type", body(userId=..., user={"id": 4.5}), "user.id"),
    ("user_id and user.id", body(user={"id": "u_2"}), "user.id"),
    ("release with a space", body(release="1.4.2 beta"), "release"),
    ("release with a newline", body(release="1.4.2\n"), "release"),
    ("release too long", body(release="r" * 129), "release"),
    ("release a number", body(release=1.4), "release"),
    ("release an e-mail address", body(release="alice@example.com"), "release"),
    ("environment with a space", body(environment="prod 2"), "environment"),
    ("environment too long", body(environment="e" * 65), "environment"),
    ("unknown level", body(level="critical"), "level"),
    ("fingerprint a number", body(fingerprint=42), "fingerprint"),
    ("fingerprint empty list", body(fingerprint=[]), "fingerprint"),
    ("fingerprint part not a string", body(fingerprint=["a", 3]), "fingerprint[1]"),
    ("fingerprint part empty", body(fingerprint=""), "fingerprint"),
    ("event id too long", body(eventId="e" * 129), "event_id"),
    ("timestamp of the wrong type", body(timestamp=True), "timestamp"),
    ("timestamp in milliseconds", body(timestamp=1_795_514_400_000), "timestamp"),
    ("timestamp in the future", body(timestamp=NOW + 3600), "timestamp"),
    ("timestamp too old", body(timestamp=NOW - 40 * 86400), "timestamp"),
    ("unknown context key", body(context={"locale": "de"}), "context.locale"),
    ("short trace id", body(context={"traceId": TRACE_ID[:-1], "spanId": SPAN_ID}), "context.trace_id"),
]


@pytest.mark.parametrize("case, obj, field", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_names_the_field_and_echoes_no_value(case: str, obj: Any, field: str):
    with pytest.raises(EventError) as caught:
        parse(obj)
    assert caught.value.field == field, str(caught.value)
    assert caught.value.index is None and caught.value.array == "errors"
    assert "alice" not in caught.value.message and "4111" not in caught.value.message


NON_FINITE = [("extra.amount", body(extra={"amount": math.inf})),
              ("extra.list[1]", body(extra={"list": [1, math.nan]})),
              ("stacktrace.frames[0].lineno", body(stacktrace={"frames": [{"filename": "a", "lineno": math.inf}]})),
              ("tags.ratio", body(tags={"ratio": math.nan})), ("timestamp", body(timestamp=math.nan))]


@pytest.mark.parametrize("field, obj", NON_FINITE, ids=[f for f, _ in NON_FINITE])
def test_non_finite_numbers_are_refused_naming_the_field(field: str, obj: dict[str, Any]):
    """JSON cannot carry NaN or Infinity (the API answers `invalid JSON`), but a number may still
    reach the validator as one from another caller: it is refused by name, never stored."""
    assert field_of(obj) == field


# --- batches --------------------------------------------------------------------------------------

def batch(objs: Any, config: ErrorsConfig = CONFIG):
    return parse_error_batch(objs, now=NOW, config=config, limits=LIMITS)


def test_a_batch_is_all_or_nothing_and_lists_every_invalid_error():
    assert [e.event_id for e in batch([GOOD, body(eventId="err-2")])] == ["err-1", "err-2"]
    with pytest.raises(BatchError) as caught:
        batch([GOOD, body(type=...), GOOD, body(level="nope")])
    assert [(e.index, e.field) for e in caught.value.errors] == [(1, "type"), (3, "level")]
    assert str(caught.value.errors[0]) == "errors[1].type: is required"


@pytest.mark.parametrize("objs, message", [({"errors": [GOOD]}, "must be an array, got object"),
                                           ([], "must not be empty"),
                                           ([GOOD] * 3, "must have at most 2 errors (got 3)")])
def test_a_batch_that_is_not_a_list_is_empty_or_too_large_is_one_error(objs: Any, message: str):
    with pytest.raises(BatchError) as caught:
        batch(objs, ErrorsConfig(max_batch=2))
    assert [(e.index, e.field, e.message) for e in caught.value.errors] == [(None, "errors", message)]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=20),
                    lambda inner: (st.lists(inner, max_size=4)
                                   | st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                    max_leaves=20)
KEYS = st.sampled_from(["type", "message", "frames", "stacktrace", "tags", "extra", "userId", "user", "release",
                        "environment", "level", "fingerprint", "eventId", "timestamp", "context", "other"])


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JSON, max_size=8))
def test_arbitrary_json_is_an_error_event_or_an_event_error(obj: dict[str, Any]):
    try:
        parse(obj)
    except EventError:
        pass


# --- the errors: block ------------------------------------------------------------------------------

def parse_block(data: Any) -> tuple[ErrorsConfig, list[str]]:
    errors: list[str] = []
    return parse_errors(Node(data, "errors", errors)), errors


def test_errors_block_defaults_and_every_key():
    assert parse_block(None) == (ErrorsConfig(), [])
    config, problems = parse_block({"max_frames": 50, "max_message_length": 1000, "max_body_bytes": 65536,
                                    "max_batch": 10, "series_limit": 300})
    assert problems == []
    assert config == ErrorsConfig(max_frames=50, max_message_length=1000, max_body_bytes=65536, max_batch=10,
                                  series_limit=300)


@pytest.mark.parametrize("data, message", [
    ({"max_frames": 1}, "errors.max_frames: must be at least 2, got 1"),
    ({"max_batch": "ten"}, "errors.max_batch: must be an integer, got str"),
    ({"max_body_bytes": 10}, "errors.max_body_bytes: must be at least 1024, got 10"),
    ({"series_limit": 0}, "errors.series_limit: must be at least 1, got 0"),
    ({"max_stack": 10}, "errors.max_stack: unknown key"),
])
def test_a_bad_errors_block_names_the_key(data: dict[str, Any], message: str):
    assert message in parse_block(data)[1]
