"""The `sentry:` block: which Sentry projects and public keys may send to the agent's Sentry endpoints
(`POST /api/{project_id}/envelope/`, `/store/`), the browser origins allowed by CORS, and the bound on
a decompressed envelope.

    sentry:
      enabled: true                       # false: the endpoints answer 404
      projects:                           # none: every envelope is refused (403)
        - id: 1                           # the number at the end of the DSN
          keys: ["${SENTRY_PUBLIC_KEY}"]  # the DSN's public keys (`${ENV}` expanded, or {value_file: PATH})
      allowed_origins: []                 # browser pages allowed to send (https://app.example.com; "*": any)
      max_envelope_bytes: 20971520        # decompressed; larger: 413
      source_maps_dir: null               # the releases' JavaScript source maps (sourcemaps.py); null: none
      max_monitors: 100                   # cron monitors tracked besides the declared ones (check_in items)
      monitors:                           # cron monitors whose schedule the operator declares (crons.py)
        nightly-export:
          schedule: {type: crontab, value: "0 3 * * *"}   # or {type: interval, value: 6, unit: hour}
          checkin_margin: 5               # minutes a check-in may be late (default 1)
          max_runtime: 60                 # minutes a run may stay in progress (default 30)
          timezone: Europe/Vienna         # of the crontab (default UTC)

Every error names its YAML path (`sentry.projects[0].keys[1]: ...`); unknown keys are errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from agent.config.node import Node, join
from agent.config.origins import parse_origin
from agent.sentry.crons import DEFAULT_MAX_MONITORS, MAX_MAX_MONITORS, Schedule, parse_schedule, parse_slug
from agent.sentry.items import ItemError

MIB = 1024 * 1024
DEFAULT_MAX_ENVELOPE_BYTES = 20 * MIB
KEY_MAX = 256                              # as agent/sentry/auth.py reads keys
_KEY = re.compile(r"[A-Za-z0-9._~+-]+")


@dataclass(frozen=True, slots=True)
class SentryProject:
    id: str                                # digits, no leading zeros (as auth.py compares them)
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SentryConfig:
    enabled: bool = True
    projects: tuple[SentryProject, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES
    source_maps_dir: str | None = None     # <dir>/<release>/<url path>.map, or maps carrying a debug_id
    max_monitors: int = DEFAULT_MAX_MONITORS
    monitors: tuple[tuple[str, Schedule], ...] = ()       # (slug, schedule) of sentry.monitors

    def keys(self) -> Mapping[str, frozenset[str]]:
        """project id -> its public keys, as agent/sentry/auth.py's check_key takes them."""
        return MappingProxyType({project.id: frozenset(project.keys) for project in self.projects})

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin.rstrip("/").lower() in self.allowed_origins


def _key(node: Node, key: str, index: int, item: object) -> str | None:
    """One public key: the key itself (`${ENV}` expanded) or {value_file: PATH} (or {value: ...})."""
    errors_before = len(node.errors)
    path = join(join(node.path, key), index)
    holder = Node(item if isinstance(item, dict) else {"value": item}, path, node.errors)
    value = holder.secret("value")
    if isinstance(item, dict):
        if value is None and len(node.errors) == errors_before:
            holder.error("needs value or value_file")
        holder.finish()
    if value is None:
        if not isinstance(item, dict) and len(node.errors) == errors_before:
            node.error("must be a string", f"{key}[{index}]")
        return None
    if not 0 < len(value) <= KEY_MAX or not _KEY.fullmatch(value):
        if len(node.errors) == errors_before:           # an unset variable is already reported
            node.error(f"must be a Sentry public key: 1 to {KEY_MAX} letters, digits, '.', '_', '~', '+' or '-'",
                       f"{key}[{index}]")
        return None
    return value


def _project(node: Node) -> SentryProject | None:
    project_id = node.int("id", required=True, minimum=1, maximum=10**19)
    keys = [k for i, item in node.items("keys") if (k := _key(node, "keys", i, item)) is not None]
    if not node.has("keys"):
        node.error("is required (the public keys of the project's DSNs)", "keys")
    elif not keys and node.data.get("keys") == []:
        node.error("must list at least one key", "keys")
    node.finish()
    if project_id is None or not keys:
        return None
    return SentryProject(id=str(project_id), keys=tuple(dict.fromkeys(keys)))


def _origin(node: Node, index: int, text: str) -> str | None:
    return parse_origin(node, f"allowed_origins[{index}]", text)


MONITOR_KEYS = frozenset({"schedule", "checkin_margin", "max_runtime", "timezone"})


def _monitors(node: Node) -> tuple[tuple[str, Schedule], ...]:
    """`monitors:` slug -> Sentry's monitor_config shape, read by the same parser as a check-in's."""
    data = node.raw("monitors", {})
    if not isinstance(data, dict):
        node.error("must be a mapping of monitor slug to {schedule, checkin_margin, max_runtime, timezone}",
                   "monitors")
        return ()
    if len(data) > MAX_MAX_MONITORS:
        node.error(f"must declare at most {MAX_MAX_MONITORS} monitors", "monitors")
        return ()
    out = []
    for raw_slug, block in data.items():
        where = f"monitors.{raw_slug}"
        try:
            slug = parse_slug(raw_slug)
            if isinstance(block, dict) and (unknown := sorted(str(k) for k in block if k not in MONITOR_KEYS)):
                raise ItemError(f"unknown key {unknown[0]} (known: {', '.join(sorted(MONITOR_KEYS))})")
            schedule = parse_schedule(block, join(node.path, where))
        except ItemError as err:
            message = str(err)
            prefix = join(node.path, where)
            node.errors.append(message if message.startswith(prefix) else f"{prefix}: {message}")
            continue
        out.append((slug, schedule))
    return tuple(out)


def _directory(node: Node, key: str) -> str | None:
    """An existing directory (checked at load, so a typo is exit 2, not frames silently left minified)."""
    text = node.str(key)
    if text is not None and not Path(text).is_dir():
        node.error(f"is not a directory: {text}", key)
        return None
    return text


def parse_sentry(node: Node) -> SentryConfig:
    base = SentryConfig()
    enabled = node.bool("enabled", base.enabled)
    projects: list[SentryProject] = []
    seen: dict[str, int] = {}
    for index, item in node.items("projects"):
        project = _project(Node(item, join(join(node.path, "projects"), index), node.errors))
        if project is None:
            continue
        if project.id in seen:
            node.error(f"project {project.id} is already listed (projects[{seen[project.id]}])",
                       f"projects[{index}].id")
            continue
        seen[project.id] = index
        projects.append(project)
    origins = [o for i, text in enumerate(node.str_list("allowed_origins"))
               if (o := _origin(node, i, text)) is not None]
    config = SentryConfig(
        enabled=enabled, projects=tuple(projects), allowed_origins=tuple(dict.fromkeys(origins)),
        max_envelope_bytes=node.int("max_envelope_bytes", base.max_envelope_bytes, minimum=64 * 1024,
                                    maximum=1024 * MIB),
        max_monitors=node.int("max_monitors", base.max_monitors, minimum=0, maximum=MAX_MAX_MONITORS),
        monitors=_monitors(node), source_maps_dir=_directory(node, "source_maps_dir"))
    node.finish()
    return config
