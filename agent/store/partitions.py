"""PostgreSQL: the events table partitioned by month of `ts` (migration 9), and what keeps it so.

Why: retention deleted old events row by row (each row its index entries, its WAL, then vacuum), and
every agent of a deployment shares the one table. Partitioned by RANGE (ts), one table a calendar month
(UTC) named events_pYYYYMM, a month whose every event is past its class's retention period goes with a
DROP (measured in docs/scaling.md), and queries over a range read only the months it covers.

Deduplication. A unique index of a partitioned table must contain the partition key, so
UNIQUE (event_id, ts) would be the only unique index on `events`; it would not dedupe: a retry carries
the same client event id but not always the same ts (an event sent without a timestamp gets the agent's
clock at arrival, so its retry gets a later one; PostHog's clock-skew correction shifts each request by
its own measured skew). So the ids live in their own table, `event_ids` (event_id PRIMARY KEY, ts), and
one statement inserts a batch's ids there with ON CONFLICT DO NOTHING and only the events whose id came
back (or that have none) into `events` (agent/store/postgres.py INSERT_EVENTS): several agents racing on
one id serialise on its primary-key entry, exactly as on the old unique index. An id is kept for the
analytics period, at least MIN_ID_DAYS (events.max_past_age's default: an event with an older timestamp
is refused anyway, and no client retries for a month), and deleted in batches by retention.

Partitions are created ahead (MONTHS_AHEAD) at open and at each retention run, by a DO block under an
advisory transaction lock: several agents creating the same month at once create it once, and creating
a month whose rows already sit in the default partition (an agent down for months, or clock-skewed
events) moves them into it in the same transaction. Out-of-range times land in `events_default`.

Upgrade of an existing store: migration 9 renames the old table to `events_unpartitioned` and creates
the partitioned one; `upgrade` then copies COPY_CHUNK rows at a time, each chunk its own transaction,
ids preserved, on the connection that holds the migration lock (agents starting together wait for it;
an upgrade interrupted half-way resumes from the highest id copied), and drops the old table at the end.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

MONTHS_AHEAD = 3
YEARS_BACK = 10                 # older months of an upgraded store stay in the default partition
PARTITION_LOCK = 0x6C6F6F70     # pg_advisory_xact_lock key: partition DDL of every loom-agent
COPY_CHUNK = 20_000
MIN_ID_DAYS = 30
DAY = 86400.0
NAME = re.compile(r"^events_p(\d{4})(\d{2})$")

Fetch = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]
Execute = Callable[[Sequence[tuple[str, Sequence[Any]]]], Awaitable[list[int]]]

PARTITIONED_SQL = "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'events'::regclass)"
LIST_SQL = ("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass")
COLUMNS = ("id, event_id, name, category, ts, received_at, user_id, anonymous_id, session_id, label, outcome, "
           "value, retention_class, properties, context, release")
_OLD_WINDOW = "FROM events_unpartitioned WHERE id > (SELECT coalesce(max(id), 0) FROM events) ORDER BY id LIMIT ?"
COPY_IDS = ("INSERT INTO event_ids (event_id, ts) SELECT event_id, ts FROM (SELECT event_id, ts "
            f"{_OLD_WINDOW}) old WHERE event_id IS NOT NULL ON CONFLICT (event_id) DO NOTHING")
COPY_EVENTS = f"INSERT INTO events ({COLUMNS}) OVERRIDING SYSTEM VALUE SELECT {COLUMNS} {_OLD_WINDOW}"
# event ids go a day of ts at a time, by a range of the ts index: 300,000 ids in 0.4 s, where batches of
# `DELETE ... WHERE event_id IN (SELECT ... LIMIT 5000)` took 4.2 s
ID_SLICE = DAY
OLDEST_ID = "SELECT min(ts) FROM event_ids"
DELETE_IDS = "DELETE FROM event_ids WHERE ts < ?"


def month(ts: float) -> tuple[int, int]:
    t = time.gmtime(ts)
    return t.tm_year, t.tm_mon


def next_month(ym: tuple[int, int]) -> tuple[int, int]:
    year, mon = ym
    return (year + 1, 1) if mon == 12 else (year, mon + 1)


def bounds(ym: tuple[int, int]) -> tuple[int, int]:
    """[start, end) of the month in unix seconds."""
    start = calendar.timegm((ym[0], ym[1], 1, 0, 0, 0))
    after = next_month(ym)
    return start, calendar.timegm((after[0], after[1], 1, 0, 0, 0))


def table(ym: tuple[int, int]) -> str:
    return f"events_p{ym[0]:04d}{ym[1]:02d}"


def create_sql(ym: tuple[int, int]) -> str:
    """Create the month's partition if no agent has (its rows in the default partition moved into it)."""
    name, (lo, hi) = table(ym), bounds(ym)
    return f"""DO $$
BEGIN
    PERFORM pg_advisory_xact_lock({PARTITION_LOCK});
    IF to_regclass('{name}') IS NULL THEN
        IF EXISTS (SELECT 1 FROM events_default WHERE ts >= {lo} AND ts < {hi}) THEN
            CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS);
            WITH moved AS (DELETE FROM events_default WHERE ts >= {lo} AND ts < {hi} RETURNING *)
            INSERT INTO {name} SELECT * FROM moved;
            ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi});
        ELSE
            CREATE TABLE {name} PARTITION OF events FOR VALUES FROM ({lo}) TO ({hi});
        END IF;
    END IF;
END $$"""


def drop_sql(ym: tuple[int, int]) -> str:
    name = table(ym)
    return f"""DO $$
BEGIN
    PERFORM pg_advisory_xact_lock({PARTITION_LOCK});
    IF to_regclass('{name}') IS NOT NULL THEN
        ALTER TABLE events DETACH PARTITION {name};
        DROP TABLE {name};
    END IF;
END $$"""


async def months(fetch: Fetch) -> list[tuple[int, int]]:
    """The monthly partitions that exist, oldest first."""
    found = []
    for (relname,) in await fetch(LIST_SQL, ()):
        if (matched := NAME.match(relname)) is not None:
            found.append((int(matched.group(1)), int(matched.group(2))))
    return sorted(found)


async def names_in(fetch: Fetch, partition: str) -> list[str]:
    """The event names a month holds: one seek of its (name, ts, ...) index per name, not a scan."""
    names: list[str] = []
    (name,), = await fetch(f"SELECT min(name) FROM {partition}", ())
    while name is not None:
        names.append(name)
        (name,), = await fetch(f"SELECT min(name) FROM {partition} WHERE name > ?", (name,))
    return names


async def ensure(fetch: Fetch, execute: Execute, now: float, since: float | None = None) -> list[tuple[int, int]]:
    """Create every missing month from `since`'s (default: this one) to MONTHS_AHEAD after `now`'s;
    returns the months created."""
    have = set(await months(fetch))
    ym, last = month(now if since is None else min(since, now)), month(now)
    for _ in range(MONTHS_AHEAD):
        last = next_month(last)
    created = []
    while ym <= last:
        if ym not in have:
            await execute([(create_sql(ym), ())])
            created.append(ym)
        ym = next_month(ym)
    return created


async def upgrade(fetch: Fetch, execute: Execute, now: float) -> int:
    """Copy a pre-partitioning store's events (migration 9 renamed them to events_unpartitioned) into
    the partitioned table, COPY_CHUNK a transaction; then drop the old table. Rows copied (0: nothing
    to do). Resumes where an interrupted copy stopped."""
    if (await fetch("SELECT to_regclass('events_unpartitioned') IS NOT NULL", ()))[0][0] is not True:
        return 0
    (oldest,), = await fetch("SELECT min(ts) FROM events_unpartitioned", ())
    if oldest is not None:
        await ensure(fetch, execute, now, since=max(float(oldest), now - YEARS_BACK * 365 * DAY))
    copied = 0
    while True:
        _, rows = await execute([(COPY_IDS, (COPY_CHUNK,)), (COPY_EVENTS, (COPY_CHUNK,))])
        copied += rows
        if rows < COPY_CHUNK:
            break
    await execute([("DROP TABLE events_unpartitioned", ())])
    return copied


async def retire(fetch: Fetch, execute: Execute, periods: Mapping[str, float], class_of: Mapping[str, str],
                 now: float) -> dict[str, int]:
    """Drop each month whose every event is past its class's period (`periods`: class -> seconds;
    `class_of`: event name -> class); rows dropped per class. Then create the months ahead and delete
    the event ids older than the analytics period (at least MIN_ID_DAYS)."""
    dropped: dict[str, int] = {}
    if (await fetch(PARTITIONED_SQL, ()))[0][0] is not True:
        return dropped                      # a store migrated by an older agent (before migration 9)
    longest = max(periods.values())
    for ym in await months(fetch):
        _, end = bounds(ym)
        if end > now - min(periods.values()):
            break                           # this month and later hold rows of every class still kept
        classes = {name: class_of.get(name, "analytics") for name in await names_in(fetch, table(ym))}
        if end > now - longest and any(end > now - periods.get(k, longest) for k in classes.values()):
            continue                        # some of its events are still kept: deleted row by row
        counts = {name: (await fetch(f"SELECT count(*) FROM {table(ym)} WHERE name = ?", (name,)))[0][0]
                  for name in classes}      # index-only, one name at a time: each read well within its limit
        await execute([(drop_sql(ym), ())])
        for name, count in counts.items():
            dropped[classes[name]] = dropped.get(classes[name], 0) + int(count)
    await ensure(fetch, execute, now)
    cutoff = now - max(periods.get("analytics", 0.0), MIN_ID_DAYS * DAY)
    while (oldest := (await fetch(OLDEST_ID, ()))[0][0]) is not None and oldest < cutoff:
        await execute([(DELETE_IDS, (min(float(oldest) + ID_SLICE, cutoff),))])
    return dropped
