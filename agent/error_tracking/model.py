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

    def to_json(self) -> dict[str, Any]:
        """The frame as stored and answered (camelCase; absent values left out)."""
        out: dict[str, Any] = {}
        for key, value in (("filename", self.filename), ("absPath", self.abs_path), ("function", self.function),
                           ("module", self.module), ("lineno", self.lineno), ("colno", self.colno),
                           ("inApp", self.in_app)):
            if value is not None:
                out[key] = value
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

    @property
    def feature(self) -> str | None:
        """The `feature` tag (Sentry's `tags: {feature: 'payment'}`): a label and a filter."""
        return self.tags.get("feature")
