"""Which migrations a database still needs, decided the same way by both drivers.

The drivers own the I/O (SQLite on its writer thread, PostgreSQL under an advisory lock); this module
owns the rule: apply every known migration not yet recorded in `schema_migrations`, in order, and refuse
a database that a newer agent has already migrated past what this code knows (writing to it could
corrupt data the newer schema relies on).
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.store.errors import StoreUnavailable
from agent.store.schema import MIGRATIONS, Migration

RECORD_SQL = "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)"
APPLIED_SQL = "SELECT version FROM schema_migrations ORDER BY version"


def pending(applied: Iterable[int], known: tuple[Migration, ...] = MIGRATIONS) -> list[Migration]:
    """The migrations to run, oldest first. Raises StoreUnavailable for a database newer than `known`."""
    applied = set(applied)
    newest_known = max((m.version for m in known), default=0)
    unknown = sorted(v for v in applied if v > newest_known)
    if unknown:
        raise StoreUnavailable(
            f"the database has schema version {unknown[-1]}, newer than this agent knows ({newest_known}): "
            "it was migrated by a newer loom-agent; run that version, or point store: at another database")
    return [m for m in known if m.version not in applied]
