"""A per-client request limiter: at most `limit` requests in any 60 seconds, answered with 429 and a
Retry-After that is true (a request sent after that many seconds is accepted).

The window slides at one-second resolution: each client keeps a count per second for the last 61
seconds (at most 61 small entries, whatever the limit), and a request is refused while the seconds
that could still be within 60 s of now already hold `limit` requests. Counting the whole oldest
second makes the limiter strict — no 60-second span ever holds more than `limit` accepted requests,
not even across a window boundary as with fixed windows — at the price of a client waiting up to one
second longer than an exact log of timestamps would make it.

Memory is bounded by `max_clients`: the least recently seen client is forgotten first (it may then
start afresh, which only the holder of several admin tokens or addresses could use).

The client is the bearer token's identity (a SHA-256 prefix: the token itself is never kept), else
the remote address.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from aiohttp import web

from agent.api.auth import bearer_token
from agent.api.problems import TooManyRequests
from agent.config.api import ApiConfig

WINDOW_SECONDS = 60
MAX_CLIENTS = 4096


class RateLimiter:
    def __init__(self, limit: int, *, window: int = WINDOW_SECONDS, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = limit            # may be changed on reload; applies from the next request
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        # client -> (deque of [second, count], total of the counts)
        self._clients: OrderedDict[str, tuple[deque[list[int]], list[int]]] = OrderedDict()

    def prepare(self, config: ApiConfig) -> Callable[[], None]:
        """Reloadable: `api.rate_limit` applies from the next request."""
        return lambda: setattr(self, "limit", config.rate_limit)

    def __len__(self) -> int:
        return len(self._clients)

    def acquire(self, client: str) -> float | None:
        """Count one request of `client`: None when accepted, else the seconds to wait (> 0)."""
        now = self.clock()
        second = math.floor(now)
        seconds, total = self._state(client)
        while seconds and seconds[0][0] < second - self.window:     # older than the window can reach
            total[0] -= seconds.popleft()[1]
        if total[0] >= self.limit:
            return self._wait(seconds, total[0], now)
        if seconds and seconds[-1][0] == second:
            seconds[-1][1] += 1
        else:
            seconds.append([second, 1])
        total[0] += 1
        return None

    def _state(self, client: str) -> tuple[deque[list[int]], list[int]]:
        state = self._clients.get(client)
        if state is None:
            state = self._clients[client] = (deque(), [0])
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        return state

    def _wait(self, seconds: deque[list[int]], total: int, now: float) -> float:
        """Seconds until enough of the oldest seconds leave the window for one more request. A second s
        stops counting at s + window + 1."""
        for second, count in seconds:
            total -= count
            if total < self.limit:
                return max(second + self.window + 1 - now, 0.001)
        return 0.001                  # unreachable while total >= limit > 0; a tiny wait is still true


def client_key(request: web.Request) -> str:
    """The rate-limited identity: a hash of the bearer token, else the peer's address."""
    token = bearer_token(request)
    if token is not None:
        return "token:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return "addr:" + (request.remote or "unknown")


def enforce_rate_limit(limiter: RateLimiter, request: web.Request) -> None:
    """Count the request; raises the 429 with Retry-After (whole seconds, rounded up) when the client is
    over the limit."""
    wait = limiter.acquire(client_key(request))
    if wait is None:
        return
    retry_after = max(1, math.ceil(wait))
    raise TooManyRequests(f"rate limit exceeded: at most {limiter.limit} requests per {limiter.window} seconds "
                          f"per client; retry after {retry_after} s", headers={"Retry-After": str(retry_after)})
