"""What Sentry's spans and log records share on their way to OpenTelemetry: ids, timestamps, attribute
values, privacy, and the resource and scope of the application that sent them.

Why each reads as it does:

- ids: Sentry's trace ids are 32 hex digits and span ids 16, as W3C's (a UUID spelling of a trace id
  is read too); all zeros is no id. They are kept as sent, so the exported spans join the traces the
  application's other services propagate (`sentry-trace` / `traceparent` carry the same ids).
- timestamps: unix seconds (a float) or RFC 3339 text (no offset: UTC), within 1970..2200; OTLP
  JSON nanoseconds (an integer or its decimal text) for `otel_*` items.
- attribute values: Sentry's typed `{"value": v, "type": t}` or bare JSON values; OTel takes str,
  bool, int64, float and arrays of one of them, so anything else (an object, a mixed array) becomes
  its JSON text. At most MAX_ATTRIBUTES per span or record, texts cut at MAX_TEXT; a value nested
  more than MAX_DEPTH levels is left out (alone: its span or record is kept).
- privacy (never user PII): attributes about the user or the client are dropped by name (`user.*`,
  `enduser.*`, `client.*`, peer addresses, request and response headers: PII_PREFIXES), query
  strings are cut from URLs and dropped (`url.query`, `http.query`: tokens live there), then the
  rest goes through the agent's privacy rules as an event's properties do
  (agent/events/privacy.py: secret names dropped, private names masked, e-mails pseudonymized, card
  numbers removed).
- resource: the application, not the agent: `service.name` is the package part of a Sentry release
  spelt `name@version` (Sentry's convention), else `unknown_service` (OTel's default); the release is
  `service.version` (and `sentry.release`), the environment `deployment.environment.name`; the SDK
  (`sentry.python` 2.76.0) is the instrumentation scope. Resources are cached (a bounded dict): the
  encoder groups by them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from agent.events.privacy import Privacy

MAX_ATTRIBUTES = 128                # OTel's default attribute count limit
MAX_TEXT = 4096
MAX_NAME = 1024
MAX_DEPTH = 16                      # nesting of one attribute's value; deeper ones are left out
_MIN_SECONDS, _MAX_SECONDS = 1.0, 7_258_118_400.0          # 1970-01-01T00:00:01 .. 2200-01-01
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
PII_PREFIXES = ("user.", "sentry.user.", "enduser.", "client.", "http.client_ip", "net.peer.", "net.sock.peer.",
                "network.peer.", "http.request.header.", "http.response.header.", "http.request.cookies",
                "http.cookies")
QUERY_KEYS = frozenset({"url.query", "http.query", "http.fragment", "url.fragment"})
URL_KEYS = frozenset({"url", "url.full", "http.url", "http.target", "url.path"})
UNKNOWN_SERVICE = "unknown_service"
RESOURCE_CACHE = 256


def trace_id(raw: Any) -> int | None:
    if type(raw) is not str:
        return None
    text = raw.replace("-", "") if len(raw) == 36 else raw
    if not _HEX32.fullmatch(text):
        return None
    return int(text, 16) or None


def span_id(raw: Any) -> int | None:
    if type(raw) is not str or not _HEX16.fullmatch(raw):
        return None
    return int(raw, 16) or None


def timestamp_ns(raw: Any) -> int | None:
    """Unix seconds or RFC 3339 text -> nanoseconds; None when absent or out of range."""
    if type(raw) is str:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        whole = parsed.replace(microsecond=0).timestamp()
        if not _MIN_SECONDS <= whole <= _MAX_SECONDS:
            return None
        return int(whole) * 1_000_000_000 + parsed.microsecond * 1000
    if type(raw) is float or type(raw) is int:
        if not math.isfinite(raw) or not _MIN_SECONDS <= raw <= _MAX_SECONDS:
            return None
        whole = math.floor(raw)               # SDKs send microseconds: finer digits are float noise
        return int(whole) * 1_000_000_000 + round((raw - whole) * 1e6) * 1000
    return None


def unix_nanos(raw: Any) -> int | None:
    """OTLP JSON's `...UnixNano`: an integer or its decimal text."""
    if type(raw) is str and raw.isdigit() and len(raw) <= 20:
        raw = int(raw)
    if type(raw) is not int or not _MIN_SECONDS * 1e9 <= raw <= _MAX_SECONDS * 1e9:
        return None
    return raw


def text(raw: Any, limit: int = MAX_TEXT) -> str | None:
    return raw[:limit] if type(raw) is str else None


def typed(raw: Any) -> Any:
    """Sentry's typed attribute `{"value": v, "type": t}`, else the value as it is."""
    if type(raw) is dict and "value" in raw and len(raw) <= 3:
        return raw["value"]
    return raw


def otlp_value(raw: Any) -> Any:
    """An OTLP JSON AnyValue (`{"stringValue": ...}`) -> its plain value."""
    if type(raw) is not dict or len(raw) != 1:
        return raw
    (kind, value), = raw.items()
    if type(kind) is not str or not kind.endswith("Value"):
        return raw
    if kind == "intValue" and type(value) is str and value.lstrip("-").isdigit() and len(value) <= 20:
        return int(value)
    if kind == "arrayValue" and type(value) is dict and type(value.get("values")) is list:
        return [otlp_value(v) for v in value["values"][:MAX_ATTRIBUTES]]
    if kind == "kvlistValue" and type(value) is dict and type(value.get("values")) is list:
        return {kv.get("key"): otlp_value(kv.get("value")) for kv in value["values"][:MAX_ATTRIBUTES]
                if type(kv) is dict and type(kv.get("key")) is str}
    return value


def otlp_attributes(raw: Any) -> dict[str, Any]:
    """OTLP JSON's `attributes: [{key, value}]` (or an object) -> a dict of plain values."""
    if type(raw) is dict:
        return {k: typed(v) for k, v in list(raw.items())[:MAX_ATTRIBUTES]}
    if type(raw) is not list:
        return {}
    out: dict[str, Any] = {}
    for entry in raw[:MAX_ATTRIBUTES]:
        if type(entry) is dict and type(entry.get("key")) is str:
            out[entry["key"]] = otlp_value(entry.get("value"))
    return out


def _scalar(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return value[:MAX_TEXT]
    if kind is bool:
        return value
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if kind is float:
        return value if math.isfinite(value) else str(value)
    return None


def attribute_value(value: Any) -> Any:
    """A JSON value -> one OTel can carry (see the module docstring); None to leave it out."""
    if value is None:
        return None
    plain = _scalar(value)
    if plain is not None:
        return plain
    if type(value) is list:
        kinds = {type(v) for v in value}
        if len(kinds) <= 1 and len(value) <= MAX_ATTRIBUTES and kinds <= {str, bool, int, float}:
            values = [_scalar(v) for v in value]
            if all(type(v) is type(values[0]) for v in values):
                return values
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()[:MAX_TEXT]
    except (TypeError, orjson.JSONEncodeError):
        return None


def without_query(url: str) -> str:
    """A URL (or a `GET /path?q=1` description) without its query string and fragment."""
    for mark in ("?", "#"):
        url = url.split(mark, 1)[0]
    return url


def _within_depth(value: Any, levels: int = MAX_DEPTH) -> bool:
    """Whether `value` nests objects and arrays at most `levels` deep. JSON allows 1024 levels, the
    privacy rules walk a value recursively: a deeper one would end in RecursionError, the whole item
    refused for one attribute."""
    if type(value) is dict:
        return levels > 0 and all(_within_depth(v, levels - 1) for v in value.values())
    if type(value) is list:
        return levels > 0 and all(_within_depth(v, levels - 1) for v in value)
    return True


def _keep(key: str) -> bool:
    lowered = key.lower()
    return not lowered.startswith(PII_PREFIXES) and lowered not in QUERY_KEYS


def scrubbed(raw: Mapping[str, Any], privacy: Privacy | None, prefix: str = "") -> dict[str, Any]:
    """Attributes from Sentry's data, tags or attributes: PII names dropped, URLs cut, privacy applied,
    values made OTel's; keys get `prefix`. A value nested more than MAX_DEPTH levels is left out."""
    kept: dict[str, Any] = {}
    for key, value in raw.items():
        if len(kept) >= MAX_ATTRIBUTES:
            break
        if type(key) is not str or not key or len(key) > MAX_NAME or not _keep(key):
            continue
        value = typed(value)
        if not _within_depth(value):
            continue
        if key.lower() in URL_KEYS and type(value) is str:
            value = without_query(value)
        kept[key] = value
    if privacy is not None and kept:
        kept = privacy.mapping(kept)
    out: dict[str, Any] = {}
    for key, value in kept.items():
        converted = attribute_value(value)
        if converted is not None:
            out[prefix + key] = converted
    return out


def scrub_text(value: str, privacy: Privacy | None) -> str:
    return privacy.text(value) if privacy is not None else value


class Resources:
    """The resource and instrumentation scope of each application (release, environment, SDK), cached."""

    def __init__(self, privacy: Privacy | None, size: int = RESOURCE_CACHE):
        self.privacy, self.size = privacy, size
        self._cache: dict[tuple[Any, ...], tuple[Resource, InstrumentationScope]] = {}

    def get(self, release: Any, environment: Any, sdk_name: Any, sdk_version: Any) -> tuple[Resource,
                                                                                         InstrumentationScope]:
        release_text, environment_text = text(release, 200), text(environment, 64)      # not text: absent
        name_text, version_text = text(sdk_name, 128), text(sdk_version, 64)
        key = (release_text, environment_text, name_text, version_text)
        found = self._cache.get(key)
        if found is not None:
            return found
        attributes: dict[str, Any] = {"service.name": UNKNOWN_SERVICE}
        if release_text:          # not through privacy: `name@1.2.3` reads as an e-mail address (as in /v1/errors)
            name, at, version = release_text.partition("@")
            if at and name:
                attributes["service.name"] = name
            attributes["service.version"] = version if at and name and version else release_text
            attributes["sentry.release"] = release_text
        if environment_text:
            attributes["deployment.environment.name"] = scrub_text(environment_text, self.privacy)
        scope = InstrumentationScope(name_text or "sentry", version_text)
        found = (Resource(attributes), scope)
        if len(self._cache) >= self.size:
            self._cache.clear()
        self._cache[key] = found
        return found
