"""Identify: the payload's validation (every bad-input case names its field), PostHog's $set / $set_once,
privacy on traits, the users upsert on SQLite and a real PostgreSQL, and POST /v1/identify over real HTTP
on 127.0.0.1 (auth, 400s, DNT and opt-out, 503s)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from agent.api.keys import PIPELINE
from agent.events.identify import (
    Identify,
    parse_identifies,
    parse_trait_time,
    posthog_identify,
    posthog_person,
    scrub_identify,
)
from agent.events.limits import Limits
from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig
from agent.events.properties import FieldError
from agent.events.validate import BatchError
from agent.store.base import Store
from agent.store.gdpr import set_opt_out
from agent.store.rows import event_rows
from agent.store.traits import store_identifies
from tests.support.agent_app import ServedAgent
from tests.support.procs import AgentProcess
from tests.support.store_fixtures import example_event
from tests.test_openapi import DOC, documented, errors_of, validator

pytest_plugins = ["tests.support.store_fixtures"]

NOW = 1_795_514_405.0                     # 2026-11-24T10:00:05Z
LIMITS = Limits()
KEY = "identify-ingest-key-0123456789"
HMAC_KEY = "identify-test-hmac-key-0123456789abcdef"
PRIVACY_RULES = Privacy(PrivacyConfig(private_properties=("phone",)), HMAC_KEY.encode())


def one(body: Any, now: float = NOW) -> Identify:
    [found] = parse_identifies(body, now=now, limits=LIMITS)
    return found


def error_of(body: Any) -> tuple[int | None, str, str]:
    with pytest.raises(BatchError) as caught:
        parse_identifies(body, now=NOW, limits=LIMITS)
    [error] = caught.value.errors
    return error.index, error.field, error.message


# --- validation -----------------------------------------------------------------------------------

def test_a_full_identify_is_typed_with_snake_case_traits():
    found = one({"userId": 42, "timestamp": "2026-11-24T10:00:00Z",
                 "traits": {"role": "coach", "signupDate": "2025-03-01T00:00:00Z", "plan": "pro",
                            "email": "Ada@Example.com", "favouriteColor": "teal", "seats": 3,
                            "address": {"city": "Berlin"}, "nothing": None},
                 "traitsOnce": {"firstReferrer": "newsletter"}})
    assert found == Identify("42", NOW - 5, {"role": "coach", "signup_date": 1740787200.0, "plan": "pro",
                                             "email": "Ada@Example.com", "favourite_color": "teal", "seats": 3,
                                             "address": {"city": "Berlin"}},
                             {"first_referrer": "newsletter"})


@pytest.mark.parametrize("key", ["signupDate", "signup_date", "createdAt", "created_at", "signedUpAt", "signed_up_at"])
def test_every_spelling_of_the_sign_up_date_and_unix_seconds(key: str):
    assert one({"user_id": "u", "traits": {key: 1740787200}}).traits == {"signup_date": 1740787200.0}


def test_the_id_spellings_and_the_default_time():
    assert one({"distinct_id": "u1"}) == Identify("u1", NOW)
    assert one({"distinctId": "u1", "traits": {}}).user_id == "u1"


BAD = [
    ("not an object", "nope", None, "", "must be an object or an array, got string"),
    ("no user id", {"traits": {"role": "coach"}}, None, "user_id", "is required"),
    ("empty user id", {"userId": ""}, None, "user_id", "1 to 256"),
    ("user id of the wrong type", {"userId": ["u"]}, None, "user_id", "must be a string, got array"),
    ("two user id spellings", {"userId": "a", "user_id": "b"}, None, "user_id", "given twice"),
    ("unknown key", {"userId": "u", "properties": {}}, None, "properties", "unknown key"),
    ("traits not an object", {"userId": "u", "traits": ["coach"]}, None, "traits", "must be an object"),
    ("role not a string", {"userId": "u", "traits": {"role": 1}}, None, "traits.role", "must be a string"),
    ("empty role", {"userId": "u", "traits": {"role": ""}}, None, "traits.role", "1 to 64"),
    ("long role", {"userId": "u", "traits": {"role": "r" * 65}}, None, "traits.role", "1 to 64"),
    ("long plan", {"userId": "u", "traits": {"plan": "p" * 129}}, None, "traits.plan", "1 to 128"),
    ("sign-up date not a time", {"userId": "u", "traits": {"signupDate": "yesterday"}}, None,
     "traits.signup_date", "RFC 3339"),
    ("sign-up date in milliseconds", {"userId": "u", "traits": {"createdAt": 1740787200000}}, None,
     "traits.signup_date", "milliseconds"),
    ("sign-up date before 1970", {"userId": "u", "traits": {"signupDate": -5}}, None, "traits.signup_date",
     "before 1970"),
    ("sign-up date in the future", {"userId": "u", "traits": {"signupDate": NOW + 3600}}, None,
     "traits.signup_date", "future"),
    ("two sign-up date spellings", {"userId": "u", "traits": {"signupDate": 1, "createdAt": 2}}, None,
     "traits.signup_date", "given twice"),
    ("e-mail that is not an address", {"userId": "u", "traits": {"email": "ada at example"}}, None,
     "traits.email", "e-mail address"),
    ("e-mail not a string", {"userId": "u", "traits": {"email": 5}}, None, "traits.email", "must be a string"),
    ("bad trait name", {"userId": "u", "traits": {"a b": 1}}, None, "traits", "invalid property name"),
    ("too long a string", {"userId": "u", "traits": {"bio": "x" * 5000}}, None, "traits.bio", "4096"),
    ("too deep", {"userId": "u", "traits": {"deep": [[[[[[1]]]]]]}}, None, "traits.deep[0][0][0][0][0]", "nested"),
    ("too many traits", {"userId": "u", "traits": {f"t{i}": i for i in range(101)}}, None, "traits", "at most 100"),
    ("once-traits not an object", {"userId": "u", "traitsOnce": 3}, None, "traits_once", "must be an object"),
    ("a bad once-trait", {"userId": "u", "traits_once": {"role": 7}}, None, "traits_once.role", "must be a string"),
    ("timestamp too old", {"userId": "u", "timestamp": "2020-01-01T00:00:00Z"}, None, "timestamp", "in the past"),
    ("empty batch", [], None, "identifies", "1 to 1000"),
]


@pytest.mark.parametrize("case, body, index, field, words", BAD, ids=[c[0] for c in BAD])
def test_bad_identifies_name_the_field(case: str, body: Any, index: int | None, field: str, words: str):
    got_index, got_field, message = error_of(body)
    assert (got_index, got_field) == (index, field), case
    assert words in message, (case, message)


def test_a_batch_is_all_or_nothing_and_lists_every_bad_item():
    good = {"userId": "u1", "traits": {"role": "client"}}
    with pytest.raises(BatchError) as caught:
        parse_identifies([good, {"traits": {}}, good, {"userId": "u", "traits": {"role": 3}}], now=NOW, limits=LIMITS)
    assert [(e.index, e.field) for e in caught.value.errors] == [(1, "user_id"), (3, "traits.role")]
    assert str(caught.value.errors[1]) == "identifies[3].traits.role: must be a string, got integer"
    assert len(parse_identifies([good] * 3, now=NOW, limits=LIMITS)) == 3
    with pytest.raises(BatchError):
        parse_identifies([good] * 3, now=NOW, limits=Limits(max_batch=2))


# --- PostHog ------------------------------------------------------------------------------------------

def test_posthog_identify_maps_set_and_set_once_and_drops_posthog_own_traits():
    event = {"event": "$identify", "distinct_id": "user_7", "timestamp": "2026-11-24T10:00:00Z",
             "properties": {"$anon_distinct_id": "anon-1", "$set": {"role": "coach", "$browser": "Firefox"},
                            "$set_once": {"signupDate": "2025-01-01T00:00:00Z", "$initial_referrer": "x"}}}
    assert posthog_identify(event, NOW, LIMITS) == Identify("user_7", NOW - 5, {"role": "coach"},
                                                            {"signup_date": 1735689600.0})
    # $set on any event, at the top level as older libraries send it
    assert posthog_identify({"event": "x", "distinct_id": "u", "$set": {"plan": "pro"}}, NOW, LIMITS).traits == \
        {"plan": "pro"}


def test_posthog_events_without_person_traits_or_of_anonymous_visitors_set_nothing():
    assert posthog_identify({"event": "$pageview", "distinct_id": "u", "properties": {}}, NOW, LIMITS) is None
    anonymous = {"event": "x", "distinct_id": "a", "properties": {"$is_identified": False, "$set": {"plan": "p"}}}
    assert posthog_identify(anonymous, NOW, LIMITS) is None


def test_posthog_identify_drops_a_bad_trait_alone_and_names_a_bad_person():
    # issue 14: one bad trait is dropped and counted, never the whole batch; dates in the forms people send
    event = {"event": "$identify", "distinct_id": "u", "properties": {
        "$set": {"role": 5, "plan": "team", "createdAt": "2026-01-15"},
        "$set_once": {"signupDate": "2099-01-01", "first_plan": "free"}, "$unset": ["old_trait", 7]}}
    person, dropped = posthog_person(event, NOW, LIMITS)
    assert person == Identify("u", NOW, {"plan": "team", "signup_date": 1768435200.0}, {"first_plan": "free"},
                              ("old_trait",))
    assert dropped == 3                         # the role, the future sign-up date, the $unset that is no name
    assert posthog_person({"event": "$set", "distinct_id": "u", "$set_once": "pro"}, NOW, LIMITS)[1] == 1
    with pytest.raises(FieldError) as caught:
        posthog_identify({"event": "$identify", "properties": {"$set": {}}}, NOW, LIMITS)
    assert caught.value.field == "distinct_id"


@pytest.mark.parametrize("value, when", [
    ("2026-01-15", 1768435200.0), ("2026-01-15T10:30:00Z", 1768473000.0), ("2026-01-15T10:30:00", 1768473000.0),
    ("2026-01-15T10:30:00.123456", 1768473000.123456), ("2026-01-15 10:30", 1768473000.0),
    ("2026-01-15T11:30:00+01:00", 1768473000.0), (1768435200, 1768435200.0)])
def test_trait_dates_in_the_forms_people_send(value: Any, when: float):
    assert parse_trait_time(value) == pytest.approx(when)
    assert parse_identifies({"userId": "u", "traits": {"signupDate": value}}, now=NOW, limits=LIMITS)[0].traits == \
        {"signup_date": pytest.approx(when)}


# --- privacy ------------------------------------------------------------------------------------------

def test_traits_are_scrubbed_like_event_properties():
    found = one({"userId": "Ada@Example.com", "traits": {
        "email": "ada@example.com", "password": "hunter2", "apiToken": "t0k3n", "phone": "+49 30 1234",
        "note": "card 4111 1111 1111 1111, mail ada@example.com", "role": "client"},
        "traitsOnce": {"clientSecret": "x", "backupEmail": "b@example.org"}})
    scrubbed, reason = scrub_identify(PRIVACY_RULES, found)
    assert reason is None and scrubbed is not None
    pseudonym = PRIVACY_RULES.pseudonymize("ada@example.com")
    assert scrubbed.user_id == pseudonym                       # the same pseudonym as the user's events
    assert scrubbed.traits == {"email": pseudonym, "phone": "[private]", "note": f"card [card], mail {pseudonym}",
                               "role": "client"}
    assert scrubbed.traits_once == {"backup_email": PRIVACY_RULES.pseudonymize("b@example.org")}
    assert "example.com" not in orjson.dumps([scrubbed.traits, scrubbed.traits_once]).decode().lower()


def test_do_not_track_and_opted_out_users_are_dropped():
    rules = Privacy(PrivacyConfig(dnt="anonymize", opted_out="anonymize"), HMAC_KEY.encode())
    rules.opted_out.add(rules.pseudonymize("gone@example.com"))
    assert scrub_identify(rules, one({"userId": "u1", "traits": {"role": "coach"}}), dnt=True) == (None, "dnt")
    assert scrub_identify(rules, one({"userId": "Gone@Example.com"})) == (None, "opted_out")


# --- the users upsert, on both databases ------------------------------------------------------------

def users(store: Store, run) -> dict[str, tuple[Any, ...]]:
    rows = run(store.fetch("SELECT user_id, first_seen, last_seen, role, plan, signed_up_at, traits FROM users"))
    return {row[0]: (*row[1:6], orjson.loads(row[6]) if isinstance(row[6], str) else row[6]) for row in rows}


def test_a_new_user_is_first_seen_at_the_identify(store, run):
    run(store_identifies(store, [one({"userId": "u1", "timestamp": NOW - 60,
                                      "traits": {"role": "coach", "plan": "pro", "signupDate": 1740787200,
                                                 "seats": 3, "tags": ["a", "b"], "flag": False}})]))
    assert users(store, run) == {"u1": (NOW - 60, NOW - 60, "coach", "pro", 1740787200.0,
                                        {"seats": 3, "tags": ["a", "b"], "flag": False})}


def test_traits_merge_trait_by_trait_and_once_traits_only_fill_gaps(store, run):
    run(store.write_events([event_rows(example_event("cta_click", user="u1", ts=NOW - 3600))]))
    run(store_identifies(store, [one({"userId": "u1", "traits": {"role": "coach", "plan": "pro",
                                                                 "address": {"city": "Berlin", "zip": "10115"},
                                                                 "seats": 3}})]))
    run(store_identifies(store, [one({"userId": "u1", "traits": {"plan": "team", "address": {"city": "Paris"},
                                                                 "lang": "fr"},
                                      "traitsOnce": {"role": "client", "seats": 9, "signupDate": 1740787200,
                                                     "referrer": "ad"}})]))
    # first/last seen stay the user's activity; a nested object is replaced whole; once-traits fill gaps
    assert users(store, run) == {"u1": (NOW - 3600, NOW - 3600, "coach", "team", 1740787200.0,
                                        {"address": {"city": "Paris"}, "seats": 3, "lang": "fr", "referrer": "ad"})}
    run(store_identifies(store, [one({"userId": "u1", "traits": {"signupDate": 1740787300, "seats": None}})]))
    assert users(store, run)["u1"][4:] == (1740787300.0, {"address": {"city": "Paris"}, "seats": 3, "lang": "fr",
                                                          "referrer": "ad"})


def test_later_events_keep_the_identified_traits_and_move_first_seen_back(store, run):
    run(store_identifies(store, [one({"userId": "u1", "timestamp": NOW, "traits": {"role": "coach"}})]))
    run(store.write_events([event_rows(example_event("cta_click", user="u1", ts=NOW - 7200)),
                            event_rows(example_event("cta_click", user="u1", ts=NOW + 60))]))
    assert users(store, run)["u1"][:4] == (NOW - 7200, NOW + 60, "coach", None)


def test_one_transaction_for_a_batch_in_user_order_with_repeats_applied_in_order(store, run):
    run(store_identifies(store, parse_identifies(
        [{"userId": "b", "traits": {"plan": "one"}}, {"userId": "a", "traits": {"plan": "x"}},
         {"userId": "b", "traits": {"plan": "two"}}], now=NOW, limits=LIMITS)))
    assert {user: row[3] for user, row in users(store, run).items()} == {"a": "x", "b": "two"}


# --- POST /v1/identify over HTTP --------------------------------------------------------------------

CONFIG = {"events": {"api_keys": [KEY], "max_body_bytes": 4096},
          "privacy": {"hmac_key": HMAC_KEY, "private_properties": ["phone"]}}      # PRIVACY_RULES' settings
AUTH = {"Authorization": f"Bearer {KEY}"}


def post(agent: ServedAgent, calls: list[tuple[Any, dict[str, str]]]) -> list[tuple[int, Any, Any]]:
    """POST /v1/identify with each (body, headers): (status, JSON body, headers) of each."""
    return [tuple(agent.post("/v1/identify", data=body if isinstance(body, bytes) else orjson.dumps(body),
                             headers=headers)) for body, headers in calls]


def dropped(app: web.Application) -> dict[tuple[str, ...], float]:
    return dict(app[PIPELINE].metrics.dropped.series)


def test_identify_over_http_commits_before_the_200(store, run, agent_server):
    agent = agent_server(CONFIG, store=store)
    answers = post(agent, [
        ({"userId": "Ada@Example.com", "traits": {"role": "coach", "email": "ada@example.com"}}, AUTH),
        ([{"userId": "u2", "traits": {"plan": "pro"}}, {"userId": "u3"}], AUTH),
        ({"userId": "u4", "traits": {"role": "client"}}, {**AUTH, "DNT": "1"}),
    ])
    assert [(status, body) for status, body, _ in answers] == [
        (200, {"accepted": 1, "stored": 1, "dropped": 0}), (200, {"accepted": 2, "stored": 2, "dropped": 0}),
        (200, {"accepted": 1, "stored": 0, "dropped": 1})]
    pseudonym = PRIVACY_RULES.pseudonymize("ada@example.com")
    stored = users(store, run)
    assert set(stored) == {pseudonym, "u2", "u3"}
    assert stored[pseudonym][2] == "coach" and stored[pseudonym][5] == {"email": pseudonym}
    assert dropped(agent.app) == {("dnt",): 1.0}


def test_identify_auth_and_bad_bodies_are_4xx_naming_the_field(sqlite_store, agent_server):
    answers = post(agent_server(CONFIG, store=sqlite_store), [
        ({"userId": "u"}, {}),
        ({"userId": "u"}, {"Authorization": "Bearer wrong-key-0123456789"}),
        (b"{not json", AUTH),
        (b"[" + b" " * 5000 + b"]", AUTH),
        ({"userId": "u", "traits": {"signupDate": "soon"}}, AUTH),
        ([{"userId": "u"}, {"userId": 1.5}, {"traits": {}}], AUTH),
    ])
    assert [status for status, _, _ in answers] == [401, 403, 400, 413, 400, 400]
    assert answers[4][1]["errors"] == [{"index": None, "field": "traits.signup_date",
                                        "message": answers[4][1]["errors"][0]["message"]}]
    assert answers[4][1]["error"].startswith("traits.signup_date: must be an RFC 3339")
    assert answers[5][1]["error"] == "2 invalid identifies; none was accepted"
    assert [(e["index"], e["field"]) for e in answers[5][1]["errors"]] == [(1, "user_id"), (2, "user_id")]


def test_an_opted_out_user_is_dropped_and_counted(sqlite_store, run, agent_server):
    run(set_opt_out(sqlite_store, "u9", True, "admin", 1.8e9))      # the app loads the list at start
    agent = agent_server(CONFIG, store=sqlite_store)
    answers = post(agent, [({"userId": "u9", "traits": {"role": "coach"}}, AUTH)])
    assert answers[0][:2] == (200, {"accepted": 1, "stored": 0, "dropped": 1})
    assert run(sqlite_store.fetch("SELECT count(*) FROM users")) == [(0,)]
    assert dropped(agent.app) == {("opted_out",): 1.0}


def test_no_store_or_a_failing_store_is_503_never_500(sqlite_store, run, agent_server):
    status, body, _ = post(agent_server(CONFIG), [({"userId": "u"}, AUTH)])[0]
    assert (status, body) == (503, {"error": "the event store is disabled: traits have nowhere to go"})

    agent = agent_server(CONFIG, store=sqlite_store)
    run(sqlite_store.close())                               # under the running app: every write now fails
    status, body, headers = post(agent, [({"userId": "u"}, AUTH)])[0]
    assert status == 503 and headers["Retry-After"] == "5"
    assert body["error"] == "the event store cannot take traits now (StoreUnavailable); retry after 5 s"


# --- through a running agent: /v1/identify and PostHog's $identify, then the GDPR export ----------------

def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


@pytest.mark.slow
def test_a_running_agent_stores_identify_and_posthog_traits(tmp_path: Path):
    token = "admin-token-for-the-identify-tests"
    config = {"store": {"driver": "sqlite", "path": str(tmp_path / "store.db")}, "api": {"admin_tokens": [token]},
              "events": {"api_keys": [KEY]}, "retention": {"interval": 0}}
    agent = AgentProcess(tmp_path, config, env={"LOOM_AGENT_HMAC_KEY": HMAC_KEY})
    try:
        status, body = http_json("POST", agent.url + "/v1/identify",
                                 {"userId": "u1", "traits": {"role": "coach", "email": "ada@example.com"}}, AUTH)
        assert (status, body) == (200, {"accepted": 1, "stored": 1, "dropped": 0})
        capture = {"api_key": KEY, "event": "$identify", "distinct_id": "u2", "timestamp": time.time(),
                   "properties": {"$set": {"plan": "team", "role": "client"}, "$set_once": {"signupDate": 1740787200}}}
        assert http_json("POST", agent.url + "/capture", capture)[0] == 200
        batch = {"api_key": KEY, "batch": [{"event": "cta_click", "distinct_id": "u1", "properties": {
            "cta_id": "x", "$set": {"plan": "pro"}}}]}
        assert http_json("POST", agent.url + "/batch", batch)[0] == 200
        # posthog-python's set_once with a date-only created_at, and a bad role beside it: the batch is kept
        lenient = {"api_key": KEY, "batch": [{"event": "$set_once", "distinct_id": "u3", "timestamp": time.time(),
                                              "$set_once": {"created_at": "2026-01-15"}, "properties": {}},
                                             {"event": "$identify", "distinct_id": "u3",
                                              "properties": {"$set": {"role": 3, "plan": "solo"}}}]}
        assert http_json("POST", agent.url + "/batch", lenient) == (200, {"status": 1})
        dropped = http_text(agent.url + "/metrics")
        exports = {user: http_json("GET", agent.url + f"/api/analytics/export?userId={user}",
                                   headers={"Authorization": f"Bearer {token}"}) for user in ("u1", "u2", "u3")}
    finally:
        agent.stop()
    pseudonym = Privacy(PrivacyConfig(), HMAC_KEY.encode()).pseudonymize("ada@example.com")
    [u1] = exports["u1"][1]["tables"]["users"]
    [u2] = exports["u2"][1]["tables"]["users"]
    assert (u1["role"], u1["plan"], u1["traits"]) == ("coach", "pro", {"email": pseudonym})
    assert (u2["role"], u2["plan"], u2["signed_up_at_unix"]) == ("client", "team", 1740787200.0)
    [u3] = exports["u3"][1]["tables"]["users"]
    assert (u3["role"], u3["plan"], u3["signed_up_at_unix"]) == (None, "solo", 1768435200.0)
    assert 'loom_agent_posthog_dropped_total{kind="trait"} 1' in dropped


# --- the OpenAPI document agrees ---------------------------------------------------------------------

def request_schema(path: str):
    return validator(DOC["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"])


def request_examples(path: str) -> dict[str, Any]:
    found = DOC["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
    return {name: example["value"] for name, example in found.items()}


def test_the_documented_examples_pass_the_schema_and_the_agent():
    check = request_schema("/v1/identify")
    for name, example in request_examples("/v1/identify").items():
        assert errors_of(check, example) == [], name
        parse_identifies(example, now=NOW, limits=LIMITS)


@pytest.mark.parametrize("body", [{"traits": {"role": "coach"}}, {"userId": "u", "properties": {}},
                                  {"userId": "u", "traits": {"role": "r" * 65}}, {"userId": "u", "traits": []},
                                  [], "nope"])
def test_what_the_agent_rejects_the_schema_rejects(body: Any):
    assert errors_of(request_schema("/v1/identify"), body)
    with pytest.raises(BatchError):
        parse_identifies(body, now=NOW, limits=LIMITS)


def test_the_answers_are_the_documented_ones(sqlite_store, run, agent_server):
    answers = post(agent_server(CONFIG, store=sqlite_store), [
        ({"userId": "u"}, AUTH), ({"userId": "u"}, {}),
        ({"userId": "u"}, {"Authorization": "Bearer wrong-key-0123456789"}),
        ({"traits": {}}, AUTH), (b"[" + b" " * 5000 + b"]", AUTH)])
    failing = agent_server(CONFIG, store=sqlite_store)
    run(sqlite_store.close())                               # under the running app: writes fail
    answers += post(failing, [({"userId": "u"}, AUTH)]) + post(agent_server(CONFIG), [({"userId": "u"}, AUTH)])
    assert [status for status, _, _ in answers] == [200, 401, 403, 400, 413, 503, 503]
    for status, body, headers in answers:
        check = documented("/v1/identify", "POST", status, headers["Content-Type"])
        assert errors_of(check, body) == [], (status, body)
