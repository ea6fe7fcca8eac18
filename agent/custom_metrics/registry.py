"""The declared shape of every custom metric, and the one place custom samples reach the MetricStore.

The first sample of a metric fixes its type and its label names (its unit is part of its name);
a later sample with another type or another tag set is refused, never merged, because Prometheus
cannot hold two shapes under one name and a scrape with both is broken for every metric in it.
HTTP and StatsD share this registry, so a name means the same thing whichever way it arrives.

Bounds: at most `max_metrics` names (more are refused: a name is a new family, and families are
not folded like label values); per metric the MetricStore's series limit folds new tag values to
`other` (counted in loom_agent_label_overflow_total). Tag values pass the privacy rules first; tags
that name a person or a secret are refused outright: user ids are never labels. A metric name or tag
key holding an e-mail address or a card number is refused too: sanitizing would keep it, readable,
in a metric or label name.

HTTP batches are all or nothing: `plan()` resolves every sample against the registry plus the
metrics the batch itself would declare, and only then `commit()` registers and updates. Nothing
awaits in between, so no other request can slip in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from agent.custom_metrics.config import CustomMetricsConfig
from agent.custom_metrics.naming import NameProblem, label_name, metric_name, sample_names, sanitize, unit_of
from agent.events.config import IDENTIFYING
from agent.events.privacy import MASKED, is_secret_name
from agent.metrics.store import Counter, Family, Gauge, Histogram, MetricStore

if TYPE_CHECKING:
    from agent.events.privacy import Privacy

PERSONAL_NAME = "must not hold an e-mail address or a card number: names are never personal data"
FAMILY_KIND = {"counter": "counter", "gauge": "gauge", "distribution": "histogram"}
# tags that identify a person: never a label ("name" is a person's in events, a thing's in metrics)
IDENTIFYING_TAGS = (IDENTIFYING - {"name"}) | {"user", "userid", "user_email", "email_address", "ip_address",
                                               "phone_number", "username"}
MAX_TAGS = 16
CACHE_MAX = 10_000           # resolved (name, type, unit, tag keys) combinations kept
REGISTERED_FAMILY = "loom_agent_custom_metrics"


class MetricError(Exception):
    """One refused sample: `reason` is invalid (the sample itself), conflict (with a registered metric)
    or limit (custom_metrics.max_metrics reached)."""

    def __init__(self, field: str, message: str, reason: str = "invalid"):
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.message, self.reason = field, message, reason

    def as_dict(self, index: int | None) -> dict[str, object]:
        return {"index": index, "field": self.field, "message": self.message}


class BatchRejected(Exception):
    """Some samples of a batch were refused; none was recorded. `errors` are (index, MetricError)."""

    def __init__(self, errors: list[tuple[int | None, MetricError]]):
        super().__init__(f"{len(errors)} refused")
        self.errors = errors


@dataclass(slots=True)
class Declared:
    """A metric's fixed shape; `family` is None while only a pending batch declares it."""

    name: str
    kind: str                      # counter | gauge | distribution
    labels: tuple[str, ...]        # sorted
    unit: str                      # base unit suffix, "" for none
    family: Family | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where samples with one (name, type, unit, tag keys) go: the metric, how the tags given map to its
    sorted labels, which of them are masked as private, and the unit conversion."""

    declared: Declared
    order: tuple[int, ...]         # order[i]: position in the given tags of label i
    masked: frozenset[int]         # label positions whose value is "[private]"
    factor: float


@dataclass(frozen=True, slots=True)
class Sample:
    """One validated update from a client: `op` is inc, set, add (gauge delta) or observe."""

    name: str
    kind: str
    unit: str
    value: float
    keys: tuple[str, ...]          # tag keys as sent
    values: tuple[str, ...]        # their values, as strings
    op: str
    repeat: int = 1                # observations (a StatsD timer's 1 / sample rate)


class CustomMetrics:
    def __init__(self, config: CustomMetricsConfig, store: MetricStore, privacy: Privacy | None = None):
        self.config = config
        self.store = store
        self.privacy = privacy
        self._declared: dict[str, Declared] = {}
        self._targets: dict[tuple[str, str, str, tuple[str, ...]], Target] = {}
        # called with each release an accepted HTTP batch names (ReleaseTracker.seen: loom_release_info)
        self.release_observers: list[Callable[[str], None]] = []
        self._registered = store.gauge(REGISTERED_FAMILY, "Custom metric names registered (at most "
                                       "custom_metrics.max_metrics).")
        self._registered.set((), 0.0)

    def prepare(self, config: CustomMetricsConfig) -> Callable[[], None]:
        """Reloadable: max_metrics and series_limit (see reconfigure)."""
        return lambda: self.reconfigure(config)

    def reconfigure(self, config: CustomMetricsConfig) -> None:
        """A reload: the new limits apply at once (a lower max_metrics keeps what is registered); the
        namespace and buckets stay as they were until restart (names already handed out must not move)."""
        self.config = replace(self.config, max_metrics=config.max_metrics, series_limit=config.series_limit)
        for declared in self._declared.values():
            if declared.family is not None:
                declared.family.series_limit = config.series_limit

    @property
    def registered(self) -> int:
        return len(self._declared)

    # --- one sample at a time (StatsD) ---------------------------------------------------------

    def record(self, sample: Sample) -> None:
        """Resolve and apply one sample, registering its metric on first use; raises MetricError."""
        cache_key = (sample.name, sample.kind, sample.unit, sample.keys)
        target = self._targets.get(cache_key)
        if target is None:
            target = self._resolve(sample.name, sample.kind, sample.unit, sample.keys, None)
            check_converted(target, sample)
            self._register(target.declared)
            self._remember(cache_key, target)
        elif target.factor != 1.0:
            check_converted(target, sample)
        self.apply(target, sample)

    # --- a batch, all or nothing (HTTP) --------------------------------------------------------

    def plan(self, samples: Sequence[tuple[int | None, Sample]]) -> list[tuple[Target, Sample]]:
        """Resolve every sample; raises BatchRejected listing every refused one (nothing is changed)."""
        pending: dict[str, Declared] = {}
        planned, errors = [], []
        for index, sample in samples:
            try:
                target = self._targets.get((sample.name, sample.kind, sample.unit, sample.keys)) or \
                    self._resolve(sample.name, sample.kind, sample.unit, sample.keys, pending)
                check_converted(target, sample)
            except MetricError as err:
                errors.append((index, err))
                continue
            planned.append((target, sample))
        if errors:
            raise BatchRejected(errors)
        return planned

    def commit(self, planned: Iterable[tuple[Target, Sample]]) -> int:
        """Register what the plan declares and apply every sample; returns how many were applied."""
        count = 0
        targets = self._targets
        for target, sample in planned:
            cache_key = (sample.name, sample.kind, sample.unit, sample.keys)
            if cache_key not in targets:
                self._register(target.declared)
                self._remember(cache_key, target)
            self.apply(target, sample)
            count += 1
        return count

    def _remember(self, cache_key: tuple[str, str, str, tuple[str, ...]], target: Target) -> None:
        """Cache a registered target (random names must not grow the cache forever)."""
        if len(self._targets) >= CACHE_MAX:
            self._targets.clear()
        self._targets[cache_key] = target

    # --- resolving names -----------------------------------------------------------------------

    def _resolve(self, name: str, kind: str, unit_text: str, keys: tuple[str, ...],
                 pending: dict[str, Declared] | None) -> Target:
        try:
            base = sanitize(name)
        except NameProblem as exc:
            raise MetricError("name", str(exc)) from None
        if self._personal(name):
            raise MetricError("name", PERSONAL_NAME)
        try:
            unit = unit_of(unit_text)
        except NameProblem as exc:
            raise MetricError("unit", str(exc)) from None
        try:
            final = metric_name(self.config.namespace, base, kind, unit)
        except NameProblem as exc:
            raise MetricError("name", str(exc)) from None
        labels = self._labels(keys)
        order = tuple(sorted(range(len(labels)), key=labels.__getitem__))
        sorted_labels = tuple(labels[i] for i in order)
        private = self.privacy.config.private_properties if self.privacy is not None else ()
        masked = frozenset(i for i, label in enumerate(sorted_labels) if label in private)
        declared = self._declared.get(final) or (pending.get(final) if pending is not None else None)
        if declared is None:
            declared = self._declare(final, kind, sorted_labels, unit.suffix, pending)
        elif (declared.kind, declared.labels) != (kind, sorted_labels):
            raise MetricError("type" if declared.kind != kind else "tags",
                              self._conflict(declared, kind, sorted_labels), "conflict")
        return Target(declared, order, masked, unit.factor)

    def _personal(self, text: str) -> bool:
        """Whether privacy's free-text rules would change `text` (an e-mail address, a card number)."""
        return self.privacy is not None and self.privacy.text(text) != text

    def _labels(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        if len(keys) > MAX_TAGS:
            raise MetricError("tags", f"at most {MAX_TAGS} tags per metric, got {len(keys)}")
        labels: dict[str, str] = {}
        for key in keys:
            try:
                label = label_name(key)
            except NameProblem as exc:
                raise MetricError(f"tags.{key}", str(exc)) from None
            if self._personal(key):
                raise MetricError(f"tags.{key}", PERSONAL_NAME)
            if label in IDENTIFYING_TAGS:
                raise MetricError(f"tags.{key}", "identifies a person; user identifiers are never labels "
                                                 "(count them in events, which the analytics API reads)")
            if is_secret_name(label):
                raise MetricError(f"tags.{key}", "names a secret; secrets are never labels")
            if label in labels:
                raise MetricError(f"tags.{key}", f"is the label {label!r}, like the tag {labels[label]!r}")
            labels[label] = key
        return tuple(labels)

    def _declare(self, name: str, kind: str, labels: tuple[str, ...], unit: str,
                 pending: dict[str, Declared] | None) -> Declared:
        count = len(self._declared) + (len(pending) if pending is not None else 0)
        if count >= self.config.max_metrics:
            raise MetricError("name", f"{name} would be a new metric, but custom_metrics.max_metrics "
                                      f"({self.config.max_metrics}) are registered already", "limit")
        clash = self._clash(name, FAMILY_KIND[kind], pending)
        if clash is not None:
            raise MetricError("name", clash, "conflict")
        declared = Declared(name, kind, labels, unit)
        if pending is not None:
            pending[name] = declared
        return declared

    def _clash(self, name: str, family_kind: str, pending: dict[str, Declared] | None) -> str | None:
        """Why `name` cannot be a new family: it or a series name it writes is taken."""
        mine = sample_names(name, family_kind)
        for family in self.store.families():
            if mine & sample_names(family.name, family.kind):
                owner = "custom metric" if family.name in self._declared else "metric of the agent"
                return (f"metric {name} would write series named like the {owner} {family.name} "
                        f"(a {family.kind}); choose another name")
        for other in (pending or {}).values():
            if mine & sample_names(other.name, FAMILY_KIND[other.kind]):
                return f"metric {name} would write series named like {other.name}, declared earlier in this batch"
        return None

    @staticmethod
    def _conflict(declared: Declared, kind: str, labels: tuple[str, ...]) -> str:
        def shape(k: str, ls: tuple[str, ...]) -> str:
            return f"{'an' if k[0] in 'aeiou' else 'a'} {k} with labels [{', '.join(ls)}]"
        return (f"metric {declared.name} is {shape(declared.kind, declared.labels)}; got {shape(kind, labels)}. "
                "A metric keeps the type and tag names of its first use")

    def _register(self, declared: Declared) -> None:
        if declared.family is not None:
            return
        name, store, config = declared.name, self.store, self.config
        help = (f"Custom {declared.kind} of the application (POST /v1/metrics or StatsD)"
                f"{', in ' + declared.unit if declared.unit else ''}.")
        if declared.kind == "counter":
            family: Family = store.counter(name, help, declared.labels, unit=declared.unit,
                                           series_limit=config.series_limit)
        elif declared.kind == "gauge":
            family = store.gauge(name, help, declared.labels, unit=declared.unit, series_limit=config.series_limit)
        else:
            family = store.histogram(name, help, declared.labels, buckets=config.buckets_for(name),
                                     unit=declared.unit, series_limit=config.series_limit)
        declared.family = family
        self._declared[name] = declared
        self._registered.set((), float(len(self._declared)))

    # --- updating ------------------------------------------------------------------------------

    def apply(self, target: Target, sample: Sample) -> None:
        """Update the series of `sample`. The value was checked finite (and non-negative for counters)."""
        given = sample.values
        text = self.privacy.text if self.privacy is not None else None
        values = [given[i] for i in target.order]
        if text is not None:
            values = [text(v) for v in values]
        for i in target.masked:
            values[i] = MASKED
        key = tuple(values)
        value = sample.value * target.factor if target.factor != 1.0 else sample.value
        family = target.declared.family
        op = sample.op
        if op == "inc":
            assert isinstance(family, Counter)
            family.inc(key, value)
        elif op == "set":
            assert isinstance(family, Gauge)
            family.set(key, value)
        elif op == "add":
            assert isinstance(family, Gauge)
            family.add(key, value)
        else:
            assert isinstance(family, Histogram)
            for _ in range(sample.repeat):
                family.observe(key, value)


def check_value(value: float, op: str) -> str | None:
    """Why a value as sent cannot be recorded, or None."""
    if not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if op == "inc" and value < 0:
        return f"a counter only goes up: the increment must be >= 0, got {value:g}"
    return None


def check_converted(target: Target, sample: Sample) -> None:
    """A finite value can overflow on the way to base units (1e308 weeks in seconds)."""
    if target.factor != 1.0 and not math.isfinite(sample.value * target.factor):
        raise MetricError("value", f"{sample.value:g} {sample.unit} is too large in base units")
