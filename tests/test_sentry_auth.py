"""agent/sentry/auth.py: the public key from X-Sentry-Auth, the sentry_key query parameter or the
envelope header's dsn; 401 when none is presented, 403 when one is wrong or they disagree."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict, MultiDict

from agent.sentry.auth import AuthError, DsnError, authenticate, check_key, parse_auth_header, parse_dsn

KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
HEADER = f"Sentry sentry_key={KEY}, sentry_version=7, sentry_client=sentry.python/2.76.0"
DSN = f"http://{KEY}@127.0.0.1:9464/1"


def refused(headers: Any = None, query: Any = None, envelope: Any = None, project: str = "1") -> AuthError:
    with pytest.raises(AuthError) as caught:
        authenticate(headers or {}, query or {}, envelope, project)
    return caught.value


# --- each way alone ---------------------------------------------------------------------------------

def test_the_x_sentry_auth_header() -> None:
    assert authenticate({"X-Sentry-Auth": HEADER}, {}, None, "1") == KEY


def test_header_names_match_case_insensitively_in_a_plain_dict_and_in_aiohttp_headers() -> None:
    assert authenticate({"x-sentry-auth": HEADER}, {}, None, "1") == KEY
    assert authenticate(CIMultiDict({"X-SENTRY-AUTH": HEADER}), {}, None, "1") == KEY


def test_the_older_authorization_header() -> None:
    assert authenticate({"Authorization": f"Sentry sentry_key={KEY}"}, {}, None, "1") == KEY


def test_the_query_parameter_of_the_browser_sdks() -> None:
    query = MultiDict({"sentry_key": KEY, "sentry_version": "7", "sentry_client": "sentry.javascript.browser/10.0.0"})
    assert authenticate({}, query, None, "1") == KEY
    assert authenticate({}, {"sentry_key": KEY}, None, "1") == KEY


def test_the_envelope_header_dsn() -> None:
    assert authenticate({}, {}, {"dsn": DSN, "event_id": "x"}, "1") == KEY


def test_all_three_agreeing() -> None:
    assert authenticate({"X-Sentry-Auth": HEADER}, {"sentry_key": KEY}, {"dsn": DSN}, "1") == KEY


def test_a_secret_key_is_never_required_and_never_the_answer() -> None:
    assert authenticate({"X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_secret=s3cr3t"}, {}, None, "1") == KEY
    assert authenticate({}, {}, {"dsn": f"http://{KEY}:s3cr3t@host/1"}, "1") == KEY


def test_the_real_sdks_header_authenticates() -> None:
    utils = pytest.importorskip("sentry_sdk.utils")
    header = utils.Dsn(DSN).to_auth("sentry.python/2.76.0").to_header()
    assert authenticate({"X-Sentry-Auth": header}, {}, None, "1") == KEY


# --- missing: 401 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("headers, query, envelope", [
    ({}, {}, None),
    ({}, {}, {"event_id": "x"}),
    ({"X-Sentry-Auth": "Sentry sentry_version=7, sentry_client=x"}, {}, None),
    ({"X-Sentry-Auth": "Bearer abc"}, {}, None),
    ({"Authorization": "Bearer abc"}, {}, None),
    ({"X-Sentry-Auth": "Sentry sentry_key="}, {}, None),
    ({}, {"sentry_key": ""}, {"dsn": None}),
])
def test_no_key_at_all_is_401(headers: dict[str, str], query: dict[str, str], envelope: Any) -> None:
    error = refused(headers, query, envelope)
    assert error.status == 401 and error.missing
    assert "sentry_key" in error.message


# --- wrong or disagreeing: 403 -----------------------------------------------------------------------

def test_disagreeing_keys_are_403_and_name_the_places_not_the_keys() -> None:
    error = refused({"X-Sentry-Auth": HEADER}, {"sentry_key": "other"})
    assert error.status == 403 and not error.missing
    assert "X-Sentry-Auth" in error.message and "query" in error.message and KEY not in error.message
    assert refused({"X-Sentry-Auth": HEADER}, {}, {"dsn": "http://other@h/1"}).status == 403
    assert refused({}, {"sentry_key": KEY}, {"dsn": "http://other@h/1"}).status == 403


def test_two_disagreeing_headers_of_a_multidict_are_403() -> None:
    headers = CIMultiDict([("X-Sentry-Auth", HEADER), ("x-sentry-auth", "Sentry sentry_key=other")])
    assert refused(headers).status == 403
    query = MultiDict([("sentry_key", KEY), ("sentry_key", "other")])
    assert refused({}, query).status == 403


def test_a_dsn_of_another_project_is_403() -> None:
    assert refused({}, {}, {"dsn": f"http://{KEY}@h/2"}, "1").status == 403
    assert authenticate({}, {}, {"dsn": f"http://{KEY}@h/prefix/01"}, "1") == KEY


@pytest.mark.parametrize("envelope", [{"dsn": "not a dsn"}, {"dsn": 42}, {"dsn": "ftp://k@h/1"},
                                      {"dsn": "http://h/1"}, {"dsn": "http://k@h/"}])
def test_a_malformed_dsn_is_403(envelope: dict[str, Any]) -> None:
    error = refused({"X-Sentry-Auth": HEADER}, {}, envelope)
    assert error.status == 403 and "dsn" in error.message


@pytest.mark.parametrize("key", ["has space", "semi;colon", "x" * 257, "ünï"])
def test_a_key_that_cannot_be_a_public_key_is_403(key: str) -> None:
    assert refused({}, {"sentry_key": key}).status == 403


def test_a_project_in_the_path_that_is_not_a_number_is_403() -> None:
    assert refused({"X-Sentry-Auth": HEADER}, project="abc").status == 403


def test_check_key_against_the_configured_keys() -> None:
    keys = {"1": {KEY}, "2": {"k2"}}
    check_key(KEY, "1", keys)
    check_key(KEY, "001", keys)
    for key, project in ((KEY, "2"), ("k2", "1"), (KEY, "3"), (KEY, "x")):
        with pytest.raises(AuthError) as caught:
            check_key(key, project, keys)
        assert caught.value.status == 403


# --- the pieces --------------------------------------------------------------------------------------

def test_parse_auth_header_reads_prefixed_and_plain_names() -> None:
    assert parse_auth_header(HEADER) == {"key": KEY, "version": "7", "client": "sentry.python/2.76.0"}
    assert parse_auth_header("sentry key=abc,version=7") == {"key": "abc", "version": "7"}
    assert parse_auth_header("  Sentry   sentry_key = abc ,  junk") == {"key": "abc"}
    assert parse_auth_header("Basic abc") == {}


def test_parse_dsn() -> None:
    dsn = parse_dsn("https://pub:sec@o1.ingest.example.com:8443/sentry/42")
    assert (dsn.scheme, dsn.public_key, dsn.host, dsn.port, dsn.path, dsn.project_id) == \
        ("https", "pub", "o1.ingest.example.com", 8443, "/sentry", "42")
    assert dsn.envelope_path == "/sentry/api/42/envelope/"
    assert parse_dsn(DSN).envelope_path == "/api/1/envelope/"


@pytest.mark.parametrize("value", ["", "http://127.0.0.1/1", "http://k@/1", "http://k@h", "http://k@h/abc",
                                   "mailto:k@h/1", "http://k@h:notaport/1", "http://k k@h/1"])
def test_parse_dsn_refuses(value: str) -> None:
    with pytest.raises(DsnError):
        parse_dsn(value)
