"""The limits event validation enforces; the config builds one `Limits` (frozen, hashable: the
compiled validators are cached per value)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_batch: int = 1000
    max_future_skew: float = 300.0             # seconds
    max_past_age: float = 30 * 86400.0         # seconds
    strict: bool = False                       # reject event names the catalog does not list
    max_properties: int = 100
    max_string_length: int = 4096              # longer is an error, never silently cut
    max_depth: int = 5                         # nesting of object/array property values
    max_name_length: int = 128                 # event and property names


DEFAULT_LIMITS = Limits()
