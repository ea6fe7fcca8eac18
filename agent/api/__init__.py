"""HTTP handlers. They parse, authenticate and hand over; no business logic lives here."""

from aiohttp import web

from agent.events.pipeline import EventPipeline
from agent.metricstore import MetricStore
from agent.runtime import ProbeRuntime

RUNTIME = web.AppKey("runtime", ProbeRuntime)
PIPELINE = web.AppKey("pipeline", EventPipeline)
STORE = web.AppKey("store", MetricStore)
