"""POST /v1/metrics: custom business metrics, in the spirit of Sentry's `metrics.increment`.

Authenticated and read like /v1/events (the ingest keys, events.max_body_bytes, events.max_batch);
the body is checked item by item (agent/custom_metrics/samples.py), then every sample is resolved
against the registry (agent/custom_metrics/registry.py), and only when all of them are fine is
anything recorded. Answers: 200 `{"accepted": n}`; 400 when an item is invalid; 409 when every
refused item is valid but conflicts with a registered metric or would exceed custom_metrics.max_metrics.
Either refusal is `{"error", "errors": [{index, field, message}]}` and records nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from agent.api.auth import bearer_token, require_ingest_key
from agent.api.events import _read_json
from agent.api.keys import CUSTOM_METRICS, PIPELINE
from agent.api.problems import ApiError, json_response
from agent.custom_metrics.registry import BatchRejected, MetricError
from agent.custom_metrics.samples import parse_samples

API = "metrics"          # the `api` label of loom_agent_ingest_rejected_total


async def post_metrics(request: web.Request) -> web.Response:
    pipeline, registry = request.app[PIPELINE], request.app[CUSTOM_METRICS]
    require_ingest_key(pipeline.config.api_keys, bearer_token(request), API)
    body = await _read_json(request, pipeline, API)
    try:
        samples, releases, errors = parse_samples(body, pipeline.config.max_batch)
        try:
            planned = registry.plan(samples)
        except BatchRejected as rejected:
            errors += rejected.errors
        if errors:
            raise BatchRejected(errors)
    except BatchRejected as rejected:
        raise metrics_refused(rejected.errors, pipeline.privacy.text if pipeline.privacy is not None else str) from None
    accepted = registry.commit(planned)
    for release in releases:                # validated like an event's: names a build, never a person
        for observe in registry.release_observers:
            observe(release)
    return json_response({"accepted": accepted})


def metrics_refused(errors: list[tuple[int | None, MetricError]], scrub: Callable[[str], str] = str) -> ApiError:
    """400 when any item is invalid in itself, else 409 (conflicts with registered metrics, or the limit);
    either counted as invalid. Messages quote what the client sent (a unit, a tag key): they go through
    privacy's `scrub`, as the event API's do, so an e-mail address or card number is never echoed in clear."""
    errors = sorted(errors, key=lambda item: -1 if item[0] is None else item[0])
    status = 400 if any(err.reason == "invalid" for _, err in errors) else 409
    if len(errors) == 1:
        index, err = errors[0]
        summary = f"metrics[{index}].{err}" if index is not None and err.field else \
            f"metrics[{index}]: {err}" if index is not None else str(err)
    else:
        summary = f"{len(errors)} metrics refused; none was recorded"
    return ApiError.of_status(status, scrub(summary), [{"index": index, "field": scrub(err.field),
                                                        "message": scrub(err.message)} for index, err in errors],
                              api=API, reason="invalid")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/metrics", post_metrics)
