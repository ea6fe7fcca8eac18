"""The typed error event every later stage reads, built once at the edge by `agent.error_tracking.validate`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.events.model import Context

LEVELS = ("fatal", "error", "warning", "info", "debug")


@dataclass(slots=True)
class Frame:
    """One stack frame. Frames are ordered as Sentry sends them: the outermost call first, the frame
    that raised last."""

    filename: str | None = None
    abs_path: str | None = None
    function: str | None = None
    module: str | None = None
    lineno: int | None = None
    colno: int | None = None
    in_app: bool | None = None       # None: the client did not say
    # the source around `lineno` (Sentry's pre_context / context_line / post_context): read by grouping
    pre_context: tuple[str, ...] = ()
    context_line: str | None = None
    post_context: tuple[str, ...] = ()
    vars: dict[str, Any] | None = None     # the frame's local variables, scrubbed like event properties
    source_map: str | None = None          # how a minified frame was resolved: "resolved", else why not

    def to_json(self) -> dict[str, Any]:
        """The frame as stored and answered (camelCase; absent values left out)."""
        out: dict[str, Any] = {}
        for key, value in (("filename", self.filename), ("absPath", self.abs_path), ("function", self.function),
                           ("module", self.module), ("lineno", self.lineno), ("colno", self.colno),
                           ("inApp", self.in_app), ("contextLine", self.context_line), ("vars", self.vars),
                           ("sourceMap", self.source_map)):
            if value is not None:
                out[key] = value
        if self.pre_context:
            out["preContext"] = list(self.pre_context)
        if self.post_context:
            out["postContext"] = list(self.post_context)
        return out


@dataclass(slots=True)
class ChainedException:
    """An exception of a chain other than the one raised last (Sentry's `exception.values[]` before the
    last; Python's __cause__ / __context__, JavaScript's `cause`): kept with the error, read by grouping."""

    type: str
    value: str
    module: str | None = None
    frames: list[Frame] = field(default_factory=list)
    frames_omitted: int = 0
    mechanism: str | None = None
    handled: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "value": self.value,
                               "frames": [frame.to_json() for frame in self.frames]}
        for key, value in (("module", self.module), ("mechanism", self.mechanism), ("handled", self.handled)):
            if value is not None:
                out[key] = value
        if self.frames_omitted:
            out["framesOmitted"] = self.frames_omitted
        return out


@dataclass(slots=True)
class ErrorEvent:
    type: str                               # "TypeError"
    message: str                            # may be empty
    timestamp: float                        # unix seconds (the agent's clock when the client sent none)
    received_at: float                      # unix seconds, the agent's clock
    frames: list[Frame] = field(default_factory=list)
    frames_omitted: int = 0                 # frames dropped from the middle of an oversized stack,
    frames_omitted_at: int = 0              # ... between frames[at - 1] and frames[at]
    message_truncated: bool = False         # the message was longer than errors.max_message_length
    tags: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    release: str | None = None
    environment: str | None = None
    level: str = "error"
    fingerprint: tuple[str, ...] | None = None   # the client's own grouping; None: derived
    event_id: str | None = None             # optional client id, for idempotent retries
    context: Context = field(default_factory=Context)
    # what Sentry events carry beyond /v1/errors' fields (agent/sentry/events.py fills them)
    causes: list[ChainedException] = field(default_factory=list)  # first cause first; this error is last
    causes_omitted: int = 0                 # causes past the chain limit, left out (the first ones)
    mechanism: str | None = None            # how it was captured: "generic", "onunhandledrejection", ...
    handled: bool | None = None             # False: it crashed the process or reached a global handler
    breadcrumbs: list[dict[str, Any]] = field(default_factory=list)   # what happened before, oldest first
    request: dict[str, Any] | None = None   # method, url (no query) and headers (no cookies, no credentials)
    log_message: str | None = None          # an exception event's log message (logger.exception("..."))

    @property
    def feature(self) -> str | None:
        """The `feature` tag (Sentry's `tags: {feature: 'payment'}`): a label and a filter."""
        return self.tags.get("feature")
