"""Error events, Sentry-style: an application's captured exceptions, validated (validate.py), grouped
into issues by fingerprint (fingerprint.py), scrubbed, stored, counted and attached to their trace
(sink.py, spans.py), and listed as issues (queries.py). docs/errors.md is the user-facing version."""
