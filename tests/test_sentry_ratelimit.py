"""agent/sentry/ratelimit.py: the 429 headers, checked against the real SDK's own parser (sentry-python's
`_parse_rate_limits`), since the SDK deciding to back off is the point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.sentry.ratelimit import (
    RateLimit,
    backoff_headers,
    categories_of,
    format_rate_limit,
    rate_limits_header,
    retry_seconds,
)


def test_the_header_format() -> None:
    assert format_rate_limit(RateLimit(60)) == "60::organization"
    assert format_rate_limit(RateLimit(2.1, ("error", "transaction"), "key", "store_unavailable")) == \
        "3:error;transaction:key:store_unavailable"
    assert rate_limits_header([RateLimit(1, ("error",)), RateLimit(30)]) == "1:error:organization, 30::organization"


def test_backoff_headers_agree_on_whole_seconds() -> None:
    assert backoff_headers(4.2) == {"Retry-After": "5",
                                    "X-Sentry-Rate-Limits": "5::organization:store_unavailable"}
    assert backoff_headers(0, ["error"])["X-Sentry-Rate-Limits"] == "1:error:organization:store_unavailable"


def test_retry_seconds_are_at_least_one_and_at_most_a_day() -> None:
    assert [retry_seconds(s) for s in (0, 0.01, 1, 1.5, 10**9)] == [1, 1, 1, 2, 86400]


@pytest.mark.parametrize("bad", [dict(seconds=-1), dict(seconds=float("nan")), dict(seconds=1, scope="world"),
                                 dict(seconds=1, categories=("Error",)), dict(seconds=1, categories=("a:b",)),
                                 dict(seconds=1, reason="has space")])
def test_invalid_limits_are_refused_at_construction(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RateLimit(**bad)  # type: ignore[arg-type]


def test_item_types_map_to_the_sdks_categories() -> None:
    assert categories_of(["event", "transaction", "session", "sessions", "check_in", "log", "unknown"]) == \
        ("error", "transaction", "session", "monitor", "log_item")


def test_the_real_sdk_reads_the_header_as_meant() -> None:
    transport = pytest.importorskip("sentry_sdk.transport")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    header = backoff_headers(30, ["error", "transaction"])["X-Sentry-Rate-Limits"]
    assert dict(transport._parse_rate_limits(header, now)) == {
        "error": now + timedelta(seconds=30), "transaction": now + timedelta(seconds=30)}
    everything = backoff_headers(7)["X-Sentry-Rate-Limits"]
    assert dict(transport._parse_rate_limits(everything, now)) == {None: now + timedelta(seconds=7)}
