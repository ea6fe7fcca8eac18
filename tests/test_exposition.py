"""agent/metrics/exposition.py and agent/api/exposition.py: both formats parsed back, escaping, naming,
histograms, the registry merge, the overflow counter, and negotiation + gzip through a real aiohttp app."""

from __future__ import annotations

import asyncio
import gzip
import math

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.api.exposition import accepts_gzip, exposition_response, negotiate
from agent.api.keys import METRICS, RUNTIME
from agent.metrics.exposition import render
from agent.metrics.store import MetricStore
from tests.support.agent_app import agent_app

PROMETHEUS_2_42_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                          "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
NASTY = ['quo"te', "back\\slash", "new\nline", '\\"\n\\n mixed', "ünïcødé ✓", "", "{a=\"b\"}, # EOF"]


def parsed(body: bytes, openmetrics: bool) -> dict[str, object]:
    """Family name -> parsed family, from the format's own prometheus_client parser."""
    parse = parse_openmetrics if openmetrics else parse_text
    return {family.name: family for family in parse(body.decode())}


def samples(family) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for s in family.samples}


def sample_store() -> MetricStore:
    store = MetricStore()
    events = store.counter("loom_events", "Events received.", ("category", "event"))
    events.inc(("marketing", "cta_click"), 3)
    events.inc(("auth", "login_attempt"))
    store.gauge("loom_sessions_active", "Open sessions.", ("kind",)).set(("ws",), 7.5)
    latency = store.histogram("loom_api_request_duration_seconds", "API latency.", ("route",),
                              buckets=(0.1, 0.5, 1.0), unit="seconds")
    for value in (0.05, 0.2, 0.3, 0.7, 4.0):
        latency.observe(("/v1/events",), value)
    return store


def test_text_format_parses_back_with_types_and_values() -> None:
    families = parsed(render(sample_store(), None, openmetrics=False), openmetrics=False)
    assert families["loom_events"].type == "counter"
    assert samples(families["loom_events"]) == {
        ("loom_events_total", frozenset({("category", "marketing"), ("event", "cta_click")})): 3.0,
        ("loom_events_total", frozenset({("category", "auth"), ("event", "login_attempt")})): 1.0}
    assert families["loom_sessions_active"].type == "gauge"
    assert samples(families["loom_sessions_active"]) == {("loom_sessions_active", frozenset({("kind", "ws")})): 7.5}
    assert families["loom_api_request_duration_seconds"].type == "histogram"


def test_openmetrics_parses_back_with_types_units_and_one_eof() -> None:
    body = render(sample_store(), None, openmetrics=True)
    assert body.endswith(b"\n# EOF\n") and body.count(b"# EOF") == 1
    families = parsed(body, openmetrics=True)
    assert families["loom_events"].type == "counter"
    assert {s.name for s in families["loom_events"].samples} == {"loom_events_total"}
    assert families["loom_api_request_duration_seconds"].unit == "seconds"
    assert samples(families["loom_sessions_active"]) == {("loom_sessions_active", frozenset({("kind", "ws")})): 7.5}


def test_counter_total_naming_in_both_formats() -> None:
    store = MetricStore()
    store.counter("loom_logins", "Logins.", ("result",)).inc(("success",))
    text = render(store, None, openmetrics=False).decode()
    assert "# HELP loom_logins_total Logins.\n# TYPE loom_logins_total counter\n" in text
    assert 'loom_logins_total{result="success"} 1.0\n' in text
    om = render(store, None, openmetrics=True).decode()
    assert "# HELP loom_logins Logins.\n# TYPE loom_logins counter\n" in om
    assert 'loom_logins_total{result="success"} 1.0\n' in om


def test_unit_line_only_in_openmetrics_and_only_when_the_name_ends_in_the_unit() -> None:
    store = MetricStore()
    store.gauge("loom_upload_size_bytes", "Upload size.", unit="bytes").set((), 10.0)
    store.gauge("loom_mismatch", "Unit not in the name.", unit="seconds").set((), 1.0)
    om = render(store, None, openmetrics=True).decode()
    assert "# UNIT loom_upload_size_bytes bytes\n" in om
    assert "# UNIT loom_mismatch" not in om
    assert parsed(om.encode(), openmetrics=True)["loom_upload_size_bytes"].unit == "bytes"
    assert "# UNIT" not in render(store, None, openmetrics=False).decode()


def test_histogram_buckets_are_cumulative_with_count_and_sum_in_both_formats() -> None:
    for openmetrics in (False, True):
        family = parsed(render(sample_store(), None, openmetrics=openmetrics), openmetrics)[
            "loom_api_request_duration_seconds"]
        got = samples(family)
        route = ("route", "/v1/events")
        buckets = {dict(labels)["le"]: value for (name, labels), value in got.items() if name.endswith("_bucket")}
        assert buckets == {"0.1": 1, "0.5": 3, "1.0": 4, "+Inf": 5}
        assert got[("loom_api_request_duration_seconds_count", frozenset({route}))] == 5
        assert math.isclose(got[("loom_api_request_duration_seconds_sum", frozenset({route}))], 5.25)


def test_label_values_and_help_are_escaped_in_both_formats() -> None:
    store = MetricStore()
    counter = store.counter("loom_nasty", 'Help with "quotes", a \\ and a\nnewline.', ("value", "other"))
    for i, value in enumerate(NASTY):
        counter.inc((value, str(i)))
    for openmetrics in (False, True):
        family = parsed(render(store, None, openmetrics=openmetrics), openmetrics)["loom_nasty"]
        assert family.documentation == 'Help with "quotes", a \\ and a\nnewline.'
        assert {s.labels["value"] for s in family.samples} == set(NASTY)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20), min_size=1, max_size=5,
                unique=True))
def test_any_label_value_round_trips_through_both_parsers(values: list[str]) -> None:
    store = MetricStore()
    gauge = store.gauge("loom_any", "Any label value.", ("v",))
    for i, value in enumerate(values):
        gauge.set((value,), float(i))
    for openmetrics in (False, True):
        got = {s.labels["v"]: s.value for s in parsed(render(store, None, openmetrics=openmetrics),
                                                           openmetrics)["loom_any"].samples}
        assert got == {value: float(i) for i, value in enumerate(values)}


def test_same_samples_as_prometheus_client_for_the_same_series() -> None:
    store = MetricStore()
    ours_c = store.counter("loom_c", "c", ("a", "b"))
    ours_g = store.gauge("loom_g", "g", ("a",))
    ours_h = store.histogram("loom_h", "h", ("a",), buckets=(0.25, 1.0, 2.5))
    registry = CollectorRegistry()
    theirs_c = Counter("loom_c", "c", ("a", "b"), registry=registry)
    theirs_g = Gauge("loom_g", "g", ("a",), registry=registry)
    theirs_h = Histogram("loom_h", "h", ("a",), buckets=(0.25, 1.0, 2.5), registry=registry)
    for i in range(30):
        a, b, value = f"x{i % 4}", f"y{i % 7}", i * 0.37
        ours_c.inc((a, b), value)
        theirs_c.labels(a, b).inc(value)
        ours_g.set((a,), -value)
        theirs_g.labels(a).set(-value)
        ours_h.observe((a,), value)
        theirs_h.labels(a).observe(value)

    def comparable(family) -> dict:
        return {k: round(v, 9) for k, v in samples(family).items() if not k[0].endswith("_created")}

    for openmetrics, encoder in ((False, generate_latest), (True, None)):
        ours = parsed(render(store, None, openmetrics=openmetrics), openmetrics)
        theirs = parsed(render(None, registry, openmetrics=openmetrics) if encoder is None else encoder(registry),
                        openmetrics)
        for name in ("loom_c", "loom_g", "loom_h"):
            assert ours[name].type == theirs[name].type
            assert comparable(ours[name]) == comparable(theirs[name])


def test_special_values_and_integer_gauges() -> None:
    store = MetricStore()
    gauge = store.gauge("loom_special", "Special values.", ("v",))
    gauge.set(("nan",), float("nan"))
    gauge.set(("inf",), float("inf"))
    gauge.set(("-inf",), float("-inf"))
    gauge.set(("int",), 3)
    gauge.set(("big",), 1e300)
    text = render(store, None, openmetrics=False).decode()
    assert 'v="inf"} +Inf\n' in text and 'v="-inf"} -Inf\n' in text and 'v="nan"} NaN\n' in text
    assert 'v="int"} 3\n' in text
    for openmetrics in (False, True):
        got = {s.labels["v"]: s.value for s in parsed(render(store, None, openmetrics=openmetrics),
                                                           openmetrics)["loom_special"].samples}
        assert math.isnan(got.pop("nan"))
        assert got == {"inf": math.inf, "-inf": -math.inf, "int": 3, "big": 1e300}


def test_openmetrics_histograms_with_negative_buckets_or_sums_drop_count_and_sum() -> None:
    store = MetricStore()
    store.histogram("loom_offset", "Clock offset.", buckets=(-1.0, 0.0, 1.0)).observe((), -3.0)
    below = store.histogram("loom_delta", "Deltas.", ("k",), buckets=(0.0, 1.0))
    below.observe(("neg",), -2.0)
    below.observe(("pos",), 0.5)
    families = parsed(render(store, None, openmetrics=True), openmetrics=True)    # the parser rejects them otherwise
    assert {s.name for s in families["loom_offset"].samples} == {"loom_offset_bucket"}
    delta = {(s.name, s.labels["k"]) for s in families["loom_delta"].samples}
    assert ("loom_delta_sum", "pos") in delta and ("loom_delta_sum", "neg") not in delta
    assert ("loom_delta_count", "neg") not in delta
    text = parsed(render(store, None, openmetrics=False), openmetrics=False)
    assert samples(text["loom_offset"])[("loom_offset_sum", frozenset())] == -3.0


def test_merge_with_a_registry_keeps_one_eof_and_both_sources() -> None:
    registry = CollectorRegistry()
    Counter("loom_agent_config_reloads", "Reloads.", ("result",), registry=registry).labels("success").inc()
    store = sample_store()
    om = render(store, registry, openmetrics=True)
    assert om.count(b"# EOF") == 1 and om.endswith(b"# EOF\n")
    families = parsed(om, openmetrics=True)
    assert {"loom_agent_config_reloads", "loom_events", "loom_agent_label_overflow"} <= set(families)
    text = parsed(render(store, registry, openmetrics=False), openmetrics=False)
    assert {"loom_agent_config_reloads", "loom_events"} <= set(text)
    assert render(None, registry, openmetrics=True).count(b"# EOF") == 1


def test_empty_store_and_nothing_at_all() -> None:
    for openmetrics in (False, True):
        families = parsed(render(MetricStore(), None, openmetrics=openmetrics), openmetrics)
        assert list(families) == ["loom_agent_label_overflow"]
        assert families["loom_agent_label_overflow"].samples == []
    assert render(None, None, openmetrics=True) == b"# EOF\n"
    assert render(None, None, openmetrics=False) == b""


def test_label_overflow_is_rendered_from_the_store() -> None:
    store = MetricStore()
    counter = store.counter("loom_pages", "Page views.", ("page", "kind"), series_limit=2,
                            allow={"kind": ("a", "b")})
    for page, kind in (("/1", "a"), ("/2", "a"), ("/3", "a"), ("/4", "zzz")):
        counter.inc((page, kind))
    assert store.overflow == {("loom_pages", "page"): 2, ("loom_pages", "kind"): 1}
    for openmetrics in (False, True):
        family = parsed(render(store, None, openmetrics=openmetrics), openmetrics)["loom_agent_label_overflow"]
        assert family.type == "counter"
        assert samples(family) == {
            ("loom_agent_label_overflow_total", frozenset({("metric", "loom_pages"), ("label", "page")})): 2,
            ("loom_agent_label_overflow_total", frozenset({("metric", "loom_pages"), ("label", "kind")})): 1}


def test_cached_prefixes_follow_added_and_removed_series() -> None:
    store = MetricStore()
    counter = store.counter("loom_x", "x", ("k",))
    counter.inc(("a",))
    render(store, None, openmetrics=False)
    counter.inc(("b",), 2)
    counter.inc(("a",))
    assert samples(parsed(render(store, None, openmetrics=False), False)["loom_x"]) == {
        ("loom_x_total", frozenset({("k", "a")})): 2.0, ("loom_x_total", frozenset({("k", "b")})): 2.0}
    del counter.series[("a",)]          # no removal API yet; the cache must not resurrect the series
    assert samples(parsed(render(store, None, openmetrics=True), True)["loom_x"]) == {
        ("loom_x_total", frozenset({("k", "b")})): 2.0}
    assert len(counter.render_cache.prefixes) == 1
    render(store, None, openmetrics=False)
    del counter.series[("b",)]          # removed and more added since the last render: not an append
    for key in ("c", "d"):
        counter.inc((key,), 5)
    assert samples(parsed(render(store, None, openmetrics=False), False)["loom_x"]) == {
        ("loom_x_total", frozenset({("k", "c")})): 5.0, ("loom_x_total", frozenset({("k", "d")})): 5.0}


def test_negotiation_follows_prometheus_client_rules() -> None:
    assert negotiate(PROMETHEUS_2_42_ACCEPT)[0] is True
    assert negotiate("application/openmetrics-text")[1].startswith("application/openmetrics-text; version=1.0.0")
    assert negotiate("application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4") == (
        False, "text/plain; version=0.0.4; charset=utf-8")
    assert negotiate("")[0] is False and negotiate("*/*")[0] is False
    assert accepts_gzip("gzip") and accepts_gzip("deflate, GZIP;q=0.5") and accepts_gzip("br, gzip")
    assert not accepts_gzip("") and not accepts_gzip("gzip;q=0") and not accepts_gzip("deflate, identity")


def metrics_app(store: MetricStore) -> web.Application:
    """The real agent's /metrics over `store` as its event metric store, plus a route rendering one small
    registry alone (as /probe does)."""
    app = agent_app()
    app[RUNTIME].self_metrics.probes_in_flight.set(2)
    app[METRICS] = store
    registry = CollectorRegistry()
    Gauge("loom_agent_probes_in_flight", "Probes running now.", registry=registry).set(2)

    async def registry_only(request: web.Request) -> web.Response:      # as /probe calls it
        return exposition_response(request, registry)

    app.router.add_get("/registry-only", registry_only)
    return app


async def fetch(client: TestClient, path: str, **headers: str) -> tuple[dict, bytes]:
    async with client.get(path, headers=headers) as response:
        assert response.status == 200
        return dict(response.headers), await response.read()


def test_gzip_and_format_negotiation_through_aiohttp() -> None:
    async def scenario() -> None:
        async with TestClient(TestServer(metrics_app(sample_store()), host="127.0.0.1", port=0),
                              auto_decompress=False) as client:
            headers, body = await fetch(client, "/metrics", Accept=PROMETHEUS_2_42_ACCEPT, **{"Accept-Encoding": "gzip"})
            assert headers["Content-Encoding"] == "gzip"
            assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
            families = parsed(gzip.decompress(body), openmetrics=True)
            assert {"loom_agent_probes_in_flight", "loom_events", "loom_agent_label_overflow"} <= set(families)

            headers, body = await fetch(client, "/metrics", **{"Accept-Encoding": "identity"})
            assert "Content-Encoding" not in headers
            assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert {"loom_agent_probes_in_flight", "loom_events"} <= set(parsed(body, openmetrics=False))

            headers, body = await fetch(client, "/registry-only", Accept="application/openmetrics-text",
                                        **{"Accept-Encoding": "gzip;q=0"})
            assert "Content-Encoding" not in headers
            assert body.count(b"# EOF") == 1
            assert set(parsed(body, openmetrics=True)) == {"loom_agent_probes_in_flight"}

    asyncio.run(scenario())
