"""What happens to validated error events, in this order:

1. privacy: the error of a Do-Not-Track or opted-out user is kept without the person (no user id, IP or
   user agent) whatever privacy.dnt / privacy.opted_out say: an error is service health, not tracking,
   and dropping it would make error rates lie (counted in loom_agent_events_anonymized_total). Then the
   scrubbing every event gets: the user id and event id pseudonymised, `extra` and `tags` scrubbed as
   event properties are (e-mails, card numbers, secret-named keys removed, private names masked), and
   so are the frames' local variables (`vars`), the breadcrumbs and the request record of a Sentry
   event; the context as an event's; the type, message, log message, environment, fingerprint parts,
   the chained causes and every frame's text and source lines as free text (e-mails, card numbers).
   The release is kept as it is: it names a build, and validation
   (agent/events/validate.py parse_release) refuses anything shaped like an e-mail address.
2. fingerprint (agent/error_tracking/fingerprint.py), from the scrubbed error.
3. store: one `errors` row per occurrence, all of a request in ONE transaction, committed before the
   caller answers; an error whose client event id is already stored is not stored (or counted) again.
   A StoreError leaves the sink: nothing was acknowledged, nothing counted.
4. loom_errors_total{feature, type, release} (feature: the `feature` tag; "unknown" when absent), each
   label an open set bounded by the family's series limit (errors.series_limit).
5. with trace context, the exception span (agent/error_tracking/spans.py); then the observers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry.trace import Tracer

from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.fingerprint import fingerprint
from agent.error_tracking.model import ErrorEvent, Frame
from agent.error_tracking.spans import record_exception_span
from agent.events.model import Event
from agent.events.privacy import Privacy, anonymize
from agent.metrics.store import MetricStore
from agent.store.base import Store

UNKNOWN = "unknown"
INSERT_ERROR = ("INSERT INTO errors (event_id, fingerprint, ts, received_at, user_id, release, environment, "
                "feature, type, message, sample) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
_FRAME_TEXT = ("filename", "abs_path", "function", "module", "context_line")

# called with the errors of a request once they are committed (and not duplicates)
Observer = Callable[[Sequence[ErrorEvent]], None]


@dataclass(frozen=True, slots=True)
class ErrorResult:
    accepted: int                  # valid errors acknowledged
    stored: int                    # newly stored and counted (or counted, when there is no store)
    duplicates: int                # already stored under the same client event id: not stored or counted again
    fingerprints: list[str]        # the issue of each error, in request order

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "stored": self.stored, "duplicates": self.duplicates,
                "fingerprints": self.fingerprints}


def sample_json(error: ErrorEvent) -> str:
    """The `sample` column: what an issue shows of one occurrence beyond the row's own columns."""
    sample: dict[str, Any] = {"level": error.level, "frames": [frame.to_json() for frame in error.frames],
                              "tags": error.tags, "extra": error.extra}
    if error.frames_omitted:
        sample["framesOmitted"], sample["framesOmittedAt"] = error.frames_omitted, error.frames_omitted_at
    if error.message_truncated:
        sample["messageTruncated"] = True
    if error.causes:
        sample["causes"] = [cause.to_json() for cause in error.causes]
    if error.causes_omitted:
        sample["causesOmitted"] = error.causes_omitted
    if error.mechanism is not None or error.handled is not None:
        sample["mechanism"] = {key: value for key, value in (("type", error.mechanism), ("handled", error.handled))
                               if value is not None}
    for key, value in (("logMessage", error.log_message), ("request", error.request),
                       ("breadcrumbs", error.breadcrumbs or None)):
        if value is not None:
            sample[key] = value
    c = error.context
    context = {key: value for key, value in (("page", c.page), ("userAgent", c.user_agent), ("ip", c.ip),
                                             ("traceId", c.trace_id), ("spanId", c.span_id),
                                             ("library", c.library)) if value is not None}
    if context:
        sample["context"] = context
    return orjson.dumps(sample, option=orjson.OPT_NON_STR_KEYS).decode()


def error_row(error: ErrorEvent, print_: str) -> tuple[Any, ...]:
    return (error.event_id, print_, error.timestamp, error.received_at, error.user_id, error.release,
            error.environment, error.feature, error.type, error.message, sample_json(error))


async def write_errors(store: Store, errors: Sequence[ErrorEvent], prints: Sequence[str]) -> list[bool]:
    """Insert one row per error in one transaction; for each error, whether it was new (False: its
    client event id was already stored, earlier or earlier in this request)."""
    counts = await store.execute([(INSERT_ERROR, error_row(error, print_)) for error, print_ in zip(errors, prints)])
    return [count != 0 for count in counts]


class ErrorSink:
    """The error path after validation (see the module docstring). `config` follows reloads."""

    def __init__(self, config: ErrorsConfig, metrics: MetricStore, privacy: Privacy, tracer: Tracer | None = None):
        self.config = config
        self.privacy = privacy
        self.tracer = tracer
        self.observers: list[Observer] = []
        self.errors_total = metrics.counter(
            "loom_errors", "Errors captured by the application, by its feature tag, exception type and release.",
            ("feature", "type", "release"), series_limit=config.series_limit)
        self._anonymized = metrics.counter(
            "loom_agent_events_anonymized", "Events stored without the identity of the person, by reason.",
            ("reason",), allow={"reason": frozenset({"dnt", "opted_out"})})

    def prepare(self, config: ErrorsConfig) -> Callable[[], None]:
        """Reloadable: every `errors:` setting applies from the next error."""
        return lambda: self.reconfigure(config)

    def reconfigure(self, config: ErrorsConfig) -> None:
        self.config = config
        self.errors_total.series_limit = config.series_limit

    async def record(self, errors: Sequence[ErrorEvent], store: Store | None) -> ErrorResult:
        """Privacy, fingerprints, the store's commit (raises StoreError: nothing acknowledged or
        counted), then metrics, spans and observers for the errors newly stored."""
        for error in errors:
            self.scrub(error)
        prints = [fingerprint(error) for error in errors]
        new = [True] * len(errors) if store is None else await write_errors(store, errors, prints)
        stored = [(error, print_) for error, print_, fresh in zip(errors, prints, new) if fresh]
        for error, print_ in stored:
            self.errors_total.inc((error.feature or UNKNOWN, error.type, error.release or UNKNOWN))
            if self.tracer is not None:
                record_exception_span(self.tracer, error, print_)
        if stored:
            for observe in self.observers:
                observe([error for error, _ in stored])
        return ErrorResult(accepted=len(errors), stored=len(stored), duplicates=len(errors) - len(stored),
                           fingerprints=prints)

    def scrub(self, error: ErrorEvent) -> ErrorEvent:
        """Privacy for one error, in place (see the module docstring); returns it."""
        privacy, text = self.privacy, self.privacy.text
        # the ids, tags, extra, context, frame variables, breadcrumbs and request go through exactly the
        # path of an event's properties (secret-named keys removed, e-mails and card numbers scrubbed)
        frames = [frame for stack in (error.frames, *(cause.frames for cause in error.causes)) for frame in stack]
        properties = {"tags": error.tags, "extra": error.extra, "frame_vars": [frame.vars for frame in frames],
                      "breadcrumbs": error.breadcrumbs, "request": error.request}
        carrier = Event(name="$exception", category="error", timestamp=error.timestamp, received_at=error.received_at,
                        properties=properties, user_id=error.user_id, event_id=error.event_id, context=error.context)
        reason = privacy.decide(carrier)
        if reason is not None:
            anonymize(carrier)
            self._anonymized.inc((reason,))
        privacy.scrub(carrier)
        error.user_id, error.event_id, error.context = carrier.user_id, carrier.event_id, carrier.context
        scrubbed = carrier.properties
        # a private name may mask a whole object: what is not of its shape any more is left out
        error.tags = _of_type(scrubbed.get("tags"), dict, {})
        error.extra = _of_type(scrubbed.get("extra"), dict, {})
        error.breadcrumbs = [c for c in _of_type(scrubbed.get("breadcrumbs"), list, []) if isinstance(c, dict)]
        error.request = _of_type(scrubbed.get("request"), dict, None)
        frame_vars = _of_type(scrubbed.get("frame_vars"), list, [])
        for frame, variables in zip(frames, frame_vars + [None] * (len(frames) - len(frame_vars))):
            frame.vars = variables if isinstance(variables, dict) and frame.vars is not None else None
        error.type, error.message = text(error.type), text(error.message)
        for name in ("environment", "log_message"):
            if (value := getattr(error, name)) is not None:
                setattr(error, name, text(value))
        if error.fingerprint is not None:
            error.fingerprint = tuple(map(text, error.fingerprint))
        for cause in error.causes:
            cause.type, cause.value = text(cause.type), text(cause.value)
        for frame in frames:        # an issue's frames come back with every occurrence: remembered
            _scrub_frame(frame, privacy.repeated_text)
        return error


def _of_type(value: Any, kind: type, default: Any) -> Any:
    return value if isinstance(value, kind) else default


def _scrub_frame(frame: Frame, text: Callable[[str], str]) -> None:
    for name in _FRAME_TEXT:
        value = getattr(frame, name)
        if value is not None:
            setattr(frame, name, text(value))
    frame.pre_context = tuple(map(text, frame.pre_context))
    frame.post_context = tuple(map(text, frame.post_context))

