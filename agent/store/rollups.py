"""The analytics rollups (migration 8): what the dashboard and business metrics read instead of the events,
written in the SAME transaction as the events they count (PostgreSQL; SQLite folds them in bulk from the
committed events behind a watermark, agent/store/rollup_fold.py), so they are exactly as durable and a
retried batch (same client event ids) never counts twice: only the events the unique event_id index let in
are aggregated (the drivers pass the rows they actually inserted).

Why these tables (the analytics ranges are arbitrary instants, and a figure must stay exact):
- rollup_counts_{hour,day}   events, values (count, sum) per bucket, event name and the bounded dimensions
                             the figures group by (LABELLED: coach, goal category, web vital, page; OUTCOMES:
                             login result, HTTP status, vital rating). A range reads its whole days from
                             the day table, the whole hours at its two edges from the hour table and the
                             partial hours from the events: at most 2 hours of events, ~60 day rows and
                             ~46 hour rows per name and dimension, whatever the store holds.
- rollup_values_{hour,day}   a quantile sketch per metric (page_load, api_request, web_vitals:<metric>):
                             fixed log-scale bins of gamma = 1.02 (DDSketch's): a value v > 0 lands in bin
                             ceil(log_gamma v) and reads back as 2 gamma^i / (gamma + 1), within
                             (gamma - 1) / (gamma + 1) = 0.99 % of v. Chosen over a sketch library (KLL)
                             because bins merge exactly by addition in SQL (an upsert adds counts), so a
                             range's sketch is a GROUP BY and the error is a relative bound on the value
                             (not a rank error); ~280 bins cover api_request's six decades.
- rollup_counts_week, rollup_values_week  (migration 14) the same counts and sketch bins per 7-day block
                             (bucket = day // 7, epoch days): a range's whole weeks read one row per week
                             and key, its other whole days the day rows. At 10M bench events a day holds
                             ~739 count rows and ~1,333 bins (every coach and page filled in), so a 30-day
                             range read ~22,000 + ~40,000 rows and now ~4 weeks' and ~2-12 edge days'.
                             Kept at ingest from the day rows of a commit (one more upsert per table and
                             commit), backfilled in SQL from the day tables (migration 14: ~1 s at 10M);
                             retention deletes the weeks that end before the cut and recounts the week
                             straddling it from its remaining days; erasure subtracts as from the days.
- rollup_counts_6h, rollup_values_6h  (migration 16) the same per 6-hour block (bucket = hour // 6): a range's
                             edge hours (up to 23 at each end) read their whole blocks and at most 5 single
                             hours at each end; kept, backfilled (from the hour tables), retained and erased
                             as the weeks are from the days.
- rollup_mfa                 (migration 15) per user, the latest mfa_enrolled and mfa_disabled times: business
                             metrics' MFA adoption read ~29,000 events of every user's history at 10M bench
                             events (~30 ms); now one row per user who ever enrolled or disabled. Kept at
                             ingest (the later time wins), erased and re-derived on alias merges with the
                             person's rows; retention needs nothing: a time older than the oldest stored
                             event of its name has lost its events, the read treats it as none
                             (agent/analytics/rollup_queries.mfa_adopters).
- rollup_persons_{hour,day}  (bucket, person, events): who was active when, and how much (top clients).
- rollup_person_hourmasks    per person and day, a bitmask of the hours (24 bits) they were active in
                             (migration 10): the persons of a range's edge hours read at most one row per
                             person and edge day, where rollup_persons_hour holds one per active hour
                             (at 10M bench events a person is active in many hours a day).
- rollup_funnel_steps_{hour,day}  (migration 11) per bucket, funnel ('signup': signup_step events; 'onboarding':
                             onboarding_funnel rows), step and status ('' for signup): rows and the lowest
                             step number (a minimum cannot be subtracted: an erasure recomputes the buckets
                             it touched from what remains, `after_erase_statements`).
- rollup_signup_blocks       (migration 11) per signup step, visitor (user id, else anonymous id) and 31-day
                             block, the days the visitor reached the step: "distinct visitors per step" over
                             a range's whole days reads at most 2 rows per (step, visitor), bounded by the
                             visitors, not by their events or active days.
- rollup_signup_hourmasks    (migration 11) per step, visitor and day, the hours (24 bits): the edge hours.
- rollup_person_blocks       per person and 31-day block (day // 31), a bitmask of active days and the
                             block's events: "users active in 30 days" reads one or two rows per person
                             (not one per active day) and stays flat as events grow; an upsert ORs masks.
                             Indexed by (bucket, events) since migration 17: the dashboard's top clients
                             read each block's busiest persons first (rollup_queries._top_bounds).
- rollup_person_names_day    per person, day and name of PERSON_NAMES: the coaches' and clients' work.
- rollup_person_names_{week,hour}  (migration 20) the same per 7-day block (bucket = day // 7) and per hour:
                             the dashboard's top coaches' and clients' work over a range's whole weeks reads
                             one row per person, week and name, its other whole days the day rows, its edge
                             hours the hour rows (only the raw partial hours from the events). At 10M bench
                             events the top persons are active every day: ~7,400 day rows a 30-day dashboard
                             (~1,250 as weeks), ~4,800 at 1M (~1,170); the start's 7 edge hours were ~4,600
                             events of their names (~1,400 hour rows). Kept from the same aggregate as the
                             days (two more upserts per fold), backfilled in SQL (weeks from the day rows,
                             hours from the events), erased with the person's rows, recomputed on an alias
                             merge, retained as the count weeks are (the weeks before the cut's go, the cut's
                             recounted from its remaining days; the hours before the cut's hour go).
- rollup_coach_blocks        per (coach, client) and block, the days of session events: clientsManaged.
A NULL label or outcome is stored as '' (primary keys cannot hold NULL): an empty label reads as none.

Backfill: the drivers read the events in id order (BACKFILL_SQL), CHUNK at a time, and add each chunk's
aggregates, inside migration 8's transaction: bounded memory whatever the store holds (162 MiB peak RSS for
1,000,200 events on SQLite), about 30 CPU-seconds per million events. Migration 10's hour masks are
backfilled in SQL from rollup_persons_hour (migration 10's INSERT ... SELECT): migration 8's backfill leaves them out
(`backfill_aggregate`), as its table does not exist yet when an old store runs it.

Cost at ingest: about 10 CPU-us an event on the bench mix (bench/RESULTS.md, Ingest: a group commit of ~400
events becomes ~1,000 upserts over the hour, day and person tables).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agent.store import user_index
from agent.store.rows import EVENT_COLUMNS, EventRows

MIGRATION = 8                # the migration that creates the tables; the drivers backfill right after it
HOURMASKS_MIGRATION = 10     # rollup_person_hourmasks, backfilled by its own SQL from rollup_persons_hour
FUNNELS_MIGRATION = 11       # the signup and onboarding funnels' rollups, backfilled by their own SQL
WEEKS_MIGRATION = 14         # the counts and sketches per 7-day block, backfilled by its SQL from the day tables
MFA_MIGRATION = 15           # the latest MFA enrolment and removal per user, backfilled by its SQL from the events
SIX_HOURS_MIGRATION = 16     # the counts and sketches per 6-hour block, backfilled by its SQL from the hour tables
BLOCKS_INDEX_MIGRATION = 17  # rollup_person_blocks (bucket, events): dropped with its table, so re-run with it
NAMES_WEEK_MIGRATION = 20    # the per-person work counts per 7-day block, backfilled by its SQL from the day rows
MIGRATIONS = (MIGRATION, HOURMASKS_MIGRATION, FUNNELS_MIGRATION, WEEKS_MIGRATION, MFA_MIGRATION, SIX_HOURS_MIGRATION,
              BLOCKS_INDEX_MIGRATION, NAMES_WEEK_MIGRATION)
LATER_TABLES = ("rollup_person_hourmasks", "rollup_funnel_steps_hour", "rollup_funnel_steps_day",
                "rollup_signup_blocks", "rollup_signup_hourmasks", "rollup_counts_week",
                "rollup_values_week", "rollup_mfa", "rollup_counts_6h",
                "rollup_values_6h", "rollup_person_names_hour", "rollup_person_names_week")   # not in 8's backfill
HOUR = 3600
DAY = 86400
WEEK_DAYS = 7                # the count and sketch blocks (migration 14): bucket = day // WEEK_DAYS
SIX_HOURS = 6                # the count and sketch blocks of hours (migration 16): bucket = hour // SIX_HOURS
BLOCK_DAYS = 31              # 31 bits: the mask is a positive 4-byte integer on PostgreSQL too
CHUNK = 50_000               # events per backfill read

GAMMA = 1.02
LOG_GAMMA = math.log(GAMMA)
RELATIVE_ERROR = (GAMMA - 1) / (GAMMA + 1)      # 0.0099
ZERO_BIN = -100_000
NEGATIVE_BASE = -140_000     # a negative value -x: NEGATIVE_BASE - bin(x); bins sort as their values do

# page_load's page since migration 13: the insights' unique persons by page from the person bitmaps
# (agent/analytics/insight_persons.py), their top pages ranked by these counts
LABELLED = frozenset({"session_booked", "session_completed", "session_cancelled", "session_rated",
                      "goal_created", "goal_completed", "web_vitals", "page_load"})
LABELLED_SINCE_13 = ("page_load",)      # migration 13 recounts its rows by label and backfills its bitmaps
OUTCOMES = frozenset({"login_attempt", "api_request", "web_vitals"})
SKETCHED = frozenset({"page_load", "api_request", "web_vitals"})
SESSION_NAMES = ("session_booked", "session_completed", "session_cancelled", "session_rated")
MFA_NAMES = frozenset({"mfa_enrolled", "mfa_disabled"})
PERSON_NAMES = frozenset({"resource_created", "task_created", "resource_viewed", "task_completed",
                          "resource_engagement_score"})

_NAME, _TS, _USER, _LABEL, _OUTCOME, _VALUE = (EVENT_COLUMNS.index(c) for c in
                                                ("name", "ts", "user_id", "label", "outcome", "value"))
_ANON = EVENT_COLUMNS.index("anonymous_id")
# what an aggregate needs of an event: (name, ts, user_id, label, outcome, value, anonymous_id)
Fact = tuple[str, float, Any, Any, Any, Any, Any]
FACT_COLUMNS = "name, ts, user_id, label, outcome, value, anonymous_id"
SIGNUP = "signup_step"


def dims(name: str, label: Any, outcome: Any) -> tuple[str, str]:
    """The (label, outcome) an event is counted under: kept only for the names that need them, '' for none."""
    return ((label or "") if name in LABELLED else "", (outcome or "") if name in OUTCOMES else "")


def metric(name: str, label: Any) -> str:
    return f"web_vitals:{label or ''}" if name == "web_vitals" else name


def value_bin(v: float) -> int:
    if v > 0:
        return math.ceil(math.log(v) / LOG_GAMMA)
    if v == 0:
        return ZERO_BIN
    return NEGATIVE_BASE - math.ceil(math.log(-v) / LOG_GAMMA)


def bin_value(b: int) -> float:
    """The value a bin reads back as: within RELATIVE_ERROR of every value in it."""
    if b == ZERO_BIN:
        return 0.0
    if b < ZERO_BIN:
        return -2 * GAMMA ** (NEGATIVE_BASE - b) / (GAMMA + 1)
    return 2 * GAMMA ** b / (GAMMA + 1)


def _upsert(table: str, keys: Sequence[str], adds: Sequence[str], ors: Sequence[str] = ()) -> str:
    columns = (*keys, *adds, *ors)
    sets = [f"{c} = {table}.{c} + excluded.{c}" for c in adds] + [f"{c} = {table}.{c} | excluded.{c}" for c in ors]
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(sets)}")


UPSERTS = {
    "counts_hour": _upsert("rollup_counts_hour", ("bucket", "name", "label", "outcome"), ("events", "nvalues", "vsum")),
    "counts_day": _upsert("rollup_counts_day", ("bucket", "name", "label", "outcome"), ("events", "nvalues", "vsum")),
    "values_hour": _upsert("rollup_values_hour", ("bucket", "metric", "bin"), ("count",)),
    "values_day": _upsert("rollup_values_day", ("bucket", "metric", "bin"), ("count",)),
    "counts_week": _upsert("rollup_counts_week", ("bucket", "name", "label", "outcome"),
                           ("events", "nvalues", "vsum")),
    "values_week": _upsert("rollup_values_week", ("bucket", "metric", "bin"), ("count",)),
    "counts_6h": _upsert("rollup_counts_6h", ("bucket", "name", "label", "outcome"), ("events", "nvalues", "vsum")),
    "values_6h": _upsert("rollup_values_6h", ("bucket", "metric", "bin"), ("count",)),
    "persons_hour": _upsert("rollup_persons_hour", ("bucket", "person"), ("events",)),
    "persons_day": _upsert("rollup_persons_day", ("bucket", "person"), ("events",)),
    "person_blocks": _upsert("rollup_person_blocks", ("bucket", "person"), ("events",), ("days",)),
    "person_names": _upsert("rollup_person_names_day", ("person", "bucket", "name"), ("events", "nvalues", "vsum")),
    "person_names_hour": _upsert("rollup_person_names_hour", ("person", "bucket", "name"),
                                 ("events", "nvalues", "vsum")),
    "person_names_week": _upsert("rollup_person_names_week", ("person", "bucket", "name"),
                                 ("events", "nvalues", "vsum")),
    "coach_blocks": _upsert("rollup_coach_blocks", ("bucket", "coach", "person"), (), ("days",)),
    "hourmasks": _upsert("rollup_person_hourmasks", ("bucket", "person"), (), ("hours",)),
    "signup_blocks": _upsert("rollup_signup_blocks", ("bucket", "step", "visitor"), (), ("days",)),
    "signup_hourmasks": _upsert("rollup_signup_hourmasks", ("bucket", "step", "visitor"), (), ("hours",)),
    "mfa": ("INSERT INTO rollup_mfa (person, enrolled, disabled) VALUES (?, ?, ?) ON CONFLICT (person) DO UPDATE SET "
            + ", ".join(f"{c} = CASE WHEN excluded.{c} IS NOT NULL AND (rollup_mfa.{c} IS NULL OR "
                        f"excluded.{c} > rollup_mfa.{c}) THEN excluded.{c} ELSE rollup_mfa.{c} END"
                        for c in ("enrolled", "disabled"))),
    **{f"steps_{size}": (f"INSERT INTO rollup_funnel_steps_{size} (bucket, funnel, step, status, total, number) "
                         "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (bucket, funnel, step, status) DO UPDATE SET "
                         f"total = rollup_funnel_steps_{size}.total + excluded.total, number = CASE WHEN "
                         f"rollup_funnel_steps_{size}.number IS NULL OR excluded.number < "
                         f"rollup_funnel_steps_{size}.number THEN excluded.number "
                         f"ELSE rollup_funnel_steps_{size}.number END")
       for size in ("hour", "day")},
}
TABLES = ("rollup_counts_hour", "rollup_counts_day", "rollup_values_hour", "rollup_values_day",
          "rollup_persons_hour", "rollup_persons_day", "rollup_person_blocks", "rollup_person_names_day",
          "rollup_coach_blocks", "rollup_person_hourmasks", "rollup_funnel_steps_hour", "rollup_funnel_steps_day",
          "rollup_signup_blocks", "rollup_signup_hourmasks", "rollup_counts_week", "rollup_values_week", "rollup_mfa",
          "rollup_counts_6h", "rollup_values_6h", "rollup_person_names_hour", "rollup_person_names_week")
# the tables keyed by a person, and the column naming them (GDPR erasure, alias merges)
PERSON_TABLES = (("rollup_persons_hour", "person"), ("rollup_persons_day", "person"),
                 ("rollup_person_blocks", "person"), ("rollup_person_names_day", "person"),
                 ("rollup_coach_blocks", "person"), ("rollup_person_hourmasks", "person"), ("rollup_mfa", "person"),
                 ("rollup_person_names_hour", "person"), ("rollup_person_names_week", "person"))


def facts(rows: Iterable[EventRows]) -> list[Fact]:
    return [(e[_NAME], e[_TS], e[_USER], e[_LABEL], e[_OUTCOME], e[_VALUE], e[_ANON]) for e in (r.event for r in rows)]


_STEP, _NUMBER, _STATUS, _FUNNEL_TS = (("event_id", "user_id", "flow_id", "step", "step_number", "status",
                                        "time_spent_seconds", "ts").index(c)
                                       for c in ("step", "step_number", "status", "ts"))


def ingest_aggregate(rows: Sequence[EventRows]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """What a group commit adds: `aggregate` of its events and `steps_aggregate` of its onboarding rows."""
    onboarding = [row for r in rows for table, row in r.tables if table == "onboarding_funnel"]
    return aggregate(facts(rows)) + steps_aggregate(
        ("onboarding", row[_FUNNEL_TS], row[_STEP], row[_STATUS], row[_NUMBER]) for row in onboarding)


def steps_aggregate(steps: Iterable[tuple[str, float, Any, Any, Any]]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """rollup_funnel_steps rows of (funnel, ts, step, status, number) records."""
    hourly: dict[tuple[Any, ...], list[Any]] = {}
    for funnel, ts, step, status, number in steps:
        key = (int(ts // HOUR), funnel, step or "", status or "")
        entry = hourly.get(key)
        if entry is None:
            hourly[key] = [1, number]
        else:
            entry[0] += 1
            if number is not None and (entry[1] is None or number < entry[1]):
                entry[1] = number
    daily: dict[tuple[Any, ...], list[Any]] = {}
    for (hour, *rest), (n, number) in hourly.items():
        key = (hour // 24, *rest)
        entry = daily.get(key)
        if entry is None:
            daily[key] = [n, number]
        else:
            entry[0] += n
            if number is not None and (entry[1] is None or number < entry[1]):
                entry[1] = number
    return [(UPSERTS[f"steps_{size}"], sorted((*k, n, number) for k, (n, number) in table.items()))
            for size, table in (("hour", hourly), ("day", daily)) if table]


def _summed(rows: Iterable[tuple[tuple[Any, ...], Sequence[Any]]],
            key: Callable[[tuple[Any, ...]], tuple[Any, ...]]) -> dict[tuple[Any, ...], list[Any]]:
    """(key, (events, values, sum)) rows summed per key(key)."""
    out: dict[tuple[Any, ...], list[Any]] = {}
    for old, (n, nv, total) in rows:
        new = key(old)
        entry = out.get(new)
        if entry is None:
            out[new] = [n, nv, total]
        else:
            entry[0] += n
            entry[1] += nv
            entry[2] += total
    return out


def _coarser(rows: Iterable[tuple[tuple[Any, ...], Sequence[Any]]], size: int) -> dict[tuple[Any, ...], list[Any]]:
    """((bucket, name, label, outcome), (events, values, sum)) rows summed into buckets `size` times larger."""
    return _summed(rows, lambda k: (k[0] // size, k[1], k[2], k[3]))


def _person_coarser(rows: dict[tuple[Any, ...], list[Any]], size: int) -> dict[tuple[Any, ...], list[Any]]:
    """(person, bucket, name) -> [events, values, sum] rows summed into buckets `size` times larger."""
    return _summed(rows.items(), lambda k: (k[0], k[1] // size, k[2]))


def aggregate(events: Iterable[Fact], sign: int = 1) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """(upsert, rows) per rollup table for these events, each list sorted (one lock order for every agent
    sharing a PostgreSQL database). `sign` -1 subtracts them (erasure); the OR-ed masks are then left out:
    a bit cannot be taken back, the erased person's own rows are deleted instead.

    Cheap by construction (it runs in every group commit): each event is looked at once, its hour keys
    counted by Counter (C speed); the day, block and person rows are then derived from the hour rows, of
    which a group of events has far fewer than events."""
    hourly: Counter[tuple[Any, ...]] = Counter()          # (hour, name, label, outcome) -> events
    sums: dict[tuple[Any, ...], list[Any]] = {}           # the same keys -> [values, sum], valued events only
    bins: Counter[tuple[Any, ...]] = Counter()            # (hour, metric, bin) -> values
    active: Counter[tuple[Any, ...]] = Counter()          # (hour, person) -> events
    named_h: dict[tuple[Any, ...], list[Any]] = {}        # (person, hour, name) -> [events, values, sum]
    coached: dict[tuple[Any, ...], int] = {}              # (block, coach, person) -> days mask
    signup_steps: list[tuple[str, float, Any, Any, Any]] = []
    signup_days: dict[tuple[Any, ...], int] = {}          # (block, step, visitor) -> days mask
    signup_hours: dict[tuple[Any, ...], int] = {}         # (day, step, visitor) -> hours mask
    mfa: dict[Any, list[Any]] = {}                        # user -> [latest enrolled, latest disabled]
    for name, ts, user, label, outcome, value, anonymous in events:
        hour = int(ts // HOUR)
        if name == SIGNUP:
            signup_steps.append(("signup", ts, label, "", value))
            visitor = anonymous if user is None else user
            if visitor is not None:
                day = hour // 24
                block = day // BLOCK_DAYS
                bkey, hkey = (block, label or "", visitor), (day, label or "", visitor)
                signup_days[bkey] = signup_days.get(bkey, 0) | 1 << (day - block * BLOCK_DAYS)
                signup_hours[hkey] = signup_hours.get(hkey, 0) | 1 << (hour % 24)
        key = (hour, name, (label or "") if name in LABELLED else "", (outcome or "") if name in OUTCOMES else "")
        hourly[key] += 1
        if value is not None:
            entry = sums.get(key)
            if entry is None:
                sums[key] = [1, value]
            else:
                entry[0] += 1
                entry[1] += value
            if name in SKETCHED:
                bins[(hour, metric(name, label), value_bin(value))] += 1
        if user is None:
            continue
        active[(hour, user)] += 1
        if name in PERSON_NAMES:
            nkey = (user, hour, name)
            entry = named_h.get(nkey)
            if entry is None:
                named_h[nkey] = [1, 0 if value is None else 1, 0.0 if value is None else value]
            else:
                entry[0] += 1
                if value is not None:
                    entry[1] += 1
                    entry[2] += value
        elif name in SESSION_NAMES and label is not None:
            day = hour // 24
            block = day // BLOCK_DAYS
            ckey = (block, label, user)
            coached[ckey] = coached.get(ckey, 0) | 1 << (day - block * BLOCK_DAYS)
        elif name in MFA_NAMES:
            times = mfa.setdefault(user, [None, None])
            i = 0 if name == "mfa_enrolled" else 1
            if times[i] is None or ts > times[i]:
                times[i] = ts
    counts_h = [(*k, n, *sums.get(k, (0, 0.0))) for k, n in hourly.items()]
    counts_d: dict[tuple[Any, ...], list[Any]] = {}
    for hour, name, lab, res, n, nv, total in counts_h:
        entry = counts_d.get((hour // 24, name, lab, res))
        if entry is None:
            counts_d[(hour // 24, name, lab, res)] = [n, nv, total]
        else:
            entry[0] += n
            entry[1] += nv
            entry[2] += total
    counts_w, counts_6 = _coarser(counts_d.items(), WEEK_DAYS), \
        _coarser((((h, nm, lb, rs), (n, nv, t)) for h, nm, lb, rs, n, nv, t in counts_h), SIX_HOURS)
    bins_d: Counter[tuple[Any, ...]] = Counter()
    bins_6: Counter[tuple[Any, ...]] = Counter()
    for (hour, m, b), n in bins.items():
        bins_d[(hour // 24, m, b)] += n
        bins_6[(hour // SIX_HOURS, m, b)] += n
    named = _person_coarser(named_h, 24)                  # (person, day, name)
    named_w = _person_coarser(named, WEEK_DAYS)           # (person, week, name)
    bins_w: Counter[tuple[Any, ...]] = Counter()
    for (day, m, b), n in bins_d.items():
        bins_w[(day // WEEK_DAYS, m, b)] += n
    active_d: Counter[tuple[Any, ...]] = Counter()
    hourmasks: dict[tuple[Any, ...], int] = {}
    for (hour, user), n in active.items():
        active_d[(hour // 24, user)] += n
        hourmasks[(hour // 24, user)] = hourmasks.get((hour // 24, user), 0) | 1 << (hour % 24)
    blocks: dict[tuple[Any, ...], list[int]] = {}
    for (day, user), n in active_d.items():
        block = day // BLOCK_DAYS
        entry = blocks.get((block, user))
        bit = 1 << (day - block * BLOCK_DAYS)
        if entry is None:
            blocks[(block, user)] = [n, bit]
        else:
            entry[0] += n
            entry[1] |= bit
    out: list[tuple[str, list[tuple[Any, ...]]]] = [
        (UPSERTS["counts_hour"], sorted((h, nm, lb, rs, sign * n, sign * nv, sign * t) for h, nm, lb, rs, n, nv, t
                                        in counts_h)),
        (UPSERTS["counts_day"], sorted((*k, sign * n, sign * nv, sign * t) for k, (n, nv, t) in counts_d.items())),
        (UPSERTS["values_hour"], sorted((*k, sign * n) for k, n in bins.items())),
        (UPSERTS["values_day"], sorted((*k, sign * n) for k, n in bins_d.items())),
        (UPSERTS["counts_week"], sorted((*k, sign * n, sign * nv, sign * t) for k, (n, nv, t) in counts_w.items())),
        (UPSERTS["values_week"], sorted((*k, sign * n) for k, n in bins_w.items())),
        (UPSERTS["counts_6h"], sorted((*k, sign * n, sign * nv, sign * t) for k, (n, nv, t) in counts_6.items())),
        (UPSERTS["values_6h"], sorted((*k, sign * n) for k, n in bins_6.items())),
        (UPSERTS["persons_hour"], sorted((*k, sign * n) for k, n in active.items())),
        (UPSERTS["persons_day"], sorted((*k, sign * n) for k, n in active_d.items())),
        (UPSERTS["person_names"], sorted((*k, sign * n, sign * nv, sign * t) for k, (n, nv, t) in named.items())),
        (UPSERTS["person_names_hour"], sorted((*k, sign * n, sign * nv, sign * t)
                                              for k, (n, nv, t) in named_h.items())),
        (UPSERTS["person_names_week"], sorted((*k, sign * n, sign * nv, sign * t)
                                              for k, (n, nv, t) in named_w.items())),
    ]
    if sign > 0:
        out.append((UPSERTS["person_blocks"], sorted((*k, n, mask) for k, (n, mask) in blocks.items())))
        out.append((UPSERTS["coach_blocks"], sorted((*k, mask) for k, mask in coached.items())))
        out.append((UPSERTS["hourmasks"], sorted((*k, mask) for k, mask in hourmasks.items())))
        out.append((UPSERTS["signup_blocks"], sorted((*k, mask) for k, mask in signup_days.items())))
        out.append((UPSERTS["signup_hourmasks"], sorted((*k, mask) for k, mask in signup_hours.items())))
        out.append((UPSERTS["mfa"], sorted((user, *times) for user, times in mfa.items())))
        out += steps_aggregate(signup_steps)
    else:
        out.append((UPSERTS["person_blocks"], sorted((*k, -n, 0) for k, (n, _) in blocks.items())))
    return [(sql, rows) for sql, rows in out if rows]


# --- backfill, retention, erasure ----------------------------------------------------------------

BACKFILL_SQL = f"SELECT id, {FACT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?"


def backfill_aggregate(events: Iterable[Fact]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """`aggregate` without the tables of migrations after 8 (migration 8's backfill runs before them)."""
    return [(sql, rows) for sql, rows in aggregate(events) if not any(table in sql for table in LATER_TABLES)]


def retention_statements(cutoff: float, names: Sequence[str] | None) -> list[tuple[str, tuple[Any, ...]]]:
    """DELETEs of the buckets that END at or before `cutoff` (a bucket straddling it is kept, as the
    probe rollups keep theirs): of the event names given (their class's cutoff), of every name (names
    empty), or of the per-person tables (names None: activity follows the analytics class)."""
    hour, day = math.floor(cutoff / HOUR), math.floor(cutoff / DAY)
    if names is None:
        block = day // BLOCK_DAYS
        return [("DELETE FROM rollup_persons_hour WHERE bucket < ?", (hour,)),
                ("DELETE FROM rollup_persons_day WHERE bucket < ?", (day,)),
                ("DELETE FROM rollup_person_hourmasks WHERE bucket < ?", (day,)),
                ("DELETE FROM rollup_person_names_day WHERE bucket < ?", (day,)),
                ("DELETE FROM rollup_person_names_hour WHERE bucket < ?", (hour,)),
                # the weeks before the cut's go, the cut's is recounted from its remaining days
                ("DELETE FROM rollup_person_names_week WHERE bucket <= ?", (day // WEEK_DAYS,)),
                ("INSERT INTO rollup_person_names_week (bucket, person, name, events, nvalues, vsum) "
                 f"SELECT bucket / {WEEK_DAYS}, person, name, sum(events), sum(nvalues), sum(vsum) "
                 "FROM rollup_person_names_day WHERE bucket >= ? AND bucket < ? GROUP BY 1, 2, 3",
                 (day // WEEK_DAYS * WEEK_DAYS, (day // WEEK_DAYS + 1) * WEEK_DAYS)),
                ("DELETE FROM rollup_person_blocks WHERE bucket < ?", (block,)),
                ("DELETE FROM rollup_coach_blocks WHERE bucket < ?", (block,)),
                # onboarding_funnel's rows are analytics data (agent/store/retention.py CLASS_TABLES)
                ("DELETE FROM rollup_funnel_steps_hour WHERE funnel = 'onboarding' AND bucket < ?", (hour,)),
                ("DELETE FROM rollup_funnel_steps_day WHERE funnel = 'onboarding' AND bucket < ?", (day,))]
    if not names:           # every name: the buckets older than the longest class
        return [(f"DELETE FROM {table} WHERE bucket < ?", (hour if table.endswith("hour") else day,))
                for table in ("rollup_counts_hour", "rollup_counts_day", "rollup_values_hour", "rollup_values_day")] + \
            _blocks_retention(hour, day, "", ()) + _blocks_retention(hour, day, "", (), values=True) + \
            _signup_retention(hour, day)
    out: list[tuple[str, tuple[Any, ...]]] = []
    if SIGNUP in names:
        out += _signup_retention(hour, day)
    for name in names:
        out += [("DELETE FROM rollup_counts_hour WHERE name = ? AND bucket < ?", (name, hour)),
                ("DELETE FROM rollup_counts_day WHERE name = ? AND bucket < ?", (name, day)),
                *_blocks_retention(hour, day, "name = ? AND ", (name,))]
        if name in SKETCHED:
            low, high = (("web_vitals:", "web_vitals;") if name == "web_vitals" else (name, name))
            out += [(f"DELETE FROM rollup_values_{t} WHERE metric >= ? AND metric <= ? AND bucket < ?",
                     (low, high, hour if t == "hour" else day)) for t in ("hour", "day")]
            out += _blocks_retention(hour, day, "metric >= ? AND metric <= ? AND ", (low, high), values=True)
    return out


def _blocks_retention(hour: int, day: int, where: str, params: tuple[Any, ...],
                      values: bool = False) -> list[tuple[str, tuple[Any, ...]]]:
    """After the hour and day rows' DELETE: the weeks (6-hour blocks) before the one holding the cut go,
    and that one (some of its days or hours deleted) is recounted from its remaining day (hour) rows, so a
    block always equals the sum of its buckets."""
    table, keys, sums = (("rollup_values", "metric, bin", "sum(count)") if values else
                         ("rollup_counts", "name, label, outcome", "sum(events), sum(nvalues), sum(vsum)"))
    columns = "metric, bin, count" if values else "name, label, outcome, events, nvalues, vsum"
    out: list[tuple[str, tuple[Any, ...]]] = []
    for coarse, fine, size, cut in (("week", "day", WEEK_DAYS, day), ("6h", "hour", SIX_HOURS, hour)):
        block = cut // size
        out += [(f"DELETE FROM {table}_{coarse} WHERE {where}bucket <= ?", (*params, block)),
                (f"INSERT INTO {table}_{coarse} (bucket, {columns}) SELECT bucket / {size}, {keys}, {sums} "
                 f"FROM {table}_{fine} WHERE {where}bucket >= ? AND bucket < ? GROUP BY bucket / {size}, {keys}",
                 (*params, block * size, (block + 1) * size))]
    return out


def _signup_retention(hour: int, day: int) -> list[tuple[str, tuple[Any, ...]]]:
    return [("DELETE FROM rollup_funnel_steps_hour WHERE funnel = 'signup' AND bucket < ?", (hour,)),
            ("DELETE FROM rollup_funnel_steps_day WHERE funnel = 'signup' AND bucket < ?", (day,)),
            ("DELETE FROM rollup_signup_hourmasks WHERE bucket < ?", (day,)),
            ("DELETE FROM rollup_signup_blocks WHERE bucket < ?", (day // BLOCK_DAYS,))]


def erase_statements(ids: Sequence[str], erased: Sequence[Fact]) -> list[tuple[str, Sequence[Any]]]:
    """What erasing a person does to the rollups, run in the erasure's transaction: the counts and sketches
    lose the erased events (so they equal a backfill from the events that remain), every row keyed by the
    person goes. (Masks of OTHER persons never held the erased person: nothing else to undo.)"""
    marks = ", ".join("?" for _ in ids)
    statements: list[tuple[str, Sequence[Any]]] = []
    for sql, rows in aggregate(erased, sign=-1):
        if "rollup_counts" in sql or "rollup_values" in sql:
            statements += [(sql, row) for row in rows]
    statements += [(f"DELETE FROM {table} WHERE {column} IN ({marks})", list(ids)) for table, column in PERSON_TABLES]
    visitors = signup_visitors(erased)
    for chunk in (visitors[i:i + 500] for i in range(0, len(visitors), 500)):
        statements += [(f"DELETE FROM {table} WHERE visitor IN ({', '.join('?' * len(chunk))})", chunk)
                       for table in ("rollup_signup_blocks", "rollup_signup_hourmasks")]
    statements += [("DELETE FROM rollup_counts_hour WHERE events = 0", ()),
                   ("DELETE FROM rollup_counts_day WHERE events = 0", ()),
                   ("DELETE FROM rollup_values_hour WHERE count = 0", ()),
                   ("DELETE FROM rollup_values_day WHERE count = 0", ()),
                   ("DELETE FROM rollup_counts_week WHERE events = 0", ()),
                   ("DELETE FROM rollup_values_week WHERE count = 0", ()),
                   ("DELETE FROM rollup_counts_6h WHERE events = 0", ()),
                   ("DELETE FROM rollup_values_6h WHERE count = 0", ())]
    return statements


def signup_visitors(erased: Sequence[Fact]) -> list[str]:
    """The visitors (user id, else anonymous id) of the signup_step events among `erased`."""
    return sorted({user if user is not None else anonymous for name, _, user, _, _, _, anonymous in erased
                   if name == SIGNUP and (user is not None or anonymous is not None)})


_DAY_SQL = "CAST(floor(ts / 86400) AS INTEGER)"
_HOUR_SQL = "CAST(floor(ts / 3600) AS INTEGER)"
# the funnels' step rows of [?, ?) from their sources (backfill, and the recount of an erasure's buckets)
STEPS_FROM = {
    "signup": "SELECT {bucket}, 'signup', coalesce(label, ''), '', count(*), min(value) FROM events "
              "WHERE name = 'signup_step' AND ts >= ? AND ts < ? GROUP BY 1, 3",
    "onboarding": "SELECT {bucket}, 'onboarding', coalesce(step, ''), status, count(*), min(step_number) "
                  "FROM onboarding_funnel WHERE ts >= ? AND ts < ? GROUP BY 1, 3, 4",
}


def after_erase_statements(erased: Sequence[Fact], onboarding_ts: Sequence[float]) -> list[tuple[str, Sequence[Any]]]:
    """Run after the erased rows are deleted, in the same transaction: the funnels' step rows of every
    hour and day the erased signup events and onboarding rows were in, recounted from what remains (a
    lowest step number cannot be subtracted). A few buckets: one person's signup and onboarding."""
    touched = {("signup", ts) for name, ts, *_ in erased if name == SIGNUP} | \
        {("onboarding", ts) for ts in onboarding_ts}
    out: list[tuple[str, Sequence[Any]]] = []
    for size, seconds, bucket in (("hour", HOUR, _HOUR_SQL), ("day", DAY, _DAY_SQL)):
        for funnel, b in sorted({(funnel, int(ts // seconds)) for funnel, ts in touched}):
            out += [(f"DELETE FROM rollup_funnel_steps_{size} WHERE funnel = ? AND bucket = ?", (funnel, b)),
                    (f"INSERT INTO rollup_funnel_steps_{size} (bucket, funnel, step, status, total, number) "
                     + STEPS_FROM[funnel].format(bucket=bucket), (b * seconds, (b + 1) * seconds))]
    return out


def recompute_statements(person: str, dialect: str) -> list[tuple[str, Sequence[Any]]]:
    """The person's rows of every per-person rollup, recomputed from their events (after a PostHog alias
    merge rewrote the alias's events to them): deleted, then re-aggregated in SQL (floor(): PostgreSQL,
    SQLite with its math functions). Their events are found by user (agent/store/user_index.py)."""
    names, sessions = sorted(PERSON_NAMES), SESSION_NAMES
    own, mine = user_index.ids(dialect, "= ?", [person])
    name = user_index.name(dialect)     # not events_name_dims: the person's events by their ids
    visitor = f"{own} OR (user_id IS NULL AND anonymous_id = ?)"     # coalesce(user_id, anonymous_id) = ?
    n_marks, s_marks = ", ".join("?" * len(names)), ", ".join("?" * len(sessions))
    day = _DAY_SQL
    return [
        *((f"DELETE FROM {table} WHERE {column} = ?", [person]) for table, column in PERSON_TABLES),
        *((f"DELETE FROM {table} WHERE visitor = ?", [person]) for table in ("rollup_signup_blocks",
                                                                            "rollup_signup_hourmasks")),
        ("INSERT INTO rollup_signup_blocks (bucket, step, visitor, days) "
         f"SELECT d / {BLOCK_DAYS}, step, CAST(? AS TEXT), "
         f"sum(DISTINCT 1 << (d % {BLOCK_DAYS})) FROM (SELECT {day} AS d, coalesce(label, '') AS step FROM events "
         f"WHERE {name} = 'signup_step' AND ({visitor})) x GROUP BY 1, 2", [person, *mine, person]),
        ("INSERT INTO rollup_signup_hourmasks (bucket, step, visitor, hours) SELECT h / 24, step, CAST(? AS TEXT), "
         f"sum(DISTINCT 1 << (h % 24)) FROM (SELECT {_HOUR_SQL} AS h, coalesce(label, '') AS step FROM events "
         f"WHERE {name} = 'signup_step' AND ({visitor})) x GROUP BY 1, 2", [person, *mine, person]),
        ("INSERT INTO rollup_persons_hour (bucket, person, events) SELECT CAST(floor(ts / 3600) AS INTEGER), "
         f"user_id, count(*) FROM events WHERE {own} GROUP BY 1, 2", mine),
        (f"INSERT INTO rollup_persons_day (bucket, person, events) SELECT {day}, user_id, count(*) FROM events "
         f"WHERE {own} GROUP BY 1, 2", mine),
        ("INSERT INTO rollup_person_hourmasks (bucket, person, hours) SELECT h / 24, user_id, "
         "sum(DISTINCT 1 << (h % 24)) FROM (SELECT CAST(floor(ts / 3600) AS INTEGER) AS h, user_id FROM events "
         f"WHERE {own}) x GROUP BY 1, 2", mine),
        (f"INSERT INTO rollup_person_blocks (bucket, person, events, days) SELECT d / {BLOCK_DAYS}, user_id, count(*), "
         f"sum(DISTINCT 1 << (d % {BLOCK_DAYS})) FROM (SELECT {day} AS d, user_id FROM events WHERE {own}) x "
         "GROUP BY 1, 2", mine),
        (f"INSERT INTO rollup_person_names_day (person, bucket, name, events, nvalues, vsum) SELECT user_id, {day}, "
         f"name, count(*), count(value), coalesce(sum(value), 0) FROM events WHERE {own} AND {name} IN ({n_marks}) "
         "GROUP BY 1, 2, 3", [*mine, *names]),
        ("INSERT INTO rollup_person_names_hour (person, bucket, name, events, nvalues, vsum) SELECT user_id, "
         f"{_HOUR_SQL}, name, count(*), count(value), coalesce(sum(value), 0) FROM events WHERE {own} "
         f"AND {name} IN ({n_marks}) GROUP BY 1, 2, 3", [*mine, *names]),
        ("INSERT INTO rollup_person_names_week (person, bucket, name, events, nvalues, vsum) SELECT person, "
         f"bucket / {WEEK_DAYS}, name, sum(events), sum(nvalues), sum(vsum) FROM rollup_person_names_day "
         "WHERE person = ? GROUP BY 1, 2, 3", [person]),
        ("INSERT INTO rollup_mfa (person, enrolled, disabled) SELECT user_id, max(CASE WHEN name = 'mfa_enrolled' "
         f"THEN ts END), max(CASE WHEN name = 'mfa_disabled' THEN ts END) FROM events WHERE {own} "
         f"AND {name} IN ('mfa_enrolled', 'mfa_disabled') GROUP BY user_id", mine),
        (f"INSERT INTO rollup_coach_blocks (bucket, coach, person, days) SELECT d / {BLOCK_DAYS}, label, user_id, "
         f"sum(DISTINCT 1 << (d % {BLOCK_DAYS})) FROM (SELECT {day} AS d, label, user_id FROM events WHERE {own} "
         f"AND {name} IN ({s_marks}) AND label IS NOT NULL) x GROUP BY 1, 2, 3", [*mine, *sessions]),
    ]
