"""The one path every validated event takes: privacy, then the durable store, then metrics, spans
and the anomaly windows.

An ingest request is acknowledged only after its events are committed: `ingest()` awaits the group
commit, and only then counts, traces and observes the events, so a request the store refuses (503,
retried by the client) leaves no metric behind, and a retried event the store already holds (same
client event id) is neither stored nor counted twice.

The pipeline survives config reloads (prepare/commit): counters carry on while mapping rules change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.events.config import EventsConfig
from agent.events.identify import Identify, scrub_identify
from agent.events.limits import Limits
from agent.events.mapping import TABLE_METRICS, EventMetrics, check_rules, family_shape, rule_shape
from agent.events.model import Event
from agent.events.spans import EventSpans
from agent.metrics.store import MetricStore
from agent.store.base import Store
from agent.store.people import group_statement, load_aliases, merge_statements, roots
from agent.store.person_traits import forget_traits
from agent.store.rows import event_rows
from agent.store.traits import store_identifies

if TYPE_CHECKING:
    from agent.events.posthog_people import Alias, Group
    from agent.events.privacy import Privacy
    from agent.store.writer import GroupCommitWriter

# called with the events of a request once they are committed (and not duplicates)
Observer = Callable[[Sequence[Event]], None]
# PostHog aliases held in memory (alias -> person, stored ids), so events still sent under an alias are
# stored under the person; past this many, the oldest loaded are not held (their rows were merged)
MAX_ALIASES = 100_000


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int          # valid events acknowledged (stored, already stored, or dropped by privacy)
    stored: int            # newly committed to the store (or processed, when there is no store)
    duplicates: int        # already stored under the same client event id: not stored or counted again
    dropped: int           # dropped by privacy (Do-Not-Track, opted-out users)


def limits_of(config: EventsConfig) -> Limits:
    return Limits(max_batch=config.max_batch, max_future_skew=config.max_future_skew,
                  max_past_age=config.max_past_age, strict=config.strict)


class EventPipeline:
    def __init__(self, config: EventsConfig, store: MetricStore, spans: EventSpans | None,
                 privacy: Privacy | None = None, writer: GroupCommitWriter | None = None):
        self.config = config
        self.privacy = privacy
        self.writer = writer
        self.observers: list[Observer] = []
        self.limits = limits_of(config)
        self.store = store
        self.metrics = EventMetrics(store, config)     # raises ValueError on a metric/label conflict
        self.spans = spans
        self._batches = store.histogram(
            "loom_agent_ingest_batch_size", "Events per accepted ingest request.", ("api",),
            buckets=(1, 10, 50, 100, 250, 500, 1000, 5000), unit="",
            allow={"api": frozenset({"events", "posthog"})})
        self._rejected = store.counter(
            "loom_agent_ingest_rejected", "Ingest requests rejected, by API and reason.", ("api", "reason"),
            allow={"api": frozenset({"events", "posthog", "errors", "identify", "metrics", "sentry"}),
                   "reason": frozenset({"invalid", "auth", "too_large", "malformed", "store_unavailable"})})
        self._anonymized = store.counter(
            "loom_agent_events_anonymized", "Events stored without the identity of the person, by reason.",
            ("reason",), allow={"reason": frozenset({"dnt", "opted_out"})})
        self._posthog_dropped = store.counter(
            "loom_agent_posthog_dropped", "Parts of valid PostHog events dropped alone (a `$`-property past the "
            "cap or the limits, a trait or group property that is not valid), by kind.", ("kind",),
            allow={"kind": frozenset({"property", "trait"})})
        self.aliases: dict[str, str] = {}          # alias -> person (stored ids), see MAX_ALIASES
        self._aliases_loaded = False

    def prepare(self, config: EventsConfig) -> Callable[[], None]:
        """Check `config`'s mapping rules against the live store; returns the function that switches
        to it. Raises ValueError (naming the metric) when a rule conflicts with a catalog family.
        The running rules' own families may change shape or go away: the switch removes them
        (with their series) unless the new config keeps them unchanged, whose counts carry on."""
        owned = frozenset(rule.name for rule in self.config.mappings
                          if rule.name and rule.action != "drop" and rule.name not in TABLE_METRICS)
        check_rules(self.store, config.mappings, owned)
        kept = {rule.name: rule_shape(rule) for rule in config.mappings if rule.name and rule.action != "drop"}

        def commit() -> None:
            for name in owned:
                family = self.store.get(name)
                if family is not None and kept.get(name) != family_shape(family):
                    self.store.remove(name)
            self.config, self.limits = config, limits_of(config)
            self.metrics = EventMetrics(self.store, config)
        return commit

    async def ingest(self, events: Sequence[Event], api: str) -> IngestResult:
        """Privacy, then the store's group commit (raises StoreError: nothing was acknowledged), then
        metrics, spans and observers for the events newly stored."""
        kept: Sequence[Event] = events
        dropped = 0
        if self.privacy is not None:
            kept, drops, anonymized = self.privacy.apply(events)
            for reason, count in drops.items():
                self.metrics.dropped.inc((reason,), count)
                dropped += count
            for reason, count in anonymized.items():
                self._anonymized.inc((reason,), count)
        if self.aliases:
            _to_persons(kept, self.aliases)
        duplicates: frozenset[int] = frozenset()
        if self.writer is not None and kept:
            duplicates = await self.writer.submit([event_rows(event) for event in kept])
            if duplicates:
                kept = [event for i, event in enumerate(kept) if i not in duplicates]
        apply, spans = self.metrics.apply, self.spans
        for event in kept:
            if apply(event) and spans is not None:     # a mapping rule may drop the event
                spans.handle(event)
        for observe in self.observers:
            observe(kept)
        self._batches.observe((api,), len(events))
        return IngestResult(accepted=len(events), stored=len(kept), duplicates=len(duplicates), dropped=dropped)

    async def identify(self, identifies: Sequence[Identify], store: Store | None,
                       dnt: bool = False) -> tuple[int, int]:
        """Traits (POST /v1/identify, PostHog's `$set` / `$set_once`): privacy, then one transaction.
        (stored, dropped by privacy). Raises StoreError when the store cannot commit (nothing was
        stored; an identify is idempotent, the client retries it). Privacy drops the identifies of a
        Do-Not-Track request or of opted-out users, counted in loom_agent_events_dropped_total{reason}.
        Without a store (store.driver: none) nothing is written: (0, 0)."""
        if store is None or not identifies:
            return 0, 0
        if self.privacy is None:            # never in the agent: the composition root always gives them
            raise RuntimeError("traits are stored only through the privacy rules")
        kept: list[Identify] = []
        drops: Counter[str] = Counter()
        for identify in identifies:
            scrubbed, reason = scrub_identify(self.privacy, identify, dnt)
            if scrubbed is None:
                drops[reason or "dnt"] += 1
            else:
                if self.aliases and (person := person_of(self.aliases, scrubbed.user_id)) is not None:
                    scrubbed.user_id = person          # traits of an alias are its person's
                kept.append(scrubbed)
        await store_identifies(store, kept)
        for reason, count in drops.items():
            self.metrics.dropped.inc((reason,), count)
        return len(kept), sum(drops.values())

    def rejected(self, api: str, reason: str) -> None:
        self._rejected.inc((api, reason))

    def posthog_dropped(self, kind: str, count: int) -> None:
        if count:
            self._posthog_dropped.inc((kind,), count)

    async def merge_aliases(self, aliases: Sequence[Alias], store: Store | None) -> int:
        """PostHog aliases (`$create_alias`, `$identify`'s `$anon_distinct_id`): each pair of ids becomes one
        person in the store (agent/store/people.py), one transaction per alias; the in-memory map follows
        each commit. Returns how many merged (a pair already one person merges nothing). Raises StoreError."""
        if store is None or not aliases:
            return 0
        if self.privacy is None:
            raise RuntimeError("ids are stored only through the privacy rules")
        await self.load_aliases(store)
        merged = 0
        stored = self.privacy.pseudonymize
        for alias in aliases:
            ids = (stored(alias.alias_id), stored(alias.person_id))
            known = await roots(store, ids)
            other, person = (known.get(i, i) for i in ids)
            if other == person:
                continue
            try:
                await store.execute(merge_statements(store.dialect, other, person, alias.timestamp))
            finally:            # /flags reads both again (agent/store/person_traits.py)
                forget_traits(store, {*ids, other, person})
            if len(self.aliases) < MAX_ALIASES:         # older aliases of `other` resolve through it
                self.aliases[other] = person
            merged += 1
        return merged

    async def load_aliases(self, store: Store | None) -> None:
        """Read the stored aliases once (the first PostHog request after a start), so events still sent
        under an alias merged before the restart are stored under the person. Raises StoreError (the next
        request tries again)."""
        if not self._aliases_loaded and store is not None:
            self.aliases.update(await load_aliases(store, MAX_ALIASES))
            self._aliases_loaded = True

    async def store_groups(self, groups: Sequence[Group], store: Store | None) -> None:
        """PostHog groups (`$groupidentify`), their keys and properties through the privacy rules, in one
        transaction. Raises StoreError."""
        if store is None or not groups:
            return
        if self.privacy is None:
            raise RuntimeError("groups are stored only through the privacy rules")
        privacy = self.privacy
        stored = privacy.pseudonymize                 # a group key may be an e-mail domain's owner, a person
        await store.execute([group_statement(store.dialect, stored(group.type), stored(group.key),
                                             privacy.mapping(group.properties), group.timestamp)
                             for group in sorted(groups, key=lambda g: (g.type, g.key))])


def person_of(aliases: dict[str, str], user_id: str) -> str | None:
    """The person `user_id` is an alias of, or None. The store re-points a merged person's aliases; the
    map only adds, so a chain is followed (a few steps: a cycle cannot be stored, the bound is a guard)."""
    person = aliases.get(user_id)
    for _ in range(8):
        if person is None or person not in aliases:
            break
        person = aliases[person]
    return person


def _to_persons(events: Sequence[Event], aliases: dict[str, str]) -> None:
    """Events sent under an alias are stored under its person (the alias kept as their anonymous id)."""
    for event in events:
        user = event.user_id
        if user is not None:
            person = person_of(aliases, user)
            if person is not None:
                event.user_id = person
                if event.anonymous_id is None:
                    event.anonymous_id = user
        elif event.anonymous_id is not None:
            person = person_of(aliases, event.anonymous_id)
            if person is not None:
                event.user_id = person
