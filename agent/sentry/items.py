"""The payloads of Sentry's non-event items that become metrics: `client_report`, `log` / `otel_log`,
`trace_metric` and the retired `statsd` item. Pure functions over parsed JSON (or text); the route
(agent/api/sentry.py) counts what they return.

Why each reads as it does:

- `client_report`: what an SDK dropped before sending (`discarded_events[]` of `{reason, category,
  quantity}`). Both labels are closed sets: `category` Sentry's data categories, `reason` Sentry's
  documented discard reasons; anything else is `other`, so a client cannot grow the family. The whole
  report is checked before anything is counted: one bad entry refuses the report (`ItemError`).
- `log` (`{"items": [{level, body, attributes, ...}]}`) and the older `otel_log` (one OTel record with
  `severityText` / `severityNumber`, or the same `items` container): counted by level, a closed set,
  and logger (the `logger.name` attribute), an open set behind the family's series limit.
- `trace_metric` (`sentry_sdk.metrics.count/gauge/distribution`, `Sentry.metrics.*`):
  `{"items": [{name, type, value, unit, attributes: {key: {value, type}}}]}`. Each metric becomes the
  item shape of POST /v1/metrics (agent/custom_metrics/samples.py parses it: the same naming, units
  and checks; the registry then applies the same tag privacy and limits). The attributes every SDK
  adds to every metric (`sentry.*`: release, environment, SDK; `process.*`, `os.*`, `device.*`,
  `browser.*`, `server.address`) are not tags: one label per host or release on every custom metric
  is the cardinality the registry exists to prevent. `user.*` attributes (sent with
  `send_default_pii`) are dropped too: user identifiers are never labels. `sentry.release` is
  returned apart, for loom_release_info, as /v1/metrics does with `release`.
- `statsd` (SDKs before trace metrics): lines `name@unit:value[:value...]|type|#tag:value,...|T<ts>`,
  parsed by agent/custom_metrics/statsd.py once the `@unit` is cut off the name. A gauge's packed
  `last:min:max:sum:count` sets the gauge to `last`; sets (`|s`) are refused, as over UDP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.custom_metrics.registry import MetricError, Sample
from agent.custom_metrics.samples import parse_item
from agent.custom_metrics.statsd import LineError, parse_line
from agent.events.properties import FieldError
from agent.events.validate import parse_release
from agent.sentry.ratelimit import ITEM_CATEGORIES

OTHER = "other"
# Sentry's data categories (relay-base-schema DataCategory) an SDK reports discards in
CATEGORIES = frozenset({*ITEM_CATEGORIES.values(), "default", "security", "log_byte", "span_indexed",
                        "transaction_indexed", "replay_video", "metric_bucket"})
# Sentry's discard reasons (develop.sentry.dev, SDK client reports)
REASONS = frozenset({"queue_overflow", "cache_overflow", "ratelimit_backoff", "network_error", "sample_rate",
                     "before_send", "event_processor", "send_error", "internal_sdk_error", "insufficient_data",
                     "backpressure", "buffer_overflow"})
MAX_QUANTITY = 2**32 - 1            # Relay's u32
LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
LEVEL_ALIASES = {"warning": "warn", "critical": "fatal", "err": "error", "information": "info"}
UNKNOWN_LOGGER = "unknown"
LOGGER_MAX = 128
LOGGER_SERIES_LIMIT = 500           # (level, logger) series of loom_agent_sentry_logs_total; past it: other
# attributes the SDKs attach to every metric: not tags (see the module docstring)
SDK_ATTRIBUTE_PREFIXES = ("sentry.", "process.", "os.", "device.", "browser.", "user.", "server.", "telemetry.")
MAX_RECORDS = 10_000                # entries read from one log / metric / report item (1 MiB bounds it anyway)


class ItemError(ValueError):
    """An item payload of the wrong shape: the item is `rejected`, its siblings go on."""


def _records(payload: Any, what: str) -> list[Any]:
    if type(payload) is not dict:
        raise ItemError(f"a {what} item must be a JSON object")
    records = payload.get("items")
    if type(records) is not list:
        raise ItemError(f"a {what} item must have an `items` array")
    if len(records) > MAX_RECORDS:
        raise ItemError(f"a {what} item must have at most {MAX_RECORDS} entries")
    return records


# --- client_report -----------------------------------------------------------------------------------

def discarded_events(payload: Any) -> dict[tuple[str, str], int]:
    """A client report -> {(reason, category): quantity}, labels folded to their closed sets."""
    if type(payload) is not dict:
        raise ItemError("a client report must be a JSON object")
    entries = payload.get("discarded_events", [])
    if entries is None:
        return {}
    if type(entries) is not list or len(entries) > MAX_RECORDS:
        raise ItemError(f"discarded_events must be an array of at most {MAX_RECORDS} entries")
    counts: dict[tuple[str, str], int] = {}
    for entry in entries:
        if type(entry) is not dict:
            raise ItemError("each discarded event must be an object")
        quantity = entry.get("quantity")
        if type(quantity) is not int or not 0 <= quantity <= MAX_QUANTITY:
            raise ItemError(f"quantity must be an integer from 0 to {MAX_QUANTITY}")
        reason, category = entry.get("reason"), entry.get("category")
        key = (reason if type(reason) is str and reason in REASONS else OTHER,       # a list is unhashable
               category if type(category) is str and category in CATEGORIES else OTHER)
        counts[key] = counts.get(key, 0) + quantity
    return counts


# --- log / otel_log ----------------------------------------------------------------------------------

def level_label(raw: Any) -> str:
    if type(raw) is not str:
        return OTHER
    level = raw.strip().lower()
    level = LEVEL_ALIASES.get(level, level)
    return level if level in LEVELS else OTHER


def _severity_level(number: Any) -> str:
    """OTel's severity number (1-24, four per level) -> the level."""
    if type(number) is not int or not 1 <= number <= 24:
        return OTHER
    return LEVELS[(number - 1) // 4]


def _record_level(record: Any) -> str:
    if type(record) is not dict:
        return OTHER
    for key in ("level", "severityText", "severity_text"):
        if key in record:
            return level_label(record[key])
    return _severity_level(record.get("severityNumber", record.get("severity_number")))


def _attribute(attributes: Any, name: str) -> Any:
    """An attribute's value: Sentry's `{name: {value, type}}` (or a bare value), or OTel's
    `[{key, value: {stringValue: ...}}]`."""
    if type(attributes) is dict:
        value = attributes.get(name)
        return value.get("value") if type(value) is dict else value
    if type(attributes) is list:
        for entry in attributes:
            if type(entry) is dict and entry.get("key") == name:
                value = entry.get("value")
                return value.get("stringValue") if type(value) is dict else value
    return None


def logger_label(record: Any) -> str:
    """The record's logger (`logger.name`, which sentry-python's logging and loguru integrations set):
    an open set, bounded by the family's series limit; absent, not text or too long: `unknown`."""
    if type(record) is not dict:
        return UNKNOWN_LOGGER
    name = _attribute(record.get("attributes"), "logger.name")
    if type(name) is not str or not name.strip() or len(name) > LOGGER_MAX:
        return UNKNOWN_LOGGER
    return name.strip()


def log_levels(payload: Any, item_type: str = "log") -> dict[tuple[str, str], int]:
    """A `log` item (an `items` container) or an `otel_log` item (one record, or the container) ->
    {(level, logger): records}."""
    if item_type == "otel_log" and type(payload) is dict and "items" not in payload:
        return {(_record_level(payload), logger_label(payload)): 1}
    counts: dict[tuple[str, str], int] = {}
    for record in _records(payload, item_type):
        key = (_record_level(record), logger_label(record))
        counts[key] = counts.get(key, 0) + 1
    return counts


# --- trace_metric --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MetricBatch:
    """The metrics of one item: each as (index in the item, Sample), each refused one as (index, error),
    and the releases they name."""

    samples: list[tuple[int, Sample]]
    errors: list[tuple[int, MetricError]]
    releases: set[str]


def _attribute_value(attribute: Any) -> Any:
    """Sentry's typed attribute `{"value": v, "type": "string"}`, or a bare value."""
    return attribute.get("value") if type(attribute) is dict else attribute


def metric_item(record: Any) -> tuple[dict[str, Any], str | None]:
    """One Sentry trace metric -> (the POST /v1/metrics item shape, its release or None)."""
    if type(record) is not dict:
        raise MetricError("", "must be an object")
    attributes = record.get("attributes") or {}
    if type(attributes) is not dict:
        raise MetricError("attributes", "must be an object")
    tags = {key: _attribute_value(value) for key, value in attributes.items()
            if not key.startswith(SDK_ATTRIBUTE_PREFIXES)}
    item: dict[str, Any] = {"name": record.get("name"), "type": record.get("type")}
    if "value" in record:
        item["value"] = record["value"]
    if record.get("unit") is not None:
        item["unit"] = record["unit"]
    if tags:
        item["tags"] = tags
    release = _attribute_value(attributes.get("sentry.release"))
    if release is not None:
        try:
            release = parse_release(release)
        except FieldError:
            release = None                # a bad release costs the metric nothing: it is not a tag
    return item, release


def trace_metrics(payload: Any) -> MetricBatch:
    """A `trace_metric` item -> its samples, each checked alone (one bad metric does not refuse the rest)."""
    batch = MetricBatch([], [], set())
    for index, record in enumerate(_records(payload, "trace_metric")):
        try:
            item, release = metric_item(record)
            sample, _ = parse_item(item)
        except MetricError as err:
            batch.errors.append((index, err))
            continue
        batch.samples.append((index, sample))
        if release is not None:
            batch.releases.add(release)
    return batch


# --- statsd --------------------------------------------------------------------------------------------

def _unescape(value: str) -> str:
    r"""Sentry's statsd tag value escapes: `\n`, `\r`, `\t`, `\\`, `\u{2c}` (","), `\u{7c}` ("|")."""
    if "\\" not in value:
        return value
    return (value.replace("\\u{2c}", ",").replace("\\u{7c}", "|").replace("\\n", "\n").replace("\\r", "\r")
            .replace("\\t", "\t").replace("\\\\", "\\"))


def statsd_line(line: str) -> list[Sample]:
    """One line of a `statsd` item -> its samples; raises LineError."""
    name, sep, rest = line.partition(":")
    unit = "none"
    if "@" in name:
        name, _, unit = name.partition("@")
        unit = unit or "none"
    fields = rest.split("|")
    if sep and len(fields) >= 2 and fields[1] == "g" and fields[0].count(":") == 4:
        fields[0] = fields[0].split(":", 1)[0]           # last:min:max:sum:count -> last
    samples = parse_line(f"{name}{sep}{'|'.join(fields)}")
    out = []
    for sample in samples:
        values = tuple(_unescape(v) for v in sample.values)
        out.append(Sample(sample.name, sample.kind, unit if sample.unit == "none" else sample.unit, sample.value,
                          sample.keys, values, sample.op, sample.repeat))
    return out


def statsd_lines(payload: bytes) -> MetricBatch:
    """A `statsd` item's body (one line per bucket) -> its samples, each line judged alone."""
    batch = MetricBatch([], [], set())
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        raise ItemError("a statsd item must be UTF-8 text") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_RECORDS:
        raise ItemError(f"a statsd item must have at most {MAX_RECORDS} lines")
    for index, line in enumerate(lines):
        try:
            batch.samples.extend((index, sample) for sample in statsd_line(line.strip()))
        except LineError as err:
            batch.errors.append((index, MetricError("", str(err))))
    return batch
