"""Probe modules: the `modules:` block, a `modules_file:` in blackbox_exporter's format, and the built-ins.

A module is written in one of two forms, told apart by its first key:

    api:                          # the agent's own flat form
      kind: http
      timeout: 2s
      valid_status_codes: [200]

    http_post_2xx:                # blackbox_exporter 0.23's form, unchanged
      prober: http
      timeout: 5s
      http: {method: POST}        # the prober's block: blackbox's keys (see docs/blackbox.md)

In blackbox's form the prober's block is read by the kind's `blackbox_options` (collectors/kinds.py), which
knows blackbox's key names and semantics (tls_config, a tcp `send` ending in a newline, dns' ANY query
type ...); a blackbox key the agent does not implement is an error naming it, never ignored. The other
probers' blocks are validated too, as blackbox validates them, and otherwise unused.

`modules_file: blackbox.yml` (relative to the config file) loads a blackbox_exporter module file through
the same parser; a name defined there and under `modules:` is an error naming both.

Why the built-ins are a shipped file (collectors/blackbox_example.yml, a byte-for-byte copy of blackbox
0.23's blackbox.yml, which Debian installs as /etc/prometheus/blackbox.yml) rather than code: they are
then blackbox's ten modules by construction, read through the same parser as any user's file, and a test
compares the file with Debian's. The agent's extras (`tls_connect`, `websocket_connect`: a kind's
`builtin_module` not in that file) are added after them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from agent.collectors.kinds import KINDS
from agent.config.node import Node, join

BLACKBOX_EXAMPLE = Path(__file__).resolve().parent.parent / "collectors" / "blackbox_example.yml"
MODULE_KEYS = ("kind", "timeout")
BLACKBOX_PROBERS = ("http", "tcp", "dns", "icmp", "grpc")       # blackbox_exporter 0.23's probers
BLACKBOX_MODULE_KEYS = ("prober", "timeout", *BLACKBOX_PROBERS)


@dataclass(frozen=True, slots=True)
class Module:
    """Reusable probe settings, used by targets and by /probe?module=."""

    name: str
    kind: str
    timeout: float | None         # None: the target's / defaults' timeout applies
    raw: Mapping[str, Any]        # the kind-specific keys (blackbox: the prober's block), merged under a target's
    options: Any
    blackbox: bool = False        # written in blackbox's form: a target using it writes blackbox's keys too

    def parse_options(self, node: Node) -> Any:
        """A target's options on top of this module's, read in the module's form."""
        kind = KINDS[self.kind]
        return kind.blackbox_options(node) if self.blackbox else kind.parse_options(node)


def parse_module(node: Node, name: str) -> Module | None:
    """One module in either form; errors are recorded on `node`."""
    if "prober" in node.data or ("kind" not in node.data and any(k in node.data for k in BLACKBOX_PROBERS)):
        if "kind" in node.data:
            node.error("a module has either prober: (blackbox_exporter's form) or kind: (the agent's), not both",
                       "kind")
        return _parse_blackbox_module(node, name)
    return _parse_flat_module(node, name)


def _parse_flat_module(node: Node, name: str) -> Module | None:
    kind = node.str("kind", required=True, choices=tuple(KINDS))
    timeout = node.duration("timeout")
    if kind is None:
        node.finish(allowed_extra=tuple(node.data))   # kind-specific keys unknowable without a kind
        return None
    raw = {k: v for k, v in node.data.items() if k not in MODULE_KEYS}
    options = KINDS[kind].parse_options(node)
    node.finish(allowed_extra=MODULE_KEYS)
    return Module(name=name, kind=kind, timeout=timeout, raw=raw, options=options)


def _parse_blackbox_module(node: Node, name: str) -> Module | None:
    prober = node.str("prober", required=True, choices=BLACKBOX_PROBERS)
    timeout = node.duration("timeout")
    options = None
    for block in BLACKBOX_PROBERS:
        if block != prober and not node.has(block):
            continue
        child = node.child(block)
        if block in KINDS:
            parsed = KINDS[block].blackbox_options(child)
            child.finish()
            if block == prober:
                options = parsed
        else:
            node.error("not supported by loom-agent (blackbox_exporter prober)", block)
    node.finish()
    if prober is None or prober not in KINDS:
        return None
    raw = node.data.get(prober)           # not a mapping: an error already recorded by the prober's Node
    return Module(name=name, kind=prober, timeout=timeout, raw=dict(raw) if isinstance(raw, Mapping) else {},
                  options=options, blackbox=True)


def parse_modules(root: Node, base_dir: str) -> dict[str, Module | None]:
    """The built-ins, then `modules_file:`, then `modules:` (a module of the config's own wins over a
    built-in of the same name; one in both the file and `modules:` is an error)."""
    own = root.map_of("modules", parse_module)
    path = root.str("modules_file")
    from_file: dict[str, Module | None] = {}
    if path is not None:
        full = path if os.path.isabs(path) else os.path.join(base_dir, path)
        from_file = read_modules_file(full, root.errors, f"modules_file ({path}): ")
        for name in sorted(set(own) & set(from_file)):
            root.error(f"defined both here and in modules_file {path}; rename one", join("modules", name))
    return {**builtin_modules(), **from_file, **own}


def read_modules_file(path: str, errors: list[str], prefix: str) -> dict[str, Module | None]:
    """A blackbox_exporter module file (`modules:` and nothing else); errors are appended with `prefix`."""
    found: list[str] = []
    try:
        with open(path, encoding="utf-8") as fh:
            document = yaml.safe_load(fh)
    except OSError as exc:
        errors.append(f"{prefix}cannot read: {exc.strerror}")
        return {}
    except UnicodeDecodeError as exc:
        errors.append(f"{prefix}not UTF-8 text (byte {exc.start})")
        return {}
    except yaml.YAMLError as exc:
        errors.append(f"{prefix}invalid YAML: {exc}")
        return {}
    node = Node(document, "", found)
    modules = node.map_of("modules", parse_module)
    node.finish()
    errors.extend(prefix + error for error in found)
    return modules


@cache
def _builtins() -> tuple[Module, ...]:
    errors: list[str] = []
    with open(BLACKBOX_EXAMPLE, encoding="utf-8") as fh:
        document = yaml.safe_load(fh)
    out = {}
    for name, item in document["modules"].items():
        if item.get("prober") not in KINDS:
            continue        # a prober this build has no kind for (none since grpc and icmp landed)
        module = parse_module(Node(item, f"modules.{name}", errors), name)
        if module is not None:
            out[name] = module
    for kind in KINDS.values():
        if kind.builtin_module is not None and kind.builtin_module not in out:
            options = kind.parse_options(Node({}, f"modules.{kind.builtin_module}", errors))
            out[kind.builtin_module] = Module(kind.builtin_module, kind.name, None, {}, options)
    assert not errors, errors
    return tuple(out.values())


def builtin_modules() -> dict[str, Module]:
    """blackbox_exporter's ten example modules, then the agent's extras, so `/probe?module=http_post_2xx`
    works with no config."""
    return {module.name: module for module in _builtins()}
