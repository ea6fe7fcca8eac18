"""Feature flags, PostHog-compatible (issue 15): definitions in the `flags:` block (config.py), evaluated
as PostHog evaluates them (evaluate.py, with posthog-python's own property matcher), served by
agent/api/flags.py to posthog-js, posthog-node and posthog-python. docs/flags.md is the user-facing version.

What it may import: the standard library, orjson, posthog.feature_flags, agent.config.node. Never
agent.api or agent.app.
"""
