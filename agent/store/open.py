"""store: config -> the driver it names, opened (migrations applied)."""

from __future__ import annotations

from agent.store.base import Store
from agent.store.config import StoreConfig


async def open_store(config: StoreConfig) -> Store | None:
    """The configured Store, opened; None for `driver: none` (events are not stored).
    Raises StoreUnavailable when the database cannot be opened or is newer than this agent."""
    if config.driver == "sqlite":
        from agent.store.sqlite import SqliteStore
        store: Store = SqliteStore(config.path, synchronous=config.synchronous,
                                   busy_timeout=config.connect_timeout, max_size_mb=config.max_size_mb,
                                   query_timeout=config.query_timeout)
    elif config.driver == "postgres" and config.dsn:
        from agent.store.postgres import PostgresStore  # asyncpg is imported only when used
        store = PostgresStore(config.dsn, pool_size=config.pool_size, connect_timeout=config.connect_timeout,
                              query_timeout=config.query_timeout)
    else:
        return None
    await store.open()
    return store
