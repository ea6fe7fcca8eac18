"""Strict funnels (agent/analytics/funnels.py) on SQLite and PostgreSQL: they read the steps' events only
and look up, for each step event that may continue an attempt, whether another event of the person lies
between it and the person's previous step event. A hand-counted fixture for the edges (events of the same
time ordered by id, anonymous and identified ids of one person, an alias's events, events outside the range
or past the window), and random stores checked against a walk over every event of every person (the
definition: any other event of theirs in the range breaks the attempt)."""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from typing import Any

import pytest

from agent.analytics import funnels
from agent.analytics.funnels import funnel, strict
from agent.analytics.insight_query import funnel_query
from agent.analytics.stats import nearest_rank
from agent.events.model import Event
from agent.store.base import Store
from agent.store.rows import event_rows

pytest_plugins = ["tests.support.store_fixtures"]

T0 = 1740960000.0          # 2025-03-03T00:00:00Z
H = 3600.0
STEPS = ["step_a", "step_b", "step_c"]
RANGE = {"from": T0, "to": T0 + 7 * 24 * H}

# (event, user id, anonymous id, hours after T0), written in this order: events of the same time are
# ordered by their id, which is this order
EVENTS: list[tuple[str, str | None, str | None, float]] = [
    # p1: a b c in a row
    ("step_a", "u_p1", None, 1), ("step_b", "u_p1", None, 2), ("step_c", "u_p1", None, 3),
    # p2: another event of theirs between a and b
    ("step_a", "u_p2", None, 1), ("other", "u_p2", None, 1.5), ("step_b", "u_p2", None, 2),
    # p3: all at the same time, the other event written between a and b: it is between them
    ("step_a", "u_p3", None, 5), ("other", "u_p3", None, 5), ("step_b", "u_p3", None, 5),
    # p4: the same time, the other event written first: it is before a, not between a and b
    ("other", "u_p4", None, 6), ("step_a", "u_p4", None, 6), ("step_b", "u_p4", None, 6),
    # p5: a as the anonymous a_p5, b with both ids (the link: a_p5 is u_p5's), then an anonymous event of
    # a_p5 between b and c
    ("step_a", None, "a_p5", 10), ("step_b", "u_p5", "a_p5", 11), ("other", None, "a_p5", 11.5),
    ("step_c", "u_p5", None, 12),
    # p6: between their steps, events of other persons only: an unlinked anonymous id, another user (whose
    # event carries an anonymous id of nobody's steps)
    ("step_a", "u_p6", None, 20), ("other", None, "a_stranger", 20.5), ("step_b", "u_p6", None, 21),
    ("other", "u_other", "a_other", 21.5), ("step_c", "u_p6", None, 22),
    # p7: an event still stored under u_p7_old, an alias of u_p7, between a and b
    ("step_a", "u_p7", None, 30), ("other", "u_p7_old", None, 30.5), ("step_b", "u_p7", None, 31),
    # p8: a step event whose filter fails is another event: step_b with "bad": true
    ("step_a", "u_p8", None, 35), ("step_b", "u_p8", None, 35.5), ("step_c", "u_p8", None, 36),
    # p9: an event before the range just before a, and c after it: a b in the range
    ("other", "u_p9", None, -0.5), ("step_a", "u_p9", None, 0.1), ("step_b", "u_p9", None, 0.2),
    ("step_c", "u_p9", None, 7 * 24 + 1),
    # p10: a before the range, b in it: not in the funnel
    ("step_a", "u_p10", None, -0.5), ("step_b", "u_p10", None, 0.5),
    # p11: b a day and an hour after a: past the 1-day window
    ("step_a", "u_p11", None, 50), ("step_b", "u_p11", None, 75),
    # p12: one run broken, a later one whole: the person counts at 3, timed by the whole run
    ("step_a", "u_p12", None, 80), ("step_b", "u_p12", None, 80.5), ("other", "u_p12", None, 80.7),
    ("step_c", "u_p12", None, 81), ("step_a", "u_p12", None, 90), ("step_b", "u_p12", None, 90.25),
    ("step_c", "u_p12", None, 90.5),
    # p13: a b broken, a b whole (1800 s), then a b c broken before c (900 s): the first attempt of 2 steps
    # is kept, although the run of three is looked up first
    ("step_a", "u_p13", None, 100), ("other", "u_p13", None, 100.2), ("step_b", "u_p13", None, 100.5),
    ("step_a", "u_p13", None, 101), ("step_b", "u_p13", None, 101.5),
    ("step_a", "u_p13", None, 102), ("step_b", "u_p13", None, 102.25), ("other", "u_p13", None, 102.3),
    ("step_c", "u_p13", None, 102.5),
]
ALIASES = [("u_p7_old", "u_p7")]
BAD = {("step_b", "u_p8")}             # carries {"bad": true}: fails step 2's filter
PLANS = {("u_p1", 1): "pro", ("u_p11", 50): "free", ("u_p12", 80): "free", ("u_p12", 90): "pro",
         ("u_p13", 100): "free", ("u_p13", 101): "pro"}        # step_a's "plan": the breakdown


def _event(i: int, name: str, user: str | None, anonymous: str | None, ts: float, props: dict[str, Any]) -> Event:
    return Event(name, "custom", ts, ts, props, user_id=user, anonymous_id=anonymous, event_id=f"strict-{i}",
                 known=False)


async def _load(store: Store, events: list[Event], aliases: list[tuple[str, str]]) -> None:
    rows = [event_rows(event) for event in events]
    for start in range(0, len(rows), 5):
        await store.write_events(rows[start:start + 5])
    if aliases:
        await store.execute([("INSERT INTO person_aliases (alias_id, person_id, ts) VALUES (?, ?, ?)",
                              (alias, person, T0)) for alias, person in aliases])


def _steps(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(s["persons"], s["median_seconds_from_previous"], s["p90_seconds_from_previous"]) for s in doc["steps"]]


def test_strict_funnel_edges(store, run, monkeypatch):
    events = [_event(i, name, user, anon, T0 + hours * H,
                     {"bad": True} if (name, user) in BAD else
                     {"plan": PLANS[user, hours]} if name == "step_a" and (user, hours) in PLANS else {})
              for i, (name, user, anon, hours) in enumerate(EVENTS)]
    run(_load(store, events, ALIASES))
    body = {"steps": [{"event": "step_a"},
                      {"event": "step_b", "properties": [{"key": "bad", "operator": "is_not_set"}]},
                      {"event": "step_c"}], "window": "1d", "order": "strict", **RANGE}
    doc = run(funnel(store, funnel_query(body, T0)))
    # step 1: p1 .. p9, p11, p12, p13 (p10's a is before the range). Step 2: p1 (3600 s), p4 (0), p5 (3600),
    # p6 (3600), p9 (360), p12 (900, the whole run kept), p13 (1800): ranks 4 and 7 of
    # [0 360 900 1800 3600 3600 3600]. Step 3: p1 (3600), p6 (3600), p12 (900); p5's a_p5 event breaks
    # b -> c, p12's first run and p13's last are broken before their c
    assert _steps(doc) == [(12, None, None), (7, 1800.0, 3600.0), (3, 3600.0, 3600.0)]
    # the same with every pair looked up in its own statement, and one pair alone per person per round
    monkeypatch.setattr(funnels, "GAPS_PER_QUERY", 1)
    monkeypatch.setattr(funnels, "FIRST_PAIRS", 1)
    assert run(funnel(store, funnel_query(body, T0))) == doc
    # ordered: the events between steps do not matter (p2 p3 p7 reach b, p5 p13 c; p8's b fails its filter)
    ordered = run(funnel(store, funnel_query({**body, "order": "ordered"}, T0)))
    assert [s["persons"] for s in ordered["steps"]] == [12, 10, 5]
    # by step 1's plan, from the kept attempt: pro p1 (3600, 3600) p12 (900, 900) p13 (1800); free p11;
    # unset p2 .. p9 (step 2: p4 0, p5 3600, p6 3600, p9 360; step 3: p6)
    split = run(funnel(store, funnel_query({**body, "breakdown": "plan", "breakdown_limit": 2}, T0)))
    assert [(b["breakdown_value"], b["is_other"], _steps(b)) for b in split["breakdown"]] == [
        (None, False, [(8, None, None), (4, 360.0, 3600.0), (1, 3600.0, 3600.0)]),
        ("pro", False, [(3, None, None), (3, 1800.0, 3600.0), (2, 900.0, 3600.0)]),
        (None, True, [(1, None, None), (0, None, None), (0, None, None)])]


# --- random stores against the definition ----------------------------------------------------------------

def _person_of(events: list[tuple[int, Event]], aliases: dict[str, str]) -> dict[int, str | None]:
    """The documented person of each event (docs/insights.md "Persons"), by id."""
    first_link: dict[str, tuple[float, int, str]] = {}
    for i, e in events:
        if e.anonymous_id is not None and e.user_id is not None:
            seen = first_link.get(e.anonymous_id)
            if seen is None or (e.timestamp, i) < seen[:2]:
                first_link[e.anonymous_id] = (e.timestamp, i, e.user_id)
    out: dict[int, str | None] = {}
    for i, e in events:
        if e.user_id is not None:
            who: str | None = e.user_id
        elif e.anonymous_id is not None:
            link = first_link.get(e.anonymous_id)
            who = link[2] if link else e.anonymous_id
        else:
            who = None
        out[i] = aliases.get(who, who) if who is not None else None
    return out


def _expected(events: list[tuple[int, Event]], aliases: dict[str, str], start: float, end: float,
              window: float, masks: dict[int, int]) -> list[tuple[Any, ...]]:
    """Walk every event of each person in the range (mask 0: not a step, a break). Anonymous ids count for
    their person when one of the person's step events in the range carries it without a user id (the
    documented limit of the look-ups: docs/insights.md)."""
    person = _person_of(events, aliases)
    inside = [(i, e) for i, e in events if start <= e.timestamp < end and person[i] is not None]
    seen_anonymous = {(person[i], e.anonymous_id) for i, e in inside if e.user_id is None and masks[i]}
    by_person: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    for i, e in inside:
        if e.user_id is None and (person[i], e.anonymous_id) not in seen_anonymous:
            continue                # an anonymous id of theirs the funnel does not see
        by_person[str(person[i])].append((e.timestamp, i, masks[i]))
    attempts = []
    for rows in by_person.values():
        rows.sort()
        if not any(mask for _, _, mask in rows):
            continue
        attempt = strict([(ts, mask, None) for ts, _, mask in rows], 3, window)
        if attempt is not None:
            attempts.append(attempt[0])
    out = []
    for k in range(3):
        spent = sorted(times[k] - times[k - 1] for times in attempts if len(times) > k) if k else []
        out.append((sum(1 for times in attempts if len(times) > k),
                    round(nearest_rank(spent, 50), 3) if spent else None,
                    round(nearest_rank(spent, 90), 3) if spent else None))
    return out


@pytest.mark.parametrize(("seed", "first_pairs"), [(1, 4), (2, 1), (3, 2)])
def test_strict_funnel_equals_the_walk_over_every_event(store, run, monkeypatch, seed, first_pairs):
    """first_pairs: the pairs alone looked up per person in the first round (more rounds when few)."""
    monkeypatch.setattr(funnels, "FIRST_PAIRS", first_pairs)
    rng = random.Random(seed)
    users = [f"u{k}" for k in range(6)]
    anonymous = [f"a{k}" for k in range(6)]
    aliases = {"u5": "u4"}                             # u5's events are u4's
    events: list[Event] = []
    for i in range(300):
        name = rng.choice(["step_a", "step_b", "step_c", "other", "other"])
        kind = rng.random()
        user = rng.choice(users) if kind < 0.75 else None
        anon = rng.choice(anonymous) if kind >= 0.6 else None
        ts = T0 + rng.randrange(-3, 40) * 600.0      # many events of the same time, some before the range
        props = {"ok": rng.random() < 0.9}
        events.append(_event(i, name, user, anon, ts, props))
    run(_load(store, events, list(aliases.items())))
    ids = dict(run(store.fetch("SELECT event_id, id FROM events")))
    stored = [(int(ids[e.event_id]), e) for e in events]
    masks = {}
    for i, e in stored:
        step = STEPS.index(e.name) if e.name in STEPS else -1
        masks[i] = 1 << step if step >= 0 and (step != 1 or e.properties["ok"]) else 0
    body = {"steps": [{"event": "step_a"}, {"event": "step_b", "properties": [{"key": "ok", "value": True}]},
                      {"event": "step_c"}], "window": 3 * 3600, "order": "strict",
            "from": T0, "to": T0 + 30 * 600}
    doc = run(funnel(store, funnel_query(body, T0)))
    expected = _expected(stored, aliases, T0, T0 + 30 * 600, 3 * 3600, masks)
    assert expected[1][0] > 0                          # the store has conversions to get right
    assert _steps(doc) == expected


def test_strict_funnel_look_ups_use_the_indexes(sqlite_store, run):
    """No scan of events: the look-ups seek events_by_user's key (user_id, ts, id: the id is in it), the
    anonymous ids' events events_anonymous_id."""
    events = [_event(i, name, user, anon, T0 + hours * H, {}) for i, (name, user, anon, hours) in enumerate(EVENTS)]
    run(_load(sqlite_store, events, ALIASES))
    conn = sqlite3.connect(sqlite_store.path)
    look_up = conn.execute(f"EXPLAIN QUERY PLAN {funnels._lookup_sql('sqlite')}",
                           ['[["u_p1", 1.0, 1, 2.0, 2, 2]]']).fetchall()
    plan = " | ".join(row[3] for row in look_up)
    assert "SEARCH x USING PRIMARY KEY (user_id=?" in plan and "SCAN x" not in plan, plan
    anonymous = conn.execute(f"EXPLAIN QUERY PLAN {funnels._anonymous_sql('sqlite')}",
                             ['[["a_p5"]]', T0, T0 + 7 * 24 * H]).fetchall()
    plan = " | ".join(row[3] for row in anonymous)
    assert "events_anonymous_id" in plan and "SCAN x" not in plan, plan
    conn.close()
