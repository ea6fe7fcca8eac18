"""The stored traits /flags reads (agent/store/person_traits.py): kept in memory, and every write that
changes a person's traits in this process is seen by the next /flags answer: identify, PostHog's $set and
$unset, an alias merge, an event stating the role, an erasure, a retention pass that deletes persons;
misses read together;
the memory bounded; a read under way across a write is not kept."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from agent.api.keys import METRICS, PRIVACY
from agent.store.config import RetentionConfig
from agent.store.gdpr import erase_user
from agent.store.person_traits import StoredTraits, clear_traits, forget_traits, stored_traits
from agent.store.retention import run_cleanup_once
from agent.store.writer import GroupCommitWriter
from tests.support.store_fixtures import example_rows
from tests.test_flags import CONFIG, FLAGS_BLOCK, INGEST_KEY, flags_request

ADMINS = {"key": "admins", "conditions": [{"properties": [{"key": "role", "operator": "exact", "value": "admin"}]}]}
NICKNAMED = {"key": "nicknamed", "conditions": [{"properties": [{"key": "nickname", "operator": "is_set"}]}]}
TRAITS_CONFIG: dict[str, Any] = {**CONFIG, "flags": {**FLAGS_BLOCK, "definitions": [*FLAGS_BLOCK["definitions"],
                                                                                     ADMINS, NICKNAMED]}}
AUTH = {"Authorization": f"Bearer {INGEST_KEY}", "Content-Type": "application/json"}


def counting_reads(store: Any) -> list[Any]:
    """The users reads the store answers from now on (their parameters)."""
    reads: list[Any] = []
    fetch = store.fetch

    async def counting(sql: str, params: Any = ()) -> Any:
        if "FROM users" in sql:
            reads.append(list(params))
        return await fetch(sql, params)
    store.fetch = counting
    return reads


def answer(agent: Any, distinct_id: str, flag: str, **properties: Any) -> dict[str, Any]:
    body = {"token": INGEST_KEY, "distinct_id": distinct_id, **({"person_properties": properties} if properties
                                                                else {})}
    status, out, _ = flags_request(agent, body)
    assert status == 200, out
    flag_answer: dict[str, Any] = out["flags"][flag]
    return flag_answer


def posthog(agent: Any, *events: dict[str, Any]) -> None:
    batch = {"api_key": INGEST_KEY, "batch": [{"timestamp": time.time(), **event} for event in events]}
    status, out, _ = agent.post("/batch/", data=orjson.dumps(batch), headers={"Content-Type": "application/json"})
    assert status == 200, out


def identify(agent: Any, user: str, traits: dict[str, Any]) -> None:
    status, out, _ = agent.post("/v1/identify", data=orjson.dumps({"userId": user, "traits": traits}), headers=AUTH)
    assert status in (200, 202), out


def test_stored_traits_are_read_once_and_the_request_wins(agent_server: Any, sqlite_store: Any) -> None:
    agent = agent_server(CONFIG, store=sqlite_store)
    identify(agent, "pat", {"plan": "pro"})
    reads = counting_reads(sqlite_store)
    first = answer(agent, "pat", "new-checkout")
    assert first["reason"]["code"] in ("condition_match", "out_of_rollout_bound")     # the stored plan matched
    for _ in range(5):
        assert answer(agent, "pat", "new-checkout") == first
    assert len(reads) == 1
    known = stored_traits(sqlite_store)
    assert (known.hits, known.misses, known.reads, len(known)) == (5, 1, 1, 1)
    lookups = agent.app[METRICS].get("loom_feature_flag_traits_lookups").series
    assert lookups == {("hit",): 5, ("miss",): 1}
    assert agent.app[METRICS].get("loom_feature_flag_traits_people").series == {(): 1}
    assert answer(agent, "pat", "new-checkout", plan="free")["reason"]["code"] == "no_condition_match"


def test_every_trait_write_is_seen_by_the_next_flags_answer(agent_server: Any, store: Any, run: Any) -> None:
    """On SQLite and PostgreSQL (the read of several persons in one query is the same SQL on both)."""
    agent = agent_server(TRAITS_CONFIG, store=store)
    stored = agent.app[PRIVACY].pseudonymize
    reads = counting_reads(store)
    plan = answer(agent, "pat", "new-checkout")
    assert plan["reason"]["code"] == "no_condition_match"                  # no row: remembered as such
    assert answer(agent, "pat", "new-checkout") == plan and len(reads) == 1
    identify(agent, "pat", {"plan": "pro"})                                 # identify
    matched = answer(agent, "pat", "new-checkout")["reason"]["code"]
    assert matched in ("condition_match", "out_of_rollout_bound")
    identify(agent, "pat", {"plan": "free"})
    assert answer(agent, "pat", "new-checkout")["reason"]["code"] == "no_condition_match"
    posthog(agent, {"event": "$set", "distinct_id": "pat", "properties": {"$set": {"plan": "team"}}})   # $set
    assert answer(agent, "pat", "new-checkout")["reason"]["code"] == matched
    assert answer(agent, "pat", "nicknamed")["enabled"] is False
    posthog(agent, {"event": "$set", "distinct_id": "pat", "properties": {"$set": {"nickname": "P"}}})
    assert answer(agent, "pat", "nicknamed")["enabled"] is True
    posthog(agent, {"event": "$set", "distinct_id": "pat", "properties": {"$unset": ["nickname"]}})    # $unset
    assert answer(agent, "pat", "nicknamed")["enabled"] is False
    # an alias merge: the anonymous id's nickname becomes the person's, the anonymous id's row goes
    posthog(agent, {"event": "$set", "distinct_id": "anon-7", "properties": {"$set": {"nickname": "A"}}})
    assert answer(agent, "anon-7", "nicknamed")["enabled"] is True
    posthog(agent, {"event": "$identify", "distinct_id": "pat", "properties": {"$anon_distinct_id": "anon-7"}})
    assert answer(agent, "pat", "nicknamed")["enabled"] is True
    assert answer(agent, "anon-7", "nicknamed")["enabled"] is False
    # an event stating the role (the event writer's users upsert)
    assert answer(agent, "pat", "admins")["enabled"] is False

    async def commit_role() -> None:
        writer = GroupCommitWriter(store)
        writer.start()
        await writer.submit([example_rows("onboarding_personalization", user=stored("pat"), props={"role": "admin"})])
        await writer.stop()
    run(commit_role())
    assert answer(agent, "pat", "admins")["enabled"] is True
    # an erasure
    run(erase_user(store, [stored("pat")]))
    assert answer(agent, "pat", "admins")["enabled"] is False
    assert answer(agent, "pat", "new-checkout")["reason"]["code"] == "no_condition_match"


class FakeStore:
    """A store answering users reads from a dict, one await per read, counting them (a unit test's fake)."""

    dialect = "sqlite"

    def __init__(self, rows: dict[str, dict[str, Any]]):
        self.rows = rows
        self.queries: list[list[Any]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def fetch(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self.queries.append(list(params))
        rows = [(p, orjson.dumps(self.rows[p]), None, None, None) for p in params if p in self.rows]  # read now
        if self.gate is not None:
            await self.gate.wait()          # ... answered later
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        return rows


def decode(row: tuple[Any, ...]) -> dict[str, Any]:
    traits: dict[str, Any] = orjson.loads(row[0])
    return traits


def test_misses_meanwhile_are_read_in_one_query_and_a_person_once(run: Any) -> None:
    store: Any
    store, known = FakeStore({"a": {"plan": "pro"}, "c": {"plan": "free"}}), StoredTraits()

    async def burst() -> Any:
        return await asyncio.gather(*(known.read(store, p, decode) for p in ("a", "b", "c", "a")))
    assert run(burst()) == [{"plan": "pro"}, {}, {"plan": "free"}, {"plan": "pro"}]
    assert store.queries == [["a", "b", "c"]]
    assert known.cached("a") == {"plan": "pro"} and known.cached("b") == {} and known.cached("zed") is None
    assert (known.hits, known.misses, known.reads) == (2, 1, 1)


def test_a_read_under_way_across_a_write_is_answered_but_not_kept(run: Any) -> None:
    store: Any
    store, known = FakeStore({"a": {"plan": "pro"}}), StoredTraits()

    async def across_a_write() -> dict[str, Any]:
        store.gate = asyncio.Event()
        pending = asyncio.ensure_future(known.read(store, "a", decode))
        await asyncio.sleep(0.01)
        store.rows["a"] = {"plan": "team"}
        forget_traits(store, ["a"])     # nothing: this store has no cache of its own (known is separate)
        known.forget(["a"])
        store.gate.set()
        return await pending
    assert run(across_a_write()) == {"plan": "pro"}        # what was stored when the read ran
    assert known.cached("a") is None                         # not kept: the next answer reads again


def test_a_failed_read_raises_to_every_waiter_and_keeps_nothing(run: Any) -> None:
    store: Any
    store, known = FakeStore({"a": {"plan": "pro"}}), StoredTraits()
    store.fail = OSError("disk")

    async def failing() -> Any:
        return await asyncio.gather(known.read(store, "a", decode), known.read(store, "b", decode),
                                    return_exceptions=True)
    assert [type(r) for r in run(failing())] == [OSError, OSError]
    assert known.cached("a") is None
    store.fail = None
    assert run(known.read(store, "a", decode)) == {"plan": "pro"}


def test_memory_is_bounded_least_recently_used_first_and_entries_expire() -> None:
    now = [0.0]
    known = StoredTraits(max_people=10, ttl=30.0, clock=lambda: now[0])
    for i in range(10):
        known._keep(f"p{i}", {"i": i})
    assert known.cached("p0") == {"i": 0}                   # p0 is now the most recently used
    known._keep("p10", {"i": 10})                             # full: the least recently used (p1) goes
    assert len(known) == 10 and known.cached("p1") is None and known.cached("p0") == {"i": 0}
    now[0] = 31.0
    assert known.cached("p0") is None and known.cached("p10") is None   # another process may have written
    known._keep("q", {})
    known.clear()
    assert len(known) == 0


def test_writers_reach_the_cache_of_their_store(sqlite_store: Any) -> None:
    known = stored_traits(sqlite_store)
    assert stored_traits(sqlite_store) is known
    known._keep("a", {"x": 1})
    known._keep("b", {"x": 2})
    forget_traits(sqlite_store, ["a"])
    assert known.cached("a") is None and known.cached("b") == {"x": 2}
    clear_traits(sqlite_store)
    assert len(known) == 0


def test_a_retention_pass_that_deletes_persons_forgets_the_traits(agent_server: Any, sqlite_store: Any,
                                                                  run: Any) -> None:
    agent = agent_server(CONFIG, store=sqlite_store)
    identify(agent, "pat", {"plan": "pro"})
    assert answer(agent, "pat", "new-checkout")["reason"]["code"] != "no_condition_match"
    run(run_cleanup_once(sqlite_store, RetentionConfig(), time.time() + 91 * 86400))   # pat's row is past 90 days
    assert answer(agent, "pat", "new-checkout")["reason"]["code"] == "no_condition_match"
    identify(agent, "sam", {"plan": "pro"})
    assert answer(agent, "sam", "new-checkout")["reason"]["code"] != "no_condition_match"
    run(run_cleanup_once(sqlite_store, RetentionConfig(), time.time()))                 # deletes no person
    assert len(stored_traits(sqlite_store)) == 2                     # kept: pat (no row now) and sam
