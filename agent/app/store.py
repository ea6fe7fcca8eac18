"""The event store's part of the composition root: the privacy key, opening the store, the group-commit
writer, the opt-out list, retention and probe rollups.

Order at start: open the store (migrations run) -> start the writer -> load the opt-outs -> retention
schedule and probe-rollup flushes. At stop, the reverse: the writer commits what was submitted and
refuses the rest (503); nothing is acknowledged before it is committed. A store that cannot be opened
at start stops the agent with the reason (the orchestrator restarts it); once running, a failing store
turns ingest into 503 with Retry-After until it recovers.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable

from aiohttp import web

from agent.api.keys import EVENT_STORE, METRICS, OPT_OUTS, PIPELINE, REGISTRY, RETENTION, RUNTIME
from agent.app.tasks import CleanupCtx, background, lifetime
from agent.config.load import Config
from agent.config.reload import Binding
from agent.events.opt_outs import REFRESH_SECONDS
from agent.events.privacy import Privacy
from agent.events.privacy_config import resolve_hmac_key
from agent.metrics.retention import RetentionMetrics
from agent.store.base import Store
from agent.store.open import open_store
from agent.store.probe_rollups import ProbeRollups
from agent.store.retention import RetentionSchedule
from agent.store.writer import GroupCommitWriter

log = logging.getLogger("agent.store")
ROLLUP_FLUSH_SECONDS = 15.0
WRITER_STOP_SECONDS = 2.0


def build_privacy(config: Config) -> Privacy:
    """The privacy rules with their key: configured; or (SQLite) generated once beside the database;
    or, with no store, a key for this process only (pseudonyms then change at restart; nothing that
    outlives the process holds them but exported telemetry)."""
    if config.privacy.hmac_key is None and not config.store.enabled:
        log.warning("no privacy.hmac_key and no store: e-mail pseudonyms use a key generated for this process")
        return Privacy(config.privacy, secrets.token_bytes(32))
    store_dir = os.path.dirname(config.store.path) if config.store.driver == "sqlite" else None
    return Privacy(config.privacy, resolve_hmac_key(config.privacy, store_dir))


def store_of(app: web.Application) -> Store:
    """The open event store (the store's contexts run only while it is open)."""
    store = app[EVENT_STORE].store
    assert store is not None
    return store


def build_retention(app: web.Application, config: Config, clock: Callable[[], float]) -> None:
    """The retention schedule: built with the other components, given the store once it is open; it
    follows `retention:` on reload (with or without a store to clean)."""
    app[RETENTION] = RetentionSchedule(None, config.retention, RetentionMetrics(app[REGISTRY]), clock)


def store_bindings(app: web.Application) -> list[Binding]:
    return [Binding(app[RETENTION], "retention")]


def store_lifetimes(app: web.Application, config: Config, given: Store | None = None) -> list[CleanupCtx]:
    """The store's contexts in start order; none without a store (store.driver: none, and none given).
    A `given` store is already open: it is used as is and left open at shutdown."""
    if not config.store.enabled and given is None:
        return []
    rollups = ProbeRollups()
    app[RUNTIME].result_observers.append(
        lambda target, result, ended_at: rollups.observe(target.name, result.success, result.duration_seconds,
                                                         ended_at))

    async def open_(app: web.Application) -> None:
        store = given or await open_store(config.store)
        assert store is not None
        app[EVENT_STORE].store = store
        writer = GroupCommitWriter(store, config.store.max_pending_events, app[METRICS])
        writer.start()
        app[PIPELINE].writer = writer

    async def close(app: web.Application) -> None:
        writer = app[PIPELINE].writer
        assert writer is not None
        await writer.stop(WRITER_STOP_SECONDS)   # from here on, ingest answers 503: never acknowledged unstored
        if given is None:
            await store_of(app).close()       # kept in its slot: a late request gets StoreUnavailable, a 503

    async def load_opt_outs(app: web.Application) -> None:
        await app[OPT_OUTS].refresh(store_of(app))

    async def refresh_opt_outs(app: web.Application) -> None:
        if store_of(app).dialect == "postgres":      # other agents sharing the database change the list too
            await app[OPT_OUTS].keep_fresh(store_of(app), REFRESH_SECONDS)

    async def start_retention(app: web.Application) -> None:
        app[RETENTION].store = store_of(app)

    return [
        lifetime("event-store", open_, close),
        background("opt-out-refresh", refresh_opt_outs, start=load_opt_outs),
        background("retention-schedule", lambda _: app[RETENTION].run(), start=start_retention),
        background("probe-rollups", lambda _: rollups.run(store_of(app), ROLLUP_FLUSH_SECONDS)),
    ]
