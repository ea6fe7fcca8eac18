"""Probe kinds: one module per kind, each with KIND, Options, parse_options() and Collector."""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

KINDS = ("http", "tcp", "dns", "tls", "websocket")
# what each kind probes: a URL (http, websocket) or a host:port address
URL_KINDS = frozenset({"http", "websocket"})


@cache
def kind_module(kind: str) -> ModuleType:
    """The module implementing `kind` (imported on first use)."""
    if kind not in KINDS:
        raise KeyError(kind)
    return importlib.import_module(f"agent.collectors.{kind}")
