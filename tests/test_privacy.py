"""Privacy scrubbing, rule by rule: e-mail pseudonyms, secrets, card numbers, private properties,
Do-Not-Track and opt-outs, IP modes, the `privacy:` block and where the HMAC key comes from."""

from __future__ import annotations

import hashlib
import hmac
import logging
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from agent.events.model import Context, Event
from agent.events.privacy import EMAIL, SECRET_SUFFIXES, SECRET_WORDS, Privacy, is_secret_name, luhn
from agent.events.privacy_config import KEY_FILE_NAME, PrivacyConfig, parse_privacy, resolve_hmac_key
from agent.events.validate import EventError, parse_event
from agent.config.node import Node
from agent.store.config import RetentionConfig, parse_retention
from agent.store.rows import event_rows

NOW = 1_795_514_405.0
KEY = b"k" * 32
CARD = "4111111111111111"                  # the classic Visa test number (Luhn-valid)
NOT_A_CARD = "4111111111111112"            # the same with a wrong check digit
AMEX = "378282246310005"


def privacy(**config: Any) -> Privacy:
    return Privacy(PrivacyConfig(**config), KEY)


def pseudonym(address: str, key: bytes = KEY) -> str:
    return "email:" + hmac.new(key, address.lower().encode(), hashlib.sha256).hexdigest()[:32]


def event(properties: dict[str, Any] | None = None, **fields: Any) -> Event:
    context = fields.pop("context", Context())
    base: dict[str, Any] = {"name": "feature_used", "category": "business", "timestamp": NOW, "received_at": NOW,
                            "properties": properties or {}, "user_id": "user_42"}
    return Event(**{**base, **fields}, context=context)


def scrubbed(properties: dict[str, Any], **config: Any) -> dict[str, Any]:
    return privacy(**config).scrub(event(properties)).properties


# --- e-mail addresses -------------------------------------------------------------------------------

def test_an_email_becomes_its_keyed_hmac_pseudonym_wherever_it_is_in_a_text() -> None:
    p = privacy()
    assert p.pseudonymize("alice@example.com") == pseudonym("alice@example.com")
    assert p.text("contact Alice@Example.COM, or bob.smith+loom@mail.example.co.uk.") == (
        f"contact {pseudonym('alice@example.com')}, or {pseudonym('bob.smith+loom@mail.example.co.uk')}.")
    assert p.pseudonymize("no address here, not even user@localhost") == "no address here, not even user@localhost"
    # a keyed HMAC, not a plain hash: another key gives another pseudonym, and neither is sha256(address)
    other = Privacy(PrivacyConfig(), b"o" * 32).pseudonymize("alice@example.com")
    assert other == pseudonym("alice@example.com", b"o" * 32) != p.pseudonymize("alice@example.com")
    assert hashlib.sha256(b"alice@example.com").hexdigest()[:32] not in p.pseudonymize("alice@example.com")


def test_an_email_used_as_a_user_id_is_pseudonymized_the_same_as_a_lookup_would() -> None:
    p = privacy()
    scrubbed_event = p.scrub(event(user_id="Alice@Example.com", anonymous_id="anon:alice@example.com",
                                   session_id="s-1", event_id="alice@example.com:1"))
    assert scrubbed_event.user_id == p.pseudonymize("alice@example.com") == pseudonym("alice@example.com")
    assert scrubbed_event.anonymous_id == "anon:" + pseudonym("alice@example.com")
    assert scrubbed_event.session_id == "s-1"
    assert scrubbed_event.event_id == pseudonym("alice@example.com") + ":1"


def test_addresses_run_together_lose_every_part() -> None:
    p = privacy()
    for text in ("a@b.io@c.io", "x@y.io-bob@example.com", "a@1.-john@x.com@y.org"):
        out = p.text(text)
        assert EMAIL.search(out) is None and p.text(out) == out, (text, out)


def test_url_encoded_emails_in_pages_and_query_strings() -> None:
    p = privacy()
    ctx = Context(page="https://app.loom.test/invite?email=alice%40example.com&ref=bob@example.com",
                  user_agent="Mozilla/5.0 (reporter: carol@example.com)")
    out = p.scrub(event(context=ctx)).context
    assert out.page == (f"https://app.loom.test/invite?email={pseudonym('alice@example.com')}"
                        f"&ref={pseudonym('bob@example.com')}")
    assert out.user_agent == f"Mozilla/5.0 (reporter: {pseudonym('carol@example.com')})"


def test_emails_in_nested_values_lists_and_keys() -> None:
    props = {"note": "from dave@example.com", "recipients": ["eve@example.com", 3],
             "meta": {"by": {"frank@example.com": "Frank@Example.com"}}}
    assert scrubbed(props) == {"note": f"from {pseudonym('dave@example.com')}",
                               "recipients": [pseudonym("eve@example.com"), 3],
                               "meta": {"by": {pseudonym("frank@example.com"): pseudonym("frank@example.com")}}}


# --- secrets ----------------------------------------------------------------------------------------

def test_secret_properties_are_removed_at_any_depth() -> None:
    props = {"password": "hunter2", "token_count": 12, "form": {"userPassword": "hunter3", "email_verified": True},
             "headers": [{"Authorization": "Bearer abc", "X-Api-Key": "k1", "accept": "json"}],
             "oauth": {"access_token": "t", "refresh_token": "r", "client_secret": "s", "scope": "read"},
             "payment": {"card_number": "not even a valid one", "cvv": "123", "plan": "pro"}}
    assert scrubbed(props) == {"token_count": 12, "form": {"email_verified": True}, "headers": [{"accept": "json"}],
                               "oauth": {"scope": "read"}, "payment": {"plan": "pro"}}


@pytest.mark.parametrize("name", ["password", "new_password", "password_confirmation", "pwd", "passwd", "ssn",
                                  "api_key", "apikey", "stripe_api_key", "token", "csrf_token", "authorization",
                                  "cvc", "card_number", "credit_card", "session_cookie", "private_key", "secret"])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["token_count", "secret_question", "card_type", "keyboard", "passage",
                                  "tokens_used", "method", "api_key_id"])
def test_names_that_are_not_secrets(name: str) -> None:
    assert not is_secret_name(name)


def test_no_catalog_property_is_taken_for_a_secret() -> None:
    from agent.events.catalog import CATALOG
    assert [n for spec in CATALOG.values() for n in spec.props if is_secret_name(n)] == []


# --- card numbers -----------------------------------------------------------------------------------

def test_card_numbers_in_text_with_spaces_dashes_or_none() -> None:
    p = privacy()
    assert p.text(f"card {CARD} ok") == "card [card] ok"
    assert p.text("4111 1111 1111 1111") == "[card]"
    assert p.text("pay with 4111-1111-1111-1111, exp 12/29") == "pay with [card], exp 12/29"
    assert p.text(f"amex {AMEX[:4]} {AMEX[4:10]} {AMEX[10:]}") == "amex [card]"
    assert p.text(f"ref{CARD}x") == "ref[card]x"
    assert p.text("4111 1111 1111 1111 123") == "[card] 123"       # a card, then its CVV


def test_luhn_invalid_runs_and_long_ids_are_kept() -> None:
    p = privacy()
    assert not luhn(NOT_A_CARD) and luhn(CARD) and luhn(AMEX)
    for text in (NOT_A_CARD, "4111 1111 1111 1112", "order 12345678901234567890 shipped",
                 "2026-11-24 10:00:05", "+1 415-555-0123", "Chrome/120.0.6099.109"):
        assert p.text(text) == text


def test_integer_card_numbers() -> None:
    props = {"n": int(CARD), "small": 4111, "other": int(NOT_A_CARD), "f": float(AMEX), "list": [int(AMEX)],
             "flag": True}
    assert scrubbed(props) == {"n": "[card]", "small": 4111, "other": int(NOT_A_CARD), "f": "[card]",
                               "list": ["[card]"], "flag": True}


def test_a_pseudonym_is_never_read_as_a_card_number() -> None:
    p = privacy()
    for i in range(2000):         # pseudonyms are hex: some hold 13+ digit runs, some of them Luhn-valid
        address = f"user{i}@example.com"
        assert p.text(address) == pseudonym(address)


# --- private properties -----------------------------------------------------------------------------

def test_private_properties_by_config_at_any_depth() -> None:
    props = {"phone": "+44 20 7946 0000", "plan": "pro", "contact": {"phone": 1234, "city": "Leeds"}}
    assert scrubbed(props, private_properties=("phone",)) == {
        "phone": "[private]", "plan": "pro", "contact": {"phone": "[private]", "city": "Leeds"}}


def test_private_properties_marked_by_the_client() -> None:
    body = {"event": "feature_used", "userId": "u1", "properties": {"feature": "booking", "homeAddress": "1 Road",
                                                                   "notes": {"home_address": "2 Road"}},
            "context": {"private": ["homeAddress", "notes"]}}
    parsed = parse_event(body, now=NOW)
    assert parsed.context.private == ("home_address", "notes")
    assert privacy(private_properties=("feature",)).scrub(parsed).properties == {
        "feature": "[private]", "home_address": "[private]", "notes": "[private]"}
    # the marking holds for that event only
    other = parse_event({**body, "context": {}}, now=NOW)
    assert privacy().scrub(other).properties["home_address"] == "1 Road"


@pytest.mark.parametrize("value, message", [
    ("phone", "context.private: must be an array of property names, got string"),
    (["phone", 3], "context.private[1]: must be a string, got integer"),
    (["home address"], "context.private[0]: must be a property name (at most 128 letters, digits, _ . : $ -)"),
    (["x"] * 101, "context.private: must have at most 100 names (got 101)"),
])
def test_context_private_is_validated(value: Any, message: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event({"event": "feature_used", "userId": "u1", "context": {"private": value}}, now=NOW)
    assert str(info.value) == message


# --- Do-Not-Track and opt-outs ----------------------------------------------------------------------

def test_dnt_from_the_header_or_the_context_drops_by_default() -> None:
    p = privacy()
    by_header = parse_event({"event": "feature_used", "userId": "u1"}, now=NOW, dnt_header=True)
    by_context = parse_event({"event": "feature_used", "userId": "u2", "context": {"dnt": True}}, now=NOW)
    header_wins = parse_event({"event": "feature_used", "userId": "u3", "context": {"dnt": False}}, now=NOW,
                              dnt_header=True)
    tracked = parse_event({"event": "feature_used", "userId": "u4"}, now=NOW)
    assert [p.decide(e) for e in (by_header, by_context, header_wins, tracked)] == ["dnt", "dnt", "dnt", None]
    kept, dropped, anonymized = p.apply([by_header, by_context, header_wins, tracked])
    assert [e.user_id for e in kept] == ["u4"]
    assert (dropped, anonymized) == ({"dnt": 3}, {})


def test_dnt_anonymize_keeps_the_event_without_anything_personal() -> None:
    p = privacy(dnt="anonymize")
    ctx = Context(dnt=True, ip="192.0.2.7", user_agent="Mozilla/5.0", page="/pricing")
    kept, dropped, anonymized = p.apply([event({"note": "x@example.com"}, session_id="s1", context=ctx)])
    (out,) = kept
    assert (out.user_id, out.anonymous_id, out.session_id, out.context.ip, out.context.user_agent) == (
        None, "anonymous", None, None, None)
    assert out.context.page == "/pricing" and out.properties == {"note": pseudonym("x@example.com")}
    assert (dropped, anonymized) == ({}, {"dnt": 1})


def test_opted_out_users_by_pseudonymized_id() -> None:
    p = privacy()
    p.opted_out.update({p.pseudonymize("alice@example.com"), "anon_7"})
    events = [event(user_id="Alice@example.com"), event(user_id=None, anonymous_id="anon_7"),
              event(user_id="bob@example.com")]
    assert [p.decide(e) for e in events] == ["opted_out", "opted_out", None]
    kept, dropped, anonymized = p.apply(events)
    assert [e.user_id for e in kept] == [pseudonym("bob@example.com")]
    assert (dropped, anonymized) == ({"opted_out": 2}, {})
    q = privacy(opted_out="anonymize")
    q.opted_out.add("anon_7")
    kept, dropped, anonymized = q.apply([event(user_id=None, anonymous_id="anon_7"), event()])
    assert [(e.user_id, e.anonymous_id) for e in kept] == [(None, "anonymous"), ("user_42", None)]
    assert (dropped, anonymized) == ({}, {"opted_out": 1})


# --- IP addresses -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, v4, v6", [
    ("truncate", "192.0.2.0", "2001:db8:1::"),
    ("keep", "192.0.2.77", "2001:db8:1:2:3::4"),
    ("drop", None, None),
])
def test_ip_modes(mode: str, v4: str | None, v6: str | None) -> None:
    p = privacy(ip=mode)
    assert p.scrub(event(context=Context(ip="192.0.2.77"))).context.ip == v4
    assert p.scrub(event(context=Context(ip="2001:db8:1:2:3::4"))).context.ip == v6


# --- the whole event --------------------------------------------------------------------------------

def test_the_stored_row_holds_no_address_secret_or_card() -> None:
    body = {"event": "file_downloaded", "userId": "alice@example.com", "sessionId": "s1",
            "properties": {"bytes": 300, "file_type": "pdf", "file_id": "f_2", "sharedWith": "bob@example.com",
                           "password": "hunter2", "billing": {"card": "4111 1111 1111 1111"}},
            "context": {"page": "/files?owner=alice%40example.com", "ip": "192.0.2.7"}}
    out = privacy().scrub(parse_event(body, now=NOW))
    rows = event_rows(out)
    dump = orjson.dumps([rows.event, rows.tables]).decode()
    for plain in ("alice", "bob@", "hunter2", "4111", "192.0.2.7"):
        assert plain not in dump
    assert pseudonym("alice@example.com") in dump


def test_scrubbing_is_idempotent() -> None:
    p = privacy(private_properties=("phone",))
    once = p.scrub(event({"a": "x@y.io 4111 1111 1111 1111", "phone": 1, "n": int(CARD), "password": "p"},
                         context=Context(ip="2001:db8::1", page="/?e=a%40b.io")))
    twice = p.scrub(event(dict(once.properties), user_id=once.user_id,
                          context=Context(ip=once.context.ip, page=once.context.page)))
    assert twice == once


# --- the privacy: block and the key -----------------------------------------------------------------

def parse(data: Any, environ: dict[str, str] | None = None) -> tuple[PrivacyConfig, list[str]]:
    errors: list[str] = []
    config = parse_privacy(Node(data, "privacy", errors), environ or {})
    return config, errors


def test_defaults_and_a_full_block(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse(None) == (PrivacyConfig(), [])
    monkeypatch.setenv("LOOM_TEST_HMAC", "s" * 40)
    config, errors = parse({"hmac_key": "${LOOM_TEST_HMAC}", "private_properties": ["phone", "home_address", "phone"],
                            "dnt": "anonymize", "opted_out": "anonymize", "ip": "drop"})
    assert errors == []
    assert config == PrivacyConfig("s" * 40, ("phone", "home_address"), "anonymize", "anonymize", "drop")
    assert "s" * 40 not in repr(config)


def test_the_environment_variable_sets_and_overrides_the_key(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("f" * 32 + "\n")
    assert parse({"hmac_key_file": str(key_file)}) == (PrivacyConfig(hmac_key="f" * 32), [])
    env = {"LOOM_AGENT_HMAC_KEY": "e" * 32}
    assert parse({"hmac_key": "${NOT_SET_ANYWHERE}"}, env) == (PrivacyConfig(hmac_key="e" * 32), [])
    assert parse(None, {"LOOM_AGENT_HMAC_KEY": "short"})[1] == ["LOOM_AGENT_HMAC_KEY: must be at least 32 characters"]
    key_file.write_text("short")
    assert parse({"hmac_key_file": str(key_file)})[1] == ["privacy.hmac_key_file: must be at least 32 characters"]


BAD = sorted((Path(__file__).parent / "fixtures" / "bad_configs").glob("privacy_*.yaml"))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_privacy_blocks_name_the_key(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# error: ")
    assert parse(yaml.safe_load(path.read_text())["privacy"])[1] == [expected]


def test_a_configured_key_is_used_as_it_is(tmp_path: Path) -> None:
    assert resolve_hmac_key(PrivacyConfig(hmac_key="c" * 32), str(tmp_path)) == b"c" * 32
    assert resolve_hmac_key(PrivacyConfig(hmac_key="c" * 32), None) == b"c" * 32
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_without_a_key_postgres_or_no_store_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"privacy\.hmac_key \(or LOOM_AGENT_HMAC_KEY\) is required"):
        resolve_hmac_key(PrivacyConfig(), None)


def test_sqlite_generates_a_0600_key_once_and_reuses_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store_dir = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="agent.privacy"):
        key = resolve_hmac_key(PrivacyConfig(), str(store_dir))
    path = store_dir / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64 and path.read_text().strip().encode() == key
    assert [r.getMessage() for r in caplog.records if "generated" in r.getMessage()]
    assert key.decode() not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agent.privacy"):
        assert resolve_hmac_key(PrivacyConfig(), str(store_dir)) == key
    assert caplog.records == []
    assert os.listdir(store_dir) == [KEY_FILE_NAME]          # no temporary file left behind
    # the generated file also serves as privacy.hmac_key_file (moving to PostgreSQL keeps the pseudonyms)
    config, errors = parse({"hmac_key_file": str(path)})
    assert errors == [] and resolve_hmac_key(config, None) == key


def test_a_key_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    key = resolve_hmac_key(PrivacyConfig(), str(tmp_path))
    path = tmp_path / KEY_FILE_NAME
    path.chmod(0o644)
    assert resolve_hmac_key(PrivacyConfig(), str(tmp_path)) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_foreign_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).write_text("not a key")
    with pytest.raises(ValueError, match="not a key written by loom-agent"):
        resolve_hmac_key(PrivacyConfig(), str(tmp_path))


def _resolve(store_dir: str) -> bytes:
    return resolve_hmac_key(PrivacyConfig(), store_dir)


def test_agents_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(4) as pool:
        keys = pool.map(_resolve, [str(tmp_path)] * 8)
    assert len(set(keys)) == 1
    assert os.listdir(tmp_path) == [KEY_FILE_NAME]


# --- docs/privacy.md stays true ---------------------------------------------------------------------

DOC = (Path(__file__).resolve().parent.parent / "docs" / "privacy.md").read_text(encoding="utf-8")


def yaml_block(starting: str) -> Any:
    blocks = [b.split("```", 1)[0] for b in DOC.split("```yaml\n")[1:]]
    return yaml.safe_load(next(b for b in blocks if b.startswith(starting)))


def test_the_document_names_every_secret_name() -> None:
    assert [w for w in sorted(SECRET_WORDS | set(SECRET_SUFFIXES)) if f"`{w}`" not in DOC] == []


def test_the_documented_blocks_are_the_defaults() -> None:
    config, errors = parse(yaml_block("privacy:")["privacy"], {"LOOM_AGENT_HMAC_KEY": "x" * 32})
    assert errors == [] and config == PrivacyConfig(hmac_key="x" * 32)
    errors = []
    assert parse_retention(Node(yaml_block("retention:")["retention"], "retention", errors)) == RetentionConfig()
    assert errors == []


def _event_with(props: dict[str, Any], private: tuple[str, ...] = ()) -> Event:
    return Event("checkout", "custom", NOW, NOW, dict(props), "u1", None, None, None, Context(private=private))


def test_a_planned_key_set_scrubs_as_a_fresh_one() -> None:
    """Privacy plans what each key becomes once per key set and remembers scrubbed strings: the second,
    third... event of a shape must come out exactly as the first does from a fresh Privacy, an event's own
    `context.private` must mask even when its key set was planned without it, and a remembered string must
    not leak from one value to another."""
    props = {"plan": "pro", "apiKey": "sk_live_x", "phone": "+43 1 234", "email": "Ann@Example.com",
             "url": f"https://x.test/a?c={CARD}", "n": int(CARD), "ok": True, "items": [{"password": "p", "v": 1}]}
    used = privacy(private_properties=("phone",))
    first = [used.scrub(_event_with(props)).properties for _ in range(3)]
    fresh = privacy(private_properties=("phone",)).scrub(_event_with(props)).properties
    assert first[0] == first[1] == first[2] == fresh
    assert list(first[2]) == list(fresh) == ["plan", "phone", "email", "url", "n", "ok", "items"]
    assert fresh["phone"] == "[private]" and fresh["email"] == pseudonym("ann@example.com")
    assert fresh["url"] == "https://x.test/a?c=[card]" and fresh["n"] == "[card]" and fresh["items"] == [{"v": 1}]
    own = used.scrub(_event_with(props, private=("plan",))).properties
    assert own["plan"] == "[private]" and own["phone"] == "[private]"
    again = used.scrub(_event_with(props)).properties          # the event's own names do not stick to the shape
    assert again["plan"] == "pro"
    other = used.scrub(_event_with({**props, "url": "https://x.test/a?c=plain-value"})).properties
    assert other["url"] == "https://x.test/a?c=plain-value"
