"""A time limit around an analytics read: past it the request is answered (503 with Retry-After) at
once.

Why not asyncio.wait_for: it waits for the cancelled task to finish, and a read stuck on a frozen
PostgreSQL (or a long SQLite statement, which a thread cannot be cancelled out of) would hold the answer
as long as the read itself. Here the answer does not wait: the read is cancelled and left to end on
its own. Ending it on the database's side is the store's part: each read carries the store's own
`store.query_timeout` (SQLite: a progress handler interrupts the statement; PostgreSQL: a statement
timeout, and asyncpg sends a cancel request for a cancelled query). This limit is the request's, over
all of its reads (a trend of ten series runs ten queries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")
RETRY_AFTER = 5           # seconds: the query is likely to take as long again; let the database breathe


class QueryTimeout(Exception):
    """The read did not finish within `seconds`."""

    def __init__(self, seconds: float):
        super().__init__(f"the query did not finish within {seconds:g} s")
        self.seconds = seconds


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve the abandoned read's outcome, so its exception is never logged as unretrieved."""
    if not task.cancelled():
        task.exception()


async def within(seconds: float, read: Awaitable[T]) -> T:
    """`read`'s result, or QueryTimeout after `seconds` (the read cancelled, not awaited)."""
    task = asyncio.ensure_future(read)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(_consume)
    raise QueryTimeout(seconds)
