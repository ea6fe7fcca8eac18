"""The events by user: SQLite's per-user index kept as a table folded in bulk (migrations 21 and 23), and the
SQL that reads a user's events through it on both databases.

Why: the index `events_user_ts (user_id, ts)` put one leaf page per distinct user into every group commit
(a user's newest entries sit at the end of that user's range): 168 of the 338 WAL frames a commit of 400
events on the ingest bench's mix (500 users), each frame written back by the commit's fdatasync. As the
table `events_by_user (user_id, ts, id)`, WITHOUT ROWID, it is filled by the rollups' fold
(agent/store/rollup_fold.py) about once a second, in one sorted INSERT ... SELECT over the events above the
watermark: each active user's leaf is written once per fold instead of once per commit. WAL frames a
commit 338 -> 149; in-process, groups of 400 into a store of 60,000 bench events, three runs each: the group
commit 15.3-15.6 -> 11.2-11.3 CPU µs an event, the fold included; the writer thread under the ingest bench's
load ~19.5 -> ~16. The bench's durable / store off (`python bench/ingest.py`, 2026-12-05): 47 % in one run
before, 43-52 % in six after (median 47 %): the store-off figure alone moves it +-5 points between runs.

What it costs the readers: the events above its watermark are not in it yet. A read that names
`events_by_user` folds first, as a read of a rollup does (rollup_fold.reads_folded), so analytics see every
event acknowledged before the request (unless a full store refuses the fold: then they lag, as the rollups
do). GDPR export and the alias merges and erasure use `ids()`, which adds the events above the watermark by
a rowid range: an export is complete even when the fold fails (erasure and merges fold first, and wait for
room as ingest does).

Kept in step by triggers when events change or go (erasure, merges, retention: rare, in bulk statements):
a deleted event's entry goes, an update of a folded event's user or time moves its entry; an event above the
watermark has no entry yet, and the fold reads its current values.

PostgreSQL keeps the index `events_user_ts` (its commits write each index page in place, and several agents
may share the database) and `events_by_user` is a view over the events with a user (migration 22), so the
SQL that needs only (user_id, ts, id) is the same on both. SQL that needs the other columns of a user's
events goes through `rows()`: a join on SQLite, the events table itself on PostgreSQL (a self-join there
would look every event up again in each partition).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MIGRATION = 21          # SQLite: the table, its backfill, its triggers; the index dropped (schema.py)
WATERMARK_MIGRATION = 23    # ... its own watermark: the fold fills it from there on

# its own watermark, rollup_folded.by_user (migration 23): the events up to it have their entries. Not the
# rollups' one: an agent from before migration 21 sharing the file moves that one without writing entries;
# the next fold of this code then adds them from here. A deletion of the highest events lowers it (SQLite gives
# the next row the highest id left plus one): every deleter lowers the rollups' watermark to the highest id
# left (rollup_fold.LOWER_SQL), and a trigger on that brings this one down with it. OR IGNORE: an agent
# between migrations 21 and 23 wrote entries without moving it
MARK_SQL = "SELECT by_user FROM rollup_folded"
MOVE_SQL = "UPDATE rollup_folded SET by_user = ?"
FOLD_SQL = ("INSERT OR IGNORE INTO events_by_user (user_id, ts, id) SELECT user_id, ts, id FROM events "
            "WHERE id > ? AND id <= ? AND user_id IS NOT NULL ORDER BY 1, 2, 3")
BEHIND_SQL = "SELECT (SELECT by_user FROM rollup_folded) < (SELECT coalesce(max(id), 0) FROM events)"


def rows(dialect: str, alias: str, user: str, ts: str = "") -> str:
    """`FROM` text (the word FROM not included) up to an open WHERE clause: the events `alias` of the user
    `user` (an SQL comparison on user_id: "= ?", "= u.user_id", "IN (?, ?)"), `ts` a condition on their
    time with {ts} for the column (" AND {ts} >= ? AND {ts} < ?"). Its parameters: those of `user`, then
    those of `ts`, on both databases. The caller goes on with " AND ..." on the columns of `alias`."""
    if dialect == "sqlite":
        by = f"{alias}_by"
        return (f"events_by_user {by} JOIN events {alias} ON {alias}.id = {by}.id "
                f"WHERE {by}.user_id {user}{ts.format(ts=f'{by}.ts')}")
    return f"events {alias} WHERE {alias}.user_id {user}{ts.format(ts=f'{alias}.ts')}"


def name(dialect: str) -> str:
    """The events' name column in a condition beside `ids()`: on SQLite `+name`, which no index serves, so
    the planner seeks the user's ids instead of reading every event of those names through events_name_dims
    (a merge's recount at 300,000 events: 9.6 ms -> 0.2 ms a statement)."""
    return "+name" if dialect == "sqlite" else "name"


def ids(dialect: str, user: str, params: Sequence[Any]) -> tuple[str, list[Any]]:
    """A condition on the events table (no alias) matching the events of `user` (a comparison on user_id
    with `params`), the events not folded yet included; and its parameters. For GDPR and merges: complete
    whether or not the fold ran (a full store refuses it)."""
    if dialect == "sqlite":
        return (f"(id IN (SELECT id FROM events_by_user WHERE user_id {user}) "
                f"OR (id > (SELECT by_user FROM rollup_folded) AND user_id {user}))", [*params, *params])
    return f"user_id {user}", list(params)
