"""The agent's configuration: YAML in, typed and validated `Config` out.

Read once per (re)load by `load_config()`. Every error names its YAML path
(`targets[2].timeout: must be shorter than interval (15s)`); unknown keys are errors.
Environment variables override the listen address (LOOM_AGENT_LISTEN); secrets in the
file may reference the environment (`${VAR}`) or a file (`*_file`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from agent.collectors.base import ProbeTarget, split_host_port
from agent.collectors.kinds import KINDS, ProbeKind
from agent.config.api import ApiConfig, parse_api
from agent.config.modules import Module, parse_modules
from agent.config.node import ConfigError, Node, format_duration
from agent.custom_metrics.config import CustomMetricsConfig, parse_custom_metrics
from agent.error_tracking.config import ErrorsConfig, parse_errors
from agent.events.config import EventsConfig, parse_events
from agent.events.privacy_config import PrivacyConfig, parse_privacy
from agent.flags.config import FlagsConfig, parse_flags
from agent.otlp.config import TelemetryConfig, parse_telemetry
from agent.posthog.config import PosthogConfig, parse_posthog
from agent.receiver.config import ReceiverConfig, parse_receiver
from agent.rules.thresholds import Thresholds, parse_thresholds
from agent.sentry.config import SentryConfig, parse_sentry
from agent.store.config import RetentionConfig, StoreConfig, parse_retention, parse_store

DEFAULT_LISTEN = "127.0.0.1:9464"
ENV_LISTEN = "LOOM_AGENT_LISTEN"

TARGET_KEYS = ("name", "kind", "url", "address", "interval", "timeout", "retries", "labels", "module")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# labels the agent itself sets on probe metrics; a static label may not shadow them
RESERVED_LABELS = frozenset({"target", "phase", "result", "reason", "version", "le", "quantile",
                             "job", "instance", "kind", "ip", "serving_status",
                             "fingerprint_sha256", "subject", "issuer", "subjectalternative"})


@dataclass(frozen=True, slots=True)
class Defaults:
    interval: float = 15.0
    timeout: float = 5.0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    max_concurrency: int = 64
    slot_grid: float = 0.02       # start times rounded up to this grid (0 = off)


@dataclass(frozen=True, slots=True)
class Config:
    listen: tuple[str, int] = ("127.0.0.1", 9464)
    defaults: Defaults = Defaults()
    scheduler: SchedulerConfig = SchedulerConfig()
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    api: ApiConfig = ApiConfig()
    alerting: Thresholds = Thresholds()
    store: StoreConfig = StoreConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    retention: RetentionConfig = RetentionConfig()
    custom_metrics: CustomMetricsConfig = CustomMetricsConfig()
    errors: ErrorsConfig = ErrorsConfig()
    sentry: SentryConfig = SentryConfig()
    posthog: PosthogConfig = PosthogConfig()
    flags: FlagsConfig = FlagsConfig()
    otlp_receiver: ReceiverConfig = ReceiverConfig()
    modules: Mapping[str, Module] = field(default_factory=dict)
    targets: tuple[ProbeTarget, ...] = ()
    source: str | None = None     # the file it was read from


def load_config(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and type the file at `path`. Raises ConfigError listing every problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    return parse_config(text, source=path, environ=os.environ if environ is None else environ)


def parse_config(text: str, source: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source or '<config>'}: invalid YAML: {exc}"]) from exc
    errors: list[str] = []
    root = Node(document, "", errors)
    base_dir = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
    config = _parse_root(root, environ or {}, base_dir)
    root.finish()
    if errors:
        raise ConfigError(errors)
    return Config(**{**config, "source": source})


def _parse_root(root: Node, environ: Mapping[str, str], base_dir: str) -> dict[str, Any]:
    listen = _parse_listen(root, environ)
    defaults = _parse_defaults(root.child("defaults"))
    scheduler = _parse_scheduler(root.child("scheduler"))
    telemetry = parse_telemetry(root.child("telemetry"))
    events = parse_events(root.child("events"), environ)
    api = parse_api(root.child("api"), environ)
    alerting = parse_thresholds(root.child("alerting"))
    store = parse_store(root.child("store"), base_dir, environ)
    privacy = parse_privacy(root.child("privacy"), environ)
    retention = parse_retention(root.child("retention"))
    custom_metrics = parse_custom_metrics(root.child("custom_metrics"))
    errors = parse_errors(root.child("errors"))
    sentry = parse_sentry(root.child("sentry"))
    posthog = parse_posthog(root.child("posthog"))
    flags = parse_flags(root.child("flags"), environ)
    otlp_receiver = parse_receiver(root.child("otlp_receiver"), environ, listen, telemetry.otlp.endpoint)
    if store.driver == "postgres" and privacy.hmac_key is None:
        root.error("is required with store.driver postgres: every agent sharing the database must pseudonymize "
                   "with the same key (or set LOOM_AGENT_HMAC_KEY)", "privacy.hmac_key")
    modules = parse_modules(root, base_dir)
    targets = _parse_targets(root, modules, defaults)
    return dict(listen=listen, defaults=defaults, scheduler=scheduler, telemetry=telemetry, events=events,
                api=api, alerting=alerting, store=store, privacy=privacy, retention=retention, errors=errors,
                sentry=sentry, posthog=posthog, flags=flags, custom_metrics=custom_metrics, modules=modules,
                targets=targets, otlp_receiver=otlp_receiver)


def _parse_listen(root: Node, environ: Mapping[str, str]) -> tuple[str, int]:
    from_file = root.str("listen", DEFAULT_LISTEN)
    text, where = (environ[ENV_LISTEN], ENV_LISTEN) if environ.get(ENV_LISTEN) else (from_file, "listen")
    try:
        return split_host_port(text)
    except ValueError as exc:
        root.errors.append(f"{where}: {exc}")
        return split_host_port(DEFAULT_LISTEN)


def _parse_defaults(node: Node) -> Defaults:
    base = Defaults()
    d = Defaults(interval=node.duration("interval", base.interval),
                 timeout=node.duration("timeout", base.timeout),
                 retries=node.int("retries", base.retries, minimum=0, maximum=10))
    node.finish()
    return d


def _parse_scheduler(node: Node) -> SchedulerConfig:
    base = SchedulerConfig()
    grid = node.raw("slot_grid")
    no_grid = grid is not False and grid in (0, "0", "0s")
    s = SchedulerConfig(max_concurrency=node.int("max_concurrency", base.max_concurrency, minimum=1, maximum=10000),
                        slot_grid=0.0 if no_grid else node.duration("slot_grid", base.slot_grid))
    if s.slot_grid > 1.0:
        node.error("must be at most 1s (probe phases move by up to one step)", "slot_grid")
    node.finish()
    return s


def _parse_targets(root: Node, modules: Mapping[str, Module | None], defaults: Defaults) -> tuple[ProbeTarget, ...]:
    targets: list[ProbeTarget] = []
    seen: dict[str, int] = {}
    for index, item in root.items("targets"):
        node = Node(item, f"targets[{index}]", root.errors)
        target = _parse_target(node, modules, defaults)
        if target is None:
            continue
        if target.name in seen:
            node.error(f"duplicate target name {target.name!r} (also targets[{seen[target.name]}])", "name")
            continue
        seen[target.name] = index
        targets.append(target)
    return tuple(targets)


def _parse_target(node: Node, modules: Mapping[str, Module | None], defaults: Defaults) -> ProbeTarget | None:
    name = node.str("name", required=True)
    if name is not None and not _NAME_RE.match(name):
        node.error("must be 1-128 letters, digits, '_', '.', ':' or '-', starting with a letter or digit", "name")
    module = _target_module(node, modules)
    kind = node.str("kind", choices=tuple(KINDS), required=module is None)
    if module is not None:
        if kind is not None and kind != module.kind:
            node.error(f"is {kind!r} but module {module.name!r} is {module.kind!r}", "kind")
        kind = module.kind
    interval = node.duration("interval", defaults.interval)
    timeout = node.duration("timeout", module.timeout if module and module.timeout else defaults.timeout)
    if timeout is not None and interval is not None and timeout >= interval:
        node.error(f"must be shorter than interval ({format_duration(interval)})", "timeout")
    retries = node.int("retries", defaults.retries, minimum=0, maximum=10)
    labels = _parse_labels(node)
    url, address = _parse_endpoint(node, kind)
    if kind is None:
        node.finish(allowed_extra=tuple(node.data))
        return None
    merged = {**(module.raw if module else {}), **{k: v for k, v in node.data.items() if k not in TARGET_KEYS}}
    option_node = Node(merged, node.path, node.errors)
    options = module.parse_options(option_node) if module is not None else KINDS[kind].parse_options(option_node)
    option_node.finish(allowed_extra=TARGET_KEYS)
    node.finish(allowed_extra=tuple(merged))
    if name is None:
        return None
    return ProbeTarget(name=name, kind=kind, url=url, address=address, interval=interval, timeout=timeout,
                       retries=retries, labels=labels, options=options, module=module.name if module else None)


def _target_module(node: Node, modules: Mapping[str, Module | None]) -> Module | None:
    module_name = node.str("module")
    if module_name is None:
        return None
    if module_name not in modules:
        node.error(f"unknown module {module_name!r} (known: {', '.join(sorted(modules)) or 'none'})", "module")
        return None
    return modules[module_name]     # None when the module itself is invalid (already reported)


def _parse_labels(node: Node) -> dict[str, str]:
    labels = node.str_map("labels")
    for key in list(labels):
        if not _LABEL_RE.match(key) or key.startswith("__"):
            node.error("is not a valid Prometheus label name", f"labels.{key}")
            del labels[key]
        elif key in RESERVED_LABELS:
            node.error("is set by the agent itself; choose another label name", f"labels.{key}")
            del labels[key]
    return labels


def _parse_endpoint(node: Node, kind: str | None) -> tuple[str | None, str | None]:
    url = node.str("url")
    address = node.str("address")
    if kind is None:
        return url, address
    if KINDS[kind].target_is_url:
        return _parse_url(node, KINDS[kind], url, address), None
    return None, _parse_address(node, KINDS[kind], url, address)


def _parse_url(node: Node, kind: ProbeKind, url: str | None, address: str | None) -> str | None:
    if address is not None:
        node.error(f"is not used by {kind.name} targets; use url", "address")
    if url is None:
        node.error(f"is required for {kind.name} targets", "url")
    elif not url.startswith(kind.url_schemes):
        node.error(f"must start with {' or '.join(kind.url_schemes)}", "url")
    elif problem := kind.url_problem(url):
        node.error(problem, "url")
    return url


def _parse_address(node: Node, kind: ProbeKind, url: str | None, address: str | None) -> str | None:
    if url is not None:
        node.error(f"is not used by {kind.name} targets; use address ({kind.address_form})", "url")
    if address is None:
        if not kind.address_optional:
            node.error(f"is required for {kind.name} targets ({kind.address_form})", "address")
        return None
    if problem := kind.address_problem(address):
        node.error(problem, "address")
    return address
