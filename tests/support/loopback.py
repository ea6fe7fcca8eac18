"""A raw asyncio server on loopback for collector tests: a handler per connection, every
connection cut and every handler ended when the test's `async with` block ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler, ssl_context: Any = None, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """A server on host:0 (a fresh port) running `handler`; yields the port, stops on exit
    (connections still open are cut and their handlers ended)."""
    running: set[asyncio.Task[Any]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass                    # the probe hung up, or the test is over
        finally:
            writer.transport.abort()
            running.discard(task)

    server = await asyncio.start_server(guarded, host, 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.sleep(0.01)   # let connections the loop is still accepting reach their handler
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await server.wait_closed()
