"""/probe?target=&module=[&hostname=][&debug=true]: blackbox_exporter's multi-target pattern.

A Prometheus job written for blackbox_exporter works unchanged against the agent: same
parameters, same metric names, the scrape timeout honoured (X-Prometheus-Scrape-Timeout-Seconds
less a 0.5 s margin, as blackbox does), `debug=true` for a readable log of the probe.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from agent.api.exposition import exposition_response
from agent.api.keys import RUNTIME
from agent.api.problems import BadRequest
from agent.collectors.base import ProbeResult, ProbeTarget
from agent.collectors.kinds import KINDS
from agent.collectors.scheduler import probe_once
from agent.collectors.spans import emit_probe_span
from agent.config.load import Config, Module
from agent.metrics.probe import gauge_families, result_gauges

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
TIMEOUT_OFFSET = 0.5
MIN_TIMEOUT = 0.1


class _ResultCollector:
    def __init__(self, kind: str, result: ProbeResult):
        self._families = gauge_families(({}, s) for s in result_gauges(kind, result))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def probe_target(config: Config, module: Module, target_param: str, scrape_timeout: str | None,
                 hostname: str | None = None) -> ProbeTarget:
    """The ad-hoc target of one /probe request. Raises ValueError with a message for the client.
    `hostname` (blackbox's parameter) is the Host header of an http probe; other kinds ignore it, as
    blackbox_exporter does."""
    kind = KINDS[module.kind]
    options = module.options
    if hostname and kind.with_hostname is not None:
        options = kind.with_hostname(options, hostname)
    url = address = None
    if kind.target_is_url:
        url = target_param
        if "://" not in url:
            url = kind.url_schemes[0] + url
        if not url.startswith(kind.url_schemes):
            raise ValueError(f"target {target_param!r} is not a URL this module ({kind.name}) can probe")
        if problem := kind.url_problem(url):
            raise ValueError(f"target: {problem}")
    else:
        if problem := kind.address_problem(target_param):
            raise ValueError(problem)
        address = target_param
    timeout = module.timeout or config.defaults.timeout
    if scrape_timeout:
        try:
            timeout = min(timeout, float(scrape_timeout) - TIMEOUT_OFFSET)
        except ValueError:
            raise ValueError(f"{SCRAPE_TIMEOUT_HEADER}: not a number: {scrape_timeout!r}") from None
    return ProbeTarget(name=target_param, kind=kind.name, url=url, address=address, interval=0.0,
                       timeout=max(MIN_TIMEOUT, timeout), retries=0, labels={}, options=options,
                       module=module.name)


async def probe(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    query = request.query
    target_param = query.get("target")
    if not target_param:
        raise BadRequest("Target parameter is missing", plain=True)       # text, as blackbox_exporter answers
    module_name = query.get("module", "http_2xx")
    module = runtime.config.modules.get(module_name)
    if module is None:
        raise BadRequest(f"Unknown module {module_name!r}", plain=True)
    try:
        target = probe_target(runtime.config, module, target_param, request.headers.get(SCRAPE_TIMEOUT_HEADER),
                              query.get("hostname"))
    except ValueError as exc:
        raise BadRequest(str(exc), plain=True) from None
    started = time.time()
    result = await probe_once(runtime.collectors[module.kind], target, target.timeout)
    if runtime.spans_exported and runtime.config.telemetry.trace_probes:
        emit_probe_span(runtime.tracer, target, result, started, 1)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ResultCollector(module.kind, result))
    if query.get("debug", "").lower() == "true":
        return web.Response(text=_debug_text(module, target, result, registry))
    return exposition_response(request, registry)


def _debug_text(module: Module, target: ProbeTarget, result: ProbeResult, registry: CollectorRegistry) -> str:
    outcome = "succeeded" if result.success else f"failed ({result.reason_value}: {result.detail})"
    lines = [f"Logs for the probe: target={target.name} module={module.name} kind={module.kind} "
             f"timeout={target.timeout:g}s", *result.log, f"Probe {outcome} in {result.duration_seconds:.6f}s",
             "", "Metrics that would have been returned:", generate_latest(registry).decode(),
             "Module configuration:", f"  {'prober' if module.blackbox else 'kind'}: {module.kind}"]
    if module.timeout:
        lines.append(f"  timeout: {module.timeout:g}s")
    indent = "  "
    if module.blackbox:         # blackbox's form: the prober's block
        lines.append(f"  {module.kind}:")
        indent = "    "
    lines.extend(f"{indent}{key}: {_redact(key, value)!r}" for key, value in module.raw.items())
    return "\n".join(lines) + "\n"


_SECRET_WORDS = ("password", "token", "secret", "authorization")
# whole values that may carry credentials (an API key header, a cookie, a login exchange)
_OPAQUE_KEYS = frozenset({"headers", "body", "send"})


def _redact(key: str, value: object) -> object:
    """Module settings as shown in debug output, with secrets replaced by <secret>: keys that name a
    secret, every header value, request bodies and tcp `send` strings."""
    lowered = key.lower()
    if any(word in lowered for word in _SECRET_WORDS):
        return "<secret>"
    if lowered in _OPAQUE_KEYS:
        if isinstance(value, dict):
            return {k: "<secret>" for k in value}
        return "<secret>"
    if isinstance(value, dict):
        return {k: _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(key, item) if not isinstance(item, dict) else
                {k: _redact(str(k), v) for k, v in item.items()} for item in value]
    return value


def add_routes(app: web.Application) -> None:
    app.router.add_get("/probe", probe)
