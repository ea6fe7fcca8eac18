"""agent/sentry/sourcemaps.py with Sentry's `symbolic` on a real terser bundle (tests/fixtures/sourcemaps):
the frames Node 20 reports for the minified module resolve to the original file, line, column, function
and source lines, found by release + URL path and by debug id; every other case is left as it came, with
its reason, and a client's text never leads outside the directory."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.api.keys import METRICS, RELOADER, SENTRY
from agent.app.root import build_app
from agent.config.load import load_config, parse_config
from agent.config.node import ConfigError
from agent.error_tracking.model import ChainedException, ErrorEvent, Frame
from agent.sentry.sourcemaps import SourceMaps, debug_images

FIXTURES = Path(__file__).parent / "fixtures" / "sourcemaps"
RELEASE = "loom-web@2.3.1"
URL = "https://cdn.loom.example/static/checkout.min.js?v=3"
DEBUG_ID = "c0ffee00-1234-4abc-8def-0123456789ab"


def node_frames(url: str = URL) -> list[Frame]:
    """What Node 20 reported running the minified module (outermost first, as Sentry orders frames)."""
    return [Frame(abs_path=url, filename=url, function="Module.onSubmit", lineno=1, colno=249, in_app=True),
            Frame(abs_path=url, filename=url, function="t", lineno=1, colno=103, in_app=True)]


def error(frames: list[Frame], release: str | None = RELEASE) -> ErrorEvent:
    return ErrorEvent(type="TypeError", message="card number missing for order 7", timestamp=0.0, received_at=0.0,
                      frames=frames, release=release)


def test_frames_resolve_by_release_and_url_path_with_function_and_source_lines() -> None:
    event = error(node_frames())
    assert SourceMaps(str(FIXTURES)).resolve(event, {}) == {"resolved": 2}
    outer, raising = event.frames
    assert (raising.filename, raising.lineno, raising.colno, raising.function) == ("checkout.js", 9, 11, "chargeCard")
    assert raising.context_line == '    throw new TypeError("card number missing for order " + order.id);'
    assert raising.pre_context == ("  return (cents / 100).toFixed(2);", "}", "",
                                   "function chargeCard(order, card) {", "  if (!card.number) {")
    assert raising.post_context == ("  }", "  return { charged: formatAmount(order) };", "}", "",
                                    "export function onSubmit(form) {")
    assert (outer.filename, outer.lineno, outer.context_line) == ("checkout.js", 16,
                                                                  "  return chargeCard(order, form.card);")
    assert outer.function == "onSubmit"       # "Module.onSubmit": the receiver is cut, the original name found
    assert raising.source_map == outer.source_map == "resolved"


def test_frames_resolve_by_debug_id_from_debug_meta() -> None:
    images = debug_images({"debug_meta": {"images": [
        {"type": "sourcemap", "code_file": "app:///checkout.min.js", "debug_id": DEBUG_ID},
        {"type": "elf", "code_file": "x", "debug_id": DEBUG_ID}, "junk"]}})
    assert images == {"app:///checkout.min.js": DEBUG_ID.replace("-", "")}
    event = error(node_frames("app:///checkout.min.js"), release=None)        # no release: the id finds it
    maps = SourceMaps(str(FIXTURES))
    assert maps.resolve(event, images) == {"resolved": 2}
    assert (event.frames[1].filename, event.frames[1].lineno, event.frames[1].function) == ("checkout.js", 9,
                                                                                               "chargeCard")


def test_without_the_minified_file_the_position_resolves_and_the_mangled_name_stays(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "by-debug-id" / "checkout.min.js.map", tmp_path)
    event = error(node_frames("app:///checkout.min.js"), release=None)
    images = {"app:///checkout.min.js": DEBUG_ID.replace("-", "")}
    assert SourceMaps(str(tmp_path)).resolve(event, images) == {"resolved": 2}
    assert (event.frames[1].filename, event.frames[1].lineno, event.frames[1].function) == ("checkout.js", 9, "t")


def test_the_causes_frames_resolve_too() -> None:
    event = error([])
    event.causes = [ChainedException("Error", "inner", frames=node_frames())]
    assert SourceMaps(str(FIXTURES)).resolve(event, {}) == {"resolved": 2}
    assert event.causes[0].frames[1].function == "chargeCard"


def test_unresolvable_frames_stay_as_they_came_with_the_reason(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES, tmp_path / "maps")
    (tmp_path / "maps" / "broken@1" / "static").mkdir(parents=True)
    (tmp_path / "maps" / "broken@1" / "static" / "checkout.min.js.map").write_text("{not a map")
    maps = SourceMaps(str(tmp_path / "maps"))
    cases = {
        "no_source_map": (node_frames("https://cdn.loom.example/static/other.min.js"), RELEASE),
        "unreadable_source_map": (node_frames(), "broken@1"),
        "no_mapping": ([Frame(abs_path=URL, function="t", lineno=7, colno=1)], RELEASE),   # past the bundle's lines
        "no_position": ([Frame(abs_path=URL, function="t", lineno=1)], RELEASE),
    }
    for reason, (frames, release) in cases.items():
        before = [(f.abs_path, f.lineno, f.colno, f.function) for f in frames]
        event = error(frames, release)
        assert set(maps.resolve(event, {})) == {reason}
        assert [(f.abs_path, f.lineno, f.colno, f.function) for f in event.frames] == before
        assert {f.source_map for f in event.frames} == {reason}


def test_frames_that_are_not_minified_javascript_are_not_touched() -> None:
    python = Frame(filename="app/pay.py", function="charge", lineno=3, colno=1)
    event = error([python])
    assert SourceMaps(str(FIXTURES)).resolve(event, {}) == {}
    assert python.source_map is None


@pytest.mark.parametrize("release, url", [
    ("..", "https://x/sourcemaps/loom-web@2.3.1/static/checkout.min.js"),
    ("loom-web@2.3.1", "https://x/../../../etc/passwd.js"),
    ("loom-web@2.3.1", "/../../by-debug-id/checkout.min.js"),
])
def test_a_clients_release_or_path_never_leads_outside_the_directory(release: str, url: str) -> None:
    root = FIXTURES / "loom-web@2.3.1"          # the fixtures' other maps lie outside this root
    event = error(node_frames(url), release)
    assert SourceMaps(str(root)).resolve(event, {}) == {"no_source_map": 2}


def test_a_changed_map_file_is_read_again(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES, tmp_path / "maps")
    maps = SourceMaps(str(tmp_path / "maps"))
    assert maps.resolve(error(node_frames()), {}) == {"resolved": 2}
    target = tmp_path / "maps" / RELEASE / "static" / "checkout.min.js.map"
    target.write_text("{not json")
    os.utime(target, (1, 1))
    assert maps.resolve(error(node_frames()), {}) == {"unreadable_source_map": 2}


# --- through the envelope endpoint ----------------------------------------------------------------------

KEY = "0123456789abcdef0123456789abcdef"
ADMIN = "admin-token-sourcemaps-0123456789"


def js_event(url: str) -> dict[str, Any]:
    """What @sentry/node sends for the minified module's TypeError (its frames, its debug_meta)."""
    frames = [{"filename": url, "abs_path": url, "function": "Module.onSubmit", "lineno": 1, "colno": 249,
               "in_app": True},
              {"filename": url, "abs_path": url, "function": "t", "lineno": 1, "colno": 103, "in_app": True}]
    return {"event_id": uuid.uuid4().hex, "platform": "javascript", "release": RELEASE,
            "exception": {"values": [{"type": "TypeError", "value": "card number missing for order 7",
                                      "stacktrace": {"frames": frames}}]},
            "debug_meta": {"images": [{"type": "sourcemap", "code_file": "app:///checkout.min.js",
                                       "debug_id": DEBUG_ID}]}}


def envelope(event: dict[str, Any]) -> bytes:
    data = orjson.dumps(event)
    return b"\n".join([orjson.dumps({"event_id": event["event_id"]}),
                       orjson.dumps({"type": "event", "length": len(data)}), data]) + b"\n"


def test_the_envelope_route_resolves_frames_before_grouping_and_counts_them(agent_server: Any,
                                                                             sqlite_store: Any) -> None:
    config = {"sentry": {"projects": [{"id": 1, "keys": [KEY]}], "source_maps_dir": str(FIXTURES)}}
    agent = agent_server(config, store=sqlite_store, admin_token=ADMIN)
    auth = {"X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_version=7"}
    # one deploy's URL found by release + path, the other's by debug id: both the same original code
    for url in (URL, "app:///checkout.min.js"):
        assert agent.post("/api/1/envelope/", data=envelope(js_event(url)), headers=auth).status == 200
    status, answer, _ = agent.get("/api/errors", params={"range": "1h"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert status == 200
    (issue,) = answer["issues"]                           # resolved frames group as one issue
    assert issue["count"] == 2
    raising = issue["latest"]["frames"][-1]
    assert (raising["filename"], raising["lineno"], raising["sourceMap"]) == ("checkout.js", 9, "resolved")
    assert "throw new TypeError" in raising["contextLine"]
    assert agent.app[METRICS].get("loom_agent_sentry_source_map_frames").series[("resolved",)] == 4


@pytest.mark.parametrize("url", ["app:///%00.min.js", "https://cdn.loom.example/" + "a" * 300 + ".min.js"])
def test_a_frame_path_the_file_system_refuses_is_no_source_map_not_a_500(agent_server: Any, sqlite_store: Any,
                                                                         url: str) -> None:
    """A NUL byte (`%00` decodes to one) or a name too long for the file system raised out of the lookup, in
    the worker thread the route awaits: 500, and every event of the envelope lost."""
    config = {"sentry": {"projects": [{"id": 1, "keys": [KEY]}], "source_maps_dir": str(FIXTURES)}}
    agent = agent_server(config, store=sqlite_store, admin_token=ADMIN)
    auth = {"X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_version=7"}
    event = js_event(url)
    event["debug_meta"] = {}
    assert agent.post("/api/1/envelope/", data=envelope(event), headers=auth).status == 200
    assert agent.app[METRICS].get("loom_agent_sentry_source_map_frames").series[("no_source_map",)] == 2


def test_a_source_maps_dir_that_does_not_exist_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"sentry:\n  source_maps_dir: {tmp_path / 'missing'}\n")
    assert "sentry.source_maps_dir: is not a directory" in str(caught.value)


def test_a_reload_sets_changes_and_removes_the_directory(tmp_path: Path, run: Any) -> None:
    path = tmp_path / "agent.yaml"
    base = "targets: []\nstore: {driver: none}\n"
    path.write_text(base)
    app = build_app(load_config(str(path)))
    assert app[SENTRY].source_maps is None
    path.write_text(base + f"sentry: {{source_maps_dir: '{FIXTURES}'}}\n")
    assert run(app[RELOADER].reload()) is True
    maps = app[SENTRY].source_maps
    assert maps is not None and maps.resolve(error(node_frames()), {}) == {"resolved": 2}
    path.write_text(base + f"sentry: {{source_maps_dir: '{FIXTURES}'}}\nerrors: {{max_frames: 50}}\n")
    assert run(app[RELOADER].reload()) is True and app[SENTRY].source_maps is maps     # same directory: kept
    path.write_text(base)
    assert run(app[RELOADER].reload()) is True and app[SENTRY].source_maps is None
