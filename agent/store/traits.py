"""Identify traits onto the users table (Migration 4: users.role, plan, signed_up_at, traits).

One upsert per identify, all of a request in one transaction through `Store.execute`, so a 2xx is
sent only once they are committed. On an existing user:
- role, plan, signed_up_at: a `traits` value replaces the stored one; a `traits_once` value is used only
  when none is stored (PostHog's $set_once);
- every other trait is merged into the `traits` JSON object trait by trait (a nested object is
  replaced whole, not merged), `traits_once` ones only where the trait is absent;
- `unset` trait names (PostHog's `$unset`) are removed from the `traits` JSON object (role, plan and the
  sign-up date have columns of their own: a later trait replaces them, `$unset` does not clear them);
- first_seen and last_seen are left alone: they stay the user's first and last *activity* (events).
A user the store has never seen gets a row first and last seen at the identify's time; the events that
follow move first_seen back if they are older. "New users" are counted by signed_up_at when known,
else by first_seen (agent/analytics/queries.py).

The traits merge is the one statement that differs between the databases: SQLite's json_set /
json_insert per trait, PostgreSQL's jsonb `||` (right operand wins, one level deep), same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from agent.events.identify import SIGNUP, Identify
from agent.store.base import Store
from agent.store.person_traits import forget_traits

COLUMN_TRAITS = ("role", "plan", SIGNUP)         # the traits with a column of their own

# the casts tell PostgreSQL the parameters' types (a NULL alone has none); SQLite reads them as affinities
_TEXT, _REAL = "CAST(? AS TEXT)", "CAST(? AS DOUBLE PRECISION)"
_UPSERT = f"""INSERT INTO users (user_id, first_seen, last_seen, role, plan, signed_up_at, traits)
    VALUES (?, ?, ?, coalesce({_TEXT}, {_TEXT}), coalesce({_TEXT}, {_TEXT}), coalesce({_REAL}, {_REAL}),
        {{insert_traits}})
    ON CONFLICT (user_id) DO UPDATE SET role = coalesce({_TEXT}, users.role, {_TEXT}),
        plan = coalesce({_TEXT}, users.plan, {_TEXT}),
        signed_up_at = coalesce({_REAL}, users.signed_up_at, {_REAL}), traits = {{merged_traits}}"""


def _split(traits: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """([role, plan, signup] or None each, the other traits)."""
    columns = [traits.get(name) for name in COLUMN_TRAITS]
    return columns, {k: v for k, v in traits.items() if k not in COLUMN_TRAITS}


def _json(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


def _sqlite_merge(base: str, once: dict[str, Any], now: dict[str, Any]) -> tuple[str, list[Any]]:
    """json_insert (only absent) of the once-traits, then json_set (replace) of the traits, on `base`."""
    sql, params = base, []
    for function, traits in (("json_insert", once), ("json_set", now)):
        if traits:
            pairs = ", ".join("?, json(?)" for _ in traits)
            sql = f"{function}({sql}, {pairs})"
            for key, value in traits.items():
                params += [f'$."{key}"', _json(value)]
    return sql, params


def upsert_statement(dialect: str, identify: Identify) -> tuple[str, list[Any]]:
    """The SQL (with `?` placeholders) and parameters that store one identify on `dialect`."""
    now_cols, now = _split(identify.traits)
    once_cols, once = _split(identify.traits_once)
    first = {**once, **now}
    pairs = [v for pair in zip(now_cols, once_cols) for v in pair]    # role, role once, plan, ...
    merged_params: list[Any]
    if dialect == "postgres":
        insert_sql = "CAST(? AS jsonb)"
        merged_sql = "CAST(? AS jsonb) || coalesce(users.traits, '{}') || CAST(? AS jsonb)"
        insert_params, merged_params = [_json(first)], [_json(once), _json(now)]
    else:
        insert_sql, insert_params = "?", [_json(first)]
        merged_sql, merged_params = _sqlite_merge("coalesce(users.traits, '{}')", once, now)
    unset = [name for name in identify.unset if name not in COLUMN_TRAITS]
    if unset and dialect == "postgres":
        merged_sql, merged_params = f"({merged_sql}) - CAST(? AS text[])", [*merged_params, unset]
    elif unset:
        paths = ", ".join("?" for _ in unset)
        merged_sql, merged_params = f"json_remove({merged_sql}, {paths})", [*merged_params,
                                                                            *(f'$."{name}"' for name in unset)]
    sql = _UPSERT.format(insert_traits=insert_sql, merged_traits=merged_sql)
    params = [identify.user_id, identify.timestamp, identify.timestamp, *pairs, *insert_params, *pairs,
              *merged_params]
    return sql, params


async def store_identifies(store: Store, identifies: Sequence[Identify]) -> None:
    """Commit every identify in one transaction (raises StoreError: none is stored). Users are written in
    id order, the event writer's lock order, so two agents on PostgreSQL never deadlock."""
    if not identifies:
        return
    ordered = sorted(identifies, key=lambda item: item.user_id)
    try:
        await store.execute([upsert_statement(store.dialect, identify) for identify in ordered])
    finally:                    # /flags reads them again (store/person_traits.py), committed or not
        forget_traits(store, [identify.user_id for identify in ordered])
