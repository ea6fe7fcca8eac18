"""HTTP handlers. They parse, authenticate and hand over; no business logic lives here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from agent.events.pipeline import EventPipeline
from agent.metrics.store import MetricStore
from agent.collectors.runtime import ProbeRuntime

if TYPE_CHECKING:
    from agent.events.privacy import Privacy
    from agent.store.base import Store

RUNTIME = web.AppKey("runtime", ProbeRuntime)
PIPELINE = web.AppKey("pipeline", EventPipeline)
STORE = web.AppKey("store", MetricStore)
# the durable event store (absent when store.driver is none) and the privacy rules every datum passes
EVENT_STORE: web.AppKey[Store] = web.AppKey("event_store")
PRIVACY: web.AppKey[Privacy] = web.AppKey("privacy")
