"""Cron monitoring from Sentry's `check_in` items (sentry-python's `sentry_sdk.crons.capture_checkin` and
`@monitor`, @sentry/node's `Sentry.captureCheckIn` / `withMonitor`): per monitor slug, the last check-in
time by status, check-ins by status, run durations, and what the monitor's schedule expects next, so
that Prometheus can tell a missed run (`time()` past the next expected check-in plus the margin) and a
failed one (the last finished check-in an `error` or `timeout`) (agent/rules/alerts_sentry.py).

The wire (sentry-python's `sentry_sdk/crons/api.py`): `{check_in_id, monitor_slug, status: in_progress |
ok | error | timeout, duration? (seconds), release?, environment?, monitor_config?: {schedule:
{type: crontab, value: "0 * * * *"} | {type: interval, value: 2, unit: minute | hour | day | week |
month | year}, checkin_margin? (minutes), max_runtime? (minutes), timezone? (IANA name)}}`. A check-in
carries no time of its own: it happened when it arrives.

Why the expected time and not a period: a crontab such as `0 9 * * mon-fri` has no single period. At
each check-in the agent computes the schedule's next run after it (croniter: a maintained library
that knows crontab's ranges, steps, names, `@daily` and daylight-saving time in the monitor's
timezone, rather than a cron parser of our own), and exposes it as
`loom_cron_next_expected_timestamp_seconds`; the margin (Sentry's `checkin_margin`, default 1 minute)
and `max_runtime` (default 30 minutes) as gauges beside it. An interval schedule expects the next
check-in an interval after this one (a month is 30 days, a year 365). Crontabs are Sentry's five
fields or a macro (`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`).

Where the schedule comes from: a monitor declared in `sentry.monitors` (config.py) uses the declared
one; else the check-in's `monitor_config`; else the schedule its last check-in declared. A monitor
with no schedule at all is tracked (last check-in, counts, durations) but has no expected time, so it
cannot be missed.

Bounds: the monitor slug is a label. The monitors declared in config are always tracked; besides them
the agent takes the first `sentry.max_monitors` slugs it sees (100 by default) and refuses a
check-in of any other (`rejected`): folding a monitor into `other` would break its missed-run
arithmetic. The state lives in memory: after a restart a monitor is watched again from its next
check-in.

A payload of the wrong shape raises ItemError: the item is `rejected`, its siblings go on.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from agent.metrics.store import Counter, Gauge, Histogram, MetricStore
from agent.sentry.items import ItemError

STATUSES = ("in_progress", "ok", "error", "timeout")
FINISHED = ("ok", "error", "timeout")
SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")      # Sentry's slugs are lowercase; at most 64 characters
INTERVAL_UNITS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400,
                  "year": 365 * 86400}
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
DEFAULT_MARGIN_MINUTES = 1             # Sentry's defaults
DEFAULT_MAX_RUNTIME_MINUTES = 30
MAX_MINUTES = 28 * 24 * 60             # Sentry's bound on checkin_margin and max_runtime (28 days)
MAX_INTERVAL = 10_000
CRONTAB_MAX = 128
TIMEZONE_MAX = 64
MAX_DURATION_SECONDS = 366 * 86400.0
DEFAULT_MAX_MONITORS = 100
MAX_MAX_MONITORS = 1000
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a monitor expects its check-ins: a crontab in a timezone, or an interval."""

    kind: str                          # crontab | interval
    crontab: str = ""
    interval_seconds: int = 0
    timezone: str = "UTC"
    margin_seconds: int = DEFAULT_MARGIN_MINUTES * 60
    max_runtime_seconds: int = DEFAULT_MAX_RUNTIME_MINUTES * 60

    def next_after(self, now: float) -> float | None:
        """The next run expected after `now` (a Unix time); None when the crontab never fires again."""
        if self.kind == "interval":
            return now + self.interval_seconds
        start = datetime.fromtimestamp(now, tz=ZoneInfo(self.timezone) if self.timezone != "UTC" else UTC)
        try:
            return float(croniter(self.crontab, start).get_next(float))
        except CroniterError:          # `0 0 30 2 *`: valid fields, no date
            return None


@dataclass(frozen=True, slots=True)
class CheckIn:
    """One `check_in` item, checked."""

    monitor: str
    status: str
    duration: float | None
    schedule: Schedule | None


def _minutes(value: Any, what: str, default: int) -> int:
    """checkin_margin / max_runtime in minutes (Sentry's unit) -> seconds."""
    if value is None:
        return default * 60
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= MAX_MINUTES:
        raise ItemError(f"{what}: must be a number of minutes from 0 to {MAX_MINUTES}")
    return round(value * 60)


def _zone(value: Any, what: str) -> str:
    if value is None:
        return "UTC"
    if type(value) is not str or not 0 < len(value) <= TIMEZONE_MAX:
        raise ItemError(f"{what}: must be an IANA timezone name such as Europe/Vienna")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ItemError(f"{what}: unknown timezone {value!r}") from None
    return value


def _crontab(value: Any, what: str) -> str:
    if type(value) is not str or not 0 < len(value) <= CRONTAB_MAX:
        raise ItemError(f"{what}: a crontab must be a string of at most {CRONTAB_MAX} characters")
    text = " ".join(value.split())
    if text.lower() in MACROS:
        return text.lower()
    if len(text.split(" ")) != 5:
        raise ItemError(f"{what}: must be a crontab of five fields (minute hour day month weekday) or a macro "
                        "such as @hourly")
    try:
        croniter(text, datetime.now(UTC))
    except (CroniterError, TypeError, KeyError):
        raise ItemError(f"{what}: {text!r} is not a valid crontab") from None
    return text


def parse_schedule(config: Any, where: str = "monitor_config") -> Schedule:
    """`monitor_config` (a check-in's, or a monitor of `sentry.monitors`) -> Schedule; raises ItemError
    whose message starts with the key (under `where`)."""
    if type(config) is not dict:
        raise ItemError(f"{where}: must be an object")
    schedule = config.get("schedule")
    if type(schedule) is not dict:
        raise ItemError(f"{where}.schedule: must be an object with type crontab or interval")
    kind = schedule.get("type")
    margin = _minutes(config.get("checkin_margin"), f"{where}.checkin_margin", DEFAULT_MARGIN_MINUTES)
    max_runtime = _minutes(config.get("max_runtime"), f"{where}.max_runtime", DEFAULT_MAX_RUNTIME_MINUTES)
    zone = _zone(config.get("timezone"), f"{where}.timezone")
    if kind == "crontab":
        return Schedule("crontab", crontab=_crontab(schedule.get("value"), f"{where}.schedule.value"),
                        timezone=zone, margin_seconds=margin, max_runtime_seconds=max_runtime)
    if kind == "interval":
        value, unit = schedule.get("value"), schedule.get("unit")
        if type(value) is not int or not 1 <= value <= MAX_INTERVAL:
            raise ItemError(f"{where}.schedule.value: an interval must be an integer from 1 to {MAX_INTERVAL}")
        if type(unit) is not str or unit not in INTERVAL_UNITS:
            raise ItemError(f"{where}.schedule.unit: must be one of {', '.join(INTERVAL_UNITS)}")
        return Schedule("interval", interval_seconds=value * INTERVAL_UNITS[unit], timezone=zone,
                        margin_seconds=margin, max_runtime_seconds=max_runtime)
    raise ItemError(f"{where}.schedule.type: must be crontab or interval")


def parse_slug(value: Any) -> str:
    if type(value) is not str:
        raise ItemError("monitor_slug: must be a string")
    slug = value.strip().lower()
    if not SLUG.fullmatch(slug):
        raise ItemError("monitor_slug: must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or "
                        "digit")
    return slug


def parse_check_in(payload: Any) -> CheckIn:
    """A `check_in` item's payload -> CheckIn; raises ItemError."""
    if type(payload) is not dict:
        raise ItemError("a check-in must be a JSON object")
    status = payload.get("status")
    if type(status) is not str or status not in STATUSES:
        raise ItemError(f"status must be one of {', '.join(STATUSES)}")
    duration = payload.get("duration")
    if duration is not None and (type(duration) not in (int, float) or not math.isfinite(duration)
                                 or not 0 <= duration <= MAX_DURATION_SECONDS):
        raise ItemError(f"duration must be a number of seconds from 0 to {MAX_DURATION_SECONDS:g}")
    config = payload.get("monitor_config")
    return CheckIn(monitor=parse_slug(payload.get("monitor_slug")), status=status,
                   duration=None if duration is None else float(duration),
                   schedule=None if config is None else parse_schedule(config))


class CronMonitors:
    """The cron monitor series, and which monitors are tracked (see the module docstring)."""

    def __init__(self, metrics: MetricStore, declared: Mapping[str, Schedule] | None = None,
                 max_monitors: int = DEFAULT_MAX_MONITORS, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.declared: Mapping[str, Schedule] = declared or {}
        self.max_monitors = max_monitors
        self.schedules: dict[str, Schedule | None] = {}       # every monitor tracked -> its last known schedule
        limit = 2 * MAX_MAX_MONITORS * len(STATUSES)     # declared + max_monitors: _admit bounds the slugs
        monitor, status = ("monitor",), ("monitor", "status")
        allow = {"status": STATUSES}
        self.last: Gauge = metrics.gauge(
            "loom_cron_last_checkin_timestamp_seconds", "Unix time of each cron monitor's last check-in, by status.",
            status, series_limit=limit, allow=allow)
        self.checkins: Counter = metrics.counter(
            "loom_cron_checkins", "Check-ins of each cron monitor, by status (in_progress starts a run; ok, error "
            "and timeout finish one).", status, series_limit=limit, allow=allow)
        self.durations: Histogram = metrics.histogram(
            "loom_cron_run_duration_seconds", "Durations of finished cron runs (check-ins with a duration), by "
            "monitor.", monitor, buckets=DURATION_BUCKETS, series_limit=limit)
        self.next_expected: Gauge = metrics.gauge(
            "loom_cron_next_expected_timestamp_seconds", "Unix time of each cron monitor's next expected check-in "
            "(its schedule's next run after the last check-in).", monitor, series_limit=limit)
        self.margin: Gauge = metrics.gauge(
            "loom_cron_checkin_margin_seconds", "How late a cron monitor's check-in may be before its run counts as "
            "missed (Sentry's checkin_margin).", monitor, series_limit=limit)
        self.max_runtime: Gauge = metrics.gauge(
            "loom_cron_max_runtime_seconds", "How long a cron monitor's run may stay in progress (Sentry's "
            "max_runtime).", monitor, series_limit=limit)

    def reconfigure(self, declared: Mapping[str, Schedule], max_monitors: int) -> None:
        """A reload: declared schedules apply from the next check-in; tracked monitors stay tracked."""
        self.declared, self.max_monitors = declared, max_monitors

    def _admit(self, monitor: str) -> None:
        if monitor in self.schedules or monitor in self.declared:
            return
        undeclared = sum(1 for name in self.schedules if name not in self.declared)
        if undeclared >= self.max_monitors:
            raise ItemError(f"more than {self.max_monitors} cron monitors (sentry.max_monitors): declare "
                            f"{monitor!r} in sentry.monitors or raise the limit")

    def record(self, check_in: CheckIn) -> None:
        monitor = check_in.monitor
        self._admit(monitor)
        schedule = self.declared.get(monitor) or check_in.schedule or self.schedules.get(monitor)
        self.schedules[monitor] = schedule
        now = self.clock()
        key = (monitor, check_in.status)
        self.last.set(key, now)
        self.checkins.inc(key)
        if check_in.duration is not None and check_in.status in FINISHED:
            self.durations.observe((monitor,), check_in.duration)
        if schedule is None:
            return
        self.margin.set((monitor,), float(schedule.margin_seconds))
        self.max_runtime.set((monitor,), float(schedule.max_runtime_seconds))
        expected = schedule.next_after(now)
        if expected is not None:
            self.next_expected.set((monitor,), expected)
