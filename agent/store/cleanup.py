"""`python -m agent cleanup`: the retention clean-up once, on demand, from the command line."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from agent.store.config import CLASSES, DAY, RetentionConfig, StoreConfig
from agent.store.errors import StoreError
from agent.store.open import open_store
from agent.store.retention import run_cleanup_once


def format_report(deleted: dict[str, int], config: RetentionConfig) -> list[str]:
    """One line per class, for the CLI."""
    periods = config.periods()
    return [f"{name}: {deleted[name]} rows deleted (kept: the last {periods[name] / DAY:g} days)"
            for name in CLASSES]


async def cleanup_command(store_config: StoreConfig, config: RetentionConfig, now: float | None = None,
                          out: TextIO | None = None) -> int:
    """`python -m agent cleanup`: open the configured store, clean up once, print one line per class,
    close. The exit status: 0 done, 1 the store failed, 2 no store is configured."""
    try:
        store = await open_store(store_config)
        if store is None:
            print("error: no event store is configured (store.driver: none): nothing to clean up", file=sys.stderr)
            return 2
        try:
            deleted = await run_cleanup_once(store, config, time.time() if now is None else now)
        finally:
            await store.close()
    except StoreError as exc:
        print(f"error: retention clean-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for line in format_report(deleted, config):
        print(line, file=out or sys.stdout)
    return 0


def main_cleanup(store_config: StoreConfig, config: RetentionConfig) -> int:
    """The `cleanup` command on a loaded config's `store` and `retention` blocks; the exit status."""
    return asyncio.run(cleanup_command(store_config, config))
