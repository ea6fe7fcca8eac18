"""The business-metrics rate limit: 100 requests per minute per client, 429 with a truthful Retry-After.
A fake clock drives every test (no sleeping)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.api.keys import BUSINESS_RATE_LIMITER
from agent.api.ratelimit import RateLimiter
from agent.store.sqlite import SqliteStore
from tests.support.agent_app import get_all
from tests.test_analytics_api import AUTH, BUSINESS, DASHBOARD, TOKEN, make_app


class Clock:
    def __init__(self, now: float = 1000.5):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_101st_request_within_a_minute_is_refused_until_retry_after():
    clock = Clock()
    limiter = RateLimiter(100, clock=clock)
    for i in range(100):
        clock.now = 1000.5 + i * 0.59                   # spread over 58.4 s
        assert limiter.acquire("a") is None
    clock.now = 1059.5
    wait = limiter.acquire("a")
    assert wait is not None and 0 < wait <= 61
    clock.now += wait - 0.01
    assert limiter.acquire("a") is not None             # just before Retry-After: still refused
    clock.now += 0.01
    assert limiter.acquire("a") is None                  # at Retry-After: accepted


def test_clients_are_limited_separately_and_forgotten_least_recent_first():
    clock = Clock()
    limiter = RateLimiter(2, clock=clock, max_clients=3)
    assert limiter.acquire("a") is None and limiter.acquire("a") is None
    assert limiter.acquire("a") is not None
    assert limiter.acquire("b") is None
    for client in ("c", "d", "e"):
        limiter.acquire(client)
    assert len(limiter) == 3                             # memory stays bounded
    assert limiter.acquire("a") is None                  # "a" was forgotten


def test_a_lower_limit_applies_from_the_next_request():
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    for _ in range(5):
        assert limiter.acquire("a") is None
    limiter.limit = 5
    assert limiter.acquire("a") is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), min_size=1, max_size=300),
       st.integers(min_value=1, max_value=20))
def test_no_60_seconds_ever_hold_more_than_the_limit_and_a_quiet_client_gets_in(gaps, limit):
    clock = Clock(0.0)
    limiter = RateLimiter(limit, clock=clock)
    accepted: list[float] = []
    for gap in gaps:
        clock.now += gap
        recent = sum(1 for t in accepted if t > clock.now - 61)
        verdict = limiter.acquire("c")
        if verdict is None:
            accepted.append(clock.now)
            assert sum(1 for t in accepted if t > clock.now - 60) <= limit       # strict
        else:
            assert recent >= limit        # refused only when the last 61 s hold the limit (1 s resolution)
            assert verdict > 0


def test_over_http_the_101st_is_429_with_retry_after_and_auth_comes_first(tmp_path: Path):
    clock = Clock()

    async def scenario():
        store = SqliteStore(str(tmp_path / "store.db"))
        await store.open()
        try:
            app = make_app(store)
            app[BUSINESS_RATE_LIMITER] = RateLimiter(100, clock=clock)
            first = await get_all(app, [(BUSINESS, None, AUTH)] * 100)
            app = rebuild(app, store)
            second = await get_all(app, [
                (BUSINESS, None, AUTH),                                          # the 101st
                (BUSINESS, None, {}),                                            # no token: 401, not 429
                (BUSINESS, None, {"Authorization": "Bearer wrong"}),             # 403, not 429
                (BUSINESS, None, {"X-Loom-Api-Key": TOKEN}),                     # the same client, other header
                (DASHBOARD, None, AUTH)])                                        # the dashboard is not limited
            clock.now += int(second[0][2]["Retry-After"])
            third = await get_all(rebuild(app, store), [(BUSINESS, None, AUTH)])
            return first, second, third
        finally:
            await store.close()

    def rebuild(old, store):
        """A fresh app (an app runs once) keeping the same limiter."""
        app = make_app(store)
        app[BUSINESS_RATE_LIMITER] = old[BUSINESS_RATE_LIMITER]
        return app

    first, second, third = asyncio.run(scenario())
    assert [status for status, _, _ in first] == [200] * 100
    assert [status for status, _, _ in second] == [429, 401, 403, 429, 200]
    status, body, headers = second[0]
    assert headers["Retry-After"] == "61"               # all 100 in second 1000: it leaves the window at 1061
    assert body["error"].startswith("rate limit exceeded: at most 100 requests per 60 seconds")
    assert third[0][0] == 200
