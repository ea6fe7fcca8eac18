"""A collector's options read the way the config loader reads them: the kind's keys, then
`finish()` with the common target keys allowed, every error named by its YAML path."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from agent.config.load import TARGET_KEYS
from agent.config.node import Node


def parse_kind(module: ModuleType, mapping: dict[str, Any], path: str = "targets[0]") -> tuple[Any, list[str]]:
    errors: list[str] = []
    node = Node(mapping, path, errors)
    options = module.parse_options(node)
    node.finish(allowed_extra=TARGET_KEYS)
    return options, errors
