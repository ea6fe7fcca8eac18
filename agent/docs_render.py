"""Renders the two generated reference pages, deterministically (same code -> same bytes):

    docs/events.md          the event catalog (agent/events/catalog*.py) and the envelope, whose
                            tables come from the OpenAPI document (agent/api/openapi.json)
    docs/event-metrics.md   which events become which metrics (agent/events/metric_table.TABLE)

`python -m agent render-docs` writes them; `--check` and tests/test_docs_fresh.py compare.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from agent.events.catalog import CATALOG, CATEGORIES, CUSTOM, EventSpec, Prop
from agent.events.config import EventsConfig
from agent.events.limits import DEFAULT_LIMITS
from agent.events.metric_table import TABLE, Derived, Emit
from agent.events.pipeline import EventPipeline
from agent.metrics.store import MetricStore

REGENERATE = "python -m agent render-docs"


def _notice(sources: str) -> str:
    return f"<!-- Generated from {sources} by `{REGENERATE}`. Do not edit by hand. -->"


def _num(value: float) -> str:
    """12, 0.005, 100000000000: never an exponent."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.12g}"


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{_num(seconds / size)} {unit}"
    return f"{_num(seconds)} s"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> list[str]:
    return [_row(*header), "|" + "---|" * len(header), *(_row(*r) for r in rows)]


def _anchor(text: str) -> str:
    """GitHub's anchor of a heading."""
    return "#" + "".join(c for c in text.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def _camel(name: str) -> str:
    if name.startswith("$"):                  # PostHog's own properties: one spelling, as its SDKs send them
        return name
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _metric_name(emit: Emit) -> str:
    return emit.metric + "_total" if emit.kind == "counter" else emit.metric


def _metrics_by_event() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for emit in TABLE:
        for event in emit.events:
            if _metric_name(emit) not in names.setdefault(event, []):
                names[event].append(_metric_name(emit))
    return names


# --- docs/events.md: the catalog ---------------------------------------------------------------

def _prop_range(prop: Prop) -> str:
    parts = []
    if prop.enum:
        parts.append("one of " + ", ".join(f"`{v}`" for v in sorted(prop.enum)))
    if prop.minimum is not None and prop.maximum is not None:
        parts.append(f"{_num(prop.minimum)} to {_num(prop.maximum)}")
    elif prop.minimum is not None:
        parts.append(f">= {_num(prop.minimum)}")
    elif prop.maximum is not None:
        parts.append(f"<= {_num(prop.maximum)}")
    if prop.max_length is not None:
        parts.append(f"at most {prop.max_length} characters")
    if prop.pattern:
        parts.append(f"matches `^{prop.pattern}$`")
    return "; ".join(parts)


def _prop_name(name: str) -> str:
    camel = _camel(name)
    return f"`{name}`" if camel == name else f"`{name}` / `{camel}`"


def _event_section(spec: EventSpec, metrics: list[str]) -> list[str]:
    lines = [f"### `{spec.name}`", "", spec.description, ""]
    if spec.props:
        lines += _table(("property", "type", "required", "range / values", "description"),
                        ((_prop_name(name), prop.type, "yes" if prop.required else "", _prop_range(prop),
                          prop.description) for name, prop in spec.props.items()))
        lines.append("")
    else:
        lines += ["No catalog properties.", ""]
    if spec.aliases:
        aliases = ", ".join(f"`{alias}` for `{name}`" for alias, name in sorted(spec.aliases.items()))
        lines += [f"Also accepted: {aliases}.", ""]
    listed = ", ".join(f"`{m}`" for m in metrics) if metrics else "none besides `loom_events_total`"
    lines += [f"Metrics: {listed}.", ""]
    return lines


def _openapi() -> dict[str, Any]:
    return json.loads(files("agent.api").joinpath("openapi.json").read_text(encoding="utf-8"))


def _resolve(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> Mapping[str, Any]:
    while True:
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        elif len(schema.get("allOf", ())) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def _schema_type(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> str:
    schema = _resolve(schema, schemas)
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return " or ".join(_schema_type(s, schemas) for s in schema[combinator])
    kind = schema.get("type", "any")
    limits = []
    if schema.get("format") == "date-time":
        kind = "RFC 3339 date-time"
    if "maxLength" in schema:
        low = schema.get("minLength", 0)
        limits.append(f"{low}-{schema['maxLength']} chars" if low else f"at most {schema['maxLength']} chars")
    if "pattern" in schema:
        limits.append(f"`{schema['pattern']}`")
    if "enum" in schema:
        limits.append(", ".join(f"`{v}`" for v in schema["enum"]))
    if "maxProperties" in schema:
        limits.append(f"at most {schema['maxProperties']} keys")
    if "minimum" in schema and "maximum" in schema:
        limits.append(f"{_num(schema['minimum'])} to {_num(schema['maximum'])}")
    elif "minimum" in schema:
        limits.append(f">= {_num(schema['minimum'])}")
    return f"{kind} ({', '.join(limits)})" if limits else kind


def _schema_table(name: str, schemas: Mapping[str, Any]) -> list[str]:
    """Fields of a component schema; aliases (described `Alias of ...`) join their target's row."""
    schema = schemas[name]
    props: Mapping[str, Any] = schema["properties"]
    aliases: dict[str, list[str]] = {}
    for key, prop in props.items():
        if prop.get("description", "").startswith("Alias of `"):
            aliases.setdefault(prop["description"].split("`")[1], []).append(key)
    rows = []
    for key, prop in props.items():
        if any(key in names for names in aliases.values()):
            continue
        spelled = " / ".join(f"`{k}`" for k in (key, *aliases.get(key, ())))
        description = prop.get("description") or _resolve(prop, schemas).get("description", "")
        rows.append((spelled, _schema_type(prop, schemas), "yes" if key in schema.get("required", ()) else "",
                     description))
    return _table(("field", "type", "required", "description"), rows)


def _example(schemas_doc: Mapping[str, Any], body: str, example: str) -> list[str]:
    value = schemas_doc["components"]["requestBodies"][body]["content"]["application/json"]["examples"][example]
    return ["```json", json.dumps(value["value"], indent=2, ensure_ascii=False), "```", ""]


def _envelope_section() -> list[str]:
    doc = _openapi()
    schemas = doc["components"]["schemas"]
    config, limits = EventsConfig(), DEFAULT_LIMITS
    limit_rows = (
        ("events per batch", str(config.max_batch), "`events.max_batch`"),
        ("request body", f"{config.max_body_bytes} bytes", "`events.max_body_bytes`"),
        ("timestamp in the future", _duration(config.max_future_skew), "`events.max_future_skew`"),
        ("timestamp in the past", _duration(config.max_past_age), "`events.max_past_age`"),
        ("unknown event names", "accepted (custom)" if not config.strict else "rejected", "`events.strict`"),
        ("properties per event", str(limits.max_properties), "fixed"),
        ("string property length", f"{limits.max_string_length} characters", "fixed"),
        ("nesting of object/array properties", f"{limits.max_depth} levels", "fixed"),
        ("event and property name length", f"{limits.max_name_length} characters", "fixed"),
    )
    return [
        "## The envelope", "",
        "Sent to `POST /v1/events` (one event) or `POST /v1/events/batch` (an array of them, or "
        "`{\"events\": [...]}`). A batch is all or nothing: when any event is invalid, none is accepted and the "
        "400 answer `{\"error\", \"errors\": [{\"index\", \"field\", \"message\"}]}` names every invalid event. "
        "The OpenAPI document (`GET /openapi.json`, source `agent/api/openapi.json`) has the full schemas.", "",
        schemas["Event"]["description"], "",
        *_schema_table("Event", schemas), "",
        "### `context`", "",
        *_schema_table("Context", schemas), "",
        "### Limits", "",
        *_table(("limit", "default", "configured by"), limit_rows), "",
        "### Example", "",
        *_example(doc, "Event", "resourceViewed"),
        "## PostHog capture shape", "",
        "`POST /capture` (also `/capture/`, `/e`, `/e/`) takes one PostHog event, `POST /batch` (`/batch/`) "
        "`{\"api_key\", \"batch\": [...]}`, so PostHog SDKs can send to the agent.", "",
        *_schema_table("PostHogEvent", schemas), "",
        *_example(doc, "PostHogBatch", "batch"),
    ]


def render_events() -> str:
    metrics = _metrics_by_event()
    by_category: dict[str, list[EventSpec]] = {name: [] for name in CATEGORIES}
    for spec in CATALOG.values():
        by_category[spec.category].append(spec)
    lines = [
        "# Event catalog", "", _notice("agent/events/catalog*.py and agent/api/openapi.json"), "",
        f"The agent knows {len(CATALOG)} events in {len(CATEGORIES) - 1} categories. A catalog event's "
        "properties are typed, range-checked and may be sent in snake_case or camelCase; a required property "
        "that is missing, a value of the wrong type or out of range rejects the event with a 400 naming the "
        "field. Any other event name is a **custom** event (category `custom`): accepted with its "
        "properties typed generically, or rejected when `events.strict` is true. Which metrics every event becomes: "
        "[event-metrics.md](event-metrics.md).", "",
        *_table(("category", "events", "description"),
                ((f"[{name}]({_anchor(name)})", str(len(specs)), CATEGORIES[name])
                 for name, specs in by_category.items() if specs)), "",
        *_envelope_section(),
    ]
    for name, specs in by_category.items():
        if not specs:
            continue
        lines += [f"## {name}", "", CATEGORIES[name], ""]
        for spec in specs:
            lines += _event_section(spec, metrics.get(spec.name, []))
    return "\n".join(lines).rstrip("\n") + "\n"


# --- docs/event-metrics.md: the metric table ---------------------------------------------------

def _label_kind(emits: list[Emit], label: str) -> str:
    """closed (an enum in every event), boolean (true/false/unknown by type), or open."""
    props = [CATALOG[name].props.get(str(emit.labels[label])) if name in CATALOG else None
             for emit in emits for name in emit.events]
    if all(p is not None and p.enum for p in props):
        return "closed"
    return "boolean" if all(p is not None and p.type == "boolean" for p in props) else "open"


def _labels_cell(emits: list[Emit]) -> str:
    parts = []
    for label, source in emits[0].labels.items():
        if isinstance(source, Derived):
            parts.append(f"`{label}` ← {source.doc}")
        elif source.startswith("="):
            parts.append(f"`{label}` = constant per event")
        else:
            parts.append(f"`{label}` ← `{source}` ({_label_kind(emits, label)})")
    return "; ".join(parts) or "none"


def _events_cell(emits: list[Emit]) -> str:
    parts: list[str] = []
    for emit in emits:
        constants = [f"{label}={src[1:]}" for label, src in emit.labels.items()
                     if isinstance(src, str) and src.startswith("=")]
        suffix = f" ({', '.join(constants)})" if constants else ""
        if emit.when_doc:
            suffix += f" (when {emit.when_doc})"
        parts.extend(f"`{name}`{suffix}" for name in emit.events)
    return ", ".join(parts)


def _value_cell(emits: list[Emit]) -> str:
    emit = emits[0]
    if emit.value is None:
        return "1 per event"
    scaled = f"`{emit.value}` × {_num(emit.scale)}" if emit.scale != 1.0 else f"`{emit.value}`"
    return ("adds " if emit.kind == "counter" else "observes ") + scaled


def _metrics_by_category() -> dict[str, dict[str, list[Emit]]]:
    """category -> metric name -> its TABLE rows (a metric may be fed by several Emits)."""
    grouped: dict[str, dict[str, list[Emit]]] = {name: {} for name in CATEGORIES}
    owner: dict[str, str] = {}
    for emit in TABLE:
        category = owner.setdefault(emit.metric, CATALOG[emit.events[0]].category
                                    if emit.events[0] in CATALOG else CUSTOM)
        grouped[category].setdefault(emit.metric, []).append(emit)
    return grouped


def _ingest_families() -> list[tuple[str, str, str, str]]:
    """The metrics every pipeline registers besides the table's: (name, type, labels, help)."""
    store = MetricStore()
    EventPipeline(EventsConfig(), store, None)
    table = {emit.metric for emit in TABLE}
    return [(f"`{f.name}_total`" if f.kind == "counter" else f"`{f.name}`", f.kind,
             ", ".join(f"`{label}`" for label in f.labels), f.help)
            for f in sorted(store.families(), key=lambda f: f.name) if f.name not in table]


INTRO = """\
Every accepted event counts once in `loom_events_total{category,event}` (unknown names under
category `custom`) unless a mapping rule drops it. Catalog events also feed the metrics below
(`agent/events/metric_table.py`). The mapping rules of `events.mappings` add metrics for any event
name, catalog or custom (statsd_exporter-style: a glob `match`, properties as labels, `count`,
`observe` or `drop`; the first matching rule applies).

- **Labels.** A label read from a property with a closed set of values in the catalog is
  **closed**: its allow-list is that set plus `unknown`, and any other value is stored as `other`.
  A **boolean** label is `true`, `false` or `unknown`. An **open** label takes the property's
  value as sent, bounded by the metric's series limit (`events.series_limit`, default 2000; per
  metric `events.series_limits`): once a metric is at its limit, new series have their open
  labels folded to `other`. Every fold counts in
  `loom_agent_label_overflow_total{metric,label}`. An absent property is `unknown`. No user
  identifier is ever a label.
- **Units.** Names carry base units: milliseconds are scaled to seconds (× 0.001), percentages
  to ratios (× 0.01), minutes to seconds (× 60). Counters are exposed with `_total`; a histogram
  `X` as `X_bucket`, `X_sum` and `X_count`.
- **Values.** "1 per event" counts events; "adds `p`" adds the property's value; "observes `p`"
  records it in the histogram. An event without the property is not observed."""


def render_event_metrics() -> str:
    grouped = {name: metrics for name, metrics in _metrics_by_category().items() if metrics}
    lines = [
        "# Event metrics", "", _notice("agent/events/metric_table.py"), "", INTRO, "",
        *_table(("category", "metrics"), ((f"[{name}]({_anchor(name)})", str(len(metrics)))
                                          for name, metrics in grouped.items())), "",
    ]
    for category, metrics in grouped.items():
        lines += [f"## {category}", "", CATEGORIES[category], ""]
        lines += _table(("metric", "type", "labels", "from events", "value", "buckets", "help"),
                        ((f"`{_metric_name(m[0])}`", m[0].kind, _labels_cell(m), _events_cell(m),
                          _value_cell(m), ", ".join(_num(b) for b in m[0].buckets), m[0].help)
                         for m in metrics.values()))
        lines.append("")
    lines += ["## Ingest metrics", "", "Registered by the ingest pipeline itself, whatever the events.", "",
              *_table(("metric", "type", "labels", "help"), _ingest_families()), "",
              "`loom_agent_label_overflow_total{metric,label}` counts label values folded to `other` (above)."]
    return "\n".join(lines) + "\n"


# --- files ---------------------------------------------------------------------------------------

DOCS: Mapping[str, Callable[[], str]] = {"events.md": render_events, "event-metrics.md": render_event_metrics}


def default_docs_dir() -> Path:
    """docs/ of the source checkout this package was imported from."""
    return Path(__file__).resolve().parent.parent / "docs"


def stale_docs(docs_dir: Path) -> list[Path]:
    """The generated files whose content differs from a fresh render (or that are missing)."""
    stale = []
    for name, render in DOCS.items():
        path = docs_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render():
            stale.append(path)
    return stale


def write_docs(docs_dir: Path) -> list[Path]:
    """Write every generated file; returns those that changed."""
    changed = []
    for name, render in DOCS.items():
        path, text = docs_dir / name, render()
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
