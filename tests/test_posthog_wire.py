"""PostHog SDK encodings: gzip-js and base64 form bodies decoded, bounded, and refused clearly."""

from __future__ import annotations

import base64
import gzip
from urllib.parse import quote

import orjson
import pytest

from agent.api.posthog_wire import PayloadError, decode_posthog_body
from tests.support.event_api_helpers import post_raw
from tests.support.procs import AgentProcess

EVENT = {"api_key": "phc_project", "event": "cta_click", "distinct_id": "u-1",
         "properties": {"ctaId": "wire_cta", "$lib": "posthog-js"}}
JSON = orjson.dumps(EVENT)


def test_plain_json_passes_through() -> None:
    assert decode_posthog_body(JSON, {}, "application/json", 10_000) == JSON


def test_gzip_js_is_decompressed() -> None:
    assert decode_posthog_body(gzip.compress(JSON), {"compression": "gzip-js"}, "text/plain", 10_000) == JSON


def test_gzip_bomb_is_413_not_memory() -> None:
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    with pytest.raises(PayloadError) as info:
        decode_posthog_body(bomb, {"compression": "gzip-js"}, "text/plain", 1_000_000)
    assert info.value.status == 413


def test_corrupt_gzip_is_400() -> None:
    with pytest.raises(PayloadError, match="invalid gzip body") as info:
        decode_posthog_body(b"not gzip", {"compression": "gzip-js"}, "text/plain", 10_000)
    assert info.value.status == 400


def test_base64_form_body() -> None:
    body = b"data=" + quote(base64.b64encode(JSON).decode()).encode()
    assert decode_posthog_body(body, {}, "application/x-www-form-urlencoded", 10_000) == JSON
    assert decode_posthog_body(body, {"compression": "base64"}, "text/plain", 10_000) == JSON


def test_lz64_and_unknown_compressions_are_refused_by_name() -> None:
    with pytest.raises(PayloadError, match="lz64 is not supported"):
        decode_posthog_body(b"x", {"compression": "lz64"}, "text/plain", 10_000)
    with pytest.raises(PayloadError, match="unknown compression 'brotli'"):
        decode_posthog_body(b"x", {"compression": "brotli"}, "text/plain", 10_000)


def test_form_body_without_data_is_400() -> None:
    with pytest.raises(PayloadError, match="needs a data field"):
        decode_posthog_body(b"foo=bar", {}, "application/x-www-form-urlencoded", 10_000)


@pytest.mark.slow
def test_the_agent_accepts_posthog_js_gzip_and_form_bodies(tmp_path) -> None:
    agent = AgentProcess(tmp_path, {})
    try:
        status, _ = post_raw(agent, "/e/?compression=gzip-js", gzip.compress(JSON), "text/plain")
        assert status == 200
        form = b"data=" + quote(base64.b64encode(JSON).decode()).encode()
        status, _ = post_raw(agent, "/capture/", form, "application/x-www-form-urlencoded")
        assert status == 200
        status, body = post_raw(agent, "/e/?compression=lz64", b"xyz", "text/plain")
        assert status == 400 and b"lz64" in body
        assert 'loom_cta_clicks_total{cta="wire_cta",location="unknown"} 2.0' in agent.metrics()
    finally:
        assert agent.stop() == 0
