"""Release health from Sentry's `session` and `sessions` items: sessions by release, environment and
final status, and distinct users, as Prometheus counters the crash-free recording rules divide
(agent/rules/alerts_sentry.py).

The wire (sentry-python's `sentry_sdk/session.py` and `sessions.py`, @sentry/core's session.ts):

- `session`: one update of one session, `{sid, did?, init?, started, timestamp, duration?, status,
  errors?, attrs: {release, environment?, ip_address?, user_agent?}}`. `status` is `ok` while the session
  runs, then one of the final statuses `exited`, `crashed`, `abnormal`, `unhandled` (or `errored`).
  The browser SDK (@sentry/browser 10) ends a session with an unhandled error as `unhandled`, not
  `crashed`: an uncaught error does not crash a browser (Sentry's own distinction). sentry-python
  sends one update per session, at its end, with `init: true`; the JavaScript SDKs send `init: true`
  when it starts, and updates as errors happen and when it ends. A browser session often never ends:
  it stays `ok` until the page goes away, unless an uncaught error ends it (`unhandled`).
- `sessions`: pre-aggregated sessions of a server SDK in request mode (one session per request), `{attrs:
  {release, environment?}, aggregates: [{started, did?, exited?, errored?, abnormal?, crashed?}]}`: each
  bucket's counts are sessions that started and ended in that minute, one count per session.

Semantics (Sentry's release health, as Relay extracts its session metrics):

- a session **starts** when an update says `init: true` (`loom_sessions_started_total`): Sentry's
  "total sessions", the denominator of the crash-free rate; an aggregate bucket starts the sum of its
  counts.
- a session is counted **once, when it ends** (`loom_sessions_total{status}`), with one final status:
  `crashed`, `abnormal` or `unhandled` when it ended so; else `errored` when it had errors (`errors > 0`
  or status `errored`); else `exited` (a healthy end). So `errored` counts once per session however many
  errors it had, and a crashed session is not also errored. Aggregate buckets are counted as they come:
  the SDK has already classified each session the same way.
- crash-free sessions = 1 - crashed / started, over a window (the recording rule). A session that
  never ends (a browser tab) is in the denominator and, unless it crashes, never in the numerator:
  as in Sentry. `unhandled` sessions are not crashes (a rule on `status=~"crashed|unhandled"` gives the
  browser SDKs' older meaning, when they reported those as `crashed`).
- users: a user is the update's `did` (distinct id). Counting distinct users exactly needs every id of
  every release forever; here each (release, environment) keeps a set of 8-byte digests of the ids
  seen in the current hour, at most USERS_PER_RELEASE of them, and the sets are emptied every hour.
  Within an hour at most USER_SETS sets (the users family's series limit) and USERS_TOTAL digests in
  all are kept: a client naming a new release per session would otherwise grow the sets without end.
  `loom_session_users_total{status}` counts a user the first time it is seen in an hour (`all`),
  with an errored session (`errored`) or a crashed one (`crashed`). crash-free users = 1 - crashed /
  all over a window is then the share of user-hours without a crash: the same as Sentry's for windows
  of an hour, an approximation over longer ones. A user past the cap is not counted (in either
  counter), and the overflow is counted in `loom_agent_session_users_overflow_total`.

Bounds: `release` is an open set (the application names its releases), so each family has a series
limit (SERIES_LIMIT); past it a new release is folded into `other` (counted in
loom_agent_label_overflow_total). `status` is a closed set. The ids of ended sessions are remembered
(ENDED_LIMIT, oldest forgotten first) so a repeated final update does not count twice. The
`ip_address` and `user_agent` attributes are never read: no person becomes a label.

A payload of the wrong shape raises ItemError: the item is `rejected`, its siblings go on.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.events.properties import FieldError
from agent.events.validate import parse_release
from agent.metrics.store import Counter, MetricStore
from agent.sentry.items import MAX_RECORDS, ItemError

IN_PROGRESS = "ok"
FINAL_STATUSES = ("exited", "errored", "crashed", "abnormal", "unhandled")   # `status` of loom_sessions_total
USER_STATUSES = ("all", "errored", "crashed")
MAX_COUNT = 2**32 - 1                 # Relay's u32 for an aggregate bucket's counts and `errors`
SID_MAX = 128
DID_MAX = 256
ENVIRONMENT_MAX = 64
DEFAULT_ENVIRONMENT = "production"    # what the SDKs send when the application sets none
SERIES_LIMIT = 500                    # per family: 100 (release, environment) pairs at 5 statuses
ENDED_LIMIT = 100_000                 # ids of ended sessions remembered against repeated final updates
USERS_PER_RELEASE = 10_000            # user digests kept per (release, environment) and hour
USER_WINDOW_SECONDS = 3600
USER_SETS = SERIES_LIMIT              # (release, environment, status) digest sets kept per hour
USERS_TOTAL = 200_000                 # user digests kept per hour in all (about 15 MB)


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """One `session` item, checked."""

    sid: str
    did: str | None
    init: bool
    status: str                       # ok, exited, errored, crashed, abnormal, unhandled
    errors: int
    release: str
    environment: str

    @property
    def errored(self) -> bool:
        return self.errors > 0 or self.status in ("errored", "crashed", "abnormal", "unhandled")

    def final_status(self) -> str | None:
        """The status this update ends the session with (loom_sessions_total), None while it runs."""
        if self.status == IN_PROGRESS:
            return None
        if self.status in ("crashed", "abnormal", "unhandled"):
            return self.status
        return "errored" if self.errored else "exited"


@dataclass(frozen=True, slots=True)
class SessionAggregates:
    """One `sessions` item, checked: each bucket as (did or None, {final status: sessions})."""

    release: str
    environment: str
    buckets: tuple[tuple[str | None, dict[str, int]], ...]


def _object(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise ItemError(f"{what} must be a JSON object")
    return value


def _count(value: Any, what: str) -> int:
    if value is None:
        return 0
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise ItemError(f"{what} must be an integer from 0 to {MAX_COUNT}")
    return value


def _text(value: Any, what: str, maximum: int) -> str:
    if type(value) is not str or not 0 < len(value) <= maximum or not value.isprintable():
        raise ItemError(f"{what} must be a string of 1 to {maximum} printable characters")
    return value


def _did(value: Any) -> str | None:
    """The distinct id: a string (or a number, which some SDKs send for a user id), else refused."""
    if value is None:
        return None
    if type(value) is int:
        value = str(value)
    return _text(value, "did", DID_MAX)


def _attrs(payload: dict[str, Any]) -> tuple[str, str]:
    """(release, environment) of `attrs`: Relay refuses a session without a release, so does the agent."""
    attrs = _object(payload.get("attrs"), "attrs")
    try:
        release = parse_release(attrs.get("release"), "attrs.release")
    except FieldError as err:
        raise ItemError(str(err)) from None
    environment = attrs.get("environment")
    if environment is None:
        return release, DEFAULT_ENVIRONMENT
    return release, _text(environment, "attrs.environment", ENVIRONMENT_MAX)


def parse_session(payload: Any) -> SessionUpdate:
    """A `session` item's payload -> SessionUpdate; raises ItemError."""
    payload = _object(payload, "a session")
    status = payload.get("status", IN_PROGRESS)
    if type(status) is not str or status not in (IN_PROGRESS, *FINAL_STATUSES):
        raise ItemError(f"status must be one of {', '.join((IN_PROGRESS, *FINAL_STATUSES))}")
    init = payload.get("init", False)
    if type(init) is not bool:
        raise ItemError("init must be true or false")
    release, environment = _attrs(payload)
    return SessionUpdate(sid=_text(payload.get("sid"), "sid", SID_MAX), did=_did(payload.get("did")), init=init,
                         status=status, errors=_count(payload.get("errors"), "errors"), release=release,
                         environment=environment)


def parse_sessions(payload: Any) -> SessionAggregates:
    """A `sessions` item's payload -> SessionAggregates; raises ItemError (nothing of it is counted)."""
    payload = _object(payload, "a sessions item")
    release, environment = _attrs(payload)
    aggregates = payload.get("aggregates")
    if type(aggregates) is not list or len(aggregates) > MAX_RECORDS:
        raise ItemError(f"aggregates must be an array of at most {MAX_RECORDS} buckets")
    buckets = []
    for index, bucket in enumerate(aggregates):
        bucket = _object(bucket, f"aggregates[{index}]")
        counts = {status: _count(bucket.get(status), f"aggregates[{index}].{status}") for status in FINAL_STATUSES}
        buckets.append((_did(bucket.get("did")), {status: n for status, n in counts.items() if n}))
    return SessionAggregates(release, environment, tuple(buckets))


class _Users:
    """Bounded sets of user digests per (release, environment, status), emptied every USER_WINDOW_SECONDS."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.window = self._window()
        self.seen: dict[tuple[str, str, str], set[bytes]] = {}
        self.total = 0                    # digests in all the sets

    def _window(self) -> int:
        return int(self.clock() // USER_WINDOW_SECONDS)

    def first(self, key: tuple[str, str, str], did: str) -> bool | None:
        """True the first time `did` is seen under `key` this hour; False after; None past a cap (per
        set, sets, digests in all)."""
        window = self._window()
        if window != self.window:
            self.window, self.seen, self.total = window, {}, 0
        digest = hashlib.blake2b(did.encode(), digest_size=8).digest()
        seen = self.seen.get(key)
        if seen is None:
            if len(self.seen) >= USER_SETS:
                return None
            seen = self.seen[key] = set()
        if digest in seen:
            return False
        if len(seen) >= USERS_PER_RELEASE or self.total >= USERS_TOTAL:
            return None
        seen.add(digest)
        self.total += 1
        return True


class ReleaseHealth:
    """The release-health counters, and the little state that counts each session and user once."""

    def __init__(self, metrics: MetricStore, clock: Callable[[], float] = time.time):
        labels = ("release", "environment")
        self.started: Counter = metrics.counter(
            "loom_sessions_started", "Sessions started (Sentry session updates with init: true, and aggregated "
            "sessions), by release and environment: the denominator of the crash-free rate.", labels,
            series_limit=SERIES_LIMIT)
        self.ended: Counter = metrics.counter(
            "loom_sessions", "Sessions ended, once each, by release, environment and final status: exited "
            "(healthy), errored (had errors), crashed, abnormal, unhandled (an uncaught error in a browser).",
            (*labels, "status"),
            series_limit=SERIES_LIMIT, allow={"status": FINAL_STATUSES})
        self.users: Counter = metrics.counter(
            "loom_session_users", "Distinct users (Sentry's did) per hour, by release, environment and status: "
            "all, errored (had an errored session), crashed (had a crashed session).", (*labels, "status"),
            series_limit=SERIES_LIMIT, allow={"status": USER_STATUSES})
        self.users_overflow: Counter = metrics.counter(
            "loom_agent_session_users_overflow", f"Users not counted in loom_session_users_total: their release "
            f"already had {USERS_PER_RELEASE} users in the hour, or the hour {USERS_TOTAL} users of "
            f"{USER_SETS} release, environment and status sets in all.")
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._users = _Users(clock)

    def record_session(self, update: SessionUpdate) -> None:
        key = (update.release, update.environment)
        if update.init:
            self.started.inc(key)
        if update.did is not None:
            self._user(key, update.did, "all")
            if update.errored:
                self._user(key, update.did, "errored")
            if update.status == "crashed":
                self._user(key, update.did, "crashed")
        final = update.final_status()
        if final is None or update.sid in self._ended:
            return
        self._ended[update.sid] = None
        if len(self._ended) > ENDED_LIMIT:
            self._ended.popitem(last=False)
        self.ended.inc((*key, final))

    def record_aggregates(self, aggregates: SessionAggregates) -> None:
        key = (aggregates.release, aggregates.environment)
        for did, counts in aggregates.buckets:
            total = sum(counts.values())
            if total:
                self.started.inc(key, total)
            for status, sessions in counts.items():
                self.ended.inc((*key, status), sessions)
            if did is not None and total:
                self._user(key, did, "all")
                if set(counts) - {"exited"}:
                    self._user(key, did, "errored")
                if "crashed" in counts:
                    self._user(key, did, "crashed")

    def _user(self, key: tuple[str, str], did: str, status: str) -> None:
        first = self._users.first((*key, status), did)
        if first:
            self.users.inc((*key, status))
        elif first is None:
            self.users_overflow.inc(())
