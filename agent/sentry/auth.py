"""Who sent a Sentry request: the public key, read the three ways the SDKs send it.

- `X-Sentry-Auth: Sentry sentry_key=KEY, sentry_version=7, sentry_client=sentry.python/2.x` (server
  SDKs; older ones put the same value in `Authorization`);
- `?sentry_key=KEY&sentry_version=7` in the query (the browser SDKs: no custom header, no CORS preflight);
- `dsn` in the envelope header (`http://KEY@host/1`), which also names the project.

When several are present they must agree, and a DSN's project must be the one in the path. Only the
public key is read: a secret key (`sentry_secret`, `KEY:SECRET@` in a DSN) is deprecated in Sentry
and never required or checked here. Pure functions over plain mappings, so the route passes aiohttp's
headers and query as they are (header names are matched case-insensitively).

A refusal is an `AuthError` with its status: 401 when no key was presented at all, 403 when one was
but is malformed, disagrees with another, names another project or is not known. (Sentry itself
answers 403 in both cases; the agent's other ingest routes answer 401 for a missing key, and so does
this one.) Messages never echo a key.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

AUTH_HEADERS = ("x-sentry-auth", "authorization")
SENTRY_SCHEME = "sentry"
KEY_MAX = 256
_KEY = re.compile(r"[A-Za-z0-9._~+-]+")
_PROJECT = re.compile(r"[0-9]{1,20}")


class AuthError(Exception):
    """A request that is not let in: `status` 401 (no key at all) or 403 (a key, but not a good one)."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message)
        self.status, self.message = status, message

    @property
    def missing(self) -> bool:
        return self.status == 401

    def __str__(self) -> str:
        return self.message


class DsnError(ValueError):
    """A DSN that is not `{scheme}://{public_key}@{host}[:port][/path]/{project_id}`."""


@dataclass(frozen=True, slots=True)
class Dsn:
    scheme: str
    public_key: str
    host: str
    port: int | None
    path: str                              # the prefix before /{project_id}, "" for none
    project_id: str

    @property
    def envelope_path(self) -> str:
        """Where an SDK with this DSN posts envelopes."""
        return f"{self.path}/api/{self.project_id}/envelope/"


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= KEY_MAX and _KEY.fullmatch(key) is not None


def _project(value: str) -> str | None:
    """A project id as digits without leading zeros; None when it is not a number."""
    return str(int(value)) if _PROJECT.fullmatch(value) else None


def parse_dsn(value: str) -> Dsn:
    """`http://KEY@127.0.0.1:9464/1` -> Dsn; a secret key after `KEY:` is accepted and ignored."""
    if type(value) is not str or len(value) > 2048:
        raise DsnError("a DSN must be a string of at most 2048 characters")
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise DsnError("the DSN is not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise DsnError("a DSN's scheme must be http or https")
    if not parts.hostname:
        raise DsnError("a DSN needs a host")
    if not parts.username or not _valid_key(parts.username):
        raise DsnError("a DSN needs a public key before the @ (letters, digits, . _ ~ + -)")
    prefix, _, last = parts.path.rstrip("/").rpartition("/")
    project = _project(last)
    if project is None:
        raise DsnError("a DSN's path must end with the project id (a number)")
    return Dsn(parts.scheme, parts.username, parts.hostname, port, prefix, project)


def parse_auth_header(value: str) -> dict[str, str]:
    """`Sentry sentry_key=K, sentry_version=7` -> {"key": "K", "version": "7"}: the `sentry_` prefix
    is optional (Relay reads both). Not the Sentry scheme: {}."""
    scheme, _, params = value.strip().partition(" ")
    if scheme.lower() != SENTRY_SCHEME:
        return {}
    fields: dict[str, str] = {}
    for param in params.split(","):
        name, equals, text = param.partition("=")
        name = name.strip().lower().removeprefix("sentry_")
        if equals and name:
            fields.setdefault(name, text.strip())
    return fields


def _header_values(headers: Mapping[str, str], names: Iterable[str]) -> list[str]:
    """Every value of these headers, matched case-insensitively (a multidict yields each one)."""
    wanted = set(names)
    return [value for name, value in headers.items() if name.lower() in wanted]


def _query_values(query: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(query, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = query.get(name)
    return [] if value is None else [value]


def _presented(headers: Mapping[str, str], query: Mapping[str, str],
               envelope_header: Mapping[str, Any] | None) -> tuple[list[tuple[str, str]], str | None]:
    """(the keys presented, as (where, key)), the project of the envelope's DSN (None without one)."""
    keys: list[tuple[str, str]] = []
    for value in _header_values(headers, AUTH_HEADERS):
        key = parse_auth_header(value).get("key")
        if key is not None:
            keys.append(("the X-Sentry-Auth header", key))
    keys.extend(("the sentry_key query parameter", key) for key in _query_values(query, "sentry_key"))
    dsn_project = None
    raw_dsn = None if envelope_header is None else envelope_header.get("dsn")
    if raw_dsn is not None:
        try:
            dsn = parse_dsn(raw_dsn)
        except DsnError as err:
            raise AuthError(403, f"the envelope header's dsn: {err}") from None
        keys.append(("the envelope header's dsn", dsn.public_key))
        dsn_project = dsn.project_id
    return keys, dsn_project


def authenticate(headers: Mapping[str, str], query: Mapping[str, str],
                 envelope_header: Mapping[str, Any] | None, project_id: str) -> str:
    """The public key of a request to /api/{project_id}/envelope/ (or /store/, with no envelope
    header); raises AuthError (401 none presented, 403 malformed, disagreeing or another project)."""
    path_project = _project(project_id)
    if path_project is None:
        raise AuthError(403, "the project id in the path must be a number")
    keys, dsn_project = _presented(headers, query, envelope_header)
    if not keys or all(not key for _, key in keys):
        raise AuthError(401, "no Sentry key: send X-Sentry-Auth: Sentry sentry_key=<public key>, "
                             "the sentry_key query parameter or a dsn in the envelope header")
    for where, key in keys:
        if not _valid_key(key):
            raise AuthError(403, f"the key in {where} is not a Sentry public key")
    if len({key for _, key in keys}) > 1:
        raise AuthError(403, "the Sentry keys of this request disagree (" + ", ".join(w for w, _ in keys) + ")")
    if dsn_project is not None and dsn_project != path_project:
        raise AuthError(403, "the envelope header's dsn names another project than the path")
    return keys[0][1]


def check_key(public_key: str, project_id: str, keys: Mapping[str, Collection[str]]) -> None:
    """The key is one of the project's (`keys`: project id -> its public keys, from config);
    AuthError 403 otherwise, with the same message for an unknown project and an unknown key."""
    project = _project(project_id)
    if project is None or public_key not in keys.get(project, ()):
        raise AuthError(403, "unknown Sentry key for this project")
