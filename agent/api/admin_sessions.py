"""Browser sessions of the admin pages (GET /analytics): an admin token, posted once to the sign-in form,
becomes a session cookie; the token itself never reaches a cookie, a URL or a log.

Which kind of session: a random id held in memory with an expiry, not an HMAC-signed one. The cookie
holds 256 random bits (`secrets.token_urlsafe(32)`); the agent keeps only their SHA-256, with the
session's expiry, its CSRF token and the SHA-256 of the admin token that opened it. Why in memory:
sign-out ends a session at once (a signed cookie stays valid until it expires, whatever the server
forgets), a token removed from `api.admin_tokens` (reload) ends every session it opened at their next
request, and there is no signing key to keep or rotate. The price: a restart of the agent signs
everyone out, which for a sidecar's admin page is acceptable.

Bounds: at most MAX_SESSIONS sessions (the oldest is dropped first: signing in in a loop only signs
its own earlier sessions out), each for SESSION_SECONDS from sign-in. Sign-in attempts are
rate-limited per address (agent/api/ratelimit.py, SIGN_IN_ATTEMPTS a minute) by the route module.

CSRF: the cookie is `SameSite=Strict` (a cross-site form post does not carry it) and every state-
changing form (sign-out) also carries the session's CSRF token, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "loom_admin_session"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 1000
SIGN_IN_ATTEMPTS = 10          # per client address, in any 60 seconds


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    expires: float             # time.time() seconds
    csrf: str                  # the token every state-changing form of the session carries
    token_digest: str          # SHA-256 of the admin token that opened it


class AdminSessions:
    def __init__(self, *, seconds: float = SESSION_SECONDS, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.time):
        self.seconds, self.max_sessions, self.clock = seconds, max_sessions, clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()      # SHA-256 of the cookie -> session

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, token: str) -> tuple[str, Session]:
        """A new session for a valid admin `token`: (the cookie value, the session)."""
        self._expire()
        cookie = secrets.token_urlsafe(32)
        session = Session(self.clock() + self.seconds, secrets.token_urlsafe(24), _digest(token))
        self._sessions[_digest(cookie)] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return cookie, session

    def get(self, cookie: str | None, tokens: tuple[str, ...] | list[str]) -> Session | None:
        """The session of `cookie` while it has not expired and its admin token is still one of
        `tokens` (else it is forgotten); None otherwise."""
        if not cookie or len(cookie) > 128:
            return None
        key = _digest(cookie)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires <= self.clock() or not _still_valid(session.token_digest, tokens):
            del self._sessions[key]
            return None
        return session

    def close(self, cookie: str | None) -> None:
        if cookie:
            self._sessions.pop(_digest(cookie), None)

    def _expire(self) -> None:
        """Drop the expired sessions at the head (they expire in the order they were opened)."""
        now = self.clock()
        while self._sessions:
            key, session = next(iter(self._sessions.items()))
            if session.expires > now:
                break
            del self._sessions[key]


def _still_valid(digest: str, tokens: tuple[str, ...] | list[str]) -> bool:
    found = False
    for token in tokens:
        found |= hmac.compare_digest(digest, _digest(token))
    return found


def csrf_matches(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf.encode(), presented.encode("utf-8",
                                                                                                 "surrogateescape"))
