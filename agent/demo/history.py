"""The demo's past: stories of the same traffic placed over the last days, so that the analytics (the
dashboard's 7/30/90-day ranges, trends per day, week-by-week retention, the analytics page) have a history
to show the moment the demo starts, instead of one bucket of "now".

Each story happens at one instant drawn over [now - days, now - 1 min): denser towards now (the density
grows linearly, a product gaining users), with weekends quieter (a story drawn on a Saturday or Sunday is
kept 60% of the time), and its events follow each other by 2 s to 3 min, in the order the story sends
them. The users are the traffic's own 500, so the same people come back day after day (retention).
Timestamps are unix seconds in the envelope's `timestamp`: the agent refuses events older than
`events.max_past_age` (30 days by default), so the demo keeps `days` below that.
"""

from __future__ import annotations

import math
import time

from agent.demo.traffic import Event, Traffic

DAY = 86400.0
MAX_DAYS = 29.0                 # inside the agent's default events.max_past_age (30 days)
WEEKEND_KEPT = 0.6


def history(traffic: Traffic, days: float, events: int, now: float | None = None) -> list[Event]:
    """About `events` events of whole stories over the last `days` days, oldest first, each with its
    `timestamp`."""
    now = time.time() if now is None else now
    r = traffic.r
    span = days * DAY - 60.0
    stories: list[tuple[float, list[Event]]] = []
    count = 0
    while count < events:
        ago = span * (1 - math.sqrt(r.random()))            # density grows linearly towards now
        at = now - 60.0 - ago
        weekday = time.gmtime(at).tm_wday
        if weekday >= 5 and r.random() > WEEKEND_KEPT:
            continue
        story = traffic.story()
        stories.append((at, story))
        count += len(story)
    stories.sort(key=lambda item: item[0])
    out: list[Event] = []
    for at, story in stories:
        for event in story:
            event["timestamp"] = round(min(at, now - 1.0), 3)
            out.append(event)
            at += r.uniform(2.0, 180.0)
    return out


def users_of(events: list[Event]) -> list[str]:
    """The identified users of `events`, in first-seen order."""
    seen: dict[str, None] = {}
    for event in events:
        user = event.get("userId")
        if isinstance(user, str):
            seen.setdefault(user, None)
    return list(seen)
