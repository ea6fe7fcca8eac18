"""The issues list of GET /api/errors: the stored errors of a time range (and optional release, feature
and environment), grouped by fingerprint, the issue seen most recently first.

Per issue, over the selected occurrences: count, usersAffected (distinct user ids; errors without a
user count in `count` only), firstSeen and lastSeen, and the latest occurrence in full. One query on
both databases (a window function picks each issue's latest row), written with `?` placeholders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from agent.analytics.timerange import TimeRange, iso_time
from agent.store.base import Store

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
TITLE_MAX = 256
FILTERS = ("release", "feature", "environment")


@dataclass(frozen=True, slots=True)
class IssueFilter:
    release: str | None = None
    feature: str | None = None
    environment: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The extra WHERE conditions (each an equality on its column) and their parameters."""
        sql, params = "", []
        for column in FILTERS:
            value = getattr(self, column)
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        return sql, params


def issues_sql(where: str) -> str:
    return f"""
WITH selected AS (
    SELECT id, fingerprint, ts, user_id FROM errors WHERE ts >= ? AND ts < ?{where}
), issues AS (
    SELECT fingerprint, count(*) AS occurrences, count(DISTINCT user_id) AS users, min(ts) AS first_ts,
           max(ts) AS last_ts
    FROM selected GROUP BY fingerprint ORDER BY last_ts DESC, fingerprint LIMIT ?
), ranked AS (
    SELECT s.id, s.fingerprint,
           row_number() OVER (PARTITION BY s.fingerprint ORDER BY s.ts DESC, s.id DESC) AS position
    FROM selected s JOIN issues i ON i.fingerprint = s.fingerprint
)
SELECT i.fingerprint, i.occurrences, i.users, i.first_ts, i.last_ts,
       e.event_id, e.ts, e.received_at, e.user_id, e.release, e.environment, e.feature, e.type, e.message, e.sample
FROM issues i
JOIN ranked r ON r.fingerprint = i.fingerprint AND r.position = 1
JOIN errors e ON e.id = r.id
ORDER BY i.last_ts DESC, i.fingerprint"""


def count_sql(where: str) -> str:
    return f"SELECT count(DISTINCT fingerprint) FROM errors WHERE ts >= ? AND ts < ?{where}"


def _decode(value: Any) -> Any:
    """A JSON column, whichever way the driver hands it over (text or decoded)."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def title(message: str | None, type_: str) -> str:
    """The first line of the message (at most TITLE_MAX characters), else the type."""
    first = (message or "").strip().split("\n", 1)[0].strip()
    return first[:TITLE_MAX] or type_


def issue_json(row: tuple[Any, ...]) -> dict[str, Any]:
    (print_, occurrences, users, first_ts, last_ts, event_id, ts, received_at, user_id, release, environment,
     feature, type_, message, sample) = row
    latest = {"eventId": event_id, "timestamp": iso_time(ts), "receivedAt": iso_time(received_at), "type": type_,
              "message": message, "release": release, "environment": environment, "feature": feature,
              "userId": user_id, **_decode(sample)}
    return {"fingerprint": print_, "type": type_, "title": title(message, type_), "firstSeen": iso_time(first_ts),
            "lastSeen": iso_time(last_ts), "count": int(occurrences), "usersAffected": int(users), "latest": latest}


async def list_issues(store: Store, time_range: TimeRange, filters: IssueFilter = IssueFilter(),
                      limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """{"issues": [...], "totalIssues": n, "range": {...}}: at most `limit` issues, the most recently
    seen first (ties: by fingerprint); `totalIssues` counts every issue the selection holds."""
    where, params = filters.where()
    bounds = [time_range.start, time_range.end, *params]
    rows = await store.fetch(issues_sql(where), [*bounds, limit])
    ((total,),) = await store.fetch(count_sql(where), bounds)
    return {"issues": [issue_json(row) for row in rows], "totalIssues": int(total), "range": time_range.to_json()}
