"""The real agent, `agent.app.root.build_app`, for API tests: one builder instead of hand-wired apps.

A test gives the YAML it cares about (merged over a base with no probes and no store of its own) and,
when it fills a store first, that open store (SQLite or PostgreSQL from tests/support/store_fixtures.py); the
app uses it as its event store and leaves it open. Everything else is what `python -m agent run`
builds: the same components, middlewares, keys and routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.app.root import Clocks, build_app
from agent.config.load import Config, parse_config
from agent.store.base import Store
from agent.store.sqlite import SqliteStore

# a fixed key, so a test can compute the pseudonyms it expects
HMAC_KEY = "agent-app-test-hmac-key-0123456789abcdef"


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def agent_config(config: str | Mapping[str, Any] = "", *, admin_token: str | None = None) -> Config:
    """A Config: no targets, no store, the fixed HMAC key, `api.admin_tokens: [admin_token]`, then `config`."""
    base: dict[str, Any] = {"targets": [], "store": {"driver": "none"}, "privacy": {"hmac_key": HMAC_KEY}}
    if admin_token is not None:
        base["api"] = {"admin_tokens": [admin_token]}
    extra = yaml.safe_load(config) or {} if isinstance(config, str) else config
    return parse_config(yaml.safe_dump(merge(base, extra)), environ={})


def agent_app(store: Store | None = None, config: str | Mapping[str, Any] = "", *, admin_token: str | None = None,
              clocks: Clocks = Clocks(), registry: CollectorRegistry | None = None) -> web.Application:
    """build_app for `agent_config(config, admin_token=...)`, with `store` as its event store when given."""
    return build_app(agent_config(config, admin_token=admin_token), registry, clocks=clocks, store=store)


Call = tuple[str, Mapping[str, str] | str | None, Mapping[str, str]]     # path, query, headers


async def get_all(app: web.Application, calls: Sequence[Call]) -> list[tuple[int, Any, Any]]:
    """Serve `app` on 127.0.0.1:0 (its start-up and shutdown run), GET each (path, query, headers) in
    order: (status, JSON body, headers) of each."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    out = []
    try:
        async with aiohttp.ClientSession() as session:
            for path, query, headers in calls:
                url = f"http://127.0.0.1:{port}{path}" + (f"?{query}" if isinstance(query, str) else "")
                params = None if isinstance(query, str) else query
                async with session.get(url, params=params, headers=headers) as resp:
                    out.append((resp.status, orjson.loads(await resp.read()), resp.headers))
    finally:
        await runner.cleanup()
    return out


def run_on_sqlite(path: str, build: Callable[[Store], web.Application], calls: Sequence[Call], *,
                  close_first: bool = False) -> list[tuple[int, Any, Any]]:
    """`get_all` on the app `build` makes around a fresh SQLite store at `path`; `close_first`: the store
    is closed under the running app once it has started (every query then fails)."""
    async def scenario() -> list[tuple[int, Any, Any]]:
        store = SqliteStore(path)
        await store.open()
        app = build(store)
        if close_first:
            async def close(_app: web.Application) -> None:
                await store.close()
            app.on_startup.append(close)        # after the app's own start-up (its cleanup contexts)
        try:
            return await get_all(app, calls)
        finally:
            await store.close()
    return asyncio.run(scenario())
