"""Persons and groups beyond the `users` row: PostHog's aliases (two ids, one person) and groups
(Migration 6: person_aliases, group_profiles).

Why rows are rewritten on a merge: every query of the store (user counts, funnels, experiments, the
GDPR export and erasure) reads `user_id`. Rewriting the alias's rows to the person once, in the merge's
transaction, keeps every one of those queries unchanged and fast, where resolving aliases at query
time would add a join to each. After the merge:
- the alias's events carry the person's user_id (the alias stays their anonymous_id, so the export's
  `anonymousIds` lists it), and so do its rows in the audit tables, errors and recordings;
- its `users` row is folded into the person's (first seen the earlier, last seen the later, the
  person's traits first, the alias's filling the gaps) and deleted: one person in totalUsers;
- an opt-out of the alias holds for the person (privacy first);
- `person_aliases` remembers alias -> person, so events still sent under the alias are stored under the
  person (EventPipeline keeps the map in memory) and a later merge finds the person. Merging a person
  that already has aliases re-points them: the map stays one step deep.
Ids are the stored ones (after privacy's pseudonyms), like every id of the store.

Groups (`$groupidentify`): one row per (type, key), its properties merged key by key (a later value
wins), first and last seen. A group is not a person: it is never a user and never counted as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from agent.store import person_bits, signup_bits, user_index
from agent.store.base import Store
from agent.store.rollups import recompute_statements
from agent.store.rows import TABLE_COLUMNS

# tables whose rows name a user in `user_id` (besides events and users, which the merge handles itself)
_USER_ROWS = ("errors", "recording_sessions", "recording_chunks")


def _json(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


async def load_aliases(store: Store, limit: int) -> dict[str, str]:
    """alias -> person, at most `limit` of them (the newest)."""
    rows = await store.fetch("SELECT alias_id, person_id FROM person_aliases ORDER BY ts DESC LIMIT ?", (limit,))
    return {alias: person for alias, person in rows}


async def roots(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """id -> the person it is an alias of (ids that are no alias are left out)."""
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = await store.fetch(f"SELECT alias_id, person_id FROM person_aliases WHERE alias_id IN ({marks})", list(ids))
    return {alias: person for alias, person in rows}


def merge_statements(dialect: str, alias: str, person: str, ts: float) -> list[tuple[str, list[Any]]]:
    """The statements that make `alias` (a person, not itself an alias) one with `person` (see the
    module docstring), in the order they must run."""
    least, greatest = ("least", "greatest") if dialect == "postgres" else ("min", "max")
    merge_traits = ("coalesce(excluded.traits, '{}'::jsonb) || coalesce(users.traits, '{}'::jsonb)"
                    if dialect == "postgres" else
                    "json_patch(coalesce(excluded.traits, '{}'), coalesce(users.traits, '{}'))")
    anonymous_events = ("SELECT event_id FROM events WHERE anonymous_id = ? AND user_id IS NULL "
                        "AND event_id IS NOT NULL")
    statements: list[tuple[str, list[Any]]] = [
        ("INSERT INTO person_aliases (alias_id, person_id, ts) VALUES (?, ?, ?) ON CONFLICT (alias_id) "
         "DO UPDATE SET person_id = excluded.person_id", [alias, person, ts]),
        ("UPDATE person_aliases SET person_id = ? WHERE person_id = ?", [person, alias]),
    ]
    for table in TABLE_COLUMNS:            # through the anonymous events: before those events change
        statements.append((f"UPDATE {table} SET user_id = ? WHERE user_id = ? OR (user_id IS NULL AND event_id "
                           f"IN ({anonymous_events}))", [person, alias, alias]))
    statements += [(f"UPDATE {table} SET user_id = ? WHERE user_id = ?", [person, alias]) for table in _USER_ROWS]
    aliased, alias_params = user_index.ids(dialect, "= ?", [alias])
    statements += [
        (f"UPDATE events SET user_id = ?, anonymous_id = coalesce(anonymous_id, ?) WHERE {aliased}",
         [person, alias, *alias_params]),
        ("UPDATE events SET user_id = ? WHERE anonymous_id = ? AND user_id IS NULL", [person, alias]),
        ("INSERT INTO users (user_id, first_seen, last_seen, role, plan, signed_up_at, traits) "
         "SELECT ?, first_seen, last_seen, role, plan, signed_up_at, traits FROM users WHERE user_id = ? "
         f"ON CONFLICT (user_id) DO UPDATE SET first_seen = {least}(users.first_seen, excluded.first_seen), "
         f"last_seen = {greatest}(users.last_seen, excluded.last_seen), role = coalesce(users.role, excluded.role), "
         "plan = coalesce(users.plan, excluded.plan), "
         "signed_up_at = coalesce(users.signed_up_at, excluded.signed_up_at), "
         f"traits = {merge_traits}", [person, alias]),
        ("DELETE FROM users WHERE user_id = ?", [alias]),
        ("INSERT INTO opt_outs (user_id, opted_out_at, source) SELECT ?, opted_out_at, source FROM opt_outs "
         "WHERE user_id = ? ON CONFLICT (user_id) DO NOTHING", [person, alias]),
    ]
    # the alias's activity (its own and its anonymous events) is now the person's: their per-person rollups
    # are recomputed from the events just rewritten (the counts by name do not change)
    statements += [(sql, list(params)) for sql, params in recompute_statements(alias, dialect)
                   + recompute_statements(person, dialect)]
    # the person bitmaps: the alias's index goes dead, the person's hours become extra bits (person_bits.py)
    statements += [(sql, list(params)) for sql, params in person_bits.merge_statements(alias, person, dialect)]
    statements += [(sql, list(params)) for sql, params in signup_bits.merge_statements(alias, person, dialect)]
    return statements


def group_statement(dialect: str, kind: str, key: str, properties: dict[str, Any], ts: float) -> tuple[str, list[Any]]:
    """The upsert of one `$groupidentify`."""
    if dialect == "postgres":
        value, merged = "CAST(? AS jsonb)", "coalesce(group_profiles.properties, '{}'::jsonb) || excluded.properties"
        least, greatest = "least", "greatest"
    else:
        value, merged = "?", "json_patch(coalesce(group_profiles.properties, '{}'), excluded.properties)"
        least, greatest = "min", "max"
    sql = (f"INSERT INTO group_profiles (group_type, group_key, properties, first_seen, last_seen) "
           f"VALUES (?, ?, {value}, ?, ?) ON CONFLICT (group_type, group_key) DO UPDATE SET properties = {merged}, "
           f"first_seen = {least}(group_profiles.first_seen, excluded.first_seen), "
           f"last_seen = {greatest}(group_profiles.last_seen, excluded.last_seen)")
    return sql, [kind, key, _json(properties), ts, ts]
