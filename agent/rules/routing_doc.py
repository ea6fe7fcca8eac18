"""The "Routing" part of docs/alerting.md, read from prometheus/alertmanager.yml at render time.

Reading the shipped file (rather than describing it by hand) keeps the page true: change a route,
a receiver or an inhibition and the committed doc goes stale, which tests/test_alerting_doc.py
reports. To say which of our alerts take which route, this module walks the routing tree the way
Alertmanager does (first matching child wins unless it has `continue`; settings are inherited);
the test checks that walk against `amtool config routes test` for every alert.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Alertmanager's defaults for a route that sets none, and its root
ROUTE_DEFAULTS = {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"}
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')
_PLACEHOLDER = re.compile(r"^\$\{(\w+)\}$")


def default_alertmanager_path() -> Path:
    """prometheus/alertmanager.yml of this source checkout."""
    return Path(__file__).resolve().parents[2] / "prometheus" / "alertmanager.yml"


def load_alertmanager(path: str | Path | None = None) -> dict[str, Any]:
    """The Alertmanager config as data (its `${...}` placeholders are plain strings to YAML)."""
    return yaml.safe_load(Path(path or default_alertmanager_path()).read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str          # = != =~ !~
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Alertmanager's semantics: an absent label is the empty string; regexes are anchored."""
        have = labels.get(self.name, "")
        if self.op in ("=", "!="):
            return (have == self.value) == (self.op == "=")
        return (re.fullmatch(f"(?:{self.value})", have) is not None) == (self.op == "=~")

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    """`severity="critical"`, `service=~"auth|mfa"`, or the same unquoted."""
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(f"not a matcher: {text!r}")
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return Matcher(name, op, value)


def matchers_of(block: Mapping[str, Any], prefix: str = "") -> list[Matcher]:
    """A route's (or an inhibition side's) matchers: `matchers`, plus the older `match` and `match_re`."""
    out = [parse_matcher(text) for text in block.get(f"{prefix}matchers") or []]
    out += [Matcher(k, "=", str(v)) for k, v in (block.get(f"{prefix}match") or {}).items()]
    out += [Matcher(k, "=~", str(v)) for k, v in (block.get(f"{prefix}match_re") or {}).items()]
    return out


@dataclass(frozen=True, slots=True)
class Route:
    """One node of the routing tree with what it inherits, in the tree's order."""

    path: tuple[int, ...]             # () for the root, (0, 1) for the root's first child's second child
    matchers: tuple[Matcher, ...]     # this node's own
    receiver: str
    group_by: tuple[str, ...]
    timings: tuple[str, str, str]     # group_wait, group_interval, repeat_interval
    continues: bool
    children: tuple[Route, ...]


def build_routes(config: Mapping[str, Any]) -> Route:
    """The routing tree with each node's inherited receiver, grouping and timings filled in."""
    root = config["route"]
    base = {"receiver": root["receiver"], "group_by": tuple(root.get("group_by") or ()),
            **{k: root.get(k, v) for k, v in ROUTE_DEFAULTS.items()}}
    return _route(root, (), base)


def _route(block: Mapping[str, Any], path: tuple[int, ...], parent: Mapping[str, Any]) -> Route:
    own = {"receiver": block.get("receiver", parent["receiver"]),
           "group_by": tuple(block.get("group_by") or parent["group_by"]),
           **{k: block.get(k, parent[k]) for k in ROUTE_DEFAULTS}}
    children = tuple(_route(child, (*path, i), own) for i, child in enumerate(block.get("routes") or []))
    return Route(path, tuple(matchers_of(block)), own["receiver"], own["group_by"],
                 (own["group_wait"], own["group_interval"], own["repeat_interval"]),
                 bool(block.get("continue", False)), children)


def walk(route: Route) -> Iterable[tuple[Route, tuple[Matcher, ...]]]:
    """Every node in tree order, with the matchers of its ancestors and its own."""
    pending: list[tuple[Route, tuple[Matcher, ...]]] = [(route, route.matchers)]
    while pending:
        node, matchers = pending.pop(0)
        yield node, matchers
        pending[0:0] = [(child, matchers + child.matchers) for child in node.children]


def routes_for(route: Route, labels: Mapping[str, str]) -> list[Route]:
    """The nodes an alert with `labels` is notified by, as Alertmanager picks them (amtool's answer)."""
    found: list[Route] = []
    for child in route.children:
        if all(m.matches(labels) for m in child.matchers):
            found.extend(routes_for(child, labels))
            if not child.continues:
                break
    return found or [route]


def describe_receiver(receiver: Mapping[str, Any]) -> str:
    """What a receiver notifies, and where each URL comes from, without printing any URL."""
    parts = []
    for slack in receiver.get("slack_configs") or []:
        channel = f" `{slack['channel']}`" if slack.get("channel") else ""
        source = (f"URL from file `{slack['api_url_file']}`" if slack.get("api_url_file")
                  else "URL in the file" if slack.get("api_url") else "the global Slack URL")
        parts.append(f"Slack{channel} ({source}{_resolved(slack)})")
    for hook in receiver.get("webhook_configs") or []:
        parts.append(f"webhook ({_url_source(hook)}{_resolved(hook)})")
    for key, value in receiver.items():
        if key.endswith("_configs") and key not in ("slack_configs", "webhook_configs"):
            parts.append(f"{key.removesuffix('_configs')} × {len(value or [])}")
    return "; ".join(parts) or "nothing (drops the alerts)"


def _url_source(hook: Mapping[str, Any]) -> str:
    """Where a webhook's URL comes from; one that authenticates with a token from a file has an address in
    the file (no secret: Alertmanager 0.25 webhooks cannot read their URL from a file)."""
    authorization = (hook.get("http_config") or {}).get("authorization") or {}
    if hook.get("url_file"):
        return f"URL from file `{hook['url_file']}`"
    if placeholder := _PLACEHOLDER.match(str(hook.get("url", ""))):
        return f"URL from `${placeholder.group(1)}`"
    if authorization.get("credentials_file"):
        return f"address in the file, bearer token from file `{authorization['credentials_file']}`"
    return "URL in the file"


def _resolved(integration: Mapping[str, Any]) -> str:
    # Slack and webhooks send resolved notices by default unless send_resolved is false
    return "" if integration.get("send_resolved", True) else ", no resolved notice"


def _code(items: Iterable[object], empty: str) -> str:
    text = ", ".join(f"`{item}`" for item in items)
    return text or empty


def routing_lines(config: Mapping[str, Any], alerts: list[tuple[str, dict[str, str]]], source: str) -> list[str]:
    """The Routing section: route tree (with which of `alerts` take each route), receivers, inhibitions.

    `alerts` are (alertname, the labels its rule sets); `source` is the config's link target."""
    return [*route_lines(build_routes(config), alerts, source), "", *receiver_lines(config), "",
            *inhibition_lines(config)]


def route_lines(root: Route, alerts: list[tuple[str, dict[str, str]]], source: str) -> list[str]:
    taken: dict[tuple[int, ...], list[str]] = {}
    for name, labels in alerts:
        for node in routes_for(root, {"alertname": name, **labels}):
            entry = f"{name} ({labels.get('severity', '-')})"
            if entry not in taken.setdefault(node.path, []):
                taken[node.path].append(entry)
    lines = ["## Routing", "",
             f"Read from [{source.removeprefix('../')}]({source}) when this page is rendered. Alerts are grouped by "
             f"{_code(root.group_by, 'nothing')} (one notification per distinct set of those labels). "
             "The first matching route at each level takes the alert; a route without its own "
             "receiver or timings inherits its parent's.", "",
             "| route (matchers, outermost first) | receiver | wait / interval / repeat | our alerts that take it |",
             "|---|---|---|---|"]
    for node, matchers in walk(root):
        where = " → ".join(f"`{m}`" for m in matchers) if node.path else "default (no route below matches)"
        lines.append(_row(where, f"`{node.receiver}`", " / ".join(node.timings),
                          ", ".join(taken.get(node.path, [])) or "none"))
    extra = sorted({m.name for node, _ in walk(root) for m in node.matchers} - {"severity", "alertname"})
    if extra:
        lines += ["", f"Routes also match on {_code(extra, '')}. A probe alert carries its target's labels "
                  "(`targets[].labels` in config.yaml) on top of its rule's, so a target labelled that way "
                  "takes those routes too; the event alerts that need it set it in their rule."]
    return lines


def receiver_lines(config: Mapping[str, Any]) -> list[str]:
    described = [(r["name"], describe_receiver(r)) for r in config.get("receivers") or []]
    literal = any("URL in the file" in text for _, text in described)
    note = ("Some URLs are written in the file itself (\"URL in the file\"): move them to secret files "
            "before committing it." if literal else "No secret is in the file: Alertmanager reads each from a "
            "file (see its header); the webhook addresses it names are yours to set.")
    return ["### Receivers", "", "| receiver | notifies |", "|---|---|",
            *(_row(f"`{name}`", text) for name, text in described), "", note]


def inhibition_lines(config: Mapping[str, Any]) -> list[str]:
    rules = config.get("inhibit_rules") or []
    lines = ["### Inhibitions", "",
             "| while an alert matching | is firing, silence alerts matching | that have the same |", "|---|---|---|"]
    for rule in rules:
        lines.append(_row(_code(matchers_of(rule, "source_"), "anything"), _code(matchers_of(rule, "target_"),
                          "anything"), _code(rule.get("equal") or [], "(no label needed)")))
    if any("target" in (rule.get("equal") or []) for rule in rules):
        lines += ["", "Alertmanager counts a label that both alerts lack as equal: the event and agent alerts "
                  "have no `target`, so an `equal` on `target` holds between two of them."]
    return lines


def _row(*cells: str) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
