"""`loom_release_info{release}`: 1 for each application release the agent has seen lately.

Events, errors and custom metrics may name the release that sent them; every ingest path calls
`ReleaseTracker.seen(release)` once the datum is accepted (events: through `observe`, a pipeline
observer called with each request's committed events). A dashboard joins on the gauge to show which
releases are live, and `count(loom_release_info)` tells when a deploy brought a new one.

Bounded: release names come from clients, so the gauge keeps the `max_releases` most recently seen
(20 by default) and forgets the least recently seen one when a new one arrives; its series disappears
from /metrics and OTLP at the next scrape or export. A release seen again moves to the front. The
gauge never reaches the metric store's series limit, so no release is folded into `other`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from agent.metrics.store import MAX_LABEL_VALUE_LENGTH, Gauge, MetricStore

RELEASE_INFO = "loom_release_info"
DEFAULT_MAX_RELEASES = 20


class Released(Protocol):
    """What `observe` reads of an accepted event or captured error."""

    @property
    def release(self) -> str | None: ...


class ReleaseTracker:
    """The releases seen, most recent last, mirrored into the `loom_release_info` gauge."""

    def __init__(self, store: MetricStore, max_releases: int = DEFAULT_MAX_RELEASES):
        if max_releases < 1:
            raise ValueError("max_releases must be at least 1")
        self.max_releases = max_releases
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._gauge: Gauge = store.gauge(
            RELEASE_INFO, "1 for each application release seen lately (events, errors, custom metrics); "
                          f"the {max_releases} most recently seen are kept.",
            ("release",), series_limit=max_releases + 1)

    def seen(self, release: str | None) -> None:
        """Mark `release` (already validated: agent.events.validate.parse_release) as seen now."""
        if release is None:
            return
        release = release[:MAX_LABEL_VALUE_LENGTH]        # the label the gauge keeps (a release is checked shorter)
        recent = self._recent
        if release in recent:
            recent.move_to_end(release)
            return
        if len(recent) >= self.max_releases:
            oldest, _ = recent.popitem(last=False)
            self._gauge.series.pop((oldest,), None)
        recent[release] = None
        self._gauge.set((release,), 1.0)

    def observe(self, events: Sequence[Released]) -> None:
        """A pipeline observer (EventPipeline.observers, ErrorSink.observers): the releases of committed
        events or errors."""
        last = None
        for event in events:
            release = event.release
            if release is not None and release != last:     # a batch usually repeats one release
                self.seen(release)
                last = release

    def releases(self) -> list[str]:
        """The releases kept, least recently seen first."""
        return list(self._recent)

