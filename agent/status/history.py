"""Probe history for the status page, fed by `ProbeRuntime.result_observers`.

/metrics keeps counters by failure *reason* (a closed set, safe as a label) but never the failure's
detail ("connect 10.0.0.5:443: connection refused"), which is what a person looking at `/` wants.
`ProbeHistory` keeps, in bounded memory:
- the last `max_failures` failures of all targets (a ring), each with its reason and detail;
- per target, its last failure and its probe counts since the agent started (the uptime shown when
  no store is configured).
Details come from the network, so they are cut to `MAX_DETAIL_CHARS` here and escaped by the page.
Observing costs one dict lookup per probe, and a deque append per failure.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from agent.collectors.base import ProbeResult, ProbeTarget

MAX_FAILURES = 50
MAX_DETAIL_CHARS = 300


@dataclass(frozen=True, slots=True)
class Failure:
    target: str
    at: float            # unix seconds the probe ended
    reason: str          # a Reason value
    detail: str


class ProbeHistory:
    def __init__(self, max_failures: int = MAX_FAILURES, clock: Callable[[], float] = time.time):
        self.since = clock()
        self._failures: deque[Failure] = deque(maxlen=max_failures)
        self._last_failure: dict[str, Failure] = {}
        self._counts: dict[str, list[int]] = {}          # target -> [probes, successes]

    def observe(self, target: ProbeTarget, result: ProbeResult, ended_at: float) -> None:
        """A result_observer: count the probe; remember it when it failed."""
        counts = self._counts.get(target.name)
        if counts is None:
            counts = self._counts[target.name] = [0, 0]
        counts[0] += 1
        if result.success:
            counts[1] += 1
            return
        reason = result.reason.value if result.reason is not None else "unknown"
        failure = Failure(target.name, ended_at, reason, _cut(result.detail))
        self._failures.append(failure)
        self._last_failure[target.name] = failure

    def recent_failures(self) -> list[Failure]:
        """Newest first."""
        return list(reversed(self._failures))

    def last_failure(self, target: str) -> Failure | None:
        return self._last_failure.get(target)

    def counts(self, target: str) -> tuple[int, int]:
        """(probes, successes) of `target` since the agent started (or since it was added)."""
        probes, successes = self._counts.get(target, (0, 0))
        return probes, successes

    def retain(self, names: Iterable[str]) -> None:
        """Forget the per-target state of targets no longer configured (the ring ages out alone)."""
        keep = set(names)
        for table in (self._counts, self._last_failure):
            for name in [name for name in table if name not in keep]:
                del table[name]

    def prepare(self, targets: Sequence[ProbeTarget]) -> Callable[[], None]:
        """Reloadable: once the new targets apply, drop the history of the targets removed."""
        return lambda: self.retain(target.name for target in targets)


def _cut(detail: str) -> str:
    return detail if len(detail) <= MAX_DETAIL_CHARS else detail[:MAX_DETAIL_CHARS - 1] + "…"
