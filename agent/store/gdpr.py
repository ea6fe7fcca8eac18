"""GDPR rights over the store: access / portability (export), erasure, and the persisted objection
(opt-out) list.

Every function takes the user ids AS STORED: after privacy, so an e-mail used as an id must already
be its pseudonym (`Privacy.pseudonymize`). A user's rows are those whose user column is one of the
ids (schema.USER_TABLES), plus the events whose `anonymous_id` is one of them (what a client sent
before it knew the user), plus the audit-table rows derived from those anonymous events (linked
through the client's event id: a derived row carries the event's user_id, NULL for an anonymous event).
PostHog aliases (agent/store/people.py) make several ids one person: the ids asked for are extended
with the ids they are one person with, so the export and the erasure see the whole person whichever
of its ids is given; their `person_aliases` rows go with them. Groups are not persons: the export shows
the groups the person's events name (`$groups`) and any group keyed by one of the person's ids; the
erasure deletes only the latter (a company's group stays for its other members).
Rollups (agent/store/rollups.py): the erasure takes the person's rows of every per-person rollup (activity,
their work, their coach-client days) and subtracts the erased events from the counts and value sketches,
in the same transaction, so every rollup then equals what the remaining events give.
Session recordings: the export holds each of the user's `recording_sessions` with its rrweb events
(`events`); erasure takes the user's sessions and every chunk of them, and any chunk naming the user.

The queries are written once with `?` placeholders and run on both drivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from agent.store import person_bits, rollups, signup_bits, user_index
from agent.store.base import Store
from agent.store.person_traits import clear_traits
from agent.store.recordings import SESSION_COLUMNS, erase_chunks_statement, user_session_events
from agent.store.rows import EVENT_COLUMNS, TABLE_COLUMNS
from agent.store.schema import USER_TABLES

# every column a user may read back, per table (the internal `id` is left out: it means nothing outside)
COLUMNS: dict[str, tuple[str, ...]] = {
    "events": EVENT_COLUMNS,
    "users": ("user_id", "first_seen", "last_seen", "role", "plan", "signed_up_at", "traits"),
    **TABLE_COLUMNS,
    "errors": ("event_id", "fingerprint", "ts", "received_at", "user_id", "release", "environment", "feature",
               "type", "message", "sample"),
    "opt_outs": ("user_id", "opted_out_at", "source"),
    "recording_sessions": SESSION_COLUMNS,
    "person_aliases": ("alias_id", "person_id", "ts"),
    "group_profiles": ("group_type", "group_key", "properties", "first_seen", "last_seen"),
}
TIME_COLUMNS = frozenset({"ts", "received_at", "first_seen", "last_seen", "opted_out_at", "signed_up_at",
                          "start_ts", "end_ts"})
JSON_COLUMNS = frozenset({"properties", "context", "sample", "traits"})
# tables whose rows derive from an event (rows.py): also matched through the event's client id
DERIVED_TABLES = frozenset(TABLE_COLUMNS)
OPT_OUT_SOURCES = ("admin", "ingest_key")


def rfc3339(timestamp: float) -> str:
    """Unix seconds -> `2026-11-24T12:00:00.123Z` (RFC 3339, UTC, milliseconds)."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _marks(ids: Sequence[str]) -> str:
    return ", ".join("?" for _ in ids)


def user_filter(dialect: str, table: str, column: str, ids: Sequence[str], linked: bool) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) selecting the user's rows of `table`. `linked`: the ids
    have anonymous events with client event ids, whose derived rows (user_id NULL) are reached
    through `events`; without them the clause is a plain look-up on the indexed user column. The events
    are found by user through agent/store/user_index.py (complete whether or not the fold ran)."""
    marks = _marks(ids)
    if table == "events":
        own, params = user_index.ids(dialect, f"IN ({marks})", ids)
        return f"{own} OR anonymous_id IN ({marks})", [*params, *ids]
    if table == "person_aliases":
        return f"{column} IN ({marks}) OR alias_id IN ({marks})", [*ids, *ids]
    if table in DERIVED_TABLES and linked:
        through = (f"{column} IS NULL AND event_id IN (SELECT event_id FROM events WHERE anonymous_id IN ({marks}) "
                   f"AND user_id IS NULL AND event_id IS NOT NULL)")
        return f"{column} IN ({marks}) OR ({through})", [*ids, *ids]
    return f"{column} IN ({marks})", list(ids)


async def has_linked_rows(store: Store, ids: Sequence[str]) -> bool:
    """Whether any of `ids` is the anonymous id of events with a client event id (an index look-up)."""
    rows = await store.fetch(f"SELECT 1 FROM events WHERE anonymous_id IN ({_marks(ids)}) AND user_id IS NULL "
                             "AND event_id IS NOT NULL LIMIT 1", list(ids))
    return bool(rows)


async def person_ids(store: Store, ids: Sequence[str]) -> list[str]:
    """`ids` and the ids they are one person with: the person each is an alias of, and every alias of
    those persons (aliases point at their person directly: two look-ups)."""
    rows = await store.fetch(f"SELECT person_id FROM person_aliases WHERE alias_id IN ({_marks(ids)})", list(ids))
    persons = list(dict.fromkeys([*ids, *(row[0] for row in rows)]))
    rows = await store.fetch(f"SELECT alias_id FROM person_aliases WHERE person_id IN ({_marks(persons)})", persons)
    return list(dict.fromkeys([*persons, *(row[0] for row in rows)]))


def _group_keys(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(type, key) of the groups the events name in `$groups`."""
    found: set[tuple[str, str]] = set()
    for event in events:
        groups = (event.get("properties") or {}).get("$groups")
        if isinstance(groups, dict):
            found.update((kind, key) for kind, key in groups.items() if isinstance(key, str))
    return found


async def _groups(store: Store, ids: Sequence[str], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    named = _group_keys(events)
    keys = list(dict.fromkeys([*ids, *(key for _, key in named)]))
    rows = await store.fetch(f"SELECT {', '.join(COLUMNS['group_profiles'])} FROM group_profiles "
                             f"WHERE group_key IN ({_marks(keys)}) ORDER BY group_type, group_key", keys)
    return [row_dict("group_profiles", row) for row in rows if row[1] in ids or (row[0], row[1]) in named]


def _unique(user_ids: Sequence[str]) -> list[str]:
    ids = list(dict.fromkeys(i for i in user_ids if i))
    if not ids:
        raise ValueError("at least one non-empty user id is required")
    return ids


def _decode(value: Any) -> Any:
    """A JSON column as an object, whichever way the driver hands it over (text or decoded)."""
    if isinstance(value, (str, bytes)):
        return orjson.loads(value)
    return value


def row_dict(table: str, row: Sequence[Any]) -> dict[str, Any]:
    """One stored row as the export shows it: JSON decoded, each time as RFC 3339 plus `<name>_unix`."""
    out: dict[str, Any] = {}
    for name, value in zip(COLUMNS[table], row):
        if name in JSON_COLUMNS:
            out[name] = _decode(value)
        elif name in TIME_COLUMNS and value is not None:
            out[name] = rfc3339(float(value))
            out[f"{name}_unix"] = float(value)
        else:
            out[name] = value
    return out


async def export_user(store: Store, user_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Everything the store holds about the user, table by table (every table of USER_TABLES present,
    empty when nothing is held)."""
    ids = await person_ids(store, _unique(user_ids))
    linked = await has_linked_rows(store, ids)
    out: dict[str, list[dict[str, Any]]] = {}
    for table, column in USER_TABLES:
        where, params = user_filter(store.dialect, table, column, ids, linked)
        order = " ORDER BY ts" if "ts" in COLUMNS[table] else ""
        rows = await store.fetch(f"SELECT {', '.join(COLUMNS[table])} FROM {table} WHERE {where}{order}", params)
        out[table] = [row_dict(table, row) for row in rows]
    recorded = await user_session_events(store, [row["session_id"] for row in out.get("recording_sessions", ())])
    for row in out.get("recording_sessions", ()):
        row["events"] = recorded[row["session_id"]]
    out["group_profiles"] = await _groups(store, ids, out.get("events", []))
    return out


def _erase_order(include_opt_out: bool) -> list[tuple[str, str]]:
    """Derived tables before `events`: their link to an anonymous event goes through `events`."""
    tables = [(t, c) for t, c in USER_TABLES if include_opt_out or t != "opt_outs"]
    return sorted(tables, key=lambda tc: tc[0] == "events")


async def erase_user(store: Store, user_ids: Sequence[str], *, include_opt_out: bool = False) -> dict[str, int]:
    """Delete the user's rows from every table in ONE transaction; rows deleted per table.

    The opt-out row is kept unless `include_opt_out`: erasing a person who objected to tracking must
    not start tracking them again. (An anonymous event stored between the `linked` check and the
    transaction keeps its audit rows; its events row goes: the clause on `events` is always complete.)"""
    ids = await person_ids(store, _unique(user_ids))
    linked = await has_linked_rows(store, ids)
    tables = _erase_order(include_opt_out)
    statements = [erase_chunks_statement(ids),          # before their sessions' rows go
                  (f"DELETE FROM group_profiles WHERE group_key IN ({_marks(ids)})", ids)]
    for table, column in tables:
        where, params = user_filter(store.dialect, table, column, ids, linked)
        statements.append((f"DELETE FROM {table} WHERE {where}", params))
    # the rollups lose what the erased events added, in the same transaction (agent/store/rollups.py)
    where, params = user_filter(store.dialect, "events", "user_id", ids, linked)
    erased = await store.fetch(f"SELECT {rollups.FACT_COLUMNS} FROM events WHERE {where}", params)
    rollup_statements = [*rollups.erase_statements(ids, [tuple(row) for row in erased]),
                         *person_bits.erase_statements(ids, store.dialect),
                         *signup_bits.erase_statements(rollups.signup_visitors([tuple(row) for row in erased]),
                                                       store.dialect)]
    where, params = user_filter(store.dialect, "onboarding_funnel", "user_id", ids, linked)
    onboarding = [ts for (ts,) in await store.fetch(f"SELECT ts FROM onboarding_funnel WHERE {where}", params)]
    recount = rollups.after_erase_statements([tuple(row) for row in erased], onboarding)   # after the deletes
    try:
        results = await store.execute([*rollup_statements, *statements, *recount])
    finally:                    # /flags reads traits from the store again (agent/store/person_traits.py)
        clear_traits(store)
    chunks, groups, *counts = results[len(rollup_statements):]
    deleted = {table: count for (table, _), count in zip(tables, counts)}
    return {**{table: deleted[table] for table, _ in USER_TABLES if table in deleted}, "recording_chunks": chunks,
            "group_profiles": groups}


async def is_opted_out(store: Store, user_id: str) -> bool:
    rows = await store.fetch("SELECT 1 FROM opt_outs WHERE user_id = ?", (user_id,))
    return bool(rows)


async def set_opt_out(store: Store, user_id: str, opted_out: bool, source: str, now: float) -> None:
    """Persist the user's choice: upsert the opt-out row (keeping the first opt-out's time and source),
    or delete it. `ON CONFLICT DO NOTHING` is the same SQL on SQLite and PostgreSQL."""
    if source not in OPT_OUT_SOURCES:
        raise ValueError(f"unknown opt-out source {source!r}")
    if opted_out:
        sql = "INSERT INTO opt_outs (user_id, opted_out_at, source) VALUES (?, ?, ?) ON CONFLICT (user_id) DO NOTHING"
        await store.execute([(sql, (user_id, now, source))])
    else:
        await store.execute([("DELETE FROM opt_outs WHERE user_id = ?", (user_id,))])


async def anonymous_ids(store: Store, user_ids: Sequence[str]) -> list[str]:
    """The anonymous ids seen on the user's events: their pre-login events are exported and erased
    by asking for those ids (not automatically: a shared device's id belongs to several people). The ids
    a PostHog alias made one person with them are asked for too (their events are the person's)."""
    ids = await person_ids(store, _unique(user_ids))
    own, params = user_index.ids(store.dialect, f"IN ({_marks(ids)})", ids)
    rows = await store.fetch(f"SELECT DISTINCT anonymous_id FROM events WHERE {own} "
                             "AND anonymous_id IS NOT NULL ORDER BY anonymous_id", params)
    return [row[0] for row in rows]


async def load_opt_outs(store: Store) -> set[str]:
    """The persisted opt-out list (pseudonymized ids), for Privacy.opted_out at start and on refresh."""
    return {row[0] for row in await store.fetch("SELECT user_id FROM opt_outs")}
