"""HTTP handlers. They parse, authenticate and hand over; no business logic lives here."""

from aiohttp import web

from agent.runtime import ProbeRuntime

RUNTIME = web.AppKey("runtime", ProbeRuntime)
