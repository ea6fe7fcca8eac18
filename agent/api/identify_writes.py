"""Storing identifies from a request: privacy, then one transaction (or the 503 raised).

Shared by POST /v1/identify (agent/api/identify.py) and the PostHog endpoints (agent/api/events.py),
which store the `$set` / `$set_once` of the events they receive; it imports neither, so both may
import it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from aiohttp import web

from agent.api.keys import EVENT_STORE, PIPELINE, PRIVACY
from agent.api.problems import store_call
from agent.events.identify import Identify, scrub_identify
from agent.store.traits import store_identifies


async def write_identifies(app: web.Application, identifies: Sequence[Identify],
                           dnt: bool = False) -> tuple[int, int]:
    """(stored, dropped by privacy); raises the 503 when the store cannot commit (nothing was stored; an
    identify is idempotent, the client retries it). Privacy drops the identifies of a
    Do-Not-Track request or of opted-out users, counted in loom_agent_events_dropped_total{reason}.
    Without a store (store.driver: none) nothing is written: (0, 0)."""
    store = app.get(EVENT_STORE)
    if store is None or not identifies:
        return 0, 0
    pipeline, privacy = app[PIPELINE], app[PRIVACY]
    kept: list[Identify] = []
    drops: Counter[str] = Counter()
    for identify in identifies:
        scrubbed, reason = scrub_identify(privacy, identify, dnt)
        if scrubbed is None:
            drops[reason or "dnt"] += 1
        else:
            kept.append(scrubbed)
    with store_call("take traits", api="events"):        # counted as the events api's, on every route
        await store_identifies(store, kept)
    for reason, count in drops.items():
        pipeline.metrics.dropped.inc((reason,), count)
    return len(kept), sum(drops.values())
