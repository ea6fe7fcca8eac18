"""Sentry's ingest protocol, as pure functions over bytes and dicts: the groundwork of the Sentry
drop-in (issue 13), so an application's own Sentry SDKs can report to the agent by changing only
their DSN.

What it owns:
- envelope.py   splitting an envelope (or a legacy /store/ body) into items, bounded per item
- auth.py       the public key of a request (X-Sentry-Auth, `sentry_key` query, envelope `dsn`), DSNs
- decode.py     Content-Encoding (gzip, deflate, br, zstd) with a hard bound on the decompressed size
- ratelimit.py  `X-Sentry-Rate-Limits` and `Retry-After` for a 429 that makes SDKs back off
- events.py     a Sentry `event` payload -> the agent's typed `ErrorEvent`, validated like /v1/errors
- items.py      `client_report`, `log` / `otel_log` counts; `trace_metric` / `statsd` -> /v1/metrics samples
- spans.py      `transaction`, `span` (v1, the v2 container) and `otel_span` payloads -> spans, RED samples
- transactions.py  those as loom_transactions_* and ReadableSpans with Sentry's ids, into the OTLP span queue
- logs.py       `log` / `otel_log` records -> OTLP LogRecords for the OTLP log queue
- otel.py       what spans and log records share: ids, times, attribute values and privacy, the resource
- sessions.py   `session` / `sessions` -> release health: loom_sessions_*, loom_session_users_total
- crons.py      `check_in` -> cron monitors: loom_cron_*, each schedule's next expected check-in (croniter)
- config.py     the `sentry:` block (projects and their public keys, CORS origins, the envelope bound)
- ingest.py     the endpoints' running settings (reloadable), loom_agent_sentry_items_total,
                loom_agent_sentry_logs_total and loom_agent_sdk_discarded_events_total

What it may import: the standard library, orjson, brotli, zstandard, agent.error_tracking (model,
validate, config), agent.events, agent.custom_metrics (samples, registry, the StatsD line parser),
agent.metrics.store, agent.config.node, agent.otlp.logs (the log record model and queue), croniter and the
OpenTelemetry SDK's span and resource types. Never agent.api or
agent.app: the HTTP route (agent/api/sentry.py) that wires these together lives there and imports
this package, not the other way round. docs/sentry.md is the user-facing version.
"""
