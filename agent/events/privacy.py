"""Privacy scrubbing: applied once to every validated event, before it is stored, counted, traced,
exported or logged, so no later stage can leak what this one removed. Pure (no I/O) and cheap: the
ingest path runs tens of thousands of events per second through it.

What `Privacy.scrub` does to an event (docs/privacy.md is the user-facing version):
- e-mail addresses, anywhere in a string (also `%40`-encoded, as in query strings), become
  "email:" + 32 hex digits of HMAC-SHA256(key, lowercased address): the same person gets the same
  pseudonym, and nobody without the key can test a guessed address. user_id, anonymous_id, session_id
  and event_id get this and nothing else (ids are often long numbers: a card rule would merge users).
- properties whose name says they hold a secret (SECRET_WORDS, SECRET_SUFFIXES) are removed, key and
  all, at any depth;
- card numbers, 13 to 19 digits passing the Luhn check (groups may be separated by one space or dash),
  become "[card]" inside any string; integers (and integral floats) of 13 to 19 digits passing Luhn
  become "[card]" too;
- properties named private (config `privacy.private_properties`, or `context.private` of the event)
  become "[private]", at any depth;
- context.page, context.user_agent, context.library and custom event names lose e-mails and card numbers
  (names: card numbers only); context.ip is kept, truncated
  (IPv4 /24, IPv6 /48) or dropped.
Scrubbing is idempotent: a scrubbed event scrubs to itself.

`decide` picks the events that must not be kept as they are (Do-Not-Track, opted-out users) and
`apply` drops or anonymizes them per config, counting each by reason.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from agent.events.model import Event
from agent.events.privacy_config import PrivacyConfig
from agent.events.properties import snake_case

REMOVED_CARD = "[card]"
MASKED = "[private]"
ANONYMOUS_ID = "anonymous"
PSEUDONYM_PREFIX = "email:"

# A name is a secret's when one of its words ("_"-separated) is in SECRET_WORDS, or when it is one of
# SECRET_SUFFIXES or ends with "_" and one of them (so "access_token" is, "token_count" is not). Names
# are compared snake_case, with "-", "." and spaces read as "_" ("X-Api-Key" -> x_api_key).
SECRET_WORDS = frozenset({"password", "passwd", "passphrase", "pwd", "cvv", "cvv2", "cvc", "cvc2", "ssn"})
SECRET_SUFFIXES = ("secret", "token", "api_key", "apikey", "authorization", "card_number", "credit_card",
                   "cc_number", "private_key", "secret_key", "access_key", "cookie", "security_code")

_LOCAL_CHAR = r"[\w.!#$%'*+^`{|}~-]"            # in an address's local part ("=", "?", "&", "/" end it: URLs)
_DOMAIN = r"(?:[\w-]+\.)+[\w-]+"                 # at least one dot: "user@host" is left alone
# starts only where a local part can start, so a long string costs one pass, not one per character
EMAIL = re.compile(rf"(?<!{_LOCAL_CHAR}){_LOCAL_CHAR}+(?:@|%40){_DOMAIN}")
# a pseudonym is matched first and kept, so its hex digits are never read as a card number
CARD = re.compile(re.escape(PSEUDONYM_PREFIX) + r"[0-9a-f]{32}|[0-9](?:[ -]?[0-9]){12,}")
_SEPARATORS = re.compile(r"([ -])")
_NAME_SEPARATORS = str.maketrans({"-": "_", ".": "_", " ": "_"})
_CARD_MIN, _CARD_MAX = 13, 19
_INT_LOW, _INT_HIGH = 10 ** (_CARD_MIN - 1), 10 ** _CARD_MAX
_CACHE_MAX = 50_000
_MEMO_LONGEST = 512                   # longer strings are scrubbed every time: the memo stays ~50 MB at most
_PLANS_MAX = 1_000                    # key sets planned (an SDK sends a few; random key sets must not grow it)
_KEEP, _MASK, _DROP = object(), object(), object()


def luhn(digits: str) -> bool:
    """The Luhn check every card number passes (and 1 in 10 random digit strings)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_windows(run: str) -> str:
    """A run of 13+ digits (single spaces or dashes allowed between groups) with every card number in
    it replaced: the whole run when it is one, else the longest Luhn-valid sequences of whole groups
    (so "4111 1111 1111 1111 123", a card and its CVV, loses the card). An unseparated run of more
    than 19 digits is an id or an amount, not a card."""
    parts = _SEPARATORS.split(run)                  # groups at even positions, separators between
    if len(parts) == 1:
        return REMOVED_CARD if len(run) <= _CARD_MAX and luhn(run) else run
    groups, separators = parts[0::2], parts[1::2]
    bounds, plain, doubled = _luhn_sums(groups)
    out: list[str] = []
    i = 0
    while i < len(groups):
        end = _card_at(bounds, plain, doubled, i)
        out.append(REMOVED_CARD if end else groups[i])
        i = end or i + 1
        if i < len(groups):
            out.append(separators[i - 1])
    return "".join(out)


def _luhn_sums(groups: list[str]) -> tuple[list[int], list[int], list[int]]:
    """Digit offsets where each group starts (and the total), and two prefix sums over the run's
    digits: `plain` keeps even offsets and doubles odd ones (Luhn's doubling), `doubled` the reverse.
    Any window's Luhn sum is then one subtraction, so a long run of short groups stays linear."""
    bounds, plain, doubled = [0], [0], [0]
    offset = 0
    for group in groups:
        for ch in group:
            d = ord(ch) - 48
            twice = d * 2 - 9 if d > 4 else d * 2
            if offset & 1:
                plain.append(plain[-1] + twice)
                doubled.append(doubled[-1] + d)
            else:
                plain.append(plain[-1] + d)
                doubled.append(doubled[-1] + twice)
            offset += 1
        bounds.append(offset)
    return bounds, plain, doubled


def _card_at(bounds: list[int], plain: list[int], doubled: list[int], start: int) -> int:
    """The end (exclusive, in groups) of the longest Luhn-valid card of whole groups from group
    `start`; 0: none. Luhn never doubles the last digit: when it sits at an even offset, `plain`
    has the right doubling, else `doubled`."""
    first = bounds[start]
    best = 0
    for end in range(start + 1, len(bounds)):
        last = bounds[end]
        size = last - first
        if size > _CARD_MAX:
            break
        if size >= _CARD_MIN:
            sums = plain if (last - 1) & 1 == 0 else doubled
            if (sums[last] - sums[first]) % 10 == 0:
                best = end
    return best


class Privacy:
    """The configured scrubbing, with its HMAC key; `opted_out` holds the pseudonymized ids of users
    who objected to tracking (loaded from the store's opt_outs table, added to by the opt-out API)."""

    def __init__(self, config: PrivacyConfig, key: bytes):
        self.config = config
        self.opted_out: set[str] = set()
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._private = frozenset(config.private_properties)
        self._modes = {"dnt": config.dnt, "opted_out": config.opted_out}
        self._pseudonyms: dict[str, str] = {}      # address -> pseudonym
        self._pseudonymized: dict[str, str] = {}   # text -> text with pseudonyms
        self._names: dict[Any, tuple[str, bool]] = {}
        self._repeated_texts: dict[str, str] = {}  # pages, user agents, source lines repeat event to event
        self._plans: dict[tuple[Any, ...], tuple[tuple[Any, object], ...]] = {}   # key set -> what each becomes
        self._ip = {"keep": _keep_ip, "truncate": _truncate_ip, "drop": _drop_ip}[config.ip]

    # --- e-mail addresses ----------------------------------------------------------------------

    def pseudonymize(self, text: str) -> str:
        """`text` with every e-mail address replaced by its pseudonym. Idempotent; the function a
        user id goes through before it is stored, and so before every look-up by user id."""
        if "@" not in text and "%40" not in text:
            return text
        done = self._pseudonymized.get(text)       # ids repeat from event to event
        if done is not None:
            return done
        scrubbed = text
        while True:                                 # "a@b.io@c.io": the second pass takes the rest
            again = EMAIL.sub(self._pseudonym, scrubbed)
            if again == scrubbed or ("@" not in again and "%40" not in again):
                break
            scrubbed = again
        if len(self._pseudonymized) >= _CACHE_MAX:
            self._pseudonymized.clear()
        self._pseudonymized[text] = again
        return again

    def _pseudonym(self, match: re.Match[str]) -> str:
        address = match.group()
        pseudonym = self._pseudonyms.get(address)
        if pseudonym is None:
            plain = unquote(address) if "%" in address else address
            mac = self._mac.copy()
            mac.update(plain.lower().encode())
            pseudonym = PSEUDONYM_PREFIX + mac.hexdigest()[:32]
            if len(self._pseudonyms) >= _CACHE_MAX:
                self._pseudonyms.clear()
            self._pseudonyms[address] = pseudonym
        return pseudonym

    # --- values --------------------------------------------------------------------------------

    def text(self, text: str) -> str:
        """A free-text string without e-mail addresses or card numbers."""
        if "@" in text or "%40" in text:
            text = self.pseudonymize(text)
        if len(text) >= _CARD_MIN and CARD.search(text) is not None:
            text = CARD.sub(_card, text)
        return text

    def repeated_text(self, text: str) -> str:
        """`text()` remembered (a bounded cache): for strings that come back with every event, such as
        pages, user agents and an issue's source lines and function names (~0.1 us instead of ~1 us)."""
        scrubbed = self._repeated_texts.get(text)
        return self._string(text) if scrubbed is None else scrubbed

    def _value(self, value: Any, private: frozenset[str]) -> Any:
        kind = type(value)
        if kind is str:
            if "@" in value or "%40" in value or len(value) >= _CARD_MIN:
                return self.text(value)
            return value
        if kind is int:
            if (value >= _INT_LOW or value <= -_INT_LOW) and value < _INT_HIGH and value > -_INT_HIGH \
                    and luhn(str(abs(value))):
                return REMOVED_CARD
            return value
        if kind is float:
            if _INT_LOW <= abs(value) < _INT_HIGH and value.is_integer() and luhn(str(int(abs(value)))):
                return REMOVED_CARD
            return value
        if kind is dict:
            return self._dict(value, private)
        if kind is list:
            return [self._value(item, private) for item in value]
        return value

    def mapping(self, obj: dict[Any, Any]) -> dict[Any, Any]:
        """A copy of a property-like mapping scrubbed as an event's properties are (secret names dropped,
        private ones masked, e-mails pseudonymized, card numbers removed): for data that is not an event,
        e.g. the attributes of relayed spans and log records (agent/sentry/otel.py)."""
        return self._dict(obj, self._private)

    def _dict(self, obj: dict[Any, Any], private: frozenset[str]) -> dict[Any, Any]:
        """A scrubbed copy of `obj`. What each key becomes (kept, masked, dropped, renamed) is planned once
        per key set (events of one SDK share a few) and strings that come back event after event are
        scrubbed once (`_string`): the posthog-js batch of bench/posthog.py, ~37 properties an event, went
        from 20.7 to ~6 µs an event."""
        shape = tuple(obj)
        plans = self._plans if private is self._private else None
        plan = None if plans is None else plans.get(shape)
        if plan is None:
            plan = self._plan(shape, private)
            if plans is not None:
                if len(plans) >= _PLANS_MAX:
                    plans.clear()
                plans[shape] = plan
        out: dict[Any, Any] = {}
        texts = self._repeated_texts
        for (name, mode), value in zip(plan, obj.values()):
            if mode is _KEEP:
                kind = value.__class__
                if kind is str:
                    if len(value) >= _CARD_MIN or "@" in value or "%40" in value:
                        scrubbed = texts.get(value)
                        value = self._string(value) if scrubbed is None else scrubbed
                elif kind is not bool:
                    value = self._value(value, private)
                out[name] = value
            elif mode is _MASK:
                out[name] = MASKED
        return out

    def _plan(self, shape: tuple[Any, ...], private: frozenset[str]) -> tuple[tuple[Any, object], ...]:
        """Per key of `shape`, in order: (the key as stored, _KEEP / _MASK / _DROP)."""
        plan: list[tuple[Any, object]] = []
        for key in shape:
            entry = self._names.get(key)
            if entry is None:
                entry = self._name(key)
            mode = _DROP if entry[1] else _MASK if entry[0] in private else _KEEP   # a secret: not even its name
            if type(key) is str and ("@" in key or "%40" in key or len(key) >= _CARD_MIN):
                key = self.text(key)
            plan.append((key, mode))
        return tuple(plan)

    def _string(self, text: str) -> str:
        """`text()` remembered when short enough to be worth keeping (what repeats: URLs, ids, user agents)."""
        scrubbed = self.text(text)
        if len(text) <= _MEMO_LONGEST:
            if len(self._repeated_texts) >= _CACHE_MAX:
                self._repeated_texts.clear()
            self._repeated_texts[text] = scrubbed
        return scrubbed

    def _name(self, key: Any) -> tuple[str, bool]:
        """(normalized name, is it a secret's) of a property key, cached: keys repeat."""
        name = snake_case(key).translate(_NAME_SEPARATORS) if type(key) is str else str(key)
        entry = (name, is_secret_name(name))
        if len(self._names) >= _CACHE_MAX:
            self._names.clear()
        self._names[key] = entry
        return entry

    # --- events --------------------------------------------------------------------------------

    def scrub(self, event: Event) -> Event:
        """Scrub `event` in place (see the module docstring); returns it."""
        pseudonymize = self.pseudonymize
        if event.user_id is not None:
            event.user_id = pseudonymize(event.user_id)
        if event.anonymous_id is not None:
            event.anonymous_id = pseudonymize(event.anonymous_id)
        if event.session_id is not None:
            event.session_id = pseudonymize(event.session_id)
        if event.event_id is not None:
            event.event_id = pseudonymize(event.event_id)
        context = event.context
        private = self._private.union(context.private) if context.private else self._private
        if event.properties:
            event.properties = self._dict(event.properties, private)
        if context.page is not None:
            context.page = self.repeated_text(context.page)
        if context.user_agent is not None:
            context.user_agent = self.repeated_text(context.user_agent)
        if context.library is not None:
            context.library = self.repeated_text(context.library)
        if not event.known and len(event.name) >= _CARD_MIN and CARD.search(event.name) is not None:
            event.name = CARD.sub(_card, event.name)     # a custom name is free text: "Paid 4111 1111 ..."
        if context.ip is not None:
            context.ip = self._ip(context.ip)
        return event

    def decide(self, event: Event) -> str | None:
        """Why `event` must not be kept as it is: "dnt", "opted_out", or None. Works on a raw or a
        scrubbed event (ids are compared pseudonymized)."""
        if event.context.dnt:
            return "dnt"
        opted_out = self.opted_out
        if opted_out:
            if event.user_id is not None and self.pseudonymize(event.user_id) in opted_out:
                return "opted_out"
            if event.anonymous_id is not None and self.pseudonymize(event.anonymous_id) in opted_out:
                return "opted_out"
        return None

    def apply(self, events: Iterable[Event]) -> tuple[list[Event], Counter[str], Counter[str]]:
        """The events to keep (scrubbed; DNT / opted-out ones anonymized when so configured), and how
        many were dropped and anonymized, by reason ("dnt", "opted_out")."""
        kept: list[Event] = []
        dropped: Counter[str] = Counter()
        anonymized: Counter[str] = Counter()
        decide, scrub = self.decide, self.scrub
        for event in events:
            reason = decide(event)
            if reason is None:
                kept.append(scrub(event))
            elif self._modes[reason] == "drop":
                dropped[reason] += 1
            else:
                anonymized[reason] += 1
                kept.append(scrub(anonymize(event)))
        return kept, dropped, anonymized


def anonymize(event: Event) -> Event:
    """`event` without anything that ties it to a person or a device: no user, session, IP or user
    agent; anonymous_id "anonymous" (every stored event has an id). In place; returns it."""
    event.user_id = event.session_id = None
    event.anonymous_id = ANONYMOUS_ID
    event.context.ip = event.context.user_agent = None
    return event


def is_secret_name(name: str) -> bool:
    """Does a (normalized, snake_case) property name say its value is a secret?"""
    if name.endswith(SECRET_SUFFIXES):
        for suffix in SECRET_SUFFIXES:
            if name == suffix or name.endswith("_" + suffix):
                return True
    return not SECRET_WORDS.isdisjoint(name.split("_"))


def _card(match: re.Match[str]) -> str:
    run = match.group()
    if run.startswith(PSEUDONYM_PREFIX):
        return run
    return _card_windows(run)


def _keep_ip(ip: str) -> str:
    return ip


def _drop_ip(ip: str) -> None:
    return None


_TRUNCATED: dict[str, str] = {}


def _truncate_ip(ip: str) -> str:
    """IPv4 to its /24, IPv6 to its /48: the network, not the device."""
    if ":" not in ip:
        return ip.rpartition(".")[0] + ".0"
    network = _TRUNCATED.get(ip)
    if network is None:
        network = str(ipaddress.IPv6Network((ip, 48), strict=False).network_address)
        if len(_TRUNCATED) >= _CACHE_MAX:
            _TRUNCATED.clear()
        _TRUNCATED[ip] = network
    return network
