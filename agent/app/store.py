"""The event store's part of the application: opening the store, the group-commit writer, privacy
and its opt-out list, retention, probe rollups, and the analytics and GDPR routes.

Order at start (cleanup_ctx): open the store (migrations run) -> start the writer -> load the opt-outs
-> retention schedule and probe-rollup flushes. At stop, the reverse: the writer commits what was
submitted and refuses the rest (503); nothing is acknowledged before it is committed.
A store that cannot be opened at start stops the agent with the reason (the orchestrator restarts it);
once running, a failing store turns ingest into 503 with Retry-After until it recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.api import EVENT_STORE, PIPELINE, analytics, experiments
from agent.api import privacy as privacy_api
from agent.config.load import Config
from agent.events.privacy import Privacy
from agent.events.privacy_config import resolve_hmac_key
from agent.metrics.store import MetricStore
from agent.collectors.runtime import ProbeRuntime
from agent.store.open import open_store
from agent.store.probe_rollups import ProbeRollups
from agent.store.retention import RETENTION, RetentionMetrics, RetentionSchedule, schedule_ctx
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


def setup_store(app: web.Application, config: Config, registry: CollectorRegistry, metrics: MetricStore,
                runtime: ProbeRuntime) -> None:
    """Wire the store, its writer and everything reading it into `app` (privacy is wired by the caller:
    it applies with or without a store)."""
    limiter = analytics.setup(app, config.api.rate_limit)
    experiments.add_routes(app)
    runtime.reload_hooks.append(lambda new: lambda: setattr(limiter, "limit", new.api.rate_limit))
    privacy_api.add_routes(app)
    if not config.store.enabled:
        return
    rollups = ProbeRollups()
    runtime.result_observers.append(
        lambda target, result, ended_at: rollups.observe(target.name, result.success, result.duration_seconds,
                                                         ended_at))
    app[RETENTION] = schedule = RetentionSchedule(None, config.retention, RetentionMetrics(registry))
    runtime.reload_hooks.append(lambda new: lambda: setattr(schedule, "config", new.retention))
    app.cleanup_ctx.append(_store_ctx(config, metrics))
    app.cleanup_ctx.append(privacy_api.opt_outs_ctx(
        privacy_api.OPT_OUT_REFRESH_SECONDS if config.store.driver == "postgres" else None))
    app.cleanup_ctx.append(schedule_ctx())
    app.cleanup_ctx.append(_rollups_ctx(rollups))


def _store_ctx(config: Config, metrics: MetricStore) -> Callable[[web.Application], AsyncIterator[None]]:
    async def event_store(app: web.Application) -> AsyncIterator[None]:
        store = await open_store(config.store)
        assert store is not None
        app[EVENT_STORE] = store
        writer = GroupCommitWriter(store, config.store.max_pending_events, metrics)
        writer.start()
        app[PIPELINE].writer = writer
        yield
        await writer.stop(WRITER_STOP_SECONDS)     # from here on, ingest answers 503: never acknowledged unstored
        await store.close()
    return event_store


def _rollups_ctx(rollups: ProbeRollups) -> Callable[[web.Application], AsyncIterator[None]]:
    async def probe_rollups(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(rollups.run(app[EVENT_STORE], ROLLUP_FLUSH_SECONDS))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return probe_rollups
