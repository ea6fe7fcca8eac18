"""The real agent, `agent.app.root.build_app`, for API tests: one builder and one server instead of
hand-wired apps and copied serve() functions.

A test gives the YAML it cares about (merged over a base with no probes and no store of its own) and,
when it fills a store first, that open store (SQLite or PostgreSQL from tests/support/store_fixtures.py); the
app uses it as its event store and leaves it open. Everything else is what `python -m agent run`
builds: the same components, middlewares, keys and routes.

    agent_server   the fixture (registered by tests/conftest.py): `agent_server(config, store=..., admin_token=...)`
                   builds the app, serves it on 127.0.0.1:<port 0> on the test's event loop (its start-up
                   runs now, its shutdown after the test) and returns a ServedAgent: `.url`, `.app`, and
                   `.get(path, ...)` / `.post(path, ...)` / `.request(method, path, ...)` -> Answer.
                       def test_x(store, run, agent_server):
                           agent = agent_server({"events": {"api_keys": [KEY]}}, store=store)
                           assert agent.post("/v1/events", json=body, headers=AUTH).status == 200
    served(app)    the same inside a coroutine: `async with served(app) as agent: await agent.fetch(...)`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web
from multidict import CIMultiDictProxy
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


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any                         # the decoded JSON, or the text when the answer is not JSON
    headers: CIMultiDictProxy[str]

    def __iter__(self) -> Iterator[Any]:       # status, body, headers = answer
        return iter((self.status, self.body, self.headers))


class ServedAgent:
    """An app served on 127.0.0.1:<port 0>: `url`, `app`, and HTTP requests to it."""

    def __init__(self, app: web.Application, url: str, session: aiohttp.ClientSession,
                 run: Callable[[Coroutine[Any, Any, Any]], Any] | None = None) -> None:
        self.app, self.url, self.session, self._run = app, url, session, run

    async def fetch(self, method: str, path: str, **kwargs: Any) -> Answer:
        """One request (aiohttp's keyword arguments: json=, data=, params=, headers=, ...)."""
        async with self.session.request(method, self.url + path, **kwargs) as resp:
            raw = await resp.read()
            try:
                body: Any = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = raw.decode(errors="replace")
            return Answer(resp.status, body, resp.headers)

    def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        """`fetch` from a synchronous test, on the event loop the app runs on."""
        assert self._run is not None, "inside a coroutine: await agent.fetch(...)"
        return self._run(self.fetch(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Answer:
        return self.request("POST", path, **kwargs)


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[ServedAgent]:
    """Serve `app` on 127.0.0.1:<port 0>: its start-up (cleanup contexts, on_startup) runs on entry, its
    shutdown on exit."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            yield ServedAgent(app, f"http://127.0.0.1:{port}", session)
    finally:
        await runner.cleanup()


@pytest.fixture
def agent_server(run: Callable[[Coroutine[Any, Any, Any]], Any]) -> Iterator[Callable[..., ServedAgent]]:
    """`agent_server(config="", *, store=None, admin_token=None, clocks=Clocks(), registry=None)`: the real
    app for that config, served on the test's loop (the `run` fixture) until the test ends."""
    stack = contextlib.AsyncExitStack()

    def start(config: str | Mapping[str, Any] = "", *, store: Store | None = None, admin_token: str | None = None,
              clocks: Clocks = Clocks(), registry: CollectorRegistry | None = None) -> ServedAgent:
        app = agent_app(store, config, admin_token=admin_token, clocks=clocks, registry=registry)
        agent: ServedAgent = run(stack.enter_async_context(served(app)))
        agent._run = run
        return agent

    yield start
    run(stack.aclose())


async def get_all(app: web.Application, calls: Sequence[Call]) -> list[tuple[int, Any, Any]]:
    """Serve `app` (`served`), GET each (path, query, headers) in order: (status, JSON body, headers) of each."""
    out = []
    async with served(app) as agent:
        for path, query, headers in calls:
            if isinstance(query, str):
                path, query = f"{path}?{query}", None
            out.append(tuple(await agent.fetch("GET", path, params=query, headers=headers)))
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
