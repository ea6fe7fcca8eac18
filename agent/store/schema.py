"""The store's tables, as versioned migrations written once for both SQLite and PostgreSQL.

A migration is a list of DDL statements with three dialect placeholders:
    {id}    an auto-incrementing integer primary key
    {real}  a double-precision float
    {json}  a JSON document (SQLite: TEXT; PostgreSQL: JSONB)
    {blob}  bytes (SQLite: BLOB; PostgreSQL: BYTEA)
Times are unix seconds (float). Migrations run at start-up, in order, each in its own transaction;
`schema_migrations` records the versions applied. A migration, once released, never changes: the
next change is a new entry at the end of MIGRATIONS.

The tables follow the documentation's Supabase tables:
- events              every stored event (properties and context as JSON), plus three columns lifted
                      out of the properties so the analytics queries read an index instead of JSON:
                      `label` (the event's main dimension), `outcome` (its result or status) and
                      `value` (its main number); see agent/store/rows.py for which property is which.
- users               one row per user: first and last seen, role. Keeps "new users" and "active
                      users" queries proportional to users, not to events.
- onboarding_funnel   onboarding steps started / completed / abandoned and flows completed.
- mfa_audit_logs      every MFA challenge, verification, enrolment and removal (audit class).
- security_events     logins, logouts and security events (security class).
- download_logs       resource and file downloads.
- opt_outs            users who objected to tracking (GDPR right to object); persisted here.
- person_aliases      PostHog aliases: an id that is one person with another (agent/store/people.py).
- group_profiles      PostHog groups ($groupidentify): type, key, properties; never users.
- probe_rollups       probe results per target and minute, for uptime over a range; the same per
                      hour in probe_rollups_hourly (a long range reads whole hours, its edges minutes).
- recording_sessions  one row per session recording (posthog-js `$snapshot`s): its user, times, counts.
- recording_chunks    the recording's rrweb events, one zlib-compressed JSON array per session, window
                      and request, in arrival order (agent/store/recordings.py).
- event_ids           PostgreSQL only (migration 9): the client event ids, deduplicated there because the
                      events table is partitioned by month of ts (agent/store/partitions.py says why).
- rollup_*            the analytics rollups, written in the events' own transaction (agent/store/rollups.py):
                      counts and value sketches per hour and per day, persons active per hour and day,
                      31-day blocks of active days per person (a bitmask) and per (coach, client).
"""

from __future__ import annotations

from dataclasses import dataclass

DIALECT_TYPES = {
    # folded: a backfill from the events reads only those SQLite's rollups already hold (migration 19: the
    # events above the watermark are folded after the migrations, into every rollup table, new ones too)
    "sqlite": {"id": "INTEGER PRIMARY KEY", "real": "REAL", "json": "TEXT", "blob": "BLOB",
               "folded": " AND id <= (SELECT events FROM rollup_folded)"},
    "postgres": {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "real": "DOUBLE PRECISION",
                 "json": "JSONB", "blob": "BYTEA", "folded": ""},
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    dialects: tuple[str, ...] = ("sqlite", "postgres")     # elsewhere it is recorded as applied, doing nothing


def _by_user_updated(watermark: str) -> str:
    """The trigger that moves a folded event's entry of events_by_user when its user or time changes (alias
    merges); folded: at or below `watermark`, a column of rollup_folded (migrations 21 and 23)."""
    return f"""CREATE TRIGGER events_by_user_updated AFTER UPDATE OF user_id, ts ON events
        WHEN old.id <= (SELECT {watermark} FROM rollup_folded)
        BEGIN
            DELETE FROM events_by_user WHERE user_id = old.user_id AND ts = old.ts AND id = old.id;
            INSERT INTO events_by_user (user_id, ts, id) SELECT new.user_id, new.ts, new.id
                WHERE new.user_id IS NOT NULL;
        END"""


def _count_tables(*sizes: str) -> tuple[str, ...]:
    """The count and value-sketch rollup tables of each bucket size (migrations 8, 14 and 16 make the same shape)."""
    counts = tuple(
        f"""CREATE TABLE rollup_counts_{size} (
            bucket INTEGER NOT NULL,
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            outcome TEXT NOT NULL,
            events INTEGER NOT NULL,
            nvalues INTEGER NOT NULL,
            vsum {{real}} NOT NULL,
            PRIMARY KEY (bucket, name, label, outcome))""" for size in sizes)
    values = tuple(
        f"""CREATE TABLE rollup_values_{size} (
            bucket INTEGER NOT NULL,
            metric TEXT NOT NULL,
            bin INTEGER NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (bucket, metric, bin))""" for size in sizes)
    return counts + values


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events, users, the documentation's audit tables, opt-outs, probe rollups", (
        """CREATE TABLE events (
            id {id},
            event_id TEXT,
            name TEXT NOT NULL,
            category TEXT NOT NULL,
            ts {real} NOT NULL,
            received_at {real} NOT NULL,
            user_id TEXT,
            anonymous_id TEXT,
            session_id TEXT,
            label TEXT,
            outcome TEXT,
            value {real},
            retention_class TEXT NOT NULL,
            properties {json} NOT NULL,
            context {json} NOT NULL)""",
        "CREATE UNIQUE INDEX events_event_id ON events (event_id) WHERE event_id IS NOT NULL",
        "CREATE INDEX events_user_ts ON events (user_id, ts)",
        "CREATE INDEX events_anonymous_id ON events (anonymous_id) WHERE anonymous_id IS NOT NULL",
        "CREATE INDEX events_name_ts ON events (name, ts)",
        """CREATE TABLE users (
            user_id TEXT PRIMARY KEY,
            first_seen {real} NOT NULL,
            last_seen {real} NOT NULL,
            role TEXT)""",
        "CREATE INDEX users_first_seen ON users (first_seen)",
        "CREATE INDEX users_last_seen ON users (last_seen)",
        """CREATE TABLE onboarding_funnel (
            id {id},
            event_id TEXT,
            user_id TEXT,
            flow_id TEXT,
            step TEXT,
            step_number INTEGER,
            status TEXT NOT NULL,
            time_spent_seconds {real},
            ts {real} NOT NULL)""",
        "CREATE INDEX onboarding_funnel_ts ON onboarding_funnel (ts)",
        "CREATE INDEX onboarding_funnel_user ON onboarding_funnel (user_id)",
        """CREATE TABLE mfa_audit_logs (
            id {id},
            event_id TEXT,
            user_id TEXT,
            action TEXT NOT NULL,
            method TEXT,
            result TEXT,
            failure_reason TEXT,
            ip TEXT,
            user_agent TEXT,
            ts {real} NOT NULL)""",
        "CREATE INDEX mfa_audit_logs_ts ON mfa_audit_logs (ts)",
        "CREATE INDEX mfa_audit_logs_user ON mfa_audit_logs (user_id)",
        """CREATE TABLE security_events (
            id {id},
            event_id TEXT,
            user_id TEXT,
            type TEXT NOT NULL,
            severity TEXT,
            result TEXT,
            reason TEXT,
            ip TEXT,
            user_agent TEXT,
            ts {real} NOT NULL)""",
        "CREATE INDEX security_events_ts ON security_events (ts)",
        "CREATE INDEX security_events_user ON security_events (user_id)",
        """CREATE TABLE download_logs (
            id {id},
            event_id TEXT,
            user_id TEXT,
            resource_id TEXT,
            resource_type TEXT,
            bytes {real},
            ts {real} NOT NULL)""",
        "CREATE INDEX download_logs_ts ON download_logs (ts)",
        "CREATE INDEX download_logs_user ON download_logs (user_id)",
        """CREATE TABLE opt_outs (
            user_id TEXT PRIMARY KEY,
            opted_out_at {real} NOT NULL,
            source TEXT NOT NULL)""",
        """CREATE TABLE probe_rollups (
            target TEXT NOT NULL,
            minute INTEGER NOT NULL,
            probes INTEGER NOT NULL,
            successes INTEGER NOT NULL,
            duration_sum {real} NOT NULL,
            duration_max {real} NOT NULL,
            PRIMARY KEY (target, minute))""",
        "CREATE INDEX probe_rollups_minute ON probe_rollups (minute)",
    )),
    Migration(2, "the analytics index: event name and time with the lifted columns, so the analytics "
                 "queries read the index alone", (
        "DROP INDEX IF EXISTS events_name_ts",
        "CREATE INDEX events_name_dims ON events (name, ts, label, outcome, value, user_id)",
    )),
    Migration(3, "errors: one row per captured exception, grouped into issues by fingerprint", (
        """CREATE TABLE errors (
            id {id},
            event_id TEXT,
            fingerprint TEXT NOT NULL,
            ts {real} NOT NULL,
            received_at {real} NOT NULL,
            user_id TEXT,
            release TEXT,
            environment TEXT,
            feature TEXT,
            type TEXT NOT NULL,
            message TEXT,
            sample {json} NOT NULL)""",
        "CREATE UNIQUE INDEX errors_event_id ON errors (event_id) WHERE event_id IS NOT NULL",
        "CREATE INDEX errors_fingerprint_ts ON errors (fingerprint, ts)",
        "CREATE INDEX errors_ts ON errors (ts)",
        "CREATE INDEX errors_user ON errors (user_id)",
    )),
    Migration(4, "identify traits on users; the release an event came from", (
        "ALTER TABLE users ADD COLUMN traits {json}",
        "ALTER TABLE users ADD COLUMN plan TEXT",
        "ALTER TABLE users ADD COLUMN signed_up_at {real}",
        "ALTER TABLE events ADD COLUMN release TEXT",
    )),
    Migration(5, "probe results per target and hour: uptime over 30 days reads 720 rows a target, not 43,200", (
        """CREATE TABLE probe_rollups_hourly (
            target TEXT NOT NULL,
            hour INTEGER NOT NULL,
            probes INTEGER NOT NULL,
            successes INTEGER NOT NULL,
            duration_sum {real} NOT NULL,
            duration_max {real} NOT NULL,
            PRIMARY KEY (target, hour))""",
        "CREATE INDEX probe_rollups_hourly_hour ON probe_rollups_hourly (hour)",
    )),
    Migration(6, "PostHog persons and groups: aliases (two ids, one person) and groups (type, key, properties)", (
        """CREATE TABLE person_aliases (
            alias_id TEXT PRIMARY KEY,
            person_id TEXT NOT NULL,
            ts {real} NOT NULL)""",
        "CREATE INDEX person_aliases_person ON person_aliases (person_id)",
        """CREATE TABLE group_profiles (
            group_type TEXT NOT NULL,
            group_key TEXT NOT NULL,
            properties {json},
            first_seen {real} NOT NULL,
            last_seen {real} NOT NULL,
            PRIMARY KEY (group_type, group_key))""",
    )),
    Migration(7, "session recordings: one row per recorded session, its rrweb events in compressed chunks", (
        """CREATE TABLE recording_sessions (
            session_id TEXT PRIMARY KEY,
            user_id TEXT,
            start_ts {real} NOT NULL,
            end_ts {real} NOT NULL,
            received_at {real} NOT NULL,
            ts {real} NOT NULL,
            snapshots INTEGER NOT NULL,
            raw_bytes INTEGER NOT NULL,
            stored_bytes INTEGER NOT NULL,
            chunks INTEGER NOT NULL)""",
        "CREATE INDEX recording_sessions_start ON recording_sessions (start_ts)",
        "CREATE INDEX recording_sessions_ts ON recording_sessions (ts)",
        "CREATE INDEX recording_sessions_user ON recording_sessions (user_id)",
        """CREATE TABLE recording_chunks (
            id {id},
            session_id TEXT NOT NULL,
            window_id TEXT,
            user_id TEXT,
            first_ts {real} NOT NULL,
            last_ts {real} NOT NULL,
            ts {real} NOT NULL,
            snapshots INTEGER NOT NULL,
            raw_bytes INTEGER NOT NULL,
            codec TEXT NOT NULL,
            data {blob} NOT NULL)""",
        "CREATE INDEX recording_chunks_session ON recording_chunks (session_id, id)",
        "CREATE INDEX recording_chunks_ts ON recording_chunks (ts)",
        "CREATE INDEX recording_chunks_user ON recording_chunks (user_id)",
    )),
    # Migration 8 is the analytics rollups (issue 17, helper R: agent/store/rollups.py maintains them in the
    # events' own transaction and backfills them once, right after this migration, from the events table).
    # Later migrations (the store bounds, the insights) take 9 and up.
    Migration(8, "analytics rollups maintained at ingest: event counts per hour and day, value sketches, "
                 "per-person activity (agent/store/rollups.py)", (
        *_count_tables("hour", "day"),
        *(f"""CREATE TABLE rollup_persons_{size} (
            bucket INTEGER NOT NULL,
            person TEXT NOT NULL,
            events INTEGER NOT NULL,
            PRIMARY KEY (bucket, person))""" for size in ("hour", "day")),
        "CREATE INDEX rollup_persons_hour_person ON rollup_persons_hour (person, bucket)",
        "CREATE INDEX rollup_persons_day_person ON rollup_persons_day (person, bucket)",
        """CREATE TABLE rollup_person_blocks (
            bucket INTEGER NOT NULL,
            person TEXT NOT NULL,
            days INTEGER NOT NULL,
            events INTEGER NOT NULL,
            PRIMARY KEY (bucket, person))""",
        """CREATE TABLE rollup_person_names_day (
            bucket INTEGER NOT NULL,
            person TEXT NOT NULL,
            name TEXT NOT NULL,
            events INTEGER NOT NULL,
            nvalues INTEGER NOT NULL,
            vsum {real} NOT NULL,
            PRIMARY KEY (person, bucket, name))""",
        """CREATE TABLE rollup_coach_blocks (
            bucket INTEGER NOT NULL,
            coach TEXT NOT NULL,
            person TEXT NOT NULL,
            days INTEGER NOT NULL,
            PRIMARY KEY (bucket, coach, person))""",
    )),
    Migration(9, "PostgreSQL: events partitioned by month of ts, client event ids deduplicated in event_ids "
                 "(agent/store/partitions.py; the old rows are copied in chunks after this migration)", (
        "ALTER TABLE events RENAME TO events_unpartitioned",
        "ALTER INDEX events_pkey RENAME TO events_unpartitioned_pkey",
        "ALTER INDEX events_event_id RENAME TO events_unpartitioned_event_id",
        "ALTER INDEX events_user_ts RENAME TO events_unpartitioned_user_ts",
        "ALTER INDEX events_anonymous_id RENAME TO events_unpartitioned_anonymous_id",
        "ALTER INDEX events_name_dims RENAME TO events_unpartitioned_name_dims",
        "ALTER SEQUENCE events_id_seq RENAME TO events_unpartitioned_id_seq",
        """CREATE TABLE events (
            id BIGINT GENERATED ALWAYS AS IDENTITY,
            event_id TEXT,
            name TEXT NOT NULL,
            category TEXT NOT NULL,
            ts {real} NOT NULL,
            received_at {real} NOT NULL,
            user_id TEXT,
            anonymous_id TEXT,
            session_id TEXT,
            label TEXT,
            outcome TEXT,
            value {real},
            retention_class TEXT NOT NULL,
            properties {json} NOT NULL,
            context {json} NOT NULL,
            release TEXT,
            PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)""",
        "CREATE TABLE events_default PARTITION OF events DEFAULT",
        "CREATE INDEX events_user_ts ON events (user_id, ts)",
        "CREATE INDEX events_anonymous_id ON events (anonymous_id) WHERE anonymous_id IS NOT NULL",
        "CREATE INDEX events_name_dims ON events (name, ts, label, outcome, value, user_id)",
        """CREATE TABLE event_ids (
            event_id TEXT PRIMARY KEY,
            ts {real} NOT NULL)""",
        "CREATE INDEX event_ids_ts ON event_ids (ts)",
        # new events are numbered after every old one, which keeps their ids when copied
        "SELECT setval(pg_get_serial_sequence('events', 'id'), "
        "(SELECT coalesce(max(id), 0) + 1 FROM events_unpartitioned), false)",
    ), dialects=("postgres",)),
    # Migration 10 (issue 17, helper R2): the persons of a range's edge hours from one row per person and day
    Migration(10, "analytics rollups: per person and day, a bitmask of the active hours (agent/store/rollups.py), "
                  "backfilled from rollup_persons_hour", (
        """CREATE TABLE rollup_person_hourmasks (
            bucket INTEGER NOT NULL,
            person TEXT NOT NULL,
            hours INTEGER NOT NULL,
            PRIMARY KEY (bucket, person))""",
        "INSERT INTO rollup_person_hourmasks (bucket, person, hours) "
        "SELECT bucket / 24, person, sum(1 << (bucket % 24)) FROM rollup_persons_hour GROUP BY bucket / 24, person",
    )),
    # Migration 11 (issue 17, helper R2): the dashboard's signup and onboarding funnels from rollups
    Migration(11, "analytics rollups: the signup and onboarding funnels' steps per hour and day, the signup "
                  "visitors' days and hours (agent/store/rollups.py), backfilled from the events", (
        *(f"""CREATE TABLE rollup_funnel_steps_{size} (
            bucket INTEGER NOT NULL,
            funnel TEXT NOT NULL,
            step TEXT NOT NULL,
            status TEXT NOT NULL,
            total INTEGER NOT NULL,
            number {{real}},
            PRIMARY KEY (bucket, funnel, step, status))""" for size in ("hour", "day")),
        """CREATE TABLE rollup_signup_blocks (
            bucket INTEGER NOT NULL,
            step TEXT NOT NULL,
            visitor TEXT NOT NULL,
            days INTEGER NOT NULL,
            PRIMARY KEY (bucket, step, visitor))""",
        """CREATE TABLE rollup_signup_hourmasks (
            bucket INTEGER NOT NULL,
            step TEXT NOT NULL,
            visitor TEXT NOT NULL,
            hours INTEGER NOT NULL,
            PRIMARY KEY (bucket, step, visitor))""",
        "CREATE INDEX rollup_signup_blocks_visitor ON rollup_signup_blocks (visitor)",
        "CREATE INDEX rollup_signup_hourmasks_visitor ON rollup_signup_hourmasks (visitor)",
        *(f"INSERT INTO rollup_funnel_steps_{size} (bucket, funnel, step, status, total, number) "
          f"SELECT CAST(floor(ts / {seconds}) AS INTEGER), 'signup', coalesce(label, ''), '', count(*), min(value) "
          f"FROM events WHERE name = 'signup_step' GROUP BY 1, 3"
          for size, seconds in (("hour", 3600), ("day", 86400))),
        *(f"INSERT INTO rollup_funnel_steps_{size} (bucket, funnel, step, status, total, number) "
          f"SELECT CAST(floor(ts / {seconds}) AS INTEGER), 'onboarding', coalesce(step, ''), status, count(*), "
          f"min(step_number) FROM onboarding_funnel GROUP BY 1, 3, 4"
          for size, seconds in (("hour", 3600), ("day", 86400))),
        "INSERT INTO rollup_signup_blocks (bucket, step, visitor, days) SELECT h / 24 / 31, step, visitor, "
        "sum(DISTINCT 1 << (h / 24 % 31)) "
        "FROM (SELECT CAST(floor(ts / 3600) AS INTEGER) AS h, coalesce(label, '') AS step, "
        "coalesce(user_id, anonymous_id) AS visitor FROM events WHERE name = 'signup_step' "
        "AND (user_id IS NOT NULL OR anonymous_id IS NOT NULL)) x GROUP BY 1, 2, 3",
        "INSERT INTO rollup_signup_hourmasks (bucket, step, visitor, hours) SELECT h / 24, step, visitor, "
        "sum(DISTINCT 1 << (h % 24)) "
        "FROM (SELECT CAST(floor(ts / 3600) AS INTEGER) AS h, coalesce(label, '') AS step, "
        "coalesce(user_id, anonymous_id) AS visitor FROM events WHERE name = 'signup_step' "
        "AND (user_id IS NOT NULL OR anonymous_id IS NOT NULL)) x GROUP BY 1, 2, 3",
    )),
    # Migration 12 (issue 17, helper A): person bitmaps, backfilled by the drivers (agent/store/person_bits.py)
    Migration(12, "person bitmaps: a dense index per person, per hour and day and event name (and label) a Roaring "
                  "bitmap of the persons active (agent/store/person_bits.py), backfilled from the events", (
        """CREATE TABLE person_index (
            idx {id},
            person TEXT UNIQUE)""",
        *(f"""CREATE TABLE person_bits_{size} (
            bucket INTEGER NOT NULL,
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            bits {{blob}} NOT NULL,
            PRIMARY KEY (name, label, bucket))""" for size in ("hour", "day")),
        """CREATE TABLE person_bits_extra (
            bucket INTEGER NOT NULL,
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            idx BIGINT NOT NULL,
            PRIMARY KEY (name, label, bucket, idx))""",
        "CREATE INDEX person_bits_extra_idx ON person_bits_extra (idx)",
    )),
    # Migration 13 (issue 17, helper B): the insights' persons from the bitmaps (agent/analytics/insight_persons.py)
    Migration(13, "insights' persons from the person bitmaps: the anonymous events by name (a partial index: the "
                  "bitmaps hold identified persons only); page_load's rollup counts by page (rollups.LABELLED), "
                  "its bitmaps by page backfilled by the drivers (agent/store/person_bits.py)", (
        "CREATE INDEX events_anonymous_name ON events (name, ts) WHERE user_id IS NULL",
        *(f"DELETE FROM rollup_counts_{size} WHERE name = 'page_load'" for size in ("hour", "day")),
        *(f"INSERT INTO rollup_counts_{size} (bucket, name, label, outcome, events, nvalues, vsum) "
          f"SELECT CAST(floor(ts / {seconds}) AS INTEGER), name, coalesce(label, ''), '', count(*), count(value), "
          "coalesce(sum(value), 0) FROM events WHERE name = 'page_load' GROUP BY 1, 2, 3"
          for size, seconds in (("hour", 3600), ("day", 86400))),
    )),
    # Migration 14 (issue 17, helper A2): a range's whole weeks read one count row and one sketch bin per week
    Migration(14, "analytics rollups: the counts and value sketches per 7-day block (day // 7; "
                  "agent/store/rollups.py), backfilled from the day rollups", (
        *_count_tables("week"),
        "INSERT INTO rollup_counts_week (bucket, name, label, outcome, events, nvalues, vsum) "
        "SELECT bucket / 7, name, label, outcome, sum(events), sum(nvalues), sum(vsum) FROM rollup_counts_day "
        "GROUP BY 1, 2, 3, 4",
        "INSERT INTO rollup_values_week (bucket, metric, bin, count) "
        "SELECT bucket / 7, metric, bin, sum(count) FROM rollup_values_day GROUP BY 1, 2, 3",
    )),
    # Migration 15 (issue 17, helper A2): business metrics' MFA adoption from one row per user
    Migration(15, "analytics rollups: per user, the latest mfa_enrolled and mfa_disabled times "
                  "(agent/store/rollups.py), backfilled from the events", (
        """CREATE TABLE rollup_mfa (
            person TEXT PRIMARY KEY,
            enrolled {real},
            disabled {real})""",
        "INSERT INTO rollup_mfa (person, enrolled, disabled) SELECT user_id, "
        "max(CASE WHEN name = 'mfa_enrolled' THEN ts END), max(CASE WHEN name = 'mfa_disabled' THEN ts END) "
        "FROM events WHERE name IN ('mfa_enrolled', 'mfa_disabled') AND user_id IS NOT NULL GROUP BY user_id",
    )),
    # Migration 16 (issue 17, helper A2): a range's edge hours read 6-hour blocks and at most 10 single hours
    Migration(16, "analytics rollups: the counts and value sketches per 6-hour block (hour // 6; "
                  "agent/store/rollups.py), backfilled from the hour rollups", (
        *_count_tables("6h"),
        "INSERT INTO rollup_counts_6h (bucket, name, label, outcome, events, nvalues, vsum) "
        "SELECT bucket / 6, name, label, outcome, sum(events), sum(nvalues), sum(vsum) FROM rollup_counts_hour "
        "GROUP BY 1, 2, 3, 4",
        "INSERT INTO rollup_values_6h (bucket, metric, bin, count) "
        "SELECT bucket / 6, metric, bin, sum(count) FROM rollup_values_hour GROUP BY 1, 2, 3",
    )),
    # Migration 17 (issue 17, helper A2): the dashboard's top clients from each block's busiest persons first
    Migration(17, "analytics rollups: the persons' 31-day blocks by their events (the dashboard's top clients, "
                  "agent/analytics/rollup_queries.py)", (
        "CREATE INDEX rollup_person_blocks_events ON rollup_person_blocks (bucket, events)",
    )),
    # Migration 18 (issue 17, helper A3): the signup funnel's visitors as bitmaps, backfilled by the drivers
    Migration(18, "signup visitors as Roaring bitmaps: a dense index per signup visitor, per hour and day and step "
                  "a bitmap of the visitors (agent/store/signup_bits.py), backfilled from the events", (
        """CREATE TABLE visitor_index (
            idx {id},
            visitor TEXT UNIQUE)""",
        *(f"""CREATE TABLE signup_bits_{size} (
            bucket INTEGER NOT NULL,
            step TEXT NOT NULL,
            bits {{blob}} NOT NULL,
            PRIMARY KEY (bucket, step))""" for size in ("hour", "day")),
        """CREATE TABLE signup_bits_extra (
            bucket INTEGER NOT NULL,
            step TEXT NOT NULL,
            idx BIGINT NOT NULL,
            PRIMARY KEY (bucket, step, idx))""",
        "CREATE INDEX signup_bits_extra_idx ON signup_bits_extra (idx)",
    )),
    # Migration 19 (issue 17, lead): SQLite's rollups folded in bulk, not in every group commit
    Migration(19, "analytics rollups folded in bulk on SQLite: the watermark of the events and onboarding rows "
                  "already in them (agent/store/rollup_fold.py)", (
        "CREATE TABLE rollup_folded (events INTEGER NOT NULL, onboarding INTEGER NOT NULL)",
        "INSERT INTO rollup_folded (events, onboarding) SELECT (SELECT coalesce(max(id), 0) FROM events), "
        "(SELECT coalesce(max(id), 0) FROM onboarding_funnel)",
    ), dialects=("sqlite",)),
    # Migration 20 (issue 17, helper R): the top persons' work over a range's whole weeks, one row per week,
    # and over its edge hours, one row per hour
    Migration(20, "analytics rollups: the per-person counts of the work events per 7-day block (day // 7) and "
                  "per hour (agent/store/rollups.py), backfilled from the day rows and the events", (
        *(f"""CREATE TABLE rollup_person_names_{size} (
            bucket INTEGER NOT NULL,
            person TEXT NOT NULL,
            name TEXT NOT NULL,
            events INTEGER NOT NULL,
            nvalues INTEGER NOT NULL,
            vsum {{real}} NOT NULL,
            PRIMARY KEY (person, bucket, name))""" for size in ("week", "hour")),
        "INSERT INTO rollup_person_names_week (bucket, person, name, events, nvalues, vsum) "
        "SELECT bucket / 7, person, name, sum(events), sum(nvalues), sum(vsum) FROM rollup_person_names_day "
        "GROUP BY 1, 2, 3",
        "INSERT INTO rollup_person_names_hour (bucket, person, name, events, nvalues, vsum) "
        "SELECT CAST(floor(ts / 3600) AS INTEGER), user_id, name, count(*), count(value), coalesce(sum(value), 0) "
        "FROM events WHERE name IN ('resource_created', 'resource_engagement_score', 'resource_viewed', "
        "'task_completed', 'task_created') AND user_id IS NOT NULL{folded} GROUP BY 1, 2, 3",
    )),
    # Migration 21 (issue 17): SQLite's per-user index of the events folded in bulk (agent/store/user_index.py)
    Migration(21, "events by user on SQLite: the index events_user_ts replaced by the table events_by_user, "
                  "folded in bulk with the rollups and kept in step by triggers (agent/store/user_index.py)", (
        "CREATE TABLE events_by_user (user_id TEXT NOT NULL, ts REAL NOT NULL, id INTEGER NOT NULL, "
        "PRIMARY KEY (user_id, ts, id)) WITHOUT ROWID",
        # the folded events only: the fold after the migrations adds those above the watermark
        "INSERT INTO events_by_user (user_id, ts, id) SELECT user_id, ts, id FROM events "
        "WHERE user_id IS NOT NULL{folded} ORDER BY 1, 2, 3",
        "DROP INDEX events_user_ts",
        """CREATE TRIGGER events_by_user_deleted AFTER DELETE ON events WHEN old.user_id IS NOT NULL
        BEGIN
            DELETE FROM events_by_user WHERE user_id = old.user_id AND ts = old.ts AND id = old.id;
        END""",
        _by_user_updated("events"),
    ), dialects=("sqlite",)),
    # Migration 22: the same name on PostgreSQL, a view over its events_user_ts, so the SQL is shared
    Migration(22, "events by user on PostgreSQL: a view over the events with a user (agent/store/user_index.py)", (
        "CREATE VIEW events_by_user AS SELECT user_id, ts, id FROM events WHERE user_id IS NOT NULL",
    ), dialects=("postgres",)),
    # Migration 23 (review of 21): events_by_user's own watermark, so an agent before 21 sharing the file
    # leaves entries to add, not holes (agent/store/user_index.py)
    Migration(23, "events by user on SQLite: their own watermark (rollup_folded.by_user), lowered by a trigger "
                  "when the highest events are deleted (agent/store/user_index.py)", (
        "ALTER TABLE rollup_folded ADD COLUMN by_user INTEGER NOT NULL DEFAULT 0",
        "UPDATE rollup_folded SET by_user = events",        # migration 21 backfilled up to it, folds since
        "DROP TRIGGER events_by_user_updated",
        _by_user_updated("by_user"),
        # the highest events deleted: their ids come again, below this watermark. Every deleter then lowers the
        # rollups' one to the highest id left (rollup_fold.LOWER_SQL, agents before 21 too): this one follows.
        # Not a trigger on the events: one reading the watermark for each deleted row cost retention 19.7 ->
        # 28.3 CPU µs an event (111,424 of 1M deleted); this one fires once a deleting statement
        """CREATE TRIGGER events_by_user_lowered AFTER UPDATE OF events ON rollup_folded
        WHEN new.events < old.events
        BEGIN
            UPDATE rollup_folded SET by_user = min(by_user, new.events);
        END""",
    ), dialects=("sqlite",)),
)

# tables holding a user's data, with the column naming the user (GDPR export and erasure)
USER_TABLES: tuple[tuple[str, str], ...] = (
    ("events", "user_id"), ("users", "user_id"), ("onboarding_funnel", "user_id"),
    ("mfa_audit_logs", "user_id"), ("security_events", "user_id"), ("download_logs", "user_id"),
    ("errors", "user_id"), ("opt_outs", "user_id"), ("recording_sessions", "user_id"),
    ("person_aliases", "person_id"),
)

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at {real} NOT NULL)"""


def statements(migration: Migration, dialect: str) -> list[str]:
    """The migration's DDL for `dialect` ("sqlite" or "postgres"); none for a dialect it does not concern."""
    if dialect not in migration.dialects:
        return []
    types = DIALECT_TYPES[dialect]
    return [sql.format(**types) for sql in migration.statements]


def migrations_table(dialect: str) -> str:
    return MIGRATIONS_TABLE.format(**DIALECT_TYPES[dialect])


def latest_version() -> int:
    return MIGRATIONS[-1].version
