"""posthog-js session recordings on the wire: the `$snapshot` events of `POST /s/`, read into rrweb events
grouped by session and window, in the order sent.

A request body (after agent/api/posthog_wire.py undid its gzip or base64) is a batch
`{"api_key", "batch": [...]}`, a bare array, or a single event. Each `$snapshot` event carries
    properties.$session_id      the recording's session (required)
    properties.$window_id       the browser tab within it
    properties.$snapshot_data   an array of rrweb events (older SDKs: one event)
    properties.$snapshot_bytes  the SDK's size estimate (not trusted)
    distinct_id / properties.distinct_id   who was recorded
posthog-js (1.1xx and later, lib/src/extensions/replay) compresses parts of some rrweb events itself,
marked `"cv": "2024-10"`: a full snapshot's `data`, a mutation's `texts`, `attributes`, `removes`, `adds`,
a style-sheet rule's `adds`, `removes`: each the JSON of the field, gzipped, as a string of one char per
byte (fflate's strFromU8(..., latin1)). They are inflated here (bounded, with the whole request's
budget), so the store holds plain rrweb events and a player needs no PostHog code.

Every string of an event then goes through the privacy rules (e-mail addresses pseudonymised, card
numbers masked): text nodes, attribute values, input values, style text. What the agent cannot see it
cannot scrub: pixels of canvas and images, text drawn in fonts, anything encoded by the page itself.
posthog-js masks inputs client-side by default (`maskAllInputs`); that remains the first line.

A malformed event is a SnapshotError naming its field (`batch[2].properties.$session_id`); the
request is refused whole, as every batch of the agent is.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

SNAPSHOT_EVENT = "$snapshot"
COMPRESSION_VERSION = "2024-10"
MAX_ID_LENGTH = 200
FULL_SNAPSHOT, INCREMENTAL_SNAPSHOT = 2, 3
MUTATION, STYLE_SHEET_RULE = 0, 8
_MUTATION_FIELDS = ("texts", "attributes", "removes", "adds")
_STYLE_FIELDS = ("adds", "removes")


class SnapshotError(ValueError):
    """A request that cannot be taken: `field` names what is wrong; `status` 400, or 413 when the
    recording inflates beyond the request's budget."""

    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


@dataclass(slots=True)
class Group:
    """The rrweb events of one session and window, consecutive in the request."""
    session_id: str
    window_id: str | None
    distinct_id: str | None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first_ts(self) -> float:
        return min(e["timestamp"] for e in self.events) / 1000.0

    @property
    def last_ts(self) -> float:
        return max(e["timestamp"] for e in self.events) / 1000.0


@dataclass(slots=True)
class Parsed:
    groups: list[Group]
    api_key: str | None
    other_events: int          # events of the body that are not $snapshot (not taken here)
    inflated_bytes: int        # bytes produced by inflating posthog-js's compressed fields


class _Budget:
    def __init__(self, limit: int):
        self.left = limit
        self.used = 0

    def inflate(self, text: str, where: str) -> Any:
        """The JSON value of a posthog-js compressed field (gzip bytes as a latin-1 string)."""
        try:
            raw = text.encode("latin-1")
        except UnicodeEncodeError:
            raise SnapshotError(where, "is not a compressed field (gzip bytes as a latin-1 string)") from None
        inflater = zlib.decompressobj(wbits=47)
        try:
            data = inflater.decompress(raw, self.left + 1)
        except zlib.error as exc:
            raise SnapshotError(where, f"is not valid gzip: {exc}") from None
        if len(data) > self.left or inflater.unconsumed_tail:
            raise SnapshotError(where, "inflates beyond the request's recording budget", 413)
        if not inflater.eof:
            raise SnapshotError(where, "is truncated gzip")
        self.left -= len(data)
        self.used += len(data)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SnapshotError(where, f"does not inflate to JSON: {exc}") from None


def parse_snapshots(obj: Any, budget: int, scrub: Callable[[str], str] = str) -> Parsed:
    """The body's `$snapshot` events as groups of rrweb events; raises SnapshotError. `budget`: bytes the
    compressed fields may inflate to in all; `scrub`: applied to every string of every rrweb event."""
    api_key, events, where = _events(obj)
    groups: list[Group] = []
    other = 0
    spend = _Budget(budget)
    for index, event in enumerate(events):
        at = f"{where}[{index}]" if where else ""
        if not isinstance(event, dict):
            raise SnapshotError(at or "body", "must be an event object")
        name = event.get("event")
        if name != SNAPSHOT_EVENT:
            if not isinstance(name, str):
                raise SnapshotError(_join(at, "event"), "must be the event name, \"$snapshot\"")
            other += 1
            continue
        props = event.get("properties")
        if not isinstance(props, dict):
            raise SnapshotError(_join(at, "properties"), "must be an object")
        session_id = _required_id(props.get("$session_id"), _join(at, "properties.$session_id"))
        window_id = _id(props.get("$window_id"), _join(at, "properties.$window_id"), required=False)
        distinct = event.get("distinct_id", props.get("distinct_id"))
        distinct_id = _id(distinct, _join(at, "distinct_id"), required=False) if distinct is not None else None
        if api_key is None and isinstance(props.get("token"), str):
            api_key = props["token"]
        data = props.get("$snapshot_data")
        data_at = _join(at, "properties.$snapshot_data")
        items = [data] if isinstance(data, dict) else data
        if not isinstance(items, list) or not items:
            raise SnapshotError(data_at, "must be a non-empty array of rrweb events")
        rrweb = [_rrweb_event(item, f"{data_at}[{i}]", spend, scrub) for i, item in enumerate(items)]
        last = groups[-1] if groups else None
        if last is not None and (last.session_id, last.window_id, last.distinct_id) == (session_id, window_id,
                                                                                         distinct_id):
            last.events.extend(rrweb)
        else:
            groups.append(Group(session_id, window_id, distinct_id, rrweb))
    return Parsed(groups, api_key, other, spend.used)


def snapshot_api_key(obj: Any) -> str | None:
    """The project key of a /s/ body, read before anything else of it: the body's `api_key` / `token`,
    else the first event's (or a `{"data": ...}`'s) `properties.token`."""
    for _ in range(2):
        if isinstance(obj, dict) and "data" in obj and "event" not in obj and "batch" not in obj:
            obj = obj["data"]
    first = obj
    if isinstance(obj, dict):
        key = obj.get("api_key", obj.get("token"))
        if isinstance(key, str):
            return key
        first = obj["batch"][0] if isinstance(obj.get("batch"), list) and obj["batch"] else obj
    elif isinstance(obj, list) and obj:
        first = obj[0]
    props = first.get("properties") if isinstance(first, dict) else None
    token = props.get("token") if isinstance(props, dict) else None
    return token if isinstance(token, str) else None


def _join(at: str, name: str) -> str:
    return f"{at}.{name}" if at else name


def _events(obj: Any) -> tuple[str | None, list[Any], str]:
    """(api key, events, the field path of the list) of the body's shapes."""
    if isinstance(obj, list):
        return None, obj, "batch"
    if not isinstance(obj, dict):
        raise SnapshotError("body", "must be a batch {\"batch\": [...]}, an array of events or one event")
    key = obj.get("api_key", obj.get("token"))
    key = key if isinstance(key, str) else None
    if "batch" in obj:
        if not isinstance(obj["batch"], list):
            raise SnapshotError("batch", "must be an array of events")
        return key, obj["batch"], "batch"
    if "data" in obj and "event" not in obj:
        return _events(obj["data"])
    return key, [obj], ""


def _required_id(value: Any, where: str) -> str:
    found = _id(value, where, required=True)
    assert found is not None
    return found


def _id(value: Any, where: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SnapshotError(where, "is required: a non-empty string" if required else "must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise SnapshotError(where, f"must be at most {MAX_ID_LENGTH} characters")
    if "\x00" in value:
        raise SnapshotError(where, "must not hold a NUL character")
    return value


def _rrweb_event(item: Any, where: str, spend: _Budget, scrub: Callable[[str], str]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise SnapshotError(where, "must be an rrweb event object")
    kind, stamp = item.get("type"), item.get("timestamp")
    if isinstance(stamp, bool):
        stamp = None
    if type(kind) is not int:
        raise SnapshotError(f"{where}.type", "must be an integer (the rrweb event type)")
    if not isinstance(stamp, (int, float)) or not 0 <= stamp < 1e14:
        raise SnapshotError(f"{where}.timestamp", "must be unix milliseconds")
    cv = item.get("cv")
    if cv is not None:
        if cv != COMPRESSION_VERSION:
            raise SnapshotError(f"{where}.cv", f"unknown compression version; known: {COMPRESSION_VERSION}")
        item = _inflate(item, kind, where, spend)
    return _scrubbed(item, scrub)


def _inflate(item: dict[str, Any], kind: int, where: str, spend: _Budget) -> dict[str, Any]:
    """The event without posthog-js's compression of its fields."""
    out = {k: v for k, v in item.items() if k != "cv"}
    data = item.get("data")
    if kind == FULL_SNAPSHOT and isinstance(data, str):
        out["data"] = spend.inflate(data, f"{where}.data")
    elif kind == INCREMENTAL_SNAPSHOT and isinstance(data, dict):
        source = data.get("source")
        names = _MUTATION_FIELDS if source == MUTATION else _STYLE_FIELDS if source == STYLE_SHEET_RULE else ()
        inner = dict(data)
        for name in names:
            if isinstance(inner.get(name), str):
                inner[name] = spend.inflate(inner[name], f"{where}.data.{name}")
        out["data"] = inner
    return out


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    """`value` with `scrub` applied to every string in it (not to keys); iterative: an rrweb DOM may nest
    deeper than Python's recursion limit."""
    if scrub is str:
        return value
    root = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = scrub(item)
        elif isinstance(item, dict):
            for name in item:
                stack.append((item, name))
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
    return root[0]
