"""Custom metric names, label names and units become Prometheus' rules (agent/custom_metrics/naming.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.custom_metrics.naming import (UNITS, NameProblem, label_name, metric_name, sample_names, sanitize,
                                         unit_of)

PROMETHEUS_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@pytest.mark.parametrize("raw, expected", [
    ("conversions", "conversions"),
    ("checkout.Duration", "checkout_duration"),
    ("api-latency", "api_latency"),
    ("HTTPRequests", "http_requests"),
    ("userSignups", "user_signups"),
    ("a..b  c", "a_b_c"),
    ("__private__", "private"),
    (".leading.dot", "leading_dot"),
    ("Checkout Completed!", "checkout_completed"),
    ("naïve", "na_ve"),
])
def test_names_are_sanitized(raw: str, expected: str) -> None:
    assert sanitize(raw) == expected


@pytest.mark.parametrize("raw, message", [
    ("1st_signup", "must start with a letter"),
    ("_9lives", "must start with a letter"),
    ("...", "has no letters or digits"),
    ("", "has no letters or digits"),
    ("x" * 151, "longer than 150 characters"),
])
def test_names_that_cannot_be_made_valid_are_refused(raw: str, message: str) -> None:
    with pytest.raises(NameProblem, match=message):
        sanitize(raw)


@pytest.mark.slow
@given(st.text(max_size=60))
def test_any_accepted_name_is_a_valid_prometheus_name(raw: str) -> None:
    try:
        name = sanitize(raw)
    except NameProblem:
        return
    assert PROMETHEUS_NAME.match(name) and name[0].isalpha() and "__" not in name
    assert sanitize(name) == name                     # idempotent: a sanitized name is its own result


@pytest.mark.parametrize("unit, suffix, value, base", [
    ("millisecond", "seconds", 250, 0.25),
    ("milliseconds", "seconds", 1500, 1.5),
    ("microsecond", "seconds", 2_000_000, 2.0),
    ("second", "seconds", 3, 3),
    ("minute", "seconds", 2, 120),
    ("hour", "seconds", 1, 3600),
    ("day", "seconds", 1, 86400),
    ("byte", "bytes", 10, 10),
    ("bytes", "bytes", 10, 10),
    ("kilobyte", "bytes", 2, 2000),
    ("kibibyte", "bytes", 2, 2048),
    ("megabyte", "bytes", 1, 1e6),
    ("bit", "bytes", 16, 2),
    ("percent", "ratio", 42, 0.42),
    ("ratio", "ratio", 0.5, 0.5),
    ("none", "", 7, 7),
    ("", "", 7, 7),
    ("Millisecond", "seconds", 1000, 1),
])
def test_units_become_base_units(unit: str, suffix: str, value: float, base: float) -> None:
    found = unit_of(unit)
    assert found.suffix == suffix
    assert value * found.factor == pytest.approx(base)


def test_unknown_units_are_refused_listing_the_known_ones() -> None:
    with pytest.raises(NameProblem, match=r"unknown unit 'furlong'; use one of none, nanosecond"):
        unit_of("furlong")
    assert "percent" in UNITS and "millisecond" in UNITS


@pytest.mark.parametrize("name, kind, unit, expected", [
    ("conversions", "counter", "none", "loom_app_conversions"),
    ("conversions_total", "counter", "none", "loom_app_conversions"),     # the exposition adds _total
    ("latency", "distribution", "millisecond", "loom_app_latency_seconds"),
    ("latency_seconds", "distribution", "second", "loom_app_latency_seconds"),   # not twice
    ("upload_size", "distribution", "kilobyte", "loom_app_upload_size_bytes"),
    ("bytes_sent", "counter", "byte", "loom_app_bytes_sent_bytes"),
    ("disk_usage", "gauge", "percent", "loom_app_disk_usage_ratio"),
    ("queue_depth", "gauge", "none", "loom_app_queue_depth"),
])
def test_final_names_are_namespaced_with_unit_suffixes(name: str, kind: str, unit: str, expected: str) -> None:
    assert metric_name("loom_app", name, kind, unit_of(unit)) == expected


def test_only_counters_may_end_in_total() -> None:
    for kind in ("gauge", "distribution"):
        with pytest.raises(NameProblem, match="ends in _total, which only counters carry"):
            metric_name("loom_app", "signups_total", kind, unit_of("none"))


def test_without_a_namespace_the_agents_own_names_are_refused() -> None:
    assert metric_name("", "checkout_duration", "gauge", unit_of("none")) == "checkout_duration"
    for name in ("loom_events", "probe_success", "process_cpu", "python_gc", "up"):
        with pytest.raises(NameProblem, match="starts like the agent's own metrics"):
            metric_name("", name, "gauge", unit_of("none"))
    assert metric_name("loom_app", "probe_success", "gauge", unit_of("none")) == "loom_app_probe_success"


@pytest.mark.parametrize("raw, expected", [("type", "type"), ("planTier", "plan_tier"), ("feature-flag", "feature_flag")])
def test_tag_keys_become_label_names(raw: str, expected: str) -> None:
    assert label_name(raw) == expected


@pytest.mark.parametrize("raw", ["le", "quantile", "job", "instance", "LE", "Job"])
def test_reserved_label_names_are_refused(raw: str) -> None:
    with pytest.raises(NameProblem, match="which Prometheus reserves"):
        label_name(raw)


def test_sample_names_cover_every_series_a_family_writes() -> None:
    assert sample_names("x", "counter") == {"x", "x_total"}
    assert sample_names("x", "histogram") == {"x", "x_bucket", "x_count", "x_sum"}
    assert sample_names("x_count", "gauge") & sample_names("x", "histogram")


def _factor(text: str) -> float:
    """"0.001", "60", "10^6", "2^20" as written in the docs."""
    base, _, power = text.partition("^")
    return float(base) ** int(power) if power else float(base)


def test_the_docs_list_every_unit_with_its_factor_and_suffix() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "custom-metrics.md").read_text()
    section = docs.split("\n## Units\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            factors = cells[1].split(" / ")
            for i, name in enumerate(re.findall(r"`([a-z]+)`", cells[0])):
                rows[name] = (factors[i] if len(factors) > 1 else factors[0], cells[2].strip("`"))
    assert set(rows) == set(UNITS)
    for name, unit in UNITS.items():
        factor, suffix = rows[name]
        assert suffix == (f"_{unit.suffix}" if unit.suffix else "none"), name
        assert _factor(factor) == pytest.approx(unit.factor), name
