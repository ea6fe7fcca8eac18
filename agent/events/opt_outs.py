"""The running opt-out set (`Privacy.opted_out`), kept in step with the persisted `opt_outs` table.

Local changes (POST /api/analytics/opt-out) apply at once after their commit; a refresh re-reads the
table, which other agents sharing a PostgreSQL database change too. A refresh that read the table
before a local change landed must not overwrite it: a generation counter tells, and that round is
skipped (the next one applies it).
"""

from __future__ import annotations

import asyncio
import logging

from agent.events.privacy import Privacy
from agent.store.base import Store
from agent.store.errors import StoreError
from agent.store.gdpr import load_opt_outs

log = logging.getLogger("agent.gdpr")

# PostgreSQL shared by several agents: how often each re-reads the list
REFRESH_SECONDS = 30.0


class OptOuts:
    def __init__(self, privacy: Privacy):
        self.privacy = privacy
        self.generation = 0

    def apply(self, stored_id: str, opted_out: bool) -> None:
        """A committed local change: the privacy rules follow it at once (no await in between)."""
        ids = self.privacy.opted_out
        if opted_out:
            ids.add(stored_id)
        else:
            ids.discard(stored_id)
        self.generation += 1

    async def refresh(self, store: Store) -> bool:
        """Replace the running set by the persisted list; False when a local change raced the read."""
        generation = self.generation
        persisted = await load_opt_outs(store)
        if generation != self.generation:
            return False
        ids = self.privacy.opted_out
        ids.intersection_update(persisted)
        ids.update(persisted)
        return True

    async def keep_fresh(self, store: Store, interval: float) -> None:
        """Refresh every `interval` seconds until cancelled; a failing store keeps the set held."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh(store)
            except StoreError as exc:
                log.warning("opt-out refresh failed, keeping the list held: %s: %s", type(exc).__name__, exc)
