"""The store's exceptions: one root, a family per way a write can fail that the client may retry.

Drivers map their low-level errors (sqlite3.OperationalError, asyncpg's exceptions, OSError) to the
most specific type here, at the boundary. The ingest API answers every StoreError with 503 and a
Retry-After of `retry_after` seconds; nothing is acknowledged that was not committed.
"""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot take the write now; the client should retry after `retry_after` seconds."""

    retry_after: int = 5


class StoreUnavailable(StoreError):
    """Cannot reach or open the database (connection refused or lost, database locked, file unwritable)."""


class StoreFull(StoreError):
    """The database's disk (or quota) is full."""

    retry_after = 30


class StoreBusy(StoreError):
    """More events are waiting to be committed than the configured bound: back-pressure."""

    retry_after = 1


class StoreTimeout(StoreUnavailable):
    """A read ran past `store.query_timeout` (a slow query, a frozen or unreachable server) and was
    abandoned: the request answers 503 instead of hanging."""

    retry_after = 5
