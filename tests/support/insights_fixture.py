"""A small, hand-counted set of events for the insights (trends, funnels, retention), with the answers they
must give; every expected number in tests/test_insights.py was computed by hand from EVENTS, the
comments there show the arithmetic.

T0 is Monday 2025-03-03T00:00:00Z, so day and week buckets start there. Persons:
- ann (u_ann): identified.
- ben: anonymous first (a_ben, no user id), then identified as u_ben: his events carrying both ids
  (the earliest at 4 h) link a_ben to u_ben, so his anonymous events are his.
- cat (a_cat): anonymous only.
- dan: u_dan, and u_dan_old, an alias of u_dan in person_aliases whose events are still stored under it
  (as when the pipeline's alias map has forgotten it): one person.
- eve, fay, gus, hal, ivy, jon (u_*): identified; kim and lou (u_*) have events only before T0.

Events: custom ones (signup_started, signup_completed, purchase, app_open, noise), PostHog's `$pageview`
with `$`-properties, and the catalog's page_load (whose page and load_time_ms are the lifted label and
value columns of agent/store/rows.py).
"""

from __future__ import annotations

from typing import Any

from agent.events.catalog import CATALOG
from agent.events.model import Event
from agent.store.base import Store
from agent.store.rows import event_rows

T0 = 1740960000.0          # 2025-03-03T00:00:00Z, a Monday
H = 3600.0
D = 86400.0
W = 7 * D

# (event, user id, anonymous id, hours after T0, properties)
EVENTS: list[tuple[str, str | None, str | None, float, dict[str, Any]]] = [
    # --- $pageview: trends ---
    ("$pageview", "u_ann", None, 1, {"$browser": "Chrome", "$current_url": "/home", "duration": 10}),
    ("$pageview", "u_ann", None, 2, {"$browser": "Chrome", "$current_url": "/pricing", "duration": 20}),
    ("$pageview", None, "a_ben", 3, {"$browser": "Firefox", "$current_url": "/home", "duration": 30}),
    ("$pageview", "u_ben", "a_ben", 26, {"$browser": "Firefox", "$current_url": "/signup", "duration": 40}),
    ("$pageview", None, "a_cat", 27, {"$browser": "Safari", "$current_url": "/home", "duration": 50}),
    ("$pageview", "u_dan_old", None, 50, {"$browser": "Chrome", "$current_url": "/HOME/x", "duration": 60}),
    ("$pageview", "u_dan", None, 51, {"$browser": "Edge", "$current_url": "/docs"}),
    ("$pageview", "u_eve", None, 52, {"$browser": "Chrome", "$current_url": "/pricing", "duration": "70"}),
    ("$pageview", "u_ann", None, 167, {"$browser": "Chrome", "$current_url": "/home", "duration": 5}),
    ("$pageview", "u_eve", None, -1, {"$browser": "Chrome", "$current_url": "/home"}),    # Sunday before T0
    ("$pageview", "u_ann", None, 168, {"$browser": "Chrome", "$current_url": "/home"}),   # at T0 + 7 d
    ("$pageview", "u_eve", None, -120, {"$browser": "Chrome", "$current_url": "/home"}),  # 2025-02-26
    # --- page_load (catalog: label = page, value = load_time_ms) ---
    ("page_load", "u_ann", None, 5, {"page": "/a", "load_time_ms": 100}),
    ("page_load", "u_ben", None, 6, {"page": "/b", "load_time_ms": 300}),
    ("page_load", "u_ann", None, 30, {"page": "/a", "load_time_ms": 200}),
    # --- before T0, kim and lou only: the rollups' dimensions (login_attempt's result is its lifted outcome,
    # session_booked's coach_id its lifted label and duration_minutes its value) ---
    ("login_attempt", "u_kim", None, -50.5, {"method": "password", "result": "success"}),
    ("login_attempt", "u_kim", None, -49.2, {"method": "password", "result": "failure"}),
    ("login_attempt", "u_lou", None, -26.7, {"method": "sso", "result": "success"}),
    ("login_attempt", "u_lou", None, -3.3, {"result": "success"}),
    ("session_booked", "u_kim", None, -40.1, {"coach_id": "c1", "duration_minutes": 30}),
    ("session_booked", "u_lou", None, -20.25, {"coach_id": "c2", "duration_minutes": 60}),
    ("session_booked", "u_lou", None, -2.5, {"coach_id": "c1", "duration_minutes": 45}),
    ("session_booked", "u_kim", None, -1.75, {"duration_minutes": 15}),
    # --- a key that needs quoting in a JSON path (max only, 200 h before T0) ---
    ("odd", "u_max", None, -200, {"a.b'c": "x", "n": 1.5, "flag": True}),
    ("odd", "u_max", None, -199, {"a.b'c": "y", "n": 2, "flag": False}),
    # --- the funnel signup_started -> signup_completed -> purchase ---
    ("signup_started", "u_ann", None, 0.2, {"plan": "pro"}),
    ("signup_completed", "u_ann", None, 0.4, {}),
    ("purchase", "u_ann", None, 0.6, {"amount": 100}),
    ("signup_started", None, "a_ben", 3.2, {"plan": "free"}),
    ("signup_completed", "u_ben", "a_ben", 4, {}),
    ("purchase", "u_ben", None, 30, {"amount": 10}),
    ("signup_started", None, "a_cat", 5, {"plan": "free"}),
    ("purchase", None, "a_cat", 6, {"amount": 5}),
    ("signup_completed", None, "a_cat", 7, {}),
    ("signup_started", "u_dan_old", None, 10, {"plan": "pro"}),
    ("signup_completed", "u_dan", None, 10.5, {}),
    ("noise", "u_dan", None, 10.7, {}),
    ("purchase", "u_dan", None, 11, {"amount": 20}),
    ("signup_started", "u_eve", None, 20, {"plan": "free"}),
    ("signup_started", "u_eve", None, 50, {"plan": "pro"}),
    ("signup_completed", "u_eve", None, 70, {}),
    ("purchase", "u_eve", None, 71, {"amount": 80}),
    ("signup_started", "u_fay", None, 100, {}),
    ("signup_completed", "u_gus", None, 110, {}),
    # --- retention: signup_completed cohorts, app_open returns ---
    ("signup_completed", "u_hal", None, 8 * 24, {}),
    ("signup_completed", "u_ivy", None, 15 * 24, {}),
    ("signup_completed", "u_jon", None, -10 * 24, {}),
    ("signup_completed", "u_jon", None, 9 * 24, {}),
    ("app_open", "u_ann", None, 2 * 24, {}),
    ("app_open", "u_ann", None, 8 * 24, {}),
    ("app_open", "u_ann", None, 15 * 24, {}),
    ("app_open", None, "a_ben", 9 * 24, {}),
    ("app_open", None, "a_cat", 22 * 24, {}),
    ("app_open", "u_dan_old", None, 10 * 24, {}),
    ("app_open", "u_hal", None, 8 * 24 + 1, {}),
    ("app_open", "u_hal", None, 23 * 24, {}),
    ("app_open", "u_ivy", None, 22 * 24, {}),
    ("app_open", "u_jon", None, 16 * 24, {}),
]
ALIASES = [("u_dan_old", "u_dan")]


def fixture_events() -> list[Event]:
    events = []
    for i, (name, user, anonymous, hours, props) in enumerate(EVENTS):
        ts = T0 + hours * H
        known = name in CATALOG
        events.append(Event(name, CATALOG[name].category if known else "custom", ts, ts, dict(props),
                            user_id=user, anonymous_id=anonymous, event_id=f"insights-{i}", known=known))
    return events


async def load_insights_fixture(store: Store) -> None:
    """EVENTS in batches of 7 (so a person's events span batches), then the alias."""
    rows = [event_rows(event) for event in fixture_events()]
    for start in range(0, len(rows), 7):
        await store.write_events(rows[start:start + 7])
    await store.execute([("INSERT INTO person_aliases (alias_id, person_id, ts) VALUES (?, ?, ?)", (alias, person, T0))
                         for alias, person in ALIASES])
