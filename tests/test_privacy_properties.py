"""Properties of privacy scrubbing over arbitrary input: e-mail addresses, card numbers and passwords
injected anywhere in nested JSON properties never reach the scrubbed event's JSON, and scrubbing a
scrubbed event changes nothing."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.events.model import Context, Event
from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig

NOW = 1_795_514_405.0
PRIVACY = Privacy(PrivacyConfig(private_properties=("phone",)), b"p" * 32)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SECRET_NAMES = ["password", "userPassword", "new_password", "pwd", "access_token", "X-Api-Key", "apiKey",
                "Authorization", "client_secret", "cvv", "card_number", "creditCard", "ssn"]
# text around an injected value: letters, digits, the characters e-mail and card rules look at
NOISE = st.text(alphabet="ab1 9.-@%40_+\n:", max_size=8)
SEPARATOR = st.sampled_from([" ", "\n", ", ", "-", ":", "="])

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12) | NOISE)
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=6), children, max_size=4), max_leaves=16)
properties = st.dictionaries(st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True), json_values, max_size=6)


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,10}[a-z0-9]", fullmatch=True))
    labels = draw(st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True), min_size=1,
                           max_size=3))
    address = f"{local}@{'.'.join(labels)}.{draw(st.sampled_from(['com', 'io', 'co.uk', 'de']))}"
    return address.upper() if draw(st.booleans()) else address


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A Luhn-valid number of 13 to 19 digits (the first one not zero, so it is also an integer)."""
    length = draw(st.integers(min_value=13, max_value=19))
    body = [draw(st.integers(1, 9))] + draw(st.lists(st.integers(0, 9), min_size=length - 2, max_size=length - 2))
    total = 0
    for i, d in enumerate(reversed(body)):        # the check digit will sit to the right of all of these
        total += (d * 2 - 9 if d > 4 else d * 2) if i % 2 == 0 else d
    return "".join(map(str, body)) + str((10 - total % 10) % 10)


@st.composite
def formatted(draw: st.DrawFn, digits: str) -> str:
    """The card as people write it: in one piece, or in groups split by one space or dash."""
    style = draw(st.sampled_from(["plain", "4s", "4d", "random"]))
    if style == "plain":
        return digits
    if style in ("4s", "4d"):
        sep = " " if style == "4s" else "-"
        return sep.join(digits[i:i + 4] for i in range(0, len(digits), 4))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(digits) - 1), max_size=5))))
    groups = [digits[a:b] for a, b in zip([0, *cuts], [*cuts, len(digits)])]
    return "".join(g + (draw(st.sampled_from([" ", "-"])) if i < len(groups) - 1 else "")
                   for i, g in enumerate(groups))


def containers(value: Any, out: list[Any]) -> list[Any]:
    """Every dict and list inside `value` (itself included), where something can be injected."""
    if isinstance(value, (dict, list)):
        out.append(value)
        for item in (value.values() if isinstance(value, dict) else value):
            containers(item, out)
    return out


@st.composite
def injected(draw: st.DrawFn) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    """Properties with e-mails, card numbers and secrets put anywhere; and the lists of each."""
    props = draw(properties)
    addresses: list[str] = []
    cards: list[str] = []
    secrets: list[str] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["email", "email_key", "card", "card_int", "secret"]))
        target = draw(st.sampled_from(containers(props, [])))
        text = ""
        if kind.startswith("email"):
            address = draw(emails())
            addresses.append(address)
            text = draw(NOISE) + draw(SEPARATOR) + address + draw(SEPARATOR) + draw(NOISE)
        elif kind.startswith("card"):
            digits = draw(card_numbers())
            cards.append(digits)
            text = draw(NOISE) + draw(SEPARATOR) + draw(formatted(digits)) + draw(SEPARATOR) + draw(NOISE)
        if kind == "secret":
            if not isinstance(target, dict):
                continue
            secret = "S3cr3t-" + draw(st.from_regex(r"[A-Za-z0-9]{10}", fullmatch=True))
            secrets.append(secret)
            target[draw(st.sampled_from(SECRET_NAMES))] = secret
        elif kind == "email_key" and isinstance(target, dict):
            target[text] = draw(scalars)
        else:
            value: Any = int(cards[-1]) if kind == "card_int" else text
            if isinstance(target, dict):
                target[draw(st.text(max_size=6))] = value
            else:
                target.append(value)
    return props, addresses, cards, secrets


def make_event(props: dict[str, Any], user_id: str, page: str) -> Event:
    return Event("feature_used", "business", NOW, NOW, props, user_id=user_id, session_id=user_id,
                 context=Context(page=page, user_agent=page, ip="192.0.2.7"))


@pytest.mark.slow
@SETTINGS
@given(injected(), emails(), st.data())
def test_no_address_card_or_secret_survives(case: Any, user: str, data: st.DataObject) -> None:
    props, addresses, cards, secrets = case
    card = data.draw(card_numbers())
    page = f"/invite?email={user.replace('@', '%40')}&card={card}"
    out = PRIVACY.scrub(make_event(props, user, page))
    dump = orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS).decode()
    lowered = dump.lower()
    for address in [*addresses, user]:
        assert address.lower() not in lowered
    assert user.lower().replace("@", "%40") not in lowered
    for digits in [*cards, card]:
        assert digits not in dump
    for secret in secrets:
        assert secret not in dump
    assert out.user_id == PRIVACY.pseudonymize(user.lower())


@pytest.mark.slow
@SETTINGS
@given(injected(), st.text(max_size=20) | emails(), st.lists(st.text(max_size=6), max_size=3))
def test_scrubbing_twice_is_scrubbing_once(case: Any, user: str, private: list[str]) -> None:
    before = make_event(case[0], user or "u", "/p?x=" + user)
    before.context.private = tuple(private)
    first = PRIVACY.scrub(before)
    again = PRIVACY.scrub(copy.deepcopy(first))
    assert again == first


@SETTINGS
@given(st.text(alphabet="ab1 9.-@%40_+:[]", max_size=60) | st.text(max_size=60))
def test_text_scrubbing_is_idempotent_on_any_text(text: str) -> None:
    once = PRIVACY.text(text)
    assert PRIVACY.text(once) == once
    assert PRIVACY.pseudonymize(PRIVACY.pseudonymize(text)) == PRIVACY.pseudonymize(text)
