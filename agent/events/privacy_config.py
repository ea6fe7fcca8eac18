"""The `privacy:` block, and where the HMAC key that pseudonymizes e-mail addresses comes from.

    privacy:
      hmac_key: ${LOOM_HMAC_KEY}    # secret (`${ENV}` or hmac_key_file), at least 32 characters;
                                    # env LOOM_AGENT_HMAC_KEY overrides
      private_properties: [phone]   # snake_case property names masked as "[private]" at any depth
      dnt: drop                     # events with Do-Not-Track: drop | anonymize
      opted_out: drop               # events of users who opted out: drop | anonymize
      ip: truncate                  # context.ip: keep | truncate (IPv4 /24, IPv6 /48) | drop

The key must be the same for every agent writing one database (PostgreSQL), or the same person gets
two pseudonyms and GDPR look-ups miss half of their data; so a PostgreSQL deployment must configure it.
A single agent on SQLite may leave it out: a random key is generated once next to the database and
reused, so pseudonyms stay stable across restarts.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.config.node import Node
from agent.events.properties import PROPERTY_NAME, snake_case

log = logging.getLogger("agent.privacy")

ENV_HMAC_KEY = "LOOM_AGENT_HMAC_KEY"
KEY_FILE_NAME = "loom-agent.hmac-key"
MIN_KEY_LENGTH = 32
DECISIONS = ("drop", "anonymize")
IP_MODES = ("keep", "truncate", "drop")
_GENERATED_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    hmac_key: str | None = field(default=None, repr=False)   # a secret: never in repr or logs
    private_properties: tuple[str, ...] = ()
    dnt: str = "drop"
    opted_out: str = "drop"
    ip: str = "truncate"


def parse_privacy(node: Node, environ: Mapping[str, str] = os.environ) -> PrivacyConfig:
    base = PrivacyConfig()
    config = PrivacyConfig(hmac_key=_hmac_key(node, environ),
                           private_properties=_private_properties(node),
                           dnt=node.str("dnt", base.dnt, choices=DECISIONS),
                           opted_out=node.str("opted_out", base.opted_out, choices=DECISIONS),
                           ip=node.str("ip", base.ip, choices=IP_MODES))
    node.finish()
    return config


def _hmac_key(node: Node, environ: Mapping[str, str]) -> str | None:
    """LOOM_AGENT_HMAC_KEY when set (the file's hmac_key is then not expanded), else the secret."""
    if environ.get(ENV_HMAC_KEY):
        node.raw("hmac_key")
        node.raw("hmac_key_file")
        key, where = environ[ENV_HMAC_KEY], ENV_HMAC_KEY
        if len(key) < MIN_KEY_LENGTH:
            node.errors.append(f"{where}: must be at least {MIN_KEY_LENGTH} characters")
            return None
        return key
    errors = len(node.errors)
    secret = node.secret("hmac_key")
    if len(node.errors) > errors:                   # unset variable, unreadable file: already reported
        return None
    if secret is not None and len(secret) < MIN_KEY_LENGTH:
        node.error(f"must be at least {MIN_KEY_LENGTH} characters", "hmac_key_file" if node.has("hmac_key_file")
                   else "hmac_key")
        return None
    return secret or None


def _private_properties(node: Node) -> tuple[str, ...]:
    """Property names as they are stored (snake_case), so the list matches what the events carry."""
    names: list[str] = []
    for i, name in enumerate(node.str_list("private_properties")):
        if not PROPERTY_NAME.fullmatch(name):
            node.error(f"invalid property name {name!r}", f"private_properties[{i}]")
        elif snake_case(name) != name:
            node.error(f"must be snake_case, as properties are stored (write {snake_case(name)!r})",
                       f"private_properties[{i}]")
        elif name not in names:
            names.append(name)
    return tuple(names)


def resolve_hmac_key(config: PrivacyConfig, store_dir: str | None) -> bytes:
    """The key pseudonyms are made with: the configured one; else, for a SQLite store (`store_dir`, the
    database's directory), the key kept in `<store_dir>/loom-agent.hmac-key`, generated on first use;
    else a ValueError, since agents sharing a PostgreSQL database must share a configured key."""
    if config.hmac_key:
        return config.hmac_key.encode()
    if store_dir is None:
        raise ValueError(f"privacy.hmac_key (or {ENV_HMAC_KEY}) is required unless the store is SQLite: "
                         "several agents writing one database must share the key that pseudonymizes e-mails")
    return _key_file(os.path.join(store_dir, KEY_FILE_NAME))


def _key_file(path: str) -> bytes:
    """Read the generated key at `path`, creating it first (0600, 64 hex digits) when absent. Created
    under a temporary name and linked into place, so two agents starting at once agree on one key and
    a crash never leaves a half-written key behind. The text itself is the key, so the same file also
    works as `privacy.hmac_key_file` when moving the database to PostgreSQL."""
    if not os.path.exists(path):
        _create_key_file(path)
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        log.warning("the HMAC key file was readable by others; made it 0600", extra={"path": path})
        os.chmod(path, 0o600)
    with open(path, encoding="ascii", errors="replace") as fh:
        key = fh.read().strip()
    if not _GENERATED_KEY.fullmatch(key):
        raise ValueError(f"{path}: not a key written by loom-agent (64 hex digits expected); set "
                         f"privacy.hmac_key, or remove the file to generate a new key (pseudonyms then change)")
    return key.encode()


def _create_key_file(path: str) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)          # fails when another agent won the race: its key is used
        log.warning("privacy.hmac_key is not set: generated a random key for pseudonymizing e-mail "
                    "addresses; keep this file with the database", extra={"path": path})
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
