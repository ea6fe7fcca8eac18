"""The SQL the insights share, for SQLite and PostgreSQL: an event's property as text or as a number, the
property filters, UTC time buckets, and the rows of matching events with the person each belongs to.

A property is read from the stored JSON `properties` (the keys as stored: a catalog event's in
snake_case, a PostHog event's as sent, `$browser`...), except where agent/store/rows.py DIMENSIONS lifts
it into a column for that event (`label`, `outcome`, `value`): then from the column, which the index
events_name_dims holds, so a trend broken down by a catalog event's main dimension reads the index
alone. The same value either way:
- as text: a string as is, true / false, a number as its JSON text (5, 2.5), null and absent as NULL;
- as a number: JSON numbers only (a numeric string or a boolean is not a number), as the value column.
The key is written into the SQL as a literal (the query parser refuses '"', '\\' and control characters;
a "'" is doubled), so filters cost no JSON path parsing per parameter.

The person of an event (unique persons, funnels, retention): PostHog's "anonymous and identified ids
count as one person".
- an identified event's person is its user_id (merges rewrite an alias's rows to the person,
  agent/store/people.py; a user_id still listed in person_aliases is mapped to its person);
- an anonymous event (user_id NULL) belongs to the user its anonymous_id was first seen with (the
  earliest event carrying both, as the native SDKs send after login: identify's link), else to the
  anonymous id itself.
The two kinds are read in two branches so that the identified one reads events_name_dims alone
(user_id is in it; anonymous_id is not, and reading it costs a table row per event); when the SQL needs
no column of the events but their time, id and user (every event, no property: retention's "any event",
unique persons of all events by day), from events_by_user (agent/store/user_index.py) instead.
"""

from __future__ import annotations

import re
from typing import Any

from agent.analytics.insight_query import PropertyFilter, Value
from agent.store.rows import DIMENSIONS

Sql = tuple[str, list[Any]]
_COLUMNS = ("label", "outcome", "value")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def lifted(event: str | None, key: str) -> str | None:
    """The events column holding `key` of `event` (label, outcome or value), or None."""
    if event is None:
        return None
    for column, spec in zip(_COLUMNS, DIMENSIONS.get(event, (None, None, None))):
        if spec == key:
            return column
    return None


def _json_type(dialect: str, key: str, alias: str) -> str:
    if dialect == "postgres":
        return f"jsonb_typeof({alias}properties -> {_literal(key)})"
    return f"json_type({alias}properties, {_literal('$.' + chr(34) + key + chr(34))})"


def prop_text(dialect: str, event: str | None, key: str, alias: str = "") -> str:
    """`key` of the event as text (see the module docstring); NULL when absent or null."""
    column = lifted(event, key)
    if column in ("label", "outcome"):
        return f"{alias}{column}"
    if dialect == "postgres":
        return f"({alias}properties ->> {_literal(key)})"
    kind = _json_type(dialect, key, alias)
    path = _literal('$."' + key + '"')
    return (f"(CASE {kind} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            f"ELSE CAST(json_extract({alias}properties, {path}) AS TEXT) END)")


def prop_number(dialect: str, event: str | None, key: str, alias: str = "") -> str:
    """`key` of the event as a float when it is a JSON number, else NULL."""
    if lifted(event, key) == "value":
        return f"{alias}value"
    kind = _json_type(dialect, key, alias)
    if dialect == "postgres":
        return f"(CASE WHEN {kind} = 'number' THEN CAST({alias}properties ->> {_literal(key)} AS DOUBLE PRECISION) END)"
    path = _literal('$."' + key + '"')
    return f"(CASE WHEN {kind} IN ('integer', 'real') THEN json_extract({alias}properties, {path}) END)"


def _is_set(dialect: str, event: str | None, key: str, alias: str) -> str:
    if lifted(event, key) is not None:
        return f"{alias}{lifted(event, key)} IS NOT NULL"
    return f"coalesce({_json_type(dialect, key, alias)}, 'null') <> 'null'"


def _exact(dialect: str, event: str | None, key: str, values: tuple[Value, ...], alias: str) -> Sql:
    texts = ["true" if v is True else "false" if v is False else v for v in values if not isinstance(v, float)]
    numbers = [v for v in values if isinstance(v, float)]
    parts, params = [], list[Any]()
    if texts:
        parts.append(f"{prop_text(dialect, event, key, alias)} IN ({', '.join('?' * len(texts))})")
        params += texts
    if numbers:
        parts.append(f"{prop_number(dialect, event, key, alias)} IN ({', '.join('?' * len(numbers))})")
        params += numbers
    return "(" + " OR ".join(parts) + ")", params


def filter_sql(dialect: str, event: str | None, f: PropertyFilter, alias: str = "") -> Sql:
    """One filter as a condition that is true or false, never NULL (so NOT works on it)."""
    op = f.operator
    if op in ("is_set", "is_not_set"):
        cond = _is_set(dialect, event, f.key, alias)
        return (cond if op == "is_set" else f"NOT ({cond})"), []
    if op in ("exact", "is_not"):
        cond, params = _exact(dialect, event, f.key, f.values, alias)
        return (f"coalesce({cond}, FALSE)" if op == "exact" else f"NOT coalesce({cond}, FALSE)"), params
    if op in ("icontains", "not_icontains"):
        find = "strpos" if dialect == "postgres" else "instr"
        cond = f"coalesce({find}(lower({prop_text(dialect, event, f.key, alias)}), lower(?)) > 0, FALSE)"
        return (cond if op == "icontains" else f"NOT {cond}"), [f.values[0]]
    sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    return f"coalesce({prop_number(dialect, event, f.key, alias)} {sign} ?, FALSE)", [f.values[0]]


def filters_sql(dialect: str, event: str | None, filters: tuple[PropertyFilter, ...], alias: str = "") -> Sql:
    """' AND <filter> AND ...' and their parameters ('' without filters)."""
    sql, params = "", list[Any]()
    for f in filters:
        cond, extra = filter_sql(dialect, event, f, alias)
        sql += f" AND {cond}"
        params += extra
    return sql, params


def bucket_sql(dialect: str, interval: str, alias: str = "") -> str:
    """The UTC bucket index of {alias}ts: agent/analytics/insight_query.py period_index in SQL; months
    as year * 12 + month - 1."""
    ts = f"{alias}ts"
    if interval == "month":
        if dialect == "postgres":
            moment = f"(to_timestamp({ts}) AT TIME ZONE 'UTC')"
            return f"CAST(extract(year FROM {moment}) * 12 + extract(month FROM {moment}) - 1 AS BIGINT)"
        return (f"(CAST(strftime('%Y', {ts}, 'unixepoch') AS INTEGER) * 12 "
                f"+ CAST(strftime('%m', {ts}, 'unixepoch') AS INTEGER) - 1)")
    if interval == "week":
        return f"CAST(floor(({ts} / 86400.0 + 3) / 7) AS BIGINT)"
    seconds = 3600 if interval == "hour" else 86400
    return f"CAST(floor({ts} / {seconds}.0) AS BIGINT)"


def text_order(dialect: str, column: str) -> str:
    """An ORDER BY term sorting text by code point on both databases (NULLs last)."""
    collate = ' COLLATE "C"' if dialect == "postgres" else ""
    return f"({column} IS NULL), {column}{collate}"


_E_COLUMN = re.compile(r"\be\.(\w+)")       # a column of the events `e` in SQL text


def person_rows(dialect: str, columns: list[str], column_params: list[Any], where: str, params: list[Any],
                anonymous: bool = False) -> Sql:
    """SQL giving (ts, id, person, c0, c1, ...) for every event matching `where` (over events `e`) that
    has a user_id or an anonymous_id, `columns` being expressions over `e`. See the module docstring for
    the person; `id` orders events of the same time the same way on both databases. `column_params` are
the parameters of `columns`, `params` those of `where` (each branch repeats both). With `anonymous`, two
last columns: an identified event's own user id when it is an alias of the person (else NULL: it is the
person, or the event is anonymous; NULL costs the driver no string per row) and the anonymous id of an
anonymous event (NULL for an identified one): strict funnels look for the events of these ids between
two step events of their person (agent/analytics/funnels.py).

When `where` and `columns` read no column of `e` but ts, id and user_id, the identified branch reads
events_by_user (its key: user_id, ts, id) instead of the events: on SQLite a scan of that narrow table
where the events had none to offer but a scan of events_name_dims (the index events_user_ts is gone,
migration 21): 30 days of 1M bench events' identified (ts, id, user), 310,400 rows, 158 -> 68 ms of CPU
(46 through events_user_ts before migration 21); on PostgreSQL the view is the events with a user, the
same SQL as before.

On SQLite the anonymous branch's id conditions are written `+e.user_id IS NULL`: without the unary plus
the planner read events_user_ts for `user_id IS NULL` (every anonymous event in the range, whatever its
name: 60 ms of the 110 ms of a 4-step funnel over 1M events) instead of events_name_dims; since that
index is gone it would read events_anonymous_id when no name is given (30 days of 1M events: 114 ->
131 ms of CPU) and gain little through events_anonymous_name with one (69 -> 61 ms, 4 names)."""
    plus = "+" if dialect == "sqlite" else ""
    by_user = not set(_E_COLUMN.findall(" ".join((where, *columns)))) - {"ts", "id", "user_id"}
    cols = "".join(f", {c} AS c{i}" for i, c in enumerate(columns))
    names = "".join(f", a.c{i}" for i in range(len(columns)))
    plain = "".join(f", m.c{i}" for i in range(len(columns)))
    alias = "CASE WHEN m.raw_anon IS NULL AND pa.person_id IS NOT NULL THEN m.who END"
    raw, raw_anon, raw_out = ((", NULL AS raw_anon", ", a.who", f", {alias} AS raw_alias, m.raw_anon")
                              if anonymous else ("", "", ""))
    sql = (f"WITH ident AS (SELECT e.ts AS ts, e.id AS id, e.user_id AS who{cols} "
           f"FROM {'events_by_user' if by_user else 'events'} e "
           f"WHERE {where} AND e.user_id IS NOT NULL), "
           f"anon AS (SELECT e.ts AS ts, e.id AS id, e.anonymous_id AS who{cols} FROM events e "
           f"WHERE {where} AND {plus}e.user_id IS NULL AND {plus}e.anonymous_id IS NOT NULL), "
           "links AS (SELECT anonymous_id, user_id FROM (SELECT l.anonymous_id, l.user_id, row_number() OVER "
           "(PARTITION BY l.anonymous_id ORDER BY l.ts, l.id) AS rn FROM events l WHERE l.anonymous_id IS NOT NULL "
           "AND l.user_id IS NOT NULL AND l.anonymous_id IN (SELECT who FROM anon)) first_link WHERE rn = 1), "
           f"matched AS (SELECT ts, id, who{plain.replace('m.', '')}{raw} FROM ident UNION ALL "
           f"SELECT a.ts, a.id, coalesce(k.user_id, a.who){names}{raw_anon} FROM anon a "
           "LEFT JOIN links k ON k.anonymous_id = a.who) "
           f"SELECT m.ts, m.id, coalesce(pa.person_id, m.who) AS person{plain}{raw_out} FROM matched m "
           "LEFT JOIN person_aliases pa ON pa.alias_id = m.who")
    return sql, [*column_params, *params, *column_params, *params]
