"""The real agent, `agent.app.root.build_app`, for API tests: one builder instead of hand-wired apps.

A test gives the YAML it cares about (merged over a base with no probes and no store of its own) and,
when it fills a store first, that open store (SQLite or PostgreSQL from tests/store_fixtures.py); the
app uses it as its event store and leaves it open. Everything else is what `python -m agent run`
builds: the same components, middlewares, keys and routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.app.root import Clocks, build_app
from agent.config.load import Config, parse_config
from agent.store.base import Store

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
