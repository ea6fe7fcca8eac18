"""Grouping errors into issues: the fingerprint.

An issue is every occurrence of one bug. Without a fingerprint from the client it is derived, the
way Sentry groups, from every exception of the chain (the causes, then the error) when any of them
has frames:
- each exception's type, and
- its top IN_APP_FRAMES in-app frames (those nearest the raise; `inApp: true` frames, or when the
  client marks none, every frame not marked `inApp: false`, or when all are, every frame): each
  frame's file (filename, else abs_path, else module) with the parts that change between deploys,
  hosts and machines normalised away (scheme://host, query and fragment, UUIDs, hex ids such as
  bundle hashes, digit runs such as versions and build numbers), its function, and its source line
  (`context_line`, whitespace collapsed) when the SDK sent one no longer than CONTEXT_LINE_MAX
  (Sentry ignores longer ones: minified code).
Line and column numbers are left out: the same bug moves when code above it changes, and must stay
one issue across releases; the source line does not move with it. The message is not used when
there are frames (it carries ids, amounts, names); without frames the chain's types and values are
the only thing to go on, and are used with their numbers and ids normalised away (a message event
is grouped by its message). An error with neither causes nor source lines (every /v1/errors event
without them) keeps the fingerprint it always had.

A client's own fingerprint (Sentry's `fingerprint: ["payment-timeout"]`) replaces the derived one;
the part "{{ default }}" stands for the derived fingerprint, so a client can split an issue further.
Fingerprints are 32 hex digits (the start of a SHA-256), so no client text is kept in them.
"""

from __future__ import annotations

import hashlib
import re

from agent.error_tracking.model import ErrorEvent, Frame

IN_APP_FRAMES = 5
CONTEXT_LINE_MAX = 120
_SEP = "\x1f"
_DEFAULT_PART = re.compile(r"\{\{\s*default\s*\}\}")
_ORIGIN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*")
_QUERY = re.compile(r"[?#].*", re.DOTALL)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
# at least 6 hex digits, with a digit and a letter (so no word like "facade" and no plain number)
_HEX_ID = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}(?![0-9A-Za-z])")
_PSEUDONYM = re.compile(r"email:[0-9a-f]{32}")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_SPACES = re.compile(r"\s+")


def normalise_ids(text: str) -> str:
    """UUIDs, memory addresses and hex ids -> <id>, digit runs -> <n>."""
    text = _UUID.sub("<id>", text)
    text = _ADDRESS.sub("<id>", text)
    text = _HEX_ID.sub("<id>", text)
    return _NUMBER.sub("<n>", text)


def normalise_file(path: str) -> str:
    """`https://cdn-3.loom.app/_next/static/chunks/pages/pay-3f2a9c1b.js?v=12` ->
    `/_next/static/chunks/pages/pay-<id>.js`."""
    return normalise_ids(_QUERY.sub("", _ORIGIN.sub("", path.strip())))


def normalise_message(message: str) -> str:
    """A message without what differs between occurrences of one bug: pseudonymised e-mails, ids, numbers."""
    return _SPACES.sub(" ", normalise_ids(_PSEUDONYM.sub("<email>", message))).strip()


def in_app_top(frames: list[Frame], count: int = IN_APP_FRAMES) -> list[Frame]:
    """The `count` in-app frames nearest the raise (the end of the list), nearest last."""
    chosen = [f for f in frames if f.in_app is True] or [f for f in frames if f.in_app is not False] or frames
    return chosen[-count:]


def frame_key(frame: Frame) -> str:
    where = frame.filename or frame.abs_path or frame.module or ""
    key = f"{normalise_file(where)}|{(frame.function or '').strip()}"
    line = frame.context_line
    if line is not None and line.strip() and len(line) <= CONTEXT_LINE_MAX:
        key += "|" + _SPACES.sub(" ", line).strip()
    return key


def _digest(parts: list[str]) -> str:
    return hashlib.sha256(_SEP.join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def derived_fingerprint(error: ErrorEvent) -> str:
    chain = [*((c.type, c.value, c.frames) for c in error.causes), (error.type, error.message, error.frames)]
    if any(frames for _, _, frames in chain):
        parts = ["frames"]
        for kind, _, frames in chain:
            parts += [kind.strip(), *map(frame_key, in_app_top(frames))]
        return _digest(parts)
    parts = ["message"]
    for kind, message, _ in chain:
        parts += [kind.strip(), normalise_message(message)]
    return _digest(parts)


def fingerprint(error: ErrorEvent) -> str:
    """The issue `error` belongs to: the client's fingerprint when given, else the derived one."""
    if error.fingerprint is None:
        return derived_fingerprint(error)
    parts = [derived_fingerprint(error) if _DEFAULT_PART.fullmatch(part.strip()) else part
             for part in error.fingerprint]
    return _digest(["custom", *parts])
