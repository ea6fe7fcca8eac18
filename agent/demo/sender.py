"""Sends the demo traffic to an agent at a steady rate and counts what happened.

Events go in `/v1/events/batch` requests, a batch every quarter second (fewer, larger ones below 4
events/s), each with the agent's ingest key when one is given. A 503 (the store cannot commit now)
is retried once after its Retry-After (event ids make the retry safe); anything else non-2xx or a
connection failure counts as an error and the sending goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from agent.demo import extras
from agent.demo.history import users_of
from agent.demo.traffic import Traffic

TICK_SECONDS = 0.25
MAX_BATCH = 1000               # the agent's default events.max_batch
IDENTIFY_BATCH = 100
RETRY_CAP_SECONDS = 5.0


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    events: int = 0
    requests: int = 0
    errors: int = 0
    last_error: str = ""
    extras: dict[str, int] = field(default_factory=dict)          # path -> accepted requests
    refused: dict[str, str] = field(default_factory=dict)         # path -> why it was switched off

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        extra = "".join(f", {path.rsplit('/', 1)[1]} {n}" for path, n in self.extras.items())
        error = f" (last: {self.last_error})" if self.errors else ""
        return (f"{self.elapsed():6.0f}s  events sent {self.events}  requests {self.requests}{extra}  "
                f"errors {self.errors}{error}")


class Sender:
    def __init__(self, agent_url: str, traffic: Traffic, rate: float, api_key: str | None = None):
        self.url = agent_url.rstrip("/")
        self.traffic, self.rate = traffic, rate
        self.headers = {"Content-Type": "application/json", **({"X-Loom-Api-Key": api_key} if api_key else {})}
        self.stats = Stats()
        self.extras: set[str] = set()
        self.api_read = False          # whether the agent's /openapi.json was read
        self._identified: set[str] = set()

    async def run(self, duration: float | None, progress: Callable[[Stats], None] | None = None,
                  progress_every: float = 1.0) -> Stats:
        """Send for `duration` seconds (None: until cancelled); `progress` is called every `progress_every`."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            self.extras = await self._available_extras(session)
            tick = max(TICK_SECONDS, 1 / self.rate)
            pending = self.traffic.tour()
            owed, next_report = 0.0, time.monotonic() + progress_every
            while duration is None or self.stats.elapsed() < duration:
                began = time.monotonic()
                owed += self.rate * tick
                if len(pending) < owed:
                    pending += self.traffic.events(int(owed) - len(pending))
                batch, pending = pending[:MAX_BATCH], pending[MAX_BATCH:]
                owed = max(0.0, owed - len(batch))
                await self._send_events(session, batch)
                await self._send_extras(session, batch)
                if progress and time.monotonic() >= next_report:
                    progress(self.stats)
                    next_report += progress_every
                await asyncio.sleep(max(0.0, tick - (time.monotonic() - began)))
        return self.stats

    async def send_history(self, events: list[dict[str, Any]],
                           progress: Callable[[Stats], None] | None = None) -> Stats:
        """Send `events` (agent/demo/history.py: timestamped, oldest first) as fast as the agent takes them,
        MAX_BATCH a request, then the traits of their users (when the agent has /v1/identify), so the
        analytics have roles and sign-up dates for them."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            self.extras = await self._available_extras(session)
            for start in range(0, len(events), MAX_BATCH):
                await self._send_events(session, events[start:start + MAX_BATCH])
                if progress and start // MAX_BATCH % 10 == 9:
                    progress(self.stats)
            users = [user for user in users_of(events) if user not in self._identified]
            if extras.IDENTIFY not in self.extras:
                return self.stats
            for start in range(0, len(users), IDENTIFY_BATCH):
                chunk = users[start:start + IDENTIFY_BATCH]
                status, _ = await self._post(session, extras.IDENTIFY,
                                             [extras.identify_body(self.traffic.r, user) for user in chunk])
                if 200 <= status < 300:
                    self._identified.update(chunk)
                    self.stats.extras[extras.IDENTIFY] = self.stats.extras.get(extras.IDENTIFY, 0) + 1
                else:
                    self.stats.errors += 1
        return self.stats

    async def _available_extras(self, session: aiohttp.ClientSession) -> set[str]:
        """The optional endpoints this agent documents in /openapi.json."""
        try:
            async with session.get(self.url + "/openapi.json") as response:
                paths = (await response.json(content_type=None)).get("paths", {}) if response.status == 200 else {}
                self.api_read = response.status == 200
        except (TimeoutError, aiohttp.ClientError, ValueError):
            paths = {}
        return {path for path in extras.PATHS if path in paths}

    async def _post(self, session: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, str]:
        """POST once (and once more after a 503's Retry-After): the status (0 when unreachable) and
        the answer's text."""
        for attempt in (1, 2):
            try:
                async with session.post(self.url + path, data=orjson.dumps(body), headers=self.headers) as response:
                    text = await response.text()
                    if response.status == 503 and attempt == 1:
                        await asyncio.sleep(min(RETRY_CAP_SECONDS, float(response.headers.get("Retry-After", 1))))
                        continue
                    if response.status >= 300:
                        self.stats.last_error = f"{path}: {response.status} {text[:160]}"
                    return response.status, text
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.stats.last_error = f"{path}: {type(exc).__name__}: {exc}"[:200]
                return 0, ""
        return 503, ""

    async def _send_events(self, session: aiohttp.ClientSession, batch: list[dict[str, Any]]) -> None:
        if not batch:
            return
        self.stats.requests += 1
        status, text = await self._post(session, "/v1/events/batch", batch)
        if status == 400 and self.traffic.releases and '"field":"release","message":"unknown key"' in text:
            # an agent from before releases: send the events without one from now on
            self.traffic.releases = None
            for event in batch:
                event.pop("release", None)
            status, text = await self._post(session, "/v1/events/batch", batch)
        if 200 <= status < 300:
            self.stats.events += len(batch)
        else:
            self.stats.errors += 1

    async def _send_extras(self, session: aiohttp.ClientSession, batch: list[dict[str, Any]]) -> None:
        """About one error report and one metrics request a second, and each user's traits once."""
        r = self.traffic.r
        users = [e["userId"] for e in batch if "userId" in e and e["userId"] not in self._identified]
        wanted = [(extras.ERRORS, extras.error_body(r, self.traffic.user()), r.random() < TICK_SECONDS),
                  (extras.METRICS, extras.metrics_body(r), r.random() < TICK_SECONDS)]
        if users:
            self._identified.add(users[0])
            wanted.append((extras.IDENTIFY, extras.identify_body(r, users[0]), True))
        for path, body, due in wanted:
            if not due or path not in self.extras:
                continue
            status, _ = await self._post(session, path, body)
            if 200 <= status < 300:
                self.stats.extras[path] = self.stats.extras.get(path, 0) + 1
            elif 400 <= status < 500:
                self.extras.discard(path)
                self.stats.refused[path] = self.stats.last_error
            else:
                self.stats.errors += 1
