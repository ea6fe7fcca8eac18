"""Custom business metrics: what an application sends over POST /v1/metrics (Sentry-style counters,
gauges and distributions) or as StatsD / DogStatsD lines over UDP, turned into Prometheus series.

naming.py     names, label names and units to Prometheus' rules (namespace, base-unit suffixes)
registry.py   the shape each metric keeps after its first use; the one writer to the MetricStore
samples.py    the JSON body of POST /v1/metrics, item by item
statsd.py     the StatsD line parser and the UDP endpoint (a cleanup_ctx)
config.py     the `custom_metrics:` block

docs/custom-metrics.md is the user's side of it.
"""
