"""Session recordings from posthog-js (`$snapshot` events to `/s/`): the wire shape (snapshots.py), privacy,
bounds and counters (ingest.py), the replay pages (page.py). Stored by agent/store/recordings.py; served
by agent/api/recordings.py (docs/posthog.md, "Session recordings")."""
