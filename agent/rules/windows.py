"""Per-minute counts of exactly what the anomaly detectors read, kept for a bounded history.

The detectors answer "how many failed logins in the last 15 minutes" and "how many events in the
hour before that" without querying Prometheus, so the agent keeps its own small history: a ring of
one row of integer counters per minute, `2 x the largest window + 1` rows (two complete windows to
compare, plus the minute in progress). Memory is fixed; a minute older than the ring is forgotten.

`observe()` runs on the ingest hot path, so per event it is one dict lookup and one or two integer
increments into the current minute's row; nothing is allocated per event. Minutes are the agent's
receive time (`Event.received_at`), so a client's wrong clock cannot move an event between windows.

Slow API requests are counted per bucket of `loom_api_request_duration_seconds` (the same bounds,
the same `le` rule), so the detector and the Prometheus rule count the same requests, for any
`slow_request_ms` that is one of those bounds.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable

from agent.events.metric_table import API_LATENCY, MS
from agent.events.model import Event

# the counters of one minute's row
EVENTS = 0                     # every accepted event (engagement)
LOGIN_SUCCESS = 1
LOGIN_FAILURE = 2
MFA_SUCCESS = 3
MFA_FAILURE = 4
NOTIFICATION_DELIVERED = 5
NOTIFICATION_FAILED = 6
SIGNUP_COMPLETED = 7
API_REQUESTS = 8
API_BUCKETS = 9                # API_BUCKETS + i: requests with bisect_left(API_LATENCY, seconds) == i
ROW_SIZE = API_BUCKETS + len(API_LATENCY) + 1

# events counted by name alone
_BY_NAME: dict[str, int] = {
    "notification_delivered": NOTIFICATION_DELIVERED,
    "notification_delivery_failure": NOTIFICATION_FAILED,
}
# events counted by one property's value (closed sets in agent/events/catalog_*.py)
_BY_PROPERTY: dict[str, tuple[str, dict[object, int]]] = {
    "login_attempt": ("result", {"success": LOGIN_SUCCESS, "failure": LOGIN_FAILURE}),
    "mfa_verification": ("result", {"success": MFA_SUCCESS, "failure": MFA_FAILURE}),
    "signup_step": ("status", {"completed": SIGNUP_COMPLETED}),
}
_API_REQUEST = "api_request"


def minute_of(timestamp: float) -> int:
    return int(timestamp // 60)


class Counts:
    """Sums of one span of minutes, read by name."""

    __slots__ = ("_sums",)

    def __init__(self, sums: list[int]):
        self._sums = sums

    def __getitem__(self, counter: int) -> int:
        return self._sums[counter]

    def slower_than(self, slow_ms: float) -> int:
        """API requests slower than `slow_ms`, which must be a bound of API_LATENCY (in ms)."""
        index = slow_bound_index(slow_ms)
        return sum(self._sums[API_BUCKETS + index + 1:])


def slow_bound_index(slow_ms: float) -> int:
    """The index of `slow_ms` among API_LATENCY's bounds; ValueError when it is not one."""
    seconds = slow_ms * MS
    index = bisect_left(API_LATENCY, seconds)
    if index == len(API_LATENCY) or abs(API_LATENCY[index] - seconds) > 1e-9:
        raise ValueError(f"must be a bucket bound of loom_api_request_duration_seconds in ms ({slow_bounds_text()})")
    return index


def slow_bounds_text() -> str:
    return ", ".join(f"{bound * 1000:g}" for bound in API_LATENCY)


class EventWindows:
    """A ring of per-minute counter rows covering `2 * max_window_minutes + 1` minutes."""

    def __init__(self, max_window_minutes: int, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._empty_ring(max_window_minutes)

    def _empty_ring(self, max_window_minutes: int) -> None:
        if max_window_minutes < 1:
            raise ValueError("max_window_minutes must be at least 1")
        self.max_window_minutes = max_window_minutes
        self.size = 2 * max_window_minutes + 1
        self._rows = [[0] * ROW_SIZE for _ in range(self.size)]
        self._minutes = [-1] * self.size          # the minute each row holds; -1: never used
        self._current_minute = -1
        self._current_row = self._rows[0]

    def observe(self, events: Iterable[Event]) -> None:
        """Count accepted events into the minute they were received in."""
        by_name, by_property = _BY_NAME, _BY_PROPERTY
        minute, row = self._current_minute, self._current_row
        for event in events:
            event_minute = int(event.received_at // 60)
            if event_minute != minute:
                found = self._row_for(event_minute)
                if found is None:                 # older than the ring: forgotten already
                    continue
                minute, row = event_minute, found
            row[EVENTS] += 1
            name = event.name
            counter = by_name.get(name)
            if counter is not None:
                row[counter] += 1
                continue
            keyed = by_property.get(name)
            if keyed is not None:
                counter = keyed[1].get(event.properties.get(keyed[0]))
                if counter is not None:
                    row[counter] += 1
            elif name == _API_REQUEST:
                duration = event.properties.get("duration_ms")
                if duration is not None:
                    row[API_REQUESTS] += 1
                    row[API_BUCKETS + bisect_left(API_LATENCY, duration * MS)] += 1

    def _row_for(self, minute: int) -> list[int] | None:
        """The row of `minute`, reset when it held an older minute; None when it is older than the ring."""
        slot = minute % self.size
        held = self._minutes[slot]
        row = self._rows[slot]
        if held != minute:
            if held > minute or minute <= self._current_minute - self.size:
                return None
            for i in range(ROW_SIZE):
                row[i] = 0
            self._minutes[slot] = minute
        if minute >= self._current_minute:
            self._current_minute, self._current_row = minute, row
        return row

    def resize(self, max_window_minutes: int) -> None:
        """Keep `2 * max_window_minutes + 1` minutes from now on (a reload changed a window), carrying
        over the minutes the new ring still covers."""
        kept = sorted((minute, row) for minute, row in zip(self._minutes, self._rows) if minute >= 0)
        current = self._current_minute
        self._empty_ring(max_window_minutes)
        for minute, row in kept:
            if minute > current - self.size:
                slot = minute % self.size
                self._rows[slot], self._minutes[slot] = row, minute
        if current >= 0:
            self._current_minute, self._current_row = current, self._rows[current % self.size]

    def counts(self, now: float, minutes: int, *, minutes_ago: int = 0) -> Counts:
        """Sums over the `minutes` minutes ending `minutes_ago` minutes before the minute of `now`.

        `minutes_ago=0` includes the minute in progress (for counts and rates, so a burst shows at
        once); a drop compares complete minutes: `counts(now, w, minutes_ago=1)` against
        `counts(now, w, minutes_ago=w + 1)`. Minutes outside the ring count as zero.
        """
        last = minute_of(now) - minutes_ago
        first = last - minutes + 1
        if minutes < 1 or first <= minute_of(now) - self.size:
            raise ValueError(f"{minutes} minutes ending {minutes_ago} minutes ago is beyond the "
                             f"{self.size} minutes kept")
        sums = [0] * ROW_SIZE
        for minute in range(first, last + 1):
            slot = minute % self.size
            if self._minutes[slot] == minute:
                row = self._rows[slot]
                for i in range(ROW_SIZE):
                    sums[i] += row[i]
        return Counts(sums)
