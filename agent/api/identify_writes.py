"""Storing identifies from a request: privacy, then one transaction, or the 503 to answer.

Shared by POST /v1/identify (agent/api/identify.py) and the PostHog endpoints (agent/api/events.py),
which store the `$set` / `$set_once` of the events they receive; it imports neither, so both may
import it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import orjson
from aiohttp import web

from agent.api.keys import EVENT_STORE, PIPELINE, PRIVACY
from agent.events.identify import Identify, scrub_identify
from agent.store.errors import StoreError
from agent.store.traits import store_identifies


async def write_identifies(app: web.Application, identifies: Sequence[Identify],
                           dnt: bool = False) -> tuple[int, int] | web.Response:
    """(stored, dropped by privacy), or the 503 to answer when the store cannot commit (nothing was
    stored; an identify is idempotent, the client retries it). Privacy drops the identifies of a
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
    try:
        await store_identifies(store, kept)
    except StoreError as exc:
        pipeline.rejected("events", "store_unavailable")
        message = f"the event store cannot take traits now ({type(exc).__name__}); retry after {exc.retry_after} s"
        return web.Response(status=503, body=orjson.dumps({"error": message}), content_type="application/json",
                            headers={"Retry-After": str(exc.retry_after)})
    for reason, count in drops.items():
        pipeline.metrics.dropped.inc((reason,), count)
    return len(kept), sum(drops.values())
