"""Reading untyped YAML into typed values, collecting every error with its YAML path.

A `Node` wraps one mapping of the document. Each accessor returns the typed value (or the
default) and records an error naming the path instead of raising, so `check-config` can
report every mistake in one run. `Node.finish()` reports the keys nobody asked for.
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING: Any = object()
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ConfigError(Exception):
    """The configuration is invalid; `errors` lists one `path: message` per problem."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def parse_duration(text: str) -> float:
    """'500ms', '15s', '5m', '1h30m' -> seconds. Raises ValueError on anything else."""
    if not isinstance(text, str) or not _DURATION_RE.match(text.strip()):
        raise ValueError(f"invalid duration {text!r} (use e.g. 500ms, 15s, 5m, 1h)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text.strip()))


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Node:
    """One mapping of the config document, read key by key."""

    def __init__(self, data: Any, path: str, errors: list[str]):
        self.path = path
        self.errors = errors
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            self.error(f"must be a mapping, got {type(data).__name__}")
            data = {}
        self.data: Mapping[str, Any] = data
        self._seen: set[str] = set()

    def error(self, message: str, key: str | int | None = None) -> None:
        where = join(self.path, key) if key is not None else (self.path or "<root>")
        self.errors.append(f"{where}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        return self.data.get(key, default)

    def _typed(self, key: str, kinds: tuple[type, ...], label: str, default: Any, required: bool) -> Any:
        self._seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                self.error("is required", key)
            return default
        value = self.data[key]
        if isinstance(value, bool) and bool not in kinds:
            self.error(f"must be {label}, got boolean", key)
            return default
        if not isinstance(value, kinds):
            self.error(f"must be {label}, got {type(value).__name__}", key)
            return default
        return value

    # the accessors below are named after the types they read, so later annotations in this class spell the
    # builtins `builtins.str`, `builtins.int` and `builtins.bool`
    def str(self, key: str, default: Any = None, *, required: bool = False, choices: tuple[str, ...] = ()) -> Any:
        value = self._typed(key, (str,), "a string", default, required)
        if choices and value is not None and value not in choices:
            self.error(f"must be one of {', '.join(choices)}, got {value!r}", key)
            return default
        return value

    def bool(self, key: builtins.str, default: builtins.bool) -> builtins.bool:
        return self._typed(key, (bool,), "true or false", default, False)

    def int(self, key: builtins.str, default: Any = None, *, minimum: builtins.int | None = None,
            maximum: builtins.int | None = None, required: builtins.bool = False) -> Any:
        value = self._typed(key, (int,), "an integer", default, required)
        return self._bounded(key, value, default, minimum, maximum)

    def number(self, key: builtins.str, default: Any = None, *, minimum: float | None = None,
               maximum: float | None = None) -> Any:
        value = self._typed(key, (int, float), "a number", default, False)
        return self._bounded(key, value, default, minimum, maximum)

    def _bounded(self, key: builtins.str, value: Any, default: Any, minimum: Any, maximum: Any) -> Any:
        if value is None or value is default:
            return value
        if minimum is not None and value < minimum:
            self.error(f"must be at least {minimum}, got {value}", key)
            return default
        if maximum is not None and value > maximum:
            self.error(f"must be at most {maximum}, got {value}", key)
            return default
        return value

    def duration(self, key: builtins.str, default: float | None = None, *, required: builtins.bool = False) -> Any:
        value = self._typed(key, (str, int, float), "a duration such as 500ms, 15s or 5m", default, required)
        if value is None or value is default:
            return value
        if isinstance(value, (int, float)):
            self.error(f"must be a duration with a unit such as 15s, got {value}", key)
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.error(str(exc), key)
            return default
        if seconds <= 0:
            self.error("must be greater than zero", key)
            return default
        return seconds

    def str_list(self, key: builtins.str, default: tuple[builtins.str, ...] = ()) -> tuple[builtins.str, ...]:
        value = self._typed(key, (list,), "a list of strings", None, False)
        if value is None:
            return default
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error(f"must be a string, got {type(item).__name__}", f"{key}[{i}]")
                continue
            out.append(item)
        return tuple(out)

    def str_map(self, key: builtins.str) -> dict[builtins.str, builtins.str]:
        value = self._typed(key, (Mapping,), "a mapping of strings", None, False)
        if value is None:
            return {}
        out: dict[builtins.str, builtins.str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or isinstance(v, (dict, list)) or v is None:
                self.error("must be a string", f"{key}.{k}")
                continue
            out[k] = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def regex(self, key: builtins.str) -> re.Pattern[builtins.str] | None:
        value = self.str(key)
        if value is None:
            return None
        try:
            return re.compile(value)
        except re.error as exc:
            self.error(f"invalid regular expression: {exc}", key)
            return None

    def regex_list(self, key: builtins.str) -> tuple[re.Pattern[builtins.str], ...]:
        out = []
        for i, text in enumerate(self.str_list(key)):
            try:
                out.append(re.compile(text))
            except re.error as exc:
                self.error(f"invalid regular expression: {exc}", f"{key}[{i}]")
        return tuple(out)

    def secret(self, key: builtins.str) -> builtins.str | None:
        """A secret: `key: value` (with `${ENV_VAR}` references expanded) or `key_file: path`.

        A reference to an unset variable or an unreadable file is an error naming the key.
        """
        value = self.str(key)
        file_key = f"{key}_file"
        path = self.str(file_key)
        if value is not None and path is not None:
            self.error(f"set either {key} or {file_key}, not both", key)
            return None
        if path is not None:
            try:
                with open(path, encoding="utf-8") as fh:
                    return fh.read().strip()
            except OSError as exc:
                self.error(f"cannot read: {exc.strerror}", file_key)
                return None
        if value is None:
            return None

        def expand(match: re.Match[builtins.str]) -> builtins.str:
            name = match.group(1)
            if name not in os.environ:
                self.error(f"environment variable {name} is not set", key)
                return ""
            return os.environ[name]

        return _ENV_REF.sub(expand, value)

    def secret_list(self, key: builtins.str, env_name: builtins.str, environ: Mapping[builtins.str, builtins.str],
                    min_length: builtins.int = 16) -> tuple[builtins.str, ...]:
        """A list of secrets (API keys, tokens): `env_name` (comma-separated) when set, else the list at
        `key`, each item a secret (`${ENV}` or `*_file`). Each must be at least `min_length` characters."""
        if environ.get(env_name):
            self.raw(key)
            values = [v.strip() for v in environ[env_name].split(",")]
            if any(len(v) < min_length for v in values):
                self.errors.append(f"{env_name}: each value must be at least {min_length} characters")
            return tuple(v for v in values if v)
        values = []
        for i, item in self.items(key):
            # an item is the secret itself (`${ENV}` expanded), or {value_file: PATH} (or {value: ...})
            errors_before = len(self.errors)
            holder = Node(item if isinstance(item, dict) else {"value": item}, join(self.path, key) + f"[{i}]",
                          self.errors)
            value = holder.secret("value")
            if isinstance(item, dict):
                if value is None and len(self.errors) == errors_before:
                    holder.error("needs value or value_file")
                holder.finish()
            if value is not None and len(value) < min_length:
                self.error(f"must be at least {min_length} characters", f"{key}[{i}]")
            if value:
                values.append(value)
        return tuple(values)

    def child(self, key: builtins.str) -> Node:
        self._seen.add(key)
        return Node(self.data.get(key), join(self.path, key), self.errors)

    def items(self, key: builtins.str) -> list[tuple[builtins.int, Any]]:
        """The elements of a list value, with their index (an error if it is not a list)."""
        value = self._typed(key, (list,), "a list", [], False)
        return list(enumerate(value))

    def map_of(self, key: builtins.str, parse: Callable[[Node, builtins.str], T]) -> dict[builtins.str, T]:
        value = self._typed(key, (Mapping,), "a mapping", {}, False)
        out: dict[builtins.str, T] = {}
        for name, item in value.items():
            out[str(name)] = parse(Node(item, join(join(self.path, key), str(name)), self.errors), str(name))
        return out

    def finish(self, allowed_extra: tuple[builtins.str, ...] = ()) -> None:
        """Report every key that no accessor read: unknown keys are errors."""
        for key in self.data:
            if key not in self._seen and key not in allowed_extra:
                self.error("unknown key", str(key))
