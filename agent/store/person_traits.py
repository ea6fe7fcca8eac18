"""The traits identify stored for a person, as /flags reads them: kept in memory for the persons seen
lately, forgotten by the writes that change them, and read from the store together when missing.

Why: a flag filtering on a person property the request did not send (posthog-js sends none by default)
makes /flags read the person's `users` row. One read through the store's read thread costs ~110-135
CPU-µs (the thread hop, not SQLite's primary-key lookup: eight ids in one query cost ~19 µs each;
measured 2026-12-04 on the 2-core bench machine), more than evaluating the 50 flags of bench/flags.py.
A person's traits change at identify, a few times in their life; /flags is asked on every page load.

- **In memory** (StoredTraits, one per store): at most MAX_PEOPLE persons, least recently used forgotten
  first; an entry lives at most TTL_SECONDS, the bound on what *another* process writes (a second agent on
  the same PostgreSQL, a CLI): this process's own writes are forgotten at once.
- **Forgotten by every writer** of `users` in this process, after it commits (forget_traits / clear_traits):
  identify, $set, $set_once, $unset (store/traits.py store_identifies); an alias merge, both ids
  (events/pipeline.py merge_aliases); an event stating the user's role (store/writer.py); an erasure
  (store/gdpr.py erase_user) and a retention pass that deleted users rows (store/retention.py): all.
  A read that was under way while a write was forgotten is answered but not kept (a generation count), so
  the next /flags after a write reads the store.
- **Misses read together**: the persons missing meanwhile are read in one query (at most READ_BATCH ids),
  one query in flight at a time: a lone miss is read at once, a burst shares the thread hop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any
from weakref import WeakKeyDictionary

from agent.store.base import Store

TTL_SECONDS = 30.0
MAX_PEOPLE = 50_000
READ_BATCH = 64
# the traits identify stored: the JSON object and the three with columns of their own (store/traits.py)
TRAITS_SQL = "SELECT user_id, traits, role, plan, signed_up_at FROM users WHERE user_id IN ({})"

Decode = Callable[[tuple[Any, ...]], dict[str, Any]]     # (traits, role, plan, signed_up_at) -> the traits


class StoredTraits:
    """The persons' stored traits, recently read (see the module docstring). `hits`, `misses` (each a
    request's lookup), `reads` (store queries made) and `len()` are its accounting."""

    def __init__(self, max_people: int = MAX_PEOPLE, ttl: float = TTL_SECONDS,
                 clock: Callable[[], float] | None = None):
        self.max_people, self.ttl = max_people, ttl
        self.clock = clock or time.monotonic
        self.hits = self.misses = self.reads = 0
        self._people: dict[str, tuple[float, dict[str, Any]]] = {}     # least recently used first
        self._generation = 0            # writes forgotten so far: a read under way across one is not kept
        self._waiting: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._reader: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._people)

    def cached(self, person: str) -> dict[str, Any] | None:
        """The traits in memory ({} for a person without a row), or None (then read())."""
        entry = self._people.pop(person, None)
        if entry is None or entry[0] < self.clock():
            self.misses += 1
            return None
        self._people[person] = entry                   # the most recently used now
        self.hits += 1
        return entry[1]

    async def read(self, store: Store, person: str, decode: Decode) -> dict[str, Any]:
        """The person's stored traits from the store (with the other persons missing meanwhile), kept.
        Raises what store.fetch raises (StoreError)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(person, []).append(future)
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_waiting(store, decode))
        return await future

    async def _read_waiting(self, store: Store, decode: Decode) -> None:
        try:
            while self._waiting:
                batch = {}
                for person in list(self._waiting)[:READ_BATCH]:
                    batch[person] = self._waiting.pop(person)
                generation = self._generation
                try:
                    self.reads += 1
                    rows = await store.fetch(TRAITS_SQL.format(", ".join("?" * len(batch))), list(batch))
                    found = {row[0]: decode(tuple(row[1:])) for row in rows}
                except BaseException as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    if isinstance(exc, Exception):
                        continue
                    raise
                keep = generation == self._generation
                for person, futures in batch.items():
                    traits = found.get(person, {})
                    if keep:
                        self._keep(person, traits)
                    for future in futures:
                        if not future.done():
                            future.set_result(traits)
        finally:
            self._reader = None

    def _keep(self, person: str, traits: dict[str, Any]) -> None:
        people = self._people
        if len(people) >= self.max_people:                 # the least recently used tenth goes
            for key in list(people)[: max(1, self.max_people // 10)]:
                del people[key]
        people[person] = (self.clock() + self.ttl, traits)

    def forget(self, people: Iterable[str]) -> None:
        """A write changed these persons' traits (call it after the commit, and after a failed one)."""
        self._generation += 1
        for person in people:
            self._people.pop(person, None)

    def clear(self) -> None:
        self._generation += 1
        self._people.clear()


# one StoredTraits per store object: the writers know the store, not the application (weak: a closed store's
# entries go with it)
_BY_STORE: WeakKeyDictionary[Any, StoredTraits] = WeakKeyDictionary()


def stored_traits(store: Store) -> StoredTraits:
    traits = _BY_STORE.get(store)
    if traits is None:
        traits = _BY_STORE[store] = StoredTraits()
    return traits


def forget_traits(store: Store, people: Iterable[str]) -> None:
    """Writers: these persons' traits changed (nothing to do when /flags never read any)."""
    traits = _BY_STORE.get(store)
    if traits is not None:
        traits.forget(people)


def clear_traits(store: Store) -> None:
    """Writers: traits of persons not named changed (an erasure, a retention pass)."""
    traits = _BY_STORE.get(store)
    if traits is not None:
        traits.clear()
