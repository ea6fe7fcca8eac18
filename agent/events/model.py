"""The typed event every later stage reads. Built once, at the edge, by `agent.events.validate`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Context:
    page: str | None = None          # path or URL of the page
    user_agent: str | None = None
    dnt: bool = False                # Do-Not-Track (context.dnt or the DNT: 1 header)
    trace_id: str | None = None      # 32 lowercase hex digits (W3C trace-context)
    span_id: str | None = None       # 16 lowercase hex digits
    ip: str | None = None
    library: str | None = None       # the sending SDK ("posthog-js", "loom-web", ...)
    private: tuple[str, ...] = ()    # property names (snake_case) the client marked private: masked


@dataclass(slots=True)
class Event:
    name: str                        # "cta_click"
    category: str                    # catalog category, or "custom" for unknown names
    timestamp: float                 # unix seconds (the agent's clock when the client sent none)
    received_at: float               # unix seconds, the agent's clock
    properties: dict[str, Any]       # snake_case keys, values typed per the catalog
    user_id: str | None = None
    anonymous_id: str | None = None
    session_id: str | None = None
    event_id: str | None = None      # optional client id, for idempotent retries
    context: Context = field(default_factory=Context)
    known: bool = True               # False: not in the catalog (a custom event)
    release: str | None = None       # the application release that sent it ("loom-web@2.3.1")
