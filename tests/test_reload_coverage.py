"""Every setting is either applied by a reload or listed as restart-only (agent/config/reload.py).

Why: before, reload hooks were registered in four modules and a setting that none of them applied was
silently ignored on SIGHUP. The composition root now binds every reloadable component in one list; this
test walks every field of Config and fails on a field that nothing claims.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.api.keys import BUSINESS_RATE_LIMITER, RELOADER
from agent.app.root import build_app
from agent.config.load import Config, load_config, parse_config
from agent.config.reload import (NOT_SETTINGS, RESTART_ONLY, Binding, restart_only_changes, setting_paths,
                                 value_at)


def covered(path: str, claims: set[str]) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:i]) in claims for i in range(1, len(parts) + 1))


def claims_of(config: Config) -> set[str]:
    app = build_app(config)
    return {s for binding in app[RELOADER].bindings for s in binding.settings()} | set(RESTART_ONLY) | \
        set(NOT_SETTINGS)


@pytest.mark.parametrize("store", ["sqlite", "none"])
def test_every_setting_is_reloaded_or_restart_only(tmp_path: Path, store: str) -> None:
    config = parse_config(f"targets: []\nstore: {{driver: {store}, path: {tmp_path / 'a.db'}}}\n")
    claims = claims_of(config)
    missing = [path for path in setting_paths(config) if not covered(path, claims)]
    assert not missing, f"neither reloaded nor restart-only: {missing}"


def test_every_claimed_setting_exists(tmp_path: Path) -> None:
    config = parse_config(f"targets: []\nstore: {{path: {tmp_path / 'a.db'}}}\n")
    for path in claims_of(config) - {""}:
        value_at(config, path)          # AttributeError names a path that Config no longer has


def test_a_field_nothing_claims_is_found() -> None:
    assert not covered("events.brand_new", {"events.max_batch", "listen"})
    assert covered("events.brand_new", {"events"})


def test_restart_only_changes_names_what_changed() -> None:
    old = parse_config("targets: []\nlisten: 127.0.0.1:9464\n")
    new = parse_config("targets: []\nlisten: 127.0.0.1:9465\n")
    assert restart_only_changes(old, new) == ["listen"]


def test_a_refused_reload_applies_nothing(tmp_path: Path) -> None:
    """All or nothing: one binding's ValueError leaves every component on the running config."""
    path = tmp_path / "agent.yaml"
    path.write_text("targets: []\nstore: {driver: none}\napi: {rate_limit: 7}\n")
    app = build_app(load_config(str(path)))
    reloader = app[RELOADER]

    class Refuses:
        def prepare(self, new: object) -> None:
            raise ValueError("events.mappings[0]: conflicts")

    reloader.bindings.append(Binding(Refuses(), "events"))
    path.write_text("targets: []\nstore: {driver: none}\napi: {rate_limit: 9}\n")
    assert asyncio.run(reloader.reload()) is False
    assert reloader.last_errors == ["events.mappings[0]: conflicts"]
    assert app[BUSINESS_RATE_LIMITER].limit == 7
    reloader.bindings.pop()
    assert asyncio.run(reloader.reload()) is True
    assert app[BUSINESS_RATE_LIMITER].limit == 9
