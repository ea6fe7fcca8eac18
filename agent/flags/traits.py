"""The stored traits /flags reads for a person, remembered for a short while.

Why: a flag filtering on a person property the request did not send (posthog-js sends none by default)
makes /flags read the person's traits from the store: one query per request, ~10 % of a request's CPU
plus the store thread's (bench/RESULTS.md "Feature flags"). A person's traits change at identify, a
few times in their life; /flags is asked on every page load. So a read is kept for TTL_SECONDS (a person
without stored traits too), at most MAX_PEOPLE people (the oldest half forgotten past it): a trait set by
identify reaches server-side evaluation within TTL_SECONDS; properties the request sends always win.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TTL_SECONDS = 30.0
MAX_PEOPLE = 50_000


class TraitsCache:
    def __init__(self, ttl: float = TTL_SECONDS, max_people: int = MAX_PEOPLE,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl, self.max_people, self.clock = ttl, max_people, clock
        self._people: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, person: str) -> dict[str, Any] | None:
        """The remembered traits ({} for a person with none), or None when unknown or expired."""
        entry = self._people.get(person)
        if entry is None or entry[0] < self.clock():
            return None
        return entry[1]

    def put(self, person: str, traits: dict[str, Any]) -> None:
        if len(self._people) >= self.max_people:              # forget the oldest half (insertion order)
            for key in list(self._people)[: self.max_people // 2]:
                del self._people[key]
        self._people.pop(person, None)
        self._people[person] = (self.clock() + self.ttl, traits)
