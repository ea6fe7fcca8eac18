"""PostHog's ingest protocol: the `posthog:` block, remote config for posthog-js, clock-skew correction.
The routes are agent/api/posthog.py; the event mapping is agent/events/posthog.py (docs/posthog.md)."""
