"""The back-pressure answer Sentry SDKs understand: 429 with `Retry-After` and `X-Sentry-Rate-Limits`.

Why: an SDK that gets a 5xx drops the envelope and keeps sending; one that gets a 429 with these
headers stops sending the named categories for the given seconds (sentry-python keeps a
`disabled_until` per category; with neither header it waits 60 s for everything). So when the store
cannot commit, the route answers 429 with both, and the application backs off instead of losing
events silently.

`X-Sentry-Rate-Limits` is a comma-separated list of `<seconds>:<categories>:<scope>[:<reason>]`:
integer seconds (the SDKs parse it with int()), data categories separated by ";" (empty: every
category), the scope (`organization`, `project` or `key`), an optional reason code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

SCOPES = ("organization", "project", "key")
DEFAULT_SCOPE = "organization"            # the agent's store is one for every project and key
STORE_UNAVAILABLE = "store_unavailable"
MAX_SECONDS = 24 * 3600
_TOKEN = re.compile(r"[a-z][a-z0-9_]*")

# item type -> the data category an SDK rate-limits it by (sentry-python's Item.data_category)
ITEM_CATEGORIES = MappingProxyType({
    "event": "error", "transaction": "transaction", "span": "span", "session": "session",
    "sessions": "session", "attachment": "attachment", "log": "log_item", "otel_log": "log_item",
    "trace_metric": "trace_metric", "statsd": "metric_bucket", "client_report": "internal",
    "profile": "profile", "profile_chunk": "profile_chunk", "check_in": "monitor",
    "replay_event": "replay", "replay_recording": "replay", "feedback": "feedback",
    "user_report": "user_report_v2",
})


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One entry of the header: no category means every category."""

    seconds: float
    categories: tuple[str, ...] = ()
    scope: str = DEFAULT_SCOPE
    reason: str | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.seconds) or self.seconds < 0:
            raise ValueError("seconds must be a finite number >= 0")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        for token in (*self.categories, *([self.reason] if self.reason is not None else [])):
            if not _TOKEN.fullmatch(token):
                raise ValueError("categories and the reason are lowercase names (a-z, 0-9, _)")


def retry_seconds(seconds: float) -> int:
    """Whole seconds, rounded up, at least 1 (a 0 would invite an immediate retry), at most a day."""
    return max(1, min(MAX_SECONDS, math.ceil(seconds)))


def format_rate_limit(limit: RateLimit) -> str:
    parts = [str(retry_seconds(limit.seconds)), ";".join(limit.categories), limit.scope]
    if limit.reason is not None:
        parts.append(limit.reason)
    return ":".join(parts)


def rate_limits_header(limits: Iterable[RateLimit]) -> str:
    """The `X-Sentry-Rate-Limits` value of one or more limits."""
    return ", ".join(format_rate_limit(limit) for limit in limits)


def categories_of(item_types: Iterable[str]) -> tuple[str, ...]:
    """The data categories of these item types, each once, in order (unknown types: none)."""
    return tuple(dict.fromkeys(ITEM_CATEGORIES[kind] for kind in item_types if kind in ITEM_CATEGORIES))


def backoff_headers(seconds: float, categories: Iterable[str] = (), reason: str = STORE_UNAVAILABLE) -> dict[str, str]:
    """The headers of a 429 when the store cannot commit: `Retry-After` and `X-Sentry-Rate-Limits`
    for the same whole seconds (the categories given, or every category)."""
    limit = RateLimit(seconds, tuple(categories), DEFAULT_SCOPE, reason)
    return {"Retry-After": str(retry_seconds(seconds)), "X-Sentry-Rate-Limits": rate_limits_header([limit])}
