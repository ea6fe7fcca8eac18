"""Background work for the application's lifetime, as aiohttp cleanup contexts.

One helper instead of the create-task / cancel / suppress(CancelledError) block each component used to
copy: `background(run)` starts `run(app)` after the contexts before it are up and cancels it before they
go down (cleanup contexts stop in reverse order: a task reading the store is cancelled before the
store closes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def background(name: str, run: Callable[[web.Application], Coroutine[Any, Any, None]], *,
               start: Callable[[web.Application], Awaitable[None]] | None = None,
               stop: Callable[[web.Application], Awaitable[None] | None] | None = None) -> CleanupCtx:
    """A cleanup context: `start(app)` awaited first (its failure stops the start-up), then `run(app)` as
    a task named `name` for the app's lifetime; at shutdown the task is cancelled, then `stop(app)`."""
    async def context(app: web.Application) -> AsyncIterator[None]:
        if start is not None:
            await start(app)
        task = asyncio.create_task(run(app), name=name)
        yield
        await cancel(task)
        if stop is not None and (pending := stop(app)) is not None:
            await pending
    context.__name__ = name.replace("-", "_")
    return context


def lifetime(name: str, start: Callable[[web.Application], Awaitable[None]] | None,
             stop: Callable[[web.Application], Awaitable[None]]) -> CleanupCtx:
    """A cleanup context with no task: `start(app)` (if any) at start-up, `stop(app)` at shutdown."""
    async def context(app: web.Application) -> AsyncIterator[None]:
        if start is not None:
            await start(app)
        yield
        await stop(app)
    context.__name__ = name.replace("-", "_")
    return context
