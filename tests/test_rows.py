"""agent/store/rows.py's event_rows, written out for speed, gives exactly the rows of the plain version it
replaced (kept below as the reference): for every catalog event with each kind of property value, every
context field, the audit tables and the role."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from agent.events.catalog import CATALOG
from agent.events.model import Context, Event
from agent.store import rows as R

# --- the reference: event_rows as it was before it was written out -------------------------------------

def _outcome(props: dict[str, Any], spec: str | None) -> str | None:
    if spec is None:
        return None
    if spec[0] == "=":
        return spec[1:]
    return R._text(props.get(spec))


def _context_json(event: Event) -> str:
    c = event.context
    ctx: dict[str, str | bool] = {
        k: v for k, v in (("page", c.page), ("user_agent", c.user_agent), ("trace_id", c.trace_id),
                          ("span_id", c.span_id), ("ip", c.ip), ("library", c.library)) if v is not None}
    if c.dnt:
        ctx["dnt"] = True
    return orjson.dumps(ctx).decode()


def _lifted(value: Any) -> float | None:
    number = R._number(value)
    return number if number is not None and abs(number) <= R.MAX_VALUE else None


def reference(event: Event) -> tuple[tuple[Any, ...], list[tuple[str, tuple[Any, ...]]], str | None]:
    props = event.properties
    label, outcome, value = R.DIMENSIONS.get(event.name, (None, None, None))
    row = (event.event_id, event.name, event.category, event.timestamp, event.received_at, event.user_id,
           event.anonymous_id, event.session_id, R._text(props.get(label)) if label else None,
           _outcome(props, outcome), _lifted(props.get(value)) if value else None,
           "performance" if event.category in R.PERFORMANCE_CATEGORIES else "analytics",
           orjson.dumps(props, option=orjson.OPT_NON_STR_KEYS).decode(), _context_json(event), event.release)
    tables: list[tuple[str, tuple[Any, ...]]] = []
    derive = R._DERIVED.get(event.category)
    if derive is not None:
        derive(event, tables)
    role = props["role"] if event.name == "onboarding_personalization" and type(props.get("role")) is str else None
    return row, tables, role


# --- events ----------------------------------------------------------------------------------------------

VALUES: tuple[Any, ...] = ("web", "", 7, 0, -3, 2.5, 0.0, True, False, None, ["a", 1], {"k": "v"}, "ünïcode ✓",
                          1e15, -1e15, 1.5e15, -1e300, 1.7e308)
CONTEXTS = (
    Context(),
    Context(dnt=True),
    Context(page="/pricing", user_agent="Mozilla/5.0", trace_id="0" * 32, span_id="1" * 16, ip="10.1.2.0",
            library="loom-web", dnt=True),
    Context(user_agent="curl/8", ip="2001:db8::"),
    Context(page="/a", library="posthog-js", private=("email",)),
)


def _property_names(name: str) -> set[str]:
    names = {n for n in R.DIMENSIONS.get(name, (None, None, None)) if n and n[0] != "="}
    names |= {"role", "flow_id", "step", "step_number", "total_time_seconds", "time_spent_seconds", "method",
              "result", "failure_reason", "reason", "type", "severity", "resource_id", "resource_type", "file_id",
              "file_type", "bytes"}
    return names


def events() -> list[Event]:
    names = sorted(set(CATALOG) | {"my_custom_event"})
    out = []
    for i, name in enumerate(names):
        spec = CATALOG.get(name)
        category = spec.category if spec is not None else "custom"
        keys = sorted(_property_names(name))
        for j, value in enumerate(VALUES):
            props: dict[str, Any] = {key: VALUES[(j + k) % len(VALUES)] for k, key in enumerate(keys)}
            props[keys[j % len(keys)]] = value
            if j % 3 == 0:                       # some properties absent
                props.pop(keys[(j + 1) % len(keys)])
            if j % 4 == 1:
                props["role"] = "coach"
            out.append(Event(name, category, 1_700_000_000.0 + i * 60 + j, 1_700_000_100.5 + i, props,
                             user_id=None if j % 5 == 4 else f"user_{i}", anonymous_id=f"anon_{j}" if j % 2 else None,
                             session_id=f"s_{i}" if j % 3 else None, event_id=f"ev_{i}_{j}" if j % 2 == 0 else None,
                             context=CONTEXTS[(i + j) % len(CONTEXTS)], known=spec is not None,
                             release="web@1.2.3" if j % 6 == 0 else None))
    out.append(Event("cta_click", "marketing", 1_700_000_000.0, 1_700_000_000.0, {1: "non-string key", "cta_id": 5}))
    out.append(Event("onboarding_personalization", "onboarding", 1.0, 1.0, {"role": 3}, user_id="u"))
    return out


def test_event_rows_equal_the_reference_for_every_catalog_event() -> None:
    checked = derived = roles = 0
    for event in events():
        got = R.event_rows(event)
        row, tables, role = reference(event)
        assert got.event == row, event
        assert [type(v) for v in got.event] == [type(v) for v in row], event     # 1 vs 1.0 would compare equal
        assert list(got.tables) == tables, event
        assert got.role == role, event
        checked += 1
        derived += bool(tables)
        roles += role is not None
    assert checked > 600 and derived > 50 and roles > 0     # every kind of row was compared


@pytest.mark.parametrize("context", CONTEXTS, ids=range(len(CONTEXTS)))
def test_context_json_keeps_the_key_order_and_omits_what_is_unset(context: Context) -> None:
    event = Event("page_load", "performance", 1.0, 1.0, {}, user_id="u", context=context)
    assert R.context_json(event) == _context_json(event)
    assert list(orjson.loads(R.context_json(event))) == [
        k for k in ("page", "user_agent", "trace_id", "span_id", "ip", "library", "dnt")
        if (getattr(context, k) if k != "dnt" else context.dnt) not in (None, False)]


def test_audit_rows_are_their_own_per_event() -> None:
    """Events without audit rows share one empty sequence; the ones with rows never share a list."""
    first, second = (R.event_rows(Event("mfa_enrolled", "mfa", float(t), float(t), {"method": "totp"}, user_id="u"))
                     for t in (1, 2))
    assert len(first.tables) == len(second.tables) == 1
    assert first.tables is not second.tables
    plain = [R.event_rows(Event("cta_click", "marketing", 1.0, 1.0, {"cta_id": "a"}, user_id="u")) for _ in range(2)]
    assert list(itertools.chain.from_iterable(r.tables for r in plain)) == []
