"""The GDPR endpoints on both databases, on a small app holding the real store and privacy rules:
export (every table, nothing of another user, e-mail ids through their pseudonym), erasure (exact
counts per table, one transaction, other users intact), opt-out (both auth paths, persisted and
reloaded after a restart, applied to the running privacy rules at once), and every bad input a 4xx
naming the field."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiohttp import web

from agent.api.keys import OPT_OUTS, PRIVACY
from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.sink import ErrorSink
from agent.error_tracking.validate import parse_error
from agent.events.opt_outs import OptOuts
from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig
from agent.events.validate import Limits
from agent.metrics.store import MetricStore
from agent.store.gdpr import erase_user, export_user, load_opt_outs, set_opt_out
from agent.store.recordings import ChunkRow, write_chunks
from agent.store.people import group_statement, merge_statements
from agent.store.rows import event_rows
from agent.store.schema import USER_TABLES
from tests.support.store_fixtures import example_event
from tests.support.agent_app import agent_app, served

pytest_plugins = ["tests.support.store_fixtures"]

ADMIN = "admin-token-0123456789abcdef"
INGEST = "ingest-key-0123456789abcdef"
KEY = b"k" * 32
ALICE = "alice@example.com"          # an e-mail used as the user id: stored as its pseudonym
BOB = "user_bob"
ANON = "anon_1"                      # the anonymous id of example_event(user=None)
TABLES = [table for table, _ in USER_TABLES] + ["group_profiles"]       # groups: not a user table, exported
# one event per table the user's data reaches (users: from any of them)
EVENTS = ("onboarding_step_started", "mfa_verification", "login_attempt", "resource_downloaded", "web_vitals")
ONE_EACH = {"events": 5, "users": 1, "onboarding_funnel": 1, "mfa_audit_logs": 1, "security_events": 1,
            "download_logs": 1, "errors": 1, "recording_sessions": 1, "person_aliases": 1, "group_profiles": 1}
# rows that name the user in another column than user_id
PERSON_COLUMN = {"person_aliases": "person_id", "group_profiles": "group_key"}
ERASED = {**ONE_EACH, "recording_chunks": 1}      # an erasure also counts the recordings' chunks


def make_privacy() -> Privacy:
    return Privacy(PrivacyConfig(), KEY)


def seed(run, store, privacy: Privacy) -> None:
    """Alice and Bob: one of each EVENTS (Alice's login from device_a) and one captured error each; an
    anonymous login (its security_events row has no user_id, only its client event id links it) and an
    error without a user; Alice opted out."""
    events = [example_event(name, user=user, event_id=f"{user}-{name}")
              for user in (ALICE, BOB) for name in EVENTS]
    events[EVENTS.index("login_attempt")] = example_event("login_attempt", user=ALICE, event_id="alice-login",
                                                          anonymousId="device_a")
    events.append(example_event("login_attempt", user=None, event_id="anon-login"))
    kept, drops, _ = privacy.apply(events)
    assert len(kept) == len(events) and not drops
    run(store.write_events([event_rows(event) for event in kept]))
    errors = [parse_error({"type": "TypeError", "message": f"charge failed for {user}", "userId": user,
                           "eventId": f"{user}:error"}, now=time.time(), config=ErrorsConfig(), limits=Limits())
              for user in (ALICE, BOB)]
    errors.append(parse_error({"type": "TypeError"}, now=time.time(), config=ErrorsConfig(), limits=Limits()))
    run(ErrorSink(ErrorsConfig(), MetricStore(), privacy).record(errors, store))
    run(set_opt_out(store, privacy.pseudonymize(ALICE), True, "admin", 1.8e9))
    run(write_chunks(store, [ChunkRow.of(f"session-{i}", "window", privacy.pseudonymize(user),
                                         [{"type": 4, "timestamp": 1.8e12, "data": {}}], 1.8e9, 1.8e9)
                             for i, user in enumerate((ALICE, BOB))], 1.8e9))
    # PostHog: each has a second id (an alias: one person) and a group keyed by their id
    for user in (ALICE, BOB):
        stored = privacy.pseudonymize(user)
        run(store.execute([*merge_statements(store.dialect, f"backend-{stored}", stored, 1.8e9),
                           group_statement(store.dialect, "person_company", stored, {"seats": 3}, 1.8e9)]))


class Agent:
    """The real agent (tests/support/agent_app.py) with the ingest key, the admin token, the privacy key
    of make_privacy() and `store` (none: `with_store=False`)."""

    def __init__(self, store: Any, *, with_store: bool = True):
        self.app = agent_app(store if with_store else None,
                             {"events": {"api_keys": [INGEST]}, "privacy": {"hmac_key": KEY.decode()}},
                             admin_token=ADMIN)
        self.privacy = self.app[PRIVACY]

    def call(self, run, *requests: tuple[str, str, dict[str, Any]]) -> list[tuple[int, Any, Any]]:
        """(status, JSON body, headers) of each (method, path, aiohttp request kwargs), in order."""
        async def scenario() -> list[tuple[int, Any, Any]]:
            out = []
            async with served(self.app) as agent:
                for method, path, kwargs in requests:
                    out.append(tuple(await agent.fetch(method, path, **kwargs)))
            return out
        return run(scenario())

    def one(self, run, method: str, path: str, token: str | None = ADMIN, **kwargs: Any) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.call(run, (method, path, {"headers": headers, **kwargs}))[0]


def counts(run, store, privacy: Privacy, user: str) -> dict[str, int]:
    tables = run(export_user(store, [privacy.pseudonymize(user)]))
    return {table: len(rows) for table, rows in tables.items()}


# --- export ------------------------------------------------------------------------------------

def test_export_holds_every_table_of_the_user_and_nothing_of_another(store, run):
    agent = Agent(store)
    seed(run, store, agent.privacy)
    status, body, headers = agent.one(run, "GET", "/api/analytics/export", params={"userId": ALICE})
    assert status == 200
    pseudonym = agent.privacy.pseudonymize(ALICE)
    assert pseudonym.startswith("email:") and ALICE not in pseudonym
    assert (body["userId"], body["pseudonymousId"], body["optedOut"]) == (ALICE, pseudonym, True)
    assert body["anonymousIds"] == ["device_a"]
    assert body["exportedAt"].endswith("Z")
    assert {table: len(rows) for table, rows in body["tables"].items()} == {**ONE_EACH, "opt_outs": 1}
    for table, rows in body["tables"].items():
        assert all(row[PERSON_COLUMN.get(table, "user_id")] == pseudonym for row in rows), table
    assert ALICE not in orjson.dumps(body["tables"]).decode()      # only the pseudonym is held
    assert BOB not in orjson.dumps(body).decode()
    names = sorted(row["name"] for row in body["tables"]["events"])
    assert names == sorted(EVENTS)
    vitals = next(row for row in body["tables"]["events"] if row["name"] == "web_vitals")
    assert vitals["properties"]["name"] == "LCP" and isinstance(vitals["context"], dict)
    assert vitals["retention_class"] == "performance"
    assert isinstance(vitals["ts_unix"], float) and vitals["ts"].endswith("Z") and vitals["ts"][4] == "-"
    (error,) = body["tables"]["errors"]
    assert error["message"] == f"charge failed for {pseudonym}" and error["event_id"] == f"{pseudonym}:error"
    assert isinstance(error["sample"], dict) and error["ts"].endswith("Z")
    assert body["tables"]["opt_outs"][0]["source"] == "admin"
    assert body["tables"]["opt_outs"][0]["opted_out_at"] == "2027-01-15T08:00:00.000Z"
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=\"loom-export-email_") and "@" not in disposition


def test_export_of_a_plain_id_has_no_pseudonymous_id(store, run):
    agent = Agent(store)
    seed(run, store, agent.privacy)
    status, body, _ = agent.one(run, "GET", "/api/analytics/export", params={"userId": BOB})
    assert status == 200 and "pseudonymousId" not in body and body["optedOut"] is False
    assert body["anonymousIds"] == []
    assert {table: len(rows) for table, rows in body["tables"].items()} == {**ONE_EACH, "opt_outs": 0}


def test_export_by_anonymous_id_finds_its_events_and_their_audit_rows(store, run):
    agent = Agent(store)
    seed(run, store, agent.privacy)
    status, body, _ = agent.one(run, "GET", "/api/analytics/export", params={"userId": ANON})
    assert status == 200
    tables = body["tables"]
    assert [row["event_id"] for row in tables["events"]] == ["anon-login"]
    assert [(row["event_id"], row["user_id"]) for row in tables["security_events"]] == [("anon-login", None)]
    assert tables["users"] == [] and tables["mfa_audit_logs"] == []


def test_a_user_with_no_data_is_an_empty_export_not_a_404(store, run):
    status, body, _ = Agent(store).one(run, "GET", "/api/analytics/export", params={"userId": "nobody"})
    assert status == 200
    assert body["tables"] == {table: [] for table in TABLES} and body["optedOut"] is False


@pytest.mark.parametrize("params", [{}, {"userId": ""}, {"userId": "   "}, {"userId": "x" * 513}])
def test_export_without_a_usable_user_id_is_400_naming_it(store, run, params):
    status, body, _ = Agent(store).one(run, "GET", "/api/analytics/export", params=params)
    assert status == 400 and body["errors"][0]["field"] == "userId" and body["error"].startswith("userId: ")


def test_the_admin_endpoints_need_the_admin_token(store, run):
    agent = Agent(store)
    for method, path, kwargs in (("GET", "/api/analytics/export", {"params": {"userId": BOB}}),
                                 ("DELETE", f"/api/analytics/user/{BOB}", {})):
        assert agent.one(run, method, path, token=None, **kwargs)[0] == 401
        assert agent.one(run, method, path, token="not-the-admin-token-at-all", **kwargs)[0] == 403
        assert agent.one(run, method, path, token=INGEST, **kwargs)[0] == 403     # the ingest key is not enough


def test_without_an_event_store_the_endpoints_say_so(store, run):
    agent = Agent(store, with_store=False)
    status, body, _ = agent.one(run, "GET", "/api/analytics/export", params={"userId": BOB})
    assert status == 404 and "store.driver: none" in body["error"]


# --- erasure -----------------------------------------------------------------------------------

def test_erase_returns_exact_counts_and_leaves_other_users_intact(store, run):
    agent = Agent(store)
    seed(run, store, agent.privacy)
    status, body, _ = agent.one(run, "DELETE", f"/api/analytics/user/{ALICE}")
    assert status == 200
    assert body["deleted"] == ERASED          # the opt-out row is kept
    assert body["optedOut"] is True and body["deletedAt"].endswith("Z")
    assert body["pseudonymousId"] == agent.privacy.pseudonymize(ALICE)
    assert counts(run, store, agent.privacy, ALICE) == {**dict.fromkeys(TABLES, 0), "opt_outs": 1}
    assert counts(run, store, agent.privacy, BOB) == {**ONE_EACH, "opt_outs": 0}
    assert counts(run, store, agent.privacy, ANON)["security_events"] == 1
    again = agent.one(run, "DELETE", f"/api/analytics/user/{ALICE}")
    assert again[0] == 200 and again[1]["deleted"] == dict.fromkeys(ERASED, 0)


def test_erase_with_include_opt_out_removes_the_objection_too(store, run):
    agent = Agent(store)
    seed(run, store, agent.privacy)
    pseudonym = agent.privacy.pseudonymize(ALICE)
    agent.privacy.opted_out.add(pseudonym)
    status, body, _ = agent.one(run, "DELETE", f"/api/analytics/user/{ALICE}", params={"includeOptOut": "true"})
    assert status == 200 and body["deleted"] == {**ERASED, "opt_outs": 1} and body["optedOut"] is False
    assert pseudonym not in agent.privacy.opted_out
    assert run(load_opt_outs(store)) == set()


def test_erase_by_anonymous_id_takes_the_linked_audit_rows(store, run):
    agent = Agent(store)
    seed(run, store, agent.privacy)
    status, body, _ = agent.one(run, "DELETE", f"/api/analytics/user/{ANON}")
    assert status == 200
    assert body["deleted"] == {**dict.fromkeys(ERASED, 0), "events": 1, "security_events": 1}
    assert counts(run, store, agent.privacy, BOB) == {**ONE_EACH, "opt_outs": 0}


def test_an_id_with_a_slash_is_erased_through_its_encoded_path(store, run):
    agent = Agent(store)
    run(store.write_events([event_rows(example_event("cta_click", user="team/42"))]))
    status, body, _ = agent.one(run, "DELETE", "/api/analytics/user/team%2F42")
    assert status == 200 and body["userId"] == "team/42" and body["deleted"]["events"] == 1


def test_a_bad_include_opt_out_is_400_naming_it(store, run):
    status, body, _ = Agent(store).one(run, "DELETE", f"/api/analytics/user/{BOB}", params={"includeOptOut": "maybe"})
    assert status == 400 and body["errors"][0]["field"] == "includeOptOut"


class RecordingStore:
    def __init__(self, store: Any):
        self.store, self.transactions, self.dialect = store, [], store.dialect

    async def fetch(self, sql, params=()):
        return await self.store.fetch(sql, params)

    async def execute(self, statements):
        self.transactions.append([sql for sql, _ in statements])
        return await self.store.execute(statements)


def test_erase_is_one_transaction_over_every_table(store, run):
    privacy = make_privacy()
    seed(run, store, privacy)
    recording = RecordingStore(store)
    deleted = run(erase_user(recording, [privacy.pseudonymize(ALICE)], include_opt_out=True))
    assert len(recording.transactions) == 1
    # (on PostgreSQL the person bitmaps' part takes the group-commit writers' advisory lock: no table)
    tables = [sql.split()[2] for sql in recording.transactions[0] if not sql.startswith("SELECT pg_advisory")]
    # derived rows first; then only the funnels' step rollups, recounted from what remains (rollups.py)
    assert [t for t in tables if not t.startswith("rollup_funnel_steps_")][-1] == "events"
    assert tables.index("events") < min((i for i, t in enumerate(tables) if t.startswith("rollup_funnel_steps_")),
                                        default=len(tables))
    assert deleted == {**ERASED, "opt_outs": 1}


# --- opt-out -----------------------------------------------------------------------------------

def opt_out(agent: Agent, run, body: Any, token: str | None = ADMIN, **kwargs: Any) -> tuple[int, Any, Any]:
    data = body if isinstance(body, bytes) or hasattr(body, "__aiter__") else orjson.dumps(body)
    return agent.one(run, "POST", "/api/analytics/opt-out", token=token, data=data, **kwargs)


def test_opt_out_persists_and_survives_a_restart(store, run):
    agent = Agent(store)
    status, body, _ = opt_out(agent, run, {"userId": ALICE})
    pseudonym = agent.privacy.pseudonymize(ALICE)
    assert status == 200 and body["optedOut"] is True and body["updatedAt"].endswith("Z")
    assert body["pseudonymousId"] == pseudonym
    assert pseudonym in agent.privacy.opted_out                  # at once, in the running rules
    assert run(store.fetch("SELECT user_id, source FROM opt_outs")) == [(pseudonym, "admin")]
    # a restart: new privacy rules with the same key, the opt-outs loaded from the database
    restarted = make_privacy()
    restarted.opted_out |= run(load_opt_outs(store))
    kept, drops, _ = restarted.apply([example_event("cta_click", user=ALICE), example_event("cta_click", user=BOB)])
    assert [event.user_id for event in kept] == [BOB] and drops == {"opted_out": 1}


def test_the_ingest_key_may_opt_a_user_out_and_back_in(store, run):
    agent = Agent(store)
    status, _, _ = opt_out(agent, run, {"userId": BOB, "optOut": True}, token=INGEST)
    assert status == 200 and BOB in agent.privacy.opted_out
    assert run(store.fetch("SELECT user_id, source FROM opt_outs")) == [(BOB, "ingest_key")]
    status, body, _ = opt_out(agent, run, {"userId": BOB, "optOut": False},
                              token=None, headers={"X-Loom-Api-Key": INGEST})
    assert status == 200 and body == {"userId": BOB, "optedOut": False, "updatedAt": body["updatedAt"]}
    assert BOB not in agent.privacy.opted_out and run(load_opt_outs(store)) == set()


def test_opting_out_twice_keeps_the_first_record(store, run):
    agent = Agent(store)
    opt_out(agent, run, {"userId": BOB}, token=INGEST)
    first = run(store.fetch("SELECT opted_out_at, source FROM opt_outs"))
    assert opt_out(agent, run, {"userId": BOB})[0] == 200
    assert run(store.fetch("SELECT opted_out_at, source FROM opt_outs")) == first


def test_opt_out_auth_no_token_401_wrong_token_403(store, run):
    agent = Agent(store)
    assert opt_out(agent, run, {"userId": BOB}, token=None)[0] == 401
    status, body, _ = opt_out(agent, run, {"userId": BOB}, token="neither-admin-nor-ingest-key")
    assert status == 403 and "neither" in body["error"]
    assert run(load_opt_outs(store)) == set() and agent.privacy.opted_out == set()


@pytest.mark.parametrize(("body", "field"), [
    ({}, "userId"), ({"userId": ""}, "userId"), ({"userId": 7}, "userId"), ({"userId": "x" * 513}, "userId"),
    ({"userId": BOB, "optOut": "yes"}, "optOut"), ({"userId": BOB, "optOut": None}, "optOut"),
    ({"userId": BOB, "optout": False}, "optout"),       # misspelt: must not silently opt the user out
    (b"{not json", "body"), ([BOB], "body"),
])
def test_bad_opt_out_bodies_are_400_naming_the_field(store, run, body, field):
    agent = Agent(store)
    status, answer, _ = opt_out(agent, run, body)
    assert status == 400 and answer["errors"][0]["field"] == field, answer
    assert run(load_opt_outs(store)) == set()


def test_an_opt_out_body_sent_in_pieces_is_read_whole(store, run):
    async def pieces():
        for piece in (b'{"userId": ', b'"user_bob", ', b'"optOut": true}'):
            yield piece
            await asyncio.sleep(0.02)          # separate chunks of a chunked request body
    agent = Agent(store)
    status, body, _ = opt_out(agent, run, pieces())
    assert status == 200 and body["optedOut"] is True and BOB in agent.privacy.opted_out


def test_an_oversized_opt_out_body_is_413(store, run):
    status, body, _ = opt_out(Agent(store), run, {"userId": BOB, "pad": "x" * 70_000})
    assert status == 413 and body["errors"][0]["field"] == "body"


def test_the_app_loads_the_opt_outs_at_start_and_a_refresh_follows_the_table(store, run):
    run(set_opt_out(store, "user_early", True, "admin", 1.8e9))
    agent = Agent(store)
    privacy = agent.privacy

    async def scenario() -> None:
        runner = web.AppRunner(agent.app)
        await runner.setup()
        try:
            assert privacy.opted_out == {"user_early"}
            # another agent on the same database opts a user out, and withdraws the first one
            await set_opt_out(store, "user_late", True, "ingest_key", 1.8e9)
            await set_opt_out(store, "user_early", False, "admin", 1.8e9)
            assert await agent.app[OPT_OUTS].refresh(store) is True
            assert privacy.opted_out == {"user_late"}
        finally:
            await runner.cleanup()

    run(scenario())


class RacingStore:
    """fetch() lets a local opt-out land while the refresh's read is in flight."""

    def __init__(self, store: Any, during_fetch):
        self.store, self.during_fetch = store, during_fetch

    async def fetch(self, sql, params=()):
        rows = await self.store.fetch(sql, params)
        self.during_fetch()
        return rows


def test_a_refresh_racing_a_local_opt_out_does_not_undo_it(store, run):
    privacy = make_privacy()
    opt_outs = OptOuts(privacy)
    pseudonym = "user_racing"
    racing = RacingStore(store, lambda: opt_outs.apply(pseudonym, True))
    assert run(opt_outs.refresh(racing)) is False
    assert privacy.opted_out == {pseudonym}
