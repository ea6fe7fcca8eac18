"""Reloading the configuration (SIGHUP, POST /-/reload): all or nothing, through one protocol.

Every component whose settings apply without a restart implements `Reloadable`: `prepare(block)`
checks the new value of its block against its live state and returns the function that switches to
it, or raises ValueError to refuse the reload. The composition root binds each component to the path
of its block (`Binding`), so a component sees only its own settings. A reload prepares every binding
first and commits only when all of them accepted: a bad file, or one component's refusal, leaves the
running config untouched everywhere.

A setting is either applied by a binding or listed in RESTART_ONLY; tests/test_reload_coverage.py
walks every field of Config and fails on one that is neither, so a new key can no longer be silently
ignored on SIGHUP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Protocol

from agent.config.load import Config, load_config
from agent.config.node import ConfigError

log = logging.getLogger("agent.reload")

Commit = Callable[[], None]

# settings a reload cannot apply to the running process: the listen socket, the scheduler's concurrency
# bound, the exporters, the span trackers' sizes, the names already handed out, the database and the key
RESTART_ONLY = (
    "listen",
    "scheduler",
    "telemetry",
    "events.span_idle_timeout",
    "events.max_open_spans",
    "custom_metrics.namespace",
    "custom_metrics.buckets",
    "custom_metrics.metric_buckets",
    "custom_metrics.statsd",
    "store",
    "privacy",
    # the OTLP receiver's sockets and gRPC message bound, and what its span-metric families are made with
    "otlp_receiver.http",
    "otlp_receiver.grpc",
    "otlp_receiver.max_body_bytes",
    "otlp_receiver.span_metrics.enabled",
    "otlp_receiver.span_metrics.buckets",
)
# fields of Config that are not settings
NOT_SETTINGS = ("source",)


class Reloadable(Protocol):
    def prepare(self, new: Any) -> Commit:
        """Check `new` (the component's block of the new config); the function that applies it.
        Raises ValueError, naming the setting, to refuse the reload."""
        ...


@dataclass(frozen=True, slots=True)
class Binding:
    """A component and the block of Config it is given on reload ("" = the whole Config). `applies`
    names the settings it applies when that is narrower than the whole block."""
    component: Reloadable
    path: str
    applies: tuple[str, ...] = ()

    def settings(self) -> tuple[str, ...]:
        return self.applies or (self.path,)


def value_at(config: Config, path: str) -> Any:
    value: Any = config
    for part in filter(None, path.split(".")):
        value = getattr(value, part)
    return value


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The restart-only settings that `new` changes (they take effect at the next start)."""
    return [path for path in RESTART_ONLY if value_at(old, path) != value_at(new, path)]


def setting_paths(config: Any, prefix: str = "") -> list[str]:
    """Every leaf setting of a Config, as dotted paths (nested dataclasses walked; mappings and
    sequences are one setting each)."""
    paths: list[str] = []
    for item in fields(config):
        path = f"{prefix}{item.name}"
        value = getattr(config, item.name)
        if is_dataclass(value) and not isinstance(value, type):
            paths += setting_paths(value, path + ".")
        else:
            paths.append(path)
    return paths


class Reloader:
    """Holds the running Config and applies a new one to every binding, all or nothing.
    `on_result(success)` records the outcome (the loom_agent_config_* metrics)."""

    def __init__(self, config: Config, bindings: list[Binding], on_result: Callable[[bool], None]):
        self.config = config
        self.bindings = bindings
        self.on_result = on_result
        self.last_errors: list[str] = []
        self._lock = asyncio.Lock()

    async def reload(self) -> bool:
        """Re-read the config file; keep the running config when the new one is invalid or refused."""
        async with self._lock:
            path = self.config.source
            try:
                new = await asyncio.to_thread(load_config, path) if path else self.config
                commits = self._prepare(new)
            except ConfigError as exc:
                self._failed(path, exc.errors)
                return False
            for commit in commits:
                commit()
            changed = restart_only_changes(self.config, new)
            if changed:
                log.warning("some changed settings take effect on restart", extra={"settings": changed})
            self.config, self.last_errors = new, []
            self.on_result(True)
            log.info("config reloaded", extra={"config_file": path, "targets": len(new.targets)})
            return True

    def _prepare(self, new: Config) -> list[Commit]:
        try:
            return [binding.component.prepare(value_at(new, binding.path)) for binding in self.bindings]
        except ValueError as exc:
            raise ConfigError([str(exc)]) from exc

    def _failed(self, path: str | None, errors: list[str]) -> None:
        self.last_errors = errors
        self.on_result(False)
        log.error("config reload failed; keeping the running config", extra={"config_file": path, "errors": errors})
