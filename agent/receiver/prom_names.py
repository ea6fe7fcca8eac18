"""OTLP metric and attribute names -> Prometheus metric and label names, as the OpenTelemetry
"Prometheus and OpenMetrics Compatibility" spec and the collector's translator
(pkg/translator/prometheus, its default "normalize names") make them.

Metric names: every character outside `[a-zA-Z0-9_:]` becomes `_`, runs of `_` collapse to one, leading and
trailing `_` are dropped, a leading digit gets a `_` in front; then the unit's suffix (UCUM `s` ->
`_seconds`, `By` -> `_bytes`, `ms` -> `_milliseconds`: units are renamed, never converted; `{requests}`
annotations are dropped; `X/Y` -> `_X_per_Y`), unless the name already ends with it or names the unit as one
of its `_`-separated words (`bytes_total` of unit By stays `bytes_total`, as Prometheus' otlptranslator
names it); `_ratio` for a gauge of unit `1`; `_total` for a monotonic sum, moved to the end
(`total_requests` -> `requests_total`). Label names: invalid characters -> `_`, a leading digit gets `key_`,
a leading `__` (reserved by Prometheus) gets `key`; a name the converter itself sets (`job`, `instance`,
`le`, `quantile`, the scope's labels) becomes `exported_<name>`, the way Prometheus renames a target's
clashing label. Both are cached: a metric's name is computed once per (name, unit, kind), a label's once.
"""

from __future__ import annotations

import re

MAX_NAME_CHARS = 200            # a metric or label name past this is cut (Prometheus has no limit; a bound)

_INVALID_METRIC = re.compile(r"[^a-zA-Z0-9_:]+")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]+")
_UNDERSCORES = re.compile(r"__+")
_ANNOTATION = re.compile(r"\{[^}]*\}")

# UCUM units (as OpenTelemetry's semantic conventions write them) -> Prometheus' plural unit words
UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
    "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "B": "bytes", "KB": "kilobytes", "MB": "megabytes", "GB": "gigabytes", "TB": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams", "Cel": "celsius",
    "Hz": "hertz", "%": "percent", "bit": "bits", "kbit": "kilobits", "Mbit": "megabits", "Gbit": "gigabits",
}
# the denominator of `X/Y`
PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
# labels the conversion sets itself: an attribute of that name is kept as exported_<name>
RESERVED_LABELS = frozenset({"job", "instance", "le", "quantile", "otel_scope_name", "otel_scope_version",
                             "__name__"})

_label_cache: dict[str, str] = {}
_LABEL_CACHE_MAX = 65_536


def metric_name(name: str, unit: str, *, counter: bool, gauge: bool) -> str:
    """The Prometheus family name (without `_total`: prometheus_client adds it to a counter's sample)
    and, for a counter, with the unit suffix; '' when nothing of the name is left."""
    base = sanitize_metric(name)
    if not base:
        return ""
    suffix = unit_suffix(unit)
    if gauge and unit == "1":
        suffix = "ratio"
    tokens = base.split("_")
    if counter:                                    # `total` goes last, after the unit (prometheus_client adds it)
        tokens = [token for token in tokens if token != "total"] or ["total"]
    if suffix and not f"_{'_'.join(tokens)}".endswith("_" + suffix):
        main, _, per = suffix.partition("_per_")
        if main in tokens:                         # the unit already named: Prometheus' otlptranslator rule
            main = ""
        tokens += [word for word in (main, per and f"per_{per}") if word]
    return "_".join(tokens)[:MAX_NAME_CHARS]


def sanitize_metric(name: str) -> str:
    text = _UNDERSCORES.sub("_", _INVALID_METRIC.sub("_", name)).strip("_")
    if text[:1].isdigit():
        text = "_" + text
    return text


def unit_suffix(unit: str) -> str:
    """`s` -> `seconds`, `By/s` -> `bytes_per_second`, `{request}` -> '', `1` -> '' (the ratio is the
    gauge's), an unknown unit -> itself sanitised (the collector's rule)."""
    unit = _ANNOTATION.sub("", unit).strip()
    if not unit or unit == "1":
        return ""
    main, _, per = unit.partition("/")
    words = UNITS.get(main, main)
    if per:
        words = f"{words}_per_{PER_UNITS.get(per, UNITS.get(per, per))}" if words else ""
    return _UNDERSCORES.sub("_", _INVALID_LABEL.sub("_", words)).strip("_")


def label_name(key: str) -> str:
    """An attribute key as a Prometheus label name ('' for a key with nothing usable)."""
    cached = _label_cache.get(key)
    if cached is not None:
        return cached
    text = _INVALID_LABEL.sub("_", key)[:MAX_NAME_CHARS]
    if text.strip("_") == "":
        text = ""
    elif text[0].isdigit():
        text = "key_" + text
    elif text.startswith("__"):
        text = "key" + text
    if text in RESERVED_LABELS:
        text = "exported_" + text
    if len(_label_cache) >= _LABEL_CACHE_MAX:
        _label_cache.clear()
    _label_cache[key] = text
    return text
